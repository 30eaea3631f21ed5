#include "kvc/server/engine.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/random.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>

#include "kvc/client/client.h"
#include "kvc/common/version.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"
#include "kvc/wire/auth.h"

namespace kvc::server {
namespace {

constexpr std::uint64_t kScrubTickMs = 100;

std::string hex(std::uint64_t id) { return storage::member_id_hex(id); }

std::uint64_t random_u64() {
  std::uint64_t v = 0;
  if (::getrandom(&v, sizeof v, 0) != sizeof v) {
    v = static_cast<std::uint64_t>(
        std::chrono::steady_clock::now().time_since_epoch().count()) ^
        (static_cast<std::uint64_t>(::getpid()) << 32);
  }
  return v;
}

wire::KeyValue to_wire(const storage::KeyValue& kv, bool keys_only) {
  return {kv.key, keys_only ? std::string() : kv.value, kv.create_revision, kv.mod_revision,
          kv.version};
}

// The error a client sees for a Status from the state machine or the Raft core.
void set_error(wire::Response& r, const Status& s) {
  r.code = s.code();
  r.message = s.message();
}

// A damaged identity file or state refuses the start; neither can be mended in place, so the
// refusal ends with what to do (kvc-node(1), INTEGRITY): rebuild the member from the cluster.
Status with_rebuild_advice(const Status& s) {
  if (s.code() != Code::kCorruption) return s;
  return Status::corruption(s.message() + "; " + std::string(storage::rebuild_advice()));
}

}  // namespace

void SpdRaftLogger::log(raft::LogLevel level, std::string_view line) {
  switch (level) {
    case raft::LogLevel::kDebug: spdlog::debug("raft: {}", line); break;
    case raft::LogLevel::kInfo: spdlog::info("raft: {}", line); break;
    case raft::LogLevel::kWarn: spdlog::warn("raft: {}", line); break;
    case raft::LogLevel::kError: spdlog::error("raft: {}", line); break;
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
#endif
}

Engine::Impl::~Impl() {
  (void)close();
}

Status Engine::Impl::start() {
  KVC_RETURN_IF_ERROR(options_.validate());
  {
    Result<std::string> secret = options_.load_secret();
    if (!secret.ok()) return secret.status();
    options_.secret = std::move(*secret);
    for (const std::string& w : options_.exposure_warnings()) spdlog::warn("{}", w);
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
      &tick_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->on_tick(); },
      options_.tick_ms, options_.tick_ms);
  uv_timer_init(&loop_, &flush_timer_);
  flush_timer_.data = this;
  const std::uint64_t flush_every = std::max<std::uint64_t>(options_.flush_interval_ms / 2, 5);
  uv_timer_start(
      &flush_timer_, [](uv_timer_t* t) { static_cast<Impl*>(t->data)->maybe_flush(false); },
      flush_every, flush_every);
  uv_timer_init(&loop_, &scrub_timer_);
  scrub_timer_.data = this;
  if (options_.scrub_bytes_per_second > 0) {
    scrub_ = std::make_unique<Worker>("kvc-scrub");
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

  disk_ = std::make_unique<Worker>("kvc-disk");
  flush_ = std::make_unique<Worker>("kvc-flush");
  update_peers();
  last_flush_ms_ = uv_now(&loop_);
  loop_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "kvc-loop");
    // Work the restored node may already have (committed entries to re-apply).
    inbox_.post([this] { process_ready(); });
    uv_run(&loop_, UV_RUN_DEFAULT);
  });
  spdlog::info("member started name={} id={} cluster={} peer={} client={} http={} applied={} "
               "version={}",
               options_.name, hex(identity_.member_id), hex(identity_.cluster_id), peer_bound_,
               client_bound_, http_bound_.empty() ? "off" : http_bound_, state_->applied_index(),
               kvc::version());
  return Status();
}

Status Engine::Impl::open_data_dir() {
  Result<storage::DataDir> dir =
      storage::DataDir::open(options_.data_dir, storage::DataDir::Mode::kReadWrite);
  if (!dir.ok()) return dir.status();
  data_dir_.emplace(std::move(*dir));

  Result<storage::Membership> initial = storage::Membership{};
  if (!options_.initial_cluster.empty()) {
    initial = storage::parse_initial_cluster(options_.cluster_token, options_.initial_cluster);
    if (!initial.ok()) return initial.status().with_context("--initial-cluster");
  }

  if (data_dir_->has_identity()) {
    Result<storage::Identity> id = data_dir_->read_identity();
    if (!id.ok()) return with_rebuild_advice(id.status());
    if (id->name != options_.name || id->cluster_token != options_.cluster_token) {
      return Status::failed_precondition(
          "data directory " + options_.data_dir + " belongs to member '" + id->name +
          "' of the cluster with token '" + id->cluster_token + "', not to member '" +
          options_.name + "' with token '" + options_.cluster_token +
          "': use that member's name and token, or another data directory");
    }
    identity_ = *id;
    if (!identity_.initial_cluster.empty()) {
      Result<storage::Membership> boot =
          storage::parse_initial_cluster(identity_.cluster_token, identity_.initial_cluster);
      if (!boot.ok()) return boot.status().with_context(data_dir_->identity_path());
      bootstrap_membership_ = std::move(*boot);
    }
    if (!initial->empty() && !identity_.initial_cluster.empty() &&
        storage::sorted_initial_cluster(*initial) != identity_.initial_cluster) {
      spdlog::warn("--initial-cluster differs from the cluster this member was created with; "
                   "it is ignored on restart flag={} identity={}",
                   options_.initial_cluster, identity_.initial_cluster);
    }
    return Status();
  }

  if (!data_dir_->is_empty()) {
    return Status::failed_precondition("data directory " + options_.data_dir +
                                       " holds files but no identity: it is not a kvc member's "
                                       "data directory (or its identity file was removed)");
  }
  if (initial->empty()) {
    return Status::invalid_argument(
        "--initial-cluster is required to create a member (for a member joining a running "
        "cluster: the members' names and peer addresses, as kvc-ctl member add prints them)");
  }
  if (options_.initial_cluster_state == "existing") {
    // A member added with kvc-ctl member add: the cluster already chose its id.
    std::vector<std::string> peers;
    for (const storage::Member& m : initial->members) {
      if (m.name != options_.name) peers.push_back(m.peer_addr);
    }
    Result<JoinAnswer> join = join_cluster(peers, options_.name, options_.cluster_token,
                                           options_.secret, options_.join_timeout_ms);
    if (!join.ok()) {
      return join.status().with_context("joining the cluster as '" + options_.name + "'");
    }
    identity_.name = options_.name;
    identity_.cluster_token = options_.cluster_token;
    identity_.member_id = join->member_id;
    identity_.cluster_id = join->cluster_id;
    const PeerInfo& by = join->answered_by;
    learned_[by.id] = {by.id, by.name, by.peer_addr, by.client_addr, false};
    KVC_RETURN_IF_ERROR(data_dir_->write_identity(identity_));
    spdlog::info("joined cluster={} as name={} id={} (told by {})", hex(identity_.cluster_id),
                 identity_.name, hex(identity_.member_id), by.name);
    return Status();
  }
  if (initial->empty()) {
    return Status::invalid_argument("--initial-cluster is required to create a new member");
  }
  const storage::Member* self = initial->find_name(options_.name);
  if (self == nullptr) {
    return Status::invalid_argument("--initial-cluster does not name this member ('" +
                                    options_.name + "')");
  }
  identity_.name = options_.name;
  identity_.cluster_token = options_.cluster_token;
  identity_.member_id = self->id;
  identity_.initial_cluster = storage::sorted_initial_cluster(*initial);
  identity_.cluster_id =
      storage::derive_cluster_id(options_.cluster_token, identity_.initial_cluster);
  bootstrap_membership_ = std::move(*initial);
  KVC_RETURN_IF_ERROR(data_dir_->write_identity(identity_));
  spdlog::info("created member name={} id={} cluster={} members={}", identity_.name,
               hex(identity_.member_id), hex(identity_.cluster_id),
               storage::describe_membership(bootstrap_membership_));
  return Status();
}

Status Engine::Impl::open_storage() {
  Result<storage::OpenedWal> opened =
      storage::Wal::open(data_dir_->wal_dir(), {.segment_bytes = options_.wal_segment_bytes});
  if (!opened.ok()) return opened.status();
  if (opened->log.report.torn_tail) {
    spdlog::warn("wal: {}", opened->log.report.describe());
  }
  wal_.emplace(std::move(opened->wal));
  Result<std::unique_ptr<storage::StateMachine>> st = storage::StateMachine::open(
      data_dir_->state_dir(), {.map_size = options_.state_map_size,
                               .history_revisions = options_.history_revisions,
                               .history_bytes = options_.history_bytes});
  if (!st.ok()) return with_rebuild_advice(st.status());
  state_ = std::move(*st);
  // The state and the log must agree before the Raft core sees either (consistency.h): a
  // violation (a state older than the log says, a log missing its newest segments, ...)
  // refuses the start with what is missing and what to do.
  if (Status s = storage::check_consistency(state_->facts(), storage::log_facts(*wal_)).status();
      !s.ok()) {
    return s;
  }
  if (options_.force_new_cluster) {
    KVC_RETURN_IF_ERROR(force_new_cluster(opened->log));
  }
  if (state_->membership().was_removed(identity_.member_id)) {
    return Status::failed_precondition(
        "this member (" + hex(identity_.member_id) +
        ") was removed from the cluster, as its own state records: it must not run again "
        "(to rejoin, add it again with kvc-ctl member add and start it with an empty data "
        "directory)");
  }
  incoming_snapshot_path_ = data_dir_->snap_dir() + "/incoming.tmp";
  // A transfer cut by a crash left a partial file: the leader starts it again.
  KVC_RETURN_IF_ERROR(storage::remove_temp_snapshots(data_dir_->snap_dir()));
  if (Result<std::vector<storage::SnapshotFile>> files =
          storage::list_snapshots(data_dir_->snap_dir());
      files.ok()) {
    for (const storage::SnapshotFile& f : *files) snapshot_files_[f.index] = f.path;
  }
  return make_node(std::move(opened->log));
}

// Disaster recovery (--force-new-cluster): every entry this member's log holds is kept and
// treated as committed (an acknowledged write reached a majority, and this member may hold it
// without knowing it committed), then membership changes are appended that leave this member
// the only voter. Written to the WAL and synced before the member starts, so it is done once.
Status Engine::Impl::force_new_cluster(storage::RecoveredLog& log) {
  const std::uint64_t d = state_->applied_index();
  raft::ConfState conf = current_membership().to_conf_state();
  std::uint64_t last = d;
  std::uint64_t last_term = state_->applied_term();
  for (const raft::Entry& e : log.entries) {
    if (e.index <= d) continue;
    if (e.type == raft::EntryType::kConfChange) {
      Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
      if (cc.ok()) {
        Result<raft::ConfState> next = raft::apply_conf_change(conf, *cc);
        if (next.ok()) conf = *next;
      }
    }
    last = e.index;
    last_term = e.term;
  }
  raft::HardState hs = log.hard_state.value_or(raft::HardState{});
  const std::uint64_t term = std::max(hs.term, last_term);
  const std::uint64_t self = identity_.member_id;
  std::vector<raft::Entry> extra;
  auto add = [&](const raft::ConfChange& cc) {
    Result<raft::ConfState> next = raft::apply_conf_change(conf, cc);
    if (!next.ok()) return;
    conf = *next;
    extra.push_back({++last, term, raft::EntryType::kConfChange, raft::encode_conf_change(cc)});
  };
  if (raft::is_learner(conf, self)) add({raft::ConfChangeType::kPromoteLearner, self, ""});
  if (!raft::is_voter(conf, self)) {
    storage::Membership one;
    one.members.push_back({self, identity_.name, options_.listen_peer, "", false});
    add({raft::ConfChangeType::kAddVoter, self, storage::encode_membership(one)});
  }
  std::vector<std::uint64_t> others;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id != self) others.push_back(id);
    }
  }
  for (std::uint64_t id : others) add({raft::ConfChangeType::kRemove, id, ""});
  hs.term = term;
  hs.commit = last;
  KVC_RETURN_IF_ERROR(wal_->append(hs, extra));
  KVC_RETURN_IF_ERROR(wal_->sync());
  spdlog::warn("forced a new cluster: this member is now its only voter; kept every entry up to "
               "index={} and removed {} other member(s); grow it again with kvc-ctl member add",
               last, others.size());
  for (raft::Entry& e : extra) log.entries.push_back(std::move(e));
  log.hard_state = hs;
  return Status();
}

// A new cluster's log starts with one committed "add voter" entry per bootstrap member, in id
// order, at term 1: every bootstrap member writes the same entries, and a member that joins
// later learns the whole membership by replaying the log from its start (as etcd does).
Status Engine::Impl::bootstrap_log(storage::RecoveredLog& log) {
  if (bootstrap_membership_.empty() || log.hard_state || !log.entries.empty() ||
      log.snapshot || state_->applied_index() != 0) {
    return Status();
  }
  std::vector<raft::Entry> entries;
  for (const storage::Member& m : bootstrap_membership_.members) {
    storage::Membership one;
    one.members.push_back(m);
    entries.push_back({entries.size() + 1, 1, raft::EntryType::kConfChange,
                       raft::encode_conf_change({raft::ConfChangeType::kAddVoter, m.id,
                                                 storage::encode_membership(one)})});
  }
  const raft::HardState hs{1, raft::kNoNode, entries.size()};
  KVC_RETURN_IF_ERROR(wal_->append(hs, entries));
  KVC_RETURN_IF_ERROR(wal_->sync());
  log.entries = std::move(entries);
  log.hard_state = hs;
  return Status();
}

