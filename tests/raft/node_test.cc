// raft::Node, driven through a tiny in-memory cluster (instant disks, a message queue the test
// controls). Each test names the rule of the Raft paper (§) or thesis it exercises. Scenarios
// that are a plain script (elect, propose, deliver, look) live in testdata/*.txt (run by
// interaction_test.cc); the tests here need what a script cannot say: hand-made or held-back
// messages, a Ready inspected between ready() and advance(), a caller that loses a file.
#include "kvc/raft/node.h"

#include <gtest/gtest.h>

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <set>

#include "kvc/raft/mutation.h"

namespace kvc::raft {
namespace {

class TestCluster {
 public:
  explicit TestCluster(int n, bool pre_vote = true, bool check_quorum = true,
                       std::uint64_t max_uncommitted = 64 << 20)
      : max_uncommitted_(max_uncommitted) {
    std::vector<NodeId> voters;
    for (int i = 1; i <= n; ++i) voters.push_back(static_cast<NodeId>(i));
    for (NodeId id : voters) add(id, bootstrap_state(voters), pre_vote, check_quorum);
  }

  Node& add(NodeId id, RestoreState st, bool pre_vote = true, bool check_quorum = true) {
    rngs_[id] = std::make_unique<SplitMix64>(id * 7919);
    Config c;
    c.id = id;
    c.election_ticks = 10;
    c.heartbeat_ticks = 1;
    c.max_msg_bytes = 1 << 20;
    c.max_inflight_msgs = 8;
    c.snapshot_chunk_bytes = 4;
    c.max_uncommitted_bytes = max_uncommitted_;
    c.pre_vote = pre_vote;
    c.check_quorum = check_quorum;
    c.boot_id = id * 1000 + ++boots_[id];
    c.rng = rngs_[id].get();
    c.logger = &logger_;
    auto node = Node::create(c, std::move(st));
    EXPECT_TRUE(node.ok()) << node.status().to_string();
    nodes_[id] = std::move(*node);
    return *nodes_[id];
  }

  Node& n(NodeId id) { return *nodes_.at(id); }
  // What member `id` has on its (instant) disk now: its log, hard state and repair state. A
  // later restart() from it models a member restarted on an older copy of its data.
  RestoreState disk_copy(NodeId id) {
    Node& node = n(id);
    RestoreState st;
    st.hard_state = node.hard_state();
    st.snapshot = {node.log().snapshot_index(), node.log().snapshot_term(),
                   *node.conf_state_at(node.log().snapshot_index())};
    for (std::uint64_t i = node.log().first_index(); i <= node.log().last_index(); ++i) {
      st.entries.push_back(node.log().at(i));
    }
    st.applied = node.applied();
    st.repair = node.repair();
    return st;
  }
  // Replaces member `id` by a new incarnation (a new boot id) restored from `st`.
  Node& restart(NodeId id, RestoreState st) {
    nodes_.erase(id);
    return add(id, std::move(st));
  }
  // Bytes of snapshot chunks member `id` received.
  std::uint64_t chunk_bytes(NodeId id) {
    std::uint64_t n = 0;
    for (const auto& c : chunks_[id]) n += c.data.size();
    return n;
  }

  // Runs every node's Ready loop with an instant disk; messages go to the queue.
  void process() {
    for (auto& [id, node] : nodes_) {
      if (down_.count(id)) continue;
      for (int i = 0; i < 100 && node->has_ready(); ++i) {
        Ready rd = node->ready();
        for (auto& m : rd.messages) fill_and_queue(id, std::move(m));
        for (auto& m : rd.messages_after_persist) fill_and_queue(id, std::move(m));
        for (const auto& c : rd.snapshot_chunks) chunks_[id].push_back(c);
        if (rd.snapshot) installed_[id].push_back(*rd.snapshot);
        if (rd.snapshot_wanted) ++wanted_[id];
        node->advance(rd);
        // A frozen (damaged) state machine applies nothing until a snapshot replaces it.
        if (rd.snapshot) frozen_.erase(id);
        if (frozen_.count(id)) continue;
        for (const Entry& e : rd.committed) applied_[id].push_back(e);
        if (!rd.committed.empty()) node->applied_to(rd.committed.back().index);
        if (rd.snapshot) node->applied_to(rd.snapshot->index);
      }
    }
  }

  // Delivers queued messages (and what they cause) until quiet; bounded.
  void settle(int max_rounds = 200) {
    for (int r = 0; r < max_rounds; ++r) {
      process();
      if (queue_.empty()) return;
      std::deque<Message> batch;
      batch.swap(queue_);
      for (Message& m : batch) deliver(m);
    }
  }

  // Runs the Ready loops, then delivers only the first queued message, which it returns.
  std::optional<Message> deliver_one() {
    process();
    if (queue_.empty()) return std::nullopt;
    Message m = std::move(queue_.front());
    queue_.pop_front();
    deliver(m);
    return m;
  }

