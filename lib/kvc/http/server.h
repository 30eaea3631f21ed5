// HttpServer: an HTTP/1.1 server on a libuv loop that the caller owns and runs (http/, like
// net/, never creates or runs a loop and starts no thread). Each connection feeds its bytes to a
// RequestParser and hands every complete request to an asynchronous handler, which answers
// through a Respond callback, possibly later (the member answers a linearizable read after a
// ReadIndex round). Keep-alive and pipelining work: a connection has at most `max_pipelined`
// requests in the handler at once, and their answers go out in request order whatever order the
// handler answers in. Every answer carries Content-Length; HEAD answers carry no body, except
// a streaming answer (HttpResponse::stream, e.g. a watch): its body is sent as it is produced,
// with chunked transfer encoding (to an HTTP/1.0 client: unframed, ended by closing), it is
// the last answer on its connection, and it lasts until the handler ends it or the connection
// closes.
//
// Protection of the member against its clients: parser limits (see parser.h); a malformed
// request gets its 4xx (or 5xx for an unsupported method or version) and the connection closes;
// `Connection: close` and HTTP/1.0 without keep-alive are honoured. Deadlines: an idle
// keep-alive connection is closed after `idle_timeout_ms`; a request whose bytes do not all
// arrive within `request_timeout_ms` of its first byte gets 408 and the connection closes; a
// handler that has not answered within `response_timeout_ms` is answered with 504 (outcome
// unknown) and its late answer is dropped; a client that reads nothing of its answers for
// `write_timeout_ms` is disconnected (streams too). An open stream keeps its connection out of
// the idle deadline and writes its keep-alive text after `stream_keepalive_ms` without output,
// so proxies do not cut it; it reads (and drops) what the client sends, so that the client's
// close (or half-close) ends it at once. Above `max_connections`, new connections get 503 and are
// closed. When the server closes a connection after an answer, it half-closes and drains what
// the client still sends for a short while, so the client reads the answer instead of a reset.
//
// TLS (HttpServerOptions::tls, or set_tls() for connections accepted from then on): each
// connection runs a net::TlsSession; what is read is deciphered before the parser sees it and
// everything written (answers, stream chunks, keep-alive text) is enciphered, so back-pressure
// and the write deadline count ciphertext. A handshake that does not finish within
// `tls_handshake_timeout_ms` of the accept is cut off (slow-loris), one that fails closes the
// connection (both counted, and logged without secrets); a client that speaks plain HTTP to the
// TLS port is answered, in plain HTTP, 400 with kPlainHttpAtTlsPort, and the connection closes.
// A verified client certificate's subject reaches the handler as HttpRequest::tls_peer. Closing
// a connection after an answer sends TLS's close_notify before the half-close.
//
// Thread-safety: construct, call and destroy on the loop's thread; Respond must be called on the
// loop's thread too (it may be called after the connection or the server is gone: the answer is
// then dropped). Calling one Respond twice is a bug (KVC_CHECK).
#pragma once

#include <uv.h>

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_set>
#include <vector>

#include "kvc/common/metrics.h"
#include "kvc/common/status.h"
#include "kvc/http/parser.h"
#include "kvc/net/address.h"
#include "kvc/net/tls.h"

namespace kvc::http {

// The body of a streaming answer, produced after the answer's headers and written as it
// comes. The handler makes one, writes to it at any time (what is written before the
// connection reaches this answer waits in memory, counted by unsent_bytes()) and hands it to
// the server in HttpResponse::stream. Loop thread only.
class ResponseStream {
 public:
  ResponseStream() = default;
  ResponseStream(const ResponseStream&) = delete;
  ResponseStream& operator=(const ResponseStream&) = delete;

  // Appends `data` to the body (one chunk); nothing once closed, nothing for empty data.
  void write(std::string_view data);
  // Ends the body; the connection closes once it is written. Idempotent.
  void end();
  // Bytes written and not yet taken by the client's socket. A producer bounds its own output
  // with it: the server never refuses a write.
  std::size_t unsent_bytes() const;
  // The stream cannot be written any more: ended, or its connection closed.
  bool closed() const { return ended_ || gone_; }
  // `fn` runs once, on the loop thread, when the connection closes or the answer is dropped
  // (before or after end()); at once when that already happened. One callback.
  void on_close(std::function<void()> fn);

  // The server's side (HttpServer's connections only).
  class Sink {
   public:
    virtual void stream_write(std::string_view data) = 0;
    virtual void stream_end() = 0;
    virtual std::size_t stream_unsent() const = 0;

   protected:
    ~Sink() = default;
  };
  // Connects the stream to its connection; returns what was written before (and whether it
  // has ended) for the connection to send first.
  std::string attach(Sink* sink, bool* ended);
  // The connection closed, or the answer was dropped: later writes are dropped; on_close runs.
  void abandon();

 private:
  Sink* sink_ = nullptr;  // set while attached to an open connection
  std::string early_;     // written before attach()
  bool ended_ = false;
  bool gone_ = false;
  std::function<void()> on_close_;
};

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<Header> headers;  // extra headers (Location, Allow, Retry-After); not Content-Length
  std::string body;
  // A streaming answer: `body` is ignored and the body is what is written to the stream.
  std::shared_ptr<ResponseStream> stream;
  // Written to the stream after HttpServerOptions::stream_keepalive_ms without output (e.g.
  // an empty line, an SSE comment); empty: none.
  std::string stream_keepalive;
};

