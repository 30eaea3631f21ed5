#include "kvc/net/tls.h"

#include <arpa/inet.h>
#include <openssl/bio.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <utility>

#include "kvc/common/check.h"

namespace kvc::net {
namespace {

// The cipher suite an external PSK is bound to (RFC 8446, B.4): its hash (SHA-256) is the one
// the PSK binder uses, so both sides must name the same suite.
constexpr unsigned char kPskCipher[2] = {0x13, 0x01};  // TLS_AES_128_GCM_SHA256
// The message the secret MACs into the key: a label of its own, so that the key differs from
// any other use of the secret, and versioned with kPskIdentity.
constexpr std::string_view kPskLabel = "kvc tls external psk v1";
constexpr std::size_t kSniffBytes = 3;
constexpr std::size_t kReadChunk = 16384;

// Empties OpenSSL's (thread-local) error queue before a call whose failure is read from it (or
// from SSL_get_error, which looks at it first). ERR_clear_error itself costs about 800
// instructions (it clears every slot of the queue), a fifth of what a small record costs, and
// the queue is almost always empty already: looking first is about a tenth of that.
void clear_errors() {
  if (ERR_peek_error() != 0) ERR_clear_error();
}

// Drains OpenSSL's (thread-local) error queue into "reason; reason". Every call below clears the
// queue first, so what is here belongs to the call that failed.
std::string openssl_errors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    const char* reason = ERR_reason_error_string(e);
    std::string text;
    if (reason != nullptr) {
      text = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof(buf));
      text = buf;
    }
    // The same reason is often queued by several layers.
    if (out.find(text) != std::string::npos) continue;
    if (!out.empty()) out += "; ";
    out += text;
  }
  return out.empty() ? "unknown openssl error" : out;
}

// Checked before OpenSSL opens the file, so that a missing or unreadable file is reported as
// the operating system says it, not as OpenSSL's "system lib".
Status check_readable(std::string_view what, const std::string& path) {
  if (::access(path.c_str(), R_OK) != 0) {
    return Status::from_errno("tls: " + std::string(what) + " " + path, errno);
  }
  return Status();
}

bool parse_ip(const std::string& s) {
  unsigned char buf[16];
  return inet_pton(AF_INET, s.c_str(), buf) == 1 || inet_pton(AF_INET6, s.c_str(), buf) == 1;
}

bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

