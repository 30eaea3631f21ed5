// The replicated state machine: keys with values and revisions in LMDB (DATA_DIR/state), plus
// an in-memory overlay of what was applied since the last flush, plus the watch history and
// the membership. Design and crash argument: docs/state.md.
//
// Applying a committed entry changes only the in-memory active overlay and returns its result
// at once; reads merge the active overlay, then the frozen one (a flush in progress), then
// LMDB, the first layer that mentions a key winning (a tombstone hides the key). Periodically
// the server freezes the active overlay and flushes it to LMDB in one normal, fully synced
// write transaction that also stores the applied index and term, the membership and the
// events: LMDB always holds a consistent state at its durable index D <= applied_index(), and
// after a crash the server replays the WAL entries after D through apply() again. That is
// exactly-once because D commits atomically with the writes it covers. The library starts no
// thread.
//
// Threads. The "owning thread" is the one that opened the state machine (or any one thread the
// server hands it to); the "worker" is any other single thread at a time.
//   owning thread only:   apply*, get, exists, range, events_since, hash, applied_index,
//                         applied_term, revision, membership, active_stats,
//                         unflushed_bytes, freeze, map_in_pending,
//                         has_frozen, retire_frozen, flush_all, commit_install, install_snapshot
//   any thread (worker):  flush (between freeze and retire_frozen; one at a time),
//                         write_snapshot, save_snapshot, stage_install (one at a time),
//                         durable_index, durable_hash, pin_durable (and its DurableRead),
//                         compact_revision, scrub, facts,
//                         damaged_keys, damage_count, map_in
// They combine safely: while a worker runs flush() the owning thread may go on applying to the
// new active overlay and reading, and a read sees active, then frozen, then LMDB consistently
// even while the flush commits (the frozen overlay hides exactly what the flush adds to LMDB,
// and it stays visible until retire_frozen()). write_snapshot and stage_install may run on a
// worker beside everything except commit_install and destruction. The server must order the
// hand-offs (freeze, then post flush to the worker; flush returns, then retire_frozen on the
// owning thread) with its own queue, which provides the happens-before edges.
//
// Integrity. Every record in LMDB is sealed with a checksum (state_format.h, kvc-state(5)),
// verified whenever LMDB is read to answer a client (get, exists, range, events_since), to
// build a snapshot, to compute durable_hash, and in apply (a put, cas or delete reads the
// current value). A record that fails is never returned: the call fails with kCorruption naming
// the state directory, the record ("key \"a/1\"") and "checksum mismatch", and the record is
// added to damaged_keys(). scrub() walks every record in bounded steps for the server's
// background scrubber. The overlays (memory) are not checksummed.
#pragma once

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"
#include "kvc/storage/command.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/overlay.h"
#include "kvc/storage/snapshot.h"
#include "kvc/storage/state_format.h"
#include "kvc/storage/state_types.h"

struct MDB_env;
struct MDB_txn;

namespace kvc::storage {

struct StateOptions {
  // LMDB's map size: the most the state file may grow to (a sparse reservation, not disk
  // used). When full, writes fail with kResourceExhausted naming `map_size_flag`.
  std::uint64_t map_size = 8ull << 30;
  // The flag the operator raises when the map is full (named in that error message).
  std::string map_size_flag = "--state-map-size";
  // Watch history kept in LMDB: events of the newest `history_revisions` revisions, and at
  // most `history_bytes` of them (whole revisions are dropped, oldest first). Applied at flush.
  std::uint64_t history_revisions = 100000;
  std::uint64_t history_bytes = 64ull << 20;
  // Test seam for crash tests: called at named points ("flush.before_commit",
  // "flush.after_commit", "stage.before_sync", "stage.before_rename",
  // "install.before_current", "install.after_current", "hash.scan") on the thread doing the
  // work.
  std::function<void(std::string_view point)> test_hook;
};

// The outcome of one op of a txn's chosen branch.
struct TxnOpResult {
  TxnOpType type = TxnOpType::kGet;
  std::uint64_t revision = 0;  // put: the key's new mod revision; deletes that removed keys: the
                               // index
  std::uint64_t deleted = 0;   // delete: 1 or 0; delete_prefix: keys removed
  std::vector<KeyValue> kvs;   // get, get_prefix: the keys as the txn saw them at this op
  bool more = false;           // get_prefix: keys remained past the limit

