// The state's checksums (state format 2): a flipped bit in a stored value, event or meta record
// of a closed state is refused on every path that reads it, named in the error, and never
// served; the scrubber finds every damaged record in bounded steps; a version 1 state is
// upgraded when opened; the durable log index is recorded with the flushes.
#include <gtest/gtest.h>
#include <lmdb.h>

#include <filesystem>

#include "kvc/storage/state.h"
#include "kvc/storage/state_check.h"
#include "state_damage.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::build_state;
using testing::check_damaged_value_is_refused;
using testing::Copy;
using testing::damage_value;
using testing::flip_key_bit;
using testing::flip_meta_bit;
using testing::flip_value_bit;
using testing::fresh_dir;

std::unique_ptr<StateMachine> open_state(const std::string& dir, StateOptions o = {}) {
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir, std::move(o));
  EXPECT_TRUE(sm.ok()) << sm.status().to_string();
  return sm.ok() ? std::move(*sm) : nullptr;
}

TEST(StateIntegrityTest, DamagedValueIsRefusedOnEveryReadPathAndOthersStillRead) {
  EXPECT_EQ(check_damaged_value_is_refused(fresh_dir()), "");
}

TEST(StateIntegrityTest, TheSameStateUndamagedReadsOnEveryPath) {
  const std::string dir = fresh_dir();
  build_state(dir, 20);
  auto sm = open_state(dir);
  Result<std::optional<KeyValue>> got = sm->get("d/7");
  ASSERT_TRUE(got.ok() && got->has_value()) << got.status().to_string();
  EXPECT_EQ((*got)->value, damage_value(7));
  EXPECT_EQ((*got)->mod_revision, 9u);
  EXPECT_TRUE(sm->range({}).ok());
  EXPECT_TRUE(sm->durable_hash().ok());
  EXPECT_TRUE(sm->write_snapshot(dir + "/ok.snap").ok());
  EXPECT_TRUE(sm->damaged_keys().empty());
  EXPECT_EQ(sm->damage_count(), 0u);
}

TEST(StateIntegrityTest, DamagedEventIsRefusedByEventsSinceButTheKeyStillReads) {
  const std::string dir = fresh_dir();
  build_state(dir, 10);
  // d/3 was put at index 5: its event is 5/0.
  ASSERT_GT(flip_value_bit(dir, "d/3", damage_value(3), Copy::kEvent), 0);
  auto sm = open_state(dir);
  Result<EventPage> all = sm->events_since({.from_revision = 1, .key = "d/", .prefix = true});
  EXPECT_EQ(all.status().code(), Code::kCorruption);
  EXPECT_NE(all.status().message().find("event 5/0: checksum mismatch"), std::string::npos)
      << all.status().message();
  // A page that ends before the damage, and one that starts past its neighbour, still read (a
  // page starting right after it is refused: a damaged record just before where a walk starts
  // may be a record whose damaged key moved it out of the walk, state_read.cc check_neighbours).
  // (A page stops reading at the first event past its limit: 2/0 and 3/0, then 4/0.)
  Result<EventPage> before =
      sm->events_since({.from_revision = 1, .key = "d/", .prefix = true, .limit = 2});
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_EQ(before->events.size(), 2u);
  Result<EventPage> next = sm->events_since({.from_revision = 6, .key = "d/", .prefix = true});
  EXPECT_EQ(next.status().code(), Code::kCorruption);
  Result<EventPage> after = sm->events_since({.from_revision = 7, .key = "d/", .prefix = true});
  ASSERT_TRUE(after.ok()) << after.status().to_string();
  EXPECT_EQ(after->events.size(), 5u);
  Result<std::optional<KeyValue>> got = sm->get("d/3");
  ASSERT_TRUE(got.ok() && got->has_value());
  EXPECT_EQ((*got)->value, damage_value(3));
  EXPECT_EQ(sm->damaged_keys(), std::vector<std::string>{"event 5/0"});
}

