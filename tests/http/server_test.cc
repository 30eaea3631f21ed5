// HttpServer with KvRoutes over the fake backend, on 127.0.0.1:0, driven by real curl processes
// and by raw sockets for byte-level input and misbehaving clients. Everything runs on the test's
// loop; waits are bounded (TestLoop::run_until), never sleeps.
#include "kvc/http/server.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <random>

#include "fake_backend.h"
#include "kvc/common/text.h"
#include "kvc/http/json.h"
#include "kvc/http/kv_routes.h"
#include "loop_util.h"
#include "prom_text.h"
#include "support/test_dir.h"

namespace kvc::http {
namespace {

using namespace std::string_literals;
using testing::FakeBackend;
using testing::HttpAnswer;
using testing::parse_answers;
using testing::ProcessResult;
using testing::RawClient;
using testing::TestLoop;

class HttpServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions o = {}) {
    o.address = {"127.0.0.1", 0};
    o.metrics = &backend_.registry;
    server_ = std::make_unique<HttpServer>(loop_.get(), o, routes_.handler());
    ASSERT_TRUE(server_->listen().ok());
    ASSERT_NE(server_->bound().port, 0);
    base_ = "http://" + server_->bound().to_string();
  }
  void TearDown() override {
    server_.reset();
    loop_.drain();
    for (const auto& f : files_) std::filesystem::remove(f);
  }

  // curl with the answer's headers in its output (-i); fails the test on a curl error.
  std::vector<HttpAnswer> curl(std::vector<std::string> args, bool head = false) {
    ProcessResult r = run_curl(std::move(args));
    EXPECT_EQ(r.exit_status, 0) << r.err;
    std::string rest;
    std::vector<HttpAnswer> a = parse_answers(r.out, head, &rest);
    EXPECT_EQ(rest, "") << "unparsed curl output";
    return a;
  }
  HttpAnswer curl_one(std::vector<std::string> args) {
    std::vector<HttpAnswer> a = curl(std::move(args));
    // Interim 100 Continue answers aside, exactly one answer.
    std::erase_if(a, [](const HttpAnswer& x) { return x.status < 200; });
    KVC_CHECK(a.size() == 1, "expected one answer, got " + std::to_string(a.size()));
    return a[0];
  }
  ProcessResult run_curl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl",      "-q", "-sS",        "-i",
                                     "--noproxy", "*",  "--max-time", "10"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_process(loop_, argv);
  }
  std::string url(std::string_view path) { return base_ + std::string(path); }
  std::string temp_file(const std::string& bytes) {
    const std::string path = test::test_dir() + "/file_" + std::to_string(files_.size());
    std::ofstream(path, std::ios::binary) << bytes;
    files_.push_back(path);
    return path;
  }
  static JsonValue json(const HttpAnswer& a) {
    Result<JsonValue> v = parse_json(a.body);
    KVC_CHECK(v.ok(), "not JSON: " + a.body);
    return *v;
  }
  std::unique_ptr<RawClient> raw() {
    auto c = std::make_unique<RawClient>(loop_, server_->bound());
    KVC_CHECK(c->connected(), "raw client did not connect");
    return c;
  }

  TestLoop loop_;  // first member: destroyed last
  FakeBackend backend_;
  KvRoutes routes_{backend_};
  std::unique_ptr<HttpServer> server_;
  std::string base_;
  std::vector<std::string> files_;
};

