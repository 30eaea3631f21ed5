// The simulator's key-value state machine and command encoding.
#include "kvc/sim/kv.h"

#include <gtest/gtest.h>

namespace kvc::sim {
namespace {

TEST(KvStoreTest, WritesFollowTheRevisionModel) {
  KvStore kv;
  EXPECT_EQ(kv.apply({1, check::OpKind::kPut, "k", "v1", 0}, 5).revision, 5u);
  ASSERT_NE(kv.find("k"), nullptr);
  EXPECT_EQ(kv.find("k")->mod_revision, 5u);
  KvResult stale = kv.apply({2, check::OpKind::kCas, "k", "v2", 4}, 6);
  EXPECT_FALSE(stale.found);
  EXPECT_EQ(kv.find("k")->value, "v1");
  KvResult ok = kv.apply({3, check::OpKind::kCas, "k", "v3", 5}, 7);
  EXPECT_TRUE(ok.found);
  EXPECT_EQ(ok.revision, 7u);
  EXPECT_FALSE(kv.apply({4, check::OpKind::kCas, "k", "v4", 0}, 8).found);
  EXPECT_TRUE(kv.apply({5, check::OpKind::kCas, "new", "n", 0}, 9).found);
  KvResult del = kv.apply({6, check::OpKind::kDelete, "k", "", 0}, 10);
  EXPECT_TRUE(del.found);
  EXPECT_EQ(kv.find("k"), nullptr);
  EXPECT_FALSE(kv.apply({7, check::OpKind::kDelete, "k", "", 0}, 11).found);
  EXPECT_EQ(kv.applied(), 11u);
}

TEST(KvStoreTest, SnapshotRoundTrips) {
  KvStore kv;
  (void)kv.apply({1, check::OpKind::kPut, "a", "x", 0}, 3);
  (void)kv.apply({2, check::OpKind::kPut, "b", "y", 0}, 4);
  Result<KvStore> back = KvStore::deserialize(kv.serialize());
  ASSERT_TRUE(back.ok());
  EXPECT_EQ(back->serialize(), kv.serialize());
  EXPECT_EQ(back->applied(), 4u);
}

TEST(KvStoreTest, MalformedSnapshotsAndCommandsAreErrors) {
  for (const char* bad : {"", "kvsnap|1", "nope|1\n", "kvsnap|x\n", "kvsnap|1\na|b\n"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(KvStore::deserialize(bad).ok());
  }
  for (const char* bad : {"", "1|0|k|v", "x|0|k|v|0", "1|9|k|v|0"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(decode_command(bad).ok());
  }
  Result<KvCommand> c = decode_command(encode_command({42, check::OpKind::kCas, "k", "v", 7}));
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(c->op_id, 42u);
  EXPECT_EQ(c->expect_revision, 7u);
}

}  // namespace
}  // namespace kvc::sim
