#include "kvc/common/text.h"

#include <gtest/gtest.h>

#include <random>

namespace kvc {
namespace {

TEST(TextTest, Utf8Validation) {
  EXPECT_TRUE(is_valid_utf8(""));
  EXPECT_TRUE(is_valid_utf8("plain"));
  EXPECT_TRUE(is_valid_utf8("caf\xc3\xa9 \xf0\x9f\x98\x80"));
  EXPECT_FALSE(is_valid_utf8("\xff"));
  EXPECT_FALSE(is_valid_utf8("\xc3"));
  EXPECT_FALSE(is_valid_utf8("\xc0\xaf"));      // overlong
  EXPECT_FALSE(is_valid_utf8("\xed\xa0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_utf8("\xf4\x90\x80\x80"));  // past U+10FFFF
}

TEST(TextTest, Base64KnownVectorsAndRoundTrip) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  std::mt19937 rng(3);
  for (int n = 0; n < 100; ++n) {
    std::string s(static_cast<std::size_t>(n), '\0');
    for (auto& c : s) c = static_cast<char>(rng());
    Result<std::string> back = base64_decode(base64_encode(s));
    ASSERT_TRUE(back.ok());
    EXPECT_EQ(*back, s);
  }
  for (const char* bad : {"Zg=", "Z===", "Zg=a", "Zm9v!", "Zg==Zg=="}) {
    EXPECT_FALSE(base64_decode(bad).ok()) << bad;
  }
}

TEST(TextTest, Durations) {
  const struct {
    const char* in;
    std::uint64_t ms;
  } good[] = {{"5", 5000}, {"5s", 5000}, {"250ms", 250}, {"1.5s", 1500}, {"2m", 120000},
              {"1h", 3600000}, {"0", 0}};
  for (const auto& c : good) {
    Result<std::uint64_t> r = parse_duration_ms(c.in);
    ASSERT_TRUE(r.ok()) << c.in;
    EXPECT_EQ(*r, c.ms) << c.in;
  }
  for (const char* bad : {"", "s", "5x", "-1s", "1..5s", "5 s"}) {
    EXPECT_FALSE(parse_duration_ms(bad).ok()) << bad;
  }
}

}  // namespace
}  // namespace kvc
