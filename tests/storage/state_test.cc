#include "kvc/storage/state.h"

#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <future>
#include <limits>
#include <memory>
#include <thread>

#include "state_damage.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::all_keys;
using testing::apply_both;
using testing::fresh_dir;
using testing::Model;
using testing::Step;
using testing::StepGenerator;

std::unique_ptr<StateMachine> open_state(const std::string& dir, StateOptions o = {}) {
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir, std::move(o));
  EXPECT_TRUE(sm.ok()) << sm.status().to_string();
  return sm.ok() ? std::move(*sm) : nullptr;
}

Command put(std::string k, std::string v) {
  return {.op = CommandOp::kPut, .key = std::move(k), .value = std::move(v)};
}
Command del(std::string k) { return {.op = CommandOp::kDelete, .key = std::move(k)}; }
Command del_prefix(std::string p) { return {.op = CommandOp::kDeletePrefix, .key = std::move(p)}; }
Command cas(std::string k, std::uint64_t expect, std::string v) {
  return {
      .op = CommandOp::kCas, .key = std::move(k), .value = std::move(v), .expect_revision = expect};
}

KeyValue kv(std::string k, std::string v, std::uint64_t c, std::uint64_t m, std::uint64_t ver) {
  return {std::move(k), std::move(v), c, m, ver};
}

TEST(StateMachineTest, ApplySemanticsTable) {
  auto sm = open_state(fresh_dir());
  ASSERT_NE(sm, nullptr);
  const struct {
    const char* name;
    Command cmd;
    ApplyResult want;
  } steps[] = {
      {"put creates", put("a", "1"), {Code::kOk, 1, 0}},
      {"put again bumps version", put("a", "2"), {Code::kOk, 2, 0}},
      {"put another", put("ab", "x"), {Code::kOk, 3, 0}},
      {"cas with the current revision", cas("a", 2, "3"), {Code::kOk, 4, 0}},
      {"cas with a stale revision", cas("a", 2, "no"), {Code::kCompareFailed, 4, 0}},
      {"cas create on a present key", cas("a", 0, "no"), {Code::kCompareFailed, 4, 0}},
      {"cas create on an absent key", cas("b", 0, "new"), {Code::kOk, 7, 0}},
      {"cas on absent with nonzero", cas("zz", 5, "no"), {Code::kCompareFailed, 0, 0}},
      {"delete present", del("b"), {Code::kOk, 9, 1}},
      {"delete absent", del("b"), {Code::kNotFound, 0, 0}},
      {"empty key put", put("", "v"), {Code::kInvalidArgument, 0, 0}},
      {"oversized key put",
       put(std::string(kMaxKeyBytes + 1, 'k'), "v"),
       {Code::kInvalidArgument, 0, 0}},
      {"longest key put", put(std::string(kMaxKeyBytes, 'k'), "v"), {Code::kOk, 13, 0}},
      {"empty key delete", del(""), {Code::kInvalidArgument, 0, 0}},
      {"delete prefix", del_prefix("a"), {Code::kOk, 15, 2}},
      {"delete prefix of nothing", del_prefix("a"), {Code::kOk, 0, 0}},
      {"recreate restarts version", put("a", "again"), {Code::kOk, 17, 0}},
  };
  std::uint64_t index = 0;
  for (const auto& s : steps) {
    SCOPED_TRACE(s.name);
    ++index;
    Result<ApplyResult> got = sm->apply(index, 1, s.cmd);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(*got, s.want);
  }
  EXPECT_EQ(sm->applied_index(), index);
  EXPECT_EQ(sm->revision(), 17u);
  const std::vector<KeyValue> want = {kv("a", "again", 17, 17, 1),
                                      kv(std::string(kMaxKeyBytes, 'k'), "v", 13, 13, 1)};
  EXPECT_EQ(all_keys(*sm), want);
  // The same after the state is in LMDB and reopened.
  ASSERT_TRUE(sm->flush_all().ok());
  const std::string dir = sm->state_dir();
  sm.reset();
  sm = open_state(dir);
  EXPECT_EQ(all_keys(*sm), want);
  EXPECT_EQ(sm->applied_index(), index);
  EXPECT_EQ(sm->revision(), 17u);
}

