// Internals of the network client (client.h), shared by its files: the client's constants, a
// self-freeing one-shot timer, and Client::Impl, the libuv loop thread that owns every call and
// connection. Not a public API: only lib/kvc/client/client*.cc include it. Impl's methods are
// spread over files by job: client.cc (the public API, start and stop, calls in and out, their
// timers and completion), client_routing.cc (choosing a member for a call, probing and settling
// the endpoints, sending and the liveness checks), client_connections.cc (connections: the hello
// handshake, frames, responses, refusals, closes). Thread-safety: submit(), cancel(), next_id()
// and leader_address() may be called from any thread; everything else runs on the loop thread.
#pragma once

#include <uv.h>

#include <atomic>
#include <cstdint>
#include <functional>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "kvc/client/client.h"
#include "kvc/net/connection.h"
#include "kvc/wire/handshake.h"

namespace kvc::client {

// A named namespace (not an anonymous one): the client's files share these.
namespace client_internal {

inline constexpr std::uint64_t kRetryBackoffMs = 25;
inline constexpr std::uint64_t kMaxRetryBackoffMs = 250;
// A member whose connection attempt failed is not dialled again before this.
inline constexpr std::uint64_t kReconnectBackoffMs = 100;
// A member that did not answer a hello within a call's budget is tried last for this long.
inline constexpr std::uint64_t kSuspectMs = 10000;
// A member that refused this client for good (not a kvc member, another cluster, auth) is asked
// again after this long: its configuration may have been fixed.
inline constexpr std::uint64_t kRefusedRecheckMs = 5000;
inline constexpr std::uint64_t kMinHelloMs = 250;
inline constexpr std::uint64_t kMaxHelloMs = 1000;
inline constexpr std::uint64_t kMinReadAttemptMs = 250;
inline constexpr std::uint64_t kMaxReadAttemptMs = 2000;
inline constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();
// With several connections to a member, requests sent in one loop turn join the connection
// the turn began with until its unsent output reaches this (pick_connection).
inline constexpr std::size_t kGatherOnOneConnectionBytes = 64u << 10;

bool is_stream_op(wire::Op op);

wire::Response failure(std::uint64_t id, Code code, std::string message);

// Bytes from a peer that may not speak kvc, for a message: printable ASCII as is.
std::string printable(const std::string& bytes);

// A one-shot timer on the heap that frees itself: after it fired, or once cancel()led.
class OneShot {
 public:
  static OneShot* start(uv_loop_t* loop, std::uint64_t ms, std::function<void()> fire) {
    auto* t = new OneShot();
    t->fire_ = std::move(fire);
    uv_timer_init(loop, &t->handle_);
    t->handle_.data = t;
    uv_timer_start(
        &t->handle_,
        [](uv_timer_t* h) {
          auto* self = static_cast<OneShot*>(h->data);
          std::function<void()> f = std::move(self->fire_);
          self->close();
          if (f) f();
        },
        ms, 0);
    return t;
  }
  // The owner drops its pointer: fire never runs.
  void cancel() {
    fire_ = nullptr;
    close();
  }

 private:
  OneShot() = default;
  void close() {
    uv_timer_stop(&handle_);
    uv_close(reinterpret_cast<uv_handle_t*>(&handle_),
             [](uv_handle_t* h) { delete static_cast<OneShot*>(h->data); });
  }
  uv_timer_t handle_{};
  std::function<void()> fire_;
};

}  // namespace client_internal

class Client::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {}

  Status start();

  ~Impl();

  void submit(wire::Request req, Callback done, StreamCallback on_item, CallOptions opts,
              std::uint64_t id);

  void cancel(std::uint64_t id);

  std::uint64_t next_id() { return next_id_.fetch_add(1) + 1; }
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  std::string leader_address() const;

 private:
  using OneShot = client_internal::OneShot;

  enum class Stage {
    kNew,
    kProbing,  // waiting for any endpoint to answer its hello (or, first, for all to settle)
    kWaiting,  // waiting for one member's hello (the leader, or the target)
    kSent,     // on a connection, unanswered
    kBackoff,  // waiting before the next attempt
  };

