// The LMDB state machine (state.h): its errors and damage reports, opening and closing the
// environment (with the upgrade from format 1), the meta record, and the owning thread's
// read transaction. Invariant kept here: a damaged record is reported once as an error and
// counted every time it is met; it is never served.
#include "kvc/storage/state.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kvc/storage/fs.h"
#include "kvc/storage/state_internal.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

#ifdef KVC_MUTATIONS
StateMutation g_state_mutation = StateMutation::kNone;
#endif

namespace state_internal {

Status remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Status::io_error("remove " + path + ": " + ec.message());
  return Status();
}

}  // namespace state_internal

// ---- errors ----

Status StateMachine::lmdb_error(int rc, const std::string& what) const {
  return lmdb_status(rc, state_dir_, what, options_.map_size, options_.map_size_flag);
}

Status StateMachine::damaged(StateDb db, std::string_view key, RecordProblem problem) const {
  const std::string name = record_name(db, key);
  bool first = false;
  {
    std::lock_guard<std::mutex> lock(damage_mu_);
    ++damage_count_;
    if (damaged_.size() < kMaxDamagedListed &&
        std::find(damaged_.begin(), damaged_.end(), name) == damaged_.end()) {
      damaged_.push_back(name);
      first = true;
    }
  }
  // An error the first time a record is found damaged; reads and scrub passes that meet it
  // again are not news.
  if (first) {
    spdlog::error("state record damaged path={} record={} problem={}", state_dir_, name,
                  record_problem_name(problem));
  } else {
    spdlog::debug("state record damaged path={} record={} problem={}", state_dir_, name,
                  record_problem_name(problem));
  }
  return Status::corruption("state " + state_dir_ + ": " + name + ": " +
                            std::string(record_problem_name(problem)) +
                            " (the stored record is damaged; it is not served)");
}

Status StateMachine::for_each_stored_lease(MDB_txn* txn,
                                           const std::function<Status(Lease&)>& fn) const {
  Cursor c;
  KVC_MDB(c.open(txn, dbs_->leases), "open leases cursor");
  MDB_val k, v;
  Lease lease;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  while (rc == 0) {
    if (const RecordProblem p = decode_lease_record(view_of(k), view_of(v), lease);
        p != RecordProblem::kNone) {
      return damaged(StateDb::kLeases, view_of(k), p);
    }
    KVC_RETURN_IF_ERROR(fn(lease));
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "read leases");
  return Status();
}

std::vector<std::string> StateMachine::damaged_keys() const {
  std::lock_guard<std::mutex> lock(damage_mu_);
  return damaged_;
}

std::uint64_t StateMachine::damage_count() const {
  std::lock_guard<std::mutex> lock(damage_mu_);
  return damage_count_;
}

// ---- open and close ----

StateMachine::StateMachine(std::string state_dir, StateOptions options)
    : state_dir_(std::move(state_dir)),
      options_(std::move(options)),
      dbs_(new Dbs),
      damage_fn_([this](StateDb db, std::string_view key, RecordProblem p) {
        return damaged(db, key, p);
      }) {}

StateMachine::~StateMachine() {
  KVC_CHECK(busy_.load() == 0, "state machine destroyed while a worker uses it");
  close_env();
}

void StateMachine::close_env() {
  if (read_txn_ != nullptr) {
    mdb_txn_abort(read_txn_);
    read_txn_ = nullptr;
  }
  read_txn_stale_ = true;
  if (env_ != nullptr) {
    mdb_env_close(env_);
    env_ = nullptr;
  }
}