std::string describe_plaintext(std::string_view bytes) {
  // A request's method or a response's "HTTP/", as far as the bytes go (at least three).
  for (std::string_view word :
       {"GET ", "PUT ", "POST ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "HTTP/"}) {
    const std::size_t n = std::min(word.size(), bytes.size());
    if (n >= 3 && bytes.substr(0, n) == word.substr(0, n)) return "HTTP";
  }
  // A kvc frame begins with its 4-byte big-endian length; any frame under 16 MiB starts with 0.
  if (!bytes.empty() && bytes[0] == '\0') return "a kvc frame";
  return "not a TLS record";
}

std::string x509_name_rfc2253(X509_NAME* name) {
  BIO* bio = BIO_new(BIO_s_mem());
  if (bio == nullptr) return {};
  X509_NAME_print_ex(bio, name, 0, XN_FLAG_RFC2253);
  char* data = nullptr;
  long n = BIO_get_mem_data(bio, &data);
  std::string out(data, n > 0 ? static_cast<std::size_t>(n) : 0);
  BIO_free(bio);
  return out;
}

std::string x509_common_name(X509_NAME* name) {
  int i = X509_NAME_get_index_by_NID(name, NID_commonName, -1);
  if (i < 0) return {};
  ASN1_STRING* data = X509_NAME_ENTRY_get_data(X509_NAME_get_entry(name, i));
  unsigned char* utf8 = nullptr;
  int n = ASN1_STRING_to_UTF8(&utf8, data);
  if (n < 0) return {};
  std::string out(reinterpret_cast<char*>(utf8), static_cast<std::size_t>(n));
  OPENSSL_free(utf8);
  return out;
}

// The external PSK: HMAC-SHA-256(secret, kPskLabel), by OpenSSL's EVP_Q_mac, straight into a
// SecretBytes (no other copy of the key is made).
Result<SecretBytes> psk_from_secret(std::string_view secret) {
  unsigned char key[32];
  std::size_t n = 0;
  ERR_clear_error();
  if (EVP_Q_mac(nullptr, "HMAC", nullptr, "SHA256", nullptr, secret.data(), secret.size(),
                reinterpret_cast<const unsigned char*>(kPskLabel.data()), kPskLabel.size(), key,
                sizeof key, &n) == nullptr ||
      n != sizeof key) {
    OPENSSL_cleanse(key, sizeof key);
    return Status::internal("tls: deriving the pre-shared key (HMAC-SHA-256): " + openssl_errors());
  }
  SecretBytes out(std::string_view(reinterpret_cast<const char*>(key), n));
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

SSL_SESSION* make_psk_session(std::string_view psk, const SSL_CIPHER* cipher) {
  SSL_SESSION* s = SSL_SESSION_new();
  if (s == nullptr) return nullptr;
  if (SSL_SESSION_set1_master_key(s, reinterpret_cast<const unsigned char*>(psk.data()),
                                  psk.size()) != 1 ||
      SSL_SESSION_set_cipher(s, cipher) != 1 ||
      SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(s);
    return nullptr;
  }
  return s;
}

// What a user can do about a failure OpenSSL describes as `reasons`; empty when nothing useful
// can be said beyond OpenSSL's words.
std::string hint(const TlsContext& ctx, std::string_view reasons, std::string_view offered) {
  const bool server = ctx.role() == TlsRole::kServer;
  if (server && contains(reasons, "peer did not return a certificate")) {
    return "the client sent no certificate and this side requires one (--client-cert-auth): "
           "give the client a certificate (--cert, --key) signed by a trusted CA";
  }
  if (!server && contains(reasons, "certificate required")) {
    return "the server requires a client certificate: give --cert and --key";
  }
  if (ctx.uses_psk()) {
    if (server && contains(reasons, "binder does not verify")) {
      return "the client's shared secret differs from this side's";
    }
    if (server && offered.empty()) {
      return "the client offered no shared secret (it may expect certificates): give it the "
             "cluster's secret";
    }
    if (server && offered != kPskIdentity) {
      return "the client offered pre-shared key identity '" + std::string(offered) + "', not " +
             std::string(kPskIdentity);
    }
    // OpenSSL answers a PSK binder that does not verify with illegal_parameter; RFC 8446 with
    // decrypt_error.
    if (!server && (contains(reasons, "decrypt error") || contains(reasons, "illegal parameter"))) {
      return "the server refused our shared secret: both sides must have the same secret";
    }
    if (!server && contains(reasons, "certificate verify failed")) {
      return "the server did not take a shared secret and presented a certificate: it is "
             "configured for certificates (--cacert, --cert, --key)";
    }
    if (!server && contains(reasons, "handshake failure")) {
      return "the server refused the handshake: does it use certificates rather than a secret?";
    }
  } else {
    if (server && contains(reasons, "certificate verify failed")) {
      return "the client's certificate did not verify against this side's trusted CAs "
             "(--trusted-ca-file; --peer-trusted-ca-file on the peer port)";
    }
    if (server && contains(reasons, "alert unknown ca")) {
      return "the client does not trust the CA that signed this side's certificate";
    }
    if (!server && contains(reasons, "alert unknown ca")) {
      return "the server does not trust the CA that signed our certificate (--cert): it needs "
             "one signed by a CA it trusts (its --trusted-ca-file, or --peer-trusted-ca-file)";
    }
    if (!server && contains(reasons, "alert certificate expired")) {
      return "the server says our certificate (--cert) has expired";
    }
    if (!server && (contains(reasons, "unable to get local issuer certificate") ||
                    contains(reasons, "self-signed certificate"))) {
      return "the server's certificate is not signed by a CA we trust (--cacert)";
    }
    if (server && contains(reasons, "no suitable signature algorithm")) {
      return "the client offered only a shared secret, and this side uses certificates";
    }
    if (server && contains(reasons, "no shared cipher")) {
      return "no cipher suite in common (does the client expect a shared secret?)";
    }
    if (!server && contains(reasons, "handshake failure")) {
      return "the server refused the handshake: does it expect a shared secret or a client "
             "certificate?";
    }
  }
  return {};
}

}  // namespace

// OpenSSL's callbacks; a struct so that it can be the classes' friend.
struct TlsCallbacks {
  static int bio_write(BIO* bio, const char* data, std::size_t n, std::size_t* written) {
    auto* s = static_cast<TlsSession*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    s->out_.append(data, n);
    *written = n;
    return 1;
  }

  static int bio_read(BIO* bio, char* data, std::size_t n, std::size_t* read) {
    auto* s = static_cast<TlsSession*>(BIO_get_data(bio));
    BIO_clear_retry_flags(bio);
    if (s->in_.empty()) {
      BIO_set_retry_read(bio);  // more may come: SSL_ERROR_WANT_READ
      *read = 0;
      return 0;
    }
    const std::size_t k = std::min(n, s->in_.size());
    std::memcpy(data, s->in_.data(), k);
    s->in_.remove_prefix(k);
    *read = k;
    return 1;
  }

  static long bio_ctrl(BIO* bio, int cmd, long, void*) {
    auto* s = static_cast<TlsSession*>(BIO_get_data(bio));
    switch (cmd) {
      case BIO_CTRL_FLUSH:
        return 1;
      case BIO_CTRL_PENDING:
        return static_cast<long>(s->in_.size());
      case BIO_CTRL_WPENDING:
        return static_cast<long>(s->out_.size());
      default:
        return 0;  // no EOF, no push/pop, no kTLS: OpenSSL asks and takes 0 for "not so"
    }
  }

  // The BIO method of every session (TlsSession::bio_, its data the session): reads come from
  // the session's in_, writes are appended to its out_; "no input yet" is a retry, never end of
  // stream (on_eof() says when the connection ended).
  static const BIO_METHOD* bio_method() {
    static BIO_METHOD* const method = [] {
      BIO_METHOD* m = BIO_meth_new(BIO_get_new_index() | BIO_TYPE_SOURCE_SINK, "kvc tls session");
      KVC_CHECK(m != nullptr, "BIO_meth_new failed");
      BIO_meth_set_write_ex(m, &TlsCallbacks::bio_write);
      BIO_meth_set_read_ex(m, &TlsCallbacks::bio_read);
      BIO_meth_set_ctrl(m, &TlsCallbacks::bio_ctrl);
      BIO_meth_set_create(m, [](BIO* b) {
        BIO_set_init(b, 1);
        return 1;
      });
      return m;
    }();
    return method;
  }

  static const TlsContext& context_of(SSL* ssl) {
    return *static_cast<const TlsContext*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
  }

  // Client: offers the PSK in the ClientHello (md == nullptr) and again after a
  // HelloRetryRequest, when OpenSSL passes the hash already chosen.
  static int use_session(SSL* ssl, const EVP_MD* md, const unsigned char** id, std::size_t* idlen,
                         SSL_SESSION** sess) {
    const TlsContext& ctx = context_of(ssl);
    const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipher);
    if (cipher == nullptr) return 0;
    if (md != nullptr &&
        EVP_MD_get_type(md) != EVP_MD_get_type(SSL_CIPHER_get_handshake_digest(cipher))) {
      *sess = nullptr;  // cannot offer it with that hash: go on without
      *id = nullptr;
      *idlen = 0;
      return 1;
    }
    *sess = make_psk_session(ctx.psk_.view(), cipher);  // OpenSSL takes ownership
    if (*sess == nullptr) return 0;
    *id = reinterpret_cast<const unsigned char*>(kPskIdentity.data());
    *idlen = kPskIdentity.size();
    return 1;
  }

  // Server: the client offered `identity`; an unknown one gets no session (the handshake then
  // fails for want of a certificate, and hint() names what was offered).
  static int find_session(SSL* ssl, const unsigned char* identity, std::size_t identity_len,
                          SSL_SESSION** sess) {
    const TlsContext& ctx = context_of(ssl);
    auto* session = static_cast<TlsSession*>(SSL_get_app_data(ssl));
    std::string_view offered(reinterpret_cast<const char*>(identity), identity_len);
    // Bytes from the network: kept short and printable for messages.
    std::string shown;
    for (char c : offered.substr(0, 64)) shown.push_back(c >= 0x20 && c < 0x7f ? c : '?');
    session->offered_psk_identity_ = shown.empty() ? "(empty)" : shown;
    *sess = nullptr;
    if (offered != kPskIdentity) return 1;
    const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kPskCipher);
    if (cipher == nullptr) return 0;
    *sess = make_psk_session(ctx.psk_.view(), cipher);  // OpenSSL takes ownership
    return *sess != nullptr ? 1 : 0;
  }
};

