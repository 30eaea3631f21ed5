// The cross-file invariants of a data directory (DESIGN.md, "Persistence rules"): what the LMDB
// state and the write-ahead log say about each other must agree, or the member would start on a
// log that lacks entries it acknowledged or a state older than what its log says is durable.
// kvc-node checks them at start (before the Raft core sees the log) and refuses to start on a
// violation; `kvc-wal verify DATA_DIR` and `kvc-snap check DATA_DIR` report the same, from the
// same function. Each violation says what is missing and what to do. The checks, with D the
// state's applied index, M the WAL's newest snapshot marker, W the WAL's last index, C the hard
// state's commit index and L the log index the state recorded as durable and committed at its
// last flush (StateMachine::note_log_durable):
//
//   M <= D            a marker is written only once the state durably holds its index
//   W >= max(D, L)    the log still reaches what the state applied and what it saw durable;
//                     exception: a state installed from a snapshot at D (kvc-snap restore, a
//                     snapshot from the leader) whose marker was not written yet
//   first <= D + 1    the log continues right after the state (no entries missing between)
//   C <= max(W, D)    the commit index is covered by the log or the state
//   D > 0 => members  a state past index 0 has a membership
//
// A brand-new member (nothing anywhere), a member that joins (empty state and log), a restored
// member (state installed at D, empty log), a member that installed a snapshot from the leader,
// a torn tail truncated at start (it loses only unsynced records, and L, D never count those)
// and --force-new-cluster (it only appends) all pass. What these checks cannot see: a whole
// data directory replaced by an older copy of itself (the files agree with each other; that is
// the Raft layer's job) and a newest segment created after the state's last flush.
// Pure functions over facts (check_consistency), plus one that reads a directory; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/storage/state_types.h"
#include "kvc/storage/wal.h"
#include "kvc/storage/wal_reader.h"

namespace kvc::storage {

// What the WAL holds, as recovery (Wal::open) or a scan (scan_wal) found it.
struct LogFacts {
  std::string wal_dir;
  std::size_t segments = 0;
  LogState log;  // first and last index, newest marker, last hard state
};
// From a WAL just opened (before anything was appended), or from a scan.
LogFacts log_facts(const Wal& wal);
LogFacts log_facts(const WalSummary& summary);

enum class Violation : std::uint8_t {
  kStateBehindMarker,  // M > D: the state is older than the log says it is
  kLogTruncated,       // W < max(D, L): the log lost its newest entries
  kLogGap,             // entries between D and the log's first index are missing
  kCommitNotCovered,   // C > max(W, D)
  kNoMembership,       // D > 0 but the state has no members
};
std::string_view violation_name(Violation v);  // "state_behind_marker", ...

struct ConsistencyViolation {
  Violation kind;
  std::string message;  // what is missing, and what to do
};

struct ConsistencyReport {
  StateFacts state;
  LogFacts log;
  std::vector<ConsistencyViolation> violations;

  bool ok() const { return violations.empty(); }
  // The violations' messages, one per line; "consistent" when there are none.
  std::string describe() const;
  // ok, or kCorruption: "data directory inconsistent: <describe()>".
  Status status() const;
};

ConsistencyReport check_consistency(const StateFacts& state, const LogFacts& log);

// What to do when a member's own files cannot be trusted and cannot be mended in place (a
// violation above, a damaged state or identity file): rebuild it from the cluster. One clause,
// lowercase, naming the commands (kvc-node(1), INTEGRITY), for the end of a refusal.
std::string_view rebuild_advice();

// Reads DATA_DIR/state (read-only: read_state_facts) and scans DATA_DIR/wal, then checks. Takes
// no lock, so it runs beside a live member (whose files may move while they are read). Fails
// with kCorruption when the WAL itself is corrupt (the facts would be incomplete; kvc-wal
// verify says where), and with the state's error when its meta cannot be read.
Result<ConsistencyReport> check_data_dir_consistency(const std::string& data_dir,
                                                     const ScanOptions& scan = {});

}  // namespace kvc::storage
