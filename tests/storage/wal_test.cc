// The Wal API: append, sync, overwrite, rotation, snapshot markers, release, reopen (wal.h).
#include "kvc/storage/wal.h"

#include <gtest/gtest.h>

#include <filesystem>

#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::expected_entries;
using wal_test::expected_entry;
using wal_test::fresh_dir;

OpenedWal open_ok(const std::string& dir, std::uint64_t segment_bytes = kDefaultSegmentBytes) {
  Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = segment_bytes});
  KVC_CHECK(w.ok(), w.status().to_string());
  return std::move(*w);
}

TEST(WalTest, NewLogIsEmptyAndPreallocated) {
  const std::string dir = fresh_dir("new");
  OpenedWal w = open_ok(dir, 1 << 20);
  EXPECT_TRUE(w.log.entries.empty());
  EXPECT_FALSE(w.log.hard_state.has_value());
  EXPECT_FALSE(w.log.snapshot.has_value());
  const std::vector<std::string> segs = wal_test::segment_paths(dir);
  ASSERT_EQ(segs.size(), 1u);
  EXPECT_EQ(std::filesystem::file_size(segs[0]), 1u << 20);
  EXPECT_EQ(std::filesystem::path(segs[0]).filename(), "0000000000000001-0000000000000001.wal");
}

TEST(WalTest, ReopenReturnsEntriesHardStateAndMarker) {
  const std::string dir = fresh_dir("reopen");
  {
    OpenedWal w = open_ok(dir);
    ASSERT_TRUE(w.wal.append(raft::HardState{.term = 1, .vote = 3}, expected_entries(1, 10)).ok());
    ASSERT_TRUE(w.wal.sync().ok());
    ASSERT_TRUE(
        w.wal.save_snapshot(raft::SnapshotMeta{.index = 4, .term = 1, .conf = {{1, 2}, {}}}).ok());
    ASSERT_TRUE(w.wal.append(raft::HardState{.term = 1, .vote = 3, .commit = 9}, {}).ok());
    ASSERT_TRUE(w.wal.sync().ok());
  }
  OpenedWal w = open_ok(dir);
  EXPECT_EQ(w.log.entries, expected_entries(5, 10));
  EXPECT_EQ(w.log.hard_state, (raft::HardState{.term = 1, .vote = 3, .commit = 9}));
  ASSERT_TRUE(w.log.snapshot.has_value());
  EXPECT_EQ(w.log.snapshot->index, 4u);
  EXPECT_EQ(w.log.snapshot->conf.voters, (std::vector<raft::NodeId>{1, 2}));
  EXPECT_FALSE(w.log.report.torn_tail.has_value());
  EXPECT_EQ(w.wal.last_index(), 10u);
  // The log goes on where it stopped.
  ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(11, 11)).ok());
}

TEST(WalTest, AppendAtOrBelowTheLastIndexReplacesTheSuffix) {
  const std::string dir = fresh_dir("overwrite");
  {
    OpenedWal w = open_ok(dir);
    ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(1, 6)).ok());
    std::vector<raft::Entry> newer = {raft::Entry{.index = 4, .term = 9, .data = "new4"},
                                      raft::Entry{.index = 5, .term = 9, .data = "new5"}};
    ASSERT_TRUE(w.wal.append(std::nullopt, newer).ok());
    EXPECT_EQ(w.wal.last_index(), 5u);
    ASSERT_TRUE(w.wal.sync().ok());
  }
  OpenedWal w = open_ok(dir);
  ASSERT_EQ(w.log.entries.size(), 5u);
  EXPECT_EQ(w.log.entries[2], expected_entry(3));
  EXPECT_EQ(w.log.entries[3].data, "new4");
  EXPECT_EQ(w.log.entries[4].term, 9u);
}

