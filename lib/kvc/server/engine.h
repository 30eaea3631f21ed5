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

#include "kvc/client/channel.h"
#include "kvc/client/kv.h"
#include "kvc/common/status.h"
#include "kvc/common/txn.h"
#include "kvc/server/options.h"

namespace kvc::server {

// The typed values of the key-value, lease and txn calls are the client library's
// (kvc/client/kv.h): a program moving between embedding a member and talking to a cluster over
// the network keeps its code.
using client::KeyValue;
using client::LeaseInfo;
using client::ReadOptions;
using client::Txn;
using client::TxnOpResult;
using client::TxnResult;

struct LeaderInfo {
  std::uint64_t id = 0;  // 0: no leader known
  std::string name;
  std::string client_addr;
  std::uint64_t term = 0;
};

struct WatchEvent {
  enum class Type { kPut, kDelete } type = Type::kPut;
  KeyValue kv;  // delete: key and mod_revision (the delete's revision)
  // The key as it was before this event; absent when it did not exist (or the event was
  // written by a version before state format 3, which did not keep it).
  std::optional<KeyValue> prev_kv;
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

  // The key-value, lease and transaction calls are client::Kv's (kvc/client/kv.h, which says
  // what each returns and refuses) over this member's channel(): on a follower, writes, lease
  // calls and linearizable reads are carried out through the leader.
  Result<std::optional<KeyValue>> get(const std::string& key, ReadOptions options = {});
  Result<bool> exists(const std::string& key, ReadOptions options = {});
  Result<std::uint64_t> set(const std::string& key, const std::string& value,
                            std::uint64_t lease = 0);
  Result<bool> del(const std::string& key, std::uint64_t expect_revision = 0);
  Result<std::uint64_t> cas(const std::string& key, const std::string& value,
                            std::uint64_t expect_revision);
  Result<std::vector<KeyValue>> list(const std::string& prefix, std::uint64_t limit = 0,
                                     ReadOptions options = {});
  Result<LeaseInfo> lease_grant(std::uint64_t ttl_s);
  Result<std::uint64_t> lease_revoke(std::uint64_t id);
  Result<std::uint64_t> lease_keep_alive(std::uint64_t id);
  Result<LeaseInfo> lease_ttl(std::uint64_t id, bool with_keys = false);
  Result<std::vector<LeaseInfo>> leases();
  Result<TxnResult> txn(const Txn& txn);

  // Calls `callback` (on the Engine's thread) for each change under `prefix` (or to `key`
  // when prefix is false) from `start_revision` on (0: from now). Returns a handle for
  // unwatch().
  Result<std::uint64_t> watch(const std::string& key, bool prefix, std::uint64_t start_revision,
                              std::function<void(const WatchEvent&)> callback);
  void unwatch(std::uint64_t handle);
  // This member as a client::Channel, for the coordination recipes of kvc/client/concurrency.h
  // (client::Session, client::Mutex, client::Election) inside the embedding program: requests
  // go through the member (forwarded to the leader when needed), watches are this member's.
  // Valid until the Engine is destroyed.
  client::Channel& channel();

  // The client address this member's listener is bound to (useful with port 0).
  std::string client_address() const;
  std::string peer_address() const;
  // The HTTP endpoint's bound address (empty without EngineOptions::listen_http).
  std::string http_address() const;

  // Reads the certificate, key and CA files (EngineOptions::client_tls, peer_tls) again and
  // uses them for connections made from now on; open connections keep theirs. When a file does
  // not load, nothing changes and the error names it. kvc-node does this on SIGHUP. The shared
  // secret is not reloaded.
  Status reload_tls();
  // Reads EngineOptions::permissions_file again and checks requests against it from now on
  // (kvc-node does this on SIGHUP, with reload_tls). A file that does not parse changes
  // nothing: the error names the file and line, and is logged. Ok without a file.
  Status reload_permissions();

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
  std::unique_ptr<client::Channel> channel_;  // destroyed before impl_
};

}  // namespace kvc::server
