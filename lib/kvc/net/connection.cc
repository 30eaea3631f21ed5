#include "kvc/net/connection.h"

#include <algorithm>
#include <memory>
#include <utility>

namespace kvc::net {
namespace {

constexpr std::size_t kReadChunk = 64u << 10;
constexpr std::size_t kFirstBytes = 8;
// Buffers larger than this are given back once empty: an idle connection holds only small ones.
constexpr std::size_t kKeepCapacity = 16u << 10;

// One read buffer per thread, shared by its connections: libuv reads into it right after
// asking for it, and on_read copies the bytes out (into the frame decoder) before returning,
// so no connection needs one of its own while it waits (an idle connection costs no 64 KiB).
char* shared_read_buffer() {
  thread_local std::unique_ptr<char[]> buf(new char[kReadChunk]);
  return buf.get();
}

void release_if_large(std::string& s) {
  if (s.empty() && s.capacity() > kKeepCapacity) std::string().swap(s);
}

// A fatal unexpected_message alert (TLS 1.2 record framing, which TLS 1.3 keeps for alerts): what
// a TLS port answers a plaintext client with, so that the client can tell why it was refused
// rather than seeing a bare hang-up.
constexpr std::string_view kPlaintextRefusedAlert{"\x15\x03\x03\x00\x02\x02\x0a", 7};

Status uv_status(const std::string& what, int err) {
  return Status::unavailable(what + ": " + uv_strerror(err));
}

std::string peer_name(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return sockaddr_to_string(reinterpret_cast<sockaddr*>(&ss));
}

}  // namespace

Connection::Connection(uv_loop_t* loop, ConnectionOptions options)
    : options_(options), decoder_(options.max_frame_bytes) {
  uv_tcp_init(loop, &tcp_);
  tcp_.data = this;
  uv_prepare_init(loop, &cork_);
  cork_.data = this;
}

Connection::~Connection() { KVC_CHECK(!self_, "connection destroyed while its handle is open"); }

std::shared_ptr<Connection> Connection::make(uv_loop_t* loop, const ConnectionOptions& options) {
  std::shared_ptr<Connection> c(new Connection(loop, options));
  c->self_ = c;
  if (options.tls != nullptr) {
    std::string name;
    if (options.tls->role() == TlsRole::kClient && options.tls_expected_name != "-") {
      name = options.tls_expected_name;
    }
    Result<std::unique_ptr<TlsSession>> session = TlsSession::create(options.tls, name);
    if (session.ok()) {
      c->tls_ = std::move(*session);
      c->pending_.append(c->tls_->take_output());  // a client's ClientHello, sent by start()
    } else {
      c->tls_error_ = session.status();
    }
  }
  return c;
}

void Connection::start(FrameHandler on_frame, CloseHandler on_close) {
  KVC_CHECK(!started_, "connection started twice");
  started_ = true;
  on_frame_ = std::move(on_frame);
  on_close_ = std::move(on_close);
  if (peer_.empty()) peer_ = peer_name(&tcp_);
  uv_tcp_nodelay(&tcp_, 1);
  if (closing_) return;
  if (!tls_error_.ok()) {
    close(tls_error_);
    return;
  }
  update_reading();
  flush();
}

void Connection::update_reading() {
  const bool want =
      started_ && !closing_ && !close_after_flush_ && !paused_by_user_ && !paused_by_output_;
  if (want == reading_) return;
  reading_ = want;
  if (!want) {
    uv_read_stop(reinterpret_cast<uv_stream_t*>(&tcp_));
    return;
  }
  const int rc = uv_read_start(
      reinterpret_cast<uv_stream_t*>(&tcp_),
      [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
        *buf = uv_buf_init(shared_read_buffer(), static_cast<unsigned>(kReadChunk));
      },
      [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
        static_cast<Connection*>(s->data)->on_read(n, buf);
      });
  if (rc != 0) close(uv_status("read from " + peer_, rc));
}

void Connection::on_read(ssize_t n, const uv_buf_t* buf) {
  if (n == UV_EOF) {
    if (tls_ != nullptr) {
      // During the handshake the session says what a hang-up there most likely means.
      if (Status s = tls_->on_eof(); !s.ok()) {
        close(s);
        return;
      }
    }
    close(Status::unavailable("connection closed by " + peer_));
    return;
  }
  if (n < 0) {
    close(uv_status("read from " + peer_, static_cast<int>(n)));
    return;
  }
  if (n == 0) return;
  if (first_bytes_.size() < kFirstBytes) {
    first_bytes_.append(buf->base,
                        std::min(kFirstBytes - first_bytes_.size(), static_cast<std::size_t>(n)));
  }
  if (tls_ != nullptr) {
    const Status s = tls_->feed(std::string_view(buf->base, static_cast<std::size_t>(n)));
    plaintext_.clear();
    tls_->read_plaintext(plaintext_);
    if (!s.ok()) {
      std::string out = tls_->take_output();  // the alert for the peer, if OpenSSL made one
      if (out.empty() && tls_->role() == TlsRole::kServer &&
          looks_like_tls(first_bytes_) == TlsSniff::kPlaintext) {
        out = kPlaintextRefusedAlert;
      }
      pending_.append(out);
      close_after_flush(s);
      return;
    }
    if (!take_tls_output()) return;
    if (!plaintext_.empty()) decoder_.feed(plaintext_.data(), plaintext_.size());
    release_if_large(plaintext_);
    deliver();
    if (!closing_ && tls_->peer_closed())
      close(Status::unavailable("connection closed by " + peer_));
    return;
  }
  if (!delivered_) {
    if (Status s = check_plaintext_mismatch(); !s.ok()) {
      if (dialled_ || options_.answer_to_tls_client.empty()) {
        close(s);
        return;
      }
      pending_.append(options_.answer_to_tls_client);
      close_after_flush(s);
      return;
    }
  }
  decoder_.feed(buf->base, static_cast<std::size_t>(n));
  deliver();
}

Status Connection::check_plaintext_mismatch() {
  if (looks_like_tls(first_bytes_) != TlsSniff::kTls) return Status();
  if (dialled_) {
    return Status::failed_precondition(
        "tls: the server speaks TLS and this side sent plaintext: give --cacert (with --cert "
        "and --key if it requires client certificates), or the cluster's secret");
  }
  return Status::failed_precondition(
      "tls: this port does not speak TLS: the client sent a TLS handshake; is it a member "
      "without --cert-file (or a secret) and a client set up for TLS?");
}

bool Connection::check_output_limits() {
  if (output_bytes() > options_.close_above) {
    close(Status::resource_exhausted(
        "peer " + peer_ + " is not reading: " + std::to_string(output_bytes()) + " bytes queued"));
    return false;
  }
  if (!paused_by_output_ && output_bytes() > options_.pause_reading_above) {
    paused_by_output_ = true;
    update_reading();
  }
  return true;
}

bool Connection::take_tls_output() {
  if (tls_->append_output(pending_) == 0) return true;
  if (!check_output_limits()) return false;
  flush();
  return true;
}

bool Connection::encrypt_plain() {
  if (tls_plain_.empty()) return true;
  const Status s = tls_->write(tls_plain_);
  tls_plain_.clear();
  release_if_large(tls_plain_);
  if (!s.ok()) {
    close(s);
    return false;
  }
  return take_tls_output();
}

void Connection::deliver() {
  // The handler may close or pause us, or even drop its last reference: hold one.
  std::shared_ptr<Connection> hold = shared_from_this();
  while (!closing_ && !paused_by_user_) {
    std::string_view payload;
    bool has = false;
    Status s = decoder_.next(&payload, &has);
    if (!s.ok()) {
      if (s.code() == Code::kResourceExhausted && options_.on_oversized) {
        const std::size_t announced = decoder_.skip_oversized();
        if (options_.on_oversized(*this, announced)) continue;
      }
      close(s.with_context("bad frame from " + peer_));
      return;
    }
    if (!has) {
      decoder_.release_consumed(kKeepCapacity);
      return;
    }
    delivered_ = true;
    on_frame_(*this, payload);
  }
}

void Connection::send(std::string_view framed) {
  if (closing_ || close_after_flush_) return;
  if (options_.tls != nullptr) {
    if (tls_ == nullptr) return;  // the session could not be made: start() closes
    // The frame waits as plaintext until uncork() encrypts what gathered in one go.
    tls_plain_.append(framed);
  } else {
    pending_.append(framed);
  }
  if (!check_output_limits()) return;
  cork();
}

void Connection::cork() {
  if (corked_ || closing_) return;
  corked_ = true;
  uv_prepare_start(&cork_, [](uv_prepare_t* p) { static_cast<Connection*>(p->data)->uncork(); });
}

void Connection::uncork() {
  corked_ = false;
  uv_prepare_stop(&cork_);
  if (closing_ || writing_) return;  // on_written corks again once the write is done
  if (tls_ != nullptr && !encrypt_plain()) return;
  flush();
}

void Connection::write_corked_now() {
  if (!corked_ || writing_ || write_failed_ || !started_) return;
  if (tls_ != nullptr) {
    if (!tls_->error().ok() || tls_plain_.empty()) return;
    if (!tls_->write(tls_plain_).ok()) return;
    tls_plain_.clear();
    tls_->append_output(pending_);
  }
  // What the socket takes now, as the immediate uv_write before corking would have; the rest
  // is dropped with the connection.
  if (pending_.empty()) return;
  uv_buf_t buf = uv_buf_init(pending_.data(), static_cast<unsigned>(pending_.size()));
  (void)uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1);
}

