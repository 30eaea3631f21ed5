// The LMDB state machine's reads (state.h): get, exists, ranges and events through the merged
// view of the overlays and LMDB, the state hash, and the neighbour checks every search that
// finds nothing makes. Invariant kept here: no value is returned that did not verify; a search
// that damage could have misled fails with the damage instead of answering "absent".
#include <algorithm>

#include "kvc/storage/state_internal.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

namespace state_internal {

Result<Neighbour> check_neighbours(MDB_txn* txn, MDB_dbi dbi, StateDb db, std::string_view key,
                                   bool absent, const std::string& dir) {
  Cursor c;
  if (int rc = c.open(txn, dbi); rc != 0) return lmdb_status(rc, dir, "open cursor");
  MDB_val k = val_of(key), v{};
  auto judge = [&](bool in_order) {
    Neighbour n{std::string(view_of(k))};
    if (!in_order) {
      n.problem = RecordProblem::kMisplaced;
    } else if (!unseal_record(db, view_of(k), view_of(v))) {
      n.problem = RecordProblem::kChecksum;
    }
    return n;
  };
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_status(rc, dir, "seek");
  if (rc == 0) {
    Neighbour after = judge(absent ? view_of(k) > key : view_of(k) >= key);
    if (after.problem != RecordProblem::kNone) return after;
  }
  rc = mdb_cursor_get(c.get(), &k, &v, rc == 0 ? MDB_PREV : MDB_LAST);
  if (rc == MDB_NOTFOUND) return Neighbour{};
  if (rc != 0) return lmdb_status(rc, dir, "seek");
  return judge(view_of(k) < key);
}

// The same as a Status: ok, or the damaged() Status naming the neighbour.
Status check_neighbours(MDB_txn* txn, MDB_dbi dbi, StateDb db, std::string_view key, bool absent,
                        const DamageFn& damaged, const std::string& dir) {
  Result<Neighbour> n = check_neighbours(txn, dbi, db, key, absent, dir);
  if (!n.ok()) return n.status();
  if (n->problem == RecordProblem::kNone) return Status();
  return damaged(db, n->key, n->problem);
}

}  // namespace state_internal

// ---- reads ----

Result<std::optional<KeyValue>> StateMachine::get(std::string_view key) {
  return owner_read(lookup(key));
}

Result<bool> StateMachine::exists(std::string_view key) {
  Result<std::optional<KeyValue>> kv = owner_read(lookup(key));
  if (!kv.ok()) return kv.status();
  return kv->has_value();
}

Result<RangePage> StateMachine::range(const RangeRequest& req) {
  return owner_read(range_view(req));
}

Result<RangePage> StateMachine::range_view(const RangeRequest& req) {
  Result<MDB_txn*> txn = read_txn();
  if (!txn.ok()) return txn.status();
  const std::string_view lower = std::max<std::string_view>(req.prefix, req.start);
  MergedCursor cur(active_.get(), frozen_.get(), *txn, dbs_->kv, damage_fn_, state_dir_);
  KVC_RETURN_IF_ERROR(cur.seek(lower));
  RangePage page;
  while (cur.valid()) {
    const std::string_view k = cur.key();
    if (!starts_with(k, req.prefix) || (!req.end.empty() && k >= req.end)) break;
    if (req.limit != 0 && page.kvs.size() == req.limit) {
      page.more = true;
      page.next_start.assign(k.data(), k.size());
      break;
    }
    KeyValue kv;
    KVC_RETURN_IF_ERROR(cur.current(kv, !req.keys_only));
    kv.lease = lease_of(kv.key);
    page.kvs.push_back(std::move(kv));
    KVC_RETURN_IF_ERROR(cur.next());
  }
  return page;
}

Result<std::uint64_t> StateMachine::hash() { return owner_read(hash_view()); }