Result<std::shared_ptr<const TlsContext>> TlsContext::create(TlsRole role,
                                                             const TlsConfig& config) {
  const bool psk = !config.secret.empty();
  const bool server = role == TlsRole::kServer;
  if (psk && (!config.cert_file.empty() || !config.key_file.empty() ||
              !config.trusted_ca_file.empty() || config.client_cert_auth)) {
    return Status::invalid_argument("tls: give either a shared secret or certificates, not both");
  }
  if (!psk && server && (config.cert_file.empty() || config.key_file.empty())) {
    return Status::invalid_argument(
        "tls: a TLS server needs a certificate and its key (--cert-file, --key-file) or a "
        "shared secret");
  }
  if (config.cert_file.empty() != config.key_file.empty()) {
    return Status::invalid_argument(
        "tls: a certificate and its key go together (cert file and key file)");
  }
  if (config.client_cert_auth && !server) {
    return Status::invalid_argument("tls: --client-cert-auth applies to a server only");
  }
  if (config.client_cert_auth && config.trusted_ca_file.empty()) {
    return Status::invalid_argument(
        "tls: --client-cert-auth needs --trusted-ca-file (the CA that signs client "
        "certificates)");
  }

  std::shared_ptr<TlsContext> ctx(new TlsContext());
  ctx->role_ = role;
  ctx->client_cert_auth_ = config.client_cert_auth;
  ERR_clear_error();
  ctx->ctx_ = SSL_CTX_new(server ? TLS_server_method() : TLS_client_method());
  if (ctx->ctx_ == nullptr) return Status::internal("tls: SSL_CTX_new: " + openssl_errors());
  SSL_CTX* c = ctx->ctx_;
  // The context outlives every SSL made from it: sessions hold the shared_ptr.
  SSL_CTX_set_app_data(c, ctx.get());
  if (SSL_CTX_set_min_proto_version(c, psk ? TLS1_3_VERSION : TLS1_2_VERSION) != 1) {
    return Status::internal("tls: set_min_proto_version: " + openssl_errors());
  }
  // kvc connections are long-lived; resumption would only add state and secrets to manage.
  SSL_CTX_set_options(c, SSL_OP_NO_TICKET | SSL_OP_NO_RENEGOTIATION);
  SSL_CTX_set_num_tickets(c, 0);
  SSL_CTX_set_session_cache_mode(c, SSL_SESS_CACHE_OFF);

  if (psk) {
    Result<SecretBytes> key = psk_from_secret(config.secret);
    if (!key.ok()) return key.status();
    ctx->psk_ = std::move(*key);
    // A server drops a PSK whose hash differs from the suite it picks, and OpenSSL's default
    // order puts TLS_AES_256_GCM_SHA384 first: offer only the SHA-256 suites.
    if (SSL_CTX_set_ciphersuites(c, "TLS_AES_128_GCM_SHA256:TLS_CHACHA20_POLY1305_SHA256") != 1) {
      return Status::internal("tls: set_ciphersuites: " + openssl_errors());
    }
    if (server) {
      SSL_CTX_set_psk_find_session_callback(c, &TlsCallbacks::find_session);
    } else {
      SSL_CTX_set_psk_use_session_callback(c, &TlsCallbacks::use_session);
      // No CA is trusted: a server that ignores the PSK and presents a certificate is refused.
      SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
    }
    return std::shared_ptr<const TlsContext>(std::move(ctx));
  }

  if (!config.cert_file.empty()) {
    KVC_RETURN_IF_ERROR(check_readable("cert file", config.cert_file));
    KVC_RETURN_IF_ERROR(check_readable("key file", config.key_file));
    ERR_clear_error();
    if (SSL_CTX_use_certificate_chain_file(c, config.cert_file.c_str()) != 1) {
      return Status::invalid_argument("tls: cert file " + config.cert_file + ": " +
                                      openssl_errors());
    }
    // OpenSSL checks the key against the certificate as it loads it ("key values mismatch").
    if (SSL_CTX_use_PrivateKey_file(c, config.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(c) != 1) {
      const std::string reasons = openssl_errors();
      if (!contains(reasons, "mismatch")) {
        return Status::invalid_argument("tls: key file " + config.key_file + ": " + reasons);
      }
      return Status::invalid_argument("tls: key file " + config.key_file +
                                      " does not match cert file " + config.cert_file + ": " +
                                      reasons);
    }
  }
  if (!config.trusted_ca_file.empty()) {
    KVC_RETURN_IF_ERROR(check_readable("trusted CA file", config.trusted_ca_file));
    ERR_clear_error();
    if (SSL_CTX_load_verify_locations(c, config.trusted_ca_file.c_str(), nullptr) != 1) {
      return Status::invalid_argument("tls: trusted CA file " + config.trusted_ca_file + ": " +
                                      openssl_errors());
    }
  } else if (!server) {
    // Like curl and etcdctl: without --cacert, the system's roots. Their absence only means
    // that every server will fail verification, which the handshake then says.
    SSL_CTX_set_default_verify_paths(c);
    ERR_clear_error();
  }
  if (!server) {
    SSL_CTX_set_verify(c, SSL_VERIFY_PEER, nullptr);
  } else if (config.client_cert_auth) {
    SSL_CTX_set_verify(c,
                       config.client_cert_optional
                           ? SSL_VERIFY_PEER
                           : SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT,
                       nullptr);
    // Tells clients which CAs are accepted, so one with several certificates picks right.
    if (STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(config.trusted_ca_file.c_str())) {
      SSL_CTX_set_client_CA_list(c, names);
    }
    ERR_clear_error();
  }
  return std::shared_ptr<const TlsContext>(std::move(ctx));
}

TlsContext::~TlsContext() { SSL_CTX_free(ctx_); }  // psk_ wipes itself

std::string TlsPeerIdentity::describe() const {
  if (!psk_identity.empty()) return "psk:" + psk_identity;
  if (has_certificate) return subject.empty() ? "(empty subject)" : subject;
  return "anonymous";
}

TlsSniff looks_like_tls(std::string_view b) {
  // A record header: type (22 handshake; 21 alert, which a refusing server may send first),
  // then the version's major byte 3 and a minor byte of at most 4.
  if (b.empty()) return TlsSniff::kNeedMore;
  const auto type = static_cast<std::uint8_t>(b[0]);
  if (type != 0x16 && type != 0x15) return TlsSniff::kPlaintext;
  if (b.size() < 2) return TlsSniff::kNeedMore;
  if (static_cast<std::uint8_t>(b[1]) != 0x03) return TlsSniff::kPlaintext;
  if (b.size() < 3) return TlsSniff::kNeedMore;
  if (static_cast<std::uint8_t>(b[2]) > 0x04) return TlsSniff::kPlaintext;
  return TlsSniff::kTls;
}

TlsSession::TlsSession(std::shared_ptr<const TlsContext> context) : context_(std::move(context)) {}

TlsSession::~TlsSession() { SSL_free(ssl_); }

Result<std::unique_ptr<TlsSession>> TlsSession::create(std::shared_ptr<const TlsContext> context,
                                                       std::string expected_name) {
  KVC_CHECK(context != nullptr, "TlsSession::create without a context");
  std::unique_ptr<TlsSession> s(new TlsSession(std::move(context)));
  ERR_clear_error();
  s->ssl_ = SSL_new(s->context_->ctx_);
  if (s->ssl_ == nullptr) return Status::internal("tls: SSL_new: " + openssl_errors());
  SSL_set_app_data(s->ssl_, s.get());
  s->bio_ = BIO_new(TlsCallbacks::bio_method());
  if (s->bio_ == nullptr) return Status::internal("tls: BIO_new: " + openssl_errors());
  BIO_set_data(s->bio_, s.get());
  SSL_set_bio(s->ssl_, s->bio_, s->bio_);  // one reference for both directions: the SSL owns it

  if (s->role() == TlsRole::kServer) {
    SSL_set_accept_state(s->ssl_);
    return s;
  }
  SSL_set_connect_state(s->ssl_);
  if (!s->context_->uses_psk() && !expected_name.empty()) {
    if (parse_ip(expected_name)) {
      if (X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(s->ssl_), expected_name.c_str()) != 1) {
        return Status::invalid_argument("tls: bad IP address to verify: " + expected_name);
      }
    } else {
      if (SSL_set_tlsext_host_name(s->ssl_, expected_name.c_str()) != 1 ||
          SSL_set1_host(s->ssl_, expected_name.c_str()) != 1) {
        return Status::invalid_argument("tls: bad host name to verify: " + expected_name + ": " +
                                        openssl_errors());
      }
    }
    s->expected_name_ = std::move(expected_name);
  }
  KVC_RETURN_IF_ERROR(s->drive());  // the ClientHello
  return s;
}

