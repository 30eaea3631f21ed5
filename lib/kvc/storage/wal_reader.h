// Reading a whole write-ahead log, read-only: lists the segment files of a WAL directory, walks
// their records in order, applies the log's index rules and, where reading stops early, says
// exactly where and why (segment, offset, the last good index), classifying the damage as a torn
// tail (repairable, expected after a crash) or as corruption. Wal::open (recovery) and every
// kvc-wal command are built on scan_wal(). Takes no lock and writes nothing, so it can read a
// live member's log. The rules are those of kvc-wal(5), "READING A LOG":
//
//   - Segments are read in sequence order; sequence numbers must be consecutive and each
//     segment's first index must be the log's last index + 1 when it starts.
//   - An entry with index last + 1 extends the log; an entry with index <= last replaces the
//     entries from its index on (Raft rewriting an uncommitted suffix); anything else is a gap.
//     Terms never decrease along the log; no entry rewrites an index at or below the commit
//     index of the last hard state, nor at or below the snapshot marker.
//   - A snapshot marker with index >= last resets the log to start after it; marker indexes
//     never decrease. A hard state's commit never exceeds the last index; its term never
//     decreases.
//   - Damage in the last segment with no valid record after it is a torn tail. Damage with a
//     valid record after it, damage in an earlier segment, a bad segment header and a broken
//     rule are corruption.
//
// Functions are thread-safe; each call has its own state.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"
#include "kvc/storage/record.h"
#include "kvc/storage/segment.h"

namespace kvc::storage {

struct SegmentFile {
  std::string name;  // file name, "<seq>-<first index>.wal"
  std::string path;
  std::uint64_t seq = 0;          // from the name
  std::uint64_t first_index = 0;  // from the name
  std::uint64_t file_size = 0;
};

struct WalListing {
  std::vector<SegmentFile> segments;     // sorted by sequence number
  std::vector<std::string> temp_files;   // "<segment>.tmp": a segment creation that never finished
  std::vector<std::string> other_files;  // anything else; ignored
};
// Lists `dir`. kNotFound when it does not exist.
Result<WalListing> list_wal_dir(const std::string& dir);

enum class DamageKind : std::uint8_t { kTornTail, kCorruption };
std::string_view damage_kind_name(DamageKind kind);  // "torn_tail", "corruption"

// Where reading stopped and why.
struct WalDamage {
  DamageKind kind = DamageKind::kCorruption;
  std::size_t segment_pos = 0;  // position in WalSummary::segments
  std::string segment;          // file name
  std::string path;
  // Where the damage starts. With whole_segment, the segment is unusable from its start
  // (bad header, out of sequence) and offset is 0.
  std::uint64_t offset = 0;
  bool whole_segment = false;
  // The log's start is missing (no snapshot marker covers what precedes the oldest segment):
  // no cut can repair this.
  bool missing_start = false;
  std::uint64_t after_index = 0;  // the log's last index before the damage (0: none)
  std::string reason;             // "checksum mismatch", "gap: entry 9 after 7", ...
  // Torn tail: [offset, end_offset) holds the torn bytes. Corruption: the end of the file.
  std::uint64_t end_offset = 0;
  std::optional<std::uint64_t> valid_after;        // corruption: a valid record starts here
  std::optional<std::uint64_t> valid_after_index;  // ... and it is the entry with this index

  // One line: "torn tail in segment X at offset N after index I: ...".
  std::string describe() const;
};

struct SegmentSummary {
  SegmentFile file;
  SegmentHeader header;
  bool header_ok = false;
  std::uint64_t records = 0;
  std::uint64_t used_bytes = 0;  // one past the last whole record
  std::uint64_t min_index = 0;   // of the entry records in this segment; 0 when there are none
  std::uint64_t max_index = 0;
};

// What the log holds at some point of reading (or writing) it.
struct LogState {
  // The log after overwrites: entries first_index..last_index; empty when last_index <
  // first_index. Entries at or below snapshot->index are covered by the snapshot.
  std::uint64_t first_index = 1;
  std::uint64_t first_term = 0;  // 0 when unknown (the log is empty)
  std::uint64_t last_index = 0;
  std::uint64_t last_term = 0;                 // 0 when unknown (no entry or marker read yet)
  std::optional<raft::HardState> hard_state;   // the last one
  std::optional<raft::SnapshotMeta> snapshot;  // the newest marker

  bool empty() const { return last_index < first_index; }
};

// How one record changed the log.
struct LogChange {
  // An entry that rewrote the log: entries entry.index..replaced_to were replaced (0: none).
  std::uint64_t replaced_to = 0;
  // A snapshot marker at or past the last index: the log now continues after the marker.
  bool reset = false;
};

// Applies `record` to `state` under the rules above. Returns "" or the rule it breaks (then
// `state` may be partly changed: apply to a copy when the record may be refused). The writer
// (Wal) checks every record it is asked to write with the same function.
std::string apply_log_rules(LogState& state, const Record& record, LogChange* change);

struct WalSummary {
  std::string dir;
  std::vector<SegmentSummary> segments;  // every listed segment; those after damage unread
  std::vector<std::string> temp_files;
  std::vector<std::string> other_files;
  std::uint64_t records = 0;
  std::uint64_t entry_records = 0;
  std::uint64_t bytes_used = 0;     // header and whole records
  std::uint64_t bytes_on_disk = 0;  // file sizes (preallocated)
  LogState log;                     // as read up to the end or to the damage
  std::optional<WalDamage> damage;
};

// One whole record, handed to the visitor in log order.
struct ScannedRecord {
  const SegmentSummary& segment;
  std::uint64_t offset;
  std::uint32_t bytes;  // framed size
  const Record& record;
  LogChange change;
  const LogState& log;  // after this record
};
// Returning a non-ok Status stops the scan with that Status.
using RecordVisitor = std::function<Status(const ScannedRecord&)>;

struct ScanOptions {
  // Called now and then with the bytes read so far and the total.
  std::function<void(std::uint64_t done, std::uint64_t total)> progress;
};

// Reads the WAL in `dir`. Damage is not an error: it is reported in WalSummary::damage. The
// Status fails only when the directory cannot be listed, a file cannot be read, or the visitor
// fails.
Result<WalSummary> scan_wal(const std::string& dir, const RecordVisitor& visit,
                            const ScanOptions& options = {});

// The same over segments already in hand (fuzzing, tests). `sources[i]` holds `files[i]`.
Result<WalSummary> scan_segments(const std::vector<SegmentFile>& files,
                                 const std::vector<ByteSource*>& sources,
                                 const RecordVisitor& visit, const ScanOptions& options = {});

}  // namespace kvc::storage
