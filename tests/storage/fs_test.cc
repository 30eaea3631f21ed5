#include "kvc/storage/fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <cerrno>
#include <filesystem>

#include "support/test_dir.h"

namespace kvc::storage {
namespace {

std::string fresh_dir(const std::string& name) {
  const std::string dir = test::test_dir() + "/" + name;
  std::filesystem::remove_all(dir);
  EXPECT_TRUE(make_dirs(dir).ok());
  return dir;
}

TEST(FsTest, WriteFileAtomicReplacesContentAndLeavesNoTemp) {
  const std::string dir = fresh_dir("atomic");
  const std::string path = dir + "/f";
  ASSERT_TRUE(write_file_atomic(path, "one").ok());
  ASSERT_TRUE(write_file_atomic(path, "two!").ok());
  Result<std::string> got = read_file(path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "two!");
  EXPECT_FALSE(path_exists(path + ".tmp"));
}

TEST(FsTest, MissingFilesAreNotFound) {
  const std::string dir = fresh_dir("missing");
  EXPECT_EQ(read_file(dir + "/nope").status().code(), Code::kNotFound);
  EXPECT_EQ(list_dir(dir + "/nope").status().code(), Code::kNotFound);
}

TEST(FsTest, PwriteAndPreadRoundTripAndStopAtEof) {
  const std::string dir = fresh_dir("rw");
  const std::string path = dir + "/f";
  Result<UniqueFd> fd = open_file(path, O_RDWR | O_CREAT);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(pwrite_all(fd->get(), "hello world", 0, path).ok());
  ASSERT_TRUE(pwrite_all(fd->get(), "W", 6, path).ok());
  ASSERT_TRUE(fdatasync_fd(fd->get(), path).ok());
  Result<std::string> got = pread_up_to(fd->get(), 100, 0, path);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(*got, "hello World");
  Result<std::uint64_t> size = file_size(path);
  ASSERT_TRUE(size.ok());
  EXPECT_EQ(*size, 11u);
}

TEST(FsTest, ListDirIsSorted) {
  const std::string dir = fresh_dir("list");
  for (const char* n : {"b", "a", "c"}) ASSERT_TRUE(write_file_atomic(dir + "/" + n, "").ok());
  Result<std::vector<std::string>> names = list_dir(dir);
  ASSERT_TRUE(names.ok());
  EXPECT_EQ(*names, (std::vector<std::string>{"a", "b", "c"}));
}

TEST(FsTest, MakeDirsRefusesAFileInTheWay) {
  const std::string dir = fresh_dir("mk");
  ASSERT_TRUE(write_file_atomic(dir + "/file", "x").ok());
  EXPECT_FALSE(make_dirs(dir + "/file").ok());
  EXPECT_TRUE(make_dirs(dir + "/a/b/c").ok());
  EXPECT_TRUE(std::filesystem::is_directory(dir + "/a/b/c"));
}

TEST(FsTest, ErrnoStatusSaysWhatAndWhyInLowercase) {
  const struct {
    int err;
    Code code;
    const char* want;
  } cases[] = {
      {ENOSPC, Code::kResourceExhausted, "write /d/f at offset 9: no space left on device"},
      {EDQUOT, Code::kResourceExhausted, "write /d/f at offset 9: disk quota exceeded"},
      {EIO, Code::kIOError, "write /d/f at offset 9: input/output error"},
      {EACCES, Code::kIOError, "write /d/f at offset 9: permission denied"},
  };
  for (const auto& c : cases) {
    const Status s = errno_status("write /d/f at offset 9", c.err);
    EXPECT_EQ(s.code(), c.code);
    EXPECT_EQ(s.message(), c.want);
  }
}

}  // namespace
}  // namespace kvc::storage
