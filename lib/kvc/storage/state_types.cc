#include "kvc/storage/state_types.h"

#include "kvc/common/coding.h"

namespace kvc::storage {

void StateHasher::mix(const void* data, std::size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  std::uint64_t h = h_;
  for (std::size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ull;
  }
  h_ = h;
}

void StateHasher::mix_u64(std::uint64_t v) {
  char b[8];
  store_u64_le(b, v);
  mix(b, sizeof b);
}

void StateHasher::add(const KeyValue& kv) {
  mix_u64(kv.key.size());
  mix(kv.key.data(), kv.key.size());
  mix_u64(kv.value.size());
  mix(kv.value.data(), kv.value.size());
  mix_u64(kv.create_revision);
  mix_u64(kv.mod_revision);
  mix_u64(kv.version);
}

void StateHasher::add_lease(const Lease& lease) {
  mix("L", 1);
  mix_u64(lease.id);
  mix_u64(lease.ttl);
  mix_u64(lease.granted_index);
  mix_u64(lease.keys.size());
  for (const std::string& k : lease.keys) {
    mix_u64(k.size());
    mix(k.data(), k.size());
  }
}

std::uint64_t StateHasher::finish(std::uint64_t applied_index) const {
  StateHasher copy = *this;
  copy.mix_u64(applied_index);
  return copy.h_;
}

}  // namespace kvc::storage
