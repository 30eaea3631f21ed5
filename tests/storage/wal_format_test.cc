// The WAL's byte formats: records and segment headers (record.h, segment.h).
#include <gtest/gtest.h>

#include <filesystem>
#include <sstream>

#include "kvc/storage/record.h"
#include "kvc/storage/segment.h"
#include "kvc/storage/wal_reader.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

raft::SnapshotMeta sample_meta() {
  raft::SnapshotMeta m;
  m.index = 1000;
  m.term = 7;
  m.conf.voters = {1, 2, 3};
  m.conf.learners = {9};
  return m;
}

std::vector<Record> sample_records() {
  return {Record::of(raft::Entry{.index = 5, .term = 2, .data = "hello"}),
          Record::of(raft::Entry{.index = 6,
                                 .term = 2,
                                 .type = raft::EntryType::kConfChange,
                                 .data = std::string("\0\xff", 2)}),
          Record::of(raft::Entry{.index = 7, .term = 3}),
          Record::of(raft::HardState{.term = 3, .vote = 2, .commit = 6}),
          Record::of(sample_meta()),
          Record::of(raft::SnapshotMeta{.index = 1, .term = 1})};
}

bool same(const Record& a, const Record& b) {
  if (a.type != b.type) return false;
  switch (a.type) {
    case RecordType::kEntry:
      return a.entry == b.entry;
    case RecordType::kHardState:
      return a.hard_state == b.hard_state;
    case RecordType::kSnapshot:
      return a.snapshot == b.snapshot;
  }
  return false;
}

TEST(RecordTest, EveryTypeRoundTrips) {
  for (const Record& r : sample_records()) {
    SCOPED_TRACE(std::string(record_type_name(r.type)));
    std::string framed;
    append_record(framed, 0x1234, r);
    EXPECT_EQ(framed.size(), framed_size(r));
    Record back;
    ASSERT_EQ(check_record(0x1234, framed, &back, nullptr), RecordCheck::kOk);
    EXPECT_TRUE(same(back, r));
  }
}

TEST(RecordTest, HeaderLayoutIsAsDocumented) {
  std::string framed;
  append_record(framed, 0, Record::of(raft::HardState{.term = 1, .vote = 2, .commit = 0}));
  ASSERT_EQ(framed.size(), kRecordHeaderBytes + kHardStatePayloadBytes);
  EXPECT_EQ(static_cast<unsigned char>(framed[4]), 24);  // payload length, little-endian
  EXPECT_EQ(framed.substr(5, 3), std::string(3, '\0'));
  EXPECT_EQ(framed[8], 2);  // type: hard state
  EXPECT_EQ(framed.substr(9, 3), std::string(3, '\0'));
  EXPECT_EQ(static_cast<unsigned char>(framed[12]), 1);  // term
  EXPECT_EQ(static_cast<unsigned char>(framed[20]), 2);  // vote
}

TEST(RecordTest, EveryFlippedBitIsDetected) {
  for (const Record& r : sample_records()) {
    std::string framed;
    append_record(framed, 77, r);
    for (std::size_t byte = 0; byte < framed.size(); ++byte) {
      for (int bit = 0; bit < 8; ++bit) {
        std::string bad = framed;
        bad[byte] = static_cast<char>(bad[byte] ^ (1 << bit));
        const RecordCheck c = check_record(77, bad, nullptr, nullptr);
        EXPECT_NE(c, RecordCheck::kOk)
            << record_type_name(r.type) << " byte " << byte << " bit " << bit;
      }
    }
  }
}

TEST(RecordTest, EveryTruncationIsTruncated) {
  for (const Record& r : sample_records()) {
    std::string framed;
    append_record(framed, 1, r);
    for (std::size_t n = 0; n < framed.size(); ++n) {
      const RecordCheck c =
          check_record(1, std::string_view(framed).substr(0, n), nullptr, nullptr);
      EXPECT_TRUE(c == RecordCheck::kTruncated || (n < kRecordHeaderBytes && c != RecordCheck::kOk))
          << "length " << n;
    }
  }
}

TEST(RecordTest, AnotherSegmentsSaltDoesNotValidate) {
  std::string framed;
  append_record(framed, 1, Record::of(raft::Entry{.index = 1, .term = 1, .data = "x"}));
  EXPECT_EQ(check_record(2, framed, nullptr, nullptr), RecordCheck::kBadChecksum);
}

TEST(RecordTest, ZeroHeaderMeansNothingWritten) {
  const std::string zeros(64, '\0');
  EXPECT_EQ(check_record(0, zeros, nullptr, nullptr), RecordCheck::kZero);
}

