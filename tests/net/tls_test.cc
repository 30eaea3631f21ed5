#include "kvc/net/tls.h"

#include <gtest/gtest.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <cmath>
#include <cstdio>
#include <memory>
#include <random>
#include <string>

#include "support/temp_dir.h"
#include "support/test_pki.h"

namespace kvc::net {
namespace {

::testing::AssertionResult contains(const std::string& text, const std::string& part) {
  if (text.find(part) != std::string::npos) return ::testing::AssertionSuccess();
  return ::testing::AssertionFailure() << "\"" << text << "\" does not contain \"" << part << "\"";
}

using test::issue;
using test::Issued;
using test::write_cert;
using test::write_file;
using test::write_key;

// The PKI every test uses: a CA, a server and a client certificate it signs, a second CA with a
// server certificate of its own, and an expired server certificate.
struct Pki {
  test::ScopedTempDir dir{"kvc-tls-test"};
  std::string ca, server_cert, server_key, client_cert, client_key;
  std::string other_ca, other_server_cert, other_server_key;
  std::string expired_cert, expired_key;

  Pki() {
    Issued ca_i = issue("kvc test CA", nullptr, "", 1, 3650);
    Issued server_i = issue("member-1", &ca_i, "IP:127.0.0.1,DNS:localhost", 2);
    Issued client_i = issue("alice", &ca_i, "DNS:alice.example,IP:10.0.0.7", 3);
    Issued other_ca_i = issue("other CA", nullptr, "", 4, 3650);
    Issued other_server_i = issue("impostor", &other_ca_i, "IP:127.0.0.1,DNS:localhost", 5);
    Issued expired_i = issue("member-old", &ca_i, "IP:127.0.0.1,DNS:localhost", 6, -2);
    ca = dir.file("ca.pem");
    write_cert(ca, ca_i);
    server_cert = dir.file("server.pem");
    server_key = dir.file("server-key.pem");
    write_cert(server_cert, server_i);
    write_key(server_key, server_i);
    client_cert = dir.file("client.pem");
    client_key = dir.file("client-key.pem");
    write_cert(client_cert, client_i);
    write_key(client_key, client_i);
    other_ca = dir.file("other-ca.pem");
    write_cert(other_ca, other_ca_i);
    other_server_cert = dir.file("other-server.pem");
    other_server_key = dir.file("other-server-key.pem");
    write_cert(other_server_cert, other_server_i);
    write_key(other_server_key, other_server_i);
    expired_cert = dir.file("expired.pem");
    expired_key = dir.file("expired-key.pem");
    write_cert(expired_cert, expired_i);
    write_key(expired_key, expired_i);
  }
};

class TlsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { pki_ = new Pki(); }
  static void TearDownTestSuite() {
    delete pki_;
    pki_ = nullptr;
  }
  static const Pki& pki() { return *pki_; }

  static std::shared_ptr<const TlsContext> context(TlsRole role, const TlsConfig& config) {
    auto ctx = TlsContext::create(role, config);
    KVC_CHECK(ctx.ok(), ctx.status().to_string());
    return *ctx;
  }
  static TlsConfig server_config(bool client_cert_auth = false) {
    TlsConfig c;
    c.cert_file = pki().server_cert;
    c.key_file = pki().server_key;
    if (client_cert_auth) {
      c.trusted_ca_file = pki().ca;
      c.client_cert_auth = true;
    }
    return c;
  }
  static TlsConfig client_config(bool with_cert = false) {
    TlsConfig c;
    c.trusted_ca_file = pki().ca;
    if (with_cert) {
      c.cert_file = pki().client_cert;
      c.key_file = pki().client_key;
    }
    return c;
  }
  static TlsConfig psk_config(const std::string& secret) {
    TlsConfig c;
    c.secret = secret;
    return c;
  }
  static std::unique_ptr<TlsSession> session(std::shared_ptr<const TlsContext> ctx,
                                             std::string name = {}) {
    auto s = TlsSession::create(std::move(ctx), std::move(name));
    KVC_CHECK(s.ok(), s.status().to_string());
    return std::move(*s);
  }