Status TlsSession::fail(Status status) {
  ERR_clear_error();
  if (error_.ok()) error_ = std::move(status);
  return error_;
}

Status TlsSession::handshake_error(int ssl_error) {
  std::string reasons =
      ssl_error == SSL_ERROR_SSL ? openssl_errors() : "ssl error " + std::to_string(ssl_error);
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    reasons += " (";
    reasons += X509_verify_cert_error_string(verify);
    if ((verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH) &&
        !expected_name_.empty()) {
      reasons += ": the server's certificate does not name " + expected_name_;
    }
    reasons += ")";
  }
  std::string msg = "tls handshake failed: " + reasons;
  if (std::string h = hint(*context_, reasons, offered_psk_identity_); !h.empty()) {
    msg += ": " + h;
  }
  return Status::failed_precondition(std::move(msg));
}

Status TlsSession::drive() {
  if (!error_.ok()) return error_;
  if (!handshake_done_) {
    clear_errors();
    const int rc = SSL_do_handshake(ssl_);
    if (rc != 1) {
      const int e = SSL_get_error(ssl_, rc);
      if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) return Status();
      return fail(handshake_error(e));
    }
    if (context_->uses_psk() && SSL_session_reused(ssl_) != 1) {
      // Cannot happen with the settings above (no certificate on either side); checked because
      // a session without the secret's proof must never carry data.
      return fail(Status::failed_precondition("tls handshake failed: no shared secret was used"));
    }
    handshake_done_ = true;
    collect_identity();
    KVC_RETURN_IF_ERROR(flush_pending_writes());
  }
  char buf[kReadChunk];
  for (;;) {
    clear_errors();
    std::size_t n = 0;
    const int rc = SSL_read_ex(ssl_, buf, sizeof(buf), &n);
    if (rc == 1) {
      plaintext_.append(buf, n);
      // Nothing left to read, in the input or in OpenSSL: the call that would say WANT_READ
      // (a pass through the record layer) is not made.
      if (in_.empty() && SSL_has_pending(ssl_) == 0) break;
      continue;
    }
    const int e = SSL_get_error(ssl_, rc);
    if (e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE) break;
    if (e == SSL_ERROR_ZERO_RETURN) {
      peer_closed_ = true;
      break;
    }
    std::string reasons = e == SSL_ERROR_SSL ? openssl_errors() : "ssl error " + std::to_string(e);
    std::string msg = "tls: " + reasons;
    if (std::string h = hint(*context_, reasons, offered_psk_identity_); !h.empty()) {
      msg += ": " + h;
    }
    return fail(Status::failed_precondition(std::move(msg)));
  }
  return Status();
}

