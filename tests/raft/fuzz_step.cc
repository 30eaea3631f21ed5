// Fuzz target: arbitrary messages (built from the input bytes) stepped into a member of a
// 3-voter cluster, as follower or as leader, with ticks and proposals mixed in and the Ready
// loop run after each. Nothing from the network may crash the core or break its invariants.
#include <cstddef>
#include <cstdint>

#include "kvc/raft/node.h"

namespace {

class Bytes {
 public:
  Bytes(const std::uint8_t* d, std::size_t n) : d_(d), n_(n) {}
  bool empty() const { return i_ >= n_; }
  std::uint8_t byte() { return i_ < n_ ? d_[i_++] : 0; }
  std::uint64_t small(std::uint64_t mod) { return byte() % mod; }

 private:
  const std::uint8_t* d_;
  std::size_t n_;
  std::size_t i_ = 0;
};

void drain(kvc::raft::Node& n) {
  for (int i = 0; i < 16 && n.has_ready(); ++i) {
    kvc::raft::Ready rd = n.ready();
    n.advance(rd);
    if (!rd.committed.empty()) n.applied_to(rd.committed.back().index);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::raft;
  Bytes in(data, size);
  SplitMix64 rng(in.byte());
  NullLogger logger;
  Config c;
  c.id = 1;
  c.rng = &rng;
  c.logger = &logger;
  c.snapshot_chunk_bytes = 3;
  auto created = Node::create(c, bootstrap_state({1, 2, 3}));
  if (!created.ok()) return 0;
  Node& n = **created;
  if (in.byte() & 1) {
    // Become leader of term 2 first, so leader paths are reachable.
    for (int i = 0; i < 40 && n.role() == Role::kFollower; ++i) n.tick();
    drain(n);
    for (MessageType t : {MessageType::kPreVoteResp, MessageType::kVoteResp}) {
      Message g;
      g.type = t;
      g.from = 2;
      g.to = 1;
      g.term = n.term() + (t == MessageType::kPreVoteResp ? 1 : 0);
      (void)n.step(g);
      drain(n);
    }
  }
  for (int steps = 0; steps < 64 && !in.empty(); ++steps) {
    const std::uint8_t op = in.byte();
    if (op % 8 == 0) {
      n.tick();
    } else if (op % 8 == 1) {
      (void)n.propose(std::string(in.small(4), 'p'));
    } else if (op % 8 == 2) {
      (void)n.read_index("r");
    } else {
      Message m;
      m.type = static_cast<MessageType>(in.small(kMessageTypeCount + 1));
      m.from = 1 + in.small(4);
      m.to = in.small(8) == 0 ? 5 : 1;
      m.term = in.small(6);
      m.index = in.small(12);
      m.log_term = in.small(6);
      m.commit = in.small(12);
      m.reject = in.byte() & 1;
      m.reject_hint = in.small(12);
      const int ents = static_cast<int>(in.small(4));
      for (int i = 0; i < ents; ++i) {
        Entry e;
        e.index = in.small(3) == 0 ? in.small(14) : m.index + 1 + i;
        e.term = in.small(6);
        e.type = static_cast<EntryType>(in.small(3));
        e.data = std::string(in.small(3), 'e');
        m.entries.push_back(e);
      }
      if (in.byte() & 1) m.context = std::string(kTransferContext);
      m.snapshot.index = in.small(14);
      m.snapshot.term = in.small(6);
      m.snapshot.conf.voters = {1, 2, 3};
      if (in.byte() & 1) m.snapshot.conf.voters = {3, 1};
      m.snapshot_size = in.small(10);
      m.snapshot_offset = in.small(10);
      m.chunk_length = in.small(4);
      m.chunk = std::string(in.small(4), 'c');
      m.snapshot_done = in.byte() & 1;
      (void)n.step(m);
    }
    drain(n);
    n.check_invariants();
  }
  return 0;
}
