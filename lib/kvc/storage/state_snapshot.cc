// The LMDB state machine's snapshots (state.h): writing one from a read transaction, staging an
// install into a new generation beside the live one, and committing it. Invariant kept here:
// the live state is replaced only when CURRENT names a staged generation that was synced whole
// (the commit point); a failed stage removes what it wrote and leaves the live state as it was.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/storage/fs.h"
#include "kvc/storage/state_internal.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

namespace {

// A staged install commits every this many records, so its dirty pages stay bounded.
constexpr std::uint64_t kStageBatchRecords = 50000;

std::uint64_t now_unix_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

}  // namespace

// ---- snapshots ----

Result<SnapshotInfo> StateMachine::write_snapshot_with(
    const std::function<std::string(const SnapshotHeader&)>& path_for, const ProgressFn& progress,
    bool keep_existing, const std::atomic<bool>* cancel) const {
  BusyGuard busy(busy_);
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "begin snapshot read");
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, meta, state_dir_));
  SnapshotHeader h;
  h.index = meta.applied_index;
  h.term = meta.applied_term;
  h.revision = meta.revision;
  h.created_unix_ms = now_unix_ms();
  h.membership = std::move(meta.membership);
  MDB_stat lst{};
  KVC_MDB(mdb_stat(txn.get(), dbs_->leases, &lst), "stat leases");
  h.lease_count = lst.ms_entries;
  const std::string path = path_for(h);
  if (keep_existing && path_exists(path)) {
    // A snapshot of this very state (same index and term) is there already: rewriting it
    // would only change its creation time, under a reader that may be shipping it. It may be
    // from before a restart, or one this member installed, and may have been damaged at rest
    // since: it is read back whole first, and a damaged one is replaced, never handed out.
    Result<VerifyReport> rep = verify_snapshot(path);
    if (rep.ok() && rep->problem == SnapshotProblem::kNone) return rep->info;
    // The new one replaces it by a rename once complete (SnapshotWriter::finish).
    spdlog::error("snapshot file damaged, writing it again path={} problem={}", path,
                  rep.ok() ? rep->message : rep.status().message());
  }
  MDB_stat st{};
  KVC_MDB(mdb_stat(txn.get(), dbs_->kv, &st), "stat kv");
  Result<std::unique_ptr<SnapshotWriter>> w = SnapshotWriter::create(path, h);
  if (!w.ok()) return w.status();
  Cursor c;
  KVC_MDB(c.open(txn.get(), dbs_->kv), "open kv cursor");
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  KeyValue kv;
  std::uint64_t n = 0;
  while (rc == 0) {
    // A damaged record must not reach a snapshot (a backup, or a follower's state).
    if (const RecordProblem p = decode_kv_record(view_of(k), view_of(v), kv, true);
        p != RecordProblem::kNone) {
      return damaged(StateDb::kKv, view_of(k), p);
    }
    KVC_RETURN_IF_ERROR((*w)->add(kv));
    if ((++n % 4096) == 0) {
      if (progress) progress(n, st.ms_entries);
      if (cancel != nullptr && cancel->load(std::memory_order_relaxed)) {
        // The writer's destructor removes its temporary file.
        return Status::shutting_down("the snapshot was cancelled after " + std::to_string(n) +
                                     " keys: the member is stopping");
      }
    }
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "snapshot read");
  KVC_RETURN_IF_ERROR(
      for_each_stored_lease(txn.get(), [&w](Lease& lease) { return (*w)->add_lease(lease); }));
  Result<SnapshotInfo> info = (*w)->finish();
  if (info.ok() && progress) progress(st.ms_entries, st.ms_entries);
  return info;
}

Result<SnapshotInfo> StateMachine::write_snapshot(const std::string& path,
                                                  const ProgressFn& progress,
                                                  const std::atomic<bool>* cancel) const {
  return write_snapshot_with([&](const SnapshotHeader&) { return path; }, progress, false, cancel);
}

Result<SnapshotInfo> StateMachine::save_snapshot(const std::string& snap_dir, std::size_t keep,
                                                 const ProgressFn& progress,
                                                 const std::atomic<bool>* cancel) const {
  KVC_RETURN_IF_ERROR(make_dirs(snap_dir, 0700));
  Result<SnapshotInfo> info = write_snapshot_with(
      [&](const SnapshotHeader& h) { return snap_dir + "/" + snapshot_file_name(h.index, h.term); },
      progress, true, cancel);
  if (!info.ok()) return info;
  KVC_RETURN_IF_ERROR(prune_snapshots(snap_dir, keep));
  spdlog::info("snapshot saved path={} index={} term={} keys={} bytes={}", info->path,
               info->header.index, info->header.term, info->record_count, info->size_bytes);
  return info;
}

