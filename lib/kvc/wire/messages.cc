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
  kNonce,
  kProof,
  kPeerAddr,
  kClientAddr
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
  kNonce,
  kProof,
  kClientAddr,
  kAssignedMemberId,
  kRemoved,
  kMaxFrameBytes,
  kMaxRequestBytes,
  kRefusedFrameBytes
};
}
namespace auth_f {
enum : std::uint32_t { kProof = 1, kMessage };
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
  kTimeoutMs
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
  kMemberId
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

void write_kv(Writer& w, const KeyValue& kv) {
  w.array(5);
  w.bin(kv.key);
  w.bin(kv.value);
  w.uint(kv.create_revision);
  w.uint(kv.mod_revision);
  w.uint(kv.version);
}

Status read_kv(const msgpack::object& o, KeyValue* kv) {
  const msgpack::object* f = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_array(o, &f, &n, "kv"));
  if (n < 5) return Status::corruption("kv: expected 5 fields, got " + std::to_string(n));
  KVC_RETURN_IF_ERROR(get_bytes(f[0], &kv->key, "kv.key"));
  KVC_RETURN_IF_ERROR(get_bytes(f[1], &kv->value, "kv.value"));
  KVC_RETURN_IF_ERROR(get_uint(f[2], &kv->create_revision, "kv.create_revision"));
  KVC_RETURN_IF_ERROR(get_uint(f[3], &kv->mod_revision, "kv.mod_revision"));
  return get_uint(f[4], &kv->version, "kv.version");
}

Status read_code(const msgpack::object& o, Code* code, const char* what) {
  std::uint64_t c = 0;
  KVC_RETURN_IF_ERROR(get_uint(o, &c, what));
  if (c > static_cast<std::uint64_t>(Code::kInternal)) {
    // A newer member may know codes we do not: keep the failure, lose only its precision.
    *code = Code::kInternal;
    return Status();
  }
  *code = static_cast<Code>(c);
  return Status();
}

// Calls fn(id, value) for each field of a map body; unknown ids are for fn to skip.
template <typename Fn>
Status for_each_field(const msgpack::object& body, const char* what, Fn&& fn) {
  const msgpack::object_kv* items = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_map(body, &items, &n, what));
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint64_t id = 0;
    KVC_RETURN_IF_ERROR(get_uint(items[i].key, &id, what));
    KVC_RETURN_IF_ERROR(fn(id, items[i].val));
  }
  return Status();
}

// Written as the value of the field just started in the enclosing map.
void write_status(std::string& out, const StatusInfo& s) {
  MapWriter m(out);
  m.uint(status_f::kMemberId, s.member_id);
  m.str(status_f::kName, s.name);
  m.str(status_f::kVersion, s.version);
  m.uint(status_f::kClusterId, s.cluster_id);
  m.uint(status_f::kLeaderId, s.leader_id);
  m.uint(status_f::kTerm, s.term);
  m.uint(status_f::kCommit, s.commit_index);
  m.uint(status_f::kApplied, s.applied_index);
  m.uint(status_f::kDurable, s.durable_index);
  m.uint(status_f::kWalBytes, s.wal_bytes);
  m.uint(status_f::kStateBytes, s.state_bytes);
  m.boolean(status_f::kLearner, s.learner);
  m.str(status_f::kRole, s.role);
  if (!s.errors.empty()) {
    Writer& e = m.field(status_f::kErrors);
    e.array(static_cast<std::uint32_t>(s.errors.size()));
    for (const std::string& err : s.errors) e.str(err);
  }
  m.boolean(status_f::kDamaged, s.damaged);
  m.boolean(status_f::kRepairing, s.repairing);
  m.str(status_f::kRepairReason, s.repair_reason);
  m.uint(status_f::kScrubPasses, s.scrub_passes);
  m.uint(status_f::kScrubRecords, s.scrub_records);
  m.uint(status_f::kScrubDamaged, s.scrub_damaged);
  m.uint(status_f::kHashCheckIndex, s.hash_check_index);
  m.str(status_f::kHashCheckResult, s.hash_check_result);
  m.uint(status_f::kLostEntries, s.lost_entries_detected);
  m.finish();
}

