// Crash test: a child process appends and syncs in a loop (faultfs/wal_child.cc) and is killed
// with SIGKILL at random moments; after every kill, everything it reported synced must be there.
// Seeded: KVC_WAL_CRASH_SEED picks the seed (printed), KVC_WAL_CRASH_ROUNDS the number of kills.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <random>

#include "kvc/storage/wal.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

std::uint64_t env_or(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

// Runs the child until it has printed `lines` lines after "opened", spins a random while, then
// kills it. Returns the highest index it reported synced (0: none), and whether it finished.
struct Round {
  std::uint64_t synced = 0;
  bool finished = false;
  std::string error;  // a line the child should never print, or how it ended badly
};

Round run_and_kill(const std::string& dir, std::uint64_t count, std::uint64_t seed,
                   std::uint64_t lines, std::uint64_t spin) {
  int out[2];
  KVC_CHECK(::pipe(out) == 0, "pipe");
  const pid_t pid = ::fork();
  KVC_CHECK(pid >= 0, "fork");
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::close(out[0]);
    ::close(out[1]);
    const std::string c = std::to_string(count), s = std::to_string(seed);
    ::execl(KVC_WAL_CHILD, KVC_WAL_CHILD, dir.c_str(), c.c_str(), "8192", s.c_str(),
            static_cast<char*>(nullptr));
    ::_exit(127);
  }
  ::close(out[1]);
  Round r;
  std::string buf;
  std::uint64_t seen = 0;
  bool killed = false;
  char chunk[4096];
  for (;;) {
    const ssize_t n = ::read(out[0], chunk, sizeof chunk);
    if (n <= 0) break;
    buf.append(chunk, static_cast<std::size_t>(n));
    std::size_t nl;
    while ((nl = buf.find('\n')) != std::string::npos) {
      const std::string line = buf.substr(0, nl);
      buf.erase(0, nl + 1);
      if (line.rfind("synced ", 0) == 0) {
        r.synced = std::strtoull(line.c_str() + 7, nullptr, 10);
        ++seen;
      }
      if (line.rfind("done", 0) == 0) r.finished = true;
      if (line.rfind("error", 0) == 0 || line.rfind("open_failed", 0) == 0) r.error = line;
    }
    if (!killed && seen >= lines) {
      // A random moment inside the next append or sync.
      volatile std::uint64_t sink = 0;
      for (std::uint64_t i = 0; i < spin; ++i) sink = sink + i;
      ::kill(pid, SIGKILL);
      killed = true;
    }
  }
  ::close(out[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  if ((!killed || !WIFSIGNALED(status)) && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
    r.error += " (the child ended with status " + std::to_string(status) + ")";
  }
  return r;
}

TEST(WalCrashTest, EverySyncedEntrySurvivesSigkill) {
  const std::uint64_t seed = env_or("KVC_WAL_CRASH_SEED", 20261125);
  const std::uint64_t rounds = env_or("KVC_WAL_CRASH_ROUNDS", 25);
  std::printf("WalCrashTest seed=%llu rounds=%llu (rerun: KVC_WAL_CRASH_SEED=%llu)\n",
              static_cast<unsigned long long>(seed), static_cast<unsigned long long>(rounds),
              static_cast<unsigned long long>(seed));
  std::mt19937_64 rng(seed);
  const std::string dir = wal_test::fresh_dir("crash");
  const std::uint64_t count = 1000000;  // never reached: every round is killed
  std::uint64_t synced = 0;
  std::uint64_t torn = 0;
  std::uint64_t temps = 0;
  for (std::uint64_t round = 0; round < rounds; ++round) {
    SCOPED_TRACE("seed " + std::to_string(seed) + " round " + std::to_string(round));
    const std::uint64_t child_seed = rng();
    const std::uint64_t lines = 1 + rng() % 40;
    const std::uint64_t spin = rng() % 200000;
    const Round r = run_and_kill(dir, count, child_seed, lines, spin);
    ASSERT_TRUE(r.error.empty()) << r.error;
    synced = std::max(synced, r.synced);
    // Recover in this process and check every entry against what the child wrote.
    Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = 8192});
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    if (w->log.report.torn_tail) ++torn;
    temps += w->log.report.removed_temp_files.size();
    const RecoveredLog& log = w->log;
    const std::uint64_t last = w->wal.last_index();
    ASSERT_GE(last, synced) << "an entry reported synced was lost";
    std::uint64_t expect = log.snapshot ? log.snapshot->index + 1 : 1;
    for (const raft::Entry& e : log.entries) {
      ASSERT_EQ(e, wal_test::expected_entry(expect));
      ++expect;
    }
    ASSERT_EQ(expect - 1, last);
    if (log.snapshot) {
      EXPECT_EQ(log.snapshot->term, wal_test::expected_term(log.snapshot->index));
    }
    if (log.hard_state) {
      EXPECT_LE(log.hard_state->commit, last);
    }
    synced = last;  // recovery made it durable
  }
  std::printf(
      "WalCrashTest: %llu rounds, last index %llu, %llu torn tails truncated, %llu "
      "unfinished segments removed\n",
      static_cast<unsigned long long>(rounds), static_cast<unsigned long long>(synced),
      static_cast<unsigned long long>(torn), static_cast<unsigned long long>(temps));
  EXPECT_GT(synced, rounds);
}

}  // namespace
}  // namespace kvc::storage
