// kvc-snap end to end: the real binary on a generated state (info, verify, dump, restore, and
// the exit codes for truncated and corrupt files and for refused restores).
#include <gtest/gtest.h>
#include <sys/wait.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "kvc/storage/data_dir.h"
#include "kvc/storage/snapshot.h"
#include "kvc/storage/state.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::fresh_dir;

struct ToolRun {
  int rc = -1;
  std::string out, err;
};

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

// Runs kvc-snap with `args` (a shell fragment; the tests' paths need no quoting).
ToolRun kvc_snap(const std::string& args, const std::string& scratch) {
  const std::string out = scratch + "/stdout", err = scratch + "/stderr";
  const std::string cmd = std::string(KVC_SNAP_BIN) + " " + args + " >" + out + " 2>" + err;
  const int status = std::system(cmd.c_str());
  ToolRun r;
  r.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = slurp(out);
  r.err = slurp(err);
  return r;
}

class SnapToolTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = fresh_dir();
    auto sm = StateMachine::open(dir_ + "/data/state");
    ASSERT_TRUE(sm.ok());
    Membership m;
    m.members = {{.id = 11, .name = "old1", .peer_addr = "10.9.0.1:2380"},
                 {.id = 12, .name = "old2", .peer_addr = "10.9.0.2:2380"}};
    m.removed = {13};  // stored (membership version 2) and carried into snapshots
    (*sm)->apply_membership(1, 1, m);
    std::uint64_t i = 1;
    auto put = [&](std::string k, std::string v) {
      ASSERT_TRUE(
          (*sm)
              ->apply(++i, 2, {.op = CommandOp::kPut, .key = std::move(k), .value = std::move(v)})
              .ok());
    };
    put("app/a", "hello");
    put("app/b", std::string("\xff\x00x", 3));
    put("cfg/x", "line1\nline2\ttab");
    for (int n = 0; n < 200; ++n) put("n/" + std::to_string(n), std::to_string(n * n));
    put("app/a", "hello again");
    ASSERT_TRUE((*sm)->flush_all().ok());
    old_snap_ = (*sm)->save_snapshot(dir_ + "/data/snap")->path;
    put("late", "1");
    ASSERT_TRUE((*sm)->flush_all().ok());
    Result<SnapshotInfo> info = (*sm)->save_snapshot(dir_ + "/data/snap");
    ASSERT_TRUE(info.ok());
    snap_ = info->path;
    index_ = info->header.index;
    keys_ = info->record_count;
    hash_ = *(*sm)->hash();
  }

  std::string dir_, snap_, old_snap_;
  std::uint64_t index_ = 0, keys_ = 0, hash_ = 0;
};