Status Engine::Impl::make_node(storage::RecoveredLog log) {
  KVC_RETURN_IF_ERROR(bootstrap_log(log));
  // The state machine is the snapshot the log starts after: it durably holds everything up to
  // its applied index D (see docs/architecture.md, "Durability").
  const std::uint64_t d = state_->applied_index();
  const std::uint64_t d_term = state_->applied_term();
  // The configuration the log starts from: the state's. A new member's is empty: the log's
  // first entries (bootstrap_log), or the leader's log or snapshot for a member that joined,
  // bring the members.
  const storage::Membership& m = state_->membership();
  raft::RestoreState rs;
  rs.snapshot = {d, d_term, m.to_conf_state()};
  if (wal_->last_index() < d) {
    // The state is ahead of the log (restored from a snapshot by kvc-snap restore): the log
    // continues after it, which the WAL records with a snapshot marker.
    KVC_RETURN_IF_ERROR(wal_->save_snapshot(rs.snapshot));
    KVC_RETURN_IF_ERROR(wal_->sync());
  }
  if (log.hard_state) rs.hard_state = *log.hard_state;
  std::vector<raft::Entry> entries;
  std::uint64_t expect = d + 1;
  for (raft::Entry& e : log.entries) {
    if (e.index <= d) continue;
    // check_consistency (open_storage) refused a log that does not continue at d + 1.
    KVC_CHECK_EQ(e.index, expect);
    if (e.term < d_term) {
      spdlog::warn("dropping stale log entries after the state's index index={} term={} "
                   "state_term={}",
                   e.index, e.term, d_term);
      break;
    }
    entries.push_back(std::move(e));
    ++expect;
  }
  const std::uint64_t last = entries.empty() ? d : entries.back().index;
  rs.hard_state.commit = std::clamp(rs.hard_state.commit, d, last);
  if (rs.hard_state.term < d_term) rs.hard_state.term = d_term;
  rs.entries = std::move(entries);
  rs.applied = d;
  synced_hard_state_ = rs.hard_state;
  // A repair that was in progress when the member stopped goes on (raft/node.h, REPAIR).
  repair_path_ = data_dir_->path() + "/repair";
  Result<std::optional<storage::RepairRecord>> repair = storage::load_repair_file(repair_path_);
  if (!repair.ok()) return repair.status();
  if (*repair) {
    rs.repair = (*repair)->state;
    spdlog::warn("resuming a repair: this member will not lead until it is repaired log_to={} "
                 "needs_snapshot={} snapshot_from={} reason=\"{}\"",
                 rs.repair.log_to, rs.repair.needs_snapshot, rs.repair.snapshot_from,
                 (*repair)->reason);
    if (rs.repair.needs_snapshot) {
      damaged_ = true;
      damage_reason_ = (*repair)->reason.empty() ? "damaged before the last restart"
                                                 : (*repair)->reason;
    }
  }

  rng_ = raft::SplitMix64(random_u64());
  raft::Config cfg;
  cfg.id = identity_.member_id;
  cfg.election_ticks = options_.election_ticks;
  cfg.heartbeat_ticks = options_.heartbeat_ticks;
  cfg.rng = &rng_;
  cfg.logger = &raft_logger_;
  // New at every start: lets a leader tell this incarnation from the last one (REPAIR).
  cfg.boot_id = random_u64() | 1;
  // Under load a learner is always a few entries behind; the engine's own check (member
  // promote) bounds the lag it accepts, so the core only refuses gross lag.
  cfg.promote_lag_slack = options_.retained_entries / 10 + 100;
  Result<std::unique_ptr<raft::Node>> node = raft::Node::create(cfg, std::move(rs));
  if (!node.ok()) return node.status().with_context("restoring the raft state");
  node_ = std::move(*node);
  // As etcd does by default (--initial-election-tick-advance), a starting member begins one
  // tick short of the shortest election timeout: a restarted cluster elects a leader after
  // [1, election_ticks] ticks instead of [election_ticks, 2 * election_ticks). A live leader
  // is not disturbed: its followers ignore (pre-)votes while they hear from it.
  for (int i = 1; i < options_.election_ticks; ++i) node_->tick();
  for (const storage::Member& mem : m.members) learned_[mem.id] = mem;
  spdlog::info("restored state applied={} term={} log_last={} commit={}", d, d_term, last,
               node_->commit());
  return Status();
}

Status Engine::Impl::bind_listeners() {
  metrics_ = std::make_unique<EngineMetrics>(identity_.name, hex(identity_.member_id));
  metrics_->registry.add_collector([this] { collect_metrics(); });
  Result<net::Address> peer = net::parse_address(options_.listen_peer);
  if (!peer.ok()) return peer.status().with_context("--listen-peer");
  // Clients first: with port 0 the bound address is what peers must be told.
  if (!options_.listen_client.empty()) {
    Result<net::Address> c = net::parse_address(options_.listen_client);
    if (!c.ok()) return c.status().with_context("--listen-client");
    // A frame over the limit from a client past its hello is skipped unread and refused in so
    // many words (a hello reply naming its size), so the client knows nothing in it was
    // applied. Before the hello, or absurdly large (a length no client sends), it is garbage
    // and closes the connection.
    auto refuse_oversized = [this](net::Connection& conn, std::size_t frame_bytes) {
      auto it = clients_.find(conn.tag);
      if (it == clients_.end() || !it->second.hello_done || it->second.refused) return false;
      if (frame_bytes > std::max<std::uint64_t>(4 * options_.max_frame_bytes, 256u << 20)) {
        return false;
      }
      spdlog::warn("refused an oversized frame from={} bytes={} limit={}", conn.peer(), frame_bytes,
                   options_.max_frame_bytes);
      std::string out;
      wire::append_hello_reply(out, {.code = Code::kInvalidArgument,
                                     .message = "frame of " + std::to_string(frame_bytes) +
                                                " bytes exceeds the member's limit of " +
                                                std::to_string(options_.max_frame_bytes) +
                                                " bytes (kvc-node --max-frame-bytes)",
                                     .cluster_id = identity_.cluster_id,
                                     .member_id = identity_.member_id,
                                     .name = identity_.name,
                                     .software_version = kvc::version(),
                                     .max_frame_bytes = options_.max_frame_bytes,
                                     .max_request_bytes = options_.max_request_bytes,
                                     .refused_frame_bytes = frame_bytes});
      conn.send(out);
      return true;
    };
    net::ConnectionOptions client_options{.max_frame_bytes = options_.max_frame_bytes,
                                          .pause_reading_above = 8u << 20,
                                          .close_above = 256u << 20};
    client_options.on_oversized = std::move(refuse_oversized);
    client_listener_ = std::make_unique<net::Listener>(&loop_, std::move(client_options));
    if (Status s = client_listener_->listen(
            *c, [this](std::shared_ptr<net::Connection> conn) { on_client_accept(conn); });
        !s.ok()) {
      return s.with_context("--listen-client");
    }
    client_bound_ = client_listener_->bound().to_string();
  }
  const std::string advertise_client =
      options_.advertise_client.empty() ? client_bound_ : options_.advertise_client;
  const storage::Member* self = member(identity_.member_id);
  PeerTransportOptions po;
  po.self_id = identity_.member_id;
  po.cluster_id = identity_.cluster_id;
  po.name = identity_.name;
  po.max_frame_bytes = options_.max_frame_bytes;
  po.peer_addr = self != nullptr && !self->peer_addr.empty() ? self->peer_addr
                                                              : options_.listen_peer;
  po.client_addr = advertise_client;
  po.token_digest = join_token_digest(options_.cluster_token);
  po.secret = options_.secret;
  po.max_incoming = options_.max_peer_connections;
  peers_ = std::make_unique<PeerTransport>(
      &loop_, po,
      [this](raft::Message m) {
        if (stopped_) return;
        if (m.type == raft::MessageType::kHeartbeatResp) {
          auto sent = heartbeat_sent_.find(m.from);
          if (sent != heartbeat_sent_.end()) {
            const storage::Member* p = member(m.from);
            metrics_->peer_round_trip(p != nullptr && !p->name.empty() ? p->name : hex(m.from))
                .observe(static_cast<double>(uv_now(&loop_) - sent->second) / 1000.0);
            heartbeat_sent_.erase(sent);
          }
        }
        Status s = node_->step(m);
        if (!s.ok()) spdlog::warn("dropped raft message from={} error={}", hex(m.from), s.message());
      },
      [this](std::uint64_t id, bool snapshot) {
        if (stopped_) return;
        if (snapshot) {
          node_->report_snapshot(id, false);
        } else {
          node_->report_unreachable(id);
        }
      },
      [this](const PeerInfo& info) {
        const bool known = learned_.count(info.id) != 0 && !learned_[info.id].peer_addr.empty();
        storage::Member& m = learned_[info.id];
        m.id = info.id;
        if (!info.name.empty()) m.name = info.name;
        if (!info.peer_addr.empty() && m.peer_addr.empty()) m.peer_addr = info.peer_addr;
        if (!info.client_addr.empty()) m.client_addr = info.client_addr;
        if (!known && !m.peer_addr.empty()) update_peers();
      },
      [this](const std::string& name) { return lookup_joining(name); },
      [this](const std::string& told_by) {
        if (stopped_ || removed_) return;
        removed_ = true;
        spdlog::warn("this member was removed from the cluster (told by {}); stopping", told_by);
        inbox_.post([this] {
          fatal(Status::failed_precondition("this member was removed from the cluster"));
        });
      });
  if (Status s = peers_->listen(*peer); !s.ok()) return s.with_context("--listen-peer");
  peer_bound_ = peers_->bound().to_string();
  storage::Member& me = learned_[identity_.member_id];
  me.id = identity_.member_id;
  me.name = identity_.name;
  me.client_addr = advertise_client;
  if (me.peer_addr.empty()) me.peer_addr = peer_bound_;
  // Non-loopback listeners without a secret are warned about in start() (exposure_warnings).
  if (!options_.listen_http.empty()) {
    Result<net::Address> h = net::parse_address(options_.listen_http);
    if (!h.ok()) return h.status().with_context("--listen-http");
    http_backend_ = std::make_unique<EngineHttpBackend>(*this);
    http_routes_ = std::make_unique<http::KvRoutes>(
        *http_backend_, http::KvRoutesOptions{.max_request_bytes = options_.max_request_bytes});
    http::HttpServerOptions ho;
    ho.address = *h;
    // Room for a value sent base64-encoded in a JSON body.
    ho.limits.max_body_bytes = options_.max_request_bytes / 3 * 4 + (16u << 10);
    ho.metrics = &metrics_->registry;
    http_ = std::make_unique<http::HttpServer>(&loop_, ho, http_routes_->handler());
    if (Status s = http_->listen(); !s.ok()) return s.with_context("--listen-http");
    http_bound_ = http_->bound().to_string();
    if (!h->is_loopback()) {
      spdlog::warn("serving HTTP on {}, which is not a loopback address: anyone who can reach "
                   "it can read and write keys",
                   h->to_string());
    }
  }
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Membership

const storage::Member* Engine::Impl::member(std::uint64_t id) const {
  auto it = learned_.find(id);
  if (it != learned_.end()) return &it->second;
  if (state_) {
    if (const storage::Member* m = state_->membership().find(id)) return m;
  }
  return bootstrap_membership_.find(id);
}

void Engine::Impl::update_peers() {
  if (stopped_) return;
  const raft::ConfState& conf = node_->conf_state();
  std::map<std::uint64_t, std::string> peers;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id == identity_.member_id) continue;
      const storage::Member* m = member(id);
      if (m != nullptr && !m->peer_addr.empty()) peers[id] = m->peer_addr;
    }
  }
  // Members this one heard from but whose addition it has not seen yet (a joining member
  // answers the leader before the log tells it who the members are).
  for (const auto& [id, m] : learned_) {
    if (id != identity_.member_id && !m.peer_addr.empty() && peers.count(id) == 0 &&
        conf.voters.empty() && conf.learners.empty()) {
      peers[id] = m.peer_addr;
    }
  }
  peers_->set_peers(peers);
  // Removed ids are part of the stored membership (so they survive restarts and arrive with
  // snapshots): their connections are refused with `removed` set, so a removed member stops.
  for (const std::uint64_t id : state_->membership().removed) {
    if (id != identity_.member_id) peers_->mark_removed(id);
  }
}

Result<std::uint64_t> Engine::Impl::lookup_joining(const std::string& name) const {
  const raft::ConfState& conf = node_->conf_state();
  for (const auto& [id, m] : learned_) {
    if (m.name == name && (raft::is_voter(conf, id) || raft::is_learner(conf, id))) return id;
  }
  const storage::Membership cur = current_membership();
  if (const storage::Member* m = cur.find_name(name)) return m->id;
  return Status::not_found("no member named '" + name +
                           "' has been added to the cluster (kvc-ctl member add " + name +
                           " PEER_ADDR)");
}

void Engine::Impl::learn_entries(const std::vector<raft::Entry>& entries) {
  bool changed = false;
  for (const raft::Entry& e : entries) {
    if (e.type != raft::EntryType::kConfChange) continue;
    Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
    if (!cc.ok() || cc->context.empty()) continue;
    // An address update takes effect when it is applied (apply_conf_entry), not on append:
    // an update that never commits must not leave this member dialling the wrong address.
    if (cc->type == raft::ConfChangeType::kUpdate) continue;
    Result<storage::Membership> one = storage::decode_membership(cc->context);
    if (!one.ok() || one->members.size() != 1) continue;
    storage::Member& m = learned_[cc->node];
    const storage::Member& from = one->members.front();
    m.id = cc->node;
    if (!from.name.empty()) m.name = from.name;
    if (!from.peer_addr.empty()) m.peer_addr = from.peer_addr;
    if (!from.client_addr.empty()) m.client_addr = from.client_addr;
    changed = true;
  }
  if (changed) update_peers();
}

void Engine::Impl::on_conf_state(const raft::ConfState&) { update_peers(); }

// ---------------------------------------------------------------------------------------------
// Time and the Raft loop

void Engine::Impl::on_tick() {
  if (stopped_) return;
  node_->tick();
  sweep_deadlines();
}

void Engine::Impl::on_check() {
  if (stopped_) return;
  if (!unsent_reads_.empty()) start_read_batch();
  process_ready();
  if (!snapshot_sends_.empty()) pump_transfers();
}

