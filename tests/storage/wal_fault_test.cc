// Fault injection: the real code (the WAL library in a child process, the kvc-wal binary) runs
// with faultfs (an LD_PRELOAD shim, faultfs/faultfs.c) making fdatasync/fsync fail with EIO or
// writes and fallocate fail with ENOSPC. The process must stop or report cleanly, and what was
// durable before must be intact.
#include <gtest/gtest.h>

#include <filesystem>

#include "kvc/storage/wal.h"
#include "kvc/storage/wal_reader.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::ProcessResult;

ProcessResult run_child(const std::string& dir, std::uint64_t count,
                        std::vector<std::string> faults) {
  faults.push_back(std::string("LD_PRELOAD=") + KVC_FAULTFS_LIB);
  faults.push_back(wal_test::asan_options_for_preload());
  return wal_test::run_process({KVC_WAL_CHILD, dir, std::to_string(count), "8192", "7"}, faults);
}

std::uint64_t last_synced(const std::string& out) {
  std::uint64_t last = 0;
  std::size_t pos = 0;
  while ((pos = out.find("synced ", pos)) != std::string::npos) {
    last = std::strtoull(out.c_str() + pos + 7, nullptr, 10);
    pos += 7;
  }
  return last;
}

// Opens the log without faults and checks it holds exactly entries 1..last as written.
void expect_log(const std::string& dir, std::uint64_t at_least, std::uint64_t at_most) {
  Result<WalSummary> s = scan_wal(dir, nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->damage.has_value()) << s->damage->describe();
  Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = 8192});
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  const std::uint64_t last = w->wal.last_index();
  EXPECT_GE(last, at_least);
  EXPECT_LE(last, at_most);
  std::uint64_t expect = w->log.snapshot ? w->log.snapshot->index + 1 : 1;
  for (const raft::Entry& e : w->log.entries) {
    ASSERT_EQ(e, wal_test::expected_entry(expect));
    ++expect;
  }
  EXPECT_EQ(expect - 1, last);
}

