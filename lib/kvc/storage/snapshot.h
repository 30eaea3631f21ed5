// Snapshot files: a whole state at one applied index, as a stream of checksummed blocks
// (format: kvc-snap(5)). The writer streams records into a temporary file and makes it durable
// under its final name (write path.tmp, fsync, rename, fsync the directory); the reader
// streams them back, verifying every block, and tells a truncated file (it ends early: a copy
// or transfer was cut short) from a corrupt one (bytes changed). Neither holds more than one
// block in memory. Also: the snapshot directory's naming, listing and pruning (newest N kept),
// and raw chunk reads for shipping a snapshot to a lagging follower.
//
// Layout, all integers little-endian, CRCs masked CRC32C (kvc/common/crc32c.h):
//   prologue  8-byte magic 89 4b 56 43 53 4e 41 50 ("\x89KVCSNAP"), u32 version (1, or 2
//             when the state has leases), u32 crc of the 12 bytes before
//   blocks    16-byte header: u8 type, 3 zero bytes, u32 payload length, u32 payload crc,
//             u32 crc of the header's first 12 bytes; then the payload.
//             type 1 meta (exactly one, first), type 2 records (any number), type 4 leases
//             (version 2 only: after every records block), type 3 trailer (exactly one, last;
//             nothing may follow it)
//   meta      varint index, term, revision, created_unix_ms, membership length; membership
//             (membership.h); version 2: varint lease count; a reader ignores bytes after
//             these (later additions)
//   records   back to back: varint key length, key, varint value length, value,
//             varint create_revision, mod_revision, version; keys strictly ascending
//   leases    back to back: varint id, ttl, granted index, key count, then each key as varint
//             length + bytes; ids strictly ascending, keys of each lease strictly ascending
//   trailer   u64 record count, u64 offset of the trailer block, u32 crc of every byte of the
//             file before the trailer block (20 bytes)
//
// Thread-safety: a SnapshotWriter or SnapshotReader is used by one thread at a time; different
// objects (even on the same file, for readers) are independent. The directory functions are
// safe to call concurrently except that one snapshot directory has one writer at a time.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/state_types.h"

namespace kvc::storage {

// The newest format version; a state without leases is still written as version 1, so that
// older kvc versions can read it.
inline constexpr std::uint32_t kSnapshotVersion = 2;
inline constexpr std::string_view kSnapshotMagic{"\x89KVCSNAP", 8};
inline constexpr std::size_t kSnapshotPrologueBytes = 16;
inline constexpr std::size_t kSnapshotBlockHeaderBytes = 16;
inline constexpr std::size_t kSnapshotTrailerPayloadBytes = 20;
// A records block is closed once its payload reaches this size.
inline constexpr std::size_t kSnapshotBlockTargetBytes = 64 * 1024;
// No block payload may exceed this (a reader refuses larger ones as corrupt). One record must
// fit: the state refuses values above kMaxValueBytes, so it always does.
inline constexpr std::size_t kSnapshotMaxBlockBytes = 128u << 20;
// Snapshots kept in DATA_DIR/snap by default.
inline constexpr std::size_t kDefaultSnapshotsKept = 3;

enum class SnapshotBlockType : std::uint8_t { kMeta = 1, kRecords = 2, kTrailer = 3, kLeases = 4 };

// What the meta block says: the state a snapshot holds.
struct SnapshotHeader {
  std::uint64_t index = 0;            // the last applied index the state covers
  std::uint64_t term = 0;             // the term of that entry
  std::uint64_t revision = 0;         // the highest revision that changed a key (<= index)
  std::uint64_t created_unix_ms = 0;  // wall clock when written (informational)
  Membership membership;              // as of `index`
  std::uint64_t lease_count = 0;      // leases the file holds (version 2; 0 in version 1)

