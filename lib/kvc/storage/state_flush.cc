// The LMDB state machine's flush path (state.h): freezing the active overlay, writing the frozen
// one into LMDB in one transaction with the applied index, compacting old events, retiring the
// frozen overlay; the compaction revision and the durable hash. Invariant kept here: the
// applied index is written in the same transaction as the writes it covers (DESIGN.md), so
// applying after a crash is exactly-once. Reads KVC_MUTATIONS (state_mutation.h).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvc/storage/state_internal.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

// ---- flush ----

bool StateMachine::freeze() {
  if (frozen_ != nullptr || active_->empty()) return false;
  // The leases changed since the last freeze, as they stand now (the end of this layer).
  Overlay::LeaseChanges changes;
  for (const std::uint64_t id : dirty_leases_) {
    changes.emplace(id,
                    leases_.contains(id) ? std::optional<Lease>(lease_value(id)) : std::nullopt);
  }
  dirty_leases_.clear();
  active_->set_lease_changes(std::move(changes));
  const std::uint64_t last = active_->last_index(), term = active_->last_term();
  frozen_ = std::move(active_);
  active_ = std::make_unique<Overlay>(last, term);
  frozen_log_durable_ = log_durable_;
  return true;
}

Status StateMachine::flush() {
  KVC_CHECK(frozen_ != nullptr, "flush without a frozen overlay");
  BusyGuard busy(busy_);
  const Overlay& f = *frozen_;
  Txn txn;
  KVC_MDB(txn.begin(env_, 0), "begin flush");
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, meta, state_dir_));
  KVC_CHECK_EQ(meta.applied_index, f.base_index());
  // Keys.
  std::string buf;
  for (const auto& [key, slot] : f.entries()) {
    MDB_val k = val_of(key);
    if (slot.deleted) {
      if (KVC_STATE_MUTATED(kFlushSkipsTombstones)) continue;
      const int rc = mdb_del(txn.get(), dbs_->kv, &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "flush delete");
    } else {
      encode_kv_record(buf, key, slot.value, slot.create_revision, slot.mod_revision, slot.version);
      MDB_val v = val_of(buf);
      KVC_MDB(mdb_put(txn.get(), dbs_->kv, &k, &v, 0), "flush put");
    }
  }
  // Leases, each whole as it stands at the layer's end.
  for (const auto& [id, lease] : f.lease_changes()) {
    const std::string lk = lease_key(id);
    MDB_val k = val_of(lk);
    if (!lease) {
      const int rc = mdb_del(txn.get(), dbs_->leases, &k, nullptr);
      if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_error(rc, "flush lease delete");
    } else {
      encode_lease_record(buf, *lease);
      MDB_val v = val_of(buf);
      KVC_MDB(mdb_put(txn.get(), dbs_->leases, &k, &v, 0), "flush lease");
    }
  }
  // Events, appended: their keys are above everything stored.
  for (const Event& e : f.events()) {
    const std::string ek = event_key(e.revision, e.sequence);
    encode_event_record(buf, ek, e);
    MDB_val k = val_of(ek), v = val_of(buf);
    KVC_MDB(mdb_put(txn.get(), dbs_->events, &k, &v, MDB_APPEND), "flush event");
    meta.events_bytes += ek.size() + buf.size();
  }
  // History compaction: keep the newest history_revisions revisions, then drop whole oldest
  // revisions while over history_bytes.
  const std::uint64_t last = f.last_index();
  std::uint64_t compact = meta.compact_revision;
  if (last >= options_.history_revisions) {
    compact = std::max(compact, last - options_.history_revisions + 1);
  }
  for (;;) {
    Cursor c;
    KVC_MDB(c.open(txn.get(), dbs_->events), "open events cursor");
    MDB_val k, v;
    const int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
    if (rc == MDB_NOTFOUND) break;
    if (rc != 0) return lmdb_error(rc, "compact events");
    std::uint64_t rev = 0;
    std::uint32_t seq = 0;
    if (!parse_event_key(view_of(k), rev, seq)) {
      return Status::corruption("state " + state_dir_ + ": malformed event key");
    }
    if (rev >= compact) {
      if (meta.events_bytes <= options_.history_bytes) break;
      compact = rev + 1;  // over the byte budget: drop this whole revision too
    }
    meta.events_bytes -= std::min<std::uint64_t>(meta.events_bytes, k.mv_size + v.mv_size);
    KVC_MDB(mdb_cursor_del(c.get(), 0), "compact events");
  }
  if (KVC_STATE_MUTATED(kMetaInSeparateTxn)) {
    KVC_MDB(txn.commit(), "flush commit");
    hook("flush.between_txns");
    KVC_MDB(txn.begin(env_, 0), "begin flush meta");
  }
  // Meta, in the same transaction as everything it describes.
  meta.applied_index = last;
  meta.applied_term = f.last_term();
  if (f.revision() != 0) meta.revision = f.revision();
  meta.compact_revision = compact;
  if (f.membership()) meta.membership = *f.membership();
  meta.log_durable_index = std::max(meta.log_durable_index, frozen_log_durable_);
  KVC_MDB(write_state_meta(txn.get(), dbs_->meta, meta), "flush meta");
  hook("flush.before_commit");
  KVC_MDB(txn.commit(), "flush commit");
  hook("flush.after_commit");
  {
    std::lock_guard<std::mutex> lock(facts_mu_);
    facts_ = meta.facts(state_dir_);
  }
  durable_index_.store(last, std::memory_order_release);
  return Status();
}

