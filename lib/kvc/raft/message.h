// The messages Raft members exchange. A Message is a flat, plain struct with no behaviour, so
// the wire layer can encode it field by field (msgpack) without the core's help; which fields
// a type uses is listed beside each MessageType. Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/raft/types.h"

namespace kvc::raft {

enum class MessageType : std::uint8_t {
  // Leader -> follower: log_term/index name the entry before `entries`; commit is the leader's.
  kAppend = 0,
  // Follower -> leader: accepted up to `index`, or reject (index = the rejected prev index,
  // reject_hint = an index to probe next, log_term = the follower's term at reject_hint).
  kAppendResp = 1,
  kVote = 2,           // candidate: term, index/log_term of its last entry; context "transfer"
  kVoteResp = 3,       // reject = vote refused
  kPreVote = 4,        // as kVote, with term = the term the sender would campaign in
  kPreVoteResp = 5,    // term = the asked term when granted, the responder's term when refused
  kHeartbeat = 6,      // commit = min(follower match, leader commit); context: ReadIndex round
  kHeartbeatResp = 7,  // context echoed; index = the follower's last log index
  // Leader -> follower: one chunk of a snapshot. snapshot = its metadata, snapshot_size = its
  // total byte size, snapshot_offset/chunk_length = this chunk's byte range, snapshot_done =
  // last chunk. The core leaves `chunk` empty: the caller fills it before sending (see node.h).
  kSnapshot = 8,
  // Follower -> leader: snapshot_offset = the next byte it expects; snapshot_done = installed
  // (or not needed); reject = wrong offset, restart from snapshot_offset; reject with
  // snapshot_damaged = the whole file failed its checks: make a new snapshot and start again.
  kSnapshotResp = 9,
  kTimeoutNow = 10,      // leader -> transfer target: campaign now
  kReadIndex = 11,       // follower -> leader: context = the caller's read context
  kReadIndexResp = 12,   // leader -> follower: index = read index (reject: no leader could serve)
  kTransferLeader = 13,  // member -> leader: please transfer leadership to `index` (a node id)
};

inline constexpr int kMessageTypeCount = 14;

// "append", "vote_resp", ...; "unknown" for a value outside the enum.
std::string_view message_type_name(MessageType type);

// The context of a kVote sent because of leadership transfer: voters ignore their leader lease.
inline constexpr std::string_view kTransferContext = "transfer";

struct Message {
  MessageType type = MessageType::kAppend;
  NodeId from = kNoNode;
  NodeId to = kNoNode;
  std::uint64_t term = 0;
  std::uint64_t log_term = 0;
  std::uint64_t index = 0;
  std::uint64_t commit = 0;
  bool reject = false;
  std::uint64_t reject_hint = 0;
  std::vector<Entry> entries;
  std::string context;

  SnapshotMeta snapshot;
  std::uint64_t snapshot_size = 0;
  std::uint64_t snapshot_offset = 0;
  std::uint64_t chunk_length = 0;
  bool snapshot_done = false;
  std::string chunk;

  // Protocol-aware recovery (node.h, "REPAIR"). Every message a member sends carries its
  // boot_id (random per process start), so a leader can tell a restarted follower from its
  // earlier incarnation, and `repairing` while the sender may not vote or count toward a
  // quorum. A follower whose state machine is damaged asks for a snapshot at or above
  // `snapshot_from` (0: no request). The leader tells a follower that lost entries it had
  // acknowledged in `repair_to` (kAppend, kHeartbeat; 0: nothing lost).
  std::uint64_t boot_id = 0;
  bool repairing = false;
  std::uint64_t snapshot_from = 0;
  std::uint64_t repair_to = 0;

  // kSnapshotResp: the receiver refused the snapshot it had received whole, as damaged. On a
  // kSnapshot a follower steps, set by its caller (never sent): the caller checked the file this
  // last chunk completes and found it damaged (Node::completes_snapshot).
  bool snapshot_damaged = false;

  friend bool operator==(const Message&, const Message&) = default;
};

// One line for traces: "append 1->2 term=3 index=7 log_term=3 commit=6 entries=2".
std::string describe(const Message& m);

}  // namespace kvc::raft
