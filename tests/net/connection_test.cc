#include "kvc/net/connection.h"

#include <gtest/gtest.h>

#include <vector>

#include "support/temp_dir.h"
#include "support/test_pki.h"

namespace kvc::net {
namespace {

// Runs a loop until `done()` or a bound of loop iterations (each iteration may block until an
// event; a 5 s timer guarantees the test cannot hang).
class LoopTest : public ::testing::Test {
 protected:
  void SetUp() override {
    uv_loop_init(&loop_);
    uv_timer_init(&loop_, &guard_);
    uv_timer_start(
        &guard_, [](uv_timer_t* t) { uv_stop(t->loop); }, 5000, 0);
    uv_unref(reinterpret_cast<uv_handle_t*>(&guard_));
  }
  void TearDown() override {
    uv_close(reinterpret_cast<uv_handle_t*>(&guard_), nullptr);
    uv_run(&loop_, UV_RUN_DEFAULT);  // let every close callback run
    EXPECT_EQ(uv_loop_close(&loop_), 0) << "a handle was left open";
  }
  template <typename Pred>
  bool run_until(Pred done) {
    for (int i = 0; i < 100000 && !done(); ++i) {
      if (uv_run(&loop_, UV_RUN_ONCE) == 0 && !done()) return false;
    }
    return done();
  }

  uv_loop_t loop_{};
  uv_timer_t guard_{};
};

std::string framed(std::string_view payload) {
  std::string f;
  wire::append_frame(f, payload);
  return f;
}

TEST_F(LoopTest, EchoesFramesBothWays) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start(
                                [](Connection& self, std::string_view p) {
                                  self.send(framed("echo:" + std::string(p)));
                                },
                                [](Connection&, const Status&) {});
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  EXPECT_NE(listener.bound().port, 0);

  std::shared_ptr<Connection> client;
  std::vector<std::string> got;
  Status closed_with;
  int closes = 0;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    client = *r;
    client->start([&](Connection&, std::string_view p) { got.emplace_back(p); },
                  [&](Connection&, const Status& s) {
                    closed_with = s;
                    ++closes;
                  });
    for (int i = 0; i < 100; ++i) client->send(framed("m" + std::to_string(i)));
  });
  ASSERT_TRUE(run_until([&] { return got.size() == 100; }));
  EXPECT_EQ(got.front(), "echo:m0");
  EXPECT_EQ(got.back(), "echo:m99");

  // The server side hangs up: the client learns it once, with a reason.
  accepted[0]->close(Status::shutting_down("bye"));
  ASSERT_TRUE(run_until([&] { return closes == 1; }));
  EXPECT_EQ(closed_with.code(), Code::kUnavailable);
  listener.close();
}

TEST_F(LoopTest, OversizedFrameClosesTheConnectionWithAReason) {
  Listener listener(&loop_, {.max_frame_bytes = 100});
  Status server_close;
  bool server_closed = false;
  int frames = 0;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([&](Connection&, std::string_view) { ++frames; },
                                     [&](Connection&, const Status& s) {
                                       server_close = s;
                                       server_closed = true;
                                     });
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([](Connection&, std::string_view) {}, [](Connection&, const Status&) {});
    client->send(framed("ok"));
    client->send(framed(std::string(101, 'x')));
  });
  ASSERT_TRUE(run_until([&] { return server_closed; }));
  EXPECT_EQ(frames, 1);
  EXPECT_EQ(server_close.code(), Code::kResourceExhausted);
  EXPECT_NE(server_close.message().find("exceeds the maximum"), std::string::npos);
  client->close(Status());
  listener.close();
}