Status read_status(const msgpack::object& body, StatusInfo* s) {
  return for_each_field(body, "status", [s](std::uint64_t id, const msgpack::object& v) -> Status {
    switch (id) {
      case status_f::kMemberId:
        return get_uint(v, &s->member_id, "status.member_id");
      case status_f::kName:
        return get_bytes(v, &s->name, "status.name");
      case status_f::kVersion:
        return get_bytes(v, &s->version, "status.version");
      case status_f::kClusterId:
        return get_uint(v, &s->cluster_id, "status.cluster_id");
      case status_f::kLeaderId:
        return get_uint(v, &s->leader_id, "status.leader_id");
      case status_f::kTerm:
        return get_uint(v, &s->term, "status.term");
      case status_f::kCommit:
        return get_uint(v, &s->commit_index, "status.commit_index");
      case status_f::kApplied:
        return get_uint(v, &s->applied_index, "status.applied_index");
      case status_f::kDurable:
        return get_uint(v, &s->durable_index, "status.durable_index");
      case status_f::kWalBytes:
        return get_uint(v, &s->wal_bytes, "status.wal_bytes");
      case status_f::kStateBytes:
        return get_uint(v, &s->state_bytes, "status.state_bytes");
      case status_f::kLearner:
        return get_bool(v, &s->learner, "status.learner");
      case status_f::kRole:
        return get_bytes(v, &s->role, "status.role");
      case status_f::kDamaged:
        return get_bool(v, &s->damaged, "status.damaged");
      case status_f::kRepairing:
        return get_bool(v, &s->repairing, "status.repairing");
      case status_f::kRepairReason:
        return get_bytes(v, &s->repair_reason, "status.repair_reason");
      case status_f::kScrubPasses:
        return get_uint(v, &s->scrub_passes, "status.scrub_passes");
      case status_f::kScrubRecords:
        return get_uint(v, &s->scrub_records, "status.scrub_records");
      case status_f::kScrubDamaged:
        return get_uint(v, &s->scrub_damaged, "status.scrub_damaged");
      case status_f::kHashCheckIndex:
        return get_uint(v, &s->hash_check_index, "status.hash_check_index");
      case status_f::kHashCheckResult:
        return get_bytes(v, &s->hash_check_result, "status.hash_check_result");
      case status_f::kLostEntries:
        return get_uint(v, &s->lost_entries_detected, "status.lost_entries_detected");
      case status_f::kErrors: {
        const msgpack::object* items = nullptr;
        std::uint32_t n = 0;
        KVC_RETURN_IF_ERROR(get_array(v, &items, &n, "status.errors"));
        s->errors.resize(n);
        for (std::uint32_t i = 0; i < n; ++i) {
          KVC_RETURN_IF_ERROR(get_bytes(items[i], &s->errors[i], "status.errors[]"));
        }
        return Status();
      }
      default:
        return Status();
    }
  });
}

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
  }
  return "unknown";
}

void append_hello(std::string& out, const Hello& m) {
  const std::size_t at = begin(out, FrameKind::kHello);
  MapWriter w(out);
  w.uint(hello_f::kVersion, m.protocol_version);
  w.uint(hello_f::kRole, static_cast<std::uint8_t>(m.role));
  w.uint(hello_f::kClusterId, m.cluster_id);
  w.uint(hello_f::kMemberId, m.member_id);
  w.str(hello_f::kName, m.name);
  w.str(hello_f::kSoftware, m.software_version);
  w.bin(hello_f::kNonce, m.nonce);
  w.bin(hello_f::kProof, m.proof);
  w.str(hello_f::kPeerAddr, m.peer_addr);
  w.str(hello_f::kClientAddr, m.client_addr);
  w.finish();
  finish_frame(out, at);
}