  void deliver(const Message& m) {
    if (down_.count(m.to) || down_.count(m.from) || cut_.count({m.from, m.to})) return;
    if (drop_ && drop_(m)) return;
    if (!nodes_.count(m.to)) return;
    if (change_) {
      Message changed = m;
      change_(changed);
      EXPECT_TRUE(nodes_.at(m.to)->step(changed).ok());
      return;
    }
    EXPECT_TRUE(nodes_.at(m.to)->step(m).ok());
  }

  void tick_all(int ticks) {
    for (int t = 0; t < ticks; ++t) {
      for (auto& [id, node] : nodes_) {
        if (!down_.count(id)) node->tick();
      }
      settle();
    }
  }

  // Lets `id` campaign by ticking only it until it wins (others answer).
  void elect(NodeId id) {
    for (int t = 0; t < 100 && n(id).role() != Role::kLeader; ++t) {
      n(id).tick();
      settle();
    }
    ASSERT_EQ(n(id).role(), Role::kLeader);
    settle();
  }

  void isolate(NodeId id) {
    for (auto& [other, node] : nodes_) {
      if (other == id) continue;
      cut_.insert({id, other});
      cut_.insert({other, id});
    }
  }
  void heal() { cut_.clear(); }
  // Messages for which `drop` is true are lost (until set to nullptr).
  void drop_if(std::function<bool(const Message&)> drop) { drop_ = std::move(drop); }
  // Every delivered message passes through `change` first, as a receiving caller may change
  // it before stepping it (until set to nullptr).
  void change_before_step(std::function<void(Message&)> change) { change_ = std::move(change); }

  std::deque<Message>& queue() { return queue_; }
  std::vector<Entry>& applied(NodeId id) { return applied_[id]; }
  std::vector<SnapshotMeta>& installed(NodeId id) { return installed_[id]; }
  std::set<NodeId>& down() { return down_; }
  // Members whose caller applies no committed entry (and calls no applied_to) until a snapshot
  // is installed, as a caller whose state machine is damaged does.
  std::set<NodeId>& frozen() { return frozen_; }
  int snapshots_wanted(NodeId id) { return wanted_[id]; }

  // `lagging` is down while `leader` commits five entries; then `leader` has a snapshot (of
  // `data`) at its applied index and compacts its log to it, so `lagging` will need it.
  SnapshotMeta snapshot_past(NodeId leader, NodeId lagging, std::string data) {
    down_.insert(lagging);
    for (int i = 0; i < 5; ++i) EXPECT_TRUE(n(leader).propose("a" + std::to_string(i)).ok());
    settle();
    tick_all(1);
    const std::uint64_t index = n(leader).applied();
    const SnapshotMeta meta{index, *n(leader).log().term(index), *n(leader).conf_state_at(index)};
    give_snapshot(leader, meta, std::move(data));
    EXPECT_TRUE(n(leader).compact(index).ok());
    return meta;
  }

  // The snapshot a member "has": its data is a fixed string of `size` bytes.
  void give_snapshot(NodeId id, SnapshotMeta meta, std::string data) {
    snapshots_[id] = {meta, std::move(data)};
    n(id).snapshot_available(meta, snapshots_[id].second.size());
  }

 private:
  std::map<NodeId, int> wanted_;
  std::map<NodeId, std::uint64_t> boots_;

  void fill_and_queue(NodeId from, Message m) {
    if (m.type == MessageType::kSnapshot) {
      const auto& [meta, data] = snapshots_.at(from);
      EXPECT_EQ(m.snapshot, meta);
      m.chunk = data.substr(m.snapshot_offset, m.chunk_length);
    }
    queue_.push_back(std::move(m));
  }

