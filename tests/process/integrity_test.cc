// Integrity of a member's data as real processes see it (issue 14): a damaged value in a stopped
// member's LMDB state is never served and is repaired from the leader; a member restarted on an
// older copy of its own data directory is noticed by the leader, does not vote until repaired,
// and is repaired without a leader change; fatal errors end the process with exit 1 within
// seconds and a stop signal always works. Every process is stopped by PID (ProcessCluster).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <map>
#include <thread>

#include "data_dir_faults.h"
#include "process_cluster.h"
#include "support/text.h"

namespace kvc::test {
namespace {

using namespace std::chrono_literals;

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

std::string value_for(int i) {
  return "integrity-value-" + std::to_string(i) + "-" + std::string(40, 'v');
}

std::map<std::string, std::string> write_keys(client::Client& c, int from, int to) {
  std::map<std::string, std::string> acked;
  for (int i = from; i < to; ++i) {
    const std::string key = "/ik" + std::to_string(i);
    wire::Response r = c.put(key, value_for(i));
    EXPECT_EQ(r.code, Code::kOk) << key << ": " << r.message;
    if (r.code == Code::kOk) acked[key] = value_for(i);
  }
  return acked;
}

// A read answered by member i itself (CallOptions::target: the client does not follow the
// leader), so what that member serves is what is checked.
wire::Response get_from(const ProcessCluster& cluster, client::Client& c, int i,
                        const std::string& key, bool serializable) {
  return c.call_sync({.op = wire::Op::kGet, .key = key, .serializable = serializable},
                     {.target = *net::parse_address(cluster.client_addr(i))});
}

// Every member serves every acknowledged key with its value (serializable reads through each
// member, so a member that served a damaged copy would be caught).
void expect_every_member_serves(const ProcessCluster& cluster,
                                const std::map<std::string, std::string>& acked) {
  for (int i = 0; i < cluster.size(); ++i) {
    if (!cluster.running(i)) continue;
    auto c = cluster.client_for(i, 5000);
    for (const auto& [k, v] : acked) {
      wire::Response r = get_from(cluster, *c, i, k, /*serializable=*/true);
      ASSERT_EQ(r.code, Code::kOk) << "member " << i << " key " << k << ": " << r.message;
      ASSERT_TRUE(r.found) << "member " << i << " lost " << k;
      ASSERT_EQ(r.kvs.at(0).value, v) << "member " << i << " key " << k;
    }
  }
}

const std::vector<std::string> kQuiet = {"--scrub-rate", "0", "--hash-check-interval", "0"};

TEST(IntegrityProcessTest, DamagedValueIsNeverServedAndIsRepairedFromTheLeader) {
  ProcessCluster cluster("integrity-damaged-value", {.extra_flags = kQuiet});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 30);
  const int f = (*leader + 1) % cluster.size();
  // Every member has applied everything, then f stops cleanly (its state is flushed to LMDB).
  ASSERT_TRUE(cluster.wait_applied(f, status_of(cluster, *leader).commit_index).ok());
  Result<int> stopped = cluster.stop(f);
  ASSERT_TRUE(stopped.ok());
  ASSERT_EQ(*stopped, 0);
  ASSERT_GT(flip_bit_in_every_copy(state_file(cluster.spec(f).data_dir), value_for(7)), 0);
  ASSERT_TRUE(cluster.start(f).ok());
  ASSERT_TRUE(wait_until([&] { return status_of(cluster, f).member_id != 0; }, 10s, "f to answer",
                         kPollEvery)
                  .ok())
      << "f did not come up: " << log_of(cluster, f);