void append_hello_reply(std::string& out, const HelloReply& m) {
  const std::size_t at = begin(out, FrameKind::kHelloReply);
  MapWriter w(out);
  w.uint(reply_f::kCode, static_cast<std::uint8_t>(m.code));
  w.str(reply_f::kMessage, m.message);
  w.uint(reply_f::kClusterId, m.cluster_id);
  w.uint(reply_f::kMemberId, m.member_id);
  w.str(reply_f::kName, m.name);
  w.str(reply_f::kSoftware, m.software_version);
  w.bin(reply_f::kNonce, m.nonce);
  w.bin(reply_f::kProof, m.proof);
  w.str(reply_f::kClientAddr, m.client_addr);
  w.uint(reply_f::kAssignedMemberId, m.assigned_member_id);
  w.boolean(reply_f::kRemoved, m.removed);
  // Only when set, so that peer handshakes stay as they were.
  if (m.max_frame_bytes != 0) w.uint(reply_f::kMaxFrameBytes, m.max_frame_bytes);
  if (m.max_request_bytes != 0) w.uint(reply_f::kMaxRequestBytes, m.max_request_bytes);
  if (m.refused_frame_bytes != 0) w.uint(reply_f::kRefusedFrameBytes, m.refused_frame_bytes);
  w.finish();
  finish_frame(out, at);
}

void append_auth_proof(std::string& out, const AuthProof& m) {
  const std::size_t at = begin(out, FrameKind::kAuth);
  MapWriter w(out);
  w.bin(auth_f::kProof, m.proof);
  w.str(auth_f::kMessage, m.message);
  w.finish();
  finish_frame(out, at);
}

void append_request(std::string& out, const Request& m) {
  const std::size_t at = begin(out, FrameKind::kRequest);
  MapWriter w(out);
  w.uint(req_f::kId, m.id);
  w.field(req_f::kOp).uint(static_cast<std::uint8_t>(m.op));
  w.bin(req_f::kKey, m.key);
  w.bin(req_f::kValue, m.value);
  w.boolean(req_f::kPrefix, m.prefix);
  w.uint(req_f::kLimit, m.limit);
  w.uint(req_f::kExpectRevision, m.expect_revision);
  w.boolean(req_f::kSerializable, m.serializable);
  w.boolean(req_f::kKeysOnly, m.keys_only);
  w.boolean(req_f::kCountOnly, m.count_only);
  w.uint(req_f::kStartRevision, m.start_revision);
  w.uint(req_f::kWatchId, m.watch_id);
  w.uint(req_f::kMemberId, m.member_id);
  w.str(req_f::kName, m.name);
  w.str(req_f::kPeerAddr, m.peer_addr);
  w.str(req_f::kClientAddr, m.client_addr);
  w.boolean(req_f::kLearner, m.learner);
  w.boolean(req_f::kForce, m.force);
  w.uint(req_f::kTimeoutMs, m.timeout_ms);
  w.finish();
  finish_frame(out, at);
}

void append_response(std::string& out, const Response& m) {
  const std::size_t at = begin(out, FrameKind::kResponse);
  MapWriter w(out);
  w.uint(resp_f::kId, m.id);
  w.uint(resp_f::kCode, static_cast<std::uint8_t>(m.code));
  w.str(resp_f::kMessage, m.message);
  w.uint(resp_f::kLeaderId, m.leader_id);
  w.str(resp_f::kLeaderName, m.leader_name);
  w.str(resp_f::kLeaderClientAddr, m.leader_client_addr);
  w.uint(resp_f::kRevision, m.revision);
  if (!m.kvs.empty()) {
    Writer& kw = w.field(resp_f::kKvs);
    kw.array(static_cast<std::uint32_t>(m.kvs.size()));
    for (const KeyValue& kv : m.kvs) write_kv(kw, kv);
  }
  w.boolean(resp_f::kMore, m.more);
  w.uint(resp_f::kCount, m.count);
  w.boolean(resp_f::kFound, m.found);
  if (!m.members.empty()) {
    Writer& mw = w.field(resp_f::kMembers);
    mw.array(static_cast<std::uint32_t>(m.members.size()));
    for (const MemberInfo& mi : m.members) {
      mw.array(6);
      mw.uint(mi.id);
      mw.str(mi.name);
      mw.str(mi.peer_addr);
      mw.str(mi.client_addr);
      mw.boolean(mi.learner);
      mw.boolean(mi.is_leader);
    }
  }
  if (m.has_status) {
    w.field(resp_f::kStatus);
    write_status(out, m.status);
  }
  w.uint(resp_f::kWatchId, m.watch_id);
  if (!m.events.empty()) {
    Writer& ew = w.field(resp_f::kEvents);
    ew.array(static_cast<std::uint32_t>(m.events.size()));
    for (const Event& e : m.events) {
      ew.array(2);
      ew.uint(static_cast<std::uint8_t>(e.type));
      write_kv(ew, e.kv);
    }
  }
  w.uint(resp_f::kCompactRevision, m.compact_revision);
  w.bin(resp_f::kData, m.data);
  w.boolean(resp_f::kDone, m.done);
  w.uint(resp_f::kHash, m.hash);
  w.uint(resp_f::kMemberId, m.member_id);
  w.finish();
  finish_frame(out, at);
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
  if (kind < 1 || kind > static_cast<std::uint64_t>(FrameKind::kAuth)) {
    return Status::corruption("frame: unknown message kind " + std::to_string(kind));
  }
  env.kind = static_cast<FrameKind>(kind);
  env.body = &items[1];
  return env;
}

