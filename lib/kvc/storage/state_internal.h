// Internals of the LMDB state machine (state.h), shared by its files: the database handles,
// the damage-aware neighbour checks, the merged cursor over the overlays and LMDB, and small
// helpers. Not a public API: only lib/kvc/storage/state*.cc include it. StateMachine's methods
// are spread over files by job: state.cc (errors, open and close, read transactions),
// state_apply.cc (commands applied into the active overlay), state_read.cc (reads, ranges,
// events, the neighbour checks), state_flush.cc (freezing, flushing overlays into LMDB,
// compaction), state_integrity.cc (durable facts and the scrub), state_snapshot.cc (writing and
// installing snapshots), state_map.cc (mapping the LMDB file in ahead of reads). Thread-safety is
// StateMachine's (state.h).
#pragma once

#include <atomic>
#include <functional>
#include <string>
#include <string_view>

#include "kvc/common/check.h"
#include "kvc/storage/overlay.h"
#include "kvc/storage/state.h"
#include "kvc/storage/state_format.h"
#include "kvc/storage/state_lmdb.h"

namespace kvc::storage {

struct StateMachine::Dbs {
  MDB_dbi kv = 0;
  MDB_dbi meta = 0;
  MDB_dbi events = 0;
  MDB_dbi leases = 0;
};

// A named namespace (not an anonymous one): the state machine's files share these.
namespace state_internal {

inline bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

inline KeyValue slot_kv(std::string_view key, const OverlaySlot& s, bool with_value) {
  KeyValue kv;
  kv.key.assign(key.data(), key.size());
  if (with_value) kv.value = s.value;
  kv.create_revision = s.create_revision;
  kv.mod_revision = s.mod_revision;
  kv.version = s.version;
  return kv;
}

// Removes `path` and everything under it.
Status remove_tree(const std::string& path);

// Counts a worker operation for the checks in commit_install and the destructor.
class BusyGuard {
 public:
  explicit BusyGuard(std::atomic<int>& n) : n_(n) { n_.fetch_add(1, std::memory_order_acq_rel); }
  ~BusyGuard() { n_.fetch_sub(1, std::memory_order_acq_rel); }
  BusyGuard(const BusyGuard&) = delete;
  BusyGuard& operator=(const BusyGuard&) = delete;

 private:
  std::atomic<int>& n_;
};

// Reports a damaged record (and makes the Status a read returns for it).
using DamageFn = std::function<Status(StateDb db, std::string_view key, RecordProblem problem)>;

// LMDB's pages carry no checksum, so a flipped bit in a stored key, or in a branch page's copy
// of a key, can make a search miss a record that is there: a flipped key moves its record out of
// its place (its seal then fails where it lies), and a flipped branch key sends the searches for
// a run of keys to the wrong leaf. Either way the missed record lies right beside where the
// search ended, or the keys there are out of order. So every search that finds nothing and every
// seek that starts a walk checks the neighbours of `key` in `dbi`: the first record at or after
// it must not be below it, the last record before it must be below it, and both must verify.
// When the caller's search for `key` itself found nothing (`absent`), a neighbour that holds
// exactly `key` is misplaced too: a damaged branch page sent the search to the leaf before the
// one that holds it. The key and problem of the first neighbour that fails (problem kNone when
// both are fine).
struct Neighbour {
  std::string key;
  RecordProblem problem = RecordProblem::kNone;
};
Result<Neighbour> check_neighbours(MDB_txn* txn, MDB_dbi dbi, StateDb db, std::string_view key,
                                   bool absent, const std::string& dir);

// The same as a Status: ok, or the damaged() Status naming the neighbour.
Status check_neighbours(MDB_txn* txn, MDB_dbi dbi, StateDb db, std::string_view key, bool absent,
                        const DamageFn& damaged, const std::string& dir);

// The merged view of the active overlay, the frozen overlay and LMDB, in key order, skipping
// tombstones: the first layer that mentions a key decides it.
class MergedCursor {
 public:
  MergedCursor(const Overlay* active, const Overlay* frozen, MDB_txn* txn, MDB_dbi dbi,
               const DamageFn& damaged, const std::string& dir)
      : active_(active), frozen_(frozen), txn_(txn), dbi_(dbi), damaged_(damaged), dir_(dir) {}

