// Recovery after damage: a torn tail at every byte offset of the last batch recovers to the last
// whole record; a flipped bit in every record is corruption, located exactly.
#include <gtest/gtest.h>

#include <filesystem>

#include "kvc/storage/sim_fs.h"
#include "kvc/storage/wal.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::expected_entries;

struct RecordPos {
  std::string segment;  // path
  std::size_t segment_pos;
  std::uint64_t offset;
  std::uint64_t end;
  RecordType type;
  std::uint64_t index;       // entry index (0 for other records)
  std::uint64_t log_before;  // the log's last index before this record
};

std::vector<RecordPos> record_positions(const std::string& dir) {
  std::vector<RecordPos> out;
  std::uint64_t last = 0;
  std::size_t seg_pos = 0;
  std::string seg_path;
  Result<WalSummary> s = scan_wal(dir, [&](const ScannedRecord& r) {
    if (r.segment.file.path != seg_path) {
      if (!seg_path.empty()) ++seg_pos;
      seg_path = r.segment.file.path;
    }
    out.push_back(RecordPos{r.segment.file.path, seg_pos, r.offset, r.offset + r.bytes,
                            r.record.type,
                            r.record.type == RecordType::kEntry ? r.record.entry.index : 0, last});
    last = r.log.last_index;
    return Status();
  });
  KVC_CHECK(s.ok() && !s->damage, "the test log must read clean");
  return out;
}

// A log of 40 entries in batches of 4, each batch followed by a hard state, all in one 8 KiB
// segment.
std::string make_log(const std::string& name) {
  const std::string dir = wal_test::fresh_dir(name);
  Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = 8192});
  KVC_CHECK(w.ok(), "open");
  for (std::uint64_t i = 1; i <= 40; i += 4) {
    KVC_CHECK(
        w->wal
            .append(raft::HardState{.term = wal_test::expected_term(i + 3), .vote = 1, .commit = i},
                    expected_entries(i, i + 3))
            .ok(),
        "append");
    KVC_CHECK(w->wal.sync().ok(), "sync");
  }
  return dir;
}

enum class Tear { kZeros, kTruncate, kGarbage };

void tear(const std::string& path, std::uint64_t at, std::uint64_t end, Tear how) {
  std::string bytes = wal_test::slurp(path);
  switch (how) {
    case Tear::kZeros:
      std::fill(bytes.begin() + at, bytes.begin() + end, '\0');
      break;
    case Tear::kTruncate:
      bytes.resize(at);
      break;
    case Tear::kGarbage:
      for (std::uint64_t i = at; i < end; ++i) bytes[i] = static_cast<char>(0xa5 ^ (i * 31));
      break;
  }
  wal_test::spit(path, bytes);
}

