// Names and trace text for raft messages.
#include "kvc/raft/message.h"

#include <sstream>

namespace kvc::raft {

std::string_view message_type_name(MessageType type) {
  switch (type) {
    case MessageType::kAppend:
      return "append";
    case MessageType::kAppendResp:
      return "append_resp";
    case MessageType::kVote:
      return "vote";
    case MessageType::kVoteResp:
      return "vote_resp";
    case MessageType::kPreVote:
      return "pre_vote";
    case MessageType::kPreVoteResp:
      return "pre_vote_resp";
    case MessageType::kHeartbeat:
      return "heartbeat";
    case MessageType::kHeartbeatResp:
      return "heartbeat_resp";
    case MessageType::kSnapshot:
      return "snapshot";
    case MessageType::kSnapshotResp:
      return "snapshot_resp";
    case MessageType::kTimeoutNow:
      return "timeout_now";
    case MessageType::kReadIndex:
      return "read_index";
    case MessageType::kReadIndexResp:
      return "read_index_resp";
    case MessageType::kTransferLeader:
      return "transfer_leader";
  }
  return "unknown";
}

std::string describe(const Message& m) {
  std::ostringstream os;
  os << message_type_name(m.type) << ' ' << m.from << "->" << m.to << " term=" << m.term;
  switch (m.type) {
    case MessageType::kAppend:
      os << " index=" << m.index << " log_term=" << m.log_term << " commit=" << m.commit
         << " entries=" << m.entries.size();
      if (!m.entries.empty())
        os << " [" << m.entries.front().index << ".." << m.entries.back().index << "]";
      break;
    case MessageType::kAppendResp:
      os << " index=" << m.index;
      if (m.reject) os << " reject hint=" << m.reject_hint << " hint_term=" << m.log_term;
      break;
    case MessageType::kVote:
    case MessageType::kPreVote:
      os << " last_index=" << m.index << " last_term=" << m.log_term;
      if (!m.context.empty()) os << " context=" << m.context;
      break;
    case MessageType::kVoteResp:
    case MessageType::kPreVoteResp:
      os << (m.reject ? " reject" : " granted");
      break;
    case MessageType::kHeartbeat:
      os << " commit=" << m.commit;
      break;
    case MessageType::kHeartbeatResp:
      os << " last_index=" << m.index;
      break;
    case MessageType::kSnapshot:
      os << " snap_index=" << m.snapshot.index << " snap_term=" << m.snapshot.term
         << " offset=" << m.snapshot_offset << " len=" << m.chunk_length
         << " size=" << m.snapshot_size << (m.snapshot_done ? " done" : "");
      break;
    case MessageType::kSnapshotResp:
      os << " snap_index=" << m.snapshot.index << " offset=" << m.snapshot_offset
         << (m.snapshot_done ? " done" : "") << (m.reject ? " reject" : "")
         << (m.snapshot_damaged ? " damaged" : "");
      break;
    case MessageType::kReadIndexResp:
      os << " index=" << m.index << (m.reject ? " reject" : "");
      break;
    case MessageType::kTransferLeader:
      os << " target=" << m.index;
      break;
    default:
      break;
  }
  if (m.repairing) os << " repairing";
  if (m.snapshot_from != 0) os << " snapshot_from=" << m.snapshot_from;
  if (m.repair_to != 0) os << " repair_to=" << m.repair_to;
  return os.str();
}

}  // namespace kvc::raft