TEST(StateMachineTest, VersionCountsWritesSinceCreation) {
  auto sm = open_state(fresh_dir());
  std::uint64_t i = 0;
  for (int n = 0; n < 5; ++n) ASSERT_TRUE(sm->apply(++i, 1, put("k", std::to_string(n))).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  for (int n = 0; n < 3; ++n) ASSERT_TRUE(sm->apply(++i, 1, put("k", "x")).ok());
  Result<std::optional<KeyValue>> got = sm->get("k");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ(**got, kv("k", "x", 1, 8, 8));
  ASSERT_TRUE(sm->apply(++i, 1, del("k")).ok());
  ASSERT_TRUE(sm->apply(++i, 1, put("k", "y")).ok());
  got = sm->get("k");
  EXPECT_EQ(**got, kv("k", "y", 10, 10, 1));
}

TEST(StateMachineTest, NoopsAndMembershipAdvanceTheAppliedIndexOnly) {
  const std::string dir = fresh_dir();
  auto sm = open_state(dir);
  sm->apply_noop(1, 1);
  Membership m;
  m.members = {{.id = 3, .name = "a", .peer_addr = "h:1"},
               {.id = 7, .name = "b", .peer_addr = "h:2", .learner = true}};
  sm->apply_membership(2, 2, m);
  Result<ApplyResult> r = sm->apply_entry({.index = 3, .term = 2});  // the leader's no-op
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(sm->applied_index(), 3u);
  EXPECT_EQ(sm->applied_term(), 2u);
  EXPECT_EQ(sm->revision(), 0u);
  EXPECT_EQ(sm->membership(), m);
  EXPECT_EQ(sm->membership().to_conf_state(), (raft::ConfState{{3}, {7}}));
  ASSERT_TRUE(sm->flush_all().ok());
  EXPECT_EQ(sm->durable_index(), 3u);
  sm.reset();
  sm = open_state(dir);
  EXPECT_EQ(sm->applied_index(), 3u);
  EXPECT_EQ(sm->applied_term(), 2u);
  EXPECT_EQ(sm->membership(), m);
}

TEST(StateMachineTest, ApplyEntryDecodesCommandsAndRefusesGarbage) {
  auto sm = open_state(fresh_dir());
  raft::Entry e{.index = 1, .term = 1, .data = encode_command(put("k", "v"))};
  Result<ApplyResult> r = sm->apply_entry(e);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->revision, 1u);
  Result<ApplyResult> bad = sm->apply_entry({.index = 2, .term = 1, .data = "\x01\x09"});
  EXPECT_EQ(bad.status().code(), Code::kCorruption);
  EXPECT_EQ(sm->applied_index(), 1u);  // nothing applied
  Result<ApplyResult> conf =
      sm->apply_entry({.index = 2, .term = 1, .type = raft::EntryType::kConfChange});
  EXPECT_EQ(conf.status().code(), Code::kInvalidArgument);
}

TEST(StateMachineDeathTest, ApplyingOutOfOrderIsABug) {
  auto sm = open_state(fresh_dir());
  ASSERT_TRUE(sm->apply(1, 1, put("k", "v")).ok());
  EXPECT_DEATH((void)sm->apply(3, 1, put("k", "v")), "check failed");
  EXPECT_DEATH((void)sm->apply(1, 1, put("k", "v")), "check failed");
}

