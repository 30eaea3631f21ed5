// raft::Node, inputs: ticks and messages stepped in from peers (checked, then dispatched by
// term and type). Part of node.cc's class; see node.h for the invariants.
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
// Inputs.

void Node::tick() {
  if (role_ == Role::kLeader) {
    ++heartbeat_elapsed_;
    ++election_elapsed_;
    for (auto& [pid, pr] : prs_) {
      if (pr.state == ProgressState::kSnapshot && pr.snap_inflight &&
          ++pr.snap_elapsed >= cfg_.election_ticks) {
        // The chunk or its acknowledgement was lost: send it again.
        pr.snap_inflight = false;
        send_snapshot_chunk(pid, pr);
      }
      if (pr.match < log_.last_index()) {
        ++pr.stall_ticks;
      } else {
        pr.stall_ticks = 0;
      }
    }
    if (election_elapsed_ >= cfg_.election_ticks) {
      election_elapsed_ = 0;
      if (cfg_.check_quorum) {
        // CheckQuorum (thesis §6.2): a leader that has not heard from a quorum steps down.
        int active = is_voter(conf_, id_) ? 1 : 0;
        for (auto& [pid, pr] : prs_) {
          if (pr.recent_active && is_voter(conf_, pid)) ++active;
          pr.recent_active = false;
        }
        if (active < quorum()) {
          logf(LogLevel::kWarn, "check quorum failed, stepping down term=" + std::to_string(term_) +
                                    " active=" + std::to_string(active));
          become_follower(term_, kNoNode);
          return;
        }
      }
      if (lead_transferee_ != kNoNode) {
        logf(LogLevel::kInfo,
             "leadership transfer aborted target=" + kvc::id_hex(lead_transferee_));
        lead_transferee_ = kNoNode;
      }
    }
    if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      // A damaged leader keeps trying to hand over (REPAIR): when the damage was found no voter
      // may have been active yet (the flags restart every election period), or the transfer
      // may have been aborted.
      if (repair_.needs_snapshot && lead_transferee_ == kNoNode) {
        (void)hand_over_damaged_leadership();
      }
      bcast_heartbeat(read_queue_.empty() ? std::string() : encode_seq(read_queue_.back().seq));
    }
    return;
  }
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_timeout_) {
    election_elapsed_ = 0;
    campaign(cfg_.pre_vote, false);
  }
}

Status Node::step(const Message& m) {
  if (m.to != id_) {
    return Status::invalid_argument("raft: message for " + kvc::id_hex(m.to) + " reached " +
                                    kvc::id_hex(id_));
  }
  if (static_cast<int>(m.type) >= kMessageTypeCount) {
    return Status::invalid_argument("raft: unknown message type " +
                                    std::to_string(static_cast<int>(m.type)));
  }
  if (m.from == kNoNode || m.from == id_) {
    return Status::invalid_argument("raft: message with bad sender " + kvc::id_hex(m.from));
  }
  if (Status s = validate(m); !s.ok()) return s;
  const bool vote_req = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  const bool from_leader = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                           m.type == MessageType::kSnapshot;

  if (m.term > term_) {
    if (vote_req) {
      // Thesis §4.2.3: a member that heard from a live leader within the minimum election
      // timeout ignores vote requests, so a removed or rejoining member cannot disrupt it
      // (unless the leader itself asked for the election by transferring leadership).
      const bool force = m.context == kTransferContext;
      const bool in_lease =
          cfg_.check_quorum && leader_ != kNoNode && election_elapsed_ < cfg_.election_ticks;
      if (!force && in_lease) return ok_status();
    }
    if (m.type == MessageType::kPreVote) {
      // Not a reason to change our term.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the term we would campaign in.
    } else {
      become_follower(m.term, from_leader ? m.from : kNoNode);
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (e.g. after a partition): tell it our term so it steps down. Without
      // this, a member whose term rose by campaigning would ignore it forever.
      Message r;
      r.type = MessageType::kAppendResp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.reject = true;
      send(std::move(r));
    }
    return ok_status();
  }

  if (vote_req) {
    handle_vote_request(m);
    return ok_status();
  }
  switch (role_) {
    case Role::kLeader:
      step_leader(m);
      break;
    case Role::kCandidate:
    case Role::kPreCandidate:
      step_candidate(m);
      break;
    case Role::kFollower:
      step_follower(m);
      break;
  }
  return ok_status();
}

