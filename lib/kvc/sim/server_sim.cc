// The server simulation (server_sim.h). One ServerSim per run: a time-ordered event queue
// (simulated microseconds, then sequence), member slots (the SimMember of the current
// incarnation, its executors and its network endpoint), clients, the fault schedule and the
// checks. A member's executors are FIFO queues, each run by events at seeded delays (the loop's
// jobs within microseconds, disk and flush jobs after a simulated fsync), so the loop, the disk
// thread and the flush thread interleave as they do in kvc-node, reproducibly.
#include "kvc/sim/server_sim.h"

#include <spdlog/sinks/base_sink.h>
#include <spdlog/spdlog.h>
#include <stdlib.h>

#include <deque>
#include <filesystem>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <queue>
#include <set>

#include "kvc/check/history.h"
#include "kvc/raft/node.h"
#include "kvc/server/sim_member.h"
#include "kvc/sim/disk_faults.h"
#include "kvc/sim/history_check.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/sim_fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::sim {

const std::vector<std::string>& server_mutations() {
  static const std::vector<std::string> kMutations = {
      "ack-before-commit", "ack-before-apply", "read-before-applied",   "local-reads",
      "skip-wal-replay",   "unverified-reads", "persist-without-fsync", "marker-before-flush",
  };
  return kMutations;
}

namespace {

constexpr const char* kKeys[] = {"a", "b", "c", "d"};
constexpr std::uint64_t kTickMs = 10;
constexpr std::uint64_t kFlushIntervalMs = 40;
constexpr int kSpareSlots = 2;  // members that may be added beyond the founders
constexpr int kMaxNames = 64;   // members named in one run (m1 ... m64)

using server::SimMember;

// spdlog lines of the members, into the trace (with the simulated time).
class TraceSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit TraceSink(std::function<void(std::string_view)> out) : out_(std::move(out)) {}

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    out_(std::string_view(msg.payload.data(), msg.payload.size()));
  }
  void flush_() override {}

 private:
  std::function<void(std::string_view)> out_;
};

class ServerSim;

// One of a member's executors: jobs run one at a time, in order, each `delay` after the
// previous one finished (or after it was posted, when the queue was idle).
class SimExecutor final : public server::Executor {
 public:
  enum class Kind { kLoop, kDisk, kFlush };
  SimExecutor(ServerSim* sim, int slot, Kind kind) : sim_(sim), slot_(slot), kind_(kind) {}
  void post(std::function<void()> job) override;
  // A crash: the jobs are lost, and runs already scheduled do nothing.
  void clear() {
    jobs_.clear();
    armed_ = false;
    ++epoch_;
  }

 private:
  void arm();
  void run_one(std::uint64_t epoch);
  ServerSim* sim_;
  int slot_;
  Kind kind_;
  std::deque<std::function<void()>> jobs_;
  bool armed_ = false;
  std::uint64_t epoch_ = 0;
};

class SimNet final : public server::Transport {
 public:
  SimNet(ServerSim* sim, int slot) : sim_(sim), slot_(slot) {}
  void set_peers(const std::map<std::uint64_t, std::string>&) override {}
  void mark_removed(std::uint64_t id) override { removed_.insert(id); }
  void send(const raft::Message& m) override;
  std::size_t connected_peers() const override { return 0; }
  void close() override {}
  // Ids this member refuses as removed (it tells them so when they call).
  const std::set<std::uint64_t>& removed() const { return removed_; }
  void forget_removed() { removed_.clear(); }

 private:
  std::set<std::uint64_t> removed_;
  ServerSim* sim_;
  int slot_;
};

struct Slot {
  int index = 0;
  std::string name;
  std::string dir;
  std::uint64_t id = 0;
  std::unique_ptr<SimExecutor> loop, disk, flush, scrub;
  std::unique_ptr<SimNet> net;
  server::SimEnvironment env;
  server::EngineOptions options;
  std::unique_ptr<SimMember> member;
  std::uint64_t incarnation = 0;
  bool stopping = false;        // a clean stop was asked for
  bool in_use = false;          // a member lives here (founders, or added and joining)
  int join_tries = 0;           // an added member retries its join this many more times
  bool was_damaged = false;     // it was in the damaged mode when last looked at
  bool damage_pending = false;  // a value was damaged here and not yet repaired
  bool started = false;         // its member started once (it has an identity)
  // Disk faults injected on it (a failed fsync, a flipped bit read back): the member may stop,
  // or refuse one start, because of them.
  int sync_fault = 0;  // failures injected and not yet seen
  bool read_fault = false;
  std::uint64_t checked_commit = 0;  // committed entries compared up to here
};

struct ClientState {
  int id = 0;
  int ops = 0;
  int leader_hint = -1;  // slot index
  bool busy = false;
};

struct InFlightOp {
  std::size_t op = 0;  // index into history_
  int client = 0;
  int slot = 0;
  std::uint64_t incarnation = 0;
  bool done = false;
};

class ServerSim {
 public:
  explicit ServerSim(const ServerSimOptions& o) : o_(o), rng_(o.seed * 0x9E3779B97F4A7C15ull + 7) {}
  ~ServerSim() {
    for (Slot& s : slots_) crash_member(s, /*count=*/false);
    if (!root_.empty()) {
      std::error_code ec;
      std::filesystem::remove_all(root_, ec);
    }
  }

  ServerSimResult run();