  friend bool operator==(const TxnOpResult&, const TxnOpResult&) = default;
};

// The outcome of applying one command. The applied index advances whatever the outcome.
struct ApplyResult {
  // kOk; kNotFound (delete of an absent key; a lease that does not exist: revoke, put_lease, a
  // txn put on it); kAlreadyExists (lease_grant of an id in use); kCompareFailed (cas saw another
  // revision); kInvalidArgument (empty or oversized key, oversized value, a txn that
  // validate_txn refuses, a lease id or ttl of 0). Only kOk changes keys or leases. A txn whose
  // compares fail is kOk with succeeded false: its "else" branch ran.
  Code code = Code::kOk;
  // put, cas ok: the key's new mod revision (= the entry's index). cas failed: the key's
  // current mod revision, 0 when absent. delete/delete_prefix that removed keys: the index.
  std::uint64_t revision = 0;
  // delete: 1 or 0; delete_prefix, lease_revoke: how many keys it removed.
  std::uint64_t deleted = 0;
  bool succeeded = false;        // txn: every compare held, so the "then" ops ran
  std::vector<TxnOpResult> ops;  // txn: one per op of the branch that ran

  friend bool operator==(const ApplyResult&, const ApplyResult&) = default;
};

struct RangeRequest {
  std::string prefix;      // only keys that start with this; empty: every key
  std::string start;       // the first key to consider (inclusive): a page's next_start
  std::string end;         // stop before this key (exclusive); empty: no bound
  std::size_t limit = 0;   // at most this many keys; 0: no limit
  bool keys_only = false;  // leave values empty
};

struct RangePage {
  std::vector<KeyValue> kvs;  // ascending key order
  bool more = false;          // keys remain after the last one returned
  std::string next_start;     // when more: the `start` of the next page
};

struct EventRequest {
  std::uint64_t from_revision = 1;  // events with revision >= this ...
  std::uint32_t from_sequence = 0;  // ... and, at from_revision, sequence >= this
  std::string key;                  // only events of this key, or of keys under it when prefix
  bool prefix = false;              // with an empty key: every key
  std::size_t limit = 0;            // at most this many events; 0: no limit
};

struct EventPage {
  std::vector<Event> events;  // in (revision, sequence) order
  bool more = false;          // matching events remain after the last one returned
  // Where to continue: after the last event returned, or past what is applied when all were.
  std::uint64_t next_revision = 0;
  std::uint32_t next_sequence = 0;
};

struct OverlayStats {
  std::uint64_t entries = 0;  // Raft entries applied since the last freeze
  std::uint64_t keys = 0;     // keys written or deleted in them
  std::uint64_t events = 0;
  std::uint64_t bytes = 0;  // approximate memory
};

// Where a scrub pass is: the database being walked (meta, then kv, then events, then leases) and
// the key to continue at. A default-constructed cursor starts a pass.
struct ScrubCursor {
  enum class Stage : std::uint8_t { kMeta = 0, kKv = 1, kEvents = 2, kLeases = 3, kDone = 4 };
  Stage stage = Stage::kMeta;
  std::string next_key;  // in the stage's database, inclusive; empty: its first record
  bool done() const { return stage == Stage::kDone; }
};

struct ScrubBatch {
  ScrubCursor next;           // pass it to the next call; done() when the pass is complete
  std::uint64_t records = 0;  // records verified by this call
  std::uint64_t bytes = 0;    // their keys' and values' bytes
  // Records that failed, "<record name>: <problem>" ("key \"a/1\": checksum mismatch"). The
  // pass goes on past them.
  std::vector<std::string> damaged;
};

// A snapshot loaded into a new, durable LMDB directory that is not live yet.
struct StagedInstall {
  std::string dir;  // state_dir/gen-N (fully synced)
  SnapshotHeader header;
  std::uint64_t records = 0;
};

class StateMachine {
 public:
  // Opens (creating when missing) the state in `state_dir` (DATA_DIR/state), finishing or
  // discarding an interrupted install (see docs/state.md, "Directory layout"). The caller holds
  // the data directory's lock.
  static Result<std::unique_ptr<StateMachine>> open(const std::string& state_dir,
                                                    StateOptions options = {});
  // Closes LMDB without flushing: what was applied but not flushed is replayed from the WAL.
  // No worker may be inside flush, write_snapshot or stage_install (checked).
  ~StateMachine();
  StateMachine(const StateMachine&) = delete;
  StateMachine& operator=(const StateMachine&) = delete;

