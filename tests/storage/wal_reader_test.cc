// The log's index rules and damage classification (wal_reader.h), on segments built in memory.
#include "kvc/storage/wal_reader.h"

#include <gtest/gtest.h>

#include <memory>

namespace kvc::storage {
namespace {

raft::Entry entry(std::uint64_t index, std::uint64_t term) {
  return raft::Entry{.index = index, .term = term, .data = "d" + std::to_string(index)};
}

struct Seg {
  std::uint64_t seq;
  std::uint64_t first;
  std::vector<Record> records;
  std::size_t zeros = 256;
  std::string bytes() const {
    std::string s =
        encode_segment_header(SegmentHeader{.salt = 5, .seq = seq, .first_index = first});
    for (const Record& r : records) append_record(s, 5, r);
    return s + std::string(zeros, '\0');
  }
};

struct Scan {
  WalSummary summary;
  std::vector<std::string> lines;  // "e5" entry 5, "e5r9" replacing up to 9, "s10R" reset, "h"
};

Scan scan(const std::vector<std::string>& segments, const std::vector<Seg>& meta) {
  std::vector<SegmentFile> files;
  std::vector<std::unique_ptr<MemorySource>> owned;
  std::vector<ByteSource*> sources;
  for (std::size_t i = 0; i < segments.size(); ++i) {
    SegmentFile f;
    f.seq = meta[i].seq;
    f.first_index = meta[i].first;
    f.name = segment_file_name(f.seq, f.first_index);
    f.path = "mem/" + f.name;
    f.file_size = segments[i].size();
    files.push_back(f);
    owned.push_back(std::make_unique<MemorySource>(segments[i]));
    sources.push_back(owned.back().get());
  }
  Scan out;
  Result<WalSummary> s = scan_segments(files, sources, [&](const ScannedRecord& r) {
    std::string l;
    switch (r.record.type) {
      case RecordType::kEntry:
        l = "e" + std::to_string(r.record.entry.index);
        if (r.change.replaced_to) l += "r" + std::to_string(r.change.replaced_to);
        break;
      case RecordType::kHardState:
        l = "h";
        break;
      case RecordType::kSnapshot:
        l = "s" + std::to_string(r.record.snapshot.index) + (r.change.reset ? "R" : "");
        break;
    }
    out.lines.push_back(l);
    return Status();
  });
  EXPECT_TRUE(s.ok()) << s.status().to_string();
  if (s.ok()) out.summary = *s;
  return out;
}

Scan scan(const std::vector<Seg>& segs) {
  std::vector<std::string> bytes;
  for (const Seg& s : segs) bytes.push_back(s.bytes());
  return scan(bytes, segs);
}

TEST(WalReaderTest, OverwriteReplacesTheSuffix) {
  Scan s = scan({Seg{1,
                     1,
                     {Record::of(entry(1, 1)), Record::of(entry(2, 1)), Record::of(entry(3, 1)),
                      Record::of(entry(2, 2)), Record::of(entry(3, 2))}}});
  EXPECT_FALSE(s.summary.damage.has_value());
  EXPECT_EQ(s.lines, (std::vector<std::string>{"e1", "e2", "e3", "e2r3", "e3"}));
  EXPECT_EQ(s.summary.log.first_index, 1u);
  EXPECT_EQ(s.summary.log.last_index, 3u);
  EXPECT_EQ(s.summary.log.last_term, 2u);
}

TEST(WalReaderTest, MarkerAtOrPastTheEndResetsTheLog) {
  raft::SnapshotMeta m{.index = 100, .term = 4};
  Scan s = scan({Seg{1, 1, {Record::of(entry(1, 1)), Record::of(m), Record::of(entry(101, 4))}}});
  EXPECT_FALSE(s.summary.damage.has_value());
  EXPECT_EQ(s.lines, (std::vector<std::string>{"e1", "s100R", "e101"}));
  EXPECT_EQ(s.summary.log.first_index, 101u);
  EXPECT_EQ(s.summary.log.last_index, 101u);
}

TEST(WalReaderTest, RuleBreaksAreCorruptionAtTheRecord) {
  const raft::HardState hs{.term = 1, .vote = 1, .commit = 2};
  const struct {
    const char* name;
    std::vector<Record> records;
    std::size_t bad;  // position of the offending record
    const char* reason;
  } cases[] = {
      {"gap",
       {Record::of(entry(1, 1)), Record::of(entry(3, 1))},
       1,
       "gap: entry 3 follows index 1"},
      {"term goes back", {Record::of(entry(1, 2)), Record::of(entry(2, 1))}, 1, "term goes back"},
      {"rewrite of a committed index",
       {Record::of(entry(1, 1)), Record::of(entry(2, 1)), Record::of(hs), Record::of(entry(2, 2))},
       3,
       "rewrites a committed index"},
      {"rewrite below the marker",
       {Record::of(entry(1, 1)), Record::of(entry(2, 1)), Record::of(entry(3, 1)),
        Record::of(raft::SnapshotMeta{.index = 2, .term = 1}), Record::of(entry(2, 1))},
       4,
       "at or below the snapshot marker"},
      {"marker goes back",
       {Record::of(raft::SnapshotMeta{.index = 5, .term = 1}),
        Record::of(raft::SnapshotMeta{.index = 4, .term = 1})},
       1,
       "snapshot marker goes back"},
      {"commit past the end", {Record::of(entry(1, 1)), Record::of(hs)}, 1, "past the last index"},
      {"hard state term goes back",
       {Record::of(entry(1, 1)), Record::of(entry(2, 1)), Record::of(hs),
        Record::of(raft::HardState{.term = 0, .commit = 1})},
       3,
       "hard state term goes back"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Scan s = scan({Seg{1, 1, c.records}});
    ASSERT_TRUE(s.summary.damage.has_value());
    const WalDamage& d = *s.summary.damage;
    EXPECT_EQ(d.kind, DamageKind::kCorruption);
    std::size_t offset = kSegmentHeaderBytes;
    for (std::size_t i = 0; i < c.bad; ++i) offset += framed_size(c.records[i]);
    EXPECT_EQ(d.offset, offset);
    EXPECT_NE(d.reason.find(c.reason), std::string::npos) << d.reason;
    EXPECT_EQ(s.lines.size(), c.bad);
  }
}

TEST(WalReaderTest, SegmentsMustFollowEachOther) {
  const Seg one{1, 1, {Record::of(entry(1, 1)), Record::of(entry(2, 1))}};
  {
    Scan s = scan({one, Seg{3, 3, {Record::of(entry(3, 1))}}});
    ASSERT_TRUE(s.summary.damage.has_value());
    EXPECT_TRUE(s.summary.damage->whole_segment);
    EXPECT_NE(s.summary.damage->reason.find("a segment is missing"), std::string::npos);
  }
  {
    Scan s = scan({one, Seg{2, 4, {Record::of(entry(4, 1))}}});
    ASSERT_TRUE(s.summary.damage.has_value());
    EXPECT_EQ(s.summary.damage->segment_pos, 1u);
    EXPECT_NE(
        s.summary.damage->reason.find("starts at index 4 but the log before it ends at index 2"),
        std::string::npos);
  }
}

TEST(WalReaderTest, AMissingStartIsCorruptionUnlessAMarkerCoversIt) {
  Scan bad = scan({Seg{5, 50, {Record::of(entry(50, 1))}}});
  ASSERT_TRUE(bad.summary.damage.has_value());
  EXPECT_TRUE(bad.summary.damage->missing_start);
  Scan ok = scan({Seg{
      5, 50, {Record::of(raft::SnapshotMeta{.index = 49, .term = 1}), Record::of(entry(50, 1))}}});
  EXPECT_FALSE(ok.summary.damage.has_value());
}

TEST(WalReaderTest, DamageAtTheEndOfTheLastSegmentIsATornTail) {
  Seg seg{1, 1, {Record::of(entry(1, 1)), Record::of(entry(2, 1))}, 64};
  std::string bytes = seg.bytes();
  const std::size_t second = kSegmentHeaderBytes + framed_size(seg.records[0]);
  bytes[second + 20] ^= 0x40;
  Scan s = scan({bytes}, {seg});
  ASSERT_TRUE(s.summary.damage.has_value());
  const WalDamage& d = *s.summary.damage;
  EXPECT_EQ(d.kind, DamageKind::kTornTail);
  EXPECT_EQ(d.offset, second);
  EXPECT_EQ(d.after_index, 1u);
  EXPECT_EQ(d.end_offset, second + framed_size(seg.records[1]));
  EXPECT_EQ(s.summary.log.last_index, 1u);
}

TEST(WalReaderTest, DamageAtTheEndOfAnEarlierSegmentIsCorruption) {
  Seg one{1, 1, {Record::of(entry(1, 1)), Record::of(entry(2, 1))}, 64};
  Seg two{2, 3, {Record::of(entry(3, 1))}};
  std::string bytes = one.bytes();
  bytes[kSegmentHeaderBytes + framed_size(one.records[0]) + 20] ^= 0x40;
  Scan s = scan({bytes, two.bytes()}, {one, two});
  ASSERT_TRUE(s.summary.damage.has_value());
  EXPECT_EQ(s.summary.damage->kind, DamageKind::kCorruption);
  EXPECT_EQ(s.summary.damage->segment_pos, 0u);
  EXPECT_NE(s.summary.damage->reason.find("not the last"), std::string::npos);
}

TEST(WalReaderTest, HeaderThatDisagreesWithTheFileNameIsCorruption) {
  Seg seg{1, 1, {Record::of(entry(1, 1))}};
  Seg named = seg;
  named.first = 2;
  Scan s = scan({seg.bytes()}, {named});
  ASSERT_TRUE(s.summary.damage.has_value());
  EXPECT_TRUE(s.summary.damage->whole_segment);
}

TEST(WalReaderTest, GarbageAfterTheLastRecordWithNoValidRecordIsATornTail) {
  Seg seg{1, 1, {Record::of(entry(1, 1))}, 0};
  std::string bytes = seg.bytes() + std::string("\x11\x22\x33garbage", 10) + std::string(50, '\0');
  Scan s = scan({bytes}, {seg});
  ASSERT_TRUE(s.summary.damage.has_value());
  EXPECT_EQ(s.summary.damage->kind, DamageKind::kTornTail);
  EXPECT_EQ(s.summary.damage->end_offset, seg.bytes().size() + 10);
}

}  // namespace
}  // namespace kvc::storage