// {"error":{"code":"<code>","message":"<message>"}} with the given status.
HttpResponse error_response(int status, std::string_view code, std::string_view message);
// The reason phrase of a status ("Not Found"); "Unknown" for codes kvc does not send.
std::string_view status_reason(int status);
// The bytes of a response: status line, Content-Type, Content-Length, the extra headers, `date`
// (when not empty) and "Connection: close" when `close`, then the body unless `head_only`.
// Extra headers whose name or value holds CR, LF or NUL are dropped (no response splitting).
// A streaming answer (r.stream) gets only its head, with "Transfer-Encoding: chunked" instead
// of Content-Length when `chunked`, and no length at all otherwise.
std::string format_response(const HttpResponse& r, bool head_only, bool close,
                            std::string_view date = {}, bool chunked = true);

// The message of the 400 a TLS port answers a plain-HTTP request with (docs/http.md), as nginx
// answers "The plain HTTP request was sent to HTTPS port".
inline constexpr std::string_view kPlainHttpAtTlsPort =
    "this port speaks HTTPS: the request was sent in plain HTTP; use https://";

using Respond = std::function<void(HttpResponse)>;
// `request` is valid only during the call; copy what an asynchronous answer needs.
using Handler = std::function<void(const HttpRequest& request, Respond respond)>;

struct HttpServerOptions {
  net::Address address{"127.0.0.1", 0};
  ParserLimits limits;
  std::uint64_t idle_timeout_ms = 60'000;
  std::uint64_t request_timeout_ms = 10'000;
  std::uint64_t response_timeout_ms = 30'000;
  std::uint64_t write_timeout_ms = 10'000;
  std::uint64_t linger_ms = 2'000;  // draining after an answer that closes the connection
  std::size_t max_connections = 256;
  std::size_t max_pipelined = 16;
  // Parsing of further requests on a connection waits while its unsent output exceeds this.
  std::size_t max_output_bytes = 8u << 20;
  // A streaming answer with nothing to send for this long writes its keep-alive text.
  std::uint64_t stream_keepalive_ms = 5'000;
  // Optional: kvc_http_* metrics are registered here and kept current.
  metrics::Registry* metrics = nullptr;
  // A server context (net::TlsRole::kServer): every connection speaks TLS; null: plain HTTP.
  std::shared_ptr<const net::TlsContext> tls;
  // A TLS connection whose handshake is not done this long after its accept is closed.
  std::uint64_t tls_handshake_timeout_ms = 5'000;
};

class HttpServer {
 public:
  struct Stats {
    std::uint64_t accepted = 0;
    std::uint64_t rejected = 0;  // over max_connections
    std::uint64_t requests = 0;  // handed to the handler
    std::uint64_t malformed = 0;
    std::uint64_t idle_timeouts = 0;
    std::uint64_t request_timeouts = 0;
    std::uint64_t response_timeouts = 0;
    std::uint64_t write_timeouts = 0;
    std::uint64_t streams = 0;  // streaming answers started
    // TLS: handshakes completed; failed (including the two below); not done in time; plain
    // HTTP requests answered with 400.
    std::uint64_t tls_handshakes = 0;
    std::uint64_t tls_handshake_failures = 0;
    std::uint64_t tls_handshake_timeouts = 0;
    std::uint64_t tls_plain_http = 0;
  };

  HttpServer(uv_loop_t* loop, HttpServerOptions options, Handler handler);
  // Same as close(); the loop must run afterwards for libuv to finish closing the handles.
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  // Binds options.address and starts accepting. Port 0 picks a free port; bound() tells which.
  Status listen();
  const net::Address& bound() const { return bound_; }
  // Stops accepting and closes every connection; answers not yet given are dropped. Idempotent.
  void close();
  // The TLS context for connections accepted from now on (a certificate reload); open ones keep
  // theirs. Null turns TLS off for new connections.
  void set_tls(std::shared_ptr<const net::TlsContext> tls) { options_.tls = std::move(tls); }

  std::size_t open_connections() const { return active_; }
  // Streaming answers being written now.
  std::size_t open_streams() const { return streams_; }
  const Stats& stats() const { return stats_; }

 private:
  class Conn;
  struct Handles;
  struct Metrics;
  void on_accept();
  void sweep();
  const std::string& date();
  void forget(Conn* c);
  // A TLS handshake failed (kind: see server.cc): counted, and logged (at most once a second).
  void tls_failed(int kind, const std::string& from, const std::string& why);

  uv_loop_t* loop_;
  HttpServerOptions options_;
  Handler handler_;
  net::Address bound_;
  Handles* handles_ = nullptr;       // owned by libuv from listen() until its close callbacks
  std::unordered_set<Conn*> conns_;  // open or closing; each keeps itself alive until closed
  std::size_t active_ = 0;           // conns_ minus those being refused
  std::size_t streams_ = 0;          // connections writing a streaming answer
  Stats stats_;
  std::unique_ptr<Metrics> metrics_;
  std::string date_;
  std::int64_t date_second_ = -1;
  std::uint64_t tls_log_at_ = 0;       // loop time (ms) of the last TLS failure logged
  std::uint64_t tls_log_skipped_ = 0;  // failures not logged since (one line a second)
};

}  // namespace kvc::http
