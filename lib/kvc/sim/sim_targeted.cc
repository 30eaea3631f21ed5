// The simulated cluster's fault schedule (sim_internal.h): the targeted faults (a plan for each
// new leader, stopping it at the moments Raft's rules exist for) and inject_faults(), which
// draws each step's faults from the seed. Invariant kept here: every choice comes from the
// run's seeded streams, so a seed replays the same run.
#include "kvc/sim/sim_internal.h"

namespace kvc::sim::raft_cluster {

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
  if (p.burst > 0) plan_->burst = 0;
  if (p.burst > 0 && take_fault("burst", [&] {
        return std::to_string(p.burst) + " proposals on leader " + std::to_string(l->id);
      })) {
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
      // (Traced before the crash, as always, unless a fault filter may suppress it.)
      const std::string why = "stop leader " + std::to_string(l->id) + ": its commit index " +
                              std::to_string(l->node->commit()) + " is past its durable log " +
                              std::to_string(l->disk.last_index());
      if (opt_.fault_filter.all()) trace(why);
      plan_.reset();
      const bool crashed = crash(*l, false);
      if (crashed && !opt_.fault_filter.all()) trace(why);
      const std::uint64_t back = now_ + rng_.uniform(3) * kTickSteps;
      if (crashed) l->restart_at = back;
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
    const std::uint64_t until = now_ + (10 + rng_.uniform(80)) * kTickSteps;
    if (!take_fault("isolate-leader",
                    [&] { return "leader " + std::to_string(l.id) + " (" + why + ")"; }))
      return;
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
    partition_until_ = until;
    ++result_.stats.partitions;
    trace("isolate leader " + std::to_string(l.id) + " (" + why + ") side=" + desc);
    return;
  }
  if (!crashes_) return;
  if (opt_.fault_filter.all()) trace("stop leader " + std::to_string(l.id) + ": " + why);
  const bool crashed = crash(l, false);
  if (crashed && !opt_.fault_filter.all())
    trace("stop leader " + std::to_string(l.id) + ": " + why);
  if (crashed) unsent_lost_[l.id] = {now_ > kUnsentSteps ? now_ - kUnsentSteps : 0, now_};
  // Back soon, while the rival it made room for is still in charge: old leaders returning to
  // win again is what the plans are for.
  const std::uint64_t back = now_ + (2 + rng_.uniform(18)) * kTickSteps;
  if (crashed) l.restart_at = back;
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
        const std::string why = "crash member " + std::to_string(id) + " before its vote for " +
                                std::to_string(op.hs.vote) + " in term " +
                                std::to_string(op.hs.term) + " is synced";
        if (opt_.fault_filter.all()) trace(why);
        if (crash(m, false)) {
          if (!opt_.fault_filter.all()) trace(why);
          m.restart_at = now_;
        }
      }
      break;
    }
  }
}

void Cluster::step_crashes() {
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

void Cluster::partition_faults() {
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
    // Drawn into a set of its own: a suppressed partition (sim_minimize.h) leaves blocked_ empty.
    std::set<std::pair<NodeId, NodeId>> cut;
    if (kind == 0) {
      // Isolate one member (often the leader).
      Member* l = leader();
      NodeId x = (l && chance(2)) ? l->id : ids[rng_.uniform(ids.size())];
      for (NodeId y : ids) {
        if (y != x) {
          cut.insert({x, y});
          cut.insert({y, x});
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
            cut.insert({a, b});
            if (kind == 1) cut.insert({b, a});  // kind 2: one-way
          }
        }
      }
      desc = std::string(kind == 1 ? "partition" : "one-way partition") + " side=";
      for (NodeId y : side) desc += std::to_string(y) + ",";
    }
    const std::uint64_t until = now_ + (10 + rng_.uniform(80)) * kTickSteps;
    if (!take_fault(kind == 2 ? "one-way-partition" : "partition", [&] { return desc; })) return;
    blocked_ = std::move(cut);
    partition_until_ = until;
    ++result_.stats.partitions;
    trace(desc);
  }
}

void Cluster::tick_crashes() {
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

void Cluster::inject_faults() {
  if (healed_) return;
  if (targeted_ && !hold_) targeted_faults();
  // During a rollback's window no other fault starts (see RollbackHold); restarts go on.
  if (crashes_ && !hold_) step_crashes();
  if (now_ % kTickSteps != 0) return;
  if (partitions_) partition_faults();
  if (crashes_) tick_crashes();
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
      if (!up.empty()) take_snapshot(*up[rng_.uniform(up.size())], true);
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

}  // namespace kvc::sim::raft_cluster
