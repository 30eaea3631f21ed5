// kvc-wal: the commands in-process (wal_tool.h) and the binary's exit codes and flags.
#include "kvc/storage/wal_tool.h"

#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>

#include "kvc/storage/data_dir.h"
#include "kvc/storage/state.h"
#include "kvc/storage/wal.h"
#include "member_storage.h"
#include "state_test_util.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using wal_test::ProcessResult;
using wal_test::run_process;

// Captures what a command prints.
struct Captured {
  int rc = -1;
  std::string out;
  std::string err;
};

template <typename F>
Captured capture(F&& run, OutputFormat format = OutputFormat::kSimple,
                 const std::string& input = "", bool interactive = false, bool progress = false) {
  Captured c;
  char* out_buf = nullptr;
  char* err_buf = nullptr;
  std::size_t out_len = 0, err_len = 0;
  std::FILE* out = open_memstream(&out_buf, &out_len);
  std::FILE* err = open_memstream(&err_buf, &err_len);
  std::FILE* in = fmemopen(const_cast<char*>(input.data()), input.size() + 1, "r");
  ToolContext ctx{.out = out,
                  .err = err,
                  .in = in,
                  .interactive = interactive,
                  .progress = progress,
                  .format = format};
  c.rc = run(ctx);
  std::fclose(out);
  std::fclose(err);
  std::fclose(in);
  c.out.assign(out_buf, out_len);
  c.err.assign(err_buf, err_len);
  std::free(out_buf);
  std::free(err_buf);
  return c;
}

// A member data directory with a WAL of entries 1..30, a hard state and a marker at 10, and a
// state at index 10 (so the log and the state agree).
std::string data_dir_with_log(const std::string& name) {
  const std::string dir = wal_test::fresh_dir(name);
  {
    Result<DataDir> d = DataDir::open(dir, DataDir::Mode::kReadWrite);
    KVC_CHECK(d.ok(), d.status().to_string());
  }
  {
    Result<std::unique_ptr<StateMachine>> st = StateMachine::open(dir + "/state");
    KVC_CHECK(st.ok(), st.status().to_string());
    Membership m;
    m.members = {{.id = 1, .name = "m1", .peer_addr = "127.0.0.1:1"}};
    (*st)->apply_membership(1, 1, m);
    for (std::uint64_t i = 2; i <= 10; ++i) (*st)->apply_noop(i, 1);
    KVC_CHECK((*st)->flush_all().ok(), "flush");
  }
  Result<OpenedWal> w = Wal::open(dir + "/wal", WalOptions{.segment_bytes = kMinSegmentBytes});
  KVC_CHECK(w.ok(), "open");
  for (std::uint64_t i = 1; i <= 30; i += 3) {
    KVC_CHECK(
        w->wal
            .append(raft::HardState{.term = wal_test::expected_term(i + 2), .vote = 2, .commit = i},
                    wal_test::expected_entries(i, i + 2))
            .ok(),
        "append");
  }
  KVC_CHECK(
      w->wal.save_snapshot(raft::SnapshotMeta{.index = 10, .term = 1, .conf = {{1, 2, 3}, {}}})
          .ok(),
      "snap");
  KVC_CHECK(w->wal.sync().ok(), "sync");
  return dir;
}

// Flips a byte inside the record that holds entry `index`.
void corrupt_entry(const std::string& wal_dir, std::uint64_t index) {
  std::string path;
  std::uint64_t offset = 0;
  Result<WalSummary> s = scan_wal(wal_dir, [&](const ScannedRecord& r) {
    if (r.record.type == RecordType::kEntry && r.record.entry.index == index) {
      path = r.segment.file.path;
      offset = r.offset;
    }
    return Status();
  });
  KVC_CHECK(s.ok() && !path.empty(), "entry not found");
  std::string bytes = wal_test::slurp(path);
  bytes[offset + 20] = static_cast<char>(bytes[offset + 20] ^ 0x01);
  wal_test::spit(path, bytes);
}

// Appends garbage right after the last record of the last segment (a torn write).
void tear_tail(const std::string& wal_dir) {
  Result<WalSummary> s = scan_wal(wal_dir, nullptr);
  KVC_CHECK(s.ok(), "scan");
  const SegmentSummary& last = s->segments.back();
  std::string bytes = wal_test::slurp(last.file.path);
  for (std::uint64_t i = 0; i < 17; ++i) bytes[last.used_bytes + i] = static_cast<char>(0x31 + i);
  wal_test::spit(last.file.path, bytes);
}

