#include "wal_torture.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <vector>

#include "kvc/storage/fs.h"
#include "kvc/storage/sim_fs.h"
#include "kvc/storage/snapshot.h"
#include "kvc/storage/wal.h"

namespace kvc::storage::testing {
namespace {

// The log as the Wal's recovery should return it: the last hard state, the newest marker and
// the entries after it. An independent model of kvc-wal(5)'s rules, not the reader's code.
struct Model {
  std::optional<raft::HardState> hs;
  std::optional<raft::SnapshotMeta> snap;
  std::vector<raft::Entry> entries;

  std::uint64_t last() const {
    if (!entries.empty()) return entries.back().index;
    return snap ? snap->index : 0;
  }
  std::uint64_t commit() const { return hs ? hs->commit : 0; }
  std::uint64_t snap_index() const { return snap ? snap->index : 0; }
  // The term of `index` when the model knows it.
  std::optional<std::uint64_t> term_at(std::uint64_t index) const {
    if (snap && snap->index == index) return snap->term;
    for (const raft::Entry& e : entries) {
      if (e.index == index) return e.term;
    }
    return std::nullopt;
  }
  void apply(const raft::Entry& e) {
    while (!entries.empty() && entries.back().index >= e.index) entries.pop_back();
    entries.push_back(e);
  }
  void apply(const raft::SnapshotMeta& m) {
    if (m.index >= last()) {
      entries.clear();
    } else {
      entries.erase(std::remove_if(entries.begin(), entries.end(),
                                   [&](const raft::Entry& e) { return e.index <= m.index; }),
                    entries.end());
    }
    snap = m;
  }
  bool operator==(const Model&) const = default;

  static Model of(const RecoveredLog& r) { return Model{r.hard_state, r.snapshot, r.entries}; }
  std::string describe() const {
    std::string s = "hs=";
    s += hs ? "(" + std::to_string(hs->term) + "," + std::to_string(hs->vote) + "," +
                  std::to_string(hs->commit) + ")"
            : "none";
    s +=
        " snap=" + (snap ? std::to_string(snap->index) + "/" + std::to_string(snap->term) : "none");
    s += " entries=" + std::to_string(entries.size());
    if (!entries.empty()) {
      s += "[" + std::to_string(entries.front().index) + ".." +
           std::to_string(entries.back().index) + " last_term " +
           std::to_string(entries.back().term) + "]";
    }
    return s;
  }
};

// The Wal logs every torn tail and failure it meets; thousands of seeds would drown the test
// output, and the checks below say what went wrong.
class QuietLogs {
 public:
  QuietLogs() : level_(spdlog::get_level()) { spdlog::set_level(spdlog::level::off); }
  ~QuietLogs() { spdlog::set_level(level_); }
  QuietLogs(const QuietLogs&) = delete;
  QuietLogs& operator=(const QuietLogs&) = delete;

 private:
  spdlog::level::level_enum level_;
};

constexpr char kRoot[] = "/kvc-simfs";
constexpr char kWalDir[] = "/kvc-simfs/wal";

class WalTorture {
 public:
  WalTorture(std::uint64_t seed, const TortureOptions& options, TortureStats* stats)
      : seed_(seed),
        options_(options),
        stats_(stats),
        rng_(seed),
        fs_({kRoot}, seed ^ 0x5eed5eed5eed5eedull),
        guard_(&fs_) {}

  std::string run() {
    if (Status s = make_dirs(kWalDir); !s.ok()) return s.to_string();
    if (Status s = fsync_dir(kRoot); !s.ok()) return s.to_string();
    options_wal_.segment_bytes = rand(2) == 0 ? kMinSegmentBytes : 4 * kMinSegmentBytes;
    if (!reopen(Check::kExact)) return error_;
    for (step_ = 0; step_ < options_.steps && error_.empty(); ++step_) one_step();
    if (error_.empty() && options_.bit_flips && rand(3) == 0) flip_phase();
    if (stats_ != nullptr) stats_->lost_changes += fs_.stats().lost_changes;
    return error_;
  }

 private:
  enum class Check : std::uint8_t { kExact, kCandidates };

