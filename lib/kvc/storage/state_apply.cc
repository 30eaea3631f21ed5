// The LMDB state machine's apply path (state.h): a committed command (put, delete, delete by
// prefix, compare-and-set, txn, lease grant and revoke), a no-op or a membership entry applied
// into the active overlay, with its events, and the live lease table. Invariant kept here: entries
// are applied one at a time in log order (each at applied_index() + 1, checked), and the applied
// index moves with the writes it covers.
#include <algorithm>

#include "kvc/storage/state_internal.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

// ---- apply ----

Result<std::optional<KeyValue>> StateMachine::lookup(std::string_view key) {
  for (const Overlay* layer : {static_cast<const Overlay*>(active_.get()), frozen_.get()}) {
    if (layer == nullptr) continue;
    if (const OverlaySlot* s = layer->find(key)) {
      if (s->deleted) return std::optional<KeyValue>();
      KeyValue kv = slot_kv(key, *s, true);
      kv.lease = lease_of(key);
      return std::optional<KeyValue>(std::move(kv));
    }
  }
  if (key.empty() || key.size() > kMaxKeyBytes) return std::optional<KeyValue>();
  Result<MDB_txn*> txn = read_txn();
  if (!txn.ok()) return txn.status();
  MDB_val k = val_of(key), v;
  const int rc = mdb_get(*txn, dbs_->kv, &k, &v);
  if (rc == MDB_NOTFOUND) {
    // Absent, unless damage hid it (check_neighbours).
    KVC_RETURN_IF_ERROR(check_neighbours(*txn, dbs_->kv, StateDb::kKv, key, /*absent=*/true,
                                         damage_fn_, state_dir_));
    return std::optional<KeyValue>();
  }
  if (rc != 0) return lmdb_error(rc, "get");
  KeyValue kv;
  const RecordProblem p = decode_kv_record(key, view_of(v), kv, true);
  if (p != RecordProblem::kNone) return damaged(StateDb::kKv, key, p);
  kv.lease = lease_of(key);
  return std::optional<KeyValue>(std::move(kv));
}

Result<ApplyResult> StateMachine::apply(std::uint64_t index, std::uint64_t term, const Command& c) {
  return owner_read(apply_command(index, term, c));
}

// One case per command op; they share the result and the `changed` flag that decides how the
// applied index and the revision move, after the switch.
Result<ApplyResult> StateMachine::apply_command(std::uint64_t index, std::uint64_t term,
                                                const Command& c) {
  KVC_CHECK_EQ(index, applied_index() + 1);
  ApplyResult r;
  bool changed = false;
  std::uint32_t seq = 0;
  const bool key_ok = !c.key.empty() && c.key.size() <= kMaxKeyBytes;
  switch (c.op) {
    case CommandOp::kBarrier:
    case CommandOp::kHashVerdict:
      break;  // changes nothing: only the applied index moves
    case CommandOp::kPut:
    case CommandOp::kCas:
    case CommandOp::kPutLease: {
      if (!key_ok || c.value.size() > kMaxValueBytes) {
        r.code = Code::kInvalidArgument;
        break;
      }
      const std::uint64_t lease = c.op == CommandOp::kPutLease ? c.lease : 0;
      if (lease != 0 && !leases_.contains(lease)) {
        r.code = Code::kNotFound;
        break;
      }
      if (c.op == CommandOp::kCas) {
        Result<std::optional<KeyValue>> cur = lookup(c.key);
        if (!cur.ok()) return cur.status();
        const std::uint64_t cur_mod = cur->has_value() ? (*cur)->mod_revision : 0;
        if (cur_mod != c.expect_revision) {
          r.code = Code::kCompareFailed;
          r.revision = cur_mod;
          break;
        }
      }
      Result<TxnOpResult> op = put_key(index, seq, c.key, c.value, lease);
      if (!op.ok()) return op.status();
      r.revision = op->revision;
      changed = true;
      break;
    }
    case CommandOp::kDelete: {
      if (!key_ok) {
        r.code = Code::kInvalidArgument;
        break;
      }
      Result<TxnOpResult> op = delete_key(index, seq, c.key);
      if (!op.ok()) return op.status();
      if (op->deleted == 0) {
        r.code = Code::kNotFound;
        break;
      }
      r.revision = op->revision;
      r.deleted = 1;
      changed = true;
      break;
    }
    case CommandOp::kDeletePrefix: {
      Result<TxnOpResult> op = delete_prefix(index, seq, c.key);
      if (!op.ok()) return op.status();
      r.deleted = op->deleted;
      r.revision = op->revision;
      changed = op->deleted != 0;
      break;
    }
    case CommandOp::kTxn: {
      Result<ApplyResult> t = apply_txn(index, c, changed);
      if (!t.ok()) return t.status();
      r = std::move(*t);
      break;
    }
    case CommandOp::kLeaseGrant:
      r = grant_lease(index, c);
      break;
    case CommandOp::kLeaseRevoke: {
      Result<ApplyResult> t = revoke_lease(index, c.lease, changed);
      if (!t.ok()) return t.status();
      r = std::move(*t);
      break;
    }
  }
  active_->advance(index, term, changed);
  if (changed) revision_ = index;
  return r;
}

