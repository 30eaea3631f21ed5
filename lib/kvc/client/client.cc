#include "kvc/client/client.h"

#include <uv.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "kvc/common/version.h"
#include "kvc/net/connection.h"
#include "kvc/wire/auth.h"

namespace kvc::client {

bool is_write(wire::Op op) {
  switch (op) {
    case wire::Op::kPut:
    case wire::Op::kDelete:
    case wire::Op::kCas:
    case wire::Op::kMemberAdd:
    case wire::Op::kMemberPromote:
    case wire::Op::kMemberRemove:
    case wire::Op::kTransferLeader: return true;
    default: return false;
  }
}

namespace {

bool is_stream_op(wire::Op op) {
  return op == wire::Op::kWatch || op == wire::Op::kWatchLeader || op == wire::Op::kSnapshotSave;
}

wire::Response failure(std::uint64_t id, Code code, std::string message) {
  wire::Response r;
  r.id = id;
  r.code = code;
  r.message = std::move(message);
  return r;
}

constexpr std::uint64_t kRetryBackoffMs = 25;
constexpr std::uint64_t kMaxRetryBackoffMs = 250;
constexpr std::uint64_t kReconnectBackoffMs = 100;

}  // namespace

class Client::Impl {
 public:
  explicit Impl(ClientOptions options) : options_(std::move(options)) {}

  Status start() {
    if (options_.endpoints.empty()) return Status::invalid_argument("no endpoints given");
    if (!options_.secret.empty() && !options_.secret_file.empty()) {
      return Status::invalid_argument("give the shared secret or a secret file, not both");
    }
    if (!options_.secret_file.empty()) {
      Result<std::string> secret = wire::load_secret_file(options_.secret_file);
      if (!secret.ok()) return secret.status();
      options_.secret = std::move(*secret);
    }
    uv_loop_init(&loop_);
    loop_.data = this;
    uv_async_init(&loop_, &wake_, [](uv_async_t* a) { static_cast<Impl*>(a->data)->drain(); });
    wake_.data = this;
    thread_ = std::thread([this] { uv_run(&loop_, UV_RUN_DEFAULT); });
    return Status();
  }

  ~Impl() {
    if (!thread_.joinable()) return;
    {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
    }
    uv_async_send(&wake_);
    thread_.join();
    uv_loop_close(&loop_);
  }

  void submit(wire::Request req, Callback done, StreamCallback on_item, CallOptions opts,
              std::uint64_t id) {
    auto call = std::make_unique<Call>();
    call->req = std::move(req);
    call->req.id = id;
    call->done = std::move(done);
    call->on_item = std::move(on_item);
    call->opts = std::move(opts);
    const std::uint64_t timeout =
        call->opts.timeout_ms != 0 ? call->opts.timeout_ms : options_.timeout_ms;
    if (call->req.timeout_ms == 0) call->req.timeout_ms = timeout;
    call->timeout_ms = timeout;
    {
      std::lock_guard<std::mutex> lock(mu_);
      incoming_.push_back(std::move(call));
    }
    uv_async_send(&wake_);
  }