void Engine::Impl::process_ready() {
  // After a fatal error nothing more is written: the WAL may be unusable (its errors stick).
  while (!persisting_ && !stopped_ && !failed_ && node_->has_ready()) {
    auto job = std::make_shared<PersistJob>();
    job->rd = node_->ready();
    raft::Ready& rd = job->rd;
    if (rd.soft_state) on_soft_state(*rd.soft_state);
    learn_entries(rd.entries);
    if (rd.conf_state) on_conf_state(*rd.conf_state);
    for (raft::Message& m : rd.messages) send_message(std::move(m));
    rd.messages.clear();
    if (rd.snapshot_wanted) make_snapshot_for_followers();

    const bool disk = rd.hard_state || !rd.entries.empty() || rd.snapshot ||
                      !rd.snapshot_chunks.empty() || rd.repair;
    if (rd.repair) {
      std::string reason = damage_reason_;
      if (rd.repair->log_to != 0) {
        if (!reason.empty()) reason += "; ";
        reason += "the leader found that this member lost log entries it had acknowledged (up "
                  "to index " + std::to_string(rd.repair->log_to) + ")";
      }
      job->repair = storage::RepairRecord{*rd.repair, rd.repair->active() ? reason : ""};
      metrics_->raft_repairing.set(rd.repair->active() ? 1 : 0);
    }
    if (!disk) {
      complete_ready(rd);
      continue;
    }
    // Committed entries that are already durable here are applied now, before this Ready's
    // write, so their clients do not wait for an fsync (or a disk-thread round trip) that does
    // not protect them. Durable: every entry but this Ready's new ones, since each earlier
    // Ready was persisted before the next was taken; a leader commits only what it has made
    // durable, and a follower's committed entries below rd.entries can never be overwritten.
    // etcd's server likewise applies while the WAL is being written. Read states do not
    // depend on this member's disk either.
    if (!rd.snapshot && !rd.committed.empty()) {
      const std::uint64_t limit =
          rd.entries.empty() ? UINT64_MAX : rd.entries.front().index - 1;
      const auto split = std::partition_point(
          rd.committed.begin(), rd.committed.end(),
          [limit](const raft::Entry& e) { return e.index <= limit; });
      if (split != rd.committed.begin()) {
        std::vector<raft::Entry> durable(std::make_move_iterator(rd.committed.begin()),
                                         std::make_move_iterator(split));
        rd.committed.erase(rd.committed.begin(), split);
        apply_committed(durable);
      }
    }
    for (const raft::ReadState& rs : rd.read_states) {
      for (ReadBatch& b : read_batches_) {
        if (b.context == rs.context && b.index == 0) {
          b.index = std::max<std::uint64_t>(rs.index, 1);
          break;
        }
      }
    }
    rd.read_states.clear();
    serve_reads();
    // Only what Raft's safety depends on needs an fsync now: entries, and a term or vote. A
    // commit index alone may reach the disk later (it is recomputed after a crash).
    job->sync = !rd.entries.empty() || rd.snapshot.has_value() ||
                (rd.hard_state && (rd.hard_state->term != synced_hard_state_.term ||
                                   rd.hard_state->vote != synced_hard_state_.vote));
    persisting_ = true;
    if (rd.snapshot) {
      install_then_persist(job);
      return;
    }
    disk_->post([this, job] {
      // The repair state first: it is what keeps this member from voting after a restart.
      Status s = job->repair ? storage::save_repair_file(repair_path_, *job->repair) : Status();
      if (s.ok()) s = wal_->append(job->rd.hard_state, job->rd.entries);
      if (s.ok()) {
        for (const raft::SnapshotChunk& c : job->rd.snapshot_chunks) {
          const int flags = O_WRONLY | O_CREAT | (c.offset == 0 ? O_TRUNC : 0);
          Result<storage::UniqueFd> fd =
              storage::open_file(incoming_snapshot_path_, flags, 0600);
          if (!fd.ok()) {
            s = fd.status();
            break;
          }
          s = storage::pwrite_all(fd->get(), c.data, c.offset, incoming_snapshot_path_);
          if (!s.ok()) break;
        }
      }
      if (s.ok() && job->sync) {
        const auto t0 = std::chrono::steady_clock::now();
        s = wal_->sync();
        metrics_->wal_fsync.observe_since(t0);
      }
      job->status = s;
      inbox_.post([this, job] { on_persisted(job); });
    });
    return;
  }
}

// A received snapshot: the chunks are written, the state is staged from the file (disk
// thread), made live (loop thread, once no flush runs), and only then does the WAL record the
// snapshot marker and the Ready's entries, so a crash never leaves the WAL ahead of the state.
void Engine::Impl::install_then_persist(std::shared_ptr<PersistJob> job) {
  install_started_ = std::chrono::steady_clock::now();
  disk_->post([this, job] {
    Status s;
    for (const raft::SnapshotChunk& c : job->rd.snapshot_chunks) {
      const int flags = O_WRONLY | O_CREAT | (c.offset == 0 ? O_TRUNC : 0);
      Result<storage::UniqueFd> fd = storage::open_file(incoming_snapshot_path_, flags, 0600);
      if (!fd.ok()) {
        s = fd.status();
        break;
      }
      s = storage::pwrite_all(fd->get(), c.data, c.offset, incoming_snapshot_path_);
      if (!s.ok()) break;
    }
    std::string adopted;
    if (s.ok()) {
      // Kept under its canonical name: this member may have to send it on as leader.
      Result<storage::SnapshotInfo> info =
          storage::adopt_snapshot(incoming_snapshot_path_, data_dir_->snap_dir());
      if (info.ok()) {
        adopted = info->path;
        s = storage::prune_snapshots(data_dir_->snap_dir(),
                                     std::max<std::size_t>(options_.snapshots_kept, 1));
      } else {
        s = info.status();
      }
    }
    if (s.ok()) {
      Result<storage::StagedInstall> staged = state_->stage_install(adopted);
      if (staged.ok()) {
        job->staged = std::move(*staged);
      } else {
        s = staged.status();
      }
    }
    job->status = s;
    inbox_.post([this, job, adopted] {
      if (!job->status.ok()) {
        persisting_ = false;  // the job is over: shutdown must not wait for it
        fatal(job->status.with_context("installing a snapshot from the leader"));
        return;
      }
      snapshot_files_[job->rd.snapshot->index] = adopted;
      install_waiting_ = job;
      resume_install();
    });
  });
}

void Engine::Impl::on_persisted(std::shared_ptr<PersistJob> job) {
  if (stopped_) return;
  if (!job->status.ok()) {
    persisting_ = false;  // the job is over: shutdown must not wait for it
    fatal(job->status.with_context("writing the log"));
    return;
  }
  if (job->rd.hard_state && job->sync) synced_hard_state_ = *job->rd.hard_state;
  if (job->sync && (!job->rd.entries.empty() || job->rd.snapshot)) {
    // The log now durably holds every committed entry up to here; the state records it with
    // its next flush, so a start notices a log that lost them (consistency.h).
    const std::uint64_t synced =
        job->rd.entries.empty() ? job->rd.snapshot->index : job->rd.entries.back().index;
    state_->note_log_durable(std::min(synced, node_->commit()));
  }
  persisting_ = false;
  complete_ready(job->rd);
  process_ready();
}

void Engine::Impl::complete_ready(const raft::Ready& rd) {
  for (const raft::Message& m : rd.messages_after_persist) send_message(m);
  node_->advance(rd);
  if (rd.snapshot || rd.repair) note_repair_progress();
  if (!rd.committed.empty()) apply_committed(rd.committed);
  for (const raft::ReadState& rs : rd.read_states) {
    for (ReadBatch& b : read_batches_) {
      if (b.context == rs.context && b.index == 0) {
        b.index = std::max<std::uint64_t>(rs.index, 1);
        break;
      }
    }
  }
  serve_reads();
  if (!ready_.load() && !damaged_ && node_->leader() != raft::kNoNode &&
      state_->applied_index() >= ready_at_commit_) {
    ready_.store(true);
  }
}

void Engine::Impl::send_message(raft::Message m) {
  if (m.type == raft::MessageType::kSnapshot) {
    if (Status s = fill_snapshot_chunk(m); !s.ok()) {
      spdlog::warn("cannot send snapshot chunk peer={} error={}", hex(m.to), s.message());
      node_->report_snapshot(m.to, false);
      // The file is gone (or this member's snapshot came from an install): make a new one,
      // which replaces the one the core offers.
      if (s.code() == Code::kNotFound) make_snapshot_for_followers();
      return;
    }
    if (m.snapshot_offset + m.chunk.size() >= m.snapshot_size) metrics_->snapshots_sent.inc();
  }
  if (m.type == raft::MessageType::kHeartbeat) heartbeat_sent_.try_emplace(m.to, uv_now(&loop_));
  peers_->send(m);
}

void Engine::Impl::on_soft_state(const raft::SoftState& ss) {
  if (ss.leader == last_leader_) return;
  last_leader_ = ss.leader;
  metrics_->leader_changes.inc();
  heartbeat_sent_.clear();
  LeaderInfo info;
  info.id = ss.leader;
  info.term = ss.term;
  if (const storage::Member* m = member(ss.leader)) {
    info.name = m->name;
    info.client_addr = m->client_addr;
  }
  if (ss.leader == raft::kNoNode) {
    spdlog::info("no leader term={}", ss.term);
    ready_.store(false);
  } else {
    spdlog::info("leader changed leader={} name={} term={} role={}", hex(ss.leader), info.name,
                 ss.term, raft::role_name(ss.role));
    ready_at_commit_ = node_->commit();
  }
  std::vector<std::function<void(const LeaderInfo&)>> callbacks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    leader_info_ = info;
    callbacks = leader_callbacks_;
  }
  for (auto& cb : callbacks) cb(info);
  notify_leader_watchers();
  settle_transfers();
}

// ---------------------------------------------------------------------------------------------
// Applying committed entries

void Engine::Impl::apply_committed(const std::vector<raft::Entry>& entries) {
  for (const raft::Entry& e : entries) apply_queue_.push_back(e);
  drain_apply();
}

namespace {
bool is_barrier(const raft::Entry& e) {
  return e.type == raft::EntryType::kNormal && e.data.size() >= 2 &&
         static_cast<std::uint8_t>(e.data[0]) == storage::kCommandVersion &&
         static_cast<std::uint8_t>(e.data[1]) ==
             static_cast<std::uint8_t>(storage::CommandOp::kBarrier);
}
}  // namespace

// Applies queued committed entries in order. A barrier (kvc-ctl check hash) must be hashed at
// exactly its index, which takes a flush of everything up to it: while another flush is still
// running, applying stops at the barrier and after_flush() resumes it.
void Engine::Impl::drain_apply() {
  // A damaged state applies nothing: the entries wait in the queue for the repair snapshot
  // (the ones it covers are then skipped, the rest applied on top of it).
  if (damaged_) return;
  const std::uint64_t before = state_->applied_index();
  const auto t0 = std::chrono::steady_clock::now();
  while (!apply_queue_.empty() && !stopped_ && !damaged_) {
    const raft::Entry& e = apply_queue_.front();
    const bool barrier = is_barrier(e) && e.index > state_->applied_index();
    if (barrier && flushing_) break;
    if (!apply_one(e)) return;
    if (barrier) take_barrier_hash(e.index);
    apply_queue_.pop_front();
  }
  if (state_->applied_index() == before) return;
  metrics_->apply.observe_since(t0);
  metrics_->entries_applied.inc(state_->applied_index() - before);
  node_->applied_to(state_->applied_index());
  notify_watchers();
  if (state_->active_stats().bytes >= options_.flush_bytes) maybe_flush(true);
}

storage::Membership Engine::Impl::current_membership() const { return state_->membership(); }

void Engine::Impl::apply_conf_entry(const raft::Entry& e) {
  storage::Membership m = current_membership();
  Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
  // The same rule the Raft core uses on append, so the stored membership and the core's
  // configuration never disagree.
  Result<raft::ConfState> next =
      cc.ok() ? raft::apply_conf_change(m.to_conf_state(), *cc) : Result<raft::ConfState>(cc.status());
  if (!next.ok()) {
    spdlog::warn("conf change entry changes nothing index={} reason={}", e.index,
                 next.status().message());
    state_->apply_noop(e.index, e.term);
    return;
  }
  auto it = std::find_if(m.members.begin(), m.members.end(),
                         [&](const storage::Member& x) { return x.id == cc->node; });
  switch (cc->type) {
    case raft::ConfChangeType::kAddVoter:
    case raft::ConfChangeType::kAddLearner: {
      storage::Member nm;
      if (const storage::Member* known = member(cc->node)) nm = *known;
      nm.id = cc->node;
      nm.learner = cc->type == raft::ConfChangeType::kAddLearner;
      m.removed.erase(std::remove(m.removed.begin(), m.removed.end(), nm.id), m.removed.end());
      m.members.push_back(nm);
      std::sort(m.members.begin(), m.members.end(),
                [](const auto& a, const auto& b) { return a.id < b.id; });
      spdlog::info("member added id={} name={} peer={} learner={} index={}", hex(nm.id), nm.name,
                   nm.peer_addr, nm.learner, e.index);
      break;
    }
    case raft::ConfChangeType::kPromoteLearner:
      if (it != m.members.end()) it->learner = false;
      spdlog::info("member promoted to voter id={} index={}", hex(cc->node), e.index);
      break;
    case raft::ConfChangeType::kRemove:
      if (it != m.members.end()) m.members.erase(it);
      m.add_removed(cc->node);  // persisted with the membership: see update_peers()
      spdlog::info("member removed id={} index={}", hex(cc->node), e.index);
      if (cc->node != identity_.member_id) {
        learned_.erase(cc->node);
        if (peers_) peers_->mark_removed(cc->node);
      }
      break;
    case raft::ConfChangeType::kUpdate: {
      // The new addresses come from the entry itself, so every member stores the same.
      Result<storage::Membership> one = storage::decode_membership(cc->context);
      if (it == m.members.end() || !one.ok() || one->members.size() != 1 ||
          one->members.front().peer_addr.empty()) {
        spdlog::warn("member update entry changes nothing index={} id={}", e.index, hex(cc->node));
        state_->apply_noop(e.index, e.term);
        return;
      }
      const std::string old_addr = it->peer_addr;
      it->peer_addr = one->members.front().peer_addr;
      if (auto l = learned_.find(cc->node); l != learned_.end()) {
        l->second.peer_addr = it->peer_addr;
      }
      spdlog::info("member updated id={} name={} peer={} old_peer={} index={}", hex(cc->node),
                   it->name, it->peer_addr, old_addr, e.index);
      break;
    }
  }
  if (!storage::validate_membership(m).ok()) {
    spdlog::error("conf change would make an invalid membership index={}", e.index);
    state_->apply_noop(e.index, e.term);
    return;
  }
  state_->apply_membership(e.index, e.term, std::move(m));
  update_peers();
  if (cc->type == raft::ConfChangeType::kRemove && cc->node == identity_.member_id &&
      !removed_) {
    removed_ = true;
    spdlog::warn("this member was removed from the cluster index={}; stopping", e.index);
    inbox_.post([this] {
      fatal(Status::failed_precondition("this member was removed from the cluster"));
    });
  }
}

