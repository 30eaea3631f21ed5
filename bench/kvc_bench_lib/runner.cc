#include "runner.h"

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <thread>

#include "kvc/client/client.h"

namespace kvc::bench {

std::string workload_name(Workload w) {
  switch (w) {
    case Workload::kPut:
      return "put";
    case Workload::kGet:
      return "get";
    case Workload::kRange:
      return "range";
    case Workload::kCas:
      return "cas";
    case Workload::kWatch:
      return "watch";
    case Workload::kMixed:
      return "mixed";
    case Workload::kLeaseExpiry:
      return "lease-expiry";
  }
  return "?";
}

std::uint64_t BenchResult::error_count() const {
  std::uint64_t n = 0;
  for (const auto& [kind, count] : errors) n += count;
  return n;
}

std::string make_key(std::uint64_t n, std::size_t key_size, std::uint64_t key_space_size) {
  // Decimal when every key of the space fits in key_size digits.
  std::uint64_t cap = 1;
  bool decimal = true;
  for (std::size_t i = 0; i < key_size && cap < key_space_size; ++i) {
    if (cap > UINT64_MAX / 10) break;
    cap *= 10;
  }
  if (cap < key_space_size) decimal = false;
  std::string key(key_size, '0');
  if (decimal) {
    for (std::size_t i = key_size; i > 0 && n > 0; --i) {
      key[i - 1] = static_cast<char>('0' + n % 10);
      n /= 10;
    }
  } else {
    for (std::size_t i = key_size; i > 0; --i) {
      key[i - 1] = static_cast<char>(n & 0xff);
      n >>= 8;
    }
  }
  return key;
}

Result<double> parse_ratio(const std::string& text) {
  if (text.empty()) return Status::invalid_argument("empty ratio");
  std::string t = text;
  double scale = 1;
  if (t.back() == '%') {
    t.pop_back();
    scale = 100;
  }
  char* end = nullptr;
  const double v = std::strtod(t.c_str(), &end);
  if (t.empty() || end != t.c_str() + t.size()) {
    return Status::invalid_argument("'" + text + "' is not a number or a percentage");
  }
  const double r = v / scale;
  if (!(r >= 0 && r <= 1)) {
    return Status::invalid_argument("'" + text + "' is not between 0 and 1 (0% and 100%)");
  }
  return r;
}

Status validate(const BenchOptions& o) {
  if (o.endpoints.empty()) return Status::invalid_argument("--endpoints: no endpoint given");
  if (o.clients == 0) return Status::invalid_argument("--clients must be at least 1");
  if (o.conns == 0) return Status::invalid_argument("--conns must be at least 1");
  if (o.total == 0 && o.duration_ms == 0) {
    return Status::invalid_argument("--total must be at least 1 (or give --duration)");
  }
  if (o.key_size == 0) return Status::invalid_argument("--key-size must be at least 1");
  if (o.key_space_size == 0) return Status::invalid_argument("--key-space-size must be at least 1");
  if (o.rate < 0) return Status::invalid_argument("--rate must not be negative");
  if (o.workload == Workload::kWatch) {
    if (o.val_size < 16) {
      return Status::invalid_argument("watch: --val-size must be at least 16 (a timestamp)");
    }
    if (o.watchers == 0) return Status::invalid_argument("watch: --watchers must be at least 1");
  }
  if (o.workload == Workload::kLeaseExpiry) {
    if (o.lease_ttl_s == 0)
      return Status::invalid_argument("lease-expiry: --lease-ttl must be at least 1");
    if (o.rate > 0 || o.duration_ms != 0) {
      return Status::invalid_argument("lease-expiry: give --total, not --rate or --duration");
    }
  }
  if (o.workload == Workload::kCas && o.rate > 0) {
    return Status::invalid_argument("cas: --rate is not supported (each client owns one key)");
  }
  // Idle connections speak the hello over plain sockets (idle.h): a TLS member would close
  // each at its handshake deadline, which measures nothing. Refused before anything runs.
  if (o.idle_conns > 0 &&
      (!o.secret_file.empty() || !o.tls.trusted_ca_file.empty() || !o.tls.cert_file.empty())) {
    return Status::invalid_argument(
        "--idle-conns does not support TLS (--secret-file, --cacert, --cert): the idle "
        "connections are plain TCP; run it against members without TLS");
  }
  return Status();
}

namespace {

using Clock = std::chrono::steady_clock;

std::uint64_t micros_between(Clock::time_point a, Clock::time_point b) {
  if (b <= a) return 0;
  return static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(b - a).count());
}

// One closed-loop request slot ("client" in etcd's benchmark). Touched by whichever thread
// issues its next request; the client library's queue orders those hand-offs.
struct Slot {
  std::size_t index = 0;
  std::mt19937_64 rng;
  std::string cas_key;
  std::uint64_t cas_revision = 0;
};

class Runner {
 public:
  explicit Runner(BenchOptions o) : o_(std::move(o)) {
    value_.resize(o_.val_size);
    std::mt19937_64 rng(o_.seed);
    for (char& c : value_) c = static_cast<char>('a' + rng() % 26);
  }