Status TlsSession::flush_pending_writes() {
  if (pending_write_.empty()) return Status();
  std::string pending = std::move(pending_write_);
  pending_write_.clear();
  return write(pending);
}

Status TlsSession::feed(std::string_view ciphertext) {
  if (!error_.ok()) return error_;
  if (ciphertext.empty()) return Status();
  if (!sniffed_) {
    const std::size_t take = std::min(ciphertext.size(), kSniffBytes - head_.size());
    head_.append(ciphertext.substr(0, take));
    const TlsSniff sniff = looks_like_tls(head_);
    if (sniff == TlsSniff::kPlaintext) {
      const std::string what = describe_plaintext(head_ + std::string(ciphertext.substr(take, 8)));
      if (role() == TlsRole::kServer) {
        return fail(
            Status::failed_precondition("tls: this port speaks TLS: the client sent plaintext (" +
                                        what + "); use --cacert/--cert/--key or a secret"));
      }
      return fail(
          Status::failed_precondition("tls: the server does not speak TLS: it sent plaintext (" +
                                      what + "); is it a member without TLS, or another port?"));
    }
    sniffed_ = sniff == TlsSniff::kTls;
  }
  const bool from_kept = !in_kept_.empty();
  if (from_kept) {
    in_kept_.append(ciphertext);
    in_ = in_kept_;
  } else {
    in_ = ciphertext;  // read in place: nothing is waiting before it
  }
  // Too few bytes to tell TLS from plaintext yet: they wait (in in_kept_) for more.
  const Status s = sniffed_ ? drive() : Status();
  // OpenSSL takes every byte it is offered while it waits for more (it keeps a partial record
  // itself), so normally nothing is left; after a close_notify or an error there may be.
  // (The BIO only ever takes from the front: what is left is a suffix of what was offered.)
  if (in_.empty()) {
    in_kept_.clear();
  } else if (from_kept) {
    in_kept_.erase(0, in_kept_.size() - in_.size());
  } else {
    in_kept_.assign(in_);
  }
  if (in_kept_.capacity() > kReadChunk && in_kept_.empty()) std::string().swap(in_kept_);
  in_ = {};
  return s;
}