TEST_F(LoopTest, AnOversizedFrameCanBeSkippedAndRefused) {
  // The owner says why and keeps the connection: the frame is dropped unread and the next one
  // is delivered (its bytes may arrive in the same read as the oversized one, or later).
  ConnectionOptions options;
  options.max_frame_bytes = 100;
  options.on_oversized = [](Connection& c, std::size_t bytes) {
    c.send(framed("refused " + std::to_string(bytes)));
    return true;
  };
  Listener listener(&loop_, options);
  std::vector<std::string> server_got;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(
      listener
          .listen(*parse_address("127.0.0.1:0"),
                  [&](std::shared_ptr<Connection> c) {
                    c->start([&](Connection&, std::string_view p) { server_got.emplace_back(p); },
                             [](Connection&, const Status&) {});
                    accepted.push_back(std::move(c));
                  })
          .ok());
  std::shared_ptr<Connection> client;
  std::vector<std::string> client_got;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([&](Connection&, std::string_view p) { client_got.emplace_back(p); },
                  [](Connection&, const Status&) {});
    client->send(framed("a"));
    client->send(framed(std::string(300000, 'x')));  // many reads' worth
    client->send(framed("b"));
  });
  ASSERT_TRUE(run_until([&] { return server_got.size() == 2 && client_got.size() == 1; }));
  EXPECT_EQ(server_got[0], "a");
  EXPECT_EQ(server_got[1], "b");
  EXPECT_EQ(client_got[0], "refused 300000");
  EXPECT_FALSE(accepted[0]->closed());
  client->close(Status());
  listener.close();
}

TEST_F(LoopTest, FirstBytesNameAPeerThatDoesNotSpeakKvc) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [](Connection&, const Status&) {});
                            // Not a frame: an HTTP answer.
                            c->send("HTTP/1.1 400 Bad Request\r\n\r\n");
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  Status closed_with;
  bool closed = false;
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;
    client->start([](Connection&, std::string_view) {},
                  [&](Connection&, const Status& s) {
                    closed_with = s;
                    closed = true;
                  });
  });
  ASSERT_TRUE(run_until([&] { return closed; }));
  EXPECT_EQ(closed_with.code(), Code::kResourceExhausted);
  EXPECT_EQ(client->first_bytes(), "HTTP/1.1");
  listener.close();
}

TEST_F(LoopTest, ConnectResolvesHostNames) {
  Listener listener(&loop_, {});
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [](Connection&, const Status&) {});
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  const struct {
    const char* host;
    Code want;
  } cases[] = {{"localhost", Code::kOk}, {"no-such-host.invalid", Code::kNotFound}};
  for (const auto& c : cases) {
    SCOPED_TRACE(c.host);
    bool done = false;
    Status got;
    connect(&loop_, Address{.host = c.host, .port = listener.bound().port}, {}, 3000,
            [&](Result<std::shared_ptr<Connection>> r) {
              done = true;
              got = r.status();
              if (r.ok()) (*r)->close(Status());
            });
    ASSERT_TRUE(run_until([&] { return done; }));
    if (c.want == Code::kNotFound) {
      // Or kUnavailable where no resolver answers at all.
      EXPECT_TRUE(got.code() == Code::kNotFound || got.code() == Code::kUnavailable)
          << got.to_string();
    } else {
      EXPECT_EQ(got.code(), c.want) << got.to_string();
    }
  }
  for (auto& c : accepted) c->close(Status());
  listener.close();
}

TEST_F(LoopTest, ConnectToClosedPortFailsWithUnavailable) {
  // Bind a port, then close it so nothing listens there.
  Address target;
  {
    Listener l(&loop_, {});
    ASSERT_TRUE(l.listen(*parse_address("127.0.0.1:0"), [](std::shared_ptr<Connection>) {}).ok());
    target = l.bound();
  }
  bool done = false;
  Status got;
  connect(&loop_, target, {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    done = true;
    got = r.status();
  });
  ASSERT_TRUE(run_until([&] { return done; }));
  EXPECT_EQ(got.code(), Code::kUnavailable);
}