// Applies one committed entry; false after a fatal error.
bool Engine::Impl::apply_one(const raft::Entry& e) {
  if (e.index <= state_->applied_index()) return true;  // already in the state (replay)
  if (e.type == raft::EntryType::kConfChange) {
    apply_conf_entry(e);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
  if (e.data.empty()) {
    state_->apply_noop(e.index, e.term);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
  Result<storage::Command> cmd = storage::decode_command(e.data);
  if (!cmd.ok()) {
    // Every member fails the same way on the same bytes; stopping them all would make one bad
    // entry an outage, so it is skipped loudly.
    spdlog::error("skipping undecodable command index={} error={}", e.index,
                  cmd.status().message());
    state_->apply_noop(e.index, e.term);
    finish_waiter(e.index, e, std::nullopt, nullptr);
    return true;
  }
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "diverge-apply" && cmd->op == storage::CommandOp::kPut &&
      cmd->key.rfind("/diverge", 0) == 0) {
    // Broken on purpose (test builds only): this member's state silently differs.
    cmd->value += "-diverged";
  }
#endif
  Result<storage::ApplyResult> r = state_->apply(e.index, e.term, *cmd);
  if (!r.ok()) {
    // Nothing was applied: the entry stays queued until the state is repaired (or, for an
    // I/O error, the member stops).
    if (!damage(r.status(), "applying entry " + std::to_string(e.index))) {
      fatal(r.status().with_context("applying entry " + std::to_string(e.index)));
    }
    return false;
  }
  if (cmd->op == storage::CommandOp::kHashVerdict) apply_hash_verdict(cmd->expect_revision, cmd->hash);
  finish_waiter(e.index, e, *cmd, &*r);
  return true;
}

// Freezes the state exactly at a barrier's index, flushes it, and hashes LMDB at that index on
// the flush thread (the owning thread never blocks on a whole-state scan).
void Engine::Impl::take_barrier_hash(std::uint64_t index) {
  KVC_CHECK(!flushing_, "a barrier hash needs the flush thread to itself");
  KVC_CHECK_EQ(state_->applied_index(), index);
  const bool frozen = state_->freeze();
  KVC_CHECK(frozen, "the barrier was just applied, so there is something to freeze");
  flushing_ = true;
  pending_barrier_ = index;
  last_flush_ms_ = uv_now(&loop_);
  const std::uint64_t term = state_->applied_term();
  const raft::ConfState conf = current_membership().to_conf_state();
  flush_->post([this, index, term, conf] {
    const auto t0 = std::chrono::steady_clock::now();
    Status s = state_->flush();
    if (s.ok()) metrics_->state_flush.observe_since(t0);
    Result<storage::StateMachine::IndexedHash> h =
        s.ok() ? state_->durable_hash() : Result<storage::StateMachine::IndexedHash>(s);
    inbox_.post([this, s, h, index, term, conf] {
      flushing_ = false;
      pending_barrier_ = 0;
      if (!s.ok()) {
        fatal(s.with_context("flushing the state"));
        return;
      }
      state_->retire_frozen();
      std::uint64_t hash = 0;
      Status hs = h.ok() ? Status() : h.status();
      if (h.ok() && h->index != index) {
        hs = Status::internal("hashed index " + std::to_string(h->index) + " instead of " +
                              std::to_string(index));
      }
      if (hs.ok()) {
        hash = h->hash;
        barrier_hashes_[index] = hash;
        while (barrier_hashes_.size() > 32) barrier_hashes_.erase(barrier_hashes_.begin());
        spdlog::info("state hash at barrier index={} hash={:016x}", index, hash);
      } else if (damage(hs, "hashing the state at index " + std::to_string(index))) {
        hs = Status::unavailable(damaged_message());
      } else {
        spdlog::error("state hash at barrier failed index={} error={}", index, hs.message());
      }
      auto waiting = hash_waiters_.find(index);
      if (waiting != hash_waiters_.end()) {
        for (PendingRead& pr : waiting->second) {
          wire::Response r = base_response(pr.req.id);
          r.revision = index;
          r.hash = hash;
          if (!hs.ok()) set_error(r, hs);
          pr.reply(std::move(r));
        }
        hash_waiters_.erase(waiting);
      }
      after_flush(index, term, conf);
    });
  });
}

void Engine::Impl::finish_waiter(std::uint64_t index, const raft::Entry& e,
                                 const std::optional<storage::Command>& cmd,
                                 const storage::ApplyResult* result) {
  auto it = waiters_.find(index);
  if (it == waiters_.end()) return;
  Waiter w = std::move(it->second);
  waiters_.erase(it);
  wire::Response r = base_response(w.req.id);
  const bool ours = e.term == w.term && (w.conf_data.empty()
                                             ? cmd && cmd->request_id == w.request_id
                                             : e.data == w.conf_data);
  if (ours) metrics_->proposals_committed.inc();
  if (!ours) {
    // Another entry took this index: ours was dropped by a leader change, never applied.
    metrics_->proposals_dropped.inc();
    r.code = Code::kUnavailable;
    r.message = "leadership changed before the request committed; it was not applied";
    w.reply(std::move(r));
    return;
  }
  if (!w.conf_data.empty()) {
    // A membership change: answer with the membership it produced.
    const storage::Membership m = current_membership();
    for (const storage::Member& mem : m.members) {
      const storage::Member* known = member(mem.id);
      r.members.push_back({mem.id, mem.name, mem.peer_addr,
                           known != nullptr ? known->client_addr : mem.client_addr, mem.learner,
                           mem.id == node_->leader()});
    }
    r.revision = e.index;
    // kvc-ctl member add prints the new member's command line, which needs the token.
    if (w.req.op == wire::Op::kMemberAdd) r.data = options_.cluster_token;
    w.reply(std::move(r));
    return;
  }
  if (w.req.op == wire::Op::kHash) {
    // The barrier is applied; the hash arrives once it is flushed (take_barrier_hash).
    hash_waiters_[index].push_back({std::move(w.req), std::move(w.reply), w.deadline});
    return;
  }
  r.revision = std::max(state_->revision(), result->revision);
  switch (w.req.op) {
    case wire::Op::kPut:
      r.revision = result->revision;
      break;
    case wire::Op::kDelete:
      r.found = result->deleted > 0;
      r.count = result->deleted;
      if (result->code == Code::kNotFound) {
        r.found = false;
      }
      break;
    case wire::Op::kCas:
      if (result->code == Code::kCompareFailed) {
        r.code = Code::kCompareFailed;
        r.revision = result->revision;
        r.message = "the key's mod revision is " + std::to_string(result->revision) +
                    ", not " + std::to_string(w.req.expect_revision);
      } else {
        r.revision = result->revision;
        r.found = true;
      }
      break;
    default: break;
  }
  if (result->code == Code::kInvalidArgument) {
    r.code = Code::kInvalidArgument;
    r.message = "the state machine refused the command (key or value too large)";
  }
  w.reply(std::move(r));
}

void Engine::Impl::fatal(const Status& s) {
  if (!failed_) spdlog::critical("stopping: {}", s.to_string());
  failed_ = true;
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failure_.ok()) failure_ = s;
  }
  begin_shutdown();
}

// ---------------------------------------------------------------------------------------------
// Integrity: damage found in the state, and its repair

bool Engine::Impl::damage(const Status& s, const std::string& where) {
  if (s.code() != Code::kCorruption) return false;
  metrics_->damage_found.inc();
  if (!damaged_) {
    damaged_ = true;
    damage_reason_ = where + ": " + s.message();
    ready_.store(false);
    metrics_->state_damaged.set(1);
    spdlog::error("state damaged where=\"{}\" error=\"{}\": this member serves no reads, "
                  "applies nothing and does not lead until a snapshot from the leader replaces "
                  "its state",
                  where, s.message());
  } else {
    spdlog::debug("more state damage where=\"{}\" error=\"{}\"", where, s.message());
  }
  if (!stopping_) node_->mark_damaged(state_->applied_index());
  return true;
}

std::string Engine::Impl::damaged_message() const {
  return "member " + identity_.name + " serves no reads: its state is damaged (" +
         damage_reason_ + ") and is being repaired with a snapshot from the leader; ask another "
         "member";
}

void Engine::Impl::note_repair_progress() {
  metrics_->raft_repairing.set(node_->repair().active() ? 1 : 0);
  if (!damaged_ || node_->repair().needs_snapshot) return;
  spdlog::info("state repaired: replaced by the leader's snapshot applied={}; serving again",
               state_->applied_index());
  damaged_ = false;
  damage_reason_.clear();
  metrics_->state_damaged.set(0);
  metrics_->repairs_completed.inc();
  ready_at_commit_ = node_->commit();
  drain_apply();
}

// The scrubber: every kScrubTickMs, verify a batch of stored records on the scrub thread, at
// about --scrub-rate bytes a second (a token bucket refilled by elapsed time, never more than a
// second's worth), so damage in keys nobody reads is found and repaired before a snapshot or a
// read needs them. It stands aside while the state is damaged or an install waits.
void Engine::Impl::scrub_tick() {
  const std::uint64_t now = uv_now(&loop_);
  const double rate = static_cast<double>(options_.scrub_bytes_per_second);
  if (scrub_last_ms_ != 0) {
    scrub_allowance_ += rate * static_cast<double>(now - scrub_last_ms_) / 1000.0;
    scrub_allowance_ = std::min(scrub_allowance_, rate);
  }
  scrub_last_ms_ = now;
  if (scrubbing_ || damaged_ || stopping_ || install_waiting_ || scrub_allowance_ <= 0) return;
  const std::size_t records = static_cast<std::size_t>(
      std::clamp(scrub_allowance_ / std::max(scrub_record_bytes_, 1.0), 1.0, 4096.0));
  if (scrub_cursor_.stage == storage::ScrubCursor::Stage::kMeta && scrub_cursor_.next_key.empty()) {
    scrub_pass_started_ = std::chrono::steady_clock::now();
  }
  scrubbing_ = true;
  const storage::ScrubCursor from = scrub_cursor_;
  scrub_->post([this, from, records] {
    Result<storage::ScrubBatch> batch = state_->scrub(from, records);
    inbox_.post([this, batch = std::move(batch)] {
      scrubbing_ = false;
      resume_install();
      if (!batch.ok()) {
        if (!damage(batch.status(), "the scrubber")) {
          spdlog::warn("scrub failed; starting the pass again error={}", batch.status().message());
        }
        scrub_cursor_ = {};
        return;
      }
      scrub_allowance_ -= static_cast<double>(batch->bytes);
      if (batch->records > 0) {
        scrub_record_bytes_ = 0.9 * scrub_record_bytes_ +
                              0.1 * static_cast<double>(batch->bytes) /
                                  static_cast<double>(batch->records);
      }
      scrub_records_ += batch->records;
      metrics_->scrub_records.inc(batch->records);
      metrics_->scrub_bytes.inc(batch->bytes);
      for (const std::string& d : batch->damaged) {
        ++scrub_damaged_;
        metrics_->scrub_damaged.inc();
        spdlog::error("scrub found a damaged record: {}", d);
      }
      if (!batch->damaged.empty()) {
        (void)damage(Status::corruption("state " + state_->state_dir() + ": " +
                                        batch->damaged.front()),
                     "the scrubber");
      }
      scrub_cursor_ = batch->next;
      if (scrub_cursor_.done()) {
        ++scrub_passes_;
        metrics_->scrub_passes.inc();
        spdlog::info("scrub pass complete passes={} records={} damaged={} dur_ms={}",
                     scrub_passes_, scrub_records_, scrub_damaged_,
                     std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - scrub_pass_started_)
                         .count());
        scrub_cursor_ = {};
      }
    });
  });
}

// The periodic cross-member hash check (etcd's corruption check, but acted upon): the leader
// commits a barrier, learns every member's state hash at it, and when some disagree with the
// majority commits a verdict naming the majority's hash; each member compares its own hash at
// that barrier and a member that differs repairs itself (apply_hash_verdict).
void Engine::Impl::start_hash_check() {
  if (hash_checking_ || damaged_ || stopping_ || node_->role() != raft::Role::kLeader) return;
  std::vector<std::string> addrs;
  const raft::ConfState& conf = node_->conf_state();
  std::vector<std::pair<std::uint64_t, std::string>> others;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id == identity_.member_id) continue;
      const storage::Member* m = member(id);
      others.emplace_back(id, m != nullptr ? m->client_addr : std::string());
    }
  }
  if (!hash_client_) {
    client::ClientOptions o;
    for (const auto& [id, addr] : others) {
      if (Result<net::Address> a = net::parse_address(addr); a.ok()) o.endpoints.push_back(*a);
    }
    if (Result<net::Address> self = net::parse_address(client_bound_); self.ok()) {
      o.endpoints.push_back(*self);
    }
    if (o.endpoints.empty()) return;  // no client listeners: nothing to ask
    o.cluster_id = identity_.cluster_id;
    o.timeout_ms = options_.request_timeout_ms;
    o.name = "kvc-hash-check-" + identity_.name;
    o.secret = options_.secret;
    Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
    if (!c.ok()) {
      spdlog::warn("hash check: cannot make a client error={}", c.status().message());
      return;
    }
    hash_client_ = std::move(*c);
  }
  hash_checking_ = true;
  wire::Request req;
  req.op = wire::Op::kHash;
  req.timeout_ms = 2 * options_.request_timeout_ms;
  propose_barrier(std::move(req), [this, others](wire::Response r) {
    if (r.code != Code::kOk) {
      hash_checking_ = false;
      hash_check_result_ = "failed: " + r.message;
      metrics_->hash_checks_failed.inc();
      spdlog::warn("hash check failed error={}", r.message);
      return;
    }
    struct Round {
      std::uint64_t index = 0;
      std::size_t waiting = 0;
      std::map<std::uint64_t, std::uint64_t> hashes;  // member id -> hash
      std::vector<std::string> failures;
    };
    auto round = std::make_shared<Round>();
    round->index = r.revision;
    round->hashes[identity_.member_id] = r.hash;
    round->waiting = others.size();
    if (others.empty()) {
      finish_hash_check(round->index, std::move(round->hashes), {});
      return;
    }
    for (const auto& [id, addr] : others) {
      const storage::Member* m = member(id);
      const std::string name = m != nullptr && !m->name.empty() ? m->name : hex(id);
      Result<net::Address> a = net::parse_address(addr);
      if (!a.ok()) {
        round->failures.push_back(name + ": no client address");
        if (--round->waiting == 0) {
          finish_hash_check(round->index, std::move(round->hashes), std::move(round->failures));
        }
        continue;
      }
      wire::Request q;
      q.op = wire::Op::kHash;
      q.start_revision = round->index;
      q.timeout_ms = 2 * options_.request_timeout_ms;
      client::CallOptions co;
      co.target = *a;
      co.timeout_ms = q.timeout_ms;
      hash_client_->call(
          std::move(q),
          [this, round, id, name](wire::Response answer) {
            inbox_.post([this, round, id, name, answer = std::move(answer)] {
              if (answer.code == Code::kOk && answer.revision == round->index) {
                round->hashes[id] = answer.hash;
              } else {
                round->failures.push_back(name + ": " + answer.message);
              }
              if (--round->waiting == 0) {
                finish_hash_check(round->index, std::move(round->hashes),
                                  std::move(round->failures));
              }
            });
          },
          co);
    }
  });
}

