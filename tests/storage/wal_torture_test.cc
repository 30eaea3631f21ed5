// The crash tortures of wal_torture.h over many seeds: the real Wal and snapshot files on a
// simulated disk that loses, keeps or tears unsynced writes, fails fsyncs and flips bits. The
// start seed is KVC_SIM_START_SEED when set; a failure prints the seed to rerun.
#include "wal_torture.h"

#include <gtest/gtest.h>

#include <chrono>
#include <cstdio>

namespace kvc::storage::testing {
namespace {

TEST(WalTortureTest, SyncedDataSurvivesEveryCrashAndDamageIsNeverReturned) {
  const std::uint64_t first = start_seed(1);
  // Fewer under the sanitizers (CI's time budget): they check memory; the regular build checks
  // the logic over all 2,000.
#if defined(__SANITIZE_ADDRESS__)
  constexpr std::uint64_t kSeeds = 1000;
#else
  constexpr std::uint64_t kSeeds = 2000;
#endif
  TortureStats stats;
  const auto t0 = std::chrono::steady_clock::now();
  for (std::uint64_t seed = first; seed < first + kSeeds; ++seed) {
    const std::string err = run_wal_torture(seed, TortureOptions{}, &stats);
    ASSERT_EQ(err, "") << "rerun: KVC_SIM_START_SEED=" << seed
                       << " ctest -R WalTortureTest --output-on-failure";
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("wal torture: seeds %llu..%llu in %.2f s: %s\n",
              static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + kSeeds - 1), secs, stats.describe().c_str());
  // The torture exercised what it claims to.
  EXPECT_GT(stats.crashes, kSeeds);
  EXPECT_GT(stats.failed_syncs, kSeeds / 10);
  EXPECT_GT(stats.torn_tails, kSeeds / 10);
  EXPECT_GT(stats.flips, kSeeds / 5);
  EXPECT_GT(stats.flips_refused, 0u);
}

TEST(WalTortureTest, SnapshotFilesAreAbsentOrWholeAfterEveryCrash) {
  const std::uint64_t first = start_seed(1);
  for (std::uint64_t seed = first; seed < first + 500; ++seed) {
    const std::string err = run_snapshot_torture(seed);
    ASSERT_EQ(err, "") << "rerun: KVC_SIM_START_SEED=" << seed
                       << " ctest -R WalTortureTest --output-on-failure";
  }
}

}  // namespace
}  // namespace kvc::storage::testing