TEST_F(HttpServerTest, CurlUsesEveryRoute) {
  start();
  std::string value;
  std::mt19937 rng(7);
  for (int i = 0; i < 3000; ++i) value += static_cast<char>(rng() & 0xff);
  const std::string file = temp_file(value);

  HttpAnswer put = curl_one({"-X", "PUT", "--data-binary", "@" + file, url("/v1/kv/dir%2Fa%00b")});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(*put.header("content-type"), "application/json");
  EXPECT_EQ(json(put).find("revision")->as_uint64(), 1u);

  HttpAnswer get = curl_one({url("/v1/kv/dir/a%00b")});
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_EQ(*base64_decode(json(get).find("kv")->find("value_base64")->text), value);

  HttpAnswer jput = curl_one({"-X", "PUT", "-H", "Content-Type: application/json", "--data-binary",
                              R"({"value":"hello"})", url("/v1/kv/dir/j")});
  ASSERT_EQ(jput.status, 200) << jput.body;
  EXPECT_EQ(backend_.kvs["dir/j"].value, "hello");

  HttpAnswer cas =
      curl_one({"-X", "PUT", "--data-binary", "x", url("/v1/kv/dir/j?expect_revision=1")});
  EXPECT_EQ(cas.status, 409);
  EXPECT_EQ(json(cas).find("error")->find("code")->text, "compare_failed");

  HttpAnswer list = curl_one({url("/v1/kv?prefix=dir%2F&limit=1")});
  ASSERT_EQ(list.status, 200) << list.body;
  EXPECT_EQ(json(list).find("kvs")->array.size(), 1u);
  EXPECT_TRUE(json(list).find("more")->boolean);

  HttpAnswer del = curl_one({"-X", "DELETE", url("/v1/kv/dir/j")});
  EXPECT_EQ(del.status, 200) << del.body;
  EXPECT_EQ(curl_one({url("/v1/kv/dir/j")}).status, 404);
  EXPECT_EQ(curl_one({"-X", "DELETE", url("/v1/kv/dir/j")}).status, 404);

  EXPECT_EQ(curl_one({url("/health")}).status, 200);
  backend_.health_status = Status::unavailable("no quorum");
  EXPECT_EQ(curl_one({url("/health")}).status, 503);
  EXPECT_EQ(curl_one({url("/ready")}).status, 200);
  HttpAnswer m = curl_one({url("/metrics")});
  EXPECT_EQ(m.status, 200);
  EXPECT_EQ(*m.header("content-type"), "text/plain; version=0.0.4; charset=utf-8");
  EXPECT_EQ(curl_one({url("/nope")}).status, 404);
  EXPECT_NE(curl_one({url("/nope")}).header("date"), nullptr);
}

TEST_F(HttpServerTest, CurlReusesOneConnectionForSeveralRequests) {
  start();
  std::vector<HttpAnswer> a = curl({url("/health"), url("/ready"), url("/v1/kv/missing")});
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(a[1].status, 200);
  EXPECT_EQ(a[2].status, 404);
  EXPECT_EQ(server_->stats().accepted, 1u);
  EXPECT_EQ(server_->stats().requests, 3u);
}

TEST_F(HttpServerTest, CurlHeadGetsTheHeadersOfGetWithoutTheBody) {
  start();
  backend_.registry.counter("kvc_x_total", "x").inc();
  std::vector<HttpAnswer> head = curl({"-I", url("/ready")}, /*head=*/true);
  ASSERT_EQ(head.size(), 1u);
  const HttpAnswer get = curl_one({url("/ready")});
  EXPECT_EQ(head[0].status, 200);
  EXPECT_EQ(*head[0].header("content-length"), std::to_string(get.body.size()));
  EXPECT_TRUE(head[0].body.empty());
}

TEST_F(HttpServerTest, CurlExpectContinueGetsContinueThenTheAnswer) {
  start();
  const std::string value(100'000, 'v');
  std::vector<HttpAnswer> a = curl({"-X", "PUT", "-H", "Expect: 100-continue", "--data-binary",
                                    "@" + temp_file(value), url("/v1/kv/big")});
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].status, 100);
  EXPECT_EQ(a[1].status, 200);
  EXPECT_EQ(backend_.kvs["big"].value, value);
}

