#include "kvc/client/client.h"

#include <uv.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <set>
#include <thread>
#include <unordered_map>

#include "kvc/common/text.h"
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
    case wire::Op::kMemberUpdate:
    case wire::Op::kTransferLeader:
      return true;
    default:
      return false;
  }
}

namespace {

constexpr std::uint64_t kRetryBackoffMs = 25;
constexpr std::uint64_t kMaxRetryBackoffMs = 250;
// A member whose connection attempt failed is not dialled again before this.
constexpr std::uint64_t kReconnectBackoffMs = 100;
// A member that did not answer a hello within a call's budget is tried last for this long.
constexpr std::uint64_t kSuspectMs = 10000;
// A member that refused this client for good (not a kvc member, another cluster, auth) is asked
// again after this long: its configuration may have been fixed.
constexpr std::uint64_t kRefusedRecheckMs = 5000;
constexpr std::uint64_t kMinHelloMs = 250;
constexpr std::uint64_t kMaxHelloMs = 1000;
constexpr std::uint64_t kMinReadAttemptMs = 250;
constexpr std::uint64_t kMaxReadAttemptMs = 2000;
constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

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

// Bytes from a peer that may not speak kvc, for a message: printable ASCII as is.
std::string printable(const std::string& bytes) {
  std::string out;
  for (const char ch : bytes) {
    const auto u = static_cast<unsigned char>(ch);
    if (u >= 0x20 && u < 0x7f && ch != '"' && ch != '\\') {
      out.push_back(ch);
    } else {
      char buf[5];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

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

}  // namespace

std::uint64_t hello_budget_ms(std::uint64_t call_timeout_ms) {
  return std::clamp<std::uint64_t>(call_timeout_ms / 10, kMinHelloMs, kMaxHelloMs);
}

std::uint64_t read_attempt_ms(std::uint64_t call_timeout_ms) {
  return std::clamp<std::uint64_t>(call_timeout_ms / 3, kMinReadAttemptMs, kMaxReadAttemptMs);
}

Result<std::vector<net::Address>> parse_endpoints(std::string_view text) {
  std::vector<net::Address> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t comma = text.find(',', pos);
    if (comma == std::string_view::npos) comma = text.size();
    std::string_view item = text.substr(pos, comma - pos);
    const std::string given(item);
    if (item.substr(0, 7) == "http://") {
      // etcd's habit: the scheme says nothing here (the client protocol is not HTTP).
      item.remove_prefix(7);
      if (!item.empty() && item.back() == '/') item.remove_suffix(1);
    } else if (item.substr(0, 8) == "https://") {
      return Status::invalid_argument(
          "endpoint '" + given +
          "': kvc's client protocol has no TLS yet; give HOST:PORT of a member's "
          "--listen-client (authenticate with --secret-file)");
    } else if (const std::size_t s = item.find("://"); s != std::string_view::npos) {
      return Status::invalid_argument("endpoint '" + given + "': unknown scheme '" +
                                      std::string(item.substr(0, s)) + "'; give HOST:PORT");
    }
    Result<net::Address> a = net::parse_address(item);
    if (!a.ok()) return a.status();
    out.push_back(std::move(*a));
    pos = comma + 1;
  }
  return out;
}

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
    for (const net::Address& a : options_.endpoints) {
      const std::string key = a.to_string();
      if (std::find(endpoint_keys_.begin(), endpoint_keys_.end(), key) != endpoint_keys_.end()) {
        continue;
      }
      endpoint_keys_.push_back(key);
      Member& m = members_[key];
      m.key = key;
      m.address = a;
      m.endpoint = true;
    }
    cluster_id_ = options_.cluster_id;
    // A client told its cluster need not compare the endpoints' answers first.
    settled_ = options_.cluster_id != 0;
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
    call->member_timeout_ms = call->req.timeout_ms;
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
    std::uint64_t backoff_ms = kRetryBackoffMs;
    // Members this call gave up on in the current round (hung, refused, no answer), and why;
    // the round starts again after a back-off.
    std::set<std::string> skip;
    std::map<std::string, std::string> why;
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
    std::string nonce;
    OneShot* timer = nullptr;  // connect_timeout_ms from the start of the attempt
  };

  std::uint64_t now() { return uv_now(&loop_); }
  std::uint64_t budget(const Call* c) const { return hello_budget_ms(c->timeout_ms); }
  bool suspect(const Member& m) { return now() < m.suspect_until; }
  bool refused_now(const Member& m) { return !m.refused.ok() && now() < m.refused_until; }

