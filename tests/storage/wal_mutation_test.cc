// Teeth: the WAL crash torture (wal_torture.h) runs against deliberately broken builds of the
// WAL (kvc_storage_mutable, wal_mutation.h) and must catch each within a bounded number of
// seeds. If it stopped catching one, it would pass a real bug of that kind too.
#include "kvc/storage/wal_mutation.h"

#include <gtest/gtest.h>

#include <cstdio>

#include "wal_torture.h"

namespace kvc::storage {
namespace {

using testing::run_wal_torture;
using testing::start_seed;
using testing::TortureOptions;

class WalMutationTest : public ::testing::Test {
 protected:
  void TearDown() override { g_wal_mutation = WalMutation::kNone; }
};

class WalMutationCatchTest : public WalMutationTest,
                             public ::testing::WithParamInterface<WalMutation> {};

TEST_F(WalMutationTest, CleanBuildPassesTheTorture) {
  for (std::uint64_t seed = 1; seed <= 200; ++seed) {
    ASSERT_EQ(run_wal_torture(seed, TortureOptions{}), "") << "seed " << seed;
  }
}

TEST_P(WalMutationCatchTest, TortureCatchesTheMutation) {
  constexpr std::uint64_t kMaxSeeds = 200;
  g_wal_mutation = GetParam();
  const std::uint64_t first = start_seed(1);
  for (std::uint64_t seed = first; seed < first + kMaxSeeds; ++seed) {
    const std::string err = run_wal_torture(seed, TortureOptions{});
    if (!err.empty()) {
      std::printf("%s caught after %llu seed(s): %s\n",
                  std::string(wal_mutation_name(GetParam())).c_str(),
                  static_cast<unsigned long long>(seed - first + 1), err.c_str());
      return;
    }
  }
  ADD_FAILURE() << wal_mutation_name(GetParam()) << " went unnoticed for " << kMaxSeeds
                << " seeds from " << first;
}

INSTANTIATE_TEST_SUITE_P(All, WalMutationCatchTest, ::testing::ValuesIn(kAllWalMutations),
                         [](const ::testing::TestParamInfo<WalMutation>& p) {
                           std::string name;
                           for (char c : wal_mutation_name(p.param)) {
                             if (c != '-') name += c;
                           }
                           return name;
                         });

}  // namespace
}  // namespace kvc::storage
