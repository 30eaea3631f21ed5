// Client sessions: the listeners (peer, client, HTTP) and the client protocol on each
// connection: hello (and with a shared secret the challenge/auth exchange), request frames
// dispatched to the services, replies and streams back, flow control (pause/resume), limits.
//
// Invariants kept here:
// - Nothing but a hello (then an auth frame, with a secret) is handled before the handshake is
//   done (wire/handshake.h, shared with the peer port); a refused connection handles nothing
//   more and is closed once the refusal is sent.
// - Every request frame gets exactly one final reply (streams: any number of partial ones
//   first), unless the connection closed.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <future>

#include "kvc/client/client.h"
#include "kvc/common/version.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/server/permissions.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

Result<Engine::Impl::TlsContexts> Engine::Impl::make_tls() const {
  using net::TlsRole;
  TlsContexts t;
  auto make = [](TlsRole role, const net::TlsConfig& config, const char* flags,
                 std::shared_ptr<const net::TlsContext>* out) -> Status {
    Result<std::shared_ptr<const net::TlsContext>> ctx = net::TlsContext::create(role, config);
    if (!ctx.ok()) return ctx.status().with_context(flags);
    *out = std::move(*ctx);
    return Status();
  };
  // The config's copy of the secret lives only while the contexts are made.
  net::TlsConfig psk{.secret = std::string(secret_.view())};
  struct WipeOnExit {
    std::string& s;
    ~WipeOnExit() { net::wipe(s); }
  } wipe_psk{psk.secret};
  const net::TlsConfig& c = options_.client_tls;
  const net::TlsConfig& p = options_.peer_tls;
  if (!c.cert_file.empty()) {
    KVC_RETURN_IF_ERROR(make(TlsRole::kServer, c, "--cert-file", &t.client_port));
    net::TlsConfig http = c;
    http.client_cert_optional = true;
    KVC_RETURN_IF_ERROR(make(TlsRole::kServer, http, "--cert-file", &t.http_port));
  } else if (!psk.secret.empty()) {
    KVC_RETURN_IF_ERROR(make(TlsRole::kServer, psk, "--secret-file", &t.client_port));
  }
  if (!p.cert_file.empty()) {
    KVC_RETURN_IF_ERROR(make(TlsRole::kServer, p, "--peer-cert-file", &t.peer_port));
    // Dialling a peer, this member is a TLS client that presents its peer certificate and
    // verifies the other's against the peer CA and the address it dialled.
    const net::TlsConfig dial{
        .cert_file = p.cert_file, .key_file = p.key_file, .trusted_ca_file = p.trusted_ca_file};
    KVC_RETURN_IF_ERROR(make(TlsRole::kClient, dial, "--peer-cert-file", &t.peer_dial));
  } else if (!psk.secret.empty()) {
    KVC_RETURN_IF_ERROR(make(TlsRole::kServer, psk, "--secret-file", &t.peer_port));
    KVC_RETURN_IF_ERROR(make(TlsRole::kClient, psk, "--secret-file", &t.peer_dial));
  }
  return t;
}

Status Engine::Impl::build_tls() {
  Result<TlsContexts> t = make_tls();
  if (!t.ok()) return t.status();
  client_port_tls_ = t->client_port;
  http_port_tls_ = t->http_port;
  peer_port_tls_ = t->peer_port;
  peer_dial_tls_ = t->peer_dial;
  return Status();
}

// SIGHUP (kvc-node) or Engine::reload_tls: the certificate, key and CA files are read again and
// new contexts made; only when all of them load are they swapped in, on the loop thread, for
// connections made from then on (open ones keep theirs, so the cluster never drops a link).
// A file that does not load leaves every port as it was and says which file and why.
Status Engine::Impl::reload_tls() {
  Result<TlsContexts> t = make_tls();
  if (!t.ok()) {
    spdlog::error("tls reload failed, the old certificates stay in use: {}",
                  t.status().to_string());
    return t.status();
  }
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> swapped = done->get_future();
  post_loop([this, t = std::move(*t), done] {
    client_port_tls_ = t.client_port;
    http_port_tls_ = t.http_port;
    peer_port_tls_ = t.peer_port;
    peer_dial_tls_ = t.peer_dial;
    if (client_listener_ != nullptr) client_listener_->set_tls(client_port_tls_);
    if (peer_transport_ != nullptr) peer_transport_->set_tls(peer_port_tls_, peer_dial_tls_);
    if (http_ != nullptr && http_tls()) http_->set_tls(http_port_tls_);
    hash_client_stale_ = true;  // the hash check's client is made again before its next round
    done->set_value();
  });
  {
    // The write forwarder is made again on its next use, with the new files.
    std::lock_guard<std::mutex> lock(mu_);
    forwarder_stale_ = true;
  }
  if (swapped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return Status(Code::kUnavailable,
                  "tls reload: the member's loop did not take the new "
                  "certificates in time (is it stopping?)");
  }
  const net::TlsConfig& c = options_.client_tls;
  const net::TlsConfig& p = options_.peer_tls;
  spdlog::info("tls reloaded cert_file={} peer_cert_file={}", c.cert_file, p.cert_file);
  return Status();
}