  // Reads of the damaged key through f: never the damaged bytes, whatever the consistency.
  auto cf = cluster.client_for(f, 3000);
  for (bool serializable : {true, false}) {
    wire::Response r = get_from(cluster, *cf, f, "/ik7", serializable);
    if (r.code == Code::kOk && r.found) {
      EXPECT_EQ(r.kvs.at(0).value, value_for(7)) << "served a damaged value";
    } else {
      EXPECT_EQ(r.code, Code::kUnavailable) << r.message;
    }
  }
  // The member noticed, says so, and repairs itself without a leader change.
  EXPECT_TRUE(
      wait_until([&] { return log_of(cluster, f).find("state damaged") != std::string::npos; }, 20s,
                 "f to log the damage", kPollEvery)
          .ok())
      << log_of(cluster, f);
  EXPECT_TRUE(wait_until(
                  [&] {
                    wire::StatusInfo s = status_of(cluster, f);
                    return !s.damaged && !s.repairing && s.applied_index > 0;
                  },
                  30s, "f to be repaired", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  EXPECT_NE(log_of(cluster, f).find("state repaired"), std::string::npos);
  wire::Response r = get_from(cluster, *cf, f, "/ik7", /*serializable=*/true);
  ASSERT_EQ(r.code, Code::kOk) << r.message;
  ASSERT_TRUE(r.found);
  EXPECT_EQ(r.kvs.at(0).value, value_for(7));
  expect_every_member_serves(cluster, acked);
  ProcessCluster::CtlResult hash = cluster.ctl({"check", "hash"});
  EXPECT_EQ(hash.status, 0) << hash.out;
}

// What `kvc-snap dump FILE` prints (values as text), or "" when it fails.
std::string dump_snapshot(const std::string& file) {
  std::string out;
  FILE* p =
      ::popen(("'" + binary_path("kvc-snap") + "' dump '" + file + "' 2>/dev/null").c_str(), "r");
  if (p == nullptr) return out;
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  return ::pclose(p) == 0 ? out : std::string();
}

TEST(IntegrityProcessTest, SnapshotSaveFromADamagedMemberNeverSavesTheDamage) {
  // Issue 14 case 1: `snapshot save` from a member with a damaged value said "checksum
  // verified" and the backup held the bad value. Now the member finds the damage while it
  // streams, refuses, and repairs itself; the client may then get a good snapshot from it (it
  // retries an unavailable member), but never one holding the damage.
  ProcessCluster cluster("integrity-snapshot-save", {.extra_flags = kQuiet});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 20);
  const int f = (*leader + 1) % cluster.size();
  ASSERT_TRUE(cluster.wait_applied(f, status_of(cluster, *leader).commit_index).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  std::string damaged = value_for(3);
  damaged[damaged.size() / 2] ^= 0x10;
  ASSERT_GT(flip_bit_in_every_copy(state_file(cluster.spec(f).data_dir), value_for(3)), 0);
  ASSERT_TRUE(cluster.start(f).ok());
  const std::string out = cluster.dir() + "/backup.snap";
  ProcessCluster::CtlResult save =
      cluster.ctl_with(cluster.client_addr(f), {"snapshot", "save", out});
  EXPECT_NE(log_of(cluster, f).find("state damaged"), std::string::npos) << log_of(cluster, f);
  if (save.status == 0) {
    const std::string dump = dump_snapshot(out);
    ASSERT_FALSE(dump.empty()) << "kvc-snap dump failed on " << out;
    EXPECT_NE(dump.find(value_for(3)), std::string::npos) << "the backup lacks /ik3";
    EXPECT_EQ(dump.find(damaged), std::string::npos) << "the backup holds the damaged value";
  } else {
    EXPECT_FALSE(fs::exists(out)) << "a failed save left " << out;
  }
  // Repaired, and a save through it then succeeds with the right data.
  EXPECT_TRUE(wait_until([&] { return !status_of(cluster, f).damaged; }, 30s, "f to be undamaged",
                         kPollEvery)
                  .ok())
      << log_of(cluster, f);
  fs::remove(out);
  ProcessCluster::CtlResult again =
      cluster.ctl_with(cluster.client_addr(f), {"snapshot", "save", out});
  ASSERT_EQ(again.status, 0) << again.out;
  const std::string dump = dump_snapshot(out);
  EXPECT_NE(dump.find(value_for(3)), std::string::npos);
  EXPECT_EQ(dump.find(damaged), std::string::npos);
  expect_every_member_serves(cluster, acked);
}

TEST(IntegrityProcessTest, ScrubberFindsDamageInAKeyNobodyReadsAndTheMemberRepairs) {
  // --scrub-rate per member: f gets a fast scrubber after its restart, the others none.
  ProcessCluster cluster("integrity-scrub", {.extra_flags = {"--hash-check-interval", "0"}});
  for (int i = 0; i < cluster.size(); ++i) {
    cluster.mutable_spec(i).extra_flags = {"--scrub-rate", "0"};
  }
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 40);
  const int f = (*leader + 1) % cluster.size();
  ASSERT_TRUE(cluster.wait_applied(f, status_of(cluster, *leader).commit_index).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  ASSERT_GT(flip_bit_in_every_copy(state_file(cluster.spec(f).data_dir), value_for(33)), 0);
  // Nobody reads /ik33 through f: only the scrubber (fast here) can find it.
  cluster.mutable_spec(f).extra_flags = {"--scrub-rate", "1000000"};
  ASSERT_TRUE(cluster.start(f).ok());
  EXPECT_TRUE(wait_until(
                  [&] {
                    return log_of(cluster, f).find("scrub found a damaged record") !=
                           std::string::npos;
                  },
                  30s, "the scrub to log the damaged record", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  std::uint64_t found = 0;
  EXPECT_TRUE(wait_until(
                  [&] {
                    wire::StatusInfo s = status_of(cluster, f);
                    found = s.scrub_damaged;
                    return s.scrub_damaged >= 1 && !s.damaged && !s.repairing;
                  },
                  30s, "the scrub to find and mend the damage", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  EXPECT_NE(log_of(cluster, f).find("state repaired"), std::string::npos);
  // A whole later pass finds nothing more: the repaired state is clean.
  const std::uint64_t passes = status_of(cluster, f).scrub_passes;
  EXPECT_TRUE(wait_until([&] { return status_of(cluster, f).scrub_passes >= passes + 2; }, 30s,
                         "two more scrub passes", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  EXPECT_EQ(status_of(cluster, f).scrub_damaged, found);
  expect_every_member_serves(cluster, acked);
}

// A small state is scrubbed whole every tick (100 ms): the passes are counted, but the log says
// so at info only for the first one (then after damage, or every 10 minutes), not ten times a
// second.
TEST(IntegrityProcessTest, ScrubPassesOfASmallStateDoNotFloodTheLog) {
  ProcessCluster cluster("integrity-scrub-log", {.members = 1});
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto c = cluster.client(5000);
  write_keys(*c, 0, 5);
  EXPECT_TRUE(wait_until([&] { return status_of(cluster, 0).scrub_passes >= 20; }, 30s,
                         "20 scrub passes", kPollEvery)
                  .ok())
      << log_of(cluster, 0);
  EXPECT_EQ(count_of(log_of(cluster, 0), "scrub pass complete"), 1u) << log_of(cluster, 0);
}

TEST(IntegrityProcessTest, FollowerRestartedOnAnOlderCopyOfItsDataIsRepairedByTheSameLeader) {
  ProcessCluster cluster("integrity-rollback", {.extra_flags = kQuiet});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 10);
  const int f = (*leader + 1) % cluster.size();
  ASSERT_TRUE(cluster.wait_applied(f, status_of(cluster, *leader).commit_index).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  const std::string dir = cluster.spec(f).data_dir;
  const std::string copy = cluster.dir() + "/older-copy";
  fs::copy(dir, copy, fs::copy_options::recursive);
  ASSERT_TRUE(cluster.start(f).ok());
  // Ten more writes that f acknowledges (the leader waits for f: it has applied them).
  std::map<std::string, std::string> more = write_keys(*c, 10, 20);
  acked.insert(more.begin(), more.end());
  const std::uint64_t commit = status_of(cluster, *leader).commit_index;
  ASSERT_TRUE(cluster.wait_applied(f, commit).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  fs::remove_all(dir);
  fs::rename(copy, dir);
  ASSERT_TRUE(cluster.start(f).ok());

  // The same leader notices the loss, and repairs f by replication.
  EXPECT_TRUE(
      wait_until(
          [&] {
            return log_of(cluster, *leader).find("member lost entries it had acknowledged") !=
                   std::string::npos;
          },
          20s, "the leader to notice the lost entries", kPollEvery)
          .ok())
      << log_of(cluster, *leader);
  EXPECT_TRUE(wait_until(
                  [&] {
                    wire::StatusInfo s = status_of(cluster, f);
                    return !s.repairing && s.applied_index >= commit;
                  },
                  20s, "f to be repaired and caught up", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  EXPECT_GE(status_of(cluster, *leader).lost_entries_detected, 1u);
  // Linearizable reads through f work (they timed out forever before).
  auto cf = cluster.client_for(f, 5000);
  for (const auto& [k, v] : acked) {
    wire::Response r = get_from(cluster, *cf, f, k, /*serializable=*/false);
    ASSERT_EQ(r.code, Code::kOk) << k << ": " << r.message;
    ASSERT_TRUE(r.found) << k;
    EXPECT_EQ(r.kvs.at(0).value, v);
  }
  // No leader change was needed.
  Result<int> now = cluster.wait_for_leader();
  ASSERT_TRUE(now.ok());
  EXPECT_EQ(*now, *leader);
}

// The remedy the start-up refusals name: remove the member, move its data directory aside, add
// it again and start it with the command line member add prints. Then it must hold every key.
void rebuild_member_from_the_cluster(ProcessCluster& cluster, int f) {
  const Status s = rebuild_member(cluster, f, ".refused");
  ASSERT_TRUE(s.ok()) << s.to_string();
  ASSERT_TRUE(cluster.start(f).ok());
}

TEST(IntegrityProcessTest, StateOlderThanTheLogSaysIsRefusedWithTheRemedy) {
  // Issue 14 case 2: the state put back from an older copy, one flush or more behind the WAL's
  // newest snapshot marker.
  ProcessCluster cluster("integrity-old-state", {.extra_flags = kQuiet});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 10);
  const int f = (*leader + 1) % cluster.size();
  ASSERT_TRUE(cluster.wait_applied(f, status_of(cluster, *leader).commit_index).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  const std::string state = cluster.spec(f).data_dir + "/state";
  fs::copy(state, cluster.dir() + "/older-state", fs::copy_options::recursive);
  ASSERT_TRUE(cluster.start(f).ok());
  std::map<std::string, std::string> more = write_keys(*c, 10, 30);
  acked.insert(more.begin(), more.end());
  const std::uint64_t commit = status_of(cluster, *leader).commit_index;
  ASSERT_TRUE(cluster.wait_applied(f, commit).ok());
  // A clean stop flushes and writes a snapshot marker at the new applied index.
  ASSERT_TRUE(cluster.stop(f).ok());
  fs::remove_all(state);
  fs::rename(cluster.dir() + "/older-state", state);
  ASSERT_TRUE(cluster.start(f).ok());
  Result<int> rc = cluster.wait_exit(f, 15000);
  ASSERT_TRUE(rc.ok()) << "started on a state older than its log: " << log_of(cluster, f);
  EXPECT_EQ(*rc, 1);
  const std::string log = log_of(cluster, f);
  EXPECT_NE(log.find("older than its log"), std::string::npos) << log;
  EXPECT_NE(log.find("member remove"), std::string::npos) << log;
  // The remedy it names works, and nothing acknowledged is missing anywhere.
  rebuild_member_from_the_cluster(cluster, f);
  EXPECT_TRUE(wait_until([&] { return status_of(cluster, f).applied_index >= commit; }, 30s,
                         "f to catch up", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  expect_every_member_serves(cluster, acked);
  EXPECT_TRUE(wait_until(
                  [&] {
                    return cluster.ctl({"check", "hash"}).status == 0;
                  },
                  15s, "the members' hashes to agree", kPollEvery)
                  .ok());
}

TEST(IntegrityProcessTest, MissingNewestWalSegmentIsRefusedWithTheRemedy) {
  // Issue 14 case 5: `rm DATA/wal/<newest segment>` on a stopped member went unnoticed.
  ClusterOptions o;
  o.extra_flags = kQuiet;
  o.extra_flags.insert(o.extra_flags.end(), {"--wal-segment-bytes", "4096"});
  ProcessCluster cluster("integrity-missing-segment", o);
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> leader = cluster.wait_for_leader();
  ASSERT_TRUE(leader.ok());
  auto c = cluster.client(5000);
  std::map<std::string, std::string> acked = write_keys(*c, 0, 60);
  const int f = (*leader + 1) % cluster.size();
  const std::uint64_t commit = status_of(cluster, *leader).commit_index;
  ASSERT_TRUE(cluster.wait_applied(f, commit).ok());
  ASSERT_TRUE(cluster.stop(f).ok());
  std::vector<std::string> segments;
  for (const auto& e : fs::directory_iterator(cluster.spec(f).data_dir + "/wal")) {
    if (e.path().extension() == ".wal") segments.push_back(e.path().string());
  }
  std::sort(segments.begin(), segments.end());
  ASSERT_GE(segments.size(), 2u);
  fs::remove(segments.back());
  // kvc-wal is offline: it reads the stopped member's directory itself.
  const std::string cmd =
      "'" + binary_path("kvc-wal") + "' verify '" + cluster.spec(f).data_dir + "' >/dev/null 2>&1";
  const int st = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(st) && WEXITSTATUS(st) != 0) << "kvc-wal verify called it clean";
  ASSERT_TRUE(cluster.start(f).ok());
  Result<int> rc = cluster.wait_exit(f, 15000);
  ASSERT_TRUE(rc.ok()) << "started with its newest segment missing: " << log_of(cluster, f);
  EXPECT_EQ(*rc, 1);
  EXPECT_NE(log_of(cluster, f).find("missing from the log"), std::string::npos)
      << log_of(cluster, f);
  rebuild_member_from_the_cluster(cluster, f);
  EXPECT_TRUE(wait_until([&] { return status_of(cluster, f).applied_index >= commit; }, 30s,
                         "f to catch up", kPollEvery)
                  .ok())
      << log_of(cluster, f);
  expect_every_member_serves(cluster, acked);
}

// A follower of a started cluster, stopped and started again on a disk whose 3rd fdatasync of a
// WAL file meets `fault` (the faultfs variable, e.g. "KVC_FAULT_FDATASYNC_EIO=3"); its index.
Result<int> restart_a_follower_with_wal_fault(ProcessCluster& cluster, const char* fault) {
  Result<int> leader = cluster.wait_for_leader();
  if (!leader.ok()) return leader.status();
  const int f = (*leader + 1) % cluster.size();
  if (Result<int> rc = cluster.stop(f); !rc.ok()) return rc.status();
  cluster.mutable_spec(f).env = {"LD_PRELOAD=" KVC_FAULTFS_LIB, "KVC_FAULT_PATH=/wal/", fault,
                                 "ASAN_OPTIONS=verify_asan_link_order=0"};
  KVC_RETURN_IF_ERROR(cluster.start(f));
  return f;
}

// Writes through `c` until member f's log shows `needle` (batching may fold many writes into one
// sync): bounded, 2000 writes or 20 s. Whether it showed.
bool write_until_logged(const ProcessCluster& cluster, int f, client::Client& c,
                        const std::string& key_prefix, const std::string& needle) {
  auto logged = [&] { return log_of(cluster, f).find(needle) != std::string::npos; };
  const auto until = Clock::now() + std::chrono::seconds(20);
  for (int i = 0; i < 2000 && !logged() && Clock::now() < until; ++i) {
    (void)c.put(key_prefix + std::to_string(i), "v");
  }
  return logged();
}

TEST(IntegrityProcessTest, FailedWalSyncEndsTheMemberWithExitOne) {
  ClusterOptions o;
  o.extra_flags = kQuiet;
  ProcessCluster cluster("integrity-fatal-fsync", o);
  ASSERT_TRUE(cluster.start_all().ok());
  // f restarts with a disk whose 3rd fdatasync of a WAL file fails.
  Result<int> follower = restart_a_follower_with_wal_fault(cluster, "KVC_FAULT_FDATASYNC_EIO=3");
  ASSERT_TRUE(follower.ok()) << follower.status().to_string();
  const int f = *follower;
  auto c = cluster.client(5000);
  ASSERT_TRUE(write_until_logged(cluster, f, *c, "/fsync", "-> EIO")) << log_of(cluster, f);
  const auto t0 = Clock::now();
  ASSERT_TRUE(wait_until([&] { return !cluster.running(f); }, 15s, "f to exit", kPollEvery).ok())
      << log_of(cluster, f);
  EXPECT_LT(Clock::now() - t0, std::chrono::seconds(10)) << "the member took too long to exit";
  EXPECT_EQ(cluster.exit_status(f), 1);
  EXPECT_NE(log_of(cluster, f).find("stopping:"), std::string::npos) << log_of(cluster, f);
}

TEST(IntegrityProcessTest, StopSignalEndsAMemberWhoseDiskStoppedAnswering) {
  ProcessCluster cluster("integrity-hung-disk", {.extra_flags = kQuiet});
  ASSERT_TRUE(cluster.start_all().ok());
  Result<int> follower = restart_a_follower_with_wal_fault(cluster, "KVC_FAULT_FDATASYNC_HANG=3");
  ASSERT_TRUE(follower.ok()) << follower.status().to_string();
  const int f = *follower;
  // Writes until f's disk hangs.
  auto c = cluster.client(2000);
  ASSERT_TRUE(write_until_logged(cluster, f, *c, "/hang", "-> hang")) << log_of(cluster, f);
  // The disk thread is stuck in fdatasync for good; SIGTERM must still end the process.
  ASSERT_TRUE(cluster.running(f));
  const auto t0 = Clock::now();
  Result<int> rc = cluster.stop(f);  // SIGTERM, waits up to 15 s
  const auto took = Clock::now() - t0;
  ASSERT_TRUE(rc.ok()) << rc.status().to_string() << "\n" << log_of(cluster, f);
  EXPECT_EQ(*rc, 1) << log_of(cluster, f);
  EXPECT_LT(took, std::chrono::seconds(12));
  EXPECT_NE(log_of(cluster, f).find("exiting without a clean stop"), std::string::npos);
}

#ifdef KVC_HAVE_UNSAFE_NODE  // the test-mutation build of kvc-node (-DKVC_MUTATIONS=ON)
TEST(IntegrityProcessTest, PeriodicHashCheckMakesADivergedMemberRepairItself) {
  ProcessCluster cluster("integrity-hash-check",
                         {.extra_flags = {"--scrub-rate", "0", "--hash-check-interval", "1s"}});
  // Member 2 stores another value than it is given for keys under /diverge: its state differs
  // while every checksum is right, which only a comparison with the others can find.
  cluster.mutable_spec(2).binary = "kvc-node-unsafe";
  cluster.mutable_spec(2).extra_flags = {"--test-mutation", "diverge-apply"};
  ASSERT_TRUE(cluster.start_all().ok());
  ASSERT_TRUE(cluster.wait_for_leader().ok());
  auto c = cluster.client(5000);
  ASSERT_EQ(c->put("/diverge/a", "good").code, Code::kOk);
  auto c2 = cluster.client_for(2, 3000);
  // Either it is caught before we look, or we see the divergence first: both fine; then the
  // check must find it and the member must repair itself.
  EXPECT_TRUE(wait_until(
                  [&] {
                    wire::Response r =
                        get_from(cluster, *c2, 2, "/diverge/a", /*serializable=*/true);
                    return r.code == Code::kOk && r.found && r.kvs.at(0).value == "good";
                  },
                  30s, "member 3 to serve the good value", kPollEvery)
                  .ok())
      << log_of(cluster, 2);
  EXPECT_NE(log_of(cluster, 2).find("state repaired"), std::string::npos) << log_of(cluster, 2);
  bool disagreed = false;
  for (int i = 0; i < cluster.size(); ++i) {
    disagreed |= log_of(cluster, i).find("members disagree with the majority") != std::string::npos;
  }
  EXPECT_TRUE(disagreed);
  // Afterwards the cluster agrees.
  EXPECT_TRUE(wait_until(
                  [&] {
                    return cluster.ctl({"check", "hash"}).status == 0;
                  },
                  15s, "the members' hashes to agree", kPollEvery)
                  .ok());
}
#endif

}  // namespace
}  // namespace kvc::test
