// The server simulation (lib/kvc/sim/server_sim.h): the real Engine code under the simulator.
// A few seeds must pass every check (the CI runs 1,000 and each planted server-level bug through
// kvc-sim --server: tests/sim/CMakeLists.txt).
#include "kvc/sim/server_sim.h"

#include <gtest/gtest.h>

#include <cstdlib>
#include <string>

namespace kvc::sim {
namespace {

std::uint64_t start_seed() {
  const char* s = std::getenv("KVC_SIM_START_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : 1;
}

TEST(ServerSimTest, SeedsPass) {
  const std::uint64_t first = start_seed();
  for (std::uint64_t seed = first; seed < first + 5; ++seed) {
    ServerSimOptions o;
    o.seed = seed;
    ServerSimResult r = run_server_simulation(o);
    ASSERT_TRUE(r.ok) << "seed " << seed << ": " << r.violation << " at t=" << r.at_us;
    EXPECT_TRUE(r.stats.linearizability_checked);
    EXPECT_GT(r.stats.operations_ok, 0u) << "seed " << seed;
    std::cout << "seed " << seed << " events=" << r.stats.events << " ops=" << r.stats.operations
              << " ok=" << r.stats.operations_ok << " commit=" << r.stats.committed
              << " crashes=" << r.stats.crashes << " elections=" << r.stats.elections << "\n";
  }
}

}  // namespace
}  // namespace kvc::sim