  std::uint64_t max_uncommitted_;
  NullLogger logger_;
  std::map<NodeId, std::unique_ptr<SplitMix64>> rngs_;
  std::map<NodeId, std::unique_ptr<Node>> nodes_;
  std::deque<Message> queue_;
  std::set<NodeId> down_;
  std::set<NodeId> frozen_;
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::function<bool(const Message&)> drop_;
  std::function<void(Message&)> change_;
  std::map<NodeId, std::vector<Entry>> applied_;
  std::map<NodeId, std::vector<SnapshotChunk>> chunks_;
  std::map<NodeId, std::vector<SnapshotMeta>> installed_;
  std::map<NodeId, std::pair<SnapshotMeta, std::string>> snapshots_;
};

Config basic_config(NodeId id, Rng* rng, Logger* logger) {
  Config c;
  c.id = id;
  c.rng = rng;
  c.logger = logger;
  return c;
}

TEST(NodeTest, CreateRejectsBadConfigAndRestoreState) {
  SplitMix64 rng(1);
  NullLogger logger;
  RestoreState gap;
  gap.entries = {{1, 1, EntryType::kNormal, ""}, {3, 1, EntryType::kNormal, ""}};
  EXPECT_EQ(Node::create(basic_config(1, &rng, &logger), gap).status().code(), Code::kCorruption);
  RestoreState commit_past_end;
  commit_past_end.hard_state.commit = 5;
  EXPECT_EQ(Node::create(basic_config(1, &rng, &logger), commit_past_end).status().code(),
            Code::kCorruption);
  RestoreState bad_conf = bootstrap_state({1});
  bad_conf.entries[0].data = "junk";
  EXPECT_EQ(Node::create(basic_config(1, &rng, &logger), bad_conf).status().code(),
            Code::kCorruption);
  Config no_id = basic_config(0, &rng, &logger);
  EXPECT_EQ(Node::create(no_id, {}).status().code(), Code::kInvalidArgument);
  Config bad_ticks = basic_config(1, &rng, &logger);
  bad_ticks.heartbeat_ticks = 10;
  EXPECT_EQ(Node::create(bad_ticks, {}).status().code(), Code::kInvalidArgument);
}

TEST(NodeTest, BootstrapStateGivesEveryFounderTheSameVoters) {
  TestCluster c(3);
  for (NodeId id : {1, 2, 3}) {
    EXPECT_EQ(c.n(id).conf_state().voters, (std::vector<NodeId>{1, 2, 3}));
    EXPECT_EQ(c.n(id).commit(), 3u);
  }
}

TEST(NodeTest, FollowerRejectsMismatchedAppendWithAFastBackoffHint) {
  // §5.3: the consistency check; the hint skips a whole term.
  TestCluster c(1);
  Node& f = c.n(1);
  Message m;
  m.type = MessageType::kAppend;
  m.from = 2;
  m.to = 1;
  m.term = 5;
  m.index = 10;  // far past the follower's log (1 entry)
  m.log_term = 5;
  ASSERT_TRUE(f.step(m).ok());
  Ready rd = f.ready();
  ASSERT_EQ(rd.messages_after_persist.size(), 1u);
  const Message& r = rd.messages_after_persist[0];
  EXPECT_TRUE(r.reject);
  EXPECT_EQ(r.index, 10u);
  EXPECT_EQ(r.reject_hint, 1u);
  EXPECT_EQ(r.log_term, 1u);
}

TEST(NodeTest, UncommittedDataIsCapped) {
  TestCluster c(3, true, true, /*max_uncommitted=*/10);
  c.elect(1);
  c.isolate(1);  // nothing commits from now on
  ASSERT_TRUE(c.n(1).propose("12345678").ok());
  EXPECT_EQ(c.n(1).propose("12345678").status().code(), Code::kResourceExhausted);
}

TEST(NodeTest, CompactRefusesBeyondApplied) {
  TestCluster c(1);
  for (int i = 0; i < 30 && c.n(1).role() != Role::kLeader; ++i) {
    c.n(1).tick();
    c.process();
  }
  // The state machine holds what was applied, so the log may forget it without a snapshot
  // file; the caller makes one only when a follower needs it.
  EXPECT_TRUE(c.n(1).compact(1).ok());
  EXPECT_EQ(c.n(1).compact(99).code(), Code::kInvalidArgument);
}

TEST(NodeTest, SnapshotWhoseAcknowledgementWasLostDoesNotStallTheFollower) {
  // Found by the chaos tests (kvc-chaos seed 1, local-reads mutation, lossy links): a member
  // installed the leader's snapshot at S, but its acknowledgement was lost. The leader stayed
  // in snapshot state, resending the last chunk; the member, which has S, answered with an
  // append response at S, which the leader ignored once it had compacted past S: the member
  // was never sent anything again. A member that has the snapshot being sent is done with it.
  TestCluster c(3);
  c.elect(1);
  const std::uint64_t first = c.snapshot_past(1, 3, std::string(10, 'a')).index;
  // It comes back and is sent the snapshot; it installs it, but its acknowledgement is lost,
  // and so is everything it sends the leader from then on, for a while.
  c.drop_if([&c](const Message& m) {
    return m.from == 3 && m.to == 1 &&
           ((m.type == MessageType::kSnapshotResp && m.snapshot_done) || !c.installed(3).empty());
  });
  c.down().erase(3);
  c.tick_all(15);
  ASSERT_EQ(c.installed(3).size(), 1u);
  ASSERT_EQ(c.n(3).commit(), first);
  // The leader moves on and compacts past that snapshot; then the link heals.
  for (int i = 0; i < 5; ++i) ASSERT_TRUE(c.n(1).propose("b" + std::to_string(i)).ok());
  c.settle();
  c.tick_all(1);
  const std::uint64_t second = c.n(1).applied();
  ASSERT_GT(second, first);
  ASSERT_TRUE(c.n(1).compact(second).ok());
  const int wanted_before = c.snapshots_wanted(1);
  c.drop_if(nullptr);
  c.tick_all(30);
  EXPECT_GT(c.snapshots_wanted(1), wanted_before)
      << "the leader must ask for a snapshot at or beyond its compaction point";
  c.give_snapshot(1, {second, *c.n(1).log().term(second), *c.n(1).conf_state_at(second)},
                  std::string(10, 'b'));
  c.tick_all(15);
  ASSERT_EQ(c.installed(3).size(), 2u);
  EXPECT_EQ(c.installed(3)[1].index, second);
  EXPECT_EQ(c.n(3).commit(), c.n(1).commit());
}

TEST(NodeTest, AFollowerRefusesADamagedSnapshotAndTheLeaderMakesANewOne) {
  // The caller of a follower checks the whole file a snapshot's last chunk completes
  // (completes_snapshot) and steps that chunk with snapshot_damaged when the file fails its
  // checks: nothing is installed, the follower tells the leader, the leader drops that snapshot
  // and asks its caller for a new one, and the transfer starts again with it.
  TestCluster c(3);
  c.elect(1);
  // Three chunks of 4, 4 and 2 bytes.
  const SnapshotMeta meta = c.snapshot_past(1, 3, std::string(10, 'a'));
  const std::uint64_t index = meta.index;
  int completing = 0, not_completing = 0, damaged_left = 1, refusals = 0;
  c.change_before_step([&](Message& m) {
    if (m.type == MessageType::kSnapshotResp && m.snapshot_damaged && m.reject) ++refusals;
    if (m.type != MessageType::kSnapshot || m.to != 3) return;
    if (!c.n(3).completes_snapshot(m)) {
      ++not_completing;
      return;
    }
    EXPECT_EQ(m.snapshot_offset + m.chunk_length, m.snapshot_size);
    ++completing;
    if (damaged_left > 0) {
      --damaged_left;
      m.snapshot_damaged = true;
    }
  });
  const int wanted_before = c.snapshots_wanted(1);
  c.down().erase(3);
  c.tick_all(15);
  EXPECT_EQ(completing, 1);
  EXPECT_GE(not_completing, 2);  // the first two chunks
  EXPECT_EQ(refusals, 1);
  EXPECT_TRUE(c.installed(3).empty()) << "a damaged snapshot was installed";
  EXPECT_LT(c.n(3).commit(), index);
  EXPECT_GT(c.snapshots_wanted(1), wanted_before) << "the leader must ask for a new snapshot";

  c.give_snapshot(1, meta, std::string(10, 'a'));  // its caller's new file, at the same index
  c.tick_all(15);
  EXPECT_EQ(completing, 2);
  ASSERT_EQ(c.installed(3).size(), 1u);
  EXPECT_EQ(c.installed(3)[0], meta);
  EXPECT_EQ(c.n(3).commit(), c.n(1).commit());
  c.change_before_step(nullptr);
}

TEST(NodeTest, TruncatedConfChangeIsRolledBack) {
  // Changes take effect on append; a follower that drops the entry drops the change.
  TestCluster c(1);
  Node& f = c.n(1);
  Message m;
  m.type = MessageType::kAppend;
  m.from = 2;
  m.to = 1;
  m.term = 2;
  m.index = 1;
  m.log_term = 1;
  m.entries = {
      {2, 2, EntryType::kConfChange, encode_conf_change({ConfChangeType::kAddLearner, 9, ""})}};
  ASSERT_TRUE(f.step(m).ok());
  EXPECT_EQ(f.conf_state().learners, (std::vector<NodeId>{9}));
  m.term = 3;
  m.entries = {{2, 3, EntryType::kNormal, "other"}};
  ASSERT_TRUE(f.step(m).ok());
  EXPECT_TRUE(f.conf_state().learners.empty());
  Ready rd = f.ready();
  ASSERT_FALSE(rd.entries.empty());
  EXPECT_EQ(rd.entries.front().index, 2u);
  EXPECT_EQ(rd.entries.front().data, "other");
}

TEST(NodeTest, StepRejectsMalformedMessages) {
  TestCluster c(1);
  Message wrong_to;
  wrong_to.from = 2;
  wrong_to.to = 9;
  EXPECT_EQ(c.n(1).step(wrong_to).code(), Code::kInvalidArgument);
  Message bad_type;
  bad_type.from = 2;
  bad_type.to = 1;
  bad_type.type = static_cast<MessageType>(200);
  EXPECT_EQ(c.n(1).step(bad_type).code(), Code::kInvalidArgument);
  Message from_self;
  from_self.from = 1;
  from_self.to = 1;
  EXPECT_EQ(c.n(1).step(from_self).code(), Code::kInvalidArgument);
}

TEST(NodeTest, StepAndTickMayRunBetweenReadyAndAdvance) {
  TestCluster c(3);
  c.elect(1);
  Node& l = c.n(1);
  ASSERT_TRUE(l.propose("a").ok());
  Ready rd = l.ready();  // the fsync of "a" is in flight
  for (const Message& m : rd.messages) c.queue().push_back(m);
  ASSERT_TRUE(l.propose("b").ok());
  l.tick();
  EXPECT_FALSE(l.has_ready()) << "one Ready at a time";
  l.advance(rd);
  Ready rd2 = l.ready();
  ASSERT_EQ(rd2.entries.size(), 1u);
  EXPECT_EQ(rd2.entries[0].data, "b");
  for (const Message& m : rd2.messages) c.queue().push_back(m);
  l.advance(rd2);
  c.settle();
  c.tick_all(1);
  EXPECT_EQ(c.applied(2).back().data, "b");
}

// Thesis 10.2.1: the leader may write to its own disk in parallel with replicating to its
// followers. Entries proposed while the leader's write is in flight go out through
// take_messages() at once, and a majority of followers commits them without the leader's copy;
// the leader still applies only what it has made durable.
TEST(NodeTest, ALeaderSendsAppendsWhileItsOwnWriteIsInFlight) {
  TestCluster c(3);
  c.elect(1);
  Node& l = c.n(1);
  EXPECT_TRUE(l.take_messages().empty()) << "no Ready outstanding";
  ASSERT_TRUE(l.propose("a").ok());
  Ready rd = l.ready();  // the fsync of "a" is in flight
  ASSERT_EQ(rd.entries.size(), 1u);
  for (const Message& m : rd.messages) c.queue().push_back(m);
  ASSERT_TRUE(l.propose("b").ok());
  std::vector<Message> now = l.take_messages();
  std::set<NodeId> got_b;
  for (const Message& m : now) {
    ASSERT_EQ(m.type, MessageType::kAppend);
    for (const Entry& e : m.entries) {
      if (e.data == "b") got_b.insert(m.to);
    }
    c.queue().push_back(m);
  }
  EXPECT_EQ(got_b, (std::set<NodeId>{2, 3})) << "both followers get b before a is durable";
  EXPECT_TRUE(l.take_messages().empty()) << "nothing new to send";
  // The followers persist and acknowledge; the leader's write is still in flight.
  std::deque<Message> batch;
  batch.swap(c.queue());
  for (Message& m : batch) c.deliver(m);
  for (NodeId f : {2, 3}) {
    Node& n = c.n(f);
    Ready frd = n.ready();
    n.advance(frd);
    for (const Message& m : frd.messages_after_persist) ASSERT_TRUE(l.step(m).ok());
  }
  const std::uint64_t b_index = rd.entries[0].index + 1;
  EXPECT_EQ(l.commit(), b_index) << "two followers of three are a majority";
  EXPECT_LT(l.durable_index(), b_index);
  // A follower takes nothing.
  EXPECT_TRUE(c.n(2).take_messages().empty());
  l.advance(rd);
  Ready rd2 = l.ready();
  ASSERT_EQ(rd2.entries.size(), 1u);
  EXPECT_EQ(rd2.entries[0].data, "b");
  for (const Entry& e : rd2.committed) EXPECT_LE(e.index, rd.entries[0].index) << "not durable";
  l.advance(rd2);
  c.settle();
  c.tick_all(1);
  EXPECT_EQ(c.applied(1).back().data, "b");
  EXPECT_EQ(c.applied(3).back().data, "b");
}

}  // namespace
}  // namespace kvc::raft

