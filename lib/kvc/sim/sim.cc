// The deterministic cluster simulator. One Cluster per run: members (raft::Node + SimDisk +
// KvStore), a network queue ordered by (delivery step, sequence), clients, a fault schedule,
// and the checks. Time is a step counter; each member ticks every kTickSteps steps (phases
// staggered), so messages, disk syncs and ticks interleave finely.
#include "kvc/sim/sim.h"

#include <sstream>

#include "kvc/sim/sim_internal.h"

namespace kvc::sim {

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

namespace raft_cluster {

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
  if (opt_.record) result_.history = history_;
#ifdef KVC_MUTATIONS
  raft::set_mutation(raft::Mutation::kNone);
#endif
  return result_;
}

}  // namespace raft_cluster

SimResult run_simulation(const SimOptions& options) {
  raft_cluster::Cluster c(options);
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
  if (options.fault_filter.only) {
    os << " --only-faults " << format_fault_list(*options.fault_filter.only);
  }
  if (!options.fault_filter.suppress.empty()) {
    os << " --suppress-faults " << format_fault_list(options.fault_filter.suppress);
  }
  os << " --trace";
  return os.str();
}

}  // namespace kvc::sim
