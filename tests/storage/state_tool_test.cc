// `kvc-snap check` end to end (state_tool.h): the real binary on a member's data directory,
// clean, with a damaged value, with a broken LMDB page, with a log that lost its newest segment,
// and on a state directory alone; its exit codes, text and JSON output, and progress.
#include "kvc/storage/state_tool.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "member_storage.h"
#include "state_damage.h"
#include "state_test_util.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::ProcessResult;
using wal_test::run_process;

ProcessResult check(const std::vector<std::string>& args) {
  std::vector<std::string> argv = {KVC_SNAP_BIN, "check"};
  argv.insert(argv.end(), args.begin(), args.end());
  return run_process(argv);
}

// A data directory (WAL and state) whose state was flushed at index 40.
std::string member_dir() {
  const std::string dir = testing::fresh_dir();
  testing::MemberStorage m(dir);
  m.append_apply_flush(40);
  return dir;
}

TEST(StateToolTest, ACleanDataDirectoryChecksClean) {
  const std::string dir = member_dir();
  ProcessResult r = check({dir});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("state:      " + dir + "/state/gen-0000000001 (format 3)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("applied:    index 40, term 1"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("records:    17 keys, 39 events, 9 meta"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("checksums:  ok\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("structure:  ok\n"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wal:        consistent (" + dir + "/wal ends at index 40)"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("status:     clean"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << "no progress unless asked or on a terminal: " << r.err;

  ProcessResult json = check({dir, "-o", "json"});
  EXPECT_EQ(json.exit_code, 0);
  EXPECT_NE(json.out.find("\"applied_index\":40,"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"log_durable_index\":40,"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"damaged_count\":0,"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"consistency\":{\"status\":\"consistent\""), std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find("\"status\":\"clean\"}"), std::string::npos) << json.out;

  ProcessResult shown = check({dir, "--progress"});
  EXPECT_EQ(shown.exit_code, 0);
  EXPECT_NE(shown.err.find("\rkvc-snap: checking the state: "), std::string::npos) << shown.err;

  // The state directory alone: no log to compare with.
  ProcessResult state_only = check({dir + "/state"});
  EXPECT_EQ(state_only.exit_code, 0) << state_only.err;
  EXPECT_NE(state_only.out.find("wal:        not checked"), std::string::npos) << state_only.out;
}

TEST(StateToolTest, ADamagedValueIsExitCode8AndNamed) {
  const std::string dir = member_dir();
  // The kv record of k/3 (last written at index 37 = 3 + 2 * 17).
  Result<std::unique_ptr<StateMachine>> st = StateMachine::open(dir + "/state");
  ASSERT_TRUE(st.ok());
  Result<std::optional<KeyValue>> kv = (*st)->get("k/3");
  ASSERT_TRUE(kv.ok() && kv->has_value());
  const std::string value = (*kv)->value;
  st->reset();
  ASSERT_GT(testing::flip_value_bit(dir + "/state", "k/3", value, testing::Copy::kKv), 0);
  ProcessResult r = check({dir});
  EXPECT_EQ(r.exit_code, 8) << r.out << r.err;
  EXPECT_NE(r.out.find("checksums:  1 damaged record(s)"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("  damaged: key \"k/3\": checksum mismatch"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("status:     damaged"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("the state is damaged"), std::string::npos) << r.err;
  ProcessResult json = check({dir, "-o", "json"});
  EXPECT_EQ(json.exit_code, 8);
  EXPECT_NE(json.out.find("\"damaged\":[\"key \\\"k/3\\\": checksum mismatch\"]"),
            std::string::npos)
      << json.out;
}

TEST(StateToolTest, ABrokenPageIsExitCode8) {
  const std::string dir = testing::fresh_dir();
  testing::build_state(dir + "/state", 10);
  ASSERT_GT(testing::break_page_holding(dir + "/state", "d/2", testing::damage_value(2)), 0);
  ProcessResult r = check({dir + "/state"});
  EXPECT_EQ(r.exit_code, 8) << r.out << r.err;
  EXPECT_NE(r.out.find("  problem: state " + dir + "/state: walk the kv database"),
            std::string::npos)
      << r.out;
}

TEST(StateToolTest, ALogMissingItsNewestSegmentIsExitCode9) {
  const std::string dir = member_dir();
  std::filesystem::remove(wal_test::segment_paths(dir + "/wal").back());
  ProcessResult r = check({dir});
  EXPECT_EQ(r.exit_code, 9) << r.out << r.err;
  EXPECT_NE(r.out.find("checksums:  ok"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("wal:        inconsistent: the wal in " + dir + "/wal ends at index"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("status:     inconsistent"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("kvc-node will not start on this data directory"), std::string::npos)
      << r.err;
}

TEST(StateToolTest, WhatIsNotAStateIsExitCode3) {
  const std::string dir = testing::fresh_dir();
  EXPECT_EQ(check({dir + "/missing"}).exit_code, 3);
  ProcessResult r = check({dir});
  EXPECT_EQ(r.exit_code, 3) << r.err;
  EXPECT_NE(r.err.find("is neither a data directory"), std::string::npos) << r.err;
  EXPECT_EQ(check({}).exit_code, 2);
}

}  // namespace
}  // namespace kvc::storage
