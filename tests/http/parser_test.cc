#include "kvc/http/parser.h"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <vector>

namespace kvc::http {
namespace {

using namespace std::string_literals;

struct Parsed {
  std::vector<HttpRequest> requests;
  std::optional<ParseError> error;
  int continues = 0;  // take_expect_continue() answers
  std::size_t consumed = 0;
};

// Feeds `bytes` in pieces of `chunk` bytes (0: all at once), taking every request as it
// completes, until the bytes run out or the parser fails.
Parsed parse(std::string_view bytes, std::size_t chunk = 0, ParserLimits limits = {}) {
  Parsed out;
  RequestParser p(limits);
  std::size_t fed = 0;  // bytes made available to the parser so far
  std::size_t off = 0;  // bytes it consumed
  for (int guard = 0; guard < 1'000'000; ++guard) {
    fed = chunk == 0 ? bytes.size() : std::min(bytes.size(), std::max(fed, off) + chunk);
    const std::size_t n = p.feed(bytes.substr(off, fed - off));
    off += n;
    if (p.take_expect_continue()) ++out.continues;
    if (p.has_request()) {
      out.requests.push_back(p.take_request());
      continue;
    }
    if (p.failed()) break;
    if (off == bytes.size()) break;
    if (off == fed && fed == bytes.size()) break;
  }
  if (!p.failed()) p.finish();
  if (p.failed()) out.error = p.error();
  out.consumed = off;
  return out;
}

std::string get(std::string_view target, std::string_view extra = "") {
  return "GET " + std::string(target) + " HTTP/1.1\r\nHost: kvc\r\n" + std::string(extra) + "\r\n";
}

TEST(RequestParserTest, ParsesGoodRequests) {
  const struct {
    const char* name;
    std::string bytes;
    Method method;
    std::string path;
    std::vector<std::pair<std::string, std::string>> query;
    std::string body;
    bool keep_alive;
  } cases[] = {
      {"get", get("/health"), Method::kGet, "/health", {}, "", true},
      {"query",
       get("/v1/kv?prefix=a%2Fb&limit=10&flag&&x=1+2%2B3"),
       Method::kGet,
       "/v1/kv",
       {{"prefix", "a/b"}, {"limit", "10"}, {"flag", ""}, {"x", "1 2+3"}},
       "",
       true},
      {"encoded path", get("/v1/kv/a%2Fb%00c+d"), Method::kGet, "/v1/kv/a/b\0c+d"s, {}, "", true},
      {"put with length",
       "PUT /v1/kv/k HTTP/1.1\r\nHost: kvc\r\nContent-Length: 5\r\n\r\nhello",
       Method::kPut,
       "/v1/kv/k",
       {},
       "hello",
       true},
      {"put chunked",
       "PUT /v1/kv/k HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: chunked\r\n\r\n"
       "5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
       Method::kPut,
       "/v1/kv/k",
       {},
       "hello world",
       true},
      {"binary body",
       "POST /x HTTP/1.1\r\nHost: kvc\r\nContent-Length: 3\r\n\r\n\0\xff\n"s,
       Method::kPost,
       "/x",
       {},
       "\0\xff\n"s,
       true},
      {"head", "HEAD /ready HTTP/1.1\r\nHost: kvc\r\n\r\n", Method::kHead, "/ready", {}, "", true},
      {"delete",
       "DELETE /v1/kv/k HTTP/1.1\r\nHost: kvc\r\n\r\n",
       Method::kDelete,
       "/v1/kv/k",
       {},
       "",
       true},
      {"close", get("/", "Connection: close\r\n"), Method::kGet, "/", {}, "", false},
      {"http/1.0 without host",
       "GET /metrics HTTP/1.0\r\n\r\n",
       Method::kGet,
       "/metrics",
       {},
       "",
       false},
      {"http/1.0 keep-alive",
       "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
       Method::kGet,
       "/",
       {},
       "",
       true},
      {"absolute form",
       get("http://kvc:8080/v1/kv/x?y=1"),
       Method::kGet,
       "/v1/kv/x",
       {{"y", "1"}},
       "",
       true},
      {"absolute form without path", get("HTTP://kvc"), Method::kGet, "/", {}, "", true},
      {"blank lines first", "\r\n\r\n" + get("/"), Method::kGet, "/", {}, "", true},
      {"upgrade ignored",
       get("/", "Upgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\n"),
       Method::kGet,
       "/",
       {},
       "",
       true},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Parsed p = parse(c.bytes);
    ASSERT_FALSE(p.error) << p.error->reason;
    ASSERT_EQ(p.requests.size(), 1u);
    const HttpRequest& r = p.requests[0];
    EXPECT_EQ(r.method, c.method);
    EXPECT_EQ(r.path, c.path);
    EXPECT_EQ(r.query, c.query);
    EXPECT_EQ(r.body, c.body);
    EXPECT_EQ(r.keep_alive, c.keep_alive);
    EXPECT_EQ(p.consumed, c.bytes.size());
  }
}

TEST(RequestParserTest, LowercasesHeaderNamesTrimsValuesAndDropsTrailers) {
  const Parsed p = parse(
      "PUT /k HTTP/1.1\r\nHOST: kvc\r\nX-Custom:   spaced value \t\r\nEmpty:\r\n"
      "Transfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nX-Trailer: t\r\n\r\n");
  ASSERT_EQ(p.requests.size(), 1u);
  const HttpRequest& r = p.requests[0];
  ASSERT_NE(r.header("host"), nullptr);
  EXPECT_EQ(*r.header("host"), "kvc");
  ASSERT_NE(r.header("x-custom"), nullptr);
  EXPECT_EQ(*r.header("x-custom"), "spaced value");
  ASSERT_NE(r.header("empty"), nullptr);
  EXPECT_EQ(*r.header("empty"), "");
  EXPECT_EQ(r.header("x-trailer"), nullptr);
  EXPECT_EQ(r.header("X-Custom"), nullptr) << "lookups take lowercase names";
}

TEST(RequestParserTest, RefusesBadRequests) {
  const ParserLimits small{
      .max_target_bytes = 64, .max_header_bytes = 256, .max_headers = 4, .max_body_bytes = 16};
  const std::string long_header = "X: " + std::string(300, 'v') + "\r\n";
  const std::string spaces = "X:" + std::string(300, ' ') + "v\r\n";
  const struct {
    const char* name;
    std::string bytes;
    int status;
  } cases[] = {
      {"garbage", "GARBAGE\r\n\r\n", 400},
      {"lowercase method", "get / HTTP/1.1\r\nHost: kvc\r\n\r\n", 400},
      {"http/0.9 (no version)", "GET /\r\nHost: kvc\r\n\r\n", 505},
      {"bad version", "GET / HTTP/x.y\r\nHost: kvc\r\n\r\n", 400},
      {"http/2", "GET / HTTP/2.0\r\nHost: kvc\r\n\r\n", 505},
      {"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
      {"two hosts", get("/", "Host: other\r\n"), 400},
      {"space before colon", get("/", "X-Foo : bar\r\n"), 400},
      {"header without colon", get("/", "NoColon\r\n"), 400},
      {"cr in value", get("/", "X: a\rb\r\n"), 400},
      {"bare lf", "GET / HTTP/1.1\nHost: kvc\n\n", 400},
      {"bad percent", get("/v1/kv/a%zz"), 400},
      {"short percent", get("/v1/kv/a%4"), 400},
      {"bad percent in query", get("/v1/kv?prefix=%G0"), 400},
      {"relative target", get("noslash"), 400},
      {"asterisk target", get("*"), 400},
      {"fragment", get("/a#frag"), 400},
      {"ftp target", get("ftp://kvc/x"), 400},
      {"patch", "PATCH / HTTP/1.1\r\nHost: kvc\r\n\r\n", 501},
      {"options", "OPTIONS * HTTP/1.1\r\nHost: kvc\r\n\r\n", 501},
      {"trace", "TRACE / HTTP/1.1\r\nHost: kvc\r\n\r\n", 501},
      {"connect", "CONNECT kvc:443 HTTP/1.1\r\nHost: kvc\r\n\r\n", 501},
      {"length and chunked",
       "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n"
       "0\r\n\r\n",
       400},
      {"two lengths",
       "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"bad length", "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: abc\r\n\r\n", 400},
      {"huge length",
       "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: 99999999999999999999999\r\n\r\n", 400},
      {"gzip coding", "PUT / HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: gzip\r\n\r\n", 400},
      {"bad chunk size", "PUT / HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       400},
      {"other expectation", get("/", "Expect: 200-ok\r\n"), 417},
      {"target too long", get("/" + std::string(100, 'a')), 414},
      {"header too long", get("/", long_header), 431},
      {"whitespace flood", get("/", spaces), 431},
      {"blank line flood", std::string(400, '\n') + get("/"), 431},
      {"too many headers", get("/", "A: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n"), 431},
      {"body too long by length", "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: 17\r\n\r\n", 413},
      {"body too long chunked",
       "PUT / HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n" +
           std::string(16, 'x') + "\r\n1\r\nx\r\n0\r\n\r\n",
       413},
      {"chunk framing flood",
       "PUT / HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: chunked\r\n\r\n" + std::string(300, '0') +
           "1\r\nx\r\n",
       413},
      {"cut short", "PUT / HTTP/1.1\r\nHost: kvc\r\nContent-Length: 5\r\n\r\nab", 400},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const Parsed p = parse(c.bytes, 0, small);
    ASSERT_TRUE(p.error) << "accepted " << p.requests.size() << " request(s)";
    EXPECT_EQ(p.error->status, c.status) << p.error->reason;
    EXPECT_FALSE(p.error->reason.empty());
    EXPECT_TRUE(p.requests.empty());
    // The same bytes one at a time reach the same verdict.
    const Parsed q = parse(c.bytes, 1, small);
    ASSERT_TRUE(q.error);
    EXPECT_EQ(q.error->status, c.status) << q.error->reason;
  }
}

TEST(RequestParserTest, ConsumesNothingAfterAnError) {
  RequestParser p;
  const std::string bad = "BAD\r\n\r\n";
  p.feed(bad);
  ASSERT_TRUE(p.failed());
  EXPECT_EQ(p.feed(get("/")), 0u);
  EXPECT_FALSE(p.has_request());
}

TEST(RequestParserTest, StopsAfterEachRequestOfAPipeline) {
  const std::string a = get("/a");
  const std::string b = "PUT /b HTTP/1.1\r\nHost: kvc\r\nContent-Length: 2\r\n\r\nhi";
  RequestParser p;
  const std::string both = a + b;
  const std::size_t n = p.feed(both);
  EXPECT_EQ(n, a.size());
  ASSERT_TRUE(p.has_request());
  EXPECT_EQ(p.feed(std::string_view(both).substr(n)), 0u) << "a request must be taken first";
  EXPECT_EQ(p.take_request().path, "/a");
  EXPECT_EQ(p.feed(std::string_view(both).substr(n)), b.size());
  ASSERT_TRUE(p.has_request());
  EXPECT_EQ(p.take_request().body, "hi");
}

// Three pipelined requests split at every byte (two pieces), and fed byte by byte, parse to the
// same requests as when fed whole.
TEST(RequestParserTest, PipelinedRequestsSplitAtEveryByte) {
  const std::string stream =
      get("/v1/kv/a%2Fb?serializable=true") +
      "PUT /v1/kv/k HTTP/1.1\r\nHost: kvc\r\nContent-Length: 6\r\n\r\nval\r\n\0"s +
      "PUT /v1/kv/c HTTP/1.1\r\nHost: kvc\r\nTransfer-Encoding: chunked\r\n\r\n"
      "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n" +
      "DELETE /v1/kv/k HTTP/1.1\r\nHost: kvc\r\nConnection: close\r\n\r\n";
  const Parsed whole = parse(stream);
  ASSERT_FALSE(whole.error);
  ASSERT_EQ(whole.requests.size(), 4u);
  EXPECT_EQ(whole.requests[0].path, "/v1/kv/a/b");
  EXPECT_EQ(whole.requests[1].body, std::string("val\r\n\0", 6));
  EXPECT_EQ(whole.requests[2].body, "abcde");
  EXPECT_FALSE(whole.requests[3].keep_alive);

  auto same = [&](const Parsed& p) {
    ASSERT_FALSE(p.error) << p.error->reason;
    ASSERT_EQ(p.requests.size(), whole.requests.size());
    for (std::size_t i = 0; i < p.requests.size(); ++i) {
      EXPECT_EQ(p.requests[i].method, whole.requests[i].method);
      EXPECT_EQ(p.requests[i].target, whole.requests[i].target);
      EXPECT_EQ(p.requests[i].path, whole.requests[i].path);
      EXPECT_EQ(p.requests[i].query, whole.requests[i].query);
      EXPECT_EQ(p.requests[i].body, whole.requests[i].body);
      EXPECT_EQ(p.requests[i].keep_alive, whole.requests[i].keep_alive);
      ASSERT_EQ(p.requests[i].headers.size(), whole.requests[i].headers.size());
    }
  };
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    SCOPED_TRACE("split at " + std::to_string(split));
    Parsed p;
    RequestParser parser;
    const std::string_view parts[] = {std::string_view(stream).substr(0, split),
                                      std::string_view(stream).substr(split)};
    for (std::string_view part : parts) {
      std::size_t off = 0;
      for (int guard = 0; guard < 100 && off < part.size(); ++guard) {
        off += parser.feed(part.substr(off));
        if (parser.has_request()) p.requests.push_back(parser.take_request());
        ASSERT_FALSE(parser.failed()) << parser.error().reason;
      }
      ASSERT_EQ(off, part.size());
    }
    same(p);
  }
  same(parse(stream, 1));
  same(parse(stream, 7));
}

TEST(RequestParserTest, ReportsExpectContinueOncePerRequest) {
  const std::string req =
      "PUT /v1/kv/k HTTP/1.1\r\nHost: kvc\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n";
  RequestParser p;
  EXPECT_EQ(p.feed(req), req.size());
  EXPECT_FALSE(p.has_request());
  EXPECT_TRUE(p.in_progress());
  EXPECT_TRUE(p.take_expect_continue());
  EXPECT_FALSE(p.take_expect_continue());
  EXPECT_EQ(p.feed("abc"), 3u);
  ASSERT_TRUE(p.has_request());
  EXPECT_EQ(p.take_request().body, "abc");
  // No body, or HTTP/1.0: nothing to wait for.
  EXPECT_EQ(parse(get("/", "Expect: 100-continue\r\n")).continues, 0);
}

TEST(RequestParserTest, InProgressFromFirstByteToLast) {
  RequestParser p;
  EXPECT_FALSE(p.in_progress());
  p.feed("\r\n");  // blank lines before a request do not start one
  EXPECT_FALSE(p.in_progress());
  p.feed("G");
  EXPECT_TRUE(p.in_progress());
  p.feed("ET / HTTP/1.1\r\nHost: kvc\r\n\r\n");
  ASSERT_TRUE(p.has_request());
  EXPECT_FALSE(p.in_progress());
  p.take_request();
  p.finish();
  EXPECT_FALSE(p.failed()) << "closing between requests is fine";
}

TEST(PercentTest, DecodesAndEncodesRoundTrip) {
  EXPECT_EQ(*percent_decode("a%2Fb%2fc+d", false), "a/b/c+d");
  EXPECT_EQ(*percent_decode("a+b", true), "a b");
  EXPECT_FALSE(percent_decode("%", false).ok());
  EXPECT_FALSE(percent_decode("%a", false).ok());
  EXPECT_FALSE(percent_decode("%ag", false).ok());
  EXPECT_EQ(percent_encode("a/b c~"), "a%2Fb%20c~");
  EXPECT_EQ(percent_encode("a/b", true), "a/b");
  std::string all;
  for (int i = 0; i < 256; ++i) all += static_cast<char>(i);
  EXPECT_EQ(*percent_decode(percent_encode(all), false), all);
  EXPECT_EQ(*percent_decode(percent_encode(all), true), all);
}

}  // namespace
}  // namespace kvc::http