  std::uint64_t rand(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  bool fail(const std::string& what) {
    if (error_.empty()) {
      error_ = "seed " + std::to_string(seed_) + " step " + std::to_string(step_) + ": " + what +
               " (" + fs_.describe() + ")";
    }
    return false;
  }

  // Opens the Wal and checks what it recovered: equal to the model (kExact) or to one of the
  // states the log passed through since the last successful sync (kCandidates).
  bool reopen(Check check) {
    wal_.reset();
    Result<OpenedWal> r = Wal::open(kWalDir, options_wal_);
    if (!r.ok()) return fail("reopen failed: " + r.status().to_string());
    const Model got = Model::of(r->log);
    if (r->log.report.torn_tail && stats_ != nullptr) ++stats_->torn_tails;
    if (check == Check::kExact) {
      if (!(got == model_)) {
        return fail("recovered " + got.describe() +
                    " but the log (all of it in the page cache) "
                    "is " +
                    model_.describe());
      }
    } else if (!was_a_state_since_sync(got)) {
      return fail("recovered " + got.describe() +
                  ", which the log never was since its last successful sync (then: " +
                  synced_.describe() + "; newest: " + model_.describe() + ")");
    }
    if (!entries_were_appended(got)) return false;
    wal_.emplace(std::move(r->wal));
    model_ = got;
    mark_synced();
    failed_ = false;
    return true;
  }

  void mark_synced() {
    synced_ = model_;
    since_sync_.clear();
    unsynced_ = false;
  }

  // Whether `got` is the log as of the last sync or after one of the records appended since.
  bool was_a_state_since_sync(const Model& got) const {
    Model state = synced_;
    if (state == got) return true;
    for (const Record& rec : since_sync_) {
      switch (rec.type) {
        case RecordType::kEntry:
          state.apply(rec.entry);
          break;
        case RecordType::kHardState:
          state.hs = rec.hard_state;
          break;
        case RecordType::kSnapshot:
          state.apply(rec.snapshot);
          break;
      }
      if (state == got) return true;
    }
    return false;
  }

  // Every entry, hard state and marker recovered is one that was appended (never bytes that
  // were not written), and the entries are contiguous.
  bool entries_were_appended(const Model& got) {
    for (std::size_t i = 0; i < got.entries.size(); ++i) {
      const raft::Entry& e = got.entries[i];
      auto it = appended_.find(e.data);
      if (it == appended_.end() || it->second != std::make_pair(e.index, e.term)) {
        return fail("recovered entry " + std::to_string(e.index) + " term " +
                    std::to_string(e.term) + " that was never appended (" +
                    std::to_string(e.data.size()) + " bytes of data)");
      }
      if (i > 0 && got.entries[i - 1].index + 1 != e.index) {
        return fail("recovered entries with a hole after " +
                    std::to_string(got.entries[i - 1].index));
      }
    }
    if (got.hs &&
        std::find(hard_states_.begin(), hard_states_.end(), *got.hs) == hard_states_.end()) {
      return fail("recovered a hard state that was never appended");
    }
    if (got.snap && std::find(markers_.begin(), markers_.end(), *got.snap) == markers_.end()) {
      return fail("recovered a snapshot marker that was never appended");
    }
    return true;
  }

  std::string filler() {
    const std::uint64_t kind = rand(20);
    const std::size_t n = static_cast<std::size_t>(kind < 14   ? rand(200)
                                                   : kind < 19 ? 200 + rand(1300)
                                                               : 3000 + rand(3000));
    // Letters from a cheap generator seeded by the torture's (the bytes only need to differ).
    std::string s(n, '\0');
    std::uint64_t x = rng_();
    for (char& c : s) {
      x = x * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>('a' + (x >> 59) % 26);
    }
    return s;
  }

  void one_step() {
    const std::uint64_t r = rand(100);
    if (r < 45) {
      do_append();
    } else if (r < 67) {
      do_sync();
    } else if (r < 75) {
      do_snapshot();
    } else if (r < 81) {
      do_release();
    } else if (r < 91) {
      do_crash();
    } else {
      do_restart();
    }
  }

  // A call failed with something other than a refused argument: the Wal must have stopped.
  void after_error(const Status& s, const char* what) {
    if (s.code() == Code::kInvalidArgument || s.code() == Code::kFailedPrecondition) return;
    failed_ = true;
    if (wal_->failure().ok()) {
      fail(std::string(what) + " failed (" + s.to_string() + ") but the wal did not stop");
      return;
    }
    // Sticky: every later call returns the error, and nothing more is written.
    const raft::HardState hs{.term = term_, .vote = 1, .commit = model_.commit()};
    const raft::Entry e{.index = model_.last() + 1, .term = term_, .data = "after-failure"};
    if (wal_->append(hs, std::span<const raft::Entry>(&e, 1)).ok() || wal_->sync().ok() ||
        wal_->save_snapshot(raft::SnapshotMeta{.index = model_.last() + 5, .term = term_}).ok() ||
        wal_->release_to(0).ok()) {
      fail(std::string("the wal accepted a call after ") + what + " failed: " + s.to_string());
      return;
    }
    // The member stops, and here the machine crashes before it restarts. A restart without a
    // crash is a known gap (docs/simulator.md): Wal::open would read back the writes the failed
    // fsync left only in the page cache and report them durable.
    do_crash();
  }

  void do_append() {
    const std::uint64_t last = model_.last();
    const std::uint64_t lowest = std::max(model_.commit(), model_.snap_index()) + 1;
    std::uint64_t start = last + 1;
    if (last >= lowest && rand(5) == 0) {
      start = lowest + rand(last - lowest + 1);
      ++term_;  // a new leader rewrites the uncommitted suffix
    } else if (rand(10) == 0) {
      ++term_;
    }
    std::vector<raft::Entry> entries(1 + rand(4));
    for (std::size_t i = 0; i < entries.size(); ++i) {
      raft::Entry& e = entries[i];
      e.index = start + i;
      e.term = term_;
      e.data = "i" + std::to_string(e.index) + "t" + std::to_string(term_) + "c" +
               std::to_string(++counter_) + "|" + filler();
    }
    std::optional<raft::HardState> hs;
    const std::uint64_t new_last = entries.back().index;
    if (rand(10) < 6) {
      const std::uint64_t commit = model_.commit();
      hs = raft::HardState{.term = term_,
                           .vote = 1 + rand(3),
                           .commit = commit + rand(new_last - std::min(commit, new_last) + 1)};
    }
    const Status s = wal_->append(hs, entries);
    if (!s.ok()) return after_error(s, "append");
    if (stats_ != nullptr) ++stats_->appends;
    for (const raft::Entry& e : entries) {
      appended_[e.data] = {e.index, e.term};
      model_.apply(e);
      since_sync_.push_back(Record::of(e));
    }
    if (hs) {
      hard_states_.push_back(*hs);
      model_.hs = hs;
      since_sync_.push_back(Record::of(*hs));
    }
    unsynced_ = true;
  }

  void do_sync() {
    const bool inject = options_.sync_failures && unsynced_ && rand(25) == 0;
    if (inject) fs_.fail_next_syncs(kWalDir);
    const Status s = wal_->sync();
    if (inject) {
      if (s.ok()) {
        fail("sync reported success although its fdatasync failed");
        return;
      }
      if (stats_ != nullptr) ++stats_->failed_syncs;
    }
    if (!s.ok()) return after_error(s, "sync");
    mark_synced();
  }

  void do_snapshot() {
    raft::SnapshotMeta m;
    m.conf.voters = {1, 2, 3};
    if (rand(4) != 0) {
      // The state machine applied up to some committed index.
      const std::uint64_t lo = model_.snap_index();
      const std::uint64_t hi = model_.commit();
      if (hi < lo || hi == 0) return;
      m.index = lo + rand(hi - lo + 1);
      const std::optional<std::uint64_t> t = model_.term_at(m.index);
      if (!t) return;
      m.term = *t;
    } else {
      // A snapshot installed from the leader, past the end of the log.
      ++term_;
      m.index = model_.last() + 1 + rand(5);
      m.term = term_;
    }
    const Status s = wal_->save_snapshot(m);
    if (!s.ok()) return after_error(s, "save_snapshot");
    markers_.push_back(m);
    model_.apply(m);
    since_sync_.push_back(Record::of(m));
    unsynced_ = true;
  }

  void do_release() {
    const std::uint64_t durable_snap = synced_.snap_index();
    const Status s = wal_->release_to(1 + rand(durable_snap + 1));
    if (!s.ok()) return after_error(s, "release_to");
  }

  void do_crash() {
    fs_.crash(kRoot);
    if (stats_ != nullptr) ++stats_->crashes;
    reopen(Check::kCandidates);
  }

  void do_restart() {
    if (stats_ != nullptr) ++stats_->restarts;
    reopen(Check::kExact);
  }

  // Ends the seed with one bit flipped in a durable segment byte, or in what one read
  // returns: recovery must refuse the log (kCorruption) or cut it as a torn tail where the flip
  // is (a damaged last record of the last segment is indistinguishable from a torn write,
  // kvc-wal(5)), and never return the changed bytes.
  void flip_phase() {
    if (!failed_ && !wal_->sync().ok()) return;
    fs_.crash(kRoot);
    if (!reopen(Check::kCandidates)) return;
    wal_.reset();
    if (stats_ != nullptr) ++stats_->flips;
    std::string path;
    std::optional<std::uint64_t> offset;
    if (rand(10) < 7) {
      std::vector<std::string> segments;
      for (const std::string& f : fs_.files(kWalDir)) {
        if (f.size() > 4 && f.compare(f.size() - 4, 4, ".wal") == 0) segments.push_back(f);
      }
      if (segments.empty()) return;
      path = segments[rand(segments.size())];
      const std::string bytes = *fs_.durable_contents(path);
      std::uint64_t nonzero = bytes.size();
      while (nonzero > 0 && bytes[nonzero - 1] == '\0') --nonzero;
      offset = fs_.flip_random_durable_bit(path, 0, rand(4) != 0 ? nonzero : bytes.size());
      if (!offset) return;
    } else {
      fs_.flip_next_reads(kWalDir);
    }
    Result<OpenedWal> r = Wal::open(kWalDir, options_wal_);
    if (!r.ok()) {
      if (r.status().code() != Code::kCorruption) {
        fail("after a bit flip, recovery failed with " + r.status().to_string() +
             " instead of reporting corruption");
      } else if (stats_ != nullptr) {
        ++stats_->flips_refused;
      }
      return;
    }
    const Model got = Model::of(r->log);
    if (!entries_were_appended(got)) return;
    if (offset) {
      const std::optional<WalDamage>& torn = r->log.report.torn_tail;
      if (!torn || torn->path != path || *offset < torn->offset || *offset >= torn->end_offset) {
        fail("a bit flipped at offset " + std::to_string(*offset) + " of " + path +
             " went unreported (" + r->log.report.describe() + ")");
      }
    }
  }

  std::uint64_t seed_;
  TortureOptions options_;
  TortureStats* stats_;
  std::mt19937_64 rng_;
  SimFileSystem fs_;
  ScopedFileSystem guard_;
  WalOptions options_wal_;
  std::optional<Wal> wal_;
  Model model_;                     // as appended
  Model synced_;                    // as of the last successful sync (or recovery)
  std::vector<Record> since_sync_;  // the records appended since, in order
  bool unsynced_ = false;
  bool failed_ = false;
  std::uint64_t term_ = 1;
  std::uint64_t counter_ = 0;
  std::map<std::string, std::pair<std::uint64_t, std::uint64_t>> appended_;  // data: index, term
  std::vector<raft::HardState> hard_states_;
  std::vector<raft::SnapshotMeta> markers_;
  int step_ = 0;
  std::string error_;
};

// ---- snapshots ----

constexpr char kSnapRoot[] = "/kvc-simsnap";
constexpr char kSnapDir[] = "/kvc-simsnap/snap";
constexpr char kBuildDir[] = "/kvc-simsnap/build";

class SnapshotTorture {
 public:
  explicit SnapshotTorture(std::uint64_t seed)
      : seed_(seed), rng_(seed), fs_({kSnapRoot}, seed ^ 0xa5a5a5a5a5a5a5a5ull), guard_(&fs_) {}