Status TlsSession::write(std::string_view plaintext) {
  if (!error_.ok()) return error_;
  if (closing_) return Status::failed_precondition("tls: write after close_notify");
  if (plaintext.empty()) return Status();
  if (!handshake_done_) {
    pending_write_.append(plaintext);
    return Status();
  }
  clear_errors();
  std::size_t written = 0;
  // The BIO takes everything, so SSL_write_ex writes all of it (as many records as needed).
  if (SSL_write_ex(ssl_, plaintext.data(), plaintext.size(), &written) != 1 ||
      written != plaintext.size()) {
    return fail(Status::failed_precondition("tls: write: " + openssl_errors()));
  }
  return Status();
}

std::string TlsSession::take_output() {
  std::string out;
  out.swap(out_);
  return out;
}

std::size_t TlsSession::append_output(std::string& out) {
  const std::size_t n = out_.size();
  if (n == 0) return 0;
  if (out.empty()) {
    out.swap(out_);  // out_ keeps out's old buffer, if it had one, for the next records
  } else {
    out.append(out_);
  }
  out_.clear();
  return n;
}

std::size_t TlsSession::read_plaintext(std::string& out) {
  const std::size_t n = plaintext_.size();
  if (out.empty()) {
    out.swap(plaintext_);
  } else {
    out.append(plaintext_);
  }
  plaintext_.clear();
  return n;
}

