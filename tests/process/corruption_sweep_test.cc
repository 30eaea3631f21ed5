// The corruption sweep of issue 14: for each class of bytes in a member's data directory (WAL
// segment headers and records, snapshot files, the identity, CURRENT and repair files, LMDB's
// meta pages, values, leaf keys, branch keys and database names), one bit is flipped in a
// follower stopped cleanly (SIGTERM) in a three-member cluster holding acknowledged keys, and the
// follower is restarted (with a fast --scrub-rate). It must then either
//   (a) refuse to start, exit status 1, with a message naming the damaged file and what to do, or
//   (b) start and never serve damaged data (every acknowledged key read through it, serializable
//       and linearizable, and a listing of every key, is its acknowledged value or an error:
//       never a wrong value, a missing key or an extra key), and repair itself.
// Then it is brought back as an operator would (the remedy its message names: kvc-wal repair, or
// kvc-ctl member remove and add with an empty data directory), and every member must serve
// every acknowledged key and agree in kvc-ctl check hash.
//
// Deterministic and bounded: the offsets come from a fixed seed (KVC_SWEEP_SEED, default 14),
// KVC_SWEEP_OFFSETS of them per class (default 1: the CI subset; docs/integrity.md runs the full
// sweep), each logged with what it hit so a failure reproduces; every wait has a bound. Each case
// has a cluster of its own. The counts per class are printed at the end of the run.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "data_dir_faults.h"
#include "kvc/common/lines.h"
#include "kvc/raft/node.h"
#include "process_cluster.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

constexpr int kKeys = 120;        // several kv leaf pages, so the kv tree has a branch page
constexpr int kLaggingKeys = 60;  // written while the follower is down (snapshot classes)
constexpr std::uint64_t kReadTimeoutMs = 3000;
constexpr int kMaxRemedies = 3;
constexpr std::size_t kDefectsShown = 8;
const std::vector<std::string> kNoScrub = {"--scrub-rate", "0"};
const std::vector<std::string> kFastScrub = {"--scrub-rate", "1000000"};

std::string key_for(int i) {
  char buf[16];
  std::snprintf(buf, sizeof buf, "/sweep/k%03d", i);
  return buf;
}
std::string value_for(int i) {
  return "sweep-value-" + std::to_string(i) + "-" + std::string(40, 'v');
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  if (v == nullptr || *v == '\0') return fallback;
  return std::strtoull(v, nullptr, 10);
}
std::uint64_t sweep_seed() { return env_u64("KVC_SWEEP_SEED", 14); }
int sweep_offsets() {
  return static_cast<int>(std::clamp<std::uint64_t>(env_u64("KVC_SWEEP_OFFSETS", 1), 1, 16));
}

// ---- the classes ----

enum class Setup {
  kPlain,       // keys written, the follower has applied them
  kFlushed,     // ... and flushed them (not only at its clean stop): its WAL has a marker
  kSnapshot,    // ... and the follower caught up from a snapshot, so DATA_DIR/snap holds one
  kRepairFile,  // ... and the follower stopped during a repair, so DATA_DIR/repair exists
};

struct SweepClass {
  const char* name;   // the gtest parameter name
  const char* label;  // in logs and the summary
  Setup setup;
  std::function<std::vector<ByteRange>(const std::string& data_dir)> ranges;
};

