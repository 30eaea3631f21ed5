// Internals of the deterministic cluster simulator (sim.h), shared by its files: the simulated
// disk, a member, a message in flight, a client, and the Cluster that runs one simulation. Not a
// public API: only lib/kvc/sim/sim*.cc include it. The Cluster's methods are spread over files by
// job: sim.cc (set-up, the step loop, run), sim_io.cc (messages, disks and readies, applying),
// sim_faults.cc (crashes, restarts, repair faults, membership changes), sim_targeted.cc (the
// targeted faults and the per-step fault schedule), sim_clients.cc (clients and the checks).
// Single-threaded: one Cluster per run, on the caller's thread.
#pragma once

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <sstream>
#include <string>
#include <unordered_map>
#include <vector>

#include "kvc/check/history.h"
#include "kvc/raft/node.h"
#include "kvc/sim/history_check.h"
#include "kvc/sim/kv.h"
#include "kvc/sim/sim.h"

// A named namespace (not an anonymous one) because the Cluster's methods live in several files;
// its own name keeps it apart from the other simulations in this library.
namespace kvc::sim::raft_cluster {

using raft::ConfChange;
using raft::ConfChangeType;
using raft::Entry;
using raft::EntryType;
using raft::HardState;
using raft::Message;
using raft::MessageType;
using raft::NodeId;
using raft::Ready;
using raft::Role;
using raft::SnapshotMeta;

inline constexpr int kTickSteps = 10;
inline constexpr int kElectionTicks = 10;
inline constexpr int kHeartbeatTicks = 2;
inline constexpr std::uint64_t kOpTimeoutSteps = 80 * kTickSteps;
inline constexpr int kMaxMembers = 7;
inline constexpr const char* kKeys[] = {"a", "b", "c", "d"};

inline std::uint64_t entry_hash(const Entry& e) {
  return std::hash<std::string>{}(e.data) * 31 + static_cast<std::uint64_t>(e.type) + 1;
}

// The simulated disk: what is durable, and the writes issued since the last sync, in order.
// A crash keeps a random prefix of the unsynced writes (a torn batch) and loses the rest. A copy
// without `pending` is a durable image of the member (the rollback fault restarts on one).
struct SimDisk {
  struct Op {
    enum Kind { kEntry, kHardState, kInstall, kRepair } kind = kEntry;
    Entry entry;
    HardState hs;
    SnapshotMeta meta;
    std::string data;
    std::uint64_t keep_to = 0;  // kInstall: log entries in (meta.index, keep_to] stay
    raft::RepairState repair;
  };
  HardState hs;
  SnapshotMeta snap;
  std::string snap_data;
  std::vector<Entry> log;  // after snap.index
  raft::RepairState repair;
  // Votes made durable so far (a vote for a new term or a new candidate): an image with the
  // same count lost no vote.
  std::uint64_t votes = 0;
  std::uint64_t taken_at = 0;  // an image: the step it was copied
  std::vector<Op> pending;
  bool gap = false;
  std::string gap_info;

  std::uint64_t last_index() const { return log.empty() ? snap.index : log.back().index; }

