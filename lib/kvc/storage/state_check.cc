#include "kvc/storage/state_check.h"

#include <algorithm>
#include <functional>
#include <map>
#include <memory>

#include "kvc/common/text.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_lmdb.h"
#include "kvc/storage/tool_util.h"

namespace kvc::storage {
namespace {

// The live generation's directory, without changing anything (StateMachine::open would clean
// up). Empty when there is no state yet.
Result<std::string> live_generation(const std::string& state_dir) {
  if (!path_exists(state_dir)) return std::string();
  const std::string current = state_dir + "/" + kCurrentFile;
  if (!path_exists(current)) {
    // A new state, or the crash window of creating one: either way nothing was applied.
    return std::string();
  }
  Result<std::string> text = read_file(current);
  if (!text.ok()) return text.status();
  std::string gen = *text;
  while (!gen.empty() && gen.back() == '\n') gen.pop_back();
  if (!valid_gen_name(gen))
    return Status::corruption(current + ": does not name a state generation");
  const std::string dir = state_dir + "/" + gen;
  if (!path_exists(dir + "/data.mdb")) {
    return Status::corruption(dir + "/data.mdb is missing (CURRENT names this generation)");
  }
  return dir;
}

// A read-only LMDB environment, closed on destruction.
class ReadOnlyEnv {
 public:
  ~ReadOnlyEnv() {
    if (env_ != nullptr) mdb_env_close(env_);
  }
  Status open(const std::string& state_dir, const std::string& dir) {
    if (int rc = mdb_env_create(&env_); rc != 0) {
      env_ = nullptr;
      return lmdb_status(rc, state_dir, "create environment");
    }
    if (int rc = mdb_env_set_maxdbs(env_, 4); rc != 0) {
      return lmdb_status(rc, state_dir, "set maxdbs");
    }
    // No map size: a read-only environment maps what the file says. MDB_NOTLS as the member
    // does, so this reader's slot never clashes with one of the member's threads.
    if (int rc = mdb_env_open(env_, dir.c_str(), MDB_RDONLY | MDB_NOTLS, 0600); rc != 0) {
      return lmdb_status(rc, state_dir, "open " + dir + " read-only");
    }
    return Status();
  }
  MDB_env* get() const { return env_; }

 private:
  MDB_env* env_ = nullptr;
};

struct Dbis {
  MDB_dbi kv = 0, meta = 0, events = 0, leases = 0;
  bool has_leases = false;  // format 3 on; an older state has none
};

Status open_dbis(MDB_txn* txn, const std::string& state_dir, Dbis& d) {
  const struct {
    const char* name;
    MDB_dbi* dbi;
  } dbs[] = {{"kv", &d.kv}, {"meta", &d.meta}, {"events", &d.events}};
  for (const auto& db : dbs) {
    const int rc = mdb_dbi_open(txn, db.name, 0, db.dbi);
    if (rc == MDB_NOTFOUND) {
      return Status::corruption("state " + state_dir + ": the LMDB database '" + db.name +
                                "' is missing");
    }
    if (rc != 0) return lmdb_status(rc, state_dir, std::string("open database ") + db.name);
  }
  const int rc = mdb_dbi_open(txn, "leases", 0, &d.leases);
  if (rc != 0 && rc != MDB_NOTFOUND) return lmdb_status(rc, state_dir, "open database leases");
  d.has_leases = rc == 0;
  return Status();
}

// Collects what check_state finds.
class Findings {
 public:
  Findings(StateCheckReport& r, std::size_t max) : r_(r), max_(max) {}
  void damaged(StateDb db, std::string_view key, RecordProblem p) {
    ++r_.damaged_count;
    if (r_.damaged.size() < max_) {
      r_.damaged.push_back(record_name(db, key) + ": " + std::string(record_problem_name(p)));
    }
  }
  void problem(std::string what) {
    ++r_.problem_count;
    if (r_.problems.size() < max_) r_.problems.push_back(std::move(what));
  }