// LMDB's pages carry no checksum: a flipped bit in a stored key moves its record out of the
// key order, where a search for the key misses it. A miss that damage may explain is refused,
// never answered "not found".
TEST(StateIntegrityTest, DamagedKeyIsRefusedNotReportedMissing) {
  const std::string dir = fresh_dir();
  build_state(dir, 10);
  ASSERT_GT(flip_key_bit(dir, "d/5", damage_value(5)), 0);  // now "d/u", sorted as "d/5"
  auto sm = open_state(dir);
  Result<std::optional<KeyValue>> got = sm->get("d/5");
  EXPECT_EQ(got.status().code(), Code::kCorruption)
      << (got.ok() ? (got->has_value() ? "found" : "not found") : got.status().to_string());
  // Keys away from the damage still read; a walk over the damage is refused.
  Result<std::optional<KeyValue>> other = sm->get("d/1");
  ASSERT_TRUE(other.ok() && other->has_value()) << other.status().to_string();
  EXPECT_EQ(sm->range({}).status().code(), Code::kCorruption);
  EXPECT_FALSE(sm->damaged_keys().empty());
  // The offline check finds it too.
  sm.reset();
  Result<StateCheckReport> r = check_state(dir);
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_FALSE(r->damaged.empty());
}

TEST(StateIntegrityTest, DamagedMetaRecordRefusesToOpen) {
  const std::string dir = fresh_dir();
  build_state(dir, 3);
  ASSERT_GT(flip_meta_bit(dir, "applied_term"), 0);
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir);
  EXPECT_EQ(sm.status().code(), Code::kCorruption);
  EXPECT_NE(sm.status().message().find("meta field \"applied_term\": checksum mismatch"),
            std::string::npos)
      << sm.status().message();
  EXPECT_NE(sm.status().message().find(dir), std::string::npos);
  Result<StateFacts> facts = read_state_facts(dir);
  EXPECT_EQ(facts.status().code(), Code::kCorruption);
}

TEST(StateIntegrityTest, ScrubFindsEveryDamagedRecordInBoundedStepsAndKeepsGoing) {
  const std::string dir = fresh_dir();
  constexpr int kKeys = 20;
  build_state(dir, kKeys);
  ASSERT_GT(flip_value_bit(dir, "d/2", damage_value(2), Copy::kKv), 0);
  ASSERT_GT(flip_value_bit(dir, "d/11", damage_value(11), Copy::kKv), 0);
  ASSERT_GT(flip_value_bit(dir, "d/5", damage_value(5), Copy::kEvent), 0);
  auto sm = open_state(dir);
  ScrubCursor at;
  std::uint64_t records = 0, calls = 0;
  std::vector<std::string> damaged;
  while (!at.done()) {
    Result<ScrubBatch> b = sm->scrub(at, 3);
    ASSERT_TRUE(b.ok()) << b.status().to_string();
    EXPECT_LE(b->records, 3u);
    records += b->records;
    damaged.insert(damaged.end(), b->damaged.begin(), b->damaged.end());
    at = b->next;
    ASSERT_LT(++calls, 1000u);
  }
  // 9 meta fields, the keys and one put event per key.
  EXPECT_EQ(records, 9u + kKeys + kKeys);
  EXPECT_EQ(damaged, (std::vector<std::string>{"key \"d/11\": checksum mismatch",
                                               "key \"d/2\": checksum mismatch",
                                               "event 7/0: checksum mismatch"}));
  EXPECT_EQ(sm->damaged_keys(),
            (std::vector<std::string>{"key \"d/11\"", "key \"d/2\"", "event 7/0"}));
  // A scrub of a finished pass does nothing; a new pass finds the same again.
  Result<ScrubBatch> idle = sm->scrub(at, 10);
  ASSERT_TRUE(idle.ok());
  EXPECT_EQ(idle->records, 0u);
  Result<ScrubBatch> again = sm->scrub({}, 1000);
  ASSERT_TRUE(again.ok());
  EXPECT_TRUE(again->next.done());
  EXPECT_EQ(again->damaged.size(), 3u);
}

