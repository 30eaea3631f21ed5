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
    case FaultMix::kAll:
      return "all";
    case FaultMix::kMixed:
      return "mixed";
  }
  return "unknown";
}

bool fault_mix_from_name(std::string_view name, FaultMix& out) {
  for (FaultMix m : {FaultMix::kNone, FaultMix::kNet, FaultMix::kPartition, FaultMix::kCrash,
                     FaultMix::kMembership, FaultMix::kAll, FaultMix::kMixed}) {
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
// A crash keeps a random prefix of the unsynced writes (a torn batch) and loses the rest.
struct SimDisk {
  struct Op {
    enum Kind { kEntry, kHardState, kInstall } kind = kEntry;
    Entry entry;
    HardState hs;
    SnapshotMeta meta;
    std::string data;
  };
  HardState hs;
  SnapshotMeta snap;
  std::string snap_data;
  std::vector<Entry> log;  // after snap.index
  std::vector<Op> pending;
  bool gap = false;

  void apply(const Op& op) {
    switch (op.kind) {
      case Op::kEntry: {
        while (!log.empty() && log.back().index >= op.entry.index) log.pop_back();
        const std::uint64_t expect = log.empty() ? snap.index + 1 : log.back().index + 1;
        if (op.entry.index != expect) {
          gap = true;  // reported by the cluster as a violation
          return;
        }
        log.push_back(op.entry);
        break;
      }
      case Op::kHardState:
        hs = op.hs;
        break;
      case Op::kInstall:
        snap = op.meta;
        snap_data = op.data;
        log.clear();
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
  std::unique_ptr<raft::SplitMix64> rng;
  std::unique_ptr<raft::Node> node;
  SimDisk disk;
  KvStore kv;
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
};

struct InFlight {
  std::uint64_t at;
  std::uint64_t seq;
  Message m;
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
  explicit Cluster(const SimOptions& o) : opt_(o), rng_(o.seed) {}

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
  void restart(Member& m);
  void heal();
  void membership_op();
  void take_snapshot(Member& m);
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

  SimOptions opt_;
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
  // Per-seed shape of the cluster's limits and disks, drawn from the seed.
  std::uint64_t max_msg_bytes_ = 256;
  int max_inflight_ = 4;
  std::uint64_t slow_disk_one_in_ = 8;
  std::map<NodeId, std::uint64_t> churn_crash_at_;  // new leaders crashed soon after winning

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
  const FaultMix faults_pick = kChoices[pick.uniform(std::size(kChoices))];
  if (opt_.members == 0) opt_.members = members_pick;
  if (opt_.faults == FaultMix::kMixed) opt_.faults = faults_pick;
  result_.members = opt_.members;
  result_.faults = opt_.faults;
  const FaultMix f = opt_.faults;
  if (f != FaultMix::kNone) {
    drop_one_in_ = 20;
    dup_one_in_ = 30;
  }
  // Some seeds replicate one entry per message (so a new leader's old-term entries travel
  // without its no-op), some have deep pipelines.
  const std::uint64_t shape = pick.uniform(4);
  max_msg_bytes_ = shape == 0 ? 1 : shape == 1 ? 64 : 256;
  max_inflight_ = static_cast<int>(1 + pick.uniform(8));
  partitions_ = f == FaultMix::kPartition || f == FaultMix::kAll;
  crashes_ = f == FaultMix::kCrash || f == FaultMix::kAll;
  membership_ = f == FaultMix::kMembership || f == FaultMix::kAll;
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
  c.rng = m.rng.get();
  static raft::NullLogger null_logger;
  c.logger = &null_logger;
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
  if (drop_one_in_ && !healed_ && chance(drop_one_in_)) {
    trace("drop " + raft::describe(msg));
    return;
  }
  std::uint64_t delay = 1 + rng_.uniform(8);
  if (!healed_ && opt_.faults != FaultMix::kNone && chance(10)) delay += 10 + rng_.uniform(30);
  if (dup_one_in_ && !healed_ && chance(dup_one_in_)) {
    net_.push({now_ + delay + rng_.uniform(20), msg_seq_++, msg});
  }
  net_.push({now_ + delay, msg_seq_++, std::move(msg)});
}

void Cluster::deliver_due() {
  while (!net_.empty() && net_.top().at <= now_) {
    InFlight f = net_.top();
    net_.pop();
    Member* to = member(f.m.to);
    if (to == nullptr || !to->alive) continue;
    if (blocked_.count({f.m.from, f.m.to})) continue;
    if (opt_.trace) trace("deliver " + raft::describe(f.m));
    Status s = to->node->step(f.m);
    if (!s.ok()) violate("step refused a simulator message: " + s.to_string());
    if (failed_) return;
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
  rd.messages.clear();
  // Mostly quick fsyncs, sometimes a slow one (a wide window for crashes to hit).
  m.sync_at =
      now_ + (crashes_ && chance(slow_disk_one_in_) ? 10 + rng_.uniform(40) : rng_.uniform(6));
  m.outstanding = std::move(rd);
}

void Cluster::finish_ready(Member& m) {
  m.disk.sync();
  if (m.disk.gap)
    violate("sim: member " + std::to_string(m.id) + " wrote an entry past the end of its log");
  Ready rd = std::move(*m.outstanding);
  m.outstanding.reset();
  for (Message& msg : rd.messages_after_persist) send_message(m, msg);
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
    trace("member " + std::to_string(m.id) +
          " installed snapshot index=" + std::to_string(rd.snapshot->index));
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
  for (const Entry& e : ents) {
    if (e.index != m.last_applied + 1) {
      violate("member " + std::to_string(m.id) + " applied index " + std::to_string(e.index) +
              " after " + std::to_string(m.last_applied));
    }
    m.last_applied = e.index;
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
      continue;
    }
    if (e.data.empty()) {
      m.kv.set_applied(e.index);
      continue;
    }
    auto cmd = decode_command(e.data);
    if (!cmd.ok()) {
      violate("sim: undecodable command applied");
      return;
    }
    const KvResult r = m.kv.apply(*cmd, e.index);
    if (cmd->op_id == 0) {
      if (probe_ && probe_->first == m.id && e.data == probe_data_) live_ = true;
      continue;
    }
    auto it = pending_writes_.find({m.id, cmd->op_id});
    if (it != pending_writes_.end()) {
      Client& c = clients_[it->second];
      check::Operation& op = history_[c.op];
      op.found = r.found;
      op.revision = r.revision;
      if (r.revision) c.seen_revision[op.key] = r.revision;
      respond(c, check::Outcome::kOk);
    }
  }
  if (!ents.empty()) m.node->applied_to(ents.back().index);
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
  m.alive = false;
  m.removed = permanent;
  m.outstanding.reset();
  m.node.reset();
  // Sometimes back at once (before delayed messages to it have arrived), else later.
  m.restart_at = now_ + (chance(3) ? rng_.uniform(3) : 5 + rng_.uniform(50)) * kTickSteps;
  if (!permanent) ++result_.stats.crashes;
  fail_client_ops_on(m.id);
}

void Cluster::restart(Member& m) {
  raft::RestoreState st;
  st.hard_state = m.disk.hs;
  st.snapshot = m.disk.snap;
  st.entries = m.disk.log;
  st.applied = m.disk.snap.index;
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
        " last_index=" + std::to_string(m.node->log().last_index()));
}

void Cluster::take_snapshot(Member& m) {
  const std::uint64_t a = m.kv.applied();
  if (a <= m.disk.snap.index || a > m.node->applied()) {
    if (!m.disk.snap_data.empty()) m.node->snapshot_available(m.disk.snap, m.disk.snap_data.size());
    return;
  }
  auto conf = m.node->conf_state_at(a);
  auto term = m.node->log().term(a);
  if (!conf.ok() || !term) return;
  SnapshotMeta meta{a, *term, *conf};
  // Written to a temporary file, fsynced and renamed: durable at once.
  m.disk.snap = meta;
  m.disk.snap_data = m.kv.serialize();
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
  for (auto& [id, m] : members_) {
    if (!m.alive && !m.removed) restart(m);
  }
  trace("heal: partitions cleared, crashed members restarted, no more drops");
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

void Cluster::inject_faults() {
  if (healed_) return;
  if (crashes_) {
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
    } else if (blocked_.empty() && chance(30)) {
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
    if (chance(40)) {
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
    if (chance(25)) membership_op();
    if (chance(20)) {
      std::vector<Member*> up;
      for (auto& [id, m] : members_) {
        if (m.alive && !m.outstanding) up.push_back(&m);
      }
      if (!up.empty()) take_snapshot(*up[rng_.uniform(up.size())]);
    }
  }
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
    if (c.is_read) {
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
    if (m == nullptr || !m->alive || m->kv.applied() < *c.read_index) continue;
    check::Operation& op = history_[c.op];
    if (const KvStore::Item* item = m->kv.find(op.key)) {
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
    while (now_ < limit && !failed_) {
      step_once();
      liveness_probe();
      bool busy = false;
      for (const Client& c : clients_) busy = busy || c.busy;
      if (live_ && !busy) break;
    }
    if (!live_ && !failed_) {
      violate("liveness: no write committed within " + std::to_string(opt_.liveness_ticks) +
              " ticks after the faults healed:" + describe_cluster());
    }
    for (Client& c : clients_) {
      if (c.busy) respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
    }
    if (!failed_) final_checks();
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
