#include "kvc/storage/record.h"

#include "kvc/common/coding.h"
#include "kvc/common/crc32c.h"
#include "kvc/storage/wal_mutation.h"

namespace kvc::storage {
namespace {

std::size_t payload_size(const Record& r) {
  switch (r.type) {
    case RecordType::kEntry:
      return kEntryPayloadFixedBytes + r.entry.data.size();
    case RecordType::kHardState:
      return kHardStatePayloadBytes;
    case RecordType::kSnapshot:
      return kSnapshotPayloadMinBytes +
             8 * (r.snapshot.conf.voters.size() + r.snapshot.conf.learners.size());
  }
  return 0;
}

std::size_t min_payload(std::uint8_t type) {
  switch (type) {
    case 1:
      return kEntryPayloadFixedBytes;
    case 2:
      return kHardStatePayloadBytes;
    case 3:
      return kSnapshotPayloadMinBytes;
    default:
      return 0;
  }
}

}  // namespace

std::string_view record_type_name(RecordType type) {
  switch (type) {
    case RecordType::kEntry:
      return "entry";
    case RecordType::kHardState:
      return "hard_state";
    case RecordType::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

bool is_known_record_type(std::uint8_t type) { return type >= 1 && type <= 3; }

Record Record::of(raft::Entry e) {
  Record r;
  r.type = RecordType::kEntry;
  r.entry = std::move(e);
  return r;
}
Record Record::of(const raft::HardState& hs) {
  Record r;
  r.type = RecordType::kHardState;
  r.hard_state = hs;
  return r;
}
Record Record::of(raft::SnapshotMeta meta) {
  Record r;
  r.type = RecordType::kSnapshot;
  r.snapshot = std::move(meta);
  return r;
}

std::string encode_payload(const Record& r) {
  std::string out;
  out.reserve(payload_size(r));
  switch (r.type) {
    case RecordType::kEntry:
      put_u64_le(out, r.entry.index);
      put_u64_le(out, r.entry.term);
      out += static_cast<char>(r.entry.type);
      out += r.entry.data;
      break;
    case RecordType::kHardState:
      put_u64_le(out, r.hard_state.term);
      put_u64_le(out, r.hard_state.vote);
      put_u64_le(out, r.hard_state.commit);
      break;
    case RecordType::kSnapshot:
      put_u64_le(out, r.snapshot.index);
      put_u64_le(out, r.snapshot.term);
      put_u32_le(out, static_cast<std::uint32_t>(r.snapshot.conf.voters.size()));
      for (const raft::NodeId id : r.snapshot.conf.voters) put_u64_le(out, id);
      put_u32_le(out, static_cast<std::uint32_t>(r.snapshot.conf.learners.size()));
      for (const raft::NodeId id : r.snapshot.conf.learners) put_u64_le(out, id);
      break;
  }
  return out;
}

std::size_t framed_size(const Record& record) { return kRecordHeaderBytes + payload_size(record); }

std::uint32_t record_crc(std::uint32_t salt, const char* header, std::string_view payload) {
  char salt_bytes[4];
  store_u32_le(salt_bytes, salt);
  std::uint32_t crc = crc32c::value(salt_bytes, sizeof salt_bytes);
  crc = crc32c::extend(crc, header + 4, kRecordHeaderBytes - 4);
  crc = crc32c::extend(crc, payload.data(), payload.size());
  return crc32c::mask(crc);
}

namespace {

// Appends a header with a zero CRC and returns where it starts; seal() fills the CRC once the
// payload follows it in `out`.
std::size_t begin_record(std::string& out, RecordType type, std::size_t payload_bytes) {
  KVC_CHECK(payload_bytes <= kMaxRecordPayloadBytes, "record payload over the format's limit");
  const std::size_t start = out.size();
  put_u32_le(out, 0);
  put_u32_le(out, static_cast<std::uint32_t>(payload_bytes));
  out += static_cast<char>(type);
  out.append(3, '\0');
  return start;
}

void seal(std::string& out, std::uint32_t salt, std::size_t start) {
  const std::string_view payload = std::string_view(out).substr(start + kRecordHeaderBytes);
  const std::uint32_t crc = record_crc(salt, out.data() + start, payload);
  store_u32_le(out.data() + start, crc);
}

}  // namespace

void append_record(std::string& out, std::uint32_t salt, const Record& record) {
  if (record.type == RecordType::kEntry) {
    append_entry_record(out, salt, record.entry);
    return;
  }
  const std::size_t start = begin_record(out, record.type, payload_size(record));
  out += encode_payload(record);
  seal(out, salt, start);
}

void append_entry_record(std::string& out, std::uint32_t salt, const raft::Entry& e) {
  const std::size_t start =
      begin_record(out, RecordType::kEntry, kEntryPayloadFixedBytes + e.data.size());
  put_u64_le(out, e.index);
  put_u64_le(out, e.term);
  out += static_cast<char>(e.type);
  out += e.data;
  seal(out, salt, start);
}

Result<Record> decode_payload(RecordType type, std::string_view p) {
  Record r;
  r.type = type;
  switch (type) {
    case RecordType::kEntry: {
      if (p.size() < kEntryPayloadFixedBytes) {
        return Status::corruption("entry payload of " + std::to_string(p.size()) + " bytes");
      }
      r.entry.index = get_u64_le(p.data());
      r.entry.term = get_u64_le(p.data() + 8);
      const auto et = static_cast<std::uint8_t>(p[16]);
      if (et > 1) return Status::corruption("unknown entry type " + std::to_string(et));
      r.entry.type = static_cast<raft::EntryType>(et);
      r.entry.data.assign(p.substr(kEntryPayloadFixedBytes));
      if (r.entry.index == 0 || r.entry.index == UINT64_MAX) {
        return Status::corruption("entry index " + std::to_string(r.entry.index) + " out of range");
      }
      return r;
    }
    case RecordType::kHardState:
      if (p.size() != kHardStatePayloadBytes) {
        return Status::corruption("hard state payload of " + std::to_string(p.size()) + " bytes");
      }
      r.hard_state.term = get_u64_le(p.data());
      r.hard_state.vote = get_u64_le(p.data() + 8);
      r.hard_state.commit = get_u64_le(p.data() + 16);
      return r;
    case RecordType::kSnapshot: {
      if (p.size() < kSnapshotPayloadMinBytes) {
        return Status::corruption("snapshot payload of " + std::to_string(p.size()) + " bytes");
      }
      r.snapshot.index = get_u64_le(p.data());
      r.snapshot.term = get_u64_le(p.data() + 8);
      if (r.snapshot.index == UINT64_MAX) return Status::corruption("snapshot index out of range");
      std::size_t pos = 16;
      const std::uint64_t voters = get_u32_le(p.data() + pos);
      pos += 4;
      if (voters > (p.size() - pos) / 8)
        return Status::corruption("snapshot voter count too large");
      for (std::uint64_t i = 0; i < voters; ++i, pos += 8) {
        r.snapshot.conf.voters.push_back(get_u64_le(p.data() + pos));
      }
      if (p.size() - pos < 4) return Status::corruption("snapshot payload ends before learners");
      const std::uint64_t learners = get_u32_le(p.data() + pos);
      pos += 4;
      if (learners != (p.size() - pos) / 8 || (p.size() - pos) % 8 != 0) {
        return Status::corruption("snapshot learner count does not match the payload length");
      }
      for (std::uint64_t i = 0; i < learners; ++i, pos += 8) {
        r.snapshot.conf.learners.push_back(get_u64_le(p.data() + pos));
      }
      return r;
    }
  }
  return Status::corruption("unknown record type");
}

std::string_view record_check_name(RecordCheck check) {
  switch (check) {
    case RecordCheck::kOk:
      return "ok";
    case RecordCheck::kZero:
      return "zero header";
    case RecordCheck::kTruncated:
      return "truncated record";
    case RecordCheck::kBadHeader:
      return "bad record header";
    case RecordCheck::kBadChecksum:
      return "checksum mismatch";
    case RecordCheck::kBadPayload:
      return "undecodable payload";
  }
  return "unknown";
}

RecordHeader parse_record_header(const char* p) {
  RecordHeader h;
  h.masked_crc = get_u32_le(p);
  h.length = get_u32_le(p + 4);
  h.type = static_cast<std::uint8_t>(p[8]);
  h.reserved_zero = p[9] == 0 && p[10] == 0 && p[11] == 0;
  return h;
}

bool is_zero(std::string_view bytes) {
  for (const char c : bytes) {
    if (c != 0) return false;
  }
  return true;
}

RecordCheck check_header(const RecordHeader& h, const char* raw) {
  if (is_zero(std::string_view(raw, kRecordHeaderBytes))) return RecordCheck::kZero;
  if (!is_known_record_type(h.type) || !h.reserved_zero) return RecordCheck::kBadHeader;
  if (h.length < min_payload(h.type) || h.length > kMaxRecordPayloadBytes) {
    return RecordCheck::kBadHeader;
  }
  if (h.type == 2 && h.length != kHardStatePayloadBytes) return RecordCheck::kBadHeader;
  return RecordCheck::kOk;
}

RecordCheck check_record(std::uint32_t salt, std::string_view bytes, Record* out,
                         std::string* why) {
  if (bytes.size() < kRecordHeaderBytes) return RecordCheck::kTruncated;
  const RecordHeader h = parse_record_header(bytes.data());
  const RecordCheck hc = check_header(h, bytes.data());
  if (hc != RecordCheck::kOk) return hc;
  if (bytes.size() < kRecordHeaderBytes + h.length) return RecordCheck::kTruncated;
  const std::string_view payload = bytes.substr(kRecordHeaderBytes, h.length);
  if (!KVC_WAL_MUTATED(kRecoverySkipsCrc) &&
      record_crc(salt, bytes.data(), payload) != h.masked_crc) {
    return RecordCheck::kBadChecksum;
  }
  Result<Record> r = decode_payload(static_cast<RecordType>(h.type), payload);
  if (!r.ok()) {
    if (why != nullptr) *why = r.status().message();
    return RecordCheck::kBadPayload;
  }
  if (out != nullptr) *out = std::move(*r);
  return RecordCheck::kOk;
}

}  // namespace kvc::storage