// Long (about 105 lines) because one cleanup path (close the staging environment, remove the
// .tmp directory) covers every step from creating the environment to the rename; split, each
// part would need its own share of that cleanup.
Result<StagedInstall> StateMachine::stage_install(const std::string& snapshot_path,
                                                  const std::optional<Membership>& membership,
                                                  const ProgressFn& progress,
                                                  SnapshotProblem* problem) const {
  BusyGuard busy(busy_);
  if (problem != nullptr) *problem = SnapshotProblem::kNone;
  if (membership) KVC_RETURN_IF_ERROR(validate_membership(*membership));
  Result<SnapshotReader> reader = SnapshotReader::open(snapshot_path, problem);
  if (!reader.ok()) return reader.status();
  const std::uint64_t gen_number = std::stoull(gen_.substr(4)) + 1;
  char name[32];
  std::snprintf(name, sizeof name, "gen-%010llu", static_cast<unsigned long long>(gen_number));
  StagedInstall staged;
  staged.dir = state_dir_ + "/" + name;
  staged.header = reader->header();
  if (membership) staged.header.membership = *membership;
  const std::string tmp = staged.dir + ".tmp";
  KVC_RETURN_IF_ERROR(remove_tree(tmp));
  KVC_RETURN_IF_ERROR(remove_tree(staged.dir));
  KVC_RETURN_IF_ERROR(make_dirs(tmp, 0700));

  // The staging environment does not sync its commits (MDB_NOSYNC): nothing refers to it until
  // the mdb_env_sync below has made all of it durable (docs/state.md, "The one MDB_NOSYNC").
  MDB_env* env = nullptr;
  MDB_dbi kv = 0, meta_dbi = 0, events = 0, leases = 0;
  auto cleanup = [&](Status s) -> Result<StagedInstall> {
    if (env != nullptr) mdb_env_close(env);
    env = nullptr;
    (void)remove_tree(tmp);
    return s;
  };
  if (int rc = mdb_env_create(&env); rc != 0) return cleanup(lmdb_error(rc, "stage: create"));
  if (int rc = mdb_env_set_maxdbs(env, 4); rc != 0) return cleanup(lmdb_error(rc, "stage"));
  if (int rc = mdb_env_set_mapsize(env, options_.map_size); rc != 0) {
    return cleanup(lmdb_error(rc, "stage: set map size"));
  }
  if (int rc = mdb_env_open(env, tmp.c_str(), MDB_NOTLS | MDB_NOSYNC, 0600); rc != 0) {
    return cleanup(lmdb_error(rc, "stage: open " + tmp));
  }
  auto begin = [&](Txn& t, bool create_dbs) -> int {
    int rc = t.begin(env, 0);
    if (rc == 0 && create_dbs) {
      if ((rc = mdb_dbi_open(t.get(), "kv", MDB_CREATE, &kv)) != 0) return rc;
      if ((rc = mdb_dbi_open(t.get(), "meta", MDB_CREATE, &meta_dbi)) != 0) return rc;
      if ((rc = mdb_dbi_open(t.get(), "events", MDB_CREATE, &events)) != 0) return rc;
      rc = mdb_dbi_open(t.get(), "leases", MDB_CREATE, &leases);
    }
    return rc;
  };
  auto txn = std::make_unique<Txn>();
  if (int rc = begin(*txn, true); rc != 0) {
    txn.reset();  // before the environment closes
    return cleanup(lmdb_error(rc, "stage: begin"));
  }
  std::uint64_t in_batch = 0;
  std::string buf;
  Status s = reader->for_each(
      [&](const KeyValue& r) -> Status {
        encode_kv_record(buf, r.key, r.value, r.create_revision, r.mod_revision, r.version);
        MDB_val k = val_of(r.key), v = val_of(buf);
        KVC_MDB(mdb_put(txn->get(), kv, &k, &v, MDB_APPEND), "stage: put");
        ++staged.records;
        if (++in_batch == kStageBatchRecords) {
          in_batch = 0;
          KVC_MDB(txn->commit(), "stage: commit");
          txn = std::make_unique<Txn>();
          KVC_MDB(begin(*txn, false), "stage: begin");
        }
        return Status();
      },
      progress,
      [&](const Lease& l) -> Status {
        encode_lease_record(buf, l);
        const std::string lk = lease_key(l.id);
        MDB_val k = val_of(lk), v = val_of(buf);
        KVC_MDB(mdb_put(txn->get(), leases, &k, &v, MDB_APPEND), "stage: lease");
        return Status();
      });
  if (!s.ok()) {
    if (problem != nullptr) *problem = reader->problem();
    txn.reset();
    return cleanup(s);
  }
  StateMeta m;
  m.applied_index = staged.header.index;
  m.applied_term = staged.header.term;
  m.revision = staged.header.revision;
  m.compact_revision = staged.header.index + 1;
  m.membership = staged.header.membership;
  // The log may not have recorded this snapshot yet (consistency.h): say where the state came
  // from. What the log held durably before says nothing about the log after the install.
  m.installed_index = staged.header.index;
  m.log_durable_index = 0;
  if (int rc = write_state_meta(txn->get(), meta_dbi, m); rc != 0) {
    txn.reset();
    return cleanup(lmdb_error(rc, "stage: meta"));
  }
  if (int rc = txn->commit(); rc != 0) return cleanup(lmdb_error(rc, "stage: commit"));
  hook("stage.before_sync");
  if (int rc = mdb_env_sync(env, 1); rc != 0) return cleanup(lmdb_error(rc, "stage: sync"));
  mdb_env_close(env);
  env = nullptr;
  if (Status f = fsync_dir(tmp); !f.ok()) return cleanup(f);
  hook("stage.before_rename");
  if (::rename(tmp.c_str(), staged.dir.c_str()) != 0) {
    return cleanup(Status::from_errno("rename " + tmp + " to " + staged.dir, errno));
  }
  if (Status f = fsync_dir(state_dir_); !f.ok()) {
    (void)remove_tree(staged.dir);
    return f;
  }
  return staged;
}

