#include "kvc/common/crc32c.h"

#include <gtest/gtest.h>

#include <random>
#include <string>

namespace kvc::crc32c {
namespace {

TEST(Crc32cTest, MatchesRfc3720Vectors) {
  EXPECT_EQ(value("123456789"), 0xe3069283u);
  EXPECT_EQ(value(std::string(32, '\0')), 0x8a9136aau);
  EXPECT_EQ(value(std::string(32, '\xff')), 0x62a8ab43u);
  std::string ascending, descending;
  for (int i = 0; i < 32; ++i) {
    ascending.push_back(static_cast<char>(i));
    descending.push_back(static_cast<char>(31 - i));
  }
  EXPECT_EQ(value(ascending), 0x46dd794eu);
  EXPECT_EQ(value(descending), 0x113fdb5cu);
}

TEST(Crc32cTest, ExtendEqualsWholeAtEverySplit) {
  std::mt19937 rng(301);
  std::string data(1000, '\0');
  for (auto& c : data) c = static_cast<char>(rng());
  const std::uint32_t whole = value(data);
  for (std::size_t split = 0; split <= data.size(); split += 7) {
    EXPECT_EQ(extend(value(data.data(), split), data.data() + split, data.size() - split), whole)
        << "split " << split;
  }
}

TEST(Crc32cTest, PortableAndHardwarePathsAgree) {
  std::mt19937 rng(7);
  for (std::size_t n = 0; n < 300; ++n) {
    std::string data(n, '\0');
    for (auto& c : data) c = static_cast<char>(rng());
    EXPECT_EQ(detail::extend_portable(0, data.data(), n), value(data)) << "n=" << n;
  }
}

TEST(Crc32cTest, MaskRoundTripsAndDiffers) {
  const std::uint32_t crc = value("foo");
  EXPECT_NE(mask(crc), crc);
  EXPECT_NE(mask(mask(crc)), crc);
  EXPECT_EQ(unmask(mask(crc)), crc);
  EXPECT_EQ(unmask(unmask(mask(mask(crc)))), crc);
}

}  // namespace
}  // namespace kvc::crc32c
