// SHA-256 and HMAC-SHA-256 for kvc's shared-secret authentication (wire/auth.h), plus a
// constant-time comparison for checking MACs. A thin layer over OpenSSL's EVP functions (libcrypto)
// so that callers need not handle OpenSSL's contexts or error queue; kvc keeps no cryptographic
// code of its own. Not a general crypto toolkit: only what the handshake and tests need. Values
// and pure functions; a Hasher is single-threaded, everything else is thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

// OpenSSL's digest context, kept opaque here so that this header does not pull in OpenSSL's.
struct evp_md_ctx_st;

namespace kvc::sha256 {

inline constexpr std::size_t kDigestBytes = 32;
inline constexpr std::size_t kBlockBytes = 64;
using Digest = std::array<std::uint8_t, kDigestBytes>;

// Incremental hashing: update() any number of times, then finish() once.
class Hasher {
 public:
  Hasher();
  ~Hasher();
  Hasher(Hasher&&) noexcept;
  Hasher& operator=(Hasher&&) noexcept;

  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Digest finish();

 private:
  struct FreeCtx {
    void operator()(evp_md_ctx_st* ctx) const;
  };
  std::unique_ptr<evp_md_ctx_st, FreeCtx> ctx_;
  bool finished_ = false;
};

Digest hash(std::string_view data);

// HMAC-SHA-256 of `message` under `key` (any length; keys longer than a block are hashed).
Digest hmac(std::string_view key, std::string_view message);

// Lowercase hex of a digest (tests, logs of non-secret values).
std::string to_hex(const Digest& d);
inline std::string to_bytes(const Digest& d) { return std::string(d.begin(), d.end()); }

// True when a and b are equal; the time taken depends only on the lengths, not on where the
// bytes differ (a MAC check must not tell an attacker how many leading bytes were right).
bool constant_time_equal(std::string_view a, std::string_view b);

}  // namespace kvc::sha256