TEST(WalFaultTest, FdatasyncFailureStopsTheLogForGood) {
  const std::string dir = wal_test::fresh_dir("fault_fdatasync");
  const ProcessResult r = run_child(dir, 500, {"KVC_FAULT_PATH=.wal", "KVC_FAULT_FDATASYNC_EIO=9"});
  EXPECT_EQ(r.exit_code, 3) << r.out << r.err;
  EXPECT_NE(r.err.find("faultfs: fdatasync"), std::string::npos) << r.err;
  // The error names the call and the segment, and a second sync is not let off.
  EXPECT_NE(r.out.find("error io_error fdatasync " + dir + "/"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("input/output error"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("again io_error"), std::string::npos) << r.out;
  const std::uint64_t synced = last_synced(r.out);
  EXPECT_GT(synced, 0u);
  // Everything reported synced is there; the failed batch may or may not be (it was written to
  // the page cache, which still flushed it in this test), but nothing else.
  expect_log(dir, synced, synced + 8);
}

TEST(WalFaultTest, AShortWriteThenEnospcLeavesTheLogUnchangedAndARetrySucceeds) {
  const std::string dir = wal_test::fresh_dir("fault_partial");
  // The fifth write to the first segment: a batch (the first is the segment's head).
  const std::string seg = segment_file_name(1, 1);
  const ProcessResult r = run_child(
      dir, 200, {"KVC_FAULT_PATH=" + seg, "KVC_FAULT_WRITE_ENOSPC=5", "KVC_FAULT_PARTIAL=1"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.err.find("faultfs: pwrite " + dir + "/" + seg + " -> short write"), std::string::npos)
      << r.err;
  EXPECT_NE(r.out.find("enospc write " + dir + "/" + seg + " at offset "), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("no space left on device (nothing of this append was kept"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("done 200"), std::string::npos) << r.out;
  expect_log(dir, 200, 200);
}

TEST(WalFaultTest, AFullDiskStopsAppendsWithoutLeavingHalfABatch) {
  for (const bool partial : {false, true}) {
    SCOPED_TRACE(partial ? "half a batch written first" : "nothing written");
    const std::string dir = wal_test::fresh_dir("fault_full");
    const ProcessResult r =
        run_child(dir, 500,
                  {"KVC_FAULT_PATH=.wal", "KVC_FAULT_WRITE_ENOSPC=30", "KVC_FAULT_ENOSPC_STICKY=1",
                   std::string("KVC_FAULT_PARTIAL=") + (partial ? "1" : "0")});
    // Every write fails from then on: the append and its retry report ENOSPC and the child
    // gives up (exit 4); the zeros that would undo a partial write fail too, so the writer cuts
    // the file back to the end of the log instead.
    EXPECT_EQ(r.exit_code, 4) << r.out << r.err;
    EXPECT_NE(r.out.find("no space left on device (nothing of this append was kept"),
              std::string::npos)
        << r.out;
    const std::uint64_t synced = last_synced(r.out);
    EXPECT_GT(synced, 0u);
    // The log ends exactly at the last synced entry: no record of the failed batch survives.
    expect_log(dir, synced, synced);
  }
}

TEST(WalFaultTest, NoSpaceForANewSegmentIsAClearErrorAndLeavesNoTrace) {
  const std::string dir = wal_test::fresh_dir("fault_fallocate");
  const ProcessResult r =
      run_child(dir, 300, {"KVC_FAULT_PATH=.wal", "KVC_FAULT_FALLOCATE_ENOSPC=3"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("enospc preallocate 8192 bytes for wal segment " + dir + "/"),
            std::string::npos)
      << r.out;
  expect_log(dir, 300, 300);
  for (const auto& e : std::filesystem::directory_iterator(dir)) {
    EXPECT_EQ(e.path().extension(), ".wal") << e.path();
  }
}

// A log whose tail is torn: entries 1..30 and then half a record's worth of garbage.
std::string torn_log(const std::string& name) {
  const std::string dir = wal_test::fresh_dir(name);
  wal_test::write_log(dir, 1, 30, 1, 4 * kMinSegmentBytes);
  const std::string seg = wal_test::segment_paths(dir).back();
  Result<WalSummary> s = scan_wal(dir, nullptr);
  KVC_CHECK(s.ok(), "scan");
  std::string bytes = wal_test::slurp(seg);
  const std::uint64_t end = s->segments.back().used_bytes;
  for (std::uint64_t i = end; i < end + 23; ++i) bytes[i] = static_cast<char>(0x5a + i);
  wal_test::spit(seg, bytes);
  return dir;
}

TEST(WalFaultTest, RepairInPlaceStopsBeforeTouchingTheLogWhenItCannotSaveTheBackup) {
  const std::string dir = torn_log("fault_repair_inplace");
  std::filesystem::remove_all(dir + ".bak");
  const std::string before = wal_test::slurp(wal_test::segment_paths(dir).back());
  const ProcessResult r = wal_test::run_process(
      {KVC_WAL_BIN, "repair", dir, "--in-place", "--yes", "--backup-dir", dir + ".bak"},
      {std::string("LD_PRELOAD=") + KVC_FAULTFS_LIB, wal_test::asan_options_for_preload(),
       "KVC_FAULT_PATH=.bak", "KVC_FAULT_FSYNC_EIO=1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("fsync " + dir + ".bak/"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("input/output error"), std::string::npos) << r.err;
  EXPECT_EQ(wal_test::slurp(wal_test::segment_paths(dir).back()), before);
  const ProcessResult v = wal_test::run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(v.exit_code, 7) << v.out << v.err;
}

TEST(WalFaultTest, RepairToACopyOnAFullDiskFailsAndLeavesTheOriginalAlone) {
  const std::string dir = torn_log("fault_repair_out");
  const std::string before = wal_test::slurp(wal_test::segment_paths(dir).back());
  const std::string out = dir + "-repaired";
  std::filesystem::remove_all(out);
  const ProcessResult r = wal_test::run_process(
      {KVC_WAL_BIN, "repair", dir, "--out", out, "--yes"},
      {std::string("LD_PRELOAD=") + KVC_FAULTFS_LIB, wal_test::asan_options_for_preload(),
       "KVC_FAULT_PATH=-repaired", "KVC_FAULT_WRITE_ENOSPC=1", "KVC_FAULT_ENOSPC_STICKY=1"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("no space left on device"), std::string::npos) << r.err;
  EXPECT_EQ(wal_test::slurp(wal_test::segment_paths(dir).back()), before);
}

}  // namespace
}  // namespace kvc::storage