const std::vector<SweepClass>& classes() {
  static const std::vector<SweepClass> all = {
      {"WalSegmentHeader", "wal segment header", Setup::kPlain, wal_segment_headers},
      {"WalEntry", "wal entry record", Setup::kPlain,
       [](const std::string& d) { return wal_records(d, WalRecordType::kEntry); }},
      {"WalHardState", "wal hard state record", Setup::kPlain,
       [](const std::string& d) { return wal_records(d, WalRecordType::kHardState); }},
      {"WalSnapshotMarker", "wal snapshot marker record", Setup::kFlushed,
       [](const std::string& d) { return wal_records(d, WalRecordType::kSnapshotMarker); }},
      {"WalLastRecord", "wal last record (tail)", Setup::kPlain, wal_last_record},
      {"SnapPrologue", "snapshot prologue", Setup::kSnapshot,
       [](const std::string& d) { return snapshot_parts(d, SnapPart::kPrologue); }},
      {"SnapBlock", "snapshot meta/records block", Setup::kSnapshot,
       [](const std::string& d) { return snapshot_parts(d, SnapPart::kBlock); }},
      {"SnapTrailer", "snapshot trailer", Setup::kSnapshot,
       [](const std::string& d) { return snapshot_parts(d, SnapPart::kTrailer); }},
      {"IdentityFile", "identity file", Setup::kPlain,
       [](const std::string& d) { return whole_file(d, "identity"); }},
      {"StateCurrentFile", "state/CURRENT file", Setup::kPlain,
       [](const std::string& d) { return whole_file(d, "state/CURRENT"); }},
      {"LmdbMetaPage", "lmdb meta pages", Setup::kPlain,
       [](const std::string& d) { return lmdb_ranges(d, LmdbPart::kMeta); }},
      {"LmdbValue", "lmdb value bytes", Setup::kPlain,
       [](const std::string& d) { return lmdb_ranges(d, LmdbPart::kValue, "sweep-value-"); }},
      {"LmdbLeafKey", "lmdb leaf key", Setup::kPlain,
       [](const std::string& d) { return lmdb_ranges(d, LmdbPart::kLeafKey); }},
      {"LmdbBranchKey", "lmdb branch key", Setup::kPlain,
       [](const std::string& d) { return lmdb_ranges(d, LmdbPart::kBranchKey); }},
      {"LmdbDatabaseName", "lmdb database name", Setup::kPlain,
       [](const std::string& d) { return lmdb_ranges(d, LmdbPart::kCatalogKey); }},
      {"RepairFile", "repair file", Setup::kRepairFile,
       [](const std::string& d) { return whole_file(d, "repair"); }},
  };
  return all;
}

// ---- what happened, for the summary ----

struct CaseRecord {
  std::string label;
  int case_no = 0;
  std::string target;
  std::string outcome;  // refused / found damage, repaired / torn tail truncated / no effect seen
  std::vector<std::string> remedies;
  std::vector<std::string> defects;  // the first few, in full
  int defect_count = 0;
  double seconds = 0;
};

std::vector<CaseRecord>& records() {
  static std::vector<CaseRecord> r;
  return r;
}

class SweepSummary : public ::testing::Environment {
 public:
  void TearDown() override {
    if (records().empty()) return;
    struct Counts {
      int tried = 0, refused = 0, repaired = 0, torn = 0, unaffected = 0, defects = 0;
      double seconds = 0;
    };
    std::map<std::string, Counts> by_class;
    double total = 0;
    for (const CaseRecord& r : records()) {
      Counts& c = by_class[r.label];
      ++c.tried;
      c.refused += r.outcome == "refused" ? 1 : 0;
      c.repaired += r.outcome == "found damage, repaired" ? 1 : 0;
      c.torn += r.outcome == "torn tail truncated" ? 1 : 0;
      c.unaffected += r.outcome == "no effect seen" ? 1 : 0;
      c.defects += r.defect_count;
      c.seconds += r.seconds;
      total += r.seconds;
    }
    std::printf("\ncorruption sweep: seed=%llu offsets_per_class=%d cases=%zu time=%.0fs\n",
                static_cast<unsigned long long>(sweep_seed()), sweep_offsets(), records().size(),
                total);
    std::printf("%-28s %5s %8s %9s %9s %9s %7s %6s\n", "CLASS", "TRIED", "(a)REFUSED",
                "(b)REPAIRED", "(b)TORN", "(b)NOEFFECT", "DEFECTS", "SECS");
    Counts sum;
    for (const auto& [label, c] : by_class) {
      std::printf("%-28s %5d %10d %11d %9d %11d %7d %6.0f\n", label.c_str(), c.tried, c.refused,
                  c.repaired, c.torn, c.unaffected, c.defects, c.seconds);
      sum.tried += c.tried;
      sum.refused += c.refused;
      sum.repaired += c.repaired;
      sum.torn += c.torn;
      sum.unaffected += c.unaffected;
      sum.defects += c.defects;
    }
    std::printf("%-28s %5d %10d %11d %9d %11d %7d %6.0f\n", "total", sum.tried, sum.refused,
                sum.repaired, sum.torn, sum.unaffected, sum.defects, total);
    for (const CaseRecord& r : records()) {
      std::printf("  %s #%d: %s -> %s%s%s\n", r.label.c_str(), r.case_no, r.target.c_str(),
                  r.outcome.c_str(), r.remedies.empty() ? "" : "; remedies: ",
                  [&] {
                    std::string s;
                    for (const std::string& m : r.remedies) s += (s.empty() ? "" : ", ") + m;
                    return s;
                  }()
                      .c_str());
      for (const std::string& d : r.defects) std::printf("    DEFECT: %s\n", d.c_str());
    }
    std::fflush(stdout);
  }
};
[[maybe_unused]] ::testing::Environment* const kSummary =
    ::testing::AddGlobalTestEnvironment(new SweepSummary);