TEST_F(HttpServerTest, CurlChunkedUploadIsDeChunked) {
  start();
  const std::string value(50'000, 'c');
  HttpAnswer a = curl_one({"-X", "PUT", "-H", "Transfer-Encoding: chunked", "--data-binary",
                           "@" + temp_file(value), url("/v1/kv/chunked")});
  EXPECT_EQ(a.status, 200) << a.body;
  EXPECT_EQ(backend_.kvs["chunked"].value, value);
}

TEST_F(HttpServerTest, CurlOversizedBodyGets413WithOrWithoutExpect) {
  HttpServerOptions o;
  o.limits.max_body_bytes = 4096;
  start(o);
  const std::string file = temp_file(std::string(1 << 20, 'x'));
  for (const char* expect : {"Expect: 100-continue", "Expect:"}) {
    SCOPED_TRACE(expect);
    HttpAnswer a =
        curl_one({"-X", "PUT", "-H", expect, "--data-binary", "@" + file, url("/v1/kv/big")});
    EXPECT_EQ(a.status, 413) << a.body;
    EXPECT_EQ(*a.header("connection"), "close");
  }
  EXPECT_TRUE(backend_.calls.empty());
}

TEST_F(HttpServerTest, CurlMalformedRequestsGet4xx) {
  start();
  const struct {
    const char* name;
    std::vector<std::string> args;
    int status;
  } cases[] = {
      {"unsupported method", {"-X", "PATCH", url("/v1/kv/k")}, 501},
      {"no host", {"-H", "Host:", url("/health")}, 400},
      {"asterisk target", {"--request-target", "*", url("/health")}, 400},
      {"relative target", {"--request-target", "health", url("/health")}, 400},
      {"bad percent", {"--request-target", "/v1/kv/%zz", url("/")}, 400},
      {"header too large", {"-H", "X-Big: " + std::string(20'000, 'a'), url("/health")}, 431},
      {"target too long", {url("/v1/kv/" + std::string(9000, 'k'))}, 414},
      {"other expectation", {"-H", "Expect: 200-ok", "--data-binary", "x", url("/v1/kv/k")}, 417},
      {"length and chunked",
       {"-H", "Transfer-Encoding: chunked", "-H", "Content-Length: 3", "--data-binary", "abc",
        url("/v1/kv/k")},
       400},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    HttpAnswer a = curl_one(c.args);
    EXPECT_EQ(a.status, c.status) << a.body;
    ASSERT_NE(a.header("connection"), nullptr);
    EXPECT_EQ(*a.header("connection"), "close");
    EXPECT_FALSE(json(a).find("error")->find("message")->text.empty());
  }
  EXPECT_TRUE(backend_.calls.empty());
  EXPECT_EQ(server_->stats().malformed, std::size(cases));
  // HTTP/1.0 needs no Host and is served, then closed.
  HttpAnswer old = curl_one({"--http1.0", "-H", "Host:", url("/health")});
  EXPECT_EQ(old.status, 200);
  EXPECT_EQ(*old.header("connection"), "close");
}

TEST_F(HttpServerTest, CurlHttp2UpgradeIsAnsweredOverHttp11) {
  start();
  std::vector<HttpAnswer> a = curl({"--http2", url("/health"), url("/ready")});
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(a[1].status, 200);
}

TEST_F(HttpServerTest, RawMalformedBytesGetAnAnswerAndTheConnectionCloses) {
  start();
  const struct {
    const char* name;
    std::string bytes;
    int status;
  } cases[] = {
      {"garbage", "GARBAGE\r\n\r\n", 400},
      {"tls hello", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"s, 400},
      {"nul in target", "GET /\0 HTTP/1.1\r\nHost: x\r\n\r\n"s, 400},
      {"http/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 505},
      {"smuggling",
       "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: "
       "chunked\r\n\r\n0\r\n\r\n",
       400},
      {"bad chunk", "PUT /v1/kv/k HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
       400},
      {"header flood", "GET / HTTP/1.1\r\nHost: x\r\n" + std::string(70'000, 'X') + "\r\n\r\n",
       431},
      {"too many headers",
       [] {
         std::string s = "GET / HTTP/1.1\r\nHost: x\r\n";
         for (int i = 0; i < 100; ++i) s += "H" + std::to_string(i) + ": v\r\n";
         return s + "\r\n";
       }(),
       431},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    std::unique_ptr<RawClient> client = raw();
    client->send(c.bytes);
    ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }));
    std::string rest;
    std::vector<HttpAnswer> a = parse_answers(client->received(), false, &rest);
    ASSERT_EQ(a.size(), 1u) << client->received();
    EXPECT_EQ(rest, "");
    EXPECT_EQ(a[0].status, c.status) << a[0].body;
    EXPECT_EQ(*a[0].header("connection"), "close");
  }
  // The member still serves.
  EXPECT_EQ(curl_one({url("/health")}).status, 200);
  EXPECT_TRUE(backend_.calls.empty());
}

TEST_F(HttpServerTest, PipelinedAnswersKeepRequestOrder) {
  start();
  backend_.kvs["fast"] = {"fast", "f", 1, 1, 1};
  backend_.held_keys.insert("slow");
  std::unique_ptr<RawClient> client = raw();
  client->send(
      "GET /v1/kv/slow HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /v1/kv/fast HTTP/1.1\r\nHost: x\r\n\r\n"
      "DELETE /v1/kv/fast HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return backend_.calls.size() == 3; }));
  loop_.run_ready();
  EXPECT_EQ(client->received(), "") << "answers 2 and 3 must wait for answer 1";
  backend_.release_all();
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(client->received()).size() == 3; }));
  std::vector<HttpAnswer> a = parse_answers(client->received());
  EXPECT_EQ(a[0].status, 404);  // slow: never stored
  EXPECT_NE(a[0].body.find("slow"), std::string::npos);
  EXPECT_EQ(a[1].status, 200);  // fast, read before the delete
  EXPECT_EQ(a[2].status, 200);  // the delete
  EXPECT_FALSE(client->peer_closed()) << "keep-alive";
}

TEST_F(HttpServerTest, PipelineDepthIsBounded) {
  HttpServerOptions o;
  o.max_pipelined = 2;
  start(o);
  for (int i = 0; i < 5; ++i) backend_.held_keys.insert("k" + std::to_string(i));
  std::unique_ptr<RawClient> client = raw();
  std::string reqs;
  for (int i = 0; i < 5; ++i)
    reqs += "GET /v1/kv/k" + std::to_string(i) + " HTTP/1.1\r\nHost: x\r\n\r\n";
  client->send(reqs);
  ASSERT_TRUE(loop_.run_until([&] { return backend_.calls.size() == 2; }));
  loop_.run_ready();
  EXPECT_EQ(backend_.calls.size(), 2u) << "no more than max_pipelined in the handler";
  for (int round = 0; round < 10 && parse_answers(client->received()).size() < 5; ++round) {
    backend_.release_all();
    const std::size_t want = std::min<std::size_t>(5, parse_answers(client->received()).size() + 1);
    ASSERT_TRUE(loop_.run_until([&] { return parse_answers(client->received()).size() >= want; }));
  }
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 5u);
  for (int i = 0; i < 5; ++i) {
    EXPECT_NE(a[i].body.find("k" + std::to_string(i)), std::string::npos) << "answer " << i;
    EXPECT_EQ(backend_.calls[i].key, "k" + std::to_string(i));
  }
}

TEST_F(HttpServerTest, ConnectionCloseIsHonoured) {
  start();
  std::unique_ptr<RawClient> client = raw();
  client->send(
      "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
      "GET /ready HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }));
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(*a[0].header("connection"), "close");
  EXPECT_EQ(server_->stats().requests, 1u) << "nothing after the closing request is served";
}

TEST_F(HttpServerTest, Http10KeepAliveIsConfirmedAndKept) {
  start();
  std::unique_ptr<RawClient> client = raw();
  client->send("GET /health HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(client->received()).size() == 1; }));
  EXPECT_EQ(*parse_answers(client->received())[0].header("connection"), "keep-alive");
  client->send("GET /ready HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }));
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(*a[1].header("connection"), "close");
  EXPECT_EQ(server_->stats().accepted, 1u);
}

TEST_F(HttpServerTest, HalfClosedClientStillGetsItsAnswers) {
  start();
  backend_.held_keys.insert("k");
  std::unique_ptr<RawClient> client = raw();
  client->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\nGET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n");
  client->shutdown_write();
  ASSERT_TRUE(loop_.run_until([&] { return backend_.calls.size() == 1; }));
  backend_.release_all();
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }));
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[0].status, 200);
  EXPECT_EQ(a[1].status, 404);
}