  std::string run(int steps) {
    for (const char* d : {kSnapDir, kBuildDir}) {
      if (Status s = make_dirs(d); !s.ok()) return s.to_string();
    }
    if (Status s = fsync_dir(kSnapRoot); !s.ok()) return s.to_string();
    for (step_ = 0; step_ < steps && error_.empty(); ++step_) {
      const std::uint64_t r = rand(100);
      if (r < 50) {
        write_one();
      } else if (r < 62) {
        prune();
      } else if (r < 75) {
        adopt_one();
      } else {
        crash_and_check();
      }
    }
    if (error_.empty()) crash_and_check();
    return error_;
  }

 private:
  std::uint64_t rand(std::uint64_t n) { return n == 0 ? 0 : rng_() % n; }

  void fail(const std::string& what) {
    if (error_.empty()) {
      error_ = "seed " + std::to_string(seed_) + " step " + std::to_string(step_) + ": " + what +
               " (" + fs_.describe() + ")";
    }
  }

  SnapshotHeader header(std::uint64_t index) {
    SnapshotHeader h;
    h.index = index;
    h.term = 3;
    h.revision = index;
    h.created_unix_ms = 1700000000000;
    h.membership.members = {{.id = 1, .name = "a", .peer_addr = "h:1"},
                            {.id = 2, .name = "b", .peer_addr = "h:2"}};
    return h;
  }

