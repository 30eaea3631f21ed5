// Crash tests of the state machine: exactly-once apply across dropped state and SIGKILLed
// processes (state_checker.h), and install_snapshot's atomicity at every crash point.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "kvc/storage/state.h"
#include "state_checker.h"

namespace kvc::storage {
namespace {

using testing::check_exactly_once_in_process;
using testing::check_exactly_once_with_sigkill;
using testing::fresh_dir;
using testing::seed_from_env;
using testing::soak;

TEST(StateCrashTest, ExactlyOnceAcrossInProcessCrashes) {
  const std::uint64_t seed = seed_from_env(1);
  const std::string err = check_exactly_once_in_process(fresh_dir(), seed, soak(25), 120);
  EXPECT_EQ(err, "") << "rerun: KVC_STATE_SEED=" << seed
                     << " ctest -R StateCrashTest.ExactlyOnceAcrossInProcessCrashes";
}

TEST(StateCrashTest, ExactlyOnceAcrossSigkillDuringFlushes) {
  const std::uint64_t seed = seed_from_env(2);
  const std::string err = check_exactly_once_with_sigkill(fresh_dir(), seed, soak(12), 150);
  EXPECT_EQ(err, "") << "rerun: KVC_STATE_SEED=" << seed
                     << " ctest -R StateCrashTest.ExactlyOnceAcrossSigkillDuringFlushes";
}

std::uint64_t fill(StateMachine& sm, std::uint64_t from, int n, const std::string& prefix) {
  std::uint64_t i = from;
  for (int k = 0; k < n; ++k) {
    Command c{.op = CommandOp::kPut, .key = prefix + std::to_string(k), .value = prefix};
    EXPECT_TRUE(sm.apply(++i, 3, c).ok());
  }
  EXPECT_TRUE(sm.flush_all().ok());
  return i;
}

// A child opens a state, installs a snapshot and is killed at one crash point (blocked
// there). The reopened state is entirely the old one before CURRENT names the new generation,
// entirely the new one after, and no staging debris survives the reopen.
TEST(StateCrashTest, InstallIsAtomicAtEveryCrashPoint) {
  const std::string base = fresh_dir();
  // The snapshot to install: 300 keys at index 1000.
  const std::string snap = base + "/new.snap";
  std::uint64_t new_hash = 0;
  {
    auto src = StateMachine::open(base + "/src");
    ASSERT_TRUE(src.ok());
    for (std::uint64_t i = 1; i < 700; ++i) (*src)->apply_noop(i, 2);
    fill(**src, 699, 301, "new/");
    ASSERT_TRUE((*src)->write_snapshot(snap).ok());
    new_hash = *(*src)->hash();
  }
  const struct {
    const char* point;
    bool want_new;
  } cases[] = {{"stage.before_sync", false},
               {"stage.before_rename", false},
               {"install.before_current", false},
               {"install.after_current", true}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.point);
    const std::string dir = base + "/" + c.point;
    std::uint64_t old_hash = 0;
    {
      auto sm = StateMachine::open(dir);
      ASSERT_TRUE(sm.ok());
      fill(**sm, 0, 50, "old/");
      old_hash = *(*sm)->hash();
    }
    int fds[2];
    ASSERT_EQ(::pipe(fds), 0);
    const pid_t pid = ::fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      ::close(fds[0]);
      ::alarm(60);
      StateOptions o;
      const std::string point = c.point;
      o.test_hook = [&](std::string_view p) {
        if (p != point) return;
        const char b = 'k';
        if (::write(fds[1], &b, 1) != 1) ::_exit(3);
        ::pause();
      };
      auto sm = StateMachine::open(dir, o);
      if (!sm.ok()) ::_exit(2);
      (void)(*sm)->install_snapshot(snap);
      ::_exit(0);
    }
    ::close(fds[1]);
    char b;
    ASSERT_EQ(::read(fds[0], &b, 1), 1) << "the child never reached the crash point";
    ::kill(pid, SIGKILL);
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFSIGNALED(status));

    auto sm = StateMachine::open(dir);
    ASSERT_TRUE(sm.ok()) << sm.status().to_string();
    EXPECT_EQ(*(*sm)->hash(), c.want_new ? new_hash : old_hash);
    EXPECT_EQ((*sm)->applied_index(), c.want_new ? 1000u : 50u);
    std::vector<std::string> entries;
    for (const auto& e : std::filesystem::directory_iterator(dir)) {
      entries.push_back(e.path().filename().string());
    }
    std::sort(entries.begin(), entries.end());
    EXPECT_EQ(entries, (std::vector<std::string>{
                           "CURRENT", c.want_new ? "gen-0000000002" : "gen-0000000001"}));
    // And the state goes on from there.
    const std::uint64_t next = (*sm)->applied_index() + 1;
    ASSERT_TRUE((*sm)->apply(next, 9, {.op = CommandOp::kPut, .key = "after", .value = "x"}).ok());
    ASSERT_TRUE((*sm)->flush_all().ok());
  }
}

}  // namespace
}  // namespace kvc::storage