void Connection::flush() {
  if (writing_ || pending_.empty() || closing_ || !started_) return;
  inflight_.swap(pending_);
  pending_.clear();
  inflight_bytes_ = inflight_.size();
  uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
  write_req_.data = this;
  writing_ = true;
  const int rc = uv_write(
      &write_req_, reinterpret_cast<uv_stream_t*>(&tcp_), &buf, 1,
      [](uv_write_t* req, int status) { static_cast<Connection*>(req->data)->on_written(status); });
  if (rc != 0) {
    writing_ = false;
    write_failed_ = true;
    close(uv_status("write to " + peer_, rc));
  }
}

void Connection::on_written(int status) {
  writing_ = false;
  inflight_.clear();
  // Kept while more output is queued (it becomes the next pending buffer, already grown);
  // given back once the connection has gone quiet.
  if (pending_.empty()) release_if_large(inflight_);
  inflight_bytes_ = 0;
  if (closing_) return;
  if (status != 0) {
    write_failed_ = true;
    close(uv_status("write to " + peer_, status));
    return;
  }
  if (close_after_flush_) {
    // send() takes nothing more, and close_after_flush() encrypted what it had: pending_ is all.
    if (pending_.empty()) {
      close(close_reason_);
      return;
    }
    flush();
    return;
  }
  if (paused_by_output_ && output_bytes() < options_.pause_reading_above / 2) {
    paused_by_output_ = false;
    update_reading();
  }
  // What gathered during the write goes in this turn's uncork(), with whatever this turn adds.
  if (!pending_.empty() || !tls_plain_.empty()) cork();
}