  Result<BenchResult> run() {
    IdleConnections idle;
    if (o_.idle_conns > 0) {
      Result<IdleConnections> opened = open_idle();
      if (!opened.ok()) return opened.status();
      idle = std::move(*opened);
    }
    KVC_RETURN_IF_ERROR(connect());
    if (o_.workload == Workload::kLeaseExpiry) return run_lease_expiry();
    if (o_.workload == Workload::kCas) KVC_RETURN_IF_ERROR(prepare_cas());
    if (o_.workload == Workload::kWatch) KVC_RETURN_IF_ERROR(start_watchers());
    sequence_.store(o_.first_key);
    start_ = Clock::now();
    end_ = start_ + std::chrono::milliseconds(o_.duration_ms);
    last_done_ = start_;
    std::thread dispatcher;
    if (o_.rate > 0) {
      dispatcher = std::thread([this] { open_loop(); });
    } else {
      start_closed_loop();
    }
    wait_finished();
    if (dispatcher.joinable()) dispatcher.join();
    if (o_.workload == Workload::kWatch) finish_watchers();
    client_.reset();  // joins the client's thread: every callback has run
    if (o_.idle_conns > 0) {
      idle.check_open();
      result_.idle = idle.summary();
    }
    result_.workload = workload_name(o_.workload);
    result_.elapsed_s = std::chrono::duration<double>(last_done_ - start_).count();
    result_.issued = issued_.load();
    return std::move(result_);
  }

 private:
  Result<IdleConnections> open_idle() {
    // Plain sockets only: validate() refused TLS flags with --idle-conns.
    Result<IdleConnections> idle = IdleConnections::open(
        o_.endpoints, o_.idle_conns, std::min<std::uint64_t>(o_.timeout_ms, 2000));
    if (!idle.ok()) return idle.status();
    if (o_.on_idle_open) o_.on_idle_open(idle->summary());
    if (o_.idle_hold_ms > 0) {
      std::this_thread::sleep_for(std::chrono::milliseconds(o_.idle_hold_ms));
    }
    return idle;
  }

  Status connect() {
    client::ClientOptions co;
    co.endpoints = o_.endpoints;
    co.timeout_ms = o_.timeout_ms;
    co.connect_timeout_ms = std::min<std::uint64_t>(o_.timeout_ms, 2000);
    co.connections_per_member = o_.conns;
    co.name = "kvc-bench";
    co.secret_file = o_.secret_file;
    co.tls = o_.tls;
    co.token = o_.token;
    co.shared_watches = !o_.per_watch_responses;
    if (o_.target_leader) {
      Result<std::unique_ptr<client::Client>> probe = client::Client::open(co);
      if (!probe.ok()) return probe.status();
      wire::Response r = (*probe)->call_sync({.op = wire::Op::kLeader});
      if (r.code != Code::kOk) {
        return Status(r.code, "--target-leader: asking for the leader: " + r.message);
      }
      if (r.leader_client_addr.empty()) {
        return Status::unavailable("--target-leader: the cluster has no leader right now");
      }
      Result<net::Address> a = net::parse_address(r.leader_client_addr);
      if (!a.ok()) return a.status().with_context("--target-leader: the leader's address");
      co.endpoints = {*a};
      leader_ = *a;
      result_.leader = r.leader_client_addr;
    }
    Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(co));
    if (!c.ok()) return c.status();
    client_ = std::move(*c);
    return Status();
  }