// The HTTP port speaks TLS with the client port's certificates, never with the secret: curl,
// browsers and Prometheus have no TLS pre-shared keys (docs/security.md).
bool Engine::Impl::http_tls() const { return !options_.client_tls.cert_file.empty(); }

void Engine::Impl::secure_internal_client(client::ClientOptions& o) const {
  const net::TlsConfig& c = options_.client_tls;
  if (c.cert_file.empty()) {
    o.secret = std::string(secret_.view());  // the client wipes it once its context is made
    return;
  }
  // The member's own certificate is its client certificate too (a port with
  // --client-cert-auth requires one): it must allow client authentication.
  o.tls = {.cert_file = c.cert_file, .key_file = c.key_file, .trusted_ca_file = c.trusted_ca_file};
}

// The listeners, clients first: with port 0 the bound address is what peers must be told.
Status Engine::Impl::bind_listeners() {
  metrics_ = std::make_unique<EngineMetrics>(identity_.name, hex(identity_.member_id));
  metrics_->registry.add_collector([this] { collect_metrics(); });
  Result<net::Address> peer = net::parse_address(options_.listen_peer);
  if (!peer.ok()) return peer.status().with_context("--listen-peer");
  if (!options_.listen_client.empty()) KVC_RETURN_IF_ERROR(listen_clients());
  KVC_RETURN_IF_ERROR(listen_peers(*peer));
  // Non-loopback listeners without a secret are warned about in start() (exposure_warnings).
  if (!options_.listen_http.empty()) KVC_RETURN_IF_ERROR(listen_http());
  return Status();
}

Status Engine::Impl::listen_clients() {
  Result<net::Address> c = net::parse_address(options_.listen_client);
  if (!c.ok()) return c.status().with_context("--listen-client");
  // A frame over the limit from a client past its hello is skipped unread and refused in so
  // many words (a hello reply naming its size), so the client knows nothing in it was
  // applied. Before the hello, or absurdly large (a length no client sends), it is garbage
  // and closes the connection.
  auto refuse_oversized = [this](net::Connection& conn, std::size_t frame_bytes) {
    auto it = clients_.find(conn.tag);
    if (it == clients_.end() || it->second.handshake != nullptr) return false;
    if (frame_bytes > std::max<std::uint64_t>(4 * options_.max_frame_bytes, 256u << 20)) {
      return false;
    }
    spdlog::warn("refused an oversized frame from={} bytes={} limit={}", conn.peer(), frame_bytes,
                 options_.max_frame_bytes);
    std::string out;
    wire::append_hello_reply(out, {.code = Code::kInvalidArgument,
                                   .message = "frame of " + std::to_string(frame_bytes) +
                                              " bytes exceeds the member's limit of " +
                                              std::to_string(options_.max_frame_bytes) +
                                              " bytes (kvc-node --max-frame-bytes)",
                                   .cluster_id = identity_.cluster_id,
                                   .member_id = identity_.member_id,
                                   .name = identity_.name,
                                   .software_version = kvc::version(),
                                   .max_frame_bytes = options_.max_frame_bytes,
                                   .max_request_bytes = options_.max_request_bytes,
                                   .refused_frame_bytes = frame_bytes});
    conn.send(out);
    return true;
  };
  net::ConnectionOptions client_options{.max_frame_bytes = options_.max_frame_bytes,
                                        .pause_reading_above = 8u << 20,
                                        .close_above = 256u << 20};
  client_options.tls = client_port_tls_;
  client_options.on_oversized = std::move(refuse_oversized);
  wire::append_hello_reply(
      client_options.answer_to_tls_client,
      {.code = Code::kFailedPrecondition,
       .message = "this port does not speak TLS (the member has no --cert-file or secret)"});
  client_listener_ = std::make_unique<net::Listener>(&loop_, std::move(client_options));
  if (Status s = client_listener_->listen(
          *c, [this](std::shared_ptr<net::Connection> conn) { on_client_accept(conn); });
      !s.ok()) {
    return s.with_context("--listen-client");
  }
  client_bound_ = client_listener_->bound().to_string();
  return Status();
}

