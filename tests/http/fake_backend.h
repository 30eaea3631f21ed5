// A Backend for the HTTP tests: an in-memory key-value map with the client protocol's semantics
// (revisions, compare-and-set and compare-and-delete on the mod revision, ranges under a prefix
// with `more`, leases with their keys, a small txn evaluator), health
// and readiness the test sets, a metrics registry, and knobs to fail the next call or to hold
// answers back until the test releases them (answers that come later, out of order), and
// watches the test feeds by hand through the sink the routes hand over.
// Single-threaded, like the loop it serves.
#pragma once

#include <algorithm>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvc/common/metrics.h"
#include "kvc/common/text.h"
#include "kvc/http/kv_routes.h"

namespace kvc::http::testing {

class FakeBackend : public Backend {
 public:
  void health(std::function<void(Status)> done) override {
    ++health_calls;
    done(health_status);
  }
  Readiness ready() override { return readiness; }
  std::string metrics_text() override { return registry.expose(); }
  std::string http_address_of(std::uint64_t id) override {
    return id == leader_with_http ? leader_http_address : std::string();
  }
  std::string http_scheme() override { return leader_http_scheme; }

  Result<std::string> authenticate(const HttpRequest& r) override {
    (void)r;
    if (!authentication.ok()) return authentication;
    return identity;
  }

  void call(wire::Request q, std::function<void(wire::Response)> done) override {
    calls.push_back(q);
    wire::Response r = answer(q);
    if (held_keys.count(q.key) != 0) {
      held.push_back([done = std::move(done), r = std::move(r)] { done(r); });
      return;
    }
    done(std::move(r));
  }

  // Answers held back, oldest first.
  void release_all() {
    std::deque<std::function<void()>> h;
    h.swap(held);
    for (auto& f : h) f();
  }

  wire::Response answer(const wire::Request& q) {
    wire::Response r;
    r.id = q.id;
    if (next_error) {
      r = *next_error;
      next_error.reset();
      return r;
    }
    switch (q.op) {
      case wire::Op::kGet: {
        auto it = kvs.find(q.key);
        if (it != kvs.end()) {
          r.found = true;
          r.kvs.push_back(it->second);
          if (q.keys_only) r.kvs.back().value.clear();
        }
        break;
      }
      case wire::Op::kRange: {
        const std::uint64_t limit = q.limit == 0 ? 10000 : q.limit;
        for (auto it = kvs.lower_bound(q.key); it != kvs.end() && it->first.starts_with(q.value);
             ++it) {
          if (r.kvs.size() == limit) {
            r.more = true;
            break;
          }
          r.kvs.push_back(it->second);
          if (q.keys_only) r.kvs.back().value.clear();
        }
        r.count = r.kvs.size();
        break;
      }
      case wire::Op::kCas: {
        auto it = kvs.find(q.key);
        const std::uint64_t current = it == kvs.end() ? 0 : it->second.mod_revision;
        if (current != q.expect_revision) {
          r.code = Code::kCompareFailed;
          r.revision = current;
          r.message = "the key's mod revision is " + std::to_string(current) + ", not " +
                      std::to_string(q.expect_revision);
          return r;
        }
        put(q.key, q.value);
        r.found = true;
        break;
      }
      case wire::Op::kPut:
        if (q.lease != 0 && leases.count(q.lease) == 0) {
          r.code = Code::kNotFound;
          r.message = "lease " + id_hex(q.lease) + " not found";
          return r;
        }
        put(q.key, q.value, q.lease);
        break;
      case wire::Op::kWhoami:
        r.identity = q.on_behalf_of;
        break;
      case wire::Op::kLeader:
        r.member_id = member_id;
        r.leader_id = leader_id;
        r.leader_name = leader_name;
        r.leader_client_addr = leader_client_addr;
        if (leader_id == 0) {
          r.code = Code::kUnavailable;
          r.message = "no leader known";
        }
        break;
      case wire::Op::kDelete:
        if (q.expect_revision != 0) {  // compare-and-delete, as the member answers it
          auto it = kvs.find(q.key);
          const std::uint64_t current = it == kvs.end() ? 0 : it->second.mod_revision;
          if (current != q.expect_revision) {
            r.code = Code::kCompareFailed;
            r.revision = current;
            r.message = "the key's mod revision is " + std::to_string(current) + ", not " +
                        std::to_string(q.expect_revision);
            return r;
          }
        }
        if (kvs.erase(q.key) != 0) {
          ++revision;
          r.found = true;
          r.count = 1;
        }
        break;
      case wire::Op::kLeaseGrant:
        if (leases.count(q.lease) != 0) {
          r.code = Code::kAlreadyExists;
          r.message = "lease " + id_hex(q.lease) + " exists already";
          return r;
        }
        r.lease = q.lease != 0 ? q.lease : 0xabc0 + leases.size();
        r.ttl = q.ttl;
        leases[r.lease] = q.ttl;
        ++revision;
        break;
      case wire::Op::kLeaseRevoke:
      case wire::Op::kLeaseKeepAlive:
      case wire::Op::kLeaseTtl: {
        auto it = leases.find(q.lease);
        if (it == leases.end()) {
          r.code = Code::kNotFound;
          r.message = "lease " + id_hex(q.lease) + " not found";
          return r;
        }
        r.ttl = it->second;
        if (q.op == wire::Op::kLeaseTtl) {
          wire::LeaseInfo l{.id = q.lease, .ttl = it->second, .remaining_ms = it->second * 900};
          for (const auto& [k, kv] : kvs) {
            if (kv.lease == q.lease && q.keys_only) l.keys.push_back(k);
          }
          r.leases.push_back(std::move(l));
        }
        if (q.op == wire::Op::kLeaseRevoke) {
          leases.erase(it);
          ++revision;
          for (auto k = kvs.begin(); k != kvs.end();) {
            if (k->second.lease == q.lease) {
              k = kvs.erase(k);
              ++r.count;
            } else {
              ++k;
            }
          }
        }
        break;
      }
      case wire::Op::kLeaseList:
        for (const auto& [id, ttl] : leases) {
          r.leases.push_back({.id = id, .ttl = ttl, .remaining_ms = ttl * 900});
        }
        break;
      case wire::Op::kTxn:
        return txn(q);
      default:
        r.code = Code::kInvalidArgument;
        r.message = "unsupported op";
        return r;
    }
    r.revision = revision;
    return r;
  }