TEST_F(HttpServerTest, IdleConnectionsAreClosed) {
  HttpServerOptions o;
  o.idle_timeout_ms = 150;
  start(o);
  std::unique_ptr<RawClient> silent = raw();
  const std::uint64_t t0 = loop_.now();
  ASSERT_TRUE(loop_.run_until([&] { return silent->peer_closed(); }, 5000));
  EXPECT_GE(silent->peer_closed_at() + 5, t0 + o.idle_timeout_ms);
  EXPECT_EQ(silent->received(), "") << "an idle close sends nothing";

  // After an answer, the connection idles again and is closed again.
  std::unique_ptr<RawClient> once = raw();
  once->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return once->peer_closed(); }, 5000));
  EXPECT_EQ(parse_answers(once->received()).size(), 1u);
  EXPECT_EQ(server_->stats().idle_timeouts, 2u);
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(HttpServerTest, SlowRequestsGet408) {
  HttpServerOptions o;
  o.request_timeout_ms = 150;
  o.idle_timeout_ms = 60'000;
  start(o);
  std::unique_ptr<RawClient> client = raw();
  client->send("GET /health HTTP/1.1\r\nHo");
  const std::uint64_t t0 = loop_.now();
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }, 5000));
  EXPECT_GE(client->peer_closed_at() + 5, t0 + o.request_timeout_ms);
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, 408);
  EXPECT_EQ(server_->stats().request_timeouts, 1u);
}