TEST_F(SnapToolTest, InfoListsNewestFirstAndVerifies) {
  ToolRun r = kvc_snap("info " + dir_ + "/data", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  const std::size_t first = r.out.find("file:      " + snap_);
  const std::size_t second = r.out.find("file:      " + old_snap_);
  ASSERT_NE(first, std::string::npos) << r.out;
  ASSERT_NE(second, std::string::npos) << r.out;
  EXPECT_LT(first, second);
  EXPECT_NE(r.out.find("index:     " + std::to_string(index_)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("keys:      " + std::to_string(keys_)), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("old1  id 000000000000000b  peer 10.9.0.1:2380"), std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("checksum:  ok (crc32c "), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("removed:   000000000000000d\n"), std::string::npos) << r.out;
  EXPECT_TRUE(r.err.empty()) << "no progress bar when stderr is not a terminal: " << r.err;

  r = kvc_snap("info " + snap_ + " -o json", dir_);
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(std::count(r.out.begin(), r.out.end(), '\n'), 1);
  EXPECT_NE(r.out.find("\"index\":" + std::to_string(index_) + ","), std::string::npos) << r.out;
  EXPECT_NE(r.out.find("\"key_count\":" + std::to_string(keys_) + ","), std::string::npos);
  EXPECT_NE(r.out.find("\"checksum\":\"ok\""), std::string::npos);
  EXPECT_NE(r.out.find("{\"id\":\"000000000000000c\",\"name\":\"old2\""), std::string::npos);
  EXPECT_NE(r.out.find("\"removed_ids\":[\"000000000000000d\"]"), std::string::npos) << r.out;

  EXPECT_EQ(kvc_snap("info " + dir_ + "/nothing", dir_).rc, 3);
  std::filesystem::create_directories(dir_ + "/empty");
  ToolRun e = kvc_snap("info " + dir_ + "/empty", dir_);
  EXPECT_EQ(e.rc, 3);
  EXPECT_NE(e.err.find("no snapshot files"), std::string::npos) << e.err;
}

TEST_F(SnapToolTest, VerifyExitCodesTellCleanTruncatedAndCorrupt) {
  ToolRun r = kvc_snap("verify " + snap_, dir_);
  EXPECT_EQ(r.rc, 0) << r.err;
  EXPECT_NE(r.out.find(": ok: " + std::to_string(keys_) + " keys"), std::string::npos) << r.out;

  const std::string bytes = slurp(snap_);
  const std::string cut = dir_ + "/cut.snap", bad = dir_ + "/bad.snap";
  for (const std::size_t n :
       {std::size_t{0}, std::size_t{10}, bytes.size() / 2, bytes.size() - 1}) {
    std::ofstream(cut, std::ios::binary | std::ios::trunc) << bytes.substr(0, n);
    r = kvc_snap("verify " + cut, dir_);
    EXPECT_EQ(r.rc, 7) << "length " << n << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("truncated at offset"), std::string::npos) << r.out;
  }
  for (const std::size_t at :
       {std::size_t{3}, std::size_t{20}, bytes.size() / 2, bytes.size() - 2}) {
    std::string b = bytes;
    b[at] ^= 0x10;
    std::ofstream(bad, std::ios::binary | std::ios::trunc) << b;
    r = kvc_snap("verify " + bad, dir_);
    EXPECT_EQ(r.rc, 8) << "byte " << at << ": " << r.out << r.err;
    EXPECT_NE(r.out.find("corrupt at offset"), std::string::npos) << r.out;
  }
  r = kvc_snap("verify " + bad + " -o json", dir_);
  EXPECT_EQ(r.rc, 8);
  EXPECT_NE(r.out.find("\"status\":\"corrupt\""), std::string::npos) << r.out;
  r = kvc_snap("info " + bad, dir_);
  EXPECT_EQ(r.rc, 8);
  EXPECT_NE(r.out.find("checksum:  corrupt: "), std::string::npos) << r.out;
  EXPECT_EQ(kvc_snap("verify " + dir_ + "/missing.snap", dir_).rc, 3);
}

TEST_F(SnapToolTest, DumpPrintsTextAsTextAndEscapesTheRest) {
  ToolRun r = kvc_snap("dump " + snap_ + " --prefix app/", dir_);
  ASSERT_EQ(r.rc, 0) << r.err;
  EXPECT_EQ(r.out, "app/a\thello again\napp/b\t\\xff\\x00x\n");
  r = kvc_snap("dump " + snap_ + " --prefix cfg/", dir_);
  EXPECT_EQ(r.out, "cfg/x\tline1\\nline2\\ttab\n");
  r = kvc_snap("dump " + snap_ + " --prefix app/ -o json", dir_);
  ASSERT_EQ(r.rc, 0);
  EXPECT_EQ(r.out,
            "{\"key\":\"app/a\",\"value\":\"hello again\",\"create_revision\":2,"
            "\"mod_revision\":205,\"version\":2}\n"
            "{\"key\":\"app/b\",\"value_base64\":\"/wB4\",\"create_revision\":3,"
            "\"mod_revision\":3,\"version\":1}\n");
  r = kvc_snap("dump " + snap_, dir_);
  EXPECT_EQ(static_cast<std::uint64_t>(std::count(r.out.begin(), r.out.end(), '\n')), keys_);
  // A corrupt file: the records of the intact blocks, then exit 8.
  std::string bytes = slurp(snap_);
  bytes[bytes.size() - 40] ^= 1;
  std::ofstream(dir_ + "/bad.snap", std::ios::binary) << bytes;
  r = kvc_snap("dump " + dir_ + "/bad.snap", dir_);
  EXPECT_EQ(r.rc, 8) << r.err;
}

TEST_F(SnapToolTest, RestoreBuildsAMemberOfANewCluster) {
  const std::string target = dir_ + "/restored";
  const std::string cluster = "m1=10.0.0.1:2380,m2=10.0.0.2:2380,m3=10.0.0.3:2380";
  ToolRun r =
      kvc_snap("restore " + snap_ + " --data-dir " + target + " --name m2 --initial-cluster " +
                   cluster + " --cluster-token newtok --state-map-size 64MiB",
               dir_);
  ASSERT_EQ(r.rc, 0) << r.out << r.err;
  EXPECT_NE(r.out.find("kvc-node --name m1 --data-dir " + target + " --initial-cluster " + cluster +
                       " --cluster-token newtok"),
            std::string::npos)
      << r.out;
  EXPECT_NE(r.out.find("kvc-snap restore " + snap_ + " --data-dir " + target + " --name m3"),
            std::string::npos)
      << r.out;

  Result<DataDir> d = DataDir::open(target, DataDir::Mode::kReadOnly);
  ASSERT_TRUE(d.ok());
  Result<Identity> id = d->read_identity();
  ASSERT_TRUE(id.ok()) << id.status().to_string();
  EXPECT_EQ(id->name, "m2");
  EXPECT_EQ(id->member_id, derive_member_id("newtok", "m2"));
  EXPECT_EQ(id->cluster_id, derive_cluster_id("newtok", cluster));
  EXPECT_EQ(id->cluster_token, "newtok");
  {
    auto sm = StateMachine::open(d->state_dir());
    ASSERT_TRUE(sm.ok());
    EXPECT_EQ(*(*sm)->hash(), hash_) << "the keys, values, revisions and index are the snapshot's";
    EXPECT_EQ((*sm)->applied_index(), index_);
    EXPECT_EQ((*sm)->membership(), *parse_initial_cluster("newtok", cluster));
  }
  Result<std::vector<SnapshotFile>> base = list_snapshots(d->snap_dir());
  ASSERT_TRUE(base.ok());
  ASSERT_EQ(base->size(), 1u);
  EXPECT_EQ((*base)[0].index, index_);
  Result<SnapshotInfo> base_info = read_snapshot_info((*base)[0].path);
  EXPECT_EQ(base_info->header.membership, *parse_initial_cluster("newtok", cluster));

  // Never into a directory that holds anything.
  r = kvc_snap(
      "restore " + snap_ + " --data-dir " + target + " --name m2 --initial-cluster " + cluster,
      dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not empty"), std::string::npos) << r.err;
  // A corrupt snapshot leaves no directory behind.
  std::string bytes = slurp(snap_);
  bytes[bytes.size() / 2] ^= 4;
  std::ofstream(dir_ + "/bad.snap", std::ios::binary) << bytes;
  r = kvc_snap("restore " + dir_ + "/bad.snap --data-dir " + dir_ +
                   "/r2 --name m1 "
                   "--initial-cluster " +
                   cluster,
               dir_);
  EXPECT_EQ(r.rc, 8) << r.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ + "/r2"));
  EXPECT_EQ(kvc_snap("restore " + dir_ + "/none.snap --data-dir " + dir_ +
                         "/r3 --name m1 "
                         "--initial-cluster " +
                         cluster,
                     dir_)
                .rc,
            3);
  r = kvc_snap(
      "restore " + snap_ + " --data-dir " + dir_ + "/r4 --name m9 --initial-cluster " + cluster,
      dir_);
  EXPECT_EQ(r.rc, 1);
  EXPECT_NE(r.err.find("not a member"), std::string::npos) << r.err;
}

TEST_F(SnapToolTest, UsageErrorsExitTwoAndHelpHasAnExample) {
  EXPECT_EQ(kvc_snap("", dir_).rc, 2);
  EXPECT_EQ(kvc_snap("verify", dir_).rc, 2);
  EXPECT_EQ(kvc_snap("info " + snap_ + " -o xml", dir_).rc, 2);
  EXPECT_EQ(kvc_snap("restore " + snap_ + " --name m1", dir_).rc, 2);
  for (const char* sub : {"", "info", "verify", "dump", "restore"}) {
    ToolRun r = kvc_snap(std::string(sub) + " --help", dir_);
    EXPECT_EQ(r.rc, 0) << sub;
    EXPECT_NE(r.out.find("Examples:\n  kvc-snap"), std::string::npos) << sub << ": " << r.out;
    EXPECT_NE(r.out.find("8  the snapshot is corrupt"), std::string::npos) << sub;
  }
}

}  // namespace
}  // namespace kvc::storage