TEST(WalToolTest, InfoShowsTheLogInTextAndJson) {
  const std::string dir = data_dir_with_log("tool_info");
  Captured text = capture([&](ToolContext& c) { return run_info(dir, c); });
  EXPECT_EQ(text.rc, 0) << text.err;
  EXPECT_NE(text.out.find("entries:     1..30"), std::string::npos) << text.out;
  // Member ids are 16 hex digits everywhere.
  EXPECT_NE(text.out.find("snapshot:    index=10 term=1 voters=0000000000000001,"
                          "0000000000000002,0000000000000003"),
            std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("hard_state:  term=1 vote=0000000000000002 commit=28"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("status:      clean"), std::string::npos);
  EXPECT_TRUE(text.err.empty()) << text.err;
  Captured json =
      capture([&](ToolContext& c) { return run_info(dir + "/wal", c); }, OutputFormat::kJson);
  EXPECT_EQ(json.rc, 0);
  EXPECT_EQ(json.out.front(), '{');
  EXPECT_EQ(json.out.substr(json.out.size() - 2), "}\n");
  for (const char* field : {"\"first_index\":1", "\"last_index\":30", "\"status\":\"clean\"",
                            "\"hard_state\":{\"term\":1,\"vote\":\"0000000000000002\","
                            "\"commit\":28}",
                            "\"voters\":[\"0000000000000001\",\"0000000000000002\","
                            "\"0000000000000003\"]",
                            "\"writer_running\":false", "\"damage\":null"}) {
    EXPECT_NE(json.out.find(field), std::string::npos) << field << "\n" << json.out;
  }
}

TEST(WalToolTest, InfoReportsDamageAndShowsProgressOnlyWhenAsked) {
  const std::string dir = data_dir_with_log("tool_info_damage");
  corrupt_entry(dir + "/wal", 15);
  Captured quiet = capture([&](ToolContext& c) { return run_info(dir, c); });
  EXPECT_EQ(quiet.rc, 0);
  EXPECT_NE(quiet.out.find("status:      corruption in segment "), std::string::npos) << quiet.out;
  EXPECT_NE(quiet.out.find("after index 14: checksum mismatch"), std::string::npos) << quiet.out;
  EXPECT_TRUE(quiet.err.empty()) << quiet.err;
  Captured shown = capture([&](ToolContext& c) { return run_verify(dir, c); },
                           OutputFormat::kSimple, "", false, /*progress=*/true);
  EXPECT_EQ(shown.rc, kExitCorruption);
  EXPECT_NE(shown.err.find("\rkvc-wal: verifying "), std::string::npos) << shown.err;
  EXPECT_EQ(shown.out.find('\r'), std::string::npos) << "progress leaked into the data";
}

TEST(WalToolTest, DumpPrintsEveryRecordAndFilters) {
  const std::string dir = data_dir_with_log("tool_dump");
  Captured all = capture([&](ToolContext& c) { return run_dump(dir, {}, c); });
  EXPECT_EQ(all.rc, 0) << all.err;
  // 30 entries + 10 hard states + 1 marker, plus the hard state (and marker) at the head of
  // every segment after the first.
  EXPECT_GE(std::count(all.out.begin(), all.out.end(), '\n'), 41);
  EXPECT_NE(all.out.find(" entry index=2 term=1 type=normal len="), std::string::npos);
  EXPECT_NE(all.out.find("put key=\"key/2\" value=\"value-2xx\" request_id=2"), std::string::npos)
      << all.out;
  EXPECT_NE(all.out.find("index=26 term=1 type=normal len=0 noop"), std::string::npos);
  DumpOptions only{.from = 5, .to = 7, .types = {RecordType::kEntry}};
  Captured some =
      capture([&](ToolContext& c) { return run_dump(dir, only, c); }, OutputFormat::kJson);
  EXPECT_EQ(some.rc, 0);
  EXPECT_EQ(std::count(some.out.begin(), some.out.end(), '\n'), 3) << some.out;
  EXPECT_NE(some.out.find("\"type\":\"entry\",\"index\":5,\"term\":1,\"entry_type\":\"normal\""),
            std::string::npos)
      << some.out;
  EXPECT_NE(some.out.find("\"command\":{\"op\":\"put\",\"request_id\":5,\"key\":\"key/5\","
                          "\"value\":\"value-5xxxxx\"}"),
            std::string::npos)
      << some.out;
}

TEST(WalToolTest, DumpShowsBinaryValuesSafelyAndOverwrites) {
  const std::string dir = wal_test::fresh_dir("tool_binary");
  {
    Result<OpenedWal> w = Wal::open(dir);
    ASSERT_TRUE(w.ok());
    Command c{.op = CommandOp::kPut,
              .request_id = 1,
              .key = std::string("k\xff\x00", 3),
              .value = "line\n\"q\""};
    const std::vector<raft::Entry> first = {
        raft::Entry{.index = 1, .term = 1, .data = encode_command(c)},
        raft::Entry{.index = 2, .term = 1, .data = "\x07junk"},
        raft::Entry{
            .index = 3, .term = 1, .type = raft::EntryType::kConfChange, .data = "\x01\x02"}};
    ASSERT_TRUE(w->wal.append(std::nullopt, first).ok());
    const std::vector<raft::Entry> rewrite = {raft::Entry{.index = 2, .term = 2}};
    ASSERT_TRUE(w->wal.append(std::nullopt, rewrite).ok());
    ASSERT_TRUE(w->wal.sync().ok());
  }
  Captured text = capture([&](ToolContext& c) { return run_dump(dir, {}, c); });
  EXPECT_NE(text.out.find("key=0x6bff00 value=\"line\\n\\\"q\\\"\""), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("type=conf_change len=2 data=0x0102"), std::string::npos) << text.out;
  EXPECT_NE(text.out.find("index=2 term=2 type=normal len=0 replaces=2..3 noop"), std::string::npos)
      << text.out;
  EXPECT_NE(text.out.find("data=\"\\x07junk\" undecodable="), std::string::npos) << text.out;
  Captured json =
      capture([&](ToolContext& c) { return run_dump(dir, {}, c); }, OutputFormat::kJson);
  // The one JSON form of kvc(7): text as "key", anything else as "key_base64" only.
  EXPECT_NE(json.out.find("\"key_base64\":\"a/8A\",\"value\":\"line\\n\\\"q\\\"\"}"),
            std::string::npos)
      << json.out;
  EXPECT_EQ(json.out.find("_encoding"), std::string::npos) << json.out;
  EXPECT_NE(json.out.find("\"replaces\":{\"from\":2,\"to\":3}"), std::string::npos);
  EXPECT_NE(json.out.find("\"command\":null,\"data_base64\":\"AQI=\""), std::string::npos);
}

// (base64 and UTF-8 validation are kvc/common/text.h's, tested in tests/common/text_test.cc.)
TEST(WalToolTest, TextEncodingIsExact) {
  EXPECT_EQ(text_value("plain"), "\"plain\"");
  EXPECT_EQ(text_value(std::string("\t\x01", 2)), "\"\\t\\x01\"");
  EXPECT_EQ(text_value("\xc3\xa9"), "\"\xc3\xa9\"");
  EXPECT_EQ(text_value("\xc3"), "0xc3");
  EXPECT_EQ(text_value("\xed\xa0\x80"), "0xeda080");  // a surrogate is not text
}

TEST(WalToolTest, VerifyExitCodesAreCleanTornAndCorrupt) {
  const std::string dir = data_dir_with_log("tool_verify");
  ProcessResult clean = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(clean.exit_code, 0) << clean.err;
  EXPECT_EQ(clean.out.rfind("clean: ", 0), 0u) << clean.out;
  EXPECT_NE(clean.out.find("\nconsistent with the state in " + dir + "/state (applied index 10)"),
            std::string::npos)
      << clean.out;
  EXPECT_EQ(clean.err.find('\r'), std::string::npos) << "progress when stdout is no terminal";
  ProcessResult shown = run_process({KVC_WAL_BIN, "verify", dir, "--progress"});
  EXPECT_EQ(shown.exit_code, 0) << shown.err;
  EXPECT_NE(shown.err.find("\rkvc-wal: verifying "), std::string::npos) << shown.err;

  tear_tail(dir + "/wal");
  ProcessResult torn = run_process({KVC_WAL_BIN, "verify", dir, "-o", "json"});
  EXPECT_EQ(torn.exit_code, 7) << torn.out << torn.err;
  EXPECT_NE(torn.out.find("\"status\":\"torn_tail\""), std::string::npos) << torn.out;
  EXPECT_NE(torn.out.find("\"after_index\":30"), std::string::npos) << torn.out;

  corrupt_entry(dir + "/wal", 12);
  ProcessResult bad = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(bad.exit_code, 8) << bad.out << bad.err;
  EXPECT_NE(bad.out.find("corruption in segment "), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find(" after index 11: checksum mismatch"), std::string::npos) << bad.out;
  EXPECT_NE(bad.out.find(" at offset "), std::string::npos) << bad.out;
  ProcessResult dump = run_process({KVC_WAL_BIN, "dump", dir});
  EXPECT_EQ(dump.exit_code, 8);
  EXPECT_NE(dump.out.find("index=11 "), std::string::npos);
  EXPECT_EQ(dump.out.find("index=12 "), std::string::npos);
}

TEST(WalToolTest, UsageAndMissingDirectoryExitCodes) {
  const struct {
    std::vector<std::string> args;
    int want;
  } cases[] = {
      {{}, 2},
      {{"verify"}, 2},
      {{"verify", "/nonexistent/kvc", "--bogus"}, 2},
      {{"dump", test::test_dir(), "--type", "nope"}, 2},
      {{"repair", test::test_dir()}, 2},
      {{"repair", test::test_dir(), "--out", "x", "--in-place"}, 2},
      {{"verify", "/nonexistent/kvc"}, 3},
      {{"info", test::test_dir()}, 3},
  };
  for (const auto& c : cases) {
    std::vector<std::string> argv = {KVC_WAL_BIN};
    argv.insert(argv.end(), c.args.begin(), c.args.end());
    ProcessResult r = run_process(argv);
    std::string joined;
    for (const auto& a : c.args) joined += a + " ";
    EXPECT_EQ(r.exit_code, c.want) << joined << "\n" << r.err;
  }
}

TEST(WalToolTest, RepairOfATornTailWritesACopyAndLeavesTheOriginal) {
  const std::string dir = data_dir_with_log("tool_repair_copy");
  tear_tail(dir + "/wal");
  const std::string before = wal_test::slurp(wal_test::segment_paths(dir + "/wal").back());
  const std::string out = dir + "/wal-repaired";
  ProcessResult r = run_process({KVC_WAL_BIN, "repair", dir, "--out", out, "--yes"});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("truncate segment "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("remove 17 bytes"), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("lost: nothing that was synced"), std::string::npos) << r.out;
  EXPECT_EQ(wal_test::slurp(wal_test::segment_paths(dir + "/wal").back()), before);
  EXPECT_EQ(run_process({KVC_WAL_BIN, "verify", out}).exit_code, 0);
  Result<OpenedWal> w = Wal::open(out, WalOptions{.segment_bytes = kMinSegmentBytes});
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  EXPECT_EQ(w->log.entries, wal_test::expected_entries(11, 30));
  // Repairing a clean log does nothing and says so.
  ProcessResult again = run_process({KVC_WAL_BIN, "repair", out, "--out", out + "2", "--yes"});
  EXPECT_EQ(again.exit_code, 0);
  EXPECT_NE(again.out.find("nothing to repair"), std::string::npos);
  EXPECT_FALSE(std::filesystem::exists(out + "2"));
}

TEST(WalToolTest, RepairInPlaceSavesTheRemovedBytes) {
  const std::string dir = data_dir_with_log("tool_repair_inplace");
  tear_tail(dir + "/wal");
  const std::string backup = dir + "/backup";
  ProcessResult r =
      run_process({KVC_WAL_BIN, "repair", dir, "--in-place", "--yes", "--backup-dir", backup});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(run_process({KVC_WAL_BIN, "verify", dir}).exit_code, 0);
  std::string saved;
  for (const auto& e : std::filesystem::directory_iterator(backup)) {
    if (e.path().string().find(".from-") != std::string::npos) saved = wal_test::slurp(e.path());
  }
  ASSERT_EQ(saved.size(), 17u);
  EXPECT_EQ(saved[0], 0x31);
  EXPECT_TRUE(std::filesystem::exists(backup + "/README"));
}

TEST(WalToolTest, CuttingAtCorruptionNeedsTheFlagAndReportsWhatIsLost) {
  const std::string dir = data_dir_with_log("tool_cut");
  corrupt_entry(dir + "/wal", 20);
  const std::string before = wal_test::slurp(wal_test::segment_paths(dir + "/wal").front());
  ProcessResult refused = run_process({KVC_WAL_BIN, "repair", dir, "--in-place", "--yes"});
  EXPECT_EQ(refused.exit_code, 1) << refused.out << refused.err;
  EXPECT_NE(refused.err.find("--truncate-corrupt"), std::string::npos) << refused.err;
  ProcessResult plan =
      run_process({KVC_WAL_BIN, "repair", dir, "--truncate-corrupt", "--dry-run", "-o", "json"});
  EXPECT_EQ(plan.exit_code, 0) << plan.err;
  EXPECT_NE(plan.out.find("\"last_index_after\":19"), std::string::npos) << plan.out;
  EXPECT_NE(
      plan.out.find("\"lost_readable\":{\"entry_records\":10,\"min_index\":21,\"max_index\":30}"),
      std::string::npos)
      << plan.out;
  EXPECT_NE(plan.out.find("\"applied\":false"), std::string::npos);
  EXPECT_EQ(wal_test::slurp(wal_test::segment_paths(dir + "/wal").front()), before);

  ProcessResult cut =
      run_process({KVC_WAL_BIN, "repair", dir, "--in-place", "--truncate-corrupt", "--yes"});
  EXPECT_EQ(cut.exit_code, 0) << cut.out << cut.err;
  EXPECT_NE(cut.out.find("lost: every entry after index 19 on this member; readable in the "
                         "removed part: 10 entry record(s), indexes 21..30"),
            std::string::npos)
      << cut.out;
  EXPECT_NE(cut.out.find("catch up from its peers"), std::string::npos);
  Result<OpenedWal> w = Wal::open(dir + "/wal", WalOptions{.segment_bytes = kMinSegmentBytes});
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  EXPECT_EQ(w->wal.last_index(), 19u);
  // The member keeps the newest term and vote it had, with commit inside the shorter log.
  ASSERT_TRUE(w->log.hard_state.has_value());
  EXPECT_EQ(w->log.hard_state->vote, 2u);
  EXPECT_LE(w->log.hard_state->commit, 19u);
}

TEST(WalToolTest, ACutInPlaceMovesLaterSegmentsToTheBackupEvenOnAnotherFileSystem) {
  const std::string dir = wal_test::fresh_dir("tool_cut_move");
  const ProcessResult child = run_process({KVC_WAL_CHILD, dir, "160", "4096", "99"});
  ASSERT_EQ(child.exit_code, 0) << child.out << child.err;
  const std::vector<std::string> before = wal_test::segment_paths(dir);
  ASSERT_GE(before.size(), 2u);
  // Damage the second entry record of the oldest segment (its head records stay).
  std::uint64_t offset = 0;
  int entries = 0;
  Result<WalSummary> s = scan_wal(dir, [&](const ScannedRecord& r) {
    if (r.segment.file.path == before.front() && r.record.type == RecordType::kEntry &&
        ++entries == 2) {
      offset = r.offset;
    }
    return Status();
  });
  ASSERT_TRUE(s.ok());
  ASSERT_GT(offset, 0u);
  std::string bytes = wal_test::slurp(before.front());
  bytes[offset + 3] = static_cast<char>(bytes[offset + 3] ^ 0x10);
  wal_test::spit(before.front(), bytes);
  // /dev/shm is tmpfs: moving the removed segments there is a copy, not a rename.
  const std::string backup = wal_test::fresh_tmpfs_dir("cut_move_backup") + "/b";
  ProcessResult r = run_process({KVC_WAL_BIN, "repair", dir, "--in-place", "--truncate-corrupt",
                                 "--yes", "--backup-dir", backup});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(run_process({KVC_WAL_BIN, "verify", dir}).exit_code, 0);
  EXPECT_EQ(wal_test::segment_paths(dir).size(), 1u);
  for (std::size_t i = 1; i < before.size(); ++i) {
    const std::string name = std::filesystem::path(before[i]).filename().string();
    EXPECT_TRUE(std::filesystem::exists(backup + "/" + name)) << name;
  }
  std::filesystem::remove_all(std::filesystem::path(backup).parent_path());
}

TEST(WalToolTest, ACutKeepsTheNewestReadableMarkerOrRefusesWhenTheStartWouldBeLost) {
  // Entries 1..150 in small segments, one marker at 60, the segments below it released: every
  // remaining segment starts with a copy of the marker, the only thing covering 1..60.
  const std::string dir = wal_test::fresh_dir("tool_cut_start");
  {
    Result<OpenedWal> w = Wal::open(dir, WalOptions{.segment_bytes = kMinSegmentBytes});
    ASSERT_TRUE(w.ok());
    for (std::uint64_t i = 1; i <= 150; ++i) {
      ASSERT_TRUE(w->wal.append(std::nullopt, wal_test::expected_entries(i, i)).ok());
      if (i == 60) {
        ASSERT_TRUE(w->wal.save_snapshot(raft::SnapshotMeta{.index = 60, .term = 2}).ok());
        ASSERT_TRUE(w->wal.sync().ok());
        ASSERT_TRUE(w->wal.release_to(61).ok());
      }
    }
    ASSERT_TRUE(w->wal.sync().ok());
  }
  // Where the marker's records are: the original, then a copy at the head of later segments.
  std::vector<std::pair<std::string, std::uint64_t>> markers;
  Result<WalSummary> scanned = scan_wal(dir, [&](const ScannedRecord& r) {
    if (r.record.type == RecordType::kSnapshot) markers.emplace_back(r.segment.file.path, r.offset);
    return Status();
  });
  ASSERT_TRUE(scanned.ok());
  ASSERT_GE(markers.size(), 3u);
  auto flip = [](const std::pair<std::string, std::uint64_t>& at) {
    std::string bytes = wal_test::slurp(at.first);
    bytes[at.second + 20] = static_cast<char>(bytes[at.second + 20] ^ 0x01);
    wal_test::spit(at.first, bytes);
  };
  // The original is damaged: a cut there keeps a copy read from a later segment.
  flip(markers[0]);
  ProcessResult keeps =
      run_process({KVC_WAL_BIN, "repair", dir, "--truncate-corrupt", "--dry-run"});
  EXPECT_EQ(keeps.exit_code, 0) << keeps.out << keeps.err;
  EXPECT_NE(keeps.out.find("append snapshot marker index=60 term=2"), std::string::npos)
      << keeps.out;
  // Every copy is damaged: nothing would cover entries 1..56 any more.
  for (std::size_t i = 1; i < markers.size(); ++i) flip(markers[i]);
  const std::string oldest = wal_test::slurp(markers[0].first);
  ProcessResult r = run_process({KVC_WAL_BIN, "repair", dir, "--truncate-corrupt", "--dry-run"});
  EXPECT_EQ(r.exit_code, 1) << r.out << r.err;
  EXPECT_NE(r.err.find("would leave a log without its start"), std::string::npos) << r.err;
  EXPECT_EQ(wal_test::slurp(markers[0].first), oldest);
}

TEST(WalToolTest, RepairAsksOnATerminalAndRefusesWithoutAnAnswer) {
  const std::string dir = data_dir_with_log("tool_ask");
  tear_tail(dir + "/wal");
  RepairOptions opt{.in_place = true, .backup_dir = dir + "/b1"};
  Captured no = capture([&](ToolContext& c) { return run_repair(dir, opt, c); },
                        OutputFormat::kSimple, "n\n", /*interactive=*/true);
  EXPECT_EQ(no.rc, 1);
  EXPECT_NE(no.err.find("apply this repair? [y/N]"), std::string::npos) << no.err;
  EXPECT_NE(no.err.find("aborted"), std::string::npos);
  Captured script = capture([&](ToolContext& c) { return run_repair(dir, opt, c); });
  EXPECT_EQ(script.rc, 1);
  EXPECT_NE(script.err.find("pass --yes"), std::string::npos) << script.err;
  EXPECT_FALSE(std::filesystem::exists(dir + "/b1"));
  Captured yes = capture([&](ToolContext& c) { return run_repair(dir, opt, c); },
                         OutputFormat::kSimple, "y\n", /*interactive=*/true);
  EXPECT_EQ(yes.rc, 0) << yes.err;
  EXPECT_TRUE(std::filesystem::exists(dir + "/b1/README"));
}

TEST(WalToolTest, ALiveMemberIsDetectedWithoutTakingItsLock) {
  const std::string dir = data_dir_with_log("tool_live");
  Result<DataDir> held = DataDir::open(dir, DataDir::Mode::kReadWrite);
  ASSERT_TRUE(held.ok()) << held.status().to_string();
  ProcessResult info = run_process({KVC_WAL_BIN, "info", dir});
  EXPECT_EQ(info.exit_code, 0) << info.err;
  EXPECT_NE(info.err.find("running member (pid " + std::to_string(::getpid()) + ")"),
            std::string::npos)
      << info.err;
  EXPECT_NE(info.out.find("writer:      running (pid " + std::to_string(::getpid())),
            std::string::npos);
  tear_tail(dir + "/wal");
  ProcessResult verify = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(verify.exit_code, 7);
  EXPECT_NE(verify.err.find("write still in progress"), std::string::npos) << verify.err;
  ProcessResult repair = run_process({KVC_WAL_BIN, "repair", dir, "--in-place", "--yes"});
  EXPECT_EQ(repair.exit_code, 1);
  EXPECT_NE(repair.err.find("is running"), std::string::npos) << repair.err;
  // We still hold the lock: nothing took it from us.
  EXPECT_EQ(DataDir::open(dir, DataDir::Mode::kReadWrite).status().code(),
            Code::kFailedPrecondition);
}

// ---- the log against the state (consistency.h) ----

// A data directory whose WAL spans several segments, whose state flushed at 60.
std::string member_dir(const std::string& name) {
  const std::string dir = wal_test::fresh_dir(name);
  testing::MemberStorage m(dir);
  m.append_apply_flush(60);
  return dir;
}

TEST(WalToolTest, VerifyOfADataDirectoryCatchesARemovedNewestSegment) {
  const std::string dir = member_dir("tool_newest");
  std::filesystem::remove(wal_test::segment_paths(dir + "/wal").back());
  // Only the log: it reads clean, as it did before this check existed.
  ProcessResult alone = run_process({KVC_WAL_BIN, "verify", dir + "/wal"});
  EXPECT_EQ(alone.exit_code, 0) << alone.out << alone.err;
  // The data directory: the state says the log must reach 60.
  ProcessResult r = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(r.exit_code, 9) << r.out << r.err;
  EXPECT_EQ(r.out.rfind("clean: ", 0), 0u) << r.out;
  EXPECT_NE(r.out.find("\ninconsistent: the wal in " + dir + "/wal ends at index "),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("are missing from the log"), std::string::npos) << r.out;
  EXPECT_NE(r.err.find("will not start on this data directory"), std::string::npos) << r.err;
  ProcessResult json = run_process({KVC_WAL_BIN, "verify", dir, "-o", "json"});
  EXPECT_EQ(json.exit_code, 9);
  EXPECT_NE(json.out.find("\"consistency\":{\"status\":\"inconsistent\""), std::string::npos)
      << json.out;
  EXPECT_NE(json.out.find("\"kind\":\"log_truncated\""), std::string::npos) << json.out;
  // repair has nothing to cut, but does not call the directory fine.
  ProcessResult repair = run_process({KVC_WAL_BIN, "repair", dir, "--dry-run"});
  EXPECT_EQ(repair.exit_code, 9) << repair.out << repair.err;
  EXPECT_NE(repair.out.find("nothing to repair: the log is clean"), std::string::npos);
  EXPECT_NE(repair.err.find("no repair of the log can fix"), std::string::npos) << repair.err;
}

TEST(WalToolTest, VerifyOfADataDirectoryCatchesAMissingMiddleSegmentAndAnOlderState) {
  const std::string dir = member_dir("tool_middle");
  ProcessResult ok = run_process({KVC_WAL_BIN, "verify", dir, "-o", "json"});
  EXPECT_EQ(ok.exit_code, 0) << ok.out << ok.err;
  EXPECT_NE(ok.out.find("\"consistency\":{\"status\":\"consistent\""), std::string::npos) << ok.out;
  const std::vector<std::string> segs = wal_test::segment_paths(dir + "/wal");
  ASSERT_GE(segs.size(), 3u);
  const std::string saved = wal_test::slurp(segs[1]);
  std::filesystem::remove(segs[1]);
  ProcessResult r = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(r.exit_code, 8) << r.out << r.err;
  EXPECT_NE(r.out.find("(a segment is missing)"), std::string::npos) << r.out;
  wal_test::spit(segs[1], saved);
  // An empty state (removed, then recreated empty) is older than the log's marker at 60.
  std::filesystem::remove_all(dir + "/state");
  std::filesystem::create_directories(dir + "/state");
  r = run_process({KVC_WAL_BIN, "verify", dir});
  EXPECT_EQ(r.exit_code, 9) << r.out << r.err;
  EXPECT_NE(r.out.find("snapshot marker at index 60"), std::string::npos) << r.out;
}

}  // namespace
}  // namespace kvc::storage
