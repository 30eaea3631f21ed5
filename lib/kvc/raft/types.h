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

}  // namespace kvc::raft
