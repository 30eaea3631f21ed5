#include "kvc/http/parser.h"

#include <llhttp.h>

#include <algorithm>

#include "kvc/common/check.h"
#include "kvc/common/text.h"

namespace kvc::http {
namespace {

bool ascii_iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    char x = a[i], y = b[i];
    if (x >= 'A' && x <= 'Z') x = static_cast<char>(x - 'A' + 'a');
    if (y >= 'A' && y <= 'Z') y = static_cast<char>(y - 'A' + 'a');
    if (x != y) return false;
  }
  return true;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Splits a request target into its path and query. Origin-form ("/p?q") or absolute-form
// ("http://host:port/p?q", which RFC 9112 says a server must accept); anything else is an error.
Status split_target(std::string_view target, std::string_view* path, std::string_view* query) {
  std::string_view rest = target;
  if (const std::size_t hash = rest.find('#'); hash != std::string_view::npos) {
    return Status::invalid_argument("request target contains a fragment");
  }
  if (!rest.starts_with('/')) {
    const std::size_t sep = rest.find("://");
    const std::string_view scheme = sep == std::string_view::npos ? "" : rest.substr(0, sep);
    if (!ascii_iequals(scheme, "http") && !ascii_iequals(scheme, "https")) {
      return Status::invalid_argument("request target must start with '/' or http://");
    }
    rest.remove_prefix(sep + 3);
    const std::size_t end = rest.find_first_of("/?");
    if (end == 0) return Status::invalid_argument("request target has an empty authority");
    rest = end == std::string_view::npos ? std::string_view() : rest.substr(end);
  }
  const std::size_t q = rest.find('?');
  *path = rest.substr(0, q);
  *query = q == std::string_view::npos ? std::string_view() : rest.substr(q + 1);
  if (path->empty()) *path = "/";
  return Status();
}

}  // namespace

std::string_view method_name(Method m) {
  switch (m) {
    case Method::kGet:
      return "GET";
    case Method::kHead:
      return "HEAD";
    case Method::kPut:
      return "PUT";
    case Method::kPost:
      return "POST";
    case Method::kDelete:
      return "DELETE";
  }
  return "?";
}

const std::string* HttpRequest::header(std::string_view lowercase_name) const {
  for (const Header& h : headers) {
    if (h.name == lowercase_name) return &h.value;
  }
  return nullptr;
}

const std::string* HttpRequest::query_param(std::string_view name) const {
  for (const auto& [k, v] : query) {
    if (k == name) return &v;
  }
  return nullptr;
}