  // ---- applying committed entries (owning thread), in log order: index == applied_index()+1
  // (checked; a gap or a repeat is a bug in the caller) ----
  // The command's outcome is in the ApplyResult. A failed Result means LMDB could not be read
  // (an I/O error or a damaged file): nothing was applied and the server must stop.
  Result<ApplyResult> apply(std::uint64_t index, std::uint64_t term, const Command& command);
  // A normal entry: empty data is the leader's no-op, anything else a Command. Fails with
  // kCorruption, applying nothing, when the data does not decode, and with kInvalidArgument for
  // a conf change entry (decode it and call apply_membership).
  Result<ApplyResult> apply_entry(const raft::Entry& entry);
  void apply_noop(std::uint64_t index, std::uint64_t term);
  // A conf change entry: the membership as of this index. Must be valid (checked).
  void apply_membership(std::uint64_t index, std::uint64_t term, Membership membership);

  // ---- reads of the merged view (owning thread) ----
  Result<std::optional<KeyValue>> get(std::string_view key);
  Result<bool> exists(std::string_view key);
  Result<RangePage> range(const RangeRequest& request);
  // Fails with kFailedPrecondition "compacted ..." naming the oldest available revision when
  // from_revision is below it (the history there was dropped), kInvalidArgument for an empty
  // key without prefix.
  Result<EventPage> events_since(const EventRequest& request);
  // StateHasher over every key of the merged view and the applied index. It reads the whole
  // state on the owning thread; durable_hash() does the same work on a worker.
  Result<std::uint64_t> hash();
  // Any thread: the hash of LMDB's state alone, and the durable index it is at (one read
  // transaction). After flush_all(), equal to hash() at applied_index().
  struct IndexedHash {
    std::uint64_t index = 0;
    std::uint64_t hash = 0;
  };
  Result<IndexedHash> durable_hash() const;
  // durable_hash() in two steps, so that its scan of the whole state need not hold up flushes.
  // pin_durable() (any thread, cheap) starts a read transaction on LMDB as it is at that
  // moment; call it on the flush thread right after the flush that reached the wanted index.
  // DurableRead::hash() then scans that view on any thread while later flushes commit beside
  // it. A pinned read keeps LMDB from reusing the pages it sees, so the state file grows by what
  // is written meanwhile: drop it once done. It counts as a worker (commit_install and
  // destruction check that none is alive).
  class DurableRead;
  Result<std::shared_ptr<DurableRead>> pin_durable() const;

  std::uint64_t applied_index() const { return active_->last_index(); }
  std::uint64_t applied_term() const { return active_->last_term(); }
  // The highest revision that changed a key; 0 when none ever did.
  std::uint64_t revision() const { return revision_; }
  const Membership& membership() const { return membership_; }
  OverlayStats active_stats() const;
  // Approximate memory of what is applied and not yet in LMDB: the active overlay and the
  // frozen one a flush is writing.
  std::uint64_t unflushed_bytes() const;

  // ---- leases (owning thread): the live table, as of applied_index() ----
  // The whole table is kept in memory (a controller holds tens to thousands of leases); each
  // lease's keys too. Loaded from LMDB at open and install.
  std::optional<Lease> lease(std::uint64_t id) const;
  // Every lease in ascending id order; `with_keys` false leaves their key lists empty.
  std::vector<Lease> leases(bool with_keys) const;
  std::size_t lease_count() const { return leases_.size(); }
  // The lease `key` is attached to, 0 when none.
  std::uint64_t lease_of(std::string_view key) const;
  // Changes whenever a lease is granted or revoked, or the table is reloaded (open, install):
  // the leader's lease clock rereads the table only then.
  std::uint64_t lease_epoch() const { return lease_epoch_; }

