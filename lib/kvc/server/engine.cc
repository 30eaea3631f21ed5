#include "kvc/server/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>
#include <utility>

#include "kvc/client/client.h"
#include "kvc/common/version.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

void SpdRaftLogger::log(raft::LogLevel level, std::string_view line) {
  switch (level) {
    case raft::LogLevel::kDebug:
      spdlog::debug("raft: {}", line);
      break;
    case raft::LogLevel::kInfo:
      spdlog::info("raft: {}", line);
      break;
    case raft::LogLevel::kWarn:
      spdlog::warn("raft: {}", line);
      break;
    case raft::LogLevel::kError:
      spdlog::error("raft: {}", line);
      break;
  }
}

// ---------------------------------------------------------------------------------------------
// Setup

Engine::Impl::Impl(EngineOptions options) : options_(std::move(options)) {
#ifdef KVC_MUTATIONS
  // Broken on purpose (test builds only; a process-wide switch, one member per process).
  if (options_.test_mutation == "unverified-reads") {
    storage::g_state_mutation = storage::StateMutation::kReadsSkipChecksum;
  }
  if (options_.test_mutation == "txn-applies-half") {
    storage::g_state_mutation = storage::StateMutation::kTxnAppliesHalf;
  }
  if (options_.test_mutation == "txn-wrong-branch") {
    storage::g_state_mutation = storage::StateMutation::kTxnFirstCompareOnly;
  }
  if (options_.test_mutation == "txn-torn-read") {
    storage::g_state_mutation = storage::StateMutation::kTxnReadsAfterWrites;
  }
#endif
}

Engine::Impl::~Impl() { (void)close(); }

Status Engine::Impl::start() {
  KVC_RETURN_IF_ERROR(options_.validate());
  {
    for (const std::string& w : options_.exposure_warnings()) spdlog::warn("{}", w);
    // The secret moves out of the options into memory kept out of core dumps (secret_); every
    // other copy is wiped (docs/security.md, "Secrets").
    Result<std::string> secret = options_.load_secret();
    net::wipe(options_.secret);
    if (!secret.ok()) return secret.status();
    const Status strong = secret->empty() ? Status() : net::check_secret_strength(*secret);
    if (strong.ok() && !secret->empty()) secret_ = net::SecretBytes(*secret);
    net::wipe(*secret);
    KVC_RETURN_IF_ERROR(strong);
  }
  KVC_RETURN_IF_ERROR(build_tls());
  if (!options_.permissions_file.empty()) {
    Result<Permissions> p = Permissions::load(options_.permissions_file);
    if (!p.ok()) return p.status().with_context("--permissions-file");
    permissions_ = std::make_shared<const Permissions>(std::move(*p));
  }
  KVC_RETURN_IF_ERROR(open_data_dir());
  KVC_RETURN_IF_ERROR(open_storage());

  uv_loop_init(&loop_);
  loop_.data = this;
  inbox_.init(&loop_);
  if (Status s = bind_listeners(); !s.ok()) {
    // Close what was opened so the loop can be closed cleanly.
    inbox_.close();
    if (client_listener_) client_listener_->close();
    if (peers_) peers_->close();
    uv_run(&loop_, UV_RUN_DEFAULT);
    uv_loop_close(&loop_);
    return s;
  }
  uv_timer_init(&loop_, &tick_timer_);
  tick_timer_.data = this;
  uv_timer_start(
      &tick_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_tick(); }, options_.tick_ms,
      options_.tick_ms);
  uv_timer_init(&loop_, &flush_timer_);
  flush_timer_.data = this;
  const std::uint64_t flush_every = std::max<std::uint64_t>(options_.flush_interval_ms / 2, 5);
  uv_timer_start(
      &flush_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_flush_timer(); },
      flush_every, flush_every);
  uv_timer_init(&loop_, &scrub_timer_);
  scrub_timer_.data = this;
  if (options_.scrub_bytes_per_second > 0) {
    scrub_thread_ = std::make_unique<Worker>("kvc-scrub");
    scrub_ = scrub_thread_.get();
    uv_timer_start(
        &scrub_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->scrub_tick(); },
        kScrubTickMs, kScrubTickMs);
  }
  uv_timer_init(&loop_, &hash_timer_);
  hash_timer_.data = this;
  if (options_.hash_check_interval_ms > 0) {
    uv_timer_start(
        &hash_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->start_hash_check(); },
        options_.hash_check_interval_ms, options_.hash_check_interval_ms);
  }
  uv_check_init(&loop_, &check_);
  check_.data = this;
  uv_check_start(&check_, [](uv_check_t* c) { static_cast<Impl*>(c->data)->on_check(); });

  disk_thread_ = std::make_unique<Worker>("kvc-disk");
  flush_thread_ = std::make_unique<Worker>("kvc-flush");
  scan_thread_ = std::make_unique<Worker>("kvc-scan");
  disk_ = disk_thread_.get();
  flush_ = flush_thread_.get();
  scan_ = scan_thread_.get();
  update_peers();
  last_flush_ms_ = now_ms();
  storage_written_at_start_ = metrics::storage_bytes_written(false).value_or(0);
  metrics_->state_flushed_index.set(static_cast<double>(state_->durable_index()));
  loop_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvc-loop");
    // Work the restored node may already have (committed entries to re-apply).
    post_loop([this] { process_ready(); });
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  spdlog::info(
      "member started name={} id={} cluster={} peer={} client={} http={} applied={} "
      "version={}",
      options_.name, hex(identity_.member_id), hex(identity_.cluster_id), peer_bound_,
      client_bound_, http_bound_.empty() ? "off" : http_bound_, state_->applied_index(),
      kvc::version());
  return Status();
}
Status Engine::Impl::start_simulated(const SimEnvironment& env) {
  KVC_RETURN_IF_ERROR(options_.validate());
  sim_env_ = env;
  sim_ = &sim_env_;
  loop_exec_ = env.loop;
  disk_ = env.disk;
  flush_ = env.flush;
  scan_ = env.scan != nullptr ? env.scan : env.flush;
  scrub_ = options_.scrub_bytes_per_second > 0 ? env.scrub : nullptr;
  peers_ = env.transport;
  KVC_RETURN_IF_ERROR(open_data_dir());
  KVC_RETURN_IF_ERROR(open_storage());
  metrics_ = std::make_unique<EngineMetrics>(identity_.name, hex(identity_.member_id));
  storage::Member& me = learned_[identity_.member_id];
  me.id = identity_.member_id;
  me.name = identity_.name;
  me.client_addr = options_.listen_client;
  if (me.peer_addr.empty()) me.peer_addr = options_.listen_peer;
  peer_bound_ = options_.listen_peer;
  client_bound_ = options_.listen_client;
  update_peers();
  last_flush_ms_ = now_ms();
  storage_written_at_start_ = metrics::storage_bytes_written(false).value_or(0);
  metrics_->state_flushed_index.set(static_cast<double>(state_->durable_index()));
  // Work the restored node may already have (committed entries to re-apply).
  post_loop([this] { process_ready(); });
  return Status();
}

