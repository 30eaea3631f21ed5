// A tiny in-memory cluster of raft::Node values for unit and scenario tests: instant disks, a
// message queue the test controls, partitions as cut links, snapshots as strings. Test code.
#pragma once

#include <gtest/gtest.h>

#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "kvc/raft/node.h"

namespace kvc::raft {

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
    c.rng = rngs_[id].get();
    c.logger = &logger_;
    auto node = Node::create(c, std::move(st));
    EXPECT_TRUE(node.ok()) << node.status().to_string();
    nodes_[id] = std::move(*node);
    return *nodes_[id];
  }

  Node& n(NodeId id) { return *nodes_.at(id); }
  bool has(NodeId id) const { return nodes_.count(id) > 0; }

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
        for (auto& rs : rd.read_states) reads_[id].push_back(rs);
        node->advance(rd);
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
    if (!nodes_.count(m.to)) return;
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

  std::deque<Message>& queue() { return queue_; }
  std::vector<Entry>& applied(NodeId id) { return applied_[id]; }
  std::vector<ReadState>& reads(NodeId id) { return reads_[id]; }
  std::vector<SnapshotMeta>& installed(NodeId id) { return installed_[id]; }
  std::set<NodeId>& down() { return down_; }

  // The snapshot a member "has": its data is a fixed string of `size` bytes.
  void give_snapshot(NodeId id, SnapshotMeta meta, std::string data) {
    snapshots_[id] = {meta, std::move(data)};
    n(id).snapshot_available(meta, snapshots_[id].second.size());
  }

 private:
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
  std::set<std::pair<NodeId, NodeId>> cut_;
  std::map<NodeId, std::vector<Entry>> applied_;
  std::map<NodeId, std::vector<ReadState>> reads_;
  std::map<NodeId, std::vector<SnapshotChunk>> chunks_;
  std::map<NodeId, std::vector<SnapshotMeta>> installed_;
  std::map<NodeId, std::pair<SnapshotMeta, std::string>> snapshots_;
};

}  // namespace kvc::raft