void Connection::pause_reading() {
  paused_by_user_ = true;
  update_reading();
}

void Connection::resume_reading() {
  if (!paused_by_user_) return;
  paused_by_user_ = false;
  update_reading();
  // Frames already buffered are delivered now rather than at the next read.
  if (!closing_ && reading_ && decoder_.buffered_bytes() > 0) deliver();
}

void Connection::close_after_flush(const Status& reason) {
  if (closing_) return;
  if (tls_ != nullptr && !tls_plain_.empty() && tls_->error().ok()) {
    // Frames sent before the close go out before the close_notify.
    const Status s = tls_->write(tls_plain_);
    tls_plain_.clear();
    if (!s.ok()) {
      close(s);
      return;
    }
    tls_->append_output(pending_);
  }
  if (tls_ != nullptr && tls_->handshake_done() && tls_->error().ok()) {
    tls_->close_notify();
    tls_->append_output(pending_);
  }
  if (pending_.empty() && !writing_) {
    close(reason);
    return;
  }
  close_after_flush_ = true;
  close_reason_ = reason;
  update_reading();
  flush();
}

void Connection::close(const Status& reason) {
  if (closing_) return;
  write_corked_now();
  closing_ = true;
  close_reason_ = reason;
  pending_.clear();
  tls_plain_.clear();
  corked_ = false;
  reading_ = false;
  const uv_close_cb on_closed = [](uv_handle_t* h) {
    auto* c = static_cast<Connection*>(h->data);
    if (--c->open_handles_ > 0) return;
    std::shared_ptr<Connection> last = std::move(c->self_);
    if (c->on_close_) {
      CloseHandler handler = std::move(c->on_close_);
      c->on_frame_ = nullptr;
      handler(*c, c->close_reason_);
    }
  };
  open_handles_ = 2;
  uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), on_closed);
  uv_close(reinterpret_cast<uv_handle_t*>(&cork_), on_closed);
}