Status Engine::Impl::listen_peers(const net::Address& peer) {
  const std::string advertise_client =
      options_.advertise_client.empty() ? client_bound_ : options_.advertise_client;
  const storage::Member* self = member(identity_.member_id);
  PeerTransportOptions po;
  po.self_id = identity_.member_id;
  po.cluster_id = identity_.cluster_id;
  po.name = identity_.name;
  po.max_frame_bytes = options_.max_frame_bytes;
  po.peer_addr =
      self != nullptr && !self->peer_addr.empty() ? self->peer_addr : options_.listen_peer;
  po.client_addr = advertise_client;
  po.token_digest = join_token_digest(options_.cluster_token);
  po.server_tls = peer_port_tls_;
  po.dial_tls = peer_dial_tls_;
  po.max_incoming = options_.max_peer_connections;
  po.handshake_timeout_ms = options_.handshake_timeout_ms;
  peer_transport_ = std::make_unique<PeerTransport>(
      &loop_, po, [this](raft::Message m) { on_peer_message(std::move(m)); },
      [this](std::uint64_t id, bool snapshot) {
        if (stopped_) return;
        if (snapshot) {
          node_->report_snapshot(id, false);
        } else {
          node_->report_unreachable(id);
        }
      },
      [this](const PeerInfo& info) {
        const bool known = learned_.count(info.id) != 0 && !learned_[info.id].peer_addr.empty();
        storage::Member& m = learned_[info.id];
        m.id = info.id;
        if (!info.name.empty()) m.name = info.name;
        if (!info.peer_addr.empty() && m.peer_addr.empty()) m.peer_addr = info.peer_addr;
        if (!info.client_addr.empty()) m.client_addr = info.client_addr;
        if (!known && !m.peer_addr.empty()) update_peers();
      },
      [this](const std::string& name) { return lookup_joining(name); },
      [this](const std::string& told_by) { on_told_removed(told_by); });
  peers_ = peer_transport_.get();
  if (Status s = peer_transport_->listen(peer); !s.ok()) return s.with_context("--listen-peer");
  peer_bound_ = peer_transport_->bound().to_string();
  storage::Member& me = learned_[identity_.member_id];
  me.id = identity_.member_id;
  me.name = identity_.name;
  me.client_addr = advertise_client;
  if (me.peer_addr.empty()) me.peer_addr = peer_bound_;
  return Status();
}

void Engine::Impl::on_peer_message(raft::Message m) {
  if (stopped_) return;
  if (m.type == raft::MessageType::kHeartbeatResp) {
    auto sent = heartbeat_sent_.find(m.from);
    if (sent != heartbeat_sent_.end()) {
      const storage::Member* p = member(m.from);
      metrics_->peer_round_trip(p != nullptr && !p->name.empty() ? p->name : hex(m.from))
          .observe(static_cast<double>(now_ms() - sent->second) / 1000.0);
      heartbeat_sent_.erase(sent);
    }
  }
  if (m.type == raft::MessageType::kSnapshot && snapshot_check_running_) {
    // Held until the check in progress ends: stepped now, a chunk could be written into the
    // file being checked (check_received_snapshot). The leader resends what is dropped.
    if (held_snapshot_chunks_.size() >= kHeldSnapshotChunksMax) held_snapshot_chunks_.pop_front();
    held_snapshot_chunks_.push_back(std::move(m));
    return;
  }
  if (m.type == raft::MessageType::kSnapshot && !m.snapshot_damaged &&
      node_->completes_snapshot(m)) {
    check_received_snapshot(std::move(m));
    return;
  }
  step_peer_message(m);
}

void Engine::Impl::step_peer_message(const raft::Message& m) {
  Status s = node_->step(m);
  if (!s.ok()) spdlog::warn("dropped raft message from={} error={}", hex(m.from), s.message());
}

