// A full disk under the LMDB state says so: the real kvc-snap binary restores a snapshot (which
// writes a new LMDB state) with faultfs (faultfs/faultfs.c) cutting a write to data.mdb short
// and failing every later one with ENOSPC, at each of its writes in turn. LMDB reports a
// short write as EIO ("Input/output error"); the error must say "no space left on device" and
// name the state directory, whichever write it was, and nothing may be left behind.
#include <gtest/gtest.h>

#include <filesystem>

#include "kvc/storage/state.h"
#include "state_test_util.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::ProcessResult;

TEST(StateFaultTest, AFullDiskWhileWritingTheStateSaysNoSpaceLeft) {
  const std::string dir = testing::fresh_dir();
  std::string snap;
  {
    Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir + "/src");
    ASSERT_TRUE(sm.ok());
    Membership m;
    m.members = {{.id = 1, .name = "m1", .peer_addr = "127.0.0.1:2380"}};
    (*sm)->apply_membership(1, 1, m);
    for (std::uint64_t i = 2; i < 3000; ++i) {
      ASSERT_TRUE((*sm)
                      ->apply(i, 1,
                              {.op = CommandOp::kPut,
                               .key = "key/" + std::to_string(i),
                               .value = std::string(100, 'v')})
                      .ok());
    }
    ASSERT_TRUE((*sm)->flush_all().ok());
    Result<SnapshotInfo> info = (*sm)->write_snapshot(dir + "/src.snap");
    ASSERT_TRUE(info.ok());
    snap = info->path;
  }
  // Each write to data.mdb in turn, until the restore makes fewer writes than that (and so
  // succeeds untouched).
  int via_short_write = 0, failed = 0;
  for (int n = 1; n <= 40; ++n) {
    SCOPED_TRACE("write " + std::to_string(n));
    const std::string target = dir + "/restored-" + std::to_string(n);
    const ProcessResult r = wal_test::run_process(
        {KVC_SNAP_BIN, "restore", snap, "--data-dir", target, "--name", "m1", "--initial-cluster",
         "m1=127.0.0.1:2380"},
        {std::string("LD_PRELOAD=") + KVC_FAULTFS_LIB, wal_test::asan_options_for_preload(),
         "KVC_FAULT_PATH=data.mdb", "KVC_FAULT_WRITE_ENOSPC=" + std::to_string(n),
         "KVC_FAULT_PARTIAL=1", "KVC_FAULT_ENOSPC_STICKY=1"});
    if (r.err.find("faultfs: ") == std::string::npos) {
      EXPECT_EQ(r.exit_code, 0) << r.err;
      break;
    }
    ++failed;
    EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
    EXPECT_NE(r.err.find("no space left on device"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("state " + target + "/state"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("nput/output error"), std::string::npos) << r.err;
    if (r.err.find("lmdb reported an i/o error while the file system was full") !=
        std::string::npos) {
      ++via_short_write;
    }
    EXPECT_FALSE(std::filesystem::exists(target)) << "a refused restore leaves nothing";
  }
  EXPECT_GE(failed, 3) << "the restore writes data.mdb several times";
  // LMDB turned at least one short write into EIO, and the message still said why.
  EXPECT_GT(via_short_write, 0);
}

}  // namespace
}  // namespace kvc::storage
