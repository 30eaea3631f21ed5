// Bootstrap: what a member starts from, computed from what is on disk and the options, as
// functions that return a value (no I/O, no loop), so each rule is tested on its own
// (tests/server/bootstrap_test.cc). startup.cc does the reading and writing around them.
//
// Rules kept here:
// - A founding member's identity is a function of the token and the sorted initial cluster,
//   so every founder derives the same cluster id and member ids.
// - A new cluster's log is one committed AddVoter entry per founder, in id order, at term 1:
//   every founder writes the same entries.
// - Disaster recovery (--force-new-cluster) keeps every entry the log holds, treats it as
//   committed (an acknowledged write reached a majority, and this member may hold it without
//   knowing it committed), and appends the membership changes that leave this member the only
//   voter.
// - The Raft core restarts from the state's flushed index D: the log continues at D + 1,
//   entries of a term older than the state's are dropped (they were overwritten elsewhere),
//   and the commit index is clamped to [D, last].
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/node.h"
#include "kvc/storage/data_dir.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/wal.h"

namespace kvc::server {

// The identity of a founding member named `name` of the cluster `initial` (a new cluster).
// Fails when `initial` does not name it.
Result<storage::Identity> founder_identity(const std::string& name, const std::string& token,
                                           const storage::Membership& initial);

// What the state machine durably holds: its flushed index and term, and its membership.
struct StateFacts {
  std::uint64_t applied = 0;
  std::uint64_t applied_term = 0;
  raft::ConfState conf;
};

// A new cluster's first log (hard state and entries), or nothing when the member already has
// a log or a state, or `founders` is empty (a member that joined learns the log from a leader).
struct InitialLog {
  raft::HardState hard_state;
  std::vector<raft::Entry> entries;
};
std::optional<InitialLog> initial_log(const storage::Membership& founders,
                                      const storage::RecoveredLog& log,
                                      std::uint64_t state_applied);

// --force-new-cluster: the hard state and the entries to append so that `self` is the only
// voter.
struct ForcedCluster {
  raft::HardState hard_state;
  std::vector<raft::Entry> entries;  // appended after the log's last entry
  std::size_t removed = 0;           // other members removed
  std::uint64_t last = 0;            // the new last index (and commit index)
};
ForcedCluster force_new_cluster(const StateFacts& state, const storage::RecoveredLog& log,
                                std::uint64_t self, const std::string& name,
                                const std::string& peer_addr);

// The Raft core's restore state from the state facts and the recovered log.
struct RestorePlan {
  raft::RestoreState restore;  // `repair` is the caller's to fill in
  // The state is ahead of the log (kvc-snap restore): the WAL needs a snapshot marker at D.
  bool needs_snapshot_marker = false;
  // Entries from this index on were dropped: their term is older than the state's (0: none).
  std::uint64_t dropped_from = 0;
  std::uint64_t dropped_term = 0;
  std::uint64_t last = 0;  // the last log index the core starts with
};
RestorePlan restore_plan(const StateFacts& state, storage::RecoveredLog log,
                         std::uint64_t wal_last_index);

}  // namespace kvc::server
