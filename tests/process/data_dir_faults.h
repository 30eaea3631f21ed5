// Damage to a stopped member's data directory, for the process tests of issue 14 (integrity,
// corruption sweep): where each kind of bytes lives in a member's files (WAL segment headers and
// records, snapshot blocks, the LMDB meta, branch and leaf pages, the identity, CURRENT and
// repair files), flipping one bit there, and the polling and status helpers those tests share.
// The formats are read from their pages (kvc-wal(5), kvc-snap(5), kvc-state(5), and LMDB's own
// page layout for data.mdb), not through libkvc, so a test does not trust the code it tests.
// Single-threaded use; nothing here starts a process.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"
#include "support/wait.h"

namespace kvc::test {

// The whole file (empty when it cannot be read).
std::string read_whole(const std::string& path);

// The live LMDB file of a member's state: DATA_DIR/state/<the generation CURRENT names>/data.mdb.
std::string state_file(const std::string& data_dir);

// Flips one bit in the middle of every copy of `needle` in `path` (LMDB may keep an older copy
// of a page; the live one is among them). Returns how many copies it damaged, -1 when the file
// could not be written.
int flip_bit_in_every_copy(const std::string& path, const std::string& needle);

// Flips bit `bit` (0..7) of the byte at `offset` of `path`, in place.
Status flip_bit(const std::string& path, std::uint64_t offset, int bit);

// How often the integrity tests poll a member (wait_until, tests/support/wait.h): each poll
// opens a client or runs kvc-ctl.
constexpr std::chrono::milliseconds kPollEvery{50};

// Member i's status as it reports it (a default StatusInfo, name empty, when it does not answer).
wire::StatusInfo status_of(const ProcessCluster& cluster, int i);
// Member i's log (its stderr: a refused start's message is its last "kvc-node:" line).
std::string log_of(const ProcessCluster& cluster, int i);
// The remedy start-up refusals name for a member whose data cannot be mended (kvc-node(1),
// INTEGRITY and JOINING A RUNNING CLUSTER): kvc-ctl member remove, its data directory moved to
// DATA_DIR + `aside_suffix` (when it exists), kvc-ctl member add with the same name and peer
// address, and its spec set to join with the --initial-cluster member add printed. Member i must
// be stopped; it is not started.
Status rebuild_member(ProcessCluster& cluster, int i, const std::string& aside_suffix);

// One run of bytes of one file, and what it is ("segment 2 header", "entry index 57", ...).
struct ByteRange {
  std::string path;  // absolute
  std::uint64_t offset = 0;
  std::uint64_t length = 0;
  std::string what;
};

// ---- WAL (kvc-wal(5)) ----
enum class WalRecordType { kEntry = 1, kHardState = 2, kSnapshotMarker = 3 };
// The 40-byte header of every segment of DATA_DIR/wal, oldest first.
std::vector<ByteRange> wal_segment_headers(const std::string& data_dir);
// Every whole record of that type (its 12-byte header and payload), in log order. The very last
// record of the log is left out: a flip there is a torn tail (wal_last_record()).
std::vector<ByteRange> wal_records(const std::string& data_dir, WalRecordType type);
// The last record of the newest segment (empty when the log holds none).
std::vector<ByteRange> wal_last_record(const std::string& data_dir);

// ---- snapshot files in DATA_DIR/snap (kvc-snap(5)) ----
enum class SnapPart { kPrologue, kBlock, kTrailer };
// That part of every snapshot file (kBlock: the meta and records blocks, header and payload).
std::vector<ByteRange> snapshot_parts(const std::string& data_dir, SnapPart part);

// ---- the LMDB state (data.mdb of the live generation) ----
// Page size: LMDB's is the OS page size, which it records in the meta page.
enum class LmdbPart {
  kMeta,        // the MDB_meta of pages 0 and 1 (page header included)
  kValue,       // bytes of a stored value in a live leaf page (kv or events) holding `needle`
  kLeafKey,     // the key bytes of a live kv leaf node
  kBranchKey,   // the separator key bytes of a live branch node (kv or events)
  kCatalogKey,  // the names of the named databases (kv, events, meta) in the main database
};
// Only pages reachable from the newest meta are "live": older copies of pages that LMDB keeps
// for reuse are left out, so a flip there is a flip in data the member uses.
std::vector<ByteRange> lmdb_ranges(const std::string& data_dir, LmdbPart part,
                                   const std::string& needle = "");

// ---- small files ----
// The whole of DATA_DIR/<name> when it exists (identity, repair, state/CURRENT).
std::vector<ByteRange> whole_file(const std::string& data_dir, const std::string& name);

}  // namespace kvc::test