// Builds: LMDB holds {a/1, a/2, b/1, c}; the frozen overlay deletes a/2 and puts a/3, b/0;
// the active overlay deletes b/1, puts a/2 again and c2. Reads are checked against the model
// before the flush, after its commit but before retire, and after retire.
TEST(StateMachineTest, ReadsMergeLayersAtEveryStageOfAFlush) {
  auto sm = open_state(fresh_dir());
  Model model;
  std::uint64_t i = 0;
  auto both = [&](const Command& c) {
    Step s;
    s.command = c;
    apply_both(*sm, model, ++i, 1, s);
  };
  both(put("a/1", "1"));
  both(put("a/2", "2"));
  both(put("b/1", "3"));
  both(put("c", "4"));
  ASSERT_TRUE(sm->flush_all().ok());
  both(del("a/2"));
  both(put("a/3", "5"));
  both(put("b/0", "6"));
  ASSERT_TRUE(sm->freeze());
  both(del("b/1"));
  both(put("a/2", "7"));
  both(put("c2", "8"));
  both(cas("a/1", 1, "9"));

  auto check = [&](const char* stage) {
    SCOPED_TRACE(stage);
    EXPECT_EQ(all_keys(*sm), model.all());
    for (const char* k : {"a/1", "a/2", "a/3", "b/0", "b/1", "c", "c2", "zzz"}) {
      Result<std::optional<KeyValue>> got = sm->get(k);
      ASSERT_TRUE(got.ok());
      auto it = model.kvs.find(k);
      if (it == model.kvs.end()) {
        EXPECT_FALSE(got->has_value()) << k;
      } else {
        ASSERT_TRUE(got->has_value()) << k;
        EXPECT_EQ(**got, it->second);
      }
      EXPECT_EQ(*sm->exists(k), it != model.kvs.end());
    }
    Result<RangePage> a = sm->range({.prefix = "a/"});
    ASSERT_TRUE(a.ok());
    ASSERT_EQ(a->kvs.size(), 3u);
    EXPECT_EQ(a->kvs[0].key, "a/1");
    EXPECT_EQ(a->kvs[1].key, "a/2");
    EXPECT_EQ(a->kvs[2].key, "a/3");
    Result<RangePage> b = sm->range({.prefix = "b/"});
    ASSERT_EQ(b->kvs.size(), 1u);
    EXPECT_EQ(b->kvs[0].key, "b/0");
    EXPECT_EQ(*sm->hash(), model.hash());
  };
  check("frozen, not flushed");
  ASSERT_TRUE(sm->flush().ok());
  EXPECT_EQ(sm->durable_index(), 7u);
  check("flushed, not retired");
  sm->retire_frozen();
  check("retired");
  ASSERT_TRUE(sm->flush_all().ok());
  check("all flushed");
}

// The flush commits on another thread while this one applies and reads; the hook stops the
// flush just before its commit so that reads provably overlap an uncommitted and then a
// committed flush.
TEST(StateMachineTest, FlushOnAWorkerWhileTheOwnerAppliesAndReads) {
  std::promise<void> reached, release;
  std::shared_future<void> released = release.get_future().share();
  StateOptions o;
  o.test_hook = [&reached, released](std::string_view point) {
    if (point != "flush.before_commit") return;
    reached.set_value();
    released.wait_for(std::chrono::seconds(30));  // bounded: the test fails rather than hangs
  };
  auto sm = open_state(fresh_dir(), o);
  Model model;
  StepGenerator gen(7);
  std::uint64_t i = 0;
  for (int n = 0; n < 300; ++n) apply_both(*sm, model, ++i, 1, gen.next(model));
  ASSERT_TRUE(sm->freeze());
  Status flushed;
  std::thread worker([&] { flushed = sm->flush(); });
  ASSERT_EQ(reached.get_future().wait_for(std::chrono::seconds(30)), std::future_status::ready);
  for (int n = 0; n < 100; ++n) apply_both(*sm, model, ++i, 1, gen.next(model));
  EXPECT_EQ(all_keys(*sm), model.all());
  release.set_value();  // let the commit happen
  // Read while (and after) it commits; each read must be consistent whenever it lands.
  for (int n = 0; n < 50; ++n) {
    EXPECT_EQ(*sm->hash(), model.hash());
    apply_both(*sm, model, ++i, 1, gen.next(model));
  }
  worker.join();
  ASSERT_TRUE(flushed.ok()) << flushed.to_string();
  EXPECT_EQ(sm->durable_index(), 300u);
  EXPECT_EQ(all_keys(*sm), model.all());
  sm->retire_frozen();
  EXPECT_EQ(all_keys(*sm), model.all());
  EXPECT_EQ(*sm->hash(), model.hash());
}

