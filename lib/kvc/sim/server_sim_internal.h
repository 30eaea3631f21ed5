// Internals of the server simulation (server_sim.h), shared by its files:
//   server_sim.cc          the scheduler, the members' executors and network, start, crash and
//                          restart, the checks, run()
//   server_sim_faults.cc   the fault schedule: crashes, partitions, membership changes and
//                          transfers, damaged values, disk faults, healing and the liveness probe
//   server_sim_clients.cc  the simulated clients and their history (kv ops, txns, lease ops)
//   server_sim_leases.cc   the lease checker (safety and liveness of expiry)
//   server_sim_txns.cc     the txn checker (answers against a model replaying the committed log)
// Not public API: namespace kvc::sim::server_cluster.
#pragma once

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
#include "kvc/sim/server_sim.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/sim_fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::sim::server_cluster {

constexpr const char* kKeys[] = {"a", "b", "c", "d"};
constexpr const char* kColdKey = "cold";  // written once at the start (damage's best target)
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
  std::unique_ptr<SimExecutor> loop, disk, flush, scrub, scan;
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
  std::uint64_t lease = 0;  // the lease it holds (0: none)
  bool keep = false;        // it keeps that lease alive (else lets it lapse)
};

struct InFlightOp {
  enum class Kind : std::uint8_t { kKv, kTxn, kLease };
  std::size_t op = 0;  // kKv: index into history_
  int client = 0;
  int slot = 0;
  std::uint64_t incarnation = 0;
  bool done = false;
  Kind kind = Kind::kKv;
  wire::Request req;         // kTxn, kLease: what was sent
  std::uint64_t invoke = 0;  // kTxn, kLease: simulated time it was sent
};

// An acknowledged txn, for the txn checker (server_sim_txns.cc): what was sent and answered.
struct AckedTxn {
  int client = 0;
  wire::Request req;
  wire::Response resp;
};

// What the lease checker knows of one lease (ids are chosen by the clients, unique in a run).
// Times are the simulation's global clock (microseconds).
struct LeaseRecord {
  int client = 0;
  std::uint64_t ttl_ms = 0;
  bool acked = false;                   // a grant or keep-alive of it was acknowledged
  std::uint64_t last_ack_invoke = 0;    // the latest invoke time of such an acknowledged request
  std::uint64_t last_ack_response = 0;  // when the latest acknowledgement arrived
  std::uint64_t client_revoke = check::kNever;  // the first revoke a client sent for it
  bool client_revoked = false;                  // a client's revoke was acknowledged
  std::uint64_t granted_commit = 0;  // the grant entry first seen committed (0: not seen)
  std::uint64_t revoked_commit = 0;  // a revoke entry first seen committed (0: not seen)
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
  // Numbers a fault decision (sim_minimize.h): false when the run's filter suppresses it. The
  // caller draws the same random numbers either way (the simulated disk's own stream excepted:
  // it draws per unsynced write a crash finds); a suppressed fault changes nothing else.
  template <class Describe>
  bool take_fault(const char* kind, const Describe& describe) {
    const std::uint64_t ordinal = ++result_.fault_decisions;
    const bool on = o_.fault_filter.applies(ordinal);
    if (o_.record || (on && o_.trace && o_.trace_sink)) {
      std::string what = describe();
      if (on) trace("fault #" + std::to_string(ordinal) + " " + kind + ": " + what);
      if (o_.record) result_.fault_log.push_back({ordinal, now_us_, kind, std::move(what), on});
    }
    return on;
  }
  // A message as text with the members' names for their ids (fault descriptions).
  std::string describe(const raft::Message& m) const {
    std::string d = raft::describe(m);
    for (std::uint64_t id : {m.from, m.to}) {
      const auto it = slot_of_id_.find(id);
      const std::string num = std::to_string(id);
      const std::size_t pos = d.find(num);
      if (it != slot_of_id_.end() && pos != std::string::npos) {
        d.replace(pos, num.size(), slots_[static_cast<std::size_t>(it->second)].name);
      }
    }
    return d;
  }
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
  enum class Timer { kTick, kFlush, kScrub };
  void fire_timer(int slot, std::uint64_t incarnation, Timer which);
  void crash_member(Slot& s, bool count);
  void restart_later(Slot& s, std::uint64_t after_us);
  void fault();
  void heal();
  void next_op(ClientState& c);
  bool coordination_op(ClientState& c, wire::Request& req, InFlightOp::Kind& kind);
  Compare random_compare(const std::string& key);
  void note_seen(const check::Operation& op);
  void finish_op(std::size_t inflight, const wire::Response& r);
  void finish_txn(const InFlightOp& in, const wire::Response* r);
  void finish_lease(const InFlightOp& in, const wire::Response& r);
  void check_txns();
  void committed_entry(const raft::Entry& e);
  void check_lease_safety(std::uint64_t id);
  std::uint64_t lease_liveness_deadline(const LeaseRecord& l) const;
  bool lease_liveness_pending() const;
  void check_lease_liveness();
  void probe();
  void hash_audit_tick();
  void start_hash_audit();
  void compare_hashes(std::uint64_t seq, int leader, std::uint64_t index, std::uint64_t hash);
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
  std::map<std::string, std::string> seen_value_;       // the value of that revision (if present)
  std::vector<AckedTxn> acked_txns_;
  std::uint64_t value_seq_ = 0;
  std::uint64_t lease_seq_ = 0;
  std::map<std::uint64_t, LeaseRecord> leases_;  // by id
  std::uint64_t heal_at_ = 0;
  std::uint64_t end_at_ = 0;
  std::uint64_t leader_since_ = 0;  // when the newest (term, leader) pair was first seen
  // Checks.
  std::map<std::uint64_t, std::uint64_t> leader_of_term_;
  std::map<std::uint64_t, std::pair<std::uint64_t, std::size_t>> committed_;  // index -> term, hash
  // The data of every committed normal entry that carries a command, by index (the txn checker
  // replays them; no-ops and membership changes leave the key-value state alone).
  std::map<std::uint64_t, std::string> committed_data_;
  // The last damaged value: reads are steered to it for a while (server_sim_clients.cc).
  int damaged_slot_ = 0;
  std::string damaged_key_;
  std::uint64_t damaged_read_until_ = 0;
  bool cold_written_ = false;
  bool probe_ok_ = false;
  bool probe_inflight_ = false;
  bool audit_inflight_ = false;
  std::uint64_t audit_seq_ = 0;
  std::uint64_t probe_seq_ = 0;
  ServerSimResult result_;
};

}  // namespace kvc::sim::server_cluster
