// The crash-point shim (crashfs.c) in a child process (crashfs_child.c) that runs a script of
// writes and syncs: it dies by SIGKILL in the N-th matching call and only there, writes a torn
// prefix when asked, counts only the files it is told to, and for a power loss leaves exactly
// what was synced (and what went through an O_DSYNC descriptor). Without its variables it does
// nothing.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "support/child_process.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace kvc::test {
namespace {

struct ChildRun {
  bool killed = false;  // by SIGKILL
  int exit_code = -1;   // when it exited
  std::string err;      // its stdout and stderr
};

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

class CrashfsTest : public ::testing::Test {
 protected:
  // Runs the child with the shim and `env` ("NAME=VALUE") on `steps` (file names relative to the
  // test's directory are made absolute by the caller).
  ChildRun run(const std::vector<std::string>& env, const std::vector<std::string>& steps) {
    std::vector<std::string> args = {KVC_CRASHFS_CHILD};
    args.insert(args.end(), steps.begin(), steps.end());
    const char* asan = std::getenv("ASAN_OPTIONS");
    std::vector<std::string> all = {
        "LD_PRELOAD=" + std::string(KVC_CRASHFS_LIBRARY),
        "ASAN_OPTIONS=" + std::string(asan != nullptr ? asan : "") + ":verify_asan_link_order=0"};
    all.insert(all.end(), env.begin(), env.end());
    const std::string out = file("child.out");
    std::remove(out.c_str());
    ChildRun r;
    Result<pid_t> pid = spawn({.args = args, .env = environment_with(all), .output_path = out});
    EXPECT_TRUE(pid.ok()) << pid.status().to_string();
    if (!pid.ok()) return r;
    int status = 0;
    Status done = wait_until([&] { return ::waitpid(*pid, &status, WNOHANG) == *pid; },
                             std::chrono::seconds(20), "the child to end");
    if (!done.ok()) {
      ::kill(*pid, SIGKILL);
      ::waitpid(*pid, &status, 0);
      ADD_FAILURE() << "the child hung (a deadlock in the shim?)";
    }
    r.killed = WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    r.err = read_file(out);
    return r;
  }
  std::string file(const std::string& name) const { return dir_.path() + "/" + name; }

  ScopedTempDir dir_{"kvc-crashfs-test"};
};

TEST_F(CrashfsTest, WithoutItsVariablesItDoesNothing) {
  ChildRun r = run({}, {"open:" + file("a.dat"), "pwrite:0:AAAA", "sync", "write:BB", "sync"});
  EXPECT_FALSE(r.killed);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(read_file(file("a.dat")), "BBAA");
}

TEST_F(CrashfsTest, DiesBeforeTheNthMatchingWrite) {
  ChildRun r = run({"KVC_CRASHFS_OP=write", "KVC_CRASHFS_FILE=a.dat", "KVC_CRASHFS_AFTER=3"},
                   {"open:" + file("b.other"), "write:zz", "write:zz", "open:" + file("a.dat"),
                    "pwrite:0:1111", "sync", "pwrite:4:2222", "pwrite:8:3333", "pwrite:12:4444"});
  EXPECT_TRUE(r.killed) << r.err;
  EXPECT_EQ(read_file(file("a.dat")), "11112222");  // the third write of a.dat never happened
  EXPECT_EQ(read_file(file("b.other")), "zzzz");    // another file's writes do not count
  EXPECT_NE(r.err.find("crashfs: SIGKILL in pwrite #3 of " + file("a.dat")), std::string::npos)
      << r.err;
}

TEST_F(CrashfsTest, ATornWriteLeavesHalfOfItsBytes) {
  ChildRun r = run({"KVC_CRASHFS_OP=pwrite", "KVC_CRASHFS_AFTER=2", "KVC_CRASHFS_TORN=1"},
                   {"open:" + file("a.dat"), "pwrite:0:11", "pwrite:2:abcdefgh"});
  EXPECT_TRUE(r.killed) << r.err;
  EXPECT_EQ(read_file(file("a.dat")), "11abcd");
  EXPECT_NE(r.err.find("after 4 of 8 bytes"), std::string::npos) << r.err;
}

TEST_F(CrashfsTest, ACrashInASyncKeepsThePageCache) {
  ChildRun r =
      run({"KVC_CRASHFS_OP=fdatasync", "KVC_CRASHFS_AFTER=2"},
          {"open:" + file("a.dat"), "write:AAAA", "sync", "write:BBBB", "sync", "write:C"});
  EXPECT_TRUE(r.killed) << r.err;
  EXPECT_EQ(read_file(file("a.dat")), "AAAABBBB");
  EXPECT_NE(r.err.find("crashfs: SIGKILL in fdatasync #2"), std::string::npos) << r.err;
}

TEST_F(CrashfsTest, APowerLossUndoesWhatNoSyncCovered) {
  const std::string a = file("a.dat"), b = file("b.dat"), m = file("meta.dat");
  ChildRun r = run({"KVC_CRASHFS_OP=fdatasync", "KVC_CRASHFS_FILE=a.dat", "KVC_CRASHFS_AFTER=2",
                    "KVC_CRASHFS_LOSE=a.dat,b.dat,meta.dat"},
                   {// a: 8 synced bytes, then an overwrite and an extension that are not synced
                    "open:" + a, "pwrite:0:AAAAAAAA", "sync", "pwrite:2:xx", "pwrite:6:yyyyyy",
                    // b: written, never synced: nothing of it stays
                    "open:" + b, "write:bbbb", "pwrite:2:BB",
                    // an O_DSYNC descriptor: durable at once
                    "dsync:" + m, "write:MMMM",
                    // the crash: a's second fdatasync
                    "open:" + a, "pwrite:0:zz", "sync"});
  EXPECT_TRUE(r.killed) << r.err;
  EXPECT_EQ(read_file(a), "AAAAAAAA");
  EXPECT_EQ(read_file(b), "");
  EXPECT_EQ(read_file(m), "MMMM");
  EXPECT_NE(r.err.find("crashfs: power loss: undid 5 unsynced writes"), std::string::npos) << r.err;
}

TEST_F(CrashfsTest, APowerLossKeepsWhatASyncCovered) {
  const std::string a = file("a.dat");
  ChildRun r =
      run({"KVC_CRASHFS_OP=write", "KVC_CRASHFS_AFTER=4", "KVC_CRASHFS_TORN=1",
           "KVC_CRASHFS_LOSE=a.dat"},
          {"open:" + a, "write:1111", "write:2222", "sync", "pwrite:0:3333", "write:4444"});
  EXPECT_TRUE(r.killed) << r.err;
  EXPECT_EQ(read_file(a), "11112222");  // the unsynced overwrite and the torn half are undone
}

}  // namespace
}  // namespace kvc::test