 private:
  StateCheckReport& r_;
  std::size_t max_;
};

// The main database names the others; nothing else belongs there. Non-ok only when it cannot
// be read at all.
Status check_main_database(MDB_txn* txn, const std::string& state_dir, Findings& found) {
  MDB_dbi main = 0;
  if (int rc = mdb_dbi_open(txn, nullptr, 0, &main); rc != 0) {
    return lmdb_status(rc, state_dir, "open the main database");
  }
  Cursor c;
  if (int rc = c.open(txn, main); rc != 0) return lmdb_status(rc, state_dir, "cursor");
  MDB_val k, v;
  int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
  for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
    const std::string_view name = view_of(k);
    if (name != "kv" && name != "meta" && name != "events" && name != "leases") {
      found.problem("the main database names an unknown database " + text_value(name));
    }
  }
  if (rc != MDB_NOTFOUND) {
    found.problem(lmdb_status(rc, state_dir, "walk the main database").message());
  }
  return Status();
}

// check_state's walks over the records of one read transaction, against the state's meta `m`
// (trusted only when `meta_ok`), counting progress over `total` records.
class StateWalk {
 public:
  StateWalk(MDB_txn* txn, const std::string& state_dir, const StateCheckOptions& options,
            StateCheckReport& report, Findings& found, const StateMeta& m, bool meta_ok,
            std::uint64_t total)
      : txn_(txn),
        state_dir_(state_dir),
        options_(options),
        report_(report),
        found_(found),
        m_(m),
        meta_ok_(meta_ok),
        sealed_(m.format >= 2),
        total_(total) {}

