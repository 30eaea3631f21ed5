// raft::Node, protocol-aware repair (REPAIR in node.h): incarnations, members that lost
// entries they had acknowledged, damaged members, and the read index. Part of node.cc's class.
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
// Repair (REPAIR in node.h).

bool Node::note_incarnation(const Message& m, Progress& pr) {
  pr.repairing = m.repairing;
  if (m.type == MessageType::kAppendResp || m.type == MessageType::kHeartbeatResp ||
      m.type == MessageType::kSnapshotResp) {
    pr.snapshot_from = m.snapshot_from;
  }
  if (m.boot_id == 0 || m.boot_id == pr.boot_id || mutation_enabled(Mutation::kRepairIgnored)) {
    return true;
  }
  if (std::find(pr.retired_boot_ids.begin(), pr.retired_boot_ids.end(), m.boot_id) !=
      pr.retired_boot_ids.end()) {
    return false;  // a late message from an earlier incarnation: what it says is gone
  }
  const std::uint64_t previous = pr.boot_id;
  pr.boot_id = m.boot_id;
  if (previous == 0) return true;  // the first we hear of it in this term
  pr.retired_boot_ids.push_back(previous);
  if (pr.retired_boot_ids.size() > 8) pr.retired_boot_ids.erase(pr.retired_boot_ids.begin());
  // It restarted: what the earlier incarnation acknowledged may be gone (an older copy of its
  // data, a lost disk cache). Count nothing it said before, and probe the last entry it had
  // acknowledged to learn whether it still has it.
  const std::uint64_t acked = std::max(pr.match, pr.verify_to);
  logf(LogLevel::kInfo,
       "member restarted peer=" + kvc::id_hex(m.from) + " acknowledged=" + std::to_string(acked));
  pr.match = 0;
  pr.state = ProgressState::kProbe;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap_inflight = false;
  if (acked > 0) {
    pr.verify_to = acked;
    pr.next = acked + 1;
  }
  return true;
}

void Node::found_lost_entries(NodeId peer, Progress& pr, std::uint64_t has_to) {
  ++lost_entries_detected_;
  pr.repair_to = std::max(pr.repair_to, pr.verify_to);
  logf(LogLevel::kWarn, "member lost entries it had acknowledged peer=" + kvc::id_hex(peer) +
                            " acknowledged=" + std::to_string(pr.verify_to) +
                            " has=" + std::to_string(has_to) +
                            "; it may not vote until it is repaired, repairing it");
  pr.verify_to = 0;
}

bool Node::counts(const Progress& pr) const {
  return !pr.repairing || mutation_enabled(Mutation::kRepairIgnored);
}

void Node::note_repair_to(std::uint64_t index) {
  if (index <= repair_.log_to) return;
  if (durable_ >= index && matched_leader_to_ >= index) return;  // already repaired
  repair_.log_to = index;
  logf(LogLevel::kWarn, "the leader says this member lost entries it had acknowledged index=" +
                            std::to_string(index) + " id=" + kvc::id_hex(id_) +
                            "; it will not vote until its log is repaired");
}

void Node::maybe_finish_log_repair() {
  if (repair_.log_to == 0) return;
  if (std::min(durable_, matched_leader_to_) < repair_.log_to) return;
  logf(LogLevel::kInfo, "log repaired: it matches the leader's again index=" +
                            std::to_string(repair_.log_to) + " id=" + kvc::id_hex(id_));
  repair_.log_to = 0;
}

void Node::mark_damaged(std::uint64_t applied) {
  const std::uint64_t from = std::max(applied, applied_);
  if (repair_.needs_snapshot && repair_.snapshot_from >= from && !snapshot_received_) return;
  repair_.needs_snapshot = true;
  repair_.snapshot_from = std::max(repair_.snapshot_from, from);
  snapshot_received_ = false;
  logf(LogLevel::kWarn, "state machine damaged: asking the leader for a snapshot from=" +
                            std::to_string(repair_.snapshot_from) + " id=" + kvc::id_hex(id_));
  if (role_ != Role::kLeader) return;
  // A damaged leader hands over first: the new leader repairs it.
  if (!hand_over_damaged_leadership()) {
    logf(LogLevel::kError,
         "state machine damaged on the leader and no other voter can take over yet id=" +
             kvc::id_hex(id_) + "; retrying at every heartbeat");
  }
}

bool Node::hand_over_damaged_leadership() {
  NodeId best = kNoNode;
  std::uint64_t best_match = 0;
  for (const auto& [pid, pr] : prs_) {
    if (!is_voter(conf_, pid) || !pr.recent_active || pr.repairing) continue;
    if (best == kNoNode || pr.match > best_match) {
      best = pid;
      best_match = pr.match;
    }
  }
  if (best == kNoNode) return false;
  if (Status s = transfer_leadership(best); !s.ok()) {
    logf(LogLevel::kError, "cannot hand over leadership: " + s.to_string());
    return false;
  }
  return true;
}

void Node::handle_read_request(NodeId from, std::string context) {
  if (!committed_in_term() && !mutation_enabled(Mutation::kReadIndexWithoutNoop)) {
    // Thesis §6.4: until its no-op commits, a new leader's commit index may be behind.
    reads_before_noop_.emplace_back(from, std::move(context));
    return;
  }
  if (quorum() <= 1 && is_voter(conf_, id_)) {
    answer_read(from, context, commit_);
    return;
  }
  ReadRequest req;
  req.seq = ++read_seq_;
  req.from = from;
  req.context = std::move(context);
  req.index = commit_;
  if (is_voter(conf_, id_)) req.acks[id_] = true;
  read_queue_.push_back(std::move(req));
  bcast_heartbeat(encode_seq(read_seq_));
}

void Node::answer_read(NodeId from, const std::string& context, std::uint64_t index) {
  if (from == id_) {
    read_states_.push_back({context, index});
    return;
  }
  Message r;
  r.type = MessageType::kReadIndexResp;
  r.to = from;
  r.index = index;
  r.context = context;
  send(std::move(r));
}

}  // namespace kvc::raft
