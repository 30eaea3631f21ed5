// The simulator catches a deliberately broken core and reports it with a trace that ends at
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

}  // namespace
}  // namespace kvc::sim
