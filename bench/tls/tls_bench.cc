// tls_bench: what one small TLS record costs through net::TlsSession, next to OpenSSL driven the
// textbook way (two memory BIOs, ERR_clear_error before each call, SSL_read until it wants more,
// BIO_read of what is pending), in the same run. Both sides are in this process and the bytes
// never touch a socket, so what is measured is the record work alone: per round trip, the client
// encrypts a record of --frames frames of --frame-bytes bytes, the server decrypts it, encrypts
// the same plaintext back, and the client decrypts that (four record operations). Both use TLS
// 1.3 with an external pre-shared key and TLS_AES_128_GCM_SHA256, as kvc's --secret does.
// Measured in alternation (session, raw, raw, session, ...) so that drift falls on both;
// reports the medians and their ratio. Nothing is asserted (bench/README.md).
#include <openssl/err.h>
#include <openssl/ssl.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <memory>
#include <string>
#include <vector>

#include "kvc/net/tls.h"

namespace {

using Clock = std::chrono::steady_clock;
using kvc::net::TlsConfig;
using kvc::net::TlsContext;
using kvc::net::TlsRole;
using kvc::net::TlsSession;

[[noreturn]] void die(const std::string& what) {
  std::fprintf(stderr, "tls_bench: %s\n", what.c_str());
  std::exit(1);
}

// One round trip per call; returns false when the bytes did not come back whole.
class Pair {
 public:
  virtual ~Pair() = default;
  virtual bool round_trip(const std::string& plaintext) = 0;
};

// net::TlsSession, as net::Connection drives it.
class SessionPair : public Pair {
 public:
  explicit SessionPair(const std::string& secret) {
    const TlsConfig config{.secret = secret};
    auto cctx = TlsContext::create(TlsRole::kClient, config);
    auto sctx = TlsContext::create(TlsRole::kServer, config);
    if (!cctx.ok() || !sctx.ok()) die("context: " + (cctx.ok() ? sctx : cctx).status().message());
    auto c = TlsSession::create(*cctx);
    auto s = TlsSession::create(*sctx);
    if (!c.ok() || !s.ok()) die("session: " + (c.ok() ? s : c).status().message());
    client_ = std::move(*c);
    server_ = std::move(*s);
    for (int i = 0; i < 10 && !(client_->handshake_done() && server_->handshake_done()); ++i) {
      shuttle(*client_, *server_);
      shuttle(*server_, *client_);
    }
    if (!client_->handshake_done() || !server_->handshake_done()) die("no handshake");
  }

  bool round_trip(const std::string& plaintext) override {
    if (!client_->write(plaintext).ok()) return false;
    out_.clear();
    client_->append_output(out_);
    if (!server_->feed(out_).ok()) return false;
    got_.clear();
    server_->read_plaintext(got_);
    if (!server_->write(got_).ok()) return false;
    out_.clear();
    server_->append_output(out_);
    if (!client_->feed(out_).ok()) return false;
    got_.clear();
    client_->read_plaintext(got_);
    return got_.size() == plaintext.size();
  }

 private:
  static void shuttle(TlsSession& from, TlsSession& to) {
    const std::string out = from.take_output();
    if (!out.empty() && !to.feed(out).ok()) die("handshake: " + to.error().message());
  }
  std::unique_ptr<TlsSession> client_;
  std::unique_ptr<TlsSession> server_;
  std::string out_;
  std::string got_;
};

// OpenSSL with a memory BIO each way, the way its documentation and most programs drive it.
class RawPair : public Pair {
 public:
  explicit RawPair(const std::string& secret) {
    // A 32-byte key from the secret; how it is derived does not matter here.
    key_.assign(32, '\0');
    for (std::size_t i = 0; i < secret.size(); ++i) key_[i % 32] ^= secret[i];
    client_ = make(false);
    server_ = make(true);
    for (int i = 0;
         i < 10 && !(SSL_is_init_finished(client_.ssl) && SSL_is_init_finished(server_.ssl)); ++i) {
      SSL_do_handshake(client_.ssl);
      move(client_, server_);
      SSL_do_handshake(server_.ssl);
      move(server_, client_);
    }
    if (!SSL_is_init_finished(client_.ssl) || !SSL_is_init_finished(server_.ssl)) {
      die("raw: no handshake");
    }
    std::string drained;
    read_all(client_, drained);  // the server's session tickets, if any
  }
  ~RawPair() override {
    SSL_free(client_.ssl);
    SSL_free(server_.ssl);
    SSL_CTX_free(cctx_);
    SSL_CTX_free(sctx_);
  }

  bool round_trip(const std::string& plaintext) override {
    if (!write(client_, plaintext)) return false;
    move(client_, server_);
    got_.clear();
    read_all(server_, got_);
    if (!write(server_, got_)) return false;
    move(server_, client_);
    got_.clear();
    read_all(client_, got_);
    return got_.size() == plaintext.size();
  }

 private:
  struct End {
    SSL* ssl = nullptr;
    BIO* in = nullptr;
    BIO* out = nullptr;
  };

  static SSL_SESSION* session(const std::string& key, SSL* ssl) {
    static const unsigned char kAes128Gcm[2] = {0x13, 0x01};
    SSL_SESSION* s = SSL_SESSION_new();
    SSL_SESSION_set1_master_key(s, reinterpret_cast<const unsigned char*>(key.data()), key.size());
    SSL_SESSION_set_cipher(s, SSL_CIPHER_find(ssl, kAes128Gcm));
    SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION);
    return s;
  }