void Engine::Impl::finish_hash_check(std::uint64_t index,
                                     std::map<std::uint64_t, std::uint64_t> hashes,
                                     std::vector<std::string> failures) {
  hash_checking_ = false;
  hash_check_index_ = index;
  std::map<std::uint64_t, std::size_t> votes;
  for (const auto& [id, h] : hashes) ++votes[h];
  const raft::ConfState& conf = node_->conf_state();
  const std::size_t members = conf.voters.size() + conf.learners.size();
  std::uint64_t majority = 0;
  bool have = false;
  for (const auto& [h, n] : votes) {
    if (n * 2 > members) {
      majority = h;
      have = true;
    }
  }
  std::string failed;
  for (const std::string& f : failures) failed += (failed.empty() ? "" : "; ") + f;
  if (!have) {
    hash_check_result_ = "failed: no majority agrees on the state hash at index " +
                         std::to_string(index) + (failed.empty() ? "" : " (" + failed + ")");
    metrics_->hash_checks_failed.inc();
    spdlog::warn("hash check inconclusive index={} answers={} members={} unanswered=\"{}\"",
                 index, hashes.size(), members, failed);
    return;
  }
  std::string differ;
  for (const auto& [id, h] : hashes) {
    if (h == majority) continue;
    const storage::Member* m = member(id);
    differ += (differ.empty() ? "" : ", ") + (m != nullptr ? m->name : hex(id));
  }
  if (differ.empty()) {
    hash_check_result_ = "agreed";
    if (!failed.empty()) hash_check_result_ += " (unanswered: " + failed + ")";
    metrics_->hash_checks_agreed.inc();
    spdlog::debug("hash check agreed index={} hash={:016x}", index, majority);
    return;
  }
  hash_check_result_ = "disagreed: " + differ + " differ from the majority at index " +
                       std::to_string(index) + "; they repair themselves";
  metrics_->hash_checks_disagreed.inc();
  spdlog::error("state hash check: members disagree with the majority index={} majority={:016x} "
                "differ=\"{}\": committing a verdict so that they repair themselves",
                index, majority, differ);
  storage::Command cmd;
  cmd.op = storage::CommandOp::kHashVerdict;
  cmd.request_id = ++request_seq_;
  cmd.expect_revision = index;
  cmd.hash = majority;
  if (node_->role() != raft::Role::kLeader) return;
  if (Result<std::uint64_t> at = node_->propose(storage::encode_command(cmd)); !at.ok()) {
    spdlog::warn("hash check: cannot propose the verdict error={}", at.status().message());
  }
}

void Engine::Impl::apply_hash_verdict(std::uint64_t index, std::uint64_t hash) {
  auto it = barrier_hashes_.find(index);
  if (it == barrier_hashes_.end()) return;  // not hashed here (restarted since): no opinion
  if (it->second == hash) return;
  char mine[17], theirs[17];
  std::snprintf(mine, sizeof mine, "%016llx", static_cast<unsigned long long>(it->second));
  std::snprintf(theirs, sizeof theirs, "%016llx", static_cast<unsigned long long>(hash));
  (void)damage(Status::corruption("the state hash at index " + std::to_string(index) + " is " +
                                  mine + " here, " + theirs + " on the majority of members"),
               "the periodic hash check");
}

// ---------------------------------------------------------------------------------------------
// Flushing the state and snapshots

bool Engine::Impl::maybe_flush(bool force) {
  if (stopped_ || flushing_) return false;
  const std::uint64_t now = uv_now(&loop_);
  if (!force && now - last_flush_ms_ < options_.flush_interval_ms) return false;
  if (!state_->freeze()) return false;
  last_flush_ms_ = now;
  flushing_ = true;
  const std::uint64_t index = state_->applied_index();
  const std::uint64_t term = state_->applied_term();
  raft::ConfState conf = current_membership().to_conf_state();
  flush_->post([this, index, term, conf] {
    Status s = state_->flush();
    inbox_.post([this, s, index, term, conf] {
      flushing_ = false;
      if (!s.ok()) {
        fatal(s.with_context("flushing the state"));
        return;
      }
      state_->retire_frozen();
      after_flush(index, term, conf);
    });
  });
  return true;
}

void Engine::Impl::after_flush(std::uint64_t index, std::uint64_t term, raft::ConfState conf) {
  // The state durably holds `index`: the WAL may drop what lies below, and the Raft core may
  // forget entries older than what slow followers could still need.
  const std::uint64_t keep_from =
      index > options_.retained_entries ? index - options_.retained_entries : 0;
  disk_->post([this, index, term, conf, keep_from] {
    Status s = wal_->save_snapshot({index, term, conf});
    if (s.ok()) s = wal_->sync();
    if (s.ok() && keep_from > 0) s = wal_->release_to(keep_from + 1);
    if (!s.ok()) inbox_.post([this, s] { fatal(s.with_context("releasing the log")); });
  });
  if (keep_from > 0) {
    const std::uint64_t compact_to = std::min(keep_from, node_->applied());
    if (compact_to > node_->log().snapshot_index()) {
      Status s = node_->compact(compact_to);
      if (!s.ok()) spdlog::debug("raft compaction deferred index={} reason={}", compact_to, s.message());
    }
  }
  resume_install();
  if (snapshot_after_flush_ && !flushing_) {
    snapshot_after_flush_ = false;
    make_snapshot_for_followers();
  }
  if (shutdown_done_ && !flushing_) {
    auto done = std::move(shutdown_done_);
    shutdown_done_ = nullptr;
    done();
  }
  // Applying may have stopped at a barrier waiting for this flush to finish.
  if (!apply_queue_.empty()) drain_apply();
}

// A received snapshot waits until the flush thread is idle (commit_install needs it to be).
void Engine::Impl::resume_install() {
  // commit_install needs the state to itself: no flush, snapshot or scrub on a worker.
  if (!install_waiting_ || flushing_ || snapshotting_ || scrubbing_) return;
  std::shared_ptr<PersistJob> job = std::move(install_waiting_);
  install_waiting_.reset();
  Status s = state_->commit_install(std::move(*job->staged), damaged_);
  if (!s.ok() && s.code() != Code::kFailedPrecondition) {
    persisting_ = false;  // the job is over: shutdown must not wait for it
    fatal(s.with_context("installing a snapshot"));
    return;
  }
  if (s.ok() && damaged_) {
    // A repair install: the core hands out every committed entry after the snapshot again
    // (raft/node.h, REPAIR), so what waited in the queue is dropped, never applied twice over.
    apply_queue_.clear();
  }
  if (!s.ok() && damaged_) {
    // Too old to replace the damaged state: ask again (the core will not end the repair).
    spdlog::warn("snapshot too old to repair the state index={} applied={}",
                 job->rd.snapshot->index, state_->applied_index());
    node_->mark_damaged(state_->applied_index());
  }
  spdlog::info("installed snapshot index={} term={}", job->rd.snapshot->index,
               job->rd.snapshot->term);
  metrics_->snapshots_installed.inc();
  metrics_->snapshot_install.observe_since(install_started_);
  disk_->post([this, job] {
    Status s3 = job->repair ? storage::save_repair_file(repair_path_, *job->repair) : Status();
    if (s3.ok()) s3 = wal_->save_snapshot(*job->rd.snapshot);
    if (s3.ok()) s3 = wal_->append(job->rd.hard_state, job->rd.entries);
    if (s3.ok()) s3 = wal_->sync();
    job->status = s3;
    inbox_.post([this, job] { on_persisted(job); });
  });
}

void Engine::Impl::make_snapshot_for_followers() {
  if (snapshotting_ || damaged_) return;
  if (state_->durable_index() < state_->applied_index()) {
    // A snapshot is of LMDB's durable state: flush first, so it covers what is applied (a
    // follower repairing a damaged state needs one at or above its own applied index).
    snapshot_after_flush_ = true;
    maybe_flush(true);
    return;
  }
  snapshotting_ = true;
  const std::string dir = data_dir_->snap_dir();
  const std::size_t keep = options_.snapshots_kept;
  flush_->post([this, dir, keep] {
    const auto t0 = std::chrono::steady_clock::now();
    Result<storage::SnapshotInfo> info = state_->save_snapshot(dir, keep);
    if (info.ok()) {
      metrics_->snapshot_create.observe_since(t0);
      metrics_->snapshots_created.inc();
    }
    inbox_.post([this, info] {
      snapshotting_ = false;
      resume_install();
      if (!info.ok()) {
        if (!damage(info.status(), "making a snapshot for a lagging member")) {
          spdlog::error("cannot make a snapshot for a lagging member error={}",
                        info.status().message());
        }
        return;
      }
      const raft::SnapshotMeta meta = info->header.meta();
      snapshot_files_[meta.index] = info->path;
      while (snapshot_files_.size() > std::max<std::size_t>(options_.snapshots_kept, 1)) {
        snapshot_files_.erase(snapshot_files_.begin());
      }
      spdlog::info("snapshot ready for lagging members index={} bytes={} path={}", meta.index,
                   info->size_bytes, info->path);
      node_->snapshot_available(meta, info->size_bytes);
      process_ready();
    });
  });
}

Status Engine::Impl::fill_snapshot_chunk(raft::Message& m) {
  auto it = snapshot_files_.find(m.snapshot.index);
  if (it == snapshot_files_.end()) {
    return Status::not_found("no snapshot file at index " + std::to_string(m.snapshot.index));
  }
  Result<storage::UniqueFd> fd = storage::open_file(it->second, O_RDONLY);
  if (!fd.ok()) return fd.status();
  Result<std::string> chunk =
      storage::pread_up_to(fd->get(), m.chunk_length, m.snapshot_offset, it->second);
  if (!chunk.ok()) return chunk.status();
  if (chunk->size() != m.chunk_length) return Status::corruption(it->second + ": short read");
  m.chunk = std::move(*chunk);
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Requests

wire::Response Engine::Impl::base_response(std::uint64_t req_id) const {
  wire::Response r;
  r.id = req_id;
  r.member_id = identity_.member_id;
  r.revision = state_->revision();
  fill_leader(r);
  return r;
}

void Engine::Impl::fill_leader(wire::Response& r) const {
  r.leader_id = node_->leader();
  if (r.leader_id == raft::kNoNode) return;
  if (const storage::Member* m = member(r.leader_id)) {
    r.leader_name = m->name;
    r.leader_client_addr = m->client_addr;
  }
}

std::uint64_t Engine::Impl::deadline_for(const wire::Request& req) const {
  const std::uint64_t t = req.timeout_ms != 0 ? req.timeout_ms : options_.request_timeout_ms;
  return uv_now(const_cast<uv_loop_t*>(&loop_)) + t;
}

void Engine::Impl::handle_request(wire::Request req, Reply reply) {
  if (stopping_) {
    wire::Response r = base_response(req.id);
    r.code = Code::kShuttingDown;
    r.message = "member " + identity_.name + " is shutting down";
    reply(std::move(r));
    return;
  }
  switch (req.op) {
    case wire::Op::kGet:
    case wire::Op::kRange:
    case wire::Op::kHealth:
#ifdef KVC_MUTATIONS
      if (options_.test_mutation == "local-reads" && req.op != wire::Op::kHealth) {
        // Broken on purpose (test builds only): no ReadIndex round, so a deposed leader
        // answers from its stale state.
        serve_read(req, reply);
        return;
      }
#endif
      if (req.serializable && req.op != wire::Op::kHealth) {
        serve_read(req, reply);
      } else {
        queue_read(std::move(req), std::move(reply));
      }
      return;
    case wire::Op::kPut:
    case wire::Op::kDelete:
    case wire::Op::kCas:
      propose_write(std::move(req), std::move(reply));
      return;
    case wire::Op::kWatch: {
      Watcher w;
      w.id = req.id;
      w.key = req.key;
      w.prefix = req.prefix;
      w.next_revision = req.start_revision;
      add_watcher(std::move(w), reply);
      return;
    }
    case wire::Op::kLeader: {
      wire::Response r = base_response(req.id);
      if (r.leader_id == raft::kNoNode) {
        r.code = Code::kUnavailable;
        r.message = "no leader known to member " + identity_.name;
      }
      reply(std::move(r));
      return;
    }
    case wire::Op::kStatus: {
      wire::Response r = base_response(req.id);
      fill_status(r);
      reply(std::move(r));
      return;
    }
    case wire::Op::kMemberList: {
      wire::Response r = base_response(req.id);
      const storage::Membership& m = state_->membership();
      for (const storage::Member& mem : m.members) {
        const storage::Member* known = member(mem.id);
        r.members.push_back({mem.id, mem.name, mem.peer_addr,
                             known != nullptr ? known->client_addr : mem.client_addr,
                             mem.learner, mem.id == node_->leader()});
      }
      reply(std::move(r));
      return;
    }
    case wire::Op::kMemberAdd:
    case wire::Op::kMemberPromote:
    case wire::Op::kMemberRemove:
    case wire::Op::kMemberUpdate:
      member_change(std::move(req), std::move(reply));
      return;
    case wire::Op::kTransferLeader:
      transfer_leader(std::move(req), std::move(reply));
      return;
    case wire::Op::kHash:
      if (req.start_revision == 0) {
        propose_barrier(std::move(req), std::move(reply));
      } else {
        answer_hash(std::move(req), std::move(reply));
      }
      return;
    default: {
      wire::Response r = base_response(req.id);
      r.code = Code::kInvalidArgument;
      r.message = "operation '" + std::string(wire::op_name(req.op)) +
                  "' is not supported on this connection";
      reply(std::move(r));
      return;
    }
  }
}

void Engine::Impl::fill_status(wire::Response& r) const {
  r.has_status = true;
  wire::StatusInfo& s = r.status;
  s.member_id = identity_.member_id;
  s.name = identity_.name;
  s.version = kvc::version();
  s.cluster_id = identity_.cluster_id;
  s.leader_id = node_->leader();
  s.term = node_->term();
  s.commit_index = node_->commit();
  s.applied_index = state_->applied_index();
  s.durable_index = state_->durable_index();
  s.learner = raft::is_learner(node_->conf_state(), identity_.member_id);
  s.role = s.learner ? "learner" : std::string(raft::role_name(node_->role()));
  // What the log holds, not the size its preallocated segment files take (bytes_used() is the
  // one Wal call safe off the disk thread).
  s.wal_bytes = wal_->bytes_used();
  std::uint64_t state_bytes = 0;
  std::error_code ec;
  for (auto it = std::filesystem::recursive_directory_iterator(data_dir_->state_dir(), ec);
       !ec && it != std::filesystem::recursive_directory_iterator(); it.increment(ec)) {
    if (it->is_regular_file(ec)) state_bytes += it->file_size(ec);
  }
  s.state_bytes = state_bytes;
  if (node_->leader() == raft::kNoNode) s.errors.push_back("no leader");
  const raft::RepairState& repair = node_->repair();
  s.damaged = damaged_;
  s.repairing = repair.active();
  if (damaged_) {
    s.repair_reason = damage_reason_;
    s.errors.push_back("state damaged (" + damage_reason_ +
                       "): serving no reads, not voting, repairing from the leader");
  }
  if (repair.log_to != 0) {
    const std::string lost = "lost log entries it had acknowledged (up to index " +
                             std::to_string(repair.log_to) + ")";
    s.repair_reason += (s.repair_reason.empty() ? "" : "; ") + lost;
    s.errors.push_back(lost + ": not voting until the leader has repaired its log");
  }
  s.scrub_passes = scrub_passes_;
  s.scrub_records = scrub_records_;
  s.scrub_damaged = scrub_damaged_;
  s.hash_check_index = hash_check_index_;
  s.hash_check_result = hash_check_result_;
  s.lost_entries_detected = node_->lost_entries_detected();
  if (node_->role() == raft::Role::kLeader) {
    for (const raft::PeerProgress& p : node_->progress()) {
      if (p.id == identity_.member_id) continue;
      const storage::Member* m = member(p.id);
      const std::string who = "member " + (m != nullptr ? m->name : hex(p.id));
      if (!p.recent_active) s.errors.push_back(who + " is not responding");
      if (p.repairing) s.errors.push_back(who + " is being repaired (it does not count)");
    }
  }
}

void Engine::Impl::propose_write(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  if (damaged_ && node_->role() == raft::Role::kLeader) {
    // It hands leadership over (raft mark_damaged); until then nothing it applies is sound.
    r.code = Code::kUnavailable;
    r.message = damaged_message();
    reply(std::move(r));
    return;
  }
  if (node_->role() != raft::Role::kLeader) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = r.leader_id == raft::kNoNode
                    ? "no leader: the cluster is electing one or has no quorum"
                    : "member " + identity_.name + " is not the leader";
    reply(std::move(r));
    return;
  }
  if (req.key.empty() && !(req.op == wire::Op::kDelete && req.prefix)) {
    r.code = Code::kInvalidArgument;
    r.message = "empty key";
    reply(std::move(r));
    return;
  }
  if (req.key.size() > storage::kMaxKeyBytes) {
    r.code = Code::kInvalidArgument;
    r.message = "key of " + std::to_string(req.key.size()) + " bytes exceeds the limit of " +
                std::to_string(storage::kMaxKeyBytes);
    reply(std::move(r));
    return;
  }
  if (req.key.size() + req.value.size() > options_.max_request_bytes) {
    r.code = Code::kInvalidArgument;
    r.message = "request of " + std::to_string(req.key.size() + req.value.size()) +
                " bytes exceeds --max-request-bytes " + std::to_string(options_.max_request_bytes);
    reply(std::move(r));
    return;
  }
  storage::Command cmd;
  cmd.request_id = ++request_seq_;
  cmd.key = req.key;
  switch (req.op) {
    case wire::Op::kPut:
      cmd.op = storage::CommandOp::kPut;
      cmd.value = req.value;
      break;
    case wire::Op::kDelete:
      cmd.op = req.prefix ? storage::CommandOp::kDeletePrefix : storage::CommandOp::kDelete;
      break;
    case wire::Op::kCas:
      cmd.op = storage::CommandOp::kCas;
      cmd.value = req.value;
      cmd.expect_revision = req.expect_revision;
      break;
    default: KVC_CHECK(false, "not a write");
  }
  const std::uint64_t term = node_->term();
  Result<std::uint64_t> index = node_->propose(storage::encode_command(cmd));
  if (!index.ok()) {
    set_error(r, index.status());
    if (r.code == Code::kResourceExhausted) r.message = "member is overloaded: " + r.message;
    reply(std::move(r));
    return;
  }
#ifdef KVC_MUTATIONS
  if (options_.test_mutation == "ack-before-commit") {
    // Broken on purpose (test builds only): the write is acknowledged before it commits.
    r.revision = *index;
    r.found = true;
    reply(std::move(r));
    return;
  }
#endif
  const std::uint64_t deadline = deadline_for(req);
  waiters_[*index] = Waiter{cmd.request_id, term, std::move(req), std::move(reply), deadline};
}

