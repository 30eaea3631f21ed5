// The shared secret's handling (net/secret.h): the secret file's rules, wiping, and key bytes
// kept out of core dumps.
#include "kvc/net/secret.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <fstream>
#include <string>
#include <utility>

#include "support/temp_dir.h"

namespace kvc::net {
namespace {

class SecretFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = dir_.file(name);
    std::ofstream(path, std::ios::binary) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }
  test::ScopedTempDir dir_{"kvc-secret-test"};
};

TEST_F(SecretFileTest, LoadsAndStripsOneTrailingNewline) {
  EXPECT_EQ(*load_secret_file(write("a", "s3cret\n", 0600)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("b", "s3cret\r\n", 0400)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("c", "s3cret", 0600)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("d", "two\nlines\n\n", 0600)), "two\nlines\n");
  // Larger than the read buffer, and exactly the limit.
  EXPECT_EQ(load_secret_file(write("e", std::string(10000, 'k'), 0600))->size(), 10000u);
  EXPECT_EQ(load_secret_file(write("f", std::string(kMaxSecretBytes, 'k'), 0600))->size(),
            kMaxSecretBytes);
}

TEST_F(SecretFileTest, RefusesUnsafeOrUselessFilesNamingTheFileButNeverItsContents) {
  const struct {
    const char* name;
    std::string content;
    mode_t mode;
    const char* want;
  } cases[] = {
      {"world", "topsecret-w", 0644, "accessible by group or others (mode 0644); run chmod 600"},
      {"group", "topsecret-g", 0640, "accessible by group or others"},
      {"empty", "", 0600, ": empty"},
      {"newline only", "\n", 0600, ": empty"},
      {"huge", std::string(kMaxSecretBytes + 1, 'x'), 0600, "larger than"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = write(c.name, c.content, c.mode);
    Result<std::string> r = load_secret_file(path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(path), std::string::npos);  // names the file
    EXPECT_EQ(r.status().message().find("topsecret"), std::string::npos) << r.status().message();
  }
  Result<std::string> missing = load_secret_file(dir_.file("missing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir_.file("missing")), std::string::npos);
  EXPECT_FALSE(load_secret_file(dir_.path()).ok());  // a directory
}

TEST(SecretTest, WipeZeroesTheBytesAndEmptiesTheString) {
  std::string s(64, 's');
  const char* data = s.data();
  wipe(s);
  EXPECT_TRUE(s.empty());
  // The buffer is still the string's own (clear() keeps the capacity): its bytes are zeros.
  EXPECT_EQ(s.data(), data);
  for (std::size_t i = 0; i < 64; ++i) ASSERT_EQ(data[i], '\0') << i;
  std::string empty;
  wipe(empty);  // nothing to do, no crash
  EXPECT_TRUE(empty.empty());
}

TEST(SecretTest, SecretBytesHoldsACopyOutOfCoreDumpsAndMoves) {
  const std::string key(32, '\x5a');
  SecretBytes a(key);
  EXPECT_EQ(a.view(), key);
  // MADV_DONTDUMP is a plain Linux feature (3.4+); mlock may be refused by RLIMIT_MEMLOCK.
  EXPECT_TRUE(a.excluded_from_dumps());
  SecretBytes b(std::move(a));
  EXPECT_TRUE(a.empty());  // NOLINT(bugprone-use-after-move): moved-from is empty
  EXPECT_EQ(b.view(), key);
  SecretBytes c;
  EXPECT_TRUE(c.empty());
  c = std::move(b);
  EXPECT_EQ(c.view(), key);
  // More than a page (a 64 KiB secret file) takes several pages.
  const std::string big(kMaxSecretBytes, 'b');
  SecretBytes d(big);
  EXPECT_EQ(d.view(), big);
  EXPECT_TRUE(SecretBytes("").empty());
}

}  // namespace
}  // namespace kvc::net