TEST(RecordTest, BadPayloadsAreCorruptionNotCrashes) {
  const struct {
    const char* name;
    RecordType type;
    std::string payload;
  } cases[] = {
      {"short entry", RecordType::kEntry, std::string(16, '\1')},
      {"index zero", RecordType::kEntry, std::string(17, '\0')},
      {"unknown entry type", RecordType::kEntry,
       std::string("\1\0\0\0\0\0\0\0\1\0\0\0\0\0\0\0\7", 17)},
      {"long hard state", RecordType::kHardState, std::string(25, '\0')},
      {"voter count too large", RecordType::kSnapshot,
       std::string(16, '\0') + "\xff\xff\xff\x0f" + std::string(4, '\0')},
      {"learner count off", RecordType::kSnapshot,
       std::string(16, '\0') + std::string(4, '\0') + "\x01\0\0\0" + std::string(7, '\0')},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(decode_payload(c.type, c.payload).status().code(), Code::kCorruption);
  }
}

TEST(SegmentHeaderTest, RoundTripsAndEveryFlippedByteIsDetected) {
  const SegmentHeader h{.salt = 0xdeadbeef, .seq = 42, .first_index = 1001};
  const std::string bytes = encode_segment_header(h);
  ASSERT_EQ(bytes.size(), kSegmentHeaderBytes);
  EXPECT_EQ(bytes.substr(0, 8), std::string("\x89KVCWAL\n"));
  Result<SegmentHeader> back = decode_segment_header(bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back, h);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    std::string bad = bytes;
    bad[i] = static_cast<char>(bad[i] ^ 0x10);
    EXPECT_EQ(decode_segment_header(bad).status().code(), Code::kCorruption) << "byte " << i;
  }
  EXPECT_EQ(decode_segment_header(bytes.substr(0, 39)).status().code(), Code::kCorruption);
}

TEST(SegmentHeaderTest, FileNamesRoundTripAndStrangersAreRejected) {
  EXPECT_EQ(segment_file_name(1, 0x1a), "0000000000000001-000000000000001a.wal");
  std::uint64_t seq = 0, first = 0;
  EXPECT_TRUE(parse_segment_file_name(segment_file_name(7, 12345), &seq, &first));
  EXPECT_EQ(seq, 7u);
  EXPECT_EQ(first, 12345u);
  for (const char* bad :
       {"0000000000000001-000000000000001A.wal", "0000000000000001-000000000000001a.wal.tmp",
        "1-1.wal", "0000000000000001_000000000000001a.wal", "lock"}) {
    EXPECT_FALSE(parse_segment_file_name(bad, &seq, &first)) << bad;
  }
}

std::string segment_with(const std::vector<Record>& records, std::uint32_t salt,
                         std::size_t zeros_after) {
  std::string s = encode_segment_header(SegmentHeader{.salt = salt, .seq = 1, .first_index = 1});
  for (const Record& r : records) append_record(s, salt, r);
  s.append(zeros_after, '\0');
  return s;
}

TEST(SegmentScannerTest, ReadsRecordsAndStopsCleanAtZeros) {
  const std::vector<Record> records = {Record::of(raft::Entry{.index = 1, .term = 1, .data = "a"}),
                                       Record::of(raft::Entry{.index = 2, .term = 1})};
  const std::string seg = segment_with(records, 9, 4096);
  MemorySource src(seg);
  SegmentScanner scanner(src);
  ASSERT_TRUE(scanner.read_header().ok());
  Record r;
  std::uint64_t off = 0;
  std::uint32_t bytes = 0;
  int n = 0;
  while (*scanner.next(r, off, bytes)) ++n;
  EXPECT_EQ(n, 2);
  EXPECT_TRUE(scanner.end().clean);
  EXPECT_EQ(scanner.end().offset, seg.size() - 4096);
}

TEST(SegmentScannerTest, DamageWithAValidRecordAfterItIsFoundAtTheRightOffset) {
  const std::vector<Record> records = {Record::of(raft::Entry{.index = 1, .term = 1, .data = "a"}),
                                       Record::of(raft::Entry{.index = 2, .term = 1, .data = "b"}),
                                       Record::of(raft::Entry{.index = 3, .term = 1, .data = "c"})};
  std::string seg = segment_with(records, 9, 100);
  const std::size_t second = kSegmentHeaderBytes + framed_size(records[0]);
  seg[second + 14] ^= 0x01;  // inside the second record's payload
  MemorySource src(seg);
  SegmentScanner scanner(src);
  ASSERT_TRUE(scanner.read_header().ok());
  Record r;
  std::uint64_t off = 0;
  std::uint32_t bytes = 0;
  EXPECT_TRUE(*scanner.next(r, off, bytes));
  EXPECT_FALSE(*scanner.next(r, off, bytes));
  const SegmentEnd& end = scanner.end();
  EXPECT_FALSE(end.clean);
  EXPECT_EQ(end.offset, second);
  EXPECT_EQ(end.reason, RecordCheck::kBadChecksum);
  ASSERT_TRUE(end.valid_after.has_value());
  EXPECT_EQ(*end.valid_after, second + framed_size(records[1]));
  EXPECT_EQ(end.valid_after_record.entry.index, 3u);
}

