// Leases and txns in the state machine: their semantics against the reference model
// (state_test_util.h), their persistence through flushes, reopens and snapshots, and the
// snapshot format's lease blocks.
#include <gtest/gtest.h>

#include <fstream>

#include "kvc/storage/snapshot.h"
#include "kvc/storage/state.h"
#include "state_checker.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::apply_both;
using testing::fresh_dir;
using testing::Model;
using testing::Step;
using testing::StepGenerator;

std::unique_ptr<StateMachine> open_state(const std::string& dir) {
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir);
  EXPECT_TRUE(sm.ok()) << sm.status().to_string();
  return sm.ok() ? std::move(*sm) : nullptr;
}

ApplyResult apply(StateMachine& sm, const Command& c) {
  Result<ApplyResult> r = sm.apply(sm.applied_index() + 1, 1, c);
  EXPECT_TRUE(r.ok()) << r.status().to_string();
  return r.ok() ? *r : ApplyResult{};
}

Command grant(std::uint64_t id, std::uint64_t ttl) {
  return {.op = CommandOp::kLeaseGrant, .lease = id, .ttl = ttl};
}
Command revoke(std::uint64_t id) { return {.op = CommandOp::kLeaseRevoke, .lease = id}; }
Command put_lease(std::string k, std::string v, std::uint64_t lease) {
  return {.op = CommandOp::kPutLease, .key = std::move(k), .value = std::move(v), .lease = lease};
}

TEST(LeaseTest, RevokeDeletesEveryKeyOfTheLeaseInOneRevision) {
  auto sm = open_state(fresh_dir());
  ASSERT_NE(sm, nullptr);
  EXPECT_EQ(apply(*sm, grant(7, 10)).code, Code::kOk);
  EXPECT_EQ(apply(*sm, grant(7, 10)).code, Code::kAlreadyExists);
  EXPECT_EQ(apply(*sm, grant(0, 10)).code, Code::kInvalidArgument);
  EXPECT_EQ(apply(*sm, grant(8, 0)).code, Code::kInvalidArgument);
  EXPECT_EQ(apply(*sm, put_lease("n/b", "1", 7)).code, Code::kOk);
  EXPECT_EQ(apply(*sm, put_lease("n/a", "2", 7)).code, Code::kOk);
  EXPECT_EQ(apply(*sm, put_lease("n/c", "3", 99)).code, Code::kNotFound);  // no such lease
  EXPECT_EQ(apply(*sm, {.op = CommandOp::kPut, .key = "other", .value = "x"}).code, Code::kOk);
  ASSERT_TRUE(sm->lease(7).has_value());
  EXPECT_EQ(sm->lease(7)->keys, (std::vector<std::string>{"n/a", "n/b"}));
  EXPECT_EQ(sm->lease(7)->ttl, 10u);
  EXPECT_EQ(sm->lease_of("n/a"), 7u);
  Result<std::optional<KeyValue>> got = sm->get("n/a");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->lease, 7u);

  const std::uint64_t at = sm->applied_index() + 1;
  const ApplyResult r = apply(*sm, revoke(7));
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_EQ(r.deleted, 2u);
  EXPECT_EQ(r.revision, at);
  EXPECT_FALSE(sm->lease(7).has_value());
  EXPECT_EQ(sm->lease_of("n/a"), 0u);
  EXPECT_FALSE(sm->get("n/a")->has_value());
  EXPECT_TRUE(sm->get("other")->has_value());
  EXPECT_EQ(apply(*sm, revoke(7)).code, Code::kNotFound);
  // Watchers see the deletes: one revision, consecutive sequences, key order.
  Result<EventPage> ev = sm->events_since({.from_revision = at, .key = "n/", .prefix = true});
  ASSERT_TRUE(ev.ok()) << ev.status().to_string();
  ASSERT_EQ(ev->events.size(), 2u);
  EXPECT_EQ(ev->events[0].key, "n/a");
  EXPECT_EQ(ev->events[0].sequence, 0u);
  EXPECT_EQ(ev->events[1].key, "n/b");
  EXPECT_EQ(ev->events[1].sequence, 1u);
  EXPECT_EQ(ev->events[1].revision, at);
  EXPECT_EQ(ev->events[1].type, EventType::kDelete);
  // Each delete carries the value it removed (watch --prev-kv), also once flushed to LMDB.
  EXPECT_EQ(ev->events[0].prev_value, "2");
  EXPECT_EQ(ev->events[1].prev_value, "1");
  ASSERT_TRUE(sm->flush_all().ok());
  ev = sm->events_since({.from_revision = at, .key = "n/", .prefix = true});
  ASSERT_TRUE(ev.ok()) << ev.status().to_string();
  ASSERT_EQ(ev->events.size(), 2u);
  EXPECT_EQ(ev->events[0].prev_value, "2");
  EXPECT_EQ(ev->events[1].prev_value, "1");
  EXPECT_EQ(ev->events[0].prev_mod_revision, at - 3);  // n/a was put at index 6
}

