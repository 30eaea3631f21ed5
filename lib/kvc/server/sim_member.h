// One kvc member as the deterministic simulator runs it: the real Engine code (the same
// Engine::Impl kvc-node runs: start-up and WAL replay, the Ready loop, apply, reads, flushes,
// snapshots, integrity) started in a SimEnvironment (environment.h) instead of on a libuv loop
// with threads and TCP. The simulator calls what the loop's timers and handles would: tick(),
// flush_timer(), check() after every event, deliver() for a peer message, submit() for a
// client request. Destroying a SimMember is a crash: nothing is flushed or synced, and the
// jobs it left in the simulator's executors must be dropped first.
//
// Test tooling, compiled only into the mutable server library (kvc_server_mutable); one thread.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>

#include "kvc/common/status.h"
#include "kvc/raft/node.h"
#include "kvc/server/engine.h"
#include "kvc/server/environment.h"
#include "kvc/wire/messages.h"

namespace kvc::server {

class SimMember {
 public:
  // Opens the member's data directory (creating the member when it is empty) and restores it,
  // as Engine::open does, without listeners or threads. `env` must outlive the member.
  static Result<std::unique_ptr<SimMember>> open(EngineOptions options, const SimEnvironment& env);
  ~SimMember();
  SimMember(const SimMember&) = delete;
  SimMember& operator=(const SimMember&) = delete;

  std::uint64_t id() const;
  void tick();         // the tick timer (every tick_ms)
  void flush_timer();  // the flush timer (every flush_interval_ms / 2)
  void scrub_timer();  // the scrub timer (every 100 ms), when scrubbing
  void check();        // the loop's check phase, after every event: runs the Ready loop
  void deliver(const raft::Message& m);
  void unreachable(std::uint64_t peer);
  // A client request on the loop; `reply` is called on the loop, now or later.
  void submit(wire::Request req, std::function<void(wire::Response)> reply);
  // A peer refused this member as removed from the cluster (PeerTransport's removed hello).
  void told_removed(const std::string& by);
  // Which id the cluster assigned to a member added under `name` (a joining member's question).
  Result<std::uint64_t> lookup_joining(const std::string& name) const;
  std::uint64_t cluster_id() const;
  // A clean stop (SIGTERM): answers what waits, flushes and syncs once work in flight lands.
  void stop();

  bool stopped() const;  // stop() finished, or a fatal error stopped the member
  Status failure() const;
  bool ready() const;
  bool damaged() const;
  bool removed() const;  // it learned that it was removed from the cluster
  // The Raft core and the applied index, for the simulator's checks (read only).
  const raft::Node& node() const;
  std::uint64_t applied() const;
  std::uint64_t durable_applied() const;  // what the state has flushed

 private:
  explicit SimMember(std::unique_ptr<Engine::Impl> impl);
  std::unique_ptr<Engine::Impl> impl_;
};

}  // namespace kvc::server
