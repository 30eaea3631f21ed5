// HttpServer over TLS (HttpServerOptions::tls) with certificates made at test time: curl with
// --cacert, a TLS client of the test's own over a raw socket (a net::TlsSession the test pumps)
// for pipelining and streams, plain HTTP at the TLS port, a handshake that never finishes,
// client certificates (required, and their subject handed to the handler), the connection limit
// and a context swapped for new connections. Everything runs on the test's loop; waits are
// bounded (TestLoop::run_until), never sleeps.
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "fake_backend.h"
#include "kvc/http/kv_routes.h"
#include "kvc/http/server.h"
#include "kvc/net/tls.h"
#include "loop_util.h"
#include "support/temp_dir.h"
#include "support/test_dir.h"
#include "support/test_pki.h"

namespace kvc::http {
namespace {

using testing::FakeBackend;
using testing::HttpAnswer;
using testing::parse_answers;
using testing::ProcessResult;
using testing::RawClient;
using testing::TestLoop;

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// A CA, the server's certificate (127.0.0.1, localhost), a client certificate, and a second CA
// with a server certificate of its own.
struct Pki {
  test::ScopedTempDir dir{"kvc-https-test"};
  std::string ca, server, server_key, client, client_key, other_ca, other_server, other_server_key;

  Pki() {
    test::Issued ca_i = test::issue("kvc test CA", nullptr, "", 1, 3650);
    test::Issued server_i = test::issue("member", &ca_i, "IP:127.0.0.1,DNS:localhost", 2);
    test::Issued client_i = test::issue("operator", &ca_i, "DNS:operator.example", 3);
    test::Issued other_ca_i = test::issue("other CA", nullptr, "", 4, 3650);
    test::Issued other_i = test::issue("other", &other_ca_i, "IP:127.0.0.1", 5);
    auto both = [this](const test::Issued& i, const std::string& name, std::string* cert,
                       std::string* key) {
      *cert = dir.file(name + ".pem");
      *key = dir.file(name + "-key.pem");
      test::write_cert(*cert, i);
      test::write_key(*key, i);
    };
    ca = dir.file("ca.pem");
    test::write_cert(ca, ca_i);
    other_ca = dir.file("other-ca.pem");
    test::write_cert(other_ca, other_ca_i);
    both(server_i, "server", &server, &server_key);
    both(client_i, "client", &client, &client_key);
    both(other_i, "other-server", &other_server, &other_server_key);
  }
};

const Pki& pki() {
  static const Pki* p = new Pki();
  return *p;
}

std::shared_ptr<const net::TlsContext> context(net::TlsRole role, const net::TlsConfig& config) {
  Result<std::shared_ptr<const net::TlsContext>> c = net::TlsContext::create(role, config);
  KVC_CHECK(c.ok(), c.status().to_string());
  return *c;
}

std::shared_ptr<const net::TlsContext> server_context(bool client_cert_auth = false) {
  return context(net::TlsRole::kServer, {.cert_file = pki().server,
                                         .key_file = pki().server_key,
                                         .trusted_ca_file = pki().ca,
                                         .client_cert_auth = client_cert_auth});
}

std::shared_ptr<const net::TlsContext> client_context(bool with_certificate = false) {
  net::TlsConfig c{.trusted_ca_file = pki().ca};
  if (with_certificate) {
    c.cert_file = pki().client;
    c.key_file = pki().client_key;
  }
  return context(net::TlsRole::kClient, c);
}

// A TLS client over a RawClient: what the socket receives is fed to a client TlsSession each
// time received() or pump() is called (so a run_until predicate drives the handshake).
class TlsClient {
 public:
  TlsClient(TestLoop& loop, const net::Address& to, std::shared_ptr<const net::TlsContext> ctx,
            bool small_window = false)
      : raw_(loop, to, /*read=*/true, small_window) {
    KVC_CHECK(raw_.connected(), "TLS client did not connect");
    Result<std::unique_ptr<net::TlsSession>> s = net::TlsSession::create(std::move(ctx), to.host);
    KVC_CHECK(s.ok(), s.status().to_string());
    session_ = std::move(*s);
    raw_.send(session_->take_output());  // the ClientHello
  }

