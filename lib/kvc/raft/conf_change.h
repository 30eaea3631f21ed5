// Membership changes: the ConfChange a caller proposes, its binary encoding inside a log
// entry, and the pure function that applies one to a ConfState. Changes are single-step (one
// member at a time), and a change takes effect on every member as soon as the entry is in its
// log (on append, as in the Raft thesis §4.1), not on commit; a truncated entry rolls it back.
// Plain functions over values; thread-safe.
//
// Encoding of ConfChange in Entry::data (little-endian):
//   byte 0      format version (1)
//   byte 1      type (ConfChangeType)
//   bytes 2-9   node id (u64)
//   bytes 10-13 context length n (u32)
//   then n bytes of context (opaque to the core; kvc-node stores the member's name and
//   addresses there). Nothing may follow.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"

namespace kvc::raft {

enum class ConfChangeType : std::uint8_t {
  kAddVoter = 0,        // a new member that votes at once (prefer kAddLearner + kPromoteLearner)
  kAddLearner = 1,      // a new member that receives the log but does not vote
  kPromoteLearner = 2,  // a learner becomes a voter
  kRemove = 3,          // a voter or learner leaves
  // A member's addresses change (kvc-ctl member update): the context says to what. Changes no
  // voter or learner set, so for the core it is a configuration no-op; it still takes the one
  // membership-change slot, so it is serialized with the others like any change.
  kUpdate = 4,
};

std::string_view conf_change_type_name(ConfChangeType type);

struct ConfChange {
  ConfChangeType type = ConfChangeType::kAddLearner;
  NodeId node = kNoNode;
  std::string context;

  friend bool operator==(const ConfChange&, const ConfChange&) = default;
};

inline constexpr std::uint8_t kConfChangeVersion = 1;

std::string encode_conf_change(const ConfChange& cc);
Result<ConfChange> decode_conf_change(std::string_view data);

// The membership after `cc`; an error (and no change) when it does not apply: adding a member
// that exists, promoting a non-learner, removing or updating a non-member, removing the last
// voter. An update of a member returns `conf` unchanged.
Result<ConfState> apply_conf_change(const ConfState& conf, const ConfChange& cc);

bool is_voter(const ConfState& conf, NodeId id);
bool is_learner(const ConfState& conf, NodeId id);

}  // namespace kvc::raft