Result<TxnOpResult> StateMachine::put_key(std::uint64_t index, std::uint32_t& seq,
                                          const std::string& key, const std::string& value,
                                          std::uint64_t lease) {
  Result<std::optional<KeyValue>> cur = lookup(key);
  if (!cur.ok()) return cur.status();
  const std::uint64_t cur_mod = cur->has_value() ? (*cur)->mod_revision : 0;
  KeyValue kv;
  kv.key = key;
  kv.value = value;
  kv.create_revision = cur->has_value() ? (*cur)->create_revision : index;
  kv.mod_revision = index;
  kv.version = cur->has_value() ? (*cur)->version + 1 : 1;
  active_->add_event({.revision = index,
                      .sequence = seq++,
                      .type = EventType::kPut,
                      .key = kv.key,
                      .value = kv.value,
                      .create_revision = kv.create_revision,
                      .version = kv.version,
                      .prev_mod_revision = cur_mod,
                      .prev_value = cur->has_value() ? (*cur)->value : std::string(),
                      .prev_create_revision = cur->has_value() ? (*cur)->create_revision : 0,
                      .prev_version = cur->has_value() ? (*cur)->version : 0});
  active_->put(kv);
  // A put without a lease detaches the key from the one it had (etcd's rule).
  if (lease == 0) {
    detach_key(key);
  } else {
    attach_key(key, lease);
  }
  TxnOpResult r;
  r.type = TxnOpType::kPut;
  r.revision = index;
  return r;
}

Result<TxnOpResult> StateMachine::delete_key(std::uint64_t index, std::uint32_t& seq,
                                             const std::string& key) {
  TxnOpResult r;
  r.type = TxnOpType::kDelete;
  Result<std::optional<KeyValue>> cur = lookup(key);
  if (!cur.ok()) return cur.status();
  if (!cur->has_value()) return r;
  active_->add_event({.revision = index,
                      .sequence = seq++,
                      .type = EventType::kDelete,
                      .key = key,
                      .prev_mod_revision = (*cur)->mod_revision,
                      .prev_value = (*cur)->value,
                      .prev_create_revision = (*cur)->create_revision,
                      .prev_version = (*cur)->version});
  active_->erase(key);
  detach_key(key);
  r.revision = index;
  r.deleted = 1;
  return r;
}

Result<TxnOpResult> StateMachine::delete_prefix(std::uint64_t index, std::uint32_t& seq,
                                                const std::string& prefix) {
  // Collect first: erasing while the merged cursor walks the active overlay would move it.
  std::vector<KeyValue> doomed;
  Result<MDB_txn*> txn = read_txn();
  if (!txn.ok()) return txn.status();
  MergedCursor cur(active_.get(), frozen_.get(), *txn, dbs_->kv, damage_fn_, state_dir_);
  KVC_RETURN_IF_ERROR(cur.seek(prefix));
  KeyValue kv;
  while (cur.valid() && starts_with(cur.key(), prefix)) {
    KVC_RETURN_IF_ERROR(cur.current(kv, true));  // the value goes into the event (prev_value)
    doomed.push_back(std::move(kv));
    KVC_RETURN_IF_ERROR(cur.next());
  }
  for (KeyValue& d : doomed) {
    active_->erase(d.key);
    detach_key(d.key);
    active_->add_event({.revision = index,
                        .sequence = seq++,
                        .type = EventType::kDelete,
                        .key = std::move(d.key),
                        .prev_mod_revision = d.mod_revision,
                        .prev_value = std::move(d.value),
                        .prev_create_revision = d.create_revision,
                        .prev_version = d.version});
  }
  TxnOpResult r;
  r.type = TxnOpType::kDeletePrefix;
  r.deleted = doomed.size();
  r.revision = doomed.empty() ? 0 : index;
  return r;
}