Result<std::uint64_t> StateMachine::hash_view() {
  Result<MDB_txn*> txn = read_txn();
  if (!txn.ok()) return txn.status();
  MergedCursor cur(active_.get(), frozen_.get(), *txn, dbs_->kv, damage_fn_, state_dir_);
  KVC_RETURN_IF_ERROR(cur.seek(""));
  StateHasher h;
  KeyValue kv;
  while (cur.valid()) {
    KVC_RETURN_IF_ERROR(cur.current(kv, true));
    h.add(kv);
    KVC_RETURN_IF_ERROR(cur.next());
  }
  for (const auto& [id, slot] : leases_) h.add_lease(lease_value(id));
  return h.finish(applied_index());
}

Result<EventPage> StateMachine::events_since(const EventRequest& req) {
  return owner_read(events_view(req));
}

Result<EventPage> StateMachine::events_view(const EventRequest& req) {
  if (req.key.empty() && !req.prefix) {
    return Status::invalid_argument("events_since: an empty key needs prefix (every key)");
  }
  Result<MDB_txn*> txn = read_txn();
  if (!txn.ok()) return txn.status();
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(*txn, dbs_->meta, meta, state_dir_));
  const std::uint64_t from = std::max<std::uint64_t>(req.from_revision, 1);
  if (from < meta.compact_revision) {
    return Status::failed_precondition("revision " + std::to_string(from) +
                                       " is compacted: the oldest available revision is " +
                                       std::to_string(meta.compact_revision));
  }
  auto wanted = [&](const Event& e) {
    if (e.revision < from || (e.revision == from && e.sequence < req.from_sequence)) return false;
    return req.prefix ? starts_with(e.key, req.key) : e.key == req.key;
  };
  EventPage page;
  // Returns false once the page is full (and marks more).
  auto take = [&](Event&& e) {
    if (req.limit != 0 && page.events.size() == req.limit) {
      page.more = true;
      return false;
    }
    page.events.push_back(std::move(e));
    return true;
  };
  // LMDB holds the events up to the lowest overlay's base (and perhaps, mid-flush, the frozen
  // overlay's too: those are taken from the overlay instead).
  const std::uint64_t lmdb_last = frozen_ ? frozen_->base_index() : active_->base_index();
  bool full = false;
  if (from <= lmdb_last) {
    Cursor c;
    KVC_MDB(c.open(*txn, dbs_->events), "open events cursor");
    const std::string start = event_key(from, req.from_sequence);
    MDB_val k = val_of(start), v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read events");
    KVC_RETURN_IF_ERROR(check_neighbours(*txn, dbs_->events, StateDb::kEvents, start,
                                         /*absent=*/false, damage_fn_, state_dir_));
    while (rc == 0) {
      Event e;
      if (const RecordProblem p = decode_event_record(view_of(k), view_of(v), e);
          p != RecordProblem::kNone) {
        return damaged(StateDb::kEvents, view_of(k), p);
      }
      if (e.revision > lmdb_last) break;
      if (wanted(e) && !take(std::move(e))) {
        full = true;
        break;
      }
      rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "read events");
  }
  for (const Overlay* layer : {frozen_.get(), static_cast<const Overlay*>(active_.get())}) {
    if (full || layer == nullptr || layer->last_index() < from) continue;
    for (const Event& e : layer->events()) {
      if (!wanted(e)) continue;
      if (!take(Event(e))) {
        full = true;
        break;
      }
    }
  }
  if (page.more) {
    page.next_revision = page.events.back().revision;
    page.next_sequence = page.events.back().sequence + 1;
  } else if (from > applied_index()) {
    page.next_revision = from;
    page.next_sequence = req.from_revision == from ? req.from_sequence : 0;
  } else {
    page.next_revision = applied_index() + 1;
    page.next_sequence = 0;
  }
  return page;
}

OverlayStats StateMachine::active_stats() const {
  OverlayStats s;
  s.entries = active_->applied_entries();
  s.keys = active_->entries().size();
  s.events = active_->events().size();
  s.bytes = active_->bytes();
  return s;
}

std::uint64_t StateMachine::unflushed_bytes() const {
  return active_->bytes() + (frozen_ != nullptr ? frozen_->bytes() : 0);
}

}  // namespace kvc::storage