  Status seek(std::string_view lower) {
    if (cursor_.get() == nullptr) {
      if (int rc = cursor_.open(txn_, dbi_); rc != 0) return error(rc, "open cursor");
    }
    if (active_ != nullptr) a_ = active_->entries().lower_bound(lower);
    if (frozen_ != nullptr) f_ = frozen_->entries().lower_bound(lower);
    int rc;
    if (lower.empty()) {
      rc = mdb_cursor_get(cursor_.get(), &lk_, &lv_, MDB_FIRST);
    } else if (lower.size() > kMaxKeyBytes) {
      // No stored key is this long; continue from the first key after it, comparing bytes.
      MDB_val k = val_of(lower.substr(0, kMaxKeyBytes));
      rc = mdb_cursor_get(cursor_.get(), &k, &lv_, MDB_SET_RANGE);
      lk_ = k;
      while (rc == 0 && view_of(lk_) < lower) {
        rc = mdb_cursor_get(cursor_.get(), &lk_, &lv_, MDB_NEXT);
      }
    } else {
      MDB_val k = val_of(lower);
      rc = mdb_cursor_get(cursor_.get(), &k, &lv_, MDB_SET_RANGE);
      lk_ = k;
    }
    if (rc != 0 && rc != MDB_NOTFOUND) return error(rc, "seek");
    l_valid_ = rc == 0;
    if (!lower.empty()) {
      KVC_RETURN_IF_ERROR(check_neighbours(txn_, dbi_, StateDb::kKv, lower.substr(0, kMaxKeyBytes),
                                           /*absent=*/false, damaged_, dir_));
    }
    return settle();
  }

  Status next() {
    KVC_CHECK(valid_, "next() on an exhausted cursor");
    KVC_RETURN_IF_ERROR(advance_all(key_));
    return settle();
  }

  bool valid() const { return valid_; }
  std::string_view key() const { return key_; }

  // The current key's KeyValue. A value from LMDB is verified first (even when only the
  // revisions are wanted: they are covered by the same checksum); kCorruption when it fails.
  Status current(KeyValue& kv, bool with_value) const {
    if (slot_ != nullptr) {
      kv = slot_kv(key_, *slot_, with_value);
      return Status();
    }
    const RecordProblem p = decode_kv_record(key_, view_of(lv_), kv, with_value);
    if (p != RecordProblem::kNone) return damaged_(StateDb::kKv, key_, p);
    return Status();
  }

 private:
  bool a_ok() const { return active_ != nullptr && a_ != active_->entries().end(); }
  bool f_ok() const { return frozen_ != nullptr && f_ != frozen_->entries().end(); }

  Status error(int rc, const char* what) const {
    return lmdb_status(rc, dir_, std::string("cursor ") + what);
  }

  Status advance_all(std::string_view k) {
    // Copy: `k` may point into a node or page that advancing moves past.
    const std::string key(k);
    if (a_ok() && a_->first == key) ++a_;
    if (f_ok() && f_->first == key) ++f_;
    if (l_valid_ && view_of(lk_) == key) {
      const int rc = mdb_cursor_get(cursor_.get(), &lk_, &lv_, MDB_NEXT);
      if (rc != 0 && rc != MDB_NOTFOUND) return error(rc, "next");
      l_valid_ = rc == 0;
    }
    return Status();
  }

  // Moves to the smallest key any layer has whose deciding layer does not delete it.
  Status settle() {
    for (;;) {
      const bool a = a_ok(), f = f_ok(), l = l_valid_;
      if (!a && !f && !l) {
        valid_ = false;
        slot_ = nullptr;
        return Status();
      }
      std::string_view k;
      bool have = false;
      auto consider = [&](bool ok, std::string_view cand) {
        if (ok && (!have || cand < k)) {
          k = cand;
          have = true;
        }
      };
      consider(a, a ? std::string_view(a_->first) : std::string_view());
      consider(f, f ? std::string_view(f_->first) : std::string_view());
      consider(l, l ? view_of(lk_) : std::string_view());
      const OverlaySlot* slot = nullptr;
      if (a && a_->first == k) {
        slot = &a_->second;
      } else if (f && f_->first == k) {
        slot = &f_->second;
      }
      if (slot != nullptr && slot->deleted) {
        KVC_RETURN_IF_ERROR(advance_all(k));
        continue;
      }
      valid_ = true;
      slot_ = slot;
      key_ = k;
      return Status();
    }
  }

  const Overlay* active_;
  const Overlay* frozen_;
  MDB_txn* txn_;
  MDB_dbi dbi_;
  const DamageFn& damaged_;
  const std::string& dir_;  // the state directory, for messages
  Cursor cursor_;
  Overlay::Map::const_iterator a_, f_;
  bool l_valid_ = false;
  MDB_val lk_{}, lv_{};
  bool valid_ = false;
  std::string_view key_;               // of the current key (points into its layer)
  const OverlaySlot* slot_ = nullptr;  // the overlay slot deciding it, or null for LMDB
};

}  // namespace state_internal

// For StateMachine's methods: returns lmdb_error(rc, what) when an LMDB call fails.
#define KVC_MDB(call, what)                         \
  do {                                              \
    if (const int kvc_rc_ = (call); kvc_rc_ != 0) { \
      return lmdb_error(kvc_rc_, what);             \
    }                                               \
  } while (0)

}  // namespace kvc::storage
