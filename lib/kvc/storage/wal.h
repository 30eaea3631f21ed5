// The write-ahead log of one member: Raft entries, hard states and snapshot markers, appended to
// preallocated segment files in DATA_DIR/wal/ (format: kvc-wal(5); design: docs/wal.md).
//
// How the server uses it (one thread, the disk thread, makes every call but bytes_used(); the
// class is not thread-safe and takes no lock: the caller holds the data directory's lock):
//
//   Wal::open()            recovers: truncates a torn tail (with a warning naming the file and
//                          offset), refuses corruption (naming segment, offset and index), and
//                          returns the last hard state, the newest snapshot marker and the
//                          entries after it. Everything it returns is durable.
//   append(hs, entries)    hands records to the OS (no sync). Entries whose first index is at
//                          or below the last index replace the log from there (Raft rewriting
//                          its uncommitted suffix). A batch never spans two segments.
//   sync()                 one fdatasync makes every append before it durable (group commit:
//                          the server appends a whole Raft Ready, then syncs once).
//   save_snapshot(meta)    writes a marker: the state machine durably covers up to meta.index.
//                          Sync it like any append.
//   release_to(index)      deletes the oldest segments whose entries are all below `index`; the
//                          index must be covered by a synced snapshot marker.
//
// Failures: a failed fdatasync/fsync (of a segment or of the directory) is fatal: the Wal
// returns kIOError naming the path, and every later call returns the same error; the server
// must stop (the kernel may have dropped the unsynced pages, so retrying could report data
// durable that is not). A full disk (ENOSPC) while appending returns kResourceExhausted and
// leaves the log as it was before that call, so the call can be retried once there is space.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/wal_reader.h"

namespace kvc::storage {

struct WalOptions {
  // Size each new segment is preallocated to (fallocate). A batch larger than this gets a
  // segment of its own size. At least kMinSegmentBytes.
  std::uint64_t segment_bytes = kDefaultSegmentBytes;
};
inline constexpr std::uint64_t kMinSegmentBytes = 4096;

// What recovery found and did.
struct RecoveryReport {
  std::size_t segments = 0;
  std::uint64_t records = 0;
  std::uint64_t bytes_used = 0;
  std::optional<WalDamage> torn_tail;           // set when a torn tail was truncated
  std::vector<std::string> removed_temp_files;  // unfinished segment creations removed
  std::string describe() const;
};

struct RecoveredLog {
  std::optional<raft::HardState> hard_state;
  std::optional<raft::SnapshotMeta> snapshot;
  // The entries after the snapshot marker (all of them without one), contiguous, in order.
  std::vector<raft::Entry> entries;
  RecoveryReport report;
};

struct OpenedWal;

class Wal {
 public:
  // Opens (creating when missing) the WAL in `dir` and recovers it. Fails with kCorruption when
  // the log is damaged anywhere but at its tail, kInvalidArgument for bad options, and
  // kIOError/kResourceExhausted for system errors.
  static Result<OpenedWal> open(const std::string& dir, const WalOptions& options = {});

  Wal(Wal&&) = default;
  Wal& operator=(Wal&&) = default;

  // Appends `entries` (consecutive indexes), then `hard_state` when given. kInvalidArgument,
  // with nothing written, when the records would break a rule of kvc-wal(5): a gap, a batch
  // that is not consecutive, a rewrite at or below the commit index or the snapshot marker, a
  // term going back, a commit past the last index.
  Status append(const std::optional<raft::HardState>& hard_state,
                std::span<const raft::Entry> entries);
  // Makes everything appended so far durable with one fdatasync (none when nothing is new).
  Status sync();
  // Appends a snapshot marker. meta.index must not go back. A marker at or past the last index
  // makes the log continue at meta.index + 1 (an installed snapshot replaces the log).
  Status save_snapshot(const raft::SnapshotMeta& meta);
  // Deletes the oldest segments whose entries all lie below `index` (never the segment being
  // written). `index` may be at most the synced snapshot marker's index + 1
  // (kFailedPrecondition otherwise). Each deletion is made durable with a directory fsync.
  Status release_to(std::uint64_t index);
  // True when release_to(index) would delete a segment now (given a synced marker covering it).
  bool can_release(std::uint64_t index) const {
    return segments_.size() > 1 && segments_.front().max_index < index;
  }

  // The log as appended (not necessarily synced).
  const LogState& log() const { return log_; }
  std::uint64_t last_index() const { return log_.last_index; }
  std::size_t segment_count() const { return segments_.size(); }
  // Bytes the log occupies in its segments: headers and records written, not the zeros the
  // segment files are preallocated with (kvc-ctl status "WAL"). The only call that is safe
  // from any thread, concurrently with the others.
  std::uint64_t bytes_used() const { return bytes_used_->load(std::memory_order_relaxed); }
  const std::string& dir() const { return dir_; }
  // ok until a sync failure (or a write failure that could not be undone) stopped the log.
  const Status& failure() const { return failure_; }

 private:
  struct Segment {
    std::uint64_t seq = 0;
    std::uint64_t first_index = 0;
    std::string path;
    std::uint64_t max_index = 0;   // highest entry index written to it; 0 when none
    std::uint64_t used_bytes = 0;  // header and records (the active segment's is offset_)
  };

  Wal(std::string dir, WalOptions options) : dir_(std::move(dir)), options_(options) {}

  // Checks the records (a marker, entries, a hard state, in that order; each optional) against
  // the rules, then writes them at the end of the active segment with one write, rotating first
  // when they do not fit.
  Status write_records(const raft::SnapshotMeta* marker, std::span<const raft::Entry> entries,
                       const std::optional<raft::HardState>& hard_state);
  // Syncs the active segment, then creates and switches to a new one big enough for `need`
  // more bytes.
  Status rotate(std::uint64_t need);
  Status create_segment(std::uint64_t seq, std::uint64_t first_index, std::uint64_t need);
  // Removes what a failed write of `bytes` at offset_ may have left, durably.
  Status undo_write(std::uint64_t bytes);
  // Records a fatal error: every later call returns it.
  Status fail(Status s);
  // Stores the bytes the segments hold for bytes_used().
  void publish_bytes_used();

  std::string dir_;
  WalOptions options_;
  std::vector<Segment> segments_;  // oldest first; the last one is the active segment
  UniqueFd fd_;                    // the active segment
  std::uint32_t salt_ = 0;         // the active segment's salt
  // Invariant: kSegmentHeaderBytes <= offset_ <= capacity_; offset_ is where the next record
  // goes and everything in [offset_, capacity_) is zero.
  std::uint64_t offset_ = 0;
  std::uint64_t capacity_ = 0;
  bool unsynced_ = false;  // something was written since the last sync
  LogState log_;           // as appended
  // The newest snapshot marker known durable (synced); release_to is bounded by it.
  std::optional<raft::SnapshotMeta> durable_snapshot_;
  Status failure_;
  std::string scratch_;  // encoding buffer, reused
  // What bytes_used() returns; behind a pointer so that the Wal stays movable.
  std::unique_ptr<std::atomic<std::uint64_t>> bytes_used_ =
      std::make_unique<std::atomic<std::uint64_t>>(0);
};

struct OpenedWal {
  Wal wal;
  RecoveredLog log;
};

}  // namespace kvc::storage