Result<std::unique_ptr<StateMachine>> StateMachine::open(const std::string& state_dir,
                                                         StateOptions options) {
  KVC_RETURN_IF_ERROR(make_dirs(state_dir, 0700));
  std::unique_ptr<StateMachine> sm(new StateMachine(state_dir, std::move(options)));
  const std::string current_path = state_dir + "/" + kCurrentFile;
  Result<std::vector<std::string>> names = list_dir(state_dir);
  if (!names.ok()) return names.status();
  bool write_current = false;
  if (path_exists(current_path)) {
    Result<std::string> text = read_file(current_path);
    if (!text.ok()) return text.status();
    std::string gen = *text;
    while (!gen.empty() && gen.back() == '\n') gen.pop_back();
    if (!valid_gen_name(gen)) {
      return Status::corruption(current_path + ": does not name a state generation");
    }
    if (!path_exists(state_dir + "/" + gen)) {
      return Status::corruption(current_path + ": names " + gen + ", which is missing");
    }
    sm->gen_ = gen;
  } else {
    // No CURRENT: a new state, or the crash window of creating one (gen-0000000001 made,
    // CURRENT not yet written). Anything else is not ours to guess about.
    std::vector<std::string> gens;
    for (const std::string& n : *names) {
      if (valid_gen_name(n)) gens.push_back(n);
    }
    if (!gens.empty() && !(gens.size() == 1 && gens[0] == kFirstGen)) {
      return Status::corruption("state " + state_dir +
                                ": state generations exist but the CURRENT file is missing");
    }
    sm->gen_ = kFirstGen;
    KVC_RETURN_IF_ERROR(make_dirs(state_dir + "/" + sm->gen_, 0700));
    write_current = true;
  }
  // Whatever is not the live generation is the debris of an interrupted or superseded install.
  bool removed = false;
  for (const std::string& n : *names) {
    if (n == sm->gen_ || n == kCurrentFile) continue;
    if (n.rfind("gen-", 0) == 0 || n == std::string(kCurrentFile) + ".tmp") {
      spdlog::info("removing stale state directory entry path={}/{}", state_dir, n);
      KVC_RETURN_IF_ERROR(remove_tree(state_dir + "/" + n));
      removed = true;
    }
  }
  const std::string live = state_dir + "/" + sm->gen_;
  if (!write_current && !path_exists(live + "/data.mdb")) {
    // Opening would silently create an empty state below a WAL that was already released.
    return Status::corruption(live + "/data.mdb is missing (CURRENT names this generation)");
  }
  KVC_RETURN_IF_ERROR(sm->open_env(live));
  if (write_current) {
    KVC_RETURN_IF_ERROR(write_file_atomic(current_path, sm->gen_ + "\n"));
  } else if (removed) {
    KVC_RETURN_IF_ERROR(fsync_dir(state_dir));
  }
  KVC_RETURN_IF_ERROR(sm->load_meta());
  return sm;
}

Status StateMachine::open_env(const std::string& dir) {
  KVC_CHECK(env_ == nullptr, "open_env with an open environment");
  KVC_MDB(mdb_env_create(&env_), "create environment");
  auto fail = [this](Status s) {
    mdb_env_close(env_);
    env_ = nullptr;
    return s;
  };
  if (int rc = mdb_env_set_maxdbs(env_, 4); rc != 0) return fail(lmdb_error(rc, "set maxdbs"));
  if (int rc = mdb_env_set_mapsize(env_, options_.map_size); rc != 0) {
    return fail(lmdb_error(rc, "set map size"));
  }
  // MDB_NOTLS: read transactions belong to the object, not the thread, so the owning thread can
  // keep one while workers open their own. Syncing is LMDB's default (full): docs/state.md.
  if (int rc = mdb_env_open(env_, dir.c_str(), MDB_NOTLS, 0600); rc != 0) {
    return fail(lmdb_error(rc, "open " + dir));
  }
  if (mdb_env_get_maxkeysize(env_) < static_cast<int>(kMaxKeyBytes)) {
    return fail(Status::internal("lmdb was built with a key size limit below " +
                                 std::to_string(kMaxKeyBytes)));
  }
  // The transaction must be gone before `fail` closes the environment.
  Status init = [this] {
    Txn txn;
    KVC_MDB(txn.begin(env_, 0), "begin");
    // The three databases are created with the environment, in one transaction, and only
    // then: in an existing environment a missing one is damage (a flipped bit in its name in
    // the main database), and an empty database created in its place would be served as the
    // truth (no keys, or no history).
    MDB_dbi main = 0;
    KVC_MDB(mdb_dbi_open(txn.get(), nullptr, 0, &main), "open the main database");
    MDB_stat main_stat{};
    KVC_MDB(mdb_stat(txn.get(), main, &main_stat), "stat the main database");
    const unsigned create = main_stat.ms_entries == 0 ? MDB_CREATE : 0;
    for (const auto& [name, dbi] : {std::pair{"kv", &dbs_->kv}, std::pair{"meta", &dbs_->meta},
                                    std::pair{"events", &dbs_->events}}) {
      const int rc = mdb_dbi_open(txn.get(), name, create, dbi);
      if (rc == MDB_NOTFOUND) {
        return Status::corruption("state " + state_dir_ + ": the LMDB database '" + name +
                                  "' is missing (the LMDB file is damaged)");
      }
      if (rc != 0) return lmdb_error(rc, std::string("open ") + name + " database");
    }
    Result<std::uint32_t> format = read_state_format(txn.get(), dbs_->meta, state_dir_);
    if (!format.ok()) return format.status();
    if (*format == 0) {  // a new state: applied index 0, no keys, no members
      KVC_MDB(write_state_meta(txn.get(), dbs_->meta, StateMeta{}), "initialize meta");
    } else if (*format == 1) {
      KVC_RETURN_IF_ERROR(upgrade_from_v1(txn.get()));
    }  // else load_meta reads and checks it
    // The leases database came with version 3: created with a new state or by the upgrade of an
    // older one (which had no leases), and only then; missing later, it is damage.
    const bool older = *format != 0 && *format < 3;
    const int rc =
        mdb_dbi_open(txn.get(), "leases", create != 0 || older ? MDB_CREATE : 0, &dbs_->leases);
    if (rc == MDB_NOTFOUND) {
      return Status::corruption("state " + state_dir_ +
                                ": the LMDB database 'leases' is missing (the LMDB file is "
                                "damaged)");
    }
    if (rc != 0) return lmdb_error(rc, "open leases database");
    if (*format == 2) {
      StateMeta m;
      KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, m, state_dir_));
      KVC_MDB(write_state_meta(txn.get(), dbs_->meta, m), "upgrade: meta");  // writes format 3
      spdlog::info("state upgraded to format version {} (leases) path={}", kStateFormatVersion,
                   state_dir_);
    }
    // Committed even when nothing changed: the database handles live only if it commits.
    KVC_MDB(txn.commit(), "commit");
    return Status();
  }();
  if (!init.ok()) return fail(init);
  map_in_off_.store(false, std::memory_order_relaxed);
  find_map();
  return Status();
}

