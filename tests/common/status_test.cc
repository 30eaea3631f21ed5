#include "kvc/common/status.h"

#include <gtest/gtest.h>

#include <cerrno>

namespace kvc {
namespace {

TEST(StatusTest, DefaultIsOk) {
  Status s;
  EXPECT_TRUE(s.ok());
  EXPECT_EQ(s.code(), Code::kOk);
  EXPECT_EQ(s.to_string(), "ok");
}

TEST(StatusTest, FactoriesCarryCodeAndMessage) {
  Status s = Status::corruption("wal/0001.seg: bad crc at offset 42");
  EXPECT_FALSE(s.ok());
  EXPECT_EQ(s.code(), Code::kCorruption);
  EXPECT_EQ(s.message(), "wal/0001.seg: bad crc at offset 42");
  EXPECT_EQ(s.to_string(), "corruption: wal/0001.seg: bad crc at offset 42");
}

TEST(StatusTest, WithContextPrefixesMessageAndKeepsCode) {
  Status s = Status::not_found("key a").with_context("get");
  EXPECT_EQ(s.code(), Code::kNotFound);
  EXPECT_EQ(s.message(), "get: key a");
  EXPECT_TRUE(Status().with_context("x").ok());
}

TEST(StatusTest, FromErrnoMapsDiskFullToResourceExhausted) {
  EXPECT_EQ(Status::from_errno("write x", ENOSPC).code(), Code::kResourceExhausted);
  Status s = Status::from_errno("fsync wal", EIO);
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_NE(s.message().find("fsync wal: "), std::string::npos);
}

TEST(StatusTest, ExitCodesFollowTheDesignTable) {
  const struct {
    Status status;
    int want;
  } cases[] = {
      {Status(), 0},
      {Status::invalid_argument("x"), 1},
      {Status::corruption("x"), 1},
      {Status::not_found("x"), 3},
      {Status::compare_failed("x"), 4},
      {Status::unavailable("x"), 5},
      {Status::not_leader("x"), 5},
      {Status::shutting_down("x"), 5},
      {Status::timeout("x"), 6},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.status.to_string());
    EXPECT_EQ(exit_code(c.status), c.want);
  }
}

Result<int> parse_positive(int v) {
  if (v <= 0) return Status::invalid_argument("not positive");
  return v;
}

TEST(ResultTest, HoldsValueOrStatus) {
  Result<int> good = parse_positive(3);
  ASSERT_TRUE(good.ok());
  EXPECT_EQ(*good, 3);
  EXPECT_TRUE(good.status().ok());

  Result<int> bad = parse_positive(-1);
  EXPECT_FALSE(bad.ok());
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
  EXPECT_EQ(bad.value_or(7), 7);
}

TEST(ResultTest, MovesOutValue) {
  Result<std::string> r(std::string(100, 'x'));
  std::string s = std::move(r).value();
  EXPECT_EQ(s.size(), 100u);
}

TEST(ResultDeathTest, ValueOfFailedResultAborts) {
  Result<int> bad = parse_positive(0);
  EXPECT_DEATH((void)bad.value(), "check failed at .*value\\(\\) of a failed Result");
}

TEST(ResultDeathTest, OkStatusWithoutValueAborts) {
  EXPECT_DEATH(
      {
        Result<int> r{Status()};
        (void)r;
      },
      "ok Status without a value");
}

}  // namespace
}  // namespace kvc
