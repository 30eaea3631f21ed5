// CRC32C (Castagnoli), the checksum of every WAL record, snapshot block and wire-format check.
// Uses the SSE4.2 crc32 instruction when the CPU has it, else a table. Stateless and
// thread-safe. Values match RFC 3720 (iSCSI): crc32c("123456789") == 0xe3069283.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace kvc::crc32c {

// Extends `crc` (the value returned for the bytes before) over `data`. Start with 0.
std::uint32_t extend(std::uint32_t crc, const void* data, std::size_t n);

inline std::uint32_t value(const void* data, std::size_t n) { return extend(0, data, n); }
inline std::uint32_t value(std::string_view s) { return extend(0, s.data(), s.size()); }

// A stored CRC is masked so that a CRC computed over data that embeds CRCs stays strong
// (the same rotation-and-add trick as LevelDB's log format). Formats say when they mask.
inline std::uint32_t mask(std::uint32_t crc) { return ((crc >> 15) | (crc << 17)) + 0xa282ead8u; }
inline std::uint32_t unmask(std::uint32_t masked) {
  const std::uint32_t rot = masked - 0xa282ead8u;
  return (rot >> 17) | (rot << 15);
}

namespace detail {
// The table-driven path, always compiled; exposed so tests can compare it with the hardware one.
std::uint32_t extend_portable(std::uint32_t crc, const void* data, std::size_t n);
}  // namespace detail

}  // namespace kvc::crc32c
