// Test-only switch for deliberately broken variants of the Raft core, used to show that the
// simulator's checks have teeth. The sources are compiled twice: `kvc_raft` (production) has
// no switch at all, mutation_enabled() is a constant false and the broken paths compile away;
// `kvc_raft_mutable` (KVC_MUTATIONS defined) has a process-wide runtime switch that only the
// simulator and tests link against. Setting it is not thread-safe; set it before any Node runs.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

namespace kvc::raft {

enum class Mutation : std::uint8_t {
  kNone = 0,
  kVoteNotPersisted,       // votes are sent before the hard state that records them is durable
  kCommitOldTerm,          // the leader commits entries of older terms by counting replicas
  kNoLogMatchingCheck,     // a follower appends without checking the previous entry's term
  kReadIndexWithoutNoop,   // ReadIndex served before the leader's no-op is committed
  kLeaderCountsUndurable,  // the leader counts its own entries before they are durable
  kRepairIgnored,          // restarted or damaged members vote and count as if nothing was lost
};

inline constexpr Mutation kAllMutations[] = {
    Mutation::kVoteNotPersisted,      Mutation::kCommitOldTerm,
    Mutation::kNoLogMatchingCheck,    Mutation::kReadIndexWithoutNoop,
    Mutation::kLeaderCountsUndurable, Mutation::kRepairIgnored};

// "vote-not-persisted", ...; "none" for kNone.
std::string_view mutation_name(Mutation m);
std::optional<Mutation> mutation_from_name(std::string_view name);

#ifdef KVC_MUTATIONS
inline constexpr bool kMutationsCompiled = true;
void set_mutation(Mutation m);
Mutation current_mutation();
inline bool mutation_enabled(Mutation m) { return current_mutation() == m; }
#else
inline constexpr bool kMutationsCompiled = false;
constexpr bool mutation_enabled(Mutation) { return false; }
#endif

}  // namespace kvc::raft