  // Scheduling (used by the executors and the network).
  std::uint64_t now() const { return now_us_; }
  void at(std::uint64_t when, std::function<void()> fn) {
    events_.push({when, ++seq_, std::move(fn)});
  }
  std::uint64_t rand(std::uint64_t n) { return rng_.uniform(n); }
  bool chance(int percent) { return rng_.uniform(100) < static_cast<std::uint64_t>(percent); }
  std::uint64_t delay_for(SimExecutor::Kind kind) {
    switch (kind) {
      case SimExecutor::Kind::kLoop:
        return 1 + rand(20);
      case SimExecutor::Kind::kDisk:
        return 50 + rand(chance(10) ? 8000 : 1500);
      case SimExecutor::Kind::kFlush:
        return 100 + rand(chance(10) ? 10000 : 2000);
    }
    return 1;
  }
  void after_event(int slot);
  void send(int from, const raft::Message& m);

 private:
  struct Event {
    std::uint64_t at;
    std::uint64_t seq;
    std::function<void()> fn;
    bool operator>(const Event& o) const { return at != o.at ? at > o.at : seq > o.seq; }
  };

  Status make_root();
  void make_slots();
  void name_slot(Slot& s, const std::string& name, const std::string& state);
  Result<server::JoinAnswer> join(const std::string& name);
  void admin(wire::Request req, std::function<void(const wire::Response&)> done);
  void membership_fault();
  void membership_tick();
  void start_added(int slot);
  void free_removed(Slot& s, const std::string& why);
  void damage_fault();
  void disk_fault();
  Status start_member(Slot& s);
  void schedule_timers(Slot& s);
  void crash_member(Slot& s, bool count);
  void restart_later(Slot& s, std::uint64_t after_us);
  void fault();
  void heal();
  void next_op(ClientState& c);
  void finish_op(std::size_t inflight, const wire::Response& r);
  void probe();
  void check_member(Slot& s);
  void violation(const std::string& what) {
    if (!result_.ok) return;
    result_.ok = false;
    result_.violation = what;
    result_.at_us = now_us_;
  }
  bool partitioned(int a, int b) const {
    return group_of_[a] != group_of_[b] || cut_.count({a, b}) != 0;
  }
  void trace(const std::string& line) {
    if (o_.trace && o_.trace_sink) o_.trace_sink("t=" + std::to_string(now_us_) + " " + line);
  }

 public:
  // The member whose code runs now (its log lines are traced under its name).
  void enter(int slot) { current_ = slot; }
  void member_log(std::string_view line) {
    if (!o_.trace || !o_.trace_sink) return;
    const std::string who =
        current_ >= 0 ? slots_[static_cast<std::size_t>(current_)].name : std::string("-");
    trace(who + ": " + std::string(line));
  }

 private:
  int current_ = -1;
  Slot* leader_slot();

  ServerSimOptions o_;
  raft::SplitMix64 rng_;
  std::priority_queue<Event, std::vector<Event>, std::greater<>> events_;
  std::uint64_t seq_ = 0;
  std::uint64_t now_us_ = 0;
  std::string root_;
  // The members' data directories on a simulated disk (wal/, snap/ and the small files), their
  // LMDB state directories passed through to tmpfs; installed for this thread while it lives.
  std::unique_ptr<storage::SimFileSystem> fs_;
  std::optional<storage::ScopedFileSystem> fs_guard_;
  std::vector<Slot> slots_;
  std::map<std::uint64_t, int> slot_of_id_;
  std::string founders_;  // the founders' --initial-cluster
  int next_name_ = 0;     // added members are named m<founders + next_name_>
  bool admin_inflight_ = false;
  std::uint64_t admin_seq_ = 0;
  std::vector<int> group_of_;          // partition groups: members talk within a group
  std::set<std::pair<int, int>> cut_;  // one-way cuts (from, to)
  int drop_percent_ = 0;
  bool healed_ = false;
  std::vector<ClientState> clients_;
  check::History history_;
  std::vector<InFlightOp> inflight_;
  std::map<std::string, std::uint64_t> seen_revision_;  // a key's newest revision a client saw
  std::uint64_t value_seq_ = 0;
  // Checks.
  std::map<std::uint64_t, std::uint64_t> leader_of_term_;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::size_t>> committed_;  // index -> term, hash
  bool probe_ok_ = false;
  bool probe_inflight_ = false;
  std::uint64_t probe_seq_ = 0;
  ServerSimResult result_;
};

void SimExecutor::post(std::function<void()> job) {
  jobs_.push_back(std::move(job));
  if (!armed_) arm();
}

void SimExecutor::arm() {
  armed_ = true;
  const std::uint64_t epoch = epoch_;
  sim_->at(sim_->now() + sim_->delay_for(kind_), [this, epoch] { run_one(epoch); });
}

void SimExecutor::run_one(std::uint64_t epoch) {
  if (epoch != epoch_ || jobs_.empty()) return;
  armed_ = false;
  std::function<void()> job = std::move(jobs_.front());
  jobs_.pop_front();
  sim_->enter(slot_);
  job();
  if (epoch != epoch_) return;  // the job crashed the member (it never does today)
  if (!jobs_.empty() && !armed_) arm();
  if (kind_ == Kind::kLoop) sim_->after_event(slot_);
}

void SimNet::send(const raft::Message& m) { sim_->send(slot_, m); }

