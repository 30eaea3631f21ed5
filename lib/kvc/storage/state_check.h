// Reading an LMDB state without the state machine, for the offline tools and the start-up checks
// of tools that must not change anything: its meta (read_state_facts) and a full check of every
// record (check_state, `kvc-snap check`): every seal (state_format.h), every database walked
// from its first record to its last (which also makes LMDB follow every branch and leaf page,
// so a damaged page is found), record counts against LMDB's own statistics, the meta record,
// and what the records must satisfy among themselves (revisions not past the applied index,
// events not below the compaction point, key sizes). Opens the environment read-only and takes
// no lock, so it runs beside a live member (whose state may move on meanwhile: each check reads
// one consistent LMDB snapshot). Functions are thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/storage/state_types.h"

namespace kvc::storage {

// The meta of the state in `state_dir` (DATA_DIR/state). A directory that does not exist or
// holds no state yet reads as a new state (applied index 0). kCorruption when CURRENT names a
// missing generation or a meta record does not verify.
Result<StateFacts> read_state_facts(const std::string& state_dir);

struct StateCheckOptions {
  // Called now and then with the records walked so far and the total LMDB reports.
  ProgressFn progress;
  // At most this many damaged records and problems are listed (all are counted).
  std::size_t max_listed = 100;
};

struct StateCheckReport {
  StateFacts facts;
  std::string generation_dir;  // state_dir/gen-N that was checked
  std::uint64_t keys = 0;      // records walked in each database
  std::uint64_t events = 0;
  std::uint64_t meta_records = 0;
  std::uint64_t leases = 0;
  std::uint64_t bytes = 0;  // keys and values read
  // Records whose seal does not verify or whose body does not decode: "<record name>: <why>".
  std::vector<std::string> damaged;
  std::uint64_t damaged_count = 0;
  // Everything else that is wrong: LMDB errors while walking (a damaged page), counts that
  // disagree with LMDB's statistics, records that break the state's rules.
  std::vector<std::string> problems;
  std::uint64_t problem_count = 0;

  bool ok() const { return damaged_count == 0 && problem_count == 0; }
};

// Checks the state in `state_dir`. The Status fails only when the state cannot be opened at all
// (missing, not an LMDB environment, unreadable meta); damage found while walking is in the
// report.
Result<StateCheckReport> check_state(const std::string& state_dir,
                                     const StateCheckOptions& options = {});

}  // namespace kvc::storage