  void apply(const Op& op) {
    switch (op.kind) {
      case Op::kEntry: {
        while (!log.empty() && log.back().index >= op.entry.index) log.pop_back();
        const std::uint64_t expect = log.empty() ? snap.index + 1 : log.back().index + 1;
        if (op.entry.index != expect) {
          gap = true;  // reported by the cluster as a violation
          gap_info = "(entry " + std::to_string(op.entry.index) + " after " +
                     std::to_string(expect - 1) + ", snapshot " + std::to_string(snap.index) + ")";
          return;
        }
        log.push_back(op.entry);
        break;
      }
      case Op::kHardState:
        if (op.hs.vote != raft::kNoNode && (op.hs.term != hs.term || op.hs.vote != hs.vote)) {
          ++votes;
        }
        hs = op.hs;
        break;
      case Op::kInstall:
        // A snapshot that repairs a damaged state keeps the log after it (node.h, REPAIR);
        // one that replaced the log keeps nothing (keep_to == meta.index).
        snap = op.meta;
        snap_data = op.data;
        std::erase_if(
            log, [&](const Entry& e) { return e.index <= op.meta.index || e.index > op.keep_to; });
        break;
      case Op::kRepair:
        repair = op.repair;
        break;
    }
  }
  void sync() {
    for (const Op& op : pending) apply(op);
    pending.clear();
  }
  void crash(raft::Rng& rng) {
    const std::size_t keep = pending.empty() ? 0 : rng.uniform(pending.size() + 1);
    for (std::size_t i = 0; i < keep; ++i) apply(pending[i]);
    pending.clear();
  }
  void compact(std::uint64_t index) {
    while (!log.empty() && log.front().index <= index) log.erase(log.begin());
  }
};

struct Member {
  NodeId id = 0;
  bool alive = false;
  bool removed = false;
  std::uint64_t boot_id = 0;  // this incarnation's (never 0)
  std::unique_ptr<raft::SplitMix64> rng;
  std::unique_ptr<raft::Node> node;
  SimDisk disk;
  KvStore kv;
  // A checksum failed: nothing is applied or served until the repair snapshot is installed.
  bool damaged = false;
  raft::RepairState repair;     // the last one made durable (to count completed repairs)
  std::vector<SimDisk> images;  // durable copies taken at random earlier steps
  std::optional<Ready> outstanding;
  std::uint64_t sync_at = 0;
  std::uint64_t restart_at = 0;
  int tick_phase = 0;
  // The incoming snapshot file (written, not necessarily synced).
  SnapshotMeta incoming_meta;
  std::string incoming;
  // Checks.
  std::uint64_t last_commit = 0;
  std::uint64_t recorded_commit = 0;
  std::uint64_t last_applied = 0;
  std::set<std::uint64_t> led_terms;
  // Targeted faults: the (term, vote) of the last unsynced vote considered for a crash.
  std::pair<std::uint64_t, NodeId> vote_considered{0, raft::kNoNode};
};

struct InFlight {
  std::uint64_t at;
  std::uint64_t seq;
  Message m;
  std::uint64_t sent = 0;  // the step it was sent
  bool operator>(const InFlight& o) const { return at != o.at ? at > o.at : seq > o.seq; }
};

struct Client {
  std::uint64_t id = 0;
  bool busy = false;
  std::size_t op = 0;  // index into history_
  NodeId member = 0;
  std::uint64_t op_id = 0;
  std::uint64_t deadline = 0;
  bool is_read = false;
  std::string ctx;
  std::uint64_t read_min_commit = 0;
  std::optional<std::uint64_t> read_index;
  std::map<std::string, std::uint64_t> seen_revision;
};

struct CommittedInfo {
  bool known = false;
  std::uint64_t term = 0;
  std::uint64_t hash = 0;
  std::uint64_t observed_term = 0;
};

class Cluster {
 public:
  explicit Cluster(const SimOptions& o)
      : opt_(o), rng_(o.seed), boot_rng_(o.seed ^ 0xb007b007b007ull) {}

  SimResult run();

 private:
  // Setup.
  void resolve_options();
  void add_member(NodeId id, raft::RestoreState state, bool bootstrap_disk);
  raft::Config node_config(Member& m);

  // The step loop.
  void step_once();
  void deliver_due();
  void tick_members();
  void process_disks_and_readies();
  void start_ready(Member& m);
  void finish_ready(Member& m);
  void apply_entries(Member& m, const std::vector<Entry>& ents);
  void send_message(Member& from, Message msg);
  void inject_faults();
  // inject_faults()'s steps: crashes between ticks (new leaders, members mid-fsync); at a
  // tick, partitions made and healed, then restarts and crashes.
  void step_crashes();
  void partition_faults();
  void tick_crashes();
  void client_actions();
  void serve_reads();
  void check_step();
  void liveness_probe();