  void send(std::string_view plaintext) {
    KVC_CHECK(session_->write(plaintext).ok(), "TLS write");
    pump();
  }
  // The plaintext received so far.
  const std::string& received() {
    pump();
    return plain_;
  }
  bool handshake_done() {
    pump();
    return session_->handshake_done();
  }
  const Status& error() {
    pump();
    return session_->error();
  }
  // The server's close_notify arrived.
  bool tls_closed() {
    pump();
    return session_->peer_closed();
  }
  // The server closed the TCP connection.
  bool closed() {
    pump();
    return raw_.peer_closed();
  }
  RawClient& raw() { return raw_; }

 private:
  void pump() {
    const std::string& in = raw_.received();
    if (in.size() > fed_ && session_->error().ok()) {
      (void)session_->feed(std::string_view(in).substr(fed_));
      fed_ = in.size();
      session_->read_plaintext(plain_);
    }
    if (std::string out = session_->take_output(); !out.empty()) raw_.send(std::move(out));
  }

  RawClient raw_;
  std::unique_ptr<net::TlsSession> session_;
  std::size_t fed_ = 0;
  std::string plain_;
};

// The server with TLS, over KvRoutes and the fake backend; /stream answers with a stream (as in
// server_test.cc's StreamingServerTest) and /whoami with the request's tls_peer.
class HttpsServerTest : public ::testing::Test {
 protected:
  void start(HttpServerOptions o = {}, bool client_cert_auth = false) {
    o.address = {"127.0.0.1", 0};
    o.metrics = &backend_.registry;
    if (o.tls == nullptr) o.tls = server_context(client_cert_auth);
    server_ =
        std::make_unique<HttpServer>(loop_.get(), o, [this](const HttpRequest& r, Respond respond) {
          peers_.push_back(r.tls_peer);
          if (r.path == "/whoami") {
            HttpResponse a;
            a.content_type = "text/plain";
            a.body = r.tls_peer.empty() ? "(none)" : r.tls_peer;
            return respond(std::move(a));
          }
          if (r.path != "/stream") return routes_handler_(r, std::move(respond));
          HttpResponse a;
          a.content_type = "text/plain";
          stream_ = std::make_shared<ResponseStream>();
          stream_->write("early;");
          stream_->on_close([this] { ++stream_closed_; });
          a.stream = stream_;
          a.stream_keepalive = "~";
          respond(std::move(a));
        });
    ASSERT_TRUE(server_->listen().ok());
    base_ = "https://" + server_->bound().to_string();
  }
  void TearDown() override {
    server_.reset();
    loop_.drain();
  }

  ProcessResult run_curl(std::vector<std::string> args) {
    std::vector<std::string> argv = {"curl",      "-q", "-sS",        "-i",
                                     "--noproxy", "*",  "--max-time", "10"};
    argv.insert(argv.end(), args.begin(), args.end());
    return testing::run_process(loop_, argv);
  }
  HttpAnswer curl_one(std::vector<std::string> args) {
    ProcessResult r = run_curl(std::move(args));
    EXPECT_EQ(r.exit_status, 0) << r.err;
    std::vector<HttpAnswer> a = parse_answers(r.out);
    KVC_CHECK(a.size() == 1,
              "expected one answer, got " + std::to_string(a.size()) + ": " + r.out + r.err);
    return a[0];
  }
  std::unique_ptr<TlsClient> tls_client(bool with_certificate = false) {
    auto c = std::make_unique<TlsClient>(loop_, server_->bound(), client_context(with_certificate));
    return c;
  }
  std::unique_ptr<RawClient> raw() {
    auto c = std::make_unique<RawClient>(loop_, server_->bound());
    KVC_CHECK(c->connected(), "raw client did not connect");
    return c;
  }
  std::string metrics_text() { return backend_.registry.expose(); }

