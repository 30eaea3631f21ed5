// The crash test (issue 16; docs/chaos.md, "The crash test"): a 3-member cluster under a
// steady write load, with a short state flush interval so that flushes happen all the time, has
// one member at a time restarted with the crashfs shim (tests/chaos/crashfs.c) armed to SIGKILL
// it at a chosen point of its disk writes: in the middle of an LMDB flush (a write of data.mdb,
// whole or torn, or its fdatasync) or of a WAL write (a segment write, whole or torn, or its
// fdatasync), and in some rounds as a power loss (the shim first undoes every write to the
// member's data directory that no fsync covered: a process crash alone keeps the page cache, so
// only this finds a missing or misplaced fsync). Followers and, in some rounds, the leader; in
// one round two members, one after the other (never two down together). The member is then
// restarted unarmed while the load goes on. At the end every acknowledged put must be readable with
// its value (or, for a key written again, a newer value from the same writer) through a
// linearizable read and through a serializable read on every member once all have caught up; the
// members' state hashes must agree; no leader may have found a member that lost entries it had
// acknowledged; and most rounds must have crashed where they were armed to (a crash point never
// reached proves nothing).
//
// Teeth (docs/chaos.md): KVC_CRASH_TEST_MUTATION=NAME runs every member as kvc-node-unsafe with
// --test-mutation NAME, to check that the test catches a member that breaks durability.
// KVC_CRASH_TEST_SEED chooses the crash points' call numbers (default 1). Every wait is bounded;
// every process is stopped by PID.
#include <gtest/gtest.h>
#include <signal.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "data_dir_faults.h"
#include "kvc/net/address.h"
#include "kvc/wire/messages.h"
#include "process_cluster.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// Where a round's member is killed: the shim's settings, and the range its call number is drawn
// from (past the member's start, so that the crash comes under load).
struct CrashPoint {
  const char* name;
  const char* file;  // KVC_CRASHFS_FILE
  const char* op;    // KVC_CRASHFS_OP
  bool torn;         // KVC_CRASHFS_TORN
  // A power loss (KVC_CRASHFS_LOSE): the member's writes to its data directory that no fsync
  // covered are undone before the kill.
  bool power_loss;
  int after_min, after_max;
};

const CrashPoint kPoints[] = {
    {"lmdb write mid-flush", "data.mdb", "write", false, false, 4, 40},
    {"lmdb torn write mid-flush", "data.mdb", "write", true, false, 4, 40},
    {"lmdb fdatasync", "data.mdb", "fdatasync", false, false, 2, 8},
    {"wal write", ".wal", "write", false, false, 10, 120},
    {"wal torn write", ".wal", "write", true, false, 10, 120},
    {"wal fdatasync", ".wal", "fdatasync", false, false, 10, 120},
    {"power loss at a wal fdatasync", ".wal", "fdatasync", false, true, 10, 120},
    {"power loss at an lmdb fdatasync", "data.mdb", "fdatasync", false, true, 2, 8},
    {"power loss in a wal write", ".wal", "write", true, true, 10, 120},
};

// A round: which crash point, on whom; `then_other`: a second member (the other role, at the
// point three further on) in the same round, after the first is back and caught up.
enum class Target { kFollower, kLeader };
struct Round {
  int point;
  Target target;
  bool then_other = false;
};

const Round kRounds[] = {
    {0, Target::kFollower}, {3, Target::kFollower}, {1, Target::kLeader},
    {6, Target::kFollower}, {4, Target::kFollower}, {5, Target::kLeader},
    {7, Target::kLeader},   {2, Target::kFollower}, {1, Target::kFollower, true},
    {8, Target::kFollower}, {3, Target::kLeader},   {6, Target::kLeader},
};

constexpr std::uint64_t kCrashWaitMs = 10000;  // for an armed member to reach its crash point
constexpr int kWriters = 3;
constexpr int kOverwriteSlots = 4;

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' ? v : fallback;
}

