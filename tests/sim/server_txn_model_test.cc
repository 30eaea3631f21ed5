// The server simulation's txn checker (server_sim_txns.cc) has teeth where the per-key
// projection of txns into the linearizability history has none: a state machine that takes the
// wrong branch (txn-wrong-branch: only the first compare is evaluated) or whose gets read past
// the txn's own later writes (txn-torn-read) passes the projection alone on every seed tried,
// and the txn model catches both on the first seed.
#include <gtest/gtest.h>

#include <string>

#include "kvc/sim/server_sim.h"

namespace kvc::sim {
namespace {

constexpr std::uint64_t kSeeds = 5;

class ServerTxnModelTest : public testing::TestWithParam<std::string> {};

TEST_P(ServerTxnModelTest, ProjectionAloneMissesItTheModelCatchesIt) {
  for (std::uint64_t seed = 1; seed <= kSeeds; ++seed) {
    ServerSimOptions o;
    o.seed = seed;
    o.members = 3;
    o.mutation = GetParam();
    o.txn_model = false;
    const ServerSimResult r = run_server_simulation(o);
    EXPECT_TRUE(r.ok) << "seed " << seed << ": the projection caught it: " << r.violation;
    EXPECT_EQ(r.stats.txns_checked, 0u);
  }
  ServerSimOptions o;
  o.seed = 1;
  o.members = 3;
  o.mutation = GetParam();
  const ServerSimResult r = run_server_simulation(o);
  ASSERT_FALSE(r.ok) << "seed 1: the txn model missed " << GetParam();
  EXPECT_NE(r.violation.find("committed at index"), std::string::npos) << r.violation;
}

INSTANTIATE_TEST_SUITE_P(Mutations, ServerTxnModelTest,
                         testing::Values("txn-wrong-branch", "txn-torn-read"),
                         [](const testing::TestParamInfo<std::string>& p) {
                           std::string name = p.param;
                           for (char& ch : name) ch = ch == '-' ? '_' : ch;
                           return name;
                         });

}  // namespace
}  // namespace kvc::sim