Result<std::string> percent_decode(std::string_view s, bool plus_is_space) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    if (c == '%') {
      const int hi = i + 2 < s.size() ? hex_digit_value(s[i + 1]) : -1;
      const int lo = i + 2 < s.size() ? hex_digit_value(s[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return Status::invalid_argument("bad percent-encoding at offset " + std::to_string(i));
      }
      out += static_cast<char>(hi * 16 + lo);
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

std::string percent_encode(std::string_view s, bool keep_slash) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  out.reserve(s.size());
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') ||
                            (c >= '0' && c <= '9') || c == '-' || c == '.' || c == '_' ||
                            c == '~' || (keep_slash && c == '/');
    if (unreserved) {
      out += ch;
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 0xf];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

struct RequestParser::Impl {
  explicit Impl(ParserLimits l) : limits(l) {
    llhttp_init(&parser, HTTP_REQUEST, &settings());
    parser.data = this;
  }

  static const llhttp_settings_t& settings();
  static Impl& of(llhttp_t* p) { return *static_cast<Impl*>(p->data); }

  // Records the first error; the llhttp callback then returns HPE_USER (or -1).
  int fail(int status, std::string reason) {
    if (!failed) {
      failed = true;
      error = {status, std::move(reason)};
    }
    return HPE_USER;
  }
  int count_header_bytes(std::size_t n) {
    stored_header_bytes += n;
    if (stored_header_bytes > limits.max_header_bytes) {
      return fail(431,
                  "request headers exceed " + std::to_string(limits.max_header_bytes) + " bytes");
    }
    return HPE_OK;
  }
  int on_headers_complete();
  int on_message_complete();
  void fail_from_llhttp(llhttp_errno_t err);

  ParserLimits limits;
  llhttp_t parser{};
  bool paused = false;      // llhttp paused at a boundary; resume before the next execute
  bool in_message = false;  // on_message_begin seen, on_message_complete not yet
  bool headers_done = false;
  bool in_trailers = false;
  bool ready = false;  // `request` is complete and not yet taken
  bool expect_continue = false;
  bool failed = false;
  ParseError error;
  // Raw bytes consumed in the current request's header section (from the end of the previous
  // request, so blank lines before it count) and in its body section (chunk framing included).
  std::size_t raw_header_bytes = 0;
  std::size_t raw_body_bytes = 0;
  std::size_t stored_header_bytes = 0;  // target + names + values + trailers + extensions
  std::string field;                    // the header name being received
  std::string value;                    // the header value being received
  HttpRequest request;
};

const llhttp_settings_t& RequestParser::Impl::settings() {
  static const llhttp_settings_t s = [] {
    llhttp_settings_t t;
    llhttp_settings_init(&t);
    t.on_message_begin = [](llhttp_t* p) -> int {
      Impl& m = of(p);
      m.in_message = true;
      m.headers_done = false;
      m.in_trailers = false;
      m.stored_header_bytes = 0;
      m.raw_body_bytes = 0;
      m.request = HttpRequest();
      m.field.clear();
      m.value.clear();
      return HPE_OK;
    };
    t.on_url = [](llhttp_t* p, const char* at, std::size_t n) -> int {
      Impl& m = of(p);
      if (m.request.target.size() + n > m.limits.max_target_bytes) {
        return m.fail(
            414, "request target exceeds " + std::to_string(m.limits.max_target_bytes) + " bytes");
      }
      m.request.target.append(at, n);
      return m.count_header_bytes(n);
    };
    t.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) -> int {
      Impl& m = of(p);
      if (!m.in_trailers) m.field.append(at, n);
      return m.count_header_bytes(n + 4);  // ": " and CRLF
    };
    t.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) -> int {
      Impl& m = of(p);
      if (!m.in_trailers) m.value.append(at, n);
      return m.count_header_bytes(n);
    };
    t.on_header_value_complete = [](llhttp_t* p) -> int {
      Impl& m = of(p);
      if (m.in_trailers) return HPE_OK;
      if (m.request.headers.size() >= m.limits.max_headers) {
        return m.fail(431, "more than " + std::to_string(m.limits.max_headers) + " headers");
      }
      std::string name = std::move(m.field);
      // llhttp (lenient here) lets "Name : value" through; RFC 9112 5.1 says refuse it.
      if (name.find_first_of(" \t") != std::string::npos) {
        return m.fail(400, "whitespace between a header name and its colon");
      }
      std::transform(name.begin(), name.end(), name.begin(), [](char c) {
        return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
      });
      m.request.headers.push_back({std::move(name), std::string(trim(m.value))});
      m.field.clear();
      m.value.clear();
      return HPE_OK;
    };
    t.on_chunk_extension_name = [](llhttp_t* p, const char*, std::size_t n) -> int {
      return of(p).count_header_bytes(n);
    };
    t.on_chunk_extension_value = [](llhttp_t* p, const char*, std::size_t n) -> int {
      return of(p).count_header_bytes(n);
    };
    t.on_headers_complete = [](llhttp_t* p) -> int { return of(p).on_headers_complete(); };
    t.on_body = [](llhttp_t* p, const char* at, std::size_t n) -> int {
      Impl& m = of(p);
      if (m.request.body.size() + n > m.limits.max_body_bytes) {
        return m.fail(413,
                      "request body exceeds " + std::to_string(m.limits.max_body_bytes) + " bytes");
      }
      m.request.body.append(at, n);
      return HPE_OK;
    };
    t.on_message_complete = [](llhttp_t* p) -> int { return of(p).on_message_complete(); };
    return t;
  }();
  return s;
}

int RequestParser::Impl::on_headers_complete() {
  headers_done = true;
  in_trailers = true;  // header callbacks from now on are trailers of a chunked body
  HttpRequest& r = request;
  switch (llhttp_get_method(&parser)) {
    case HTTP_GET:
      r.method = Method::kGet;
      break;
    case HTTP_HEAD:
      r.method = Method::kHead;
      break;
    case HTTP_PUT:
      r.method = Method::kPut;
      break;
    case HTTP_POST:
      r.method = Method::kPost;
      break;
    case HTTP_DELETE:
      r.method = Method::kDelete;
      break;
    default:
      fail(501, std::string("method ") +
                    llhttp_method_name(static_cast<llhttp_method_t>(llhttp_get_method(&parser))) +
                    " is not supported");
      return -1;
  }
  if (llhttp_get_http_major(&parser) != 1) {
    fail(505, "HTTP version " + std::to_string(llhttp_get_http_major(&parser)) + "." +
                  std::to_string(llhttp_get_http_minor(&parser)) + " is not supported");
    return -1;
  }
  r.version_minor = llhttp_get_http_minor(&parser);
  int hosts = 0;
  for (const Header& h : r.headers) hosts += h.name == "host" ? 1 : 0;
  if (r.version_minor >= 1 && hosts != 1) {
    fail(400, hosts == 0 ? "HTTP/1.1 request without a Host header" : "more than one Host header");
    return -1;
  }
  if ((parser.flags & F_CONTENT_LENGTH) != 0 && parser.content_length > limits.max_body_bytes) {
    fail(413, "request body of " + std::to_string(parser.content_length) + " bytes exceeds " +
                  std::to_string(limits.max_body_bytes));
    return -1;
  }
  if (const std::string* expect = r.header("expect")) {
    if (!ascii_iequals(*expect, "100-continue")) {
      fail(417, "unsupported expectation '" + *expect + "'");
      return -1;
    }
    const bool has_body = (parser.flags & F_CHUNKED) != 0 || parser.content_length > 0;
    expect_continue = r.version_minor >= 1 && has_body;
  }
  std::string_view path, query;
  if (Status s = split_target(r.target, &path, &query); !s.ok()) {
    fail(400, s.message());
    return -1;
  }
  Result<std::string> decoded = percent_decode(path, false);
  if (!decoded.ok()) {
    fail(400, "path: " + decoded.status().message());
    return -1;
  }
  r.path = std::move(*decoded);
  while (!query.empty()) {
    const std::size_t amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    if (item.empty()) continue;
    const std::size_t eq = item.find('=');
    Result<std::string> k = percent_decode(item.substr(0, eq), true);
    Result<std::string> v = percent_decode(
        eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1), true);
    if (!k.ok() || !v.ok()) {
      fail(400, "query: " + (k.ok() ? v : k).status().message());
      return -1;
    }
    r.query.emplace_back(std::move(*k), std::move(*v));
  }
  return HPE_PAUSED;
}