std::string padded(std::uint64_t n) {
  char buf[24];
  std::snprintf(buf, sizeof buf, "%08llu", static_cast<unsigned long long>(n));
  return buf;
}

// What one writer had acknowledged.
struct WriterLog {
  std::map<std::string, std::string> distinct;  // written once: key -> value
  // Written repeatedly: key -> the sequence number of its last acknowledged value. A key whose
  // put had an unknown outcome is never written again (so no acknowledged value can follow a
  // late one).
  std::map<std::string, std::uint64_t> overwritten;
  std::uint64_t acked = 0, failed = 0;
};

// The value of writer t's overwritten keys at sequence number `seq`: "w<t>-s<seq>".
std::string overwrite_value(int t, std::uint64_t seq) {
  return "w" + std::to_string(t) + "-s" + padded(seq);
}

// Puts distinct keys and, every third put, one of a few keys again, until `stop` or its bound.
void run_writer(client::Client& c, int t, const std::atomic<bool>& stop, WriterLog& log) {
  std::uint64_t generation[kOverwriteSlots] = {};
  const std::string pad(96, 'x');  // enough bytes that every flush writes pages
  const auto deadline = Clock::now() + 120s;
  for (std::uint64_t seq = 1; seq <= 1000000 && !stop.load() && Clock::now() < deadline; ++seq) {
    std::string key, value;
    int slot = -1;
    if (seq % 3 == 0) {
      slot = static_cast<int>((seq / 3) % kOverwriteSlots);
      key = "/crash/o/w" + std::to_string(t) + "/" + std::to_string(slot) + "-g" +
            std::to_string(generation[slot]);
      value = overwrite_value(t, seq);
    } else {
      key = "/crash/d/w" + std::to_string(t) + "/" + padded(seq);
      value = "w" + std::to_string(t) + "-" + padded(seq) + "-" + pad;
    }
    wire::Response r = c.put(key, value);
    if (r.code == Code::kOk) {
      ++log.acked;
      if (slot < 0) {
        log.distinct[key] = value;
      } else {
        log.overwritten[key] = seq;
      }
    } else {
      ++log.failed;
      if (slot >= 0) ++generation[slot];
    }
  }
}

// Every key under /crash/ as `target` serves it (nullopt: the cluster, linearizable), paged.
Result<std::map<std::string, std::string>> read_all(client::Client& c,
                                                    std::optional<net::Address> target) {
  std::map<std::string, std::string> out;
  std::string start = "/crash/";
  for (int page = 0; page < 10000; ++page) {
    wire::Request q{.op = wire::Op::kRange,
                    .key = start,
                    .value = "/crash/",
                    .prefix = true,
                    .limit = 1000,
                    .serializable = target.has_value()};
    wire::Response r = c.call_sync(q, {.timeout_ms = 10000, .target = target});
    if (r.code != Code::kOk) return Status(r.code, "range from " + start + ": " + r.message);
    for (const wire::KeyValue& kv : r.kvs) out[kv.key] = kv.value;
    if (!r.more || r.kvs.empty()) return out;
    start = r.kvs.back().key;
    start.push_back('\0');
  }
  return Status::internal("range: too many pages");
}

// Checks that `served` holds everything the writers acknowledged; "" when it does, else the
// first few differences.
std::string missing_acknowledged(const std::vector<WriterLog>& logs,
                                 const std::map<std::string, std::string>& served) {
  std::string out;
  int problems = 0;
  auto note = [&](const std::string& line) {
    if (++problems <= 10) out += "  " + line + "\n";
  };
  for (std::size_t t = 0; t < logs.size(); ++t) {
    for (const auto& [k, v] : logs[t].distinct) {
      auto it = served.find(k);
      if (it == served.end()) {
        note("lost " + k);
      } else if (it->second != v) {
        note(k + " is " + it->second + ", acknowledged " + v);
      }
    }
    const std::string prefix = "w" + std::to_string(t) + "-s";
    for (const auto& [k, seq] : logs[t].overwritten) {
      auto it = served.find(k);
      if (it == served.end()) {
        note("lost " + k + " (acknowledged at s" + padded(seq) + ")");
        continue;
      }
      const std::string& v = it->second;
      // Only this writer writes the key, with rising sequence numbers: the value must be the
      // acknowledged one or a later one.
      if (v.rfind(prefix, 0) != 0 || v.size() != prefix.size() + 8 ||
          std::strtoull(v.c_str() + prefix.size(), nullptr, 10) < seq) {
        note(k + " is " + v + ", older than the acknowledged " +
             overwrite_value(static_cast<int>(t), seq));
      }
    }
  }
  if (problems > 10) out += "  ... " + std::to_string(problems - 10) + " more\n";
  return out;
}

