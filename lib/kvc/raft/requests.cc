// raft::Node, the caller's requests: proposals, membership changes, leadership transfer,
// snapshot and compaction reports. Part of node.cc's class; see node.h for the invariants.
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
// Caller requests.

void Node::append_local(std::vector<Entry> ents) {
  for (Entry& e : ents) {
    uncommitted_bytes_ += e.data.size();
    log_.append(e);
    note_appended(log_.at(log_.last_index()));
  }
}

Result<std::uint64_t> Node::propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Status::not_leader("not leader; leader=" + kvc::id_hex(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("leadership transfer to " + kvc::id_hex(lead_transferee_) +
                               " in progress");
  }
  if (cfg_.max_uncommitted_bytes > 0 && uncommitted_bytes_ > 0 &&
      uncommitted_bytes_ + data.size() > cfg_.max_uncommitted_bytes) {
    return Status::resource_exhausted(
        "too much uncommitted data: " + std::to_string(uncommitted_bytes_) + " bytes");
  }
  Entry e;
  e.index = log_.last_index() + 1;
  e.term = term_;
  e.data = std::move(data);
  append_local({std::move(e)});
  // Batching: proposals made before the next ready() leave together, one append per follower.
  bcast_pending_ = true;
  maybe_commit();
  return log_.last_index();
}

Result<std::uint64_t> Node::propose_conf_change(const ConfChange& cc) {
  if (role_ != Role::kLeader) {
    return Status::not_leader("not leader; leader=" + kvc::id_hex(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("leadership transfer in progress");
  }
  if (!committed_in_term()) {
    // Ongaro's fix to single-server changes: commit an entry of our term first.
    return Status::unavailable("leader has not committed an entry of its term yet");
  }
  if (!conf_history_.empty() && conf_history_.back().first > commit_) {
    return Status::failed_precondition("a membership change is already in progress");
  }
  Result<ConfState> next = apply_conf_change(conf_, cc);
  if (!next.ok()) return next.status();
  if (cc.type == ConfChangeType::kPromoteLearner) {
    auto it = prs_.find(cc.node);
    if (it == prs_.end() || it->second.match + cfg_.promote_lag_slack < commit_) {
      return Status::failed_precondition("learner " + kvc::id_hex(cc.node) + " has not caught up");
    }
  }
  Entry e;
  e.index = log_.last_index() + 1;
  e.term = term_;
  e.type = EntryType::kConfChange;
  e.data = encode_conf_change(cc);
  append_local({std::move(e)});
  logf(LogLevel::kInfo, "proposed conf change type=" + std::string(conf_change_type_name(cc.type)) +
                            " node=" + kvc::id_hex(cc.node) +
                            " index=" + std::to_string(log_.last_index()));
  bcast_append();
  maybe_commit();
  return log_.last_index();
}

Status Node::read_index(std::string context) {
  if (role_ == Role::kLeader) {
    handle_read_request(id_, std::move(context));
    return ok_status();
  }
  if (leader_ == kNoNode) return Status::unavailable("no leader known");
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.context = std::move(context);
  send(std::move(m));
  return ok_status();
}

Status Node::transfer_leadership(NodeId target) {
  if (role_ != Role::kLeader) {
    if (leader_ == kNoNode) return Status::unavailable("no leader known");
    Message m;
    m.type = MessageType::kTransferLeader;
    m.to = leader_;
    m.index = target;
    send(std::move(m));
    return ok_status();
  }
  if (target == id_) return ok_status();
  if (!is_voter(conf_, target)) {
    return Status::invalid_argument("transfer target " + kvc::id_hex(target) + " is not a voter");
  }
  if (auto t = prs_.find(target); t != prs_.end() && t->second.repairing) {
    return Status::failed_precondition("transfer target " + kvc::id_hex(target) +
                                       " is being repaired and may not lead");
  }
  if (lead_transferee_ == target) return ok_status();
  lead_transferee_ = target;
  election_elapsed_ = 0;  // the transfer is aborted after one election timeout
  logf(LogLevel::kInfo, "leadership transfer started target=" + kvc::id_hex(target) +
                            " term=" + std::to_string(term_));
  Progress& pr = prs_.at(target);
  if (pr.match == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = target;
    send(std::move(t));
  } else {
    send_append(target, true);
  }
  return ok_status();
}

void Node::report_unreachable(NodeId peer) {
  if (role_ != Role::kLeader) return;
  auto it = prs_.find(peer);
  if (it != prs_.end() && it->second.state == ProgressState::kReplicate) become_probe(it->second);
}

void Node::report_snapshot(NodeId peer, bool ok) {
  if (role_ != Role::kLeader || ok) return;
  auto it = prs_.find(peer);
  if (it != prs_.end() && it->second.state == ProgressState::kSnapshot) {
    become_probe(it->second);
    it->second.probe_sent = true;  // wait for the next heartbeat response before retrying
  }
}

void Node::snapshot_available(const SnapshotMeta& meta, std::uint64_t size) {
  // A newer snapshot replaces ours; one at the same index too (a remade file).
  if (local_snapshot_ && local_snapshot_->index > meta.index) return;
  local_snapshot_ = meta;
  local_snapshot_size_ = size;
  snapshot_wanted_ = false;
}

Status Node::compact(std::uint64_t index) {
  if (index <= log_.snapshot_index()) return ok_status();
  if (index > applied_) {
    return Status::invalid_argument("compact: index " + std::to_string(index) +
                                    " is beyond applied " + std::to_string(applied_));
  }
  Result<ConfState> conf = conf_state_at(index);
  KVC_CHECK(conf.ok(), "conf_state_at within the log");
  snap_conf_ = *conf;
  while (!conf_history_.empty() && conf_history_.front().first <= index) {
    conf_history_.erase(conf_history_.begin());
  }
  log_.compact(index);
  return ok_status();
}

void Node::applied_to(std::uint64_t index) {
  KVC_CHECK_LE(index, applying_);
  applied_ = std::max(applied_, index);
}

}  // namespace kvc::raft