  raft::SnapshotMeta meta() const { return {index, term, membership.to_conf_state()}; }
  friend bool operator==(const SnapshotHeader&, const SnapshotHeader&) = default;
};

// A snapshot file as written or verified.
struct SnapshotInfo {
  std::string path;
  SnapshotHeader header;
  std::uint64_t record_count = 0;
  std::uint64_t size_bytes = 0;
  std::uint32_t file_crc = 0;  // the trailer's checksum (unmasked)
};

// Writes one snapshot file. Usage: create, add every key in ascending order, finish. Destroying
// an unfinished writer removes its temporary file.
class SnapshotWriter {
 public:
  // Creates (replacing a stale one) `path`.tmp and writes the prologue and the meta block.
  // Records blocks close once they reach `block_target` bytes (smaller in tests, to get many).
  static Result<std::unique_ptr<SnapshotWriter>> create(
      const std::string& path, const SnapshotHeader& header,
      std::size_t block_target = kSnapshotBlockTargetBytes);
  ~SnapshotWriter();
  SnapshotWriter(const SnapshotWriter&) = delete;
  SnapshotWriter& operator=(const SnapshotWriter&) = delete;

  // Keys must be strictly ascending and records well formed (kInvalidArgument otherwise: the
  // source state is damaged); nothing is written for a refused record.
  Status add(const KeyValue& kv);
  // After every key: the leases, ids ascending; exactly header.lease_count of them (checked by
  // finish). A lease's keys are not checked against the records.
  Status add_lease(const Lease& lease);
  // Writes the trailer, fsyncs, renames to the final path and fsyncs the directory.
  Result<SnapshotInfo> finish();
  std::uint64_t bytes_written() const { return offset_ + block_.size(); }

 private:
  SnapshotWriter(std::string path, UniqueFd fd, SnapshotHeader header, std::size_t block_target);
  Status write_block(SnapshotBlockType type, std::string_view payload);

  std::string path_;
  std::string tmp_path_;
  UniqueFd fd_;
  SnapshotHeader header_;
  std::size_t block_target_;
  std::string block_;  // the records block being filled
  std::string last_key_;
  std::uint64_t records_ = 0;
  std::uint64_t leases_ = 0;
  std::uint64_t last_lease_ = 0;
  std::uint64_t offset_ = 0;    // bytes written to the file so far
  std::uint32_t file_crc_ = 0;  // crc32c of those bytes
  bool finished_ = false;
};

// What went wrong with a snapshot file, for tools that map it to exit codes.
enum class SnapshotProblem : std::uint8_t {
  kNone = 0,
  kTruncated,    // the file ends before its trailer: cut short, every byte present is fine
  kCorrupt,      // a checksum or a structural rule failed: bytes were changed
  kUnsupported,  // a well-formed prologue with a format version this kvc does not know
};
std::string_view snapshot_problem_name(SnapshotProblem p);  // "ok", "truncated", ...

// Reads a snapshot file (or bytes in memory) as a stream of blocks.
class SnapshotReader {
 public:
  // Reads and checks the prologue and the meta block. On failure, `problem` (when given) says
  // which kind; kNotFound / kIOError failures leave it kNone.
  static Result<SnapshotReader> open(const std::string& path, SnapshotProblem* problem = nullptr);
  static Result<SnapshotReader> from_bytes(std::string bytes, SnapshotProblem* problem = nullptr);

  SnapshotReader(SnapshotReader&&) = default;
  SnapshotReader& operator=(SnapshotReader&&) = default;

  const SnapshotHeader& header() const { return header_; }
  const std::string& path() const { return path_; }
  std::uint64_t size() const { return size_; }

  // Visits every record in key order, then checks the trailer (record count, whole-file
  // checksum) and that nothing follows it. A block's records are visited only after its
  // checksum passed. Stops at the first error (a non-ok Status from `fn` is returned as is);
  // problem() then tells truncation from corruption. Each call starts from the first record.
  // `lease_fn`, when given, visits every lease (after every record); without it the leases are
  // verified and skipped.
  Status for_each(const std::function<Status(const KeyValue&)>& fn, const ProgressFn& progress = {},
                  const std::function<Status(const Lease&)>& lease_fn = {});
  // The kind of the last failure of for_each (kNone after success or an I/O or callback error).
  SnapshotProblem problem() const { return problem_; }
  // After a successful for_each: counts and checksum of the whole file.
  SnapshotInfo info() const;

  // The raw bytes [offset, offset + len), fewer at the end of the file: a chunk to send to a
  // follower. kInvalidArgument when offset is past the end.
  Result<std::string> read_chunk(std::uint64_t offset, std::size_t len) const;