TEST(WalTest, AppendsThatBreakARuleAreRefusedAndWriteNothing) {
  const std::string dir = fresh_dir("refused");
  OpenedWal w = open_ok(dir);
  ASSERT_TRUE(
      w.wal.append(raft::HardState{.term = 2, .vote = 1, .commit = 3}, expected_entries(1, 5))
          .ok());
  const struct {
    const char* name;
    std::optional<raft::HardState> hs;
    std::vector<raft::Entry> entries;
  } cases[] = {
      {"gap", std::nullopt, expected_entries(7, 7)},
      {"index zero", std::nullopt, {raft::Entry{.index = 0, .term = 5}}},
      {"not consecutive", std::nullopt, {expected_entry(6), expected_entry(8)}},
      {"rewrites a committed index", std::nullopt, {raft::Entry{.index = 3, .term = 5}}},
      {"commit past the end", raft::HardState{.term = 2, .commit = 6}, {}},
      {"term goes back", std::nullopt, {raft::Entry{.index = 6, .term = 0}}},
      {"hard state term goes back", raft::HardState{.term = 1, .commit = 3}, {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Status s = w.wal.append(c.hs, c.entries);
    EXPECT_EQ(s.code(), Code::kInvalidArgument) << s.to_string();
    EXPECT_EQ(w.wal.last_index(), 5u);
  }
  EXPECT_EQ(w.wal.save_snapshot(raft::SnapshotMeta{.index = 2, .term = 1}).code(), Code::kOk);
  EXPECT_EQ(w.wal.save_snapshot(raft::SnapshotMeta{.index = 1, .term = 1}).code(),
            Code::kInvalidArgument);
  ASSERT_TRUE(w.wal.sync().ok());
  OpenedWal again = open_ok(dir);
  EXPECT_EQ(again.log.entries, expected_entries(3, 5));
}

TEST(WalTest, SegmentsRotateAndEveryEntrySurvives) {
  const std::string dir = fresh_dir("rotate");
  {
    OpenedWal w = open_ok(dir, kMinSegmentBytes);
    for (std::uint64_t i = 1; i <= 300; i += 3) {
      ASSERT_TRUE(w.wal
                      .append(raft::HardState{.term = wal_test::expected_term(i + 2), .commit = i},
                              expected_entries(i, i + 2))
                      .ok());
      ASSERT_TRUE(w.wal.sync().ok());
    }
    EXPECT_GT(w.wal.segment_count(), 5u);
  }
  OpenedWal w = open_ok(dir, kMinSegmentBytes);
  EXPECT_EQ(w.log.entries, expected_entries(1, 300));
  EXPECT_EQ(w.log.hard_state->commit, 298u);
  // Every segment but the last was filled up to the point where the next batch did not fit.
  for (const std::string& p : wal_test::segment_paths(dir)) {
    EXPECT_EQ(std::filesystem::file_size(p), kMinSegmentBytes) << p;
  }
}

TEST(WalTest, ABatchLargerThanASegmentGetsASegmentOfItsOwn) {
  const std::string dir = fresh_dir("big");
  {
    OpenedWal w = open_ok(dir, kMinSegmentBytes);
    ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(1, 2)).ok());
    std::vector<raft::Entry> big = {
        raft::Entry{.index = 3, .term = 1, .data = std::string(20000, 'b')}};
    ASSERT_TRUE(w.wal.append(std::nullopt, big).ok());
    const std::vector<raft::Entry> four = {raft::Entry{.index = 4, .term = 1}};
    ASSERT_TRUE(w.wal.append(std::nullopt, four).ok());
    ASSERT_TRUE(w.wal.sync().ok());
  }
  OpenedWal w = open_ok(dir, kMinSegmentBytes);
  ASSERT_EQ(w.log.entries.size(), 4u);
  EXPECT_EQ(w.log.entries[2].data.size(), 20000u);
}

TEST(WalTest, AMarkerPastTheEndRestartsTheLogAfterIt) {
  const std::string dir = fresh_dir("install");
  {
    OpenedWal w = open_ok(dir);
    ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(1, 5)).ok());
    ASSERT_TRUE(w.wal.save_snapshot(raft::SnapshotMeta{.index = 100, .term = 3}).ok());
    EXPECT_EQ(w.wal.last_index(), 100u);
    EXPECT_EQ(w.wal.append(std::nullopt, expected_entries(6, 6)).code(), Code::kInvalidArgument);
    const std::vector<raft::Entry> next = {raft::Entry{.index = 101, .term = 3}};
    ASSERT_TRUE(w.wal.append(std::nullopt, next).ok());
    ASSERT_TRUE(w.wal.sync().ok());
  }
  OpenedWal w = open_ok(dir);
  ASSERT_EQ(w.log.entries.size(), 1u);
  EXPECT_EQ(w.log.entries[0].index, 101u);
  EXPECT_EQ(w.log.snapshot->index, 100u);
}

