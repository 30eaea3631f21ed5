// The kvc client library, used by kvc-ctl, kvc-bench, the tests, and applications that talk to a
// cluster over the network. It connects to a list of members, finds and follows the leader, and
// pipelines many requests over few connections.
//
// Retry rules (what makes a write's outcome knowable):
//   - a request that was never handed to a connection is retried on another member;
//   - a "not leader" or "unavailable" answer means the member did not apply it: retried at the
//     leader the answer names, or after a short back-off, until the deadline;
//   - a read whose connection breaks is retried elsewhere (reads are safe to repeat);
//   - a write whose connection breaks after it was sent is NOT retried: it completes with
//     kTimeout ("outcome unknown"), as does a write still unanswered at its deadline;
//   - a request that never reached any member completes with kUnavailable (not applied).
// So every completion is exactly one of: applied (ok, or a definite answer such as
// compare-failed), not applied (any other code except kTimeout), or unknown (kTimeout).
//
// Thread-safety: the client runs its own libuv loop on one background thread; call(), stream(),
// cancel() and the synchronous helpers are safe from any thread except that one. Callbacks run
// on the client's thread and must not block; a callback may call() or stream() again (that only
// queues the request), but never a blocking form.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/net/address.h"
#include "kvc/wire/messages.h"

namespace kvc::client {

struct ClientOptions {
  std::vector<net::Address> endpoints;
  std::uint64_t timeout_ms = 5000;          // default deadline of a request
  std::uint64_t connect_timeout_ms = 2000;  // per connection attempt
  std::size_t connections_per_member = 1;   // more spreads load over several sockets (bench)
  std::uint64_t cluster_id = 0;             // 0: accept any cluster; else refuse others
  std::string name = "kvc-client";
  std::size_t max_frame_bytes = 64u << 20;
  // The cluster's shared secret (kvc(7), "SECURITY"): the client and each member prove to each
  // other that they know it before any request is sent. `secret` is the secret itself;
  // `secret_file` names a file holding it (mode 600; open() fails with a message naming the
  // file when it cannot be used). At most one; neither: no authentication. It costs one round
  // trip per new connection.
  std::string secret;
  std::string secret_file;
};

struct CallOptions {
  std::uint64_t timeout_ms = 0;        // 0: the client's default
  std::optional<net::Address> target;  // ask this member only; never follow the leader
};

class Client {
 public:
  using Callback = std::function<void(wire::Response)>;
  // Called for each response of a stream; return false to stop (the client then cancels it).
  // The last call has `done` set or a non-ok code.
  using StreamCallback = std::function<bool(const wire::Response&)>;

  // Starts the client's thread. Connections are made on first use.
  static Result<std::unique_ptr<Client>> open(ClientOptions options);
  ~Client();
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;

  // Sends `req` (its id is assigned by the client) and calls `done` once with the answer; a
  // transport failure is reported as a Response with the code and message set.
  void call(wire::Request req, Callback done, CallOptions options = {});
  // A request answered by a stream of responses (watch, watch leader, snapshot save). Returns
  // the stream's id for cancel().
  std::uint64_t stream(wire::Request req, StreamCallback on_item, CallOptions options = {});
  void cancel(std::uint64_t stream_id);

  // Blocking forms, for command-line tools.
  wire::Response call_sync(wire::Request req, CallOptions options = {});

  // Convenience wrappers over call_sync.
  wire::Response put(std::string key, std::string value);
  wire::Response get(std::string key, bool serializable = false);
  wire::Response del(std::string key);
  wire::Response cas(std::string key, std::string value, std::uint64_t expect_revision);

  // The member currently believed to lead ("" when unknown).
  std::string leader_address() const;

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True for operations that change the cluster's state (their outcome can be unknown).
bool is_write(wire::Op op);

}  // namespace kvc::client
