// A trace's fingerprint for the pinned-trace tests of both simulations: FNV-1a over the lines,
// each with its newline.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvc::sim::trace_testing {

inline std::uint64_t trace_hash(const std::vector<std::string>& lines) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  for (const std::string& l : lines) {
    for (char c : l + "\n") {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ull;
    }
  }
  return h;
}

}  // namespace kvc::sim::trace_testing