TEST_F(LoopTest, SlowReaderPausesThenClosesTheWriterSide) {
  // The server writes to a client that never reads: past close_above it gives up on it.
  Listener listener(&loop_, {.pause_reading_above = 1 << 16, .close_above = 1 << 20});
  Status server_close;
  bool server_closed = false;
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection&, std::string_view) {},
                                     [&](Connection&, const Status& s) {
                                       server_close = s;
                                       server_closed = true;
                                     });
                            accepted.push_back(c);
                          })
                  .ok());
  std::shared_ptr<Connection> client;
  connect(&loop_, listener.bound(), {}, 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok());
    client = *r;  // never started: it does not read
  });
  ASSERT_TRUE(run_until([&] { return client != nullptr && !accepted.empty(); }));
  const std::string chunk = framed(std::string(64 << 10, 'x'));
  for (int i = 0; i < 200 && !server_closed; ++i) {
    accepted[0]->send(chunk);
    uv_run(&loop_, UV_RUN_NOWAIT);
  }
  ASSERT_TRUE(run_until([&] { return server_closed; }));
  EXPECT_EQ(server_close.code(), Code::kResourceExhausted);
  client->close(Status());
  listener.close();
}

// ---- TLS under the frames (ConnectionOptions::tls) ----

struct ConnPki {
  test::ScopedTempDir dir{"kvc-conn-tls"};
  std::string ca, server_cert, server_key, client_cert, client_key, other_ca;
  ConnPki() {
    test::Issued ca_i = test::issue("conn CA", nullptr, "", 1, 3650);
    test::Issued server_i = test::issue("member", &ca_i, "IP:127.0.0.1", 2);
    test::Issued client_i = test::issue("client", &ca_i, "DNS:client.example", 3);
    test::Issued other_i = test::issue("other CA", nullptr, "", 4, 3650);
    ca = dir.file("ca.pem");
    test::write_cert(ca, ca_i);
    other_ca = dir.file("other-ca.pem");
    test::write_cert(other_ca, other_i);
    server_cert = dir.file("s.pem");
    server_key = dir.file("s-key.pem");
    test::write_cert(server_cert, server_i);
    test::write_key(server_key, server_i);
    client_cert = dir.file("c.pem");
    client_key = dir.file("c-key.pem");
    test::write_cert(client_cert, client_i);
    test::write_key(client_key, client_i);
  }
};

std::shared_ptr<const TlsContext> tls_context(TlsRole role, const TlsConfig& config) {
  auto ctx = TlsContext::create(role, config);
  KVC_CHECK(ctx.ok(), ctx.status().to_string());
  return *ctx;
}