// ---- reads through one member ----

// Sends every request to member i only (never to the leader it names), all at once, and waits
// for every answer (each has its own deadline; the wait is bounded).
std::vector<wire::Response> call_all(const ProcessCluster& cluster, int i,
                                     const std::vector<wire::Request>& reqs) {
  struct Shared {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<wire::Response> out;
    std::size_t done = 0;
  };
  auto shared = std::make_shared<Shared>();
  shared->out.resize(reqs.size());
  auto c = cluster.client_for(i, kReadTimeoutMs);
  const client::CallOptions o{.timeout_ms = kReadTimeoutMs,
                              .target = *net::parse_address(cluster.client_addr(i))};
  for (std::size_t n = 0; n < reqs.size(); ++n) {
    c->call(
        reqs[n],
        [shared, n](wire::Response r) {
          std::lock_guard<std::mutex> lock(shared->mu);
          shared->out[n] = std::move(r);
          ++shared->done;
          shared->cv.notify_all();
        },
        o);
  }
  std::unique_lock<std::mutex> lock(shared->mu);
  const bool all = shared->cv.wait_for(lock, std::chrono::milliseconds(kReadTimeoutMs + 15000),
                                       [&] { return shared->done == reqs.size(); });
  std::vector<wire::Response> out = shared->out;
  if (!all) {
    for (wire::Response& r : out) {
      if (r.code == Code::kOk && r.id == 0) {
        r.code = Code::kInternal;
        r.message = "no answer, not even a timeout, within the bound";
      }
    }
  }
  return out;
}

struct ReadCheck {
  std::vector<std::string> defects;  // wrong values, missing or extra keys, hangs
  int answered = 0, errors = 0;
  bool complete = true;  // every read answered with the acknowledged data (no errors)
};

