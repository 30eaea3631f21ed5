// The LMDB state machine's integrity facts (state.h): the durable log index it is told of, the
// facts the cross-file checks read, and the scrub that verifies stored records in batches.
// Invariant kept here: a scrub batch reads one short LMDB read transaction and reports every
// damaged record it meets through damaged().
#include <algorithm>

#include "kvc/storage/state_internal.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

// ---- integrity ----

void StateMachine::note_log_durable(std::uint64_t index) {
  log_durable_ = std::max(log_durable_, index);
}

StateFacts StateMachine::facts() const {
  std::lock_guard<std::mutex> lock(facts_mu_);
  return facts_;
}

Result<ScrubBatch> StateMachine::scrub(const ScrubCursor& from, std::size_t max_records) const {
  BusyGuard busy(busy_);
  ScrubBatch batch;
  batch.next = from;
  if (from.done()) return batch;
  max_records = std::max<std::size_t>(max_records, 1);
  // One short read transaction per call: a reader holding an old snapshot for a whole pass
  // would keep LMDB from reusing the pages every flush frees.
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "scrub: begin read");
  ScrubCursor& at = batch.next;
  while (!at.done() && batch.records < max_records) {
    const StateDb db = at.stage == ScrubCursor::Stage::kMeta     ? StateDb::kMeta
                       : at.stage == ScrubCursor::Stage::kKv     ? StateDb::kKv
                       : at.stage == ScrubCursor::Stage::kEvents ? StateDb::kEvents
                                                                 : StateDb::kLeases;
    const MDB_dbi dbi = db == StateDb::kMeta     ? dbs_->meta
                        : db == StateDb::kKv     ? dbs_->kv
                        : db == StateDb::kEvents ? dbs_->events
                                                 : dbs_->leases;
    Cursor c;
    KVC_MDB(c.open(txn.get(), dbi), "scrub: open cursor");
    MDB_val k = val_of(at.next_key), v;
    int rc = at.next_key.empty() ? mdb_cursor_get(c.get(), &k, &v, MDB_FIRST)
                                 : mdb_cursor_get(c.get(), &k, &v, MDB_SET_RANGE);
    if (!at.next_key.empty() && (rc == 0 || rc == MDB_NOTFOUND)) {
      // Resuming a pass: a seek a damaged branch page misled would skip records unseen.
      Result<Neighbour> n = check_neighbours(txn.get(), dbi, db, at.next_key,
                                             /*absent=*/false, state_dir_);
      if (!n.ok()) return n.status();
      // Only the order matters here: the record before was sealed-checked by the batch that
      // walked it, and the record after is walked next.
      if (n->problem == RecordProblem::kMisplaced) {
        (void)damaged(db, n->key, n->problem);
        batch.damaged.push_back(record_name(db, n->key) + ": " +
                                std::string(record_problem_name(n->problem)));
      }
    }
    while (rc == 0 && batch.records < max_records) {
      const std::string_view key = view_of(k), stored = view_of(v);
      ++batch.records;
      batch.bytes += key.size() + stored.size();
      RecordProblem p = RecordProblem::kNone;
      if (db == StateDb::kKv) {
        KeyValue kv;
        p = decode_kv_record(key, stored, kv, false);
      } else if (db == StateDb::kEvents) {
        Event e;
        p = decode_event_record(key, stored, e);
      } else if (db == StateDb::kLeases) {
        Lease l;
        p = decode_lease_record(key, stored, l);
      } else if (!unseal_record(StateDb::kMeta, key, stored)) {
        p = RecordProblem::kChecksum;
      }
      if (p == RecordProblem::kNone) {
        // A walk reaches every record whatever the branch pages say; a search for its key must
        // lead to it too, or a damaged key or branch page hides it from every lookup.
        MDB_val want = val_of(key), got{};
        const int grc = mdb_get(txn.get(), dbi, &want, &got);
        if (grc != 0 && grc != MDB_NOTFOUND) return lmdb_error(grc, "scrub: look up");
        if (grc == MDB_NOTFOUND || got.mv_data != v.mv_data) p = RecordProblem::kMisplaced;
      }
      if (p != RecordProblem::kNone) {
        (void)damaged(db, key, p);  // recorded and logged; the pass goes on
        batch.damaged.push_back(record_name(db, key) + ": " + std::string(record_problem_name(p)));
      }
      rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "scrub: read");
    if (rc == 0) {
      at.next_key.assign(view_of(k));  // the batch is full: continue here next time
    } else {
      at.next_key.clear();
      at.stage = static_cast<ScrubCursor::Stage>(static_cast<int>(at.stage) + 1);
    }
  }
  return batch;
}

}  // namespace kvc::storage