  void cancel(std::uint64_t id) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancels_.push_back(id);
    }
    uv_async_send(&wake_);
  }

  std::uint64_t next_id() { return next_id_.fetch_add(1) + 1; }
  bool on_loop_thread() const { return std::this_thread::get_id() == thread_.get_id(); }

  std::string leader_address() const {
    std::lock_guard<std::mutex> lock(mu_);
    return leader_copy_;
  }

 private:
  struct Call {
    wire::Request req;
    Callback done;
    StreamCallback on_item;
    CallOptions opts;
    std::uint64_t timeout_ms = 0;
    std::uint64_t deadline = 0;  // uv_now() ms
    uv_timer_t timer{};
    bool timer_open = false;
    bool sent = false;       // handed to a connection: a write's outcome may now be unknown
    bool in_backoff = false;
    bool finished = false;
    bool got_first = false;  // a stream has started answering: its deadline no longer applies
    std::uint64_t backoff_ms = kRetryBackoffMs;
    std::string member;      // address it was sent to / queued for
    std::shared_ptr<net::Connection> conn;
    std::string last_error;
    int attempts = 0;
    std::set<std::string> refused_by;  // members whose handshake refused this client
  };

  struct Member {
    net::Address address;
    std::vector<std::shared_ptr<net::Connection>> conns;
    bool connecting = false;
    int pending_connects = 0;
    std::uint64_t retry_after = 0;  // uv_now() before which no new connection is tried
    std::vector<Call*> waiting;     // queued until a connection is up
    std::size_t round_robin = 0;
    std::string last_error;
  };

  // Runs on the loop thread: picks up new calls and cancellations.
  void drain() {
    std::vector<std::unique_ptr<Call>> calls;
    std::vector<std::uint64_t> cancels;
    bool stopping;
    {
      std::lock_guard<std::mutex> lock(mu_);
      calls.swap(incoming_);
      cancels.swap(cancels_);
      stopping = stopping_;
    }
    if (stopping) {
      shutdown();
      for (auto& c : calls) {
        Callback cb = std::move(c->done);
        if (cb) cb(failure(c->req.id, Code::kShuttingDown, "client closed"));
      }
      return;
    }
    for (auto& owned : calls) {
      Call* c = owned.release();
      calls_[c->req.id] = c;
      uv_timer_init(&loop_, &c->timer);
      c->timer.data = c;
      c->timer_open = true;
      c->deadline = uv_now(&loop_) + c->timeout_ms;
      arm_timer(c, c->timeout_ms);
      dispatch(c);
    }
    for (std::uint64_t id : cancels) {
      auto it = calls_.find(id);
      if (it == calls_.end()) continue;
      Call* c = it->second;
      if (c->conn && !c->conn->closed()) {
        std::string out;
        wire::append_request(out, {.id = next_id(), .op = wire::Op::kWatchCancel,
                                   .watch_id = c->req.id});
        c->conn->send(out);
      }
      finish(c, std::nullopt);
    }
  }

  void arm_timer(Call* c, std::uint64_t ms) {
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* t) {
          Call* call = static_cast<Call*>(t->data);
          static_cast<Impl*>(t->loop->data)->on_timer(call);
        },
        ms, 0);
  }

  void on_timer(Call* c) {
    if (c->finished) return;
    if (uv_now(&loop_) >= c->deadline && !c->got_first) {
      expire(c);
      return;
    }
    if (c->in_backoff) {
      c->in_backoff = false;
      arm_timer(c, c->deadline > uv_now(&loop_) ? c->deadline - uv_now(&loop_) : 0);
      dispatch(c);
    }
  }

  void expire(Call* c) {
    if (c->sent && is_write(c->req.op)) {
      finish(c, failure(c->req.id, Code::kTimeout,
                        "no answer within " + std::to_string(c->timeout_ms) + " ms from " +
                            c->member + ": the request may or may not have been applied"));
    } else {
      std::string why = c->last_error.empty() ? "" : " (last error: " + c->last_error + ")";
      finish(c, failure(c->req.id, c->sent ? Code::kTimeout : Code::kUnavailable,
                        (c->sent ? "no answer within " : "no member answered within ") +
                            std::to_string(c->timeout_ms) + " ms" + why));
    }
  }

  // Completes a call: delivers `r` (unless nullopt) and releases it.
  void finish(Call* c, std::optional<wire::Response> r) {
    if (c->finished) return;
    c->finished = true;
    calls_.erase(c->req.id);
    if (c->conn) {
      auto& by_conn = sent_on_[c->conn.get()];
      by_conn.erase(c->req.id);
    }
    if (!c->member.empty()) {
      auto m = members_.find(c->member);
      if (m != members_.end()) {
        auto& w = m->second.waiting;
        w.erase(std::remove(w.begin(), w.end(), c), w.end());
      }
    }
    if (r) {
      if (c->on_item) {
        r->done = true;
        c->on_item(*r);
      } else if (c->done) {
        c->done(std::move(*r));
      }
    }
    uv_timer_stop(&c->timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&c->timer),
             [](uv_handle_t* h) { delete static_cast<Call*>(h->data); });
  }

  std::string choose_member(const Call* c) {
    if (c->opts.target) return c->opts.target->to_string();
    if (c->req.serializable && !sticky_.empty()) return sticky_;
    if (!leader_.empty()) return leader_;
    const net::Address& a = options_.endpoints[rotation_ % options_.endpoints.size()];
    return a.to_string();
  }

  Member& member(const std::string& addr) {
    auto it = members_.find(addr);
    if (it != members_.end()) return it->second;
    Member m;
    Result<net::Address> a = net::parse_address(addr);
    if (a.ok()) m.address = *a;
    return members_.emplace(addr, std::move(m)).first->second;
  }

  void dispatch(Call* c) {
    if (c->finished) return;
    ++c->attempts;
    const std::string addr = choose_member(c);
    Member& m = member(addr);
    c->member = addr;
    std::shared_ptr<net::Connection> conn = pick_connection(m);
    if (conn) {
      send_on(c, conn);
      return;
    }
    m.waiting.push_back(c);
    connect_member(addr);
  }

  std::shared_ptr<net::Connection> pick_connection(Member& m) {
    m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                                 [](const auto& c) { return c->closed(); }),
                  m.conns.end());
    if (m.conns.size() < options_.connections_per_member) return nullptr;
    return m.conns[m.round_robin++ % m.conns.size()];
  }

  void send_on(Call* c, const std::shared_ptr<net::Connection>& conn) {
    c->conn = conn;
    c->sent = true;
    sent_on_[conn.get()][c->req.id] = c;
    std::string out;
    wire::append_request(out, c->req);
    conn->send(out);
  }

  void connect_member(const std::string& addr) {
    Member& m = member(addr);
    const std::size_t want = options_.connections_per_member;
    if (m.connecting || m.conns.size() >= want) return;
    if (uv_now(&loop_) < m.retry_after) {
      // Recently failed: let the waiting calls try elsewhere after a back-off.
      fail_waiting(addr, m.last_error.empty() ? "recently unreachable" : m.last_error);
      return;
    }
    m.connecting = true;
    m.pending_connects = static_cast<int>(want - m.conns.size());
    const int n = m.pending_connects;
    for (int i = 0; i < n; ++i) {
      net::connect(&loop_, m.address,
                   {.max_frame_bytes = options_.max_frame_bytes,
                    .pause_reading_above = 64u << 20,
                    .close_above = 1u << 30},
                   options_.connect_timeout_ms,
                   [this, addr](Result<std::shared_ptr<net::Connection>> r) {
                     on_connected(addr, std::move(r));
                   });
    }
  }

  void on_connected(const std::string& addr, Result<std::shared_ptr<net::Connection>> r) {
    if (stopping_loop_) {
      if (r.ok()) (*r)->close(Status::shutting_down("client closed"));
      return;
    }
    if (!r.ok()) {
      connect_failed(addr, r.status());
      return;
    }
    std::shared_ptr<net::Connection> conn = std::move(*r);
    conn->start(
        [this, addr](net::Connection& c, std::string_view payload) { on_frame(addr, c, payload); },
        [this, addr](net::Connection& c, const Status& why) { on_closed(addr, c, why); });
    wire::Hello hello{.role = wire::Role::kClient,
                      .cluster_id = options_.cluster_id,
                      .name = options_.name,
                      .software_version = kvc::version()};
    if (!options_.secret.empty()) {
      Result<std::string> nonce = wire::make_nonce();
      if (!nonce.ok()) {
        conn->close(nonce.status());
        connect_failed(addr, nonce.status());
        return;
      }
      hello.nonce = std::move(*nonce);
    }
    std::string out;
    wire::append_hello(out, hello);
    conn->send(out);
    if (!options_.secret.empty()) {
      // Requests wait for the member's proof (one round trip); see on_auth_reply.
      authenticating_[conn.get()] = {addr, conn, std::move(hello.nonce)};
      return;
    }
    connection_ready(addr, conn);
  }

  // A connection attempt to `addr` failed (before it could carry requests).
  void connect_failed(const std::string& addr, const Status& why) {
    Member& m = member(addr);
    if (--m.pending_connects == 0) m.connecting = false;
    m.last_error = why.message();
    if (m.pending_connects == 0 && !m.conns.empty()) {
      send_waiting(m);  // another of this round's connections is up
      return;
    }
    if (m.pending_connects == 0 && m.conns.empty()) {
      m.retry_after = uv_now(&loop_) + kReconnectBackoffMs;
      if (leader_ == addr) set_leader("");
      if (why.code() == Code::kFailedPrecondition) {
        // Authentication or cluster mismatch: a configuration error that retrying this member
        // cannot fix. Other members may be configured right; once as many members as there
        // are endpoints refused, the caller sees why (not a timeout or "unavailable").
        std::vector<Call*> waiting;
        waiting.swap(m.waiting);
        ++rotation_;
        for (Call* c : waiting) {
          if (c->finished) continue;
          c->refused_by.insert(addr);
          c->last_error = addr + ": " + why.message();
          if (c->opts.target || c->refused_by.size() >= options_.endpoints.size()) {
            finish(c, failure(c->req.id, why.code(), c->last_error));
          } else {
            retry_later(c);
          }
        }
        return;
      }
      fail_waiting(addr, m.last_error);
    }
  }

  // The member's hello reply on a connection that is authenticating: check its proof, answer
  // with ours, and let the queued requests go right behind it.
  void on_auth_reply(const std::string& addr, net::Connection& conn, const wire::HelloReply& hr) {
    auto it = authenticating_.find(&conn);
    Pending p = std::move(it->second);
    authenticating_.erase(it);
    if (hr.code != Code::kOk) {
      const Status why(hr.code, addr + " refused the connection: " + hr.message);
      conn.close(why);
      connect_failed(addr, Status(hr.code, "refused the connection: " + hr.message));
      return;
    }
    wire::AuthProof answer;
    Status proved =
        wire::check_member_proof(options_.secret, wire::Role::kClient, p.nonce, hr, &answer);
    std::string out;
    wire::append_auth_proof(out, answer);
    p.conn->send(out);
    if (!proved.ok()) {
      p.conn->close_after_flush(proved);
      connect_failed(addr, proved);
      return;
    }
    connection_ready(addr, p.conn);
  }

  void connection_ready(const std::string& addr, const std::shared_ptr<net::Connection>& conn) {
    Member& m = member(addr);
    if (--m.pending_connects == 0) m.connecting = false;
    m.conns.push_back(conn);
    if (m.pending_connects > 0) return;
    send_waiting(m);
  }

  // Every connection attempt to `m` has finished and some succeeded: send what waits.
  void send_waiting(Member& m) {
    std::vector<Call*> waiting;
    waiting.swap(m.waiting);
    for (Call* c : waiting) {
      if (c->finished) continue;
      std::shared_ptr<net::Connection> pick = pick_connection(m);
      if (!pick) pick = m.conns.front();
      send_on(c, pick);
    }
  }

  // Calls queued for `addr` could not be sent there: try elsewhere after a back-off.
  void fail_waiting(const std::string& addr, const std::string& why) {
    Member& m = member(addr);
    std::vector<Call*> waiting;
    waiting.swap(m.waiting);
    ++rotation_;
    if (sticky_ == addr) sticky_.clear();
    for (Call* c : waiting) {
      if (c->finished) continue;
      c->last_error = addr + ": " + why;
      if (c->opts.target) {
        finish(c, failure(c->req.id, Code::kUnavailable, c->last_error));
        continue;
      }
      retry_later(c);
    }
  }

  void retry_later(Call* c) {
    c->conn.reset();
    c->in_backoff = true;
    const std::uint64_t now = uv_now(&loop_);
    const std::uint64_t wait = std::min(c->backoff_ms, c->deadline > now ? c->deadline - now : 0);
    c->backoff_ms = std::min(c->backoff_ms * 2, kMaxRetryBackoffMs);
    arm_timer(c, wait);
  }

  void on_closed(const std::string& addr, net::Connection& conn, const Status& why) {
    if (stopping_loop_) return;
    if (auto a = authenticating_.find(&conn); a != authenticating_.end()) {
      authenticating_.erase(a);
      connect_failed(
          addr, Status::unavailable("connection closed during authentication: " + why.message()));
      return;
    }
    Member& m = member(addr);
    m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                                 [&](const auto& c) { return c.get() == &conn; }),
                  m.conns.end());
    m.last_error = why.message();
    auto it = sent_on_.find(&conn);
    if (it == sent_on_.end()) return;
    std::map<std::uint64_t, Call*> lost;
    lost.swap(it->second);
    sent_on_.erase(it);
    if (leader_ == addr) set_leader("");
    for (auto& [id, c] : lost) {
      if (c->finished) continue;
      c->conn.reset();
      if (is_stream_op(c->req.op)) {
        finish(c, failure(id, Code::kUnavailable, "connection to " + addr + " lost: " +
                                                      why.message()));
      } else if (is_write(c->req.op)) {
        finish(c, failure(id, Code::kTimeout,
                          "connection to " + addr + " lost after the request was sent (" +
                              why.message() + "): it may or may not have been applied"));
      } else {
        c->last_error = addr + ": " + why.message();
        if (c->opts.target) {
          finish(c, failure(id, Code::kUnavailable, c->last_error));
        } else {
          ++rotation_;
          retry_later(c);
        }
      }
    }
  }

  void on_frame(const std::string& addr, net::Connection& conn, std::string_view payload) {
    Result<wire::Envelope> env = wire::open_envelope(payload);
    if (!env.ok()) {
      conn.close(env.status().with_context("bad frame from member"));
      return;
    }
    if (env->kind == wire::FrameKind::kHelloReply) {
      Result<wire::HelloReply> hr = wire::decode_hello_reply(*env->body);
      if (!hr.ok()) {
        conn.close(hr.status());
      } else if (authenticating_.count(&conn) != 0) {
        on_auth_reply(addr, conn, *hr);
      } else if (hr->code != Code::kOk) {
        // The member refused us before reading any request: nothing sent on it was applied.
        refuse_connection(addr, conn, Status(hr->code, addr + " refused the connection: " +
                                                           hr->message));
      }
      return;
    }
    if (env->kind != wire::FrameKind::kResponse || authenticating_.count(&conn) != 0) {
      conn.close(Status::corruption("unexpected frame kind from member"));
      return;
    }
    Result<wire::Response> r = wire::decode_response(*env->body);
    if (!r.ok()) {
      conn.close(r.status());
      return;
    }
    if (!r->leader_client_addr.empty() && r->code != Code::kNotLeader) {
      // Any answer naming a leader refreshes our guess.
      if (r->leader_client_addr != leader_) set_leader(r->leader_client_addr);
    }
    auto it = calls_.find(r->id);
    if (it == calls_.end()) return;  // late answer to a call that already timed out
    Call* c = it->second;
    on_response(addr, c, std::move(*r));
  }

  void refuse_connection(const std::string& addr, net::Connection& conn, const Status& why) {
    auto it = sent_on_.find(&conn);
    std::map<std::uint64_t, Call*> unsent;
    if (it != sent_on_.end()) {
      unsent.swap(it->second);
      sent_on_.erase(it);
    }
    Member& m = member(addr);
    m.retry_after = uv_now(&loop_) + kReconnectBackoffMs;
    m.last_error = why.message();
    conn.close(why);
    for (auto& [id, c] : unsent) {
      if (c->finished) continue;
      c->sent = false;
      c->conn.reset();
      c->last_error = why.message();
      if (c->opts.target || why.code() == Code::kFailedPrecondition) {
        finish(c, failure(id, why.code(), why.message()));
      } else {
        ++rotation_;
        retry_later(c);
      }
    }
  }

  void on_response(const std::string& addr, Call* c, wire::Response r) {
    const bool follow = !c->opts.target;
    if (follow && !c->got_first &&
        (r.code == Code::kNotLeader || r.code == Code::kUnavailable ||
         r.code == Code::kShuttingDown)) {
      // Not applied: go where the member points, or wait for an election.
      sent_on_[c->conn.get()].erase(c->req.id);
      c->sent = false;
      c->last_error = addr + ": " + r.message;
      if (r.code == Code::kNotLeader && !r.leader_client_addr.empty() &&
          r.leader_client_addr != addr) {
        set_leader(r.leader_client_addr);
        c->conn.reset();
        dispatch(c);
      } else {
        if (leader_ == addr) set_leader("");
        ++rotation_;
        retry_later(c);
      }
      return;
    }
    c->got_first = true;
    if (c->on_item) {
      const bool last = r.done || r.code != Code::kOk;
      if (last) {
        finish(c, std::move(r));
        return;
      }
      if (!c->on_item(r)) cancel_now(c);
      return;
    }
    if (r.code == Code::kOk && c->req.serializable) sticky_ = addr;
    finish(c, std::move(r));
  }

  void cancel_now(Call* c) {
    if (c->conn && !c->conn->closed()) {
      std::string out;
      wire::append_request(out, {.id = next_id(), .op = wire::Op::kWatchCancel,
                                 .watch_id = c->req.id});
      c->conn->send(out);
    }
    c->on_item = nullptr;
    finish(c, std::nullopt);
  }

  void set_leader(const std::string& addr) {
    leader_ = addr;
    std::lock_guard<std::mutex> lock(mu_);
    leader_copy_ = addr;
  }

  void shutdown() {
    stopping_loop_ = true;
    std::vector<Call*> all;
    for (auto& [id, c] : calls_) all.push_back(c);
    for (Call* c : all) finish(c, failure(c->req.id, Code::kShuttingDown, "client closed"));
    for (auto& [addr, m] : members_) {
      for (auto& conn : m.conns) conn->close(Status::shutting_down("client closed"));
      m.conns.clear();
    }
    for (auto& [ptr, p] : authenticating_) p.conn->close(Status::shutting_down("client closed"));
    authenticating_.clear();
    uv_close(reinterpret_cast<uv_handle_t*>(&wake_), nullptr);
  }

  ClientOptions options_;
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
  std::map<std::string, Member> members_;
  std::unordered_map<std::uint64_t, Call*> calls_;
  std::unordered_map<const net::Connection*, std::map<std::uint64_t, Call*>> sent_on_;
  // Connections whose hello is out and whose member has not proved the secret yet. They are
  // not in Member::conns, so no request is sent on them.
  struct Pending {
    std::string addr;
    std::shared_ptr<net::Connection> conn;
    std::string nonce;
  };
  std::unordered_map<const net::Connection*, Pending> authenticating_;
  std::string leader_;
  std::string sticky_;
  std::size_t rotation_ = 0;
};

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Client::~Client() = default;

