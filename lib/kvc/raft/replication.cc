// raft::Node, log replication: the follower side (appends, heartbeats, snapshots received)
// and the leader side (progress per peer, probing, pipelining, commitment, snapshots sent).
// Part of node.cc's class; see node.h for the invariants.
#include <algorithm>
#include <sstream>

#include "kvc/common/check.h"
#include "kvc/common/coding.h"
#include "kvc/common/text.h"
#include "kvc/raft/mutation.h"
#include "kvc/raft/node.h"
#include "kvc/raft/node_internal.h"

namespace kvc::raft {

// ---------------------------------------------------------------------------------------------
// Follower side of replication.

void Node::handle_append(const Message& m) {
  if (m.repair_to != 0) note_repair_to(m.repair_to);
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  if (m.index < commit_) {
    // Everything up to our commit index matches already (Log Matching).
    r.index = commit_;
    matched_leader_to_ = std::max(matched_leader_to_, commit_);
    maybe_finish_log_repair();
    send(std::move(r));
    return;
  }
  bool matches = log_.match_term(m.index, m.log_term);
  if (mutation_enabled(Mutation::kNoLogMatchingCheck) && m.index <= log_.last_index()) {
    matches = true;  // MUTATION: skip the consistency check of §5.3
  }
  if (matches) {
    const std::uint64_t last_new = m.index + m.entries.size();
    const std::uint64_t conflict = log_.find_conflict(m.entries);
    if (conflict != 0 && conflict <= commit_) {
      // Only a broken leader asks us to overwrite a committed entry: refuse, never obey.
      logf(LogLevel::kError, "append would overwrite committed entry index=" +
                                 std::to_string(conflict) + " from=" + kvc::id_hex(m.from));
      return;
    }
    if (conflict != 0) {
      const std::uint64_t skip = conflict - m.entries.front().index;
      append_from_leader(std::span<const Entry>(m.entries).subspan(skip));
    }
    commit_to(std::min(m.commit, last_new));
    // Log Matching: our log now equals the leader's up to last_new.
    matched_leader_to_ = std::max(matched_leader_to_, last_new);
    maybe_finish_log_repair();
    r.index = last_new;
    send(std::move(r));
    return;
  }
  // Fast back-off (thesis §5.3 / etcd): hint the largest index whose term is <= the leader's
  // term at the probe point, so the leader skips a whole term per round trip.
  const auto [hint_index, hint_term] =
      log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
  r.reject = true;
  r.index = m.index;
  r.reject_hint = hint_index;
  r.log_term = hint_term;
  send(std::move(r));
}

void Node::handle_heartbeat(const Message& m) {
  if (m.repair_to != 0) note_repair_to(m.repair_to);
  // A heartbeat's commit is min(match, commit) for what the leader believes we acknowledged.
  // After a restart on an older copy of our data (REPAIR), that may be what an earlier
  // incarnation acknowledged, and our entry at that index may differ: commit only what an
  // append of this leader has shown to match (with boot ids off, restarts are trusted).
  std::uint64_t limit = log_.last_index();
  if (cfg_.boot_id != 0) limit = std::min(limit, matched_leader_to_);
  commit_to(std::min(m.commit, limit));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  r.index = log_.last_index();
  send(std::move(r));
}

bool Node::receiving_same(const Message& m) const {
  return receiving_ && receiving_->meta == m.snapshot && receiving_->size == m.snapshot_size;
}

Node::ChunkFate Node::chunk_fate(const Message& m, bool repair) const {
  if (repair && snapshot_received_) return ChunkFate::kRepairPending;
  if (m.snapshot.index <= commit_ && !repair) return ChunkFate::kHaveIt;
  const bool same = receiving_same(m);
  if (same && m.snapshot_offset < receiving_->next_offset) return ChunkFate::kDuplicate;
  const bool next = same && m.snapshot_offset == receiving_->next_offset;
  if (!next && m.snapshot_offset != 0) return ChunkFate::kOutOfPlace;
  if (m.chunk.size() != m.chunk_length || m.snapshot_offset + m.chunk_length > m.snapshot_size) {
    return ChunkFate::kBadLength;
  }
  return next ? ChunkFate::kNext : ChunkFate::kFirst;
}

// Long (about 90 lines) on purpose: a snapshot chunk's fate (chunk_fate: term, offset, size,
// repair state) and the install decision read in order, as one rule; split further, the order
// that makes it safe would be spread over helpers.
void Node::handle_snapshot(const Message& m) {
  Message r;
  r.type = MessageType::kSnapshotResp;
  r.to = m.from;
  r.snapshot = m.snapshot;
  // A damaged state machine takes a snapshot at or above its applied index even when the log
  // already holds that index (REPAIR).
  const bool repair = repair_.needs_snapshot && m.snapshot.index >= repair_.snapshot_from;
  switch (chunk_fate(m, repair)) {
    case ChunkFate::kRepairPending:
      // A repair snapshot already awaits its install by the caller: a new incoming file
      // (offset 0 starts one) would replace the file being installed. The same snapshot is
      // done (acknowledged after persist, like the first); another one is dropped (the leader
      // resends it, and then it is not needed any more).
      if (m.snapshot.index == install_pending_index_) {
        receiving_.reset();
        r.snapshot_offset = m.snapshot_size;
        r.snapshot_done = true;
        send(std::move(r));
      }
      return;
    case ChunkFate::kHaveIt: {
      // We have all of it already: tell the leader where our log stands.
      receiving_.reset();
      Message a;
      a.type = MessageType::kAppendResp;
      a.to = m.from;
      a.index = commit_;
      send(std::move(a));
      return;
    }
    case ChunkFate::kDuplicate:
      // A duplicate of a chunk we have: acknowledge again what we have.
      r.snapshot_offset = receiving_->next_offset;
      send(std::move(r));
      return;
    case ChunkFate::kOutOfPlace:
      r.reject = true;
      r.snapshot_offset = receiving_same(m) ? receiving_->next_offset : 0;
      send(std::move(r));
      return;
    case ChunkFate::kBadLength:
      logf(LogLevel::kWarn, "snapshot chunk with a bad length from=" + kvc::id_hex(m.from));
      receiving_.reset();
      r.reject = true;
      r.snapshot_offset = 0;
      send(std::move(r));
      return;
    case ChunkFate::kFirst:
      receiving_ = Receiving{m.snapshot, m.snapshot_size, 0};
      break;
    case ChunkFate::kNext:
      break;
  }
  if (m.snapshot_damaged && m.snapshot_offset + m.chunk_length == m.snapshot_size) {
    // The caller checked the whole file this chunk completes (completes_snapshot) and it is
    // damaged: none of it is installed; the leader makes a new snapshot and starts again.
    logf(LogLevel::kWarn, "refusing a damaged snapshot from=" + kvc::id_hex(m.from) +
                              " index=" + std::to_string(m.snapshot.index) +
                              " size=" + std::to_string(m.snapshot_size));
    receiving_.reset();
    r.reject = true;
    r.snapshot_offset = 0;
    r.snapshot_damaged = true;
    send(std::move(r));
    return;
  }
  chunks_.push_back({m.snapshot, m.snapshot_size, m.snapshot_offset, m.chunk});
  receiving_->next_offset += m.chunk_length;
  r.snapshot_offset = receiving_->next_offset;
  if (receiving_->next_offset == receiving_->size) {
    receiving_.reset();
    r.snapshot_done = true;
    if (repair && log_.match_term(m.snapshot.index, m.snapshot.term)) {
      // Replace the state machine only: the log after the snapshot stays, and the committed
      // entries after it are applied again on top of the new state.
      logf(LogLevel::kInfo, "installing snapshot to repair the state index=" +
                                std::to_string(m.snapshot.index) + " id=" + kvc::id_hex(id_));
      commit_to(m.snapshot.index);
      // The caller's state machine restarts from the snapshot, so every committed entry after
      // it is handed out again, including any handed out before that the damaged state
      // machine could not apply (it applied nothing past repair_.snapshot_from <= here).
      applying_ = std::max(applied_, m.snapshot.index);
      // Entries up to the snapshot that are not yet handed out for persisting never will be:
      // the installed snapshot covers them, and a stored log may not hold an entry at or below
      // its snapshot (the entries after it stay).
      persist_from_ = std::max(persist_from_, m.snapshot.index + 1);
      pending_install_ = m.snapshot;
      install_pending_index_ = m.snapshot.index;
      install_size_ = m.snapshot_size;
      snapshot_received_ = true;
    } else if (repair) {
      restore_snapshot(m.snapshot);
      install_size_ = m.snapshot_size;
      snapshot_received_ = true;
    } else if (log_.match_term(m.snapshot.index, m.snapshot.term)) {
      // Our log already holds the snapshot's last entry: just move commit (etcd's rule).
      commit_to(m.snapshot.index);
    } else {
      restore_snapshot(m.snapshot);
      install_size_ = m.snapshot_size;
    }
  }
  send(std::move(r));
}

void Node::restore_snapshot(const SnapshotMeta& meta) {
  logf(LogLevel::kInfo, "installing snapshot index=" + std::to_string(meta.index) +
                            " term=" + std::to_string(meta.term) + " id=" + kvc::id_hex(id_));
  log_.restore(meta.index, meta.term);
  commit_ = meta.index;
  applying_ = std::max(applying_, meta.index);
  durable_ = std::min(durable_, meta.index);
  persist_from_ = meta.index + 1;
  snap_conf_ = meta.conf;
  conf_history_.clear();
  set_conf(meta.conf);
  pending_install_ = meta;
  install_pending_index_ = meta.index;
}

void Node::append_from_leader(std::span<const Entry> ents) {
  if (ents.empty()) return;
  const std::uint64_t from = ents.front().index;
  if (from <= log_.last_index()) note_truncated_from(from);
  log_.truncate_and_append(ents);
  for (const Entry& e : ents) note_appended(e);
}

void Node::note_truncated_from(std::uint64_t index) {
  persist_from_ = std::min(persist_from_, index);
  durable_ = std::min(durable_, index - 1);
  bool changed = false;
  while (!conf_history_.empty() && conf_history_.back().first >= index) {
    conf_history_.pop_back();
    changed = true;
  }
  if (changed) set_conf(conf_history_.empty() ? snap_conf_ : conf_history_.back().second);
}

void Node::note_appended(const Entry& e) {
  if (e.type != EntryType::kConfChange) return;
  Result<ConfChange> cc = decode_conf_change(e.data);
  if (!cc.ok()) {
    logf(LogLevel::kError, "ignoring undecodable conf change index=" + std::to_string(e.index) +
                               " error=" + cc.status().to_string());
    return;
  }
  Result<ConfState> next = apply_conf_change(conf_, *cc);
  if (!next.ok()) {
    // Every member ignores the same entry the same way: the function is pure.
    logf(LogLevel::kWarn, "ignoring conf change index=" + std::to_string(e.index) +
                              " error=" + next.status().to_string());
    return;
  }
  conf_history_.emplace_back(e.index, *next);
  set_conf(*next);
}

void Node::set_conf(const ConfState& conf) {
  if (conf == conf_) return;
  conf_ = conf;
  logf(LogLevel::kInfo, "membership changed id=" + kvc::id_hex(id_) +
                            " voters=" + std::to_string(conf_.voters.size()) +
                            " learners=" + std::to_string(conf_.learners.size()));
  if (role_ == Role::kLeader) sync_progress_with_conf();
  if (lead_transferee_ != kNoNode && !is_voter(conf_, lead_transferee_)) lead_transferee_ = kNoNode;
}

void Node::sync_progress_with_conf() {
  for (auto it = prs_.begin(); it != prs_.end();) {
    if (!is_voter(conf_, it->first) && !is_learner(conf_, it->first)) {
      it = prs_.erase(it);
    } else {
      ++it;
    }
  }
  auto add = [&](NodeId id) {
    if (id == id_ || prs_.count(id)) return;
    Progress& pr = prs_[id];
    pr.next = log_.last_index() + 1;
    pr.recent_active = true;
  };
  for (NodeId v : conf_.voters) add(v);
  for (NodeId l : conf_.learners) add(l);
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication.

bool Node::paused(const Progress& pr) const {
  switch (pr.state) {
    case ProgressState::kProbe:
      return pr.probe_sent;
    case ProgressState::kReplicate:
      return static_cast<int>(pr.inflights.size()) >= cfg_.max_inflight_msgs ||
             pr.inflight_bytes >= cfg_.max_inflight_bytes;
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void Node::become_probe(Progress& pr) {
  pr.state = ProgressState::kProbe;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap_inflight = false;
}

void Node::become_replicate(Progress& pr) {
  pr.state = ProgressState::kReplicate;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
}

bool Node::send_append(NodeId to, bool send_if_empty) {
  Progress& pr = prs_.at(to);
  if (paused(pr)) return false;
  const std::uint64_t prev = pr.next - 1;
  const std::optional<std::uint64_t> prev_term = log_.term(prev);
  if (pr.snapshot_from != 0) {
    // Its state machine is damaged (REPAIR): only a snapshot at or above what it applied
    // helps; make one when ours is older.
    if (!local_snapshot_ || local_snapshot_->index < pr.snapshot_from ||
        local_snapshot_->index < log_.snapshot_index()) {
      snapshot_wanted_ = true;
      return false;
    }
    start_snapshot(to, pr);
    return true;
  }
  if (!prev_term) {
    // The entries it needs were compacted away: send a snapshot instead. Only one that reaches
    // the compaction point helps: after an older one the member would need compacted entries
    // again (and a member that already has it would be offered it forever).
    if (!local_snapshot_ || local_snapshot_->index < log_.snapshot_index()) {
      snapshot_wanted_ = true;
      return false;
    }
    start_snapshot(to, pr);
    return true;
  }
  std::vector<Entry> ents;
  if (pr.next <= log_.last_index()) {
    std::uint64_t budget = cfg_.max_msg_bytes;
    if (pr.state == ProgressState::kReplicate) {
      budget = std::min(budget, cfg_.max_inflight_bytes - pr.inflight_bytes);
    }
    ents = log_.slice(pr.next, log_.last_index(), budget);
  }
  if (ents.empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  m.repair_to = pr.repair_to;
  std::uint64_t bytes = 0;
  for (const Entry& e : ents) bytes += RaftLog::entry_bytes(e);
  const std::uint64_t last = prev + ents.size();
  m.entries = std::move(ents);
  if (pr.state == ProgressState::kReplicate) {
    if (last > prev) {
      pr.next = last + 1;
      pr.inflights.push_back({last, bytes});
      pr.inflight_bytes += bytes;
    }
  } else {
    pr.probe_sent = true;
  }
  send(std::move(m));
  return true;
}

void Node::start_snapshot(NodeId to, Progress& pr) {
  pr.state = ProgressState::kSnapshot;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap = *local_snapshot_;
  pr.snap_size = local_snapshot_size_;
  pr.snap_offset = 0;
  pr.snap_inflight = false;
  logf(LogLevel::kInfo, "sending snapshot to=" + kvc::id_hex(to) +
                            " index=" + std::to_string(pr.snap.index) +
                            " size=" + std::to_string(pr.snap_size) +
                            (pr.snapshot_from != 0 ? " reason=repair" : ""));
  send_snapshot_chunk(to, pr);
}

void Node::send_snapshot_chunk(NodeId to, Progress& pr) {
  if (pr.snap_inflight) return;
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = pr.snap;
  m.snapshot_size = pr.snap_size;
  m.snapshot_offset = pr.snap_offset;
  m.chunk_length = std::min(cfg_.snapshot_chunk_bytes, pr.snap_size - pr.snap_offset);
  m.snapshot_done = pr.snap_offset + m.chunk_length == pr.snap_size;
  pr.snap_inflight = true;
  pr.snap_elapsed = 0;
  send(std::move(m));
}

void Node::bcast_append() {
  for (auto& [pid, pr] : prs_) {
    // Fill the pipeline: several appends in flight, each a batch of up to max_msg_bytes.
    bool first = true;
    for (int i = 0; i <= cfg_.max_inflight_msgs; ++i) {
      if (!send_append(pid, first)) break;
      first = false;
      if (pr.state != ProgressState::kReplicate) break;
    }
  }
}

void Node::bcast_heartbeat(const std::string& context) {
  for (const auto& [pid, pr] : prs_) {
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = pid;
    m.commit = std::min(pr.match, commit_);
    m.context = context;
    m.repair_to = pr.repair_to;
    send(std::move(m));
  }
}

bool Node::committed_in_term() const { return log_.term(commit_).value_or(0) == term_; }

bool Node::maybe_commit() {
  if (role_ != Role::kLeader) return false;
  std::vector<std::uint64_t> matches;
  for (NodeId v : conf_.voters) {
    if (v == id_) {
      // The leader counts itself only for what is durable on its own disk.
      matches.push_back(mutation_enabled(Mutation::kLeaderCountsUndurable) ? log_.last_index()
                                                                           : durable_);
    } else {
      auto it = prs_.find(v);
      matches.push_back(it == prs_.end() || !counts(it->second) ? 0 : it->second.match);
    }
  }
  if (matches.empty()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const std::uint64_t idx = matches[static_cast<std::size_t>(quorum() - 1)];
  if (idx <= commit_) return false;
  // §5.4.2: only entries of the current term are committed by counting replicas.
  const bool current_term = log_.term(idx).value_or(0) == term_;
  if (!current_term && !mutation_enabled(Mutation::kCommitOldTerm)) return false;
  commit_to(idx);
  return true;
}

void Node::commit_to(std::uint64_t index) {
  if (index <= commit_) return;
  KVC_CHECK_LE(index, log_.last_index());
  const std::uint64_t old = commit_;
  commit_ = index;
  on_commit_advanced(old);
}

void Node::on_commit_advanced(std::uint64_t old_commit) {
  if (role_ != Role::kLeader) return;
  for (std::uint64_t i = old_commit + 1; i <= commit_; ++i) {
    const std::uint64_t b = log_.at(i).data.size();
    uncommitted_bytes_ = uncommitted_bytes_ > b ? uncommitted_bytes_ - b : 0;
  }
  if (!committed_in_term()) return;
  // The no-op is committed: reads that waited for it may start.
  if (!reads_before_noop_.empty()) {
    auto pending = std::move(reads_before_noop_);
    reads_before_noop_.clear();
    for (auto& [from, ctx] : pending) handle_read_request(from, std::move(ctx));
  }
  if (!is_voter(conf_, id_)) {
    // The configuration that removed us is committed (thesis §4.2.2): step down cleanly.
    if (conf_history_.empty() || conf_history_.back().first <= commit_) {
      logf(LogLevel::kInfo, "removed from the configuration, stepping down id=" + kvc::id_hex(id_));
      bcast_append();  // tell the others the new commit index before leaving
      become_follower(term_, kNoNode);
    }
  }
}

void Node::handle_append_resp(const Message& m, Progress& pr) {
  if (pr.verify_to != 0) {
    if (m.reject && m.index == pr.verify_to) {
      // The probe of the last entry its earlier incarnation acknowledged failed: it lost it.
      found_lost_entries(m.from, pr, std::min(m.reject_hint, m.index));
    } else if (!m.reject && m.index >= pr.verify_to) {
      pr.verify_to = 0;  // a clean restart: it still has everything it acknowledged
    }
  }
  if (m.reject) {
    // Fast back-off: the follower's hint (largest index with term <= ours at the probe point),
    // refined by our own log.
    std::uint64_t probe = m.reject_hint;
    if (m.log_term > 0) probe = log_.find_conflict_by_term(m.reject_hint, m.log_term).first;
    if (pr.state == ProgressState::kReplicate) {
      if (m.index <= pr.match) return;  // stale
      become_probe(pr);
      pr.next = std::max(pr.match + 1, std::min(probe + 1, m.index));
    } else if (pr.state == ProgressState::kProbe) {
      if (m.index != pr.next - 1) return;  // stale
      pr.next = std::max(pr.match + 1, std::min(probe + 1, m.index));
      pr.probe_sent = false;
    } else {
      return;
    }
    send_append(m.from, true);
    return;
  }
  const NodeId from = m.from;
  if (m.index > pr.match) {
    pr.match = m.index;
    pr.stall_ticks = 0;
  }
  if (pr.repair_to != 0 && pr.match >= pr.repair_to) {
    logf(LogLevel::kInfo, "member repaired: it has every entry it had acknowledged again peer=" +
                              kvc::id_hex(from) + " index=" + std::to_string(pr.repair_to));
    pr.repair_to = 0;
  }
  pr.next = std::max(pr.next, pr.match + 1);
  switch (pr.state) {
    case ProgressState::kProbe:
      become_replicate(pr);
      break;
    case ProgressState::kSnapshot:
      if (pr.match + 1 >= log_.first_index()) {
        become_replicate(pr);
      } else if (pr.match >= pr.snap.index) {
        // It has the snapshot being sent (its acknowledgement was lost) but we compacted past
        // it since: probing again makes send_append ask for a newer snapshot, where staying
        // would resend this one forever (NodeTest.SnapshotWhoseAcknowledgementWasLost...).
        become_probe(pr);
      }
      break;
    case ProgressState::kReplicate:
      while (!pr.inflights.empty() && pr.inflights.front().last_index <= m.index) {
        pr.inflight_bytes -= pr.inflights.front().bytes;
        pr.inflights.pop_front();
      }
      break;
  }
  if (maybe_commit()) {
    if (role_ != Role::kLeader) return;
    bcast_append();
  } else if (prs_.count(from)) {
    for (int i = 0; i <= cfg_.max_inflight_msgs && send_append(from, false); ++i) {
    }
  }
  if (role_ == Role::kLeader && from == lead_transferee_ && prs_.count(from) &&
      prs_.at(from).match == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = from;
    send(std::move(t));
  }
}

void Node::handle_heartbeat_resp(const Message& m, Progress& pr) {
  pr.probe_sent = false;
  if (pr.state == ProgressState::kReplicate && !pr.inflights.empty() &&
      pr.stall_ticks >= cfg_.election_ticks) {
    // Appends or their acknowledgements were lost (nothing moved for a whole election period
    // while the pipeline was busy): fall back to probing from what it acknowledged.
    become_probe(pr);
    pr.stall_ticks = 0;
  }
  if (pr.verify_to != 0 && log_.term(pr.verify_to) == std::nullopt) {
    // The entry to probe was compacted here: judge by the length of its log instead.
    if (m.index < pr.verify_to) {
      found_lost_entries(m.from, pr, m.index);
    } else {
      pr.verify_to = 0;
    }
  }
  if (pr.state == ProgressState::kProbe && pr.verify_to == 0 && m.index + 1 < pr.next) {
    // Its log ends before where we would probe: start there (an idle new member would
    // otherwise wait for the next write to learn anything).
    pr.next = std::max(pr.match + 1, m.index + 1);
  }
  // In probe state an empty append is the probe: without it, a member that joined an idle
  // cluster would get nothing until the next write.
  if (pr.match < log_.last_index()) send_append(m.from, pr.state == ProgressState::kProbe);
  if (!m.context.empty()) {
    const std::optional<std::uint64_t> seq = decode_seq(m.context);
    if (!seq || read_queue_.empty() || !is_voter(conf_, m.from)) return;
    if (!counts(pr)) return;  // a member being repaired does not confirm leadership
    // An ack for a round acknowledges every read queued before it.
    for (auto& req : read_queue_) {
      if (req.seq > *seq) break;
      req.acks[m.from] = true;
    }
    while (!read_queue_.empty() && static_cast<int>(read_queue_.front().acks.size()) >= quorum()) {
      ReadRequest req = std::move(read_queue_.front());
      read_queue_.pop_front();
      answer_read(req.from, req.context, req.index);
    }
  }
}

bool Node::completes_snapshot(const Message& m) const {
  // From the leader of our term, or of a newer one (stepping it makes us its follower).
  const bool from_leader = m.term > term_ || (m.term == term_ && role_ != Role::kLeader &&
                                              (leader_ == m.from || leader_ == kNoNode));
  if (m.type != MessageType::kSnapshot || !from_leader || m.snapshot_offset > m.snapshot_size ||
      m.snapshot_offset + m.chunk_length != m.snapshot_size) {
    return false;
  }
  // Taken by handle_snapshot's rules (the first or next chunk), and the last.
  const bool repair = repair_.needs_snapshot && m.snapshot.index >= repair_.snapshot_from;
  const ChunkFate fate = chunk_fate(m, repair);
  return fate == ChunkFate::kFirst || fate == ChunkFate::kNext;
}

void Node::handle_snapshot_resp(const Message& m, Progress& pr) {
  if (pr.state != ProgressState::kSnapshot || !(m.snapshot == pr.snap)) return;
  if (m.reject && m.snapshot_damaged) {
    // The follower received this snapshot whole and it failed its checks (damaged in transit,
    // or our file is): not this file again. The caller makes a new snapshot (one at the same
    // index replaces this file if the file is the damaged one) and offers it with
    // snapshot_available(); the transfer starts again with that one.
    logf(LogLevel::kWarn, "snapshot refused as damaged by=" + kvc::id_hex(m.from) +
                              " index=" + std::to_string(pr.snap.index) + "; asking for a new one");
    if (local_snapshot_ && *local_snapshot_ == pr.snap) local_snapshot_.reset();
    become_probe(pr);
    send_append(m.from, true);
    return;
  }
  if (m.snapshot_done && !m.reject) {
    logf(LogLevel::kInfo,
         "snapshot sent to=" + kvc::id_hex(m.from) + " index=" + std::to_string(pr.snap.index));
    pr.snapshot_from = 0;  // served; a later request asks again
    pr.match = std::max(pr.match, pr.snap.index);
    become_probe(pr);
    send_append(m.from, true);
    return;
  }
  if (!m.reject && m.snapshot_offset <= pr.snap_offset) return;  // stale ack
  pr.snap_offset = std::min(m.snapshot_offset, pr.snap_size);
  pr.snap_inflight = false;
  send_snapshot_chunk(m.from, pr);
}

}  // namespace kvc::raft
