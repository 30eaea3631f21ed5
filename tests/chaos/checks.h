// The chaos tests' end-of-run checks that are pure functions of what was collected, so each can
// be unit-tested with a planted bug: every acknowledged write is in a member's change history
// (and nothing was applied that no client wrote, that a client was told failed, or twice);
// members' states are identical; and the excerpt of the history around an anomaly that a
// failure report prints. Thread-safe (pure functions).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/check/history.h"
#include "kvc/check/linearizability.h"
#include "kvc/wire/messages.h"

namespace kvc::chaos {

struct WriteCheck {
  std::uint64_t acknowledged_checked = 0;    // acknowledged writes found where they belong
  std::uint64_t acknowledged_compacted = 0;  // below the history's first revision: not checkable
  std::uint64_t events = 0;
  std::vector<std::string> problems;  // empty: passed
};

// Checks `events` (a member's change history from `first_revision` on, as its watch replays
// it) against the client history `h` on the keys `h` uses:
//   - every write acknowledged with revision r (put, successful cas, delete that found the
//     key) is the event at revision r, with its key and value (a delete: a delete event);
//   - every value in a put event was written by some operation whose outcome is not kFailed
//     (kFailed promises "not applied"), and no value is applied twice.
// Client values are unique per write, which is what makes the second rule possible.
WriteCheck check_acknowledged_writes(const check::History& h,
                                     const std::vector<wire::Event>& events,
                                     std::uint64_t first_revision, const std::string& member);

// Across all keys: no two writes that took effect (put, successful cas, delete that found the
// key) were acknowledged with the same revision (each write is its own log entry, and its
// revision is that entry's index). Catches an acknowledged write that was lost and replaced by
// another one at its index even when no member's history reaches back that far and the two
// writes are on different keys (the linearizability check is per key). Returns the problems.
std::vector<std::string> check_revisions_unique(const check::History& h);

struct MemberState {
  std::string name;
  std::uint64_t applied_index = 0;
  std::vector<wire::KeyValue> kvs;  // every key, in order
};

// Every member must be at the same applied index with the same keys, values and revisions.
// Returns the differences (empty: identical).
std::vector<std::string> compare_states(const std::vector<MemberState>& states);

// The operations around a linearizability failure: the culprits, and every operation on the
// failing key whose interval meets [first culprit invoke - window, last culprit response +
// window] (at most `max_lines`), then what the harness did in that window (`events`: time in
// microseconds and text).
std::string history_excerpt(const check::History& h, const check::CheckResult& r,
                            const std::vector<std::pair<std::uint64_t, std::string>>& events,
                            std::uint64_t window_us = 1'000'000, std::size_t max_lines = 60);

}  // namespace kvc::chaos