// A value compare on an absent key never holds (etcd's rule); the numeric targets of an absent
// key are 0.
Result<bool> StateMachine::compare_holds(const Compare& cmp) {
  Result<std::optional<KeyValue>> cur = lookup(cmp.key);
  if (!cur.ok()) return cur.status();
  const KeyValue* kv = cur->has_value() ? &**cur : nullptr;
  int order = 0;  // <0, 0, >0: the key's side against the compare's operand
  if (cmp.target == CompareTarget::kValue) {
    if (kv == nullptr) return false;
    order = kv->value.compare(cmp.value);
  } else {
    std::uint64_t v = 0;
    if (kv != nullptr) {
      switch (cmp.target) {
        case CompareTarget::kModRevision:
          v = kv->mod_revision;
          break;
        case CompareTarget::kCreateRevision:
          v = kv->create_revision;
          break;
        case CompareTarget::kVersion:
          v = kv->version;
          break;
        case CompareTarget::kLease:
          v = kv->lease;
          break;
        case CompareTarget::kValue:
          break;
      }
    }
    order = v < cmp.number ? -1 : v > cmp.number ? 1 : 0;
  }
  switch (cmp.op) {
    case CompareOp::kEqual:
      return order == 0;
    case CompareOp::kNotEqual:
      return order != 0;
    case CompareOp::kLess:
      return order < 0;
    case CompareOp::kGreater:
      return order > 0;
  }
  return false;
}

// Everything that could refuse the txn is checked before its first op changes anything, so it
// applies whole or not at all.
Result<ApplyResult> StateMachine::apply_txn(std::uint64_t index, const Command& c, bool& changed) {
  ApplyResult r;
  if (!validate_txn(c).ok()) {
    r.code = Code::kInvalidArgument;
    return r;
  }
  bool holds = true;
  for (const Compare& cmp : c.compares) {
    Result<bool> h = compare_holds(cmp);
    if (!h.ok()) return h.status();
    if (!*h) {
      holds = false;
      break;
    }
    // Broken on purpose (test builds only): the compares after the first are ignored.
    if (KVC_STATE_MUTATED(kTxnFirstCompareOnly)) break;
  }
  const std::vector<TxnOp>& ops = holds ? c.then_ops : c.else_ops;
  for (const TxnOp& op : ops) {
    const bool prefix = op.type == TxnOpType::kDeletePrefix || op.type == TxnOpType::kGetPrefix;
    if ((!prefix && (op.key.empty() || op.key.size() > kMaxKeyBytes)) ||
        op.value.size() > kMaxValueBytes) {
      r.code = Code::kInvalidArgument;
      return r;
    }
    if (op.type == TxnOpType::kPut && op.lease != 0 && !leases_.contains(op.lease)) {
      r.code = Code::kNotFound;
      return r;
    }
  }
  r.succeeded = holds;
  std::uint32_t seq = 0;
  // Broken on purpose (test builds only): the gets run after every write of the branch, in
  // this order of op positions; their results are put back in place below.
  std::vector<std::size_t> order;
  if (KVC_STATE_MUTATED(kTxnReadsAfterWrites)) {
    for (int reads = 0; reads < 2; ++reads) {
      for (std::size_t i = 0; i < ops.size(); ++i) {
        const bool read = ops[i].type == TxnOpType::kGet || ops[i].type == TxnOpType::kGetPrefix;
        if (read == (reads == 1)) order.push_back(i);
      }
    }
  }
  for (std::size_t k = 0; k < ops.size(); ++k) {
    const TxnOp& op = ops[order.empty() ? k : order[k]];
    // Broken on purpose (test builds only): a txn stops after its first write.
    if (KVC_STATE_MUTATED(kTxnAppliesHalf) && changed) break;
    Result<TxnOpResult> res = TxnOpResult{};
    switch (op.type) {
      case TxnOpType::kPut:
        res = put_key(index, seq, op.key, op.value, op.lease);
        break;
      case TxnOpType::kDelete:
        res = delete_key(index, seq, op.key);
        break;
      case TxnOpType::kDeletePrefix:
        res = delete_prefix(index, seq, op.key);
        break;
      case TxnOpType::kGet: {
        Result<std::optional<KeyValue>> kv = lookup(op.key);
        if (!kv.ok()) return kv.status();
        res->type = TxnOpType::kGet;
        if (kv->has_value()) res->kvs.push_back(std::move(**kv));
        break;
      }
      case TxnOpType::kGetPrefix: {
        RangeRequest q;
        q.prefix = op.key;
        q.limit =
            op.limit == 0 ? kMaxTxnGetKeys : std::min<std::uint64_t>(op.limit, kMaxTxnGetKeys);
        Result<RangePage> page = range_view(q);
        if (!page.ok()) return page.status();
        res->type = TxnOpType::kGetPrefix;
        res->kvs = std::move(page->kvs);
        res->more = page->more;
        break;
      }
    }
    if (!res.ok()) return res.status();
    if (res->revision != 0) changed = true;
    r.ops.push_back(std::move(*res));
  }
  if (!order.empty()) {
    std::vector<TxnOpResult> in_place(r.ops.size());
    for (std::size_t k = 0; k < r.ops.size(); ++k) in_place[order[k]] = std::move(r.ops[k]);
    r.ops = std::move(in_place);
  }
  r.revision = changed ? index : 0;
  return r;
}