// watch --prev-kv: every event says what the key was before it (value, create revision, mod
// revision, version), a delete's included, the same from the overlay and once flushed to LMDB;
// a delete event's own create revision and version stay 0.
TEST(LeaseTest, EveryEventCarriesTheWholePreviousKeyValueBeforeAndAfterTheFlush) {
  auto sm = open_state(fresh_dir());
  ASSERT_NE(sm, nullptr);
  const std::uint64_t i1 = sm->applied_index() + 1;
  apply(*sm, {.op = CommandOp::kPut, .key = "p/a", .value = "1"});
  apply(*sm, {.op = CommandOp::kPut, .key = "p/a", .value = "2"});
  apply(*sm, {.op = CommandOp::kDelete, .key = "p/a"});
  apply(*sm, {.op = CommandOp::kPut, .key = "p/a", .value = "3"});
  apply(*sm, {.op = CommandOp::kPut, .key = "p/b", .value = "4"});
  apply(*sm, {.op = CommandOp::kDeletePrefix, .key = "p/"});
  auto check = [&](const char* when) {
    SCOPED_TRACE(when);
    Result<EventPage> ev = sm->events_since({.from_revision = i1, .key = "p/", .prefix = true});
    ASSERT_TRUE(ev.ok()) << ev.status().to_string();
    ASSERT_EQ(ev->events.size(), 7u);
    const std::vector<Event>& e = ev->events;
    EXPECT_EQ(e[0].prev_mod_revision, 0u);  // p/a was new
    EXPECT_EQ(e[0].prev_create_revision, 0u);
    EXPECT_EQ(e[0].prev_version, 0u);
    EXPECT_EQ(e[1].prev_value, "1");  // the second put: p/a as the first one left it
    EXPECT_EQ(e[1].prev_create_revision, i1);
    EXPECT_EQ(e[1].prev_mod_revision, i1);
    EXPECT_EQ(e[1].prev_version, 1u);
    EXPECT_EQ(e[2].type, EventType::kDelete);  // the delete: p/a at version 2
    EXPECT_EQ(e[2].create_revision, 0u);
    EXPECT_EQ(e[2].version, 0u);
    EXPECT_EQ(e[2].prev_value, "2");
    EXPECT_EQ(e[2].prev_create_revision, i1);
    EXPECT_EQ(e[2].prev_mod_revision, i1 + 1);
    EXPECT_EQ(e[2].prev_version, 2u);
    EXPECT_EQ(e[3].prev_mod_revision, 0u);  // recreated: nothing before it
    EXPECT_EQ(e[3].create_revision, i1 + 3);
    // The prefix delete removes p/a (recreated at i1+3) and p/b, each with its own past.
    EXPECT_EQ(e[5].key, "p/a");
    EXPECT_EQ(e[5].prev_value, "3");
    EXPECT_EQ(e[5].prev_create_revision, i1 + 3);
    EXPECT_EQ(e[5].prev_version, 1u);
    EXPECT_EQ(e[6].key, "p/b");
    EXPECT_EQ(e[6].prev_value, "4");
    EXPECT_EQ(e[6].prev_create_revision, i1 + 4);
    EXPECT_EQ(e[6].prev_mod_revision, i1 + 4);
    EXPECT_EQ(e[6].prev_version, 1u);
    EXPECT_EQ(e[6].create_revision, 0u);
  };
  check("in the overlay");
  ASSERT_TRUE(sm->flush_all().ok());
  check("flushed to LMDB");
}