  TestLoop loop_;  // first member: destroyed last
  FakeBackend backend_;
  KvRoutes routes_{backend_};
  Handler routes_handler_ = routes_.handler();
  std::unique_ptr<HttpServer> server_;
  std::string base_;
  std::vector<std::string> peers_;  // every request's tls_peer, in order
  std::shared_ptr<ResponseStream> stream_;
  int stream_closed_ = 0;
};

TEST_F(HttpsServerTest, CurlWithTheCaUsesTheApiOverHttps) {
  start();
  HttpAnswer put =
      curl_one({"--cacert", pki().ca, "-X", "PUT", "--data-binary", "v1", base_ + "/v1/kv/x"});
  ASSERT_EQ(put.status, 200) << put.body;
  EXPECT_EQ(backend_.kvs["x"].value, "v1");
  HttpAnswer get = curl_one({"--cacert", pki().ca, base_ + "/v1/kv/x"});
  ASSERT_EQ(get.status, 200) << get.body;
  EXPECT_TRUE(contains(get.body, R"("value":"v1")")) << get.body;
  EXPECT_EQ(curl_one({"--cacert", pki().ca, base_ + "/health"}).status, 200);
  // Several requests on one connection (keep-alive through TLS).
  ProcessResult three = run_curl(
      {"--cacert", pki().ca, base_ + "/health", base_ + "/ready", base_ + "/v1/kv/missing"});
  ASSERT_EQ(three.exit_status, 0) << three.err;
  std::vector<HttpAnswer> a = parse_answers(three.out);
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(a[2].status, 404);
  EXPECT_EQ(server_->stats().accepted, 4u);
  EXPECT_EQ(server_->stats().tls_handshakes, 4u);
  EXPECT_EQ(server_->stats().tls_handshake_failures, 0u);
  // No client certificate was asked for: no identity.
  for (const std::string& p : peers_) EXPECT_EQ(p, "");

  // Without the CA, curl refuses the server; the server counts the failed handshake (curl's
  // unknown-CA alert) and logs it.
  ProcessResult untrusted = run_curl({base_ + "/health"});
  EXPECT_EQ(untrusted.exit_status, 60) << untrusted.err;  // CURLE_PEER_FAILED_VERIFICATION
  ASSERT_TRUE(loop_.run_until([&] { return server_->stats().tls_handshake_failures == 1; }));
  EXPECT_TRUE(
      contains(metrics_text(), "kvc_http_tls_handshake_failures_total{reason=\"failed\"} 1"))
      << metrics_text();
}

TEST_F(HttpsServerTest, PlainHttpAtTheTlsPortGets400NamingTheMismatch) {
  start();
  // curl http:// at the HTTPS port reads the answer as plain HTTP.
  const std::string plain_url = "http://" + server_->bound().to_string() + "/v1/kv/x";
  HttpAnswer a = curl_one({plain_url});
  EXPECT_EQ(a.status, 400);
  EXPECT_TRUE(contains(a.body, kPlainHttpAtTlsPort)) << a.body;
  EXPECT_TRUE(contains(a.body, R"("code":"invalid_argument")")) << a.body;
  EXPECT_EQ(*a.header("connection"), "close");
  // A PUT with a body (sent while the answer comes): the same, not a reset.
  const std::string body = test::test_dir() + "/body";
  test::write_file(body, std::string(200'000, 'x'));
  HttpAnswer put = curl_one({"-X", "PUT", "--data-binary", "@" + body, plain_url});
  EXPECT_EQ(put.status, 400);

  // Byte by byte: the answer, then the close.
  std::unique_ptr<RawClient> c = raw();
  c->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  EXPECT_TRUE(c->received().starts_with("HTTP/1.1 400 Bad Request\r\n")) << c->received();
  EXPECT_TRUE(contains(c->received(), kPlainHttpAtTlsPort));
  EXPECT_TRUE(peers_.empty()) << "no request reached the handler";
  EXPECT_TRUE(backend_.calls.empty());
  EXPECT_EQ(server_->stats().tls_plain_http, 3u);
  EXPECT_TRUE(
      contains(metrics_text(), "kvc_http_tls_handshake_failures_total{reason=\"plain_http\"} 3"))
      << metrics_text();
  EXPECT_TRUE(contains(metrics_text(), "kvc_http_responses_total{code=\"4xx\"} 3"));
}

TEST_F(HttpsServerTest, GarbageAtTheTlsPortIsClosedAndCounted) {
  start();
  std::unique_ptr<RawClient> c = raw();
  c->send(std::string("\x00\x01\x02garbage", 10));
  ASSERT_TRUE(loop_.run_until([&] { return c->peer_closed(); }));
  EXPECT_FALSE(c->received().starts_with("HTTP/")) << "only a plain HTTP request gets HTTP";
  EXPECT_EQ(server_->stats().tls_handshake_failures, 1u);
  EXPECT_EQ(server_->stats().tls_plain_http, 0u);
  // The server still serves.
  EXPECT_EQ(curl_one({"--cacert", pki().ca, base_ + "/health"}).status, 200);
}

TEST_F(HttpsServerTest, AHandshakeNotDoneInTimeIsCutOff) {
  HttpServerOptions o;
  o.tls_handshake_timeout_ms = 200;
  o.idle_timeout_ms = 60'000;
  o.request_timeout_ms = 60'000;
  start(o);
  const std::uint64_t t0 = loop_.now();
  std::unique_ptr<RawClient> silent = raw();
  std::unique_ptr<RawClient> partial = raw();
  partial->send(std::string("\x16\x03\x01\x02\x00\x01", 6));  // a ClientHello's first bytes
  ASSERT_TRUE(loop_.run_until([&] { return silent->peer_closed() && partial->peer_closed(); }));
  EXPECT_GE(silent->peer_closed_at() - t0, 200u);
  EXPECT_GE(partial->peer_closed_at() - t0, 200u);
  EXPECT_LT(partial->peer_closed_at() - t0, 1'000u) << "the deadline sweep runs often enough";
  EXPECT_EQ(server_->stats().tls_handshake_timeouts, 2u);
  EXPECT_EQ(server_->open_connections(), 0u);
  EXPECT_TRUE(
      contains(metrics_text(), "kvc_http_tls_handshake_failures_total{reason=\"timeout\"} 2"));

  // A handshake done in time keeps its connection past that deadline (idle is 60 s).
  std::unique_ptr<TlsClient> c = tls_client();
  ASSERT_TRUE(loop_.run_until([&] { return c->handshake_done(); }));
  const std::uint64_t t1 = loop_.now();
  ASSERT_TRUE(loop_.run_until([&] { return loop_.now() - t1 >= 400; }));
  EXPECT_FALSE(c->closed());
  c->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(c->received()).size() == 1; }));
  EXPECT_EQ(parse_answers(c->received())[0].status, 200);
}

TEST_F(HttpsServerTest, RequestAndIdleDeadlinesHoldOverTls) {
  HttpServerOptions o;
  o.request_timeout_ms = 200;
  o.idle_timeout_ms = 300;
  start(o);
  // Half a request, then nothing: 408 (enciphered), close_notify, close.
  std::unique_ptr<TlsClient> slow = tls_client();
  slow->send("GET /health HTTP/1.1\r\nHo");
  ASSERT_TRUE(loop_.run_until([&] { return slow->closed(); }));
  std::vector<HttpAnswer> a = parse_answers(slow->received());
  ASSERT_EQ(a.size(), 1u) << slow->received();
  EXPECT_EQ(a[0].status, 408);
  EXPECT_TRUE(slow->tls_closed());
  EXPECT_EQ(server_->stats().request_timeouts, 1u);
  // An answered keep-alive connection left idle is closed.
  std::unique_ptr<TlsClient> idle = tls_client();
  idle->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(idle->received()).size() == 1; }));
  ASSERT_TRUE(loop_.run_until([&] { return idle->closed(); }));
  EXPECT_EQ(server_->stats().idle_timeouts, 1u);
  EXPECT_EQ(server_->stats().tls_handshake_failures, 0u);
}

