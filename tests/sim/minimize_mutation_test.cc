// Fault minimization of a failing Raft-core seed: a deliberately broken core (commit-old-term,
// the Figure 8 bug) caught by a known seed is minimized to strictly fewer faults, and the
// minimized run replays and fails the same way. Built only with -DKVC_MUTATIONS=ON.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kvc/raft/mutation.h"
#include "kvc/sim/sim.h"
#include "kvc/sim/sim_minimize.h"

namespace kvc::sim {
namespace {

std::vector<std::uint64_t> applied(const SimResult& r) {
  std::vector<std::uint64_t> out;
  for (const FaultRecord& f : r.fault_log) {
    if (f.applied) out.push_back(f.ordinal);
  }
  return out;
}

TEST(SimulatorMinimizeTest, CommitOldTermSeedNeedsFewerFaults) {
  static_assert(raft::kMutationsCompiled);
  // A seed that catches commit-old-term with the targeted faults (the sixth from 1 since a
  // leader sends appends during its own write: kvc-sim --mutation commit-old-term --faults
  // targeted --start-seed 131 --expect-violation) and minimizes within the bound.
  SimOptions opt;
  opt.seed = 147;
  opt.members = 3;
  opt.faults = FaultMix::kTargeted;
  opt.mutation = raft::Mutation::kCommitOldTerm;
  opt.record = true;
  const SimResult failed = run_simulation(opt);
  ASSERT_FALSE(failed.ok);
  const std::string kind = violation_kind(failed.violation);
  ASSERT_EQ(kind, "leader completeness") << failed.violation;
  const std::vector<std::uint64_t> all = applied(failed);
  ASSERT_GT(all.size(), 20u);

  const FaultRerun rerun =
      [&](const std::set<std::uint64_t>& only) -> std::optional<std::vector<std::uint64_t>> {
    SimOptions o = opt;
    o.fault_filter.only = only;
    const SimResult r = run_simulation(o);
    if (r.ok || violation_kind(r.violation) != kind) return std::nullopt;
    return applied(r);
  };
  const MinimizeOutcome m = minimize_faults(all, fault_groups(failed.fault_log),
                                            message_faults(failed.fault_log), rerun, {});
  EXPECT_LT(m.kept.size(), all.size());
  EXPECT_LE(m.runs, 300);
  std::cout << "commit-old-term seed 147: " << m.kept.size() << " of " << all.size()
            << " faults needed (" << m.runs << " reruns, " << m.seconds << " s)\n";

  // The replay: only the kept faults apply, the run fails the same way, twice alike.
  SimOptions replay = opt;
  replay.fault_filter.only = std::set<std::uint64_t>(m.kept.begin(), m.kept.end());
  const SimResult a = run_simulation(replay);
  const SimResult b = run_simulation(replay);
  ASSERT_FALSE(a.ok);
  EXPECT_EQ(violation_kind(a.violation), kind) << a.violation;
  EXPECT_EQ(a.violation, b.violation);
  EXPECT_EQ(applied(a), m.kept);
  const std::string line = replay_command(replay, a);
  EXPECT_NE(line.find("--only-faults " + format_fault_list(*replay.fault_filter.only)),
            std::string::npos)
      << line;
  EXPECT_NE(line.find("--mutation commit-old-term"), std::string::npos) << line;
}

}  // namespace
}  // namespace kvc::sim
