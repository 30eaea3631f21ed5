// The bootstrap rules (lib/kvc/server/bootstrap.h): identities of founders, a new cluster's
// first log, --force-new-cluster, and the restore state the core starts from.
#include "kvc/server/bootstrap.h"

#include <gtest/gtest.h>

#include "kvc/raft/conf_change.h"

namespace kvc::server {
namespace {

storage::Membership founders(const std::string& spec) {
  Result<storage::Membership> m = storage::parse_initial_cluster("tok", spec);
  EXPECT_TRUE(m.ok()) << m.status().to_string();
  return m.ok() ? *m : storage::Membership{};
}

raft::ConfChange change_of(const raft::Entry& e) {
  EXPECT_EQ(e.type, raft::EntryType::kConfChange);
  Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
  EXPECT_TRUE(cc.ok());
  return cc.ok() ? *cc : raft::ConfChange{};
}

raft::Entry normal(std::uint64_t index, std::uint64_t term) {
  return {index, term, raft::EntryType::kNormal, "x" + std::to_string(index)};
}

TEST(BootstrapTest, EveryFounderDerivesTheSameClusterWhateverTheOrderItWasGiven) {
  const storage::Membership a = founders("a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3");
  const storage::Membership b = founders("c=127.0.0.1:3,a=127.0.0.1:1,b=127.0.0.1:2");
  Result<storage::Identity> ia = founder_identity("a", "tok", a);
  Result<storage::Identity> ib = founder_identity("b", "tok", b);
  ASSERT_TRUE(ia.ok() && ib.ok());
  EXPECT_EQ(ia->cluster_id, ib->cluster_id);
  EXPECT_EQ(ia->initial_cluster, ib->initial_cluster);
  EXPECT_NE(ia->member_id, ib->member_id);
  EXPECT_EQ(ia->member_id, a.find_name("a")->id);
  // Another token is another cluster.
  Result<storage::Identity> other = founder_identity("a", "tok2", a);
  ASSERT_TRUE(other.ok());
  EXPECT_NE(other->cluster_id, ia->cluster_id);
}

TEST(BootstrapTest, AFounderMustBeNamedInTheInitialCluster) {
  Result<storage::Identity> id =
      founder_identity("d", "tok", founders("a=127.0.0.1:1,b=127.0.0.1:2"));
  ASSERT_FALSE(id.ok());
  EXPECT_EQ(id.status().code(), Code::kInvalidArgument);
  EXPECT_NE(id.status().message().find("does not name this member ('d')"), std::string::npos);
}

TEST(BootstrapTest, ANewClusterLogIsOneCommittedAddVoterPerFounderInIdOrder) {
  const storage::Membership m = founders("c=127.0.0.1:3,a=127.0.0.1:1,b=127.0.0.1:2");
  std::optional<InitialLog> log = initial_log(m, {}, 0);
  ASSERT_TRUE(log.has_value());
  ASSERT_EQ(log->entries.size(), 3u);
  EXPECT_EQ(log->hard_state, (raft::HardState{1, raft::kNoNode, 3}));
  std::uint64_t prev_id = 0;
  for (std::size_t i = 0; i < 3; ++i) {
    const raft::Entry& e = log->entries[i];
    EXPECT_EQ(e.index, i + 1);
    EXPECT_EQ(e.term, 1u);
    const raft::ConfChange cc = change_of(e);
    EXPECT_EQ(cc.type, raft::ConfChangeType::kAddVoter);
    EXPECT_GT(cc.node, prev_id);  // id order
    prev_id = cc.node;
    Result<storage::Membership> one = storage::decode_membership(cc.context);
    ASSERT_TRUE(one.ok());
    ASSERT_EQ(one->members.size(), 1u);
    EXPECT_EQ(one->members[0].id, cc.node);
  }
  // Every founder writes the same bytes, whatever order its flag listed the members in.
  std::optional<InitialLog> again =
      initial_log(founders("a=127.0.0.1:1,b=127.0.0.1:2,c=127.0.0.1:3"), {}, 0);
  ASSERT_TRUE(again.has_value());
  EXPECT_EQ(again->entries, log->entries);
}

TEST(BootstrapTest, NoInitialLogForAMemberThatHasALogAStateOrJoined) {
  const storage::Membership m = founders("a=127.0.0.1:1");
  storage::RecoveredLog with_entries;
  with_entries.entries.push_back(normal(1, 1));
  storage::RecoveredLog with_hard_state;
  with_hard_state.hard_state = raft::HardState{2, 0, 0};
  storage::RecoveredLog with_snapshot;
  with_snapshot.snapshot = raft::SnapshotMeta{5, 1, {}};
  EXPECT_FALSE(initial_log(m, with_entries, 0));
  EXPECT_FALSE(initial_log(m, with_hard_state, 0));
  EXPECT_FALSE(initial_log(m, with_snapshot, 0));
  EXPECT_FALSE(initial_log(m, {}, 7));                      // a state restored by kvc-snap
  EXPECT_FALSE(initial_log(storage::Membership{}, {}, 0));  // joined: the leader brings it
}

TEST(BootstrapTest, ForcedClusterKeepsEveryLoggedEntryCommittedAndLeavesOnlyThisVoter) {
  StateFacts state{5, 2, {{1, 2, 3}, {4}}};
  storage::RecoveredLog log;
  log.hard_state = raft::HardState{3, 2, 6};  // commit 6 known here; 7, 8 maybe committed
  for (std::uint64_t i = 4; i <= 8; ++i) log.entries.push_back(normal(i, i <= 5 ? 2 : 3));
  const ForcedCluster f = force_new_cluster(state, log, 1, "a", "127.0.0.1:1");
  // Removes 2, 3 (voters) and 4 (learner), after the log's last entry, in the log's term.
  ASSERT_EQ(f.entries.size(), 3u);
  EXPECT_EQ(f.removed, 3u);
  EXPECT_EQ(f.last, 11u);
  EXPECT_EQ(f.hard_state.commit, 11u);  // every kept entry (7, 8) counts as committed
  EXPECT_EQ(f.hard_state.term, 3u);
  EXPECT_EQ(f.hard_state.vote, 2u);
  raft::ConfState conf = state.conf;
  for (std::size_t i = 0; i < f.entries.size(); ++i) {
    EXPECT_EQ(f.entries[i].index, 9 + i);
    EXPECT_EQ(f.entries[i].term, 3u);
    const raft::ConfChange cc = change_of(f.entries[i]);
    EXPECT_EQ(cc.type, raft::ConfChangeType::kRemove);
    Result<raft::ConfState> next = raft::apply_conf_change(conf, cc);
    ASSERT_TRUE(next.ok());
    conf = *next;
  }
  EXPECT_EQ(conf, (raft::ConfState{{1}, {}}));
}

TEST(BootstrapTest, ForcedClusterPromotesOrAddsThisMemberFirst) {
  // A learner is promoted before the others are removed.
  const ForcedCluster learner = force_new_cluster({3, 1, {{2}, {1}}}, {}, 1, "a", "p:1");
  ASSERT_EQ(learner.entries.size(), 2u);
  EXPECT_EQ(change_of(learner.entries[0]).type, raft::ConfChangeType::kPromoteLearner);
  EXPECT_EQ(change_of(learner.entries[1]).type, raft::ConfChangeType::kRemove);
  EXPECT_EQ(learner.entries[0].index, 4u);
  // A member the configuration does not know (its state predates its addition) adds itself,
  // with its name and peer address, so the membership names it.
  const ForcedCluster absent = force_new_cluster({3, 1, {{2, 3}, {}}}, {}, 1, "a", "p:1");
  ASSERT_EQ(absent.entries.size(), 3u);
  const raft::ConfChange add = change_of(absent.entries[0]);
  EXPECT_EQ(add.type, raft::ConfChangeType::kAddVoter);
  Result<storage::Membership> one = storage::decode_membership(add.context);
  ASSERT_TRUE(one.ok());
  ASSERT_EQ(one->members.size(), 1u);
  EXPECT_EQ(one->members[0].name, "a");
  EXPECT_EQ(one->members[0].peer_addr, "p:1");
  // The only voter already: nothing to write but the commit of what the log holds.
  storage::RecoveredLog log;
  log.entries = {normal(4, 1)};
  const ForcedCluster alone = force_new_cluster({3, 1, {{1}, {}}}, log, 1, "a", "p:1");
  EXPECT_TRUE(alone.entries.empty());
  EXPECT_EQ(alone.hard_state.commit, 4u);
}

TEST(BootstrapTest, ForcedClusterFollowsMembershipChangesInTheLog) {
  // The log adds member 5 after the state's index: it is removed too.
  storage::RecoveredLog log;
  log.entries.push_back({4, 1, raft::EntryType::kConfChange,
                         raft::encode_conf_change({raft::ConfChangeType::kAddVoter, 5, ""})});
  const ForcedCluster f = force_new_cluster({3, 1, {{1, 2}, {}}}, log, 1, "a", "p:1");
  std::vector<raft::NodeId> removed;
  for (const raft::Entry& e : f.entries) removed.push_back(change_of(e).node);
  EXPECT_EQ(removed, (std::vector<raft::NodeId>{2, 5}));
}

TEST(BootstrapTest, RestoreContinuesAfterTheStateAndClampsTheCommitIndex) {
  storage::RecoveredLog log;
  log.hard_state = raft::HardState{4, 2, 99};  // a commit beyond the log (never kept)
  for (std::uint64_t i = 3; i <= 9; ++i) log.entries.push_back(normal(i, 4));
  const RestorePlan plan = restore_plan({5, 3, {{1, 2, 3}, {}}}, log, 9);
  EXPECT_FALSE(plan.needs_snapshot_marker);
  EXPECT_EQ(plan.dropped_from, 0u);
  EXPECT_EQ(plan.last, 9u);
  const raft::RestoreState& rs = plan.restore;
  EXPECT_EQ(rs.snapshot.index, 5u);
  EXPECT_EQ(rs.snapshot.term, 3u);
  EXPECT_EQ(rs.snapshot.conf, (raft::ConfState{{1, 2, 3}, {}}));
  ASSERT_EQ(rs.entries.size(), 4u);  // 6..9: what the state holds is not replayed
  EXPECT_EQ(rs.entries.front().index, 6u);
  EXPECT_EQ(rs.hard_state.commit, 9u);
  EXPECT_EQ(rs.hard_state.term, 4u);
  EXPECT_EQ(rs.applied, 5u);
  // A commit index below the state's is raised to it.
  log.hard_state->commit = 1;
  EXPECT_EQ(restore_plan({5, 3, {}}, log, 9).restore.hard_state.commit, 5u);
}

TEST(BootstrapTest, RestoreDropsEntriesOfATermOlderThanTheState) {
  storage::RecoveredLog log;
  log.hard_state = raft::HardState{2, 0, 8};
  for (std::uint64_t i = 6; i <= 8; ++i) log.entries.push_back(normal(i, i == 6 ? 5 : 2));
  const RestorePlan plan = restore_plan({5, 5, {}}, log, 8);
  EXPECT_EQ(plan.dropped_from, 7u);
  EXPECT_EQ(plan.dropped_term, 2u);
  ASSERT_EQ(plan.restore.entries.size(), 1u);
  EXPECT_EQ(plan.last, 6u);
  EXPECT_EQ(plan.restore.hard_state.commit, 6u);
  EXPECT_EQ(plan.restore.hard_state.term, 5u);  // never below the state's term
}

TEST(BootstrapTest, AStateAheadOfTheLogNeedsASnapshotMarker) {
  // kvc-snap restore: the state holds index 50, the WAL is empty.
  const RestorePlan plan = restore_plan({50, 7, {{1}, {}}}, {}, 0);
  EXPECT_TRUE(plan.needs_snapshot_marker);
  EXPECT_EQ(plan.last, 50u);
  EXPECT_EQ(plan.restore.hard_state.commit, 50u);
  EXPECT_EQ(plan.restore.hard_state.term, 7u);
  EXPECT_TRUE(plan.restore.entries.empty());
}

}  // namespace
}  // namespace kvc::server