Status ServerSim::make_root() {
  std::string base = o_.data_root;
  if (base.empty()) {
    std::error_code ec;
    base = std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "";
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
  }
  std::string pattern = base + "/kvc-server-sim-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::io_error("cannot make a temporary directory under " + base);
  }
  root_ = pattern;
  // Member names are m1, m2, ...: their state directories stay on tmpfs (LMDB cannot sit on the
  // simulated disk; it has its own durability contract, kept by its fully synced commits).
  std::vector<std::string> passthrough;
  for (int k = 1; k <= kMaxNames; ++k)
    passthrough.push_back(root_ + "/m" + std::to_string(k) + "/state");
  fs_ = std::make_unique<storage::SimFileSystem>(std::vector<std::string>{root_}, rng_.next_u64(),
                                                 std::move(passthrough));
  fs_guard_.emplace(fs_.get());
  return Status();
}

void ServerSim::make_slots() {
  for (int i = 0; i < o_.members; ++i) {
    if (i > 0) founders_ += ",";
    founders_ += "m" + std::to_string(i + 1) + "=127.0.0.1:" + std::to_string(10001 + i);
  }
  // Founders, then spare slots for members added later (kMaxAdded at a time).
  const int slots = o_.members + kSpareSlots;
  slots_.resize(static_cast<std::size_t>(slots));
  group_of_.assign(slots_.size(), 0);
  for (int i = 0; i < slots; ++i) {
    Slot& s = slots_[static_cast<std::size_t>(i)];
    s.index = i;
    s.loop = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kLoop);
    s.disk = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kDisk);
    s.flush = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kFlush);
    s.scrub = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kFlush);
    s.net = std::make_unique<SimNet>(this, i);
    s.env.loop = s.loop.get();
    s.env.disk = s.disk.get();
    s.env.flush = s.flush.get();
    s.env.scrub = s.scrub.get();
    s.env.transport = s.net.get();
    s.env.now_ms = [this] { return now_us_ / 1000; };
    s.env.random = [this] { return rng_.next_u64(); };
    s.env.join = [this](const std::string& name) { return join(name); };
    if (i < o_.members) name_slot(s, "m" + std::to_string(i + 1), "new");
  }
}

// Gives a slot a member of its own: a name, an empty data directory, its options.
void ServerSim::name_slot(Slot& s, const std::string& name, const std::string& state) {
  s.name = name;
  s.dir = root_ + "/" + name;
  s.in_use = true;
  s.started = false;
  s.sync_fault = 0;
  s.read_fault = false;
  s.damage_pending = false;
  std::error_code ec;
  std::filesystem::create_directories(s.dir, ec);  // on tmpfs: the parent of its state/
  server::EngineOptions& eo = s.options;
  eo = server::EngineOptions();
  eo.name = name;
  eo.data_dir = s.dir;
  // Addresses by name (never bound): a slot's next member must not reuse its predecessor's.
  const int number = std::stoi(name.substr(1));
  eo.listen_peer = "127.0.0.1:" + std::to_string(10000 + number);
  eo.listen_client = "127.0.0.1:" + std::to_string(20000 + number);
  eo.initial_cluster = founders_;
  if (state == "existing") eo.initial_cluster += "," + name + "=" + eo.listen_peer;
  eo.initial_cluster_state = state;
  eo.cluster_token = "sim";
  eo.tick_ms = kTickMs;
  eo.election_ticks = 10;
  eo.heartbeat_ticks = 1;
  eo.flush_interval_ms = kFlushIntervalMs;
  eo.retained_entries = 40;  // followers that fall behind need a snapshot
  eo.request_timeout_ms = 1500;
  eo.wal_segment_bytes = 64 << 10;
  eo.state_map_size = 64ull << 20;
  eo.snapshots_kept = 2;
  eo.history_revisions = 1000;
  eo.history_bytes = 1 << 20;
  eo.scrub_bytes_per_second = 256 << 10;  // finds damage nobody reads
  eo.hash_check_interval_ms = 0;
  eo.test_mutation = o_.mutation;
}

// A joining member asks the members it can reach which id the cluster gave it.
Result<server::JoinAnswer> ServerSim::join(const std::string& name) {
  for (Slot& s : slots_) {
    if (!s.member || s.member->stopped() || s.name == name) continue;
    Result<std::uint64_t> id = s.member->lookup_joining(name);
    if (!id.ok()) continue;
    server::JoinAnswer a;
    a.member_id = *id;
    a.cluster_id = s.member->cluster_id();
    a.answered_by = {s.id, s.name, s.options.listen_peer, s.options.listen_client};
    return a;
  }
  return Status::unavailable("no member knows '" + name + "' yet");
}

Status ServerSim::start_member(Slot& s) {
  ++s.incarnation;
  s.stopping = false;
  s.checked_commit = 0;
  s.net->forget_removed();
  enter(s.index);
  Result<std::unique_ptr<SimMember>> m = SimMember::open(s.options, s.env);
  if (!m.ok()) return m.status();
  s.member = std::move(*m);
  s.started = true;
  s.id = s.member->id();
  slot_of_id_[s.id] = s.index;
  trace(s.name + " started incarnation=" + std::to_string(s.incarnation));
  schedule_timers(s);
  return Status();
}