// Every acknowledged key through member i (serializable and, unless `serializable_only`,
// linearizable), then the whole key space listed page by page: each answer is the acknowledged
// data or an error, never a wrong value, a missing key or an extra key.
ReadCheck check_reads(const ProcessCluster& cluster, int i,
                      const std::map<std::string, std::string>& acked, bool serializable_only) {
  ReadCheck out;
  const std::string who = cluster.spec(i).name;
  std::vector<wire::Request> reqs;
  for (const auto& kv : acked) {
    reqs.push_back({.op = wire::Op::kGet, .key = kv.first, .serializable = true});
    if (!serializable_only) {
      reqs.push_back({.op = wire::Op::kGet, .key = kv.first, .serializable = false});
    }
  }
  const std::vector<wire::Response> answers = call_all(cluster, i, reqs);
  for (std::size_t n = 0; n < reqs.size(); ++n) {
    const wire::Request& q = reqs[n];
    const wire::Response& r = answers[n];
    const std::string read = std::string(q.serializable ? "serializable" : "linearizable") +
                             " get " + q.key + " through " + who;
    if (r.code == Code::kInternal && r.id == 0) {
      out.defects.push_back(read + ": " + r.message);
      out.complete = false;
      continue;
    }
    ++out.answered;
    if (r.code != Code::kOk) {
      ++out.errors;
      out.complete = false;
      continue;
    }
    if (!r.found || r.kvs.empty()) {
      out.defects.push_back(read + ": answered ok but the key is missing");
      out.complete = false;
    } else if (r.kvs[0].key != q.key || r.kvs[0].value != acked.at(q.key)) {
      out.defects.push_back(read + ": answered a wrong value \"" + r.kvs[0].value + "\" for \"" +
                            r.kvs[0].key + "\"");
      out.complete = false;
    }
  }
  // The listing, in small pages so that every page starts with a seek into the tree.
  constexpr std::uint64_t kPage = 16;
  auto c = cluster.client_for(i, kReadTimeoutMs);
  const client::CallOptions o{.timeout_ms = kReadTimeoutMs,
                              .target = *net::parse_address(cluster.client_addr(i))};
  for (bool serializable : {true, false}) {
    if (!serializable && serializable_only) continue;
    const std::string list =
        std::string(serializable ? "serializable" : "linearizable") + " listing through " + who;
    std::string start;
    auto expect = acked.begin();
    for (int page = 0; page < kKeys + kLaggingKeys; ++page) {
      wire::Response r = c->call_sync({.op = wire::Op::kRange,
                                       .key = start,
                                       .value = "",
                                       .prefix = true,
                                       .limit = kPage,
                                       .serializable = serializable},
                                      o);
      ++out.answered;
      if (r.code != Code::kOk) {
        ++out.errors;
        out.complete = false;
        break;
      }
      bool bad = false;
      for (const wire::KeyValue& kv : r.kvs) {
        if (expect != acked.end() && kv.key == expect->first) {
          if (kv.value != expect->second) {
            out.defects.push_back(list + ": a wrong value for " + kv.key);
            bad = true;
          }
          ++expect;
        } else if (acked.count(kv.key) == 0) {
          out.defects.push_back(list + ": an extra key \"" + kv.key + "\"");
          bad = true;
        } else {
          out.defects.push_back(list + ": missing " +
                                (expect == acked.end() ? std::string("?") : expect->first) +
                                " (listed " + kv.key + " in its place)");
          bad = true;
        }
        if (bad) break;
      }
      if (bad) {
        out.complete = false;
        break;
      }
      if (!r.more || r.kvs.empty()) {
        if (expect != acked.end()) {
          out.defects.push_back(list + ": ended before " + expect->first);
          out.complete = false;
        }
        break;
      }
      start = r.kvs.back().key;
      start.push_back('\0');
    }
  }
  return out;
}

// ---- the member's start ----

enum class Started { kUp, kExited, kNeither };

// Waits (bounded) until member v answers its status or has exited.
Started await_start(const ProcessCluster& cluster, int v) {
  Started s = Started::kNeither;
  (void)wait_until(
      [&] {
        if (!cluster.running(v)) {
          s = Started::kExited;
          return true;
        }
        if (!status_of(cluster, v).name.empty()) {
          s = Started::kUp;
          return true;
        }
        return false;
      },
      30s, "the member to start or exit", kPollEvery)
      .ok();
  return s;
}

// The member's last words: its last line starting "kvc-node:" (a refused start), else its last
// log line.
std::string last_words(const std::string& log) {
  std::string last, last_node;
  for (const std::string_view line : split_lines(log)) {
    if (line.empty()) continue;
    last = line;
    if (line.starts_with("kvc-node:")) last_node = line;
  }
  return last_node.empty() ? last : last_node;
}

enum class Remedy { kNone, kWalRepair, kRebuild };

// What the message tells the operator to do (kvc-node(1), kvc-wal(1)).
Remedy remedy_named(const std::string& message) {
  if (message.find("kvc-wal") != std::string::npos) return Remedy::kWalRepair;
  if (message.find("member remove") != std::string::npos ||
      message.find("remove the member") != std::string::npos) {
    return Remedy::kRebuild;
  }
  return Remedy::kNone;
}

class Sweep {
 public:
  Sweep(const SweepClass& k, int case_no) : k_(k), case_no_(case_no) {
    record_.label = k.label;
    record_.case_no = case_no;
  }
  ~Sweep() {
    record_.seconds = std::chrono::duration<double>(Clock::now() - t0_).count();
    std::printf(
        "sweep result: class=\"%s\" case=%d target=\"%s\" outcome=\"%s\" defects=%d "
        "secs=%.1f\n",
        record_.label.c_str(), case_no_, record_.target.c_str(), record_.outcome.c_str(),
        record_.defect_count, record_.seconds);
    records().push_back(record_);
  }

