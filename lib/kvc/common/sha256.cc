#include "kvc/common/sha256.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "kvc/common/check.h"
#include "kvc/common/text.h"

namespace kvc::sha256 {

// OpenSSL fails these calls only when it cannot allocate or its provider is missing: nothing a
// caller could handle, and a MAC computed wrongly must never be used, so a failure aborts.

void Hasher::FreeCtx::operator()(evp_md_ctx_st* ctx) const { EVP_MD_CTX_free(ctx); }

Hasher::Hasher() : ctx_(EVP_MD_CTX_new()) {
  KVC_CHECK(ctx_ != nullptr, "EVP_MD_CTX_new failed");
  KVC_CHECK(EVP_DigestInit_ex(ctx_.get(), EVP_sha256(), nullptr) == 1,
            "EVP_DigestInit_ex(sha256) failed");
}

Hasher::~Hasher() = default;
Hasher::Hasher(Hasher&&) noexcept = default;
Hasher& Hasher::operator=(Hasher&&) noexcept = default;

void Hasher::update(const void* data, std::size_t n) {
  KVC_CHECK(!finished_, "sha256::Hasher::update after finish");
  if (n == 0) return;
  KVC_CHECK(EVP_DigestUpdate(ctx_.get(), data, n) == 1, "EVP_DigestUpdate failed");
}

Digest Hasher::finish() {
  KVC_CHECK(!finished_, "sha256::Hasher::finish called twice");
  finished_ = true;
  Digest out{};
  unsigned int len = 0;
  KVC_CHECK(EVP_DigestFinal_ex(ctx_.get(), out.data(), &len) == 1 && len == kDigestBytes,
            "EVP_DigestFinal_ex failed");
  return out;
}

Digest hash(std::string_view data) {
  Digest out{};
  unsigned int len = 0;
  KVC_CHECK(EVP_Digest(data.data(), data.size(), out.data(), &len, EVP_sha256(), nullptr) == 1 &&
                len == kDigestBytes,
            "EVP_Digest(sha256) failed");
  return out;
}

Digest hmac(std::string_view key, std::string_view message) {
  Digest out{};
  unsigned int len = 0;
  // HMAC() wants a non-null key pointer even for an empty key.
  static const unsigned char kEmpty = 0;
  const void* k = key.empty() ? &kEmpty : static_cast<const void*>(key.data());
  const unsigned char* m =
      message.empty() ? &kEmpty : reinterpret_cast<const unsigned char*>(message.data());
  KVC_CHECK(HMAC(EVP_sha256(), k, static_cast<int>(key.size()), m, message.size(), out.data(),
                 &len) != nullptr &&
                len == kDigestBytes,
            "HMAC(sha256) failed");
  return out;
}

std::string to_hex(const Digest& d) {
  return hex_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  if (a.empty()) return true;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace kvc::sha256