// The tick and flush timers of one incarnation (they stop with it).
void ServerSim::schedule_timers(Slot& s) {
  const std::uint64_t inc = s.incarnation;
  const int i = s.index;
  auto tick = std::make_shared<std::function<void()>>();
  *tick = [this, i, inc, tick] {
    Slot& sl = slots_[static_cast<std::size_t>(i)];
    if (sl.incarnation != inc || !sl.member) return;
    enter(i);
    sl.member->tick();
    after_event(i);
    at(now_us_ + kTickMs * 1000, *tick);
  };
  at(now_us_ + 1 + rand(kTickMs * 1000), *tick);
  auto flush = std::make_shared<std::function<void()>>();
  *flush = [this, i, inc, flush] {
    Slot& sl = slots_[static_cast<std::size_t>(i)];
    if (sl.incarnation != inc || !sl.member) return;
    enter(i);
    sl.member->flush_timer();
    after_event(i);
    at(now_us_ + kFlushIntervalMs * 500, *flush);
  };
  at(now_us_ + 1 + rand(kFlushIntervalMs * 500), *flush);
  auto scrub = std::make_shared<std::function<void()>>();
  *scrub = [this, i, inc, scrub] {
    Slot& sl = slots_[static_cast<std::size_t>(i)];
    if (sl.incarnation != inc || !sl.member) return;
    enter(i);
    sl.member->scrub_timer();
    after_event(i);
    at(now_us_ + 100'000, *scrub);
  };
  at(now_us_ + 1 + rand(100'000), *scrub);
}

void ServerSim::crash_member(Slot& s, bool count) {
  if (!s.member) return;
  if (count) ++result_.stats.crashes;
  trace(s.name + " crashed");
  // The executors' jobs hold the member: they go first.
  s.loop->clear();
  s.disk->clear();
  s.flush->clear();
  s.scrub->clear();
  s.member.reset();
  if (fs_) fs_->crash(s.dir);  // writes it did not sync are lost, kept, or torn
  ++s.incarnation;             // timers and deliveries of the old incarnation do nothing
  // Requests it held: writes have an unknown outcome, reads simply failed.
  for (InFlightOp& f : inflight_) {
    if (f.done || f.slot != s.index) continue;
    f.done = true;
    check::Operation& op = history_[f.op];
    op.outcome =
        op.kind == check::OpKind::kGet ? check::Outcome::kFailed : check::Outcome::kUnknown;
    op.response_time = op.outcome == check::Outcome::kUnknown ? check::kNever : now_us_;
    clients_[static_cast<std::size_t>(f.client)].busy = false;
    const int c = f.client;
    at(now_us_ + 1000 + rand(5000), [this, c] { next_op(clients_[static_cast<std::size_t>(c)]); });
  }
}

void ServerSim::restart_later(Slot& s, std::uint64_t after_us) {
  const int i = s.index;
  at(now_us_ + after_us, [this, i] {
    Slot& sl = slots_[static_cast<std::size_t>(i)];
    if (sl.member || !sl.in_use) return;
    Status st = start_member(sl);
    if (st.ok()) {
      if (sl.join_tries > 0) ++result_.stats.joined;
      sl.join_tries = 0;
      return;
    }
    sl.member.reset();
    if (st.message().find("was removed from the cluster") != std::string::npos) {
      free_removed(sl, st.message());
    } else if (sl.read_fault || sl.sync_fault > 0) {
      // A bit flipped on a read, or a failed sync, during start-up: refused, as it must be;
      // the next start reads the disk again.
      trace(sl.name + " refused to start after a disk fault: " + st.message());
      if (sl.read_fault) {
        sl.read_fault = false;
      } else {
        --sl.sync_fault;
      }
      restart_later(sl, 10'000 + rand(100'000));
    } else if (sl.join_tries > 0) {
      // Added, but no member it can reach has applied the addition yet: ask again later.
      if (--sl.join_tries == 0) {
        trace(sl.name + " gave up joining: " + st.message());
        sl.in_use = false;
      } else {
        restart_later(sl, 50'000);
      }
    } else {
      violation("member " + sl.name + " could not restart: " + st.to_string());
    }
  });
}

Slot* ServerSim::leader_slot() {
  Slot* best = nullptr;
  for (Slot& s : slots_) {
    if (!s.member || s.member->stopped()) continue;
    const raft::Node& n = s.member->node();
    if (n.role() == raft::Role::kLeader &&
        (best == nullptr || n.term() > best->member->node().term())) {
      best = &s;
    }
  }
  return best;
}

// After every event that ran member code: the loop's check phase, then the checks.
void ServerSim::after_event(int slot) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (!s.member) return;
  if (!s.member->stopped()) s.member->check();
  if (s.member->stopped()) {
    const Status failure = s.member->failure();
    if (!failure.ok() && s.member->removed()) {
      free_removed(s, failure.message());
      return;
    }
    if (!failure.ok() && s.sync_fault > 0) {
      // A failed fsync must stop the member (it may not go on as if the data were durable);
      // it is restarted like a crashed one.
      trace(s.name + " stopped after a failed sync: " + failure.message());
      --s.sync_fault;
      crash_member(s, false);
      restart_later(s, 10'000 + rand(300'000));
      return;
    }
    if (!failure.ok()) {
      violation("member " + s.name + " stopped itself: " + failure.to_string());
      crash_member(s, false);
      return;
    }
    if (s.stopping) {
      trace(s.name + " stopped cleanly");
      crash_member(s, false);  // nothing is left to lose: it flushed and synced
      restart_later(s, 10'000 + rand(300'000));
    }
    return;
  }
  check_member(s);
}

