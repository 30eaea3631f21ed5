// SHA-256 (FIPS 180-4) and HMAC-SHA-256 (RFC 2104), written here so that kvc's shared-secret
// authentication (wire/auth.h) needs no crypto library, plus a constant-time comparison for
// checking MACs. Not meant for bulk hashing speed (a plain portable implementation) and not a
// general crypto toolkit: only what the handshake needs. Values and pure functions; thread-safe.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvc::sha256 {

inline constexpr std::size_t kDigestBytes = 32;
inline constexpr std::size_t kBlockBytes = 64;
using Digest = std::array<std::uint8_t, kDigestBytes>;

// Incremental hashing: update() any number of times, then finish() once.
class Hasher {
 public:
  Hasher();
  void update(const void* data, std::size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Digest finish();

 private:
  void compress(const std::uint8_t* block);

  std::array<std::uint32_t, 8> state_;
  std::array<std::uint8_t, kBlockBytes> buffer_{};
  // Invariant: buffered_ < kBlockBytes between calls; total_bytes_ counts every byte fed.
  std::size_t buffered_ = 0;
  std::uint64_t total_bytes_ = 0;
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