  // Moves ciphertext both ways until neither side has anything to send. Feeding errors are
  // left for the test to read from error(); a failed side still hands over its alert.
  // `bytewise`: each byte is fed on its own, as a network may deliver it.
  static void pump(TlsSession& client, TlsSession& server, bool bytewise = false) {
    for (int round = 0; round < 1000; ++round) {
      std::string to_server = client.take_output();
      std::string to_client = server.take_output();
      if (to_server.empty() && to_client.empty()) return;
      feed(server, to_server, bytewise);
      feed(client, to_client, bytewise);
    }
    ADD_FAILURE() << "the sessions never stopped talking";
  }
  static void feed(TlsSession& s, const std::string& bytes, bool bytewise) {
    if (!bytewise) {
      (void)s.feed(bytes);
      return;
    }
    for (char c : bytes) (void)s.feed(std::string_view(&c, 1));
  }

  static std::string random_bytes(std::size_t n, unsigned seed) {
    std::mt19937 rng(seed);
    std::string out(n, '\0');
    for (auto& c : out) c = static_cast<char>(rng());
    return out;
  }

  static Pki* pki_;
};

Pki* TlsTest::pki_ = nullptr;

TEST_F(TlsTest, CertificateHandshakeCarriesDataBothWays) {
  auto server = session(context(TlsRole::kServer, server_config()));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  EXPECT_FALSE(client->handshake_done());
  ASSERT_TRUE(client->write("hello from the client").ok());  // before the handshake: buffered
  pump(*client, *server);
  ASSERT_TRUE(client->error().ok()) << client->error().to_string();
  ASSERT_TRUE(server->error().ok()) << server->error().to_string();
  EXPECT_TRUE(client->handshake_done());
  EXPECT_TRUE(server->handshake_done());
  EXPECT_EQ(client->describe_cipher().substr(0, 8), "TLSv1.3 ");

  std::string got;
  EXPECT_EQ(server->read_plaintext(got), 21u);
  EXPECT_EQ(got, "hello from the client");
  ASSERT_TRUE(server->write("hello from the server").ok());
  pump(*client, *server);
  got.clear();
  client->read_plaintext(got);
  EXPECT_EQ(got, "hello from the server");

  // What the client learnt about the server.
  const TlsPeerIdentity& id = client->peer();
  EXPECT_TRUE(id.has_certificate);
  EXPECT_TRUE(id.verified);
  EXPECT_EQ(id.common_name, "member-1");
  EXPECT_EQ(id.subject, "CN=member-1,O=kvc test");
  EXPECT_EQ(id.describe(), "CN=member-1,O=kvc test");
  EXPECT_EQ(id.dns_names, std::vector<std::string>{"localhost"});
  EXPECT_EQ(id.ip_addresses, std::vector<std::string>{"127.0.0.1"});
  EXPECT_TRUE(id.psk_identity.empty());
  EXPECT_TRUE(client->peer_certificate_names("127.0.0.1"));
  EXPECT_TRUE(client->peer_certificate_names("localhost"));
  EXPECT_FALSE(client->peer_certificate_names("10.0.0.1"));
  // The server asked for no client certificate.
  EXPECT_FALSE(server->peer().has_certificate);
  EXPECT_EQ(server->peer().describe(), "anonymous");
}

TEST_F(TlsTest, HostNameIsCheckedToo) {
  auto server = session(context(TlsRole::kServer, server_config()));
  auto client = session(context(TlsRole::kClient, client_config()), "localhost");
  pump(*client, *server);
  EXPECT_TRUE(client->handshake_done()) << client->error().to_string();
}

TEST_F(TlsTest, MegabyteWritesInChunksArriveWhole) {
  auto server = session(context(TlsRole::kServer, server_config()));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  pump(*client, *server);
  ASSERT_TRUE(client->handshake_done());
  const std::string up = random_bytes(1u << 20, 1);
  const std::string down = random_bytes((1u << 20) + 17, 2);
  // Uneven chunks, each side writing while the other does, output moved in pieces.
  std::size_t up_at = 0, down_at = 0;
  std::string got_up, got_down;
  std::size_t chunk = 1;
  while (up_at < up.size() || down_at < down.size()) {
    chunk = chunk * 7 % 70001 + 1;
    const std::size_t a = std::min(chunk, up.size() - up_at);
    ASSERT_TRUE(client->write(std::string_view(up).substr(up_at, a)).ok());
    up_at += a;
    const std::size_t b = std::min(chunk * 3 / 2, down.size() - down_at);
    ASSERT_TRUE(server->write(std::string_view(down).substr(down_at, b)).ok());
    down_at += b;
    std::string out = client->take_output();
    for (std::size_t i = 0; i < out.size(); i += 4093) {
      ASSERT_TRUE(server->feed(std::string_view(out).substr(i, 4093)).ok());
    }
    ASSERT_TRUE(client->feed(server->take_output()).ok());
    server->read_plaintext(got_up);
    client->read_plaintext(got_down);
  }
  pump(*client, *server);
  server->read_plaintext(got_up);
  client->read_plaintext(got_down);
  EXPECT_TRUE(got_up == up) << got_up.size() << " of " << up.size() << " bytes";
  EXPECT_TRUE(got_down == down) << got_down.size() << " of " << down.size() << " bytes";
}

TEST_F(TlsTest, ByteByByteFeedingCompletesTheHandshakeAndData) {
  auto server = session(context(TlsRole::kServer, server_config(true)));
  auto client = session(context(TlsRole::kClient, client_config(true)), "127.0.0.1");
  const std::string data = random_bytes(70000, 3);  // spans several 16 KiB records
  ASSERT_TRUE(client->write(data).ok());
  pump(*client, *server, /*bytewise=*/true);
  ASSERT_TRUE(server->handshake_done()) << server->error().to_string();
  std::string got;
  server->read_plaintext(got);
  EXPECT_TRUE(got == data) << got.size();
}

// The session reads fed bytes in place and keeps only what OpenSSL has not taken: many records
// in one feed, records cut anywhere across feeds, and output appended to a buffer that already
// holds bytes all arrive whole and in order. A stale error left in OpenSSL's error queue by
// other code on the thread does not turn a read that merely wants more into a failure.
TEST_F(TlsTest, RecordsSplitAndJoinedAnyWayArriveWholeAndInOrder) {
  const std::string secret = "5b0c8e1f9a7d3c2e4f6a8b0c1d2e3f40a9b8c7d6e5f4a3b2c1d0e9f8a7b6c5d4";
  auto server = session(context(TlsRole::kServer, psk_config(secret)));
  auto client = session(context(TlsRole::kClient, psk_config(secret)));
  pump(*client, *server);
  ASSERT_TRUE(client->handshake_done() && server->handshake_done());
  std::string sent;
  std::string wire = "already queued";  // as net::Connection's pending output may be
  for (int i = 0; i < 40; ++i) {
    const std::string frame = random_bytes(1 + (i * 37) % 300, 100 + i);
    sent += frame;
    ASSERT_TRUE(client->write(frame).ok());
    EXPECT_GT(client->append_output(wire), frame.size());  // one record each, appended
  }
  EXPECT_EQ(client->append_output(wire), 0u);
  wire.erase(0, std::string("already queued").size());
  ERR_raise(ERR_LIB_SSL, ERR_R_INTERNAL_ERROR);  // someone else's error, never cleared
  std::string got;
  std::size_t at = 0;
  for (std::size_t cut : {1, 2, 4, 5, 9, 200, 7, 1000, 3, 64}) {  // then the rest at once
    const std::size_t n = std::min(cut, wire.size() - at);
    ASSERT_TRUE(server->feed(std::string_view(wire).substr(at, n)).ok())
        << server->error().to_string();
    at += n;
    server->read_plaintext(got);
  }
  ASSERT_TRUE(server->feed(std::string_view(wire).substr(at)).ok());
  server->read_plaintext(got);
  EXPECT_TRUE(got == sent) << got.size() << " of " << sent.size();
  // The other way, everything in one feed.
  ASSERT_TRUE(server->write(got).ok());
  std::string back;
  ASSERT_GT(server->append_output(back), got.size());
  ASSERT_TRUE(client->feed(back).ok());
  std::string echoed;
  client->read_plaintext(echoed);
  EXPECT_TRUE(echoed == sent);
}

TEST_F(TlsTest, MutualTlsGivesTheServerTheClientsIdentity) {
  auto server = session(context(TlsRole::kServer, server_config(true)));
  auto client = session(context(TlsRole::kClient, client_config(true)), "127.0.0.1");
  pump(*client, *server);
  ASSERT_TRUE(server->handshake_done()) << server->error().to_string();
  const TlsPeerIdentity& id = server->peer();
  EXPECT_TRUE(id.has_certificate);
  EXPECT_TRUE(id.verified);
  EXPECT_EQ(id.common_name, "alice");
  EXPECT_EQ(id.describe(), "CN=alice,O=kvc test");
  EXPECT_EQ(id.dns_names, std::vector<std::string>{"alice.example"});
  EXPECT_EQ(id.ip_addresses, std::vector<std::string>{"10.0.0.7"});
  // How a member will check that a peer's certificate names the address it claims.
  EXPECT_TRUE(server->peer_certificate_names("10.0.0.7"));
  EXPECT_TRUE(server->peer_certificate_names("alice.example"));
  EXPECT_FALSE(server->peer_certificate_names("127.0.0.1"));
  EXPECT_FALSE(server->peer_certificate_names("bob.example"));
}

TEST_F(TlsTest, ClientWithoutRequiredCertificateIsRefusedOnBothSides) {
  auto server = session(context(TlsRole::kServer, server_config(true)));
  auto client = session(context(TlsRole::kClient, client_config(false)), "127.0.0.1");
  ASSERT_TRUE(client->write("let me in").ok());
  pump(*client, *server);
  EXPECT_FALSE(server->handshake_done());
  EXPECT_TRUE(contains(server->error().message(), "peer did not return a certificate"));
  EXPECT_TRUE(contains(server->error().message(), "--client-cert-auth"));
  // In TLS 1.3 the client finishes first and learns of the refusal from the server's alert.
  EXPECT_FALSE(client->error().ok());
  EXPECT_TRUE(contains(client->error().message(), "certificate required"));
  EXPECT_TRUE(contains(client->error().message(), "give --cert and --key"));
  std::string got;
  EXPECT_EQ(server->read_plaintext(got), 0u);
}

TEST_F(TlsTest, ServerFromAnotherCaFailsVerification) {
  TlsConfig sc;
  sc.cert_file = pki().other_server_cert;
  sc.key_file = pki().other_server_key;
  auto server = session(context(TlsRole::kServer, sc));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  pump(*client, *server);
  EXPECT_FALSE(client->handshake_done());
  EXPECT_TRUE(contains(client->error().message(), "certificate verify failed"));
  EXPECT_TRUE(contains(client->error().message(), "unable to get local issuer certificate"));
  EXPECT_FALSE(server->handshake_done());
  EXPECT_TRUE(contains(server->error().message(), "unknown ca"));
  EXPECT_TRUE(contains(server->error().message(), "the client does not trust the CA"));
  EXPECT_TRUE(contains(client->error().message(), "not signed by a CA we trust (--cacert)"));
}

TEST_F(TlsTest, ClientFromAnotherCaIsRefusedByTheServer) {
  TlsConfig cc = client_config();
  cc.cert_file = pki().other_server_cert;  // signed by the other CA
  cc.key_file = pki().other_server_key;
  auto server = session(context(TlsRole::kServer, server_config(true)));
  auto client = session(context(TlsRole::kClient, cc), "127.0.0.1");
  pump(*client, *server);
  EXPECT_FALSE(server->handshake_done());
  EXPECT_TRUE(contains(server->error().message(), "certificate verify failed"));
  EXPECT_TRUE(contains(server->error().message(), "the client's certificate did not verify"));
  EXPECT_FALSE(client->error().ok());
  EXPECT_TRUE(contains(client->error().message(),
                       "the server does not trust the CA that signed our certificate (--cert)"))
      << client->error().to_string();
}

TEST_F(TlsTest, ExpiredServerCertificateIsRefused) {
  TlsConfig sc;
  sc.cert_file = pki().expired_cert;
  sc.key_file = pki().expired_key;
  auto server = session(context(TlsRole::kServer, sc));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  pump(*client, *server);
  EXPECT_TRUE(contains(client->error().message(), "certificate has expired"));
}

TEST_F(TlsTest, NameMismatchIsRefused) {
  for (const char* name : {"example.com", "10.1.2.3"}) {
    SCOPED_TRACE(name);
    auto server = session(context(TlsRole::kServer, server_config()));
    auto client = session(context(TlsRole::kClient, client_config()), name);
    pump(*client, *server);
    EXPECT_FALSE(client->handshake_done());
    EXPECT_TRUE(contains(client->error().message(), "certificate verify failed"));
    EXPECT_TRUE(contains(client->error().message(),
                         std::string("mismatch: the server's certificate does not name ") + name));
    EXPECT_FALSE(server->error().ok());
  }
}

TEST_F(TlsTest, SharedSecretHandshakeWorks) {
  const std::string secret = "5f0c6a0e3a3b2d9c8e7f61524b3a29181716151413121110aabbccddeeff0011";
  auto server = session(context(TlsRole::kServer, psk_config(secret)));
  auto client = session(context(TlsRole::kClient, psk_config(secret)), "ignored.example");
  ASSERT_TRUE(client->write("ping").ok());
  pump(*client, *server);
  ASSERT_TRUE(server->handshake_done()) << server->error().to_string();
  ASSERT_TRUE(client->handshake_done()) << client->error().to_string();
  EXPECT_EQ(client->describe_cipher(), "TLSv1.3 TLS_AES_128_GCM_SHA256");
  EXPECT_EQ(server->peer().describe(), "psk:kvc-psk-v1");
  EXPECT_EQ(client->peer().describe(), "psk:kvc-psk-v1");
  EXPECT_FALSE(server->peer().has_certificate);
  std::string got;
  server->read_plaintext(got);
  EXPECT_EQ(got, "ping");
  ASSERT_TRUE(server->write("pong").ok());
  pump(*client, *server);
  got.clear();
  client->read_plaintext(got);
  EXPECT_EQ(got, "pong");
}

TEST_F(TlsTest, DifferentSecretsFailCleanlyOnBothSides) {
  auto server = session(context(TlsRole::kServer, psk_config("the server's secret, long enough")));
  auto client = session(context(TlsRole::kClient, psk_config("the client's secret, long enough")));
  ASSERT_TRUE(client->write("secret data").ok());
  pump(*client, *server);
  EXPECT_FALSE(server->handshake_done());
  EXPECT_FALSE(client->handshake_done());
  EXPECT_TRUE(contains(server->error().message(), "shared secret differs"));
  EXPECT_TRUE(contains(client->error().message(), "refused our shared secret"));
  std::string got;
  EXPECT_EQ(server->read_plaintext(got), 0u);
  // A failure is final.
  EXPECT_EQ(server->feed("more").code(), Code::kFailedPrecondition);
  EXPECT_EQ(client->write("x").code(), Code::kFailedPrecondition);
}

TEST_F(TlsTest, SecretAgainstCertificatesFailsCleanlyBothWays) {
  {
    SCOPED_TRACE("psk client, certificate server");
    auto server = session(context(TlsRole::kServer, server_config()));
    auto client = session(context(TlsRole::kClient, psk_config("a secret")));
    pump(*client, *server);
    EXPECT_FALSE(client->handshake_done());
    EXPECT_TRUE(contains(client->error().message(), "presented a certificate"));
    EXPECT_FALSE(server->error().ok());
  }
  {
    SCOPED_TRACE("certificate client, psk server");
    auto server = session(context(TlsRole::kServer, psk_config("a secret")));
    auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
    pump(*client, *server);
    EXPECT_FALSE(server->handshake_done());
    EXPECT_TRUE(contains(server->error().message(), "offered no shared secret"));
    EXPECT_FALSE(client->error().ok());
    EXPECT_FALSE(client->handshake_done());
  }
}

TEST_F(TlsTest, PlaintextClientAtATlsServerGetsAClearError) {
  const struct {
    const char* name;
    std::string bytes;
    const char* what;
  } cases[] = {
      {"kvc frame", std::string("\0\0\0\x05hello", 9), "(a kvc frame)"},
      {"http", "GET /v1/kv/x HTTP/1.1\r\nHost: a\r\n\r\n", "(HTTP)"},
      {"text", "hello", "(not a TLS record)"},
      {"almost tls", std::string("\x16\x02\x01", 3), "(not a TLS record)"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    for (bool bytewise : {false, true}) {
      auto server = session(context(TlsRole::kServer, server_config()));
      feed(*server, c.bytes, bytewise);
      EXPECT_EQ(server->error().code(), Code::kFailedPrecondition);
      EXPECT_TRUE(
          contains(server->error().message(), "this port speaks TLS: the client sent plaintext"));
      // Fed a byte at a time, the first byte decides, before there is enough to tell HTTP.
      if (!bytewise) {
        EXPECT_TRUE(contains(server->error().message(), c.what));
      }
      EXPECT_TRUE(contains(server->error().message(), "--cacert/--cert/--key or a secret"));
    }
  }
}

TEST_F(TlsTest, TlsClientAnsweredInPlaintextGetsAClearError) {
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  EXPECT_FALSE(client->take_output().empty());  // the ClientHello
  EXPECT_EQ(client->feed("HTTP/1.1 400 Bad Request\r\n\r\n").code(), Code::kFailedPrecondition);
  EXPECT_TRUE(contains(client->error().message(),
                       "the server does not speak TLS: it sent plaintext (HTTP)"));

  auto client2 = session(context(TlsRole::kClient, psk_config("s")));
  EXPECT_FALSE(client2->feed(std::string("\0\0\0\x10", 4)).ok());
  EXPECT_TRUE(contains(client2->error().message(), "(a kvc frame)"));

  // A plaintext member that just closes the connection.
  auto client3 = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  EXPECT_EQ(client3->on_eof().code(), Code::kUnavailable);
  EXPECT_TRUE(contains(client3->error().message(), "closed the connection during the TLS"));
}

TEST_F(TlsTest, LooksLikeTls) {
  EXPECT_EQ(looks_like_tls(""), TlsSniff::kNeedMore);
  EXPECT_EQ(looks_like_tls("\x16"), TlsSniff::kNeedMore);
  EXPECT_EQ(looks_like_tls("\x16\x03"), TlsSniff::kNeedMore);
  EXPECT_EQ(looks_like_tls("\x16\x03\x01"), TlsSniff::kTls);
  EXPECT_EQ(looks_like_tls("\x16\x03\x03\x00\x10"), TlsSniff::kTls);
  EXPECT_EQ(looks_like_tls("\x15\x03\x03"), TlsSniff::kTls);  // an alert
  EXPECT_EQ(looks_like_tls(std::string("\0\0\0\x05", 4)), TlsSniff::kPlaintext);
  EXPECT_EQ(looks_like_tls("GET / HTTP/1.1"), TlsSniff::kPlaintext);
  EXPECT_EQ(looks_like_tls("\x16\x04"), TlsSniff::kPlaintext);
  EXPECT_EQ(looks_like_tls("\x16\x03\x05"), TlsSniff::kPlaintext);
  // A real ClientHello.
  auto client = session(context(TlsRole::kClient, client_config()), "localhost");
  EXPECT_EQ(looks_like_tls(client->take_output()), TlsSniff::kTls);
}

TEST_F(TlsTest, CloseNotifyReachesThePeer) {
  auto server = session(context(TlsRole::kServer, server_config()));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  pump(*client, *server);
  ASSERT_TRUE(client->write("last words").ok());
  client->close_notify();
  EXPECT_EQ(client->write("more").code(), Code::kFailedPrecondition);
  pump(*client, *server);
  EXPECT_TRUE(server->peer_closed());
  EXPECT_TRUE(server->error().ok()) << server->error().to_string();
  std::string got;
  server->read_plaintext(got);
  EXPECT_EQ(got, "last words");
  // EOF after the handshake is a plain close, not an error.
  EXPECT_TRUE(client->on_eof().ok());
  EXPECT_TRUE(client->peer_closed());
}

TEST_F(TlsTest, GarbageBeforeOrAfterTheHandshakeIsAnErrorNotACrash) {
  for (unsigned seed = 0; seed < 50; ++seed) {
    SCOPED_TRACE(seed);
    // Before: a plausible record header, then noise.
    auto fresh = session(context(TlsRole::kServer, server_config()));
    (void)fresh->feed(std::string("\x16\x03\x01", 3) + random_bytes(1 + seed * 37, seed));
    EXPECT_FALSE(fresh->handshake_done());
    (void)fresh->take_output();
    // After: noise where records should be, on either side.
    auto server = session(context(TlsRole::kServer, server_config()));
    auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
    pump(*client, *server);
    ASSERT_TRUE(server->handshake_done());
    TlsSession& victim = seed % 2 == 0 ? *server : *client;
    EXPECT_FALSE(victim.feed(random_bytes(5 + seed * 101, seed + 1000)).ok());
    EXPECT_FALSE(victim.error().ok());
    std::string got;
    EXPECT_EQ(victim.read_plaintext(got), 0u);
    pump(*client, *server);  // the alert reaches the other side, which stops too
  }
}

TEST_F(TlsTest, CloseBeforeTheHandshakeDropsBufferedWrites) {
  auto server = session(context(TlsRole::kServer, server_config()));
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  ASSERT_TRUE(client->write("never sent").ok());
  client->close_notify();
  pump(*client, *server);
  EXPECT_TRUE(client->error().ok()) << client->error().to_string();
  std::string got;
  EXPECT_EQ(server->read_plaintext(got), 0u);
}

TEST_F(TlsTest, SessionsKeepTheirContextAfterItIsReplaced) {
  auto server_ctx = context(TlsRole::kServer, server_config());
  auto server = session(server_ctx);
  auto client = session(context(TlsRole::kClient, client_config()), "127.0.0.1");
  // A reload builds a new context; the old one lives on in the session that uses it.
  server_ctx = context(TlsRole::kServer, server_config(true));
  pump(*client, *server);
  EXPECT_TRUE(server->handshake_done()) << server->error().to_string();
  EXPECT_FALSE(server->peer().has_certificate);  // the old context asked for none
}

TEST_F(TlsTest, LoadingErrorsNameTheFileAndTheReason) {
  const std::string missing = pki().dir.file("missing.pem");
  TlsConfig c = server_config();
  c.cert_file = missing;
  auto r = TlsContext::create(TlsRole::kServer, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "tls: cert file " + missing));
  EXPECT_TRUE(contains(r.status().message(), "No such file or directory"));

  const std::string garbage = pki().dir.file("garbage.pem");
  write_file(garbage, "this is not PEM\n");
  c = server_config();
  c.cert_file = garbage;
  r = TlsContext::create(TlsRole::kServer, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "tls: cert file " + garbage + ": "));
  EXPECT_TRUE(contains(r.status().message(), "no start line"));