// What scan_wal reports, in the line format of wal_independent_reader.py.
std::string canonical_scan(const std::string& dir) {
  std::ostringstream o;
  Result<WalSummary> s = scan_wal(dir, [&](const ScannedRecord& r) {
    const Record& rec = r.record;
    const std::uint64_t seq = r.segment.header.seq;
    auto ids = [](const std::vector<raft::NodeId>& v) {
      std::string out;
      for (std::size_t i = 0; i < v.size(); ++i) out += (i ? "," : "") + std::to_string(v[i]);
      return out.empty() ? std::string("-") : out;
    };
    switch (rec.type) {
      case RecordType::kEntry: {
        std::string hex;
        static constexpr char kHex[] = "0123456789abcdef";
        for (const char c : rec.entry.data) {
          hex += kHex[static_cast<unsigned char>(c) >> 4];
          hex += kHex[static_cast<unsigned char>(c) & 0xf];
        }
        o << "entry " << seq << " " << r.offset << " " << rec.entry.index << " " << rec.entry.term
          << " " << static_cast<int>(rec.entry.type) << " " << hex << "\n";
        break;
      }
      case RecordType::kHardState:
        o << "hard_state " << seq << " " << r.offset << " " << rec.hard_state.term << " "
          << rec.hard_state.vote << " " << rec.hard_state.commit << "\n";
        break;
      case RecordType::kSnapshot:
        o << "snapshot " << seq << " " << r.offset << " " << rec.snapshot.index << " "
          << rec.snapshot.term << " " << ids(rec.snapshot.conf.voters) << " "
          << ids(rec.snapshot.conf.learners) << "\n";
        break;
    }
    return Status();
  });
  KVC_CHECK(s.ok(), s.status().to_string());
  if (!s->damage) {
    o << "status clean\n";
  } else {
    const WalDamage& d = *s->damage;
    const std::uint64_t seq = s->segments[d.segment_pos].file.seq;
    o << "status " << damage_kind_name(d.kind) << " " << seq << " " << d.offset << "\n";
  }
  return o.str();
}

TEST(WalFormatTest, AReaderWrittenOnlyFromTheManPageAgrees) {
  // A log with rotation, rewrites, hard states, snapshot markers and released segments.
  const std::string dir = wal_test::fresh_dir("format_doc");
  const wal_test::ProcessResult child =
      wal_test::run_process({KVC_WAL_CHILD, dir, "160", "4096", "99"});
  ASSERT_EQ(child.exit_code, 0) << child.out << child.err;
  ASSERT_NE(child.out.find("snapshot"), std::string::npos);
  const std::vector<std::string> segs = wal_test::segment_paths(dir);
  ASSERT_GE(segs.size(), 2u);
  auto python = [&]() {
    const wal_test::ProcessResult r =
        wal_test::run_process({"/usr/bin/env", "python3", KVC_WAL_INDEPENDENT_READER, dir});
    EXPECT_EQ(r.exit_code, 0) << r.err;
    return r.out;
  };
  const std::string clean = canonical_scan(dir);
  EXPECT_NE(clean.find("status clean"), std::string::npos);
  EXPECT_EQ(python(), clean);
  // A torn tail.
  std::string last = wal_test::slurp(segs.back());
  Result<WalSummary> sum = scan_wal(dir, nullptr);
  ASSERT_TRUE(sum.ok());
  const std::uint64_t end = sum->segments.back().used_bytes;
  for (std::uint64_t i = end; i < end + 9; ++i) last[i] = static_cast<char>(0x40 + i);
  wal_test::spit(segs.back(), last);
  const std::string torn = canonical_scan(dir);
  EXPECT_NE(torn.find("status torn_tail"), std::string::npos);
  EXPECT_EQ(python(), torn);
  // Corruption in the first segment.
  std::string first = wal_test::slurp(segs.front());
  first[kSegmentHeaderBytes + 200] = static_cast<char>(first[kSegmentHeaderBytes + 200] ^ 0x08);
  wal_test::spit(segs.front(), first);
  const std::string corrupt = canonical_scan(dir);
  EXPECT_NE(corrupt.find("status corruption"), std::string::npos);
  EXPECT_EQ(python(), corrupt);
}

}  // namespace
}  // namespace kvc::storage
