// Links between members: each member dials every other member once and sends its Raft
// messages on that outgoing connection; it receives on the connections the others dial. Every
// connection opens with a handshake (wire/handshake.h, the machines the client port and the client
// library run too) naming the protocol version, cluster id and member id; a
// peer of another cluster, or an unknown message, closes the link with a logged reason. Lost
// links are redialled with back-off; messages to an unreachable peer are dropped (Raft resends)
// and reported so the leader stops pipelining to it. With a shared secret or certificates every
// link, in both directions, and the join handshake run inside TLS (net/tls.h): no Raft message
// is sent or accepted on a link before its TLS handshake authenticated the other side. Loop
// thread only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <set>
#include <string>

#include "kvc/net/connection.h"
#include "kvc/raft/message.h"
#include "kvc/server/environment.h"
#include "kvc/wire/handshake.h"
#include "kvc/wire/messages.h"

namespace kvc::server {

struct PeerTransportOptions {
  std::uint64_t self_id = 0;
  std::uint64_t cluster_id = 0;
  std::string name;
  std::string peer_addr;    // advertised
  std::string client_addr;  // advertised
  std::size_t max_frame_bytes = 16u << 20;
  std::size_t max_queued_bytes = 32u << 20;  // per link; beyond this messages are dropped
  std::uint64_t connect_timeout_ms = 1000;
  // Incoming connections on the peer port (handshaking or established) beyond this are
  // refused with a hello reply saying so.
  std::size_t max_incoming = 256;
  // An incoming connection whose handshake is not complete this long after it was accepted is
  // closed (EngineOptions::handshake_timeout_ms).
  std::uint64_t handshake_timeout_ms = 5000;
  // A member being added to the cluster dials a peer with member id 0 and this digest of the
  // cluster token (join_token_digest) to learn its id; see PeerTransport::JoinHandler.
  std::string token_digest;
  // TLS (EngineOptions::peer_tls, or the shared secret as a pre-shared key); null: plaintext.
  // `server_tls` serves the peer port; `dial_tls` is used when this member dials a peer, which
  // must present a certificate naming the address dialled. With certificates required of
  // incoming peers (--peer-client-cert-auth), a peer's certificate must name the peer address
  // its hello claims.
  std::shared_ptr<const net::TlsContext> server_tls;
  std::shared_ptr<const net::TlsContext> dial_tls;
};

// The token digest a joining member presents: 8 bytes, derived from the cluster token.
std::string join_token_digest(const std::string& cluster_token);

// Blocking, before the member's loop starts: asks the members at `peer_addrs`, in turn and
// repeatedly until `timeout_ms`, which id the cluster assigned to `name` (kvc-ctl member add
// must have been run first). Fails with the last answer's reason. With `tls` (the peer dialling
// context) the question goes over TLS.
Result<JoinAnswer> join_cluster(const std::vector<std::string>& peer_addrs, const std::string& name,
                                const std::string& cluster_token,
                                std::shared_ptr<const net::TlsContext> tls,
                                std::uint64_t timeout_ms);

class PeerTransport final : public Transport {
 public:
  using MessageHandler = std::function<void(raft::Message)>;
  using UnreachableHandler = std::function<void(std::uint64_t id, bool snapshot)>;
  using PeerInfoHandler = std::function<void(const PeerInfo&)>;
  // Returns the id the cluster assigned to a member added under `name`, or why not.
  using JoinHandler = std::function<Result<std::uint64_t>(const std::string& name)>;
  // A peer told this member that it was removed from the cluster.
  using RemovedHandler = std::function<void(const std::string& told_by)>;

  PeerTransport(uv_loop_t* loop, PeerTransportOptions options, MessageHandler on_message,
                UnreachableHandler on_unreachable, PeerInfoHandler on_peer_info,
                JoinHandler on_join, RemovedHandler on_removed);
  ~PeerTransport();
  // Reloaded TLS contexts (Engine::reload_tls): new incoming links and new dials use them; the
  // links already up keep theirs. Loop thread.
  void set_tls(std::shared_ptr<const net::TlsContext> server_tls,
               std::shared_ptr<const net::TlsContext> dial_tls);

