// The values the state machine hands out and the snapshot files carry: a key with its value and
// revisions, a change event of the watch history, and the state hash that `kvc-ctl check hash`
// compares across members. Shared by state.h and snapshot.h so neither includes the other's
// machinery. Plain values; StateHasher is a value too (one per computation). Thread-compatible.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace kvc::storage {

// LMDB's key size limit (mdb_env_get_maxkeysize() of a default build). A put or cas of a
// longer key fails deterministically with kInvalidArgument on every member; snapshot files
// never carry one.
inline constexpr std::size_t kMaxKeyBytes = 511;
// The largest value the state accepts (a put or cas of a larger one fails with
// kInvalidArgument on every member), so that one record always fits a snapshot block. The
// server's request size limit is normally far lower.
inline constexpr std::size_t kMaxValueBytes = 64u << 20;

// A key as the state holds it. Revisions are Raft indexes: the revision of a write is the index
// of the entry that carried it.
struct KeyValue {
  std::string key;
  std::string value;
  std::uint64_t create_revision = 0;  // revision of the put that created the key
  std::uint64_t mod_revision = 0;     // revision of the last write to it
  std::uint64_t version = 0;          // writes since creation (1 after the creating put)
  // The lease the key is attached to (0: none). Kept in the lease table, not in the key's
  // record: filled by the state machine's reads; snapshot records do not carry it.
  std::uint64_t lease = 0;

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

// A lease: a time to live that the leader counts down on its own clock, and the keys that go
// when it ends (revoked by a client, or expired by the leader through a committed revoke).
struct Lease {
  std::uint64_t id = 0;             // chosen by the leader that granted it; never 0
  std::uint64_t ttl = 0;            // seconds, as granted
  std::uint64_t granted_index = 0;  // the Raft index of the entry that granted it
  std::vector<std::string> keys;    // attached keys, ascending

  friend bool operator==(const Lease&, const Lease&) = default;
};

enum class EventType : std::uint8_t { kPut = 1, kDelete = 2 };

// One change in the watch history. A delete_prefix yields one delete event per key removed, all
// with the revision of its entry and consecutive sequence numbers in key order.
struct Event {
  std::uint64_t revision = 0;  // the Raft index of the entry (the key's new mod_revision)
  std::uint32_t sequence = 0;  // position among the events of this revision, from 0
  EventType type = EventType::kPut;
  std::string key;
  std::string value;                    // put: the new value; delete: empty
  std::uint64_t create_revision = 0;    // put: the key's create revision; delete: 0
  std::uint64_t version = 0;            // put: the key's version after the put; delete: 0
  std::uint64_t prev_mod_revision = 0;  // the key's mod revision before, 0 if it was absent
  // The key as it was before (watch --prev-kv), when prev_mod_revision != 0: its value, create
  // revision and version. Stored from state format 3 on: events written by an older version read
  // back without them (empty, 0, 0). A put's are implied by its own fields (same create
  // revision, version - 1); a delete's are stored in its record's create/version slots.
  std::string prev_value;
  std::uint64_t prev_create_revision = 0;
  std::uint64_t prev_version = 0;

  friend bool operator==(const Event&, const Event&) = default;
};

// What the LMDB state's meta records say, as of its last flush (or install): what the start-up
// checks (consistency.h) compare with the write-ahead log.
struct StateFacts {
  std::string state_dir;
  std::uint32_t format = 0;         // state format version (state_format.h)
  std::uint64_t applied_index = 0;  // D: everything up to here is in the state
  std::uint64_t applied_term = 0;
  std::uint64_t revision = 0;
  std::uint64_t compact_revision = 1;
  // The highest index the WAL durably held as committed when the state was last flushed
  // (StateMachine::note_log_durable); 0 when unknown (a version 1 state, a fresh install).
  std::uint64_t log_durable_index = 0;
  // The index of the snapshot this state was installed from; 0 when it was built by applying
  // the log from its start.
  std::uint64_t installed_index = 0;
  bool has_membership = false;

  friend bool operator==(const StateFacts&, const StateFacts&) = default;
};

// Reports progress of a long operation: `done` of `total` units (bytes of a snapshot file).
// Called on the thread doing the work; may be empty.
using ProgressFn = std::function<void(std::uint64_t done, std::uint64_t total)>;

// The state hash: FNV-1a 64 over every key in ascending key order (each field length-prefixed:
// key, value, create_revision, mod_revision, version as 8-byte little-endian integers), then
// every lease in ascending id order (a tag byte 'L', id, ttl, granted index, key count, each
// key length-prefixed; nothing when there are no leases, so a state without leases hashes as it
// did before leases existed), then the applied index. Equal states at equal applied indexes give
// equal hashes; any difference in a key, value, revision or lease changes it with high
// probability. Exposed so that tests and tools
// can hash a state they built another way.
class StateHasher {
 public:
  void add(const KeyValue& kv);        // every key first, ascending
  void add_lease(const Lease& lease);  // then every lease, ascending by id
  std::uint64_t finish(std::uint64_t applied_index) const;

 private:
  void mix(const void* data, std::size_t n);
  void mix_u64(std::uint64_t v);

  std::uint64_t h_ = 0xcbf29ce484222325ull;
};

}  // namespace kvc::storage