Result<Hello> decode_hello(const msgpack::object& body) {
  Hello m;
  m.protocol_version = 0;
  std::uint64_t role = 0;
  Status s = for_each_field(body, "hello", [&](std::uint64_t id, const msgpack::object& v) {
    switch (id) {
      case hello_f::kVersion:
        return get_uint_as(v, &m.protocol_version, "hello.version");
      case hello_f::kRole:
        return get_uint(v, &role, "hello.role");
      case hello_f::kClusterId:
        return get_uint(v, &m.cluster_id, "hello.cluster_id");
      case hello_f::kMemberId:
        return get_uint(v, &m.member_id, "hello.member_id");
      case hello_f::kName:
        return get_bytes(v, &m.name, "hello.name");
      case hello_f::kSoftware:
        return get_bytes(v, &m.software_version, "hello.software");
      case hello_f::kNonce:
        return get_bytes(v, &m.nonce, "hello.nonce");
      case hello_f::kProof:
        return get_bytes(v, &m.proof, "hello.proof");
      case hello_f::kPeerAddr:
        return get_bytes(v, &m.peer_addr, "hello.peer_addr");
      case hello_f::kClientAddr:
        return get_bytes(v, &m.client_addr, "hello.client_addr");
      default:
        return Status();
    }
  });
  if (!s.ok()) return s;
  if (role != static_cast<std::uint8_t>(Role::kPeer) &&
      role != static_cast<std::uint8_t>(Role::kClient)) {
    return Status::corruption("hello: unknown role " + std::to_string(role));
  }
  m.role = static_cast<Role>(role);
  return m;
}

Result<AuthProof> decode_auth_proof(const msgpack::object& body) {
  AuthProof m;
  Status s = for_each_field(body, "auth", [&](std::uint64_t id, const msgpack::object& v) {
    switch (id) {
      case auth_f::kProof:
        return get_bytes(v, &m.proof, "auth.proof");
      case auth_f::kMessage:
        return get_bytes(v, &m.message, "auth.message");
      default:
        return Status();
    }
  });
  if (!s.ok()) return s;
  return m;
}

