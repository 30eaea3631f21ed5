#include "kvc/wire/messages.h"

#include "kvc/wire/frame.h"

namespace kvc::wire {
namespace {

// Field ids. Never renumber; add new ids at the end. Documented in kvc-node(1).
namespace hello_f {
enum : std::uint32_t {
  kVersion = 1,
  kRole,
  kClusterId,
  kMemberId,
  kName,
  kSoftware,
  kNonce,  // retired (the HMAC challenge): not read or written, never reused
  kProof,
  kPeerAddr,
  kClientAddr,
  kToken,
  kSharedWatches
};
}
namespace reply_f {
enum : std::uint32_t {
  kCode = 1,
  kMessage,
  kClusterId,
  kMemberId,
  kName,
  kSoftware,
  kNonce,  // retired with kProof (the HMAC challenge): not read or written, never reused
  kProof,
  kClientAddr,
  kAssignedMemberId,
  kRemoved,
  kMaxFrameBytes,
  kMaxRequestBytes,
  kRefusedFrameBytes
};
}
namespace req_f {
enum : std::uint32_t {
  kId = 1,
  kOp,
  kKey,
  kValue,
  kPrefix,
  kLimit,
  kExpectRevision,
  kSerializable,
  kKeysOnly,
  kCountOnly,
  kStartRevision,
  kWatchId,
  kMemberId,
  kName,
  kPeerAddr,
  kClientAddr,
  kLearner,
  kForce,
  kTimeoutMs,
  kLease,
  kTtl,
  kCompares,
  kThenOps,
  kElseOps,
  kPrevKv,
  kOnBehalfOf
};
}
namespace resp_f {
enum : std::uint32_t {
  kId = 1,
  kCode,
  kMessage,
  kLeaderId,
  kLeaderName,
  kLeaderClientAddr,
  kRevision,
  kKvs,
  kMore,
  kCount,
  kFound,
  kMembers,
  kStatus,
  kWatchId,
  kEvents,
  kCompactRevision,
  kData,
  kDone,
  kHash,
  kMemberId,
  kLease,
  kTtl,
  kLeases,
  kSucceeded,
  kTxnResults,
  kPrevKvs,
  kIdentity,
  kGrants,
  kPermissions,
  kWatchGroup,
  kGroupEvents
};
}
namespace status_f {
enum : std::uint32_t {
  kMemberId = 1,
  kName,
  kVersion,
  kClusterId,
  kLeaderId,
  kTerm,
  kCommit,
  kApplied,
  kDurable,
  kWalBytes,
  kStateBytes,
  kLearner,
  kRole,
  kErrors,
  // Integrity fields start at 40 (ids below are left for other additions).
  kDamaged = 40,
  kRepairing,
  kRepairReason,
  kScrubPasses,
  kScrubRecords,
  kScrubDamaged,
  kHashCheckIndex,
  kHashCheckResult,
  kLostEntries
};
}

// Starts a frame [kind, body] and returns the frame header offset.
std::size_t begin(std::string& out, FrameKind kind) {
  const std::size_t at = begin_frame(out);
  Writer w(out);
  w.array(2);
  w.uint(static_cast<std::uint8_t>(kind));
  return at;
}

// One frame [kind, map of `m`'s fields].
template <typename M, typename Fields>
void append_map_frame(std::string& out, FrameKind kind, const M& m, const Fields& fields) {
  const std::size_t at = begin(out, kind);
  Writer w(out);
  encode_map(w, m, fields);
  finish_frame(out, at);
}

template <typename M, typename Fields>
Result<M> decode_map_as(const msgpack::object& body, const char* what, M m, const Fields& fields) {
  KVC_RETURN_IF_ERROR(decode_map(body, what, &m, fields));
  return m;
}

// A status code; one this member does not know (from a newer member) reads as kInternal: the
// failure is kept, only its precision is lost.
struct CodeCodec : UintCodec {
  static Status read(const msgpack::object& o, Code* code, const char* what) {
    std::uint64_t c = 0;
    KVC_RETURN_IF_ERROR(get_uint(o, &c, what));
    *code = c > static_cast<std::uint64_t>(Code::kUnauthenticated) ? Code::kInternal
                                                                   : static_cast<Code>(c);
    return Status();
  }
};

// The op is always written; an unknown one is the client's error (kInvalidArgument), not a
// broken stream.
struct OpCodec : UintCodec {
  static bool is_default(Op) { return false; }
  static Status read(const msgpack::object& o, Op* op, const char* what) {
    std::uint64_t v = 0;
    KVC_RETURN_IF_ERROR(get_uint(o, &v, what));
    if (v < static_cast<std::uint64_t>(Op::kGet) || v > static_cast<std::uint64_t>(Op::kWhoami)) {
      return Status::invalid_argument("request: unknown op " + std::to_string(v));
    }
    *op = static_cast<Op>(v);
    return Status();
  }
};

using RoleCodec = EnumCodec<Role::kPeer, Role::kClient>;

constexpr auto kv_fields = [](auto& io, auto& kv) {
  io.bin(0, "kv.key", kv.key);
  io.bin(1, "kv.value", kv.value);
  io.uint(2, "kv.create_revision", kv.create_revision);
  io.uint(3, "kv.mod_revision", kv.mod_revision);
  io.uint(4, "kv.version", kv.version);
  io.uint(5, "kv.lease", kv.lease);  // absent from older members: 0
};
using KvCodec = ArrayCodec<decltype(kv_fields), 5>;

using CompareTargetCodec = EnumCodec<CompareTarget::kValue, CompareTarget::kLease>;
using CompareOpCodec = EnumCodec<CompareOp::kEqual, CompareOp::kGreater>;
using TxnOpTypeCodec = EnumCodec<TxnOpType::kPut, TxnOpType::kGetPrefix>;

constexpr auto compare_fields = [](auto& io, auto& c) {
  io.field(0, "compare.target", c.target, CompareTargetCodec{});
  io.field(1, "compare.op", c.op, CompareOpCodec{});
  io.bin(2, "compare.key", c.key);
  io.bin(3, "compare.value", c.value);
  io.uint(4, "compare.number", c.number);
};
using CompareCodec = ArrayCodec<decltype(compare_fields), 5>;

constexpr auto txn_op_fields = [](auto& io, auto& op) {
  io.field(0, "txn_op.type", op.type, TxnOpTypeCodec{});
  io.bin(1, "txn_op.key", op.key);
  io.bin(2, "txn_op.value", op.value);
  io.uint(3, "txn_op.lease", op.lease);
  io.uint(4, "txn_op.limit", op.limit);
};
using TxnOpCodec = ArrayCodec<decltype(txn_op_fields), 5>;

constexpr auto txn_result_fields = [](auto& io, auto& r) {
  io.field(0, "txn_result.type", r.type, TxnOpTypeCodec{});
  io.uint(1, "txn_result.revision", r.revision);
  io.uint(2, "txn_result.deleted", r.deleted);
  io.field(3, "txn_result.kvs", r.kvs, ListCodec<KvCodec>{});
  io.boolean(4, "txn_result.more", r.more);
};

constexpr auto lease_fields = [](auto& io, auto& l) {
  io.uint(0, "lease.id", l.id);
  io.uint(1, "lease.ttl", l.ttl);
  io.uint(2, "lease.remaining_ms", l.remaining_ms);
  io.field(3, "lease.keys", l.keys, ListCodec<BinCodec>{});
};

constexpr auto member_fields = [](auto& io, auto& mi) {
  io.uint(0, "member.id", mi.id);
  io.str(1, "member.name", mi.name);
  io.str(2, "member.peer_addr", mi.peer_addr);
  io.str(3, "member.client_addr", mi.client_addr);
  io.boolean(4, "member.learner", mi.learner);
  io.boolean(5, "member.is_leader", mi.is_leader);
};

constexpr auto event_fields = [](auto& io, auto& e) {
  io.field(0, "event.type", e.type, EnumCodec<EventType::kPut, EventType::kDelete>{});
  io.field(1, "event.kv", e.kv, KvCodec{});
};

constexpr auto status_fields = [](auto& io, auto& s) {
  io.uint(status_f::kMemberId, "status.member_id", s.member_id);
  io.str(status_f::kName, "status.name", s.name);
  io.str(status_f::kVersion, "status.version", s.version);
  io.uint(status_f::kClusterId, "status.cluster_id", s.cluster_id);
  io.uint(status_f::kLeaderId, "status.leader_id", s.leader_id);
  io.uint(status_f::kTerm, "status.term", s.term);
  io.uint(status_f::kCommit, "status.commit_index", s.commit_index);
  io.uint(status_f::kApplied, "status.applied_index", s.applied_index);
  io.uint(status_f::kDurable, "status.durable_index", s.durable_index);
  io.uint(status_f::kWalBytes, "status.wal_bytes", s.wal_bytes);
  io.uint(status_f::kStateBytes, "status.state_bytes", s.state_bytes);
  io.boolean(status_f::kLearner, "status.learner", s.learner);
  io.str(status_f::kRole, "status.role", s.role);
  io.field(status_f::kErrors, "status.errors", s.errors, ListCodec<StrCodec>{});
  io.boolean(status_f::kDamaged, "status.damaged", s.damaged);
  io.boolean(status_f::kRepairing, "status.repairing", s.repairing);
  io.str(status_f::kRepairReason, "status.repair_reason", s.repair_reason);
  io.uint(status_f::kScrubPasses, "status.scrub_passes", s.scrub_passes);
  io.uint(status_f::kScrubRecords, "status.scrub_records", s.scrub_records);
  io.uint(status_f::kScrubDamaged, "status.scrub_damaged", s.scrub_damaged);
  io.uint(status_f::kHashCheckIndex, "status.hash_check_index", s.hash_check_index);
  io.str(status_f::kHashCheckResult, "status.hash_check_result", s.hash_check_result);
  io.uint(status_f::kLostEntries, "status.lost_entries_detected", s.lost_entries_detected);
};

// A response's status map, present when has_status.
struct ResponseStatusCodec {
  static bool is_default(const Response& r) { return !r.has_status; }
  static void write(Writer& w, const Response& r) { encode_map(w, r.status, status_fields); }
  static Status read(const msgpack::object& o, Response* r, const char*) {
    r->has_status = true;
    return decode_map(o, "status", &r->status, status_fields);
  }
};

constexpr auto hello_fields = [](auto& io, auto& m) {
  io.uint(hello_f::kVersion, "hello.version", m.protocol_version);
  io.field(hello_f::kRole, "hello.role", m.role, RoleCodec{});
  io.uint(hello_f::kClusterId, "hello.cluster_id", m.cluster_id);
  io.uint(hello_f::kMemberId, "hello.member_id", m.member_id);
  io.str(hello_f::kName, "hello.name", m.name);
  io.str(hello_f::kSoftware, "hello.software", m.software_version);
  io.bin(hello_f::kProof, "hello.proof", m.proof);
  io.str(hello_f::kPeerAddr, "hello.peer_addr", m.peer_addr);
  io.str(hello_f::kClientAddr, "hello.client_addr", m.client_addr);
  io.bin(hello_f::kToken, "hello.token", m.token);
  io.boolean(hello_f::kSharedWatches, "hello.shared_watches", m.shared_watches);
};

constexpr auto hello_reply_fields = [](auto& io, auto& m) {
  io.field(reply_f::kCode, "hello_reply.code", m.code, CodeCodec{});
  io.str(reply_f::kMessage, "hello_reply.message", m.message);
  io.uint(reply_f::kClusterId, "hello_reply.cluster_id", m.cluster_id);
  io.uint(reply_f::kMemberId, "hello_reply.member_id", m.member_id);
  io.str(reply_f::kName, "hello_reply.name", m.name);
  io.str(reply_f::kSoftware, "hello_reply.software", m.software_version);
  io.str(reply_f::kClientAddr, "hello_reply.client_addr", m.client_addr);
  io.uint(reply_f::kAssignedMemberId, "hello_reply.assigned_member_id", m.assigned_member_id);
  io.boolean(reply_f::kRemoved, "hello_reply.removed", m.removed);
  // Zero (not written) unless set, so that peer handshakes stay as they were.
  io.uint(reply_f::kMaxFrameBytes, "hello_reply.max_frame_bytes", m.max_frame_bytes);
  io.uint(reply_f::kMaxRequestBytes, "hello_reply.max_request_bytes", m.max_request_bytes);
  io.uint(reply_f::kRefusedFrameBytes, "hello_reply.refused_frame_bytes", m.refused_frame_bytes);
};

constexpr auto request_fields = [](auto& io, auto& m) {
  io.uint(req_f::kId, "request.id", m.id);
  io.field(req_f::kOp, "request.op", m.op, OpCodec{});
  io.bin(req_f::kKey, "request.key", m.key);
  io.bin(req_f::kValue, "request.value", m.value);
  io.boolean(req_f::kPrefix, "request.prefix", m.prefix);
  io.uint(req_f::kLimit, "request.limit", m.limit);
  io.uint(req_f::kExpectRevision, "request.expect_revision", m.expect_revision);
  io.boolean(req_f::kSerializable, "request.serializable", m.serializable);
  io.boolean(req_f::kKeysOnly, "request.keys_only", m.keys_only);
  io.boolean(req_f::kCountOnly, "request.count_only", m.count_only);
  io.uint(req_f::kStartRevision, "request.start_revision", m.start_revision);
  io.uint(req_f::kWatchId, "request.watch_id", m.watch_id);
  io.uint(req_f::kMemberId, "request.member_id", m.member_id);
  io.str(req_f::kName, "request.name", m.name);
  io.str(req_f::kPeerAddr, "request.peer_addr", m.peer_addr);
  io.str(req_f::kClientAddr, "request.client_addr", m.client_addr);
  io.boolean(req_f::kLearner, "request.learner", m.learner);
  io.boolean(req_f::kForce, "request.force", m.force);
  io.uint(req_f::kTimeoutMs, "request.timeout_ms", m.timeout_ms);
  io.uint(req_f::kLease, "request.lease", m.lease);
  io.uint(req_f::kTtl, "request.ttl", m.ttl);
  io.field(req_f::kCompares, "request.compares", m.compares, ListCodec<CompareCodec>{});
  io.field(req_f::kThenOps, "request.then_ops", m.then_ops, ListCodec<TxnOpCodec>{});
  io.field(req_f::kElseOps, "request.else_ops", m.else_ops, ListCodec<TxnOpCodec>{});
  io.boolean(req_f::kPrevKv, "request.prev_kv", m.prev_kv);
  io.str(req_f::kOnBehalfOf, "request.on_behalf_of", m.on_behalf_of);
};

// Long on purpose: one line per field of the response map, in the order wire/messages.h lists
// them.
constexpr auto response_fields = [](auto& io, auto& m) {
  io.uint(resp_f::kId, "response.id", m.id);
  io.field(resp_f::kCode, "response.code", m.code, CodeCodec{});
  io.str(resp_f::kMessage, "response.message", m.message);
  io.uint(resp_f::kLeaderId, "response.leader_id", m.leader_id);
  io.str(resp_f::kLeaderName, "response.leader_name", m.leader_name);
  io.str(resp_f::kLeaderClientAddr, "response.leader_client_addr", m.leader_client_addr);
  io.uint(resp_f::kRevision, "response.revision", m.revision);
  io.field(resp_f::kKvs, "response.kvs", m.kvs, ListCodec<KvCodec>{});
  io.boolean(resp_f::kMore, "response.more", m.more);
  io.uint(resp_f::kCount, "response.count", m.count);
  io.boolean(resp_f::kFound, "response.found", m.found);
  io.field(resp_f::kMembers, "response.members", m.members,
           ListCodec<ArrayCodec<decltype(member_fields), 6>>{});
  io.field(resp_f::kStatus, "response.status", m, ResponseStatusCodec{});
  io.uint(resp_f::kWatchId, "response.watch_id", m.watch_id);
  io.field(resp_f::kEvents, "response.events", m.events,
           ListCodec<ArrayCodec<decltype(event_fields), 2>>{});
  io.uint(resp_f::kCompactRevision, "response.compact_revision", m.compact_revision);
  io.bin(resp_f::kData, "response.data", m.data);
  io.boolean(resp_f::kDone, "response.done", m.done);
  io.uint(resp_f::kHash, "response.hash", m.hash);
  io.uint(resp_f::kMemberId, "response.member_id", m.member_id);
  io.uint(resp_f::kLease, "response.lease", m.lease);
  io.uint(resp_f::kTtl, "response.ttl", m.ttl);
  io.field(resp_f::kLeases, "response.leases", m.leases,
           ListCodec<ArrayCodec<decltype(lease_fields), 4>>{});
  io.boolean(resp_f::kSucceeded, "response.succeeded", m.succeeded);
  io.field(resp_f::kTxnResults, "response.txn_results", m.txn_results,
           ListCodec<ArrayCodec<decltype(txn_result_fields), 5>>{});
  io.field(resp_f::kPrevKvs, "response.prev_kvs", m.prev_kvs, ListCodec<KvCodec>{});
  io.str(resp_f::kIdentity, "response.identity", m.identity);
  io.field(resp_f::kGrants, "response.grants", m.grants, ListCodec<StrCodec>{});
  io.boolean(resp_f::kPermissions, "response.permissions", m.permissions);
  io.uint(resp_f::kWatchGroup, "response.watch_group", m.watch_group);
  io.boolean(resp_f::kGroupEvents, "response.group_events", m.group_events);
};

}  // namespace

std::string_view op_name(Op op) {
  switch (op) {
    case Op::kGet:
      return "get";
    case Op::kRange:
      return "range";
    case Op::kPut:
      return "put";
    case Op::kDelete:
      return "delete";
    case Op::kCas:
      return "cas";
    case Op::kWatch:
      return "watch";
    case Op::kWatchCancel:
      return "watch_cancel";
    case Op::kLeader:
      return "leader";
    case Op::kWatchLeader:
      return "watch_leader";
    case Op::kMemberList:
      return "member_list";
    case Op::kMemberAdd:
      return "member_add";
    case Op::kMemberPromote:
      return "member_promote";
    case Op::kMemberRemove:
      return "member_remove";
    case Op::kTransferLeader:
      return "transfer_leader";
    case Op::kStatus:
      return "status";
    case Op::kHealth:
      return "health";
    case Op::kSnapshotSave:
      return "snapshot_save";
    case Op::kHash:
      return "hash";
    case Op::kMemberUpdate:
      return "member_update";
    case Op::kLeaseGrant:
      return "lease_grant";
    case Op::kLeaseRevoke:
      return "lease_revoke";
    case Op::kLeaseKeepAlive:
      return "lease_keep_alive";
    case Op::kLeaseTtl:
      return "lease_ttl";
    case Op::kLeaseList:
      return "lease_list";
    case Op::kTxn:
      return "txn";
    case Op::kWhoami:
      return "whoami";
  }
  return "unknown";
}

void append_hello(std::string& out, const Hello& m) {
  append_map_frame(out, FrameKind::kHello, m, hello_fields);
}

void append_hello_reply(std::string& out, const HelloReply& m) {
  append_map_frame(out, FrameKind::kHelloReply, m, hello_reply_fields);
}

void append_request(std::string& out, const Request& m) {
  append_map_frame(out, FrameKind::kRequest, m, request_fields);
}

void append_response(std::string& out, const Response& m) {
  append_map_frame(out, FrameKind::kResponse, m, response_fields);
}

Result<Envelope> open_envelope(std::string_view payload) {
  Result<Parsed> p = parse(payload);
  if (!p.ok()) return p.status();
  Envelope env{.parsed = std::move(*p)};
  const msgpack::object* items = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_array(env.parsed.root(), &items, &n, "frame"));
  if (n != 2)
    return Status::corruption("frame: expected [kind, body], got " + std::to_string(n) +
                              " elements");
  std::uint64_t kind = 0;
  KVC_RETURN_IF_ERROR(get_uint(items[0], &kind, "frame.kind"));
  if (kind < 1 || kind > static_cast<std::uint64_t>(FrameKind::kResponse)) {
    return Status::corruption("frame: unknown message kind " + std::to_string(kind));
  }
  env.kind = static_cast<FrameKind>(kind);
  env.body = &items[1];
  return env;
}

Result<Hello> decode_hello(const msgpack::object& body) {
  // No version or role means version 0 and an unknown role, not the defaults of Hello{}.
  Hello m{.protocol_version = 0, .role = Role{}};
  KVC_RETURN_IF_ERROR(decode_map(body, "hello", &m, hello_fields));
  if (m.role == Role{}) return Status::corruption("hello: unknown role 0");
  return m;
}

Result<HelloReply> decode_hello_reply(const msgpack::object& body) {
  return decode_map_as(body, "hello_reply", HelloReply{}, hello_reply_fields);
}

Result<Request> decode_request(const msgpack::object& body) {
  // A request without an op is as unknown as one with a wrong op.
  Request m{.op = Op{}};
  KVC_RETURN_IF_ERROR(decode_map(body, "request", &m, request_fields));
  if (m.op == Op{}) return Status::invalid_argument("request: unknown op 0");
  return m;
}

Result<Response> decode_response(const msgpack::object& body) {
  return decode_map_as(body, "response", Response{}, response_fields);
}

}  // namespace kvc::wire