  // ---- flushing (see the class comment for threads) ----
  // Owning thread: makes the active overlay the frozen one and starts a new active overlay.
  // Returns false (and does nothing) when nothing was applied since the last freeze, or when a
  // frozen overlay still awaits retire_frozen().
  bool freeze();
  bool has_frozen() const { return frozen_ != nullptr; }
  // Worker (or owning) thread: writes the frozen overlay to LMDB in one synced transaction
  // (keys, events, applied index and term, membership, history compaction). On failure LMDB is
  // at its previous durable index and the frozen overlay stays, so reads still answer, but the
  // server must stop: a failed commit may leave LMDB's environment unusable (an fsync error),
  // and a full map (kResourceExhausted, naming the flag to raise) needs a restart with a
  // larger map. The restart replays the WAL after durable_index(); nothing is lost.
  Status flush();
  // Owning thread, after flush() returned ok: drops the frozen overlay.
  void retire_frozen();
  // Owning thread: flushes everything applied so far (for shutdown and tests).
  Status flush_all();
  // The index LMDB holds durably (D): the WAL may be released below it. Any thread.
  std::uint64_t durable_index() const { return durable_index_.load(std::memory_order_acquire); }
  // The oldest revision whose events are still kept (LMDB's view). Any thread.
  Result<std::uint64_t> compact_revision() const;

  // ---- snapshots ----
  // Any thread: writes a snapshot of LMDB's state (as of durable_index(): flush first for a
  // recent one) to `path` (via path.tmp, fsync, rename, directory fsync), streaming from one
  // read transaction. When `cancel` becomes true it stops early with kShuttingDown and leaves
  // no file (checked every 4,096 keys).
  Result<SnapshotInfo> write_snapshot(const std::string& path, const ProgressFn& progress = {},
                                      const std::atomic<bool>* cancel = nullptr) const;
  // Any thread: write_snapshot into `snap_dir` under its canonical name (unless a file of that
  // name, the same index and term, is there already and reads back whole: a damaged one is
  // written again), then keep the newest `keep` snapshot files there.
  Result<SnapshotInfo> save_snapshot(const std::string& snap_dir,
                                     std::size_t keep = kDefaultSnapshotsKept,
                                     const ProgressFn& progress = {},
                                     const std::atomic<bool>* cancel = nullptr) const;
  // Any thread: loads a snapshot file into a new LMDB directory beside the live one and syncs
  // it; the live state is untouched. `membership` replaces the snapshot's (kvc-snap restore).
  // A file that fails verification gives kCorruption (`problem` says which kind).
  Result<StagedInstall> stage_install(const std::string& snapshot_path,
                                      const std::optional<Membership>& membership = std::nullopt,
                                      const ProgressFn& progress = {},
                                      SnapshotProblem* problem = nullptr) const;
  // Owning thread, no frozen overlay, no worker busy (checked): makes the staged state the
  // live one, atomically with respect to crashes, and drops the active overlay. Fails with
  // kFailedPrecondition when the snapshot is not newer than applied_index().
  // With `replace_damaged` (the server repairs a damaged state), a snapshot at the applied
  // index is accepted too: it replaces the damaged state with a good one of the same point.
  Status commit_install(StagedInstall staged, bool replace_damaged = false);
  // stage_install + commit_install on the owning thread.
  Status install_snapshot(const std::string& snapshot_path);

  // Worker, one call at a time: maps up to `max_bytes` more of the LMDB file into this
  // process's page tables, where the last call stopped (state_map.cc), so the reads that serve
  // clients after a start, a failover or an install take no page fault. Returns the bytes this
  // call mapped in: 0 when the whole file is, or when the kernel cannot (then never again for
  // this file). Owning thread: map_in_pending() is true while part of the file is not mapped in
  // (the file grew, or a new one was opened).
  std::uint64_t map_in(std::uint64_t max_bytes);
  bool map_in_pending() const;
  // Any thread: the bytes of the file map_in has mapped in.
  std::uint64_t mapped_in_bytes() const { return mapped_in_.load(std::memory_order_relaxed); }

  const std::string& state_dir() const { return state_dir_; }