// A client that keeps sending, one byte at a time, is still held to the request deadline.
TEST_F(HttpServerTest, TricklingClientIsHeldToTheRequestDeadline) {
  HttpServerOptions o;
  o.request_timeout_ms = 200;
  start(o);
  std::unique_ptr<RawClient> client = raw();
  const std::string request = "GET /health HTTP/1.1\r\nHost: x\r\nX-Pad: " + std::string(400, 'p');
  std::size_t sent = 0;
  uv_timer_t trickle{};
  struct Ctx {
    RawClient* client;
    const std::string* request;
    std::size_t* sent;
  } ctx{client.get(), &request, &sent};
  uv_timer_init(loop_.get(), &trickle);
  trickle.data = &ctx;
  uv_timer_start(
      &trickle,
      [](uv_timer_t* t) {
        auto* c = static_cast<Ctx*>(t->data);
        if (*c->sent < c->request->size()) c->client->send(c->request->substr((*c->sent)++, 1));
      },
      0, 10);
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }, 5000));
  uv_timer_stop(&trickle);
  bool trickle_closed = false;
  trickle.data = &trickle_closed;
  uv_close(reinterpret_cast<uv_handle_t*>(&trickle),
           [](uv_handle_t* h) { *static_cast<bool*>(h->data) = true; });
  ASSERT_TRUE(loop_.run_until([&] { return trickle_closed; }));
  EXPECT_LT(sent, request.size()) << "the deadline came before the request was complete";
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, 408);
}

