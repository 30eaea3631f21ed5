// The TLS engine that kvc's listeners (peer, client, HTTP) and the client library share:
// OpenSSL driven through a BIO that reads from and writes to memory, so it does no I/O of its own
// and runs on a libuv loop like the rest of net/. The caller moves bytes: what arrives from the
// network goes into feed(), what take_output() returns goes out, and plaintext goes in through
// write() and out through read_plaintext(). Nothing here opens a socket, reads a clock or starts a
// thread.
//
// Two ways to authenticate, chosen by TlsConfig (never both in one context):
// - certificates (TLS 1.2 at least): the server presents --cert-file/--key-file; a client checks
//   it against --trusted-ca-file (or the system's roots) and the name it dialled; with
//   --client-cert-auth the server requires and verifies a client certificate too;
// - a shared secret (TLS 1.3 only) used as an external pre-shared key with identity kPskIdentity:
//   both sides prove they hold the secret, every record is encrypted and authenticated, and the
//   ECDHE exchange that TLS 1.3 adds keeps recorded traffic safe if the secret leaks later. No
//   certificate is involved.
// A TlsContext is immutable and shared (shared_ptr): reloading certificates builds a new one for
// new sessions while open sessions keep theirs.
//
// Who uses it: net::Connection (client and peer ports, the client library) and the HTTP server
// drive a TlsSession each; the server builds the contexts from its flags and swaps in new ones
// on SIGHUP (server/client_sessions.cc, reload_tls). The listeners' handshake time limit
// (--handshake-timeout) covers the TLS handshake with the kvc one (docs/security.md).
//
// Thread-safety: a TlsContext may be shared by sessions on any threads; a TlsSession is used by
// one thread at a time.
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/net/secret.h"

// OpenSSL's types, opaque here so that this header does not pull in OpenSSL's headers.
struct ssl_st;
struct ssl_ctx_st;
struct bio_st;

namespace kvc::net {

// The PSK identity both sides name when a shared secret is the key. The version lets a later
// change of the key derivation (tls.cc, psk_from_secret) be told apart from a wrong secret.
inline constexpr std::string_view kPskIdentity = "kvc-psk-v1";

enum class TlsRole { kClient, kServer };

// How a context authenticates (see the file comment). Flag names are etcd's: --cert-file,
// --key-file, --trusted-ca-file, --client-cert-auth (and the --peer-* variants).
struct TlsConfig {
  std::string cert_file;          // PEM; the leaf first, then any intermediates
  std::string key_file;           // PEM private key of cert_file
  std::string trusted_ca_file;    // PEM CAs to verify the other side; client: empty = system roots
  bool client_cert_auth = false;  // server: require a client certificate signed by a trusted CA
  // Non-empty: authenticate by this shared secret as a TLS 1.3 external PSK instead of
  // certificates. The key is derived from it (HMAC-SHA-256), never the secret itself.
  std::string secret;
  // Server, with client_cert_auth: ask for a client certificate and verify one that is sent, but
  // let a client without one finish the handshake (peer() then has no certificate, and the
  // owner decides what it may do): the HTTP port, whose open paths need no credentials and
  // whose /v1 takes a Bearer token as well as a certificate.
  bool client_cert_optional = false;
};

class TlsContext {
 public:
  // Loads the files the config names and checks they fit together. Errors name the file and
  // OpenSSL's reason: "tls: cert file /etc/kvc/a.pem: no such file or directory".
  static Result<std::shared_ptr<const TlsContext>> create(TlsRole role, const TlsConfig& config);
  ~TlsContext();
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;

  TlsRole role() const { return role_; }
  bool uses_psk() const { return !psk_.empty(); }
  bool requires_client_cert() const { return client_cert_auth_; }

 private:
  friend class TlsSession;
  friend struct TlsCallbacks;  // OpenSSL's callbacks, in tls.cc
  TlsContext() = default;

  TlsRole role_ = TlsRole::kClient;
  ssl_ctx_st* ctx_ = nullptr;  // owned
  // The 32-byte key derived from the secret (kept out of core dumps, wiped when the context
  // goes); empty when certificates are used.
  SecretBytes psk_;
  bool client_cert_auth_ = false;
};

// Who the other side proved to be, once the handshake is done.
struct TlsPeerIdentity {
  std::string psk_identity;  // set when a shared secret authenticated the session
  // From the peer's certificate, when it sent one (a server always does in certificate mode; a
  // client does with --client-cert-auth). `verified`: its chain checked against the trusted CAs.
  bool has_certificate = false;
  bool verified = false;
  std::string subject;                    // RFC 2253 one-line form: "CN=member-1,O=kvc"
  std::string common_name;                // the subject's CN, or empty
  std::vector<std::string> dns_names;     // subjectAltName DNS entries
  std::vector<std::string> ip_addresses;  // subjectAltName IP entries, textual ("127.0.0.1")