  std::vector<KeyValue> records() {
    std::vector<KeyValue> out(rand(40));
    for (std::size_t i = 0; i < out.size(); ++i) {
      char key[24];
      std::snprintf(key, sizeof key, "key%05zu", i * 3 + static_cast<std::size_t>(rand(3)));
      out[i] = KeyValue{.key = key,
                        .value = std::string(rand(300), static_cast<char>('a' + rand(26))),
                        .create_revision = 1,
                        .mod_revision = 1,
                        .version = 1};
    }
    return out;
  }

  // Writes a snapshot at `path` with SnapshotWriter; `finish` false abandons it after some
  // records. Returns whether finish succeeded.
  bool write(const std::string& path, std::uint64_t index, const std::vector<KeyValue>& recs,
             bool finish, bool crash_while_open) {
    auto w = SnapshotWriter::create(path, header(index), 64 + rand(2048));
    if (!w.ok()) {
      fail("create " + path + ": " + w.status().to_string());
      return false;
    }
    const std::size_t n = finish ? recs.size() : rand(recs.size() + 1);
    for (std::size_t i = 0; i < n; ++i) {
      if (Status s = (*w)->add(recs[i]); !s.ok()) {
        fail("add: " + s.to_string());
        return false;
      }
    }
    if (!finish) {
      if (crash_while_open) crash_and_check();  // the writer dies with the process
      return false;
    }
    const bool inject = rand(8) == 0;
    if (inject) fs_.fail_next_syncs(kSnapRoot);
    Result<SnapshotInfo> info = (*w)->finish();
    if (inject && info.ok()) fail("finish succeeded although its fsync failed");
    return info.ok();
  }

