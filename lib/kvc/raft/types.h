// The values the Raft core shares with storage and the wire format: log entries, the hard
// state that must be durable before a member answers, and the metadata of a snapshot. Plain
// values; thread-compatible. The algorithm itself lives in node.h.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvc::raft {

using NodeId = std::uint64_t;
inline constexpr NodeId kNoNode = 0;  // "nobody": no vote cast, no leader known

enum class EntryType : std::uint8_t {
  kNormal = 0,      // application command; empty data is the leader's no-op
  kConfChange = 1,  // membership change; data is an encoded ConfChange (see node.h)
};

struct Entry {
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  EntryType type = EntryType::kNormal;
  std::string data;

  friend bool operator==(const Entry&, const Entry&) = default;
};

// What a member must have on stable storage before it sends any message that depends on it.
struct HardState {
  std::uint64_t term = 0;
  NodeId vote = kNoNode;
  std::uint64_t commit = 0;

  friend bool operator==(const HardState&, const HardState&) = default;
};

// The membership at some log position. Both lists sorted ascending, disjoint.
struct ConfState {
  std::vector<NodeId> voters;
  std::vector<NodeId> learners;

  friend bool operator==(const ConfState&, const ConfState&) = default;
};

// Identifies the state a snapshot holds: everything up to and including `index`.
struct SnapshotMeta {
  std::uint64_t index = 0;
  std::uint64_t term = 0;
  ConfState conf;

  friend bool operator==(const SnapshotMeta&, const SnapshotMeta&) = default;
};

// Protocol-aware recovery ("Protocol-Aware Recovery for Consensus-Based Storage", FAST 2018):
// what a member that lost or damaged data must receive from the leader before it may vote or
// count toward a quorum again. Persisted by the caller (Ready::repair) like the hard state, so
// a restart in the middle of a repair does not forget it.
struct RepairState {
  // Entries this member had acknowledged were lost (a leader noticed its log shrank): its log
  // must match the leader's up to this index again, durably. 0: nothing lost.
  std::uint64_t log_to = 0;
  // The state machine is damaged (a checksum failed): the member needs a snapshot from the
  // leader at or above `snapshot_from` (its applied index when the damage was found).
  bool needs_snapshot = false;
  std::uint64_t snapshot_from = 0;

  bool active() const { return log_to != 0 || needs_snapshot; }
  friend bool operator==(const RepairState&, const RepairState&) = default;
};

}  // namespace kvc::raft