struct Listener::Handle {
  uv_tcp_t tcp{};
  Listener* owner = nullptr;
  AcceptHandler on_accept;
};

Listener::~Listener() { close(); }

Status Listener::listen(const Address& address, AcceptHandler on_accept) {
  KVC_CHECK(handle_ == nullptr, "listen called twice");
  sockaddr_storage ss{};
  KVC_RETURN_IF_ERROR(to_sockaddr(address, &ss));
  handle_ = new Handle();  // freed in the close callback: libuv owns it until then
  handle_->owner = this;
  handle_->on_accept = std::move(on_accept);
  uv_tcp_init(loop_, &handle_->tcp);
  handle_->tcp.data = handle_;
  auto fail = [this, &address](int rc) {
    close();
    return Status::unavailable("listen on " + address.to_string() + ": " + uv_strerror(rc));
  };
  if (int rc = uv_tcp_bind(&handle_->tcp, reinterpret_cast<sockaddr*>(&ss), 0); rc != 0) {
    return fail(rc);
  }
  const int rc = uv_listen(
      reinterpret_cast<uv_stream_t*>(&handle_->tcp), 511, [](uv_stream_t* server, int status) {
        auto* h = static_cast<Handle*>(server->data);
        if (status != 0 || h->owner == nullptr) return;
        Listener* self = h->owner;
        std::shared_ptr<Connection> c = Connection::make(self->loop_, self->options_);
        if (uv_accept(server, reinterpret_cast<uv_stream_t*>(&c->tcp_)) != 0) {
          c->close(Status::unavailable("accept failed"));
          return;
        }
        // Known before start(), so that an owner refusing the connection can name it.
        c->peer_ = peer_name(&c->tcp_);
        h->on_accept(std::move(c));
      });
  if (rc != 0) return fail(rc);
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&handle_->tcp, reinterpret_cast<sockaddr*>(&bound), &len);
  Result<Address> b = parse_address(sockaddr_to_string(reinterpret_cast<sockaddr*>(&bound)));
  bound_ = b.ok() ? *b : address;
  return Status();
}

void Listener::close() {
  if (handle_ == nullptr) return;
  handle_->owner = nullptr;
  uv_close(reinterpret_cast<uv_handle_t*>(&handle_->tcp),
           [](uv_handle_t* h) { delete static_cast<Handle*>(h->data); });
  handle_ = nullptr;
}

// One connect() call: a lookup (for a host name), then a connection attempt per address until
// one succeeds, all under one timer. Deletes itself once done and every libuv callback it
// waits for has run.
struct ConnectAttempt {
  uv_loop_t* loop = nullptr;
  ConnectionOptions options;
  Address address;
  std::string target;
  std::uint64_t timeout_ms = 0;
  Resolved addrs;
  std::size_t next = 0;
  std::shared_ptr<Connection> conn;  // the socket being connected, if any
  uv_connect_t req{};
  uv_timer_t timer{};
  bool done = false;
  int pending = 0;  // libuv callbacks still to come: the timer's close, a connect, a lookup
  Status last;
  std::function<void(Result<std::shared_ptr<Connection>>)> on_done;