  End make(bool server) {
    SSL_CTX* ctx = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
    SSL_CTX_set_min_proto_version(ctx, TLS1_3_VERSION);
    SSL_CTX_set_ciphersuites(ctx, "TLS_AES_128_GCM_SHA256");
    SSL_CTX_set_num_tickets(ctx, 0);
    SSL_CTX_set_app_data(ctx, this);
    if (server) {
      sctx_ = ctx;
      SSL_CTX_set_psk_find_session_callback(
          ctx, [](SSL* ssl, const unsigned char*, std::size_t, SSL_SESSION** sess) {
            auto* self = static_cast<RawPair*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
            *sess = session(self->key_, ssl);
            return 1;
          });
    } else {
      cctx_ = ctx;
      SSL_CTX_set_psk_use_session_callback(
          ctx, [](SSL* ssl, const EVP_MD*, const unsigned char** id, std::size_t* idlen,
                  SSL_SESSION** sess) {
            auto* self = static_cast<RawPair*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
            *sess = session(self->key_, ssl);
            *id = reinterpret_cast<const unsigned char*>("bench");
            *idlen = 5;
            return 1;
          });
    }
    End e;
    e.ssl = SSL_new(ctx);
    e.in = BIO_new(BIO_s_mem());
    e.out = BIO_new(BIO_s_mem());
    BIO_set_mem_eof_return(e.in, -1);
    SSL_set_bio(e.ssl, e.in, e.out);
    if (server) {
      SSL_set_accept_state(e.ssl);
    } else {
      SSL_set_connect_state(e.ssl);
    }
    return e;
  }

  bool write(End& e, const std::string& plaintext) {
    ERR_clear_error();
    std::size_t n = 0;
    return SSL_write_ex(e.ssl, plaintext.data(), plaintext.size(), &n) == 1 &&
           n == plaintext.size();
  }
  void move(End& from, End& to) {
    const std::size_t pending = BIO_ctrl_pending(from.out);
    if (pending == 0) return;
    std::string bytes(pending, '\0');
    std::size_t n = 0;
    BIO_read_ex(from.out, bytes.data(), bytes.size(), &n);
    BIO_write_ex(to.in, bytes.data(), n, &n);
  }
  static void read_all(End& e, std::string& out) {
    char buf[16384];
    for (;;) {
      ERR_clear_error();
      std::size_t n = 0;
      if (SSL_read_ex(e.ssl, buf, sizeof buf, &n) != 1) break;
      out.append(buf, n);
    }
  }

  std::string key_;
  SSL_CTX* cctx_ = nullptr;
  SSL_CTX* sctx_ = nullptr;
  End client_;
  End server_;
  std::string got_;
};

// Microseconds per round trip over `rounds` round trips.
double measure(Pair& pair, const std::string& plaintext, int rounds) {
  const auto t0 = Clock::now();
  for (int i = 0; i < rounds; ++i) {
    if (!pair.round_trip(plaintext)) die("a round trip lost bytes");
  }
  return std::chrono::duration<double, std::micro>(Clock::now() - t0).count() / rounds;
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int rounds = 100000;
  int reps = 5;
  std::size_t frame_bytes = 50;
  std::size_t frames = 1;
  CLI::App app(
      "What one small TLS record costs through kvc's TLS session layer (net::TlsSession), next "
      "to OpenSSL driven with two memory BIOs, in memory, in the same run (alternating). Prints "
      "the median microseconds per round trip (four record operations) and the ratio.");
  app.add_option("--rounds", rounds, "Round trips per measurement")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--reps", reps, "Measurements of each, alternating")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  app.add_option("--frame-bytes", frame_bytes, "Bytes per frame (a get's answer is about 50)")
      ->check(CLI::Range(1, 4096))
      ->capture_default_str();
  app.add_option("--frames", frames, "Frames per record (what one loop turn gathers)")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);

  const std::string secret = "3f9c0e5a7b1d2c4e6f8091a2b3c4d5e6f708192a3b4c5d6e7f8091a2b3c4d5e6";
  const std::string plaintext(frame_bytes * frames, 'v');
  SessionPair session(secret);
  RawPair raw(secret);
  measure(session, plaintext, rounds / 10 + 1);  // warm both up
  measure(raw, plaintext, rounds / 10 + 1);
  std::vector<double> s_us, r_us;
  for (int i = 0; i < reps; ++i) {
    if (i % 2 == 0) {
      s_us.push_back(measure(session, plaintext, rounds));
      r_us.push_back(measure(raw, plaintext, rounds));
    } else {
      r_us.push_back(measure(raw, plaintext, rounds));
      s_us.push_back(measure(session, plaintext, rounds));
    }
  }
  const double s = median(s_us);
  const double r = median(r_us);
  std::printf("record of %zu bytes (%zu frame%s), %d round trips x %d, medians:\n",
              plaintext.size(), frames, frames == 1 ? "" : "s", rounds, reps);
  std::printf("  OpenSSL with memory BIOs:  %7.3f us per round trip (%6.3f per record operation)\n",
              r, r / 4);
  std::printf("  net::TlsSession:           %7.3f us per round trip (%6.3f per record operation)\n",
              s, s / 4);
  std::printf("  ratio session/raw:         %7.3f\n", s / r);
  return 0;
}