  void run() {
    ClusterOptions o;
    o.extra_flags = {"--wal-segment-bytes", "16384", "--hash-check-interval", "0"};
    if (k_.setup == Setup::kSnapshot) {
      o.extra_flags.insert(o.extra_flags.end(), {"--retained-entries", "20"});
    }
    cluster_ = std::make_unique<ProcessCluster>(
        "sweep-" + std::string(k_.name) + "-" + std::to_string(case_no_), o);
    ProcessCluster& cluster = *cluster_;
    // No scrubbing but in the damaged member (each member's own flag: a flag given twice is a
    // usage error).
    for (int i = 0; i < cluster.size(); ++i) cluster.mutable_spec(i).extra_flags = kNoScrub;
    ASSERT_TRUE(cluster.start_all().ok());
    Result<int> leader = cluster.wait_for_leader(20000);
    ASSERT_TRUE(leader.ok()) << leader.status().to_string();
    write_keys(0, kKeys);
    if (::testing::Test::HasFatalFailure()) return;
    v_ = (*leader + 1) % cluster.size();
    const std::string dir = cluster.spec(v_).data_dir;
    wait_caught_up(v_);
    if (::testing::Test::HasFatalFailure()) return;
    if (k_.setup == Setup::kFlushed) {
      // A timed flush records a snapshot marker in the WAL (the flush at a clean stop does not).
      const std::uint64_t written = commit_index();
      ASSERT_TRUE(wait_until([&] { return status_of(cluster, v_).durable_index >= written; }, 20s,
                             "the flush of the written index", kPollEvery)
                      .ok())
          << cluster.spec(v_).name << " never flushed index " << written;
    }
    if (k_.setup == Setup::kSnapshot) {
      ASSERT_EQ(stop(v_), 0);
      write_keys(kKeys, kKeys + kLaggingKeys);  // past --retained-entries: v_ needs a snapshot
      if (::testing::Test::HasFatalFailure()) return;
      // The others compact their logs once a flush holds what was written (after_flush): only
      // then is a snapshot the one way to catch v_ up.
      const std::uint64_t written = commit_index();
      for (int i = 0; i < cluster.size(); ++i) {
        if (i == v_) continue;
        ASSERT_TRUE(wait_until([&] { return status_of(cluster, i).durable_index >= written; }, 20s,
                               "the flush of the written index", kPollEvery)
                        .ok())
            << cluster.spec(i).name << " never flushed index " << written;
      }
      ASSERT_TRUE(cluster.start(v_).ok());
      wait_caught_up(v_);
      if (::testing::Test::HasFatalFailure()) return;
      ASSERT_FALSE(snapshot_parts(dir, SnapPart::kPrologue).empty())
          << "the follower caught up without a snapshot:\n"
          << log_of(cluster, v_);
    }
    if (k_.setup == Setup::kRepairFile) {
      prepare_repair_file();
      if (::testing::Test::HasFatalFailure()) return;
    } else {
      ASSERT_EQ(stop(v_), 0) << "a clean stop exits 0";
    }

    // Choose and flip the bit.
    const std::vector<ByteRange> ranges = k_.ranges(dir);
    ASSERT_FALSE(ranges.empty()) << "no bytes of class " << k_.label << " in " << dir;
    std::uint64_t total = 0;
    for (const ByteRange& r : ranges) total += r.length;
    std::uint64_t mix =
        sweep_seed() ^ (0x9e3779b97f4a7c15ull * static_cast<unsigned>(case_no_ + 1));
    for (const char* p = k_.name; *p != '\0'; ++p)
      mix = (mix ^ static_cast<unsigned char>(*p)) * 0x100000001b3ull;
    raft::SplitMix64 rng(mix);
    std::uint64_t pos = rng.next_u64() % total;
    const int bit = static_cast<int>(rng.next_u64() % 8);
    const ByteRange* hit = &ranges.front();
    for (const ByteRange& r : ranges) {
      if (pos < r.length) {
        hit = &r;
        break;
      }
      pos -= r.length;
    }
    flipped_ = hit->path;
    record_.target = hit->what + ", byte " + std::to_string(pos) + " of " +
                     std::to_string(hit->length) + ", bit " + std::to_string(bit);
    std::printf(
        "sweep: class=\"%s\" case=%d seed=%llu target=\"%s\" file=%s offset=%llu "
        "(rerun: KVC_SWEEP_SEED=%llu KVC_SWEEP_OFFSETS=%d kvc_process_test "
        "--gtest_filter='*CorruptionSweep*/%s')\n",
        k_.label, case_no_, static_cast<unsigned long long>(sweep_seed()), record_.target.c_str(),
        hit->path.c_str(), static_cast<unsigned long long>(hit->offset + pos),
        static_cast<unsigned long long>(sweep_seed()), case_no_ + 1, k_.name);
    std::fflush(stdout);
    ASSERT_TRUE(flip_bit(hit->path, hit->offset + pos, bit).ok());

    // Restart it, with a scrubber fast enough to find what nobody reads.
    cluster.mutable_spec(v_).extra_flags = kFastScrub;
    bring_up();
    if (::testing::Test::HasFatalFailure()) return;
    final_checks();
  }