TEST_F(HttpServerTest, UnansweredRequestsGet504AndLateAnswersAreDropped) {
  HttpServerOptions o;
  o.response_timeout_ms = 150;
  start(o);
  backend_.held_keys.insert("stuck");
  std::unique_ptr<RawClient> client = raw();
  client->send("PUT /v1/kv/stuck HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nv");
  ASSERT_TRUE(loop_.run_until([&] { return !parse_answers(client->received()).empty(); }, 5000));
  std::vector<HttpAnswer> a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 1u);
  EXPECT_EQ(a[0].status, 504);
  EXPECT_EQ(json(a[0]).find("error")->find("code")->text, "timeout");
  EXPECT_EQ(server_->stats().response_timeouts, 1u);
  // The late answer goes nowhere; the connection still serves.
  backend_.release_all();
  client->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(client->received()).size() == 2; }));
  loop_.run_ready();
  a = parse_answers(client->received());
  ASSERT_EQ(a.size(), 2u);
  EXPECT_EQ(a[1].status, 200);
}

TEST_F(HttpServerTest, ClientsThatDoNotReadAreDisconnected) {
  HttpServerOptions o;
  o.write_timeout_ms = 200;
  start(o);
  // An answer of about 11 MB (a value that is not UTF-8 travels as base64): more than the
  // server's send buffer (tcp_wmem's maximum, 4 MiB by default) and the client's receive buffer
  // (RawClient without reading: the kernel's minimum) hold, so the answer stays queued.
  backend_.kvs["big"] = {"big", std::string(8u << 20, '\xff'), 1, 1, 1};
  auto client = std::make_unique<RawClient>(loop_, server_->bound(), /*read=*/false);
  ASSERT_TRUE(client->connected());
  client->send("GET /v1/kv/big HTTP/1.1\r\nHost: x\r\n\r\n");
  // The bound is a safety net, not the expected time (about 0.3 s unloaded).
  ASSERT_TRUE(loop_.run_until([&] { return server_->stats().write_timeouts == 1; }, 60'000));
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(HttpServerTest, ConnectionsBeyondTheLimitGet503) {
  HttpServerOptions o;
  o.max_connections = 2;
  start(o);
  std::unique_ptr<RawClient> a = raw();
  std::unique_ptr<RawClient> b = raw();
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 2; }));
  std::unique_ptr<RawClient> c = raw();
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  std::vector<HttpAnswer> refused = parse_answers(c->received());
  ASSERT_EQ(refused.size(), 1u);
  EXPECT_EQ(refused[0].status, 503);
  EXPECT_EQ(server_->stats().rejected, 1u);

  a->close();
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 1; }));
  std::unique_ptr<RawClient> d = raw();
  d->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(d->received()).size() == 1; }));
  EXPECT_EQ(parse_answers(d->received())[0].status, 200);
}

TEST_F(HttpServerTest, ClosingTheServerDropsPendingAnswers) {
  start();
  backend_.held_keys.insert("k");
  std::unique_ptr<RawClient> client = raw();
  client->send("GET /v1/kv/k HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return backend_.calls.size() == 1; }));
  server_.reset();  // destroyed with an answer owed
  ASSERT_TRUE(loop_.run_until([&] { return client->peer_closed(); }));
  backend_.release_all();  // the Respond outlives the server: dropped, no crash
  loop_.run_ready();
  EXPECT_EQ(client->received(), "");
}

TEST_F(HttpServerTest, MetricsEndpointIsValidPrometheusText) {
  start();
  // What the member registers, plus the server's own kvc_http_* metrics (same registry).
  backend_.registry.gauge("kvc_raft_term", "The current Raft term.").set(3);
  backend_.registry.gauge("kvc_raft_is_leader", "1 on the leader.").set(1);
  metrics::Histogram& fsync = backend_.registry.histogram(
      "kvc_wal_fsync_seconds", "WAL fsync latency.", metrics::kLatencyBuckets);
  fsync.observe(0.002);
  fsync.observe(0.3);
  for (const char* op : {"get", "put", "delete"}) {
    backend_.registry
        .histogram("kvc_client_request_seconds", "Client request latency by operation.",
                   metrics::kLatencyBuckets, {{"op", op}})
        .observe(0.001);
  }
  EXPECT_EQ(curl_one({url("/health")}).status, 200);
  EXPECT_EQ(curl_one({url("/v1/kv/none")}).status, 404);
  EXPECT_EQ(curl_one({"-X", "PATCH", url("/")}).status, 501);

  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 0; }));
  HttpAnswer m = curl_one({url("/metrics")});
  ASSERT_EQ(m.status, 200);
  Result<std::map<std::string, testing::PromFamily>> fams = testing::parse_prometheus_text(m.body);
  ASSERT_TRUE(fams.ok()) << fams.status().to_string() << "\n" << m.body;
  EXPECT_EQ(fams->at("kvc_raft_term").value("kvc_raft_term"), 3);
  EXPECT_EQ(fams->at("kvc_wal_fsync_seconds").value("kvc_wal_fsync_seconds_count"), 2);
  EXPECT_EQ(fams->at("kvc_client_request_seconds").type, "histogram");
  const testing::PromFamily& responses = fams->at("kvc_http_responses_total");
  EXPECT_EQ(responses.value("kvc_http_responses_total", {{"code", "2xx"}}), 1);
  EXPECT_EQ(responses.value("kvc_http_responses_total", {{"code", "4xx"}}), 1);
  EXPECT_EQ(responses.value("kvc_http_responses_total", {{"code", "5xx"}}), 1);
  EXPECT_EQ(
      fams->at("kvc_http_malformed_requests_total").value("kvc_http_malformed_requests_total"), 1);
  // The scrape's own connection is open while it is answered.
  EXPECT_EQ(fams->at("kvc_http_connections").value("kvc_http_connections"), 1);
  EXPECT_EQ(fams->at("kvc_http_request_duration_seconds").type, "histogram");
}