namespace kvc::raft {
namespace {

TEST(NodeTest, ASnapshotRemadeAfterAFailedSendReplacesTheLostOne) {
  TestCluster c(3);
  c.elect(1);
  c.down().insert(3);
  for (int i = 0; i < 4; ++i) ASSERT_TRUE(c.n(1).propose("y" + std::to_string(i)).ok());
  c.settle();
  const std::uint64_t applied = c.n(1).applied();
  c.give_snapshot(1, {applied, c.n(1).term(), {{1, 2, 3}, {}}}, std::string(10, 's'));
  ASSERT_TRUE(c.n(1).compact(applied).ok());
  c.down().erase(3);
  // Run until the first chunk to member 3 is about to leave; the caller cannot read its file.
  bool failed_send = false;
  for (int i = 0; i < 2000 && !failed_send; ++i) {
    c.process();
    if (c.queue().empty()) {
      c.n(1).tick();
      continue;
    }
    const Message& m = c.queue().front();
    if (m.type == MessageType::kSnapshot && m.to == 3) {
      c.queue().pop_front();
      failed_send = true;
    } else {
      (void)c.deliver_one();
    }
  }
  ASSERT_TRUE(failed_send);
  c.n(1).report_snapshot(3, false);  // the caller lost the file
  // A remade snapshot at the same index replaces the old one and the transfer completes.
  c.give_snapshot(1, {applied, c.n(1).term(), {{1, 2, 3}, {}}}, std::string(12, 't'));
  c.tick_all(15);
  ASSERT_FALSE(c.installed(3).empty());
  EXPECT_EQ(c.installed(3).back().index, applied);
  EXPECT_EQ(c.chunk_bytes(3), 12u) << "only the remade file was sent";
}

TEST(NodeTest, AMemberInRepairVotesForNobodyAndDoesNotCampaign) {
  TestCluster c(3, /*pre_vote=*/false);
  RestoreState st = c.disk_copy(2);
  st.repair.log_to = 3;
  Node& n2 = c.restart(2, st);
  ASSERT_TRUE(n2.repair().active());
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 1;
  vote.to = 2;
  vote.term = n2.term() + 1;
  vote.index = n2.log().last_index();
  vote.log_term = n2.log().last_term();
  ASSERT_TRUE(n2.step(vote).ok());
  Ready rd = n2.ready();
  ASSERT_EQ(rd.messages_after_persist.size(), 1u);
  EXPECT_TRUE(rd.messages_after_persist[0].reject);
  EXPECT_TRUE(rd.messages_after_persist[0].repairing);
  n2.advance(rd);
  for (int i = 0; i < 50; ++i) n2.tick();
  EXPECT_NE(n2.role(), Role::kCandidate);
  EXPECT_NE(n2.role(), Role::kPreCandidate);
}

TEST(NodeTest, AMemberWithADamagedStateStillVotesButNeverCampaigns) {
  // Its log is intact: refusing votes too could leave a cluster with a damaged member and a
  // member down without the leader that would repair it.
  TestCluster c(3, /*pre_vote=*/false);
  Node& n2 = c.n(2);
  n2.mark_damaged(n2.applied());
  Message vote;
  vote.type = MessageType::kVote;
  vote.from = 1;
  vote.to = 2;
  vote.term = n2.term() + 1;
  vote.index = n2.log().last_index();
  vote.log_term = n2.log().last_term();
  ASSERT_TRUE(n2.step(vote).ok());
  Ready rd = n2.ready();
  ASSERT_EQ(rd.messages_after_persist.size(), 1u);
  EXPECT_FALSE(rd.messages_after_persist[0].reject);
  EXPECT_TRUE(rd.messages_after_persist[0].repairing);
  n2.advance(rd);
  for (int i = 0; i < 50; ++i) n2.tick();
  EXPECT_EQ(n2.role(), Role::kFollower);
}

TEST(NodeTest, EntriesHandedOutWhileDamagedAreHandedOutAgainAfterTheRepairSnapshot) {
  // Found by the simulator (kvc-sim --seed 4 --members 5 --faults repair): the caller was
  // handed committed entries, found the damage while applying them and applied none; the
  // repair snapshot was older than what had been handed out, and the entries between were
  // never handed out again (the member applied index 49 after 47).
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("a").ok());
  c.settle();
  c.tick_all(1);
  const std::uint64_t damaged_at = c.n(3).applied();
  ASSERT_EQ(damaged_at, c.n(1).applied());
  // The leader's snapshot is from before the next entries.
  c.give_snapshot(
      1, {damaged_at, c.n(1).log().term(damaged_at).value(), *c.n(1).conf_state_at(damaged_at)},
      "state!");
  // Member 3's caller is handed "b" and "c" but finds its state damaged applying "b".
  c.frozen().insert(3);
  ASSERT_TRUE(c.n(1).propose("b").ok());
  ASSERT_TRUE(c.n(1).propose("c").ok());
  c.settle();
  c.tick_all(1);
  ASSERT_EQ(c.n(3).commit(), c.n(1).log().last_index());
  ASSERT_EQ(c.n(3).applied(), damaged_at);
  c.n(3).mark_damaged(damaged_at);
  c.tick_all(3);
  ASSERT_EQ(c.installed(3).size(), 1u);
  EXPECT_EQ(c.installed(3)[0].index, damaged_at);
  EXPECT_FALSE(c.n(3).repair().active());
  // Everything after the snapshot is applied on top of it, in order, without a gap.
  ASSERT_GE(c.applied(3).size(), 2u);
  const std::vector<Entry>& applied = c.applied(3);
  std::vector<std::string> after;
  for (const Entry& e : applied) {
    if (e.index > damaged_at) after.push_back(e.data);
  }
  EXPECT_EQ(after, (std::vector<std::string>{"b", "c"}));
  EXPECT_EQ(c.n(3).applied(), c.n(1).log().last_index());
}

TEST(NodeTest, HeartbeatCommitsNothingARolledBackFollowerHasNotMatched) {
  // Found by the simulator (kvc-sim --seed 20 --members 5 --faults repair): a heartbeat sent
  // on the strength of what the earlier incarnation acknowledged (commit = min(match, commit))
  // reached a follower restarted on an older copy holding a different entry at that index, and
  // it committed and applied the wrong entry.
  TestCluster c(3);
  RestoreState old = c.disk_copy(3);  // the bootstrap entries 1..3 of term 1
  const std::uint64_t stale_index = old.entries.back().index + 1;
  old.entries.push_back({stale_index, 1, EntryType::kNormal, "stale"});  // never committed
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("a").ok());
  c.settle();
  c.tick_all(1);
  ASSERT_EQ(c.n(1).commit(), c.n(1).log().last_index());
  ASSERT_GT(c.n(1).log().term(stale_index).value(), 1u);
  const std::size_t applied_before = c.applied(3).size();
  c.restart(3, old);
  // The leader's next heartbeat, before it has heard from the new incarnation.
  c.n(1).tick();
  c.process();
  std::optional<Message> hb;
  for (auto it = c.queue().begin(); it != c.queue().end(); ++it) {
    if (it->type == MessageType::kHeartbeat && it->to == 3) {
      hb = *it;
      c.queue().erase(it);
      break;
    }
  }
  ASSERT_TRUE(hb.has_value());
  ASSERT_GE(hb->commit, stale_index);
  c.deliver(*hb);
  c.process();
  EXPECT_LT(c.n(3).commit(), stale_index) << "committed an entry it never matched";
  c.tick_all(3);
  // It was repaired and applied only the leader's entries.
  EXPECT_EQ(c.n(3).commit(), c.n(1).commit());
  for (std::size_t i = applied_before; i < c.applied(3).size(); ++i) {
    const Entry& e = c.applied(3)[i];
    EXPECT_EQ(c.n(1).log().term(e.index), e.term) << "index " << e.index;
    EXPECT_NE(e.data, "stale");
  }
}