Result<HelloReply> decode_hello_reply(const msgpack::object& body) {
  HelloReply m;
  Status s = for_each_field(body, "hello_reply", [&](std::uint64_t id, const msgpack::object& v) {
    switch (id) {
      case reply_f::kCode:
        return read_code(v, &m.code, "hello_reply.code");
      case reply_f::kMessage:
        return get_bytes(v, &m.message, "hello_reply.message");
      case reply_f::kClusterId:
        return get_uint(v, &m.cluster_id, "hello_reply.cluster_id");
      case reply_f::kMemberId:
        return get_uint(v, &m.member_id, "hello_reply.member_id");
      case reply_f::kName:
        return get_bytes(v, &m.name, "hello_reply.name");
      case reply_f::kSoftware:
        return get_bytes(v, &m.software_version, "hello_reply.software");
      case reply_f::kNonce:
        return get_bytes(v, &m.nonce, "hello_reply.nonce");
      case reply_f::kProof:
        return get_bytes(v, &m.proof, "hello_reply.proof");
      case reply_f::kClientAddr:
        return get_bytes(v, &m.client_addr, "hello_reply.client_addr");
      case reply_f::kAssignedMemberId:
        return get_uint(v, &m.assigned_member_id, "hello_reply.assigned_member_id");
      case reply_f::kRemoved:
        return get_bool(v, &m.removed, "hello_reply.removed");
      case reply_f::kMaxFrameBytes:
        return get_uint(v, &m.max_frame_bytes, "hello_reply.max_frame_bytes");
      case reply_f::kMaxRequestBytes:
        return get_uint(v, &m.max_request_bytes, "hello_reply.max_request_bytes");
      case reply_f::kRefusedFrameBytes:
        return get_uint(v, &m.refused_frame_bytes, "hello_reply.refused_frame_bytes");
      default:
        return Status();
    }
  });
  if (!s.ok()) return s;
  return m;
}

Result<Request> decode_request(const msgpack::object& body) {
  Request m;
  std::uint64_t op = 0;
  Status s = for_each_field(body, "request", [&](std::uint64_t id, const msgpack::object& v) {
    switch (id) {
      case req_f::kId:
        return get_uint(v, &m.id, "request.id");
      case req_f::kOp:
        return get_uint(v, &op, "request.op");
      case req_f::kKey:
        return get_bytes(v, &m.key, "request.key");
      case req_f::kValue:
        return get_bytes(v, &m.value, "request.value");
      case req_f::kPrefix:
        return get_bool(v, &m.prefix, "request.prefix");
      case req_f::kLimit:
        return get_uint(v, &m.limit, "request.limit");
      case req_f::kExpectRevision:
        return get_uint(v, &m.expect_revision, "request.expect_revision");
      case req_f::kSerializable:
        return get_bool(v, &m.serializable, "request.serializable");
      case req_f::kKeysOnly:
        return get_bool(v, &m.keys_only, "request.keys_only");
      case req_f::kCountOnly:
        return get_bool(v, &m.count_only, "request.count_only");
      case req_f::kStartRevision:
        return get_uint(v, &m.start_revision, "request.start_revision");
      case req_f::kWatchId:
        return get_uint(v, &m.watch_id, "request.watch_id");
      case req_f::kMemberId:
        return get_uint(v, &m.member_id, "request.member_id");
      case req_f::kName:
        return get_bytes(v, &m.name, "request.name");
      case req_f::kPeerAddr:
        return get_bytes(v, &m.peer_addr, "request.peer_addr");
      case req_f::kClientAddr:
        return get_bytes(v, &m.client_addr, "request.client_addr");
      case req_f::kLearner:
        return get_bool(v, &m.learner, "request.learner");
      case req_f::kForce:
        return get_bool(v, &m.force, "request.force");
      case req_f::kTimeoutMs:
        return get_uint(v, &m.timeout_ms, "request.timeout_ms");
      default:
        return Status();
    }
  });
  if (!s.ok()) return s;
  if (op < static_cast<std::uint64_t>(Op::kGet) ||
      op > static_cast<std::uint64_t>(Op::kMemberUpdate)) {
    return Status::invalid_argument("request: unknown op " + std::to_string(op));
  }
  m.op = static_cast<Op>(op);
  return m;
}