  // ---- integrity ----
  // Owning thread: the WAL durably holds every committed entry up to `index` (the server calls
  // it when a sync completes, with min(commit index, last synced index)). The highest value
  // noted is written to LMDB's meta with the next flush, so that a start can tell a log that
  // lost its newest segments (consistency.h). Committed entries are never rewritten, so the
  // value only grows.
  void note_log_durable(std::uint64_t index);
  // Any thread: what LMDB's meta says as of the last open, flush or install, for the start-up
  // checks (consistency.h).
  StateFacts facts() const;
  // Any thread, like durable_hash (never during commit_install or destruction): verifies up to
  // `max_records` records from `from` on, in a read transaction of its own that ends before it
  // returns, and reports every damaged one without stopping. Fails only when LMDB itself
  // fails (a damaged page: kCorruption), which ends the pass.
  Result<ScrubBatch> scrub(const ScrubCursor& from, std::size_t max_records) const;
  // Any thread: the records found damaged since open, by reads or scrub ("key \"a/1\"",
  // "event 12/0", "meta field \"revision\""), each once, at most kMaxDamagedListed; and how
  // many times a damaged record was met.
  static constexpr std::size_t kMaxDamagedListed = 1000;
  std::vector<std::string> damaged_keys() const;
  std::uint64_t damage_count() const;

 private:
  struct Dbs;
  using DamageFn = std::function<Status(StateDb db, std::string_view key, RecordProblem p)>;
  StateMachine(std::string state_dir, StateOptions options);

  Status open_env(const std::string& dir);
  // state_map.cc: finds the LMDB mapping (map_base_) of the environment just opened; the size
  // of the file, whole pages.
  void find_map();
  std::uint64_t map_file_bytes() const;
  void close_env();
  Status load_meta();
  Status upgrade_from_v1(MDB_txn* txn);
  // Records a damaged record and returns the kCorruption a read fails with.
  Status damaged(StateDb db, std::string_view key, RecordProblem problem) const;
  // Calls `fn` with every lease record LMDB holds in `txn`, in id order, each checked (a
  // damaged one ends the walk with damaged()'s kCorruption); `fn`'s error ends it too.
  Status for_each_stored_lease(MDB_txn* txn, const std::function<Status(Lease&)>& fn) const;
  // StateHasher over the kv and lease records `txn` sees, at `index` (durable_hash's scan).
  Result<IndexedHash> hash_in(MDB_txn* txn, std::uint64_t index,
                              const std::atomic<bool>* cancel = nullptr) const;
  // The owning thread's read transaction, renewed first when it is stale.
  Result<MDB_txn*> read_txn();
  // Ends it: after LMDB failed inside it (a damaged page), it refuses every later call.
  void drop_read_txn();
  // Owning-thread reads pass their result through here, so a failed one leaves no broken
  // read transaction behind.
  template <typename T>
  Result<T> owner_read(Result<T> r) {
    if (!r.ok()) drop_read_txn();
    return r;
  }
  Result<ApplyResult> apply_command(std::uint64_t index, std::uint64_t term, const Command& c);
  // The pieces of apply_command, shared by single commands and txn ops. `seq` is the next
  // event sequence number at `index`. put_key's `lease` must exist (checked by the caller).
  Result<TxnOpResult> put_key(std::uint64_t index, std::uint32_t& seq, const std::string& key,
                              const std::string& value, std::uint64_t lease);
  Result<TxnOpResult> delete_key(std::uint64_t index, std::uint32_t& seq, const std::string& key);
  Result<TxnOpResult> delete_prefix(std::uint64_t index, std::uint32_t& seq,
                                    const std::string& prefix);
  Result<ApplyResult> apply_txn(std::uint64_t index, const Command& c, bool& changed);
  Result<bool> compare_holds(const Compare& cmp);
  ApplyResult grant_lease(std::uint64_t index, const Command& c);
  Result<ApplyResult> revoke_lease(std::uint64_t index, std::uint64_t id, bool& changed);
  void attach_key(const std::string& key, std::uint64_t lease);
  void detach_key(std::string_view key);
  // Reads the leases database into the table (open, install).
  Status load_leases();
  Lease lease_value(std::uint64_t id) const;  // leases_[id] as a Lease (it must exist)
  Result<RangePage> range_view(const RangeRequest& request);
  Result<std::uint64_t> hash_view();
  Result<EventPage> events_view(const EventRequest& request);
  // The live KeyValue of `key` in the merged view, or nullopt.
  Result<std::optional<KeyValue>> lookup(std::string_view key);
  Status lmdb_error(int rc, const std::string& what) const;
  void hook(std::string_view point) const {
    if (options_.test_hook) options_.test_hook(point);
  }
  Result<SnapshotInfo> write_snapshot_with(
      const std::function<std::string(const SnapshotHeader&)>& path_for, const ProgressFn& progress,
      bool keep_existing, const std::atomic<bool>* cancel) const;

