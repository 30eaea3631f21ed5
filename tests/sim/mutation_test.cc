// The simulator catches deliberately broken cores and reports them with a trace that ends at
// the violation and a replay command. Built only with -DKVC_MUTATIONS=ON.
#include "kvc/raft/mutation.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kvc/sim/sim.h"

namespace kvc::sim {
namespace {

TEST(SimulatorMutationTest, BrokenLogMatchingIsCaughtWithATrace) {
  static_assert(raft::kMutationsCompiled);
  SimOptions opt;
  opt.faults = FaultMix::kAll;
  opt.mutation = raft::Mutation::kNoLogMatchingCheck;
  bool caught = false;
  for (std::uint64_t seed = 1; seed <= 100 && !caught; ++seed) {
    opt.seed = seed;
    SimResult r;
    std::vector<std::string> lines;
    opt.trace = true;
    opt.trace_sink = [&](std::string_view l) { lines.emplace_back(l); };
    r = run_simulation(opt);
    if (r.ok) continue;
    caught = true;
    EXPECT_NE(r.violation.find("log matching"), std::string::npos) << r.violation;
    ASSERT_FALSE(lines.empty());
    EXPECT_NE(lines.back().find("VIOLATION"), std::string::npos);
    EXPECT_NE(replay_command(opt, r).find("--mutation no-log-matching-check"), std::string::npos);
  }
  EXPECT_TRUE(caught);
}

TEST(SimulatorMutationTest, IgnoredRepairLosesAcknowledgedWritesAndIsCaught) {
  // With repair-ignored, a member restarted on an older copy of its disk votes as if it had
  // lost nothing: once the leader that saw it acknowledge the lost entries is gone, it elects
  // a candidate that lacks them. The same seeds pass with the real core.
  SimOptions opt;
  opt.faults = FaultMix::kRepair;
  int caught = 0;
  for (std::uint64_t seed = 1; seed <= 300 && caught < 3; ++seed) {
    opt.seed = seed;
    opt.mutation = raft::Mutation::kRepairIgnored;
    std::vector<std::string> lines;
    opt.trace = true;
    opt.trace_sink = [&](std::string_view l) { lines.emplace_back(l); };
    const SimResult r = run_simulation(opt);
    if (r.ok || r.violation.find("leader completeness") == std::string::npos) continue;
    ++caught;
    bool rolled_back = false;
    for (const std::string& l : lines)
      rolled_back |= l.find("rollback member") != std::string::npos;
    EXPECT_TRUE(rolled_back) << replay_command(opt, r);
    EXPECT_NE(replay_command(opt, r).find("--mutation repair-ignored"), std::string::npos);
    opt.mutation = raft::Mutation::kNone;
    opt.trace = false;
    const SimResult good = run_simulation(opt);
    EXPECT_TRUE(good.ok) << replay_command(opt, good) << ": " << good.violation;
  }
  EXPECT_EQ(caught, 3);
}

}  // namespace
}  // namespace kvc::sim
