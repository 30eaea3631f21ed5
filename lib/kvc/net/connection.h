// TCP connections carrying kvc frames, on a libuv loop that the caller owns and runs (net/ never
// creates or runs a loop, and never starts a thread). A Connection reads frames and hands each
// payload to its handler; send() queues framed bytes and coalesces them into few writes.
//
// Corking: send() does not write. The frames a connection is given during one turn of the loop
// gather in memory, and a uv_prepare handle (it runs once per turn, after every callback of the
// turn, just before the loop waits for I/O) hands them to the socket in one uv_write; with TLS
// they are also encrypted in one go there (one SSL_write: as few records as their size allows).
// So the loop never waits for I/O with output corked, and a lone request is not delayed. While
// a write is in flight, output keeps gathering and goes in the first turn after it completes.
// Why: per write, a connection pays a syscall, and with TLS OpenSSL's per-record work (more
// than the cipher on ~50-byte frames; docs/performance.md). close() still offers the socket
// what was corked (what an immediate write would have sent), unless a write failed or one is
// in flight.
//
// Back-pressure: when a connection's unsent output passes `pause_reading_above`, it stops
// reading from that peer until the output drains below half of it, so a client that does not
// read its answers cannot make the member buffer without bound; past `close_above` the
// connection is closed as too slow. Bad input (oversized or empty frames) closes the
// connection with a reason; the handler sees only whole frames. An owner that can tell the peer
// why may set ConnectionOptions::on_oversized: the frame is then skipped (read and dropped, never
// buffered) instead, and the connection goes on with the next frame.
//
// TLS: with ConnectionOptions::tls set, the connection runs a TlsSession (net/tls.h) under the
// frames: bytes read are fed to it and only its plaintext reaches the frame decoder; send()
// encrypts (queued inside the session until its handshake is done). A failed handshake closes
// the connection with the session's error as the reason (its alert, if any, is sent first).
// The owner's own handshake time limit covers the TLS handshake, since no frame (so no hello)
// arrives before it completes. Back-pressure counts ciphertext. A connection without TLS that
// receives a TLS record before any frame closes with a reason naming the mismatch.
//
// Thread-safety: every method must be called on the loop's thread. Lifetime: the libuv handle
// keeps the Connection alive until its close completes, after which the close handler runs
// exactly once.
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/net/address.h"
#include "kvc/net/tls.h"
#include "kvc/wire/frame.h"

namespace kvc::net {

class Connection;
struct ConnectAttempt;

struct ConnectionOptions {
  std::size_t max_frame_bytes = wire::kDefaultMaxFrameBytes;
  std::size_t pause_reading_above = 8u << 20;
  std::size_t close_above = 64u << 20;
  // Called when the peer announces a frame larger than max_frame_bytes (`frame_bytes` is its
  // payload length). Return true to skip that frame and keep the connection (the handler
  // usually sends the peer a refusal), false to close it. Unset: close.
  std::function<bool(Connection&, std::size_t frame_bytes)> on_oversized;
  // Set: the connection speaks TLS with this context (its role says which side we are).
  std::shared_ptr<const TlsContext> tls;
  // A client context: the host name or IP address the server's certificate must name. connect()
  // fills it with the host dialled when it is empty; set it to "-" to check the chain only
  // (the owner then checks tls()->peer() itself).
  std::string tls_expected_name;
  // Without `tls`: bytes a listener's connection sends a client that began a TLS handshake,
  // before it closes. Any plaintext answer makes that client fail at once, naming the mismatch
  // ("the server does not speak TLS"), rather than take the hang-up for a network fault and
  // retry until its deadline. Empty: it only closes.
  std::string answer_to_tls_client;
};

class Connection : public std::enable_shared_from_this<Connection> {
 public:
  using FrameHandler = std::function<void(Connection&, std::string_view payload)>;
  using CloseHandler = std::function<void(Connection&, const Status& reason)>;

  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Starts reading. Handlers are called on the loop thread.
  void start(FrameHandler on_frame, CloseHandler on_close);

  // Queues already framed bytes. A closed connection drops them.
  void send(std::string_view framed);
  // Unsent output, in bytes.
  std::size_t output_bytes() const { return tls_plain_.size() + pending_.size() + inflight_bytes_; }
  // True while output sent in this loop turn waits to go out together at the turn's end.
  bool gathering() const { return corked_ && !closing_; }

  // Stops / resumes reading on the caller's behalf (e.g. too many requests in flight).
  void pause_reading();
  void resume_reading();

  // Closes the connection; the close handler runs later with `reason`. Idempotent: the first
  // reason wins. Output still queued behind a write in flight is dropped; output corked in this
  // turn is offered to the socket once (uv_try_write) first.
  void close(const Status& reason);
  // Sends what is queued, then closes (used to deliver a refusal before hanging up).
  void close_after_flush(const Status& reason);
  bool closed() const { return closing_; }

