#include "kvc/server/peer_transport.h"

#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <thread>

#include "kvc/common/version.h"
#include "kvc/storage/data_dir.h"
#include "kvc/wire/messages.h"
#include "kvc/wire/raft_codec.h"

namespace kvc::server {
namespace {

constexpr std::uint64_t kMinBackoffMs = 50;
// A member that comes back is redialled within this long: a leader learns of a restarted
// follower no later than a couple of heartbeats after it listens again. A redial costs one
// connect attempt, cheap at four a second per peer.
constexpr std::uint64_t kMaxBackoffMs = 250;

std::string hex(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

// What the peer port answers a member that dials it with TLS when this member has none.
std::string plaintext_answer_to_tls() {
  std::string out;
  wire::append_hello_reply(
      out, {.code = Code::kFailedPrecondition,
            .message = "this peer port does not speak TLS (the member has no --peer-cert-file "
                       "or secret)"});
  return out;
}

}  // namespace

std::string join_token_digest(const std::string& cluster_token) {
  const std::uint64_t d = storage::derive_member_id(cluster_token, "kvc-join");
  std::string out(8, '\0');
  for (int i = 0; i < 8; ++i) out[static_cast<std::size_t>(i)] = static_cast<char>(d >> (8 * i));
  return out;
}

namespace {

// One join attempt over a blocking socket with timeouts: hello, then the member's answer. With
// `tls`, both go through a TLS session (its handshake first; the member's certificate must name
// the host dialled).
Result<wire::HelloReply> ask_for_id(const std::string& address, const std::string& name,
                                    const std::string& digest,
                                    const std::shared_ptr<const net::TlsContext>& tls) {
  Result<net::Address> a = net::parse_address(address);
  if (!a.ok()) return a.status();
  sockaddr_storage ss{};
  KVC_RETURN_IF_ERROR(net::to_sockaddr(*a, &ss));
  storage::UniqueFd fd(::socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd.valid()) return Status::from_errno("socket", errno);
  timeval tv{1, 0};
  ::setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::setsockopt(fd.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  const socklen_t len = ss.ss_family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
  if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&ss), len) != 0) {
    return Status::unavailable("connect to " + address + ": " + std::strerror(errno));
  }
  std::unique_ptr<net::TlsSession> session;
  if (tls != nullptr) {
    Result<std::unique_ptr<net::TlsSession>> s = net::TlsSession::create(tls, a->host);
    if (!s.ok()) return s.status();
    session = std::move(*s);
  }
  // Plaintext goes out through the session when there is one (with whatever it has to send).
  auto send = [&](std::string_view plain) -> Status {
    if (session == nullptr) return storage::write_all(fd.get(), plain, address);
    KVC_RETURN_IF_ERROR(session->write(plain));
    const std::string out = session->take_output();
    return out.empty() ? Status() : storage::write_all(fd.get(), out, address);
  };
  wire::DialerHandshake handshake({.role = wire::Role::kPeer,
                                   .name = name,
                                   .software_version = kvc::version(),
                                   .proof = digest});
  wire::HandshakeStep hello = handshake.start();
  if (hello.action != wire::HandshakeAction::kContinue) return hello.why;
  KVC_RETURN_IF_ERROR(send(hello.frames));
  wire::FrameDecoder decoder(1 << 20);
  auto read_frame = [&]() -> Result<wire::Envelope> {
    char buf[4096];
    for (int reads = 0; reads < 1024; ++reads) {
      std::string_view payload;
      bool has = false;
      KVC_RETURN_IF_ERROR(decoder.next(&payload, &has));
      if (has) return wire::open_envelope(payload);
      const ssize_t n = ::read(fd.get(), buf, sizeof buf);
      if (session != nullptr && n == 0) return session->on_eof().with_context(address);
      if (n <= 0) return Status::unavailable("no answer from " + address);
      if (session == nullptr) {
        decoder.feed(buf, static_cast<std::size_t>(n));
        continue;
      }
      const Status fed = session->feed(std::string_view(buf, static_cast<std::size_t>(n)));
      if (const std::string out = session->take_output(); !out.empty()) {
        (void)storage::write_all(fd.get(), out,
                                 address);  // the handshake's next flight, or an alert
      }
      if (!fed.ok()) return fed.with_context(address);
      std::string plain;
      session->read_plaintext(plain);
      if (!plain.empty()) decoder.feed(plain.data(), plain.size());
    }
    return Status::corruption("no complete answer from " + address);
  };
  Result<wire::Envelope> frame = read_frame();
  if (!frame.ok()) return frame.status();
  wire::HandshakeStep step = handshake.on_frame(*frame);
  if (!step.frames.empty()) KVC_RETURN_IF_ERROR(send(step.frames));
  switch (step.action) {
    case wire::HandshakeAction::kContinue:
    case wire::HandshakeAction::kClose:
      return Status::corruption("unexpected answer from " + address + ": " + step.why.message());
    case wire::HandshakeAction::kRefuse: {
      // Refused, or the member's proof is wrong: final, like a wrong cluster token (retrying
      // cannot make the secrets agree).
      wire::HelloReply refused = handshake.reply();
      refused.code = step.why.code();
      refused.message = step.why.message();
      return refused;
    }
    case wire::HandshakeAction::kOpen:
      break;
  }
  return handshake.reply();
}

}  // namespace

