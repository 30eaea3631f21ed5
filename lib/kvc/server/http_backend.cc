// The member's side of the HTTP endpoint (--listen-http): /health, /ready, /metrics, the JSON
// key-value API, leases, txns and /v1/leader, answered through the same request path as the client
// protocol, and HTTP watch streams, served by the same watch hub as client-protocol watches.
#include "kvc/server/http_backend.h"

#include <chrono>

#include "kvc/client/client.h"
#include "kvc/server/engine_impl.h"

namespace kvc::server {

void EngineHttpBackend::health(std::function<void(Status)> done) {
  wire::Request req{.op = wire::Op::kHealth};
  req.timeout_ms = std::min<std::uint64_t>(impl_.options_.request_timeout_ms, 5000);
  impl_.handle_request(std::move(req), [done = std::move(done)](wire::Response r) {
    done(r.code == Code::kOk ? Status() : Status(r.code, r.message));
  });
}

http::Backend::Readiness EngineHttpBackend::ready() {
  if (impl_.stopping_) return {false, "the member is shutting down"};
  if (impl_.damaged_) return {false, impl_.damaged_message()};
  if (!raft::is_voter(impl_.node_->conf_state(), impl_.identity_.member_id) &&
      !raft::is_learner(impl_.node_->conf_state(), impl_.identity_.member_id)) {
    return {false, "not yet a member: waiting for the log that adds it"};
  }
  if (impl_.node_->leader() == raft::kNoNode) return {false, "no leader known"};
  if (!impl_.ready_.load()) {
    return {false, "catching up: applied " + std::to_string(impl_.state_->applied_index()) +
                       " of " + std::to_string(impl_.ready_at_commit_)};
  }
  return {true, ""};
}

std::string EngineHttpBackend::metrics_text() { return impl_.metrics_->registry.expose(); }

namespace {

// What only the leader answers: writes, and the lease ops, since the leader's clock keeps the
// leases (a follower answers them not_leader).
bool leader_only(wire::Op op) {
  return client::is_write(op) || op == wire::Op::kLeaseKeepAlive || op == wire::Op::kLeaseTtl ||
         op == wire::Op::kLeaseList;
}

}  // namespace

Result<std::string> EngineHttpBackend::authenticate(const http::HttpRequest& r) {
  peer_ = r.peer;
  Result<std::string> who = identify(r);
  if (!who.ok()) impl_.note_refusal(who.status(), "", "http", r.path, r.peer);
  return who;
}

Result<std::string> EngineHttpBackend::identify(const http::HttpRequest& r) {
  if (const std::string* auth = r.header("authorization")) {
    constexpr std::string_view kBearer = "Bearer ";
    if (!auth->starts_with(kBearer) || auth->size() == kBearer.size()) {
      return Status::unauthenticated("the Authorization header must be `Bearer TOKEN`");
    }
    if (impl_.permissions_ == nullptr) {
      return Status::unauthenticated(
          "unknown token: this member has no --permissions-file, so it knows no tokens");
    }
    Result<std::string> name = impl_.permissions_->token_name(auth->substr(kBearer.size()));
    if (!name.ok()) {
      return Status::unauthenticated(
          "unknown token: no token in this member's --permissions-file has that value");
    }
    // A verified client certificate outranks a token, as on the client port (the token is
    // still checked: a wrong one is refused, never ignored).
    if (!r.tls_peer.empty()) return r.tls_peer;
    return name;
  }
  if (!r.tls_peer.empty()) return r.tls_peer;
  const EngineOptions& o = impl_.options_;
  const bool required = !impl_.secret_.empty() || o.client_tls.client_cert_auth;
  if (!required) return std::string(kIdentityAnonymous);
  // The open paths (probes, metrics) are served to anyone; /v1 never is.
  if (!r.path.starts_with("/v1/") && r.path != "/v1") {
    for (std::string_view rest = o.http_open_paths; !rest.empty();) {
      const std::size_t comma = rest.find(',');
      if (rest.substr(0, comma) == r.path) return std::string(kIdentityAnonymous);
      rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
    }
  }
  return Status::unauthenticated(
      "authentication required: send `Authorization: Bearer TOKEN` (a token of the member's "
      "--permissions-file) or a client certificate");
}

void EngineHttpBackend::call(wire::Request request, std::function<void(wire::Response)> done) {
  // The caller's identity (KvRoutes put it in on_behalf_of) is checked here, before anything is
  // read or proposed, and goes with a forwarded request for the leader to check again.
  if (request.op == wire::Op::kWhoami) return done(impl_.whoami(request, request.on_behalf_of));
  if (Status s = impl_.authorize(request.on_behalf_of, request); !s.ok()) {
    impl_.note_refusal(s, request.on_behalf_of, wire::op_name(request.op), request.key, peer_);
    wire::Response r = impl_.base_response(request.id);
    r.code = s.code();
    r.message = s.message();
    return done(std::move(r));
  }
  const auto start = std::chrono::steady_clock::now();
  const wire::Op op = request.op;
  auto finish = [this, op, start, done = std::move(done)](wire::Response r) {
    impl_.count_request(op, start, r.code);
    done(std::move(r));
  };
  wire::Request copy = request;
  impl_.handle_request(std::move(request), [this, copy = std::move(copy),
                                            finish = std::move(finish)](wire::Response r) mutable {
    // Like an embedded caller, an HTTP client does not follow the client protocol's redirects:
    // a write (or lease op) that reached a follower goes on to the leader from here.
    if (r.code != Code::kNotLeader || r.leader_client_addr.empty() || !leader_only(copy.op)) {
      finish(std::move(r));
      return;
    }
    // Held until the answer: a forwarder replaced meanwhile (a TLS reload) lives until then.
    std::shared_ptr<client::Client> fwd = impl_.forwarder(r.leader_client_addr);
    if (fwd == nullptr) {
      finish(std::move(r));
      return;
    }
    if (copy.timeout_ms == 0) copy.timeout_ms = impl_.options_.request_timeout_ms;
    const std::string leader = r.leader_client_addr;
    fwd->call(std::move(copy),
              [this, fwd, finish = std::move(finish)](wire::Response answer) mutable {
                impl_.post_loop([finish = std::move(finish), answer = std::move(answer)]() mutable {
                  finish(std::move(answer));
                });
              },
              {.leader_hint = leader});
  });
}

std::string EngineHttpBackend::http_address_of(std::uint64_t member_id) {
  // Members do not tell each other their HTTP addresses: only this member's own is known.
  return member_id == impl_.identity_.member_id ? impl_.http_bound_ : std::string();
}

std::string EngineHttpBackend::http_scheme() {
  return impl_.options_.client_tls.cert_file.empty() ? "http" : "https";
}

void EngineHttpBackend::watch(wire::Request request, std::shared_ptr<http::WatchSink> sink,
                              std::function<void(wire::Response, std::uint64_t)> started) {
  if (Status s = impl_.authorize(request.on_behalf_of, request); !s.ok()) {
    impl_.note_refusal(s, request.on_behalf_of, wire::op_name(request.op), request.key, peer_);
    wire::Response r = impl_.base_response(0);
    r.code = s.code();
    r.message = s.message();
    started(std::move(r), 0);
    return;
  }
  if (impl_.stopping_) {
    wire::Response r = impl_.base_response(0);
    r.code = Code::kShuttingDown;
    r.message = "member shutting down";
    started(std::move(r), 0);
    return;
  }
  Engine::Impl::Watcher w;
  w.key = std::move(request.key);
  w.prefix = request.prefix;
  w.next_revision = request.start_revision;
  w.prev_kv = request.prev_kv;
  w.identity = std::move(request.on_behalf_of);
  w.sink = std::move(sink);
  // add_watcher answers before it delivers anything, and keys the watcher by the next number.
  const std::uint64_t handle = impl_.watcher_seq_ + 1;
  impl_.add_watcher(std::move(w), [&started, handle](wire::Response r) {
    const bool ok = r.code == Code::kOk;
    started(std::move(r), ok ? handle : 0);
  });
}

void EngineHttpBackend::cancel_watch(std::uint64_t handle) {
  if (handle == 0) return;
  // Posted: the connection may close while the watch hub is delivering to this very watcher.
  impl_.post_loop([impl = &impl_, handle] { impl->watchers_.erase(handle); });
}

}  // namespace kvc::server
