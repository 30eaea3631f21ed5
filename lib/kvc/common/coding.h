// Fixed-width integer encoding: the one place that turns 32- and 64-bit unsigned integers into
// bytes and back, little-endian (the WAL, snapshot, state and ConfChange formats, kvc-wal(5),
// kvc-snap(5)) or big-endian (frame lengths on the wire, event keys that must sort by revision
// in LMDB). Byte by byte, so the result does not depend on the host's byte order or alignment.
// put_* appends to a string, store_* writes in place, get_* reads; the caller checks that the
// bytes are there. Header-only and pure; thread-safe; part of kvc_base, so raft/ may use it.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace kvc {

namespace coding_detail {

template <typename T, bool kBigEndian>
constexpr void store(char* p, T v) {
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    const std::size_t shift = 8 * (kBigEndian ? sizeof(T) - 1 - i : i);
    p[i] = static_cast<char>(static_cast<unsigned char>((v >> shift) & 0xff));
  }
}

template <typename T, bool kBigEndian>
constexpr T load(const char* p) {
  T v = 0;
  for (std::size_t i = 0; i < sizeof(T); ++i) {
    const std::size_t shift = 8 * (kBigEndian ? sizeof(T) - 1 - i : i);
    v |= static_cast<T>(static_cast<T>(static_cast<unsigned char>(p[i])) << shift);
  }
  return v;
}

template <typename T, bool kBigEndian>
void append(std::string& out, T v) {
  char b[sizeof(T)];
  store<T, kBigEndian>(b, v);
  out.append(b, sizeof(T));
}

}  // namespace coding_detail

// Little-endian.
constexpr void store_u32_le(char* p, std::uint32_t v) {
  coding_detail::store<std::uint32_t, false>(p, v);
}
constexpr void store_u64_le(char* p, std::uint64_t v) {
  coding_detail::store<std::uint64_t, false>(p, v);
}
constexpr std::uint32_t get_u32_le(const char* p) {
  return coding_detail::load<std::uint32_t, false>(p);
}
constexpr std::uint64_t get_u64_le(const char* p) {
  return coding_detail::load<std::uint64_t, false>(p);
}
inline void put_u32_le(std::string& out, std::uint32_t v) {
  coding_detail::append<std::uint32_t, false>(out, v);
}
inline void put_u64_le(std::string& out, std::uint64_t v) {
  coding_detail::append<std::uint64_t, false>(out, v);
}
// `v` as the 8 bytes of its little-endian form.
inline std::string u64_le_bytes(std::uint64_t v) {
  std::string s;
  put_u64_le(s, v);
  return s;
}

// Big-endian (network order; keys that sort numerically as bytes).
constexpr void store_u32_be(char* p, std::uint32_t v) {
  coding_detail::store<std::uint32_t, true>(p, v);
}
constexpr void store_u64_be(char* p, std::uint64_t v) {
  coding_detail::store<std::uint64_t, true>(p, v);
}
constexpr std::uint32_t get_u32_be(const char* p) {
  return coding_detail::load<std::uint32_t, true>(p);
}
constexpr std::uint64_t get_u64_be(const char* p) {
  return coding_detail::load<std::uint64_t, true>(p);
}
inline void put_u32_be(std::string& out, std::uint32_t v) {
  coding_detail::append<std::uint32_t, true>(out, v);
}
inline void put_u64_be(std::string& out, std::uint64_t v) {
  coding_detail::append<std::uint64_t, true>(out, v);
}

}  // namespace kvc