std::uint64_t Engine::Impl::next_random() const { return sim_ ? sim_->random() : random_u64(); }

// ---------------------------------------------------------------------------------------------
// Shutdown

void Engine::Impl::begin_shutdown() {
  if (stopping_) return;
  stopping_ = true;
  cancel_scans_.store(true);  // a barrier's hash or a snapshot in progress ends early
  spdlog::info("stopping member name={}", identity_.name);
  if (client_listener_) client_listener_->close();
  if (http_) http_->close();
  // Answer everything still waiting: writes in flight have an unknown outcome.
  for (auto& [index, w] : waiters_) {
    wire::Response r = base_response(w.req.id);
    r.code = Code::kTimeout;
    r.message = "member shutting down before the request was applied; outcome unknown";
    metrics_->proposals_timed_out.inc();
    w.reply(std::move(r));
  }
  waiters_.clear();
  auto fail_reads = [this](std::vector<PendingRead>& reads) {
    for (PendingRead& pr : reads) {
      wire::Response r = base_response(pr.req.id);
      r.code = Code::kShuttingDown;
      r.message = "member shutting down";
      pr.reply(std::move(r));
    }
    reads.clear();
  };
  fail_reads(unsent_reads_);
  for (ReadBatch& b : read_batches_) fail_reads(b.reads);
  read_batches_.clear();
  finish_shutdown();
}