TEST(StateMachineTest, RangePaginationAcrossOverlayAndLmdb) {
  auto sm = open_state(fresh_dir());
  Model model;
  StepGenerator gen(11);
  std::uint64_t i = 0;
  // Three layers, each with puts and tombstones over the same small key space.
  for (int layer = 0; layer < 3; ++layer) {
    for (int n = 0; n < 120; ++n) apply_both(*sm, model, ++i, 1, gen.next(model));
    if (layer == 0) {
      ASSERT_TRUE(sm->flush_all().ok());
    } else if (layer == 1) {
      ASSERT_TRUE(sm->freeze());
    }
  }
  for (const std::string prefix : {"", "a/", "a/1", "b/", "d/x/", "nothing"}) {
    std::vector<KeyValue> want;
    for (const auto& [k, v] : model.kvs) {
      if (k.compare(0, prefix.size(), prefix) == 0) want.push_back(v);
    }
    for (std::size_t limit = 1; limit <= 7; ++limit) {
      SCOPED_TRACE("prefix '" + prefix + "' limit " + std::to_string(limit));
      std::vector<KeyValue> got;
      RangeRequest req{.prefix = prefix, .limit = limit};
      for (int pages = 0; pages < 200; ++pages) {
        Result<RangePage> p = sm->range(req);
        ASSERT_TRUE(p.ok());
        ASSERT_LE(p->kvs.size(), limit);
        got.insert(got.end(), p->kvs.begin(), p->kvs.end());
        if (!p->more) break;
        ASSERT_EQ(p->kvs.size(), limit);
        req.start = p->next_start;
      }
      EXPECT_EQ(got, want);
    }
  }
  // start and end bounds, keys only.
  Result<RangePage> p = sm->range({.start = "a/2", .end = "c", .keys_only = true});
  ASSERT_TRUE(p.ok());
  std::vector<std::string> want_keys, got_keys;
  for (const auto& [k, v] : model.kvs) {
    if (k >= "a/2" && k < "c") want_keys.push_back(k);
  }
  for (const KeyValue& x : p->kvs) {
    got_keys.push_back(x.key);
    EXPECT_TRUE(x.value.empty());
  }
  EXPECT_EQ(got_keys, want_keys);
}