  const std::string& peer() const { return peer_; }
  // The first bytes the peer sent (up to 8), for diagnosing a peer that does not speak kvc's
  // framing, e.g. "HTTP/1.1" from an HTTP server.
  const std::string& first_bytes() const { return first_bytes_; }
  // The TLS session, when the connection speaks TLS (null otherwise). Its peer() is the other
  // side's verified identity once handshake_done().
  const TlsSession* tls() const { return tls_.get(); }
  // Free for the owner: which member or client this is.
  std::uint64_t tag = 0;

 private:
  friend class Listener;
  friend struct ConnectAttempt;

  Connection(uv_loop_t* loop, ConnectionOptions options);
  static std::shared_ptr<Connection> make(uv_loop_t* loop, const ConnectionOptions& options);
  void update_reading();
  void flush();
  // Arms the cork: uncork() runs in this turn's prepare phase.
  void cork();
  // The prepare callback: encrypts what gathered (TLS) and writes it, unless a write is in
  // flight (on_written corks again when it completes).
  void uncork();
  // close(): offers corked output to the socket once, without a request or a callback.
  void write_corked_now();
  void on_read(ssize_t n, const uv_buf_t* buf);
  void deliver();  // hands buffered whole frames to the handler
  void on_written(int status);
  // TLS: moves the session's ciphertext into pending_ and closes on its error.
  bool take_tls_output();
  // TLS: encrypts tls_plain_ (one write: as few records as its size allows) and queues it.
  bool encrypt_plain();
  // Closes when more than close_above bytes wait; pauses reading above pause_reading_above.
  // False when it closed.
  bool check_output_limits();
  Status check_plaintext_mismatch();

  uv_tcp_t tcp_{};
  ConnectionOptions options_;
  wire::FrameDecoder decoder_;
  FrameHandler on_frame_;
  CloseHandler on_close_;
  std::string peer_;
  std::string first_bytes_;
  std::unique_ptr<TlsSession> tls_;
  Status tls_error_;       // the session could not be made: start() closes with this
  std::string plaintext_;  // TLS: decrypted bytes on their way to the decoder
  // TLS: frames sent since the last encryption (this turn, or while a write was in flight),
  // encrypted together by uncork(), so that many small frames become one record and one pass
  // through OpenSSL (each record costs OpenSSL's per-call work and 22 bytes, whatever its size).
  std::string tls_plain_;
  // Runs uncork() once per loop turn while armed (corked_). Closed with tcp_: the close handler
  // runs when both have closed (open_handles_ counts them down).
  uv_prepare_t cork_{};
  bool corked_ = false;
  int open_handles_ = 0;
  bool write_failed_ = false;  // a write failed: close() offers nothing more to the socket
  bool dialled_ = false;       // made by connect(): this side is the client
  bool delivered_ = false;     // a frame reached the handler (the peer speaks kvc framing)
  std::string pending_;        // queued, not yet handed to libuv
  std::string inflight_;       // handed to libuv, not yet written
  std::size_t inflight_bytes_ = 0;
  uv_write_t write_req_{};
  bool writing_ = false;
  bool started_ = false;
  bool reading_ = false;
  bool paused_by_user_ = false;
  bool paused_by_output_ = false;
  bool closing_ = false;
  bool close_after_flush_ = false;
  Status close_reason_;
  std::shared_ptr<Connection> self_;  // held while the libuv handle is open
};

class Listener {
 public:
  using AcceptHandler = std::function<void(std::shared_ptr<Connection>)>;

  Listener(uv_loop_t* loop, ConnectionOptions options)
      : loop_(loop), options_(std::move(options)) {}
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // Binds and listens. Port 0 picks a free port; bound() tells which.
  Status listen(const Address& address, AcceptHandler on_accept);
  const Address& bound() const { return bound_; }
  // Stops accepting. Existing connections are not affected.
  void close();
  // Connections accepted from now on use `tls` (a reloaded context; null: plaintext); those
  // already open keep theirs.
  void set_tls(std::shared_ptr<const TlsContext> tls) { options_.tls = std::move(tls); }

 private:
  struct Handle;
  uv_loop_t* loop_;
  ConnectionOptions options_;
  Address bound_;
  Handle* handle_ = nullptr;  // owned by libuv until its close callback
};

// Connects to `address`, resolving a host name first (uv_getaddrinfo, on every call: a name that
// moved is followed) and trying its addresses in turn. `on_done` runs on the loop thread, once,
// with the connection (not yet started: call start()) or an error: kNotFound when the host name
// does not exist, kUnavailable otherwise (refused, unreachable, resolver failure, or no
// connection within `timeout_ms`, which covers the lookup too).
void connect(uv_loop_t* loop, const Address& address, const ConnectionOptions& options,
             std::uint64_t timeout_ms,
             std::function<void(Result<std::shared_ptr<Connection>>)> on_done);

}  // namespace kvc::net
