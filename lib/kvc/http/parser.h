// An incremental HTTP/1.1 request parser over llhttp: bytes in, complete requests out (method,
// decoded path, decoded query parameters, headers, body). It does no I/O, which is what lets
// the fuzz target (tests/fuzz/http_request_fuzz.cc) drive it directly; HttpServer feeds it what
// it reads. It stops after each complete request, so a pipelining client's requests come out one
// at a time, in order, and the caller decides when to parse the next.
//
// Limits: the request target (414), the request line plus headers, counted on the raw bytes
// including whitespace (431), the number of headers (431), and the body (413, checked against
// Content-Length before any body byte is read). Refused: methods other than GET, HEAD, PUT, POST
// and DELETE (501); HTTP versions other than 1.x (505); an HTTP/1.1 request without exactly one
// Host header (400); expectations other than 100-continue (417); request targets that are not
// origin-form ("/path?query") or absolute-form ("http://host/path"), and bad percent-encoding
// (400). Chunked request bodies are accepted and de-chunked; their trailers are counted against
// the header limit and dropped. Every other malformation llhttp detects (including
// Content-Length together with Transfer-Encoding, the request smuggling case) is a 400. After an
// error the parser consumes nothing more: the connection must be answered and closed.
//
// Not thread-safe; one parser per connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::http {

enum class Method : std::uint8_t { kGet, kHead, kPut, kPost, kDelete };
std::string_view method_name(Method m);

struct Header {
  std::string name;   // lowercased
  std::string value;  // without leading or trailing whitespace
};

struct HttpRequest {
  Method method = Method::kGet;
  std::string target;  // as sent: "/v1/kv/a%2Fb?limit=2"
  std::string path;    // percent-decoded ("/v1/kv/a/b"); no dot-segment removal
  std::vector<std::pair<std::string, std::string>> query;  // decoded ('+' is a space), in order
  std::vector<Header> headers;                             // in order, trailers excluded
  std::string body;                                        // de-chunked
  int version_minor = 1;                                   // HTTP/1.x
  bool keep_alive = true;  // the client may send another request on this connection
  // Set by HttpServer on a TLS port: the subject of the client's verified certificate (RFC 2253,
  // "CN=operator,O=kvc", as net::TlsPeerIdentity::subject has it); empty without one.
  std::string tls_peer;
  // Set by HttpServer: the client's address ("127.0.0.1:50312"), for logs.
  std::string peer;

  // The first header / query parameter of that name, or null.
  const std::string* header(std::string_view lowercase_name) const;
  const std::string* query_param(std::string_view name) const;
};

struct ParserLimits {
  std::size_t max_target_bytes = 8u << 10;
  std::size_t max_header_bytes = 16u << 10;  // request line + headers (+ trailers), raw bytes
  std::size_t max_headers = 64;
  std::size_t max_body_bytes = 4u << 20;
};

// Why a request was refused: the status to answer with (4xx/5xx) and a lowercase reason.
struct ParseError {
  int status = 400;
  std::string reason;
};

class RequestParser {
 public:
  explicit RequestParser(ParserLimits limits = {});
  ~RequestParser();
  RequestParser(const RequestParser&) = delete;
  RequestParser& operator=(const RequestParser&) = delete;

  // Parses a prefix of `data` and returns its length. Stops right after a complete request
  // (has_request(); take it before feeding more, or feed consumes nothing), right after the
  // headers of a request that expects 100-continue (take_expect_continue()), or at an error
  // (failed()); otherwise it consumes all of `data`.
  std::size_t feed(std::string_view data);
  // The peer will send nothing more: a request in progress becomes an error.
  void finish();

  bool has_request() const;
  HttpRequest take_request();
  // True once per request whose client waits for "100 Continue" before sending its body.
  bool take_expect_continue();

  bool failed() const;
  const ParseError& error() const;
  // A request has begun (its first byte arrived) and is not complete.
  bool in_progress() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

// Percent-decoding; `plus_is_space` for query components (application/x-www-form-urlencoded).
// A '%' not followed by two hex digits is an error.
Result<std::string> percent_decode(std::string_view s, bool plus_is_space);
// Encodes every byte except unreserved ones (A-Z a-z 0-9 - . _ ~) and, when `keep_slash`, '/'.
std::string percent_encode(std::string_view s, bool keep_slash = false);

}  // namespace kvc::http