TEST(StateIntegrityTest, ScrubSeesWhatFlushesAddBetweenItsCalls) {
  // Each call has its own read transaction: a pass that spans flushes walks the new records
  // (a pass holding one old transaction would not, and would pin LMDB's freed pages).
  const std::string dir = fresh_dir();
  build_state(dir, 4);  // keys d/0..d/3 at indexes 2..5
  auto sm = open_state(dir);
  Result<ScrubBatch> first = sm->scrub({}, 9 + 2);  // meta and d/0, d/1
  ASSERT_TRUE(first.ok());
  ASSERT_EQ(first->next.stage, ScrubCursor::Stage::kKv);
  std::uint64_t index = sm->applied_index();
  for (const char* k : {"d/9", "e/1"}) {
    ASSERT_TRUE(sm->apply(++index, 1, {.op = CommandOp::kPut, .key = k, .value = "v"}).ok());
  }
  ASSERT_TRUE(sm->flush_all().ok());
  Result<ScrubBatch> rest = sm->scrub(first->next, 1000);
  ASSERT_TRUE(rest.ok());
  EXPECT_TRUE(rest->next.done());
  // d/2, d/3, d/9, e/1 and six events.
  EXPECT_EQ(rest->records, 4u + 6u);
  EXPECT_TRUE(rest->damaged.empty());
}