  // For logs and `auth whoami`: "psk:kvc-psk-v1", "CN=member-1,O=kvc" or "anonymous".
  std::string describe() const;
};

// Whether bytes from the network begin like a TLS record (handshake or alert, version 3.x).
enum class TlsSniff { kNeedMore, kTls, kPlaintext };
TlsSniff looks_like_tls(std::string_view first_bytes);

// One TLS connection's state. Order: create(); the client's ClientHello is in take_output()
// at once; then, as bytes arrive, feed() them and send whatever take_output() returns (after
// every feed(), write() and close_notify()). write() before the handshake is done is buffered
// and sent once it completes. After error() turns non-ok, take_output() may still hold an alert
// for the peer: send it, then close the connection.
class TlsSession {
 public:
  // `expected_name` (client only): the host name or IP address the server's certificate must
  // name; empty checks the chain but no name (the caller then checks peer() itself). Ignored
  // with a shared secret, where holding the key is the proof.
  static Result<std::unique_ptr<TlsSession>> create(std::shared_ptr<const TlsContext> context,
                                                    std::string expected_name = {});
  ~TlsSession();
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;

  // Consumes ciphertext from the network: advances the handshake, decrypts application data
  // for read_plaintext(). Returns error() (a failure is final: later calls return it again).
  Status feed(std::string_view ciphertext);
  // Encrypts plaintext for take_output() (buffered until the handshake is done).
  Status write(std::string_view plaintext);
  // The ciphertext to send, emptied by the call.
  std::string take_output();
  // The same, appended to `out` (moved in whole when `out` is empty): no buffer per record.
  // Returns how many bytes it appended.
  std::size_t append_output(std::string& out);
  // Appends the plaintext received so far to `out`; returns how many bytes it appended.
  std::size_t read_plaintext(std::string& out);
  // Queues a close_notify alert (take_output()); no write() may follow. Before the handshake
  // is done there is nothing to close: writes buffered so far are dropped.
  void close_notify();
  // The connection ended (EOF) before the other side's close_notify: during the handshake this
  // sets and returns an error that says so (no hang, no "outcome unknown"); after it, a
  // truncation the caller may treat like any closed connection.
  Status on_eof();

  bool handshake_done() const { return handshake_done_; }
  bool peer_closed() const { return peer_closed_; }
  const Status& error() const { return error_; }
  TlsRole role() const { return context_->role(); }
  // Valid once handshake_done().
  const TlsPeerIdentity& peer() const { return peer_; }
  // Whether the peer's verified certificate names `host_or_ip` (a SAN, as OpenSSL's
  // X509_check_host / X509_check_ip_asc match it): how a server checks that a peer's client
  // certificate names the address it claims.
  bool peer_certificate_names(std::string_view host_or_ip) const;
  // "TLSv1.3 TLS_AES_128_GCM_SHA256" once the handshake is done.
  std::string describe_cipher() const;

 private:
  friend struct TlsCallbacks;
  explicit TlsSession(std::shared_ptr<const TlsContext> context);

  Status drive();
  Status flush_pending_writes();
  Status fail(Status status);
  Status handshake_error(int ssl_error);
  void collect_identity();

  std::shared_ptr<const TlsContext> context_;
  ssl_st* ssl_ = nullptr;  // owned; owns bio_
  // OpenSSL's only BIO, both ways (tls.cc, the BIO method): it reads from in_ and appends what
  // OpenSSL writes to out_. Unlike a pair of memory BIOs, no byte is copied through OpenSSL's
  // buffers on its way in or out, and no BIO_ctrl call is made per record to find the output.
  bio_st* bio_ = nullptr;
  std::string_view in_;  // what OpenSSL reads next: the bytes feed() was given, or in_kept_
  std::string in_kept_;  // bytes fed but not yet read by OpenSSL (kept across feed() calls)
  std::string out_;      // ciphertext for take_output()
  std::string expected_name_;
  std::string head_;  // the first bytes received, until looks_like_tls() decides
  bool sniffed_ = false;
  std::string pending_write_;         // plaintext written before the handshake completed
  std::string plaintext_;             // decrypted, not yet read
  std::string offered_psk_identity_;  // server: the identity the client offered, for messages
  bool handshake_done_ = false;
  bool peer_closed_ = false;
  bool closing_ = false;
  Status error_;
  TlsPeerIdentity peer_;
};

// Refuses a shared secret with an estimated entropy under 128 bits, with a message that says
// how to make a good one (`openssl rand -hex 32`). The estimate is an upper bound: length times
// the bits per character of the character classes used (hex digits alone count 4 bits), where
// a character that repeats or continues the one before it, or repeats an earlier 3-character
// run, counts nothing. It cannot tell a random string from a memorable one of the same shape,
// so it refuses the clearly weak rather than proving strength.
Status check_secret_strength(std::string_view secret);
// The estimate check_secret_strength() compares with 128 (for tests and messages).
double estimate_secret_bits(std::string_view secret);

}  // namespace kvc::net
