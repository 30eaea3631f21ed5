// The messages of kvc's wire protocol other than Raft's own (raft_codec.h): the handshake that
// opens every connection, and the client protocol (requests, responses, watch events). Every
// frame's payload is a msgpack array [kind, body]; bodies are msgpack maps from small integer
// field ids to values, so fields can be added without breaking older peers (unknown ids are
// skipped). The field tables are in kvc-node(1), "WIRE PROTOCOL". Keys and values travel as
// msgpack bin (binary safe). Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/common/txn.h"
#include "kvc/wire/msgpack_io.h"

namespace kvc::wire {

inline constexpr std::uint32_t kProtocolVersion = 1;

enum class FrameKind : std::uint8_t {
  kHello = 1,       // first frame from the side that connects
  kHelloReply = 2,  // the answer: accepted, or refused with a reason (then the link closes)
  kRaft = 3,        // a Raft message between members (raft_codec.h)
  kRequest = 4,     // client -> member
  kResponse = 5,    // member -> client (also each watch event batch and snapshot chunk)
  // 6 was the auth frame of the retired HMAC challenge (the shared secret is a TLS pre-shared
  // key now): never reuse it; a frame of kind 6 is refused as unknown.
};

enum class Role : std::uint8_t { kPeer = 1, kClient = 2 };

struct Hello {
  std::uint32_t protocol_version = kProtocolVersion;
  Role role = Role::kClient;
  std::uint64_t cluster_id = 0;  // 0 from a client that does not know it yet: the member says
  std::uint64_t member_id = 0;   // the connecting member (peers only)
  std::string name;              // the connecting member's name, or a client's label
  std::string software_version;
  // Field 7 (the retired HMAC challenge's nonce) is gone; its id is not reused.
  std::string proof;        // a joining member's cluster-token digest (join_token_digest)
  std::string peer_addr;    // peers: where the sender listens for peers
  std::string client_addr;  // peers: where the sender listens for clients
  // Clients: a named token (kvc-permissions(5)); the member knows only its SHA-256. Empty: none.
  std::string token;
  // Clients: this client understands shared watch responses (Response::watch_group): the
  // member may answer the watches of one connection that see the same events (same key,
  // options and position) with one response for all of them. False (older clients): one
  // response per watch.
  bool shared_watches = false;

  friend bool operator==(const Hello&, const Hello&) = default;
};

struct HelloReply {
  Code code = Code::kOk;  // not ok: refused, `message` says why
  std::string message;
  std::uint64_t cluster_id = 0;
  std::uint64_t member_id = 0;
  std::string name;
  std::string software_version;
  // Fields 7 and 8 (the retired HMAC challenge's nonce and proof) are gone; ids not reused.
  std::string client_addr;  // where the answering member listens for clients
  // Answer to a join (a peer hello with member id 0 from a member being added): the id the
  // cluster assigned to that name.
  std::uint64_t assigned_member_id = 0;
  // The refused peer was removed from the cluster: it must stop (it never learns its own
  // removal from the log once the others stop replicating to it).
  bool removed = false;
  // The answering member's limits, in answers to client hellos (0 from an older member:
  // unknown). A client refuses a request that would exceed them before sending it.
  std::uint64_t max_frame_bytes = 0;    // kvc-node --max-frame-bytes: the largest frame it reads
  std::uint64_t max_request_bytes = 0;  // kvc-node --max-request-bytes: the largest key + value
  // Not an answer to a hello: sent on an established client connection when the member skipped
  // a frame of this many payload bytes (more than max_frame_bytes) without reading it, so
  // whatever it carried was not applied. `code` and `message` say so; the connection goes on.
  std::uint64_t refused_frame_bytes = 0;