  struct Call {
    wire::Request req;
    Callback done;
    StreamCallback on_item;
    CallOptions opts;
    std::uint64_t timeout_ms = 0;
    std::uint64_t member_timeout_ms = 0;  // req.timeout_ms as the caller set it
    std::uint64_t deadline = 0;           // uv_now() ms
    uv_timer_t timer{};
    Stage stage = Stage::kNew;
    // kProbing, kWaiting: when the hello budget runs out; kSent: when a read's attempt budget
    // runs out (0: none); kBackoff: when to try again.
    std::uint64_t stage_until = 0;
    std::string member;  // kWaiting: the member waited for; kSent: the member it was sent to
    std::shared_ptr<net::Connection> conn;  // kSent
    std::uint64_t sent_at = 0;
    std::uint64_t send_seq = 0;   // order of sending, client-wide
    std::size_t frame_bytes = 0;  // payload bytes of its request frame
    bool finished = false;
    bool got_first = false;  // a stream has started answering: its deadline no longer applies
    std::uint64_t backoff_ms = client_internal::kRetryBackoffMs;
    // Members this call gave up on in the current round (hung, refused, no answer), and why;
    // the round starts again after a back-off.
    std::set<std::string> skip;
    std::map<std::string, std::string> why;
    // A watch the member serves in a group (shared watch responses): the group's members on
    // its connection, which lists this call, while it is open there.
    std::vector<Call*>* group = nullptr;
    const net::Connection* group_conn = nullptr;
    std::uint64_t group_id = 0;
  };

  struct Member {
    std::string key;  // the address as a string, the key of members_
    net::Address address;
    bool endpoint = false;
    std::vector<std::shared_ptr<net::Connection>> conns;  // hello answered: requests may go
    int handshakes = 0;                                   // connection attempts in progress
    std::uint64_t handshake_since = 0;  // when the oldest attempt in progress started
    std::uint64_t retry_after = 0;      // an attempt failed: no new one before this
    std::uint64_t suspect_until = 0;    // did not answer a hello in time: tried last
    Status refused;                     // answered that it cannot serve this client
    std::uint64_t refused_until = 0;
    bool other_cluster = false;  // `refused` because it belongs to another cluster
    std::string last_error;
    std::vector<Call*> waiting;  // kWaiting calls for this member
    std::size_t round_robin = 0;
    std::size_t last_pick = 0;     // index in conns of the connection picked last
    std::uint64_t last_heard = 0;  // uv_now() of the last frame from it
    // A liveness check (a second connection) after a read went unanswered: decided at its
    // timer unless a hello reply or any frame from the member comes first.
    OneShot* check = nullptr;
    std::uint64_t check_since = 0;
    // From its hello reply:
    std::uint64_t member_id = 0;
    std::uint64_t cluster_id = 0;
    std::uint64_t max_frame_bytes = 0;
    std::uint64_t max_request_bytes = 0;
  };

  // A connection whose hello is out and not yet answered (or whose secret is not yet proved).
  // It is not in Member::conns, so no request is sent on it.
  struct Handshake {
    std::string member;
    std::shared_ptr<net::Connection> conn;
    std::unique_ptr<wire::DialerHandshake> machine;  // wire/handshake.h
    OneShot* timer = nullptr;  // connect_timeout_ms from the start of the attempt
  };

  std::uint64_t now() { return uv_now(&loop_); }
  std::uint64_t budget(const Call* c) const { return hello_budget_ms(c->timeout_ms); }
  bool suspect(const Member& m) { return now() < m.suspect_until; }
  bool refused_now(const Member& m) { return !m.refused.ok() && now() < m.refused_until; }

  // ---------------------------------------------------------------------------------------
  // Calls in and out

  // Runs on the loop thread: picks up new calls and cancellations.
  void drain();

  void send_watch_cancel(Call* c);

  void arm(Call* c);

  void on_timer(Call* c);

  // Why the call could not be served, member by member, for its final message.
  std::string reasons(const Call* c) const;

  void expire(Call* c);

  // Takes the call out of the list its stage put it in.
  void leave_stage(Call* c);

  // Completes a call: delivers `r` (unless nullopt) and releases it.
  void finish(Call* c, std::optional<wire::Response> r);

  // ---------------------------------------------------------------------------------------
  // Choosing a member

  Member* member_for(const std::string& key);

  // A member this call may use now without waiting out a recent failure.
  bool usable(const Call* c, const std::string& key);

  // The member to send to or wait for: the leader, else a connected member; "" when the call
  // should instead wait for the first endpoint to answer.
  std::string choose(const Call* c);

  void dispatch(Call* c);

  void dispatch_target(Call* c);

  void wait_for(Call* c, Member& m);

  void wait_probing(Call* c);

  // The leader (or target) a call waits for did not answer its hello in time.
  void waiting_overdue(Call* c);

  void hello_overdue(Call* c, Member& m);

  void mark_suspect(Member& m);

  // Handshakes in progress ran past this call's budget: those members are hung, for now.
  void probing_overdue(Call* c);

  // Probing calls look again: a member answered, one failed, or the endpoints settled.
  void wake_probing();

  bool any_handshake() const;

  // Dials every endpoint that has no connection and no attempt in progress.
  void start_probes();