// Version 1 stored the same bodies without seals: seal every record where it is, in the one
// transaction of open_env, so a crash leaves either version whole.
Status StateMachine::upgrade_from_v1(MDB_txn* txn) {
  const auto t0 = std::chrono::steady_clock::now();
  StateMeta m;
  KVC_RETURN_IF_ERROR(read_state_meta(txn, dbs_->meta, m, state_dir_));
  std::uint64_t counts[2] = {0, 0};
  const struct {
    MDB_dbi dbi;
    StateDb db;
  } dbs[] = {{dbs_->kv, StateDb::kKv}, {dbs_->events, StateDb::kEvents}};
  std::string key, sealed;
  for (int i = 0; i < 2; ++i) {
    Cursor c;
    KVC_MDB(c.open(txn, dbs[i].dbi), "upgrade: open cursor");
    MDB_val k, v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
    while (rc == 0) {
      // Copies: the put moves the page the cursor's key and value point into.
      key.assign(view_of(k));
      seal_record(sealed, dbs[i].db, key, view_of(v));
      MDB_val kk = val_of(key), vv = val_of(sealed);
      KVC_MDB(mdb_cursor_put(c.get(), &kk, &vv, MDB_CURRENT), "upgrade: rewrite");
      ++counts[i];
      rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
    }
    if (rc != MDB_NOTFOUND) return lmdb_error(rc, "upgrade: read");
  }
  m.events_bytes += kRecordCrcBytes * counts[1];
  if (looks_installed(m, counts[1])) m.installed_index = m.applied_index;
  m.log_durable_index = 0;
  KVC_MDB(write_state_meta(txn, dbs_->meta, m), "upgrade: meta");
  spdlog::info(
      "state upgraded to format version {} (a checksum on every record) path={} keys={} "
      "events={} dur_ms={}",
      kStateFormatVersion, state_dir_, counts[0], counts[1],
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count());
  return Status();
}

Status StateMachine::load_meta() {
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "begin read");
  StateMeta m;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, m, state_dir_));
  {
    std::lock_guard<std::mutex> lock(facts_mu_);
    facts_ = m.facts(state_dir_);
  }
  active_ = std::make_unique<Overlay>(m.applied_index, m.applied_term);
  frozen_.reset();
  revision_ = m.revision;
  membership_ = std::move(m.membership);
  durable_index_.store(m.applied_index, std::memory_order_release);
  KVC_RETURN_IF_ERROR(load_leases());
  spdlog::debug("state opened path={}/{} applied_index={} applied_term={} revision={}", state_dir_,
                gen_, m.applied_index, m.applied_term, m.revision);
  return Status();
}

Status StateMachine::load_leases() {
  leases_.clear();
  key_lease_.clear();
  dirty_leases_.clear();
  ++lease_epoch_;
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "begin read");
  KVC_RETURN_IF_ERROR(for_each_stored_lease(txn.get(), [this](Lease& lease) {
    LeaseSlot& slot = leases_[lease.id];
    slot.ttl = lease.ttl;
    slot.granted_index = lease.granted_index;
    for (std::string& key : lease.keys) {
      key_lease_[key] = lease.id;
      slot.keys.insert(std::move(key));
    }
    return Status();
  }));
  return Status();
}

void StateMachine::drop_read_txn() {
  if (read_txn_ != nullptr) mdb_txn_abort(read_txn_);
  read_txn_ = nullptr;
  read_txn_stale_ = true;
}

Result<MDB_txn*> StateMachine::read_txn() {
  if (read_txn_stale_) {
    const int rc = read_txn_ == nullptr ? mdb_txn_begin(env_, nullptr, MDB_RDONLY, &read_txn_)
                                        : mdb_txn_renew(read_txn_);
    if (rc != 0) {
      if (read_txn_ != nullptr) {
        mdb_txn_abort(read_txn_);
        read_txn_ = nullptr;
      }
      return lmdb_error(rc, "begin read");
    }
    read_txn_stale_ = false;
  }
  return read_txn_;
}

}  // namespace kvc::storage
