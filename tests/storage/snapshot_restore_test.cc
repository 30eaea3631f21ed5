#include "kvc/storage/snapshot_restore.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "kvc/storage/state.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::fresh_dir;

// A snapshot of 100 keys at index 150, and the hash of its state.
std::pair<std::string, std::uint64_t> make_snapshot(const std::string& dir) {
  auto sm = StateMachine::open(dir + "/src");
  EXPECT_TRUE(sm.ok());
  for (std::uint64_t i = 1; i <= 150; ++i) {
    Command c{.op = CommandOp::kPut, .key = "k" + std::to_string(i % 100), .value = "v"};
    EXPECT_TRUE((*sm)->apply(i, 7, c).ok());
  }
  EXPECT_TRUE((*sm)->flush_all().ok());
  Result<SnapshotInfo> info = (*sm)->write_snapshot(dir + "/backup.snap");
  EXPECT_TRUE(info.ok());
  return {dir + "/backup.snap", *(*sm)->hash()};
}

RestoreOptions options(const std::string& snap, const std::string& data_dir) {
  RestoreOptions o;
  o.snapshot_path = snap;
  o.data_dir = data_dir;
  o.name = "b";
  o.initial_cluster = "a=10.0.0.1:2380,b=10.0.0.2:2380";
  o.cluster_token = "tok2";
  o.map_size = 64u << 20;
  return o;
}

TEST(SnapshotRestoreTest, BuildsAMemberDirectoryIntoAnEmptyDirectory) {
  const std::string dir = fresh_dir();
  const auto [snap, hash] = make_snapshot(dir);
  std::filesystem::create_directories(dir + "/empty");
  Result<RestoreResult> r = restore_snapshot(options(snap, dir + "/empty"));
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->keys, 100u);
  EXPECT_EQ(r->source.index, 150u);
  EXPECT_EQ(r->source.term, 7u);
  EXPECT_TRUE(r->source.membership.empty());  // the source cluster had none recorded
  EXPECT_EQ(r->identity.member_id, derive_member_id("tok2", "b"));
  EXPECT_EQ(r->identity.cluster_id, derive_cluster_id("tok2", "a=10.0.0.1:2380,b=10.0.0.2:2380"));
  Result<DataDir> d = DataDir::open(dir + "/empty", DataDir::Mode::kReadOnly);
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(*d->read_identity(), r->identity);
  auto sm = StateMachine::open(d->state_dir());
  ASSERT_TRUE(sm.ok());
  EXPECT_EQ(*(*sm)->hash(), hash);
  EXPECT_EQ((*sm)->membership(), r->membership);
  EXPECT_EQ((*sm)->membership().to_conf_state().voters.size(), 2u);
  EXPECT_TRUE(std::filesystem::exists(r->base_snapshot.path));
}

TEST(SnapshotRestoreTest, RefusesAndLeavesNothingBehind) {
  const std::string dir = fresh_dir();
  const auto [snap, hash] = make_snapshot(dir);
  // A directory with a file in it is refused and left exactly as it was.
  std::filesystem::create_directories(dir + "/used");
  std::ofstream(dir + "/used/precious") << "x";
  Result<RestoreResult> r = restore_snapshot(options(snap, dir + "/used"));
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_EQ(std::distance(std::filesystem::directory_iterator(dir + "/used"),
                          std::filesystem::directory_iterator()),
            1);
  // A corrupt snapshot: no directory afterwards, and the problem is named.
  std::string bytes;
  {
    std::ifstream in(snap, std::ios::binary);
    bytes.assign(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
  }
  bytes[bytes.size() / 2] ^= 0x40;
  std::ofstream(dir + "/bad.snap", std::ios::binary) << bytes;
  SnapshotProblem p;
  r = restore_snapshot(options(dir + "/bad.snap", dir + "/fresh"), &p);
  EXPECT_EQ(r.status().code(), Code::kCorruption);
  EXPECT_EQ(p, SnapshotProblem::kCorrupt);
  EXPECT_FALSE(std::filesystem::exists(dir + "/fresh"));
  // Bad flags, before anything is created.
  RestoreOptions o = options(snap, dir + "/fresh");
  o.name = "c";
  EXPECT_EQ(restore_snapshot(o).status().code(), Code::kInvalidArgument);
  o = options(snap, dir + "/fresh");
  o.initial_cluster = "a=nohost";
  EXPECT_EQ(restore_snapshot(o).status().code(), Code::kInvalidArgument);
  o = options(snap, dir + "/fresh");
  o.cluster_token = "a=b";
  EXPECT_EQ(restore_snapshot(o).status().code(), Code::kInvalidArgument);
  EXPECT_EQ(restore_snapshot(options(dir + "/none.snap", dir + "/fresh")).status().code(),
            Code::kNotFound);
  EXPECT_FALSE(std::filesystem::exists(dir + "/fresh"));
}

}  // namespace
}  // namespace kvc::storage
