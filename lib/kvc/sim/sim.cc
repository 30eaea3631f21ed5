// The deterministic cluster simulator. One Cluster per run: members (raft::Node + SimDisk +
// KvStore), a network queue ordered by (delivery step, sequence), clients, a fault schedule,
// and the checks. Time is a step counter; each member ticks every kTickSteps steps (phases
// staggered), so messages, disk syncs and ticks interleave finely.
#include "kvc/sim/sim.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <queue>
#include <set>
#include <sstream>
#include <unordered_map>

#include "kvc/check/history.h"
#include "kvc/raft/node.h"
#include "kvc/sim/history_check.h"
#include "kvc/sim/kv.h"

namespace kvc::sim {

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

std::string_view fault_mix_name(FaultMix mix) {
  switch (mix) {
    case FaultMix::kNone:
      return "none";
    case FaultMix::kNet:
      return "net";
    case FaultMix::kPartition:
      return "partition";
    case FaultMix::kCrash:
      return "crash";
    case FaultMix::kMembership:
      return "membership";
    case FaultMix::kRepair:
      return "repair";
    case FaultMix::kAll:
      return "all";
    case FaultMix::kTargeted:
      return "targeted";
    case FaultMix::kMixed:
      return "mixed";
  }
  return "unknown";
}

bool fault_mix_from_name(std::string_view name, FaultMix& out) {
  for (FaultMix m : {FaultMix::kNone, FaultMix::kNet, FaultMix::kPartition, FaultMix::kCrash,
                     FaultMix::kMembership, FaultMix::kRepair, FaultMix::kAll, FaultMix::kTargeted,
                     FaultMix::kMixed}) {
    if (fault_mix_name(m) == name) {
      out = m;
      return true;
    }
  }
  return false;
}

namespace {

constexpr int kTickSteps = 10;
constexpr int kElectionTicks = 10;
constexpr int kHeartbeatTicks = 2;
constexpr std::uint64_t kOpTimeoutSteps = 80 * kTickSteps;
constexpr int kMaxMembers = 7;
constexpr const char* kKeys[] = {"a", "b", "c", "d"};

std::uint64_t entry_hash(const Entry& e) {
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
  void client_actions();
  void serve_reads();
  void check_step();
  void liveness_probe();

  // Faults and operations.
  void crash(Member& m, bool permanent);
  void stop_node(Member& m);  // the incarnation ends: its counters join the stats
  void restart(Member& m);
  void heal();
  void membership_op();
  void take_snapshot(Member& m);
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

// ---------------------------------------------------------------------------------------------

void Cluster::resolve_options() {
  // Choices "from the seed" use their own stream, so stating them explicitly replays the same.
  // Every pick is drawn whether used or not, so the stream is the same either way.
  raft::SplitMix64 pick(opt_.seed ^ 0x5eed5eed5eedull);
  const int members_pick = pick.uniform(2) == 0 ? 3 : 5;
  static constexpr FaultMix kChoices[] = {
      FaultMix::kAll, FaultMix::kAll,       FaultMix::kAll,   FaultMix::kAll,
      FaultMix::kNet, FaultMix::kPartition, FaultMix::kCrash, FaultMix::kMembership};
  FaultMix faults_pick = kChoices[pick.uniform(std::size(kChoices))];
  // Some seeds replicate one entry per message (so a new leader's old-term entries travel
  // without its no-op), some have deep pipelines.
  const std::uint64_t shape = pick.uniform(4);
  const int inflight_pick = static_cast<int>(1 + pick.uniform(8));
  // Drawn last, so the picks above are those of the seed before kRepair existed.
  if (pick.uniform(10) == 0) faults_pick = FaultMix::kRepair;
  // And after that: half of the seeds that would run kAll run kTargeted.
  if (pick.uniform(2) == 0 && faults_pick == FaultMix::kAll) faults_pick = FaultMix::kTargeted;
  if (opt_.members == 0) opt_.members = members_pick;
  if (opt_.faults == FaultMix::kMixed) opt_.faults = faults_pick;
  result_.members = opt_.members;
  result_.faults = opt_.faults;
  const FaultMix f = opt_.faults;
  const bool all = f == FaultMix::kAll || f == FaultMix::kTargeted;
  if (f != FaultMix::kNone) {
    drop_one_in_ = 20;
    dup_one_in_ = 30;
  }
  max_msg_bytes_ = shape == 0 ? 1 : shape == 1 ? 64 : 256;
  max_inflight_ = inflight_pick;
  partitions_ = f == FaultMix::kPartition || all;
  crashes_ = f == FaultMix::kCrash || f == FaultMix::kRepair || all;
  membership_ = f == FaultMix::kMembership || all;
  rollbacks_ = damage_ = f == FaultMix::kRepair || all;
  targeted_ = f == FaultMix::kTargeted;
  // kRepair focuses on them; in kAll they come at a modest rate among the rest.
  rollback_one_in_ = f == FaultMix::kRepair ? 12 : 60;
  damage_one_in_ = f == FaultMix::kRepair ? 25 : 100;
}

raft::Config Cluster::node_config(Member& m) {
  raft::Config c;
  c.id = m.id;
  c.election_ticks = kElectionTicks;
  c.heartbeat_ticks = kHeartbeatTicks;
  c.max_msg_bytes = max_msg_bytes_;
  c.max_inflight_msgs = max_inflight_;
  c.max_inflight_bytes = 4096;
  c.max_uncommitted_bytes = 1 << 16;
  c.snapshot_chunk_bytes = 64;
  c.max_apply_bytes = 1024;
  c.pre_vote = true;
  c.check_quorum = true;
  c.boot_id = m.boot_id;
  c.rng = m.rng.get();
  static raft::NullLogger null_logger;
  c.logger = opt_.trace ? static_cast<raft::Logger*>(&core_log_) : &null_logger;
  return c;
}

void Cluster::add_member(NodeId id, raft::RestoreState state, bool bootstrap_disk) {
  Member& m = members_[id];
  m.id = id;
  m.rng = std::make_unique<raft::SplitMix64>(rng_.next_u64());
  m.tick_phase = static_cast<int>(rng_.uniform(kTickSteps));
  if (bootstrap_disk) {
    m.disk.hs = state.hard_state;
    m.disk.snap = state.snapshot;
    m.disk.log = state.entries;
  }
  m.boot_id = new_boot_id();
  auto node = raft::Node::create(node_config(m), std::move(state));
  if (!node.ok()) {
    violate("sim: cannot create node " + std::to_string(id) + ": " + node.status().to_string());
    return;
  }
  m.node = std::move(*node);
  m.alive = true;
  trace("member " + std::to_string(id) + " started");
}

Member* Cluster::leader() {
  Member* best = nullptr;
  for (auto& [id, m] : members_) {
    if (m.alive && m.node->role() == Role::kLeader &&
        (best == nullptr || m.node->term() > best->node->term())) {
      best = &m;
    }
  }
  return best;
}

// ---------------------------------------------------------------------------------------------
// Messages.

void Cluster::send_message(Member& from, Message msg) {
  ++result_.stats.messages;
  if (msg.type == MessageType::kSnapshot) {
    // The caller fills the chunk from the snapshot it has.
    if (!(msg.snapshot == from.disk.snap) ||
        msg.snapshot_offset + msg.chunk_length > from.disk.snap_data.size()) {
      from.node->report_snapshot(msg.to, false);
      return;
    }
    msg.chunk = from.disk.snap_data.substr(msg.snapshot_offset, msg.chunk_length);
    if (msg.snapshot_offset == 0) ++result_.stats.snapshots_sent;
  }
  // During a rollback's protection window the leader's and the member's messages get through.
  const bool protect = held(msg.from) || held(msg.to);
  if (drop_one_in_ && !healed_ && chance(drop_one_in_) && !protect) {
    trace("drop " + raft::describe(msg));
    return;
  }
  std::uint64_t delay = 1 + rng_.uniform(8);
  if (!healed_ && opt_.faults != FaultMix::kNone && chance(10)) delay += 10 + rng_.uniform(30);
  if (dup_one_in_ && !healed_ && chance(dup_one_in_)) {
    net_.push({now_ + delay + rng_.uniform(20), msg_seq_++, msg, now_});
  }
  net_.push({now_ + delay, msg_seq_++, std::move(msg), now_});
}

void Cluster::deliver_due() {
  while (!net_.empty() && net_.top().at <= now_) {
    InFlight f = net_.top();
    net_.pop();
    Member* to = member(f.m.to);
    if (to == nullptr || !to->alive) continue;
    if (blocked_.count({f.m.from, f.m.to})) continue;
    if (auto it = unsent_lost_.find(f.m.from);
        it != unsent_lost_.end() && f.sent >= it->second.first && f.sent <= it->second.second) {
      if (opt_.trace) trace("lost with its sender's crash: " + raft::describe(f.m));
      continue;
    }
    if (opt_.trace) trace("deliver " + raft::describe(f.m));
    Status s = to->node->step(f.m);
    if (!s.ok()) violate("step refused a simulator message: " + s.to_string());
    if (failed_) return;
    // The leader notes a sender's incarnation from the responses it takes (step_leader).
    const bool response = f.m.type == MessageType::kAppendResp ||
                          f.m.type == MessageType::kHeartbeatResp ||
                          f.m.type == MessageType::kSnapshotResp;
    if (hold_ && !hold_->seen && response && f.m.from == hold_->member && f.m.to == hold_->leader &&
        f.m.boot_id == hold_->boot_id && f.m.term == hold_->term &&
        to->node->role() == Role::kLeader && to->node->term() == hold_->term) {
      hold_->seen = true;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Ready processing: the same loop a server runs, with a disk whose sync completes later.

void Cluster::start_ready(Member& m) {
  Ready rd = m.node->ready();
  if (rd.soft_state && opt_.trace) {
    trace("member " + std::to_string(m.id) +
          " role=" + std::string(raft::role_name(rd.soft_state->role)) + " term=" +
          std::to_string(rd.soft_state->term) + " leader=" + std::to_string(rd.soft_state->leader));
  }
  // Log matching, checked on every entry any member persists: one (index, term) names one
  // entry, with one predecessor term.
  std::uint64_t prev_term = 0;
  for (std::size_t i = 0; i < rd.entries.size(); ++i) {
    const Entry& e = rd.entries[i];
    if (i == 0) {
      auto t = m.node->log().term(e.index - 1);
      if (!t) {
        violate("sim: entries to persist start past the log");
        return;
      }
      prev_term = *t;
    }
    auto& slot = seen_entries_[e.index];
    auto it = slot.find(e.term);
    const std::pair<std::uint64_t, std::uint64_t> v{entry_hash(e), prev_term};
    if (it == slot.end()) {
      slot.emplace(e.term, v);
    } else if (it->second != v) {
      violate("log matching: member " + std::to_string(m.id) +
              " has entry index=" + std::to_string(e.index) + " term=" + std::to_string(e.term) +
              (it->second.second != prev_term ? " after a different previous term"
                                              : " with different content") +
              " than another member");
    }
    prev_term = e.term;
  }
  for (Message& msg : rd.messages) send_message(m, msg);
  for (const auto& c : rd.snapshot_chunks) {
    if (c.offset == 0) {
      m.incoming_meta = c.meta;
      m.incoming.clear();
    }
    if (m.incoming_meta == c.meta && m.incoming.size() == c.offset) m.incoming += c.data;
  }
  if (rd.snapshot) {
    if (!(m.incoming_meta == *rd.snapshot) || m.incoming.size() != rd.snapshot_chunks.back().size) {
      violate("sim: snapshot to install was not received whole");
    }
    SimDisk::Op op;
    op.kind = SimDisk::Op::kInstall;
    op.meta = *rd.snapshot;
    op.data = m.incoming;
    // The stored log after the snapshot stays as far as it matches the node's log: all of it
    // when a repair keeps the log, none when the install replaced it. (Nothing else is
    // pending: the previous Ready was synced before this one started.)
    op.keep_to = op.meta.index;
    for (const Entry& e : m.disk.log) {
      if (e.index <= op.meta.index) continue;
      if (e.index != op.keep_to + 1 || !m.node->log().match_term(e.index, e.term)) break;
      op.keep_to = e.index;
    }
    m.disk.pending.push_back(std::move(op));
  }
  for (const Entry& e : rd.entries) {
    SimDisk::Op op;
    op.kind = SimDisk::Op::kEntry;
    op.entry = e;
    m.disk.pending.push_back(std::move(op));
  }
  if (rd.hard_state) {
    SimDisk::Op op;
    op.kind = SimDisk::Op::kHardState;
    op.hs = *rd.hard_state;
    m.disk.pending.push_back(std::move(op));
  }
  if (rd.repair) {
    // Persisted like the hard state: lost with the other unsynced writes on a crash.
    SimDisk::Op op;
    op.kind = SimDisk::Op::kRepair;
    op.repair = *rd.repair;
    m.disk.pending.push_back(std::move(op));
  }
  rd.messages.clear();
  // Mostly quick fsyncs, sometimes a slow one (a wide window for crashes to hit).
  m.sync_at =
      now_ + (crashes_ && chance(slow_disk_one_in_) ? 10 + rng_.uniform(40) : rng_.uniform(6));
  m.outstanding = std::move(rd);
}

void Cluster::finish_ready(Member& m) {
  m.disk.sync();
  if (m.disk.gap)
    violate("sim: member " + std::to_string(m.id) + " wrote an entry past the end of its log " +
            m.disk.gap_info);
  Ready rd = std::move(*m.outstanding);
  m.outstanding.reset();
  for (Message& msg : rd.messages_after_persist) send_message(m, msg);
  if (rd.repair) {
    const raft::RepairState& r = *rd.repair;
    if (m.repair.log_to != 0 && r.log_to == 0) {
      ++result_.stats.repairs;
      trace("member " + std::to_string(m.id) + " log repaired to " +
            std::to_string(m.repair.log_to));
    }
    if (m.repair.needs_snapshot && !r.needs_snapshot) {
      ++result_.stats.repairs;
      trace("member " + std::to_string(m.id) + " state repaired");
    }
    if (r.active()) {
      trace("member " + std::to_string(m.id) + " in repair log_to=" + std::to_string(r.log_to) +
            " needs_snapshot=" + std::to_string(r.needs_snapshot) +
            " snapshot_from=" + std::to_string(r.snapshot_from));
    }
    m.repair = r;
  }
  m.node->advance(rd);
  if (rd.snapshot) {
    auto kv = KvStore::deserialize(m.disk.snap_data);
    if (!kv.ok()) {
      violate("sim: bad snapshot data: " + kv.status().to_string());
      return;
    }
    m.kv = std::move(*kv);
    if (m.kv.applied() != rd.snapshot->index) violate("sim: snapshot data at the wrong index");
    m.last_applied = rd.snapshot->index;
    // The store was replaced: a damaged value is gone. The member applies again once the core
    // has the snapshot it asked for (an older one only catches it up).
    m.damaged = m.node->repair().needs_snapshot;
    trace("member " + std::to_string(m.id) +
          " installed snapshot index=" + std::to_string(rd.snapshot->index) +
          " disk_last_index=" + std::to_string(m.disk.last_index()) +
          (m.damaged ? " still waiting for the repair snapshot" : ""));
  }
  apply_entries(m, rd.committed);
  for (const auto& rs : rd.read_states) {
    for (Client& c : clients_) {
      if (!c.busy || !c.is_read || c.member != m.id || c.ctx != rs.context || c.read_index)
        continue;
      if (rs.index < c.read_min_commit) {
        violate("read index: member " + std::to_string(m.id) + " answered read " + c.ctx +
                " with index " + std::to_string(rs.index) + " but index " +
                std::to_string(c.read_min_commit) + " was committed before the read began");
      }
      c.read_index = rs.index;
    }
  }
  if (rd.snapshot_wanted) take_snapshot(m);
}

void Cluster::apply_entries(Member& m, const std::vector<Entry>& ents) {
  std::uint64_t done = 0;  // the last index applied here
  for (const Entry& e : ents) {
    // A damaged member applies nothing until its repair snapshot is installed; the core hands
    // the entries after the snapshot out again.
    if (m.damaged) break;
    if (e.index != m.last_applied + 1) {
      violate("member " + std::to_string(m.id) + " applied index " + std::to_string(e.index) +
              " after " + std::to_string(m.last_applied));
    }
    if (e.index < committed_.size() && committed_[e.index].known &&
        committed_[e.index].hash != entry_hash(e)) {
      violate("state machine safety: member " + std::to_string(m.id) +
              " applied a different entry at index " + std::to_string(e.index));
    }
    if (e.index >= committed_.size()) committed_.resize(e.index + 1);
    if (!committed_[e.index].known) {
      committed_[e.index] = {true, e.term, entry_hash(e), m.node->term()};
    }
    if (e.type == EntryType::kConfChange) {
      auto cc = raft::decode_conf_change(e.data);
      if (!cc.ok()) {
        violate("sim: undecodable conf change applied");
        return;
      }
      if (cc->type == ConfChangeType::kRemove) pending_removals_.push_back(cc->node);
      m.kv.set_applied(e.index);
      m.last_applied = done = e.index;
      continue;
    }
    if (e.data.empty()) {
      m.kv.set_applied(e.index);
      m.last_applied = done = e.index;
      continue;
    }
    auto cmd = decode_command(e.data);
    if (!cmd.ok()) {
      violate("sim: undecodable command applied");
      return;
    }
    const Result<KvResult> r = m.kv.apply(*cmd, e.index);
    if (!r.ok()) {
      // The write reads the key's old value first: its checksum failed.
      found_damage(m, "applying index " + std::to_string(e.index) + ": " + r.status().message());
      break;
    }
    m.last_applied = done = e.index;
    if (cmd->op_id == 0) {
      if (probe_ && probe_->first == m.id && e.data == probe_data_) live_ = true;
      continue;
    }
    auto it = pending_writes_.find({m.id, cmd->op_id});
    if (it != pending_writes_.end()) {
      Client& c = clients_[it->second];
      check::Operation& op = history_[c.op];
      op.found = r->found;
      op.revision = r->revision;
      if (r->revision) c.seen_revision[op.key] = r->revision;
      respond(c, check::Outcome::kOk);
    }
  }
  if (done != 0) m.node->applied_to(done);
  if (!m.removed && m.alive && m.kv.applied() != m.last_applied)
    violate("sim: kv applied index drifted");
}

void Cluster::process_disks_and_readies() {
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    // Bounded: each round either finishes an outstanding Ready or starts one.
    for (int round = 0; round < 8; ++round) {
      if (m.outstanding && m.sync_at <= now_) {
        finish_ready(m);
        continue;
      }
      if (!m.outstanding && m.node->has_ready()) {
        start_ready(m);
        continue;
      }
      break;
    }
  }
}

// ---------------------------------------------------------------------------------------------
// Faults.

void Cluster::crash(Member& m, bool permanent) {
  if (!m.alive) {
    if (permanent) m.removed = true;
    return;
  }
  trace(std::string(permanent ? "decommission" : "crash") + " member " + std::to_string(m.id) +
        " unsynced_writes=" + std::to_string(m.disk.pending.size()));
  m.disk.crash(rng_);
  stop_node(m);
  m.removed = permanent;
  // Sometimes back at once (before delayed messages to it have arrived), else later.
  m.restart_at = now_ + (chance(3) ? rng_.uniform(3) : 5 + rng_.uniform(50)) * kTickSteps;
  if (!permanent) ++result_.stats.crashes;
  fail_client_ops_on(m.id);
}

void Cluster::stop_node(Member& m) {
  result_.stats.losses_detected += m.node->lost_entries_detected();
  m.alive = false;
  m.outstanding.reset();
  m.node.reset();
}

std::uint64_t Cluster::new_boot_id() {
  std::uint64_t id = 0;
  while (id == 0) id = boot_rng_.next_u64();
  return id;
}

void Cluster::restart(Member& m) {
  raft::RestoreState st;
  st.hard_state = m.disk.hs;
  st.snapshot = m.disk.snap;
  st.entries = m.disk.log;
  st.applied = m.disk.snap.index;
  st.repair = m.disk.repair;
  // A member that stopped while waiting for its repair snapshot still waits (its state, in a
  // real server, is the damaged one).
  m.damaged = m.disk.repair.needs_snapshot;
  m.repair = m.disk.repair;
  m.boot_id = new_boot_id();
  auto kv = m.disk.snap_data.empty() ? Result<KvStore>(KvStore())
                                     : KvStore::deserialize(m.disk.snap_data);
  if (!kv.ok()) {
    violate("sim: bad snapshot on disk: " + kv.status().to_string());
    return;
  }
  m.kv = std::move(*kv);
  m.kv.set_applied(m.disk.snap.index);
  m.last_applied = m.disk.snap.index;
  m.last_commit = 0;
  m.recorded_commit = 0;
  m.incoming.clear();
  m.incoming_meta = {};
  auto node = raft::Node::create(node_config(m), std::move(st));
  if (!node.ok()) {
    violate("restart of member " + std::to_string(m.id) + " failed: " + node.status().to_string());
    return;
  }
  m.node = std::move(*node);
  m.alive = true;
  if (!m.disk.snap_data.empty()) m.node->snapshot_available(m.disk.snap, m.disk.snap_data.size());
  trace("restart member " + std::to_string(m.id) + " commit=" + std::to_string(m.disk.hs.commit) +
        " last_index=" + std::to_string(m.node->log().last_index()) +
        (m.disk.repair.active() ? " in_repair" : ""));
}

void Cluster::take_snapshot(Member& m) {
  const std::uint64_t a = m.kv.applied();
  if (m.damaged || a <= m.disk.snap.index || a > m.node->applied()) {
    if (!m.disk.snap_data.empty()) m.node->snapshot_available(m.disk.snap, m.disk.snap_data.size());
    return;
  }
  auto conf = m.node->conf_state_at(a);
  auto term = m.node->log().term(a);
  if (!conf.ok() || !term) return;
  // Every value is verified on the way into the snapshot: a damaged one never leaves.
  Result<std::string> data = m.kv.serialize();
  if (!data.ok()) {
    found_damage(m, "making a snapshot: " + data.status().message());
    if (!m.disk.snap_data.empty()) m.node->snapshot_available(m.disk.snap, m.disk.snap_data.size());
    return;
  }
  SnapshotMeta meta{a, *term, *conf};
  // Written to a temporary file, fsynced and renamed: durable at once.
  m.disk.snap = meta;
  m.disk.snap_data = std::move(*data);
  m.node->snapshot_available(meta, m.disk.snap_data.size());
  const std::uint64_t keep = rng_.uniform(4);  // sometimes keep a few entries
  const std::uint64_t upto = a > keep ? a - keep : a;
  if (upto > m.node->log().snapshot_index()) {
    Status s = m.node->compact(upto);
    if (!s.ok()) violate("compact refused: " + s.to_string());
  }
  // The disk keeps the entries after its snapshot (the node may keep a few more in memory).
  m.disk.compact(a);
  trace("member " + std::to_string(m.id) + " snapshot index=" + std::to_string(a) +
        " compacted to " + std::to_string(upto));
}

void Cluster::heal() {
  healed_ = true;
  heal_at_ = now_;
  blocked_.clear();
  hold_.reset();
  for (auto& [id, m] : members_) {
    if (!m.alive && !m.removed) restart(m);
  }
  trace("heal: partitions cleared, crashed members restarted, no more drops");
  // A scrub (kvc's background checksum scrubber): damage nobody read yet is found now and
  // repaired before the end.
  for (auto& [id, m] : members_) {
    if (!m.alive || m.damaged || !in_cluster(m)) continue;
    if (Status s = m.kv.verify(); !s.ok()) found_damage(m, "scrub: " + s.message());
  }
}

// ---------------------------------------------------------------------------------------------
// Repair faults.

void Cluster::capture_image() {
  std::vector<Member*> up;
  for (auto& [id, m] : members_) {
    if (m.alive && !m.removed) up.push_back(&m);
  }
  if (up.empty()) return;
  Member& m = *up[rng_.uniform(up.size())];
  SimDisk image = m.disk;  // what is durable: the unsynced writes are not in it
  image.pending.clear();
  image.taken_at = now_;
  constexpr std::size_t kImages = 3;
  if (m.images.size() < kImages) {
    m.images.push_back(std::move(image));
  } else {
    m.images[rng_.uniform(kImages)] = std::move(image);
  }
}

bool Cluster::in_cluster(const Member& m) {
  if (m.removed) return false;
  Member* l = leader();
  if (l == nullptr) return true;
  const raft::ConfState& c = l->node->conf_state();
  return std::binary_search(c.voters.begin(), c.voters.end(), m.id) ||
         std::binary_search(c.learners.begin(), c.learners.end(), m.id);
}

bool Cluster::repair_in_progress() {
  // One member in repair at a time: kvc's protection needs a healthy majority to repair from.
  for (auto& [id, m] : members_) {
    if (!in_cluster(m)) continue;
    if (m.damaged || m.disk.repair.active()) return true;
    if (m.alive && (m.node->repair().active() || !m.kv.verify().ok())) return true;
  }
  if (Member* l = leader()) {
    for (const raft::PeerProgress& p : l->node->progress()) {
      if (p.repairing || p.repair_to != 0) return true;
    }
  }
  return false;
}

bool Cluster::conf_change_pending(Member& l) {
  const raft::RaftLog& log = l.node->log();
  for (std::uint64_t i = std::max(l.node->commit() + 1, log.first_index()); i <= log.last_index();
       ++i) {
    if (log.at(i).type == EntryType::kConfChange) return true;
  }
  return false;
}

void Cluster::rollback_op() {
  Member* l = leader();
  if (l == nullptr || !blocked_.empty() || l->node->transfer_target() != raft::kNoNode) return;
  if (repair_in_progress()) return;
  // A membership change in flight could end the leader's (or the member's) part in the window.
  if (conf_change_pending(*l)) return;
  struct Candidate {
    Member* m;
    std::uint64_t acked;
    std::size_t image;
  };
  // The leader must keep its leadership through the window without the member's help: a
  // quorum of the other voters has been heard from lately (and no crash comes in the window).
  const std::vector<raft::PeerProgress> progress = l->node->progress();
  const raft::ConfState& conf = l->node->conf_state();
  const auto active_voters_but = [&](NodeId m) {
    std::size_t n = 0;
    for (const raft::PeerProgress& p : progress) {
      const bool voter = std::binary_search(conf.voters.begin(), conf.voters.end(), p.id);
      const Member* x = member(p.id);
      if (voter && p.id != m && p.recent_active && x != nullptr && x->alive) ++n;
    }
    return n;
  };
  const std::size_t quorum = conf.voters.size() / 2 + 1;
  std::vector<Candidate> cands;
  for (const raft::PeerProgress& p : progress) {
    Member* m = member(p.id);
    if (p.id == l->id || m == nullptr || !m->alive || m->removed || m->damaged) continue;
    // The leader must have seen the acknowledgement of everything the member holds: a loss
    // of entries acknowledged only to an earlier leader is outside the protection.
    if (!p.recent_active || p.match < m->disk.last_index()) continue;
    if (active_voters_but(p.id) < quorum) continue;
    for (std::size_t i = 0; i < m->images.size(); ++i) {
      const SimDisk& img = m->images[i];
      // Votes: a forgotten vote could be given twice in one term, which no leader can see;
      // only images that lost entries and commit knowledge, not votes.
      if (img.votes != m->disk.votes) continue;
      if (img.last_index() == m->disk.last_index() && img.hs == m->disk.hs) continue;
      cands.push_back({m, p.match, i});
    }
  }
  if (cands.empty()) return;
  const Candidate c = cands[rng_.uniform(cands.size())];
  Member& m = *c.m;
  SimDisk image = m.images[c.image];
  trace("rollback member " + std::to_string(m.id) + " to its disk of step " +
        std::to_string(image.taken_at) + ": last_index " + std::to_string(m.disk.last_index()) +
        " -> " + std::to_string(image.last_index()) + " commit " +
        std::to_string(m.disk.hs.commit) + " -> " + std::to_string(image.hs.commit) + " (leader " +
        std::to_string(l->id) + " saw it acknowledge " + std::to_string(c.acked) + ")");
  ++result_.stats.rollbacks;
  stop_node(m);
  fail_client_ops_on(m.id);
  // Copies taken after this one belong to a history the member no longer has.
  std::erase_if(m.images, [&](const SimDisk& d) { return d.taken_at > image.taken_at; });
  m.disk = std::move(image);
  restart(m);
  if (!m.alive) return;
  hold_ = RollbackHold{m.id, l->id, l->node->term(), c.acked, m.boot_id, false};
}

void Cluster::update_rollback_hold() {
  if (!hold_) return;
  Member* l = member(hold_->leader);
  Member* m = member(hold_->member);
  std::string why;
  if (l == nullptr || !l->alive || l->node->role() != Role::kLeader ||
      l->node->term() != hold_->term) {
    why = "the leader lost its leadership first (outside the protection)";
  } else if (m == nullptr || !m->alive) {
    why = "the member stopped";
  } else if (m->disk.repair.log_to >= hold_->acked) {
    // (A lower log_to can come from a late message meant for an earlier incarnation.)
    why = "the member knows durably that it lost entries up to " +
          std::to_string(m->disk.repair.log_to);
  } else if (hold_->seen) {
    for (const raft::PeerProgress& p : l->node->progress()) {
      if (p.id == m->id && p.repair_to == 0 && p.match >= hold_->acked) {
        why = "the leader verified it has what it acknowledged (match " + std::to_string(p.match) +
              ")";
      }
    }
  }
  if (why.empty()) return;
  trace("rollback window of member " + std::to_string(hold_->member) + " ends: " + why);
  // The moment that matters: the leader crashes while the member still lacks entries it had
  // acknowledged. The member must neither vote nor count until a new leader repairs it.
  const bool lacking = m != nullptr && m->alive &&
                       (m->disk.last_index() < hold_->acked || m->node->repair().active());
  const NodeId leader_id = hold_->leader;
  hold_.reset();
  if (lacking && l != nullptr && l->alive && crashes_ && chance(2)) {
    churn_crash_at_[leader_id] = now_ + 1 + rng_.uniform(30);
  }
}

void Cluster::damage_op() {
  // Only with a leader and a settled configuration: the damaged member stops voting, and a
  // pending removal could leave too few voters to elect the leader that must repair it.
  Member* l = leader();
  if (l == nullptr || conf_change_pending(*l) || repair_in_progress()) return;
  std::vector<Member*> cands;
  for (auto& [id, m] : members_) {
    if (m.alive && in_cluster(m) && !m.kv.keys().empty()) cands.push_back(&m);
  }
  if (cands.empty()) return;
  Member* victim = (!l->kv.keys().empty() && chance(3)) ? l : cands[rng_.uniform(cands.size())];
  const std::vector<std::string> keys = victim->kv.keys();
  const std::string& key = keys[rng_.uniform(keys.size())];
  victim->kv.damage(key);
  ++result_.stats.damages;
  trace("damage the value of key " + key + " on member " + std::to_string(victim->id) +
        (victim == l ? " (the leader)" : ""));
}

void Cluster::found_damage(Member& m, const std::string& why) {
  if (m.damaged) return;
  m.damaged = true;
  ++result_.stats.damage_detected;
  trace("member " + std::to_string(m.id) + " found its state damaged (" + why +
        "): mark_damaged applied=" + std::to_string(m.kv.applied()));
  m.node->mark_damaged(m.kv.applied());
  // Nothing more is served or applied here: reads fail, writes waiting to apply are unknown.
  fail_client_ops_on(m.id);
}

void Cluster::membership_op() {
  Member* l = leader();
  if (l == nullptr) return;
  const raft::ConfState conf = l->node->conf_state();
  const std::uint64_t r = rng_.uniform(10);
  if (r < 3) {
    ++result_.stats.transfers;
    std::vector<NodeId> others;
    for (NodeId v : conf.voters) {
      if (v != l->id) others.push_back(v);
    }
    if (others.empty()) return;
    const NodeId t = others[rng_.uniform(others.size())];
    trace("transfer leadership " + std::to_string(l->id) + " -> " + std::to_string(t));
    (void)l->node->transfer_leadership(t);
    return;
  }
  ConfChange cc;
  int live_members = 0;
  for (auto& [id, m] : members_) live_members += m.removed ? 0 : 1;
  if (r < 5 && live_members < kMaxMembers) {
    // Mostly learners (promoted later), sometimes a voter at once.
    cc.type = chance(4) ? ConfChangeType::kAddVoter : ConfChangeType::kAddLearner;
    cc.node = next_id_;
  } else if (r < 7 && !conf.learners.empty()) {
    cc.type = ConfChangeType::kPromoteLearner;
    cc.node = conf.learners[rng_.uniform(conf.learners.size())];
  } else {
    std::vector<NodeId> cands = conf.learners;
    if (conf.voters.size() > 3) cands.insert(cands.end(), conf.voters.begin(), conf.voters.end());
    if (cands.empty()) return;
    cc.type = ConfChangeType::kRemove;
    cc.node = cands[rng_.uniform(cands.size())];
  }
  cc.context = "sim";
  auto idx = l->node->propose_conf_change(cc);
  trace("propose conf change " + std::string(raft::conf_change_type_name(cc.type)) +
        " node=" + std::to_string(cc.node) + " -> " +
        (idx.ok() ? "index " + std::to_string(*idx) : idx.status().to_string()));
  if (!idx.ok()) return;
  ++result_.stats.conf_changes;
  if (cc.type == ConfChangeType::kAddLearner || cc.type == ConfChangeType::kAddVoter) {
    raft::RestoreState fresh;  // empty: it learns everything from the leader
    add_member(next_id_++, std::move(fresh), true);
  }
}

// ---------------------------------------------------------------------------------------------
// Targeted faults (kTargeted: kAll and these). Random faults alone reach Raft's hard cases rarely:
// a Figure 8 sequence (a leader's entries on a minority, its crash, a rival leader of a higher term
// with a different log, the first leader back and winning again) took thousands of seeds. These
// faults act at the moments that matter, judged from what the simulator sees of the cluster (never
// from which core runs), with the same seeded stream as the rest:
// - each new leader gets a plan: half the time a burst of proposals at once (entries of its term
//   that can be caught half-replicated); then, with odds that follow the situation it won in
//   (plan_leader), it is stopped (crashed, or isolated with the members holding its newest
//   entry) either the step its newest entry is on a chosen minority of the voters, or the step
//   its commit index first moves in its term (before the followers learn of the commit);
// - a leader whose commit index passes its own durable log is crashed three times in four and
//   brought back at once;
// - a member whose new vote or term is still unsynced is crashed one time in three and
//   restarted at once, so it comes back without it while the election goes on.

void Cluster::plan_leader(Member& l) {
  LeaderPlan p;
  p.id = l.id;
  p.term = l.node->term();
  // A leader that won with uncommitted entries of earlier terms in its log is where §5.4.2
  // matters (Figure 8): the moment its commit index first moves is the one to cut it off at.
  const raft::RaftLog& log = l.node->log();
  const bool old_uncommitted = log.last_index() > l.node->commit() &&
                               log.term(l.node->commit() + 1).value_or(p.term) < p.term;
  // A leader that won while another member's disk holds an entry its log lacks (a stopped
  // rival's minority entries): stopped while its own entries are on a minority, the cluster holds
  // three different histories.
  bool diverged = false;
  for (auto& [id, m] : members_) {
    if (id == l.id || m.removed || diverged) continue;
    for (const Entry& e : m.disk.log) {
      if (e.index > l.node->commit() && !log.match_term(e.index, e.term)) {
        diverged = true;
        break;
      }
    }
  }
  const std::uint64_t kind = rng_.uniform(8);
  if (old_uncommitted) {
    p.kind = kind < 6 ? LeaderPlan::kStopOnFirstCommit : LeaderPlan::kStopOnMinority;
  } else if (diverged) {
    p.kind = kind < 6 ? LeaderPlan::kStopOnMinority : LeaderPlan::kWatch;
  } else {
    p.kind = kind < 5   ? LeaderPlan::kWatch
             : kind < 7 ? LeaderPlan::kStopOnMinority
                        : LeaderPlan::kStopOnFirstCommit;
  }
  const std::uint64_t quorum = l.node->conf_state().voters.size() / 2 + 1;
  p.holders = quorum > 1 ? 1 + rng_.uniform(quorum - 1) : 1;
  p.commit = l.node->commit();
  // Short bursts, sometimes one longer than an append message carries.
  p.burst = !chance(2) ? 0 : chance(3) ? 5 + rng_.uniform(12) : 1 + rng_.uniform(4);
  p.deadline = now_ + 30 * kTickSteps;
  plan_ = p;
}

void Cluster::targeted_faults() {
  if (crashes_) crash_unsynced_votes();
  if (!plan_) return;
  const LeaderPlan p = *plan_;
  Member* l = member(p.id);
  if (l == nullptr || !l->alive || l->node->role() != Role::kLeader || l->node->term() != p.term ||
      now_ > p.deadline) {
    plan_.reset();
    return;
  }
  if (p.burst > 0) {
    plan_->burst = 0;
    std::uint64_t accepted = 0;
    for (std::uint64_t i = 0; i < p.burst; ++i) {
      const std::string data =
          encode_command({0, check::OpKind::kPut, "burst", "b" + std::to_string(++burst_seq_), 0});
      if (l->node->propose(data).ok()) ++accepted;
    }
    trace("burst of " + std::to_string(accepted) + " proposals on leader " + std::to_string(l->id) +
          " term=" + std::to_string(p.term));
  }
  const raft::RaftLog& log = l->node->log();
  const std::vector<NodeId>& voters = l->node->conf_state().voters;
  if (!p.ahead_seen && l->node->commit() > l->disk.last_index()) {
    // Followers made an entry committed before the leader's own fsync finished: crash it with
    // the write in flight three times in four (whatever the plan) and bring it back at once,
    // so the cluster must keep the entry without the leader's copy while the leader votes.
    plan_->ahead_seen = true;
    if (crashes_ && !chance(4)) {
      trace("stop leader " + std::to_string(l->id) + ": its commit index " +
            std::to_string(l->node->commit()) + " is past its durable log " +
            std::to_string(l->disk.last_index()));
      plan_.reset();
      crash(*l, false);
      l->restart_at = now_ + rng_.uniform(3) * kTickSteps;
      return;
    }
  }
  if (p.kind == LeaderPlan::kStopOnMinority) {
    const std::uint64_t last = log.last_index();
    if (last <= l->node->commit()) return;
    std::uint64_t holders = 1;  // the leader
    for (const raft::PeerProgress& pr : l->node->progress()) {
      if (pr.id != l->id && pr.match >= last &&
          std::binary_search(voters.begin(), voters.end(), pr.id)) {
        ++holders;
      }
    }
    if (holders == p.holders) {
      stop_leader(*l, 2,
                  "its newest entry " + std::to_string(last) + " (term " +
                      std::to_string(log.term(last).value_or(0)) + ") is on " +
                      std::to_string(holders) + " of " + std::to_string(voters.size()) + " voters");
    }
  } else if (p.kind == LeaderPlan::kStopOnFirstCommit && l->node->commit() > p.commit) {
    // Mostly cut off rather than crashed: a rival it had made room for, isolated earlier, is
    // free again at once (one partition at a time).
    stop_leader(*l, 4,
                "its commit index moved to " + std::to_string(l->node->commit()) + " in its term");
  }
}

void Cluster::stop_leader(Member& l, std::uint64_t crash_one_in, const std::string& why) {
  plan_.reset();
  // A leader whose own writes are not yet durable is crashed more often: they are torn or lost.
  if (!l.disk.pending.empty() && crash_one_in > 2) crash_one_in = 2;
  if (partitions_ && !chance(crash_one_in)) {
    // Isolate it with the voters that hold its newest entry, if they are a minority: a majority
    // elects a rival while it goes on as a leader for a while, and what it sent last is not
    // delivered (a crash would leave it in flight). Any other partition heals first.
    blocked_.clear();
    const std::uint64_t last = l.node->log().last_index();
    const std::vector<NodeId>& voters = l.node->conf_state().voters;
    std::set<NodeId> side{l.id};
    for (const raft::PeerProgress& pr : l.node->progress()) {
      if (pr.id != l.id && pr.match >= last &&
          std::binary_search(voters.begin(), voters.end(), pr.id)) {
        side.insert(pr.id);
      }
    }
    if (side.size() > (voters.size() - 1) / 2) side = {l.id};
    std::string desc;
    for (auto& [a, ma] : members_) {
      if (!side.count(a)) continue;
      desc += std::to_string(a) + ",";
      for (auto& [b, mb] : members_) {
        if (side.count(b)) continue;
        blocked_.insert({a, b});
        blocked_.insert({b, a});
      }
    }
    partition_until_ = now_ + (10 + rng_.uniform(80)) * kTickSteps;
    ++result_.stats.partitions;
    trace("isolate leader " + std::to_string(l.id) + " (" + why + ") side=" + desc);
    return;
  }
  if (!crashes_) return;
  trace("stop leader " + std::to_string(l.id) + ": " + why);
  crash(l, false);
  unsent_lost_[l.id] = {now_ > kUnsentSteps ? now_ - kUnsentSteps : 0, now_};
  // Back soon, while the rival it made room for is still in charge: old leaders returning to
  // win again is what the plans are for.
  l.restart_at = now_ + (2 + rng_.uniform(18)) * kTickSteps;
}

void Cluster::crash_unsynced_votes() {
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    for (const SimDisk::Op& op : m.disk.pending) {
      if (op.kind != SimDisk::Op::kHardState || op.hs.vote == raft::kNoNode) continue;
      if (op.hs.term == m.disk.hs.term && op.hs.vote == m.disk.hs.vote) continue;
      const std::pair<std::uint64_t, NodeId> vote{op.hs.term, op.hs.vote};
      if (m.vote_considered == vote) break;
      m.vote_considered = vote;
      if (chance(3)) {
        trace("crash member " + std::to_string(id) + " before its vote for " +
              std::to_string(op.hs.vote) + " in term " + std::to_string(op.hs.term) + " is synced");
        crash(m, false);
        m.restart_at = now_;
      }
      break;
    }
  }
}

void Cluster::inject_faults() {
  if (healed_) return;
  if (targeted_ && !hold_) targeted_faults();
  // During a rollback's window no other fault starts (see RollbackHold); restarts go on.
  if (crashes_ && !hold_) {
    // Fine-grained crashes between ticks: freshly elected leaders, and members in the middle
    // of an fsync (the windows where persistence bugs show).
    for (auto it = churn_crash_at_.begin(); it != churn_crash_at_.end();) {
      if (now_ < it->second) {
        ++it;
        continue;
      }
      Member* m = member(it->first);
      it = churn_crash_at_.erase(it);
      if (m && m->alive) crash(*m, false);
    }
    if (chance(300)) {
      std::vector<Member*> syncing;
      for (auto& [id, m] : members_) {
        if (m.alive && m.outstanding) syncing.push_back(&m);
      }
      if (!syncing.empty()) crash(*syncing[rng_.uniform(syncing.size())], false);
    }
  }
  if (now_ % kTickSteps != 0) return;
  if (partitions_) {
    if (!blocked_.empty() && now_ >= partition_until_) {
      trace("partition healed");
      blocked_.clear();
    } else if (blocked_.empty() && !hold_ && chance(30)) {
      std::vector<NodeId> ids;
      for (auto& [id, m] : members_) {
        if (!m.removed) ids.push_back(id);
      }
      const std::uint64_t kind = rng_.uniform(3);
      std::string desc;
      if (kind == 0) {
        // Isolate one member (often the leader).
        Member* l = leader();
        NodeId x = (l && chance(2)) ? l->id : ids[rng_.uniform(ids.size())];
        for (NodeId y : ids) {
          if (y != x) {
            blocked_.insert({x, y});
            blocked_.insert({y, x});
          }
        }
        desc = "isolate " + std::to_string(x);
      } else {
        std::set<NodeId> side;
        for (NodeId y : ids) {
          if (chance(2)) side.insert(y);
        }
        for (NodeId a : ids) {
          for (NodeId b : ids) {
            if (side.count(a) && !side.count(b)) {
              blocked_.insert({a, b});
              if (kind == 1) blocked_.insert({b, a});  // kind 2: one-way
            }
          }
        }
        desc = std::string(kind == 1 ? "partition" : "one-way partition") + " side=";
        for (NodeId y : side) desc += std::to_string(y) + ",";
      }
      partition_until_ = now_ + (10 + rng_.uniform(80)) * kTickSteps;
      ++result_.stats.partitions;
      trace(desc);
    }
  }
  if (crashes_) {
    for (auto& [id, m] : members_) {
      if (!m.alive && !m.removed && now_ >= m.restart_at) restart(m);
    }
    if (!hold_ && chance(40)) {
      std::vector<Member*> up, unsynced;
      for (auto& [id, m] : members_) {
        if (!m.alive) continue;
        up.push_back(&m);
        if (!m.disk.pending.empty()) unsynced.push_back(&m);
      }
      Member* l = leader();
      Member* victim = nullptr;
      if (!unsynced.empty() && chance(2)) {
        victim = unsynced[rng_.uniform(unsynced.size())];  // mid-fsync: torn writes
      } else if (l && chance(3)) {
        victim = l;
      } else if (!up.empty()) {
        victim = up[rng_.uniform(up.size())];
      }
      if (victim) crash(*victim, false);
    }
  }
  if (membership_) {
    // Membership changes wait while a member is in repair: it does not vote, and removing a
    // voter (or a leader whose own removal is pending) could leave too few voters to elect the
    // leader that must repair it. (Evaluated only when the draw says so: the stream is the same
    // as without repair faults.)
    if (!hold_ && chance(25) && !(rollbacks_ && repair_in_progress())) membership_op();
    if (chance(20)) {
      std::vector<Member*> up;
      for (auto& [id, m] : members_) {
        if (m.alive && !m.outstanding) up.push_back(&m);
      }
      if (!up.empty()) take_snapshot(*up[rng_.uniform(up.size())]);
    }
  }
  if (rollbacks_) {
    if (chance(8)) capture_image();
    if (!hold_ && chance(rollback_one_in_)) rollback_op();
  }
  if (damage_ && !hold_ && chance(damage_one_in_)) damage_op();
}

void Cluster::tick_members() {
  for (auto& [id, m] : members_) {
    if (m.alive && (now_ + static_cast<std::uint64_t>(m.tick_phase)) % kTickSteps == 0) {
      m.node->tick();
    }
  }
  if (now_ % kTickSteps == 0) ++result_.stats.ticks;
}

// ---------------------------------------------------------------------------------------------
// Clients.

void Cluster::respond(Client& c, check::Outcome outcome) {
  check::Operation& op = history_[c.op];
  op.outcome = outcome;
  op.response_time = outcome == check::Outcome::kUnknown ? check::kNever : ++clock_;
  if (outcome == check::Outcome::kOk) ++result_.stats.operations_ok;
  if (outcome == check::Outcome::kUnknown) ++result_.stats.operations_unknown;
  if (!c.is_read) pending_writes_.erase({c.member, c.op_id});
  if (opt_.trace) {
    trace("client " + std::to_string(c.id) + " op " + std::to_string(c.op_id) + " -> " +
          (outcome == check::Outcome::kOk       ? "ok"
           : outcome == check::Outcome::kFailed ? "failed"
                                                : "unknown") +
          " found=" + std::to_string(op.found) + " rev=" + std::to_string(op.revision) +
          (op.kind == check::OpKind::kGet ? " value=" + op.read_value : ""));
  }
  c.busy = false;
}

void Cluster::fail_client_ops_on(NodeId id) {
  for (Client& c : clients_) {
    if (c.busy && c.member == id)
      respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
  }
}

void Cluster::client_actions() {
  for (Client& c : clients_) {
    if (c.busy) {
      if (now_ >= c.deadline)
        respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
      continue;
    }
    if (healed_ || !chance(12)) continue;
    std::vector<Member*> up;
    for (auto& [id, m] : members_) {
      if (m.alive) up.push_back(&m);
    }
    if (up.empty()) continue;
    // Mostly the leader (as real clients redirect), sometimes anyone.
    Member* l = leader();
    Member* target = (l && !chance(3)) ? l : up[rng_.uniform(up.size())];
    check::Operation op;
    op.client = c.id;
    op.key = kKeys[rng_.uniform(std::size(kKeys))];
    const std::uint64_t k = rng_.uniform(100);
    op.kind = k < 35   ? check::OpKind::kGet
              : k < 70 ? check::OpKind::kPut
              : k < 90 ? check::OpKind::kCas
                       : check::OpKind::kDelete;
    c.op_id = next_op_id_++;
    if (op.kind == check::OpKind::kPut || op.kind == check::OpKind::kCas) {
      op.value = "v" + std::to_string(c.op_id);
    }
    if (op.kind == check::OpKind::kCas) {
      auto it = c.seen_revision.find(op.key);
      op.expect_revision = (it == c.seen_revision.end() || chance(4)) ? 0 : it->second;
    }
    op.invoke_time = ++clock_;
    c.busy = true;
    c.member = target->id;
    c.op = history_.size();
    c.deadline = now_ + kOpTimeoutSteps;
    c.is_read = op.kind == check::OpKind::kGet;
    c.read_index.reset();
    std::uint64_t data_hash = 0;
    history_.push_back(op);
    ++result_.stats.operations;
    if (target->damaged) {
      // A member that found its state damaged serves nothing until it is repaired.
      respond(c, check::Outcome::kFailed);
    } else if (c.is_read) {
      c.ctx = "r" + std::to_string(c.op_id);
      std::uint64_t mc = max_commit_seen_;
      for (auto& [id, m] : members_) {
        if (m.alive) mc = std::max(mc, m.node->commit());
      }
      c.read_min_commit = mc;
      Status s = target->node->read_index(c.ctx);
      if (opt_.trace)
        trace("client " + std::to_string(c.id) + " get " + op.key + " via " +
              std::to_string(target->id));
      if (!s.ok()) respond(c, check::Outcome::kFailed);
    } else {
      KvCommand cmd{c.op_id, op.kind, op.key, op.value, op.expect_revision};
      std::string data = encode_command(cmd);
      Entry tmp;
      tmp.data = data;
      data_hash = entry_hash(tmp);
      auto idx = target->node->propose(std::move(data));
      if (opt_.trace) {
        trace("client " + std::to_string(c.id) + " op " + std::to_string(c.op_id) + " " +
              encode_command(cmd) + " via " + std::to_string(target->id) +
              (idx.ok() ? " index=" + std::to_string(*idx) : " refused"));
      }
      if (idx.ok()) {
        pending_writes_[{target->id, c.op_id}] = static_cast<std::size_t>(&c - clients_.data());
      } else {
        respond(c, check::Outcome::kFailed);
      }
    }
    history_hash_.push_back(data_hash);
  }
}

void Cluster::serve_reads() {
  for (Client& c : clients_) {
    if (!c.busy || !c.is_read || !c.read_index) continue;
    Member* m = member(c.member);
    if (m == nullptr || !m->alive) continue;
    if (m->damaged) {
      respond(c, check::Outcome::kFailed);
      continue;
    }
    if (m->kv.applied() < *c.read_index) continue;
    check::Operation& op = history_[c.op];
    const Result<const KvStore::Item*> got = m->kv.get(op.key);
    if (!got.ok()) {
      // Never served: the read fails (found_damage fails it) and the member starts a repair.
      found_damage(*m, "read of key " + op.key + ": " + got.status().message());
      continue;
    }
    if (const KvStore::Item* item = *got) {
      op.found = true;
      op.read_value = item->value;
      op.revision = item->mod_revision;
      c.seen_revision[op.key] = item->mod_revision;
    } else {
      op.found = false;
    }
    respond(c, check::Outcome::kOk);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks.

void Cluster::check_step() {
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    raft::Node& n = *m.node;
    n.check_invariants();
    if (n.role() == Role::kLeader) {
      auto [it, inserted] = leader_of_term_.emplace(n.term(), id);
      if (!inserted && it->second != id) {
        violate("election safety: members " + std::to_string(it->second) + " and " +
                std::to_string(id) + " are both leaders of term " + std::to_string(n.term()));
      }
      if (m.led_terms.insert(n.term()).second) {
        ++result_.stats.elections;
        if (crashes_ && !healed_ && chance(2)) churn_crash_at_[id] = now_ + 1 + rng_.uniform(40);
        if (targeted_ && !healed_) plan_leader(m);
        // Leader completeness: every entry committed in an earlier term is in the new
        // leader's log.
        const raft::RaftLog& log = n.log();
        for (std::uint64_t i = log.first_index(); i < committed_.size(); ++i) {
          const CommittedInfo& ci = committed_[i];
          if (!ci.known || ci.observed_term >= n.term()) continue;
          if (!log.match_term(i, ci.term)) {
            violate("leader completeness: leader " + std::to_string(id) + " of term " +
                    std::to_string(n.term()) + " lacks committed entry index=" + std::to_string(i) +
                    " term=" + std::to_string(ci.term));
          }
        }
      }
    }
    if (n.commit() < m.last_commit) {
      violate("commit index of member " + std::to_string(id) + " went back from " +
              std::to_string(m.last_commit) + " to " + std::to_string(n.commit()));
    }
    m.last_commit = n.commit();
    // Record newly committed entries; two members must never disagree on one.
    const raft::RaftLog& log = n.log();
    for (std::uint64_t i = std::max(m.recorded_commit + 1, log.first_index()); i <= n.commit();
         ++i) {
      const Entry& e = log.at(i);
      if (i >= committed_.size()) committed_.resize(i + 1);
      CommittedInfo& ci = committed_[i];
      if (!ci.known) {
        ci = {true, e.term, entry_hash(e), n.term()};
      } else if (ci.term != e.term || ci.hash != entry_hash(e)) {
        violate("state machine safety: member " + std::to_string(id) + " committed index " +
                std::to_string(i) + " term " + std::to_string(e.term) + " but term " +
                std::to_string(ci.term) + " was committed there before");
      }
    }
    m.recorded_commit = std::max(m.recorded_commit, n.commit());
    max_commit_seen_ = std::max(max_commit_seen_, n.commit());
  }
  result_.stats.committed = max_commit_seen_;
}

std::string Cluster::describe_cluster() {
  std::string state;
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    state += " [" + std::to_string(id) + " " + std::string(raft::role_name(m.node->role())) +
             " term=" + std::to_string(m.node->term()) +
             " commit=" + std::to_string(m.node->commit()) +
             " last=" + std::to_string(m.node->log().last_index()) + "]";
    for (const auto& p : m.node->progress()) {
      state += " {" + std::to_string(p.id) + " " + std::string(raft::progress_state_name(p.state)) +
               " match=" + std::to_string(p.match) + " next=" + std::to_string(p.next) +
               " inflight=" + std::to_string(p.inflight_msgs) + "}";
    }
  }
  return state;
}

void Cluster::liveness_probe() {
  if (live_) return;
  if (now_ > heal_at_ + static_cast<std::uint64_t>(opt_.liveness_ticks) * kTickSteps) {
    violate("liveness: no write committed within " + std::to_string(opt_.liveness_ticks) +
            " ticks after the faults healed:" + describe_cluster());
    return;
  }
  Member* l = leader();
  if (l == nullptr) return;
  if (probe_ && probe_->first == l->id && l->node->term() == probe_->second) return;
  probe_data_ = encode_command({0, check::OpKind::kPut, "probe", "p" + std::to_string(now_), 0});
  auto idx = l->node->propose(probe_data_);
  if (idx.ok()) {
    probe_ = std::make_pair(l->id, l->node->term());
    trace("liveness probe proposed on " + std::to_string(l->id) + " index=" + std::to_string(*idx));
  }
}

void Cluster::final_checks() {
  // Nothing acknowledged is lost: each acknowledged write is the committed entry at its
  // revision.
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const check::Operation& op = history_[i];
    if (op.outcome != check::Outcome::kOk || op.kind == check::OpKind::kGet || op.revision == 0)
      continue;
    if (op.revision >= committed_.size() || !committed_[op.revision].known ||
        committed_[op.revision].hash != history_hash_[i]) {
      violate("acknowledged write lost: client " + std::to_string(op.client) + " " + op.key +
              " revision " + std::to_string(op.revision));
    }
  }
  HistoryCheck hc = check_history_linearizable(history_);
  result_.stats.linearizability_checked = hc.checked;
  result_.stats.checked_operations = hc.operations;
  if (hc.checked && !hc.ok) violate("linearizability: " + hc.explanation);
}

void Cluster::step_once() {
  ++now_;
  ++result_.stats.steps;
  inject_faults();
  deliver_due();
  tick_members();
  process_disks_and_readies();
  serve_reads();
  client_actions();
  process_disks_and_readies();
  for (NodeId id : pending_removals_) {
    Member* x = member(id);
    if (x && !x->removed) {
      trace("member " + std::to_string(id) + " removed (its removal was applied)");
      crash(*x, true);
    }
  }
  pending_removals_.clear();
  update_rollback_hold();
  if (!failed_) check_step();
}

SimResult Cluster::run() {
  resolve_options();
#ifdef KVC_MUTATIONS
  raft::set_mutation(opt_.mutation);
#endif
  {
    const auto bootstrap = [&]() {
      std::vector<NodeId> voters;
      for (int i = 1; i <= opt_.members; ++i) voters.push_back(static_cast<NodeId>(i));
      return raft::bootstrap_state(voters);
    }();
    trace("cluster: members=" + std::to_string(opt_.members) +
          " faults=" + std::string(fault_mix_name(opt_.faults)) + " max_msg_bytes=" +
          std::to_string(max_msg_bytes_) + " max_inflight=" + std::to_string(max_inflight_));
    for (int i = 1; i <= opt_.members; ++i) add_member(static_cast<NodeId>(i), bootstrap, true);
    next_id_ = static_cast<NodeId>(opt_.members + 1);
    for (int i = 0; i < opt_.clients; ++i) {
      Client c;
      c.id = static_cast<std::uint64_t>(i + 1);
      clients_.push_back(c);
    }
    const std::uint64_t fault_steps = static_cast<std::uint64_t>(opt_.fault_ticks) * kTickSteps;
    while (now_ < fault_steps && !failed_) step_once();
    if (!failed_) heal();
    // Liveness, then drain: outstanding client operations finish or time out.
    const std::uint64_t limit =
        now_ + static_cast<std::uint64_t>(opt_.liveness_ticks) * kTickSteps + kOpTimeoutSteps + 10;
    // Damaged members found by the scrub at heal must be repaired within the bound too.
    const auto damaged = [&]() -> Member* {
      for (auto& [id, m] : members_) {
        if (m.alive && m.damaged && in_cluster(m)) return &m;
      }
      return nullptr;
    };
    while (now_ < limit && !failed_) {
      step_once();
      liveness_probe();
      bool busy = false;
      for (const Client& c : clients_) busy = busy || c.busy;
      if (live_ && !busy && damaged() == nullptr) break;
    }
    if (!live_ && !failed_) {
      violate("liveness: no write committed within " + std::to_string(opt_.liveness_ticks) +
              " ticks after the faults healed:" + describe_cluster());
    }
    if (Member* d = damaged(); d != nullptr && !failed_) {
      violate("liveness: the damaged state of member " + std::to_string(d->id) +
              " was not repaired within " + std::to_string(opt_.liveness_ticks) +
              " ticks after the faults healed:" + describe_cluster());
    }
    for (auto& [id, m] : members_) {
      if (!m.alive || failed_ || !in_cluster(m)) continue;
      if (Status s = m.kv.verify(); !s.ok())
        violate("member " + std::to_string(id) + " still holds a damaged value: " + s.message());
    }
    for (Client& c : clients_) {
      if (c.busy) respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
    }
    if (!failed_) final_checks();
  }
  for (auto& [id, m] : members_) {
    if (m.alive) result_.stats.losses_detected += m.node->lost_entries_detected();
  }
#ifdef KVC_MUTATIONS
  raft::set_mutation(raft::Mutation::kNone);
#endif
  return result_;
}

}  // namespace

SimResult run_simulation(const SimOptions& options) {
  Cluster c(options);
  return c.run();
}

std::string replay_command(const SimOptions& options, const SimResult& result) {
  std::ostringstream os;
  os << "kvc-sim --seed " << options.seed << " --members " << result.members << " --faults "
     << fault_mix_name(result.faults);
  if (options.mutation != raft::Mutation::kNone)
    os << " --mutation " << raft::mutation_name(options.mutation);
  if (options.fault_ticks != SimOptions{}.fault_ticks)
    os << " --fault-ticks " << options.fault_ticks;
  if (options.liveness_ticks != SimOptions{}.liveness_ticks)
    os << " --liveness-ticks " << options.liveness_ticks;
  if (options.clients != SimOptions{}.clients) os << " --clients " << options.clients;
  os << " --trace";
  return os.str();
}

}  // namespace kvc::sim
