#include "kvc/storage/state_format.h"

#include "kvc/common/coding.h"
#include "kvc/common/crc32c.h"
#include "kvc/common/text.h"
#include "kvc/storage/command.h"
#include "kvc/storage/state_mutation.h"
#include "kvc/storage/tool_util.h"

namespace kvc::storage {
namespace {

std::uint32_t record_crc(StateDb db, std::string_view key, std::string_view body) {
  // The tag and the key's length first: a record cannot verify in another database or under a
  // key that only shares a prefix with its own.
  unsigned char head[1 + 10];  // the tag, then the key's length as a varint (at most 10 bytes)
  std::size_t n = 0;
  head[n++] = static_cast<unsigned char>(db);
  for (std::uint64_t len = key.size();; len >>= 7) {
    head[n++] = static_cast<unsigned char>((len & 0x7f) | (len >= 0x80 ? 0x80 : 0));
    if (len < 0x80) break;
  }
  std::uint32_t crc = crc32c::value(head, n);
  crc = crc32c::extend(crc, key.data(), key.size());
  return crc32c::extend(crc, body.data(), body.size());
}

}  // namespace

std::string_view state_db_name(StateDb db) {
  switch (db) {
    case StateDb::kKv:
      return "kv";
    case StateDb::kEvents:
      return "events";
    case StateDb::kMeta:
      return "meta";
    case StateDb::kLeases:
      return "leases";
  }
  return "unknown";
}

std::string_view record_problem_name(RecordProblem p) {
  switch (p) {
    case RecordProblem::kNone:
      return "ok";
    case RecordProblem::kChecksum:
      return "checksum mismatch";
    case RecordProblem::kMalformed:
      return "malformed record";
    case RecordProblem::kMisplaced:
      return "out of place in the key order (a damaged key or branch page)";
  }
  return "unknown";
}

void seal_record(std::string& out, StateDb db, std::string_view key, std::string_view body) {
  out.resize(kRecordCrcBytes);
  out.append(body);
  store_u32_le(out.data(), crc32c::mask(record_crc(db, key, body)));
}

std::string seal_record(StateDb db, std::string_view key, std::string_view body) {
  std::string out;
  seal_record(out, db, key, body);
  return out;
}

std::optional<std::string_view> unseal_record(StateDb db, std::string_view key,
                                              std::string_view stored) {
  if (stored.size() < kRecordCrcBytes) return std::nullopt;
  const std::string_view body = stored.substr(kRecordCrcBytes);
  if (KVC_STATE_MUTATED(kReadsSkipChecksum)) return body;
  if (crc32c::unmask(get_u32_le(stored.data())) != record_crc(db, key, body)) return std::nullopt;
  return body;
}

void encode_kv_record(std::string& out, std::string_view key, std::string_view value,
                      std::uint64_t create_revision, std::uint64_t mod_revision,
                      std::uint64_t version) {
  out.assign(kRecordCrcBytes, '\0');
  out.reserve(kRecordCrcBytes + value.size() + 12);
  put_varint(out, create_revision);
  put_varint(out, mod_revision);
  put_varint(out, version);
  out.append(value);
  const std::string_view body = std::string_view(out).substr(kRecordCrcBytes);
  store_u32_le(out.data(), crc32c::mask(record_crc(StateDb::kKv, key, body)));
}

RecordProblem decode_kv_record(std::string_view key, std::string_view stored, KeyValue& kv,
                               bool with_value) {
  std::optional<std::string_view> body = unseal_record(StateDb::kKv, key, stored);
  if (!body) return RecordProblem::kChecksum;
  std::string_view in = *body;
  if (!get_varint(in, kv.create_revision) || !get_varint(in, kv.mod_revision) ||
      !get_varint(in, kv.version)) {
    return RecordProblem::kMalformed;
  }
  kv.key.assign(key.data(), key.size());
  if (with_value) {
    kv.value.assign(in.data(), in.size());
  } else {
    kv.value.clear();
  }
  return RecordProblem::kNone;
}

std::string event_key(std::uint64_t revision, std::uint32_t sequence) {
  std::string k(kEventKeyBytes, '\0');
  store_u64_be(k.data(), revision);
  store_u32_be(k.data() + 8, sequence);
  return k;
}

bool parse_event_key(std::string_view k, std::uint64_t& revision, std::uint32_t& sequence) {
  if (k.size() != kEventKeyBytes) return false;
  revision = get_u64_be(k.data());
  sequence = get_u32_be(k.data() + 8);
  return true;
}

void encode_event_record(std::string& out, std::string_view key, const Event& e) {
  out.assign(kRecordCrcBytes, '\0');
  out.reserve(kRecordCrcBytes + e.key.size() + e.value.size() + 24);
  // The previous value is stored whenever the key existed before (its absence is what
  // prev_mod_revision 0 says).
  const bool prev = e.prev_mod_revision != 0;
  out += static_cast<char>(static_cast<std::uint8_t>(e.type) | (prev ? 0x80 : 0));
  // A delete's own create revision and version are 0: its slots hold the deleted key's instead.
  const bool del = e.type == EventType::kDelete;
  put_varint(out, del ? e.prev_create_revision : e.create_revision);
  put_varint(out, del ? e.prev_version : e.version);
  put_varint(out, e.prev_mod_revision);
  put_varint(out, e.key.size());
  out += e.key;
  if (prev) put_string(out, e.prev_value);
  out += e.value;
  const std::string_view body = std::string_view(out).substr(kRecordCrcBytes);
  store_u32_le(out.data(), crc32c::mask(record_crc(StateDb::kEvents, key, body)));
}

RecordProblem decode_event_record(std::string_view key, std::string_view stored, Event& e) {
  std::optional<std::string_view> body = unseal_record(StateDb::kEvents, key, stored);
  if (!body) return RecordProblem::kChecksum;
  std::string_view in = *body;
  if (!parse_event_key(key, e.revision, e.sequence) || in.empty()) return RecordProblem::kMalformed;
  const auto t = static_cast<std::uint8_t>(in[0] & 0x7f);
  const bool has_prev = (static_cast<std::uint8_t>(in[0]) & 0x80) != 0;
  if (t != 1 && t != 2) return RecordProblem::kMalformed;
  e.type = static_cast<EventType>(t);
  in.remove_prefix(1);
  std::uint64_t n = 0;
  if (!get_varint(in, e.create_revision) || !get_varint(in, e.version) ||
      !get_varint(in, e.prev_mod_revision) || !get_varint(in, n) || n > in.size()) {
    return RecordProblem::kMalformed;
  }
  e.key.assign(in.data(), static_cast<std::size_t>(n));
  in.remove_prefix(static_cast<std::size_t>(n));
  e.prev_value.clear();
  if (has_prev && !get_string(in, e.prev_value)) return RecordProblem::kMalformed;
  e.value.assign(in.data(), in.size());
  if (e.type == EventType::kDelete) {
    e.prev_create_revision = has_prev ? e.create_revision : 0;
    e.prev_version = has_prev ? e.version : 0;
    e.create_revision = 0;
    e.version = 0;
  } else {
    e.prev_create_revision = has_prev ? e.create_revision : 0;
    e.prev_version = has_prev && e.version > 0 ? e.version - 1 : 0;
  }
  return RecordProblem::kNone;
}

std::string lease_key(std::uint64_t id) {
  std::string k(kLeaseKeyBytes, '\0');
  store_u64_be(k.data(), id);
  return k;
}

bool parse_lease_key(std::string_view key, std::uint64_t& id) {
  if (key.size() != kLeaseKeyBytes) return false;
  id = get_u64_be(key.data());
  return true;
}

void encode_lease_record(std::string& out, const Lease& lease) {
  std::string body;
  put_varint(body, lease.ttl);
  put_varint(body, lease.granted_index);
  put_varint(body, lease.keys.size());
  for (const std::string& k : lease.keys) put_string(body, k);
  seal_record(out, StateDb::kLeases, lease_key(lease.id), body);
}

RecordProblem decode_lease_record(std::string_view key, std::string_view stored, Lease& lease) {
  std::optional<std::string_view> body = unseal_record(StateDb::kLeases, key, stored);
  if (!body) return RecordProblem::kChecksum;
  std::string_view in = *body;
  std::uint64_t n = 0;
  if (!parse_lease_key(key, lease.id) || !get_varint(in, lease.ttl) ||
      !get_varint(in, lease.granted_index) || !get_varint(in, n) || n > in.size()) {
    return RecordProblem::kMalformed;
  }
  lease.keys.assign(static_cast<std::size_t>(n), std::string());
  for (std::size_t i = 0; i < lease.keys.size(); ++i) {
    if (!get_string(in, lease.keys[i]) || (i > 0 && !(lease.keys[i - 1] < lease.keys[i]))) {
      return RecordProblem::kMalformed;
    }
  }
  return in.empty() ? RecordProblem::kNone : RecordProblem::kMalformed;
}

std::string u64_bytes(std::uint64_t v) { return u64_le_bytes(v); }

bool parse_u64(std::string_view s, std::uint64_t& v) {
  if (s.size() != 8) return false;
  v = get_u64_le(s.data());
  return true;
}

std::string record_name(StateDb db, std::string_view key) {
  switch (db) {
    case StateDb::kKv:
      return "key " + text_value(key);
    case StateDb::kEvents: {
      std::uint64_t rev = 0;
      std::uint32_t seq = 0;
      if (parse_event_key(key, rev, seq)) {
        return "event " + std::to_string(rev) + "/" + std::to_string(seq);
      }
      return "event with the malformed key " + text_value(key);
    }
    case StateDb::kMeta:
      return "meta field " + text_value(key);
    case StateDb::kLeases: {
      std::uint64_t id = 0;
      if (parse_lease_key(key, id)) return "lease " + id_hex(id);
      return "lease with the malformed key " + text_value(key);
    }
  }
  return "record " + text_value(key);
}

}  // namespace kvc::storage
