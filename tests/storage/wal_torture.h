// Seeded crash tortures of the real WAL and snapshot code on a simulated disk (sim_fs.h): random
// appends (with rewrites of the uncommitted suffix), syncs, snapshot markers, releases, segment
// rotation, crashes that keep a random part of the unsynced writes, failed fsyncs, restarts,
// and bit flips; after each, what recovery returns is checked against a model of the log. Shared
// by the unit tests (kvc_storage) and the mutation tests (kvc_storage_mutable, wal_mutation.h),
// which must see these checks fail. Single-threaded; no clock; all randomness from the seed
// (segment salts aside: the Wal draws them from getrandom, which changes bytes, not outcomes).
#pragma once

#include <cstdint>
#include <string>

namespace kvc::storage::testing {

struct TortureOptions {
  int steps = 120;            // operations per seed
  bool bit_flips = true;      // end some seeds with a durable or transient bit flip
  bool sync_failures = true;  // inject failed fsyncs
};

struct TortureStats {
  std::uint64_t seeds = 0;
  std::uint64_t crashes = 0;
  std::uint64_t restarts = 0;
  std::uint64_t failed_syncs = 0;
  std::uint64_t torn_tails = 0;  // recoveries that truncated a torn tail
  std::uint64_t flips = 0;
  std::uint64_t flips_refused = 0;  // flips recovery reported as corruption
  std::uint64_t appends = 0;
  std::uint64_t segments_created = 0;
  std::uint64_t lost_changes = 0;
  std::string describe() const;
};

// Runs one seed. Returns "" when every check held, else what broke (with the seed's step).
std::string run_wal_torture(std::uint64_t seed, const TortureOptions& options,
                            TortureStats* stats = nullptr);

// The snapshot-file torture: writers finished or abandoned, prune, adopt, failed fsyncs and
// crashes; afterwards every snapshot file is whole, verifiable and what was written, and every
// snapshot whose finish (or adopt) succeeded is still there. Returns "" or what broke.
std::string run_snapshot_torture(std::uint64_t seed, int steps = 40);

// KVC_SIM_START_SEED when set, else `fallback`.
std::uint64_t start_seed(std::uint64_t fallback);

}  // namespace kvc::storage::testing
