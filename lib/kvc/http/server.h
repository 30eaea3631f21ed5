// HttpServer: an HTTP/1.1 server on a libuv loop that the caller owns and runs (http/, like
// net/, never creates or runs a loop and starts no thread). Each connection feeds its bytes to a
// RequestParser and hands every complete request to an asynchronous handler, which answers
// through a Respond callback, possibly later (the member answers a linearizable read after a
// ReadIndex round). Keep-alive and pipelining work: a connection has at most `max_pipelined`
// requests in the handler at once, and their answers go out in request order whatever order the
// handler answers in. Every answer carries Content-Length; HEAD answers carry no body.
//
// Protection of the member against its clients: parser limits (see parser.h); a malformed
// request gets its 4xx (or 5xx for an unsupported method or version) and the connection closes;
// `Connection: close` and HTTP/1.0 without keep-alive are honoured. Deadlines: an idle
// keep-alive connection is closed after `idle_timeout_ms`; a request whose bytes do not all
// arrive within `request_timeout_ms` of its first byte gets 408 and the connection closes; a
// handler that has not answered within `response_timeout_ms` is answered with 504 (outcome
// unknown) and its late answer is dropped; a client that reads nothing of its answers for
// `write_timeout_ms` is disconnected. Above `max_connections`, new connections get 503 and are
// closed. When the server closes a connection after an answer, it half-closes and drains what
// the client still sends for a short while, so the client reads the answer instead of a reset.
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

namespace kvc::http {

struct HttpResponse {
  int status = 200;
  std::string content_type = "application/json";
  std::vector<Header> headers;  // extra headers (Location, Allow, Retry-After); not Content-Length
  std::string body;
};

// {"error":{"code":"<code>","message":"<message>"}} with the given status.
HttpResponse error_response(int status, std::string_view code, std::string_view message);
// The reason phrase of a status ("Not Found"); "Unknown" for codes kvc does not send.
std::string_view status_reason(int status);
// The bytes of a response: status line, Content-Type, Content-Length, the extra headers, `date`
// (when not empty) and "Connection: close" when `close`, then the body unless `head_only`.
// Extra headers whose name or value holds CR, LF or NUL are dropped (no response splitting).
std::string format_response(const HttpResponse& r, bool head_only, bool close,
                            std::string_view date = {});

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
  // Optional: kvc_http_* metrics are registered here and kept current.
  metrics::Registry* metrics = nullptr;
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

  std::size_t open_connections() const { return active_; }
  const Stats& stats() const { return stats_; }

 private:
  class Conn;
  struct Handles;
  struct Metrics;
  void on_accept();
  void sweep();
  const std::string& date();
  void forget(Conn* c);

  uv_loop_t* loop_;
  HttpServerOptions options_;
  Handler handler_;
  net::Address bound_;
  Handles* handles_ = nullptr;       // owned by libuv from listen() until its close callbacks
  std::unordered_set<Conn*> conns_;  // open or closing; each keeps itself alive until closed
  std::size_t active_ = 0;           // conns_ minus those being refused
  Stats stats_;
  std::unique_ptr<Metrics> metrics_;
  std::string date_;
  std::int64_t date_second_ = -1;
};

}  // namespace kvc::http