Result<std::unique_ptr<Client>> Client::open(ClientOptions options) {
  auto impl = std::make_unique<Impl>(std::move(options));
  KVC_RETURN_IF_ERROR(impl->start());
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

void Client::call(wire::Request req, Callback done, CallOptions options) {
  impl_->submit(std::move(req), std::move(done), nullptr, std::move(options), impl_->next_id());
}

std::uint64_t Client::stream(wire::Request req, StreamCallback on_item, CallOptions options) {
  const std::uint64_t id = impl_->next_id();
  impl_->submit(std::move(req), nullptr, std::move(on_item), std::move(options), id);
  return id;
}

void Client::cancel(std::uint64_t stream_id) { impl_->cancel(stream_id); }

wire::Response Client::call_sync(wire::Request req, CallOptions options) {
  KVC_CHECK(!impl_->on_loop_thread(),
            "synchronous client calls from a client callback would deadlock");
  std::promise<wire::Response> p;
  std::future<wire::Response> f = p.get_future();
  call(std::move(req), [&p](wire::Response r) { p.set_value(std::move(r)); }, std::move(options));
  return f.get();
}

wire::Response Client::put(std::string key, std::string value) {
  return call_sync({.op = wire::Op::kPut, .key = std::move(key), .value = std::move(value)});
}

wire::Response Client::get(std::string key, bool serializable) {
  return call_sync({.op = wire::Op::kGet, .key = std::move(key), .serializable = serializable});
}

wire::Response Client::del(std::string key) {
  return call_sync({.op = wire::Op::kDelete, .key = std::move(key)});
}

wire::Response Client::cas(std::string key, std::string value, std::uint64_t expect_revision) {
  return call_sync({.op = wire::Op::kCas, .key = std::move(key), .value = std::move(value),
                    .expect_revision = expect_revision});
}

std::string Client::leader_address() const { return impl_->leader_address(); }

}  // namespace kvc::client