 private:
  void defect(const std::string& what) {
    const std::string d = what + " [class \"" + std::string(k_.label) + "\", case " +
                          std::to_string(case_no_) + ", seed " + std::to_string(sweep_seed()) +
                          ", " + record_.target + "]";
    ++record_.defect_count;
    // A damaged tree may lose a hundred keys at once: the first few say enough.
    if (record_.defects.size() < kDefectsShown) {
      record_.defects.push_back(d);
      ADD_FAILURE() << d;
    } else if (++defects_not_shown_ == 1) {
      ADD_FAILURE() << "more defects of this case follow; only the first " << kDefectsShown
                    << " are shown";
    }
  }

  int stop(int i) {
    Result<int> rc = cluster_->stop(i);
    return rc.ok() ? *rc : -1;
  }

  // Each put is acknowledged before the next. One whose outcome is unknown (a loaded machine
  // can stall an election past the client's deadline) is sent again: the same key and value,
  // so a put applied twice leaves what the test expects. Bounded: 30 s per key.
  void write_keys(int from, int to) {
    auto c = cluster_->client(5000);
    for (int i = from; i < to; ++i) {
      const auto deadline = Clock::now() + std::chrono::seconds(30);
      wire::Response r = c->put(key_for(i), value_for(i));
      while ((r.code == Code::kTimeout || r.code == Code::kUnavailable) &&
             Clock::now() < deadline) {
        std::fprintf(stderr, "sweep: put %s: %s; again\n", key_for(i).c_str(), r.message.c_str());
        r = c->put(key_for(i), value_for(i));
      }
      ASSERT_EQ(r.code, Code::kOk) << key_for(i) << ": " << r.message;
      acked_[key_for(i)] = value_for(i);
    }
  }

  std::uint64_t commit_index() {
    std::uint64_t commit = 0;
    for (int i = 0; i < cluster_->size(); ++i) {
      if (cluster_->running(i)) commit = std::max(commit, status_of(*cluster_, i).commit_index);
    }
    return commit;
  }

  void wait_caught_up(int i) {
    Status s = cluster_->wait_applied(i, commit_index(), 30000);
    ASSERT_TRUE(s.ok()) << s.to_string() << "\n" << log_of(*cluster_, i);
  }

  // The follower finds a damaged value while the others are down (no leader to repair it), so
  // it stops with its repair file in place.
  void prepare_repair_file() {
    ProcessCluster& cluster = *cluster_;
    const std::string dir = cluster.spec(v_).data_dir;
    ASSERT_EQ(stop(v_), 0);
    ASSERT_GT(flip_bit_in_every_copy(state_file(dir), value_for(7)), 0);
    std::vector<int> others;
    for (int i = 0; i < cluster.size(); ++i) {
      if (i != v_) others.push_back(i);
    }
    for (int i : others) ASSERT_EQ(stop(i), 0);
    cluster.mutable_spec(v_).extra_flags = kFastScrub;
    ASSERT_TRUE(cluster.start(v_).ok());
    ASSERT_TRUE(
        wait_until([&] { return fs::exists(dir + "/repair"); }, 20s, "the repair file", kPollEvery)
            .ok())
        << log_of(cluster, v_);
    ASSERT_EQ(stop(v_), 0);
    for (int i : others) ASSERT_TRUE(cluster.start(i).ok());
    ASSERT_TRUE(cluster.wait_for_leader(20000).ok());
  }