TEST(WalRecoveryTest, TornTailAtEveryByteOfTheLastBatchRecoversToTheLastWholeRecord) {
  const std::string good = make_log("torn_src");
  const std::vector<RecordPos> recs = record_positions(good);
  // The last batch: four entries and a hard state.
  const std::size_t first_of_batch = recs.size() - 5;
  const std::uint64_t batch_start = recs[first_of_batch].offset;
  const std::uint64_t batch_end = recs.back().end;
  const std::string seg = recs.back().segment;
  const std::string scratch = wal_test::fresh_tmpfs_dir("torn");
  int opened = 0;
  for (const Tear how : {Tear::kZeros, Tear::kTruncate, Tear::kGarbage}) {
    for (std::uint64_t cut = batch_start; cut < batch_end; ++cut) {
      SCOPED_TRACE("tear " + std::to_string(static_cast<int>(how)) + " at " + std::to_string(cut));
      wal_test::copy_dir(good, scratch);
      const std::string path = scratch + "/" + std::filesystem::path(seg).filename().string();
      tear(path, cut, batch_end, how);
      // The records the tear left unchanged survive, up to the first one it changed; that one
      // is a torn tail, unless all that is left of it (and after it) is zero bytes, which is no
      // different from a write that never started.
      const std::string original = wal_test::slurp(seg);
      const std::string torn_bytes = wal_test::slurp(path);
      std::uint64_t want_last = recs[first_of_batch].log_before;
      bool torn = false;
      for (std::size_t i = first_of_batch; i < recs.size(); ++i) {
        const std::uint64_t len = recs[i].end - recs[i].offset;
        if (torn_bytes.size() >= recs[i].end &&
            torn_bytes.compare(recs[i].offset, len, original, recs[i].offset, len) == 0) {
          if (recs[i].index != 0) want_last = recs[i].index;
          continue;
        }
        torn = !is_zero(std::string_view(torn_bytes).substr(recs[i].offset));
        break;
      }
      Result<WalSummary> s = scan_wal(scratch, nullptr);
      ASSERT_TRUE(s.ok());
      ASSERT_EQ(s->damage.has_value(), torn);
      if (torn) {
        EXPECT_EQ(s->damage->kind, DamageKind::kTornTail) << s->damage->describe();
        EXPECT_LE(s->damage->offset, cut);
        EXPECT_GE(s->damage->offset, batch_start);
      }
      EXPECT_EQ(s->log.last_index, want_last);
      // Recovery proper, for the zero-filled (preallocated) case at every offset and for the
      // others at a sample of offsets: it truncates and the log goes on.
      if (how != Tear::kZeros && cut % 7 != 0) continue;
      ++opened;
      {
        Result<OpenedWal> w = Wal::open(scratch, WalOptions{.segment_bytes = 8192});
        ASSERT_TRUE(w.ok()) << w.status().to_string();
        EXPECT_EQ(w->log.report.torn_tail.has_value(), torn);
        if (torn) {
          EXPECT_EQ(w->log.report.torn_tail->path, path);
          EXPECT_EQ(w->log.report.torn_tail->offset, s->damage->offset);
        }
        ASSERT_EQ(w->log.entries, expected_entries(1, want_last));
        ASSERT_TRUE(
            w->wal.append(std::nullopt, expected_entries(want_last + 1, want_last + 2)).ok());
        ASSERT_TRUE(w->wal.sync().ok());
      }
      Result<WalSummary> after = scan_wal(scratch, nullptr);
      ASSERT_TRUE(after.ok());
      EXPECT_FALSE(after->damage.has_value()) << after->damage->describe();
      EXPECT_EQ(after->log.last_index, want_last + 2);
    }
  }
  EXPECT_GT(opened, 100);
  std::filesystem::remove_all(scratch);
}

TEST(WalRecoveryTest, AFlippedBitInEveryRecordIsCorruptionAtThatRecord) {
  // Three segments, so records at the end of an earlier segment are covered too.
  const std::string good = wal_test::fresh_dir("flip_src");
  {
    Result<OpenedWal> w = Wal::open(good, WalOptions{.segment_bytes = kMinSegmentBytes});
    ASSERT_TRUE(w.ok());
    for (std::uint64_t i = 1; i <= 100; i += 2) {
      ASSERT_TRUE(w->wal
                      .append(raft::HardState{.term = wal_test::expected_term(i + 1), .commit = i},
                              expected_entries(i, i + 1))
                      .ok());
      ASSERT_TRUE(w->wal.sync().ok());
    }
    ASSERT_GE(w->wal.segment_count(), 3u);
  }
  const std::vector<RecordPos> recs = record_positions(good);
  const std::string scratch = wal_test::fresh_tmpfs_dir("flip");
  std::size_t checked = 0;
  for (std::size_t r = 0; r < recs.size(); ++r) {
    const RecordPos& rec = recs[r];
    const bool last_record = r + 1 == recs.size();
    // A byte of the CRC, of the length, the type, and of the payload.
    for (const std::uint64_t within :
         {std::uint64_t{1}, std::uint64_t{5}, std::uint64_t{8}, (rec.end - rec.offset) - 1}) {
      SCOPED_TRACE("record " + std::to_string(r) + " byte " + std::to_string(within));
      wal_test::copy_dir(good, scratch);
      const std::string path =
          scratch + "/" + std::filesystem::path(rec.segment).filename().string();
      std::string bytes = wal_test::slurp(path);
      bytes[rec.offset + within] = static_cast<char>(bytes[rec.offset + within] ^ 0x04);
      wal_test::spit(path, bytes);
      Result<WalSummary> s = scan_wal(scratch, nullptr);
      ASSERT_TRUE(s.ok());
      ASSERT_TRUE(s->damage.has_value());
      const WalDamage& d = *s->damage;
      EXPECT_EQ(d.segment, std::filesystem::path(rec.segment).filename().string());
      EXPECT_EQ(d.offset, rec.offset);
      EXPECT_EQ(d.after_index, rec.log_before);
      if (last_record) {
        // Nothing follows the last record: the same bytes as a torn write.
        EXPECT_EQ(d.kind, DamageKind::kTornTail);
        continue;
      }
      EXPECT_EQ(d.kind, DamageKind::kCorruption) << d.describe();
      Result<OpenedWal> w = Wal::open(scratch, WalOptions{.segment_bytes = kMinSegmentBytes});
      ASSERT_EQ(w.status().code(), Code::kCorruption);
      const std::string m = w.status().message();
      EXPECT_NE(m.find(d.segment), std::string::npos) << m;
      EXPECT_NE(m.find("offset " + std::to_string(rec.offset)), std::string::npos) << m;
      const std::string where = rec.log_before == 0
                                    ? std::string("after the start of the log")
                                    : "after index " + std::to_string(rec.log_before);
      EXPECT_NE(m.find(where), std::string::npos) << m;
      ++checked;
    }
  }
  EXPECT_GT(checked, 4 * 100u);
  std::filesystem::remove_all(scratch);
}