  // Before the first request: has every endpoint answered, failed, or run out of time? Then
  // their answers are compared.
  bool try_settle();

  // Why no endpoint can serve this client (each refused it for good), or ok.
  Status hopeless();

  // The code a call ends with when a member refused it for good: configuration errors stay
  // kFailedPrecondition (exit 1); "not a kvc member", "no such host" mean nothing could be
  // reached (kUnavailable).
  static Code final_code(Code refusal);

  void retry_later(Call* c);

  // ---------------------------------------------------------------------------------------
  // Sending

  std::shared_ptr<net::Connection> pick_connection(Member& m);

  void send_on(Call* c, Member& m);

  // A read got no answer within its attempt budget: ask another member, and check whether
  // this one is alive.
  void read_overdue(Call* c);

  // Opens another connection to `m`: if its hello is not answered within `budget_ms` while
  // nothing else came from `m` since `since`, `m` is hung and its connections are closed.
  void check_alive(Member& m, std::uint64_t since, std::uint64_t budget_ms);

  // ---------------------------------------------------------------------------------------
  // Connections

  void start_handshake(Member& m);

  void on_connected(const std::string& key, std::uint64_t started,
                    Result<std::shared_ptr<net::Connection>> r);

  // Ends a handshake in failure: closes its connection and tells the member's waiters.
  void fail_handshake(net::Connection& conn, const Status& why, bool final,
                      bool other_cluster = false);

  // One connection attempt to `m` ended: `conn` is ready, or it failed with `why` (`final`: the
  // member cannot serve this client, e.g. it is not a kvc member).
  void handshake_ended(Member& m, const std::shared_ptr<net::Connection>* conn, const Status& why,
                       bool final);

  // A peer whose answer to the hello is not a kvc frame.
  Status not_kvc(const std::string& key, const net::Connection& conn, const std::string& detail);

  void on_handshake_frame(Handshake& h, net::Connection& conn, std::string_view payload);

  void on_frame(const std::string& key, net::Connection& conn, std::string_view payload);

  // A hello reply on an established connection: the member refused a frame without reading it
  // (too large), or gave up on the connection.
  void on_refusal(Member& m, net::Connection& conn, const wire::HelloReply& hr);

  void on_response(const std::string& key, Call* c, wire::Response r);

  void on_group_events(net::Connection& conn, wire::Response& r);

  // Takes a watch out of its group (shared watch responses), if it is in one.
  void leave_group(Call* c);

  void cancel_now(Call* c);

  void on_closed(const std::string& key, net::Connection& conn, const Status& why);

  void set_leader(const std::string& addr);

  void shutdown();

  ClientOptions options_;
  std::shared_ptr<const net::TlsContext> tls_;  // null: plaintext (start() builds it)
  uv_loop_t loop_{};
  uv_async_t wake_{};
  std::thread thread_;

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Call>> incoming_;  // guarded by mu_
  std::vector<std::uint64_t> cancels_;           // guarded by mu_
  bool stopping_ = false;                        // guarded by mu_
  std::string leader_copy_;                      // guarded by mu_
  std::atomic<std::uint64_t> next_id_{0};

  // Loop thread only:
  bool stopping_loop_ = false;
  std::vector<std::string> endpoint_keys_;  // in the order given, without repeats
  std::map<std::string, Member> members_;   // endpoints and members learned from answers
  std::unordered_map<std::uint64_t, Call*> calls_;
  // Invariant: a call is in sent_on_ exactly while its stage is kSent, in its member's
  // waiting list while kWaiting, and in probing_ while kProbing.
  std::unordered_map<const net::Connection*, std::map<std::uint64_t, Call*>> sent_on_;
  std::unordered_map<const net::Connection*, Handshake> handshakes_;
  // Shared watch responses: each connection's groups, by the group's name, and their watches.
  // A group's vector stays where it is while it has members (std::unordered_map keeps its
  // elements in place), so a Call may point at it.
  std::unordered_map<const net::Connection*, std::unordered_map<std::uint64_t, std::vector<Call*>>>
      watch_groups_;
  const std::vector<Call*>* dispatching_group_ = nullptr;  // on_group_events' loop
  std::vector<Call*> probing_;
  std::string leader_;
  std::string sticky_;
  std::size_t rotation_ = 0;
  std::uint64_t send_seq_ = 0;
  // The cluster this client talks to: given, or fixed by the first member to answer.
  std::uint64_t cluster_id_ = 0;
  std::string cluster_from_;
  // Every endpoint answered, failed or ran out of time before the first request (or a cluster
  // id was given); conflict_ is set when their answers named two clusters.
  bool settled_ = false;
  Status conflict_;
};

}  // namespace kvc::client
