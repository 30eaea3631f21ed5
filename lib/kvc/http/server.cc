#include "kvc/http/server.h"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <ctime>
#include <deque>
#include <utility>

#include "kvc/common/check.h"
#include "kvc/common/json.h"
#include "kvc/common/log.h"

namespace kvc::http {
namespace {

constexpr std::size_t kReadChunk = 64u << 10;
constexpr std::size_t kMaxLingerBytes = 1u << 20;
constexpr std::string_view kContinue = "HTTP/1.1 100 Continue\r\n\r\n";

// A failed TLS handshake's kind: the metric's `reason` label, and the index of its counter.
enum TlsFailure { kTlsFailed = 0, kTlsTimeout = 1, kTlsPlainHttp = 2 };
constexpr const char* kTlsFailureNames[] = {"failed", "timeout", "plain_http"};

std::string peer_name(uv_tcp_t* tcp) {
  sockaddr_storage ss{};
  int len = sizeof ss;
  if (uv_tcp_getpeername(tcp, reinterpret_cast<sockaddr*>(&ss), &len) != 0) return "?";
  return net::sockaddr_to_string(reinterpret_cast<sockaddr*>(&ss));
}

// Whether the first bytes a TLS port received are a plain HTTP request: not a TLS record, and
// begun by a method's capital letters ("GET /", "PUT /"...).
bool looks_like_plain_http(std::string_view first) {
  if (first.empty() || net::looks_like_tls(first) != net::TlsSniff::kPlaintext) return false;
  const std::size_t n = std::min<std::size_t>(first.size(), 3);
  for (std::size_t i = 0; i < n; ++i) {
    if (first[i] < 'A' || first[i] > 'Z') return false;
  }
  return true;
}

bool header_safe(std::string_view s) {
  return s.find_first_of(std::string_view("\r\n\0", 3)) == std::string_view::npos;
}

// The kvc error code a server-made error response carries.
std::string_view code_for_status(int status) {
  switch (status) {
    case 408:
    case 504:
      return code_name(Code::kTimeout);
    case 503:
      return code_name(Code::kUnavailable);
    case 500:
      return code_name(Code::kInternal);
    default:
      return code_name(Code::kInvalidArgument);
  }
}

}  // namespace

std::string_view status_reason(int status) {
  switch (status) {
    case 100:
      return "Continue";
    case 200:
      return "OK";
    case 201:
      return "Created";
    case 204:
      return "No Content";
    case 400:
      return "Bad Request";
    case 401:
      return "Unauthorized";
    case 403:
      return "Forbidden";
    case 404:
      return "Not Found";
    case 405:
      return "Method Not Allowed";
    case 408:
      return "Request Timeout";
    case 409:
      return "Conflict";
    case 410:
      return "Gone";
    case 411:
      return "Length Required";
    case 412:
      return "Precondition Failed";
    case 413:
      return "Content Too Large";
    case 414:
      return "URI Too Long";
    case 415:
      return "Unsupported Media Type";
    case 417:
      return "Expectation Failed";
    case 429:
      return "Too Many Requests";
    case 431:
      return "Request Header Fields Too Large";
    case 500:
      return "Internal Server Error";
    case 501:
      return "Not Implemented";
    case 503:
      return "Service Unavailable";
    case 504:
      return "Gateway Timeout";
    case 505:
      return "HTTP Version Not Supported";
    default:
      return "Unknown";
  }
}

HttpResponse error_response(int status, std::string_view code, std::string_view message) {
  HttpResponse r;
  r.status = status;
  r.body = JsonObject()
               .raw("error", JsonObject().str("code", code).str("message", message).done())
               .done() +
           "\n";
  return r;
}

std::string format_response(const HttpResponse& r, bool head_only, bool close,
                            std::string_view date, bool chunked) {
  KVC_CHECK(r.status >= 200 && r.status <= 599, "final responses only");
  std::string out;
  out.reserve(128 + (head_only ? 0 : r.body.size()));
  out += "HTTP/1.1 ";
  out += std::to_string(r.status);
  out += ' ';
  out += status_reason(r.status);
  out += "\r\n";
  if (!r.content_type.empty() && header_safe(r.content_type)) {
    out += "Content-Type: ";
    out += r.content_type;
    out += "\r\n";
  }
  if (r.stream == nullptr) {
    out += "Content-Length: ";
    out += std::to_string(r.body.size());
    out += "\r\n";
  } else if (chunked) {
    out += "Transfer-Encoding: chunked\r\n";
  }
  for (const Header& h : r.headers) {
    if (h.name.empty() || !header_safe(h.name) || !header_safe(h.value) ||
        h.name.find(':') != std::string::npos) {
      continue;
    }
    out += h.name;
    out += ": ";
    out += h.value;
    out += "\r\n";
  }
  if (!date.empty()) {
    out += "Date: ";
    out += date;
    out += "\r\n";
  }
  if (close) out += "Connection: close\r\n";
  out += "\r\n";
  if (!head_only && r.stream == nullptr) out += r.body;
  return out;
}

// ---------------------------------------------------------------------------------------------

void ResponseStream::write(std::string_view data) {
  if (closed() || data.empty()) return;
  if (sink_ != nullptr) {
    sink_->stream_write(data);
  } else {
    early_ += data;
  }
}

void ResponseStream::end() {
  if (closed()) return;
  ended_ = true;
  Sink* sink = std::exchange(sink_, nullptr);
  if (sink != nullptr) sink->stream_end();
}

std::size_t ResponseStream::unsent_bytes() const {
  return sink_ != nullptr ? sink_->stream_unsent() : early_.size();
}

void ResponseStream::on_close(std::function<void()> fn) {
  if (gone_) {
    fn();
    return;
  }
  on_close_ = std::move(fn);
}

std::string ResponseStream::attach(Sink* sink, bool* ended) {
  *ended = ended_;
  if (!ended_ && !gone_) sink_ = sink;
  return std::exchange(early_, std::string());
}

void ResponseStream::abandon() {
  if (gone_) return;
  gone_ = true;
  sink_ = nullptr;
  early_.clear();
  if (std::function<void()> fn = std::exchange(on_close_, nullptr)) fn();
}

// ---------------------------------------------------------------------------------------------

struct HttpServer::Handles {
  uv_tcp_t listener{};
  uv_timer_t timer{};
  HttpServer* owner = nullptr;
  int open = 2;
  static void closed(uv_handle_t* h) {
    auto* hs = static_cast<Handles*>(h->data);
    if (--hs->open == 0) delete hs;
  }
};

struct HttpServer::Metrics {
  explicit Metrics(metrics::Registry& r)
      : connections(r.gauge("kvc_http_connections", "Open HTTP connections.")),
        rejected(r.counter("kvc_http_connections_rejected_total",
                           "HTTP connections refused with 503 over max connections.")),
        malformed(r.counter("kvc_http_malformed_requests_total",
                            "HTTP requests refused by the parser (4xx/5xx, then closed).")),
        streams(r.gauge("kvc_http_streams", "Streaming HTTP answers (watches) being written now.")),
        duration(r.histogram("kvc_http_request_duration_seconds",
                             "Time from a complete HTTP request to its answer.",
                             metrics::kLatencyBuckets)) {
    for (int c = 1; c <= 5; ++c) {
      responses[c - 1] = &r.counter("kvc_http_responses_total", "HTTP responses by status class.",
                                    {{"code", std::to_string(c) + "xx"}});
    }
    for (const char* kind : {"idle", "request", "response", "write"}) {
      timeouts.push_back(&r.counter("kvc_http_timeouts_total",
                                    "HTTP connections or requests cut off by a deadline.",
                                    {{"kind", kind}}));
    }
    for (const char* reason : kTlsFailureNames) {
      tls_failures.push_back(&r.counter(
          "kvc_http_tls_handshake_failures_total",
          "HTTPS connections closed without a TLS handshake: failed, not done in time, or a "
          "plain HTTP request (answered 400).",
          {{"reason", reason}}));
    }
  }
  metrics::Gauge& connections;
  metrics::Counter& rejected;
  metrics::Counter& malformed;
  metrics::Gauge& streams;
  metrics::Histogram& duration;
  metrics::Counter* responses[5] = {};
  std::vector<metrics::Counter*> timeouts;      // idle, request, response, write
  std::vector<metrics::Counter*> tls_failures;  // by TlsFailure
};

// One accepted connection. Lives while its libuv handle is open (self_), so answers that arrive
// after the server closed it find it closing and are dropped.
class HttpServer::Conn final : public std::enable_shared_from_this<Conn>,
                               public ResponseStream::Sink {
 public:
  static std::shared_ptr<Conn> make(HttpServer* server) {
    std::shared_ptr<Conn> c(new Conn(server));
    c->self_ = c;
    return c;
  }
  ~Conn() { KVC_CHECK(!self_, "connection destroyed while its handle is open"); }

  uv_stream_t* stream() { return reinterpret_cast<uv_stream_t*>(&tcp_); }

  void start() {
    counted_ = true;
    uv_tcp_nodelay(&tcp_, 1);
    if (!begin_tls()) return;
    update_reading();
  }

  // Over capacity: answer 503 and close (over TLS: once the handshake is done, which the
  // handshake deadline bounds).
  void refuse() {
    uv_tcp_nodelay(&tcp_, 1);
    if (!begin_tls()) return;
    no_more_requests_ = true;
    close_after_write_ = true;
    count_response(503);
    pending_ = format_response(
        error_response(503, code_name(Code::kUnavailable), "too many HTTP connections"), false,
        true, server_->date());
    flush();
    update_reading();
  }

  void close() {
    if (closing_) return;
    closing_ = true;
    reading_ = false;
    stop_streaming();
    if (counted_ && server_ != nullptr) {
      --server_->active_;
      if (server_->metrics_) server_->metrics_->connections.dec();
    }
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp_), [](uv_handle_t* h) {
      auto* c = static_cast<Conn*>(h->data);
      if (c->server_ != nullptr) c->server_->forget(c);
      std::shared_ptr<Conn> last = std::move(c->self_);
    });
    // Last: the streams' close callbacks may run anything (on this loop).
    std::shared_ptr<ResponseStream> stream = std::move(stream_);
    drop_slots();
    if (stream) stream->abandon();
  }

  // ResponseStream::Sink: the attached stream writes and ends through these.
  void stream_write(std::string_view data) override {
    if (closing_ || !streaming_) return;
    append_chunk(data);
    stream_last_ = now();
    flush();
  }
  void stream_end() override {
    if (closing_ || !streaming_) return;
    stop_streaming();
    if (stream_chunked_) pending_ += "0\r\n\r\n";
    close_after_write_ = true;
    flush();
    update_reading();
    maybe_finish();
  }
  std::size_t stream_unsent() const override { return output_bytes(); }

  // The server is going away: close, and never touch it again.
  void detach() {
    close();
    server_ = nullptr;
  }

  void check_deadlines(std::uint64_t now) {
    if (closing_ || server_ == nullptr) return;
    const HttpServerOptions& o = server_->options_;
    if (lingering_) {
      if (now >= linger_deadline_) close();
      return;
    }
    if (tls_handshaking() && now - accepted_at_ >= o.tls_handshake_timeout_ms) {
      server_->tls_failed(
          kTlsTimeout, peer_name(&tcp_),
          "no TLS handshake within " + std::to_string(o.tls_handshake_timeout_ms) + " ms");
      close();
      return;
    }
    if (streaming_ && !stream_keepalive_.empty() && now - stream_last_ >= o.stream_keepalive_ms) {
      stream_write(stream_keepalive_);
      if (closing_) return;
    }
    if (writing_) {
      const std::size_t q = uv_stream_get_write_queue_size(stream());
      if (q != write_queue_seen_) {
        write_queue_seen_ = q;
        write_progress_at_ = now;
      } else if (now - write_progress_at_ >= o.write_timeout_ms) {
        count_timeout(3);
        ++server_->stats_.write_timeouts;
        close();
        return;
      }
    }
    // Answers the handler owes past their deadline: 504, outcome unknown.
    for (Slot& s : slots_) {
      if (!s.ready && now >= s.deadline) {
        ++server_->stats_.response_timeouts;
        count_timeout(2);
        fill(s, error_response(504, code_name(Code::kTimeout),
                               "no answer within " + std::to_string(o.response_timeout_ms) +
                                   " ms; the outcome is unknown"));
      }
    }
    if (!no_more_requests_ && request_since_ != 0 && now - request_since_ >= o.request_timeout_ms) {
      ++server_->stats_.request_timeouts;
      count_timeout(1);
      request_since_ = 0;
      refuse_request(error_response(
          408, code_name(Code::kTimeout),
          "the request did not arrive within " + std::to_string(o.request_timeout_ms) + " ms"));
      return;
    }
    flush_ready();
    if (!closing_ && is_idle() && now - idle_since_ >= o.idle_timeout_ms) {
      ++server_->stats_.idle_timeouts;
      count_timeout(0);
      close();
    }
  }

 private:
  struct Slot {
    std::uint64_t id = 0;
    bool ready = false;
    bool head_only = false;
    bool close_after = false;
    bool keep_alive_header = false;  // HTTP/1.0 with Connection: keep-alive
    std::uint64_t deadline = 0;      // loop time (ms) by which the handler must answer
    bool chunked = true;             // HTTP/1.1: a streaming answer uses chunked transfer encoding
    std::chrono::steady_clock::time_point started;
    std::string bytes;  // the formatted answer (a stream's: its head), once ready
    std::shared_ptr<ResponseStream> stream;  // a streaming answer
    std::string keepalive;                   // ... and its keep-alive text
  };

  explicit Conn(HttpServer* server) : server_(server), parser_(server->options_.limits) {
    uv_tcp_init(server->loop_, &tcp_);
    tcp_.data = this;
    idle_since_ = uv_now(server->loop_);
    accepted_at_ = idle_since_;
  }

  std::uint64_t now() const { return uv_now(tcp_.loop); }
  // Plaintext queued (over TLS: until the handshake is done), ciphertext queued, and in flight.
  std::size_t output_bytes() const { return pending_.size() + wire_.size() + inflight_.size(); }
  bool is_idle() const {
    return slots_.empty() && !parser_.in_progress() && !writing_ && pending_.empty() &&
           wire_.empty() && in_off_ == in_.size() && !close_after_write_ && !streaming_;
  }

  // With a TLS context, the session for this connection; false (and closed) when none can be
  // made, which only running out of memory does.
  bool begin_tls() {
    if (server_->options_.tls == nullptr) return true;
    Result<std::unique_ptr<net::TlsSession>> s = net::TlsSession::create(server_->options_.tls);
    if (!s.ok()) {
      spdlog::error("http: no TLS session for a connection: {}", s.status().message());
      close();
      return false;
    }
    tls_ = std::move(*s);
    return true;
  }
  // A TLS handshake under way (not done, not failed).
  bool tls_handshaking() const {
    return tls_ != nullptr && !tls_->handshake_done() && tls_->error().ok();
  }

  // Ciphertext from the client: the handshake, then requests (deciphered for the parser).
  void on_tls_read(std::string_view data) {
    if (first_bytes_.size() < 8) {
      first_bytes_.append(data.substr(0, std::min(8 - first_bytes_.size(), data.size())));
    }
    if (!tls_->error().ok()) return;  // failed: its alert or answer is on its way, then close
    const bool was_done = tls_->handshake_done();
    const Status s = tls_->feed(data);
    std::string plain;
    tls_->read_plaintext(plain);
    if (!s.ok()) {
      tls_error(s, was_done);
      return;
    }
    if (!was_done && tls_->handshake_done()) {
      ++server_->stats_.tls_handshakes;
      const net::TlsPeerIdentity& peer = tls_->peer();
      if (peer.has_certificate && peer.verified) tls_peer_ = peer.subject;
    }
    wire_ += tls_->take_output();
    // After the last request (a stream, a close) what the client sends is read and dropped,
    // as without TLS; the session still deciphers it, to see the client's close_notify.
    if (!no_more_requests_) in_ += plain;
    if (tls_->peer_closed()) eof_ = true;
    flush();
    pump();
  }

  // The session failed: during the handshake, answer a plain HTTP request in plain HTTP (400),
  // anything else with the session's alert, and close after it; later, just close.
  void tls_error(const Status& why, bool after_handshake) {
    if (after_handshake) {
      spdlog::debug("http: closing a TLS connection from={} reason={}", peer_name(&tcp_),
                    why.message());
      close();
      return;
    }
    no_more_requests_ = true;
    close_after_write_ = true;
    pending_.clear();
    if (looks_like_plain_http(first_bytes_)) {
      server_->tls_failed(kTlsPlainHttp, peer_name(&tcp_), std::string(kPlainHttpAtTlsPort));
      count_response(400);
      wire_ += format_response(
          error_response(400, code_name(Code::kInvalidArgument), kPlainHttpAtTlsPort), false, true,
          server_->date());
    } else {
      server_->tls_failed(kTlsFailed, peer_name(&tcp_), why.message());
      wire_ += tls_->take_output();  // the alert that tells the client why, if there is one
    }
    flush();
    update_reading();
    maybe_finish();
  }

  // One chunk of a streaming answer's body (unframed for HTTP/1.0).
  void append_chunk(std::string_view data) {
    if (!stream_chunked_) {
      pending_ += data;
      return;
    }
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", data.size());
    pending_ += size;
    pending_ += data;
    pending_ += "\r\n";
  }

  void stop_streaming() {
    if (!streaming_) return;
    streaming_ = false;
    if (server_ != nullptr) {
      --server_->streams_;
      if (server_->metrics_) server_->metrics_->streams.dec();
    }
  }

  // Forgets the answers owed (the connection closes, or they come after one that closes it);
  // their streams are told.
  void drop_slots() {
    std::deque<Slot> dropped;
    dropped.swap(slots_);
    for (Slot& s : dropped) {
      if (s.stream) s.stream->abandon();
    }
  }

  // The streaming answer at the front of the output: its head is queued; from now on its
  // stream writes straight to the connection, and nothing else is answered here.
  void start_stream(Slot& s) {
    no_more_requests_ = true;
    drop_slots();
    stream_ = std::move(s.stream);
    stream_chunked_ = s.chunked;
    stream_keepalive_ = std::move(s.keepalive);
    streaming_ = true;
    stream_last_ = now();
    ++server_->streams_;
    ++server_->stats_.streams;
    if (server_->metrics_) server_->metrics_->streams.inc();
    bool ended = false;
    const std::string early = stream_->attach(this, &ended);
    if (!early.empty()) append_chunk(early);
    if (ended) stream_end();
  }
  void count_timeout(int kind) {
    if (server_ != nullptr && server_->metrics_) server_->metrics_->timeouts[kind]->inc();
  }

  void update_reading() {
    if (closing_ || server_ == nullptr) return;
    const HttpServerOptions& o = server_->options_;
    bool want;
    if (tls_handshaking()) {
      // The handshake is read to its end whatever else waits (a refused connection's 503).
      want = !eof_;
    } else if (lingering_ || streaming_) {
      // A stream reads (and drops) what the client sends, to see it close.
      want = !eof_;
    } else {
      // A request in progress is always read to its end; new ones only with room for them.
      want = !eof_ && !no_more_requests_ && in_off_ == in_.size() &&
             (parser_.in_progress() ||
              (slots_.size() < o.max_pipelined && output_bytes() <= o.max_output_bytes));
    }
    if (want == reading_) return;
    reading_ = want;
    if (!want) {
      uv_read_stop(stream());
      return;
    }
    const int rc = uv_read_start(
        stream(),
        [](uv_handle_t* h, std::size_t, uv_buf_t* buf) {
          auto* c = static_cast<Conn*>(h->data);
          c->read_buf_.resize(kReadChunk);
          *buf = uv_buf_init(c->read_buf_.data(), static_cast<unsigned>(c->read_buf_.size()));
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          static_cast<Conn*>(s->data)->on_read(n, buf);
        });
    if (rc != 0) close();
  }

  void on_read(ssize_t n, const uv_buf_t* buf) {
    std::shared_ptr<Conn> hold = shared_from_this();
    if (n == UV_EOF) {
      eof_ = true;
      if (lingering_) {
        close();
        return;
      }
      if (tls_handshaking()) {
        // A client that sent part of a handshake and left failed it; one that sent nothing
        // (a port probe, a load balancer's TCP check) is not counted.
        if (!first_bytes_.empty()) {
          server_->tls_failed(kTlsFailed, peer_name(&tcp_), tls_->on_eof().message());
        }
        close();
        return;
      }
      update_reading();
      pump();
      return;
    }
    if (n < 0) {
      close();
      return;
    }
    if (n == 0) return;
    if (lingering_) {
      linger_bytes_ += static_cast<std::size_t>(n);
      if (linger_bytes_ > kMaxLingerBytes) close();
      return;
    }
    if (tls_ != nullptr) {
      on_tls_read(std::string_view(buf->base, static_cast<std::size_t>(n)));
      return;
    }
    if (no_more_requests_) return;
    in_.append(buf->base, static_cast<std::size_t>(n));
    pump();
  }

  // Parses and dispatches what has been read, as far as the pipeline and output limits allow.
  void pump() {
    if (in_pump_ || closing_ || server_ == nullptr) return;
    std::shared_ptr<Conn> hold = shared_from_this();
    in_pump_ = true;
    const HttpServerOptions& o = server_->options_;
    int stalls = 0;
    while (!closing_ && !no_more_requests_ && server_ != nullptr) {
      const bool can_parse = parser_.in_progress() || (slots_.size() < o.max_pipelined &&
                                                       output_bytes() <= o.max_output_bytes);
      if (!can_parse) break;
      if (in_off_ == in_.size()) {
        if (eof_) {
          parser_.finish();
          if (parser_.failed()) {
            malformed();
          } else {
            no_more_requests_ = true;
          }
        }
        break;
      }
      const std::size_t n = parser_.feed(std::string_view(in_).substr(in_off_));
      in_off_ += n;
      // "100 Continue" must not overtake earlier answers: send it only with none pending (a
      // client that gets none sends its body anyway after a while).
      if (parser_.take_expect_continue() && slots_.empty()) pending_ += kContinue;
      if (parser_.failed()) {
        malformed();
        break;
      }
      if (parser_.has_request()) {
        request_since_ = 0;
        dispatch(parser_.take_request());
        stalls = 0;
        continue;
      }
      if (n == 0 && ++stalls > 2) break;  // defensive: the parser made no progress
    }
    if (in_off_ == in_.size()) {
      in_.clear();
      in_off_ = 0;
    } else if (in_off_ >= kReadChunk) {
      in_.erase(0, in_off_);
      in_off_ = 0;
    }
    if (!parser_.in_progress() || no_more_requests_) {
      request_since_ = 0;
    } else if (request_since_ == 0) {
      request_since_ = std::max<std::uint64_t>(now(), 1);
    }
    in_pump_ = false;
    flush();
    update_reading();
    maybe_finish();
  }

  void dispatch(HttpRequest req) {
    const HttpServerOptions& o = server_->options_;
    Slot s;
    s.id = next_slot_++;
    s.head_only = req.method == Method::kHead;
    s.close_after = !req.keep_alive;
    s.chunked = req.version_minor >= 1;
    s.keep_alive_header = req.keep_alive && req.version_minor == 0;
    s.deadline = now() + o.response_timeout_ms;
    s.started = std::chrono::steady_clock::now();
    if (s.close_after) no_more_requests_ = true;
    req.tls_peer = tls_peer_;
    req.peer = peer_name(&tcp_);
    const std::uint64_t id = s.id;
    slots_.push_back(std::move(s));
    ++server_->stats_.requests;
    auto called = std::make_shared<bool>(false);
    Respond respond = [weak = weak_from_this(), id, called](HttpResponse r) {
      KVC_CHECK(!*called, "an HTTP request was answered twice");
      *called = true;
      if (std::shared_ptr<Conn> c = weak.lock()) {
        c->answer(id, std::move(r));
      } else if (r.stream) {
        r.stream->abandon();
      }
    };
    // Copy the handler: it may close the server (and so this connection) while it runs.
    Handler handler = server_->handler_;
    handler(req, std::move(respond));
  }

  void answer(std::uint64_t id, HttpResponse r) {
    if (!closing_ && server_ != nullptr) {
      for (Slot& s : slots_) {
        if (s.id != id) continue;
        if (s.ready) break;  // already answered with 504
        fill(s, std::move(r));
        flush_ready();
        return;
      }
    }
    if (r.stream) r.stream->abandon();  // dropped: its producer must learn it
  }

  void fill(Slot& s, HttpResponse r) {
    s.ready = true;
    if (r.stream) {
      // Streamed until the end of the connection; a HEAD gets the head only.
      s.bytes = format_response(r, s.head_only, true, server_->date(), s.chunked);
      if (s.head_only) {
        s.close_after = true;
        r.stream->abandon();
      } else {
        s.stream = std::move(r.stream);
        s.keepalive = std::move(r.stream_keepalive);
      }
      count_response(r.status);
      if (server_->metrics_) server_->metrics_->duration.observe_since(s.started);
      return;
    }
    // An HTTP/1.0 client that asked to keep the connection expects to hear it was kept.
    if (s.keep_alive_header) r.headers.push_back({"Connection", "keep-alive"});
    s.bytes = format_response(r, s.head_only, s.close_after, server_->date());
    count_response(r.status);
    if (server_->metrics_) server_->metrics_->duration.observe_since(s.started);
  }

  void count_response(int status) {
    if (server_ != nullptr && server_->metrics_) {
      server_->metrics_->responses[std::clamp(status / 100, 1, 5) - 1]->inc();
    }
  }

  // Moves answers that are ready, in request order, to the output.
  void flush_ready() {
    if (closing_) return;
    while (!slots_.empty() && slots_.front().ready) {
      Slot s = std::move(slots_.front());
      slots_.pop_front();
      pending_ += s.bytes;
      if (s.stream) {
        start_stream(s);
        break;
      }
      if (s.close_after) {
        close_after_write_ = true;
        no_more_requests_ = true;
        drop_slots();
        break;
      }
    }
    flush();
    pump();
    update_reading();
    maybe_finish();
  }

  // The request cannot be served (malformed, or too slow): answer it after the earlier ones,
  // then close.
  void refuse_request(const HttpResponse& r) {
    count_response(r.status);
    Slot s;
    s.id = next_slot_++;
    s.close_after = true;
    s.ready = true;
    s.bytes = format_response(r, false, true, server_->date());
    slots_.push_back(std::move(s));
    no_more_requests_ = true;
    flush_ready();
  }

  void malformed() {
    ++server_->stats_.malformed;
    if (server_->metrics_) server_->metrics_->malformed.inc();
    const ParseError& e = parser_.error();
    HttpResponse r = error_response(e.status, code_for_status(e.status), e.reason);
    if (e.status == 501) r.headers.push_back({"Allow", "GET, HEAD, PUT, POST, DELETE"});
    refuse_request(r);
  }

  // Over TLS, enciphers what is queued (once the handshake is done); then writes.
  void flush() {
    if (closing_) return;
    if (tls_ != nullptr && !pending_.empty() && tls_->handshake_done() && tls_->error().ok() &&
        !tls_notified_) {
      const Status s = tls_->write(pending_);
      pending_.clear();
      wire_ += tls_->take_output();
      if (!s.ok()) {
        close();
        return;
      }
    }
    std::string& out = tls_ != nullptr ? wire_ : pending_;
    if (writing_ || out.empty()) return;
    inflight_.swap(out);
    out.clear();
    uv_buf_t buf = uv_buf_init(inflight_.data(), static_cast<unsigned>(inflight_.size()));
    write_req_.data = this;
    writing_ = true;
    write_progress_at_ = now();
    write_queue_seen_ = inflight_.size();
    const int rc = uv_write(&write_req_, stream(), &buf, 1, [](uv_write_t* req, int status) {
      static_cast<Conn*>(req->data)->on_written(status);
    });
    if (rc != 0) {
      writing_ = false;
      close();
    }
  }

  void on_written(int status) {
    std::shared_ptr<Conn> hold = shared_from_this();
    writing_ = false;
    inflight_.clear();
    if (closing_) return;
    if (status != 0) {
      close();
      return;
    }
    if (slots_.empty() && pending_.empty() && wire_.empty()) idle_since_ = now();
    flush();
    pump();
    update_reading();
    maybe_finish();
  }

  // Closes once everything owed is written: after an answer that closes the connection
  // (half-close, then drain briefly), or when the client half-closed and all is answered.
  void maybe_finish() {
    if (closing_ || shutting_down_ || writing_ || !pending_.empty() || !wire_.empty()) return;
    if (close_after_write_) {
      if (eof_ || server_ == nullptr) {
        close();
        return;
      }
      if (tls_ != nullptr && !tls_notified_ && tls_->handshake_done() && tls_->error().ok()) {
        // TLS's end of data first, so the client can tell the end from a truncation.
        tls_notified_ = true;
        tls_->close_notify();
        wire_ += tls_->take_output();
        flush();
        if (writing_ || closing_) return;  // on_written comes back here
      }
      shutting_down_ = true;
      shutdown_req_.data = this;
      const int rc = uv_shutdown(&shutdown_req_, stream(), [](uv_shutdown_t* req, int status) {
        auto* c = static_cast<Conn*>(req->data);
        if (c->closing_) return;
        if (status != 0 || c->server_ == nullptr) {
          c->close();
          return;
        }
        c->lingering_ = true;
        c->linger_deadline_ = c->now() + c->server_->options_.linger_ms;
        c->update_reading();
      });
      if (rc != 0) close();
      return;
    }
    if (eof_ && no_more_requests_ && slots_.empty()) close();
  }

  HttpServer* server_;  // null once detached
  uv_tcp_t tcp_{};
  RequestParser parser_;
  std::string read_buf_;
  std::string in_;  // read; bytes from in_off_ on are not parsed yet
  std::size_t in_off_ = 0;
  // Invariant: slots_ holds the requests handed to the handler and not yet written, in request
  // order, at most max_pipelined of them (plus one refusal); ids increase by one.
  std::deque<Slot> slots_;
  std::uint64_t next_slot_ = 0;
  std::string pending_;   // answers queued, not yet handed to libuv (TLS: not yet enciphered)
  std::string wire_;      // TLS: ciphertext (or the plain-HTTP refusal) not yet handed to libuv
  std::string inflight_;  // handed to libuv, not yet written
  uv_write_t write_req_{};
  uv_shutdown_t shutdown_req_{};
  bool counted_ = false;  // counted in the server's open connections (not a refused one)
  bool reading_ = false;
  bool writing_ = false;
  bool closing_ = false;
  bool in_pump_ = false;
  bool eof_ = false;               // the client half-closed
  bool no_more_requests_ = false;  // nothing more is parsed (close requested, error, EOF)
  bool close_after_write_ = false;
  bool shutting_down_ = false;
  bool lingering_ = false;
  std::size_t linger_bytes_ = 0;
  std::uint64_t linger_deadline_ = 0;
  std::uint64_t idle_since_ = 0;
  std::uint64_t request_since_ = 0;  // first byte of the request in progress; 0: none
  std::uint64_t write_progress_at_ = 0;
  std::size_t write_queue_seen_ = 0;
  // A streaming answer being written: stream_ is attached while streaming_ (until it ends or
  // the connection closes); kept until close() to tell it the connection is gone.
  std::shared_ptr<ResponseStream> stream_;
  bool streaming_ = false;
  bool stream_chunked_ = true;
  std::string stream_keepalive_;
  std::uint64_t stream_last_ = 0;  // loop time (ms) of the stream's last output
  std::uint64_t accepted_at_ = 0;  // loop time (ms): the TLS handshake's deadline counts from it
  // TLS (HttpServerOptions::tls when accepted): the session, the first bytes received (to tell
  // a plain HTTP request), the verified client certificate's subject, close_notify queued.
  std::unique_ptr<net::TlsSession> tls_;
  std::string first_bytes_;
  std::string tls_peer_;
  bool tls_notified_ = false;
  std::shared_ptr<Conn> self_;  // held while the libuv handle is open
};

