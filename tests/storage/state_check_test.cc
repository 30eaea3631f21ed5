// The offline state check (state_check.h): a clean state passes with the right counts; every
// damaged record is listed (kv, events, meta) without stopping at the first; a broken LMDB page
// is reported; a version 1 state is walked without checksums; reading the facts changes
// nothing.
#include "kvc/storage/state_check.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "kvc/storage/state.h"
#include "state_damage.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::break_page_holding;
using testing::build_state;
using testing::Copy;
using testing::damage_value;
using testing::flip_meta_bit;
using testing::flip_value_bit;
using testing::fresh_dir;

constexpr int kKeys = 20;
constexpr std::uint64_t kMetaFields = 9;

TEST(StateCheckTest, ACleanStatePassesWithItsCounts) {
  const std::string dir = fresh_dir();
  build_state(dir, kKeys);
  std::uint64_t last_done = 0, last_total = 0;
  Result<StateCheckReport> r = check_state(dir, {.progress = [&](std::uint64_t d, std::uint64_t t) {
                                             last_done = d;
                                             last_total = t;
                                           }});
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_TRUE(r->ok()) << (r->problems.empty() ? "" : r->problems.front());
  EXPECT_EQ(r->keys, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(r->events, static_cast<std::uint64_t>(kKeys));
  EXPECT_EQ(r->meta_records, kMetaFields);
  EXPECT_EQ(r->facts.applied_index, kKeys + 1u);
  EXPECT_EQ(r->facts.format, kStateFormatVersion);
  EXPECT_EQ(r->generation_dir, dir + "/gen-0000000001");
  EXPECT_EQ(last_total, kKeys * 2 + kMetaFields);
  EXPECT_EQ(last_done, last_total);
}

TEST(StateCheckTest, EveryDamagedRecordIsListed) {
  const std::string dir = fresh_dir();
  build_state(dir, kKeys);
  ASSERT_GT(flip_value_bit(dir, "d/4", damage_value(4), Copy::kKv), 0);
  ASSERT_GT(flip_value_bit(dir, "d/15", damage_value(15), Copy::kKv), 0);
  ASSERT_GT(flip_value_bit(dir, "d/9", damage_value(9), Copy::kEvent), 0);
  Result<StateCheckReport> r = check_state(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->ok());
  EXPECT_EQ(r->damaged, (std::vector<std::string>{"key \"d/15\": checksum mismatch",
                                                  "key \"d/4\": checksum mismatch",
                                                  "event 11/0: checksum mismatch"}));
  EXPECT_EQ(r->damaged_count, 3u);
  EXPECT_EQ(r->problem_count, 0u) << r->problems.front();
  EXPECT_EQ(r->keys, static_cast<std::uint64_t>(kKeys)) << "the walk goes on past the damage";
}

TEST(StateCheckTest, ADamagedMetaFieldIsListedAndTheRestStillChecked) {
  const std::string dir = fresh_dir();
  build_state(dir, kKeys);
  ASSERT_GT(flip_meta_bit(dir, "compact_revision"), 0);
  ASSERT_GT(flip_value_bit(dir, "d/1", damage_value(1), Copy::kKv), 0);
  Result<StateCheckReport> r = check_state(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->damaged, (std::vector<std::string>{"meta field \"compact_revision\": checksum "
                                                  "mismatch",
                                                  "key \"d/1\": checksum mismatch"}));
  // The meta could not be read whole: one problem says so, and no record is judged against it.
  ASSERT_EQ(r->problem_count, 1u);
  EXPECT_NE(r->problems[0].find("meta field \"compact_revision\": checksum mismatch"),
            std::string::npos);
  // read_state_facts (what the start-up checks read) refuses it too.
  EXPECT_EQ(read_state_facts(dir).status().code(), Code::kCorruption);
}

TEST(StateCheckTest, ABrokenLmdbPageIsReportedAndTheStateMachineRefusesItsKeys) {
  const std::string dir = fresh_dir();
  build_state(dir, kKeys);
  ASSERT_GT(break_page_holding(dir, "d/3", damage_value(3)), 0);
  Result<StateCheckReport> r = check_state(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->ok());
  ASSERT_GE(r->problem_count, 1u);
  EXPECT_NE(r->problems[0].find("walk the kv database"), std::string::npos) << r->problems[0];
  EXPECT_NE(r->problems[0].find("the LMDB file is damaged"), std::string::npos) << r->problems[0];
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir);
  ASSERT_TRUE(sm.ok()) << sm.status().to_string();  // the meta is intact
  Result<std::optional<KeyValue>> got = (*sm)->get("d/3");
  EXPECT_EQ(got.status().code(), Code::kCorruption) << got.status().to_string();
}

TEST(StateCheckTest, ReadingFactsChangesNothingAndSeesANewStateAsIndexZero) {
  const std::string dir = fresh_dir();
  Result<StateFacts> none = read_state_facts(dir + "/nothing");
  ASSERT_TRUE(none.ok());
  EXPECT_EQ(none->applied_index, 0u);
  EXPECT_FALSE(std::filesystem::exists(dir + "/nothing"));
  EXPECT_EQ(check_state(dir + "/nothing").status().code(), Code::kNotFound);
  build_state(dir + "/s", 3);
  const auto before = std::filesystem::last_write_time(testing::live_data_file(dir + "/s"));
  Result<StateFacts> f = read_state_facts(dir + "/s");
  ASSERT_TRUE(f.ok()) << f.status().to_string();
  EXPECT_EQ(f->applied_index, 4u);
  EXPECT_TRUE(f->has_membership);
  EXPECT_EQ(std::filesystem::last_write_time(testing::live_data_file(dir + "/s")), before);
}

}  // namespace
}  // namespace kvc::storage