void Engine::Impl::on_told_removed(const std::string& told_by) {
  if (stopped_ || removed_) return;
  removed_ = true;
  spdlog::warn("this member was removed from the cluster (told by {}); stopping", told_by);
  post_loop(
      [this] { fatal(Status::failed_precondition("this member was removed from the cluster")); });
}

Status Engine::Impl::listen_http() {
  Result<net::Address> h = net::parse_address(options_.listen_http);
  if (!h.ok()) return h.status().with_context("--listen-http");
  http_backend_ = std::make_unique<EngineHttpBackend>(*this);
  http_routes_ = std::make_unique<http::KvRoutes>(
      *http_backend_, http::KvRoutesOptions{.max_request_bytes = options_.max_request_bytes});
  http::HttpServerOptions ho;
  ho.address = *h;
  // Room for a value sent base64-encoded in a JSON body.
  ho.limits.max_body_bytes = options_.max_request_bytes / 3 * 4 + (16u << 10);
  ho.metrics = &metrics_->registry;
  if (http_tls()) ho.tls = http_port_tls_;
  ho.tls_handshake_timeout_ms = options_.handshake_timeout_ms;
  http_ = std::make_unique<http::HttpServer>(&loop_, ho, http_routes_->handler());
  if (Status s = http_->listen(); !s.ok()) return s.with_context("--listen-http");
  http_bound_ = http_->bound().to_string();
  if (!http_tls() && !secret_.empty()) {
    spdlog::warn(
        "the HTTP port {} (--listen-http) speaks plain HTTP: the shared secret cannot protect "
        "it (HTTP clients have no TLS pre-shared keys), so its requests, answers and bearer "
        "tokens travel in clear; give the client port certificates (--cert-file, --key-file) "
        "to serve HTTPS",
        h->to_string());
  }
  if (!h->is_loopback() && secret_.empty() && !options_.client_tls.client_cert_auth) {
    // Without a secret or client certificates /v1 needs no authentication (docs/security.md).
    spdlog::warn(
        "serving {} on {}, which is not a loopback address, without a secret or "
        "--client-cert-auth: anyone who can reach it can read and write keys",
        http_tls() ? "HTTPS" : "HTTP", h->to_string());
  }
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Client connections

void Engine::Impl::on_client_accept(std::shared_ptr<net::Connection> conn) {
  if (stopping_) {
    conn->close(Status::shutting_down("member stopping"));
    return;
  }
  // The IP address without the port ("[::1]:5000" -> "[::1]", "10.0.0.1:5000" -> "10.0.0.1").
  const std::string& peer = conn->peer();
  const std::string address = peer.substr(0, std::min(peer.rfind(':'), peer.size()));
  const std::uint64_t per_address_limit = options_.max_client_connections_per_address;
  std::string refusal;
  if (clients_.size() >= options_.max_client_connections) {
    spdlog::warn("refusing client from={} reason=too many connections limit={}", peer,
                 options_.max_client_connections);
    refusal = "too many client connections (--max-client-connections " +
              std::to_string(options_.max_client_connections) + ")";
  } else if (per_address_limit != 0 && clients_per_address_[address] >= per_address_limit) {
    spdlog::warn("refusing client from={} reason=too many connections from its address limit={}",
                 peer, per_address_limit);
    refusal = "too many client connections from " + address +
              " (--max-client-connections-per-address " + std::to_string(per_address_limit) + ")";
  }
  if (!refusal.empty()) {
    // Politely: the client reads the refusal as its hello reply (nothing was handled).
    const Status why = Status::resource_exhausted(refusal);
    // The connection stays open (what the client sends is read and dropped) until the client
    // closes it or a second has passed: closing at once, with the client's hello unread, would
    // reset the connection and could destroy the refusal before the client reads it.
    net::Connection* key = conn.get();
    conn->start([](net::Connection&, std::string_view) {},
                [this, key](net::Connection&, const Status&) { refused_.erase(key); });
    std::string out;
    wire::append_hello_reply(out, {.code = why.code(),
                                   .message = why.message(),
                                   .cluster_id = identity_.cluster_id,
                                   .member_id = identity_.member_id,
                                   .name = identity_.name,
                                   .software_version = kvc::version()});
    conn->send(out);
    refused_[key] = {conn, now_ms() + 1000};
    return;
  }
  const std::uint64_t id = ++conn_seq_;
  conn->tag = id;
  ClientConn& cc = clients_[id];
  cc.conn = conn;
  cc.address = address;
  ++clients_per_address_[address];
  cc.handshake_deadline = now_ms() + options_.handshake_timeout_ms;
  // A secret is a TLS pre-shared key (build_tls): the hello carries no proofs of it.
  cc.handshake = std::make_unique<wire::MemberHandshake>(
      wire::HelloReply{.cluster_id = identity_.cluster_id,
                       .member_id = identity_.member_id,
                       .name = identity_.name,
                       .software_version = kvc::version(),
                       .client_addr = client_bound_,
                       .max_frame_bytes = options_.max_frame_bytes,
                       .max_request_bytes = options_.max_request_bytes},
      [this, id](const wire::Hello& hello, wire::HelloReply*) { return admit_client(id, hello); });
  conn->start([this, id](net::Connection& c, std::string_view p) { on_client_frame(id, c, p); },
              [this, id](net::Connection& c, const Status& why) {
                if (why.code() != Code::kUnavailable && why.code() != Code::kShuttingDown) {
                  spdlog::info("client connection closed from={} reason={}", c.peer(),
                               why.message());
                }
                on_client_closed(id);
              });
}

// Every frame of a client connection: the handshake's until it is open (wire/handshake.h),
// then requests.
void Engine::Impl::on_client_frame(std::uint64_t conn_id, net::Connection& conn,
                                   std::string_view payload) {
  auto it = clients_.find(conn_id);
  if (it == clients_.end()) return;
  ClientConn& cc = it->second;
  if (cc.handshake != nullptr && cc.handshake->state() == wire::MemberHandshake::State::kRefused) {
    return;  // the refusal is being flushed
  }
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    spdlog::warn("closing client connection from={} reason={}", conn.peer(),
                 env.status().message());
    conn.close(env.status());
    return;
  }
  if (cc.handshake != nullptr) return on_client_handshake(cc, conn, *env);
  on_client_request(conn_id, cc, conn, *env);
}