void Engine::Impl::finish_shutdown() {
  if (sim_) {
    finish_simulated_shutdown();
    return;
  }
  // Wait for the disk and flush threads' work in flight to land before the last flush.
  if (persisting_ || state_in_use()) {
    uv_timer_t* t = new uv_timer_t();
    uv_timer_init(&loop_, t);
    t->data = this;
    uv_timer_start(
        t,
        [](uv_timer_t* timer) {
          auto* self = static_cast<Impl*>(timer->data);
          uv_close(reinterpret_cast<uv_handle_t*>(timer),
                   [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
          self->finish_shutdown();
        },
        5, 0);
    return;
  }
  stopped_ = true;
  Status failure;
  {
    std::lock_guard<std::mutex> lock(mu_);
    failure = failure_;
  }
  if (failure.ok()) {
    // A clean stop leaves the state flushed, so the next start replays nothing.
    if (Status s = state_->flush_all(); !s.ok()) {
      spdlog::error("final flush failed error={}", s.message());
    }
    std::promise<Status> synced;
    const std::uint64_t index = state_->durable_index();
    const std::uint64_t term = state_->applied_term();
    raft::ConfState conf = current_membership().to_conf_state();
    const std::optional<raft::HardState> commit = std::exchange(unwritten_commit_, std::nullopt);
    disk_->post([this, &synced, index, term, conf, commit] {
      Status s = commit ? wal_->append(commit, {}) : Status();
      if (s.ok()) s = wal_->sync();
      if (s.ok() && index > 0) s = wal_->save_snapshot({index, term, conf});
      if (s.ok()) s = wal_->sync();
      synced.set_value(s);
    });
    if (Status s = synced.get_future().get(); !s.ok()) {
      spdlog::error("final log sync failed error={}", s.message());
    }
  }
  peers_->close();
  for (auto& [id, cc] : clients_) cc.conn->close(Status::shutting_down("member stopping"));
  clients_.clear();
  clients_per_address_.clear();
  std::vector<std::shared_ptr<net::Connection>> refused;
  for (const auto& [key, r] : refused_) refused.push_back(r.first);
  for (auto& c : refused) c->close(Status::shutting_down("member stopping"));
  watchers_.clear();
  watch_groups_.clear();
  uv_timer_stop(&tick_timer_);
  uv_timer_stop(&flush_timer_);
  uv_timer_stop(&hash_timer_);
  uv_timer_stop(&scrub_timer_);
  uv_check_stop(&check_);
  uv_close(reinterpret_cast<uv_handle_t*>(&tick_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&flush_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&hash_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&scrub_timer_), nullptr);
  uv_close(reinterpret_cast<uv_handle_t*>(&check_), nullptr);
  inbox_.close();
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader_info_ = {};
  }
  ready_.store(false);
}

// The same end in a simulation: the executors are the simulator's queues, so work in flight is
// waited for by posting again, and the last flush and sync run here (nothing else runs
// concurrently on the simulator's one thread).
void Engine::Impl::finish_simulated_shutdown() {
  if (persisting_ || state_in_use()) {
    post_loop([this] { finish_shutdown(); });
    return;
  }
  stopped_ = true;
  if (failure().ok()) {
    Status s = state_->flush_all();
    const std::uint64_t index = state_->durable_index();
    if (s.ok() && unwritten_commit_) s = wal_->append(unwritten_commit_, {});
    unwritten_commit_.reset();
    if (s.ok()) s = wal_->sync();
    if (s.ok() && index > 0) {
      s = wal_->save_snapshot(
          {index, state_->applied_term(), current_membership().to_conf_state()});
    }
    if (s.ok()) s = wal_->sync();
    if (!s.ok()) {
      std::lock_guard<std::mutex> lock(mu_);
      if (failure_.ok()) failure_ = s.with_context("stopping");
    }
  }
  watchers_.clear();
  watch_groups_.clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader_info_ = {};
    finished_ = true;
  }
  ready_.store(false);
}

Status Engine::Impl::close() {
  if (!loop_thread_.joinable()) {
    return failure();
  }
  if (std::this_thread::get_id() == loop_thread_.get_id()) {
    return Status::failed_precondition("Engine::close called from an Engine callback");
  }
  post_loop([this] { begin_shutdown(); });
  loop_thread_.join();
  if (disk_thread_) disk_thread_->stop();
  if (flush_thread_) flush_thread_->stop();
  if (scrub_thread_) scrub_thread_->stop();
  if (scan_thread_) scan_thread_->stop();
  uv_loop_close(&loop_);
  std::unique_ptr<ForwarderSlot> forwarder;  // destroyed after the lock: it joins its thread
  std::vector<std::unique_ptr<ForwarderSlot>> retired;
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    forwarder = std::move(forwarder_);
    retired.swap(retired_forwarders_);
  }
  forwarder.reset();
  retired.clear();
  hash_client_.reset();  // its callbacks post to the closed inbox: dropped
  finished_cv_.notify_all();
  spdlog::info("member stopped name={}", identity_.name);
  return failure();
}