Status StateMachine::commit_install(StagedInstall staged, bool replace_damaged) {
  KVC_CHECK(frozen_ == nullptr, "commit_install during a flush");
  KVC_CHECK(busy_.load() == 0, "commit_install while a worker uses the state");
  const std::string name = staged.dir.substr(staged.dir.find_last_of('/') + 1);
  KVC_CHECK(valid_gen_name(name) && staged.dir == state_dir_ + "/" + name,
            "commit_install of a directory stage_install did not make");
  const bool older = replace_damaged ? staged.header.index < applied_index()
                                     : staged.header.index <= applied_index();
  if (older && applied_index() != 0) {
    (void)remove_tree(staged.dir);
    return Status::failed_precondition("snapshot at index " + std::to_string(staged.header.index) +
                                       " is not newer than the applied index " +
                                       std::to_string(applied_index()));
  }
  const std::string old_gen = gen_;
  close_env();
  hook("install.before_current");
  // The commit point: once CURRENT names the new generation, the install has happened.
  if (Status s = write_file_atomic(state_dir_ + "/" + kCurrentFile, name + "\n"); !s.ok()) {
    // CURRENT names the old generation (the rename did not happen) or the new one (a later
    // step failed): reopen whichever it names so this object stays usable for reads, and let
    // the server stop. The next open discards the other generation.
    Result<std::string> now = read_file(state_dir_ + "/" + kCurrentFile);
    if (now.ok() && now->rfind(name, 0) == 0) gen_ = name;
    if (open_env(state_dir_ + "/" + gen_).ok()) (void)load_meta();
    return s;
  }
  gen_ = name;
  hook("install.after_current");
  log_durable_ = 0;
  frozen_log_durable_ = 0;
  KVC_RETURN_IF_ERROR(open_env(staged.dir));
  KVC_RETURN_IF_ERROR(load_meta());
  if (Status s = remove_tree(state_dir_ + "/" + old_gen); !s.ok()) {
    spdlog::warn("could not remove the old state generation (removed at next start) error={}",
                 s.message());
  }
  spdlog::info("snapshot installed index={} term={} keys={} path={}", staged.header.index,
               staged.header.term, staged.records, staged.dir);
  return Status();
}

Status StateMachine::install_snapshot(const std::string& snapshot_path) {
  Result<StagedInstall> staged = stage_install(snapshot_path);
  if (!staged.ok()) return staged.status();
  return commit_install(std::move(*staged));
}

}  // namespace kvc::storage