  // Starts the damaged member and follows it until it serves again: the reads through it, its
  // repair, and for a refusal the remedy its message names, at most kMaxRemedies times.
  void bring_up() {
    ProcessCluster& cluster = *cluster_;
    for (int round = 0;; ++round) {
      const std::size_t log_from = log_of(cluster, v_).size();
      if (!cluster.running(v_)) {
        ASSERT_TRUE(cluster.start(v_).ok());
      }
      Started s = await_start(cluster, v_);
      ASSERT_NE(s, Started::kNeither) << "neither up nor exited 30 s after its start:\n"
                                      << log_of(cluster, v_).substr(log_from);
      std::string since;
      if (s == Started::kUp) {
        // A rebuilt member starts empty: its serializable reads are stale until it caught up.
        if (fresh_) {
          wait_caught_up(v_);
          if (::testing::Test::HasFatalFailure()) return;
        }
        ReadCheck reads = check_reads(cluster, v_, acked_, /*serializable_only=*/false);
        for (const std::string& d : reads.defects) defect("served damaged data: " + d);
        // Settled: it runs, is neither damaged nor being repaired, and the scrubber has been
        // over the whole state twice since it started.
        const bool settled =
            wait_until(
                [&] {
                  if (!cluster.running(v_)) return true;
                  const wire::StatusInfo st = status_of(cluster, v_);
                  return !st.name.empty() && !st.damaged && !st.repairing && st.scrub_passes >= 2;
                },
                45s, "the member to settle", kPollEvery)
                .ok();
        since = log_of(cluster, v_).substr(log_from);
        if (!settled) {
          defect("never repaired itself: status still damaged or repairing 45 s on");
          std::printf("%s\n", since.c_str());
        }
        if (cluster.running(v_)) {
          if (round == 0) record_.outcome = outcome_of(since);
          if (record_.outcome == "found damage, repaired" &&
              since.find("state repaired") == std::string::npos &&
              since.find("lost entries") == std::string::npos) {
            defect("found damage but never logged its repair");
          }
          return;
        }
        s = Started::kExited;  // it started, then ended
      }
      // It exited: a refusal must say which file and what to do; follow it.
      since = log_of(cluster, v_).substr(log_from);
      const int status = cluster.exit_status(v_);
      const std::string words = last_words(since);
      if (round == 0) record_.outcome = "refused";
      std::printf("sweep: %s exited with status %d: %s\n", cluster.spec(v_).name.c_str(), status,
                  words.c_str());
      Remedy remedy = remedy_named(words);
      if (status != 1) {
        defect("the member ended with status " + std::to_string(status) +
               " (a crash, not a refusal): " + words);
        remedy = Remedy::kRebuild;  // what an operator is left with
      } else {
        const std::string dir = cluster.spec(v_).data_dir;
        const std::string part = dir + "/" + fs::relative(flipped_, dir).begin()->string();
        if (words.find(round == 0 ? part : dir) == std::string::npos) {
          defect("the refusal does not name the damaged file (" + part + "): " + words);
        }
        if (remedy == Remedy::kNone) {
          defect("the refusal names no remedy: " + words);
          remedy = Remedy::kRebuild;
        }
      }
      ASSERT_LT(round, kMaxRemedies) << "still refused after " << kMaxRemedies << " remedies";
      if (remedy == Remedy::kWalRepair) {
        wal_repair();
      } else {
        rebuild();
      }
      if (::testing::Test::HasFatalFailure()) return;
    }
  }

  static std::string outcome_of(const std::string& log) {
    if (log.find("state damaged") != std::string::npos ||
        log.find("lost entries") != std::string::npos) {
      return "found damage, repaired";
    }
    if (log.find("torn tail") != std::string::npos) return "torn tail truncated";
    return "no effect seen";
  }

  // kvc-wal(1): cut the log at the corruption, in place (the removed bytes are kept aside).
  void wal_repair() {
    const std::string dir = cluster_->spec(v_).data_dir;
    RunResult r = run_command(
        {binary_path("kvc-wal"), "repair", dir, "--truncate-corrupt", "--in-place", "--yes"},
        30000);
    std::printf("sweep: kvc-wal repair exited %d: %s%s\n", r.status, r.out.c_str(), r.err.c_str());
    if (r.status == 0) {
      record_.remedies.push_back("kvc-wal repair --truncate-corrupt");
      return;
    }
    // A log no cut can repair: kvc-wal(1) says to rebuild the member.
    const std::string said = r.out + r.err;
    if (said.find("rebuild") == std::string::npos && remedy_named(said) != Remedy::kRebuild) {
      defect("kvc-wal repair failed without naming a remedy: " + said);
    }
    record_.remedies.push_back("kvc-wal repair refused");
    rebuild();
  }