  friend bool operator==(const HelloReply&, const HelloReply&) = default;
};

enum class Op : std::uint8_t {
  kGet = 1,              // key -> kv
  kRange = 2,            // keys >= `key` that start with `value` (the prefix), in order, at
                         // most `limit` -> kvs, more (count only with count_only)
  kPut = 3,              // key, value -> revision
  kDelete = 4,           // key (or every key under it when `prefix`) -> found/count, revision
  kCas = 5,              // key, value, expect_revision -> revision, or kCompareFailed
  kWatch = 6,            // key (prefix when `prefix`), start_revision -> stream of events
  kWatchCancel = 7,      // watch_id
  kLeader = 8,           // -> leader fields
  kWatchLeader = 9,      // -> a response each time the leader changes
  kMemberList = 10,      // -> members
  kMemberAdd = 11,       // name, peer_addr, learner -> members (with the new id)
  kMemberPromote = 12,   // member_id
  kMemberRemove = 13,    // member_id, force
  kTransferLeader = 14,  // member_id
  kStatus = 15,          // -> status
  kHealth = 16,          // a linearizable read through a quorum -> ok or an error
  kSnapshotSave = 17,    // -> stream of responses with data chunks, the last with `done`
  kHash = 18,            // -> hash and revision of this member's state at a committed index
  kMemberUpdate = 19,    // member_id or name, peer_addr: change a member's peer address
  kLeaseGrant = 20,      // ttl (seconds), lease (0: the leader picks) -> lease, ttl
  kLeaseRevoke = 21,     // lease -> count (keys deleted), revision
  kLeaseKeepAlive = 22,  // lease -> ttl (the leader restarted its countdown at ttl seconds)
  kLeaseTtl = 23,        // lease, keys_only (true: with its keys) -> leases (one)
  kLeaseList = 24,       // -> leases (without keys)
  kTxn = 25,             // compares, then_ops, else_ops -> succeeded, txn_results, revision
  kWhoami = 26,          // -> identity, grants: who the member sees on this connection
};
std::string_view op_name(Op op);

struct KeyValue {
  std::string key;
  std::string value;
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
  std::uint64_t lease = 0;  // the lease the key is attached to, 0: none

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

// A lease as the leader sees it.
struct LeaseInfo {
  std::uint64_t id = 0;
  std::uint64_t ttl = 0;  // seconds, as granted
  // Milliseconds until the leader expires it, on its clock; 0 when it is due (a revoke is on its
  // way).
  std::uint64_t remaining_ms = 0;
  std::vector<std::string> keys;  // lease_ttl with keys_only set: its keys

  friend bool operator==(const LeaseInfo&, const LeaseInfo&) = default;
};

// The result of one op of a txn's branch that ran.
struct TxnResult {
  TxnOpType type = TxnOpType::kGet;
  std::uint64_t revision = 0;  // put, and deletes that removed keys: the txn's revision
  std::uint64_t deleted = 0;   // delete, delete_prefix: keys removed
  std::vector<KeyValue> kvs;   // get, get_prefix
  bool more = false;           // get_prefix: more keys past its limit

  friend bool operator==(const TxnResult&, const TxnResult&) = default;
};

enum class EventType : std::uint8_t { kPut = 1, kDelete = 2 };

struct Event {
  EventType type = EventType::kPut;
  KeyValue kv;  // for a delete: key and mod_revision (the delete's revision) only

  friend bool operator==(const Event&, const Event&) = default;
};

struct MemberInfo {
  std::uint64_t id = 0;
  std::string name;
  std::string peer_addr;
  std::string client_addr;
  bool learner = false;
  bool is_leader = false;

  friend bool operator==(const MemberInfo&, const MemberInfo&) = default;
};

struct StatusInfo {
  std::uint64_t member_id = 0;
  std::string name;
  std::string version;
  std::uint64_t cluster_id = 0;
  std::uint64_t leader_id = 0;
  std::uint64_t term = 0;
  std::uint64_t commit_index = 0;
  std::uint64_t applied_index = 0;
  std::uint64_t durable_index = 0;  // applied and flushed to the state database
  std::uint64_t wal_bytes = 0;
  std::uint64_t state_bytes = 0;
  bool learner = false;
  std::string role;  // leader, follower, candidate, pre-candidate, learner
  std::vector<std::string> errors;
  // Integrity (kvc-node(1), "INTEGRITY").
  bool damaged = false;    // the state is damaged: no reads served; repairing from the leader
  bool repairing = false;  // any repair in progress: this member may not vote
  std::string repair_reason;
  std::uint64_t scrub_passes = 0;           // complete scrubber passes since start
  std::uint64_t scrub_records = 0;          // records verified by the scrubber since start
  std::uint64_t scrub_damaged = 0;          // damaged records it found
  std::uint64_t hash_check_index = 0;       // the last periodic cross-member hash check (leader)
  std::string hash_check_result;            // "agreed", or what disagreed or failed
  std::uint64_t lost_entries_detected = 0;  // leader: followers that lost acknowledged entries

