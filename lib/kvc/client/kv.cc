#include "kvc/client/kv.h"

#include <utility>

namespace kvc::client {

namespace {
Status to_status(const wire::Response& r) { return Status(r.code, r.message); }
}  // namespace

KeyValue from_wire(const wire::KeyValue& kv) {
  return {kv.key, kv.value, kv.create_revision, kv.mod_revision, kv.version, kv.lease};
}

LeaseInfo from_wire(const wire::LeaseInfo& l) { return {l.id, l.ttl, l.remaining_ms, l.keys}; }

Result<std::optional<KeyValue>> Kv::get(const std::string& key, ReadOptions options) {
  wire::Response r = channel_.channel_call(
      {.op = wire::Op::kGet, .key = key, .serializable = options.serializable});
  if (r.code != Code::kOk) return to_status(r);
  if (!r.found || r.kvs.empty()) return std::optional<KeyValue>();
  return std::optional<KeyValue>(from_wire(r.kvs.front()));
}

Result<bool> Kv::exists(const std::string& key, ReadOptions options) {
  wire::Response r = channel_.channel_call(
      {.op = wire::Op::kGet, .key = key, .serializable = options.serializable, .keys_only = true});
  if (r.code != Code::kOk) return to_status(r);
  return r.found;
}

Result<std::uint64_t> Kv::set(const std::string& key, const std::string& value,
                              std::uint64_t lease) {
  wire::Response r =
      channel_.channel_call({.op = wire::Op::kPut, .key = key, .value = value, .lease = lease});
  if (r.code != Code::kOk) return to_status(r);
  return r.revision;
}

Result<bool> Kv::del(const std::string& key, std::uint64_t expect_revision) {
  wire::Response r = channel_.channel_call(
      {.op = wire::Op::kDelete, .key = key, .expect_revision = expect_revision});
  if (r.code != Code::kOk) return to_status(r);
  return r.found;
}

Result<std::uint64_t> Kv::cas(const std::string& key, const std::string& value,
                              std::uint64_t expect_revision) {
  wire::Response r = channel_.channel_call(
      {.op = wire::Op::kCas, .key = key, .value = value, .expect_revision = expect_revision});
  if (r.code != Code::kOk) return to_status(r);
  return r.revision;
}

Result<std::vector<KeyValue>> Kv::list(const std::string& prefix, std::uint64_t limit,
                                       ReadOptions options) {
  std::vector<KeyValue> out;
  std::string start = prefix;
  for (;;) {
    const std::uint64_t want = limit == 0 ? 0 : limit - out.size();
    wire::Response r = channel_.channel_call({.op = wire::Op::kRange,
                                              .key = start,
                                              .value = prefix,
                                              .prefix = true,
                                              .limit = want,
                                              .serializable = options.serializable});
    if (r.code != Code::kOk) return to_status(r);
    for (const wire::KeyValue& kv : r.kvs) out.push_back(from_wire(kv));
    if (!r.more || r.kvs.empty() || (limit != 0 && out.size() >= limit)) break;
    start = r.kvs.back().key;
    start.push_back('\0');
  }
  return out;
}

Result<LeaseInfo> Kv::lease_grant(std::uint64_t ttl_s) {
  wire::Response r = channel_.channel_call({.op = wire::Op::kLeaseGrant, .ttl = ttl_s});
  if (r.code != Code::kOk) return to_status(r);
  return LeaseInfo{r.lease, r.ttl, r.ttl * 1000, {}};
}

Result<std::uint64_t> Kv::lease_revoke(std::uint64_t id) {
  wire::Response r = channel_.channel_call({.op = wire::Op::kLeaseRevoke, .lease = id});
  if (r.code != Code::kOk) return to_status(r);
  return r.count;
}

Result<std::uint64_t> Kv::lease_keep_alive(std::uint64_t id) {
  wire::Response r = channel_.channel_call({.op = wire::Op::kLeaseKeepAlive, .lease = id});
  if (r.code != Code::kOk) return to_status(r);
  return r.ttl;
}

Result<LeaseInfo> Kv::lease_ttl(std::uint64_t id, bool with_keys) {
  wire::Response r =
      channel_.channel_call({.op = wire::Op::kLeaseTtl, .keys_only = with_keys, .lease = id});
  if (r.code != Code::kOk) return to_status(r);
  if (r.leases.empty()) return Status::internal("lease_ttl answered without the lease");
  return from_wire(r.leases[0]);
}

Result<std::vector<LeaseInfo>> Kv::leases() {
  wire::Response r = channel_.channel_call({.op = wire::Op::kLeaseList});
  if (r.code != Code::kOk) return to_status(r);
  std::vector<LeaseInfo> out;
  for (const wire::LeaseInfo& l : r.leases) out.push_back(from_wire(l));
  return out;
}

Result<TxnResult> Kv::txn(const Txn& t) {
  wire::Request req{.op = wire::Op::kTxn};
  req.compares = t.compares;
  req.then_ops = t.success;
  req.else_ops = t.failure;
  wire::Response r = channel_.channel_call(std::move(req));
  if (r.code != Code::kOk) return to_status(r);
  TxnResult out;
  out.succeeded = r.succeeded;
  out.revision = r.revision;
  for (const wire::TxnResult& w : r.txn_results) {
    TxnOpResult o{w.type, w.revision, w.deleted, {}, w.more};
    for (const wire::KeyValue& kv : w.kvs) o.kvs.push_back(from_wire(kv));
    out.results.push_back(std::move(o));
  }
  return out;
}

}  // namespace kvc::client