void Engine::Impl::wait() {
  // The loop ends by itself only after a fatal error; join it from here in that case.
  std::unique_lock<std::mutex> lock(mu_);
  finished_cv_.wait(lock, [this] { return finished_ || !failure_.ok(); });
}

Status Engine::Impl::failure() const {
  std::lock_guard<std::mutex> lock(mu_);
  return failure_;
}

LeaderInfo Engine::Impl::leader() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leader_info_;
}

void Engine::Impl::on_leader_change(std::function<void(const LeaderInfo&)> cb) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader_callbacks_.push_back(cb);
  }
  // A leader elected before the callback was registered is reported at once (on the loop).
  post_loop([this, cb] {
    LeaderInfo info = leader();
    if (info.id != raft::kNoNode) cb(info);
  });
}

// ---------------------------------------------------------------------------------------------
// Embedded API

void Engine::Impl::submit(wire::Request req, Reply reply) {
  post_loop([this, req = std::move(req), reply = std::move(reply)]() mutable {
    handle_request(std::move(req), std::move(reply));
  });
}

wire::Response Engine::Impl::call(wire::Request req) {
  KVC_CHECK(std::this_thread::get_id() != loop_thread_.get_id(),
            "a blocking Engine call from an Engine callback would deadlock");
  if (req.timeout_ms == 0) req.timeout_ms = options_.request_timeout_ms;
  auto p = std::make_shared<std::promise<wire::Response>>();
  std::future<wire::Response> f = p->get_future();
  submit(req, [p](wire::Response r) { p->set_value(std::move(r)); });
  if (f.wait_for(std::chrono::milliseconds(req.timeout_ms + 2000)) != std::future_status::ready) {
    wire::Response r;
    r.code = client::is_write(req.op) ? Code::kTimeout : Code::kUnavailable;
    r.message = "the member did not answer in time";
    return r;
  }
  wire::Response r = f.get();
  const bool leader_only = client::is_write(req.op) || req.op == wire::Op::kLeaseKeepAlive ||
                           req.op == wire::Op::kLeaseTtl || req.op == wire::Op::kLeaseList;
  if (r.code == Code::kNotLeader && !r.leader_client_addr.empty() && leader_only) {
    // Embedded callers do not follow redirects: forward the write (or the lease query, which
    // only the leader's clock answers) to the leader.
    if (std::shared_ptr<client::Client> fwd = forwarder(r.leader_client_addr)) {
      // The embedding program is trusted: the leader honours this from a member's connection.
      req.on_behalf_of = std::string(kIdentityEmbedded);
      return fwd->call_sync(std::move(req), {.leader_hint = r.leader_client_addr});
    }
  }
  return r;
}

std::shared_ptr<client::Client> Engine::Impl::forwarder(const std::string& leader_addr) {
  // Destroyed after the lock is released: a client's destructor joins its thread.
  std::vector<std::unique_ptr<ForwarderSlot>> unused;
  std::lock_guard<std::mutex> lock(mu_);
  if (finished_) return nullptr;
  for (auto it = retired_forwarders_.begin(); it != retired_forwarders_.end();) {
    if ((*it)->users.use_count() == 1) {
      unused.push_back(std::move(*it));
      it = retired_forwarders_.erase(it);
    } else {
      ++it;
    }
  }
  if (!forwarder_ || forwarder_stale_ || forwarder_addr_ != leader_addr) {
    // A client opened now reads the TLS files as they are now (secure_internal_client).
    const char* why = !forwarder_ ? "first use" : forwarder_stale_ ? "tls reloaded" : "new leader";
    Result<std::unique_ptr<client::Client>> c = [&]() -> Result<std::unique_ptr<client::Client>> {
      Result<net::Address> a = net::parse_address(leader_addr);
      if (!a.ok()) return a.status();
      client::ClientOptions o;
      o.endpoints.push_back(*a);
      o.cluster_id = identity_.cluster_id;
      o.timeout_ms = options_.request_timeout_ms;
      o.name = "kvc-engine-" + identity_.name;
      secure_internal_client(o);
      return client::Client::open(std::move(o));
    }();
    if (!c.ok()) {
      // The old one (if any) is still tried: its open connection may still serve.
      spdlog::warn("cannot make the write forwarder leader={} reason={} error={}", leader_addr, why,
                   c.status().message());
      if (!forwarder_) return nullptr;
    } else {
      if (forwarder_) retired_forwarders_.push_back(std::move(forwarder_));
      forwarder_ = std::make_unique<ForwarderSlot>();
      forwarder_->client = std::move(*c);
      forwarder_addr_ = leader_addr;
      forwarder_stale_ = false;
      spdlog::info("write forwarder made leader={} reason={}", leader_addr, why);
    }
  }
  return std::shared_ptr<client::Client>(forwarder_->users, forwarder_->client.get());
}