TEST(NodeTest, AChunkArrivingWhileARepairSnapshotAwaitsInstallLeavesItsFileAlone) {
  // Found by the simulator (kvc-sim --seed 63 --members 3 --faults repair): the leader started
  // the transfer again, and its first chunk (offset 0: "start a new file") came out in the same
  // Ready as the install of the complete snapshot, so the file to install was discarded.
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("v").ok());
  c.settle();
  c.tick_all(1);
  const std::uint64_t at = c.n(1).applied();
  c.give_snapshot(1, {at, c.n(1).log().term(at).value(), *c.n(1).conf_state_at(at)},
                  "state!");  // two chunks of 4 bytes
  c.n(3).mark_damaged(c.n(3).applied());
  std::optional<Message> first, last;
  for (int i = 0; i < 500 && !last; ++i) {
    if (!c.deliver_one()) {
      for (NodeId id : {1, 2, 3}) c.n(id).tick();
      continue;
    }
    c.process();
    for (auto it = c.queue().begin(); it != c.queue().end(); ++it) {
      if (it->type != MessageType::kSnapshot || it->to != 3) continue;
      if (it->snapshot_offset == 0 && !first) first = *it;
      if (it->snapshot_done) {
        last = *it;
        c.queue().erase(it);
        break;
      }
    }
  }
  ASSERT_TRUE(first.has_value());
  ASSERT_TRUE(last.has_value());
  c.process();
  std::string file = first->chunk;  // written by an earlier Ready
  ASSERT_TRUE(c.n(3).step(*last).ok());
  ASSERT_TRUE(c.n(3).step(*first).ok());  // the transfer, started again, arrives meanwhile
  Ready rd = c.n(3).ready();
  ASSERT_TRUE(rd.snapshot.has_value());
  for (const SnapshotChunk& ch : rd.snapshot_chunks) {
    if (ch.offset == 0) file.clear();
    if (ch.offset == file.size()) file += ch.data;
  }
  EXPECT_EQ(file, "state!");
  c.n(3).advance(rd);
  c.tick_all(3);
  EXPECT_FALSE(c.n(3).repair().active());
}

