// Integrity faults on a stopped member's files, shared by the chaos tests (tests/chaos/nemesis.h:
// `rollback` and `damage`) and the server simulation (server_sim.h): copy a data directory aside
// and put the copy back later, learn how far a copy's log reaches, and flip one bit inside a value
// the workload wrote, in the member's live LMDB state (DATA_DIR/state/<the generation CURRENT
// names>/data.mdb, kvc-state(5)). The damage is aimed: the record is read through LMDB itself
// (read-only, no lock), its exact bytes are found in the file (on its live page, and on any older
// copy of that page LMDB left behind), the bit flipped is the last byte of its value, and the
// offline check (storage::check_state, what `kvc-snap check` runs) must then name that key as
// damaged, so a flip that missed the live record is a harness error and never a silent no-op. Every
// function works on a member that is not running; none of them starts or stops processes.
// Thread-safe (no shared state).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::sim {

// Copies `from` (a stopped member's data directory) to `to`, which must not exist.
Status copy_data_dir(const std::string& from, const std::string& to);

// Replaces the data directory `dir` with `copy` (moved, not copied; same file system).
Status restore_data_dir(const std::string& copy, const std::string& dir);

// The last log index of the data directory `dir` (its WAL, or its state's applied index when
// the log holds nothing past it). Fails when its files are inconsistent (kvc-wal verify's
// cross-file checks): a copy taken from a clean stop never is.
Result<std::uint64_t> last_log_index(const std::string& dir);

struct DamagedValue {
  std::string key;
  std::string value;         // what the record held
  std::string damaged;       // what it holds now
  std::string file;          // the data.mdb that was changed
  std::uint64_t offset = 0;  // of the first copy's changed byte
  std::size_t copies = 0;    // copies of the record found (and damaged) in the file
};

// Flips one bit (0x40) in the last byte of the stored value of the first key of `keys` that the
// stopped member's state holds with a non-empty value (in every copy of its record in the file),
// then checks the state offline and fails (kInternal) unless the check names that key as
// damaged. The workload's values end in a digit,
// which the flip turns into a letter, so the damaged value is one no client ever wrote.
Result<DamagedValue> damage_stored_value(const std::string& data_dir,
                                         const std::vector<std::string>& keys);

// The damaged records the offline check finds in `data_dir`'s state (empty: clean), or why it
// could not check.
Result<std::vector<std::string>> damaged_records(const std::string& data_dir);

}  // namespace kvc::sim