// Streaming answers (HttpResponse::stream), with a handler of the test's own: /stream answers
// with a stream that already holds "early;", anything else with a plain "plainbody".
class StreamingServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions o = {}) {
    o.address = {"127.0.0.1", 0};
    server_ =
        std::make_unique<HttpServer>(loop_.get(), o, [this](const HttpRequest& r, Respond respond) {
          HttpResponse a;
          a.content_type = "text/plain";
          if (r.path != "/stream") {
            a.body = "plainbody";
            return respond(std::move(a));
          }
          stream_ = std::make_shared<ResponseStream>();
          stream_->write("early;");
          stream_->on_close([this] { ++closed_; });
          a.stream = stream_;
          a.stream_keepalive = "~";
          respond(std::move(a));
        });
    ASSERT_TRUE(server_->listen().ok());
  }
  void TearDown() override {
    server_.reset();
    loop_.drain();
  }
  std::unique_ptr<RawClient> raw(bool read = true) {
    auto c = std::make_unique<RawClient>(loop_, server_->bound(), read);
    KVC_CHECK(c->connected(), "raw client did not connect");
    return c;
  }
  static bool has(const RawClient& c, std::string_view s) {
    return c.received().find(s) != std::string::npos;
  }

  TestLoop loop_;
  std::unique_ptr<HttpServer> server_;
  std::shared_ptr<ResponseStream> stream_;
  int closed_ = 0;  // on_close calls
};

TEST_F(StreamingServerTest, ChunkedBodyKeepAlivesThenTheEnd) {
  HttpServerOptions o;
  o.stream_keepalive_ms = 50;
  o.idle_timeout_ms = 100;  // a stream is not idle, however long it is quiet
  start(o);
  std::unique_ptr<RawClient> c = raw();
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "6\r\nearly;\r\n"); }));
  const std::string head = c->received().substr(0, c->received().find("\r\n\r\n"));
  EXPECT_TRUE(head.starts_with("HTTP/1.1 200 OK\r\n")) << head;
  EXPECT_NE(head.find("Transfer-Encoding: chunked"), std::string::npos) << head;
  EXPECT_EQ(head.find("Content-Length"), std::string::npos) << head;
  EXPECT_NE(head.find("Connection: close"), std::string::npos) << head;
  EXPECT_EQ(server_->open_streams(), 1u);
  EXPECT_EQ(server_->stats().streams, 1u);

  stream_->write("abc");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "3\r\nabc\r\n"); }));
  // Quiet for several keep-alive periods and idle timeouts: keep-alives, no close.
  auto count = [&] {
    std::size_t n = 0;
    for (std::size_t at = 0; (at = c->received().find("1\r\n~\r\n", at)) != std::string::npos;
         ++at) {
      ++n;
    }
    return n;
  };
  ASSERT_TRUE(loop_.run_until([&] { return count() >= 4; }));
  EXPECT_FALSE(c->peer_closed());
  EXPECT_EQ(closed_, 0);

  stream_->end();
  EXPECT_TRUE(stream_->closed());
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  EXPECT_TRUE(c->received().ends_with("0\r\n\r\n")) << c->received();
  ASSERT_TRUE(loop_.run_until([&] { return closed_ == 1; }));
  EXPECT_EQ(server_->open_streams(), 0u);
}