  void write_one() {
    const std::uint64_t index = ++index_;
    const std::string name = snapshot_file_name(index, 3);
    const std::vector<KeyValue> recs = records();
    written_[name] = recs;
    const bool finish = rand(4) != 0;
    if (write(std::string(kSnapDir) + "/" + name, index, recs, finish, rand(2) == 0)) {
      required_.insert(name);
    }
  }

  void adopt_one() {
    const std::uint64_t index = ++index_;
    const std::string name = snapshot_file_name(index, 3);
    const std::vector<KeyValue> recs = records();
    written_[name] = recs;
    const std::string built = std::string(kBuildDir) + "/" + name;
    if (!write(built, index, recs, true, false)) return;
    const std::optional<std::string> bytes = fs_.contents(built);
    if (!bytes) return fail("the built snapshot " + built + " is missing");
    // As received in chunks: written, not synced (adopt_snapshot syncs it).
    const std::string received =
        std::string(kSnapDir) + "/received-" + std::to_string(index) + ".tmp";
    {
      Result<UniqueFd> fd = open_file(received, O_WRONLY | O_CREAT | O_TRUNC, 0644);
      if (!fd.ok()) return fail(fd.status().to_string());
      if (Status s = write_all(fd->get(), *bytes, received); !s.ok()) return fail(s.to_string());
    }
    if (Status s = remove_file(built); !s.ok()) return fail(s.to_string());
    Result<SnapshotInfo> info = adopt_snapshot(received, kSnapDir);
    if (!info.ok()) return fail("adopt " + received + ": " + info.status().to_string());
    required_.insert(name);
  }