class TlsConnectionTest : public LoopTest {
 protected:
  // An echo server with `server` options; a client with `client` options sends `count` frames.
  // Returns what the client got back, and how each side closed (if it did).
  struct Outcome {
    std::vector<std::string> got;
    Status client_closed, server_closed;
    bool client_done = false, server_done = false;
    std::string server_saw_peer;
  };
  Outcome exchange(ConnectionOptions server, ConnectionOptions client, int count,
                   bool wait_for_close) {
    Outcome out;
    Listener listener(&loop_, std::move(server));
    std::vector<std::shared_ptr<Connection>> accepted;
    KVC_CHECK(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start(
                                [&](Connection& self, std::string_view p) {
                                  if (self.tls() != nullptr) {
                                    out.server_saw_peer = self.tls()->peer().describe();
                                  }
                                  self.send(framed("echo:" + std::string(p)));
                                },
                                [&](Connection&, const Status& s) {
                                  out.server_closed = s;
                                  out.server_done = true;
                                });
                            accepted.push_back(std::move(c));
                          })
                  .ok(),
              "listen");
    std::shared_ptr<Connection> conn;
    connect(&loop_, listener.bound(), client, 1000, [&](Result<std::shared_ptr<Connection>> r) {
      KVC_CHECK(r.ok(), r.status().to_string());
      conn = *r;
      conn->start([&](Connection&, std::string_view p) { out.got.emplace_back(p); },
                  [&](Connection&, const Status& s) {
                    out.client_closed = s;
                    out.client_done = true;
                  });
      for (int i = 0; i < count; ++i) conn->send(framed("m" + std::to_string(i)));
    });
    if (wait_for_close) {
      run_until([&] { return out.client_done && out.server_done; });
    } else {
      run_until([&] { return out.got.size() == static_cast<std::size_t>(count); });
    }
    if (conn) conn->close(Status::shutting_down("done"));
    for (auto& c : accepted) c->close(Status::shutting_down("done"));
    listener.close();
    run_until([&] { return out.client_done && out.server_done; });
    return out;
  }
  static ConnPki& pki() {
    static ConnPki* p = new ConnPki();
    return *p;
  }
  static ConnectionOptions server_tls(bool client_cert_auth) {
    ConnectionOptions o;
    o.tls = tls_context(TlsRole::kServer, {.cert_file = pki().server_cert,
                                           .key_file = pki().server_key,
                                           .trusted_ca_file = pki().ca,
                                           .client_cert_auth = client_cert_auth});
    return o;
  }
  static ConnectionOptions client_tls(bool with_cert, const std::string& ca = {}) {
    ConnectionOptions o;
    TlsConfig c{.trusted_ca_file = ca.empty() ? pki().ca : ca};
    if (with_cert) {
      c.cert_file = pki().client_cert;
      c.key_file = pki().client_key;
    }
    o.tls = tls_context(TlsRole::kClient, c);
    return o;
  }
};