TEST(LeaseTest, APutWithoutALeaseOrADeleteDetachesTheKey) {
  auto sm = open_state(fresh_dir());
  ASSERT_NE(sm, nullptr);
  apply(*sm, grant(1, 5));
  apply(*sm, grant(2, 5));
  apply(*sm, put_lease("a", "1", 1));
  apply(*sm, put_lease("b", "1", 1));
  apply(*sm, put_lease("c", "1", 1));
  apply(*sm, put_lease("b", "2", 2));  // moves to lease 2
  apply(*sm, {.op = CommandOp::kPut, .key = "a", .value = "plain"});
  apply(*sm, {.op = CommandOp::kDelete, .key = "c"});
  EXPECT_TRUE(sm->lease(1)->keys.empty());
  EXPECT_EQ(sm->lease(2)->keys, std::vector<std::string>{"b"});
  const ApplyResult r = apply(*sm, revoke(1));
  EXPECT_EQ(r.deleted, 0u);
  EXPECT_EQ(r.revision, 0u);  // no key changed
  EXPECT_TRUE(sm->get("a")->has_value());
}

TEST(TxnTest, ComparesChooseTheBranchAndOpsSeeEachOther) {
  auto sm = open_state(fresh_dir());
  ASSERT_NE(sm, nullptr);
  apply(*sm, {.op = CommandOp::kPut, .key = "k", .value = "v1"});  // index 1
  Command t{.op = CommandOp::kTxn};
  t.compares = {
      {.target = CompareTarget::kValue, .op = CompareOp::kEqual, .key = "k", .value = "v1"},
      {.target = CompareTarget::kCreateRevision, .op = CompareOp::kEqual, .key = "new"}};
  t.then_ops = {{.type = TxnOpType::kPut, .key = "new", .value = "n"},
                {.type = TxnOpType::kGetPrefix, .key = ""},
                {.type = TxnOpType::kDelete, .key = "k"}};
  t.else_ops = {{.type = TxnOpType::kGet, .key = "k"}};
  ApplyResult r = apply(*sm, t);  // index 2
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_TRUE(r.succeeded);
  EXPECT_EQ(r.revision, 2u);
  ASSERT_EQ(r.ops.size(), 3u);
  EXPECT_EQ(r.ops[0].revision, 2u);
  ASSERT_EQ(r.ops[1].kvs.size(), 2u);  // the get saw the put before it
  EXPECT_EQ(r.ops[1].kvs[1].key, "new");
  EXPECT_EQ(r.ops[2].deleted, 1u);
  // Same txn again: "new" exists now, so the else branch runs (and k is gone: get finds none).
  r = apply(*sm, t);
  EXPECT_FALSE(r.succeeded);
  EXPECT_EQ(r.revision, 0u);
  ASSERT_EQ(r.ops.size(), 1u);
  EXPECT_TRUE(r.ops[0].kvs.empty());
  // A value compare on an absent key never holds, not even !=.
  Command ne{.op = CommandOp::kTxn};
  ne.compares = {
      {.target = CompareTarget::kValue, .op = CompareOp::kNotEqual, .key = "absent", .value = "x"}};
  EXPECT_FALSE(apply(*sm, ne).succeeded);
  // Refused whole: two writes of one key, or a put on a missing lease; nothing applied.
  Command dup{.op = CommandOp::kTxn};
  dup.then_ops = {{.type = TxnOpType::kPut, .key = "x", .value = "1"},
                  {.type = TxnOpType::kPut, .key = "x", .value = "2"}};
  EXPECT_EQ(apply(*sm, dup).code, Code::kInvalidArgument);
  Command nolease{.op = CommandOp::kTxn};
  nolease.then_ops = {{.type = TxnOpType::kPut, .key = "y", .value = "1"},
                      {.type = TxnOpType::kPut, .key = "z", .value = "1", .lease = 5}};
  EXPECT_EQ(apply(*sm, nolease).code, Code::kNotFound);
  EXPECT_FALSE(sm->get("x")->has_value());
  EXPECT_FALSE(sm->get("y")->has_value());
}