TEST(NodeTest, AReadyNeverCarriesEntriesTheRepairSnapshotCovers) {
  // Found by the simulator (kvc-sim --seed 983 --members 5 --faults repair): an entry was
  // appended while the caller's disk was busy, then the repair snapshot at that very index
  // was installed keeping the log; the next Ready carried both the install and the entry, and
  // writing the entry after the snapshot broke the stored log (an entry at the snapshot index).
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("a").ok());
  c.settle();
  c.tick_all(1);
  c.n(3).mark_damaged(c.n(3).applied());
  c.process();
  // "b" reaches member 3, whose caller has not taken the Ready yet.
  Result<std::uint64_t> idx = c.n(1).propose("b");
  ASSERT_TRUE(idx.ok());
  c.process();
  std::optional<Message> append;
  for (auto it = c.queue().begin(); it != c.queue().end(); ++it) {
    if (it->type == MessageType::kAppend && it->to == 3 && !it->entries.empty()) {
      append = *it;
      c.queue().erase(it);
      break;
    }
  }
  ASSERT_TRUE(append.has_value());
  ASSERT_TRUE(c.n(3).step(*append).ok());
  ASSERT_EQ(c.n(3).log().last_index(), *idx);
  // Then the repair snapshot at that index, whole in one chunk.
  Message snap;
  snap.type = MessageType::kSnapshot;
  snap.from = 1;
  snap.to = 3;
  snap.term = c.n(1).term();
  snap.snapshot = {*idx, c.n(1).term(), *c.n(1).conf_state_at(*idx)};
  snap.snapshot_size = 6;
  snap.chunk_length = 6;
  snap.chunk = "state!";
  snap.snapshot_done = true;
  ASSERT_TRUE(c.n(3).step(snap).ok());
  Ready rd = c.n(3).ready();
  ASSERT_TRUE(rd.snapshot.has_value());
  EXPECT_EQ(rd.snapshot->index, *idx);
  for (const Entry& e : rd.entries) {
    EXPECT_GT(e.index, *idx) << "the Ready carries an entry the installed snapshot covers";
  }
  c.n(3).advance(rd);
  c.tick_all(3);
  EXPECT_FALSE(c.n(3).repair().active());
  EXPECT_EQ(c.n(3).commit(), c.n(1).commit());
}