// The client port's own checks of a hello (the protocol version is the handshake's; the secret
// or the certificates were checked by TLS before it): a client that names a cluster must name
// this one, and a token must be one the permissions file names. Fixes the connection's identity.
Status Engine::Impl::admit_client(std::uint64_t conn_id, const wire::Hello& hello) {
  if (hello.cluster_id != 0 && hello.cluster_id != identity_.cluster_id) {
    return Status::failed_precondition("this member belongs to cluster " +
                                       hex(identity_.cluster_id) + ", not " +
                                       hex(hello.cluster_id));
  }
  auto it = clients_.find(conn_id);
  if (it == clients_.end()) return Status::unavailable("connection closed");
  ClientConn& cc = it->second;
  const net::TlsSession* tls = cc.conn->tls();
  std::string token_name;
  if (!hello.token.empty()) {
    // Never anonymous instead: a client that sends a token means to be someone.
    if (permissions_ == nullptr) {
      return Status::unauthenticated(
          "unknown token: this member has no --permissions-file, so it knows no tokens");
    }
    Result<std::string> name = permissions_->token_name(hello.token);
    if (!name.ok()) {
      return Status::unauthenticated(
          "unknown token: no token in this member's --permissions-file has that value");
    }
    token_name = std::move(*name);
  }
  cc.member = false;
  cc.shared_watches = hello.shared_watches;
  if (tls != nullptr && tls->peer().has_certificate && tls->peer().verified) {
    cc.identity = tls->peer().subject;
    cc.member = token_name.empty() && certificate_of_member(*tls);
  } else if (!token_name.empty()) {
    cc.identity = token_name;
  } else if (tls != nullptr && !tls->peer().psk_identity.empty()) {
    cc.identity = std::string(kIdentitySecret);
    cc.member = true;
  } else {
    cc.identity = std::string(kIdentityAnonymous);
  }
  return Status();
}

bool Engine::Impl::certificate_of_member(const net::TlsSession& tls) const {
  for (const auto& [id, m] : learned_) {
    (void)id;
    Result<net::Address> a = net::parse_address(m.peer_addr);
    if (a.ok() && tls.peer_certificate_names(a->host)) return true;
  }
  return false;
}