TEST(StateMachineTest, TombstonesHideEveryLowerLayer) {
  auto sm = open_state(fresh_dir());
  ASSERT_TRUE(sm->apply(1, 1, put("k1", "lmdb")).ok());
  ASSERT_TRUE(sm->apply(2, 1, put("k2", "lmdb")).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  ASSERT_TRUE(sm->apply(3, 1, del("k1")).ok());  // tombstone in what becomes frozen
  ASSERT_TRUE(sm->apply(4, 1, put("k3", "frozen")).ok());
  ASSERT_TRUE(sm->freeze());
  ASSERT_TRUE(sm->apply(5, 1, del("k2")).ok());  // tombstones in the active overlay
  ASSERT_TRUE(sm->apply(6, 1, del("k3")).ok());
  EXPECT_TRUE(all_keys(*sm).empty());
  EXPECT_FALSE(*sm->exists("k1"));
  EXPECT_FALSE(*sm->exists("k2"));
  EXPECT_FALSE(*sm->exists("k3"));
  // A put above a tombstone brings the key back with a fresh create revision.
  ASSERT_TRUE(sm->apply(7, 1, put("k1", "again")).ok());
  EXPECT_EQ(**sm->get("k1"), kv("k1", "again", 7, 7, 1));
  ASSERT_TRUE(sm->flush_all().ok());
  EXPECT_EQ(all_keys(*sm), std::vector<KeyValue>{kv("k1", "again", 7, 7, 1)});
}

TEST(StateMachineTest, EventsReplayFromARevisionAcrossLayers) {
  auto sm = open_state(fresh_dir());
  Model model;
  StepGenerator gen(5);
  std::uint64_t i = 0;
  for (int layer = 0; layer < 3; ++layer) {
    for (int n = 0; n < 80; ++n) apply_both(*sm, model, ++i, 1, gen.next(model));
    if (layer == 0) {
      ASSERT_TRUE(sm->flush_all().ok());
    } else if (layer == 1) {
      ASSERT_TRUE(sm->freeze());
    }
  }
  for (const std::uint64_t from : {1ull, 2ull, 50ull, 81ull, 150ull, 239ull, 240ull, 241ull}) {
    for (const auto& [key, prefix] :
         std::vector<std::pair<std::string, bool>>{{"", true}, {"a/", true}, {"c5", false}}) {
      SCOPED_TRACE("from " + std::to_string(from) + " key '" + key + "'");
      std::vector<Event> want;
      for (const Event& e : model.events) {
        const bool match = prefix ? e.key.compare(0, key.size(), key) == 0 : e.key == key;
        if (e.revision >= from && match) want.push_back(e);
      }
      // Unlimited, then in pages of 3 following the continuation.
      Result<EventPage> all =
          sm->events_since({.from_revision = from, .key = key, .prefix = prefix});
      ASSERT_TRUE(all.ok()) << all.status().to_string();
      EXPECT_EQ(all->events, want);
      EXPECT_FALSE(all->more);
      EXPECT_EQ(all->next_revision, std::max<std::uint64_t>(from, i + 1));
      std::vector<Event> paged;
      EventRequest req{.from_revision = from, .key = key, .prefix = prefix, .limit = 3};
      for (int n = 0; n < 500; ++n) {
        Result<EventPage> p = sm->events_since(req);
        ASSERT_TRUE(p.ok());
        paged.insert(paged.end(), p->events.begin(), p->events.end());
        req.from_revision = p->next_revision;
        req.from_sequence = p->next_sequence;
        if (!p->more) break;
      }
      EXPECT_EQ(paged, want);
    }
  }
  Result<EventPage> bad = sm->events_since({.from_revision = 1});
  EXPECT_EQ(bad.status().code(), Code::kInvalidArgument);
}

TEST(StateMachineTest, HistoryIsCompactedByRevisionsAndBytes) {
  StateOptions o;
  o.history_revisions = 10;
  auto sm = open_state(fresh_dir(), o);
  std::uint64_t i = 0;
  for (int n = 0; n < 30; ++n) ASSERT_TRUE(sm->apply(++i, 1, put("k", std::to_string(n))).ok());
  // Not flushed: the overlay still holds everything.
  EXPECT_TRUE(sm->events_since({.from_revision = 1, .key = "k"}).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  EXPECT_EQ(*sm->compact_revision(), 21u);
  Result<EventPage> old = sm->events_since({.from_revision = 20, .key = "k"});
  EXPECT_EQ(old.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(old.status().message().find("compacted"), std::string::npos);
  EXPECT_NE(old.status().message().find("21"), std::string::npos) << old.status().message();
  Result<EventPage> kept = sm->events_since({.from_revision = 21, .key = "k"});
  ASSERT_TRUE(kept.ok());
  EXPECT_EQ(kept->events.size(), 10u);

  // A byte budget drops whole revisions: a delete_prefix of 20 keys is one revision.
  StateOptions b;
  b.history_revisions = 1000;
  b.history_bytes = 600;
  auto sm2 = open_state(fresh_dir("bytes"), b);
  i = 0;
  for (int n = 0; n < 20; ++n) {
    ASSERT_TRUE(sm2->apply(++i, 1, put("p/" + std::to_string(n), std::string(10, 'v'))).ok());
  }
  ASSERT_TRUE(sm2->apply(++i, 1, del_prefix("p/")).ok());
  ASSERT_TRUE(sm2->apply(++i, 1, put("q", "1")).ok());
  ASSERT_TRUE(sm2->flush_all().ok());
  const std::uint64_t c = *sm2->compact_revision();
  EXPECT_GT(c, 1u);
  Result<EventPage> rest = sm2->events_since({.from_revision = c, .prefix = true});
  ASSERT_TRUE(rest.ok());
  ASSERT_FALSE(rest->events.empty());
  // Whole revisions only: if revision 21 (the delete_prefix) is there, all 20 events are.
  std::size_t at21 = 0;
  for (const Event& e : rest->events) at21 += e.revision == 21;
  EXPECT_TRUE(at21 == 0 || at21 == 20) << at21;
  EXPECT_EQ(rest->events.back().key, "q");
}

TEST(StateMachineTest, HashIsEqualForEqualStatesAndSeesEveryField) {
  auto a = open_state(fresh_dir("a"));
  auto b = open_state(fresh_dir("b"));
  // The same state reached differently: b flushes in between, a does not.
  ASSERT_TRUE(a->apply(1, 1, put("x", "1")).ok());
  ASSERT_TRUE(a->apply(2, 1, put("y", "2")).ok());
  ASSERT_TRUE(b->apply(1, 1, put("x", "1")).ok());
  ASSERT_TRUE(b->flush_all().ok());
  ASSERT_TRUE(b->apply(2, 1, put("y", "2")).ok());
  EXPECT_EQ(*a->hash(), *b->hash());
  // Same keys and values, different revisions: different hashes.
  ASSERT_TRUE(a->apply(3, 1, put("x", "1")).ok());
  b->apply_noop(3, 1);
  EXPECT_NE(*a->hash(), *b->hash());
  // Same content, different applied index: different hashes.
  StateHasher h1, h2;
  h1.add(kv("k", "v", 1, 1, 1));
  h2.add(kv("k", "v", 1, 1, 1));
  EXPECT_EQ(h1.finish(5), h2.finish(5));
  // The worker-side hash of LMDB agrees once everything is flushed, and names its index.
  ASSERT_TRUE(a->flush_all().ok());
  Result<StateMachine::IndexedHash> d = a->durable_hash();
  ASSERT_TRUE(d.ok());
  EXPECT_EQ(d->index, 3u);
  EXPECT_EQ(d->hash, *a->hash());
  ASSERT_TRUE(a->apply(4, 1, put("z", "1")).ok());  // not flushed: durable_hash stays at 3
  EXPECT_EQ(a->durable_hash()->index, 3u);
  EXPECT_NE(a->durable_hash()->hash, *a->hash());
  EXPECT_NE(h1.finish(5), h2.finish(6));
  StateHasher h3;
  h3.add(kv("k", "v", 1, 1, 2));
  EXPECT_NE(h1.finish(5), h3.finish(5));
}

// pin_durable: the view a barrier's hash scans on another thread stays at the index it was
// pinned at while later flushes commit (so the hash is of exactly the barrier's state), and a
// stop cancels a long scan.
TEST(StateMachineTest, APinnedDurableReadHashesItsIndexWhileLaterFlushesCommit) {
  auto sm = open_state(fresh_dir());
  std::uint64_t i = 0;
  for (; i < 5000; ++i) ASSERT_TRUE(sm->apply(i + 1, 1, put("k" + std::to_string(i), "a")).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  const std::uint64_t at_pin = *sm->hash();
  Result<std::shared_ptr<StateMachine::DurableRead>> pin = sm->pin_durable();
  ASSERT_TRUE(pin.ok()) << pin.status().to_string();
  EXPECT_EQ((*pin)->index(), 5000u);
  // Later writes overwrite half the keys and add more, and are flushed.
  for (std::uint64_t k = 0; k < 3000; ++k, ++i) {
    ASSERT_TRUE(sm->apply(i + 1, 1, put("k" + std::to_string(k * 2), "b")).ok());
  }
  ASSERT_TRUE(sm->flush_all().ok());
  ASSERT_EQ(sm->durable_index(), 8000u);
  Result<StateMachine::IndexedHash> h = (*pin)->hash();
  ASSERT_TRUE(h.ok()) << h.status().to_string();
  EXPECT_EQ(h->index, 5000u);
  EXPECT_EQ(h->hash, at_pin);
  EXPECT_NE(sm->durable_hash()->hash, at_pin);
  // A cancelled scan stops with kShuttingDown.
  std::atomic<bool> cancel{true};
  EXPECT_EQ((*pin)->hash(&cancel).status().code(), Code::kShuttingDown);
  cancel = false;
  EXPECT_EQ((*pin)->hash(&cancel)->hash, at_pin);
  pin->reset();
}

TEST(StateMachineTest, FullMapIsResourceExhaustedAndNamesTheFlag) {
  StateOptions o;
  o.map_size = 1u << 20;  // 1 MiB
  auto sm = open_state(fresh_dir(), o);
  std::uint64_t i = 0;
  for (int n = 0; n < 40; ++n) {
    ASSERT_TRUE(sm->apply(++i, 1, put("k" + std::to_string(n), std::string(64 * 1024, 'v'))).ok());
  }
  ASSERT_TRUE(sm->freeze());
  Status s = sm->flush();
  EXPECT_EQ(s.code(), Code::kResourceExhausted) << s.to_string();
  EXPECT_NE(s.message().find("--state-map-size"), std::string::npos) << s.message();
  // Nothing half-written: LMDB is still at its previous durable index, reads still work.
  EXPECT_EQ(sm->durable_index(), 0u);
  EXPECT_EQ(all_keys(*sm).size(), 40u);
}

TEST(StateMachineTest, OpenRefusesAStateWhoseDatabaseFileIsMissing) {
  const std::string dir = fresh_dir();
  {
    auto sm = open_state(dir);
    ASSERT_TRUE(sm->apply(1, 1, put("k", "v")).ok());
    ASSERT_TRUE(sm->flush_all().ok());
  }
  std::filesystem::remove(dir + "/gen-0000000001/data.mdb");
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir);
  EXPECT_EQ(sm.status().code(), Code::kCorruption);
  std::filesystem::remove(dir + "/CURRENT");
  std::filesystem::create_directories(dir + "/gen-0000000002");
  sm = StateMachine::open(dir);
  EXPECT_EQ(sm.status().code(), Code::kCorruption) << "two generations and no CURRENT";
}

}  // namespace
}  // namespace kvc::storage

namespace kvc::storage {
namespace {

TEST(StateMachineBarrierTest, BarrierAdvancesTheIndexAndChangesNoKey) {
  const std::string dir = test::test_dir() + "/barrier";
  Result<std::unique_ptr<StateMachine>> st = StateMachine::open(dir);
  ASSERT_TRUE(st.ok()) << st.status().to_string();
  (*st)->apply_noop(1, 1);
  Result<ApplyResult> r = (*st)->apply(2, 1, {.op = CommandOp::kBarrier, .request_id = 9});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->code, Code::kOk);
  EXPECT_EQ((*st)->applied_index(), 2u);
  EXPECT_EQ((*st)->revision(), 0u) << "a barrier changes no key";
  Result<RangePage> all = (*st)->range({});
  ASSERT_TRUE(all.ok());
  EXPECT_TRUE(all->kvs.empty());
}

// Resident bytes of this process's mappings of the file `path` (the Rss of its VMAs in
// /proc/self/smaps): what a read of the file through the mapping finds without a page fault.
std::uint64_t mapped_resident_bytes(const std::string& path) {
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool ours = false;
  std::uint64_t kib = 0;
  while (std::getline(smaps, line)) {
    if (!line.empty() && std::isxdigit(static_cast<unsigned char>(line[0])) &&
        line.find(' ') < line.find(':')) {  // a VMA's header line: "start-end perms ... path"
      ours = line.size() >= path.size() &&
             line.compare(line.size() - path.size(), path.size(), path) == 0;
    } else if (ours && line.rfind("Rss:", 0) == 0) {
      kib += std::stoull(line.substr(4));
    }
  }
  return kib * 1024;
}

// After a start the LMDB file is in the page cache but not in this process's page tables, so
// every first read of a page would fault; map_in maps it in, in steps, and again after the file
// grows.
TEST(StateMachineTest, MapInMapsTheWholeStateFileInStepsAndAgainAfterItGrows) {
  const std::string dir = fresh_dir();
  {
    auto sm = open_state(dir);
    ASSERT_NE(sm, nullptr);
    for (int i = 0; i < 4000; ++i) {
      ASSERT_TRUE(
          sm->apply(i + 1, 1, put("key/" + std::to_string(i), std::string(1000, 'v'))).ok());
    }
    ASSERT_TRUE(sm->flush_all().ok());
  }
  auto sm = open_state(dir);  // a fresh mapping
  ASSERT_NE(sm, nullptr);
  const std::string file = std::filesystem::canonical(testing::live_data_file(dir)).string();
  const auto file_bytes = [&] { return std::filesystem::file_size(file); };
  ASSERT_GT(file_bytes(), 4000u * 1000);
  EXPECT_LT(mapped_resident_bytes(file), file_bytes() / 4) << "mapped in before map_in";
  EXPECT_TRUE(sm->map_in_pending());

  std::uint64_t steps = 0, total = 0;
  while (const std::uint64_t n = sm->map_in(1 << 20)) {
    EXPECT_LE(n, 1u << 20);
    total += n;
    ++steps;
  }
  EXPECT_EQ(total, file_bytes());
  EXPECT_EQ(sm->mapped_in_bytes(), file_bytes());
  EXPECT_GT(steps, 3u);
  EXPECT_FALSE(sm->map_in_pending());
  EXPECT_GE(mapped_resident_bytes(file), file_bytes());

  // The file grows with a flush: only the new part is left to map in.
  const std::uint64_t before = file_bytes();
  for (int i = 0; i < 2000; ++i) {
    ASSERT_TRUE(
        sm->apply(4001 + i, 1, put("more/" + std::to_string(i), std::string(1000, 'w'))).ok());
  }
  ASSERT_TRUE(sm->flush_all().ok());
  ASSERT_GT(file_bytes(), before);
  EXPECT_TRUE(sm->map_in_pending());
  EXPECT_EQ(sm->map_in(std::numeric_limits<std::uint64_t>::max()), file_bytes() - before);
  EXPECT_FALSE(sm->map_in_pending());
  EXPECT_GE(mapped_resident_bytes(file), file_bytes());
}

}  // namespace
}  // namespace kvc::storage
