#include "kvc/common/coding.h"

#include <gtest/gtest.h>

#include <string>

namespace kvc {
namespace {

using namespace std::string_literals;

TEST(CodingTest, LittleEndianLayout) {
  std::string s;
  put_u32_le(s, 0x01020304u);
  put_u64_le(s, 0x1122334455667788ull);
  EXPECT_EQ(s, "\x04\x03\x02\x01\x88\x77\x66\x55\x44\x33\x22\x11"s);
  EXPECT_EQ(get_u32_le(s.data()), 0x01020304u);
  EXPECT_EQ(get_u64_le(s.data() + 4), 0x1122334455667788ull);
  EXPECT_EQ(u64_le_bytes(0x1122334455667788ull), s.substr(4));
}

TEST(CodingTest, BigEndianLayout) {
  std::string s;
  put_u32_be(s, 0x01020304u);
  put_u64_be(s, 0x1122334455667788ull);
  EXPECT_EQ(s, "\x01\x02\x03\x04\x11\x22\x33\x44\x55\x66\x77\x88"s);
  EXPECT_EQ(get_u32_be(s.data()), 0x01020304u);
  EXPECT_EQ(get_u64_be(s.data() + 4), 0x1122334455667788ull);
}

TEST(CodingTest, StoreWritesInPlaceAndHighBytesSurvive) {
  const std::uint64_t values[] = {
      0, 1, 0x7f, 0x80, 0xff, 0xffffffffull, 0x8000000000000000ull, UINT64_MAX};
  for (const std::uint64_t v : values) {
    SCOPED_TRACE(v);
    char b[8];
    store_u64_le(b, v);
    EXPECT_EQ(get_u64_le(b), v);
    store_u64_be(b, v);
    EXPECT_EQ(get_u64_be(b), v);
    const auto v32 = static_cast<std::uint32_t>(v);
    store_u32_le(b, v32);
    EXPECT_EQ(get_u32_le(b), v32);
    store_u32_be(b, v32);
    EXPECT_EQ(get_u32_be(b), v32);
  }
}

static_assert(get_u32_be("\x00\x00\x01\x00") == 256u, "usable in constant expressions");

}  // namespace
}  // namespace kvc