void Engine::Impl::count_request(wire::Op op, std::chrono::steady_clock::time_point start,
                                 Code code) {
  metrics_->request(op).observe_since(start);
  if (code != Code::kOk) metrics_->request_error(op, code).inc();
}

void Engine::Impl::collect_metrics() {
  EngineMetrics& m = *metrics_;
  m.term.set(static_cast<double>(node_->term()));
  m.is_leader.set(node_->role() == raft::Role::kLeader ? 1 : 0);
  m.has_leader.set(node_->leader() != raft::kNoNode ? 1 : 0);
  m.commit_index.set(static_cast<double>(node_->commit()));
  m.applied_index.set(static_cast<double>(state_->applied_index()));
  m.last_index.set(static_cast<double>(node_->log().last_index()));
  m.proposals_pending.set(static_cast<double>(waiters_.size()));
  m.client_connections.set(static_cast<double>(clients_.size()));
  m.watchers.set(static_cast<double>(watch_count()));
  m.watch_groups.set(static_cast<double>(watchers_.size()));
  m.peers_connected.set(static_cast<double>(peers_ ? peers_->connected_peers() : 0));
  m.raft_repairing.set(node_->repair().active() ? 1 : 0);
  m.lost_entries_detected.set(static_cast<double>(node_->lost_entries_detected()));
  m.state_damaged.set(damaged_ ? 1 : 0);
  wire::Response r;
  fill_status(r);
  m.wal_bytes.set(static_cast<double>(r.status.wal_bytes));
  m.state_bytes.set(static_cast<double>(r.status.state_bytes));
}

// ---------------------------------------------------------------------------------------------
// Engine

namespace {

// Engine::channel(): requests through Impl::call, watches through Engine::watch (one response
// per event).
class EngineChannel final : public client::Channel {
 public:
  explicit EngineChannel(Engine& engine, Engine::Impl& impl) : engine_(engine), impl_(impl) {}

  wire::Response channel_call(wire::Request req) override { return impl_.call(std::move(req)); }

  std::uint64_t channel_stream(wire::Request req, StreamFn fn) override {
    wire::Response failed;
    if (req.op != wire::Op::kWatch) {
      failed.code = Code::kInvalidArgument;
      failed.message = "an Engine channel streams watches only";
      fn(failed);
      return 0;
    }
    struct State {
      std::mutex mu;
      StreamFn fn;
      bool stopped = false;
    };
    auto st = std::make_shared<State>();
    st->fn = std::move(fn);
    Result<std::uint64_t> handle = engine_.watch(
        req.key, req.prefix, req.start_revision, [st, prev_kv = req.prev_kv](const WatchEvent& ev) {
          std::lock_guard<std::mutex> lock(st->mu);
          if (st->stopped) return;
          wire::Response r;
          r.events.push_back(
              {ev.type == WatchEvent::Type::kPut ? wire::EventType::kPut : wire::EventType::kDelete,
               {ev.kv.key, ev.kv.value, ev.kv.create_revision, ev.kv.mod_revision, ev.kv.version}});
          if (prev_kv) {
            const KeyValue p = ev.prev_kv.value_or(KeyValue{});
            r.prev_kvs.push_back({p.key, p.value, p.create_revision, p.mod_revision, p.version});
          }
          r.revision = ev.kv.mod_revision;
          if (!st->fn(r)) st->stopped = true;
        });
    if (!handle.ok()) {
      failed.code = handle.status().code();
      failed.message = handle.status().message();
      std::lock_guard<std::mutex> lock(st->mu);
      st->fn(failed);
      return 0;
    }
    std::lock_guard<std::mutex> lock(mu_);
    const std::uint64_t id = ++next_id_;
    streams_[id] = *handle;
    return id;
  }