  // meta: every record sealed (version 2); unknown fields are suspicious.
  void meta_records(MDB_dbi dbi) {
    walk(dbi, StateDb::kMeta, "meta", report_.meta_records,
         [&](std::string_view key, std::string_view stored) {
           static constexpr std::string_view kKnown[] = {
               kMetaFormat,     kMetaAppliedIndex,    kMetaAppliedTerm,
               kMetaRevision,   kMetaCompactRevision, kMetaEventsBytes,
               kMetaMembership, kMetaLogDurableIndex, kMetaInstalledIndex};
           if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown)) {
             found_.problem("the meta database holds an unknown field " + text_value(key));
           }
           if (sealed_ && !unseal_record(StateDb::kMeta, key, stored)) {
             found_.damaged(StateDb::kMeta, key, RecordProblem::kChecksum);
           }
         });
  }

  // kv: sealed, decodable, and revisions the state's own meta allows.
  void kv_records(MDB_dbi dbi) {
    KeyValue kv;
    walk(dbi, StateDb::kKv, "kv", report_.keys, [&](std::string_view key, std::string_view stored) {
      RecordProblem p;
      if (sealed_) {
        p = decode_kv_record(key, stored, kv, false);
      } else {
        // Version 1: the body without a seal.
        p = decode_kv_record(key, seal_record(StateDb::kKv, key, stored), kv, false);
      }
      if (p != RecordProblem::kNone) {
        found_.damaged(StateDb::kKv, key, p);
        return;
      }
      const std::string name = record_name(StateDb::kKv, key);
      if (!meta_ok_) return;
      if (key.empty() || key.size() > kMaxKeyBytes) {
        found_.problem(name + ": key length " + std::to_string(key.size()) + " is out of range");
      }
      if (kv.version == 0 || kv.create_revision == 0 || kv.create_revision > kv.mod_revision ||
          kv.mod_revision > m_.revision || kv.mod_revision > m_.applied_index) {
        found_.problem(name + ": revisions create=" + std::to_string(kv.create_revision) + " mod=" +
                       std::to_string(kv.mod_revision) + " version=" + std::to_string(kv.version) +
                       " are impossible at revision " + std::to_string(m_.revision) +
                       ", applied index " + std::to_string(m_.applied_index));
      }
    });
  }

  // events: sealed, decodable, within [compact_revision, applied index]. Returns the bytes of
  // keys and values walked (the meta records their sum).
  std::uint64_t event_records(MDB_dbi dbi) {
    Event e;
    std::uint64_t event_bytes = 0;
    walk(dbi, StateDb::kEvents, "events", report_.events,
         [&](std::string_view key, std::string_view stored) {
           event_bytes += key.size() + stored.size();
           RecordProblem p;
           if (sealed_) {
             p = decode_event_record(key, stored, e);
           } else {
             p = decode_event_record(key, seal_record(StateDb::kEvents, key, stored), e);
           }
           if (p != RecordProblem::kNone) {
             found_.damaged(StateDb::kEvents, key, p);
             return;
           }
           if (meta_ok_ && (e.revision < m_.compact_revision || e.revision > m_.applied_index)) {
             found_.problem(
                 record_name(StateDb::kEvents, key) + ": revision outside the kept history " +
                 std::to_string(m_.compact_revision) + ".." + std::to_string(m_.applied_index));
           }
         });
    return event_bytes;
  }

  // leases: sealed, decodable, and every key they name exists and is named by one lease only.
  void lease_records(MDB_dbi leases, MDB_dbi kv) {
    Lease lease;
    std::map<std::string, std::uint64_t> owner;
    walk(leases, StateDb::kLeases, "leases", report_.leases,
         [&](std::string_view key, std::string_view stored) {
           if (const RecordProblem p = decode_lease_record(key, stored, lease);
               p != RecordProblem::kNone) {
             found_.damaged(StateDb::kLeases, key, p);
             return;
           }
           const std::string name = record_name(StateDb::kLeases, key);
           if (lease.id == 0 || lease.ttl == 0) found_.problem(name + ": id or ttl 0");
           for (const std::string& k : lease.keys) {
             MDB_val want = val_of(k), got{};
             if (k.empty() || k.size() > kMaxKeyBytes ||
                 mdb_get(txn_, kv, &want, &got) == MDB_NOTFOUND) {
               found_.problem(name + ": its key " + text_value(k) + " does not exist");
             }
             if (auto [it, fresh] = owner.emplace(k, lease.id); !fresh) {
               found_.problem(name + ": its key " + text_value(k) + " is also on lease " +
                              id_hex(it->second));
             }
           }
         });
  }

 private:
  // Walks one database from its first record to its last, handing each to `check`. A walk
  // reaches every record whatever the branch pages say; LMDB's search for each key must lead to
  // the same record too, or a damaged key or branch page hides it from every lookup.
  void walk(MDB_dbi dbi, StateDb db, const char* name, std::uint64_t& count,
            const std::function<void(std::string_view, std::string_view)>& check) {
    Cursor c;
    if (int rc = c.open(txn_, dbi); rc != 0) {
      found_.problem(
          lmdb_status(rc, state_dir_, std::string("open a cursor on ") + name).message());
      return;
    }
    MDB_val k, v;
    int rc = mdb_cursor_get(c.get(), &k, &v, MDB_FIRST);
    for (; rc == 0; rc = mdb_cursor_get(c.get(), &k, &v, MDB_NEXT)) {
      ++count;
      report_.bytes += k.mv_size + v.mv_size;
      MDB_val want = k, got{};
      if (const int grc = mdb_get(txn_, dbi, &want, &got);
          grc == MDB_NOTFOUND || (grc == 0 && got.mv_data != v.mv_data)) {
        found_.damaged(db, view_of(k), RecordProblem::kMisplaced);
      }
      check(view_of(k), view_of(v));
      tick();
    }
    if (rc != MDB_NOTFOUND) {
      found_.problem(lmdb_status(rc, state_dir_,
                                 std::string("walk the ") + name + " database after " +
                                     std::to_string(count) + " records")
                         .message());
    }
  }

  void tick() {
    ++walked_;
    if (options_.progress && (walked_ % 4096 == 0 || walked_ == total_)) {
      options_.progress(walked_, total_);
    }
  }

  MDB_txn* txn_;
  const std::string& state_dir_;
  const StateCheckOptions& options_;
  StateCheckReport& report_;
  Findings& found_;
  const StateMeta& m_;
  const bool meta_ok_;
  const bool sealed_;
  const std::uint64_t total_;
  std::uint64_t walked_ = 0;
};

}  // namespace

