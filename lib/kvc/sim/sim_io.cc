// The simulated cluster's plumbing (sim_internal.h): messages through the lossy network queue,
// each member's Ready handled in two halves around its simulated disk sync, and committed
// entries applied to the member's KvStore. Invariant kept here: a message that depends on
// unsynced state (Ready::messages_after_persist) leaves only once the member's SimDisk synced
// (the persistence rules of DESIGN.md); log matching is checked on every entry persisted.
#include "kvc/sim/sim_internal.h"

namespace kvc::sim::raft_cluster {

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
  // Each network fault is numbered (sim_minimize.h). A suppressed drop delivers the message
  // after a fixed delay, drawing nothing more (as a drop draws nothing more).
  if (drop_one_in_ && !healed_ && chance(drop_one_in_) && !protect) {
    if (take_fault("drop", [&] { return raft::describe(msg); })) {
      trace("drop " + raft::describe(msg));
      return;
    }
    net_.push({now_ + 5, msg_seq_++, std::move(msg), now_});
    return;
  }
  std::uint64_t delay = 1 + rng_.uniform(8);
  if (!healed_ && opt_.faults != FaultMix::kNone && chance(10)) {
    const std::uint64_t extra = 10 + rng_.uniform(30);
    if (take_fault("delay",
                   [&] { return "+" + std::to_string(extra) + " steps " + raft::describe(msg); }))
      delay += extra;
  }
  if (dup_one_in_ && !healed_ && chance(dup_one_in_)) {
    const std::uint64_t later = delay + rng_.uniform(20);
    if (take_fault("duplicate", [&] { return raft::describe(msg); })) {
      net_.push({now_ + later, msg_seq_++, msg, now_});
    }
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

// Long (about 85 lines): the first half of the server's Ready loop in one place (checks on the
// entries, the writes issued to the SimDisk, messages that need nothing durable), so it reads
// against the server's replica.cc.
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
  if (crashes_ && chance(slow_disk_one_in_)) {
    const std::uint64_t slow = 10 + rng_.uniform(40);
    const bool on = take_fault("slow-sync", [&] {
      return "member " + std::to_string(m.id) + " fsync takes " + std::to_string(slow) + " steps";
    });
    m.sync_at = now_ + (on ? slow : slow % 6);  // suppressed: a quick one, nothing more drawn
  } else {
    m.sync_at = now_ + rng_.uniform(6);
  }
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
    // A leader's appends of entries proposed during its own write go out now, as the server's
    // do (raft/node.h, take_messages).
    if (m.outstanding) {
      for (Message& msg : m.node->take_messages()) send_message(m, msg);
    }
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

}  // namespace kvc::sim::raft_cluster