TEST_F(HttpsServerTest, PipelinedAnswersKeepRequestOrderOverTls) {
  start();
  backend_.kvs["fast"] = {"fast", "f", 1, 1, 1};
  backend_.held_keys.insert("slow");
  std::unique_ptr<TlsClient> c = tls_client();
  c->send(
      "GET /v1/kv/slow HTTP/1.1\r\nHost: x\r\n\r\n"
      "GET /v1/kv/fast HTTP/1.1\r\nHost: x\r\n\r\n"
      "DELETE /v1/kv/fast HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] {
    (void)c->received();
    return backend_.calls.size() == 3;
  }));
  loop_.run_ready();
  EXPECT_EQ(c->received(), "") << "answers 2 and 3 must wait for answer 1";
  backend_.release_all();
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(c->received()).size() == 3; }));
  std::vector<HttpAnswer> a = parse_answers(c->received());
  EXPECT_EQ(a[0].status, 404);
  EXPECT_TRUE(contains(a[0].body, "slow"));
  EXPECT_EQ(a[1].status, 200);
  EXPECT_EQ(a[2].status, 200);
  EXPECT_FALSE(c->closed()) << "keep-alive";

  // Connection: close: the answer, TLS's close_notify, then the TCP close.
  c->send("GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return c->closed(); }));
  EXPECT_EQ(parse_answers(c->received()).size(), 4u);
  EXPECT_TRUE(c->tls_closed()) << "close_notify before the close";
  EXPECT_TRUE(c->error().ok()) << c->error().to_string();
}

