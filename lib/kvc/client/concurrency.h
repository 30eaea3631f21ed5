// Coordination recipes over a Client, with etcd's semantics (its clientv3/concurrency package):
// a Session (a lease kept alive in the background), a Mutex (a lock with a fencing token) and
// an Election. Every recipe keeps its keys under a prefix the caller names, attached to the
// session's lease, so a holder that dies (or is paused past the ttl) loses what it held within
// ttl plus the leader's election timeout, and the next in line goes ahead.
//
// What a lock guarantees, and what it does not. Mutex::lock returns once this session's key is
// the oldest under the prefix (the lowest create revision). Nothing stops the holder from being
// paused (GC, swapped out, SIGSTOP, a partition) for longer than the ttl: its lease expires,
// the next waiter takes the lock, and the paused holder wakes up still believing it holds it.
// A lock alone therefore never makes two writers mutually exclusive. The fencing token (the
// create revision of the holder's key, which strictly increases from one holder to the next)
// does, if the protected resource checks it: it must refuse any write whose token is lower
// than one it has already seen. See docs/coordination.md.
//
// The recipes work over a Channel (channel.h): a Client, or Engine::channel() inside a member.
//
// Thread-safety: a Session is safe from any thread; its keep-alives run on a thread of its
// own. A Mutex or an Election is used by one thread at a time. The Client and the Session must
// outlive the recipes built on them (the channel too).
#pragma once

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

#include "kvc/client/channel.h"
#include "kvc/client/client.h"

namespace kvc::client {

struct SessionOptions {
  std::uint64_t ttl_s = 60;  // the lease's time to live (the member may raise it to its minimum)
  std::uint64_t lease = 0;   // keep this existing lease alive instead of granting one
};

class Session {
 public:
  // Grants (or adopts) the lease, then keeps it alive every ttl/3 from a background thread.
  // `on_lost` (optional) is called once, on that thread, when the lease is gone (expired or
  // revoked) or no keep-alive succeeded for a whole ttl, with the reason.
  static Result<std::unique_ptr<Session>> open(Channel& client, SessionOptions options = {},
                                               std::function<void(const Status&)> on_lost = {});
  // Stops the keep-alives and revokes the lease (its keys are deleted), unless orphan() ran.
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  std::uint64_t lease() const { return lease_; }
  std::uint64_t ttl_s() const { return ttl_s_; }
  // ok while the lease is believed alive; else why it was lost.
  Status status() const;
  // Stops the keep-alives and revokes the lease now.
  Status close();
  // Stops the keep-alives without revoking: the lease expires after its ttl.
  void orphan();

 private:
  Session(Channel& client, std::uint64_t lease, std::uint64_t ttl_s,
          std::function<void(const Status&)> on_lost);
  void run();
  void stop();

  Channel& client_;
  const std::uint64_t lease_;
  const std::uint64_t ttl_s_;
  std::function<void(const Status&)> on_lost_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool stopping_ = false;  // guarded by mu_
  Status lost_;            // guarded by mu_
  std::thread thread_;
};

// The key a session holds under `prefix`: prefix + the lease id in 16 hex digits.
std::string session_key(const std::string& prefix, std::uint64_t lease);

// A lock: waiters queue by the create revision of their key under `prefix`.
class Mutex {
 public:
  // `prefix` ends in "/" by convention ("locks/db/"); kvc-ctl lock NAME uses NAME + "/".
  Mutex(Channel& client, Session& session, std::string prefix);

  // Waits until this session holds the lock, at most `timeout_ms` (0: forever), and returns the
  // fencing token: the create revision of its key. On timeout (kTimeout) or failure the key is
  // deleted, so it does not block the others.
  // `cancel`, when given and set, ends the wait (kShuttingDown) from another thread.
  Result<std::uint64_t> lock(std::uint64_t timeout_ms = 0,
                             const std::atomic<bool>* cancel = nullptr);
  // Deletes the key: the next waiter takes the lock.
  Status unlock();
  const std::string& key() const { return key_; }
  std::uint64_t token() const { return token_; }

 private:
  Channel& client_;
  Session& session_;
  std::string prefix_;
  std::string key_;
  std::uint64_t token_ = 0;
};

// Leader election: the oldest key under the prefix is the leader; its value is its proposal.
class Election {
 public:
  Election(Channel& client, Session& session, std::string prefix);

  // Waits until this session leads with `proposal` (at most timeout_ms; 0: forever); returns
  // the leadership's revision (a fencing token like Mutex::lock's).
  Result<std::uint64_t> campaign(const std::string& proposal, std::uint64_t timeout_ms = 0,
                                 const std::atomic<bool>* cancel = nullptr);
  // Changes the proposal while leading; kFailedPrecondition when not leading.
  Status proclaim(const std::string& proposal);
  Status resign();
  const std::string& key() const { return key_; }

  struct Leader {
    std::string key;
    std::string proposal;
    std::uint64_t revision = 0;  // its create revision
  };
  // The current leader of the election under `prefix` (kNotFound when none).
  static Result<Leader> leader(Channel& client, const std::string& prefix);
  // Calls `fn` with each new leader (and once with the current one), until `fn` returns false
  // or `stop` becomes true; a leaderless moment is reported as a Leader with an empty key.
  static Status observe(Channel& client, const std::string& prefix,
                        const std::function<bool(const Leader&)>& fn,
                        const std::atomic<bool>* stop = nullptr);

 private:
  Channel& client_;
  Session& session_;
  std::string prefix_;
  std::string key_;
  std::uint64_t revision_ = 0;
};

}  // namespace kvc::client