void ServerSim::check_member(Slot& s) {
  const bool damaged = s.member->damaged();
  if (damaged && !s.was_damaged) ++result_.stats.damage_detected;
  if (!damaged && s.was_damaged) {
    ++result_.stats.repairs;
    s.damage_pending = false;
  }
  s.was_damaged = damaged;
  const raft::Node& n = s.member->node();
  if (n.role() == raft::Role::kLeader) {
    auto [it, fresh] = leader_of_term_.try_emplace(n.term(), s.id);
    if (fresh) ++result_.stats.elections;
    if (it->second != s.id) {
      auto other = slot_of_id_.find(it->second);
      violation("two leaders in term " + std::to_string(n.term()) + ": " +
                (other != slot_of_id_.end() ? slots_[static_cast<std::size_t>(other->second)].name
                                            : std::to_string(it->second)) +
                " and " + s.name);
    }
  }
  const std::uint64_t commit = n.commit();
  result_.stats.committed = std::max(result_.stats.committed, commit);
  const raft::RaftLog& log = n.log();
  for (std::uint64_t i = std::max(s.checked_commit + 1, log.first_index());
       i <= commit && i <= log.last_index(); ++i) {
    const raft::Entry& e = log.at(i);
    const std::pair<std::uint64_t, std::size_t> mine{e.term, std::hash<std::string>{}(e.data)};
    auto [it, fresh] = committed_.try_emplace(i, mine);
    if (!fresh && it->second != mine) {
      violation("committed entry " + std::to_string(i) + " differs on " + s.name + " (term " +
                std::to_string(e.term) + ", first seen with term " +
                std::to_string(it->second.first) + ")");
    }
  }
  s.checked_commit = std::max(s.checked_commit, commit);
}

void ServerSim::send(int from, const raft::Message& m) {
  ++result_.stats.messages;
  if (m.type == raft::MessageType::kSnapshot) ++result_.stats.snapshot_chunks;
  auto to_it = slot_of_id_.find(m.to);
  if (to_it == slot_of_id_.end()) return;
  const int to = to_it->second;
  Slot& target = slots_[static_cast<std::size_t>(to)];
  if (!target.member || partitioned(from, to) || (drop_percent_ > 0 && chance(drop_percent_))) {
    if (!target.member && chance(30)) {
      // The connection is refused: the sender's transport says so (as PeerTransport does).
      const std::uint64_t inc = slots_[static_cast<std::size_t>(from)].incarnation;
      const std::uint64_t peer = m.to;
      at(now_us_ + 200 + rand(2000), [this, from, inc, peer] {
        Slot& sl = slots_[static_cast<std::size_t>(from)];
        if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
        enter(from);
        sl.member->unreachable(peer);
        after_event(from);
      });
    }
    return;
  }
  if (target.net->removed().count(slots_[static_cast<std::size_t>(from)].id) != 0) {
    // The target refuses a removed member's connection, saying why (PeerTransport does).
    const std::uint64_t inc = slots_[static_cast<std::size_t>(from)].incarnation;
    const std::string by = target.name;
    at(now_us_ + 200 + rand(2000), [this, from, inc, by] {
      Slot& sl = slots_[static_cast<std::size_t>(from)];
      if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
      enter(from);
      sl.member->told_removed(by);
      after_event(from);
    });
    return;
  }
  const std::uint64_t inc = target.incarnation;
  const int copies = chance(2) ? 2 : 1;
  for (int c = 0; c < copies; ++c) {
    const std::uint64_t latency = chance(5) ? 2000 + rand(30'000) : 100 + rand(1500);
    at(now_us_ + latency, [this, to, inc, m] {
      Slot& sl = slots_[static_cast<std::size_t>(to)];
      if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
      enter(to);
      sl.member->deliver(m);
      after_event(to);
    });
  }
}

void ServerSim::fault() {
  if (healed_ || !result_.ok) return;
  const std::uint64_t pick = rand(100);
  int down = 0;
  for (const Slot& s : slots_) down += s.in_use && !s.member ? 1 : 0;
  const int max_down = (o_.members - 1) / 2;
  if (pick < 25 && down < max_down) {
    Slot& s = slots_[rand(slots_.size())];
    if (s.member) {
      crash_member(s, true);
      restart_later(s, 20'000 + rand(chance(20) ? 2'000'000 : 400'000));
    }
  } else if (pick < 40 && down < max_down) {
    if (Slot* l = leader_slot()) {
      crash_member(*l, true);
      restart_later(*l, 20'000 + rand(600'000));
    }
  } else if (pick < 50) {
    Slot& s = slots_[rand(slots_.size())];
    if (s.member && !s.stopping) {
      trace(s.name + " stopping cleanly");
      ++result_.stats.clean_restarts;
      s.stopping = true;
      enter(s.index);
      s.member->stop();
      after_event(s.index);
    }
  } else if (pick < 70) {
    // A partition: one member alone, or a random split; healed after a while.
    ++result_.stats.partitions;
    for (std::size_t i = 0; i < group_of_.size(); ++i) {
      group_of_[i] = chance(50) ? 1 : 0;
    }
    if (chance(50)) {
      std::fill(group_of_.begin(), group_of_.end(), 0);
      group_of_[rand(group_of_.size())] = 1;
    }
    trace("partition");
    at(now_us_ + 50'000 + rand(1'000'000), [this] {
      std::fill(group_of_.begin(), group_of_.end(), 0);
      trace("partition healed");
    });
  } else if (pick < 78) {
    const int a = static_cast<int>(rand(slots_.size()));
    const int b = static_cast<int>(rand(slots_.size()));
    if (a != b) {
      cut_.insert({a, b});
      at(now_us_ + 50'000 + rand(800'000), [this, a, b] { cut_.erase({a, b}); });
    }
  } else if (pick < 86) {
    drop_percent_ = static_cast<int>(rand(30));
    at(now_us_ + 50'000 + rand(500'000), [this] { drop_percent_ = 0; });
  } else if (pick < 92 && down < max_down) {
    damage_fault();
  } else if (pick < 96) {
    disk_fault();
  }
  at(now_us_ + 20'000 + rand(250'000), [this] { fault(); });
}

