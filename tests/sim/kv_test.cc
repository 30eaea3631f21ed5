// The simulator's key-value state machine and command encoding.
#include "kvc/sim/kv.h"

#include <gtest/gtest.h>

namespace kvc::sim {
namespace {

const KvStore::Item* item(const KvStore& kv, const std::string& key) {
  Result<const KvStore::Item*> r = kv.get(key);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : nullptr;
}

KvResult apply_ok(KvStore& kv, const KvCommand& c, std::uint64_t index) {
  Result<KvResult> r = kv.apply(c, index);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : KvResult{};
}

TEST(KvStoreTest, WritesFollowTheRevisionModel) {
  KvStore kv;
  EXPECT_EQ(apply_ok(kv, {1, check::OpKind::kPut, "k", "v1", 0}, 5).revision, 5u);
  ASSERT_NE(item(kv, "k"), nullptr);
  EXPECT_EQ(item(kv, "k")->mod_revision, 5u);
  KvResult stale = apply_ok(kv, {2, check::OpKind::kCas, "k", "v2", 4}, 6);
  EXPECT_FALSE(stale.found);
  EXPECT_EQ(item(kv, "k")->value, "v1");
  KvResult ok = apply_ok(kv, {3, check::OpKind::kCas, "k", "v3", 5}, 7);
  EXPECT_TRUE(ok.found);
  EXPECT_EQ(ok.revision, 7u);
  EXPECT_FALSE(apply_ok(kv, {4, check::OpKind::kCas, "k", "v4", 0}, 8).found);
  EXPECT_TRUE(apply_ok(kv, {5, check::OpKind::kCas, "new", "n", 0}, 9).found);
  KvResult del = apply_ok(kv, {6, check::OpKind::kDelete, "k", "", 0}, 10);
  EXPECT_TRUE(del.found);
  EXPECT_EQ(item(kv, "k"), nullptr);
  EXPECT_FALSE(apply_ok(kv, {7, check::OpKind::kDelete, "k", "", 0}, 11).found);
  EXPECT_EQ(kv.applied(), 11u);
  EXPECT_TRUE(kv.verify().ok());
}

TEST(KvStoreTest, SnapshotRoundTrips) {
  KvStore kv;
  (void)apply_ok(kv, {1, check::OpKind::kPut, "a", "x", 0}, 3);
  (void)apply_ok(kv, {2, check::OpKind::kPut, "b", "y", 0}, 4);
  Result<std::string> bytes = kv.serialize();
  ASSERT_TRUE(bytes.ok());
  Result<KvStore> back = KvStore::deserialize(*bytes);
  ASSERT_TRUE(back.ok()) << back.status().to_string();
  EXPECT_EQ(*back->serialize(), *bytes);
  EXPECT_EQ(back->applied(), 4u);
}

TEST(KvStoreTest, DamagedValueIsNeverServedAppliedOverOrSnapshotted) {
  KvStore kv;
  (void)apply_ok(kv, {1, check::OpKind::kPut, "a", "value", 0}, 3);
  (void)apply_ok(kv, {2, check::OpKind::kPut, "b", "other", 0}, 4);
  EXPECT_FALSE(kv.damage("missing"));
  ASSERT_TRUE(kv.damage("a"));
  EXPECT_EQ(kv.get("a").status().code(), Code::kCorruption);
  EXPECT_NE(kv.get("a").status().message().find("key a"), std::string::npos);
  EXPECT_EQ(item(kv, "b")->value, "other");  // other keys are still served
  EXPECT_EQ(kv.verify().code(), Code::kCorruption);
  EXPECT_EQ(kv.serialize().status().code(), Code::kCorruption);
  // Every write over the damaged key reads it first: refused, nothing changes.
  for (check::OpKind kind : {check::OpKind::kPut, check::OpKind::kCas, check::OpKind::kDelete}) {
    SCOPED_TRACE(static_cast<int>(kind));
    EXPECT_EQ(kv.apply({3, kind, "a", "new", 3}, 5).status().code(), Code::kCorruption);
    EXPECT_EQ(kv.applied(), 4u);
  }
  // Writes to other keys go on (the simulator stops applying at the first detection anyway).
  EXPECT_TRUE(kv.apply({4, check::OpKind::kPut, "c", "z", 0}, 5).ok());
}

TEST(KvStoreTest, SnapshotWithABadChecksumIsRefused) {
  KvStore kv;
  (void)apply_ok(kv, {1, check::OpKind::kPut, "a", "value", 0}, 3);
  std::string bytes = *kv.serialize();
  const std::size_t at = bytes.find("value");
  ASSERT_NE(at, std::string::npos);
  bytes[at] = 'V';
  Result<KvStore> back = KvStore::deserialize(bytes);
  EXPECT_EQ(back.status().code(), Code::kCorruption);
  EXPECT_NE(back.status().message().find("checksum"), std::string::npos);
}

TEST(KvStoreTest, MalformedSnapshotsAndCommandsAreErrors) {
  for (const char* bad : {"", "kvsnap|1", "nope|1\n", "kvsnap|x\n", "kvsnap|1\na|b\n",
                          "kvsnap|1\na|b|3\n", "kvsnap|1\na|b|3|99999999999\n"}) {
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
