// What a member needs from the world besides its data directory: a place to run work (its loop
// and its disk, flush, scrub and scan threads), the peer network, time and randomness. kvc-node
// runs the real ones: a libuv loop, worker threads, TCP peer links (peer_transport.h), uv_now and
// getrandom. The deterministic simulator (lib/kvc/sim/server_sim.h) runs the same Engine code on
// simulated ones: every executor is a queue its seeded scheduler runs on one thread, the
// network delivers, drops, delays and partitions, and the clock is the scheduler's.
//
// Rules the Engine keeps so that both work: the loop's state is touched only by jobs run on the
// loop executor; a job posted to an executor runs after every job posted to it before (FIFO
// per executor), but in no fixed order relative to other executors' jobs; nothing waits for a
// job by blocking except at shutdown in the real environment.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>

#include "kvc/common/status.h"
#include "kvc/raft/message.h"

namespace kvc::server {

// A member as another introduces itself (its hello on the peer port).
struct PeerInfo {
  std::uint64_t id = 0;
  std::string name;
  std::string peer_addr;
  std::string client_addr;
};

// What a member being added learns from the cluster before it starts (join_cluster).
struct JoinAnswer {
  std::uint64_t member_id = 0;  // assigned to the joining member
  std::uint64_t cluster_id = 0;
  PeerInfo answered_by;  // the member that answered
};

// Runs posted jobs one at a time, in the order they were posted.
class Executor {
 public:
  virtual ~Executor() = default;
  virtual void post(std::function<void()> job) = 0;
};

// The peer network as the Ready loop uses it (PeerTransport is the real one).
class Transport {
 public:
  virtual ~Transport() = default;
  // The members to keep links to (this member excluded): id -> peer address.
  virtual void set_peers(const std::map<std::uint64_t, std::string>& peers) = 0;
  // Member `id` was removed from the cluster: its links close and its hellos are refused.
  virtual void mark_removed(std::uint64_t id) = 0;
  // Sends a message (m.to names the peer). Never blocks; may drop.
  virtual void send(const raft::Message& m) = 0;
  virtual std::size_t connected_peers() const = 0;
  // Closes every link.
  virtual void close() = 0;
};

// A simulated environment (kvc-sim): the Engine takes its executors, transport, clock and
// randomness instead of starting threads and listeners. Peer messages arrive through
// SimMember::deliver (sim_member.h). Not owned by the Engine; it must outlive it.
struct SimEnvironment {
  Executor* loop = nullptr;
  Executor* disk = nullptr;
  Executor* flush = nullptr;
  Executor* scrub = nullptr;
  Executor* scan = nullptr;  // whole-state scans (barrier hashes, snapshots); null: flush
  Transport* transport = nullptr;
  std::function<std::uint64_t()> now_ms;  // monotonic milliseconds
  std::function<std::uint64_t()> random;  // seeded: ids, boot ids, the core's randomness
  // A member added to a running cluster asks it for its id (join_cluster in kvc-node).
  std::function<Result<JoinAnswer>(const std::string& name)> join;
};

}  // namespace kvc::server