// ---------------------------------------------------------------------------------------------

HttpServer::HttpServer(uv_loop_t* loop, HttpServerOptions options, Handler handler)
    : loop_(loop), options_(std::move(options)), handler_(std::move(handler)) {
  KVC_CHECK(options_.max_pipelined >= 1, "max_pipelined must be at least 1");
  if (options_.metrics != nullptr) metrics_ = std::make_unique<Metrics>(*options_.metrics);
}

HttpServer::~HttpServer() { close(); }

Status HttpServer::listen() {
  KVC_CHECK(handles_ == nullptr, "listen called twice");
  sockaddr_storage ss{};
  KVC_RETURN_IF_ERROR(net::to_sockaddr(options_.address, &ss));
  handles_ = new Handles();  // freed by the last close callback: libuv owns it until then
  handles_->owner = this;
  uv_tcp_init(loop_, &handles_->listener);
  handles_->listener.data = handles_;
  uv_timer_init(loop_, &handles_->timer);
  handles_->timer.data = handles_;
  auto fail = [this](int rc) {
    close();
    return Status::unavailable("http listen on " + options_.address.to_string() + ": " +
                               uv_strerror(rc));
  };
  if (int rc = uv_tcp_bind(&handles_->listener, reinterpret_cast<sockaddr*>(&ss), 0); rc != 0) {
    return fail(rc);
  }
  const int rc = uv_listen(reinterpret_cast<uv_stream_t*>(&handles_->listener), 128,
                           [](uv_stream_t* s, int status) {
                             auto* h = static_cast<Handles*>(s->data);
                             if (status == 0 && h->owner != nullptr) h->owner->on_accept();
                           });
  if (rc != 0) return fail(rc);
  sockaddr_storage bound{};
  int len = sizeof bound;
  uv_tcp_getsockname(&handles_->listener, reinterpret_cast<sockaddr*>(&bound), &len);
  Result<net::Address> b =
      net::parse_address(net::sockaddr_to_string(reinterpret_cast<sockaddr*>(&bound)));
  bound_ = b.ok() ? *b : options_.address;
  // One timer checks every connection's deadlines, often enough for the shortest of them.
  std::uint64_t shortest =
      std::min({options_.idle_timeout_ms, options_.request_timeout_ms, options_.response_timeout_ms,
                options_.write_timeout_ms, options_.linger_ms, options_.stream_keepalive_ms,
                options_.tls_handshake_timeout_ms});
  const std::uint64_t tick = std::clamp<std::uint64_t>(shortest / 4, 5, 1000);
  uv_timer_start(
      &handles_->timer,
      [](uv_timer_t* t) {
        auto* h = static_cast<Handles*>(t->data);
        if (h->owner != nullptr) h->owner->sweep();
      },
      tick, tick);
  return Status();
}

