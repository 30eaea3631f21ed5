// Disaster recovery into a new cluster (`kvc-snap restore`): builds a fresh member data
// directory from a snapshot file, like restoring an etcd snapshot. The new directory holds the
// snapshot's keys with their revisions at the snapshot's applied index and term, a membership
// made from the new --initial-cluster (ids derived from the new cluster token), an identity
// file, and a snapshot of that state in snap/; it has no WAL. kvc-node starts from it as its
// base. Not thread-safe; one restore per directory.
#pragma once

#include <cstdint>
#include <string>

#include "kvc/common/status.h"
#include "kvc/storage/data_dir.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/snapshot.h"

namespace kvc::storage {

struct RestoreOptions {
  std::string snapshot_path;
  std::string data_dir;         // must not exist, or be empty
  std::string name;             // this member's name; must be in initial_cluster
  std::string initial_cluster;  // NAME=HOST:PORT,...
  std::string cluster_token = std::string(kDefaultClusterToken);
  std::uint64_t map_size = 8ull << 30;
  ProgressFn progress;  // over the snapshot's bytes while loading it
};

struct RestoreResult {
  Identity identity;
  Membership membership;
  SnapshotHeader source;  // the header of the snapshot restored from
  std::uint64_t keys = 0;
  SnapshotInfo base_snapshot;  // the snapshot written into DATA_DIR/snap
};

// Refuses (kFailedPrecondition) a non-empty data directory; verifies the whole snapshot first
// (kCorruption, `problem` saying truncated or corrupt). On failure it removes what it created.
Result<RestoreResult> restore_snapshot(const RestoreOptions& options,
                                       SnapshotProblem* problem = nullptr);

}  // namespace kvc::storage
