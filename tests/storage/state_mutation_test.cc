// Teeth: the crash and layering checkers (state_checker.h) run against deliberately broken
// builds of the state machine (kvc_storage_mutable, state_mutation.h) and must catch each one.
// If a checker stopped catching its mutation, it would pass a real bug of that kind too.
#include "kvc/storage/state_mutation.h"

#include <gtest/gtest.h>

#include "state_checker.h"
#include "state_damage.h"

namespace kvc::storage {
namespace {

using testing::check_damaged_value_is_refused;
using testing::check_exactly_once_in_process;
using testing::check_exactly_once_with_sigkill;
using testing::fresh_dir;

class StateMutationTest : public ::testing::Test {
 protected:
  void TearDown() override { g_state_mutation = StateMutation::kNone; }
};

TEST_F(StateMutationTest, CleanBuildPassesBothCheckers) {
  EXPECT_EQ(check_exactly_once_in_process(fresh_dir("a"), 1, 10, 100), "");
  EXPECT_EQ(check_exactly_once_with_sigkill(fresh_dir("b"), 2, 8, 120), "");
}

TEST_F(StateMutationTest, CleanBuildRefusesADamagedValue) {
  EXPECT_EQ(check_damaged_value_is_refused(fresh_dir()), "");
}

TEST_F(StateMutationTest, DamageCheckerCatchesReadsThatSkipTheChecksum) {
  g_state_mutation = StateMutation::kReadsSkipChecksum;
  const std::string err = check_damaged_value_is_refused(fresh_dir());
  EXPECT_NE(err, "");
  std::printf("caught: %s\n", err.c_str());
}

TEST_F(StateMutationTest, SigkillCheckerCatchesMetaInASeparateTransaction) {
  g_state_mutation = StateMutation::kMetaInSeparateTxn;
  const std::string err = check_exactly_once_with_sigkill(fresh_dir(), 2, 12, 150);
  EXPECT_NE(err, "");
  std::printf("caught: %s\n", err.c_str());
}

TEST_F(StateMutationTest, CheckerCatchesAStaleReadViewAfterRetire) {
  g_state_mutation = StateMutation::kStaleReadViewAfterRetire;
  const std::string err = check_exactly_once_in_process(fresh_dir(), 1, 25, 120);
  EXPECT_NE(err, "");
  std::printf("caught: %s\n", err.c_str());
}

TEST_F(StateMutationTest, CheckerCatchesAFlushThatDropsTombstones) {
  g_state_mutation = StateMutation::kFlushSkipsTombstones;
  const std::string err = check_exactly_once_in_process(fresh_dir(), 1, 25, 120);
  EXPECT_NE(err, "");
  std::printf("caught: %s\n", err.c_str());
}

TEST_F(StateMutationTest, CheckerCatchesATxnThatAppliesHalfItsOps) {
  g_state_mutation = StateMutation::kTxnAppliesHalf;
  const std::string err = check_exactly_once_in_process(fresh_dir(), 1, 10, 100);
  EXPECT_NE(err, "");
  std::printf("caught: %s\n", err.c_str());
}

}  // namespace
}  // namespace kvc::storage