Status Engine::Impl::authorize(const std::string& identity, const wire::Request& req) const {
  if (permissions_ == nullptr || identity == kIdentityEmbedded) return Status();
  std::vector<AccessCheck> checks = required_access(req);
  if (req.op == wire::Op::kLeaseRevoke) {
    // Revoking deletes the lease's keys: readwrite on each of them, as this member knows them.
    if (std::optional<storage::Lease> l = state_->lease(req.lease)) {
      for (AccessCheck& c : lease_revoke_checks(l->keys)) checks.push_back(std::move(c));
    }
  }
  for (const AccessCheck& c : checks) {
    if (!permissions_->allows(identity, c)) return permission_denied(identity, c);
  }
  return Status();
}

void Engine::Impl::note_refusal(const Status& why, std::string_view identity, std::string_view op,
                                std::string_view key, std::string_view from) {
  metrics_->access_refused(why.code(), op).inc();
  RefusalLog& l = refusal_logs_[why.code()];
  const std::uint64_t now = now_ms();
  if (l.last_ms != 0 && now < l.last_ms + 1000) {
    ++l.suppressed;
    return;
  }
  l.last_ms = now;
  // Keys are the client's bytes: bounded, and no control character reaches the log.
  std::string shown(key.substr(0, 256));
  for (char& c : shown) {
    if (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) c = '?';
  }
  spdlog::info("access refused code={} identity={} op={} key={} from={} suppressed={}",
               code_name(why.code()), identity.empty() ? "-" : identity, op,
               shown.empty() ? "-" : shown, from, l.suppressed);
  l.suppressed = 0;
}

wire::Response Engine::Impl::whoami(const wire::Request& req, const std::string& identity) const {
  wire::Response r = base_response(req.id);
  r.identity = identity;
  r.permissions = permissions_ != nullptr;
  if (permissions_ != nullptr) r.grants = permissions_->describe(identity);
  return r;
}

// SIGHUP (kvc-node) or Engine::reload_permissions: the file is read and parsed on the calling
// thread, and swapped in on the loop only when it parses; requests checked from then on use it,
// and open watches whose identity may no longer read their range end then (permission denied).
Status Engine::Impl::reload_permissions() {
  if (options_.permissions_file.empty()) return Status();
  Result<Permissions> p = Permissions::load(options_.permissions_file);
  if (!p.ok()) {
    spdlog::error("permissions reload failed, the old permissions stay in use: {}",
                  p.status().message());
    return p.status();
  }
  auto fresh = std::make_shared<const Permissions>(std::move(*p));
  auto done = std::make_shared<std::promise<void>>();
  std::future<void> swapped = done->get_future();
  post_loop([this, fresh, done] {
    permissions_ = fresh;
    // In the same loop turn: no event is delivered to a watch the new file no longer allows.
    end_unreadable_watches();
    done->set_value();
  });
  if (swapped.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
    return Status(Code::kUnavailable,
                  "permissions reload: the member's loop did not take the new file in time");
  }
  spdlog::info("permissions reloaded path={}", options_.permissions_file);
  return Status();
}

void Engine::Impl::on_client_handshake(ClientConn& cc, net::Connection& conn,
                                       const wire::Envelope& env) {
  wire::HandshakeStep step = cc.handshake->on_frame(env);
  if (!step.frames.empty()) conn.send(step.frames);
  switch (step.action) {
    case wire::HandshakeAction::kContinue:
      return;
    case wire::HandshakeAction::kOpen:
      cc.handshake.reset();
      return;
    case wire::HandshakeAction::kRefuse:
      if (step.why.code() == Code::kUnauthenticated) {
        note_refusal(step.why, "", "hello", "", conn.peer());  // an unknown token
      } else {
        spdlog::warn("refusing client from={} name={} reason={}", conn.peer(),
                     cc.handshake->hello().name, step.why.message());
      }
      conn.close_after_flush(step.why);
      return;
    case wire::HandshakeAction::kClose:
      conn.close(step.why);
      return;
  }
}

