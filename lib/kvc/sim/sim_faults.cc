// The simulated cluster's faults and operations (sim_internal.h): crashes (a torn batch of
// unsynced writes), restarts, snapshots, healing; the repair faults (a rollback to an older disk
// image, a damaged state value) and the membership changes. Invariant kept here: while a
// rollback is held (hold_), no other fault touches the rolled-back member or its leader.
#include "kvc/sim/sim_internal.h"

namespace kvc::sim::raft_cluster {

// ---------------------------------------------------------------------------------------------
// Faults.

bool Cluster::crash(Member& m, bool permanent) {
  if (!m.alive) {
    if (permanent) m.removed = true;
    return false;
  }
  if (!permanent && !take_fault("crash", [&] {
        return "member " + std::to_string(m.id) +
               " unsynced_writes=" + std::to_string(m.disk.pending.size());
      })) {
    // Suppressed: the same draws (the torn batch, the restart time), nothing else.
    if (!m.disk.pending.empty()) (void)rng_.uniform(m.disk.pending.size() + 1);
    (void)(chance(3) ? rng_.uniform(3) : rng_.uniform(50));
    return false;
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
  return true;
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

void Cluster::take_snapshot(Member& m, bool scheduled) {
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
  const std::uint64_t keep = rng_.uniform(4);  // sometimes keep a few entries
  const std::uint64_t upto = a > keep ? a - keep : a;
  if (scheduled && !take_fault("snapshot", [&] {
        return "member " + std::to_string(m.id) + " index=" + std::to_string(a) + " compact to " +
               std::to_string(upto);
      })) {
    if (!m.disk.snap_data.empty()) m.node->snapshot_available(m.disk.snap, m.disk.snap_data.size());
    return;
  }
  // Written to a temporary file, fsynced and renamed: durable at once.
  m.disk.snap = meta;
  m.disk.snap_data = std::move(*data);
  m.node->snapshot_available(meta, m.disk.snap_data.size());
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
  if (!take_fault("rollback", [&] {
        return "member " + std::to_string(m.id) + " to its disk of step " +
               std::to_string(m.images[c.image].taken_at);
      })) {
    return;
  }
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
  if (!take_fault("damage",
                  [&] { return "key " + key + " on member " + std::to_string(victim->id); })) {
    return;
  }
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
    if (!take_fault("transfer", [&] { return std::to_string(l->id) + " -> " + std::to_string(t); }))
      return;
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
  const bool adds = cc.type == ConfChangeType::kAddLearner || cc.type == ConfChangeType::kAddVoter;
  if (!take_fault("conf-change", [&] {
        return std::string(raft::conf_change_type_name(cc.type)) +
               " node=" + std::to_string(cc.node);
      })) {
    if (adds) {
      // The draws of the member an accepted addition starts (add_member, new_boot_id).
      (void)rng_.next_u64();
      (void)rng_.uniform(kTickSteps);
      (void)new_boot_id();
    }
    return;
  }
  auto idx = l->node->propose_conf_change(cc);
  trace("propose conf change " + std::string(raft::conf_change_type_name(cc.type)) +
        " node=" + std::to_string(cc.node) + " -> " +
        (idx.ok() ? "index " + std::to_string(*idx) : idx.status().to_string()));
  if (!idx.ok()) return;
  ++result_.stats.conf_changes;
  if (adds) {
    raft::RestoreState fresh;  // empty: it learns everything from the leader
    add_member(next_id_++, std::move(fresh), true);
  }
}

}  // namespace kvc::sim::raft_cluster
