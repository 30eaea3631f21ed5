// Raft core throughput: entries committed per second through a 3-member cluster of
// raft::Node values in one process (instant disks, a perfect in-memory network), so only the
// core's own cost is measured. The baseline, measured in the same run, is a single-voter
// cluster (no replication); the ratio is what later changes should watch. Reported, not
// asserted.
//
//   kvc_raft_bench [entries=200000] [payload_bytes=100] [burst=64]
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "kvc/raft/node.h"

namespace {

using kvc::raft::Message;
using kvc::raft::NodeId;

struct Result {
  double seconds = 0;
  std::uint64_t committed = 0;
  std::uint64_t messages = 0;
};

Result run(int members, std::uint64_t entries, std::size_t payload, int burst) {
  kvc::raft::NullLogger logger;
  std::map<NodeId, std::unique_ptr<kvc::raft::SplitMix64>> rngs;
  std::map<NodeId, std::unique_ptr<kvc::raft::Node>> nodes;
  std::vector<NodeId> voters;
  for (int i = 1; i <= members; ++i) voters.push_back(static_cast<NodeId>(i));
  for (NodeId id : voters) {
    rngs[id] = std::make_unique<kvc::raft::SplitMix64>(id);
    kvc::raft::Config c;
    c.id = id;
    c.rng = rngs[id].get();
    c.logger = &logger;
    c.max_inflight_msgs = 64;
    c.max_msg_bytes = 256 << 10;
    auto n = kvc::raft::Node::create(c, kvc::raft::bootstrap_state(voters));
    if (!n.ok()) {
      std::fprintf(stderr, "create: %s\n", n.status().to_string().c_str());
      std::exit(1);
    }
    nodes[id] = std::move(*n);
  }
  std::deque<Message> net;
  Result r;
  auto pump = [&] {
    for (int round = 0; round < 1000; ++round) {
      for (auto& [id, n] : nodes) {
        while (n->has_ready()) {
          kvc::raft::Ready rd = n->ready();
          for (auto& m : rd.messages) net.push_back(std::move(m));
          for (auto& m : rd.messages_after_persist) net.push_back(std::move(m));
          n->advance(rd);
          if (!rd.committed.empty()) n->applied_to(rd.committed.back().index);
        }
      }
      if (net.empty()) return;
      while (!net.empty()) {
        Message m = std::move(net.front());
        net.pop_front();
        ++r.messages;
        (void)nodes.at(m.to)->step(m);
      }
    }
  };
  kvc::raft::Node& leader = *nodes.at(1);
  for (int t = 0; t < 100 && leader.role() != kvc::raft::Role::kLeader; ++t) {
    leader.tick();
    pump();
  }
  if (leader.role() != kvc::raft::Role::kLeader) {
    std::fprintf(stderr, "no leader\n");
    std::exit(1);
  }
  const std::uint64_t start_commit = leader.commit();
  const std::string data(payload, 'x');
  const auto t0 = std::chrono::steady_clock::now();
  std::uint64_t proposed = 0;
  while (leader.commit() - start_commit < entries) {
    for (int i = 0; i < burst && proposed < entries; ++i, ++proposed) {
      if (!leader.propose(data).ok()) break;
    }
    pump();
    leader.tick();  // heartbeats carry commit to followers
    pump();
  }
  r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  r.committed = leader.commit() - start_commit;
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  const std::uint64_t entries = argc > 1 ? std::strtoull(argv[1], nullptr, 10) : 200000;
  const std::size_t payload = argc > 2 ? std::strtoull(argv[2], nullptr, 10) : 100;
  const int burst = argc > 3 ? std::atoi(argv[3]) : 64;
  if (entries == 0 || burst <= 0) {
    std::fprintf(stderr, "usage: kvc_raft_bench [entries>0] [payload_bytes] [burst>0]\n");
    return 2;
  }
  const Result base = run(1, entries, payload, burst);
  const Result three = run(3, entries, payload, burst);
  const double base_rate = base.committed / base.seconds;
  const double rate = three.committed / three.seconds;
  std::printf("raft core, %llu entries of %zu bytes, bursts of %d, no I/O\n",
              (unsigned long long)entries, payload, burst);
  std::printf("  1 member (baseline): %12.0f entries/s\n", base_rate);
  std::printf("  3 members:           %12.0f entries/s  (%.2fx baseline, %.1f messages/entry)\n",
              rate, rate / base_rate, static_cast<double>(three.messages) / three.committed);
  return 0;
}