TEST_F(HttpsServerTest, AStreamingAnswerOverTls) {
  HttpServerOptions o;
  o.stream_keepalive_ms = 50;
  o.idle_timeout_ms = 100;
  start(o);
  std::unique_ptr<TlsClient> c = tls_client();
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return contains(c->received(), "6\r\nearly;\r\n"); }));
  EXPECT_TRUE(c->received().starts_with("HTTP/1.1 200 OK\r\n"));
  EXPECT_TRUE(contains(c->received(), "Transfer-Encoding: chunked"));
  stream_->write("abc");
  ASSERT_TRUE(loop_.run_until([&] { return contains(c->received(), "3\r\nabc\r\n"); }));
  // Keep-alives while quiet, past several idle timeouts.
  ASSERT_TRUE(loop_.run_until([&] { return contains(c->received(), "1\r\n~\r\n1\r\n~\r\n"); }));
  EXPECT_FALSE(c->closed());
  stream_->end();
  ASSERT_TRUE(loop_.run_until([&] { return c->closed(); }));
  EXPECT_TRUE(c->received().ends_with("0\r\n\r\n")) << c->received();
  EXPECT_TRUE(c->tls_closed());
  ASSERT_TRUE(loop_.run_until([&] { return stream_closed_ == 1; }));
  EXPECT_EQ(server_->open_streams(), 0u);

  // A client that goes away ends its stream.
  std::unique_ptr<TlsClient> d = tls_client();
  d->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return contains(d->received(), "early;"); }));
  d->raw().close();
  ASSERT_TRUE(loop_.run_until([&] { return stream_closed_ == 2; }));
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 0; }));
}

