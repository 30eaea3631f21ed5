// The in-memory Raft log.
#include "kvc/raft/log.h"

#include <gtest/gtest.h>

namespace kvc::raft {
namespace {

std::vector<Entry> ents(std::uint64_t from, std::initializer_list<std::uint64_t> terms) {
  std::vector<Entry> out;
  for (std::uint64_t t : terms) out.push_back({from++, t, EntryType::kNormal, "d"});
  return out;
}

TEST(RaftLogTest, TermLookupCoversSnapshotPointAndEntries) {
  RaftLog log(5, 2, ents(6, {2, 3, 3}));
  EXPECT_EQ(log.first_index(), 6u);
  EXPECT_EQ(log.last_index(), 8u);
  EXPECT_EQ(log.term(5), 2u);
  EXPECT_EQ(log.term(7), 3u);
  EXPECT_FALSE(log.term(4).has_value());
  EXPECT_FALSE(log.term(9).has_value());
  EXPECT_EQ(log.last_term(), 3u);
}

TEST(RaftLogTest, FindConflictReturnsFirstMismatchOrNew) {
  RaftLog log(0, 0, ents(1, {1, 1, 2}));
  EXPECT_EQ(log.find_conflict(ents(1, {1, 1, 2})), 0u);
  EXPECT_EQ(log.find_conflict(ents(2, {1, 3})), 3u);
  EXPECT_EQ(log.find_conflict(ents(3, {2, 2})), 4u);
}

TEST(RaftLogTest, FindConflictByTermSkipsWholeTerms) {
  RaftLog log(0, 0, ents(1, {1, 1, 2, 2, 2, 4, 4}));
  EXPECT_EQ(log.find_conflict_by_term(7, 3), (std::pair<std::uint64_t, std::uint64_t>{5, 2}));
  EXPECT_EQ(log.find_conflict_by_term(7, 4), (std::pair<std::uint64_t, std::uint64_t>{7, 4}));
  EXPECT_EQ(log.find_conflict_by_term(20, 1), (std::pair<std::uint64_t, std::uint64_t>{2, 1}));
  EXPECT_EQ(log.find_conflict_by_term(7, 0).first, 0u);
}

TEST(RaftLogTest, TruncateAndAppendReplacesTheSuffix) {
  RaftLog log(0, 0, ents(1, {1, 1, 1}));
  log.truncate_and_append(ents(2, {2, 2, 2}));
  EXPECT_EQ(log.last_index(), 4u);
  EXPECT_EQ(log.term(1), 1u);
  EXPECT_EQ(log.term(2), 2u);
  EXPECT_EQ(log.term(4), 2u);
}

TEST(RaftLogTest, CompactKeepsTheTermOfTheNewSnapshotPoint) {
  RaftLog log(0, 0, ents(1, {1, 2, 3, 3}));
  log.compact(2);
  EXPECT_EQ(log.snapshot_index(), 2u);
  EXPECT_EQ(log.snapshot_term(), 2u);
  EXPECT_EQ(log.first_index(), 3u);
  EXPECT_TRUE(log.match_term(2, 2));
  EXPECT_FALSE(log.term(1).has_value());
}

TEST(RaftLogTest, SliceStopsAtByteCapButReturnsAtLeastOneEntry) {
  RaftLog log(0, 0, ents(1, {1, 1, 1, 1}));
  const std::uint64_t one = RaftLog::entry_bytes(log.at(1));
  EXPECT_EQ(log.slice(1, 4, 1).size(), 1u);
  EXPECT_EQ(log.slice(1, 4, 2 * one).size(), 2u);
  EXPECT_EQ(log.slice(2, 10, ~0ull).size(), 3u);
}

TEST(RaftLogTest, UpToDateComparesLastTermThenLength) {
  RaftLog log(0, 0, ents(1, {1, 2, 2}));
  EXPECT_TRUE(log.is_up_to_date(3, 2));
  EXPECT_TRUE(log.is_up_to_date(1, 3));
  EXPECT_FALSE(log.is_up_to_date(2, 2));
  EXPECT_FALSE(log.is_up_to_date(9, 1));
}

}  // namespace
}  // namespace kvc::raft