  c = server_config();
  c.key_file = garbage;
  r = TlsContext::create(TlsRole::kServer, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "tls: key file " + garbage + ": "));

  c = server_config();
  c.key_file = pki().client_key;  // another certificate's key
  r = TlsContext::create(TlsRole::kServer, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "does not match cert file " + pki().server_cert));

  c = client_config();
  c.trusted_ca_file = garbage;
  r = TlsContext::create(TlsRole::kClient, c);
  ASSERT_FALSE(r.ok());
  EXPECT_TRUE(contains(r.status().message(), "tls: trusted CA file " + garbage + ": "));
}

TEST_F(TlsTest, ConfigurationsThatCannotWorkAreRefused) {
  const struct {
    const char* name;
    TlsRole role;
    TlsConfig config;
    const char* want;
  } cases[] = {
      {"server without certificate", TlsRole::kServer, TlsConfig{}, "needs a certificate"},
      {"key without certificate", TlsRole::kClient, TlsConfig{"", pki().client_key, "", false, ""},
       "go together"},
      {"secret and certificates", TlsRole::kServer,
       TlsConfig{pki().server_cert, pki().server_key, "", false, "s"}, "not both"},
      {"client cert auth without CA", TlsRole::kServer,
       TlsConfig{pki().server_cert, pki().server_key, "", true, ""}, "needs --trusted-ca-file"},
      {"client cert auth on a client", TlsRole::kClient, TlsConfig{"", "", pki().ca, true, ""},
       "server only"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    auto r = TlsContext::create(c.role, c.config);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), Code::kInvalidArgument);
    EXPECT_TRUE(contains(r.status().message(), c.want));
  }
}