  friend bool operator==(const StatusInfo&, const StatusInfo&) = default;
};

struct Request {
  std::uint64_t id = 0;  // chosen by the client, echoed in responses; unique per connection
  Op op = Op::kGet;
  std::string key;
  std::string value;
  bool prefix = false;
  std::uint64_t limit = 0;  // 0: no limit (the member still pages large answers)
  std::uint64_t expect_revision = 0;
  bool serializable = false;  // read this member's state without a ReadIndex round
  bool keys_only = false;
  bool count_only = false;
  std::uint64_t start_revision = 0;  // watch: replay from this revision (0: from now)
  std::uint64_t watch_id = 0;
  std::uint64_t member_id = 0;
  std::string name;
  std::string peer_addr;
  std::string client_addr;
  bool learner = false;
  bool force = false;
  std::uint64_t timeout_ms = 0;   // the client's deadline; the member gives up after it
  std::uint64_t lease = 0;        // put, cas: attach the key to it; lease ops: which lease
  std::uint64_t ttl = 0;          // lease_grant: seconds
  std::vector<Compare> compares;  // txn
  std::vector<TxnOp> then_ops;    // txn: when every compare holds
  std::vector<TxnOp> else_ops;    // txn: otherwise
  bool prev_kv = false;           // watch: send each event's previous key-value (prev_kvs)
  // A member forwarding a caller's request (HTTP through a follower): the caller's identity,
  // honoured only from a connection authenticated as a cluster member (docs/security.md).
  std::string on_behalf_of;

  friend bool operator==(const Request&, const Request&) = default;
};

struct Response {
  std::uint64_t id = 0;
  Code code = Code::kOk;
  std::string message;
  // Who the member thinks leads (always filled when known; with kNotLeader, where to go).
  std::uint64_t leader_id = 0;
  std::string leader_name;
  std::string leader_client_addr;
  std::uint64_t revision = 0;  // the store's revision when the answer was made
  std::vector<KeyValue> kvs;
  bool more = false;  // range: more keys after the last one returned
  std::uint64_t count = 0;
  bool found = false;
  std::vector<MemberInfo> members;
  bool has_status = false;
  StatusInfo status;
  std::uint64_t watch_id = 0;
  std::vector<Event> events;
  std::uint64_t compact_revision = 0;  // watch: the oldest revision still available
  std::string data;                    // snapshot chunk
  bool done = false;                   // last response of a stream
  std::uint64_t hash = 0;
  std::uint64_t member_id = 0;         // the answering member
  std::uint64_t lease = 0;             // lease_grant: the new lease's id
  std::uint64_t ttl = 0;               // lease_grant, lease_keep_alive: seconds
  std::vector<LeaseInfo> leases;       // lease_ttl (one), lease_list
  bool succeeded = false;              // txn: every compare held
  std::vector<TxnResult> txn_results;  // txn: one per op of the branch that ran
  // A watch with prev_kv: one per event, the key as it was before it (key, value,
  // create_revision, mod_revision, version); an empty key when it did not exist.
  std::vector<KeyValue> prev_kvs;
  // whoami: the identity the member sees, and what the permissions file grants it ("read /",
  // "admin"; empty without a file, where every identity may do everything: permissions false).
  std::string identity;
  std::vector<std::string> grants;
  bool permissions = false;
  // Shared watch responses (only to a client whose hello set shared_watches). On a watch's
  // acknowledgement (its first response, no events): the group the watch belongs to from now
  // on, named by the id of the group's first watch (possibly itself). With group_events: this
  // response's events are for every watch of that group still open on the connection (id and
  // watch_id are the group's name); the client hands them to each. A watch's own end (done,
  // an error) always comes in a response of its own.
  std::uint64_t watch_group = 0;
  bool group_events = false;

  friend bool operator==(const Response&, const Response&) = default;
};

// Append one complete frame to `out`.
void append_hello(std::string& out, const Hello& m);
void append_hello_reply(std::string& out, const HelloReply& m);
void append_request(std::string& out, const Request& m);
void append_response(std::string& out, const Response& m);

// A frame payload split into its kind and body. The body points into `parsed`.
struct Envelope {
  FrameKind kind = FrameKind::kHello;
  Parsed parsed;
  const msgpack::object* body = nullptr;
};
Result<Envelope> open_envelope(std::string_view payload);

Result<Hello> decode_hello(const msgpack::object& body);
Result<HelloReply> decode_hello_reply(const msgpack::object& body);
Result<Request> decode_request(const msgpack::object& body);
Result<Response> decode_response(const msgpack::object& body);

}  // namespace kvc::wire
