#include "kvc/storage/checked_fields.h"

#include <gtest/gtest.h>

namespace kvc::storage {
namespace {

TEST(CheckedFieldsTest, SealedFieldsParseBackInOrder) {
  const std::string text = seal_fields("# a comment\nname=m1\n\ntoken=a=b\n");
  EXPECT_EQ(text.substr(text.size() - 16, 7), "crc32c=");
  Result<std::vector<CheckedField>> f = parse_checked_fields(text);
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(*f, (std::vector<CheckedField>{{"name", "m1"}, {"token", "a=b"}}));
  // A CRLF line end on the crc32c line (an editor's) is tolerated.
  std::string crlf = text;
  crlf.insert(crlf.size() - 1, "\r");
  EXPECT_TRUE(parse_checked_fields(crlf).ok());
}

TEST(CheckedFieldsTest, DamageIsCorruptionWithAReason) {
  const std::string good = seal_fields("name=m1\n");
  std::string edited = good;
  edited[5] = '2';
  std::string bad_hex = good;
  bad_hex[good.size() - 2] = 'z';
  const struct {
    const char* name;
    std::string text;
    const char* reason;
  } cases[] = {
      {"empty", "", "no crc32c line"},
      {"truncated", good.substr(0, good.size() - 12), "no crc32c line"},
      {"crc not at a line start", "name=m1 crc32c=00000000\n", "no crc32c line"},
      {"bad hex", bad_hex, "bad crc32c"},
      {"edited", edited, "checksum mismatch"},
      {"no equals sign", seal_fields("name\n"), "malformed line 'name'"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<std::vector<CheckedField>> f = parse_checked_fields(c.text);
    ASSERT_FALSE(f.ok());
    EXPECT_EQ(f.status().code(), Code::kCorruption);
    EXPECT_NE(f.status().message().find(c.reason), std::string::npos) << f.status().to_string();
  }
}

}  // namespace
}  // namespace kvc::storage