Status Node::validate(const Message& m) const {
  // A message is decoded network bytes: anything the algorithm would trust blindly (and so
  // could trip a KVC_CHECK) is checked here and refused with a Status.
  const auto bad = [&](const std::string& why) {
    return Status::invalid_argument("raft: malformed " + std::string(message_type_name(m.type)) +
                                    " from " + kvc::id_hex(m.from) + ": " + why);
  };
  switch (m.type) {
    case MessageType::kAppend: {
      if (m.log_term > m.term) return bad("log_term above term");
      std::uint64_t prev_term = m.log_term;
      for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        if (e.index != m.index + 1 + i) return bad("entries are not contiguous after index");
        if (e.term < prev_term || e.term > m.term) return bad("entry terms out of order");
        if (e.type != EntryType::kNormal && e.type != EntryType::kConfChange) {
          return bad("unknown entry type");
        }
        prev_term = e.term;
      }
      break;
    }
    case MessageType::kAppendResp:
      // In our term as leader, every append we sent had its index within our log (a leader's
      // log never shrinks), so an acknowledgement or a rejection beyond it is not an answer to
      // anything we sent.
      if (m.term == term_ && role_ == Role::kLeader && m.index > log_.last_index()) {
        return bad(std::string(m.reject ? "rejects" : "acknowledges") + " index " +
                   std::to_string(m.index) + " beyond our log");
      }
      break;
    case MessageType::kSnapshot: {
      if (m.snapshot.term > m.term) return bad("snapshot term above term");
      const auto& v = m.snapshot.conf.voters;
      const auto& l = m.snapshot.conf.learners;
      if (!std::is_sorted(v.begin(), v.end()) || !std::is_sorted(l.begin(), l.end()) ||
          std::adjacent_find(v.begin(), v.end()) != v.end() ||
          std::adjacent_find(l.begin(), l.end()) != l.end()) {
        return bad("snapshot membership not sorted and unique");
      }
      for (NodeId id : l) {
        if (std::binary_search(v.begin(), v.end(), id)) return bad("voter is also a learner");
      }
      if (m.chunk.size() != m.chunk_length || m.snapshot_offset > m.snapshot_size ||
          m.chunk_length > m.snapshot_size - m.snapshot_offset) {
        return bad("chunk outside the snapshot");
      }
      break;
    }
    default:
      break;
  }
  return ok_status();
}

void Node::handle_vote_request(const Message& m) {
  // §5.2, §5.4.1. We may vote if we already voted for this candidate, or have not voted and
  // know no leader in this term; a pre-vote for a future term does not bind us.
  // A member that lost log entries votes for nobody: its log or its term may be older than what
  // it promised before (REPAIR in node.h). One whose state machine only is damaged still votes
  // (its log is intact): otherwise a damaged member and a member down could leave a cluster
  // without the leader that would repair it.
  const bool repairing = repair_.log_to != 0 && !mutation_enabled(Mutation::kRepairIgnored);
  const bool can_vote =
      !repairing && (vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) ||
                     (m.type == MessageType::kPreVote && m.term > term_));
  Message r;
  r.type = m.type == MessageType::kVote ? MessageType::kVoteResp : MessageType::kPreVoteResp;
  r.to = m.from;
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    r.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  if (m.type == MessageType::kVote && mutation_enabled(Mutation::kVoteNotPersisted)) {
    r.from = id_;
    msgs_.push_back(std::move(r));  // MUTATION: the vote leaves before it is durable
    return;
  }
  send(std::move(r));
}

void Node::step_candidate(const Message& m) {
  const MessageType resp_type =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from);
      handle_append(m);
      return;
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      handle_heartbeat(m);
      return;
    case MessageType::kSnapshot:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      return;
    default:
      break;
  }
  if (m.type != resp_type) return;
  if (!is_voter(conf_, m.from)) return;
  votes_.emplace(m.from, !m.reject);
  int granted = 0, rejected = 0;
  for (const auto& [id, g] : votes_) (g ? granted : rejected)++;
  if (granted >= quorum()) {
    if (role_ == Role::kPreCandidate) {
      campaign(false, false);
    } else {
      become_leader();
    }
  } else if (rejected >= quorum()) {
    become_follower(term_, kNoNode);
  }
}

void Node::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_append(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Leadership transfer (thesis §3.10): campaign at once, skipping PreVote.
      if (promotable()) {
        logf(LogLevel::kInfo,
             "campaign on timeout_now term=" + std::to_string(term_) + " id=" + kvc::id_hex(id_));
        campaign(false, true);
      }
      break;
    case MessageType::kReadIndexResp:
      if (!m.reject) read_states_.push_back({m.context, m.index});
      break;
    case MessageType::kTransferLeader:
      // Not the leader (any more): pass it on when we know one. A ReadIndex that reaches a
      // non-leader is dropped; its caller times out and retries.
      if (leader_ != kNoNode) {
        Message fwd = m;
        fwd.to = leader_;
        fwd.term = 0;
        send(std::move(fwd));
      }
      break;
    default:
      break;
  }
}

void Node::step_leader(const Message& m) {
  switch (m.type) {
    case MessageType::kReadIndex:
      handle_read_request(m.from, m.context);
      return;
    case MessageType::kTransferLeader:
      if (Status s = transfer_leadership(m.index); !s.ok()) {
        logf(LogLevel::kDebug, "transfer request refused: " + s.to_string());
      }
      return;
    default:
      break;
  }
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return;  // not a member (any more)
  Progress& pr = it->second;
  if (!note_incarnation(m, pr)) return;
  pr.recent_active = true;
  switch (m.type) {
    case MessageType::kAppendResp:
      handle_append_resp(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      handle_heartbeat_resp(m, pr);
      break;
    case MessageType::kSnapshotResp:
      handle_snapshot_resp(m, pr);
      break;
    default:
      break;
  }
  // A damaged member asks for a snapshot; an idle, caught-up one would otherwise wait for the
  // next write to get it.
  if (role_ == Role::kLeader && prs_.count(m.from) != 0) {
    Progress& p = prs_.at(m.from);
    if (p.snapshot_from != 0 && p.state != ProgressState::kSnapshot) send_append(m.from, true);
  }
}

}  // namespace kvc::raft