Result<JoinAnswer> join_cluster(const std::vector<std::string>& peer_addrs, const std::string& name,
                                const std::string& cluster_token,
                                std::shared_ptr<const net::TlsContext> tls,
                                std::uint64_t timeout_ms) {
  if (peer_addrs.empty()) return Status::invalid_argument("no peer to ask for this member's id");
  const std::string digest = join_token_digest(cluster_token);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(timeout_ms);
  Status last;
  for (std::size_t round = 0;; ++round) {
    for (const std::string& addr : peer_addrs) {
      Result<wire::HelloReply> r = ask_for_id(addr, name, digest, tls);
      if (r.ok() && r->code == Code::kOk && r->assigned_member_id != 0) {
        JoinAnswer a;
        a.member_id = r->assigned_member_id;
        a.cluster_id = r->cluster_id;
        a.answered_by = {r->member_id, r->name, addr, r->client_addr};
        return a;
      }
      last = r.ok() ? Status(r->code, addr + ": " + r->message) : r.status();
      // Wrong token, or a TLS refusal (another secret, an untrusted certificate): final.
      if (r.ok() && r->code == Code::kFailedPrecondition) return last;
      if (!r.ok() && r.status().code() == Code::kFailedPrecondition) return last;
    }
    if (std::chrono::steady_clock::now() >= deadline) break;
    if (round == 0)
      spdlog::info("waiting for the cluster to know this member name={} ({})", name,
                   last.message());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  return Status::unavailable("no member of the cluster could tell this member's id: " +
                             last.message());
}

PeerTransport::PeerTransport(uv_loop_t* loop, PeerTransportOptions options,
                             MessageHandler on_message, UnreachableHandler on_unreachable,
                             PeerInfoHandler on_peer_info, JoinHandler on_join,
                             RemovedHandler on_removed)
    : loop_(loop),
      options_(std::move(options)),
      on_message_(std::move(on_message)),
      on_unreachable_(std::move(on_unreachable)),
      on_peer_info_(std::move(on_peer_info)),
      on_join_(std::move(on_join)),
      on_removed_(std::move(on_removed)),
      listener_(loop, {.max_frame_bytes = options_.max_frame_bytes,
                       .pause_reading_above = options_.max_queued_bytes,
                       .close_above = options_.max_queued_bytes * 4,
                       .tls = options_.server_tls,
                       .answer_to_tls_client = plaintext_answer_to_tls()}) {}

void PeerTransport::set_tls(std::shared_ptr<const net::TlsContext> server_tls,
                            std::shared_ptr<const net::TlsContext> dial_tls) {
  listener_.set_tls(server_tls);
  options_.server_tls = std::move(server_tls);
  options_.dial_tls = std::move(dial_tls);
}

PeerTransport::~PeerTransport() { close(); }

Status PeerTransport::listen(const net::Address& address) {
  KVC_RETURN_IF_ERROR(listener_.listen(
      address, [this](std::shared_ptr<net::Connection> c) { on_incoming(std::move(c)); }));
  if (handshake_timer_ == nullptr) {
    handshake_timer_ = new uv_timer_t();  // closed and freed in close()
    uv_timer_init(loop_, handshake_timer_);
    handshake_timer_->data = this;
    const std::uint64_t every = std::max<std::uint64_t>(options_.handshake_timeout_ms / 4, 10);
    uv_timer_start(
        handshake_timer_,
        [](uv_timer_t* t) { static_cast<PeerTransport*>(t->data)->sweep_handshakes(); }, every,
        every);
  }
  return Status();
}

void PeerTransport::sweep_handshakes() {
  const std::uint64_t now = uv_now(loop_);
  std::vector<std::shared_ptr<net::Connection>> late;
  for (const auto& [ptr, deadline] : handshake_deadline_) {
    if (deadline > now) continue;
    auto c = incoming_.find(ptr);
    if (c != incoming_.end()) late.push_back(c->second);
  }
  for (const std::shared_ptr<net::Connection>& c : late) {
    handshake_deadline_.erase(c.get());
    log_refusal("handshake-timeout",
                "closing peer connection from=" + c->peer() + " reason=no handshake within " +
                    std::to_string(options_.handshake_timeout_ms) + " ms (--handshake-timeout)");
    c->close(Status::timeout("no handshake within " +
                             std::to_string(options_.handshake_timeout_ms) + " ms"));
  }
}

void PeerTransport::close() {
  if (closed_) return;
  closed_ = true;
  listener_.close();
  if (handshake_timer_ != nullptr) {
    uv_timer_stop(handshake_timer_);
    uv_close(reinterpret_cast<uv_handle_t*>(handshake_timer_),
             [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
    handshake_timer_ = nullptr;
  }
  handshake_deadline_.clear();
  for (auto& [id, link] : links_) {
    if (link.retry != nullptr) {
      uv_timer_stop(link.retry);
      uv_close(reinterpret_cast<uv_handle_t*>(link.retry),
               [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      link.retry = nullptr;
    }
    if (link.conn) link.conn->close(Status::shutting_down("member stopping"));
  }
  links_.clear();
  auto incoming = std::move(incoming_);
  for (auto& [ptr, conn] : incoming) conn->close(Status::shutting_down("member stopping"));
  incoming_peer_.clear();
}

std::size_t PeerTransport::connected_peers() const {
  return static_cast<std::size_t>(std::count_if(links_.begin(), links_.end(), [](const auto& kv) {
    return kv.second.conn && !kv.second.conn->closed();
  }));
}

void PeerTransport::set_peers(const std::map<std::uint64_t, std::string>& peers) {
  if (closed_) return;
  for (auto it = links_.begin(); it != links_.end();) {
    auto want = peers.find(it->first);
    if (want == peers.end() || want->second != it->second.address) {
      if (it->second.retry != nullptr) {
        uv_timer_stop(it->second.retry);
        uv_close(reinterpret_cast<uv_handle_t*>(it->second.retry),
                 [](uv_handle_t* h) { delete reinterpret_cast<uv_timer_t*>(h); });
      }
      if (it->second.conn) it->second.conn->close(Status::shutting_down("peer removed"));
      it = links_.erase(it);
    } else {
      ++it;
    }
  }
  for (const auto& [id, addr] : peers) {
    if (id == options_.self_id || links_.count(id) != 0) continue;
    Link& link = links_[id];
    link.id = id;
    link.address = addr;
    dial(link);
  }
}

void PeerTransport::dial(Link& link) {
  if (closed_ || link.connecting || (link.conn && !link.conn->closed())) return;
  Result<net::Address> addr = net::parse_address(link.address);
  if (!addr.ok()) {
    spdlog::error("bad peer address peer={} address={} error={}", hex(link.id), link.address,
                  addr.status().message());
    return;
  }
  link.connecting = true;
  const std::uint64_t id = link.id;
  net::connect(
      loop_, *addr,
      {.max_frame_bytes = options_.max_frame_bytes,
       .pause_reading_above = options_.max_queued_bytes,
       .close_above = options_.max_queued_bytes * 4,
       .tls = options_.dial_tls},
      options_.connect_timeout_ms, [this, id](Result<std::shared_ptr<net::Connection>> r) {
        auto it = links_.find(id);
        if (closed_ || it == links_.end()) {
          if (r.ok()) (*r)->close(Status::shutting_down("peer no longer wanted"));
          return;
        }
        Link& l = it->second;
        l.connecting = false;
        if (!r.ok()) {
          if (!l.reported_down) {
            spdlog::warn("cannot reach peer peer={} address={} error={}", hex(id), l.address,
                         r.status().message());
            l.reported_down = true;
          }
          schedule_redial(id);
          return;
        }
        l.conn = std::move(*r);
        l.conn->tag = id;
        l.conn->start(
            [this, id](net::Connection& c, std::string_view p) { on_outgoing_frame(id, c, p); },
            [this, id](net::Connection& c, const Status& why) {
              auto lt = links_.find(id);
              if (closed_ || lt == links_.end() || lt->second.conn.get() != &c) return;
              lt->second.conn.reset();
              if (why.message().rfind("tls", 0) == 0) {
                // A TLS refusal says what to fix (the peer's certificate, another secret): said
                // once a second while it lasts, even when the link was already reported down.
                log_refusal("tls " + hex(id), "cannot link to peer peer=" + hex(id) + " address=" +
                                                  lt->second.address + " reason=" + why.message());
                lt->second.reported_down = true;
              } else if (!lt->second.reported_down) {
                spdlog::warn("lost link to peer peer={} reason={}", hex(id), why.message());
                lt->second.reported_down = true;
              }
              schedule_redial(id);
            });
        l.handshake = std::make_unique<wire::DialerHandshake>(
            wire::Hello{.role = wire::Role::kPeer,
                        .cluster_id = options_.cluster_id,
                        .member_id = options_.self_id,
                        .name = options_.name,
                        .software_version = kvc::version(),
                        .peer_addr = options_.peer_addr,
                        .client_addr = options_.client_addr});
        wire::HandshakeStep hello = l.handshake->start();
        if (hello.action != wire::HandshakeAction::kContinue) {
          spdlog::error("cannot authenticate to peer peer={} error={}", hex(id),
                        hello.why.message());
          l.conn->close(hello.why);
          return;
        }
        // Messages may follow the hello at once (the peer refuses the whole link if the hello
        // is bad); with TLS, the connection buffers them until its handshake is done.
        l.ready = true;
        l.conn->send(hello.frames);
      });
}

void PeerTransport::schedule_redial(std::uint64_t id) {
  auto it = links_.find(id);
  if (closed_ || it == links_.end()) return;
  Link& l = it->second;
  l.backoff_ms = l.backoff_ms == 0 ? kMinBackoffMs : std::min(l.backoff_ms * 2, kMaxBackoffMs);
  if (l.retry == nullptr) {
    l.retry = new uv_timer_t();  // closed and freed in close()/set_peers() or after firing
    uv_timer_init(loop_, l.retry);
    l.retry->data = this;
  }
  // The timer's data is the transport; which link it serves is looked up by scanning, which
  // is cheap for the handful of members a cluster has.
  uv_timer_start(
      l.retry,
      [](uv_timer_t* t) {
        auto* self = static_cast<PeerTransport*>(t->data);
        for (auto& [lid, link] : self->links_) {
          if (link.retry == t) {
            self->dial(link);
            return;
          }
        }
      },
      l.backoff_ms, 0);
}

void PeerTransport::on_outgoing_frame(std::uint64_t id, net::Connection& conn,
                                      std::string_view payload) {
  auto it = links_.find(id);
  if (it == links_.end() || it->second.conn.get() != &conn) {
    conn.close(Status::shutting_down("peer no longer wanted"));
    return;
  }
  Link& link = it->second;
  if (link.handshake == nullptr) {
    // A member sends nothing on a link it accepted after its hello reply.
    conn.close(Status::corruption("peer " + hex(id) + " sent a frame after the handshake"));
    return;
  }
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    conn.close(Status::corruption("peer " + hex(id) + " sent an unexpected frame"));
    return;
  }
  wire::HandshakeStep step = link.handshake->on_frame(*env);
  if (!step.frames.empty()) conn.send(step.frames);
  const wire::HelloReply& reply = link.handshake->reply();
  switch (step.action) {
    case wire::HandshakeAction::kContinue:
      return;
    case wire::HandshakeAction::kClose:
      conn.close(Status::corruption("peer " + hex(id) + ": " + step.why.message()));
      return;
    case wire::HandshakeAction::kRefuse:
      log_refusal("refused " + hex(id), "peer refused our link peer=" + hex(id) + " address=" +
                                            link.address + " reason=" + reply.message);
      conn.close(step.why);
      if (reply.removed) on_removed_(reply.name.empty() ? hex(id) : reply.name);
      return;
    case wire::HandshakeAction::kOpen:
      break;
  }
  if (reply.member_id != id) {
    log_refusal("wrong id " + hex(id), "peer answered with another member id expected=" + hex(id) +
                                           " got=" + hex(reply.member_id) +
                                           " address=" + link.address);
    conn.close(Status::failed_precondition("wrong member at peer address"));
    return;
  }
  link.ready = true;
  if (link.reported_down) spdlog::info("link to peer up peer={} name={}", hex(id), reply.name);
  link.reported_down = false;
  link.backoff_ms = 0;
  on_peer_info_({.id = id, .name = reply.name, .client_addr = reply.client_addr});
  link.handshake.reset();
}

void PeerTransport::log_refusal(const std::string& key, const std::string& line) {
  const std::uint64_t now = uv_now(loop_);
  // Bounded: keys come from remote names; forgetting them only means one more log line.
  if (auth_logs_.size() >= 64 && auth_logs_.count(key) == 0) auth_logs_.clear();
  AuthLog& l = auth_logs_[key];
  if (l.last_ms != 0 && now < l.last_ms + 1000) {
    ++l.suppressed;
    return;
  }
  l.last_ms = now;
  spdlog::warn("{} suppressed={}", line, l.suppressed);
  l.suppressed = 0;
}

void PeerTransport::on_incoming(std::shared_ptr<net::Connection> conn) {
  if (closed_) {
    conn->close(Status::shutting_down("member stopping"));
    return;
  }
  if (incoming_.size() >= options_.max_incoming) {
    const Status why =
        Status::resource_exhausted("too many peer connections (--max-peer-connections " +
                                   std::to_string(options_.max_incoming) + ")");
    log_refusal("limit", "refusing peer from=" + conn->peer() + " reason=" + why.message());
    conn->start([](net::Connection&, std::string_view) {}, [](net::Connection&, const Status&) {});
    wire::HelloReply reply = identity_reply();
    reply.code = why.code();
    reply.message = why.message();
    std::string out;
    wire::append_hello_reply(out, reply);
    conn->send(out);
    conn->close_after_flush(why);
    return;
  }
  net::Connection* key = conn.get();
  incoming_[key] = conn;
  handshake_deadline_[key] = uv_now(loop_) + options_.handshake_timeout_ms;
  incoming_handshake_[key] = std::make_unique<wire::MemberHandshake>(
      identity_reply(), [this, key](const wire::Hello& hello, wire::HelloReply* reply) {
        KVC_RETURN_IF_ERROR(check_peer_certificate(*key, hello));
        return admit_peer(hello, reply);
      });
  conn->start(
      [this](net::Connection& c, std::string_view p) { on_incoming_frame(c, p); },
      [this](net::Connection& c, const Status& why) {
        incoming_handshake_.erase(&c);
        handshake_deadline_.erase(&c);
        auto peer = incoming_peer_.find(&c);
        if (peer != incoming_peer_.end()) {
          spdlog::debug("peer link closed peer={} reason={}", hex(peer->second), why.message());
          incoming_peer_.erase(peer);
        } else if (!closed_ && why.message().rfind("tls", 0) == 0) {
          // A TLS refusal (untrusted or expired certificate, another secret, plaintext): the
          // peer redials, so one line a second is enough.
          log_refusal("tls", "refusing peer from=" + c.peer() + " reason=" + why.message());
        } else if (!closed_ && why.code() != Code::kUnavailable &&
                   why.code() != Code::kFailedPrecondition &&
                   why.code() != Code::kTimeout) {  // refusals and timeouts are logged already
          spdlog::warn("peer connection closed before handshake from={} reason={}", c.peer(),
                       why.message());
        }
        incoming_.erase(&c);
      });
}

wire::HelloReply PeerTransport::identity_reply() const {
  return {.cluster_id = options_.cluster_id,
          .member_id = options_.self_id,
          .name = options_.name,
          .software_version = kvc::version(),
          .client_addr = options_.client_addr};
}

namespace {

// A member being added asks for its id (kvc-node --initial-cluster-state existing): a peer
// hello with neither a cluster id nor a member id.
bool is_join(const wire::Hello& hello) {
  return hello.role == wire::Role::kPeer && hello.member_id == 0 && hello.cluster_id == 0;
}

}  // namespace

void PeerTransport::answer_join(net::Connection& conn, const wire::Hello& hello) {
  wire::HelloReply reply = identity_reply();
  Result<std::uint64_t> id = hello.proof == options_.token_digest
                                 ? on_join_(hello.name)
                                 : Result<std::uint64_t>(Status::failed_precondition(
                                       "cluster token mismatch (check --cluster-token)"));
  if (id.ok()) {
    reply.assigned_member_id = *id;
    spdlog::info("told joining member its id name={} id={} from={}", hello.name, hex(*id),
                 conn.peer());
  } else {
    reply.code = id.status().code();
    reply.message = id.status().message();
    log_refusal("join " + hello.name, "refusing join name=" + hello.name + " from=" + conn.peer() +
                                          " reason=" + id.status().message());
  }
  std::string out;
  wire::append_hello_reply(out, reply);
  conn.send(out);
  conn.close_after_flush(Status::unavailable("join answered"));
}

void PeerTransport::on_incoming_frame(net::Connection& conn, std::string_view payload) {
  auto handshake = incoming_handshake_.find(&conn);
  if (handshake != incoming_handshake_.end() &&
      handshake->second->state() == wire::MemberHandshake::State::kRefused) {
    return;  // the refusal is being flushed
  }
  Result<wire::Envelope> env = wire::open_envelope(payload);
  if (!env.ok()) {
    spdlog::warn("closing peer connection from={} reason={}", conn.peer(), env.status().message());
    conn.close(env.status());
    return;
  }
  if (handshake != incoming_handshake_.end()) {
    on_incoming_handshake(conn, *handshake->second, *env);
    return;
  }
  auto peer = incoming_peer_.find(&conn);
  if (peer == incoming_peer_.end()) return;  // a join answered: closing
  on_incoming_raft(conn, peer->second, *env);
}

void PeerTransport::on_incoming_handshake(net::Connection& conn, wire::MemberHandshake& handshake,
                                          const wire::Envelope& env) {
  wire::HandshakeStep step = handshake.on_frame(env);
  const wire::Hello& hello = handshake.hello();
  // A join is answered by one reply carrying its id (answer_join), in place of the opening one.
  const bool join_opened = step.action == wire::HandshakeAction::kOpen && is_join(hello);
  if (!step.frames.empty() && !join_opened) conn.send(step.frames);
  switch (step.action) {
    case wire::HandshakeAction::kContinue:
      return;
    case wire::HandshakeAction::kRefuse: {
      // A refused peer redials every few hundred milliseconds: one line a second per peer.
      const std::string who = hello.member_id != 0 ? hex(hello.member_id) : hello.name;
      log_refusal("in " + who, "refusing peer from=" + conn.peer() + " name=" + hello.name +
                                   " reason=" + step.why.message());
      conn.close_after_flush(step.why);
      return;
    }
    case wire::HandshakeAction::kClose:
      spdlog::warn("closing peer connection from={} reason={}", conn.peer(), step.why.message());
      conn.close(step.why);
      return;
    case wire::HandshakeAction::kOpen:
      break;
  }
  const wire::Hello opened = hello;
  incoming_handshake_.erase(&conn);  // destroys `handshake` and `hello`
  handshake_deadline_.erase(&conn);
  if (is_join(opened)) {
    answer_join(conn, opened);
    return;
  }
  incoming_peer_[&conn] = opened.member_id;
  on_peer_info_({.id = opened.member_id,
                 .name = opened.name,
                 .peer_addr = opened.peer_addr,
                 .client_addr = opened.client_addr});
}

Status PeerTransport::check_peer_certificate(const net::Connection& conn,
                                             const wire::Hello& hello) const {
  const net::TlsSession* tls = conn.tls();
  if (tls == nullptr || !tls->peer().has_certificate || !tls->peer().verified) return Status();
  if (hello.peer_addr.empty()) return Status();  // a join: no address claimed
  Result<net::Address> a = net::parse_address(hello.peer_addr);
  if (!a.ok()) return Status::failed_precondition("bad peer address " + hello.peer_addr);
  if (tls->peer_certificate_names(a->host)) return Status();
  return Status::failed_precondition("the peer's certificate (" + tls->peer().describe() +
                                     ") does not name its peer address " + a->host +
                                     " (a subjectAltName IP or DNS entry)");
}

Status PeerTransport::admit_peer(const wire::Hello& hello, wire::HelloReply* reply) const {
  if (is_join(hello)) return Status();
  if (hello.role != wire::Role::kPeer) {
    return Status::failed_precondition("this is the peer port; clients use the client port");
  }
  if (hello.cluster_id != options_.cluster_id) {
    return Status::failed_precondition("cluster id mismatch: this member belongs to cluster " +
                                       hex(options_.cluster_id) + ", the peer to " +
                                       hex(hello.cluster_id) +
                                       " (check --cluster-token and --initial-cluster)");
  }
  if (hello.member_id == 0 || hello.member_id == options_.self_id) {
    return Status::failed_precondition("bad member id " + hex(hello.member_id));
  }
  if (removed_.count(hello.member_id) != 0) {
    reply->removed = true;
    return Status::failed_precondition("member " + hex(hello.member_id) +
                                       " was removed from the cluster");
  }
  return Status();
}

void PeerTransport::on_incoming_raft(net::Connection& conn, std::uint64_t peer,
                                     const wire::Envelope& env) {
  if (env.kind != wire::FrameKind::kRaft) {
    conn.close(Status::corruption("unexpected frame kind on a peer link"));
    return;
  }
  Result<raft::Message> m = wire::decode_raft_message(*env.body);
  if (!m.ok()) {
    spdlog::warn("closing peer link peer={} reason={}", hex(peer), m.status().message());
    conn.close(m.status());
    return;
  }
  if (m->from != peer || m->to != options_.self_id) {
    spdlog::warn("closing peer link peer={} reason=message from {} to {} on this link", hex(peer),
                 hex(m->from), hex(m->to));
    conn.close(Status::corruption("message addressed wrongly"));
    return;
  }
  on_message_(std::move(*m));
}

void PeerTransport::mark_removed(std::uint64_t id) {
  if (!removed_.insert(id).second) return;
  std::vector<net::Connection*> from_it;
  for (const auto& [conn, peer] : incoming_peer_) {
    if (peer == id) from_it.push_back(conn);
  }
  // Closing makes the removed member redial; its hello is then refused with `removed` set.
  for (net::Connection* c : from_it) c->close(Status::failed_precondition("member removed"));
}

void PeerTransport::send(const raft::Message& m) {
  auto it = links_.find(m.to);
  const bool snapshot = m.type == raft::MessageType::kSnapshot;
  if (closed_ || it == links_.end() || !it->second.conn || it->second.conn->closed()) {
    if (!closed_) on_unreachable_(m.to, snapshot);
    return;
  }
  Link& l = it->second;
  if (!l.ready || l.conn->output_bytes() > options_.max_queued_bytes) {
    // Not authenticated yet, or backed up: let Raft slow down and resend.
    on_unreachable_(m.to, snapshot);
    return;
  }
  scratch_.clear();
  wire::append_raft_message(scratch_, m);
  l.conn->send(scratch_);
}

}  // namespace kvc::server