// Long on purpose: one case per field of the response map, in the order wire/messages.h lists
// them.
Result<Response> decode_response(const msgpack::object& body) {
  Response m;
  Status s = for_each_field(body, "response", [&](std::uint64_t id, const msgpack::object& v) {
    switch (id) {
      case resp_f::kId:
        return get_uint(v, &m.id, "response.id");
      case resp_f::kCode:
        return read_code(v, &m.code, "response.code");
      case resp_f::kMessage:
        return get_bytes(v, &m.message, "response.message");
      case resp_f::kLeaderId:
        return get_uint(v, &m.leader_id, "response.leader_id");
      case resp_f::kLeaderName:
        return get_bytes(v, &m.leader_name, "response.leader_name");
      case resp_f::kLeaderClientAddr:
        return get_bytes(v, &m.leader_client_addr, "response.leader_client_addr");
      case resp_f::kRevision:
        return get_uint(v, &m.revision, "response.revision");
      case resp_f::kKvs: {
        const msgpack::object* items = nullptr;
        std::uint32_t n = 0;
        KVC_RETURN_IF_ERROR(get_array(v, &items, &n, "response.kvs"));
        m.kvs.resize(n);
        for (std::uint32_t i = 0; i < n; ++i) KVC_RETURN_IF_ERROR(read_kv(items[i], &m.kvs[i]));
        return Status();
      }
      case resp_f::kMore:
        return get_bool(v, &m.more, "response.more");
      case resp_f::kCount:
        return get_uint(v, &m.count, "response.count");
      case resp_f::kFound:
        return get_bool(v, &m.found, "response.found");
      case resp_f::kMembers: {
        const msgpack::object* items = nullptr;
        std::uint32_t n = 0;
        KVC_RETURN_IF_ERROR(get_array(v, &items, &n, "response.members"));
        m.members.resize(n);
        for (std::uint32_t i = 0; i < n; ++i) {
          const msgpack::object* f = nullptr;
          std::uint32_t nf = 0;
          KVC_RETURN_IF_ERROR(get_array(items[i], &f, &nf, "member"));
          if (nf < 6) return Status::corruption("member: expected 6 fields");
          MemberInfo& mi = m.members[i];
          KVC_RETURN_IF_ERROR(get_uint(f[0], &mi.id, "member.id"));
          KVC_RETURN_IF_ERROR(get_bytes(f[1], &mi.name, "member.name"));
          KVC_RETURN_IF_ERROR(get_bytes(f[2], &mi.peer_addr, "member.peer_addr"));
          KVC_RETURN_IF_ERROR(get_bytes(f[3], &mi.client_addr, "member.client_addr"));
          KVC_RETURN_IF_ERROR(get_bool(f[4], &mi.learner, "member.learner"));
          KVC_RETURN_IF_ERROR(get_bool(f[5], &mi.is_leader, "member.is_leader"));
        }
        return Status();
      }
      case resp_f::kStatus:
        m.has_status = true;
        return read_status(v, &m.status);
      case resp_f::kWatchId:
        return get_uint(v, &m.watch_id, "response.watch_id");
      case resp_f::kEvents: {
        const msgpack::object* items = nullptr;
        std::uint32_t n = 0;
        KVC_RETURN_IF_ERROR(get_array(v, &items, &n, "response.events"));
        m.events.resize(n);
        for (std::uint32_t i = 0; i < n; ++i) {
          const msgpack::object* f = nullptr;
          std::uint32_t nf = 0;
          KVC_RETURN_IF_ERROR(get_array(items[i], &f, &nf, "event"));
          if (nf < 2) return Status::corruption("event: expected [type, kv]");
          std::uint64_t type = 0;
          KVC_RETURN_IF_ERROR(get_uint(f[0], &type, "event.type"));
          if (type != 1 && type != 2) {
            return Status::corruption("event: unknown type " + std::to_string(type));
          }
          m.events[i].type = static_cast<EventType>(type);
          KVC_RETURN_IF_ERROR(read_kv(f[1], &m.events[i].kv));
        }
        return Status();
      }
      case resp_f::kCompactRevision:
        return get_uint(v, &m.compact_revision, "response.compact_revision");
      case resp_f::kData:
        return get_bytes(v, &m.data, "response.data");
      case resp_f::kDone:
        return get_bool(v, &m.done, "response.done");
      case resp_f::kHash:
        return get_uint(v, &m.hash, "response.hash");
      case resp_f::kMemberId:
        return get_uint(v, &m.member_id, "response.member_id");
      default:
        return Status();
    }
  });
  if (!s.ok()) return s;
  return m;
}

}  // namespace kvc::wire