  void release() {
    if (done && pending == 0) delete this;
  }

  void finish(Result<std::shared_ptr<Connection>> r) {
    if (done) return;
    done = true;
    uv_timer_stop(&timer);
    uv_close(reinterpret_cast<uv_handle_t*>(&timer), [](uv_handle_t* h) {
      auto* a = static_cast<ConnectAttempt*>(h->data);
      --a->pending;
      a->release();
    });
    auto cb = std::move(on_done);
    cb(std::move(r));
  }

  void on_resolved(Result<Resolved> r) {
    --pending;
    if (done) {
      release();
      return;
    }
    if (!r.ok()) {
      finish(r.status());
      return;
    }
    addrs = std::move(*r);
    try_next();
  }

  void try_next() {
    if (next >= addrs.size()) {
      finish(last.ok() ? Status::unavailable("connect to " + target + ": no address") : last);
      return;
    }
    sockaddr_storage ss = addrs[next++];
    conn = Connection::make(loop, options);
    conn->peer_ = target;
    conn->dialled_ = true;
    req.data = this;
    ++pending;
    const int rc = uv_tcp_connect(&req, &conn->tcp_, reinterpret_cast<sockaddr*>(&ss),
                                  [](uv_connect_t* q, int status) {
                                    static_cast<ConnectAttempt*>(q->data)->on_connect(status);
                                  });
    if (rc != 0) {
      --pending;
      last = uv_status("connect to " + target, rc);
      std::shared_ptr<Connection> c = std::move(conn);
      c->close(last);
      try_next();
    }
  }

  void on_connect(int status) {
    --pending;
    std::shared_ptr<Connection> c = std::move(conn);
    if (done) {
      if (c) c->close(Status::timeout("connect: gave up"));
      release();
      return;
    }
    if (status != 0) {
      last = uv_status("connect to " + target, status);
      c->close(last);
      try_next();  // the next address of the name, if any
      return;
    }
    finish(std::move(c));
    release();
  }
};

void connect(uv_loop_t* loop, const Address& address, const ConnectionOptions& options,
             std::uint64_t timeout_ms,
             std::function<void(Result<std::shared_ptr<Connection>>)> on_done) {
  auto* a = new ConnectAttempt();  // deletes itself (release) once every callback ran
  a->loop = loop;
  a->options = options;
  if (a->options.tls != nullptr && a->options.tls_expected_name.empty()) {
    a->options.tls_expected_name = address.host;
  }
  a->address = address;
  a->target = address.to_string();
  a->timeout_ms = timeout_ms;
  a->on_done = std::move(on_done);
  uv_timer_init(loop, &a->timer);
  a->timer.data = a;
  ++a->pending;  // the timer's close
  uv_timer_start(
      &a->timer,
      [](uv_timer_t* t) {
        auto* at = static_cast<ConnectAttempt*>(t->data);
        // Closing the socket cancels the request; its callback then sees done and cleans up.
        if (at->conn)
          at->conn->close(Status::unavailable("connect to " + at->target + ": timed out"));
        at->finish(Status::unavailable("connect to " + at->target + ": no connection within " +
                                       std::to_string(at->timeout_ms) + " ms"));
      },
      timeout_ms, 0);
  if (address.is_ip()) {
    sockaddr_storage ss{};
    if (Status s = to_sockaddr(address, &ss); !s.ok()) {
      a->finish(s);
      return;
    }
    a->addrs.push_back(ss);
    a->try_next();
    return;
  }
  ++a->pending;  // the lookup
  resolve(loop, address, [a](Result<Resolved> r) { a->on_resolved(std::move(r)); });
}

}  // namespace kvc::net