TEST(SecretStrengthTest, RandomSecretsPass) {
  // From `openssl rand -hex 32`, `openssl rand -base64 32` and 32 random bytes.
  EXPECT_TRUE(
      check_secret_strength("3f9a1c7e52b08d46e1a5c93b7f20d846a1e95c3f07b2d8164ac39e5b1f72d04e")
          .ok());
  EXPECT_TRUE(check_secret_strength("q3V0mXk9Lr2Zt8Wc1YpB6sNfHd4Ju7GaEo5Ti0KlRbM=").ok());
  std::mt19937 rng(7);
  std::string binary(32, '\0');
  for (auto& c : binary) c = static_cast<char>(rng());
  EXPECT_TRUE(check_secret_strength(binary).ok()) << estimate_secret_bits(binary);
  // Every 64-hex-digit secret from a good generator passes, not just a lucky one.
  for (unsigned seed = 0; seed < 200; ++seed) {
    std::mt19937 r(seed);
    std::string hex;
    for (int i = 0; i < 64; ++i) hex.push_back("0123456789abcdef"[r() % 16]);
    EXPECT_TRUE(check_secret_strength(hex).ok()) << hex << ": " << estimate_secret_bits(hex);
  }
}

TEST(SecretStrengthTest, WeakSecretsAreRefusedWithAWayOut) {
  const char* weak[] = {
      "",
      "s",
      "password123",
      "correcthorsebatterystaple",
      "0123456789abcdef0123456789abcdef",  // 32 hex digits, but a sequence repeated
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "abcdefghijklmnopqrstuvwxyzabcdefghijklmnopqrstuvwxyz",
      "secretsecretsecretsecretsecretsecretsecretsecretsecretsecret",
      "12341234123412341234123412341234123412341234",
      "a1b2c3d4",  // 8 hex digits
  };
  for (const char* secret : weak) {
    SCOPED_TRACE(secret);
    Status s = check_secret_strength(secret);
    ASSERT_FALSE(s.ok()) << estimate_secret_bits(secret);
    EXPECT_EQ(s.code(), Code::kInvalidArgument);
    EXPECT_TRUE(contains(s.message(), "at least 128 needed"));
    EXPECT_TRUE(contains(s.message(), "openssl rand -hex 32"));
    if (std::string_view(secret).size() > 3) {
      EXPECT_FALSE(contains(s.message(), secret)) << "the message must not show the secret";
    }
  }
}

TEST(SecretStrengthTest, EstimateCountsClassesAndDiscountsPatterns) {
  EXPECT_EQ(estimate_secret_bits(""), 0);
  EXPECT_DOUBLE_EQ(estimate_secret_bits("5"), std::log2(10.0));  // digits alone: 10 symbols
  EXPECT_DOUBLE_EQ(estimate_secret_bits("3f9a"), 16);            // hex: 4 bits a digit
  EXPECT_DOUBLE_EQ(estimate_secret_bits("3f9aa"), 16);           // a repeat adds nothing
  EXPECT_DOUBLE_EQ(estimate_secret_bits("3f9a4"), 20);
  EXPECT_DOUBLE_EQ(estimate_secret_bits("3f9abc"), 20);  // "abc" is a run: c adds nothing
  EXPECT_DOUBLE_EQ(estimate_secret_bits("3f93f9"), 20);  // "3f9" again: the second 9 adds nothing
  EXPECT_NEAR(estimate_secret_bits("xQ7!"), 4 * std::log2(95.0), 1e-9);
}

}  // namespace
}  // namespace kvc::net