void TlsSession::close_notify() {
  if (closing_ || !error_.ok()) return;
  closing_ = true;
  if (!handshake_done_) {
    // Nothing was sent yet: the caller closes the connection, and buffered writes go nowhere.
    pending_write_.clear();
    return;
  }
  ERR_clear_error();
  SSL_shutdown(ssl_);  // queues the alert; we do not wait for the peer's
  ERR_clear_error();
}

Status TlsSession::on_eof() {
  if (!error_.ok()) return error_;
  if (!handshake_done_) {
    if (role() == TlsRole::kClient) {
      return fail(Status::unavailable(
          "tls: the server closed the connection during the TLS handshake: does this port speak "
          "TLS, and does it accept our credentials?"));
    }
    return fail(Status::unavailable("tls: the client closed the connection during the handshake"));
  }
  peer_closed_ = true;
  return Status();
}

void TlsSession::collect_identity() {
  if (context_->uses_psk()) {
    peer_.psk_identity = std::string(kPskIdentity);
    return;
  }
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return;
  peer_.has_certificate = true;
  // A server verifies only with --client-cert-auth; a client always does (SSL_VERIFY_PEER).
  const bool checked = role() == TlsRole::kClient || context_->requires_client_cert();
  peer_.verified = checked && SSL_get_verify_result(ssl_) == X509_V_OK;
  X509_NAME* subject = X509_get_subject_name(cert);
  peer_.subject = x509_name_rfc2253(subject);
  peer_.common_name = x509_common_name(subject);
  auto* sans =
      static_cast<GENERAL_NAMES*>(X509_get_ext_d2i(cert, NID_subject_alt_name, nullptr, nullptr));
  if (sans == nullptr) return;
  for (int i = 0; i < sk_GENERAL_NAME_num(sans); ++i) {
    const GENERAL_NAME* gn = sk_GENERAL_NAME_value(sans, i);
    if (gn->type == GEN_DNS) {
      const ASN1_IA5STRING* s = gn->d.dNSName;
      peer_.dns_names.emplace_back(reinterpret_cast<const char*>(ASN1_STRING_get0_data(s)),
                                   static_cast<std::size_t>(ASN1_STRING_length(s)));
    } else if (gn->type == GEN_IPADD) {
      const ASN1_OCTET_STRING* s = gn->d.iPAddress;
      const int len = ASN1_STRING_length(s);
      char text[INET6_ADDRSTRLEN] = {};
      const int family = len == 4 ? AF_INET : len == 16 ? AF_INET6 : 0;
      if (family != 0 && inet_ntop(family, ASN1_STRING_get0_data(s), text, sizeof(text))) {
        peer_.ip_addresses.emplace_back(text);
      }
    }
  }
  GENERAL_NAMES_free(sans);
}

