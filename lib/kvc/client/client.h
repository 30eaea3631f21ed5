// The kvc client library, used by kvc-ctl, kvc-bench, the tests, the members themselves (to
// forward writes to the leader) and applications that talk to a cluster over the network. It
// connects to a list of members, finds and follows the leader, and pipelines many requests over
// few connections.
//
// Connections. A connection carries requests only once the member answered its hello (and,
// with a shared secret, proved it): a stopped process whose kernel still completes TCP
// handshakes never receives a request. The member's hello reply also gives its cluster id and
// its limits (largest frame, largest key plus value); a request that would exceed them is
// refused here, before it is sent, with kInvalidArgument naming the limit and the kvc-node flag
// that sets it. A member's host name is looked up again for every new connection.
//
// Choosing a member. A call goes to the member believed to lead, else to a member already
// connected (the first endpoint, in order, that answers), else the client connects to every
// endpoint at once and takes the first that answers its hello. Before its first request a
// client that was not given a cluster id waits until every endpoint has answered or failed (or
// is too slow, see below): the first answer fixes the cluster id, and if the endpoints belong to
// two clusters every call fails with kFailedPrecondition naming both (nothing is sent). Later,
// a member that answers with another cluster id is refused (its address and both ids named).
//
// Budgets. A call waits for a member's hello reply at most its "hello budget": a tenth of the
// call's timeout, between 250 ms and 1 s (hello_budget_ms()). A member that does not answer in
// time is skipped at once (nothing was sent to it) and remembered as hung for 10 s: later calls
// try it last; its connection attempt goes on in the background (up to connect_timeout_ms) and
// a late answer makes it a candidate again. A call with CallOptions::target has nowhere else
// to go: it fails with kUnavailable (nothing sent) when its member misses the budget.
//
// A read (get, range, health, leader, status, ...) unanswered within its "attempt budget" (a
// third of the timeout, between 250 ms and 2 s; read_attempt_ms()) is sent to another member
// and a late answer from the first is ignored; the client then opens a second connection to the
// first member, and if that is not answered within the hello budget while nothing at all arrived
// from the member, the member is hung: its connections are closed (what was sent on them is
// handled as below).
//
// Retry rules (what makes a write's outcome knowable):
//   - a request that was never handed to a connection is retried on another member;
//   - a "not leader" or "unavailable" answer means the member did not apply it: retried at the
//     leader the answer names (unless that member is hung: then at the other members, until
//     they name a new leader), or after a short back-off, until the deadline;
//   - a member's refusal of a frame it did not read (too large) ends that call with
//     kInvalidArgument: nothing was applied;
//   - a read whose connection breaks, or whose attempt budget runs out, is retried elsewhere
//     (reads are safe to repeat);
//   - a write whose connection breaks after it was sent is NOT retried: it completes with
//     kTimeout ("outcome unknown"), as does a write still unanswered at its deadline;
//   - a request that never reached any member completes with kUnavailable (not applied), and at
//     once when no endpoint can ever serve it: none is a kvc member (e.g. an HTTP port: the
//     message says so), none resolves, or each refused this client (auth or cluster mismatch:
//     then kFailedPrecondition).
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
#include <string_view>
#include <vector>

#include "kvc/client/channel.h"
#include "kvc/common/status.h"
#include "kvc/net/address.h"
#include "kvc/net/tls.h"
#include "kvc/wire/messages.h"

namespace kvc::client {

struct ClientOptions {
  std::vector<net::Address> endpoints;
  std::uint64_t timeout_ms = 5000;  // default deadline of a request
  // The longest one connection attempt may take (name lookup, TCP connect, hello and auth); a
  // call stops waiting for it much sooner (its hello budget) and the attempt goes on alone.
  std::uint64_t connect_timeout_ms = 2000;
  // More spreads load over several sockets (bench): the requests sent in one turn of the
  // client's loop go together on one of them (up to 64 KiB), the next turn's on the next.
  std::size_t connections_per_member = 1;
  std::uint64_t cluster_id = 0;  // 0: the first member to answer fixes it; else refuse others
  std::string name = "kvc-client";
  std::size_t max_frame_bytes = 64u << 20;
  // The cluster's shared secret (kvc(7), "SECURITY"), used as a TLS 1.3 pre-shared key: the
  // client and each member prove to each other that they know it, and every frame is
  // encrypted. `secret` is the secret itself; `secret_file` names a file holding it (mode 600;
  // open() fails with a message naming the file when it cannot be used). At most one; neither
  // (and no `tls` below): plaintext, no authentication.
  std::string secret;
  std::string secret_file;
  // TLS with certificates (kvc-ctl --cacert, --cert, --key): `trusted_ca_file` verifies the
  // members' certificates (empty: the system's roots) and the address dialled must be named by
  // them; `cert_file` and `key_file` are this client's certificate, for members with
  // --client-cert-auth. Any of the three turns TLS on; a secret (above) is used as a TLS 1.3
  // pre-shared key instead. Not both.
  net::TlsConfig tls;
  // A named token (kvc-ctl --token, KVC_TOKEN; kvc-permissions(5)) sent in the hello: the
  // identity the members check this client's requests against. Empty: none (the identity is
  // the client certificate's subject, `secret` or `anonymous`). A member that does not know
  // the token refuses the connection (kUnauthenticated).
  std::string token;
  // Take shared watch responses (kvc-node(1), "WIRE PROTOCOL"): a member sends one response
  // for all of this client's watches on a connection that see the same events, and the client
  // hands it to each watch's callback (with the watch's own id). Streams behave the same either
  // way; false asks for one response per watch.
  bool shared_watches = true;
};

struct CallOptions {
  std::uint64_t timeout_ms = 0;        // 0: the client's default
  std::optional<net::Address> target;  // ask this member only; never follow the leader
  // A member the caller learned leads (e.g. from a not-leader answer it got itself): tried
  // first, as if this client had learned it from an answer. Client address, HOST:PORT.
  std::string leader_hint;
};

class Client final : public Channel {
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

  // Channel (channel.h), for the coordination recipes.
  // A request's timeout_ms, when set, is also the call's deadline here.
  wire::Response channel_call(wire::Request req) override {
    const std::uint64_t t = req.timeout_ms;
    return call_sync(std::move(req), {.timeout_ms = t});
  }
  std::uint64_t channel_stream(wire::Request req, StreamFn fn) override {
    return stream(std::move(req), std::move(fn));
  }
  void channel_cancel(std::uint64_t id) override { cancel(id); }

 private:
  class Impl;
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// True for operations that change the cluster's state (their outcome can be unknown).
bool is_write(wire::Op op);

// How long a call waits for a member's hello reply, and for a read's answer before asking
// another member, given the call's timeout (see "Budgets" above).
std::uint64_t hello_budget_ms(std::uint64_t call_timeout_ms);
std::uint64_t read_attempt_ms(std::uint64_t call_timeout_ms);

// Parses an endpoint list as kvc-ctl and kvc-bench take it (--endpoints, KVC_ENDPOINTS):
// comma-separated HOST:PORT, where HOST is an IPv4 address, [IPv6] or a host name. An etcd-style
// "http://HOST:PORT" (optionally with a trailing '/') is taken as HOST:PORT; "https://" is
// refused (TLS is chosen by ClientOptions::tls or a secret, not by a scheme), as is any other
// scheme. Fails with
// kInvalidArgument naming the bad item.
Result<std::vector<net::Address>> parse_endpoints(std::string_view text);

}  // namespace kvc::client