  // ---------------------------------------------------------------------------------------
  // Calls in and out

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
      c->deadline = now() + c->timeout_ms;
      if (!c->opts.leader_hint.empty() && member_for(c->opts.leader_hint) != nullptr) {
        set_leader(c->opts.leader_hint);
      }
      dispatch(c);
    }
    for (std::uint64_t id : cancels) {
      auto it = calls_.find(id);
      if (it == calls_.end()) continue;
      Call* c = it->second;
      send_watch_cancel(c);
      finish(c, std::nullopt);
    }
  }

  void send_watch_cancel(Call* c) {
    if (c->stage != Stage::kSent || !c->conn || c->conn->closed()) return;
    std::string out;
    wire::append_request(out,
                         {.id = next_id(), .op = wire::Op::kWatchCancel, .watch_id = c->req.id});
    c->conn->send(out);
  }

  void arm(Call* c) {
    if (c->finished) return;
    std::uint64_t at = c->got_first ? kNever : c->deadline;
    if (c->stage_until != 0 && c->stage != Stage::kNew) at = std::min(at, c->stage_until);
    if (at == kNever) {
      uv_timer_stop(&c->timer);
      return;
    }
    const std::uint64_t t = now();
    uv_timer_start(
        &c->timer,
        [](uv_timer_t* h) {
          static_cast<Impl*>(h->loop->data)->on_timer(static_cast<Call*>(h->data));
        },
        at > t ? at - t : 0, 0);
  }

  void on_timer(Call* c) {
    if (c->finished) return;
    const std::uint64_t t = now();
    if (!c->got_first && t >= c->deadline) {
      expire(c);
      return;
    }
    const bool due = c->stage_until != 0 && t >= c->stage_until;
    if (due) {
      switch (c->stage) {
        case Stage::kBackoff:
          dispatch(c);
          return;
        case Stage::kWaiting:
          waiting_overdue(c);
          return;
        case Stage::kProbing:
          probing_overdue(c);
          return;
        case Stage::kSent:
          read_overdue(c);
          return;
        case Stage::kNew:
          break;
      }
    }
    arm(c);
  }

  // Why the call could not be served, member by member, for its final message.
  std::string reasons(const Call* c) const {
    std::string out;
    for (const auto& [member, why] : c->why) {
      out += out.empty() ? "" : "; ";
      out += why.rfind(member, 0) == 0 ? why : member + ": " + why;
    }
    return out;
  }

  void expire(Call* c) {
    const std::string t = std::to_string(c->timeout_ms) + " ms";
    if (c->stage == Stage::kSent && is_write(c->req.op)) {
      finish(c, failure(c->req.id, Code::kTimeout,
                        "no answer within " + t + " from " + c->member +
                            ": the request may or may not have been applied"));
    } else if (c->stage == Stage::kSent) {
      finish(c, failure(c->req.id, Code::kTimeout, "no answer within " + t + " from " + c->member));
    } else {
      // What is known of the endpoints this call did not get to try itself.
      for (const std::string& k : endpoint_keys_) {
        const Member& m = members_[k];
        if (c->why.count(k) != 0) continue;
        if (suspect(m)) {
          c->why[k] = "no answer to the hello in time";
        } else if (!m.last_error.empty()) {
          c->why[k] = m.last_error;
        }
      }
      const std::string why = reasons(c);
      finish(c, failure(c->req.id, Code::kUnavailable,
                        "no member answered within " + t + (why.empty() ? "" : " (" + why + ")")));
    }
  }

  // Takes the call out of the list its stage put it in.
  void leave_stage(Call* c) {
    switch (c->stage) {
      case Stage::kWaiting: {
        auto m = members_.find(c->member);
        if (m != members_.end()) {
          auto& w = m->second.waiting;
          w.erase(std::remove(w.begin(), w.end(), c), w.end());
        }
        break;
      }
      case Stage::kProbing:
        probing_.erase(std::remove(probing_.begin(), probing_.end(), c), probing_.end());
        break;
      case Stage::kSent:
        if (c->conn) {
          auto s = sent_on_.find(c->conn.get());
          if (s != sent_on_.end()) s->second.erase(c->req.id);
        }
        break;
      case Stage::kNew:
      case Stage::kBackoff:
        break;
    }
    c->stage = Stage::kNew;
    c->stage_until = 0;
    c->conn.reset();
  }

  // Completes a call: delivers `r` (unless nullopt) and releases it.
  void finish(Call* c, std::optional<wire::Response> r) {
    if (c->finished) return;
    leave_stage(c);
    c->finished = true;
    calls_.erase(c->req.id);
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

  // ---------------------------------------------------------------------------------------
  // Choosing a member

  Member* member_for(const std::string& key) {
    auto it = members_.find(key);
    if (it != members_.end()) return &it->second;
    Result<net::Address> a = net::parse_address(key);
    if (!a.ok()) return nullptr;
    Member& m = members_[key];
    m.key = key;
    m.address = *a;
    return &m;
  }

  // A member this call may use now without waiting out a recent failure.
  bool usable(const Call* c, const std::string& key) {
    if (key.empty() || c->skip.count(key) != 0) return false;
    Member* m = member_for(key);
    if (m == nullptr || refused_now(*m) || suspect(*m)) return false;
    if (m->conns.empty() && m->handshakes == 0 && now() < m->retry_after) return false;
    return true;
  }

  // The member to send to or wait for: the leader, else a connected member; "" when the call
  // should instead wait for the first endpoint to answer.
  std::string choose(const Call* c) {
    if (usable(c, leader_)) return leader_;
    if (c->req.serializable && usable(c, sticky_) && !members_[sticky_].conns.empty()) {
      return sticky_;
    }
    const std::size_t n = endpoint_keys_.size();
    for (std::size_t i = 0; i < n; ++i) {
      const std::string& k = endpoint_keys_[(rotation_ + i) % n];
      if (usable(c, k) && !members_[k].conns.empty()) return k;
    }
    for (auto& [k, m] : members_) {
      if (!m.endpoint && usable(c, k) && !m.conns.empty()) return k;
    }
    return "";
  }

  void dispatch(Call* c) {
    if (c->finished) return;
    leave_stage(c);
    c->member.clear();
    if (c->opts.target) {
      dispatch_target(c);
      return;
    }
    if (!settled_) {
      start_probes();
      if (!try_settle()) {
        wait_probing(c);
        return;
      }
    }
    if (!conflict_.ok()) {
      finish(c, failure(c->req.id, conflict_.code(), conflict_.message()));
      return;
    }
    for (std::size_t guard = 0; guard <= members_.size(); ++guard) {
      const std::string k = choose(c);
      if (k.empty()) break;
      Member& m = members_[k];
      if (!m.conns.empty()) {
        send_on(c, m);
        return;
      }
      // The leader, not connected yet: wait for its hello, within the budget.
      if (m.handshakes > 0 && now() >= m.handshake_since + budget(c)) {
        hello_overdue(c, m);
        continue;
      }
      if (m.handshakes == 0) start_handshake(m);
      if (m.handshakes == 0) {  // failed at once
        c->skip.insert(k);
        c->why[k] = m.last_error;
        continue;
      }
      wait_for(c, m);
      return;
    }
    // Nobody is connected: dial every endpoint and take the first that answers.
    start_probes();
    if (!any_handshake()) {
      if (Status why = hopeless(); !why.ok()) {
        finish(c, failure(c->req.id, why.code(), why.message()));
        return;
      }
      c->skip.clear();
      ++rotation_;
      retry_later(c);
      return;
    }
    wait_probing(c);
  }

  void dispatch_target(Call* c) {
    const std::string k = c->opts.target->to_string();
    Member* mp = member_for(k);
    if (mp == nullptr) {
      finish(c, failure(c->req.id, Code::kInvalidArgument, "bad target address " + k));
      return;
    }
    Member& m = *mp;
    if (refused_now(m)) {
      finish(c, failure(c->req.id, final_code(m.refused.code()), m.refused.message()));
      return;
    }
    if (!m.conns.empty()) {
      send_on(c, m);
      return;
    }
    if (m.handshakes == 0) {
      if (now() < m.retry_after) {
        finish(c, failure(c->req.id, Code::kUnavailable, k + ": " + m.last_error));
        return;
      }
      start_handshake(m);
      if (m.handshakes == 0) {
        finish(c, failure(c->req.id,
                          final_code(refused_now(m) ? m.refused.code() : Code::kUnavailable),
                          k + ": " + m.last_error));
        return;
      }
    }
    wait_for(c, m);
  }

  void wait_for(Call* c, Member& m) {
    c->stage = Stage::kWaiting;
    c->member = m.key;
    c->stage_until = std::max<std::uint64_t>(m.handshake_since + budget(c), now() + 1);
    m.waiting.push_back(c);
    arm(c);
  }

  void wait_probing(Call* c) {
    c->stage = Stage::kProbing;
    probing_.push_back(c);
    // Wake when the first handshake in progress runs past this call's budget.
    std::uint64_t until = kNever;
    for (auto& [k, m] : members_) {
      if (m.handshakes > 0 && !suspect(m)) {
        until = std::min(until, m.handshake_since + budget(c));
      }
    }
    c->stage_until = until == kNever ? 0 : std::max<std::uint64_t>(until, now() + 1);
    arm(c);
  }

  // The leader (or target) a call waits for did not answer its hello in time.
  void waiting_overdue(Call* c) {
    Member& m = members_[c->member];
    hello_overdue(c, m);
    if (c->opts.target) {
      leave_stage(c);
      finish(c, failure(c->req.id, Code::kUnavailable, reasons(c) + " (nothing was sent)"));
      return;
    }
    dispatch(c);
  }

  void hello_overdue(Call* c, Member& m) {
    c->skip.insert(m.key);
    c->why[m.key] = "no answer to the hello within " + std::to_string(budget(c)) + " ms";
    if (!suspect(m)) mark_suspect(m);
    ++rotation_;
  }

  void mark_suspect(Member& m) {
    m.suspect_until = now() + kSuspectMs;
    if (leader_ == m.key) set_leader("");
    if (sticky_ == m.key) sticky_.clear();
  }

  // Handshakes in progress ran past this call's budget: those members are hung, for now.
  void probing_overdue(Call* c) {
    for (auto& [k, m] : members_) {
      if (m.handshakes > 0 && !suspect(m) && now() >= m.handshake_since + budget(c)) {
        hello_overdue(c, m);
      }
    }
    wake_probing();
    if (!c->finished && c->stage == Stage::kProbing) arm(c);
  }

  // Probing calls look again: a member answered, one failed, or the endpoints settled.
  void wake_probing() {
    if (!settled_ && !try_settle()) return;
    std::vector<Call*> calls;
    calls.swap(probing_);
    for (Call* c : calls) {
      c->stage = Stage::kNew;
      dispatch(c);
    }
  }

  bool any_handshake() const {
    return std::any_of(members_.begin(), members_.end(),
                       [](const auto& kv) { return kv.second.handshakes > 0; });
  }

  // Dials every endpoint that has no connection and no attempt in progress.
  void start_probes() {
    for (const std::string& k : endpoint_keys_) {
      Member& m = members_[k];
      if (!m.conns.empty() || m.handshakes > 0 || refused_now(m) || now() < m.retry_after) {
        continue;
      }
      start_handshake(m);
    }
  }

  // Before the first request: has every endpoint answered, failed, or run out of time? Then
  // their answers are compared.
  bool try_settle() {
    if (settled_) return true;
    for (const std::string& k : endpoint_keys_) {
      Member& m = members_[k];
      if (m.conns.empty() && !refused_now(m) && !suspect(m) && m.handshakes > 0) return false;
    }
    settled_ = true;
    std::map<std::uint64_t, std::vector<std::string>> clusters;
    for (const std::string& k : endpoint_keys_) {
      const Member& m = members_[k];
      if (m.cluster_id != 0 && (!m.conns.empty() || m.other_cluster)) {
        clusters[m.cluster_id].push_back(k);
      }
    }
    if (clusters.size() > 1) {
      std::string msg =
          "the endpoints belong to " + std::to_string(clusters.size()) + " different clusters: ";
      std::size_t n = 0;
      for (const auto& [id, keys] : clusters) {
        if (n > 0) msg += n + 1 == clusters.size() ? " and " : ", ";
        ++n;
        msg += "cluster " + id_hex(id) + " (";
        for (std::size_t i = 0; i < keys.size(); ++i) msg += (i ? ", " : "") + keys[i];
        msg += ")";
      }
      conflict_ = Status::failed_precondition(msg + "; give the endpoints of one cluster");
    }
    return true;
  }

  // Why no endpoint can serve this client (each refused it for good), or ok.
  Status hopeless() {
    Code code = Code::kUnavailable;
    std::string msg;
    for (const std::string& k : endpoint_keys_) {
      Member& m = members_[k];
      if (!refused_now(m)) return Status();
      if (m.refused.code() == Code::kFailedPrecondition) code = Code::kFailedPrecondition;
      msg += (msg.empty() ? "" : "; ") + m.refused.message();
    }
    if (endpoint_keys_.size() > 1) msg = "no endpoint can serve this client: " + msg;
    return Status(code, msg);
  }

  // The code a call ends with when a member refused it for good: configuration errors stay
  // kFailedPrecondition (exit 1); "not a kvc member", "no such host" mean nothing could be
  // reached (kUnavailable).
  static Code final_code(Code refusal) {
    return refusal == Code::kFailedPrecondition ? Code::kFailedPrecondition : Code::kUnavailable;
  }

  void retry_later(Call* c) {
    leave_stage(c);
    c->stage = Stage::kBackoff;
    const std::uint64_t t = now();
    const std::uint64_t wait = std::min(c->backoff_ms, c->deadline > t ? c->deadline - t : 0);
    c->backoff_ms = std::min(c->backoff_ms * 2, kMaxRetryBackoffMs);
    c->stage_until = t + std::max<std::uint64_t>(wait, 1);
    arm(c);
  }

  // ---------------------------------------------------------------------------------------
  // Sending

  std::shared_ptr<net::Connection> pick_connection(Member& m) {
    m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                                 [](const auto& conn) { return conn->closed(); }),
                  m.conns.end());
    if (m.conns.empty()) return nullptr;
    return m.conns[m.round_robin++ % m.conns.size()];
  }

  void send_on(Call* c, Member& m) {
    std::shared_ptr<net::Connection> conn = pick_connection(m);
    if (!conn) {
      dispatch(c);
      return;
    }
    const std::size_t request_bytes = c->req.key.size() + c->req.value.size();
    if (m.max_request_bytes != 0 && request_bytes > m.max_request_bytes) {
      finish(c, failure(c->req.id, Code::kInvalidArgument,
                        "request of " + std::to_string(request_bytes) +
                            " bytes (key plus value) exceeds the limit of " +
                            std::to_string(m.max_request_bytes) + " bytes of member " + m.key +
                            " (kvc-node --max-request-bytes); nothing was sent"));
      return;
    }
    const std::uint64_t t = now();
    c->req.timeout_ms = std::min(c->member_timeout_ms, c->deadline > t ? c->deadline - t : 1);
    std::string out;
    wire::append_request(out, c->req);
    const std::size_t payload = out.size() - wire::kFrameHeaderBytes;
    if (m.max_frame_bytes != 0 && payload > m.max_frame_bytes) {
      finish(c, failure(c->req.id, Code::kInvalidArgument,
                        "request frame of " + std::to_string(payload) +
                            " bytes exceeds the limit of " + std::to_string(m.max_frame_bytes) +
                            " bytes of member " + m.key +
                            " (kvc-node --max-frame-bytes); nothing was sent"));
      return;
    }
    c->stage = Stage::kSent;
    c->member = m.key;
    c->conn = conn;
    c->sent_at = t;
    c->send_seq = ++send_seq_;
    c->frame_bytes = payload;
    const bool retry_elsewhere =
        !c->opts.target && !is_write(c->req.op) && !is_stream_op(c->req.op);
    c->stage_until = retry_elsewhere ? t + read_attempt_ms(c->timeout_ms) : 0;
    sent_on_[conn.get()][c->req.id] = c;
    conn->send(out);
    // More sockets, when asked for, join as they answer.
    if (m.conns.size() + static_cast<std::size_t>(m.handshakes) < options_.connections_per_member) {
      start_handshake(m);
    }
    arm(c);
  }

  // A read got no answer within its attempt budget: ask another member, and check whether
  // this one is alive.
  void read_overdue(Call* c) {
    Member& m = members_[c->member];
    const std::uint64_t since = c->sent_at;
    c->skip.insert(m.key);
    c->why[m.key] = "no answer within " + std::to_string(read_attempt_ms(c->timeout_ms)) + " ms";
    check_alive(m, since, budget(c));
    ++rotation_;
    dispatch(c);
  }

  // Opens another connection to `m`: if its hello is not answered within `budget_ms` while
  // nothing else came from `m` since `since`, `m` is hung and its connections are closed.
  void check_alive(Member& m, std::uint64_t since, std::uint64_t budget_ms) {
    if (m.check != nullptr) return;
    m.check_since = since;
    const std::string key = m.key;
    m.check = OneShot::start(&loop_, budget_ms, [this, key, budget_ms] {
      Member& mm = members_[key];
      mm.check = nullptr;
      if (mm.last_heard >= mm.check_since) return;  // it answered something meanwhile
      mark_suspect(mm);
      const Status why = Status::unavailable(
          key + " stopped answering (no answer to a new connection's hello within " +
          std::to_string(budget_ms) + " ms)");
      std::vector<std::shared_ptr<net::Connection>> conns;
      conns.swap(mm.conns);
      for (auto& conn : conns) conn->close(why);
    });
    start_handshake(m);
  }

  // ---------------------------------------------------------------------------------------
  // Connections

  void start_handshake(Member& m) {
    if (m.handshakes++ == 0) m.handshake_since = now();
    const std::string key = m.key;
    const std::uint64_t started = now();
    net::connect(&loop_, m.address,
                 {.max_frame_bytes = options_.max_frame_bytes,
                  .pause_reading_above = 64u << 20,
                  .close_above = 1u << 30},
                 options_.connect_timeout_ms,
                 [this, key, started](Result<std::shared_ptr<net::Connection>> r) {
                   on_connected(key, started, std::move(r));
                 });
  }

  void on_connected(const std::string& key, std::uint64_t started,
                    Result<std::shared_ptr<net::Connection>> r) {
    if (stopping_loop_) {
      if (r.ok()) (*r)->close(Status::shutting_down("client closed"));
      return;
    }
    Member& m = members_[key];
    if (!r.ok()) {
      // A name that does not exist is final (for now); anything else may pass.
      handshake_ended(m, nullptr, r.status(), r.status().code() == Code::kNotFound);
      return;
    }
    std::shared_ptr<net::Connection> conn = std::move(*r);
    conn->start(
        [this, key](net::Connection& c, std::string_view payload) { on_frame(key, c, payload); },
        [this, key](net::Connection& c, const Status& why) { on_closed(key, c, why); });
    wire::Hello hello{.role = wire::Role::kClient,
                      .cluster_id = options_.cluster_id,
                      .name = options_.name,
                      .software_version = kvc::version()};
    if (!options_.secret.empty()) {
      Result<std::string> nonce = wire::make_nonce();
      if (!nonce.ok()) {
        conn->close(nonce.status());
        handshake_ended(m, nullptr, nonce.status(), false);
        return;
      }
      hello.nonce = std::move(*nonce);
    }
    std::string out;
    wire::append_hello(out, hello);
    conn->send(out);
    Handshake& h = handshakes_[conn.get()];
    h.member = key;
    h.conn = conn;
    h.nonce = std::move(hello.nonce);
    const std::uint64_t spent = now() - started;
    const std::uint64_t limit = options_.connect_timeout_ms;
    net::Connection* ptr = conn.get();
    h.timer = OneShot::start(&loop_, limit > spent ? limit - spent : 1, [this, ptr, limit] {
      auto it = handshakes_.find(ptr);
      if (it == handshakes_.end()) return;
      it->second.timer = nullptr;
      fail_handshake(
          *ptr,
          Status::unavailable("no answer to the hello within " + std::to_string(limit) + " ms"),
          false);
    });
  }

  // Ends a handshake in failure: closes its connection and tells the member's waiters.
  void fail_handshake(net::Connection& conn, const Status& why, bool final,
                      bool other_cluster = false) {
    auto it = handshakes_.find(&conn);
    if (it == handshakes_.end()) return;
    Handshake h = std::move(it->second);
    handshakes_.erase(it);
    if (h.timer != nullptr) h.timer->cancel();
    conn.close_after_flush(why);  // a final auth frame, if any, still goes out
    Member& m = members_[h.member];
    m.other_cluster = m.other_cluster || other_cluster;
    handshake_ended(m, nullptr, why, final);
  }

  // One connection attempt to `m` ended: `conn` is ready, or it failed with `why` (`final`: the
  // member cannot serve this client, e.g. it is not a kvc member).
  void handshake_ended(Member& m, const std::shared_ptr<net::Connection>* conn, const Status& why,
                       bool final) {
    // With several attempts in progress, handshake_since stays the oldest one's start: the
    // others are judged a little early, never late.
    if (--m.handshakes <= 0) {
      m.handshakes = 0;
      m.handshake_since = 0;
    }
    if (conn != nullptr) {
      m.conns.push_back(*conn);
      m.refused = Status();
      m.other_cluster = false;
      m.suspect_until = 0;
      m.retry_after = 0;
      m.last_heard = now();
      if (m.check != nullptr) {
        m.check->cancel();
        m.check = nullptr;
      }
      std::vector<Call*> waiting;
      waiting.swap(m.waiting);
      for (Call* c : waiting) {
        if (c->finished) continue;
        c->stage = Stage::kNew;
        send_on(c, m);
      }
      // It answered after all: calls that gave up on it may use it.
      for (Call* c : probing_) c->skip.erase(m.key);
      wake_probing();
      return;
    }
    const std::string msg =
        why.message().rfind(m.key, 0) == 0 ? why.message() : m.key + ": " + why.message();
    m.last_error = msg;
    if (final) {
      m.refused = Status(why.code(), msg);
      m.refused_until = now() + kRefusedRecheckMs;
    } else {
      m.retry_after = now() + kReconnectBackoffMs;
    }
    if (m.conns.empty() && leader_ == m.key) set_leader("");
    if (m.conns.empty() && sticky_ == m.key) sticky_.clear();
    if (m.handshakes == 0 || final) {
      std::vector<Call*> waiting;
      waiting.swap(m.waiting);
      for (Call* c : waiting) {
        if (c->finished) continue;
        c->stage = Stage::kNew;
        c->skip.insert(m.key);
        c->why[m.key] = msg;
        if (c->opts.target) {
          finish(c, failure(c->req.id, final ? final_code(why.code()) : Code::kUnavailable, msg));
        } else {
          ++rotation_;
          dispatch(c);
        }
      }
    }
    wake_probing();
  }

  // A peer whose answer to the hello is not a kvc frame.
  Status not_kvc(const std::string& key, const net::Connection& conn, const std::string& detail) {
    std::string msg = key + " is not a kvc member (" + detail + ")";
    const std::string& first = conn.first_bytes();
    if (first.rfind("HTTP/", 0) == 0) {
      msg +=
          ": it answered in HTTP; is this the --listen-http port? clients talk to a member's "
          "--listen-client address";
    } else if (!first.empty()) {
      msg += "; it sent \"" + printable(first) + "\"";
    }
    return Status::unavailable(msg);
  }

  void on_handshake_frame(Handshake& h, net::Connection& conn, std::string_view payload) {
    const std::string key = h.member;
    Result<wire::Envelope> env = wire::open_envelope(payload);
    if (!env.ok() || env->kind != wire::FrameKind::kHelloReply) {
      fail_handshake(conn,
                     not_kvc(key, conn,
                             env.ok() ? "it answered the hello with another kind of message"
                                      : "its answer to the hello is not a kvc message"),
                     true);
      return;
    }
    Result<wire::HelloReply> hr = wire::decode_hello_reply(*env->body);
    if (!hr.ok()) {
      fail_handshake(conn, not_kvc(key, conn, "bad hello reply: " + hr.status().message()), true);
      return;
    }
    if (hr->code != Code::kOk) {
      // Refusals of this client for good (auth, cluster, the peer port) against passing ones
      // (too many connections, shutting down).
      const bool final = hr->code == Code::kFailedPrecondition;
      const bool other = final && hr->cluster_id != 0 && options_.cluster_id != 0 &&
                         hr->cluster_id != options_.cluster_id;
      Member& m = members_[key];
      m.cluster_id = hr->cluster_id;
      fail_handshake(conn, Status(hr->code, key + " refused the connection: " + hr->message), final,
                     other);
      return;
    }
    if (!options_.secret.empty()) {
      wire::AuthProof answer;
      Status proved =
          wire::check_member_proof(options_.secret, wire::Role::kClient, h.nonce, *hr, &answer);
      std::string out;
      wire::append_auth_proof(out, answer);
      conn.send(out);  // requests may follow right behind it
      if (!proved.ok()) {
        fail_handshake(conn, Status(proved.code(), key + ": " + proved.message()), true);
        return;
      }
    }
    Member& m = members_[key];
    m.member_id = hr->member_id;
    m.cluster_id = hr->cluster_id;
    m.max_frame_bytes = hr->max_frame_bytes;
    m.max_request_bytes = hr->max_request_bytes;
    if (cluster_id_ == 0) {
      cluster_id_ = hr->cluster_id;
      cluster_from_ = key;
    } else if (hr->cluster_id != cluster_id_) {
      fail_handshake(
          conn,
          Status::failed_precondition(
              key + " belongs to cluster " + id_hex(hr->cluster_id) + ", not to cluster " +
              id_hex(cluster_id_) +
              (cluster_from_.empty() ? std::string(" (the client's)") : " of " + cluster_from_) +
              ": it is another cluster's member"),
          true, true);
      return;
    }
    auto it = handshakes_.find(&conn);
    Handshake done = std::move(it->second);
    handshakes_.erase(it);
    if (done.timer != nullptr) done.timer->cancel();
    handshake_ended(m, &done.conn, Status(), false);
  }

  void on_frame(const std::string& key, net::Connection& conn, std::string_view payload) {
    if (auto h = handshakes_.find(&conn); h != handshakes_.end()) {
      on_handshake_frame(h->second, conn, payload);
      return;
    }
    Member& m = members_[key];
    m.last_heard = now();
    Result<wire::Envelope> env = wire::open_envelope(payload);
    if (!env.ok()) {
      conn.close(env.status().with_context("bad frame from member " + key));
      return;
    }
    if (env->kind == wire::FrameKind::kHelloReply) {
      Result<wire::HelloReply> hr = wire::decode_hello_reply(*env->body);
      if (!hr.ok()) {
        conn.close(hr.status());
      } else {
        on_refusal(m, conn, *hr);
      }
      return;
    }
    if (env->kind != wire::FrameKind::kResponse) {
      conn.close(Status::corruption("unexpected frame kind from member " + key));
      return;
    }
    Result<wire::Response> r = wire::decode_response(*env->body);
    if (!r.ok()) {
      conn.close(r.status());
      return;
    }
    if (!r->leader_client_addr.empty() && r->code != Code::kNotLeader &&
        r->leader_client_addr != leader_) {
      // Any answer naming a leader refreshes our guess.
      set_leader(r->leader_client_addr);
    }
    auto on = sent_on_.find(&conn);
    if (on == sent_on_.end()) return;
    auto it = on->second.find(r->id);
    if (it == on->second.end()) return;  // late: the call timed out or moved on
    on_response(key, it->second, std::move(*r));
  }

  // A hello reply on an established connection: the member refused a frame without reading it
  // (too large), or gave up on the connection.
  void on_refusal(Member& m, net::Connection& conn, const wire::HelloReply& hr) {
    if (hr.max_frame_bytes != 0) m.max_frame_bytes = hr.max_frame_bytes;
    if (hr.refused_frame_bytes != 0) {
      Call* refused = nullptr;
      auto on = sent_on_.find(&conn);
      if (on != sent_on_.end()) {
        for (auto& [id, c] : on->second) {
          if (c->frame_bytes == hr.refused_frame_bytes &&
              (refused == nullptr || c->send_seq < refused->send_seq)) {
            refused = c;
          }
        }
      }
      if (refused != nullptr) {
        finish(refused,
               failure(refused->req.id, Code::kInvalidArgument,
                       "refused by " + m.key + ": " + hr.message + "; nothing was applied"));
      }
      return;
    }
    conn.close(Status(hr.code == Code::kOk ? Code::kUnavailable : hr.code,
                      m.key + " closed the connection: " + hr.message));
  }

  void on_response(const std::string& key, Call* c, wire::Response r) {
    const bool follow = !c->opts.target;
    if (follow && !c->got_first &&
        (r.code == Code::kNotLeader || r.code == Code::kUnavailable ||
         r.code == Code::kShuttingDown)) {
      // Not applied: go where the member points, or wait for an election.
      leave_stage(c);
      c->why[key] = r.message;
      const std::string& hint = r.leader_client_addr;
      if (r.code == Code::kNotLeader && !hint.empty() && hint != key) {
        set_leader(hint);
        Member* h = member_for(hint);
        if (h != nullptr && usable(c, hint)) {
          dispatch(c);
          return;
        }
        // The member it names is hung (or refused us): the others will name a new leader once
        // they elect one. Meanwhile see whether it comes back.
        if (h != nullptr && h->conns.empty() && h->handshakes == 0 && !refused_now(*h)) {
          start_handshake(*h);
        }
      } else if (leader_ == key) {
        set_leader("");
      }
      ++rotation_;
      retry_later(c);
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
    if (r.code == Code::kOk && c->req.serializable) sticky_ = key;
    finish(c, std::move(r));
  }

  void cancel_now(Call* c) {
    send_watch_cancel(c);
    c->on_item = nullptr;
    finish(c, std::nullopt);
  }

  void on_closed(const std::string& key, net::Connection& conn, const Status& why) {
    if (stopping_loop_) return;
    if (handshakes_.count(&conn) != 0) {
      // An answer we cannot decode as a frame: not a kvc member. Otherwise it hung up.
      const bool garbage =
          why.code() == Code::kResourceExhausted || why.code() == Code::kCorruption;
      fail_handshake(conn,
                     garbage ? not_kvc(key, conn, "its answer to the hello is not a kvc frame")
                             : Status::unavailable("connection closed before the hello was "
                                                   "answered: " +
                                                   why.message()),
                     garbage);
      return;
    }
    Member& m = members_[key];
    const bool was_ready = std::any_of(m.conns.begin(), m.conns.end(),
                                       [&](const auto& c) { return c.get() == &conn; });
    m.conns.erase(std::remove_if(m.conns.begin(), m.conns.end(),
                                 [&](const auto& c) { return c.get() == &conn; }),
                  m.conns.end());
    if (was_ready) m.last_error = why.message();
    if (m.conns.empty() && leader_ == key) set_leader("");
    auto it = sent_on_.find(&conn);
    if (it == sent_on_.end()) return;
    std::map<std::uint64_t, Call*> lost;
    lost.swap(it->second);
    sent_on_.erase(it);
    for (auto& [id, c] : lost) {
      if (c->finished) continue;
      c->stage = Stage::kNew;  // no longer in sent_on_
      c->conn.reset();
      if (is_stream_op(c->req.op)) {
        finish(c,
               failure(id, Code::kUnavailable, "connection to " + key + " lost: " + why.message()));
      } else if (is_write(c->req.op)) {
        finish(c, failure(id, Code::kTimeout,
                          "connection to " + key + " lost after the request was sent (" +
                              why.message() + "): it may or may not have been applied"));
      } else {
        c->why[key] = why.message();
        if (c->opts.target) {
          finish(c, failure(id, Code::kUnavailable, key + ": " + why.message()));
        } else {
          c->skip.insert(key);
          ++rotation_;
          retry_later(c);
        }
      }
    }
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
    for (auto& [key, m] : members_) {
      for (auto& conn : m.conns) conn->close(Status::shutting_down("client closed"));
      m.conns.clear();
      if (m.check != nullptr) {
        m.check->cancel();
        m.check = nullptr;
      }
    }
    for (auto& [ptr, h] : handshakes_) {
      if (h.timer != nullptr) h.timer->cancel();
      h.conn->close(Status::shutting_down("client closed"));
    }
    handshakes_.clear();
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
  std::vector<std::string> endpoint_keys_;  // in the order given, without repeats
  std::map<std::string, Member> members_;   // endpoints and members learned from answers
  std::unordered_map<std::uint64_t, Call*> calls_;
  // Invariant: a call is in sent_on_ exactly while its stage is kSent, in its member's
  // waiting list while kWaiting, and in probing_ while kProbing.
  std::unordered_map<const net::Connection*, std::map<std::uint64_t, Call*>> sent_on_;
  std::unordered_map<const net::Connection*, Handshake> handshakes_;
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
  call(
      std::move(req), [&p](wire::Response r) { p.set_value(std::move(r)); }, std::move(options));
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
  return call_sync({.op = wire::Op::kCas,
                    .key = std::move(key),
                    .value = std::move(value),
                    .expect_revision = expect_revision});
}

std::string Client::leader_address() const { return impl_->leader_address(); }

}  // namespace kvc::client
