#include "kvc/storage/state.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

#include "kvc/storage/fs.h"
#include "kvc/storage/state_format.h"
#include "kvc/storage/state_lmdb.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::storage {

#ifdef KVC_MUTATIONS
StateMutation g_state_mutation = StateMutation::kNone;
#endif

struct StateMachine::Dbs {
  MDB_dbi kv = 0;
  MDB_dbi meta = 0;
  MDB_dbi events = 0;
};

namespace {

// A staged install commits every this many records, so its dirty pages stay bounded.
constexpr std::uint64_t kStageBatchRecords = 50000;

bool starts_with(std::string_view s, std::string_view prefix) {
  return s.substr(0, prefix.size()) == prefix;
}

KeyValue slot_kv(std::string_view key, const OverlaySlot& s, bool with_value) {
  KeyValue kv;
  kv.key.assign(key.data(), key.size());
  if (with_value) kv.value = s.value;
  kv.create_revision = s.create_revision;
  kv.mod_revision = s.mod_revision;
  kv.version = s.version;
  return kv;
}

std::uint64_t now_unix_ms() {
  return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        std::chrono::system_clock::now().time_since_epoch())
                                        .count());
}

Status remove_tree(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) return Status::io_error("remove " + path + ": " + ec.message());
  return Status();
}

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

}  // namespace

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

std::vector<std::string> StateMachine::damaged_keys() const {
  std::lock_guard<std::mutex> lock(damage_mu_);
  return damaged_;
}

std::uint64_t StateMachine::damage_count() const {
  std::lock_guard<std::mutex> lock(damage_mu_);
  return damage_count_;
}

#define KVC_MDB(call, what)                         \
  do {                                              \
    if (const int kvc_rc_ = (call); kvc_rc_ != 0) { \
      return lmdb_error(kvc_rc_, what);             \
    }                                               \
  } while (0)

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
    // Committed even when nothing changed: the database handles live only if it commits.
    KVC_MDB(txn.commit(), "commit");
    return Status();
  }();
  if (!init.ok()) return fail(init);
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
  spdlog::debug("state opened path={}/{} applied_index={} applied_term={} revision={}", state_dir_,
                gen_, m.applied_index, m.applied_term, m.revision);
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

// ---- flush ----

bool StateMachine::freeze() {
  if (frozen_ != nullptr || active_->empty()) return false;
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

Result<StateMachine::IndexedHash> StateMachine::durable_hash() const {
  BusyGuard busy(busy_);
  Txn txn;
  KVC_MDB(txn.begin(env_, MDB_RDONLY), "begin read");
  StateMeta meta;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), dbs_->meta, meta, state_dir_));
  Cursor c;
  KVC_MDB(c.open(txn.get(), dbs_->kv), "open kv cursor");
  StateHasher h;
  KeyValue kv;
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  while (rc == 0) {
    if (const RecordProblem p = decode_kv_record(view_of(k), view_of(v), kv, true);
        p != RecordProblem::kNone) {
      return damaged(StateDb::kKv, view_of(k), p);
    }
    h.add(kv);
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "hash read");
  return IndexedHash{meta.applied_index, h.finish(meta.applied_index)};
}

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
    const StateDb db = at.stage == ScrubCursor::Stage::kMeta ? StateDb::kMeta
                       : at.stage == ScrubCursor::Stage::kKv ? StateDb::kKv
                                                             : StateDb::kEvents;
    const MDB_dbi dbi = db == StateDb::kMeta ? dbs_->meta
                        : db == StateDb::kKv ? dbs_->kv
                                             : dbs_->events;
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

// ---- snapshots ----

Result<SnapshotInfo> StateMachine::write_snapshot_with(
    const std::function<std::string(const SnapshotHeader&)>& path_for, const ProgressFn& progress,
    bool keep_existing) const {
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
  const std::string path = path_for(h);
  if (keep_existing && path_exists(path)) {
    // A snapshot of this very state (same index and term) is there already: rewriting it
    // would only change its creation time, under a reader that may be shipping it.
    Result<SnapshotInfo> existing = read_snapshot_info(path);
    if (existing.ok()) return existing;
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
    if (progress && (++n % 4096) == 0) progress(n, st.ms_entries);
    rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT);
  }
  if (rc != MDB_NOTFOUND) return lmdb_error(rc, "snapshot read");
  Result<SnapshotInfo> info = (*w)->finish();
  if (info.ok() && progress) progress(st.ms_entries, st.ms_entries);
  return info;
}

Result<SnapshotInfo> StateMachine::write_snapshot(const std::string& path,
                                                  const ProgressFn& progress) const {
  return write_snapshot_with([&](const SnapshotHeader&) { return path; }, progress, false);
}

Result<SnapshotInfo> StateMachine::save_snapshot(const std::string& snap_dir, std::size_t keep,
                                                 const ProgressFn& progress) const {
  KVC_RETURN_IF_ERROR(make_dirs(snap_dir, 0700));
  Result<SnapshotInfo> info = write_snapshot_with(
      [&](const SnapshotHeader& h) { return snap_dir + "/" + snapshot_file_name(h.index, h.term); },
      progress, true);
  if (!info.ok()) return info;
  KVC_RETURN_IF_ERROR(prune_snapshots(snap_dir, keep));
  spdlog::info("snapshot saved path={} index={} term={} keys={} bytes={}", info->path,
               info->header.index, info->header.term, info->record_count, info->size_bytes);
  return info;
}

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
  MDB_dbi kv = 0, meta_dbi = 0, events = 0;
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
      rc = mdb_dbi_open(t.get(), "events", MDB_CREATE, &events);
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
      progress);
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
