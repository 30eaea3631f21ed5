// Typed key-value, lease and transaction calls over a Channel: what Engine's methods are, for a
// Client too. `client::Kv kv(*client)` gives a program talking to a cluster over the network
// the same calls, results and errors as one embedding a member (`Engine::get` is
// `Kv(engine.channel()).get`).
//
// Errors are Status values with the exit-code contract's codes: kNotLeader/kUnavailable
// (nothing applied), kTimeout (outcome unknown), kShuttingDown, kInvalidArgument,
// kCompareFailed, kNotFound. Thread-safety: as the Channel's (Client and Engine::channel() are
// thread-safe); never from a callback of that channel. A Kv holds only a reference to its
// channel, which must outlive it.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "kvc/client/channel.h"
#include "kvc/common/status.h"
#include "kvc/common/txn.h"

namespace kvc::client {

struct KeyValue {
  std::string key;
  std::string value;
  std::uint64_t create_revision = 0;
  std::uint64_t mod_revision = 0;
  std::uint64_t version = 0;
  std::uint64_t lease = 0;  // the lease the key is attached to, 0: none

  friend bool operator==(const KeyValue&, const KeyValue&) = default;
};

// A lease as the leader sees it (docs/coordination.md).
struct LeaseInfo {
  std::uint64_t id = 0;
  std::uint64_t ttl_s = 0;         // as granted (the leader may raise a ttl to its minimum)
  std::uint64_t remaining_ms = 0;  // lease_ttl, leases: time left on the leader's clock
  std::vector<std::string> keys;   // lease_ttl with keys
};

// A transaction: when every compare holds the success ops run, else the failure ops, applied
// atomically at one revision (kvc/common/txn.h for Compare and TxnOp).
struct Txn {
  std::vector<Compare> compares;
  std::vector<TxnOp> success;
  std::vector<TxnOp> failure;
};
struct TxnOpResult {
  TxnOpType type = TxnOpType::kGet;
  std::uint64_t revision = 0;  // put, deletes that removed keys
  std::uint64_t deleted = 0;   // delete, delete_prefix
  std::vector<KeyValue> kvs;   // get, get_prefix
  bool more = false;           // get_prefix: keys past its limit
};
struct TxnResult {
  bool succeeded = false;  // the compares held: the success ops ran
  std::uint64_t revision = 0;
  std::vector<TxnOpResult> results;  // one per op of the list that ran
};

struct ReadOptions {
  bool serializable = false;  // read the answering member's state without a quorum round
};

class Kv {
 public:
  explicit Kv(Channel& channel) : channel_(channel) {}

  Result<std::optional<KeyValue>> get(const std::string& key, ReadOptions options = {});
  Result<bool> exists(const std::string& key, ReadOptions options = {});
  // Returns the write's revision. With `lease`, the key is attached to it and deleted when the
  // lease ends (kNotFound when the lease does not exist).
  Result<std::uint64_t> set(const std::string& key, const std::string& value,
                            std::uint64_t lease = 0);
  // Returns whether the key existed. With `expect_revision`, deletes only when that is the
  // key's mod revision (kCompareFailed otherwise).
  Result<bool> del(const std::string& key, std::uint64_t expect_revision = 0);
  // Writes only if the key's mod revision is `expect_revision` (0: the key must not exist);
  // kCompareFailed otherwise. Returns the new revision.
  Result<std::uint64_t> cas(const std::string& key, const std::string& value,
                            std::uint64_t expect_revision);
  // Every key under `prefix`, in order (at most `limit`; 0: all), read page by page.
  Result<std::vector<KeyValue>> list(const std::string& prefix, std::uint64_t limit = 0,
                                     ReadOptions options = {});

  // Leases: the leader keeps their clock. kNotFound for a lease that expired or was revoked.
  Result<LeaseInfo> lease_grant(std::uint64_t ttl_s);
  // Returns how many keys went with it.
  Result<std::uint64_t> lease_revoke(std::uint64_t id);
  // Restarts the lease's countdown; returns its ttl. Call it every ttl/3 or so (or keep a
  // client::Session, concurrency.h, which does).
  Result<std::uint64_t> lease_keep_alive(std::uint64_t id);
  Result<LeaseInfo> lease_ttl(std::uint64_t id, bool with_keys = false);
  Result<std::vector<LeaseInfo>> leases();
  // A transaction (kInvalidArgument when two ops of a list write one key, or over the
  // member's --max-txn-ops; kNotFound when a put names a lease that is gone: nothing applied).
  Result<TxnResult> txn(const Txn& txn);

 private:
  Channel& channel_;
};

// The typed forms of wire key-values and leases.
KeyValue from_wire(const wire::KeyValue& kv);
LeaseInfo from_wire(const wire::LeaseInfo& lease);

}  // namespace kvc::client
