#include "kvc/common/log.h"

#include <gtest/gtest.h>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "support/test_dir.h"

namespace kvc {
namespace {

TEST(JsonEscapeTest, EscapesQuotesControlsAndInvalidUtf8) {
  const struct {
    const char* name;
    std::string in;
    std::string want;
  } cases[] = {
      {"plain", "hello", "hello"},
      {"quote and backslash", "a\"b\\c", "a\\\"b\\\\c"},
      {"newline and tab", "a\nb\tc", "a\\nb\\tc"},
      {"control byte", std::string("\x01", 1), "\\u0001"},
      {"nul", std::string("a\0b", 3), "a\\u0000b"},
      {"valid utf8 kept", "caf\xc3\xa9 \xe2\x82\xac", "caf\xc3\xa9 \xe2\x82\xac"},
      {"lone continuation", "\x80", "\\u0080"},
      {"truncated sequence", "\xe2\x82", "\\u00e2\\u0082"},
      {"overlong slash", "\xc0\xaf", "\\u00c0\\u00af"},
      {"surrogate", "\xed\xa0\x80", "\\u00ed\\u00a0\\u0080"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(json_escape(c.in), c.want);
  }
}

TEST(SetupLoggingTest, RejectsUnknownLevelAndFormat) {
  EXPECT_EQ(setup_logging({.level = "loud"}).code(), Code::kInvalidArgument);
  EXPECT_EQ(setup_logging({.level = "info", .format = "xml"}).code(), Code::kInvalidArgument);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

TEST(SetupLoggingTest, JsonFormatWritesOneEscapedObjectPerLine) {
  const std::string path = test::test_dir() + "/log.json";
  std::filesystem::remove(path);
  ASSERT_TRUE(setup_logging({.level = "debug", .format = "json", .file = path}).ok());
  spdlog::info("became leader term={} note=\"{}\"", 3, "q");
  spdlog::debug("per message");
  spdlog::trace("hidden");
  spdlog::default_logger()->flush();
  const std::string got = read_file(path);
  EXPECT_NE(got.find(R"("level":"info","msg":"became leader term=3 note=\"q\""})"),
            std::string::npos)
      << got;
  EXPECT_NE(got.find("per message"), std::string::npos);
  EXPECT_EQ(got.find("hidden"), std::string::npos);
  EXPECT_EQ(std::count(got.begin(), got.end(), '\n'), 2);
  ASSERT_TRUE(setup_logging({}).ok());
}

TEST(SetupLoggingTest, UnwritableFileIsAnIoError) {
  const std::string missing = test::test_dir() + "/no-such-dir";
  std::filesystem::remove_all(missing);
  EXPECT_EQ(setup_logging({.file = missing + "/y.log"}).code(), Code::kIOError);
  EXPECT_FALSE(std::filesystem::exists(missing)) << "logging setup must not create directories";
}

}  // namespace
}  // namespace kvc