void Engine::Impl::queue_read(wire::Request req, Reply reply) {
  const std::uint64_t deadline = deadline_for(req);
  unsent_reads_.push_back({std::move(req), std::move(reply), deadline});
}

void Engine::Impl::start_read_batch() {
  ReadBatch b;
  b.context = "r" + std::to_string(++read_seq_);
  b.started = uv_now(&loop_);
  b.reads = std::move(unsent_reads_);
  unsent_reads_.clear();
  Status s = node_->read_index(b.context);
  if (!s.ok()) {
    for (PendingRead& pr : b.reads) {
      wire::Response r = base_response(pr.req.id);
      r.code = Code::kUnavailable;
      r.message = "no leader to confirm a linearizable read (" + s.message() +
                  "); --serializable reads this member's state";
      pr.reply(std::move(r));
    }
    return;
  }
  read_batches_.push_back(std::move(b));
}

void Engine::Impl::serve_reads() {
  const std::uint64_t applied = state_->applied_index();
  while (!read_batches_.empty() && read_batches_.front().index != 0 &&
         read_batches_.front().index <= applied) {
    ReadBatch b = std::move(read_batches_.front());
    read_batches_.pop_front();
    for (PendingRead& pr : b.reads) serve_read(pr.req, pr.reply);
  }
}

void Engine::Impl::serve_read(const wire::Request& req, const Reply& reply) {
  wire::Response r = base_response(req.id);
  if (damaged_) {
    // Nothing this member holds can be vouched for until the leader's snapshot replaces it.
    r.code = Code::kUnavailable;
    r.message = damaged_message();
    reply(std::move(r));
    return;
  }
  // A read that meets damage is not answered from this member (the client tries another);
  // other storage errors stop the member.
  auto failed = [&](const Status& s, const std::string& what) {
    if (damage(s, what)) {
      r.code = Code::kUnavailable;
      r.message = damaged_message();
    } else {
      fatal(s.with_context(what));
      set_error(r, s);
    }
  };
  switch (req.op) {
    case wire::Op::kHealth:
      break;
    case wire::Op::kGet: {
      Result<std::optional<storage::KeyValue>> kv = state_->get(req.key);
      if (!kv.ok()) {
        failed(kv.status(), "reading the state");
        break;
      }
      if (*kv) {
        r.found = true;
        r.kvs.push_back(to_wire(**kv, req.keys_only));
      }
      break;
    }
    case wire::Op::kRange: {
      constexpr std::size_t kMaxPage = 10000;
      storage::RangeRequest q;
      q.prefix = req.value;
      q.start = req.key.empty() ? req.value : req.key;
      q.keys_only = req.keys_only || req.count_only;
      q.limit = req.count_only ? 0
                : req.limit == 0 ? kMaxPage
                                 : std::min<std::uint64_t>(req.limit, kMaxPage);
      Result<storage::RangePage> page = state_->range(q);
      if (!page.ok()) {
        failed(page.status(), "listing the state");
        break;
      }
      r.more = page->more;
      r.count = page->kvs.size();
      if (!req.count_only) {
        r.kvs.reserve(page->kvs.size());
        for (const storage::KeyValue& kv : page->kvs) r.kvs.push_back(to_wire(kv, req.keys_only));
      }
      break;
    }
    default:
      r.code = Code::kInvalidArgument;
      r.message = "not a read";
  }
  reply(std::move(r));
}

