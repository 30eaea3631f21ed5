// Mutation names, and (in kvc_raft_mutable only) the runtime switch.
#include "kvc/raft/mutation.h"

namespace kvc::raft {

std::string_view mutation_name(Mutation m) {
  switch (m) {
    case Mutation::kNone:
      return "none";
    case Mutation::kVoteNotPersisted:
      return "vote-not-persisted";
    case Mutation::kCommitOldTerm:
      return "commit-old-term";
    case Mutation::kNoLogMatchingCheck:
      return "no-log-matching-check";
    case Mutation::kReadIndexWithoutNoop:
      return "read-index-without-noop";
    case Mutation::kLeaderCountsUndurable:
      return "leader-counts-undurable";
    case Mutation::kRepairIgnored:
      return "repair-ignored";
  }
  return "unknown";
}

std::optional<Mutation> mutation_from_name(std::string_view name) {
  if (name == "none") return Mutation::kNone;
  for (Mutation m : kAllMutations) {
    if (mutation_name(m) == name) return m;
  }
  return std::nullopt;
}

#ifdef KVC_MUTATIONS
namespace {
Mutation g_mutation = Mutation::kNone;
}  // namespace
void set_mutation(Mutation m) { g_mutation = m; }
Mutation current_mutation() { return g_mutation; }
#endif

}  // namespace kvc::raft