  // kvc-ctl member remove, the data directory moved aside, kvc-ctl member add, and a start with
  // the printed command line (kvc-node(1), JOINING A RUNNING CLUSTER).
  void rebuild() {
    const Status s = rebuild_member(*cluster_, v_, ".damaged-" + std::to_string(++rebuilds_));
    ASSERT_TRUE(s.ok()) << s.to_string();
    record_.remedies.push_back("member remove + add with an empty data directory");
    fresh_ = true;
  }

  // Every member serves every acknowledged key and the listing, and their hashes agree.
  void final_checks() {
    ProcessCluster& cluster = *cluster_;
    ASSERT_TRUE(cluster.wait_for_leader(20000).ok());
    for (int i = 0; i < cluster.size(); ++i) {
      ASSERT_TRUE(cluster.running(i)) << cluster.spec(i).name << "\n" << log_of(cluster, i);
      wait_caught_up(i);
      ReadCheck last;
      const bool all = wait_until(
                           [&] {
                             last = check_reads(cluster, i, acked_, /*serializable_only=*/true);
                             return last.complete;
                           },
                           30s, "every acknowledged read", kPollEvery)
                           .ok();
      for (const std::string& d : last.defects) defect("after the repair: " + d);
      EXPECT_TRUE(all) << cluster.spec(i).name << " does not serve every acknowledged key ("
                       << last.errors << " errors)\n"
                       << log_of(cluster, i);
    }
    ProcessCluster::CtlResult hash;
    const bool agreed = wait_until(
                            [&] {
                              hash = cluster.ctl({"check", "hash"});
                              return hash.status == 0;
                            },
                            30s, "the members' hashes to agree", kPollEvery)
                            .ok();
    if (!agreed) defect("kvc-ctl check hash disagrees after the repair: " + hash.out);
    // And offline, every member's state and log are sound (kvc-snap check: every record's
    // checksum, LMDB's structure, the state against the log).
    for (int i = 0; i < cluster.size(); ++i) {
      ASSERT_EQ(stop(i), 0) << cluster.spec(i).name << " did not stop cleanly\n"
                            << log_of(cluster, i);
    }
    for (int i = 0; i < cluster.size(); ++i) {
      RunResult check =
          run_command({binary_path("kvc-snap"), "check", cluster.spec(i).data_dir}, 60000);
      if (check.status != 0) {
        defect("kvc-snap check " + cluster.spec(i).name + " exited " +
               std::to_string(check.status) + " after the repair: " + check.out + check.err);
      }
    }
  }

  const SweepClass& k_;
  const int case_no_;
  const Clock::time_point t0_ = Clock::now();
  std::unique_ptr<ProcessCluster> cluster_;
  std::map<std::string, std::string> acked_;
  int v_ = 0;
  int rebuilds_ = 0;
  int defects_not_shown_ = 0;
  bool fresh_ = false;  // rebuilt: a new, empty member
  std::string flipped_;
  CaseRecord record_;
};

class CorruptionSweepTest : public ::testing::TestWithParam<int> {};

TEST_P(CorruptionSweepTest, FlippedBitIsRefusedOrNeverServedAndRepaired) {
  const SweepClass& k = classes()[static_cast<std::size_t>(GetParam())];
  for (int n = 0; n < sweep_offsets(); ++n) {
    SCOPED_TRACE(std::string(k.label) + " case " + std::to_string(n));
    Sweep(k, n).run();
  }
}

INSTANTIATE_TEST_SUITE_P(Classes, CorruptionSweepTest,
                         ::testing::Range(0, static_cast<int>(classes().size())),
                         [](const ::testing::TestParamInfo<int>& p) {
                           return std::string(classes()[static_cast<std::size_t>(p.param)].name);
                         });

}  // namespace
}  // namespace kvc::test