TEST(NodeTest, ARestartedMemberInRepairNeverGoesBackBelowItsOwnSnapshot) {
  // Found by the simulator (kvc-sim --seed 5444 --faults repair): a crash kept the install of
  // the repair snapshot but lost the end of the repair; restarted, the member asked again for a
  // snapshot at or above its damage point and installed the leader's, older than its own: its
  // commit index went back (KVC_CHECK applying_ <= commit_).
  TestCluster c(3);
  c.elect(1);
  for (int i = 0; i < 6; ++i) ASSERT_TRUE(c.n(1).propose("v" + std::to_string(i)).ok());
  c.settle();
  c.tick_all(1);
  const std::uint64_t last = c.n(1).log().last_index();
  ASSERT_EQ(c.n(3).commit(), last);
  const std::uint64_t damaged_at = last - 4;
  const std::uint64_t leaders_snap = last - 2;  // at or above the damage point
  // Member 3's disk: the repair snapshot (at `last`) installed, the repair still recorded.
  RestoreState st;
  st.hard_state = c.n(3).hard_state();
  st.snapshot = {last, c.n(3).log().term(last).value(), *c.n(3).conf_state_at(last)};
  st.applied = last;
  st.repair.needs_snapshot = true;
  st.repair.snapshot_from = damaged_at;
  c.give_snapshot(
      1,
      {leaders_snap, c.n(1).log().term(leaders_snap).value(), *c.n(1).conf_state_at(leaders_snap)},
      "old!");
  c.restart(3, st);
  c.tick_all(3);
  EXPECT_GE(c.n(3).commit(), last) << "the commit index went back";
  for (const SnapshotMeta& m : c.installed(3)) EXPECT_GE(m.index, last);
  // The leader is asked for a snapshot at least as new as the member's own, and repairs it.
  EXPECT_GE(c.snapshots_wanted(1), 1);
  const std::uint64_t at = c.n(1).applied();
  c.give_snapshot(1, {at, c.n(1).log().term(at).value(), *c.n(1).conf_state_at(at)}, "new!");
  c.tick_all(3);
  EXPECT_FALSE(c.n(3).repair().active());
  ASSERT_TRUE(c.n(1).propose("after").ok());
  c.settle();
  c.tick_all(1);
  EXPECT_EQ(c.applied(3).back().data, "after");
}