  std::string state_dir_;
  StateOptions options_;
  std::string gen_;  // the live generation's directory name ("gen-0000000001")
  MDB_env* env_ = nullptr;
  std::unique_ptr<Dbs> dbs_;
  // The owning thread's read transaction. It is reset (and renewed at the next read) only when
  // LMDB may hold more than the layers above it account for: in retire_frozen and
  // commit_install. Invariant: its view is LMDB as of the base index of the lowest overlay
  // (frozen, else active) or, while a flush commits, as of that base or of the frozen
  // overlay's end; either way the overlays above complete it to the applied state.
  MDB_txn* read_txn_ = nullptr;
  bool read_txn_stale_ = true;

  // Invariant: active_->base_index() == (frozen_ ? frozen_->last_index() : durable LMDB index)
  // and durable_index() <= applied_index().
  std::unique_ptr<Overlay> active_;
  std::unique_ptr<const Overlay> frozen_;
  std::uint64_t revision_ = 0;
  Membership membership_;
  // The live lease table and its index by key (owning thread), and the leases changed since the
  // last freeze (written into the overlay being frozen: Overlay::set_lease_changes).
  struct LeaseSlot {
    std::uint64_t ttl = 0;
    std::uint64_t granted_index = 0;
    std::set<std::string, std::less<>> keys;
  };
  std::map<std::uint64_t, LeaseSlot> leases_;
  std::map<std::string, std::uint64_t, std::less<>> key_lease_;
  std::set<std::uint64_t> dirty_leases_;
  std::uint64_t lease_epoch_ = 0;
  std::atomic<std::uint64_t> durable_index_{0};
  // map_in's view of the LMDB mapping: its start (set by open_env, nullptr when it was not
  // found), how much of the file is mapped in, and whether the kernel refused.
  char* map_base_ = nullptr;
  std::atomic<std::uint64_t> mapped_in_{0};
  std::atomic<bool> map_in_off_{false};
  // Workers inside flush, write_snapshot, stage_install, durable_hash or scrub, and pinned
  // DurableReads.
  mutable std::atomic<int> busy_{0};

  DamageFn damage_fn_;  // damaged(), for the merged cursor
  mutable std::mutex damage_mu_;
  mutable std::vector<std::string> damaged_;  // guarded by damage_mu_
  mutable std::uint64_t damage_count_ = 0;    // guarded by damage_mu_
  mutable std::mutex facts_mu_;
  StateFacts facts_;  // guarded by facts_mu_; LMDB's meta as of the last load or flush
  // note_log_durable's highest value (owning thread), and its value at the last freeze, which
  // the flush writes.
  std::uint64_t log_durable_ = 0;
  std::uint64_t frozen_log_durable_ = 0;
};

// A read of LMDB's durable state pinned at one index (StateMachine::pin_durable). Used by one
// thread at a time; must not outlive its StateMachine.
class StateMachine::DurableRead {
 public:
  ~DurableRead();
  DurableRead(const DurableRead&) = delete;
  DurableRead& operator=(const DurableRead&) = delete;
  // The durable index the view is at.
  std::uint64_t index() const { return index_; }
  // StateHasher over the view's keys and leases, and its index: durable_hash() of that moment.
  // When `cancel` becomes true the scan stops early with kShuttingDown.
  Result<IndexedHash> hash(const std::atomic<bool>* cancel = nullptr) const;

 private:
  friend class StateMachine;
  struct Impl;
  explicit DurableRead(std::unique_ptr<Impl> impl, std::uint64_t index);
  std::unique_ptr<Impl> impl_;
  std::uint64_t index_ = 0;
};

}  // namespace kvc::storage