// Membership changes and leadership transfers, through the leader's real admin path.
void ServerSim::admin(wire::Request req, std::function<void(const wire::Response&)> done) {
  Slot* l = leader_slot();
  if (l == nullptr || admin_inflight_) return;
  admin_inflight_ = true;
  const std::uint64_t seq = ++admin_seq_;
  // An answer lost with its member's crash: the outcome is unknown (for an add, the member
  // tries to join), and the next change may go ahead.
  at(now_us_ + 3'000'000, [this, seq, done] {
    if (admin_seq_ != seq || !admin_inflight_) return;
    admin_inflight_ = false;
    wire::Response lost;
    lost.code = Code::kTimeout;
    lost.message = "the answer was lost with its member";
    done(lost);
  });
  trace(std::string("admin ") + std::string(wire::op_name(req.op)) + " " + req.name + " " +
        std::to_string(req.member_id) + " -> " + l->name);
  req.timeout_ms = 2000;
  const int i = l->index;
  enter(i);
  l->member->submit(std::move(req), [this, seq, done](wire::Response r) {
    if (admin_seq_ != seq || !admin_inflight_) return;  // already given up on
    admin_inflight_ = false;
    trace("admin answered: " + std::string(code_name(r.code)) + " " + r.message);
    done(r);
  });
  after_event(i);
}

void ServerSim::membership_tick() {
  if (healed_ || !result_.ok) return;
  membership_fault();
  at(now_us_ + 50'000 + rand(300'000), [this] { membership_tick(); });
}

void ServerSim::membership_fault() {
  Slot* l = leader_slot();
  if (l == nullptr || admin_inflight_) return;
  const raft::ConfState conf = l->member->node().conf_state();
  const std::size_t total = conf.voters.size() + conf.learners.size();
  std::vector<std::uint64_t> all(conf.voters.begin(), conf.voters.end());
  all.insert(all.end(), conf.learners.begin(), conf.learners.end());
  const std::uint64_t kind = rand(4);
  wire::Request req;
  if (kind == 0 && total < static_cast<std::size_t>(o_.members + kSpareSlots) &&
      o_.members + next_name_ < kMaxNames) {
    auto free = std::find_if(slots_.begin(), slots_.end(), [](const Slot& x) { return !x.in_use; });
    if (free == slots_.end()) return;
    Slot& s = *free;
    name_slot(s, "m" + std::to_string(o_.members + ++next_name_), "existing");
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberAdd;
    req.name = s.name;
    req.peer_addr = s.options.listen_peer;
    req.client_addr = s.options.listen_client;
    req.learner = chance(60);
    const int i = s.index;
    admin(std::move(req), [this, i](const wire::Response& r) {
      Slot& sl = slots_[static_cast<std::size_t>(i)];
      if (r.code == Code::kOk || r.code == Code::kTimeout) {
        start_added(i);
      } else {
        sl.in_use = false;
      }
    });
    return;
  }
  if (kind == 1 && !conf.learners.empty()) {
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberPromote;
    req.member_id = conf.learners[rand(conf.learners.size())];
  } else if (kind == 2 && total > static_cast<std::size_t>(o_.members)) {
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberRemove;
    req.member_id = all[rand(all.size())];
  } else if (kind == 3 && conf.voters.size() > 1) {
    ++result_.stats.transfers;
    req.op = wire::Op::kTransferLeader;
    req.member_id = conf.voters[rand(conf.voters.size())];
  } else {
    return;
  }
  admin(std::move(req), [](const wire::Response&) {});
}

// An added member starts once the cluster knows it (its join retries until some member does).
void ServerSim::start_added(int slot) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (s.started || s.join_tries > 0) return;
  s.join_tries = 40;
  restart_later(s, 1000 + rand(200'000));
}

// A member that learned it was removed stops for good; its slot may hold a new member later.
void ServerSim::free_removed(Slot& s, const std::string& why) {
  trace(s.name + " removed: " + why);
  ++result_.stats.removed;
  crash_member(s, false);
  slot_of_id_.erase(s.id);
  s.in_use = false;
}

// A bit flipped in a value a client wrote, in a stopped member's LMDB state (disk_faults.h):
// the member must find it (a read, an apply, a snapshot or the scrubber), stop serving and
// applying, and repair itself from the leader; no client may ever see the damaged value.
void ServerSim::damage_fault() {
  // Within the fault model: a majority of the voters keeps a clean state, so one damaged value
  // at a time, and only among three voters or more.
  Slot* l = leader_slot();
  if (l == nullptr || l->member->node().conf_state().voters.size() < 3) return;
  for (const Slot& x : slots_) {
    if (x.damage_pending || (x.member && x.member->damaged())) return;
  }
  Slot& s = slots_[rand(slots_.size())];
  if (!s.member) return;
  crash_member(s, true);
  std::vector<std::string> keys(std::begin(kKeys), std::end(kKeys));
  for (std::size_t i = keys.size(); i > 1; --i) std::swap(keys[i - 1], keys[rand(i)]);
  Result<DamagedValue> d = damage_stored_value(s.dir, keys);
  if (d.ok()) {
    ++result_.stats.damages;
    s.damage_pending = true;
    trace(s.name + " damaged key " + d->key + ": " + d->value + " -> " + d->damaged);
  } else {
    trace(s.name + " not damaged: " + d.status().message());
  }
  restart_later(s, 10'000 + rand(300'000));
}