TEST(WalTest, ReleaseKeepsWhatRecoveryNeeds) {
  const std::string dir = fresh_dir("release");
  const raft::HardState hs{.term = 9, .vote = 2, .commit = 200};
  {
    OpenedWal w = open_ok(dir, kMinSegmentBytes);
    for (std::uint64_t i = 1; i <= 250; i += 5) {
      ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(i, i + 4)).ok());
    }
    ASSERT_TRUE(w.wal.append(hs, {}).ok());
    const std::size_t before = w.wal.segment_count();
    // Not covered by a synced marker yet.
    EXPECT_EQ(w.wal.release_to(150).code(), Code::kFailedPrecondition);
    ASSERT_TRUE(
        w.wal.save_snapshot(raft::SnapshotMeta{.index = 180, .term = 5, .conf = {{1, 2, 3}, {}}})
            .ok());
    EXPECT_EQ(w.wal.release_to(150).code(), Code::kFailedPrecondition);  // marker not synced
    ASSERT_TRUE(w.wal.sync().ok());
    EXPECT_EQ(w.wal.release_to(182).code(), Code::kFailedPrecondition);
    ASSERT_TRUE(w.wal.release_to(181).ok());
    EXPECT_LT(w.wal.segment_count(), before);
    // More segments, then a marker at the very end of one, then an entry too big for what is
    // left of it: the next segment starts right after the marker, so every older segment,
    // including those holding the only hard state and marker records, can go.
    for (std::uint64_t i = 251; i <= 500; i += 5) {
      ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(i, i + 4)).ok());
    }
    ASSERT_TRUE(
        w.wal.save_snapshot(raft::SnapshotMeta{.index = 500, .term = 14, .conf = {{1, 2, 3}, {}}})
            .ok());
    const std::vector<raft::Entry> big = {
        raft::Entry{.index = 501, .term = 14, .data = std::string(3000, 'b')}};
    ASSERT_TRUE(w.wal.append(std::nullopt, big).ok());
    ASSERT_TRUE(w.wal.sync().ok());
    ASSERT_TRUE(w.wal.release_to(501).ok());
    EXPECT_EQ(w.wal.segment_count(), 1u);
  }
  OpenedWal w = open_ok(dir, kMinSegmentBytes);
  EXPECT_EQ(w.log.hard_state, hs);
  ASSERT_TRUE(w.log.snapshot.has_value());
  EXPECT_EQ(w.log.snapshot->index, 500u);
  EXPECT_EQ(w.log.snapshot->term, 14u);
  EXPECT_EQ(w.log.snapshot->conf.voters, (std::vector<raft::NodeId>{1, 2, 3}));
  ASSERT_EQ(w.log.entries.size(), 1u);
  EXPECT_EQ(w.log.entries[0].index, 501u);
  EXPECT_EQ(w.wal.segment_count(), 1u);
}

TEST(WalTest, ReleaseDeletesExactlyTheSegmentsWhoseEntriesAreAllBelowTheIndex) {
  const std::string dir = fresh_dir("release_exact");
  OpenedWal w = open_ok(dir, kMinSegmentBytes);
  for (std::uint64_t i = 1; i <= 300; ++i) {
    ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(i, i)).ok());
  }
  const std::uint64_t marker = 280;
  ASSERT_TRUE(w.wal
                  .save_snapshot(
                      raft::SnapshotMeta{.index = marker, .term = wal_test::expected_term(marker)})
                  .ok());
  ASSERT_TRUE(w.wal.sync().ok());
  Result<WalSummary> before = scan_wal(dir, nullptr);
  ASSERT_TRUE(before.ok());
  ASSERT_GE(before->segments.size(), 5u);
  std::size_t released = 0;
  for (std::size_t s = 0; s + 1 < before->segments.size(); ++s) {
    const SegmentSummary& seg = before->segments[s];
    if (seg.max_index + 1 > marker + 1) break;  // not covered by the marker
    ++released;
    SCOPED_TRACE(seg.file.name);
    // Entry max_index is still in the segment: it stays.
    EXPECT_FALSE(w.wal.can_release(seg.max_index));
    EXPECT_TRUE(w.wal.can_release(seg.max_index + 1));
    ASSERT_TRUE(w.wal.release_to(seg.max_index).ok());
    EXPECT_TRUE(std::filesystem::exists(seg.file.path));
    // Every entry is below max_index + 1: it goes, and only it.
    ASSERT_TRUE(w.wal.release_to(seg.max_index + 1).ok());
    EXPECT_FALSE(std::filesystem::exists(seg.file.path));
    EXPECT_EQ(w.wal.segment_count(), before->segments.size() - s - 1);
    Result<WalSummary> now = scan_wal(dir, nullptr);
    ASSERT_TRUE(now.ok());
    EXPECT_FALSE(now->damage.has_value()) << now->damage->describe();
    EXPECT_LE(now->log.first_index, seg.max_index + 1);
    EXPECT_EQ(now->log.last_index, 300u);
  }
  EXPECT_GE(released, 4u);
  EXPECT_EQ(w.wal.release_to(marker + 2).code(), Code::kFailedPrecondition);
  EXPECT_FALSE(w.wal.can_release(marker + 1)) << "every segment the marker covers is gone";
  OpenedWal again = open_ok(dir, kMinSegmentBytes);
  EXPECT_EQ(again.log.entries, expected_entries(marker + 1, 300));
}

