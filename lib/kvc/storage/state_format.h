// The bytes of the records the LMDB state keeps (DATA_DIR/state/gen-N/data.mdb), state format
// version 2, specified in kvc-state(5). Every stored value is sealed: a masked CRC32C over the
// database's tag byte, the key and the value's body comes first, so a flipped bit in a key, a
// value, a revision or a meta field is found when the record is read, and a record moved into
// another database or under another key does not verify. state*.cc (the state machine),
// state_check.cc (the offline check) and the tests share these functions; nothing here opens
// LMDB. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "kvc/storage/state_types.h"

namespace kvc::storage {

// Version 1 stored the same bodies without the checksum; kvc upgrades a version 1 state when it
// opens it (docs/state.md, "Format versions").
// Version 3 added the leases database (a version 2 state gains an empty one when opened).
inline constexpr std::uint32_t kStateFormatVersion = 3;
inline constexpr std::size_t kRecordCrcBytes = 4;

// The four named databases. The value of each enumerator is the tag byte its records' checksums
// start with.
enum class StateDb : char { kKv = 'k', kEvents = 'e', kMeta = 'm', kLeases = 'l' };
std::string_view state_db_name(StateDb db);  // "kv", "events", "meta", "leases"

// Why a stored record cannot be used.
enum class RecordProblem : std::uint8_t {
  kNone = 0,
  kChecksum,   // shorter than a checksum, or the checksum does not match
  kMalformed,  // the checksum matches but the body does not decode (a bug, or a v1 record)
  kMisplaced,  // not where LMDB's search for its key leads: a damaged key or branch page
};
// "checksum mismatch", "malformed record", "out of place in the key order"
std::string_view record_problem_name(RecordProblem p);

// The stored form of `body` under `key` in `db`: u32 masked crc32c (little-endian) || body. The
// CRC covers the tag byte, the key's length as a varint, the key and the body. Written to `out`
// (replacing it), so a caller can reuse one buffer.
void seal_record(std::string& out, StateDb db, std::string_view key, std::string_view body);
std::string seal_record(StateDb db, std::string_view key, std::string_view body);
// The body of a stored value whose checksum matches, or nullopt.
std::optional<std::string_view> unseal_record(StateDb db, std::string_view key,
                                              std::string_view stored);

// kv database: key = the key's bytes; body = varint create_revision, mod_revision, version, then
// the value's bytes.
void encode_kv_record(std::string& out, std::string_view key, std::string_view value,
                      std::uint64_t create_revision, std::uint64_t mod_revision,
                      std::uint64_t version);
// Checks the seal, then decodes into `kv` (its key is set too; the value only `with_value`).
RecordProblem decode_kv_record(std::string_view key, std::string_view stored, KeyValue& kv,
                               bool with_value);

// events database: key = u64 revision, u32 sequence, both big-endian (so LMDB's byte order is
// the history's order); body = u8 type (1 put, 2 delete; plus 0x80 when the previous value
// follows the key), varint create_revision, version, prev_mod_revision, varint key length, key,
// [varint previous value length, previous value,] then the value's bytes. A delete's
// create_revision and version slots hold the deleted key's (its own are 0; written as 0 before
// format 3, where the previous value was not stored either).
inline constexpr std::size_t kEventKeyBytes = 12;
std::string event_key(std::uint64_t revision, std::uint32_t sequence);
bool parse_event_key(std::string_view key, std::uint64_t& revision, std::uint32_t& sequence);
void encode_event_record(std::string& out, std::string_view key, const Event& e);
// Checks the seal, then decodes (revision and sequence come from the key).
RecordProblem decode_event_record(std::string_view key, std::string_view stored, Event& e);

// leases database (version 3): key = u64 lease id, big-endian; body = varint ttl seconds,
// varint granted index, varint key count, then each attached key as varint length + bytes, in
// ascending order.
inline constexpr std::size_t kLeaseKeyBytes = 8;
std::string lease_key(std::uint64_t id);
bool parse_lease_key(std::string_view key, std::uint64_t& id);
void encode_lease_record(std::string& out, const Lease& lease);
// Checks the seal, then decodes (the id comes from the key). Keys out of order are malformed.
RecordProblem decode_lease_record(std::string_view key, std::string_view stored, Lease& lease);

// meta database: one record per field, named by these keys. Integers are u64 little-endian
// bodies; the membership is membership.h's encoding.
inline constexpr std::string_view kMetaFormat = "format";
inline constexpr std::string_view kMetaAppliedIndex = "applied_index";
inline constexpr std::string_view kMetaAppliedTerm = "applied_term";
inline constexpr std::string_view kMetaRevision = "revision";
inline constexpr std::string_view kMetaCompactRevision = "compact_revision";
inline constexpr std::string_view kMetaEventsBytes = "events_bytes";
inline constexpr std::string_view kMetaMembership = "membership";
// New in version 2: the highest index the WAL durably held as committed when the state was
// last flushed (StateMachine::note_log_durable), and the index of the snapshot this state was
// installed from (0: built by applying the log from its start).
inline constexpr std::string_view kMetaLogDurableIndex = "log_durable_index";
inline constexpr std::string_view kMetaInstalledIndex = "installed_index";

std::string u64_bytes(std::uint64_t v);
bool parse_u64(std::string_view s, std::uint64_t& v);

// How damage reports and error messages name a record: `key "a/1"` (kvc-wal's escaping: valid
// UTF-8 in quotes with control characters escaped, anything else as hex), `event 12/0`
// (revision/sequence), `meta field applied_index` or `lease 3f2a` (its id in hex).
std::string record_name(StateDb db, std::string_view key);

}  // namespace kvc::storage