  void channel_cancel(std::uint64_t id) override {
    std::uint64_t handle = 0;
    {
      std::lock_guard<std::mutex> lock(mu_);
      auto it = streams_.find(id);
      if (it == streams_.end()) return;
      handle = it->second;
      streams_.erase(it);
    }
    engine_.unwatch(handle);
  }

 private:
  Engine& engine_;
  Engine::Impl& impl_;
  std::mutex mu_;
  std::uint64_t next_id_ = 0;                       // guarded by mu_
  std::map<std::uint64_t, std::uint64_t> streams_;  // id -> watch handle; guarded by mu_
};

}  // namespace

Engine::Engine(std::unique_ptr<Impl> impl)
    : impl_(std::move(impl)), channel_(std::make_unique<EngineChannel>(*this, *impl_)) {}

client::Channel& Engine::channel() { return *channel_; }
Engine::~Engine() { (void)close(); }

Result<std::unique_ptr<Engine>> Engine::open(EngineOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  KVC_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<Engine>(new Engine(std::move(impl)));
}

std::uint64_t Engine::id() const { return impl_->id(); }
std::uint64_t Engine::cluster_id() const { return impl_->cluster_id(); }
LeaderInfo Engine::leader() const { return impl_->leader(); }
void Engine::on_leader_change(std::function<void(const LeaderInfo&)> callback) {
  impl_->on_leader_change(std::move(callback));
}
bool Engine::is_ready() const { return impl_->is_ready(); }
std::string Engine::client_address() const { return impl_->client_address(); }
std::string Engine::peer_address() const { return impl_->peer_address(); }
std::string Engine::http_address() const { return impl_->http_address(); }
Status Engine::close() { return impl_->close(); }
Status Engine::reload_tls() { return impl_->reload_tls(); }
Status Engine::reload_permissions() { return impl_->reload_permissions(); }
Status Engine::failure() const { return impl_->failure(); }
void Engine::wait() { impl_->wait(); }

// The typed calls are the client library's over this member's channel (Impl::call).
Result<std::optional<KeyValue>> Engine::get(const std::string& key, ReadOptions options) {
  return client::Kv(*channel_).get(key, options);
}
Result<bool> Engine::exists(const std::string& key, ReadOptions options) {
  return client::Kv(*channel_).exists(key, options);
}
Result<std::uint64_t> Engine::set(const std::string& key, const std::string& value,
                                  std::uint64_t lease) {
  return client::Kv(*channel_).set(key, value, lease);
}
Result<bool> Engine::del(const std::string& key, std::uint64_t expect_revision) {
  return client::Kv(*channel_).del(key, expect_revision);
}
Result<std::uint64_t> Engine::cas(const std::string& key, const std::string& value,
                                  std::uint64_t expect_revision) {
  return client::Kv(*channel_).cas(key, value, expect_revision);
}
Result<std::vector<KeyValue>> Engine::list(const std::string& prefix, std::uint64_t limit,
                                           ReadOptions options) {
  return client::Kv(*channel_).list(prefix, limit, options);
}
Result<LeaseInfo> Engine::lease_grant(std::uint64_t ttl_s) {
  return client::Kv(*channel_).lease_grant(ttl_s);
}
Result<std::uint64_t> Engine::lease_revoke(std::uint64_t id) {
  return client::Kv(*channel_).lease_revoke(id);
}
Result<std::uint64_t> Engine::lease_keep_alive(std::uint64_t id) {
  return client::Kv(*channel_).lease_keep_alive(id);
}
Result<LeaseInfo> Engine::lease_ttl(std::uint64_t id, bool with_keys) {
  return client::Kv(*channel_).lease_ttl(id, with_keys);
}
Result<std::vector<LeaseInfo>> Engine::leases() { return client::Kv(*channel_).leases(); }
Result<TxnResult> Engine::txn(const Txn& t) { return client::Kv(*channel_).txn(t); }

Result<std::uint64_t> Engine::watch(const std::string& key, bool prefix,
                                    std::uint64_t start_revision,
                                    std::function<void(const WatchEvent&)> callback) {
  return impl_->watch(key, prefix, start_revision, std::move(callback));
}

void Engine::unwatch(std::uint64_t handle) { impl_->unwatch(handle); }

}  // namespace kvc::server
