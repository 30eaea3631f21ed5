#include "kvc/storage/data_dir.h"

#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>

#include "support/test_dir.h"

namespace kvc::storage {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::test_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  return dir;
}

Identity sample() {
  return {.name = "m1",
          .member_id = 0x1234abcd5678ef01,
          .cluster_id = 42,
          .cluster_token = "tok",
          .initial_cluster = "m1=127.0.0.1:2380,m2=127.0.0.1:2382"};
}

TEST(IdentityTest, RoundTrips) {
  Result<Identity> back = decode_identity(encode_identity(sample()), "identity");
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, sample());
}

TEST(IdentityTest, EveryFlippedByteIsDetected) {
  const std::string good = encode_identity(sample());
  for (std::size_t i = 0; i < good.size(); ++i) {
    std::string bad = good;
    bad[i] ^= 0x01;
    Result<Identity> r = decode_identity(bad, "identity");
    EXPECT_FALSE(r.ok()) << "flipped byte " << i << " was not detected";
  }
}

TEST(IdentityTest, TruncationIsDetected) {
  const std::string good = encode_identity(sample());
  // Everything but the final newline matters; without it the file is still whole.
  ASSERT_TRUE(decode_identity(good.substr(0, good.size() - 1), "identity").ok());
  for (std::size_t n = 0; n + 1 < good.size(); ++n) {
    EXPECT_FALSE(decode_identity(good.substr(0, n), "identity").ok()) << "length " << n;
  }
}

TEST(IdentityTest, DerivedIdsAreStableAndDistinct) {
  EXPECT_EQ(derive_member_id("tok", "m1"), derive_member_id("tok", "m1"));
  EXPECT_NE(derive_member_id("tok", "m1"), derive_member_id("tok", "m2"));
  EXPECT_NE(derive_member_id("tok", "m1"), derive_member_id("other", "m1"));
  // The separator keeps ("ab", "c") and ("a", "bc") apart.
  EXPECT_NE(derive_member_id("ab", "c"), derive_member_id("a", "bc"));
  EXPECT_NE(derive_cluster_id("tok", "m1=a:1,m2=b:2"), derive_cluster_id("tok", "m1=a:1"));
  EXPECT_NE(derive_member_id("", ""), 0u);
}

TEST(DataDirTest, CreatesLayoutAndPersistsIdentity) {
  const std::string dir = fresh_dir("layout");
  {
    Result<DataDir> d = DataDir::open(dir, DataDir::Mode::kReadWrite);
    ASSERT_TRUE(d.ok()) << d.status().to_string();
    EXPECT_TRUE(std::filesystem::is_directory(d->wal_dir()));
    EXPECT_TRUE(std::filesystem::is_directory(d->snap_dir()));
    EXPECT_TRUE(std::filesystem::is_directory(d->state_dir()));
    EXPECT_TRUE(d->is_empty());
    EXPECT_FALSE(d->has_identity());
    ASSERT_TRUE(d->write_identity(sample()).ok());
    EXPECT_FALSE(d->is_empty());
  }
  Result<DataDir> again = DataDir::open(dir, DataDir::Mode::kReadOnly);
  ASSERT_TRUE(again.ok());
  Result<Identity> id = again->read_identity();
  ASSERT_TRUE(id.ok());
  EXPECT_EQ(*id, sample());
}

TEST(DataDirTest, SecondWriterIsRefusedWithThePid) {
  const std::string dir = fresh_dir("lock");
  Result<DataDir> first = DataDir::open(dir, DataDir::Mode::kReadWrite);
  ASSERT_TRUE(first.ok());
  // flock is per open file description, so a second open in this process is refused too; use
  // a child process to be sure the refusal is what another process would see.
  const pid_t child = ::fork();
  if (child == 0) {
    Result<DataDir> second = DataDir::open(dir, DataDir::Mode::kReadWrite);
    const bool refused =
        !second.ok() && second.status().code() == Code::kFailedPrecondition &&
        second.status().message().find("pid " + std::to_string(::getppid())) != std::string::npos;
    ::_exit(refused ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  // Read-only opens take no lock and succeed while the writer runs.
  EXPECT_TRUE(DataDir::open(dir, DataDir::Mode::kReadOnly).ok());
}

TEST(DataDirTest, LockIsReleasedWhenClosed) {
  const std::string dir = fresh_dir("release");
  { ASSERT_TRUE(DataDir::open(dir, DataDir::Mode::kReadWrite).ok()); }
  EXPECT_TRUE(DataDir::open(dir, DataDir::Mode::kReadWrite).ok());
}

TEST(DataDirTest, ReadOnlyOpenOfMissingDirIsNotFound) {
  EXPECT_EQ(DataDir::open(fresh_dir("missing"), DataDir::Mode::kReadOnly).status().code(),
            Code::kNotFound);
}

TEST(DataDirTest, ReadOnlyDirCannotWriteIdentity) {
  const std::string dir = fresh_dir("ro");
  { ASSERT_TRUE(DataDir::open(dir, DataDir::Mode::kReadWrite).ok()); }
  Result<DataDir> d = DataDir::open(dir, DataDir::Mode::kReadOnly);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->write_identity(sample()).code(), Code::kFailedPrecondition);
}

}  // namespace
}  // namespace kvc::storage
