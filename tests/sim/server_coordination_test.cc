// The server simulation's txn and lease workload (ServerSimOptions::coordination) reaches what
// its checks are about: txns that commit, keep-alives that are answered, leases that expire on
// their own and whose liveness deadline a run reaches, and every answered txn is matched to its
// committed entry and checked by the txn model. Without these, the lease checker, the txn model
// and the txn part of the linearizability check would pass vacuously.
#include <gtest/gtest.h>

#include "kvc/sim/server_sim.h"

namespace kvc::sim {
namespace {

TEST(ServerSimCoordinationTest, WorkloadReachesTxnsAndLeases) {
  ServerSimStats total;
  for (std::uint64_t seed = 1; seed <= 4; ++seed) {
    ServerSimOptions o;
    o.seed = seed;
    o.members = 3;
    const ServerSimResult r = run_server_simulation(o);
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.violation;
    EXPECT_TRUE(r.stats.linearizability_checked) << "seed " << seed;
    total.txns_ok += r.stats.txns_ok;
    EXPECT_EQ(r.stats.txns_checked, r.stats.txns_ok) << "seed " << seed;
    total.keep_alives += r.stats.keep_alives;
    total.lease_expiries += r.stats.lease_expiries;
    total.lease_liveness_checked += r.stats.lease_liveness_checked;
  }
  EXPECT_GT(total.txns_ok, 50u);
  EXPECT_GT(total.keep_alives, 20u);
  EXPECT_GT(total.lease_expiries, 5u);
  EXPECT_GT(total.lease_liveness_checked, 0u);
}

TEST(ServerSimCoordinationTest, OffMeansKvOnly) {
  ServerSimOptions o;
  o.seed = 1;
  o.members = 3;
  o.coordination = false;
  const ServerSimResult r = run_server_simulation(o);
  ASSERT_TRUE(r.ok) << r.violation;
  EXPECT_EQ(r.stats.txns, 0u);
  EXPECT_EQ(r.stats.lease_grants, 0u);
}

}  // namespace
}  // namespace kvc::sim
