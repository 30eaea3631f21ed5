// The LMDB state machine's apply path (state.h): a committed command (put, delete, delete by
// prefix, compare-and-set), a no-op or a membership entry applied into the active overlay,
// with its event. Invariant kept here: entries are applied one at a time in log order (each
// at applied_index() + 1, checked), and the applied index moves with the writes it covers.
#include <algorithm>

#include "kvc/storage/state_internal.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

// ---- apply ----

Result<std::optional<KeyValue>> StateMachine::lookup(std::string_view key) {
  for (const Overlay* layer : {static_cast<const Overlay*>(active_.get()), frozen_.get()}) {
    if (layer == nullptr) continue;
    if (const OverlaySlot* s = layer->find(key)) {
      if (s->deleted) return std::optional<KeyValue>();
      return std::optional<KeyValue>(slot_kv(key, *s, true));
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
  return std::optional<KeyValue>(std::move(kv));
}

Result<ApplyResult> StateMachine::apply(std::uint64_t index, std::uint64_t term, const Command& c) {
  return owner_read(apply_command(index, term, c));
}

// Long (about 95 lines): one case per command op, each short; they share the result and the
// `changed` flag that decides how the applied index and the revision move, after the switch.
Result<ApplyResult> StateMachine::apply_command(std::uint64_t index, std::uint64_t term,
                                                const Command& c) {
  KVC_CHECK_EQ(index, applied_index() + 1);
  ApplyResult r;
  bool changed = false;
  const bool key_ok = !c.key.empty() && c.key.size() <= kMaxKeyBytes;
  switch (c.op) {
    case CommandOp::kBarrier:
    case CommandOp::kHashVerdict:
      break;  // changes nothing: only the applied index moves
    case CommandOp::kPut:
    case CommandOp::kCas: {
      if (!key_ok || c.value.size() > kMaxValueBytes) {
        r.code = Code::kInvalidArgument;
        break;
      }
      Result<std::optional<KeyValue>> cur = lookup(c.key);
      if (!cur.ok()) return cur.status();
      const std::uint64_t cur_mod = cur->has_value() ? (*cur)->mod_revision : 0;
      if (c.op == CommandOp::kCas && cur_mod != c.expect_revision) {
        r.code = Code::kCompareFailed;
        r.revision = cur_mod;
        break;
      }
      KeyValue kv;
      kv.key = c.key;
      kv.value = c.value;
      kv.create_revision = cur->has_value() ? (*cur)->create_revision : index;
      kv.mod_revision = index;
      kv.version = cur->has_value() ? (*cur)->version + 1 : 1;
      active_->add_event({.revision = index,
                          .sequence = 0,
                          .type = EventType::kPut,
                          .key = kv.key,
                          .value = kv.value,
                          .create_revision = kv.create_revision,
                          .version = kv.version,
                          .prev_mod_revision = cur_mod});
      active_->put(kv);
      r.revision = index;
      changed = true;
      break;
    }
    case CommandOp::kDelete: {
      if (!key_ok) {
        r.code = Code::kInvalidArgument;
        break;
      }
      Result<std::optional<KeyValue>> cur = lookup(c.key);
      if (!cur.ok()) return cur.status();
      if (!cur->has_value()) {
        r.code = Code::kNotFound;
        break;
      }
      active_->add_event({.revision = index,
                          .sequence = 0,
                          .type = EventType::kDelete,
                          .key = c.key,
                          .prev_mod_revision = (*cur)->mod_revision});
      active_->erase(c.key);
      r.revision = index;
      r.deleted = 1;
      changed = true;
      break;
    }
    case CommandOp::kDeletePrefix: {
      // Collect first: erasing while the merged cursor walks the active overlay would move it.
      std::vector<std::pair<std::string, std::uint64_t>> doomed;  // key, mod revision
      Result<MDB_txn*> txn = read_txn();
      if (!txn.ok()) return txn.status();
      MergedCursor cur(active_.get(), frozen_.get(), *txn, dbs_->kv, damage_fn_, state_dir_);
      KVC_RETURN_IF_ERROR(cur.seek(c.key));
      KeyValue kv;
      while (cur.valid() && starts_with(cur.key(), c.key)) {
        KVC_RETURN_IF_ERROR(cur.current(kv, false));
        doomed.emplace_back(std::move(kv.key), kv.mod_revision);
        KVC_RETURN_IF_ERROR(cur.next());
      }
      for (std::size_t i = 0; i < doomed.size(); ++i) {
        active_->add_event({.revision = index,
                            .sequence = static_cast<std::uint32_t>(i),
                            .type = EventType::kDelete,
                            .key = doomed[i].first,
                            .prev_mod_revision = doomed[i].second});
        active_->erase(doomed[i].first);
      }
      r.deleted = doomed.size();
      changed = !doomed.empty();
      r.revision = changed ? index : 0;
      break;
    }
  }
  active_->advance(index, term, changed);
  if (changed) revision_ = index;
  return r;
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