  void prune() {
    const std::size_t keep = 1 + rand(3);
    Result<std::vector<SnapshotFile>> before = list_snapshots(kSnapDir);
    if (!before.ok()) return fail(before.status().to_string());
    if (Status s = prune_snapshots(kSnapDir, keep); !s.ok()) return fail(s.to_string());
    for (std::size_t i = keep; i < before->size(); ++i) {
      const std::string name = (*before)[i].path.substr(std::string(kSnapDir).size() + 1);
      required_.erase(name);
      pruned_.insert(name);
    }
  }

  void crash_and_check() {
    fs_.crash(kSnapRoot);
    if (Status s = remove_temp_snapshots(kSnapDir); !s.ok()) return fail(s.to_string());
    Result<std::vector<SnapshotFile>> files = list_snapshots(kSnapDir);
    if (!files.ok()) return fail(files.status().to_string());
    std::set<std::string> present;
    for (const SnapshotFile& f : *files) {
      const std::string name = f.path.substr(std::string(kSnapDir).size() + 1);
      present.insert(name);
      if (pruned_.count(name) != 0) fail(name + " was pruned (durably) but is back");
      auto want = written_.find(name);
      if (want == written_.end()) return fail(name + " was never written");
      Result<SnapshotReader> r = SnapshotReader::open(f.path);
      if (!r.ok()) return fail(name + " does not open after a crash: " + r.status().to_string());
      std::vector<KeyValue> got;
      Status s = r->for_each([&](const KeyValue& kv) {
        got.push_back(kv);
        return Status();
      });
      if (!s.ok()) return fail(name + " is not whole after a crash: " + s.to_string());
      if (got != want->second) return fail(name + " holds other records than were written");
    }
    for (const std::string& name : required_) {
      if (present.count(name) == 0) fail(name + " was finished (durably) but is gone");
    }
  }

  std::uint64_t seed_;
  std::mt19937_64 rng_;
  SimFileSystem fs_;
  ScopedFileSystem guard_;
  std::uint64_t index_ = 0;
  std::map<std::string, std::vector<KeyValue>> written_;
  std::set<std::string> required_;  // finished or adopted successfully, not pruned
  std::set<std::string> pruned_;    // removed by a successful prune (which syncs the directory)
  int step_ = 0;
  std::string error_;
};

}  // namespace

std::string TortureStats::describe() const {
  return "seeds=" + std::to_string(seeds) + " appends=" + std::to_string(appends) +
         " crashes=" + std::to_string(crashes) + " restarts=" + std::to_string(restarts) +
         " failed_syncs=" + std::to_string(failed_syncs) +
         " torn_tails=" + std::to_string(torn_tails) + " flips=" + std::to_string(flips) +
         " flips_refused=" + std::to_string(flips_refused) +
         " lost_changes=" + std::to_string(lost_changes);
}

std::string run_wal_torture(std::uint64_t seed, const TortureOptions& options,
                            TortureStats* stats) {
  if (stats != nullptr) ++stats->seeds;
  QuietLogs quiet;
  return WalTorture(seed, options, stats).run();
}

std::string run_snapshot_torture(std::uint64_t seed, int steps) {
  QuietLogs quiet;
  return SnapshotTorture(seed).run(steps);
}

std::uint64_t start_seed(std::uint64_t fallback) {
  const char* v = std::getenv("KVC_SIM_START_SEED");
  return v == nullptr || *v == '\0' ? fallback : std::strtoull(v, nullptr, 10);
}

}  // namespace kvc::storage::testing