// Random streams of every command, leases and txns included, through flushes and reopens: the
// state machine and the model agree on every result, key, lease and hash.
TEST(LeaseTxnRandomTest, StreamsMatchTheModelThroughFlushesAndReopens) {
  for (std::uint64_t seed = 1; seed <= 6; ++seed) {
    SCOPED_TRACE("seed " + std::to_string(seed));
    const std::string dir = fresh_dir("s" + std::to_string(seed));
    StepGenerator gen(seed, true);
    Model model;
    auto sm = open_state(dir);
    ASSERT_NE(sm, nullptr);
    for (std::uint64_t i = 1; i <= 400; ++i) {
      const Step s = gen.next(model);
      ASSERT_NO_FATAL_FAILURE(apply_both(*sm, model, i, 1 + i / 50, s));
      if (gen.pick(40) == 0) {
        ASSERT_TRUE(sm->flush_all().ok());
      }
      if (gen.pick(100) == 0) {
        ASSERT_TRUE(sm->flush_all().ok());
        sm.reset();
        sm = open_state(dir);
        ASSERT_NE(sm, nullptr);
      }
    }
    EXPECT_EQ(sm->leases(true), model.all_leases());
    EXPECT_EQ(testing::all_keys(*sm), model.all());
    EXPECT_EQ(*sm->hash(), model.hash());
    ASSERT_TRUE(sm->flush_all().ok());
    Result<StateMachine::IndexedHash> dh = sm->durable_hash();
    ASSERT_TRUE(dh.ok());
    EXPECT_EQ(dh->hash, model.hash());
  }
}

TEST(LeaseSnapshotTest, LeasesTravelInSnapshotsAndInstallWhole) {
  const std::string dir = fresh_dir("src");
  auto sm = open_state(dir);
  ASSERT_NE(sm, nullptr);
  apply(*sm, {.op = CommandOp::kPut, .key = "plain", .value = "p"});
  const std::string v1 = fresh_dir("snap") + "/v1.snap";
  ASSERT_TRUE(sm->flush_all().ok());
  Result<SnapshotInfo> without = sm->write_snapshot(v1);
  ASSERT_TRUE(without.ok()) << without.status().to_string();
  EXPECT_EQ(without->header.lease_count, 0u);
  {
    std::ifstream f(v1, std::ios::binary);
    char pro[12];
    f.read(pro, 12);
    EXPECT_EQ(pro[8], 1) << "a state without leases is written as version 1";
  }
  apply(*sm, grant(3, 20));
  apply(*sm, grant(9, 60));
  apply(*sm, put_lease("s/1", "a", 3));
  apply(*sm, put_lease("s/2", "b", 9));
  apply(*sm, put_lease("s/3", "c", 3));
  ASSERT_TRUE(sm->flush_all().ok());
  const std::string v2 = fresh_dir("snap2") + "/v2.snap";
  Result<SnapshotInfo> with = sm->write_snapshot(v2);
  ASSERT_TRUE(with.ok()) << with.status().to_string();
  EXPECT_EQ(with->header.lease_count, 2u);
  Result<VerifyReport> rep = verify_snapshot(v2);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->problem, SnapshotProblem::kNone) << rep->message;

  auto dst = open_state(fresh_dir("dst"));
  ASSERT_NE(dst, nullptr);
  ASSERT_TRUE(dst->install_snapshot(v2).ok());
  EXPECT_EQ(dst->leases(true), sm->leases(true));
  EXPECT_EQ(dst->lease_of("s/3"), 3u);
  EXPECT_EQ(*dst->hash(), *sm->hash());
  // The installed leases work: revoking one deletes its keys there too.
  EXPECT_EQ(apply(*dst, revoke(3)).deleted, 2u);
}

TEST(LeaseSnapshotTest, AWrongLeaseCountIsCorrupt) {
  const std::string path = fresh_dir() + "/x.snap";
  SnapshotHeader h;
  h.index = 5;
  h.term = 1;
  h.revision = 5;
  h.lease_count = 2;
  h.membership.members.push_back({.id = 1, .name = "m1", .peer_addr = "127.0.0.1:1"});
  Result<std::unique_ptr<SnapshotWriter>> w = SnapshotWriter::create(path, h);
  ASSERT_TRUE(w.ok()) << w.status().to_string();
  ASSERT_TRUE((*w)->add({"k", "v", 1, 5, 2}).ok());
  ASSERT_TRUE((*w)->add_lease({.id = 4, .ttl = 3, .granted_index = 2, .keys = {"k"}}).ok());
  EXPECT_EQ((*w)->add_lease({.id = 4, .ttl = 3}).code(), Code::kInvalidArgument);  // not ascending
  EXPECT_EQ((*w)->finish().status().code(), Code::kInvalidArgument);               // 1 of 2 leases
}

}  // namespace
}  // namespace kvc::storage