  // Faults and operations.
  // A crash is a fault (numbered; false when suppressed), a decommission is not.
  bool crash(Member& m, bool permanent);
  void stop_node(Member& m);  // the incarnation ends: its counters join the stats
  void restart(Member& m);
  void heal();
  void membership_op();
  // `scheduled`: by the fault schedule (a numbered fault), not asked for by the core.
  void take_snapshot(Member& m, bool scheduled = false);
  std::uint64_t new_boot_id();
  // Repair faults (rollback to an older disk image, a damaged state value).
  void capture_image();
  void rollback_op();
  void update_rollback_hold();
  void damage_op();
  void found_damage(Member& m, const std::string& why);
  // Targeted faults (kTargeted): schedules biased toward the moments Raft's rules exist for.
  void plan_leader(Member& l);
  void targeted_faults();
  void stop_leader(Member& l, std::uint64_t crash_one_in, const std::string& why);
  void crash_unsynced_votes();
  bool repair_in_progress();
  bool conf_change_pending(Member& l);  // an uncommitted ConfChange in the leader's log
  // In the current leader's configuration (any member not removed when there is no leader): a
  // member whose AddLearner entry was lost is never talked to, so never repaired.
  bool in_cluster(const Member& m);
  bool held(NodeId id) const { return hold_ && (id == hold_->member || id == hold_->leader); }
  Member* leader();
  Member* member(NodeId id) {
    auto it = members_.find(id);
    return it == members_.end() ? nullptr : &it->second;
  }
  void respond(Client& c, check::Outcome outcome);
  void fail_client_ops_on(NodeId id);

  // Final checks.
  void final_checks();
  std::string describe_cluster();

  void trace(const std::string& line) {
    // The trace ends with the violation: what follows in the same step is noise.
    if (opt_.trace && opt_.trace_sink && !failed_) {
      opt_.trace_sink("[" + std::to_string(now_) + "] " + line);
    }
  }
  // Records the first violation; the run stops at the end of the current step.
  void violate(const std::string& what) {
    if (failed_) return;
    result_.ok = false;
    result_.violation = what;
    trace("VIOLATION: " + what);
    failed_ = true;
  }
  bool chance(std::uint64_t one_in) { return rng_.uniform(one_in) == 0; }
  // Numbers a fault decision (sim_minimize.h): false when the run's filter suppresses it. The
  // caller draws the same random numbers either way; a suppressed fault changes nothing else.
  // `describe` (called only when tracing or recording) says what the fault is.
  template <class Describe>
  bool take_fault(const char* kind, const Describe& describe) {
    const std::uint64_t ordinal = ++result_.fault_decisions;
    const bool on = opt_.fault_filter.applies(ordinal);
    if (opt_.record || (on && opt_.trace)) {
      std::string what = describe();
      if (on) trace("fault #" + std::to_string(ordinal) + " " + kind + ": " + what);
      if (opt_.record) result_.fault_log.push_back({ordinal, now_, kind, std::move(what), on});
    }
    return on;
  }

  // The core's own log lines join the trace (info and above).
  class TraceLogger final : public raft::Logger {
   public:
    explicit TraceLogger(Cluster* c) : c_(c) {}
    void log(raft::LogLevel level, std::string_view line) override {
      if (level != raft::LogLevel::kDebug) c_->trace("core: " + std::string(line));
    }

   private:
    Cluster* c_;
  };