TEST_F(HttpsServerTest, AStreamReaderThatStopsReadingIsBoundedThenDisconnected) {
  HttpServerOptions o;
  o.write_timeout_ms = 200;
  start(o);
  auto c = std::make_unique<TlsClient>(loop_, server_->bound(), client_context(),
                                       /*small_window=*/true);
  c->send("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return contains(c->received(), "early;"); }));
  c->raw().stop_reading();
  // What is queued is ciphertext, a little more than the plaintext written.
  const std::string mib(1u << 20, 'x');
  stream_->write(mib);
  EXPECT_GT(stream_->unsent_bytes(), mib.size());
  // A producer that watches unsent_bytes() (as a watch does) sees the backlog grow and stops.
  for (int i = 0; i < 64 && stream_->unsent_bytes() < (8u << 20); ++i) {
    stream_->write(mib);
    loop_.run_ready();
  }
  EXPECT_GE(stream_->unsent_bytes(), 1u << 20);
  // The write deadline cuts a reader that takes nothing.
  ASSERT_TRUE(loop_.run_until([&] { return stream_closed_ == 1; }, 60'000));
  EXPECT_EQ(server_->stats().write_timeouts, 1u);
}

TEST_F(HttpsServerTest, ClientCertAuthRefusesAClientWithoutACertificate) {
  start({}, /*client_cert_auth=*/true);
  std::unique_ptr<TlsClient> anonymous = tls_client(false);
  anonymous->send("GET /whoami HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return !anonymous->error().ok() || anonymous->closed(); }));
  ASSERT_TRUE(loop_.run_until([&] { return anonymous->closed(); }));
  EXPECT_TRUE(contains(anonymous->error().message(), "certificate required"))
      << anonymous->error().to_string();
  EXPECT_TRUE(peers_.empty()) << "nothing reached the handler";
  ASSERT_TRUE(loop_.run_until([&] { return server_->stats().tls_handshake_failures == 1; }));

  // curl without --cert: refused too; with it: served, and the handler sees the subject.
  ProcessResult no_cert = run_curl({"--cacert", pki().ca, base_ + "/whoami"});
  EXPECT_NE(no_cert.exit_status, 0);
  HttpAnswer who = curl_one(
      {"--cacert", pki().ca, "--cert", pki().client, "--key", pki().client_key, base_ + "/whoami"});
  EXPECT_EQ(who.status, 200);
  EXPECT_EQ(who.body, "CN=operator,O=kvc test");

  std::unique_ptr<TlsClient> known = tls_client(true);
  known->send("GET /whoami HTTP/1.1\r\nHost: x\r\n\r\nGET /whoami HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(known->received()).size() == 2; }));
  for (const HttpAnswer& a : parse_answers(known->received())) {
    EXPECT_EQ(a.body, "CN=operator,O=kvc test");
  }
  ASSERT_EQ(peers_.size(), 3u);
}

TEST_F(HttpsServerTest, ConnectionsBeyondTheLimitGet503OverTls) {
  HttpServerOptions o;
  o.max_connections = 1;
  start(o);
  std::unique_ptr<TlsClient> first = tls_client();
  ASSERT_TRUE(loop_.run_until([&] { return first->handshake_done(); }));
  ASSERT_TRUE(loop_.run_until([&] { return server_->open_connections() == 1; }));
  std::unique_ptr<TlsClient> second = tls_client();
  ASSERT_TRUE(loop_.run_until([&] { return second->closed(); }));
  std::vector<HttpAnswer> a = parse_answers(second->received());
  ASSERT_EQ(a.size(), 1u) << second->received();
  EXPECT_EQ(a[0].status, 503);
  EXPECT_TRUE(contains(a[0].body, "too many HTTP connections"));
  EXPECT_EQ(server_->stats().rejected, 1u);
}

TEST_F(HttpsServerTest, SetTlsAppliesToNewConnectionsOnly) {
  HttpServerOptions o;
  o.tls = server_context();
  start(o);
  std::unique_ptr<TlsClient> old = tls_client();
  ASSERT_TRUE(loop_.run_until([&] { return old->handshake_done(); }));
  // A certificate from another CA from now on (a reload).
  server_->set_tls(context(net::TlsRole::kServer,
                           {.cert_file = pki().other_server, .key_file = pki().other_server_key}));
  std::unique_ptr<TlsClient> fresh = tls_client();
  ASSERT_TRUE(loop_.run_until([&] { return !fresh->error().ok(); }));
  EXPECT_TRUE(contains(fresh->error().message(), "certificate verify failed"))
      << fresh->error().to_string();
  auto other = std::make_unique<TlsClient>(
      loop_, server_->bound(), context(net::TlsRole::kClient, {.trusted_ca_file = pki().other_ca}));
  other->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(other->received()).size() == 1; }));
  // The open connection keeps its session.
  old->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(old->received()).size() == 1; }));
  EXPECT_EQ(parse_answers(old->received())[0].status, 200);
  // Null: plain HTTP for new connections.
  server_->set_tls(nullptr);
  std::unique_ptr<RawClient> plain = raw();
  plain->send("GET /health HTTP/1.1\r\nHost: x\r\n\r\n");
  ASSERT_TRUE(loop_.run_until([&] { return parse_answers(plain->received()).size() == 1; }));
  EXPECT_EQ(parse_answers(plain->received())[0].status, 200);
}

}  // namespace
}  // namespace kvc::http