TEST(WalRecoveryTest, AFlippedBitInASegmentHeaderIsCorruption) {
  const std::string good = wal_test::fresh_dir("header_src");
  {
    Result<OpenedWal> w = Wal::open(good, WalOptions{.segment_bytes = kMinSegmentBytes});
    ASSERT_TRUE(w.ok());
    for (std::uint64_t i = 1; i <= 120; ++i) {
      ASSERT_TRUE(w->wal.append(std::nullopt, expected_entries(i, i)).ok());
    }
    ASSERT_TRUE(w->wal.sync().ok());
  }
  const std::vector<std::string> segs = wal_test::segment_paths(good);
  ASSERT_GE(segs.size(), 2u);
  const std::string scratch = wal_test::fresh_tmpfs_dir("header");
  for (std::size_t s = 0; s < segs.size(); ++s) {
    for (std::size_t byte = 0; byte < kSegmentHeaderBytes; byte += 3) {
      wal_test::copy_dir(good, scratch);
      const std::string path = scratch + "/" + std::filesystem::path(segs[s]).filename().string();
      std::string bytes = wal_test::slurp(path);
      bytes[byte] = static_cast<char>(bytes[byte] ^ 0x80);
      wal_test::spit(path, bytes);
      Result<WalSummary> sum = scan_wal(scratch, nullptr);
      ASSERT_TRUE(sum.ok());
      ASSERT_TRUE(sum->damage.has_value());
      EXPECT_EQ(sum->damage->kind, DamageKind::kCorruption);
      EXPECT_EQ(sum->damage->segment_pos, s);
      EXPECT_TRUE(sum->damage->whole_segment);
    }
  }
  std::filesystem::remove_all(scratch);
}

// A read that returns a flipped bit once (a transient fault: the medium is fine) must not make
// recovery zero an intact record as a torn tail, or refuse the log as corrupt: the log is read
// again, and the second reading wins. Each seed flips a bit somewhere else in what the first
// scan reads.
TEST(WalRecoveryTest, AReadThatFlipsABitOnceIsReadAgainAndNothingIsLost) {
  for (std::uint64_t seed = 1; seed <= 40; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    SimFileSystem fs({"/kvc-walread"}, seed);
    ScopedFileSystem guard(&fs);
    const std::string dir = "/kvc-walread/wal";
    {
      Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = 8192});
      ASSERT_TRUE(w.ok()) << w.status().to_string();
      for (std::uint64_t i = 1; i <= 40; i += 4) {
        ASSERT_TRUE(
            w->wal
                .append(
                    raft::HardState{.term = wal_test::expected_term(i + 3), .vote = 1, .commit = i},
                    expected_entries(i, i + 3))
                .ok());
        ASSERT_TRUE(w->wal.sync().ok());
      }
    }
    fs.flip_next_reads(dir, 1);
    Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = 8192});
    ASSERT_TRUE(w.ok()) << w.status().to_string();
    EXPECT_EQ(fs.stats().read_flips, 1u);
    EXPECT_FALSE(w->log.report.torn_tail.has_value()) << w->log.report.describe();
    EXPECT_EQ(w->wal.last_index(), 40u);
    ASSERT_EQ(w->log.entries.size(), 40u);
    EXPECT_EQ(w->log.entries.back(), wal_test::expected_entry(40));
  }
}

}  // namespace
}  // namespace kvc::storage