// Waits until member i answers and has applied what the leader had committed when asked; fails
// at once if it exits.
Status wait_caught_up(const ProcessCluster& cluster, int i, std::chrono::milliseconds timeout) {
  std::uint64_t target = 0;
  bool exited = false;
  Status s = wait_until(
      [&] {
        if (!cluster.running(i)) return exited = true;
        if (target == 0) {
          Result<int> leader = cluster.wait_for_leader(500);
          if (!leader.ok()) return false;
          target = status_of(cluster, *leader).commit_index;
          if (target == 0) return false;
        }
        return status_of(cluster, i).applied_index >= target;
      },
      timeout, cluster.spec(i).name + " to catch up with the leader", kPollEvery);
  if (exited) {
    return Status::unavailable(cluster.spec(i).name + " exited with status " +
                               std::to_string(cluster.exit_status(i)));
  }
  return s;
}

// The end of member i's log.
std::string log_tail(const ProcessCluster& cluster, int i) {
  const std::string log = log_of(cluster, i);
  return log.size() > 3000 ? "..." + log.substr(log.size() - 3000) : log;
}

std::size_t file_size(const std::string& path) { return read_whole(path).size(); }

TEST(CrashProcessTest, AcknowledgedWritesSurviveCrashesMidFlushAndMidWalWrite) {
  const std::string mutation = env_or("KVC_CRASH_TEST_MUTATION", "");
  const std::uint64_t seed = std::strtoull(env_or("KVC_CRASH_TEST_SEED", "1").c_str(), nullptr, 10);
  std::mt19937_64 rng(seed);
  std::printf("crash test: seed %llu%s\n", static_cast<unsigned long long>(seed),
              mutation.empty() ? "" : (", mutation " + mutation).c_str());

  ClusterOptions o;
  // Flushes every 20 ms; elections in well under a second; no periodic hash check or scrub (they
  // would repair a member that lost writes before the end's checks could see it).
  o.extra_flags = {"--flush-interval",
                   "20ms",
                   "--tick",
                   "50ms",
                   "--election-timeout",
                   "600ms",
                   "--heartbeat-interval",
                   "100ms",
                   "--hash-check-interval",
                   "0",
                   "--scrub-rate",
                   "0"};
  ProcessCluster cluster("crash", o);
  for (int i = 0; i < cluster.size(); ++i) {
    if (mutation.empty()) continue;
#ifdef KVC_HAVE_UNSAFE_NODE
    cluster.mutable_spec(i).binary = "kvc-node-unsafe";
    cluster.mutable_spec(i).extra_flags = {"--test-mutation", mutation};
#else
    FAIL() << "KVC_CRASH_TEST_MUTATION needs kvc-node-unsafe, which this build lacks";
#endif
  }
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader(15000).ok());

  // The load: one client and thread per writer, running through every round.
  std::vector<std::unique_ptr<client::Client>> clients;
  for (int t = 0; t < kWriters; ++t) clients.push_back(cluster.client(3000));
  std::vector<WriterLog> logs(kWriters);
  std::atomic<bool> stop{false};
  std::vector<std::thread> writers;
  for (int t = 0; t < kWriters; ++t)
    writers.emplace_back([&, t] {
      run_writer(*clients[static_cast<std::size_t>(t)], t, stop, logs[static_cast<std::size_t>(t)]);
    });
  struct StopWriters {
    std::atomic<bool>& stop;
    std::vector<std::thread>& threads;
    ~StopWriters() {
      stop = true;
      for (std::thread& t : threads)
        if (t.joinable()) t.join();
    }
  } stop_writers{stop, writers};

  std::string asan = env_or("ASAN_OPTIONS", "");
  asan += std::string(asan.empty() ? "" : ":") + "verify_asan_link_order=0";
  int armed = 0, crashed = 0;
  std::vector<std::string> missed;

  // Restarts member i armed at crash point p, waits for the shim to kill it, restarts it
  // unarmed and waits until it has caught up.
  auto crash_member = [&](int i, const CrashPoint& p) {
    std::uniform_int_distribution<int> pick(p.after_min, p.after_max);
    const int after = pick(rng);
    const std::string what =
        std::string(p.name) + " (call " + std::to_string(after) + ") on " + cluster.spec(i).name;
    ASSERT_TRUE(cluster.kill(i, SIGKILL).ok());
    const std::size_t log_from = file_size(cluster.log_path(i));
    MemberSpec& spec = cluster.mutable_spec(i);
    spec.env = {"LD_PRELOAD=" + std::string(KVC_CRASHFS_LIB),
                "KVC_CRASHFS_OP=" + std::string(p.op),
                "KVC_CRASHFS_FILE=" + std::string(p.file),
                "KVC_CRASHFS_AFTER=" + std::to_string(after),
                "KVC_CRASHFS_TORN=" + std::string(p.torn ? "1" : "0"),
                "KVC_CRASHFS_LOSE=" + (p.power_loss ? spec.data_dir + "/" : std::string()),
                "ASAN_OPTIONS=" + asan};
    ++armed;
    ASSERT_TRUE(cluster.start(i).ok());
    Result<int> rc = cluster.wait_exit(i, kCrashWaitMs);
    const std::string log = read_whole(cluster.log_path(i)).substr(log_from);
    if (!rc.ok()) {
      std::printf("crash test: NOT REACHED: %s in %llu ms\n", what.c_str(),
                  static_cast<unsigned long long>(kCrashWaitMs));
      missed.push_back(what);
      ASSERT_TRUE(cluster.kill(i, SIGKILL).ok());
    } else {
      const std::size_t at = log.find("crashfs: SIGKILL");
      // Any other exit is a member that could not live with what a crash left on its disk.
      ASSERT_TRUE(*rc == 128 + SIGKILL && at != std::string::npos)
          << what << ": exited with status " << *rc << "; its log:\n"
          << log;
      ++crashed;
      // The crash line, and the power loss's line after it.
      std::size_t end = log.find('\n', at);
      if (p.power_loss && log.compare(end + 1, 20, "crashfs: power loss:") == 0)
        end = log.find('\n', end + 1);
      std::string said = log.substr(at, end - at);
      std::replace(said.begin(), said.end(), '\n', ' ');
      std::printf("crash test: %s: %s\n", what.c_str(), said.c_str());
    }
    spec.env.clear();
    ASSERT_TRUE(cluster.start(i).ok());
    Status up = wait_caught_up(cluster, i, 30s);
    ASSERT_TRUE(up.ok()) << what << ": after its restart: " << up.to_string() << "\n"
                         << log_tail(cluster, i);
  };

  const auto t0 = Clock::now();
  for (std::size_t r = 0; r < std::size(kRounds); ++r) {
    const Round& round = kRounds[r];
    SCOPED_TRACE("round " + std::to_string(r));
    Result<int> leader = cluster.wait_for_leader(15000);
    ASSERT_TRUE(leader.ok()) << leader.status().to_string();
    // Everyone caught up first: one member down at a time, never two.
    for (int i = 0; i < cluster.size(); ++i) {
      Status s = wait_caught_up(cluster, i, 30s);
      ASSERT_TRUE(s.ok()) << s.to_string() << "\n" << log_tail(cluster, i);
    }
    const int follower = (*leader + 1 + static_cast<int>(r % 2)) % cluster.size();
    const int first = round.target == Target::kLeader ? *leader : follower;
    crash_member(first, kPoints[round.point]);
    if (HasFatalFailure()) return;
    if (round.then_other) {
      Result<int> now = cluster.wait_for_leader(15000);
      ASSERT_TRUE(now.ok()) << now.status().to_string();
      const int second = round.target == Target::kLeader ? (*now + 1) % cluster.size() : *now;
      crash_member(second, kPoints[(round.point + 3) % std::size(kPoints)]);
      if (HasFatalFailure()) return;
    }
    // The load went on: puts were acknowledged during the round.
    std::uint64_t acked = 0;
    for (const WriterLog& l : logs) acked += l.acked;  // read racily; a lower bound is enough
    std::printf(
        "crash test: round %zu done at %lld ms, about %llu puts acknowledged\n", r,
        static_cast<long long>(
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - t0).count()),
        static_cast<unsigned long long>(acked));
  }
  stop = true;
  for (std::thread& t : writers) t.join();

  std::uint64_t acked = 0, failed = 0, keys = 0;
  for (const WriterLog& l : logs) {
    acked += l.acked;
    failed += l.failed;
    keys += l.distinct.size() + l.overwritten.size();
  }
  std::printf(
      "crash test: %d of %d armed restarts crashed where armed; %llu puts acknowledged "
      "(%llu keys), %llu failed or unknown\n",
      crashed, armed, static_cast<unsigned long long>(acked), static_cast<unsigned long long>(keys),
      static_cast<unsigned long long>(failed));
  // Most crash points must have been reached, or the test proved little.
  EXPECT_GE(crashed * 4, armed * 3)
      << "crash points not reached: " << ::testing::PrintToString(missed);
  EXPECT_GE(acked, 500u) << "too little load to mean anything";

  // Every member catches up, then serves every acknowledged write.
  Result<int> leader = cluster.wait_for_leader(15000);
  ASSERT_TRUE(leader.ok()) << leader.status().to_string();
  for (int i = 0; i < cluster.size(); ++i) {
    Status s = wait_caught_up(cluster, i, 30s);
    ASSERT_TRUE(s.ok()) << s.to_string() << "\n" << log_tail(cluster, i);
  }
  auto c = cluster.client(10000);
  Result<std::map<std::string, std::string>> linear = read_all(*c, std::nullopt);
  ASSERT_TRUE(linear.ok()) << linear.status().to_string();
  EXPECT_EQ(missing_acknowledged(logs, *linear), "") << "linearizable read";
  for (int i = 0; i < cluster.size(); ++i) {
    Result<std::map<std::string, std::string>> local =
        read_all(*c, *net::parse_address(cluster.client_addr(i)));
    ASSERT_TRUE(local.ok()) << cluster.spec(i).name << ": " << local.status().to_string();
    EXPECT_EQ(missing_acknowledged(logs, *local), "")
        << "serializable read on " << cluster.spec(i).name;
  }
  // The members' states agree, hash for hash.
  ProcessCluster::CtlResult hash;
  Status agreed = wait_until(
      [&] {
        hash = cluster.ctl({"check", "hash"});
        return hash.status == 0;
      },
      20s, "the members' hashes to agree", kPollEvery);
  EXPECT_TRUE(agreed.ok()) << hash.out;
  // No member lost what it had acknowledged to a leader (the leader repairs such a member, which
  // would hide the loss from the reads above).
  for (int i = 0; i < cluster.size(); ++i) {
    const std::string log = log_of(cluster, i);
    EXPECT_EQ(log.find("lost entries it had acknowledged"), std::string::npos)
        << cluster.spec(i).name << " log:\n"
        << log.substr(log.find("lost entries it had acknowledged") > 2000
                          ? log.find("lost entries it had acknowledged") - 2000
                          : 0,
                      4000);
  }
}

}  // namespace
}  // namespace kvc::test