// The simulated disk's faults: an fsync of the WAL fails (the member must stop), or a member
// restarts and reads a flipped bit back (the WAL's checksums must catch it: it refuses to start,
// or drops the record as a torn tail, and then must not vote on what it lost).
void ServerSim::disk_fault() {
  Slot& s = slots_[rand(slots_.size())];
  if (!s.member) return;
  if (chance(50)) {
    if (s.sync_fault > 0) return;  // one at a time: the last one has not struck yet
    trace(s.name + " next WAL sync fails");
    ++result_.stats.sync_faults;
    s.sync_fault = 1;
    fs_->fail_next_syncs(s.dir + "/wal", 1);
    return;
  }
  crash_member(s, true);
  trace(s.name + " reads a flipped bit at its next start");
  ++result_.stats.read_faults;
  s.read_fault = true;
  fs_->flip_next_reads(s.dir + "/wal", 1);
  restart_later(s, 10'000 + rand(300'000));
}

void ServerSim::heal() {
  healed_ = true;
  trace("heal");
  std::fill(group_of_.begin(), group_of_.end(), 0);
  cut_.clear();
  drop_percent_ = 0;
  for (Slot& s : slots_) {
    if (s.member || !s.in_use) continue;
    if (s.started) {
      restart_later(s, 1000);
    } else {
      start_added(s.index);  // added, its answer not in yet: it joins if the add committed
    }
  }
  probe();
}

// After healing: a write must commit (the liveness check).
void ServerSim::probe() {
  if (probe_ok_ || !result_.ok) return;
  if (!probe_inflight_) {
    Slot* l = leader_slot();
    Slot* target = l != nullptr ? l : &slots_[rand(slots_.size())];
    if (target->member && !target->member->stopped()) {
      probe_inflight_ = true;
      wire::Request req;
      req.op = wire::Op::kPut;
      req.key = "probe";
      req.value = "p" + std::to_string(++probe_seq_);
      req.timeout_ms = 1000;
      const std::uint64_t inc = target->incarnation;
      const int i = target->index;
      enter(i);
      target->member->submit(std::move(req), [this, i, inc](wire::Response r) {
        if (slots_[static_cast<std::size_t>(i)].incarnation != inc) return;
        probe_inflight_ = false;
        if (r.code == Code::kOk) probe_ok_ = true;
      });
      after_event(i);
    }
  }
  at(now_us_ + 50'000, [this] {
    // A probe lost with its member's crash is retried.
    probe_inflight_ = false;
    probe();
  });
}

