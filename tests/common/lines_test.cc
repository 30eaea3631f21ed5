#include "kvc/common/lines.h"

#include <gtest/gtest.h>

namespace kvc {
namespace {

TEST(LinesTest, SplitLinesKeepsInnerEmptyLinesAndALastLineWithoutNewline) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(split_lines(""), V{});
  EXPECT_EQ(split_lines("\n"), V{""});
  EXPECT_EQ(split_lines("a\n\nb\n"), (V{"a", "", "b"}));
  EXPECT_EQ(split_lines("a\nb"), (V{"a", "b"}));
  EXPECT_EQ(split_lines("a\r\n"), V{"a\r"});
}

}  // namespace
}  // namespace kvc
