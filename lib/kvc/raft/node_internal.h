// Helpers shared by the files of raft::Node (internal to raft/).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include "kvc/common/coding.h"

namespace kvc::raft {

// The read index request's context: the sequence number of the batch, 8 bytes little-endian.
inline std::string encode_seq(std::uint64_t seq) { return u64_le_bytes(seq); }
inline std::optional<std::uint64_t> decode_seq(const std::string& s) {
  if (s.size() != 8) return std::nullopt;
  return get_u64_le(s.data());
}

}  // namespace kvc::raft