TEST_F(StreamingServerTest, ClientClosingEndsTheStream) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "early;"); }));
  c->close();
  ASSERT_TRUE(loop_.run_until([&] { return closed_ == 1; }));
  EXPECT_TRUE(stream_->closed());
  EXPECT_EQ(stream_->unsent_bytes(), 0u);
  stream_->write("dropped");  // after the close: nothing happens
  stream_->end();
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 0; }));
  EXPECT_EQ(server_->open_streams(), 0u);
}

TEST_F(StreamingServerTest, AnswersBeforeAStreamGoFirstAndRequestsAfterItAreNotAnswered) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send(
      "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /stream HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /b HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "early;"); }));
  stream_->end();
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  const std::string& got = c->received();
  ASSERT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
  EXPECT_NE(got.find("\r\n\r\nplainbody"), std::string::npos) << got;
  EXPECT_EQ(got.find("plainbody"), got.rfind("plainbody")) << "one plain answer only: " << got;
  EXPECT_LT(got.find("plainbody"), got.find("Transfer-Encoding: chunked"));
}

TEST_F(StreamingServerTest, Http10StreamIsUnframedAndEndsWithTheConnection) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send("GET /stream HTTP/1.0\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "early;"); }));
  stream_->write("more");
  stream_->end();
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  const std::string& got = c->received();
  EXPECT_EQ(got.find("Transfer-Encoding"), std::string::npos) << got;
  EXPECT_TRUE(got.ends_with("\r\n\r\nearly;more")) << got;
}

TEST_F(StreamingServerTest, HeadGetsTheHeadAndDropsTheStream) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send("HEAD /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  EXPECT_TRUE(c->received().ends_with("Connection: close\r\n\r\n")) << c->received();
  EXPECT_NE(c->received().find("Transfer-Encoding: chunked"), std::string::npos);
  EXPECT_EQ(closed_, 1);
  EXPECT_EQ(server_->stats().streams, 0u);
}

TEST_F(StreamingServerTest, ClosingTheServerEndsItsStreams) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return has(*c, "early;"); }));
  server_->close();
  EXPECT_EQ(closed_, 1);
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
}

TEST_F(StreamingServerTest, AReaderThatReadsNothingIsBoundedThenDisconnected) {
  HttpServerOptions o;
  o.write_timeout_ms = 200;
  start(o);
  std::unique_ptr<RawClient> c = raw(/*read=*/false);
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_streams() == 1; }));
  // A producer that watches unsent_bytes() (as a watch does) sees the backlog grow and stops.
  const std::string mib(1u << 20, 'x');
  for (int i = 0; i < 64 && stream_->unsent_bytes() < (8u << 20); ++i) {
    stream_->write(mib);
    loop_.run_ready();
  }
  EXPECT_GE(stream_->unsent_bytes(), 1u << 20);
  // The server's write deadline still cuts a reader that takes nothing at all.
  ASSERT_TRUE(loop_.run_until([&] { return closed_ == 1; }, 60'000));
  EXPECT_EQ(server_->stats().write_timeouts, 1u);
}

}  // namespace
}  // namespace kvc::http