bool TlsSession::peer_certificate_names(std::string_view host_or_ip) const {
  if (!handshake_done_ || !peer_.verified) return false;
  X509* cert = SSL_get0_peer_certificate(ssl_);
  if (cert == nullptr) return false;
  const std::string name(host_or_ip);
  if (parse_ip(name)) return X509_check_ip_asc(cert, name.c_str(), 0) == 1;
  return X509_check_host(cert, name.data(), name.size(), 0, nullptr) == 1;
}

std::string TlsSession::describe_cipher() const {
  if (!handshake_done_) return {};
  return std::string(SSL_get_version(ssl_)) + " " + SSL_get_cipher_name(ssl_);
}

double estimate_secret_bits(std::string_view secret) {
  bool lower = false, upper = false, digit = false, symbol = false, other = false;
  bool hex_only = true;
  for (char ch : secret) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 'a' && c <= 'z') {
      lower = true;
    } else if (c >= 'A' && c <= 'Z') {
      upper = true;
    } else if (c >= '0' && c <= '9') {
      digit = true;
    } else if (c >= 0x20 && c < 0x7f) {
      symbol = true;
    } else {
      other = true;  // control or non-ASCII bytes: a binary secret
    }
    const bool hex = (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
    hex_only = hex_only && hex;
  }
  double alphabet = 0;
  if (hex_only && (lower || upper)) {
    alphabet = lower && upper ? 22 : 16;
  } else {
    alphabet = (lower ? 26 : 0) + (upper ? 26 : 0) + (digit ? 10 : 0) + (symbol ? 33 : 0) +
               (other ? 161 : 0);
  }
  if (alphabet < 2) return 0;
  // Characters that add (almost) nothing an attacker would not guess: a repeat of the one
  // before, the third of a run ("abc", "975"), and a 3-character run seen before ("abcabc").
  std::set<std::string_view> seen;
  std::size_t counted = 0;
  for (std::size_t i = 0; i < secret.size(); ++i) {
    bool counts = true;
    if (i >= 1 && secret[i] == secret[i - 1]) counts = false;
    if (i >= 2) {
      const int d1 =
          static_cast<unsigned char>(secret[i - 1]) - static_cast<unsigned char>(secret[i - 2]);
      const int d2 =
          static_cast<unsigned char>(secret[i]) - static_cast<unsigned char>(secret[i - 1]);
      if (d1 == d2 && (d1 == 1 || d1 == -1)) counts = false;
      if (!seen.insert(secret.substr(i - 2, 3)).second) counts = false;
    }
    if (counts) ++counted;
  }
  return static_cast<double>(counted) * std::log2(alphabet);
}

Status check_secret_strength(std::string_view secret) {
  const double bits = estimate_secret_bits(secret);
  if (bits >= 128) return Status();
  // Never the secret itself in the message: it may reach a log.
  return Status::invalid_argument(
      "the shared secret is too weak: an estimated " + std::to_string(static_cast<int>(bits)) +
      " bits of entropy (" + std::to_string(secret.size()) +
      " characters), at least 128 needed; make one with `openssl rand -hex 32`");
}

}  // namespace kvc::net
