// The server simulation's hash audits (server_sim_audit.cc): the leader's state hash at a
// barrier, taken on its scan thread as kvc-ctl check hash takes it, is compared with every other
// running member's hash at that index. Unbroken members always agree (and the audits do run:
// barriers are hashed and compared under crashes, partitions, membership changes, damage and
// repairs); one member that applies puts differently (diverge-every-put, planted in one member
// only) is caught on every seed, as hashes that differ.
#include <gtest/gtest.h>

#include <string>

#include "kvc/sim/server_sim.h"

namespace kvc::sim {
namespace {

constexpr std::uint64_t kSeeds = 5;

TEST(ServerSimHashAuditTest, MembersAgreeAtEveryAuditedBarrier) {
  std::uint64_t audits = 0, compared = 0;
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    ServerSimOptions o;
    o.seed = seed;
    const ServerSimResult r = run_server_simulation(o);
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.violation;
    audits += r.stats.hash_audits;
    compared += r.stats.hashes_compared;
  }
  // About 7 audits per seed, each compared with 2-4 members (those running and caught up).
  EXPECT_GE(audits, kSeeds * 3);
  EXPECT_GE(compared, audits);
}

TEST(ServerSimHashAuditTest, AMemberWhoseStateDivergesIsCaught) {
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    ServerSimOptions o;
    o.seed = seed;
    o.members = 3;
    o.mutation = "diverge-every-put";
    const ServerSimResult r = run_server_simulation(o);
    ASSERT_FALSE(r.ok) << "seed " << seed << ": the audits missed a diverged member";
    EXPECT_NE(r.violation.find("state hashes differ at barrier index"), std::string::npos)
        << "seed " << seed << ": " << r.violation;
  }
}

}  // namespace
}  // namespace kvc::sim
