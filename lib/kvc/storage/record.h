// One write-ahead-log record: its framing (a 12-byte header with a salted, masked CRC32C, then
// the payload) and the payloads of the three record kinds: a Raft log entry, a hard state and a
// snapshot marker. This is an on-disk format, specified in kvc-wal(5), "RECORDS": change it only
// with a new format version (segment.h). It does not know about segments or files; segment.h
// frames records into files and wal_reader.h applies the log's index rules. Pure functions on
// values; thread-safe.
//
//   offset 0   u32  masked crc32c (crc32c::mask) of: salt (u32) | bytes 4..11 | payload
//   offset 4   u32  payload length in bytes
//   offset 8   u8   type: 1 entry, 2 hard state, 3 snapshot marker (0 is never written)
//   offset 9   u8[3] zero
//   offset 12  payload
// All integers are little-endian. A header of twelve zero bytes is "no record here".
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"

namespace kvc::storage {

enum class RecordType : std::uint8_t {
  kEntry = 1,      // u64 index | u64 term | u8 entry type | data (the rest)
  kHardState = 2,  // u64 term | u64 vote | u64 commit
  kSnapshot = 3,   // u64 index | u64 term | u32 n | n x u64 voter | u32 m | m x u64 learner
};

inline constexpr std::size_t kRecordHeaderBytes = 12;
// Larger payloads are refused by the writer and treated as damage by readers, so a damaged
// length field cannot make a reader allocate gigabytes.
inline constexpr std::uint32_t kMaxRecordPayloadBytes = 256u << 20;
inline constexpr std::size_t kEntryPayloadFixedBytes = 17;
inline constexpr std::size_t kHardStatePayloadBytes = 24;
inline constexpr std::size_t kSnapshotPayloadMinBytes = 24;

// "entry", "hard_state", "snapshot" (the names kvc-wal prints and --type accepts).
std::string_view record_type_name(RecordType type);
bool is_known_record_type(std::uint8_t type);

// A decoded record; `type` says which one of the values is meaningful.
struct Record {
  RecordType type = RecordType::kEntry;
  raft::Entry entry;
  raft::HardState hard_state;
  raft::SnapshotMeta snapshot;

  static Record of(raft::Entry e);
  static Record of(const raft::HardState& hs);
  static Record of(raft::SnapshotMeta meta);
};

// The payload bytes of a record.
std::string encode_payload(const Record& record);
// Appends the whole framed record (header and payload) for a segment with `salt` to `out`.
void append_record(std::string& out, std::uint32_t salt, const Record& record);
// The same for an entry record, without copying the entry into a Record first.
void append_entry_record(std::string& out, std::uint32_t salt, const raft::Entry& entry);
// The framed size of `record` without encoding it.
std::size_t framed_size(const Record& record);

// Parses a payload of the given type. Fails with kCorruption (naming what is wrong) on a wrong
// length, an unknown entry type or a membership count that does not match the length.
Result<Record> decode_payload(RecordType type, std::string_view payload);

// Why the bytes at a record position are not a record.
enum class RecordCheck : std::uint8_t {
  kOk,
  kZero,         // twelve zero bytes: nothing was ever written here
  kTruncated,    // the header or the payload runs past the end of the data
  kBadHeader,    // unknown type, non-zero reserved bytes, or a length out of range
  kBadChecksum,  // the CRC does not match
  kBadPayload,   // the CRC matches but the payload does not decode (a writer bug)
};
std::string_view record_check_name(RecordCheck check);

struct RecordHeader {
  std::uint32_t masked_crc = 0;
  std::uint32_t length = 0;
  std::uint8_t type = 0;
  bool reserved_zero = true;
};
// `p` points at kRecordHeaderBytes bytes.
RecordHeader parse_record_header(const char* p);
bool is_zero(std::string_view bytes);

// The value stored in the header's CRC field for `header` bytes 4..11 and `payload`.
std::uint32_t record_crc(std::uint32_t salt, const char* header, std::string_view payload);

// Checks a header alone: known type, zero reserved bytes, a length that fits the type and
// kMaxRecordPayloadBytes. kZero for twelve zero bytes.
RecordCheck check_header(const RecordHeader& h, const char* raw);

// Checks and decodes the record whose header and payload are `bytes` (exactly framed size;
// the caller has read `length` from the header). On kOk fills `out`; on kBadPayload fills
// `why` with the decoder's message.
RecordCheck check_record(std::uint32_t salt, std::string_view bytes, Record* out, std::string* why);

}  // namespace kvc::storage