Result<StateFacts> read_state_facts(const std::string& state_dir) {
  Result<std::string> gen = live_generation(state_dir);
  if (!gen.ok()) return gen.status();
  if (gen->empty()) return StateFacts{.state_dir = state_dir};
  ReadOnlyEnv env;
  KVC_RETURN_IF_ERROR(env.open(state_dir, *gen));
  Txn txn;
  if (int rc = txn.begin(env.get(), MDB_RDONLY); rc != 0) {
    return lmdb_status(rc, state_dir, "begin read");
  }
  Dbis d;
  KVC_RETURN_IF_ERROR(open_dbis(txn.get(), state_dir, d));
  StateMeta m;
  KVC_RETURN_IF_ERROR(read_state_meta(txn.get(), d.meta, m, state_dir));
  if (m.format == 1) {
    // What open() will find when it upgrades this state (state_lmdb.h, looks_installed).
    MDB_stat st{};
    if (int rc = mdb_stat(txn.get(), d.events, &st); rc != 0) {
      return lmdb_status(rc, state_dir, "stat events");
    }
    if (looks_installed(m, st.ms_entries)) m.installed_index = m.applied_index;
  }
  return m.facts(state_dir);
}

Result<StateCheckReport> check_state(const std::string& state_dir,
                                     const StateCheckOptions& options) {
  StateCheckReport report;
  Result<std::string> gen = live_generation(state_dir);
  if (!gen.ok()) return gen.status();
  if (gen->empty()) {
    return Status::not_found("state " + state_dir + ": no state here (no CURRENT file)");
  }
  report.generation_dir = *gen;
  ReadOnlyEnv env;
  KVC_RETURN_IF_ERROR(env.open(state_dir, *gen));
  Txn txn;
  if (int rc = txn.begin(env.get(), MDB_RDONLY); rc != 0) {
    return lmdb_status(rc, state_dir, "begin read");
  }
  Findings found(report, options.max_listed);
  KVC_RETURN_IF_ERROR(check_main_database(txn.get(), state_dir, found));
  Dbis d;
  KVC_RETURN_IF_ERROR(open_dbis(txn.get(), state_dir, d));
  StateMeta m;
  bool meta_ok = true;
  if (Status s = read_state_meta(txn.get(), d.meta, m, state_dir); !s.ok()) {
    if (s.code() != Code::kCorruption) return s;
    // The walk below names each bad field; the records are still checked for damage, but not
    // against a meta that cannot be trusted.
    found.problem(s.message());
    meta_ok = false;
  }
  report.facts = m.facts(state_dir);

  MDB_stat kv_st{}, ev_st{}, meta_st{};
  for (const auto& [dbi, st] :
       {std::pair{d.kv, &kv_st}, std::pair{d.events, &ev_st}, std::pair{d.meta, &meta_st}}) {
    if (int rc = mdb_stat(txn.get(), dbi, st); rc != 0) return lmdb_status(rc, state_dir, "stat");
  }
  MDB_stat lease_st{};
  if (d.has_leases) {
    if (int rc = mdb_stat(txn.get(), d.leases, &lease_st); rc != 0) {
      return lmdb_status(rc, state_dir, "stat");
    }
  } else if (meta_ok && m.format >= 3) {
    found.problem("the LMDB database 'leases' is missing (format version " +
                  std::to_string(m.format) + " has one)");
  }
  const std::uint64_t total =
      kv_st.ms_entries + ev_st.ms_entries + meta_st.ms_entries + lease_st.ms_entries;
  StateWalk walk(txn.get(), state_dir, options, report, found, m, meta_ok, total);
  walk.meta_records(d.meta);
  walk.kv_records(d.kv);
  const std::uint64_t event_bytes = walk.event_records(d.events);
  if (d.has_leases) walk.lease_records(d.leases, d.kv);

  // LMDB's own statistics must agree with what its trees hold.
  const struct {
    const char* name;
    std::uint64_t walked;
    std::uint64_t stat;
  } counts[] = {{"kv", report.keys, kv_st.ms_entries},
                {"events", report.events, ev_st.ms_entries},
                {"meta", report.meta_records, meta_st.ms_entries},
                {"leases", report.leases, lease_st.ms_entries}};
  for (const auto& c : counts) {
    if (c.walked != c.stat) {
      found.problem(std::string("the ") + c.name + " database holds " + std::to_string(c.walked) +
                    " records but LMDB counts " + std::to_string(c.stat));
    }
  }
  if (meta_ok && m.format >= 2 && report.events == ev_st.ms_entries &&
      event_bytes != m.events_bytes) {
    found.problem("the events database holds " + std::to_string(event_bytes) +
                  " bytes but the meta record says " + std::to_string(m.events_bytes));
  }
  if (options.progress) options.progress(total, total);
  return report;
}

}  // namespace kvc::storage