// ---- leases ----

ApplyResult StateMachine::grant_lease(std::uint64_t index, const Command& c) {
  ApplyResult r;
  if (c.lease == 0 || c.ttl == 0) {
    r.code = Code::kInvalidArgument;
  } else if (leases_.contains(c.lease)) {
    r.code = Code::kAlreadyExists;
  } else {
    LeaseSlot& l = leases_[c.lease];
    l.ttl = c.ttl;
    l.granted_index = index;
    dirty_leases_.insert(c.lease);
    ++lease_epoch_;
  }
  return r;
}

Result<ApplyResult> StateMachine::revoke_lease(std::uint64_t index, std::uint64_t id,
                                               bool& changed) {
  ApplyResult r;
  auto it = leases_.find(id);
  if (it == leases_.end()) {
    r.code = Code::kNotFound;
    return r;
  }
  // Copy: delete_key detaches each key from the lease being walked.
  const std::vector<std::string> keys(it->second.keys.begin(), it->second.keys.end());
  std::uint32_t seq = 0;
  for (const std::string& key : keys) {
    Result<TxnOpResult> d = delete_key(index, seq, key);
    if (!d.ok()) return d.status();
    r.deleted += d->deleted;
  }
  leases_.erase(id);
  dirty_leases_.insert(id);
  ++lease_epoch_;
  changed = r.deleted != 0;
  r.revision = changed ? index : 0;
  return r;
}

void StateMachine::attach_key(const std::string& key, std::uint64_t lease) {
  auto [it, inserted] = key_lease_.try_emplace(key, lease);
  if (!inserted) {
    if (it->second == lease) return;
    auto old = leases_.find(it->second);
    if (old != leases_.end()) {
      old->second.keys.erase(key);
      dirty_leases_.insert(it->second);
    }
    it->second = lease;
  }
  leases_[lease].keys.insert(key);
  dirty_leases_.insert(lease);
}

void StateMachine::detach_key(std::string_view key) {
  if (key_lease_.empty()) return;  // the common case: no key has a lease
  auto it = key_lease_.find(key);
  if (it == key_lease_.end()) return;
  auto l = leases_.find(it->second);
  if (l != leases_.end()) {
    l->second.keys.erase(l->second.keys.find(key));
    dirty_leases_.insert(it->second);
  }
  key_lease_.erase(it);
}

Lease StateMachine::lease_value(std::uint64_t id) const {
  const LeaseSlot& s = leases_.at(id);
  return Lease{id, s.ttl, s.granted_index, std::vector<std::string>(s.keys.begin(), s.keys.end())};
}

std::optional<Lease> StateMachine::lease(std::uint64_t id) const {
  if (!leases_.contains(id)) return std::nullopt;
  return lease_value(id);
}

std::vector<Lease> StateMachine::leases(bool with_keys) const {
  std::vector<Lease> out;
  out.reserve(leases_.size());
  for (const auto& [id, s] : leases_) {
    if (with_keys) {
      out.push_back(lease_value(id));
    } else {
      out.push_back(Lease{id, s.ttl, s.granted_index, {}});
    }
  }
  return out;
}

std::uint64_t StateMachine::lease_of(std::string_view key) const {
  if (key_lease_.empty()) return 0;
  auto it = key_lease_.find(key);
  return it == key_lease_.end() ? 0 : it->second;
}

Result<ApplyResult> StateMachine::apply_entry(const raft::Entry& entry) {
  if (entry.type != raft::EntryType::kNormal) {
    return Status::invalid_argument("apply_entry: entry " + std::to_string(entry.index) +
                                    " is a conf change; use apply_membership");
  }
  if (entry.data.empty()) {
    apply_noop(entry.index, entry.term);
    return ApplyResult{};
  }
  Result<Command> c = decode_command(entry.data);
  if (!c.ok()) {
    return Status::corruption("entry " + std::to_string(entry.index) + ": " + c.status().message());
  }
  return apply(entry.index, entry.term, *c);
}

void StateMachine::apply_noop(std::uint64_t index, std::uint64_t term) {
  KVC_CHECK_EQ(index, applied_index() + 1);
  active_->advance(index, term, false);
}

void StateMachine::apply_membership(std::uint64_t index, std::uint64_t term, Membership m) {
  KVC_CHECK_EQ(index, applied_index() + 1);
  KVC_CHECK(validate_membership(m).ok(), "apply_membership with an invalid membership");
  membership_ = m;
  active_->set_membership(std::move(m));
  active_->advance(index, term, false);
}

}  // namespace kvc::storage