::testing::AssertionResult has(const Status& s, const std::string& part) {
  if (s.message().find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << s.to_string() << "\" lacks \"" << part << "\"";
}

TEST_F(TlsConnectionTest, MutualTlsCarriesFramesAndNamesThePeer) {
  Outcome o = exchange(server_tls(true), client_tls(true), 300, false);
  ASSERT_EQ(o.got.size(), 300u);
  EXPECT_EQ(o.got.front(), "echo:m0");
  EXPECT_EQ(o.got.back(), "echo:m299");
  EXPECT_EQ(o.server_saw_peer, "CN=client,O=kvc test");
}

TEST_F(TlsConnectionTest, LargeFramesCrossInManyRecords) {
  Listener listener(&loop_, server_tls(false));
  std::vector<std::shared_ptr<Connection>> accepted;
  ASSERT_TRUE(listener
                  .listen(*parse_address("127.0.0.1:0"),
                          [&](std::shared_ptr<Connection> c) {
                            c->start([](Connection& self,
                                        std::string_view p) { self.send(framed(std::string(p))); },
                                     [](Connection&, const Status&) {});
                            accepted.push_back(std::move(c));
                          })
                  .ok());
  std::shared_ptr<Connection> conn;
  std::vector<std::string> got;
  const std::string big(3u << 20, 'x');
  connect(&loop_, listener.bound(), client_tls(false), 1000,
          [&](Result<std::shared_ptr<Connection>> r) {
            ASSERT_TRUE(r.ok());
            conn = *r;
            conn->start([&](Connection&, std::string_view p) { got.emplace_back(p); },
                        [](Connection&, const Status&) {});
            conn->send(framed(big));
            conn->send(framed(big));
          });
  ASSERT_TRUE(run_until([&] { return got.size() == 2; }));
  EXPECT_EQ(got[0], big);
  EXPECT_EQ(got[1], big);
  conn->close(Status::shutting_down("done"));
  for (auto& c : accepted) c->close(Status::shutting_down("done"));
  listener.close();
}

TEST_F(TlsConnectionTest, ClientWithoutCertificateIsRefusedWithTheReason) {
  Outcome o = exchange(server_tls(true), client_tls(false), 1, true);
  EXPECT_TRUE(o.got.empty());
  EXPECT_TRUE(has(o.client_closed, "the server requires a client certificate: give --cert"));
  EXPECT_TRUE(has(o.server_closed, "the client sent no certificate"));
}

TEST_F(TlsConnectionTest, ServerFromAnotherCaIsRefusedByTheClient) {
  Outcome o = exchange(server_tls(false), client_tls(false, pki().other_ca), 1, true);
  EXPECT_TRUE(o.got.empty());
  EXPECT_TRUE(has(o.client_closed, "not signed by a CA we trust"));
  EXPECT_TRUE(has(o.server_closed, "the client does not trust the CA"));
}

TEST_F(TlsConnectionTest, WrongNameIsRefusedByTheClient) {
  ConnectionOptions client = client_tls(false);
  client.tls_expected_name = "db.example";
  Outcome o = exchange(server_tls(false), client, 1, true);
  EXPECT_TRUE(has(o.client_closed, "hostname mismatch"));
}

TEST_F(TlsConnectionTest, PlaintextClientAtATlsPortLearnsWhy) {
  Outcome o = exchange(server_tls(false), {}, 1, true);
  EXPECT_TRUE(o.got.empty());
  EXPECT_TRUE(has(o.server_closed, "tls: this port speaks TLS: the client sent plaintext"));
  EXPECT_TRUE(has(o.client_closed, "tls: the server speaks TLS and this side sent plaintext"));
}

TEST_F(TlsConnectionTest, TlsClientAtAPlaintextPortLearnsWhy) {
  Outcome o = exchange({}, client_tls(false), 1, true);
  EXPECT_TRUE(o.got.empty());
  EXPECT_TRUE(has(o.server_closed, "tls: this port does not speak TLS"));
  EXPECT_TRUE(has(o.client_closed, "tls: the server closed the connection during the TLS"));
}

// A plaintext port that answers a TLS client (as kvc-node's client and peer ports do) makes
// the client name the mismatch from the answer itself, not guess from a hang-up.
TEST_F(TlsConnectionTest, TlsClientAtAPlaintextPortThatAnswersIsToldItIsPlaintext) {
  ConnectionOptions server;
  server.answer_to_tls_client = framed("no TLS here");
  Outcome o = exchange(server, client_tls(false), 1, true);
  EXPECT_TRUE(o.got.empty());
  EXPECT_TRUE(has(o.server_closed, "tls: this port does not speak TLS"));
  EXPECT_TRUE(has(o.client_closed,
                  "tls: the server does not speak TLS: it sent plaintext (a kvc "
                  "frame); is it a member without TLS, or another port?"));
}

TEST_F(TlsConnectionTest, SharedSecretCarriesFramesAndADifferentOneIsRefused) {
  const std::string secret = "3f5c0d9a8e7b6a5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f3a2b1c";
  ConnectionOptions server, client;
  server.tls = tls_context(TlsRole::kServer, {.secret = secret});
  client.tls = tls_context(TlsRole::kClient, {.secret = secret});
  Outcome o = exchange(server, client, 10, false);
  EXPECT_EQ(o.got.size(), 10u);
  EXPECT_EQ(o.server_saw_peer, "psk:kvc-psk-v1");
  ConnectionOptions other;
  other.tls = tls_context(TlsRole::kClient, {.secret = "a" + secret.substr(1)});
  Outcome bad = exchange(server, other, 1, true);
  EXPECT_TRUE(bad.got.empty());
  EXPECT_TRUE(has(bad.client_closed, "the server refused our shared secret"));
  EXPECT_TRUE(has(bad.server_closed, "the client's shared secret differs"));
}

// ---- Corking: what a connection is given in one loop turn goes out together ----

// A TLS server written by hand on a raw socket, so the test sees the ciphertext the client
// sends: it drives a TlsSession itself and counts the TLS records that arrive.
struct RawTlsServer {
  uv_tcp_t listen_tcp{}, tcp{};
  bool accepted = false;
  std::unique_ptr<TlsSession> session;
  std::string ciphertext;  // received, not yet split into records
  std::size_t records = 0;
  std::string plaintext;  // everything decrypted so far
  Status error;

  void start(uv_loop_t* loop, std::shared_ptr<const TlsContext> ctx, Address* bound) {
    session = std::move(*TlsSession::create(std::move(ctx)));
    uv_tcp_init(loop, &listen_tcp);
    uv_tcp_init(loop, &tcp);
    listen_tcp.data = this;
    tcp.data = this;
    sockaddr_storage ss{};
    KVC_CHECK(to_sockaddr(*parse_address("127.0.0.1:0"), &ss).ok(), "address");
    KVC_CHECK(uv_tcp_bind(&listen_tcp, reinterpret_cast<sockaddr*>(&ss), 0) == 0, "bind");
    KVC_CHECK(uv_listen(reinterpret_cast<uv_stream_t*>(&listen_tcp), 1,
                        [](uv_stream_t* l, int) {
                          auto* self = static_cast<RawTlsServer*>(l->data);
                          KVC_CHECK(uv_accept(l, reinterpret_cast<uv_stream_t*>(&self->tcp)) == 0,
                                    "accept");
                          self->accepted = true;
                          self->read();
                        }) == 0,
              "listen");
    int len = sizeof ss;
    uv_tcp_getsockname(&listen_tcp, reinterpret_cast<sockaddr*>(&ss), &len);
    *bound = *parse_address(sockaddr_to_string(reinterpret_cast<sockaddr*>(&ss)));
  }
  void read() {
    uv_read_start(
        reinterpret_cast<uv_stream_t*>(&tcp),
        [](uv_handle_t*, std::size_t, uv_buf_t* buf) {
          static char chunk[64 << 10];
          *buf = uv_buf_init(chunk, sizeof chunk);
        },
        [](uv_stream_t* s, ssize_t n, const uv_buf_t* buf) {
          auto* self = static_cast<RawTlsServer*>(s->data);
          if (n <= 0) return;
          self->on_bytes(std::string_view(buf->base, static_cast<std::size_t>(n)));
        });
  }
  void on_bytes(std::string_view bytes) {
    ciphertext.append(bytes);
    // A record: type (1 byte), version (2), length (2), then that many bytes.
    while (ciphertext.size() >= 5) {
      const std::size_t len = (static_cast<unsigned char>(ciphertext[3]) << 8) |
                              static_cast<unsigned char>(ciphertext[4]);
      if (ciphertext.size() < 5 + len) break;
      ++records;
      ciphertext.erase(0, 5 + len);
    }
    if (Status s = session->feed(bytes); !s.ok()) error = s;
    session->read_plaintext(plaintext);
    send_output();
  }
  void send(std::string_view plain) {
    KVC_CHECK(session->write(plain).ok(), "write");
    send_output();
  }
  void send_output() {
    std::string out = session->take_output();
    if (out.empty()) return;
    // Small and the socket is fresh: the kernel takes it all at once.
    uv_buf_t buf = uv_buf_init(out.data(), static_cast<unsigned>(out.size()));
    KVC_CHECK(
        uv_try_write(reinterpret_cast<uv_stream_t*>(&tcp), &buf, 1) == static_cast<int>(out.size()),
        "short write");
  }
  // The handles live in this object: run the loop until `open` is 0 before it goes.
  void close() {
    const uv_close_cb done = [](uv_handle_t* h) { --static_cast<RawTlsServer*>(h->data)->open; };
    uv_close(reinterpret_cast<uv_handle_t*>(&listen_tcp), done);
    uv_close(reinterpret_cast<uv_handle_t*>(&tcp), done);
  }
  int open = 2;
};

TEST_F(TlsConnectionTest, FramesSentInOneLoopTurnTravelInOneRecord) {
  RawTlsServer server;
  Address bound;
  server.start(&loop_, server_tls(false).tls, &bound);
  std::shared_ptr<Connection> conn;
  std::vector<std::string> got;
  constexpr int kFrames = 100;
  std::string expected = framed("hello");
  for (int i = 0; i < kFrames; ++i) expected += framed("m" + std::to_string(i));
  connect(&loop_, bound, client_tls(false), 1000, [&](Result<std::shared_ptr<Connection>> r) {
    ASSERT_TRUE(r.ok()) << r.status().to_string();
    conn = *r;
    conn->start(
        [&](Connection& self, std::string_view p) {
          got.emplace_back(p);
          // One turn, 100 small frames: one SSL_write, one record (they fit in 16 KiB).
          for (int i = 0; i < kFrames; ++i) self.send(framed("m" + std::to_string(i)));
        },
        [](Connection&, const Status&) {});
    conn->send(framed("hello"));
  });
  // The handshake is done and "hello" is in: from here on the client sends only the 100.
  ASSERT_TRUE(run_until([&] { return server.plaintext == framed("hello"); }));
  const std::size_t records_before = server.records;
  server.send(framed("go"));
  ASSERT_TRUE(run_until([&] { return server.plaintext.size() >= expected.size(); }));
  EXPECT_TRUE(server.error.ok()) << server.error.to_string();
  EXPECT_EQ(server.plaintext, expected);  // all of them, in order
  EXPECT_EQ(server.records - records_before, 1u);
  EXPECT_EQ(got, std::vector<std::string>{"go"});
  conn->close(Status::shutting_down("done"));
  server.close();
  ASSERT_TRUE(run_until([&] { return server.open == 0; }));
}

// A server that answers and hangs up in the same callback: the answer, corked when close() or
// close_after_flush() is called, still reaches the client before the end of the connection.
TEST_F(TlsConnectionTest, AnAnswerCorkedWhenTheConnectionClosesStillArrives) {
  for (const bool tls : {false, true}) {
    for (const bool after_flush : {false, true}) {
      SCOPED_TRACE(std::string(tls ? "tls" : "plaintext") +
                   (after_flush ? ", close_after_flush" : ", close"));
      Listener listener(&loop_, tls ? server_tls(false) : ConnectionOptions{});
      std::vector<std::shared_ptr<Connection>> accepted;
      bool server_done = false;
      ASSERT_TRUE(listener
                      .listen(*parse_address("127.0.0.1:0"),
                              [&](std::shared_ptr<Connection> c) {
                                c->start(
                                    [&, after_flush](Connection& self, std::string_view) {
                                      self.send(framed("last-1"));
                                      self.send(framed("last-2"));
                                      const Status bye = Status::shutting_down("bye");
                                      if (after_flush) {
                                        self.close_after_flush(bye);
                                      } else {
                                        self.close(bye);
                                      }
                                      // The owner lets go at once: the handles keep it alive.
                                      accepted.clear();
                                    },
                                    [&](Connection&, const Status&) { server_done = true; });
                                accepted.push_back(std::move(c));
                              })
                      .ok());
      std::shared_ptr<Connection> conn;
      std::vector<std::string> got;
      Status client_closed;
      bool client_done = false;
      connect(&loop_, listener.bound(), tls ? client_tls(false) : ConnectionOptions{}, 1000,
              [&](Result<std::shared_ptr<Connection>> r) {
                ASSERT_TRUE(r.ok()) << r.status().to_string();
                conn = *r;
                conn->start([&](Connection&, std::string_view p) { got.emplace_back(p); },
                            [&](Connection&, const Status& s) {
                              client_closed = s;
                              client_done = true;
                            });
                conn->send(framed("question"));
              });
      ASSERT_TRUE(run_until([&] { return client_done && server_done; }));
      EXPECT_EQ(got, (std::vector<std::string>{"last-1", "last-2"}));
      EXPECT_EQ(client_closed.code(), Code::kUnavailable) << client_closed.to_string();
      listener.close();
    }
  }
}

}  // namespace
}  // namespace kvc::net
