// Text helpers the tests share (STYLE.md, section 8: one copy of each): a whole file as a
// string (a member's log), and plain substring searches over it. Header-only; thread-safe.
#pragma once

#include <cstddef>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>

namespace kvc::test {

// The file's contents; empty when it cannot be read (a log not yet created).
inline std::string read_file(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

inline bool contains(std::string_view haystack, std::string_view needle) {
  return haystack.find(needle) != std::string_view::npos;
}

// How many times `needle` occurs in `haystack` (overlapping occurrences count).
inline std::size_t count_of(std::string_view haystack, std::string_view needle) {
  std::size_t n = 0;
  for (std::size_t at = haystack.find(needle); at != std::string_view::npos;
       at = haystack.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

}  // namespace kvc::test