TEST(StateIntegrityTest, LogDurableIndexIsWrittenWithTheNextFlushAndOnlyGrows) {
  const std::string dir = fresh_dir();
  auto sm = open_state(dir);
  sm->note_log_durable(3);
  EXPECT_EQ(sm->facts().log_durable_index, 0u) << "not before a flush";
  ASSERT_TRUE(sm->apply(1, 1, {.op = CommandOp::kPut, .key = "k", .value = "v"}).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  EXPECT_EQ(sm->facts().log_durable_index, 3u);
  EXPECT_EQ(sm->facts().applied_index, 1u);
  sm->note_log_durable(2);
  ASSERT_TRUE(sm->apply(2, 1, {.op = CommandOp::kPut, .key = "k", .value = "w"}).ok());
  ASSERT_TRUE(sm->flush_all().ok());
  EXPECT_EQ(sm->facts().log_durable_index, 3u) << "committed entries never go away";
  sm.reset();
  sm = open_state(dir);
  const StateFacts f = sm->facts();
  EXPECT_EQ(f.format, kStateFormatVersion);
  EXPECT_EQ(f.log_durable_index, 3u);
  EXPECT_EQ(f.installed_index, 0u);
  EXPECT_EQ(f.applied_index, 2u);
  Result<StateFacts> offline = [&] {
    sm.reset();
    return read_state_facts(dir);
  }();
  ASSERT_TRUE(offline.ok()) << offline.status().to_string();
  EXPECT_EQ(*offline, f);
}

TEST(StateIntegrityTest, AnInstalledStateSaysWhereItCameFrom) {
  const std::string src = fresh_dir("src");
  build_state(src, 5);
  auto a = open_state(src);
  Result<SnapshotInfo> snap = a->write_snapshot(src + "/s.snap");
  ASSERT_TRUE(snap.ok());
  auto b = open_state(fresh_dir("dst"));
  b->note_log_durable(2);
  b->apply_noop(1, 1);
  ASSERT_TRUE(b->flush_all().ok());
  ASSERT_EQ(b->facts().log_durable_index, 2u);
  ASSERT_TRUE(b->install_snapshot(snap->path).ok());
  const StateFacts f = b->facts();
  EXPECT_EQ(f.applied_index, 6u);
  EXPECT_EQ(f.installed_index, 6u);
  EXPECT_EQ(f.log_durable_index, 0u) << "the log before the install says nothing after it";
  EXPECT_TRUE(f.has_membership);
}

// ---- version 1 ----

// Writes a version 1 state by hand, from kvc-state(5)'s description of version 1 (no seals):
// keys k/0..k/(n-1) put at indexes 1..n, their events, and the meta.
void write_v1_state(const std::string& dir, int n, bool with_events) {
  std::filesystem::create_directories(dir + "/gen-0000000001");
  testing::write_bytes(dir + "/CURRENT", "gen-0000000001\n");
  MDB_env* env = nullptr;
  ASSERT_EQ(mdb_env_create(&env), 0);
  ASSERT_EQ(mdb_env_set_maxdbs(env, 4), 0);
  ASSERT_EQ(mdb_env_open(env, (dir + "/gen-0000000001").c_str(), MDB_NOTLS, 0600), 0);
  MDB_txn* txn = nullptr;
  ASSERT_EQ(mdb_txn_begin(env, nullptr, 0, &txn), 0);
  MDB_dbi kv = 0, meta = 0, events = 0;
  ASSERT_EQ(mdb_dbi_open(txn, "kv", MDB_CREATE, &kv), 0);
  ASSERT_EQ(mdb_dbi_open(txn, "meta", MDB_CREATE, &meta), 0);
  ASSERT_EQ(mdb_dbi_open(txn, "events", MDB_CREATE, &events), 0);
  auto put = [&](MDB_dbi dbi, const std::string& k, const std::string& v) {
    MDB_val kk{k.size(), const_cast<char*>(k.data())}, vv{v.size(), const_cast<char*>(v.data())};
    ASSERT_EQ(mdb_put(txn, dbi, &kk, &vv, 0), 0);
  };
  std::uint64_t events_bytes = 0;
  for (int i = 0; i < n; ++i) {
    const std::uint64_t index = static_cast<std::uint64_t>(i) + 1;
    const std::string key = "k/" + std::to_string(i), value = "v" + std::to_string(i);
    std::string body;
    put_varint(body, index);  // create
    put_varint(body, index);  // mod
    put_varint(body, 1);      // version
    body += value;
    put(kv, key, body);
    if (with_events) {
      std::string ev(1, '\x01');  // put
      put_varint(ev, index);      // create
      put_varint(ev, 1);          // version
      put_varint(ev, 0);          // prev mod
      put_varint(ev, key.size());
      ev += key + value;
      const std::string ek = event_key(index, 0);
      put(events, ek, ev);
      events_bytes += ek.size() + ev.size();
    }
  }
  const std::uint64_t d = static_cast<std::uint64_t>(n);
  Membership m;
  m.members = {{.id = 1, .name = "m1", .peer_addr = "127.0.0.1:1"}};
  put(meta, "format", u64_bytes(1));
  put(meta, "applied_index", u64_bytes(d));
  put(meta, "applied_term", u64_bytes(2));
  put(meta, "revision", u64_bytes(d));
  put(meta, "compact_revision", u64_bytes(with_events ? 1 : d + 1));
  put(meta, "events_bytes", u64_bytes(events_bytes));
  put(meta, "membership", encode_membership(m));
  ASSERT_EQ(mdb_txn_commit(txn), 0);
  mdb_env_close(env);
}

TEST(StateIntegrityTest, AVersion1StateIsUpgradedWhenOpened) {
  const std::string dir = fresh_dir();
  ASSERT_NO_FATAL_FAILURE(write_v1_state(dir, 30, true));
  Result<StateFacts> before = read_state_facts(dir);
  ASSERT_TRUE(before.ok()) << before.status().to_string();
  EXPECT_EQ(before->format, 1u);
  EXPECT_EQ(before->installed_index, 0u);
  {
    auto sm = open_state(dir);
    ASSERT_NE(sm, nullptr);
    EXPECT_EQ(sm->facts().format, kStateFormatVersion);
    EXPECT_EQ(sm->applied_index(), 30u);
    Result<std::optional<KeyValue>> got = sm->get("k/17");
    ASSERT_TRUE(got.ok() && got->has_value()) << got.status().to_string();
    EXPECT_EQ(**got, (KeyValue{"k/17", "v17", 18, 18, 1}));
    Result<EventPage> ev = sm->events_since({.from_revision = 1, .key = "k/", .prefix = true});
    ASSERT_TRUE(ev.ok()) << ev.status().to_string();
    EXPECT_EQ(ev->events.size(), 30u);
    // The same state written by this kvc hashes the same.
    testing::Model model;
    for (int i = 0; i < 30; ++i) {
      model.apply(static_cast<std::uint64_t>(i) + 1, {.op = CommandOp::kPut,
                                                      .key = "k/" + std::to_string(i),
                                                      .value = "v" + std::to_string(i)});
    }
    Result<StateMachine::IndexedHash> h = sm->durable_hash();
    ASSERT_TRUE(h.ok());
    EXPECT_EQ(h->hash, model.hash());
    // Writing on top works, and the history's byte count stayed right (check_state agrees).
    ASSERT_TRUE(sm->apply(31, 2, {.op = CommandOp::kPut, .key = "k/0", .value = "new"}).ok());
    ASSERT_TRUE(sm->flush_all().ok());
  }
  Result<StateCheckReport> checked = check_state(dir);
  ASSERT_TRUE(checked.ok()) << checked.status().to_string();
  EXPECT_TRUE(checked->ok()) << (checked->problems.empty() ? "" : checked->problems[0]);
  EXPECT_EQ(checked->facts.format, kStateFormatVersion);
  EXPECT_EQ(checked->keys, 30u);
  EXPECT_EQ(checked->events, 31u);
  // And it now has teeth: a flipped value is caught.
  ASSERT_GT(flip_value_bit(dir, "k/9", "v9", Copy::kKv), 0);
  auto sm = open_state(dir);
  EXPECT_EQ(sm->get("k/9").status().code(), Code::kCorruption);
}

TEST(StateIntegrityTest, AVersion1StateThatWasInstalledIsRecognisedAsSuch) {
  // A state made by an install (kvc-snap restore) carries no events and compact revision
  // index + 1; the upgrade records it as installed, so its empty log is not a missing one.
  const std::string dir = fresh_dir();
  ASSERT_NO_FATAL_FAILURE(write_v1_state(dir, 12, false));
  Result<StateFacts> before = read_state_facts(dir);
  ASSERT_TRUE(before.ok());
  EXPECT_EQ(before->installed_index, 12u);
  auto sm = open_state(dir);
  EXPECT_EQ(sm->facts().installed_index, 12u);
  EXPECT_EQ(sm->facts().format, kStateFormatVersion);
}

TEST(StateIntegrityTest, RecordsDoNotVerifyUnderAnotherKeyOrInAnotherDatabase) {
  const std::string body = "\x01\x02\x03value";
  const std::string sealed = seal_record(StateDb::kKv, "a", body);
  EXPECT_EQ(unseal_record(StateDb::kKv, "a", sealed), std::optional<std::string_view>(body));
  EXPECT_EQ(unseal_record(StateDb::kKv, "b", sealed), std::nullopt);
  EXPECT_EQ(unseal_record(StateDb::kEvents, "a", sealed), std::nullopt);
  EXPECT_EQ(unseal_record(StateDb::kKv, "a", sealed.substr(0, 3)), std::nullopt);
  for (std::size_t i = 0; i < sealed.size() * 8; ++i) {
    std::string bad = sealed;
    bad[i / 8] = static_cast<char>(bad[i / 8] ^ (1 << (i % 8)));
    EXPECT_EQ(unseal_record(StateDb::kKv, "a", bad), std::nullopt) << "bit " << i;
  }
}

}  // namespace
}  // namespace kvc::storage