// bytes_used() (kvc-ctl status "WAL") counts what was written, not the preallocated files:
// after every step it equals what a scan of the directory finds in the segments.
TEST(WalTest, BytesUsedCountsWrittenBytesNotPreallocation) {
  const std::string dir = fresh_dir("bytes_used");
  auto scanned = [&] {
    Result<WalSummary> s = scan_wal(dir, nullptr);
    KVC_CHECK(s.ok(), s.status().to_string());
    return s->bytes_used;
  };
  constexpr std::uint64_t kSegment = 2 * kMinSegmentBytes;
  OpenedWal w = open_ok(dir, kSegment);
  const std::uint64_t empty = w.wal.bytes_used();
  EXPECT_GT(empty, 0u);  // the segment header
  EXPECT_LT(empty, 1024u);
  EXPECT_EQ(empty, scanned());
  ASSERT_TRUE(w.wal.append(raft::HardState{.term = 1, .commit = 1}, expected_entries(1, 1)).ok());
  ASSERT_TRUE(w.wal.sync().ok());
  const std::uint64_t one = w.wal.bytes_used();
  EXPECT_GT(one, empty);
  EXPECT_EQ(one, scanned());
  EXPECT_LT(one, kSegment / 4);  // far below the preallocated file
  for (std::uint64_t i = 2; i <= 400; ++i) {
    ASSERT_TRUE(w.wal.append(std::nullopt, expected_entries(i, i)).ok());
  }
  ASSERT_TRUE(w.wal.sync().ok());
  ASSERT_GT(w.wal.segment_count(), 1u);
  EXPECT_EQ(w.wal.bytes_used(), scanned());
  ASSERT_TRUE(
      w.wal.save_snapshot(raft::SnapshotMeta{.index = 390, .term = wal_test::expected_term(390)})
          .ok());
  ASSERT_TRUE(w.wal.sync().ok());
  const std::uint64_t before_release = w.wal.bytes_used();
  ASSERT_TRUE(w.wal.release_to(391).ok());
  EXPECT_LT(w.wal.bytes_used(), before_release);
  EXPECT_EQ(w.wal.bytes_used(), scanned());
  const std::uint64_t now = w.wal.bytes_used();
  OpenedWal again = open_ok(dir, kSegment);
  EXPECT_EQ(again.wal.bytes_used(), now);
}

TEST(WalTest, UnfinishedSegmentFilesAreRemovedOnOpen) {
  const std::string dir = fresh_dir("tmpfiles");
  wal_test::write_log(dir, 1, 3);
  const std::string tmp = dir + "/" + segment_file_name(2, 4) + ".tmp";
  wal_test::spit(tmp, "half a segment");
  OpenedWal w = open_ok(dir);
  EXPECT_FALSE(std::filesystem::exists(tmp));
  EXPECT_EQ(w.log.report.removed_temp_files.size(), 1u);
  EXPECT_EQ(w.log.entries, expected_entries(1, 3));
}

TEST(WalTest, TooSmallSegmentsAreRefused) {
  EXPECT_EQ(Wal::open(fresh_dir("small"), WalOptions{.segment_bytes = 100}).status().code(),
            Code::kInvalidArgument);
}

}  // namespace
}  // namespace kvc::storage
