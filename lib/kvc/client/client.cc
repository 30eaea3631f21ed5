// The network client (client.h): the public API, endpoint parsing, and Client::Impl's start,
// stop and the calls' way in and out (submission from any thread, the loop-side queue, timers,
// expiry and completion). Invariant kept here: every call ends exactly once (finish()), with a
// response or, when cancelled, none; after it the call is in no list.
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

#include "kvc/client/client_internal.h"
#include "kvc/common/text.h"
#include "kvc/common/version.h"
#include "kvc/net/connection.h"
#include "kvc/net/secret.h"

namespace kvc::client {

using namespace client_internal;  // the client's shared internals (client_internal.h)

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
    case wire::Op::kTxn:
    case wire::Op::kLeaseGrant:
    case wire::Op::kLeaseRevoke:
      return true;
    default:
      return false;
  }
}

namespace client_internal {

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

}  // namespace client_internal

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
          "': give HOST:PORT of a member's --listen-client; TLS is not chosen by a scheme "
          "but by --cacert/--cert/--key, or a --secret-file (kvc(7), SECURITY)");
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

Status Client::Impl::start() {
  if (options_.endpoints.empty()) return Status::invalid_argument("no endpoints given");
  if (!options_.secret.empty() && !options_.secret_file.empty()) {
    return Status::invalid_argument("give the shared secret or a secret file, not both");
  }
  if (!options_.secret_file.empty()) {
    Result<std::string> secret = net::load_secret_file(options_.secret_file);
    if (!secret.ok()) return secret.status();
    options_.secret = std::move(*secret);
  }
  const net::TlsConfig& t = options_.tls;
  const bool certificates =
      !t.trusted_ca_file.empty() || !t.cert_file.empty() || !t.key_file.empty();
  if (certificates && !options_.secret.empty()) {
    return Status::invalid_argument(
        "give certificates (--cacert, --cert, --key) or a secret, not both: the members use one "
        "or the other");
  }
  if (t.cert_file.empty() != t.key_file.empty()) {
    return Status::invalid_argument("--cert and --key go together");
  }
  if (certificates || !options_.secret.empty()) {
    net::TlsConfig config = t;
    config.client_cert_auth = false;
    if (!certificates) config = net::TlsConfig{.secret = options_.secret};
    Result<std::shared_ptr<const net::TlsContext>> ctx =
        net::TlsContext::create(net::TlsRole::kClient, config);
    // The context holds the derived key (out of core dumps); the secret itself is not needed
    // again, so no copy of it stays in this client.
    net::wipe(config.secret);
    net::wipe(options_.secret);
    if (!ctx.ok()) return ctx.status();
    tls_ = std::move(*ctx);
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

Client::Impl::~Impl() {
  if (!thread_.joinable()) return;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  uv_async_send(&wake_);
  thread_.join();
  uv_loop_close(&loop_);
}

void Client::Impl::submit(wire::Request req, Callback done, StreamCallback on_item,
                          CallOptions opts, std::uint64_t id) {
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

void Client::Impl::cancel(std::uint64_t id) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    cancels_.push_back(id);
  }
  uv_async_send(&wake_);
}

std::string Client::Impl::leader_address() const {
  std::lock_guard<std::mutex> lock(mu_);
  return leader_copy_;
}

void Client::Impl::drain() {
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

void Client::Impl::send_watch_cancel(Call* c) {
  if (c->stage != Stage::kSent || !c->conn || c->conn->closed()) return;
  std::string out;
  wire::append_request(out, {.id = next_id(), .op = wire::Op::kWatchCancel, .watch_id = c->req.id});
  c->conn->send(out);
}

void Client::Impl::arm(Call* c) {
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

void Client::Impl::on_timer(Call* c) {
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

std::string Client::Impl::reasons(const Call* c) const {
  std::string out;
  for (const auto& [member, why] : c->why) {
    out += out.empty() ? "" : "; ";
    out += why.rfind(member, 0) == 0 ? why : member + ": " + why;
  }
  return out;
}

void Client::Impl::expire(Call* c) {
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

void Client::Impl::leave_stage(Call* c) {
  leave_group(c);
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

void Client::Impl::finish(Call* c, std::optional<wire::Response> r) {
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