 private:
  struct Block {
    SnapshotBlockType type = SnapshotBlockType::kMeta;
    std::uint64_t offset = 0;
    std::string header;  // the 16 header bytes as read
    std::string payload;
  };
  SnapshotReader() = default;
  static Result<SnapshotReader> start(SnapshotReader r, SnapshotProblem* problem);
  Result<std::string> read_at(std::uint64_t offset, std::size_t n) const;
  Status read_block(std::uint64_t offset, Block& b);
  Status parse_meta(const Block& b);
  Status parse_trailer(const Block& b);
  Status fail(SnapshotProblem p, std::uint64_t offset, const std::string& what);

  std::string path_;
  UniqueFd fd_;        // the file, or invalid when reading `bytes_`
  std::string bytes_;  // the whole input for from_bytes
  std::uint64_t size_ = 0;
  SnapshotHeader header_;
  std::uint32_t version_ = 0;
  std::uint64_t first_records_offset_ = 0;  // just after the meta block
  std::uint32_t crc_after_meta_ = 0;        // crc32c of the bytes before that
  std::uint64_t record_count_ = 0;
  std::uint32_t file_crc_ = 0;
  SnapshotProblem problem_ = SnapshotProblem::kNone;
};

// The result of checking a whole file.
struct VerifyReport {
  SnapshotProblem problem = SnapshotProblem::kNone;
  std::string message;  // empty when clean
  bool header_read = false;
  SnapshotInfo info;  // the header when read; counts and crc only when clean
};

// Reads the whole file. Fails only when it cannot be read at all (kNotFound, kIOError); what is
// wrong with its contents is in the report.
Result<VerifyReport> verify_snapshot(const std::string& path, const ProgressFn& progress = {});

// The header and the trailer's count and checksum, without reading the records (cheap: for a
// server that wants index, term and membership of a file it wrote). Does not verify the
// records; use verify_snapshot for that.
Result<SnapshotInfo> read_snapshot_info(const std::string& path);

// The snapshot directory (DATA_DIR/snap): files are named "<index>-<term>.snap" with both as 16
// lowercase hex digits, so that name order is index order.
std::string snapshot_file_name(std::uint64_t index, std::uint64_t term);
struct SnapshotFile {
  std::string path;
  std::uint64_t index = 0;
  std::uint64_t term = 0;
};
// Snapshot files in `dir`, newest (highest index) first; other names are ignored.
Result<std::vector<SnapshotFile>> list_snapshots(const std::string& dir);
// Removes all but the newest `keep` (>= 1) snapshot files, then fsyncs the directory.
Status prune_snapshots(const std::string& dir, std::size_t keep);
// Removes leftover temporary files ("*.tmp") of interrupted writes or transfers. Call at start,
// before anything writes into the directory.
Status remove_temp_snapshots(const std::string& dir);
// Verifies `file` (for instance a snapshot received in chunks, written to "<dir>/<name>.tmp"),
// fsyncs it and renames it into `dir` under its canonical name, then fsyncs `dir`. On a
// problem the file is left where it was and the Status is kCorruption.
Result<SnapshotInfo> adopt_snapshot(const std::string& file, const std::string& dir);

// The chunks of snapshot files sent to followers. Each transfer (one per receiver) reads one
// open descriptor from its first chunk to its last, so a file replaced meanwhile (a damaged one
// written again under the same name) or pruned never mixes two files' bytes into one transfer.
// A transfer takes a new descriptor when it starts again (offset 0) or moves to another file.
class SnapshotChunkSource {
 public:
  // Bytes [offset, offset + length) of the snapshot file `path` (`size` bytes in all) for
  // `receiver`; exactly `length` bytes or an error. The descriptor is closed after the chunk
  // that reaches `size`, and after an error.
  Result<std::string> read(std::uint64_t receiver, const std::string& path, std::uint64_t offset,
                           std::uint64_t length, std::uint64_t size);
  // Forgets the receiver's transfer (it ended without its last chunk).
  void end(std::uint64_t receiver) { open_.erase(receiver); }
  void end_all() { open_.clear(); }
  std::size_t open_transfers() const { return open_.size(); }

 private:
  struct Open {
    std::string path;
    UniqueFd fd;
  };
  std::map<std::uint64_t, Open> open_;
};

}  // namespace kvc::storage