  // A txn of mod-revision and value compares and put/get/delete ops (not prefixes), at one
  // revision; over --max-txn-ops (max_txn_ops) refused as the member refuses it.
  wire::Response txn(const wire::Request& q) {
    wire::Response r;
    if (std::max({q.compares.size(), q.then_ops.size(), q.else_ops.size()}) > max_txn_ops) {
      r.code = Code::kInvalidArgument;
      r.message = "txn exceeds --max-txn-ops " + std::to_string(max_txn_ops);
      return r;
    }
    r.succeeded = true;
    for (const Compare& c : q.compares) {
      auto it = kvs.find(c.key);
      bool holds = false;
      if (c.target == CompareTarget::kValue) {
        holds = it != kvs.end() && it->second.value == c.value;
      } else if (c.target == CompareTarget::kModRevision) {
        holds = (it == kvs.end() ? 0 : it->second.mod_revision) == c.number;
      }
      if (c.op == CompareOp::kNotEqual) holds = !holds;
      r.succeeded = r.succeeded && holds;
    }
    const std::uint64_t at = revision + 1;
    bool wrote = false;
    for (const TxnOp& op : r.succeeded ? q.then_ops : q.else_ops) {
      wire::TxnResult t;
      t.type = op.type;
      if (op.type == TxnOpType::kPut) {
        revision = at - 1;
        put(op.key, op.value, op.lease);
        t.revision = at;
        wrote = true;
      } else if (op.type == TxnOpType::kDelete) {
        t.deleted = kvs.erase(op.key);
        if (t.deleted != 0) t.revision = at;
        wrote = wrote || t.deleted != 0;
      } else if (auto it = kvs.find(op.key); it != kvs.end()) {
        t.kvs.push_back(it->second);
      }
      r.txn_results.push_back(std::move(t));
    }
    revision = wrote ? at : revision;
    r.revision = revision;
    return r;
  }

  void put(const std::string& key, const std::string& value, std::uint64_t lease = 0) {
    ++revision;
    wire::KeyValue& kv = kvs[key];
    if (kv.create_revision == 0) {
      kv.key = key;
      kv.create_revision = revision;
    }
    kv.lease = lease;
    kv.value = value;
    kv.mod_revision = revision;
    ++kv.version;
  }

  struct Watch {
    wire::Request request;
    std::shared_ptr<WatchSink> sink;
  };
  void watch(wire::Request q, std::shared_ptr<WatchSink> sink,
             std::function<void(wire::Response, std::uint64_t)> started) override {
    if (next_watch_error) {
      wire::Response r = *next_watch_error;
      next_watch_error.reset();
      started(std::move(r), 0);
      return;
    }
    watches[++watch_seq] = {std::move(q), std::move(sink)};
    started(wire::Response{}, watch_seq);
  }
  void cancel_watch(std::uint64_t handle) override {
    cancelled.push_back(handle);
    watches.erase(handle);
  }

  std::map<std::string, wire::KeyValue> kvs;
  std::map<std::uint64_t, std::uint64_t> leases;  // id -> ttl
  std::uint64_t max_txn_ops = 128;
  std::uint64_t revision = 0;
  Status health_status;
  Readiness readiness{true, ""};
  metrics::Registry registry;
  std::optional<wire::Response> next_error;
  std::set<std::string> held_keys;  // calls on these keys are answered only by release_all()
  std::deque<std::function<void()>> held;
  std::vector<wire::Request> calls;
  Status authentication;  // not ok: authenticate() refuses with it
  std::string identity = "anonymous";
  int health_calls = 0;
  std::uint64_t leader_with_http = 0;
  std::string leader_http_address;
  std::string leader_http_scheme = "http";
  // kLeader answers.
  std::uint64_t member_id = 0x11, leader_id = 0x22;
  std::string leader_name = "n2", leader_client_addr = "127.0.0.1:2379";
  // Watches started and not cancelled, by handle; handles cancelled, in order.
  std::map<std::uint64_t, Watch> watches;
  std::uint64_t watch_seq = 0;
  std::vector<std::uint64_t> cancelled;
  std::optional<wire::Response> next_watch_error;  // the next watch fails with this
};

}  // namespace kvc::http::testing
