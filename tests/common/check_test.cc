#include "kvc/common/check.h"

#include <gtest/gtest.h>

namespace {

TEST(CheckDeathTest, FailingCheckPrintsFileLineConditionAndMessage) {
  EXPECT_DEATH(KVC_CHECK(1 + 1 == 3, "arithmetic broke"),
               "kvc: check failed at tests/common/check_test.cc:[0-9]+: 1 \\+ 1 == 3: "
               "arithmetic broke");
}

TEST(CheckDeathTest, ComparisonCheckPrintsBothValues) {
  const int applied = 7, committed = 5;
  EXPECT_DEATH(KVC_CHECK_LE(applied, committed), "applied <= committed: \\(7 vs 5\\)");
}

TEST(CheckTest, PassingChecksDoNothing) {
  int evaluated = 0;
  KVC_CHECK(++evaluated == 1, "evaluated once");
  KVC_CHECK_EQ(evaluated, 1);
  KVC_CHECK_LT(0, evaluated);
  EXPECT_EQ(evaluated, 1);
}

int g_hook_calls = 0;
void count_hook() {
  ++g_hook_calls;
  std::fputs("hook ran\n", stderr);
}

TEST(CheckDeathTest, FailureRunsTheHookBeforeAborting) {
  kvc::set_check_failure_hook(&count_hook);
  EXPECT_DEATH(KVC_CHECK(false, "x"), "hook ran");
  kvc::set_check_failure_hook(nullptr);
}

}  // namespace
