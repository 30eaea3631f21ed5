// Text helpers shared by the tools' output: UTF-8 validation, base64, and durations as flags
// spell them ("500ms", "5s", "2m"). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc {

bool is_valid_utf8(std::string_view s);
// Length (1..4) of the well-formed UTF-8 sequence starting at s[i] (i < s.size()), or 0 when
// there is none: no overlong forms, no surrogates, nothing above U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// "250ms", "5s", "1.5s", "2m", "1h"; a bare number means seconds. Returns milliseconds.
Result<std::uint64_t> parse_duration_ms(std::string_view text);

}  // namespace kvc
