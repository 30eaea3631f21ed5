// Identities and the permissions file (kvc-node --permissions-file; the format is in
// kvc-permissions(5)): who a connection is, and what each identity may do. An identity is a
// verified client certificate's subject ("CN=ops,O=kvc"), a named token the client presented,
// `secret` (whoever holds the cluster's shared secret), `anonymous` (plaintext, no credentials),
// or `embedded` (the program that embeds the Engine; never checked). The file names tokens by
// the SHA-256 of their value (a member never stores a token itself), grants `read` or
// `readwrite` on key prefixes to identities and, separately, `admin` (membership, leader
// transfer, snapshot save, force operations). Without a file every identity may do everything
// (kvc's behaviour before permissions); with one, what it does not grant is denied.
//
// This module is pure: it parses text, matches prefixes and says which checks a client-protocol
// request needs (required_access); the engine calls it on the loop thread before anything is
// read or proposed (client_sessions.cc, http_backend.cc). Values; thread-compatible.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/wire/messages.h"

namespace kvc::server {

// The identities that are not certificate subjects or tokens.
inline constexpr std::string_view kIdentitySecret = "secret";
inline constexpr std::string_view kIdentityAnonymous = "anonymous";
inline constexpr std::string_view kIdentityEmbedded = "embedded";

enum class Access : std::uint8_t {
  kAuthenticated,  // any identity the member accepted (status, whoami, leader, member list)
  kRead,           // a grant of read or readwrite covering the key or prefix
  kReadWrite,      // a grant of readwrite covering the key or prefix
  kAnyWrite,       // readwrite on some prefix (lease grant and keep-alive touch no key)
  kAdmin,          // an admin line
};

// One check a request needs: `what` names the operation for the refusal ("put", "txn put",
// "range prefix"); `key` the key or prefix (empty with kAuthenticated/kAnyWrite/kAdmin).
struct AccessCheck {
  Access access = Access::kAuthenticated;
  std::string what;
  std::string key;
};

// The checks a client-protocol request needs, in the order they are made. Reads (get, range,
// watch, txn get and compares) need read on the key or prefix; writes (put, cas, delete, txn
// put and delete) readwrite on every key or prefix they touch; membership, leader transfer and
// snapshot save admin. A lease revoke deletes the lease's keys: the caller adds a readwrite
// check for each (lease_revoke_checks).
std::vector<AccessCheck> required_access(const wire::Request& req);
std::vector<AccessCheck> lease_revoke_checks(const std::vector<std::string>& keys);

// The lowercase hex SHA-256 of a token's value (OpenSSL's EVP), as the file holds it.
std::string token_digest(std::string_view token);

class Permissions {
 public:
  // Parses a permissions file's text; every error names `file`, the line and what is wrong
  // ("/etc/kvc/perms:3: grant: unknown access 'write' (read or readwrite)").
  static Result<Permissions> parse(std::string_view text, const std::string& file);
  // Reads and parses `path`.
  static Result<Permissions> load(const std::string& path);

  // The name of the token whose value is `token` (digests compared in constant time), or
  // kUnauthenticated: "unknown token".
  Result<std::string> token_name(std::string_view token) const;
  bool has_tokens() const { return !tokens_.empty(); }

  // Whether `identity` may make one check.
  bool allows(std::string_view identity, const AccessCheck& check) const;
  bool is_admin(std::string_view identity) const { return admins_.count(std::string(identity)); }
  // For whoami: "readwrite /clusters/", "read /", "admin", in the file's order.
  std::vector<std::string> describe(std::string_view identity) const;

 private:
  struct Token {
    std::string name;
    std::array<unsigned char, 32> digest{};
  };
  struct Grant {
    std::string prefix;
    bool write = false;
  };
  std::vector<Token> tokens_;
  std::map<std::string, std::vector<Grant>, std::less<>> grants_;
  std::set<std::string, std::less<>> admins_;
};

// The refusal a user sees: "permission denied: IDENTITY may not WHAT KEY" (code
// kPermissionDenied; kvc-ctl exits 1, HTTP answers 403).
Status permission_denied(std::string_view identity, const AccessCheck& check);

}  // namespace kvc::server