  Status listen(const net::Address& address);
  const net::Address& bound() const { return listener_.bound(); }

  // The members to keep links to (this member excluded): id -> peer address.
  void set_peers(const std::map<std::uint64_t, std::string>& peers) override;
  // Member `id` was removed from the cluster: its links are closed and its hellos refused with
  // `removed` set, so that it learns it and stops. The Engine marks every removed id its stored
  // membership records (storage::Membership::removed) at start and after each change, so
  // this holds across restarts.
  void mark_removed(std::uint64_t id) override;
  // Sends a message (m.to names the peer). Never blocks; may drop.
  void send(const raft::Message& m) override;
  // Closes every link and stops dialling.
  void close() override;

  std::size_t connected_peers() const override;

 private:
  struct Link {
    std::uint64_t id = 0;
    std::string address;
    std::shared_ptr<net::Connection> conn;
    bool connecting = false;
    std::uint64_t backoff_ms = 0;
    uv_timer_t* retry = nullptr;  // pending redial
    bool reported_down = false;
    // The current connection's handshake until the member's reply is checked (then null).
    std::unique_ptr<wire::DialerHandshake> handshake;
    // Messages may be sent: the hello is out and, with a secret, both proofs checked out.
    bool ready = false;
  };

  void dial(Link& link);
  void schedule_redial(std::uint64_t id);
  void on_incoming(std::shared_ptr<net::Connection> conn);
  void on_incoming_frame(net::Connection& conn, std::string_view payload);
  // The steps of on_incoming_frame: the handshake (wire/handshake.h: a peer's hello, checked by
  // admit_peer, or a joining member's asking for its id), then Raft messages.
  void on_incoming_handshake(net::Connection& conn, wire::MemberHandshake& handshake,
                             const wire::Envelope& env);
  // The peer port's own checks of a hello (the protocol version and the secret are the
  // handshake's); sets reply->removed for a removed member. A join passes.
  Status admit_peer(const wire::Hello& hello, wire::HelloReply* reply) const;
  // With TLS and a verified client certificate: it must name the peer address the hello claims.
  Status check_peer_certificate(const net::Connection& conn, const wire::Hello& hello) const;
  void on_incoming_raft(net::Connection& conn, std::uint64_t peer, const wire::Envelope& env);
  void on_outgoing_frame(std::uint64_t id, net::Connection& conn, std::string_view payload);
  void answer_join(net::Connection& conn, const wire::Hello& hello);
  // What every reply of this member on the peer port carries.
  wire::HelloReply identity_reply() const;
  // Refusals (either way: authentication, cluster or member mismatch, removed members, joins,
  // limits) are logged at most once a second per `key` (a refused peer redials several times a
  // second); the rest are counted into the next line.
  void log_refusal(const std::string& key, const std::string& line);

  uv_loop_t* loop_;
  PeerTransportOptions options_;
  MessageHandler on_message_;
  UnreachableHandler on_unreachable_;
  PeerInfoHandler on_peer_info_;
  JoinHandler on_join_;
  RemovedHandler on_removed_;
  std::set<std::uint64_t> removed_;
  net::Listener listener_;
  std::map<std::uint64_t, Link> links_;
  std::map<net::Connection*, std::shared_ptr<net::Connection>> incoming_;
  std::map<net::Connection*, std::uint64_t> incoming_peer_;  // handshake done: who it is
  // Handshakes not yet complete (or refused and being flushed): nothing else is handled.
  std::map<net::Connection*, std::unique_ptr<wire::MemberHandshake>> incoming_handshake_;
  // When each of them must be done (uv_now), and the timer that closes the late ones.
  std::map<net::Connection*, std::uint64_t> handshake_deadline_;
  uv_timer_t* handshake_timer_ = nullptr;
  void sweep_handshakes();
  struct AuthLog {
    std::uint64_t last_ms = 0;
    std::uint64_t suppressed = 0;
  };
  std::map<std::string, AuthLog> auth_logs_;  // by direction and peer
  bool closed_ = false;
  std::string scratch_;
};

}  // namespace kvc::server
