// The simulator as a whole: replay is exact, a correct core passes, a broken one is caught
// with a readable trace.
#include "kvc/sim/sim.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace kvc::sim {
namespace {

std::vector<std::string> traced_run(SimOptions opt, SimResult* result) {
  std::vector<std::string> lines;
  opt.trace = true;
  opt.trace_sink = [&](std::string_view l) { lines.emplace_back(l); };
  *result = run_simulation(opt);
  return lines;
}

TEST(SimulatorTest, SameSeedReplaysBitForBit) {
  SimOptions opt;
  opt.seed = 77;
  opt.faults = FaultMix::kAll;
  SimResult a, b;
  const auto ta = traced_run(opt, &a);
  const auto tb = traced_run(opt, &b);
  EXPECT_TRUE(a.ok) << a.violation;
  EXPECT_GT(ta.size(), 1000u);
  EXPECT_EQ(ta, tb);
  EXPECT_EQ(a.stats.messages, b.stats.messages);
  // Tracing does not change the run.
  SimResult quiet = run_simulation(opt);
  EXPECT_EQ(quiet.stats.messages, a.stats.messages);
  EXPECT_EQ(quiet.stats.operations_ok, a.stats.operations_ok);
}

TEST(SimulatorTest, ExplicitChoicesReplayAMixedRun) {
  SimOptions mixed;
  mixed.seed = 12;
  SimResult r = run_simulation(mixed);
  SimOptions explicit_opt = mixed;
  explicit_opt.members = r.members;
  explicit_opt.faults = r.faults;
  SimResult again = run_simulation(explicit_opt);
  EXPECT_EQ(again.stats.messages, r.stats.messages);
  EXPECT_EQ(again.stats.operations_ok, r.stats.operations_ok);
}

TEST(SimulatorTest, EveryFaultMixPassesOnACorrectCore) {
  for (FaultMix mix :
       {FaultMix::kNone, FaultMix::kNet, FaultMix::kPartition, FaultMix::kCrash,
        FaultMix::kMembership, FaultMix::kRepair, FaultMix::kAll, FaultMix::kTargeted}) {
    std::uint64_t ok_ops = 0;
    for (int members : {3, 5}) {
      for (std::uint64_t seed = 1; seed <= 5; ++seed) {
        SimOptions opt;
        opt.seed = seed;
        opt.members = members;
        opt.faults = mix;
        SimResult r = run_simulation(opt);
        EXPECT_TRUE(r.ok) << replay_command(opt, r) << ": " << r.violation;
        ok_ops += r.stats.operations_ok;
      }
    }
    // kTargeted stops most leaders soon after they win (that is its job): fewer operations
    // complete, but some must.
    EXPECT_GT(ok_ops, mix == FaultMix::kTargeted ? 30u : 100u) << fault_mix_name(mix);
  }
}

TEST(SimulatorTest, RepairFaultsAreDetectedAndRepairedWithoutAViolation) {
  // Rollbacks to older disk images and damaged state values, over a seed range: every seed
  // passes every check, and the faults really happen, are found and are repaired.
  SimStats total;
  int windows = 0, state_repairs = 0;
  for (std::uint64_t seed = 1; seed <= 60; ++seed) {
    SimOptions opt;
    opt.seed = seed;
    opt.faults = FaultMix::kRepair;
    SimResult r;
    const auto lines = traced_run(opt, &r);
    ASSERT_TRUE(r.ok) << replay_command(opt, r) << ": " << r.violation;
    total.rollbacks += r.stats.rollbacks;
    total.losses_detected += r.stats.losses_detected;
    total.damages += r.stats.damages;
    total.damage_detected += r.stats.damage_detected;
    total.repairs += r.stats.repairs;
    total.operations_ok += r.stats.operations_ok;
    for (const std::string& l : lines) {
      if (l.find("rollback window of member") != std::string::npos) ++windows;
      if (l.find("state repaired") != std::string::npos) ++state_repairs;
    }
  }
  EXPECT_GT(total.rollbacks, 20u);
  EXPECT_GT(total.losses_detected, 10u);
  EXPECT_GT(total.damages, 20u);
  EXPECT_GT(total.damage_detected, 10u);
  EXPECT_GT(total.repairs, 20u);
  EXPECT_GT(windows, 20);  // every rollback window ended (the leader verified or repaired it)
  EXPECT_GT(state_repairs, 10);
  EXPECT_GT(total.operations_ok, 500u);
}

TEST(SimulatorTest, NamesRoundTrip) {
  FaultMix m;
  for (FaultMix want : {FaultMix::kNone, FaultMix::kRepair, FaultMix::kAll, FaultMix::kTargeted,
                        FaultMix::kMixed}) {
    ASSERT_TRUE(fault_mix_from_name(fault_mix_name(want), m));
    EXPECT_EQ(m, want);
  }
  EXPECT_FALSE(fault_mix_from_name("bogus", m));
  for (raft::Mutation mu : raft::kAllMutations) {
    EXPECT_EQ(raft::mutation_from_name(raft::mutation_name(mu)), mu);
  }
}

}  // namespace
}  // namespace kvc::sim