void HttpServer::on_accept() {
  std::shared_ptr<Conn> c = Conn::make(this);
  conns_.insert(c.get());
  if (uv_accept(reinterpret_cast<uv_stream_t*>(&handles_->listener), c->stream()) != 0) {
    c->close();
    return;
  }
  if (active_ >= options_.max_connections) {
    ++stats_.rejected;
    if (metrics_) metrics_->rejected.inc();
    c->refuse();
    return;
  }
  ++active_;
  ++stats_.accepted;
  if (metrics_) metrics_->connections.inc();
  c->start();
}

void HttpServer::sweep() {
  const std::uint64_t now = uv_now(loop_);
  std::vector<std::shared_ptr<Conn>> conns;
  conns.reserve(conns_.size());
  for (Conn* c : conns_) conns.push_back(c->shared_from_this());
  for (const auto& c : conns) c->check_deadlines(now);
}

void HttpServer::forget(Conn* c) { conns_.erase(c); }

// Counted always; logged at most once a second (a scanner or a misconfigured client can fail
// many handshakes), with how many were not logged. TLS's messages carry no secrets.
void HttpServer::tls_failed(int kind, const std::string& from, const std::string& why) {
  ++stats_.tls_handshake_failures;
  if (kind == kTlsTimeout) ++stats_.tls_handshake_timeouts;
  if (kind == kTlsPlainHttp) ++stats_.tls_plain_http;
  if (metrics_) metrics_->tls_failures[static_cast<std::size_t>(kind)]->inc();
  const std::uint64_t now = uv_now(loop_);
  if (tls_log_at_ != 0 && now - tls_log_at_ < 1000) {
    ++tls_log_skipped_;
    return;
  }
  if (tls_log_skipped_ == 0) {
    spdlog::warn("https connection refused from={} reason={}", from, why);
  } else {
    spdlog::warn("https connection refused from={} reason={} (and {} more not logged)", from, why,
                 tls_log_skipped_);
  }
  tls_log_at_ = std::max<std::uint64_t>(now, 1);
  tls_log_skipped_ = 0;
}

void HttpServer::close() {
  if (handles_ != nullptr) {
    handles_->owner = nullptr;
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->listener), &Handles::closed);
    uv_close(reinterpret_cast<uv_handle_t*>(&handles_->timer), &Handles::closed);
    handles_ = nullptr;
  }
  std::vector<std::shared_ptr<Conn>> conns;
  for (Conn* c : conns_) conns.push_back(c->shared_from_this());
  conns_.clear();
  for (const auto& c : conns) c->detach();
}

const std::string& HttpServer::date() {
  static constexpr const char* kDays[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static constexpr const char* kMonths[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                            "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  const std::time_t t = std::time(nullptr);
  if (t == date_second_) return date_;
  date_second_ = t;
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%s, %02d %s %04d %02d:%02d:%02d GMT", kDays[tm.tm_wday % 7],
                tm.tm_mday, kMonths[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min,
                tm.tm_sec);
  date_ = buf;
  return date_;
}

}  // namespace kvc::http