  SimOptions opt_;
  TraceLogger core_log_{this};
  raft::SplitMix64 rng_;
  SimResult result_;
  bool failed_ = false;
  std::vector<NodeId> pending_removals_;
  std::map<NodeId, Member> members_;
  NodeId next_id_ = 1;
  std::uint64_t now_ = 0;
  std::uint64_t msg_seq_ = 0;
  std::priority_queue<InFlight, std::vector<InFlight>, std::greater<>> net_;
  std::set<std::pair<NodeId, NodeId>> blocked_;
  std::uint64_t partition_until_ = 0;
  bool healed_ = false;
  std::uint64_t heal_at_ = 0;
  std::uint64_t drop_one_in_ = 0;  // 0: no drops
  std::uint64_t dup_one_in_ = 0;
  bool crashes_ = false, partitions_ = false, membership_ = false;
  bool rollbacks_ = false, damage_ = false;
  std::uint64_t rollback_one_in_ = 0, damage_one_in_ = 0;  // per tick
  // Boot ids come from their own stream (replays stay exact; never 0).
  raft::SplitMix64 boot_rng_{0};
  // From a rollback until the leader that saw the old incarnation's acknowledgements has
  // verified the new one (nothing lost, or the loss is repaired) or the member has durably
  // learned what it lost, no other fault may touch them: the protection covers only a rollback
  // that a live leader witnesses (node.h, REPAIR "Limits").
  struct RollbackHold {
    NodeId member = 0;
    NodeId leader = 0;
    std::uint64_t term = 0;
    std::uint64_t acked = 0;    // the leader's match for the member before the rollback
    std::uint64_t boot_id = 0;  // of the member's new incarnation
    bool seen = false;          // the leader has heard from the new incarnation
  };
  std::optional<RollbackHold> hold_;
  // Per-seed shape of the cluster's limits and disks, drawn from the seed.
  std::uint64_t max_msg_bytes_ = 256;
  int max_inflight_ = 4;
  std::uint64_t slow_disk_one_in_ = 8;
  std::map<NodeId, std::uint64_t> churn_crash_at_;  // new leaders crashed soon after winning
  // Targeted faults (kTargeted; see targeted_faults()). A plan for the newest leader: what to do to
  // it, and when.
  bool targeted_ = false;
  struct LeaderPlan {
    enum Kind : std::uint8_t {
      kWatch,             // nothing but the burst
      kStopOnMinority,    // stop it once its newest entry is on a minority (not yet a quorum)
      kStopOnFirstCommit  // stop it the step its commit index first moves in its term
    } kind = kWatch;
    NodeId id = raft::kNoNode;
    std::uint64_t term = 0;
    std::uint64_t holders = 1;   // kStopOnMinority: members (with the leader) holding the entry
    std::uint64_t commit = 0;    // kStopOnFirstCommit: the commit index when it won
    std::uint64_t burst = 0;     // proposals to make at once (0: none)
    std::uint64_t deadline = 0;  // the plan lapses at this step
    bool ahead_seen = false;     // its commit index went past its durable log (once per plan)
  };
  std::optional<LeaderPlan> plan_;
  // Targeted faults: a leader stopped by a crash loses with it the messages it sent in the
  // steps just before (still in its buffers, as in a power loss). Per member, the steps whose
  // messages are lost.
  std::map<NodeId, std::pair<std::uint64_t, std::uint64_t>> unsent_lost_;
  static constexpr std::uint64_t kUnsentSteps = 2;
  std::uint64_t burst_seq_ = 0;

  // Clients and history.
  std::vector<Client> clients_;
  check::History history_;
  std::vector<std::uint64_t> history_hash_;  // hash of the proposed entry data (writes)
  std::uint64_t clock_ = 0;
  std::uint64_t next_op_id_ = 1;
  std::map<std::pair<NodeId, std::uint64_t>, std::size_t>
      pending_writes_;  // (member, op) -> client

  // Checks.
  std::map<std::uint64_t, NodeId> leader_of_term_;
  std::vector<CommittedInfo> committed_;
  std::unordered_map<std::uint64_t,
                     std::unordered_map<std::uint64_t, std::pair<std::uint64_t, std::uint64_t>>>
      seen_entries_;  // index -> term -> (hash, prev term)
  std::uint64_t max_commit_seen_ = 0;

  // Liveness.
  std::optional<std::pair<NodeId, std::uint64_t>> probe_;  // (leader, index)
  std::string probe_data_;
  bool live_ = false;
};

}  // namespace kvc::sim::raft_cluster