TEST(NodeTest, DamagedLeaderWithNoActiveVoterYetHandsOverLater) {
  // Found by the simulator (kvc-sim --seed 21 --members 5 --faults repair): the damage was
  // found just after an election period began, when no follower counted as recently active;
  // the one hand-over attempt found nobody, and the damaged leader led, applying nothing,
  // until the end of the run.
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("x").ok());
  c.settle();
  c.tick_all(1);
  // Tick the leader alone (nothing delivered) to the start of an election period.
  const auto anyone_active = [&] {
    for (const PeerProgress& p : c.n(1).progress()) {
      if (p.id != 1 && p.recent_active) return true;
    }
    return false;
  };
  for (int i = 0; i < 20 && anyone_active(); ++i) {
    c.n(1).tick();
    c.process();
  }
  ASSERT_FALSE(anyone_active());
  ASSERT_EQ(c.n(1).role(), Role::kLeader);
  c.n(1).mark_damaged(c.n(1).applied());
  EXPECT_EQ(c.n(1).transfer_target(), kNoNode);  // nobody to hand over to yet
  c.tick_all(5);
  EXPECT_NE(c.n(1).role(), Role::kLeader);
  const NodeId leader = c.n(2).leader();
  EXPECT_TRUE(leader == 2 || leader == 3) << leader;
}

TEST(NodeTest, LateMessagesOfAnEarlierIncarnationAreDropped) {
  TestCluster c(3);
  c.elect(1);
  ASSERT_TRUE(c.n(1).propose("a").ok());
  c.settle();
  c.tick_all(1);
  RestoreState old = c.disk_copy(3);
  // An acknowledgement of the old incarnation, held back in the network.
  ASSERT_TRUE(c.n(1).propose("b").ok());
  c.process();
  std::optional<Message> held;
  for (int i = 0; i < 50 && !held; ++i) {
    std::optional<Message> m = c.deliver_one();
    if (!m) break;
    if (m->to == 3 && m->type == MessageType::kAppend) {
      c.process();
      for (auto it = c.queue().begin(); it != c.queue().end(); ++it) {
        if (it->from == 3 && it->type == MessageType::kAppendResp) {
          held = *it;
          c.queue().erase(it);
          break;
        }
      }
    }
  }
  ASSERT_TRUE(held.has_value());
  c.settle();
  c.restart(3, old);
  // One heartbeat: the leader meets the new incarnation through its response, and nothing else
  // is delivered, so the new incarnation acknowledged nothing yet.
  c.n(1).tick();
  bool met = false;
  for (int i = 0; i < 20 && !met; ++i) {
    std::optional<Message> m = c.deliver_one();
    if (!m) break;
    met = m->from == 3 && m->to == 1 && m->type == MessageType::kHeartbeatResp;
  }
  ASSERT_TRUE(met);
  ASSERT_TRUE(c.n(1).step(*held).ok());
  for (const PeerProgress& p : c.n(1).progress()) {
    if (p.id == 3) {
      EXPECT_LT(p.match, held->index);  // the stale acknowledgement was ignored
    }
  }
}

TEST(MutationTest, ProductionCoreHasNoMutationSwitch) {
  // kvc_raft is built without KVC_MUTATIONS: the broken paths are compiled out.
  static_assert(!kMutationsCompiled);
  for (Mutation m : kAllMutations) EXPECT_FALSE(mutation_enabled(m));
}

TEST(NodeTest, AQuietClusterHasNoReady) {
  TestCluster c(3);
  c.elect(1);
  c.tick_all(3);
  c.settle();
  for (NodeId id : {1, 2, 3}) EXPECT_FALSE(c.n(id).has_ready()) << id;
}

}  // namespace
}  // namespace kvc::raft
