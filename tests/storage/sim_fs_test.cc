// SimFileSystem (sim_fs.h): the semantics the WAL and snapshot tortures rely on, and the seam
// (fs.h) that routes the storage helpers to it.
#include "kvc/storage/sim_fs.h"

#include <fcntl.h>
#include <gtest/gtest.h>

#include <string>

#include "kvc/storage/fs.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

constexpr char kRoot[] = "/kvc-simfs-test";

// Creates `path` with `data`, fsyncs it and its directory (durable).
void write_durable(const std::string& path, const std::string& data) {
  Result<UniqueFd> fd = open_file(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  ASSERT_TRUE(fd.ok()) << fd.status().to_string();
  ASSERT_TRUE(pwrite_all(fd->get(), data, 0, path).ok());
  ASSERT_TRUE(fsync_fd(fd->get(), path).ok());
  ASSERT_TRUE(fsync_dir(path.substr(0, path.find_last_of('/'))).ok());
}

std::string read_or_empty(const std::string& path) {
  Result<std::string> r = read_file(path);
  return r.ok() ? *r : std::string("<missing>");
}

TEST(SimFileSystemTest, HelpersGoToTheInstalledFileSystemAndOthersToPosix) {
  SimFileSystem fs({kRoot}, 1);
  {
    ScopedFileSystem guard(&fs);
    EXPECT_EQ(current_file_system(), &fs);
    ASSERT_TRUE(make_dirs(std::string(kRoot) + "/a/b").ok());
    ASSERT_TRUE(write_file_atomic(std::string(kRoot) + "/a/b/f", "hello").ok());
    EXPECT_EQ(read_or_empty(std::string(kRoot) + "/a/b/f"), "hello");
    Result<std::vector<std::string>> names = list_dir(std::string(kRoot) + "/a/b");
    ASSERT_TRUE(names.ok());
    EXPECT_EQ(*names, std::vector<std::string>{"f"});
    EXPECT_EQ(*file_size(std::string(kRoot) + "/a/b/f"), 5u);
    // Paths outside the roots are real files.
    const std::string real = wal_test::fresh_dir("simfs-real");
    ASSERT_TRUE(write_file_atomic(real + "/g", "real").ok());
    EXPECT_EQ(read_or_empty(real + "/g"), "real");
    Result<UniqueFd> fd = open_file(std::string(kRoot) + "/a/b/f", O_RDONLY);
    ASSERT_TRUE(fd.ok());
    EXPECT_GE(fd->get(), SimFileSystem::kFirstFd);
  }
  EXPECT_EQ(current_file_system(), nullptr);
  EXPECT_FALSE(path_exists(std::string(kRoot) + "/a/b/f"));  // never touched the real disk
  EXPECT_EQ(fs.files(kRoot), std::vector<std::string>{std::string(kRoot) + "/a/b/f"});
}

TEST(SimFileSystemTest, PassthroughDirectoriesStayReal) {
  const std::string real = wal_test::fresh_dir("simfs-pass");
  SimFileSystem fs({real}, 2, {real + "/state"});
  ScopedFileSystem guard(&fs);
  ASSERT_TRUE(make_dirs(real + "/wal").ok());
  ASSERT_TRUE(make_dirs(real + "/state").ok());
  ASSERT_TRUE(write_file_atomic(real + "/state/x", "lmdb").ok());
  ASSERT_TRUE(write_file_atomic(real + "/wal/y", "wal").ok());
  EXPECT_FALSE(fs.covers(real + "/state/x"));
  EXPECT_TRUE(fs.covers(real + "/wal/y"));
  fs.crash(real);
  EXPECT_EQ(read_or_empty(real + "/state/x"), "lmdb");
  {
    ScopedFileSystem posix(nullptr);
    EXPECT_TRUE(path_exists(real + "/state/x"));
    EXPECT_FALSE(path_exists(real + "/wal/y"));
  }
}

TEST(SimFileSystemTest, SyncedWritesSurviveACrashAndUnsyncedOnesMayNot) {
  int lost = 0, kept = 0;
  for (std::uint64_t seed = 1; seed <= 64; ++seed) {
    SimFileSystem fs({kRoot}, seed);
    ScopedFileSystem guard(&fs);
    const std::string path = std::string(kRoot) + "/f";
    write_durable(path, "synced.");
    {
      Result<UniqueFd> fd = open_file(path, O_WRONLY);
      ASSERT_TRUE(fd.ok());
      ASSERT_TRUE(pwrite_all(fd->get(), "unsynced", 7, path).ok());
      EXPECT_EQ(read_or_empty(path), "synced.unsynced");  // the page cache sees it
      EXPECT_EQ(*fs.durable_contents(path), "synced.");
      fs.crash(kRoot);
      // The fd died with the process: nothing more goes through it.
      EXPECT_FALSE(pwrite_all(fd->get(), "x", 0, path).ok());
    }
    const std::string after = read_or_empty(path);
    ASSERT_TRUE(after == "synced." || after == "synced.unsynced") << after;
    (after == "synced." ? lost : kept)++;
  }
  // Both outcomes are common, not one in a million.
  EXPECT_GT(lost, 8);
  EXPECT_GT(kept, 8);
}

TEST(SimFileSystemTest, ACrashKeepsAPrefixOfTheWritesTornAtSectorBoundaries) {
  int none = 0, all = 0, partial = 0, torn = 0;
  for (std::uint64_t seed = 1; seed <= 400; ++seed) {
    SimFileSystem fs({kRoot}, seed);
    ScopedFileSystem guard(&fs);
    const std::string path = std::string(kRoot) + "/f";
    write_durable(path, "");
    Result<UniqueFd> fd = open_file(path, O_WRONLY);
    ASSERT_TRUE(fd.ok());
    // Three writes of 1,500 bytes ('a', 'b', 'c'), each spanning sector boundaries.
    for (int i = 0; i < 3; ++i) {
      ASSERT_TRUE(
          pwrite_all(fd->get(), std::string(1500, static_cast<char>('a' + i)), i * 1500, path)
              .ok());
    }
    fs.crash(kRoot);
    const std::string after = *fs.contents(path);
    // A prefix of the bytes as written; a partial write ends on a sector boundary.
    std::string expect;
    for (int i = 0; i < 3; ++i) expect += std::string(1500, static_cast<char>('a' + i));
    ASSERT_EQ(after, expect.substr(0, after.size())) << "seed " << seed;
    if (after.size() % 1500 != 0) {
      ASSERT_EQ(after.size() % SimFileSystem::kSectorBytes, 0u) << "seed " << seed;
      ++torn;
    } else if (after.empty()) {
      ++none;
    } else if (after.size() == expect.size()) {
      ++all;
    } else {
      ++partial;
    }
  }
  EXPECT_GT(none, 20);
  EXPECT_GT(all, 20);
  EXPECT_GT(partial, 20);
  EXPECT_GT(torn, 20);
}

TEST(SimFileSystemTest, DirectoryEntriesNeedAnFsyncOfTheDirectory) {
  int lost = 0, kept = 0;
  for (std::uint64_t seed = 1; seed <= 64; ++seed) {
    SimFileSystem fs({kRoot}, seed);
    ScopedFileSystem guard(&fs);
    const std::string path = std::string(kRoot) + "/f";
    {
      Result<UniqueFd> fd = open_file(path, O_WRONLY | O_CREAT, 0644);
      ASSERT_TRUE(fd.ok());
      ASSERT_TRUE(pwrite_all(fd->get(), "data", 0, path).ok());
      ASSERT_TRUE(fsync_fd(fd->get(), path).ok());  // the data, not the name
    }
    fs.crash(kRoot);
    (path_exists(path) ? kept : lost)++;
    if (path_exists(path)) {
      EXPECT_EQ(read_or_empty(path), "data");
    }
    // With the directory synced, the name survives every crash; so does a synced rename.
    write_durable(path, "data");
    ASSERT_TRUE(rename_file(path, path + "2").ok());
    ASSERT_TRUE(fsync_dir(kRoot).ok());
    fs.crash(kRoot);
    EXPECT_FALSE(path_exists(path));
    EXPECT_EQ(read_or_empty(path + "2"), "data");
    // An unsynced unlink may be undone by a crash; a synced one is not.
    ASSERT_TRUE(remove_file(path + "2").ok());
    ASSERT_TRUE(fsync_dir(kRoot).ok());
    fs.crash(kRoot);
    EXPECT_FALSE(path_exists(path + "2"));
  }
  EXPECT_GT(lost, 8);
  EXPECT_GT(kept, 8);
}

TEST(SimFileSystemTest, AFailedFsyncLeavesTheDataReadableButNotDurable) {
  SimFileSystem fs({kRoot}, 3);
  ScopedFileSystem guard(&fs);
  const std::string path = std::string(kRoot) + "/f";
  write_durable(path, "old");
  Result<UniqueFd> fd = open_file(path, O_WRONLY);
  ASSERT_TRUE(fd.ok());
  ASSERT_TRUE(pwrite_all(fd->get(), "new", 0, path).ok());
  fs.fail_next_syncs(kRoot);
  const Status s = fdatasync_fd(fd->get(), path);
  EXPECT_EQ(s.code(), Code::kIOError);
  EXPECT_EQ(s.message(), "fdatasync " + path + ": input/output error");
  EXPECT_EQ(read_or_empty(path), "new");  // still in the page cache
  // Linux: the pages are clean now; a later fsync succeeds without writing them.
  EXPECT_TRUE(fdatasync_fd(fd->get(), path).ok());
  EXPECT_EQ(*fs.durable_contents(path), "old");
  for (int i = 0; i < 20; ++i) {
    fs.crash(kRoot);
    EXPECT_EQ(read_or_empty(path), "old");
  }
  EXPECT_EQ(fs.stats().failed_syncs, 1u);
}

TEST(SimFileSystemTest, BitFlipsInDurableBytesAndInReads) {
  SimFileSystem fs({kRoot}, 4);
  ScopedFileSystem guard(&fs);
  const std::string path = std::string(kRoot) + "/f";
  write_durable(path, std::string(100, 'x'));
  EXPECT_TRUE(fs.flip_durable_bit(path, 10, 0));
  EXPECT_EQ((*fs.durable_contents(path))[10], 'x' ^ 1);
  EXPECT_EQ(read_or_empty(path)[10], 'x' ^ 1);
  EXPECT_FALSE(fs.flip_durable_bit(path, 100, 0));
  EXPECT_TRUE(fs.flip_durable_bit(path, 10, 0));  // back
  fs.flip_next_reads(kRoot);
  const std::string once = read_or_empty(path);
  EXPECT_NE(once, std::string(100, 'x'));
  EXPECT_EQ(read_or_empty(path), std::string(100, 'x'));  // transient: the file is unchanged
  EXPECT_EQ(fs.stats().read_flips, 1u);
}

TEST(SimFileSystemTest, TheSameSeedGivesTheSameDisk) {
  auto run = [](std::uint64_t seed) {
    SimFileSystem fs({kRoot}, seed);
    ScopedFileSystem guard(&fs);
    const std::string path = std::string(kRoot) + "/f";
    write_durable(path, "");
    std::string trace;
    for (int round = 0; round < 10; ++round) {
      Result<UniqueFd> fd = open_file(path, O_WRONLY);
      for (int i = 0; i < 5; ++i) {
        (void)pwrite_all(fd->get(), std::string(700, static_cast<char>('a' + i)),
                         static_cast<std::uint64_t>(round * 3500 + i * 700), path);
      }
      fs.crash(kRoot);
      trace += std::to_string(fs.contents(path)->size()) + ",";
    }
    return trace + fs.describe();
  };
  EXPECT_EQ(run(7), run(7));
  EXPECT_NE(run(7), run(8));
}

TEST(SimFileSystemTest, LocksAndFdsEndWithACrash) {
  SimFileSystem fs({kRoot}, 5);
  ScopedFileSystem guard(&fs);
  const std::string path = std::string(kRoot) + "/lock";
  Result<UniqueFd> a = open_file(path, O_RDWR | O_CREAT, 0600);
  Result<UniqueFd> b = open_file(path, O_RDWR | O_CREAT, 0600);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(lock_fd(a->get()), 0);
  EXPECT_EQ(lock_fd(b->get()), EWOULDBLOCK);
  fs.crash(kRoot);
  Result<UniqueFd> c = open_file(path, O_RDWR | O_CREAT, 0600);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(lock_fd(c->get()), 0);  // the dead process's lock is gone
  EXPECT_NE(fs.describe().find("crashes=1"), std::string::npos);
}

TEST(SimFileSystemDeathTest, ASimulatedFdClosedWithNoFileSystemInstalledAborts) {
  SimFileSystem fs({kRoot}, 6);
  EXPECT_DEATH(
      {
        UniqueFd fd;
        {
          ScopedFileSystem guard(&fs);
          Result<UniqueFd> opened = open_file(std::string(kRoot) + "/f", O_RDWR | O_CREAT, 0644);
          KVC_CHECK(opened.ok(), "open");
          fd = std::move(*opened);
        }
        fd.reset();  // never ::close on a number that is not a real fd
      },
      "simulated fd");
}

}  // namespace
}  // namespace kvc::storage