int RequestParser::Impl::on_message_complete() {
  request.keep_alive = llhttp_should_keep_alive(&parser) != 0;
  in_message = false;
  headers_done = false;
  in_trailers = false;
  raw_header_bytes = 0;
  raw_body_bytes = 0;
  ready = true;
  return HPE_PAUSED;
}

void RequestParser::Impl::fail_from_llhttp(llhttp_errno_t err) {
  if (failed) return;  // our own callback refused the request and said why
  if (err == HPE_PAUSED_H2_UPGRADE) {
    failed = true;
    error = {505, "HTTP/2 with prior knowledge is not supported; use HTTP/1.1"};
    return;
  }
  const char* reason = llhttp_get_error_reason(&parser);
  std::string why = reason != nullptr ? reason : llhttp_errno_name(err);
  std::transform(why.begin(), why.end(), why.begin(), [](char c) {
    return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c;
  });
  failed = true;
  error = {400, "malformed request: " + why};
}

RequestParser::RequestParser(ParserLimits limits) : impl_(std::make_unique<Impl>(limits)) {}
RequestParser::~RequestParser() = default;

std::size_t RequestParser::feed(std::string_view data) {
  Impl& m = *impl_;
  if (m.failed || m.ready) return 0;
  std::size_t off = 0;
  // Each pass either consumes the rest of `data` or stops at a pause: after the headers (at
  // most once per request) or after the request (which returns), or on an upgrade request.
  for (int pass = 0;; ++pass) {
    KVC_CHECK_LT(pass, 16);
    if (m.paused) {
      llhttp_resume(&m.parser);
      m.paused = false;
    }
    const bool in_headers = !m.headers_done;
    const char* begin = data.data() + off;
    const std::size_t n = data.size() - off;
    const llhttp_errno_t err = llhttp_execute(&m.parser, begin, n);
    const std::size_t used =
        err == HPE_OK ? n : static_cast<std::size_t>(llhttp_get_error_pos(&m.parser) - begin);
    KVC_CHECK_LE(used, n);
    off += used;
    if (m.failed) return off;
    if (in_headers) {
      m.raw_header_bytes += used;
      if (m.raw_header_bytes > m.limits.max_header_bytes) {
        m.fail(431,
               "request headers exceed " + std::to_string(m.limits.max_header_bytes) + " bytes");
        return off;
      }
    } else {
      // Body bytes plus chunk framing: framing may add as much as the header allowance.
      m.raw_body_bytes += used;
      if (m.raw_body_bytes > m.limits.max_body_bytes + m.limits.max_header_bytes) {
        m.fail(413, "chunked request body exceeds " + std::to_string(m.limits.max_body_bytes) +
                        " bytes with its framing");
        return off;
      }
    }
    switch (err) {
      case HPE_OK:
        return off;
      case HPE_PAUSED:
        m.paused = true;
        if (m.ready || m.expect_continue) return off;
        continue;  // paused after the headers: parse the body
      case HPE_PAUSED_UPGRADE:
        // An Upgrade request we answer as plain HTTP/1.1 (RFC 9110 lets a server ignore
        // Upgrade); the client keeps speaking HTTP/1.1 on the connection.
        llhttp_resume_after_upgrade(&m.parser);
        if (m.ready) return off;
        continue;
      default:
        m.fail_from_llhttp(err);
        return off;
    }
  }
}

void RequestParser::finish() {
  Impl& m = *impl_;
  if (!m.failed && m.in_message) {
    m.fail(400, "connection closed in the middle of a request");
  }
}

bool RequestParser::has_request() const { return impl_->ready; }

HttpRequest RequestParser::take_request() {
  KVC_CHECK(impl_->ready, "take_request without a complete request");
  impl_->ready = false;
  impl_->expect_continue = false;
  return std::move(impl_->request);
}

bool RequestParser::take_expect_continue() {
  const bool e = impl_->expect_continue && !impl_->ready && !impl_->failed;
  impl_->expect_continue = false;
  return e;
}

bool RequestParser::failed() const { return impl_->failed; }
const ParseError& RequestParser::error() const { return impl_->error; }
bool RequestParser::in_progress() const { return impl_->in_message; }

}  // namespace kvc::http