void Engine::Impl::on_client_request(std::uint64_t conn_id, ClientConn& cc, net::Connection& conn,
                                     const wire::Envelope& env) {
  if (env.kind != wire::FrameKind::kRequest) {
    spdlog::warn("closing client connection from={} reason=unexpected frame kind {}", conn.peer(),
                 static_cast<int>(env.kind));
    conn.close(Status::corruption("unexpected frame kind"));
    return;
  }
  Result<wire::Request> req = wire::decode_request(*env.body);
  if (!req.ok()) {
    // Without a decodable id there is nobody to answer: the stream is not trustworthy.
    spdlog::warn("closing client connection from={} reason={}", conn.peer(),
                 req.status().message());
    conn.close(req.status());
    return;
  }
  if (req->op == wire::Op::kWatchCancel) return cancel_watch(conn_id, req->watch_id);
  // Whose request it is: the connection's identity, or the caller a member forwards for.
  std::string identity = cc.identity;
  Status allowed;
  if (!req->on_behalf_of.empty()) {
    if (cc.member) {
      identity = req->on_behalf_of;
    } else if (permissions_ != nullptr) {
      allowed = Status::permission_denied(
          "permission denied: " + cc.identity + " may not act on behalf of " + req->on_behalf_of +
          " (only a cluster member's connection may: the secret, or a certificate naming its "
          "peer address)");
    }
  }
  if (allowed.ok()) allowed = authorize(identity, *req);
  if (!allowed.ok() || req->op == wire::Op::kWhoami) {
    // Answered here, before anything is read or proposed.
    wire::Response r = allowed.ok() ? whoami(*req, identity) : base_response(req->id);
    if (!allowed.ok()) {
      note_refusal(allowed, identity, wire::op_name(req->op), req->key, conn.peer());
      r.code = allowed.code();
      r.message = allowed.message();
      r.done = true;
    }
    ++cc.inflight;
    send_to_client(conn_id, r, true);
    return;
  }
  ++cc.inflight;
  if (cc.inflight >= options_.max_inflight_requests && !cc.paused) {
    cc.paused = true;
    conn.pause_reading();
  }
  switch (req->op) {
    case wire::Op::kWatchLeader: {
      leader_watchers_[++watcher_seq_] = {conn_id, req->id};
      wire::Response r = base_response(req->id);
      r.watch_id = req->id;
      r.count = node_->term();
      send_to_client(conn_id, r, true);
      return;
    }
    case wire::Op::kSnapshotSave: {
      if (!stopping_) return start_snapshot_save(conn_id, req->id);
      wire::Response r = base_response(req->id);
      r.code = Code::kShuttingDown;
      r.message = "member shutting down";
      r.done = true;
      send_to_client(conn_id, r, true);
      return;
    }
    case wire::Op::kWatch: {
      Watcher w;
      w.id = req->id;
      w.conn = conn_id;
      w.key = req->key;
      w.prefix = req->prefix;
      w.next_revision = req->start_revision;
      w.prev_kv = req->prev_kv;
      w.identity = identity;
      add_watcher(std::move(w),
                  [this, conn_id](wire::Response r) { send_to_client(conn_id, r, true); });
      return;
    }
    default: {
      const wire::Op op = req->op;
      const auto start = std::chrono::steady_clock::now();
      handle_request(std::move(*req), [this, conn_id, op, start](wire::Response r) {
        count_request(op, start, r.code);
        send_to_client(conn_id, r, true);
      });
    }
  }
}

void Engine::Impl::send_to_client(std::uint64_t conn_id, const wire::Response& r, bool final) {
  auto it = clients_.find(conn_id);
  if (it == clients_.end()) return;
  ClientConn& cc = it->second;
  std::string out;
  wire::append_response(out, r);
  cc.conn->send(out);
  if (final && cc.inflight > 0) {
    --cc.inflight;
    if (cc.paused && cc.inflight < options_.max_inflight_requests / 2) {
      cc.paused = false;
      cc.conn->resume_reading();
    }
  }
}

void Engine::Impl::on_client_closed(std::uint64_t conn_id) {
  if (auto c = clients_.find(conn_id); c != clients_.end()) {
    auto n = clients_per_address_.find(c->second.address);
    if (n != clients_per_address_.end() && --n->second == 0) clients_per_address_.erase(n);
  }
  clients_.erase(conn_id);
  for (auto it = leader_watchers_.begin(); it != leader_watchers_.end();) {
    it = it->second.conn == conn_id ? leader_watchers_.erase(it) : std::next(it);
  }
  for (auto it = watchers_.begin(); it != watchers_.end();) {
    it = it->second.conn == conn_id ? watchers_.erase(it) : std::next(it);
  }
  for (auto it = watch_groups_.lower_bound(WatchGroupKey{conn_id, "", false, false, ""});
       it != watch_groups_.end() && std::get<0>(it->first) == conn_id;) {
    it = watch_groups_.erase(it);
  }
}

}  // namespace kvc::server
