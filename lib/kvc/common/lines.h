// Splitting text into lines, for the line-oriented files and outputs kvc reads: the identity and
// repair files (storage/checked_fields.h), tool and log output in tests. Header-only, pure;
// thread-safe.
#pragma once

#include <string_view>
#include <vector>

namespace kvc {

// The lines of `text` without their '\n', as views into `text`. A last line without a '\n'
// counts; a '\n' at the very end does not start an empty line. Empty lines between are kept.
inline std::vector<std::string_view> split_lines(std::string_view text) {
  std::vector<std::string_view> lines;
  std::size_t pos = 0;
  while (pos < text.size()) {
    std::size_t eol = text.find('\n', pos);
    if (eol == std::string_view::npos) eol = text.size();
    lines.push_back(text.substr(pos, eol - pos));
    pos = eol + 1;
  }
  return lines;
}

}  // namespace kvc
