// The server simulation's clients (server_sim_internal.h): four clients put, get, compare-and-set
// and delete four keys through the members, recording the history the linearizability checker
// reads; an operation whose member crashed or timed out has an unknown outcome. With the
// coordination workload they also run multi-key txns (recorded as one op per key, all at the
// txn's revision: docs/checker.md says why that is sound; each answered txn is also kept whole
// for the txn checker, server_sim_txns.cc) and hold leases on keys of their own, which the lease
// checker (server_sim_leases.cc) follows instead of the linearizability checker.
#include "kvc/sim/server_sim_internal.h"

namespace kvc::sim::server_cluster {

void ServerSim::next_op(ClientState& c) {
  if (c.busy || healed_ || !result_.ok || c.ops >= o_.max_ops_per_client) return;
  std::vector<int> up;
  for (const Slot& s : slots_) {
    if (s.member && !s.member->stopped() && !s.stopping) up.push_back(s.index);
  }
  if (up.empty()) {
    const int id = c.id;
    at(now_us_ + 20'000, [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
    return;
  }
  int target = up[rand(up.size())];
  if (c.leader_hint >= 0 && chance(75) && slots_[static_cast<std::size_t>(c.leader_hint)].member) {
    target = c.leader_hint;
  }
  check::Operation op;
  op.client = static_cast<std::uint64_t>(c.id);
  op.key = kKeys[rand(4)];
  const std::uint64_t k = rand(100);
  op.kind = k < 35   ? check::OpKind::kGet
            : k < 70 ? check::OpKind::kPut
            : k < 88 ? check::OpKind::kCas
                     : check::OpKind::kDelete;
  if (!cold_written_) {
    // The cold key: written once, first, never again, so its value stays in LMDB where damage
    // can reach it (a hot key's stored value is soon hidden by newer writes in the overlay).
    cold_written_ = true;
    op.key = kColdKey;
    op.kind = check::OpKind::kPut;
  }
  // Biased: soon after a value was damaged, reads of that key go to the damaged member half the
  // time (a member that served the damaged value would be caught at once).
  if (damaged_read_until_ > now_us_ && chance(50)) {
    const Slot& d = slots_[static_cast<std::size_t>(damaged_slot_)];
    if (d.member && !d.member->stopped() && !d.stopping) {
      target = damaged_slot_;
      op.key = damaged_key_;
      op.kind = check::OpKind::kGet;
    }
  }
  Slot& s = slots_[static_cast<std::size_t>(target)];
  wire::Request req;
  req.timeout_ms = 1500;
  // The coordination workload (drawn only when it is on, so that the kv workload's draws are
  // what they were without it): about one op in five is a txn or a lease op.
  InFlightOp::Kind kind = InFlightOp::Kind::kKv;
  if (o_.coordination && op.key != kColdKey &&
      !(damaged_read_until_ > now_us_ && target == damaged_slot_ && op.key == damaged_key_) &&
      coordination_op(c, req, kind)) {
    ++result_.stats.operations;
    ++c.ops;
    c.busy = true;
    InFlightOp in{0, c.id, target, s.incarnation, false, kind, req, now_us_};
    inflight_.push_back(std::move(in));
    const std::size_t f = inflight_.size() - 1;
    if (o_.trace) {
      trace("c" + std::to_string(c.id) + " " + std::string(wire::op_name(req.op)) +
            (req.lease != 0 ? " lease=" + std::to_string(req.lease) : "") +
            (req.key.empty() ? "" : " key=" + req.key) +
            (req.op == wire::Op::kTxn ? " then=" + std::to_string(req.then_ops.size()) +
                                            " else=" + std::to_string(req.else_ops.size())
                                      : "") +
            " -> " + s.name);
    }
    enter(target);
    s.member->submit(std::move(req), [this, f](wire::Response r) { finish_op(f, r); });
    after_event(target);
    return;
  }
  req.key = op.key;
  switch (op.kind) {
    case check::OpKind::kGet:
      req.op = wire::Op::kGet;
      break;
    case check::OpKind::kPut:
      req.op = wire::Op::kPut;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      break;
    case check::OpKind::kCas: {
      req.op = wire::Op::kCas;
      op.value = "v" + std::to_string(++value_seq_);
      req.value = op.value;
      const std::uint64_t seen = seen_revision_[op.key];
      op.expect_revision = chance(70) ? seen : (chance(50) ? 0 : seen + 1 + rand(5));
      req.expect_revision = op.expect_revision;
      break;
    }
    case check::OpKind::kDelete:
      req.op = wire::Op::kDelete;
      break;
  }
  op.invoke_time = now_us_;
  history_.push_back(op);
  ++result_.stats.operations;
  ++c.ops;
  c.busy = true;
  inflight_.push_back({history_.size() - 1, c.id, target, s.incarnation, false});
  const std::size_t f = inflight_.size() - 1;
  if (o_.trace) {
    trace("c" + std::to_string(c.id) + " " + std::string(wire::op_name(req.op)) + "(" + op.key +
          (op.value.empty() ? "" : ", " + op.value) +
          (op.kind == check::OpKind::kCas ? ", expect=" + std::to_string(op.expect_revision) : "") +
          ") -> " + s.name);
  }
  enter(target);
  s.member->submit(std::move(req), [this, f](wire::Response r) { finish_op(f, r); });
  after_event(target);
}

void ServerSim::finish_op(std::size_t f, const wire::Response& r) {
  InFlightOp& in = inflight_[f];
  if (in.done) return;
  in.done = true;
  ClientState& c = clients_[static_cast<std::size_t>(in.client)];
  c.busy = false;
  auto hint = slot_of_id_.find(r.leader_id);
  c.leader_hint = hint != slot_of_id_.end() ? hint->second : -1;
  if (in.kind != InFlightOp::Kind::kKv) {
    if (o_.trace) {
      trace("c" + std::to_string(in.client) + " answered: " + std::string(code_name(r.code)) +
            " revision=" + std::to_string(r.revision) +
            (in.kind == InFlightOp::Kind::kTxn
                 ? " succeeded=" + std::to_string(r.succeeded) +
                       " results=" + std::to_string(r.txn_results.size())
                 : "") +
            (r.message.empty() ? "" : " (" + r.message + ")"));
    }
    if (in.kind == InFlightOp::Kind::kTxn) {
      finish_txn(in, &r);
    } else {
      finish_lease(in, r);
    }
    const int id = c.id;
    at(now_us_ + rand(5000), [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
    return;
  }
  check::Operation& op = history_[in.op];
  op.response_time = now_us_;
  const bool write = op.kind != check::OpKind::kGet;
  if (o_.trace) {
    trace("c" + std::to_string(in.client) + " answered: " + std::string(code_name(r.code)) +
          " found=" + std::to_string(r.found) + " revision=" + std::to_string(r.revision) +
          (r.kvs.empty() ? "" : " value=" + r.kvs.front().value) +
          (r.message.empty() ? "" : " (" + r.message + ")"));
  }
  if (r.code == Code::kOk || (r.code == Code::kCompareFailed && op.kind == check::OpKind::kCas)) {
    check::record_answer(op, r);
    ++result_.stats.operations_ok;
    note_seen(op);
  } else if (write && r.code != Code::kNotLeader && r.code != Code::kUnavailable &&
             r.code != Code::kShuttingDown && r.code != Code::kResourceExhausted &&
             r.code != Code::kInvalidArgument) {
    // A timeout or an unexpected error: the write may or may not have happened.
    op.outcome = check::Outcome::kUnknown;
    op.response_time = check::kNever;
    ++result_.stats.operations_unknown;
  } else {
    op.outcome = check::Outcome::kFailed;
  }
  const int id = c.id;
  at(now_us_ + rand(5000), [this, id] { next_op(clients_[static_cast<std::size_t>(id)]); });
}

Compare ServerSim::random_compare(const std::string& key) {
  Compare c;
  c.key = key;
  c.op = static_cast<CompareOp>(1 + rand(4));
  const std::uint64_t seen = seen_revision_[key];
  switch (rand(4)) {
    case 0: {
      c.target = CompareTarget::kValue;
      auto it = seen_value_.find(key);
      c.value = it != seen_value_.end() && chance(60) ? it->second
                                                      : "v" + std::to_string(rand(value_seq_ + 1));
      break;
    }
    case 1:
      c.target = CompareTarget::kVersion;
      c.number = rand(4);
      break;
    case 2:
      c.target = CompareTarget::kModRevision;
      c.number = seen + rand(2);
      break;
    default:
      c.target = CompareTarget::kCreateRevision;
      c.number = chance(50) ? 0 : seen;
      break;
  }
  return c;
}

void ServerSim::note_seen(const check::Operation& op) {
  std::uint64_t& seen = seen_revision_[op.key];
  if (op.revision <= seen) return;
  seen = op.revision;
  // The key's value at that revision, when the answer tells it (txn compares on values use it).
  if ((op.kind == check::OpKind::kGet && op.found) || op.kind == check::OpKind::kPut ||
      (op.kind == check::OpKind::kCas && op.found)) {
    seen_value_[op.key] = op.kind == check::OpKind::kGet ? op.read_value : op.value;
  } else {
    seen_value_.erase(op.key);
  }
}

bool ServerSim::coordination_op(ClientState& c, wire::Request& req, InFlightOp::Kind& kind) {
  const std::uint64_t k = rand(100);
  if (k < 12) {
    // A txn over two or three distinct keys. It compares the first key's mod revision (the one
    // last seen, mostly: either branch runs) and, half the time, one or two of the other keys on
    // a target drawn from value, version, mod and create, so the branch depends on several keys
    // (it fails if any compare fails). The then branch puts, deletes, gets or gets by prefix
    // each key, and now and then reads a key first that it writes later (the read must see the
    // key as it was before the txn); the else branch reads every key, or writes one.
    kind = InFlightOp::Kind::kTxn;
    req.op = wire::Op::kTxn;
    std::vector<std::string> keys(std::begin(kKeys), std::end(kKeys));
    const std::size_t n = 2 + rand(2);
    for (std::size_t i = 0; i < n; ++i) std::swap(keys[i], keys[i + rand(keys.size() - i)]);
    keys.resize(n);
    const std::uint64_t seen = seen_revision_[keys[0]];
    req.compares.push_back({.target = CompareTarget::kModRevision,
                            .op = CompareOp::kEqual,
                            .key = keys[0],
                            .number = chance(70) ? seen : seen + 1 + rand(3)});
    if (chance(50)) {
      const std::size_t more = 1 + rand(n - 1);
      for (std::size_t i = 1; i <= more; ++i) req.compares.push_back(random_compare(keys[i]));
    }
    for (const std::string& key : keys) {
      const std::uint64_t w = rand(100);
      if (w < 45) {
        req.then_ops.push_back(
            {.type = TxnOpType::kPut, .key = key, .value = "v" + std::to_string(++value_seq_)});
      } else if (w < 60) {
        req.then_ops.push_back({.type = TxnOpType::kDelete, .key = key});
      } else if (w < 85) {
        req.then_ops.push_back({.type = TxnOpType::kGet, .key = key});
      } else {
        req.then_ops.push_back({.type = TxnOpType::kGetPrefix, .key = chance(30) ? "" : key});
      }
    }
    if (chance(40)) {
      for (std::size_t i = 0; i < req.then_ops.size(); ++i) {
        const TxnOp& op = req.then_ops[i];
        if (op.type != TxnOpType::kPut && op.type != TxnOpType::kDelete) continue;
        const TxnOpType read = chance(75) ? TxnOpType::kGet : TxnOpType::kGetPrefix;
        req.then_ops.insert(req.then_ops.begin(), TxnOp{.type = read, .key = op.key});
        break;
      }
    }
    const bool else_writes = chance(30);
    for (std::size_t i = 0; i < keys.size(); ++i) {
      if (else_writes && i == 1) {
        req.else_ops.push_back(
            {.type = TxnOpType::kPut, .key = keys[i], .value = "v" + std::to_string(++value_seq_)});
      } else {
        req.else_ops.push_back({.type = TxnOpType::kGet, .key = keys[i]});
      }
    }
    ++result_.stats.txns;
    return true;
  }
  if (k >= 32) return false;
  // A lease op. A client holds at most one lease, on its own key l<client> (kept out of the
  // linearizability check: expiry deletes it without a client op).
  kind = InFlightOp::Kind::kLease;
  LeaseRecord* held = c.lease != 0 ? &leases_[c.lease] : nullptr;
  if (held != nullptr && held->revoked_commit != 0) {
    c.lease = 0;  // revoked (by expiry or by us): a new one
    held = nullptr;
  }
  if (held != nullptr && !c.keep &&
      now_us_ > held->last_ack_response + (held->ttl_ms + 2000) * 1000) {
    c.lease = 0;  // lapsed long ago (its revoke may not be seen yet): a new one
    held = nullptr;
  }
  if (held == nullptr) {
    req.op = wire::Op::kLeaseGrant;
    req.lease = ++lease_seq_;
    req.ttl = 1 + rand(2);
    c.lease = req.lease;
    c.keep = chance(60);
    LeaseRecord& l = leases_[req.lease];
    l.client = c.id;
    l.ttl_ms = req.ttl * 1000;
    return true;
  }
  req.lease = c.lease;
  const std::uint64_t w = rand(100);
  if (c.keep && w < 50) {
    req.op = wire::Op::kLeaseKeepAlive;
  } else if (w < 88 || !c.keep) {
    req.op = wire::Op::kPut;
    req.key = "l" + std::to_string(c.id);
    req.value = "v" + std::to_string(++value_seq_);
  } else {
    req.op = wire::Op::kLeaseRevoke;
    held->client_revoke = std::min(held->client_revoke, now_us_);
  }
  return true;
}

void ServerSim::finish_txn(const InFlightOp& in, const wire::Response* r) {
  // r == nullptr: the run ended with it unanswered.
  const bool ok = r != nullptr && r->code == Code::kOk;
  const bool unknown =
      r == nullptr || (!ok && r->code != Code::kNotLeader && r->code != Code::kUnavailable &&
                       r->code != Code::kShuttingDown && r->code != Code::kResourceExhausted &&
                       r->code != Code::kInvalidArgument);
  if (!ok && !unknown) return;  // definitely not applied
  if (ok) {
    ++result_.stats.txns_ok;
    acked_txns_.push_back({in.client, in.req, *r});  // for the txn checker (server_sim_txns.cc)
  }
  auto base = [&](const std::string& key) {
    check::Operation op;
    op.client = static_cast<std::uint64_t>(in.client);
    op.key = key;
    op.invoke_time = in.invoke;
    op.outcome = check::Outcome::kOk;
    op.response_time = now_us_;
    return op;
  };
  auto push = [&](check::Operation op) {
    if (op.outcome == check::Outcome::kOk) note_seen(op);
    history_.push_back(std::move(op));
  };
  // One get of `key` that found `kv` (or nothing).
  auto read = [&](const std::string& key, const wire::KeyValue* kv) {
    check::Operation op = base(key);
    op.kind = check::OpKind::kGet;
    if (kv != nullptr) {
      op.found = true;
      op.read_value = kv->value;
      op.revision = kv->mod_revision;
      // A txn's reads see the state at its own revision, never a later write.
      if (op.revision > r->revision) {
        violation("txn at revision " + std::to_string(r->revision) + " read " + key +
                  " at mod revision " + std::to_string(op.revision));
      }
    }
    push(std::move(op));
  };
  auto record = [&](const TxnOp& t, const wire::TxnResult* res, bool optional) {
    const bool write = t.type == TxnOpType::kPut || t.type == TxnOpType::kDelete;
    if (optional) {
      if (!write) return;  // a read that may not have happened says nothing
      check::Operation op = base(t.key);
      op.kind = t.type == TxnOpType::kPut ? check::OpKind::kPut : check::OpKind::kDelete;
      op.value = t.value;
      op.outcome = check::Outcome::kUnknown;
      op.response_time = check::kNever;
      history_.push_back(std::move(op));
      return;
    }
    if (!write && res == nullptr) return;
    check::Operation op = base(t.key);
    switch (t.type) {
      case TxnOpType::kPut:
        // Every write of a txn has the txn's revision: what the client learns from its answer.
        op.kind = check::OpKind::kPut;
        op.value = t.value;
        op.revision = r->revision;
        break;
      case TxnOpType::kDelete:
        op.kind = check::OpKind::kDelete;
        if (res == nullptr) {  // no result for it: whether it found the key is not known
          op.outcome = check::Outcome::kUnknown;
          op.response_time = check::kNever;
          break;
        }
        op.found = res->deleted > 0;
        op.revision = op.found ? r->revision : 0;
        break;
      case TxnOpType::kGetPrefix:
        // A get of each checked key under the prefix (leased keys stay out of the history):
        // found iff the answer lists it.
        for (const char* key : kKeys) {
          if (std::string_view(key).substr(0, t.key.size()) != t.key) continue;
          const wire::KeyValue* kv = nullptr;
          for (const wire::KeyValue& x : res->kvs) kv = x.key == key ? &x : kv;
          read(key, kv);
        }
        if (std::string_view(kColdKey).substr(0, t.key.size()) == t.key) {
          const wire::KeyValue* kv = nullptr;
          for (const wire::KeyValue& x : res->kvs) kv = x.key == kColdKey ? &x : kv;
          read(kColdKey, kv);
        }
        return;
      default:  // kGet
        read(t.key, res->kvs.empty() ? nullptr : &res->kvs.front());
        return;
    }
    push(std::move(op));
  };
  if (ok) {
    const std::vector<TxnOp>& ops = r->succeeded ? in.req.then_ops : in.req.else_ops;
    for (std::size_t i = 0; i < ops.size(); ++i) {
      record(ops[i], i < r->txn_results.size() ? &r->txn_results[i] : nullptr, false);
    }
    return;
  }
  // Unknown: either branch may have run, at any time after the invoke, or neither. Each write
  // becomes an optional op of its own (a superset of what may have happened: sound).
  ++result_.stats.operations_unknown;
  for (const TxnOp& t : in.req.then_ops) record(t, nullptr, true);
  for (const TxnOp& t : in.req.else_ops) record(t, nullptr, true);
}

void ServerSim::finish_lease(const InFlightOp& in, const wire::Response& r) {
  ClientState& c = clients_[static_cast<std::size_t>(in.client)];
  LeaseRecord& l = leases_[in.req.lease];
  const bool ok = r.code == Code::kOk;
  switch (in.req.op) {
    case wire::Op::kLeaseGrant:
    case wire::Op::kLeaseKeepAlive:
      if (ok) {
        ++(in.req.op == wire::Op::kLeaseGrant ? result_.stats.lease_grants
                                              : result_.stats.keep_alives);
        l.acked = true;
        l.last_ack_invoke = std::max(l.last_ack_invoke, in.invoke);
        l.last_ack_response = now_us_;
        if (r.ttl != 0) l.ttl_ms = r.ttl * 1000;
        check_lease_safety(in.req.lease);
      } else if (c.lease == in.req.lease &&
                 (in.req.op == wire::Op::kLeaseGrant || r.code == Code::kNotFound)) {
        c.lease = 0;  // not granted (or not known to be), or gone: the next op grants a new one
      }
      break;
    case wire::Op::kLeaseRevoke:
      if (ok) l.client_revoked = true;
      if (c.lease == in.req.lease) c.lease = 0;
      break;
    default:  // a put with the lease
      if (r.code == Code::kNotFound && c.lease == in.req.lease) c.lease = 0;
      break;
  }
}

}  // namespace kvc::sim::server_cluster
