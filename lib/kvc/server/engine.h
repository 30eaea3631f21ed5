// kvc::server::Engine, one member of a kvc cluster: the Raft core driven with the WAL, the
// LMDB state machine, peer links and the client protocol, on threads the Engine owns (one
// libuv loop for the network and the Raft core, a disk thread for the WAL, a flush thread for
// the state). kvc-node is a thin wrapper around it; an application (such as a cluster
// controller) can open one inside its own process and use the methods below directly.
//
// Semantics: set/del/cas return once the change is committed by a majority and applied by
// this member; reads are linearizable unless ReadOptions::serializable. On a follower, writes
// and linearizable reads are carried out through the cluster (writes are forwarded to the
// leader). Errors are Status values: kNotLeader/kUnavailable (nothing applied), kTimeout
// (outcome unknown), kShuttingDown, kInvalidArgument, kCompareFailed, kNotFound.
//
// Thread-safety: every public method may be called from any thread except from inside a
// callback the Engine runs (those run on its loop thread and must not block).
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/server/options.h"

namespace kvc::server {

struct KeyValue {
  std::string key;
  std::string value;
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
};

struct LeaderInfo {
  std::uint64_t id = 0;  // 0: no leader known
  std::string name;
  std::string client_addr;
  std::uint64_t term = 0;
};

struct ReadOptions {
  bool serializable = false;  // read this member's state without a quorum round
};

struct WatchEvent {
  enum class Type { kPut, kDelete } type = Type::kPut;
  KeyValue kv;  // delete: key and mod_revision (the delete's revision)
};

class Engine {
 public:
  // Opens the data directory (creating or checking its identity), recovers the WAL and state,
  // binds the listeners and starts the threads. Returns once the member runs; it may not know
  // a leader yet (see is_ready).
  static Result<std::unique_ptr<Engine>> open(EngineOptions options);
  // Same as close().
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  std::uint64_t id() const;
  std::uint64_t cluster_id() const;
  LeaderInfo leader() const;
  // Called on the Engine's thread whenever the leader changes (also to "no leader"), and once
  // soon after registration when a leader is already known.
  void on_leader_change(std::function<void(const LeaderInfo&)> callback);
  // True once this member knows a leader and has applied everything committed when it learned
  // of it (it is caught up).
  bool is_ready() const;

  Result<std::optional<KeyValue>> get(const std::string& key, ReadOptions options = {});
  Result<bool> exists(const std::string& key, ReadOptions options = {});
  // Returns the write's revision.
  Result<std::uint64_t> set(const std::string& key, const std::string& value);
  // Returns whether the key existed.
  Result<bool> del(const std::string& key);
  // Writes only if the key's mod revision is `expect_revision` (0: the key must not exist);
  // kCompareFailed otherwise. Returns the new revision.
  Result<std::uint64_t> cas(const std::string& key, const std::string& value,
                            std::uint64_t expect_revision);
  // Every key under `prefix`, in order (at most `limit`; 0: all).
  Result<std::vector<KeyValue>> list(const std::string& prefix, std::uint64_t limit = 0,
                                     ReadOptions options = {});
  // Calls `callback` (on the Engine's thread) for each change under `prefix` (or to `key`
  // when prefix is false) from `start_revision` on (0: from now). Returns a handle for
  // unwatch().
  Result<std::uint64_t> watch(const std::string& key, bool prefix, std::uint64_t start_revision,
                              std::function<void(const WatchEvent&)> callback);
  void unwatch(std::uint64_t handle);

  // The client address this member's listener is bound to (useful with port 0).
  std::string client_address() const;
  std::string peer_address() const;
  // The HTTP endpoint's bound address (empty without EngineOptions::listen_http).
  std::string http_address() const;

  // Stops: refuses new requests, lets in-flight ones finish briefly, flushes the state, syncs
  // the WAL and stops the threads. Idempotent.
  Status close();
  // A fatal error stopped the member (e.g. an fsync failure); ok while it runs.
  Status failure() const;
  // Blocks until the Engine stops on its own (a fatal error) or close() is called.
  void wait();

  class Impl;

 private:
  explicit Engine(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace kvc::server