void Engine::Impl::sweep_deadlines() {
  const std::uint64_t now = uv_now(&loop_);
  std::vector<std::shared_ptr<net::Connection>> linger_over;
  for (const auto& [key, r] : refused_) {
    if (r.second <= now) linger_over.push_back(r.first);
  }
  for (auto& c : linger_over) c->close(Status::resource_exhausted("refused connection"));
  for (auto it = waiters_.begin(); it != waiters_.end();) {
    if (it->second.deadline > now) {
      ++it;
      continue;
    }
    wire::Response r = base_response(it->second.req.id);
    r.code = Code::kTimeout;
    r.message = "not applied within the request's timeout; it may still be (outcome unknown)";
    metrics_->proposals_timed_out.inc();
    it->second.reply(std::move(r));
    it = waiters_.erase(it);
  }
  for (auto it = hash_waiters_.begin(); it != hash_waiters_.end();) {
    std::vector<PendingRead> keep;
    for (PendingRead& pr : it->second) {
      if (pr.deadline > now) {
        keep.push_back(std::move(pr));
        continue;
      }
      wire::Response r = base_response(pr.req.id);
      r.code = Code::kTimeout;
      r.message = "no state hash at index " + std::to_string(it->first) + " within the timeout";
      pr.reply(std::move(r));
    }
    it->second = std::move(keep);
    it = it->second.empty() ? hash_waiters_.erase(it) : std::next(it);
  }
  settle_transfers();
  // A ReadIndex round can be lost with a leader change: retry it while time remains.
  const std::uint64_t retry_after = options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  for (auto it = read_batches_.begin(); it != read_batches_.end();) {
    std::vector<PendingRead> keep;
    for (PendingRead& pr : it->reads) {
      if (pr.deadline <= now) {
        wire::Response r = base_response(pr.req.id);
        r.code = Code::kUnavailable;
        r.message = "a quorum did not confirm the read within the timeout";
        pr.reply(std::move(r));
      } else {
        keep.push_back(std::move(pr));
      }
    }
    it->reads = std::move(keep);
    if (it->reads.empty()) {
      it = read_batches_.erase(it);
    } else if (it->index == 0 && now - it->started > retry_after) {
      for (PendingRead& pr : it->reads) unsent_reads_.push_back(std::move(pr));
      it = read_batches_.erase(it);
    } else {
      ++it;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Administration: membership, leadership, state hashes

const storage::Member* Engine::Impl::find_member(const wire::Request& req) const {
  const storage::Membership m = current_membership();
  for (const storage::Member& mem : m.members) {
    if ((req.member_id != 0 && mem.id == req.member_id) ||
        (req.member_id == 0 && !req.name.empty() && mem.name == req.name)) {
      return member(mem.id);
    }
  }
  return nullptr;
}

std::set<std::uint64_t> Engine::Impl::reachable_voters() const {
  std::set<std::uint64_t> out;
  const raft::ConfState& conf = node_->conf_state();
  for (const raft::PeerProgress& p : node_->progress()) {
    if (!raft::is_voter(conf, p.id)) continue;
    if (p.id == identity_.member_id || p.recent_active) out.insert(p.id);
  }
  if (raft::is_voter(conf, identity_.member_id)) out.insert(identity_.member_id);
  return out;
}

std::uint64_t Engine::Impl::best_transfer_target(std::uint64_t excluding) const {
  std::uint64_t best = 0, best_match = 0;
  for (const raft::PeerProgress& p : node_->progress()) {
    if (p.id == identity_.member_id || p.id == excluding || p.learner || !p.recent_active ||
        p.repairing) {
      continue;
    }
    if (best == 0 || p.match > best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  return best;
}

void Engine::Impl::member_change(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  auto refuse = [&](Code code, std::string msg) {
    r.code = code;
    r.message = std::move(msg);
    reply(std::move(r));
  };
  if (node_->role() != raft::Role::kLeader) {
    return refuse(r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader,
                  r.leader_id == raft::kNoNode ? "no leader" : "not the leader");
  }
  const raft::ConfState& conf = node_->conf_state();
  const std::size_t voters = conf.voters.size();
  const std::set<std::uint64_t> reachable = reachable_voters();
  raft::ConfChange cc;
  std::string what;
  if (req.op == wire::Op::kMemberAdd) {
    if (req.name.empty() || req.name.find_first_of(",= \t\n") != std::string::npos) {
      return refuse(Code::kInvalidArgument, "a member name must be non-empty, without ',', '=' "
                                            "or whitespace");
    }
    Result<net::Address> addr = net::parse_address(req.peer_addr);
    if (!addr.ok()) return refuse(Code::kInvalidArgument, addr.status().message());
    const storage::Membership m = current_membership();
    for (const storage::Member& mem : m.members) {
      if (mem.name == req.name) {
        return refuse(Code::kAlreadyExists, "a member named '" + req.name + "' exists (id " +
                                                hex(mem.id) + ")");
      }
      if (mem.peer_addr == addr->to_string()) {
        return refuse(Code::kAlreadyExists,
                      "member '" + mem.name + "' already uses peer address " + mem.peer_addr);
      }
    }
    if (!req.learner && !req.force && reachable.size() < (voters + 1) / 2 + 1) {
      return refuse(Code::kFailedPrecondition,
                    "adding a voter now would leave the cluster without a quorum until it "
                    "catches up (" + std::to_string(reachable.size()) + " of " +
                        std::to_string(voters) + " voters reachable, " +
                        std::to_string((voters + 1) / 2 + 1) +
                        " needed): add it with --learner and promote it later, or use --force");
    }
    std::uint64_t id = 0;
    while (id == 0 || m.find(id) != nullptr || m.was_removed(id) || learned_.count(id) != 0) {
      id = random_u64();
    }
    storage::Membership one;
    one.members.push_back({id, req.name, addr->to_string(), req.client_addr, req.learner});
    cc = {req.learner ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter, id,
          storage::encode_membership(one)};
    learned_[id] = one.members.front();
    what = "add " + req.name;
  } else {
    const storage::Member* target = find_member(req);
    if (target == nullptr) {
      return refuse(Code::kNotFound, "no member " +
                                         (req.member_id != 0 ? hex(req.member_id) : req.name));
    }
    const std::uint64_t tid = target->id;
    if (req.op == wire::Op::kMemberUpdate) {
      Result<net::Address> addr = net::parse_address(req.peer_addr);
      if (!addr.ok()) return refuse(Code::kInvalidArgument, addr.status().message());
      const std::string peer = addr->to_string();
      const storage::Membership m = current_membership();
      const storage::Member* stored = m.find(tid);
      if (stored != nullptr && stored->peer_addr == peer) {
        r.revision = 0;  // already so: nothing to commit
        reply(std::move(r));
        return;
      }
      for (const storage::Member& mem : m.members) {
        if (mem.id != tid && mem.peer_addr == peer) {
          return refuse(Code::kAlreadyExists,
                        "member '" + mem.name + "' already uses peer address " + peer);
        }
      }
      storage::Membership one;
      one.members.push_back({tid, target->name, peer, "", raft::is_learner(conf, tid)});
      cc = {raft::ConfChangeType::kUpdate, tid, storage::encode_membership(one)};
      what = "update " + target->name + " peer " + peer;
    } else if (req.op == wire::Op::kMemberPromote) {
      if (!raft::is_learner(conf, tid)) {
        return refuse(Code::kFailedPrecondition, "member " + target->name + " is not a learner");
      }
      std::uint64_t match = 0;
      bool active = false;
      for (const raft::PeerProgress& p : node_->progress()) {
        if (p.id == tid) {
          match = p.match;
          active = p.recent_active;
        }
      }
      // Caught up means both close in entries and close in proportion (etcd asks for 90 % of
      // the leader's progress): a learner that has nothing yet is never "a few entries behind"
      // a young cluster.
      const std::uint64_t commit = node_->commit();
      const std::uint64_t lag = commit > match ? commit - match : 0;
      const std::uint64_t max_lag = options_.retained_entries / 10 + 100;
      const bool close = lag <= max_lag && match * 10 >= commit * 9;
      if (!req.force && (!active || !close)) {
        return refuse(Code::kFailedPrecondition,
                      "learner " + target->name + " has not caught up: it has " +
                          std::to_string(match) + " of " + std::to_string(commit) +
                          " committed entries (" + std::to_string(lag) + " behind; promotion "
                          "needs at least 90% and at most " + std::to_string(max_lag) +
                          " behind)" + (active ? "" : " and is not responding") +
                          "; wait for it, or use --force");
      }
      cc = {raft::ConfChangeType::kPromoteLearner, tid, ""};
      what = "promote " + target->name;
    } else {
      const bool voter = raft::is_voter(conf, tid);
      if (voter && voters == 1) {
        return refuse(Code::kFailedPrecondition, "cannot remove the last voter");
      }
      if (tid == identity_.member_id) {
        // The leader leaves: hand leadership over first, then the new leader removes it
        // (the client follows the redirect this answer carries).
        const std::uint64_t target_id = best_transfer_target(tid);
        if (target_id == 0) {
          return refuse(Code::kUnavailable,
                        "no caught-up voter to hand leadership to before removing the leader");
        }
        Status s = node_->transfer_leadership(target_id);
        if (!s.ok()) return refuse(s.code(), s.message());
        transfers_.push_back({std::move(req), std::move(reply), target_id,
                              uv_now(&loop_) + 2 * options_.tick_ms *
                                                   static_cast<std::uint64_t>(options_.election_ticks)});
        return;
      }
      if (voter && !req.force) {
        std::size_t left = reachable.size() - (reachable.count(tid) != 0 ? 1 : 0);
        const std::size_t need = (voters - 1) / 2 + 1;
        if (left < need) {
          return refuse(Code::kFailedPrecondition,
                        "removing " + target->name + " would leave " + std::to_string(left) +
                            " reachable voters of the " + std::to_string(need) +
                            " a quorum needs; use --force to remove it anyway");
        }
      }
      cc = {raft::ConfChangeType::kRemove, tid, ""};
      what = "remove " + target->name;
    }
  }
  Result<std::uint64_t> index = node_->propose_conf_change(cc);
  if (!index.ok()) {
    std::string msg = index.status().message();
    if (msg.find("in progress") != std::string::npos) msg += "; try again when it commits";
    return refuse(index.status().code(), msg);
  }
  spdlog::info("membership change proposed change=\"{}\" index={}", what, *index);
  waiters_[*index] = Waiter{0, node_->term(), req, std::move(reply), deadline_for(req),
                            raft::encode_conf_change(cc)};
}

void Engine::Impl::transfer_leader(wire::Request req, Reply reply) {
  const storage::Member* target = find_member(req);
  wire::Response r = base_response(req.id);
  if (target == nullptr) {
    r.code = Code::kNotFound;
    r.message = "no member " + (req.member_id != 0 ? hex(req.member_id) : req.name);
    reply(std::move(r));
    return;
  }
  if (!raft::is_voter(node_->conf_state(), target->id)) {
    r.code = Code::kFailedPrecondition;
    r.message = "member " + target->name + " is not a voter";
    reply(std::move(r));
    return;
  }
  if (node_->leader() == target->id) {
    reply(std::move(r));  // already there
    return;
  }
  if (node_->role() != raft::Role::kLeader) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = r.leader_id == raft::kNoNode ? "no leader" : "not the leader";
    reply(std::move(r));
    return;
  }
  Status s = node_->transfer_leadership(target->id);
  if (!s.ok()) {
    set_error(r, s);
    reply(std::move(r));
    return;
  }
  const std::uint64_t wait = 2 * options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  transfers_.push_back({std::move(req), std::move(reply), target->id, uv_now(&loop_) + wait});
}

// Answers leadership transfers (and removals of the old leader) once the leader changed or
// their time is up.
void Engine::Impl::settle_transfers() {
  const std::uint64_t now = uv_now(&loop_);
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    const bool moved = node_->leader() != raft::kNoNode && node_->leader() != identity_.member_id;
    if (!moved && now < it->deadline) {
      ++it;
      continue;
    }
    wire::Response r = base_response(it->req.id);
    if (it->req.op == wire::Op::kMemberRemove) {
      // Not applied here: the client retries at the new leader, which removes this member.
      r.code = moved ? Code::kNotLeader : Code::kUnavailable;
      r.message = moved ? "leadership handed over before removing this member; ask the new leader"
                        : "the leadership hand-over before the removal did not complete";
    } else if (node_->leader() != it->target) {
      r.code = moved ? Code::kUnavailable : Code::kTimeout;
      r.message = moved ? "leadership moved to another member than the one asked for"
                        : "the leadership transfer did not complete in time";
    }
    it->reply(std::move(r));
    it = transfers_.erase(it);
  }
}

void Engine::Impl::propose_barrier(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  if (damaged_) {
    r.code = Code::kUnavailable;
    r.message = damaged_message();
    reply(std::move(r));
    return;
  }
  if (node_->role() != raft::Role::kLeader) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = r.leader_id == raft::kNoNode ? "no leader" : "not the leader";
    reply(std::move(r));
    return;
  }
  storage::Command cmd;
  cmd.op = storage::CommandOp::kBarrier;
  cmd.request_id = ++request_seq_;
  const std::uint64_t term = node_->term();
  Result<std::uint64_t> index = node_->propose(storage::encode_command(cmd));
  if (!index.ok()) {
    set_error(r, index.status());
    reply(std::move(r));
    return;
  }
  const std::uint64_t deadline = deadline_for(req);
  waiters_[*index] = Waiter{cmd.request_id, term, std::move(req), std::move(reply), deadline};
}

void Engine::Impl::answer_hash(wire::Request req, Reply reply) {
  const std::uint64_t index = req.start_revision;
  if (damaged_) {
    wire::Response r = base_response(req.id);
    r.code = Code::kUnavailable;
    r.message = damaged_message();
    reply(std::move(r));
    return;
  }
  auto it = barrier_hashes_.find(index);
  if (it != barrier_hashes_.end()) {
    wire::Response r = base_response(req.id);
    r.revision = index;
    r.hash = it->second;
    reply(std::move(r));
    return;
  }
  if (state_->applied_index() >= index && pending_barrier_ != index) {
    wire::Response r = base_response(req.id);
    r.code = Code::kNotFound;
    r.message = "this member has no state hash at index " + std::to_string(index) +
                " (it applied that index before it last started, or it is not a barrier)";
    reply(std::move(r));
    return;
  }
  const std::uint64_t deadline = deadline_for(req);
  hash_waiters_[index].push_back({std::move(req), std::move(reply), deadline});
}

// ---------------------------------------------------------------------------------------------
// Watches

void Engine::Impl::add_watcher(Watcher w, const Reply& reply) {
  // Events are delivered from `next_revision`; 0 means "from now".
  const std::uint64_t now_rev = state_->applied_index() + 1;
  if (w.next_revision == 0) w.next_revision = now_rev;
  wire::Response ack = base_response(w.id);
  ack.watch_id = w.id;
  if (w.next_revision < now_rev) {
    Result<storage::EventPage> probe = state_->events_since(
        {.from_revision = w.next_revision, .key = w.key, .prefix = w.prefix, .limit = 1});
    if (!probe.ok()) {
      set_error(ack, probe.status());
      Result<std::uint64_t> compact = state_->compact_revision();
      if (compact.ok()) ack.compact_revision = *compact;
      ack.done = true;
      reply(std::move(ack));
      return;
    }
  }
  const std::uint64_t key = ++watcher_seq_;
  watchers_[key] = std::move(w);
  reply(std::move(ack));
  notify_watchers();
}

void Engine::Impl::notify_watchers() {
  const std::uint64_t applied = state_->applied_index();
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    Watcher& w = it->second;
    bool drop = false;
    while (w.next_revision <= applied) {
      Result<storage::EventPage> page = state_->events_since(
          {.from_revision = w.next_revision, .from_sequence = w.next_sequence, .key = w.key,
           .prefix = w.prefix, .limit = 1000});
      if (!page.ok()) {
        (void)damage(page.status(), "reading the watch history");
        if (w.conn != 0) {
          wire::Response r = base_response(w.id);
          set_error(r, page.status());
          r.watch_id = w.id;
          r.done = true;
          send_to_client(w.conn, r, true);
        }
        drop = true;
        break;
      }
      if (!page->events.empty()) {
        if (w.callback) {
          for (const storage::Event& e : page->events) {
            WatchEvent we;
            we.type = e.type == storage::EventType::kPut ? WatchEvent::Type::kPut
                                                         : WatchEvent::Type::kDelete;
            we.kv = {e.key, e.value, e.create_revision, e.revision, e.version};
            w.callback(we);
          }
        } else {
          wire::Response r = base_response(w.id);
          r.watch_id = w.id;
          for (const storage::Event& e : page->events) {
            r.events.push_back(
                {e.type == storage::EventType::kPut ? wire::EventType::kPut
                                                    : wire::EventType::kDelete,
                 {e.key, e.value, e.create_revision, e.revision, e.version}});
          }
          send_to_client(w.conn, r, false);
        }
      }
      w.next_revision = page->next_revision;
      w.next_sequence = page->next_sequence;
      if (!page->more) break;
    }
    it = drop ? watchers_.erase(it) : std::next(it);
  }
}

void Engine::Impl::notify_leader_watchers() {
  for (const auto& [key, w] : leader_watchers_) {
    wire::Response r = base_response(w.id);
    r.watch_id = w.id;
    r.count = node_->term();
    send_to_client(w.conn, r, false);
  }
}

// kvc-ctl snapshot save: flush, write a snapshot file on the flush thread, then stream it to
// the client in chunks, no faster than the client reads.
void Engine::Impl::start_snapshot_save(std::uint64_t conn, std::uint64_t id) {
  maybe_flush(true);
  const std::string path =
      data_dir_->snap_dir() + "/send-" + std::to_string(conn) + "-" + std::to_string(id) + ".tmp";
  flush_->post([this, conn, id, path] {
    Result<storage::SnapshotInfo> info = state_->write_snapshot(path);
    inbox_.post([this, conn, id, path, info] {
      if (!info.ok()) {
        wire::Response r = base_response(id);
        set_error(r, info.status());
        if (damage(info.status(), "writing a snapshot for a client")) {
          r.code = Code::kUnavailable;
          r.message = damaged_message() + " (" + info.status().message() + ")";
        }
        r.done = true;
        send_to_client(conn, r, true);
        return;
      }
      Result<storage::UniqueFd> fd = storage::open_file(path, O_RDONLY);
      // Unlinked at once: the open descriptor keeps the data until the transfer ends.
      ::unlink(path.c_str());
      if (!fd.ok() || clients_.count(conn) == 0) {
        if (fd.ok()) return;
        wire::Response r = base_response(id);
        set_error(r, fd.status());
        r.done = true;
        send_to_client(conn, r, true);
        return;
      }
      Transfer t;
      t.conn = conn;
      t.id = id;
      t.path = path;
      t.fd = std::move(*fd);
      t.size = info->size_bytes;
      t.index = info->header.index;
      snapshot_sends_[++watcher_seq_] = std::move(t);
      spdlog::info("streaming a snapshot to a client index={} bytes={}", info->header.index,
                   info->size_bytes);
      pump_transfers();
    });
  });
}

void Engine::Impl::pump_transfers() {
  constexpr std::uint64_t kChunk = 1u << 20;
  constexpr std::size_t kMaxQueued = 4u << 20;
  for (auto it = snapshot_sends_.begin(); it != snapshot_sends_.end();) {
    Transfer& t = it->second;
    auto c = clients_.find(t.conn);
    if (c == clients_.end()) {
      it = snapshot_sends_.erase(it);
      continue;
    }
    bool finished = false;
    while (c->second.conn->output_bytes() < kMaxQueued) {
      const std::uint64_t n = std::min(kChunk, t.size - t.offset);
      Result<std::string> chunk = storage::pread_up_to(t.fd.get(), n, t.offset, t.path);
      wire::Response r = base_response(t.id);
      r.revision = t.index;
      r.count = t.size;
      if (!chunk.ok() || chunk->size() != n) {
        r.code = Code::kIOError;
        r.message = chunk.ok() ? "snapshot file shrank while it was sent" : chunk.status().message();
        r.done = true;
        send_to_client(t.conn, r, true);
        finished = true;
        break;
      }
      r.data = std::move(*chunk);
      t.offset += n;
      r.done = t.offset == t.size;
      send_to_client(t.conn, r, r.done);
      if (r.done) {
        finished = true;
        break;
      }
    }
    it = finished ? snapshot_sends_.erase(it) : std::next(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Client connections

void Engine::Impl::on_client_accept(std::shared_ptr<net::Connection> conn) {
  if (stopping_) {
    conn->close(Status::shutting_down("member stopping"));
    return;
  }
  if (clients_.size() >= options_.max_client_connections) {
    spdlog::warn("refusing client from={} reason=too many connections limit={}", conn->peer(),
                 options_.max_client_connections);
    // Politely: the client reads the refusal as its hello reply (nothing was handled).
    const Status why =
        Status::resource_exhausted("too many client connections (--max-client-connections " +
                                   std::to_string(options_.max_client_connections) + ")");
    // The connection stays open (what the client sends is read and dropped) until the client
    // closes it or a second has passed: closing at once, with the client's hello unread, would
    // reset the connection and could destroy the refusal before the client reads it.
    net::Connection* key = conn.get();
    conn->start([](net::Connection&, std::string_view) {},
                [this, key](net::Connection&, const Status&) { refused_.erase(key); });
    std::string out;
    wire::append_hello_reply(out, {.code = why.code(),
                                   .message = why.message(),
                                   .cluster_id = identity_.cluster_id,
                                   .member_id = identity_.member_id,
                                   .name = identity_.name,
                                   .software_version = kvc::version()});
    conn->send(out);
    refused_[key] = {conn, uv_now(&loop_) + 1000};
    return;
  }
  const std::uint64_t id = ++conn_seq_;
  conn->tag = id;
  clients_[id] = ClientConn{conn};
  conn->start(
      [this, id](net::Connection& c, std::string_view p) { on_client_frame(id, c, p); },
      [this, id](net::Connection& c, const Status& why) {
        if (why.code() != Code::kUnavailable && why.code() != Code::kShuttingDown) {
          spdlog::info("client connection closed from={} reason={}", c.peer(), why.message());
        }
        on_client_closed(id);
      });
}

void Engine::Impl::on_client_frame(std::uint64_t conn_id, net::Connection& conn,
                                   std::string_view payload) {
  auto it = clients_.find(conn_id);
  if (it == clients_.end() || it->second.refused) return;
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    spdlog::warn("closing client connection from={} reason={}", conn.peer(),
                 env.status().message());
    conn.close(env.status());
    return;
  }
  if (it->second.auth_pending) {
    ClientConn& cc = it->second;
    cc.auth_pending = false;
    Status proved;
    if (env->kind != wire::FrameKind::kAuth) {
      proved = Status::failed_precondition(
          "authentication failed: expected the proof of the shared secret, got another frame");
    } else {
      Result<wire::AuthProof> answer = wire::decode_auth_proof(*env->body);
      proved = answer.ok() ? wire::check_dialer_proof(options_.secret, cc.hello, cc.reply, *answer)
                           : answer.status();
    }
    if (!proved.ok()) {
      spdlog::warn("refusing client from={} name={} reason={}", conn.peer(), cc.hello.name,
                   proved.message());
      wire::HelloReply refusal{.code = proved.code(),
                               .message = proved.message(),
                               .cluster_id = identity_.cluster_id,
                               .member_id = identity_.member_id,
                               .name = identity_.name,
                               .software_version = kvc::version()};
      std::string out;
      wire::append_hello_reply(out, refusal);
      conn.send(out);
      cc.refused = true;
      conn.close_after_flush(proved);
      return;
    }
    cc.hello_done = true;
    cc.hello = {};
    cc.reply = {};
    return;
  }
  if (!it->second.hello_done) {
    if (env->kind != wire::FrameKind::kHello) {
      conn.close(Status::failed_precondition("first frame must be a hello"));
      return;
    }
    Result<wire::Hello> hello = wire::decode_hello(*env->body);
    wire::HelloReply reply{.cluster_id = identity_.cluster_id,
                           .member_id = identity_.member_id,
                           .name = identity_.name,
                           .software_version = kvc::version(),
                           .client_addr = client_bound_,
                           .max_frame_bytes = options_.max_frame_bytes,
                           .max_request_bytes = options_.max_request_bytes};
    Status refuse;
    if (!hello.ok()) {
      refuse = hello.status();
    } else if (hello->protocol_version != wire::kProtocolVersion) {
      refuse = Status::failed_precondition("protocol version " +
                                           std::to_string(hello->protocol_version) +
                                           " is not supported");
    } else if (hello->cluster_id != 0 && hello->cluster_id != identity_.cluster_id) {
      refuse = Status::failed_precondition("this member belongs to cluster " +
                                           hex(identity_.cluster_id) + ", not " +
                                           hex(hello->cluster_id));
    } else if (Status a = wire::check_hello_auth(!options_.secret.empty(), *hello); !a.ok()) {
      refuse = a;
    } else if (!options_.secret.empty()) {
      refuse = wire::answer_challenge(options_.secret, *hello, &reply);
    }
    std::string out;
    if (!refuse.ok()) {
      spdlog::warn("refusing client from={} reason={}", conn.peer(), refuse.message());
      reply.code = refuse.code();
      reply.message = refuse.message();
      wire::append_hello_reply(out, reply);
      conn.send(out);
      it->second.refused = true;
      conn.close_after_flush(refuse);
      return;
    }
    wire::append_hello_reply(out, reply);
    conn.send(out);
    if (!options_.secret.empty()) {
      it->second.auth_pending = true;
      it->second.hello = std::move(*hello);
      it->second.reply = std::move(reply);
    } else {
      it->second.hello_done = true;
    }
    return;
  }
  if (env->kind != wire::FrameKind::kRequest) {
    spdlog::warn("closing client connection from={} reason=unexpected frame kind {}", conn.peer(),
                 static_cast<int>(env->kind));
    conn.close(Status::corruption("unexpected frame kind"));
    return;
  }
  Result<wire::Request> req = wire::decode_request(*env->body);
  if (!req.ok()) {
    // Without a decodable id there is nobody to answer: the stream is not trustworthy.
    spdlog::warn("closing client connection from={} reason={}", conn.peer(),
                 req.status().message());
    conn.close(req.status());
    return;
  }
  if (req->op == wire::Op::kWatchCancel) {
    for (auto w = watchers_.begin(); w != watchers_.end();) {
      if (w->second.conn == conn_id && w->second.id == req->watch_id) {
        wire::Response done = base_response(w->second.id);
        done.watch_id = w->second.id;
        done.done = true;
        send_to_client(conn_id, done, true);
        w = watchers_.erase(w);
      } else {
        ++w;
      }
    }
    return;
  }
  ClientConn& cc = it->second;
  ++cc.inflight;
  if (cc.inflight >= options_.max_inflight_requests && !cc.paused) {
    cc.paused = true;
    conn.pause_reading();
  }
  if (req->op == wire::Op::kWatchLeader) {
    leader_watchers_[++watcher_seq_] = {conn_id, req->id};
    wire::Response r = base_response(req->id);
    r.watch_id = req->id;
    r.count = node_->term();
    send_to_client(conn_id, r, true);
    return;
  }
  if (req->op == wire::Op::kSnapshotSave) {
    if (stopping_) {
      wire::Response r = base_response(req->id);
      r.code = Code::kShuttingDown;
      r.message = "member shutting down";
      r.done = true;
      send_to_client(conn_id, r, true);
      return;
    }
    start_snapshot_save(conn_id, req->id);
    return;
  }
  if (req->op == wire::Op::kWatch) {
    Watcher w;
    w.id = req->id;
    w.conn = conn_id;
    w.key = req->key;
    w.prefix = req->prefix;
    w.next_revision = req->start_revision;
    add_watcher(std::move(w), [this, conn_id](wire::Response r) {
      send_to_client(conn_id, r, true);
    });
    return;
  }
  const wire::Op op = req->op;
  const auto start = std::chrono::steady_clock::now();
  handle_request(std::move(*req), [this, conn_id, op, start](wire::Response r) {
    count_request(op, start, r.code);
    send_to_client(conn_id, r, true);
  });
}

void Engine::Impl::send_to_client(std::uint64_t conn_id, const wire::Response& r, bool final) {
  auto it = clients_.find(conn_id);
  if (it == clients_.end()) return;
  ClientConn& cc = it->second;
  std::string out;
  wire::append_response(out, r);
  cc.conn->send(out);
  if (final && cc.inflight > 0) {
    --cc.inflight;
    if (cc.paused && cc.inflight < options_.max_inflight_requests / 2) {
      cc.paused = false;
      cc.conn->resume_reading();
    }
  }
}

void Engine::Impl::on_client_closed(std::uint64_t conn_id) {
  clients_.erase(conn_id);
  for (auto it = leader_watchers_.begin(); it != leader_watchers_.end();) {
    it = it->second.conn == conn_id ? leader_watchers_.erase(it) : std::next(it);
  }
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    it = it->second.conn == conn_id ? watchers_.erase(it) : std::next(it);
  }
}

// ---------------------------------------------------------------------------------------------
// Shutdown

void Engine::Impl::begin_shutdown() {
  if (stopping_) return;
  stopping_ = true;
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
  // Wait for the disk and flush threads' work in flight to land before the last flush.
  if (persisting_ || flushing_ || snapshotting_ || scrubbing_) {
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
    disk_->post([this, &synced, index, term, conf] {
      Status s = wal_->sync();
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
  std::vector<std::shared_ptr<net::Connection>> refused;
  for (const auto& [key, r] : refused_) refused.push_back(r.first);
  for (auto& c : refused) c->close(Status::shutting_down("member stopping"));
  watchers_.clear();
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

Status Engine::Impl::close() {
  if (!loop_thread_.joinable()) {
    return failure();
  }
  if (std::this_thread::get_id() == loop_thread_.get_id()) {
    return Status::failed_precondition("Engine::close called from an Engine callback");
  }
  inbox_.post([this] { begin_shutdown(); });
  loop_thread_.join();
  if (disk_) disk_->stop();
  if (flush_) flush_->stop();
  if (scrub_) scrub_->stop();
  uv_loop_close(&loop_);
  {
    std::lock_guard<std::mutex> lock(mu_);
    finished_ = true;
    forwarder_.reset();
  }
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
  inbox_.post([this, cb] {
    LeaderInfo info = leader();
    if (info.id != raft::kNoNode) cb(info);
  });
}

// ---------------------------------------------------------------------------------------------
// Embedded API

void Engine::Impl::submit(wire::Request req, Reply reply) {
  inbox_.post([this, req = std::move(req), reply = std::move(reply)]() mutable {
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
  if (r.code == Code::kNotLeader && !r.leader_client_addr.empty() && client::is_write(req.op)) {
    // Embedded callers do not follow redirects: forward the write to the leader.
    if (client::Client* fwd = forwarder(r.leader_client_addr)) {
      return fwd->call_sync(std::move(req), {.leader_hint = r.leader_client_addr});
    }
  }
  return r;
}

client::Client* Engine::Impl::forwarder(const std::string& leader_addr) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!forwarder_) {
    Result<net::Address> a = net::parse_address(leader_addr);
    if (!a.ok()) return nullptr;
    client::ClientOptions o;
    o.endpoints.push_back(*a);
    o.cluster_id = identity_.cluster_id;
    o.timeout_ms = options_.request_timeout_ms;
    o.name = "kvc-engine-" + identity_.name;
    o.secret = options_.secret;
    Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
    if (!c.ok()) return nullptr;
    forwarder_ = std::move(*c);
  }
  return forwarder_.get();
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
  m.peers_connected.set(static_cast<double>(peers_ ? peers_->connected_peers() : 0));
  m.raft_repairing.set(node_->repair().active() ? 1 : 0);
  m.lost_entries_detected.set(static_cast<double>(node_->lost_entries_detected()));
  m.state_damaged.set(damaged_ ? 1 : 0);
  wire::Response r;
  fill_status(r);
  m.wal_bytes.set(static_cast<double>(r.status.wal_bytes));
  m.state_bytes.set(static_cast<double>(r.status.state_bytes));
}

Result<std::uint64_t> Engine::Impl::watch(const std::string& key, bool prefix,
                                          std::uint64_t start_revision,
                                          std::function<void(const WatchEvent&)> callback) {
  auto p = std::make_shared<std::promise<wire::Response>>();
  std::future<wire::Response> f = p->get_future();
  inbox_.post([this, key, prefix, start_revision, callback = std::move(callback), p]() mutable {
    Watcher w;
    w.id = 0;
    w.key = key;
    w.prefix = prefix;
    w.next_revision = start_revision;
    w.callback = std::move(callback);
    const std::uint64_t handle = watcher_seq_ + 1;
    add_watcher(std::move(w), [p, handle](wire::Response r) {
      r.watch_id = handle;
      p->set_value(std::move(r));
    });
  });
  wire::Response r = f.get();
  if (r.code != Code::kOk) return Status(r.code, r.message);
  return r.watch_id;
}

void Engine::Impl::unwatch(std::uint64_t handle) {
  inbox_.post([this, handle] { watchers_.erase(handle); });
}

// ---------------------------------------------------------------------------------------------
// Engine

Engine::Engine(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
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
Status Engine::failure() const { return impl_->failure(); }
void Engine::wait() { impl_->wait(); }

namespace {
KeyValue from_wire(const wire::KeyValue& kv) {
  return {kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version};
}
Status to_status(const wire::Response& r) { return Status(r.code, r.message); }
}  // namespace

Result<std::optional<KeyValue>> Engine::get(const std::string& key, ReadOptions options) {
  wire::Response r =
      impl_->call({.op = wire::Op::kGet, .key = key, .serializable = options.serializable});
  if (r.code != Code::kOk) return to_status(r);
  if (!r.found || r.kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(from_wire(r.kvs.front()));
}

Result<bool> Engine::exists(const std::string& key, ReadOptions options) {
  wire::Response r = impl_->call(
      {.op = wire::Op::kGet, .key = key, .serializable = options.serializable, .keys_only = true});
  if (r.code != Code::kOk) return to_status(r);
  return r.found;
}

Result<std::uint64_t> Engine::set(const std::string& key, const std::string& value) {
  wire::Response r = impl_->call({.op = wire::Op::kPut, .key = key, .value = value});
  if (r.code != Code::kOk) return to_status(r);
  return r.revision;
}

Result<bool> Engine::del(const std::string& key) {
  wire::Response r = impl_->call({.op = wire::Op::kDelete, .key = key});
  if (r.code != Code::kOk) return to_status(r);
  return r.found;
}

Result<std::uint64_t> Engine::cas(const std::string& key, const std::string& value,
                                  std::uint64_t expect_revision) {
  wire::Response r = impl_->call(
      {.op = wire::Op::kCas, .key = key, .value = value, .expect_revision = expect_revision});
  if (r.code != Code::kOk) return to_status(r);
  return r.revision;
}

Result<std::vector<KeyValue>> Engine::list(const std::string& prefix, std::uint64_t limit,
                                           ReadOptions options) {
  std::vector<KeyValue> out;
  std::string start = prefix;
  for (;;) {
    std::uint64_t want = limit == 0 ? 0 : limit - out.size();
    wire::Response r = impl_->call({.op = wire::Op::kRange, .key = start, .value = prefix,
                                    .prefix = true, .limit = want,
                                    .serializable = options.serializable});
    if (r.code != Code::kOk) return to_status(r);
    for (const wire::KeyValue& kv : r.kvs) out.push_back(from_wire(kv));
    if (!r.more || r.kvs.empty() || (limit != 0 && out.size() >= limit)) break;
    start = r.kvs.back().key;
    start.push_back('\0');
  }
  return out;
}

Result<std::uint64_t> Engine::watch(const std::string& key, bool prefix,
                                    std::uint64_t start_revision,
                                    std::function<void(const WatchEvent&)> callback) {
  return impl_->watch(key, prefix, start_revision, std::move(callback));
}

void Engine::unwatch(std::uint64_t handle) { impl_->unwatch(handle); }

}  // namespace kvc::server