void ServerSim::next_op(ClientState& c) {
  if (c.busy || healed_ || !result_.ok || c.ops >= o_.max_ops_per_client) return;
  std::vector<int> up;
  for (const Slot& s : slots_) {
    if (s.member && !s.member->stopped() && !s.stopping) up.push_back(s.index);
  }
  if (up.empty()) {
    const int id = c.id;
    at(now_us_ + 20'000, [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
    return;
  }
  int target = up[rand(up.size())];
  if (c.leader_hint >= 0 && chance(75) && slots_[static_cast<std::size_t>(c.leader_hint)].member) {
    target = c.leader_hint;
  }
  Slot& s = slots_[static_cast<std::size_t>(target)];
  check::Operation op;
  op.client = static_cast<std::uint64_t>(c.id);
  op.key = kKeys[rand(4)];
  const std::uint64_t k = rand(100);
  op.kind = k < 35   ? check::OpKind::kGet
            : k < 70 ? check::OpKind::kPut
            : k < 88 ? check::OpKind::kCas
                     : check::OpKind::kDelete;
  wire::Request req;
  req.key = op.key;
  req.timeout_ms = 1500;
  switch (op.kind) {
    case check::OpKind::kGet:
      req.op = wire::Op::kGet;
      break;
    case check::OpKind::kPut:
      req.op = wire::Op::kPut;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      break;
    case check::OpKind::kCas: {
      req.op = wire::Op::kCas;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      const std::uint64_t seen = seen_revision_[op.key];
      op.expect_revision = chance(70) ? seen : (chance(50) ? 0 : seen + 1 + rand(5));
      req.expect_revision = op.expect_revision;
      break;
    }
    case check::OpKind::kDelete:
      req.op = wire::Op::kDelete;
      break;
  }
  op.invoke_time = now_us_;
  history_.push_back(op);
  ++result_.stats.operations;
  ++c.ops;
  c.busy = true;
  inflight_.push_back({history_.size() - 1, c.id, target, s.incarnation, false});
  const std::size_t f = inflight_.size() - 1;
  if (o_.trace) {
    trace("c" + std::to_string(c.id) + " " + std::string(wire::op_name(req.op)) + "(" + op.key +
          (op.value.empty() ? "" : ", " + op.value) +
          (op.kind == check::OpKind::kCas ? ", expect=" + std::to_string(op.expect_revision) : "") +
          ") -> " + s.name);
  }
  enter(target);
  s.member->submit(std::move(req), [this, f](wire::Response r) { finish_op(f, r); });
  after_event(target);
}

void ServerSim::finish_op(std::size_t f, const wire::Response& r) {
  InFlightOp& in = inflight_[f];
  if (in.done) return;
  in.done = true;
  check::Operation& op = history_[in.op];
  ClientState& c = clients_[static_cast<std::size_t>(in.client)];
  c.busy = false;
  auto hint = slot_of_id_.find(r.leader_id);
  c.leader_hint = hint != slot_of_id_.end() ? hint->second : -1;
  op.response_time = now_us_;
  const bool write = op.kind != check::OpKind::kGet;
  if (o_.trace) {
    trace("c" + std::to_string(in.client) + " answered: " + std::string(code_name(r.code)) +
          " found=" + std::to_string(r.found) + " revision=" + std::to_string(r.revision) +
          (r.kvs.empty() ? "" : " value=" + r.kvs.front().value) +
          (r.message.empty() ? "" : " (" + r.message + ")"));
  }
  if (r.code == Code::kOk || (r.code == Code::kCompareFailed && op.kind == check::OpKind::kCas)) {
    op.outcome = check::Outcome::kOk;
    ++result_.stats.operations_ok;
    switch (op.kind) {
      case check::OpKind::kGet:
        op.found = r.found && !r.kvs.empty();
        if (op.found) {
          op.read_value = r.kvs.front().value;
          op.revision = r.kvs.front().mod_revision;
        }
        break;
      case check::OpKind::kPut:
        op.revision = r.revision;
        break;
      case check::OpKind::kCas:
        op.found = r.code == Code::kOk;
        op.revision = op.found ? r.revision : 0;
        break;
      case check::OpKind::kDelete:
        op.found = r.found;
        op.revision = r.found ? r.revision : 0;
        break;
    }
    if (op.revision > seen_revision_[op.key]) seen_revision_[op.key] = op.revision;
  } else if (write && r.code != Code::kNotLeader && r.code != Code::kUnavailable &&
             r.code != Code::kShuttingDown && r.code != Code::kResourceExhausted &&
             r.code != Code::kInvalidArgument) {
    // A timeout or an unexpected error: the write may or may not have happened.
    op.outcome = check::Outcome::kUnknown;
    op.response_time = check::kNever;
    ++result_.stats.operations_unknown;
  } else {
    op.outcome = check::Outcome::kFailed;
  }
  const int id = c.id;
  at(now_us_ + rand(5000), [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
}

ServerSimResult ServerSim::run() {
  // A process-wide switch a member sets when it runs with "unverified-reads": each run starts
  // without it.
  storage::g_state_mutation = storage::StateMutation::kNone;
  if (Status s = make_root(); !s.ok()) {
    result_.ok = false;
    result_.violation = "setup: " + s.to_string();
    return result_;
  }
  make_slots();
  for (Slot& s : slots_) {
    if (!s.in_use) continue;
    if (Status st = start_member(s); !st.ok()) {
      result_.ok = false;
      result_.violation = "member " + s.name + " could not start: " + st.to_string();
      return result_;
    }
  }
  clients_.resize(static_cast<std::size_t>(o_.clients));
  for (int i = 0; i < o_.clients; ++i) {
    clients_[static_cast<std::size_t>(i)].id = i;
    at(100'000 + rand(200'000), [this, i] { next_op(clients_[static_cast<std::size_t>(i)]); });
  }
  at(200'000 + rand(300'000), [this] { fault(); });
  at(300'000 + rand(300'000), [this] { membership_tick(); });
  const std::uint64_t heal_at = o_.fault_ms * 1000;
  const std::uint64_t end_at = heal_at + o_.liveness_ms * 1000;
  at(heal_at, [this] { heal(); });
  while (!events_.empty() && result_.ok) {
    Event e = events_.top();
    events_.pop();
    if (e.at > end_at) break;
    now_us_ = std::max(now_us_, e.at);
    ++result_.stats.events;
    e.fn();
    if (healed_ && probe_ok_) {
      bool idle = true;
      for (const InFlightOp& f : inflight_) idle = idle && f.done;
      if (idle) break;
    }
  }
  if (fs_) {
    result_.stats.lost_writes = fs_->stats().lost_changes;
    result_.stats.torn_writes = fs_->stats().torn_writes;
  }
  if (result_.ok && !probe_ok_) {
    violation("no write committed within " + std::to_string(o_.liveness_ms) +
              " ms after the faults healed");
  }
  for (InFlightOp& f : inflight_) {
    if (f.done) continue;
    f.done = true;
    check::Operation& op = history_[f.op];
    op.outcome =
        op.kind == check::OpKind::kGet ? check::Outcome::kFailed : check::Outcome::kUnknown;
    op.response_time = check::kNever;
  }
  if (result_.ok) {
    HistoryCheck hc = check_history_linearizable(history_);
    result_.stats.linearizability_checked = hc.checked;
    if (!hc.ok) violation("history not linearizable: " + hc.explanation);
  }
  return result_;
}

// spdlog is process-wide: the members' lines go to the trace, or nowhere, during a run.
class LogCapture {
 public:
  LogCapture(bool on, std::function<void(std::string_view)> out)
      : saved_(spdlog::default_logger()) {
    auto sink = std::make_shared<TraceSink>(std::move(out));
    auto logger = std::make_shared<spdlog::logger>("kvc-server-sim", sink);
    logger->set_level(on ? spdlog::level::info : spdlog::level::off);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(saved_); }

 private:
  std::shared_ptr<spdlog::logger> saved_;
};

}  // namespace

ServerSimResult run_server_simulation(const ServerSimOptions& options) {
  // The capture outlives the simulation, so the members' last lines (their crashes at the end)
  // are captured too.
  ServerSim* running = nullptr;
  LogCapture capture(options.trace && options.trace_sink, [&running](std::string_view line) {
    if (running != nullptr) running->member_log(line);
  });
  ServerSim sim(options);
  running = &sim;
  return sim.run();
}

}  // namespace kvc::sim