  client::CallOptions call_options(const Slot& s, bool is_read) const {
    client::CallOptions opts;
    if (leader_) {
      opts.target = *leader_;
    } else if (o_.serializable && is_read) {
      // Serializable reads are answered by any member: spread the clients over all of them,
      // as etcd's benchmark spreads its connections over the endpoints.
      opts.target = o_.endpoints[s.index % o_.endpoints.size()];
    }
    return opts;
  }

  std::uint64_t next_key_number(Slot& s) {
    if (o_.sequential_keys) return sequence_.fetch_add(1) % o_.key_space_size;
    return s.rng() % o_.key_space_size;
  }

  // Only the watch workload puts under its prefix; the others use the bare keys, as etcd's
  // benchmark does (so key sizes line up in compare-etcd).
  std::string next_key(Slot& s) {
    std::string key = make_key(next_key_number(s), o_.key_size, o_.key_space_size);
    return o_.workload == Workload::kWatch ? o_.watch_prefix + key : key;
  }

  // The request a slot sends next; `is_read` says which kind it is (mixed).
  wire::Request make_request(Slot& s, bool& is_read) {
    is_read = false;
    switch (o_.workload) {
      case Workload::kPut:
        return {.op = wire::Op::kPut, .key = next_key(s), .value = value_};
      case Workload::kGet:
        is_read = true;
        return {.op = wire::Op::kGet,
                .key = o_.key ? *o_.key : next_key(s),
                .serializable = o_.serializable};
      case Workload::kRange:
        is_read = true;
        return {.op = wire::Op::kRange,
                .key = o_.prefix,
                .value = o_.prefix,
                .prefix = true,
                .limit = o_.limit,
                .serializable = o_.serializable};
      case Workload::kCas:
        return {.op = wire::Op::kCas,
                .key = s.cas_key,
                .value = value_,
                .expect_revision = s.cas_revision};
      case Workload::kWatch: {
        wire::Request r{.op = wire::Op::kPut, .key = next_key(s), .value = value_};
        char stamp[17];
        const auto ns = static_cast<unsigned long long>(
            std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now().time_since_epoch())
                .count());
        std::snprintf(stamp, sizeof stamp, "%016llx", ns);
        r.value.replace(0, 16, stamp);
        return r;
      }
      case Workload::kLeaseExpiry:
        break;  // run_lease_expiry issues its own requests
      case Workload::kMixed: {
        std::uniform_real_distribution<double> u(0.0, 1.0);
        if (u(s.rng) < o_.read_ratio) {
          is_read = true;
          return {.op = wire::Op::kGet, .key = next_key(s), .serializable = o_.serializable};
        }
        return {.op = wire::Op::kPut, .key = next_key(s), .value = value_};
      }
    }
    return {};
  }

  // --- closed loop -------------------------------------------------------------------------

  void start_closed_loop() {
    slots_.resize(std::max<std::size_t>(o_.clients, 1));
    active_.store(slots_.size());
    for (std::size_t i = 0; i < slots_.size(); ++i) {
      Slot& s = slots_[i];
      s.index = i;
      s.rng.seed(o_.seed * 1000003 + i);
      if (o_.workload == Workload::kCas) {
        s.cas_key = cas_keys_[i].first;
        s.cas_revision = cas_keys_[i].second;
      }
    }
    for (Slot& s : slots_) issue(s);
  }

  // Claims the next operation; false when the run is over.
  bool claim() {
    if (o_.duration_ms != 0) {
      if (Clock::now() >= end_) return false;
      issued_.fetch_add(1);
      return true;
    }
    if (issued_.fetch_add(1) >= o_.total) {
      issued_.fetch_sub(1);
      return false;
    }
    return true;
  }

  void issue(Slot& s) {
    if (!claim()) {
      if (active_.fetch_sub(1) == 1) signal_finished();
      return;
    }
    bool is_read = false;
    wire::Request req = make_request(s, is_read);
    const Clock::time_point t0 = Clock::now();
    client_->call(
        std::move(req),
        [this, &s, t0, is_read](wire::Response r) {
          complete(s, t0, is_read, std::move(r));
          issue(s);
        },
        call_options(s, is_read));
  }

  // Records one answer (on the client's thread).
  void complete(Slot& s, Clock::time_point t0, bool is_read, wire::Response r) {
    const Clock::time_point now = Clock::now();
    last_done_ = std::max(last_done_, now);
    if (r.code == Code::kOk) {
      ++result_.ok;
      if (o_.workload == Workload::kWatch) {
        result_.put_latency.record(micros_between(t0, now));
        expected_events_ += o_.watchers;
      } else {
        result_.latency.record(micros_between(t0, now));
      }
      if (o_.workload == Workload::kCas) s.cas_revision = r.revision;
    } else {
      ++result_.errors[std::string(code_name(r.code))];
      if (result_.first_error.empty()) {
        result_.first_error = std::string(code_name(r.code)) + ": " + r.message;
        result_.first_error_code = r.code;
      }
    }
    if (o_.workload == Workload::kMixed) ++(is_read ? result_.reads : result_.writes);
    done_.fetch_add(1, std::memory_order_relaxed);
  }

  // --- open loop ---------------------------------------------------------------------------

  void open_loop() {
    Slot s;
    s.rng.seed(o_.seed);
    slots_.resize(std::max<std::size_t>(o_.clients, 1));
    for (std::size_t i = 0; i < slots_.size(); ++i) slots_[i].index = i;
    const auto period = std::chrono::duration<double>(1.0 / o_.rate);
    // Requests in flight beyond this wait to be sent; their latency still counts from the
    // schedule, so the wait shows in the histogram instead of silently lowering the rate.
    const std::uint64_t cap = std::max<std::uint64_t>(o_.clients, 1);
    std::uint64_t i = 0;
    for (;; ++i) {
      const Clock::time_point at =
          start_ + std::chrono::duration_cast<Clock::duration>(period * static_cast<double>(i));
      if (o_.duration_ms != 0 ? at >= end_ : i >= o_.total) break;
      std::this_thread::sleep_until(at);
      for (int spins = 0; issued_.load() - done_.load() >= cap; ++spins) {
        std::this_thread::sleep_for(std::chrono::microseconds(spins < 100 ? 20 : 200));
      }
      issued_.fetch_add(1);
      bool is_read = false;
      const std::size_t slot_index = i % slots_.size();
      s.index = slot_index;
      wire::Request req = make_request(s, is_read);
      client_->call(
          std::move(req),
          [this, at, is_read, slot_index](wire::Response r) {
            complete(slots_[slot_index], at, is_read, std::move(r));
            if (dispatch_done_.load() && done_.load() == issued_.load()) signal_finished();
          },
          call_options(s, is_read));
    }
    dispatch_done_.store(true);
    if (done_.load() == issued_.load()) signal_finished();
  }

  // --- cas ---------------------------------------------------------------------------------

  // Each client owns one key and learns its revision first (untimed), so compare failures
  // come only from writers outside this run.
  Status prepare_cas() {
    for (std::size_t i = 0; i < std::max<std::size_t>(o_.clients, 1); ++i) {
      std::string key =
          "cas/" + make_key(i, o_.key_size, std::max<std::uint64_t>(o_.clients, o_.key_space_size));
      client::CallOptions opts;
      if (leader_) opts.target = *leader_;
      wire::Response r = client_->call_sync({.op = wire::Op::kGet, .key = key}, opts);
      if (r.code != Code::kOk) return Status(r.code, "cas: reading " + key + ": " + r.message);
      const std::uint64_t rev = r.found && !r.kvs.empty() ? r.kvs.front().mod_revision : 0;
      cas_keys_.emplace_back(std::move(key), rev);
    }
    return Status();
  }

  // --- watch -------------------------------------------------------------------------------

  Status start_watchers() {
    std::mutex mu;
    std::condition_variable cv;
    std::size_t acked = 0;
    Status failed;
    for (std::size_t i = 0; i < o_.watchers; ++i) {
      client::CallOptions opts;
      if (leader_) opts.target = *leader_;
      auto first = std::make_shared<bool>(true);
      const std::uint64_t id = client_->stream(
          {.op = wire::Op::kWatch, .key = o_.watch_prefix, .prefix = true},
          [this, first, &mu, &cv, &acked, &failed](const wire::Response& r) {
            if (*first) {
              *first = false;
              std::lock_guard<std::mutex> lock(mu);
              if (r.code != Code::kOk && failed.ok()) {
                failed = Status(r.code, "watch: opening a watcher: " + r.message);
              }
              ++acked;
              cv.notify_all();
            }
            on_events(r);
            return true;
          },
          opts);
      watch_ids_.push_back(id);
    }
    std::unique_lock<std::mutex> lock(mu);
    const bool all = cv.wait_for(lock, std::chrono::milliseconds(o_.timeout_ms),
                                 [&] { return acked == o_.watchers; });
    if (!all) return Status::timeout("watch: not every watcher was opened in time");
    watchers_open_.store(true);
    return failed;
  }

  // On the client's thread: every event whose value carries our timestamp.
  void on_events(const wire::Response& r) {
    if (!watchers_open_.load() && r.events.empty()) return;
    const Clock::time_point now = Clock::now();
    const auto now_ns = static_cast<std::uint64_t>(
        std::chrono::duration_cast<std::chrono::nanoseconds>(now.time_since_epoch()).count());
    std::uint64_t counted = 0;
    for (const wire::Event& e : r.events) {
      if (e.type != wire::EventType::kPut || e.kv.value.size() < 16) continue;
      const std::uint64_t sent = sent_time(e);
      if (sent == 0 || sent > now_ns) continue;
      result_.latency.record((now_ns - sent) / 1000);
      ++counted;
    }
    if (counted != 0) {
      last_done_ = std::max(last_done_, now);
      events_.fetch_add(counted);
    }
  }

  // The send time a put wrote into its value (16 hex digits), 0 when it has none. The watches
  // of one group are handed the same event one after another (shared watch responses): the
  // last event's time is kept, so each is read once.
  static std::uint64_t sent_time(const wire::Event& e) {
    thread_local std::uint64_t last_revision = 0;
    thread_local std::uint64_t last_sent = 0;
    if (e.kv.mod_revision == last_revision && last_revision != 0) return last_sent;
    std::uint64_t sent = 0;
    for (std::size_t i = 0; i < 16; ++i) {
      const char c = e.kv.value[i];
      const int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
      if (d < 0) return 0;
      sent = sent * 16 + static_cast<std::uint64_t>(d);
    }
    last_revision = e.kv.mod_revision;
    last_sent = sent;
    return sent;
  }

  void finish_watchers() {
    // Every put that succeeded should reach every watcher: wait a bounded time for the rest.
    const Clock::time_point give_up = Clock::now() + std::chrono::milliseconds(o_.timeout_ms);
    while (Clock::now() < give_up) {
      if (events_.load() >= expected_events_.load()) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    for (std::uint64_t id : watch_ids_) client_->cancel(id);
    // The puts' count goes to `issued`; the events are the operations of this workload.
    const std::uint64_t events = events_.load();
    const std::uint64_t expected = expected_events_.load();
    result_.ok = events;
    if (events < expected) result_.errors["watch_missed"] += expected - events;
  }

  // --- lease expiry ------------------------------------------------------------------------

  // Grants `total` leases (up to `clients` at a time), puts one key on each, and records, for
  // each key, the time from the end of its lease's ttl (counted from the grant's answer, the
  // latest moment the leader can have started counting) to its delete event. Expiry is never
  // early (docs/coordination.md), so the figure is what expiry costs beyond the ttl: the lease
  // clock's tick, the revoke's commit, and the watch delivery.
  Result<BenchResult> run_lease_expiry() {
    struct Pending {
      Clock::time_point due;
    };
    std::mutex mu;
    std::condition_variable cv;
    std::map<std::string, Pending> pending;  // key -> when its lease's ttl ends
    std::uint64_t deleted = 0;
    const std::uint64_t watch =
        client_->stream({.op = wire::Op::kWatch, .key = o_.watch_prefix, .prefix = true},
                        [&](const wire::Response& r) {
                          const Clock::time_point now = Clock::now();
                          std::lock_guard<std::mutex> lock(mu);
                          for (const wire::Event& e : r.events) {
                            if (e.type != wire::EventType::kDelete) continue;
                            auto it = pending.find(e.kv.key);
                            if (it == pending.end()) continue;
                            result_.latency.record(micros_between(it->second.due, now));
                            last_done_ = std::max(last_done_, now);
                            pending.erase(it);
                            ++deleted;
                          }
                          cv.notify_all();
                          return true;
                        });
    start_ = Clock::now();
    last_done_ = start_;
    std::atomic<std::uint64_t> next{0};
    auto worker = [&] {
      for (;;) {
        const std::uint64_t i = next.fetch_add(1);
        if (i >= o_.total) return;
        issued_.fetch_add(1);
        wire::Response g = client_->call_sync({.op = wire::Op::kLeaseGrant, .ttl = o_.lease_ttl_s});
        const Clock::time_point granted = Clock::now();
        const std::string key = o_.watch_prefix + make_key(i, o_.key_size, o_.total);
        wire::Response p =
            g.code == Code::kOk
                ? client_->call_sync(
                      {.op = wire::Op::kPut, .key = key, .value = value_, .lease = g.lease})
                : g;
        std::lock_guard<std::mutex> lock(mu);
        if (p.code != Code::kOk) {
          ++result_.errors[std::string(code_name(p.code))];
          if (result_.first_error.empty()) {
            result_.first_error = std::string(code_name(p.code)) + ": " + p.message;
            result_.first_error_code = p.code;
          }
          continue;
        }
        pending[key] = {granted + std::chrono::seconds(g.ttl)};
        done_.fetch_add(1);
      }
    };
    std::vector<std::thread> workers;
    for (std::size_t i = 0; i < std::max<std::size_t>(o_.clients, 1); ++i) {
      workers.emplace_back(worker);
    }
    for (std::thread& t : workers) t.join();
    {
      // Every key should go within its ttl plus the request timeout (the bound on a leader
      // change's delay): the ones left are reported missing.
      std::unique_lock<std::mutex> lock(mu);
      const auto give_up = Clock::now() + std::chrono::seconds(o_.lease_ttl_s) +
                           std::chrono::milliseconds(o_.timeout_ms);
      while (!pending.empty() && Clock::now() < give_up) {
        cv.wait_for(lock, std::chrono::milliseconds(100));
        if (o_.on_progress) {
          const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
          lock.unlock();
          o_.on_progress(deleted, elapsed);
          lock.lock();
        }
      }
      if (!pending.empty()) result_.errors["not_expired"] += pending.size();
      result_.ok = deleted;
    }
    client_->cancel(watch);
    client_.reset();
    result_.workload = workload_name(o_.workload);
    result_.elapsed_s = std::chrono::duration<double>(last_done_ - start_).count();
    result_.issued = issued_.load();
    return std::move(result_);
  }

  // --- finishing ---------------------------------------------------------------------------

  void signal_finished() {
    std::lock_guard<std::mutex> lock(finish_mu_);
    finished_ = true;
    finish_cv_.notify_all();
  }

  void wait_finished() {
    std::unique_lock<std::mutex> lock(finish_mu_);
    for (;;) {
      const bool done =
          finish_cv_.wait_for(lock, std::chrono::milliseconds(200), [this] { return finished_; });
      if (o_.on_progress) {
        const double elapsed = std::chrono::duration<double>(Clock::now() - start_).count();
        lock.unlock();
        o_.on_progress(done_.load(), elapsed);
        lock.lock();
      }
      if (done) return;
    }
  }

  BenchOptions o_;
  std::string value_;
  std::unique_ptr<client::Client> client_;
  std::optional<net::Address> leader_;
  std::vector<Slot> slots_;
  std::vector<std::pair<std::string, std::uint64_t>> cas_keys_;
  std::vector<std::uint64_t> watch_ids_;

  Clock::time_point start_, end_;
  std::atomic<std::uint64_t> issued_{0};
  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint64_t> sequence_{0};
  std::atomic<std::size_t> active_{0};
  std::atomic<bool> dispatch_done_{false};
  std::atomic<bool> watchers_open_{false};
  std::atomic<std::uint64_t> events_{0};
  std::atomic<std::uint64_t> expected_events_{0};

  // Written on the client's thread only, read after it is joined:
  BenchResult result_;
  Clock::time_point last_done_;

  std::mutex finish_mu_;
  std::condition_variable finish_cv_;
  bool finished_ = false;  // guarded by finish_mu_
};

}  // namespace

Result<BenchResult> run_bench(const BenchOptions& options) {
  KVC_RETURN_IF_ERROR(validate(options));
  Runner runner(options);
  return runner.run();
}

}  // namespace kvc::bench
