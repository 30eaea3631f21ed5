// The cross-file invariants (consistency.h): every violation is reported with a message that
// says what is missing and what to do, on facts and on real data directories damaged the way
// the issue found them (a removed newest or middle segment, an older state put back); and the
// legitimate shapes (new, joining, restored, installed from the leader, torn tail) pass.
#include "kvc/storage/consistency.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <optional>

#include "kvc/storage/command.h"
#include "kvc/storage/snapshot_restore.h"
#include "kvc/storage/state.h"
#include "member_storage.h"
#include "state_test_util.h"
#include "wal_test_util.h"

namespace kvc::storage {
namespace {

using testing::fresh_dir;
using testing::MemberStorage;

// ---- on facts ----

StateFacts state_at(std::uint64_t d, std::uint64_t l = 0, std::uint64_t installed = 0) {
  return StateFacts{.state_dir = "/d/state",
                    .format = kStateFormatVersion,
                    .applied_index = d,
                    .applied_term = 1,
                    .log_durable_index = l,
                    .installed_index = installed,
                    .has_membership = d > 0};
}

LogFacts log_of(std::uint64_t first, std::uint64_t last, std::optional<std::uint64_t> marker,
                std::optional<std::uint64_t> commit = std::nullopt, std::size_t segments = 1) {
  LogFacts f;
  f.wal_dir = "/d/wal";
  f.segments = segments;
  f.log.first_index = first;
  f.log.last_index = last;
  if (marker) f.log.snapshot = raft::SnapshotMeta{*marker, 1, {}};
  if (commit) f.log.hard_state = raft::HardState{1, 0, *commit};
  return f;
}

TEST(ConsistencyTest, FactsTable) {
  const struct {
    const char* name;
    StateFacts state;
    LogFacts log;
    std::vector<Violation> want;
  } cases[] = {
      {"brand new member", state_at(0), log_of(1, 0, std::nullopt, std::nullopt, 0), {}},
      {"joining member, one empty segment", state_at(0), log_of(1, 0, std::nullopt), {}},
      {"state behind the log", state_at(40, 45), log_of(1, 60, 20, 55), {}},
      {"state at the log's end", state_at(60, 60), log_of(41, 60, 40, 60), {}},
      {"restored: installed at D, no log yet",
       state_at(50, 0, 50),
       log_of(1, 0, std::nullopt, std::nullopt, 0),
       {}},
      {"installed from the leader, marker not written yet",
       state_at(50, 0, 50),
       log_of(1, 12, std::nullopt, 10),
       {}},
      {"installed long ago, then the log was cut",
       state_at(51, 0, 50),
       log_of(1, 12, 10, 10),
       {Violation::kLogTruncated}},
      {"state older than the newest marker",
       state_at(20, 20),
       log_of(41, 60, 40, 60),
       {Violation::kStateBehindMarker}},
      {"every segment removed",
       state_at(60, 60),
       log_of(1, 0, std::nullopt, std::nullopt, 0),
       {Violation::kLogTruncated}},
      {"newest segment removed, state past the log",
       state_at(60, 60),
       log_of(1, 52, 40, 50),
       {Violation::kLogTruncated}},
      {"newest segment removed, state inside the log",
       state_at(45, 60),
       log_of(1, 52, 40, 50),
       {Violation::kLogTruncated}},
      {"log starts after the state",
       state_at(30, 30),
       log_of(41, 60, std::nullopt, 50),
       {Violation::kLogGap}},
      {"commit past log and state",
       state_at(30, 30),
       log_of(1, 40, 20, 45),
       {Violation::kCommitNotCovered}},
      {"a state without members",
       StateFacts{.state_dir = "/d/state", .applied_index = 5},
       log_of(1, 10, std::nullopt, 5),
       {Violation::kNoMembership}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const ConsistencyReport r = check_consistency(c.state, c.log);
    std::vector<Violation> got;
    for (const ConsistencyViolation& v : r.violations) got.push_back(v.kind);
    EXPECT_EQ(got, c.want) << r.describe();
    EXPECT_EQ(r.ok(), c.want.empty());
    EXPECT_EQ(r.status().ok(), c.want.empty());
    if (!r.ok()) {
      EXPECT_EQ(r.status().code(), Code::kCorruption);
      // Each message says where, and what to do.
      for (const ConsistencyViolation& v : r.violations) {
        EXPECT_NE(v.message.find("/d/"), std::string::npos) << v.message;
        EXPECT_NE(v.message.find("kvc-ctl member remove"), std::string::npos) << v.message;
      }
    }
  }
}

TEST(ConsistencyTest, MessagesNameTheMissingEntries) {
  ConsistencyReport r = check_consistency(state_at(45, 60), log_of(1, 52, 40, 50));
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_NE(r.violations[0].message.find("the wal in /d/wal ends at index 52"), std::string::npos)
      << r.violations[0].message;
  EXPECT_NE(r.violations[0].message.find("committed entries up to index 60"), std::string::npos);
  EXPECT_NE(r.violations[0].message.find("entries 53..60 are missing"), std::string::npos);
  r = check_consistency(state_at(20, 20), log_of(41, 60, 40, 60));
  ASSERT_EQ(r.violations.size(), 1u);
  EXPECT_NE(r.violations[0].message.find("snapshot marker at index 40"), std::string::npos);
  EXPECT_NE(r.violations[0].message.find("entries 21..40"), std::string::npos);
  EXPECT_NE(r.status().message().find("data directory inconsistent: "), std::string::npos);
}

// ---- on data directories ----

std::vector<Violation> kinds_of(const std::string& data_dir) {
  Result<ConsistencyReport> r = check_data_dir_consistency(data_dir);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  std::vector<Violation> out;
  if (r.ok()) {
    for (const ConsistencyViolation& v : r->violations) out.push_back(v.kind);
  }
  return out;
}

TEST(ConsistencyTest, AHealthyMemberIsConsistentAndSoIsWhatTheServerChecksInMemory) {
  MemberStorage m(fresh_dir());
  m.append_apply_flush(30);
  m.append(45);
  m.apply(40);  // applying lags the log a little
  EXPECT_TRUE(check_consistency(m.state().facts(), log_facts(m.wal())).ok());
  m.close();
  EXPECT_EQ(kinds_of(m.dir()), std::vector<Violation>{});
  // And after a restart, what the server checks (the opened WAL and the state's facts).
  m.open();
  const ConsistencyReport r = check_consistency(m.state().facts(), log_facts(m.wal()));
  EXPECT_TRUE(r.ok()) << r.describe();
  EXPECT_EQ(r.state.applied_index, 30u);
  EXPECT_EQ(r.state.log_durable_index, 30u);
  EXPECT_EQ(r.log.log.last_index, 45u);
}

TEST(ConsistencyTest, RemovedNewestSegmentIsCaughtWhenTheStateIsPastTheRest) {
  MemberStorage m(fresh_dir());
  m.append_apply_flush(60);
  m.close();
  const std::vector<std::string> segs = wal_test::segment_paths(m.dir() + "/wal");
  ASSERT_GE(segs.size(), 3u);
  std::filesystem::remove(segs.back());
  // The log alone still reads clean: only the state knows it should reach 60.
  Result<WalSummary> s = scan_wal(m.dir() + "/wal", nullptr);
  ASSERT_TRUE(s.ok());
  EXPECT_FALSE(s->damage.has_value());
  EXPECT_EQ(kinds_of(m.dir()), std::vector<Violation>{Violation::kLogTruncated});
}

TEST(ConsistencyTest, RemovedNewestSegmentIsCaughtWhenTheStateIsStillInsideTheRest) {
  MemberStorage m(fresh_dir());
  m.append_apply_flush(20);
  m.append(70);
  m.apply(30);
  m.flush();  // D = 30, but the log durably held committed entries up to 70
  m.close();
  std::vector<std::string> segs = wal_test::segment_paths(m.dir() + "/wal");
  ASSERT_GE(segs.size(), 3u);
  std::filesystem::remove(segs.back());
  Result<WalSummary> s = scan_wal(m.dir() + "/wal", nullptr);
  ASSERT_TRUE(s.ok());
  ASSERT_GT(s->log.last_index, 30u) << "the state's index must still be inside the log";
  ASSERT_LT(s->log.last_index, 70u);
  Result<ConsistencyReport> r = check_data_dir_consistency(m.dir());
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->violations.size(), 1u);
  EXPECT_EQ(r->violations[0].kind, Violation::kLogTruncated);
  EXPECT_NE(r->violations[0].message.find("up to index 70"), std::string::npos)
      << r->violations[0].message;
}

TEST(ConsistencyTest, RemovedMiddleSegmentIsWalCorruption) {
  MemberStorage m(fresh_dir());
  m.append_apply_flush(60);
  m.close();
  const std::vector<std::string> segs = wal_test::segment_paths(m.dir() + "/wal");
  ASSERT_GE(segs.size(), 3u);
  std::filesystem::remove(segs[segs.size() / 2]);
  Result<ConsistencyReport> r = check_data_dir_consistency(m.dir());
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_NE(r.status().message().find("a segment is missing"), std::string::npos)
      << r.status().message();
  EXPECT_EQ(Wal::open(m.dir() + "/wal").status().code(), Code::kCorruption);
}

TEST(ConsistencyTest, AnOlderStatePutBackIsBehindTheNewestMarker) {
  const std::string dir = fresh_dir();
  MemberStorage m(dir);
  m.append_apply_flush(20);
  m.close();
  std::filesystem::copy(dir + "/state", dir + "/state.old",
                        std::filesystem::copy_options::recursive);
  m.open();
  m.append_apply_flush(40);
  m.close();
  std::filesystem::remove_all(dir + "/state");
  std::filesystem::rename(dir + "/state.old", dir + "/state");
  EXPECT_EQ(kinds_of(dir), std::vector<Violation>{Violation::kStateBehindMarker});
}

TEST(ConsistencyTest, ATornTailIsNotAViolation) {
  MemberStorage m(fresh_dir());
  m.append_apply_flush(30);
  m.append(35);
  m.close();
  // Half a record after the last one: what a crash in the middle of an unsynced write leaves.
  const std::string last = wal_test::segment_paths(m.dir() + "/wal").back();
  Result<WalSummary> s = scan_wal(m.dir() + "/wal", nullptr);
  ASSERT_TRUE(s.ok());
  std::string bytes = wal_test::slurp(last);
  const std::uint64_t end = s->segments.back().used_bytes;
  ASSERT_LE(end + 9, bytes.size());
  for (std::uint64_t i = end; i < end + 9; ++i) bytes[i] = '\x5a';
  wal_test::spit(last, bytes);
  s = scan_wal(m.dir() + "/wal", nullptr);
  ASSERT_TRUE(s.ok());
  ASSERT_TRUE(s->damage && s->damage->kind == DamageKind::kTornTail);
  EXPECT_EQ(kinds_of(m.dir()), std::vector<Violation>{});
}

TEST(ConsistencyTest, ASnapshotFromTheLeaderInstalledBeforeItsMarkerIsConsistent) {
  // A member at index 10 installs a snapshot at 50 and crashes before the WAL records the
  // marker: its state is ahead of its log, legitimately.
  const std::string leader_dir = fresh_dir("leader");
  MemberStorage leader(leader_dir);
  leader.append_apply_flush(50);
  Result<SnapshotInfo> snap = leader.state().save_snapshot(leader_dir + "/snap");
  ASSERT_TRUE(snap.ok());
  MemberStorage m(fresh_dir("follower"));
  m.append_apply_flush(10);
  ASSERT_TRUE(m.state().install_snapshot(snap->path).ok());
  m.close();
  EXPECT_EQ(kinds_of(m.dir()), std::vector<Violation>{});
  // Then the marker, then entries after it, and a flush: still consistent.
  m.open();
  ASSERT_TRUE(m.wal().save_snapshot({50, 1, raft::ConfState{{1}, {}}}).ok());
  ASSERT_TRUE(m.wal().sync().ok());
  m.close();
  EXPECT_EQ(kinds_of(m.dir()), std::vector<Violation>{});
}

TEST(ConsistencyTest, ARestoredMemberIsConsistentBeforeItsFirstStart) {
  const std::string src = fresh_dir("src");
  MemberStorage leader(src);
  leader.append_apply_flush(25);
  Result<SnapshotInfo> snap = leader.state().save_snapshot(src + "/snap");
  ASSERT_TRUE(snap.ok());
  const std::string dst = fresh_dir("restored") + "/member";
  RestoreOptions o;
  o.snapshot_path = snap->path;
  o.data_dir = dst;
  o.name = "m1";
  o.initial_cluster = "m1=127.0.0.1:2380";
  Result<RestoreResult> r = restore_snapshot(o);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  Result<ConsistencyReport> c = check_data_dir_consistency(dst);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_TRUE(c->ok()) << c->describe();
  EXPECT_EQ(c->state.applied_index, 25u);
  EXPECT_EQ(c->state.installed_index, 25u);
}

TEST(ConsistencyTest, AnEmptyDataDirectoryIsANewMember) {
  const std::string dir = fresh_dir();
  EXPECT_EQ(kinds_of(dir), std::vector<Violation>{});
  EXPECT_EQ(kinds_of(dir + "/does-not-exist"), std::vector<Violation>{});
}

}  // namespace
}  // namespace kvc::storage
