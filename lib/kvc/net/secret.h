// Handling of the shared secret and the key derived from it (docs/security.md, "Secrets"):
// reading the secret file, wiping copies once they are used, and a small buffer for key bytes
// that stays out of core dumps and swap. No cryptography here: the key derivation is OpenSSL's
// (tls.cc). Thread-safety: functions are thread-safe; a SecretBytes is a value with one owner.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc::net {

inline constexpr std::size_t kMaxSecretBytes = 64u << 10;

// Reads a secret file: refused when it is not a regular file, is accessible by group or others
// (like ssh keys: chmod 600), is empty, or is larger than kMaxSecretBytes. One trailing newline
// ("\n" or "\r\n") is stripped. Every error names the file, never its contents. The read
// buffers are wiped; the caller owns the returned copy and should wipe() it once used.
Result<std::string> load_secret_file(const std::string& path);

// Overwrites the string's bytes with zeros in a way the compiler cannot elide
// (OPENSSL_cleanse), then empties it.
void wipe(std::string& s);

// Key material (a secret, a derived key) in its own anonymous mapping: excluded from core dumps
// (MADV_DONTDUMP) and, when the RLIMIT_MEMLOCK allows, locked in memory (mlock: never
// swapped). Both are best effort: where the kernel refuses, the bytes are still wiped on
// destruction. Move-only.
class SecretBytes {
 public:
  SecretBytes() = default;
  // Copies `bytes` into whole pages of their own.
  explicit SecretBytes(std::string_view bytes);
  ~SecretBytes();
  SecretBytes(SecretBytes&& o) noexcept;
  SecretBytes& operator=(SecretBytes&& o) noexcept;
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;

  std::string_view view() const { return {data_, size_}; }
  bool empty() const { return size_ == 0; }
  // Whether the kernel took the madvise(MADV_DONTDUMP) and mlock requests (tests, logs).
  bool excluded_from_dumps() const { return dontdump_; }
  bool locked() const { return locked_; }

 private:
  void release();

  char* data_ = nullptr;  // pages from mmap, or null
  std::size_t size_ = 0;
  std::size_t mapped_ = 0;  // bytes mapped: size_ rounded up to whole pages
  bool dontdump_ = false;
  bool locked_ = false;
};

}  // namespace kvc::net