void StateMachine::retire_frozen() {
  KVC_CHECK(frozen_ != nullptr, "retire_frozen without a frozen overlay");
  KVC_CHECK_EQ(durable_index(), frozen_->last_index());
  // LMDB now holds what the frozen overlay held: the read view must move up before the
  // overlay goes away.
  if (!KVC_STATE_MUTATED(kStaleReadViewAfterRetire)) {
    if (read_txn_ != nullptr) mdb_txn_reset(read_txn_);
    read_txn_stale_ = true;
  }
  frozen_.reset();
}

Status StateMachine::flush_all() {
  for (int round = 0; round < 2; ++round) {
    if (frozen_ == nullptr && !freeze()) break;
    KVC_RETURN_IF_ERROR(flush());
    retire_frozen();
  }
  return Status();
}

Result<std::uint64_t> StateMachine::compact_revision() const {
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "begin read");
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, meta, state_dir_));
  return meta.compact_revision;
}

struct StateMachine::DurableRead::Impl {
  explicit Impl(const StateMachine* s) : sm(s), busy(s->busy_) {}
  const StateMachine* sm;
  BusyGuard busy;  // before txn: the transaction ends first
  Txn txn;
};

StateMachine::DurableRead::DurableRead(std::unique_ptr<Impl> impl, std::uint64_t index)
    : impl_(std::move(impl)), index_(index) {}

StateMachine::DurableRead::~DurableRead() = default;

Result<std::shared_ptr<StateMachine::DurableRead>> StateMachine::pin_durable() const {
  auto impl = std::make_unique<DurableRead::Impl>(this);
  KVC_MDB(impl->txn.begin(env_, MDB_RDONLY), "begin read");
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(impl->txn.get(), dbs_->meta, meta, state_dir_));
  return std::shared_ptr<DurableRead>(new DurableRead(std::move(impl), meta.applied_index));
}

Result<StateMachine::IndexedHash> StateMachine::DurableRead::hash(
    const std::atomic<bool>* cancel) const {
  return impl_->sm->hash_in(impl_->txn.get(), index_, cancel);
}

Result<StateMachine::IndexedHash> StateMachine::hash_in(MDB_txn* txn, std::uint64_t index,
                                                        const std::atomic<bool>* cancel) const {
  hook("hash.scan");
  Cursor c;
  KVC_MDB(c.open(txn, dbs_->kv), "open kv cursor");
  StateHasher h;
  KeyValue kv;
  MDB_val k, v;
  std::uint64_t n = 0;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  while (rc == 0) {
    if (const RecordProblem p = decode_kv_record(view_of(k), view_of(v), kv, true);
        p != RecordProblem::kNone) {
      return damaged(StateDb::kKv, view_of(k), p);
    }
    h.add(kv);
    if (cancel != nullptr && (++n % 4096) == 0 && cancel->load(std::memory_order_relaxed)) {
      return Status::shutting_down("the state hash was cancelled after " + std::to_string(n) +
                                   " keys: the member is stopping");
    }
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "hash read");
  KVC_RETURN_IF_ERROR(for_each_stored_lease(txn, [&h](Lease& lease) {
    h.add_lease(lease);
    return Status();
  }));
  return IndexedHash{index, h.finish(index)};
}

Result<StateMachine::IndexedHash> StateMachine::durable_hash() const {
  Result<std::shared_ptr<DurableRead>> pin = pin_durable();
  if (!pin.ok()) return pin.status();
  return (*pin)->hash();
}

}  // namespace kvc::storage
