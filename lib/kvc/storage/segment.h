// WAL segment files: the 40-byte segment header, the file names, and a scanner that walks the
// records of one segment and, where the records stop, tells a clean end (only zeros follow: the
// preallocated space) from damage, and for damage whether any valid record of this segment
// follows it. The format is specified in kvc-wal(5), "SEGMENTS"; the log's index rules are
// applied one level up, in wal_reader.h. Sources and scanners are not thread-safe; the free
// functions are.
//
//   offset 0   8 bytes  magic "\x89KVCWAL\n"
//   offset 8   u32      format version (1)
//   offset 12  u32      salt: a random value mixed into every record CRC of this segment
//   offset 16  u64      sequence number (1, 2, 3, ... in creation order)
//   offset 24  u64      first index: the log's last index + 1 when the segment was created
//   offset 32  u32      zero
//   offset 36  u32      masked crc32c of bytes 0..35
//   offset 40  records, back to back; then zeros to the end of the (preallocated) file
//
// File name: "<seq as 16 hex digits>-<first index as 16 hex digits>.wal"; a segment being
// created is "<name>.tmp" until it is complete and synced.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/record.h"

namespace kvc::storage {

inline constexpr char kSegmentMagic[8] = {'\x89', 'K', 'V', 'C', 'W', 'A', 'L', '\n'};
inline constexpr std::uint32_t kWalFormatVersion = 1;
inline constexpr std::size_t kSegmentHeaderBytes = 40;
inline constexpr std::uint64_t kDefaultSegmentBytes = 64u << 20;
inline constexpr std::string_view kSegmentSuffix = ".wal";
inline constexpr std::string_view kTempSuffix = ".tmp";

struct SegmentHeader {
  std::uint32_t version = kWalFormatVersion;
  std::uint32_t salt = 0;
  std::uint64_t seq = 0;
  std::uint64_t first_index = 0;

  friend bool operator==(const SegmentHeader&, const SegmentHeader&) = default;
};

std::string encode_segment_header(const SegmentHeader& h);
// Fails with kCorruption naming the problem (short, bad magic, bad checksum, unknown version).
Result<SegmentHeader> decode_segment_header(std::string_view bytes);

std::string segment_file_name(std::uint64_t seq, std::uint64_t first_index);
// True when `name` is exactly a segment file name; fills seq and first index.
bool parse_segment_file_name(std::string_view name, std::uint64_t* seq, std::uint64_t* first_index);

// Random bits for a new segment's salt (getrandom, else a clock and pid mix).
std::uint32_t random_salt();

// Read access to the bytes of one segment. read() returns up to `n` bytes at `offset` (fewer
// only at the end of the data); the view stays valid until the next call.
class ByteSource {
 public:
  virtual ~ByteSource() = default;
  virtual std::uint64_t size() const = 0;
  virtual Result<std::string_view> read(std::uint64_t offset, std::size_t n) = 0;
};

class MemorySource final : public ByteSource {
 public:
  explicit MemorySource(std::string_view bytes) : bytes_(bytes) {}
  std::uint64_t size() const override { return bytes_.size(); }
  Result<std::string_view> read(std::uint64_t offset, std::size_t n) override;

 private:
  std::string_view bytes_;
};

// Reads a file through a window buffer (pread), so sequential scans cost few system calls and a
// read error is a Status, never a signal (which an mmap could raise).
class FileSource final : public ByteSource {
 public:
  static Result<FileSource> open(const std::string& path);
  std::uint64_t size() const override { return size_; }
  Result<std::string_view> read(std::uint64_t offset, std::size_t n) override;
  const std::string& path() const { return path_; }

 private:
  FileSource(std::string path, UniqueFd fd, std::uint64_t size)
      : path_(std::move(path)), fd_(std::move(fd)), size_(size) {}

  std::string path_;
  UniqueFd fd_;
  std::uint64_t size_ = 0;  // at open; a live writer only writes inside the preallocated size
  std::string window_;
  std::uint64_t window_offset_ = 0;
};

// The first whole, valid record (right salt and CRC, decodable) starting at an offset in
// [from, limit), found by trying every byte offset; fills `out` and `bytes` (its framed size).
// Used to tell corruption (something valid follows the damage) from a torn tail, and by repair
// to list what a cut loses.
Result<std::optional<std::uint64_t>> find_valid_record(ByteSource& source, std::uint32_t salt,
                                                       std::uint64_t from, std::uint64_t limit,
                                                       Record* out, std::uint32_t* bytes);
// One past the last non-zero byte at or after `from`; `from` when there is none.
Result<std::uint64_t> nonzero_end(ByteSource& source, std::uint64_t from);

// Where and how the whole records of a segment end.
struct SegmentEnd {
  bool clean = true;                      // only zero bytes (or nothing) after `offset`
  std::uint64_t offset = 0;               // one past the last whole record
  RecordCheck reason = RecordCheck::kOk;  // why the bytes at `offset` are no record (damage)
  std::string detail;                     // the decoder's message for kBadPayload
  std::uint64_t nonzero_end = 0;  // one past the last non-zero byte (damage, no valid record after)
  // A whole, valid record of this segment after the damage: the damage is not a torn tail.
  std::optional<std::uint64_t> valid_after;
  Record valid_after_record;
};

// Walks one segment: read_header(), then next() until it returns false, then end().
class SegmentScanner {
 public:
  explicit SegmentScanner(ByteSource& source) : source_(source) {}

  Result<SegmentHeader> read_header();
  // The next whole record and where it is; false at the end of the records.
  Result<bool> next(Record& out, std::uint64_t& offset, std::uint32_t& bytes);
  const SegmentEnd& end() const { return end_; }
  std::uint64_t position() const { return pos_; }

 private:
  // Fills end_ for the stop at pos_ (reason kZero: a zero header, maybe garbage after it).
  Status finish(RecordCheck reason, std::string detail);

  ByteSource& source_;
  SegmentHeader header_;
  std::uint64_t pos_ = 0;
  bool done_ = false;
  SegmentEnd end_;
};

}  // namespace kvc::storage
