// Text helpers shared by the tools' output: UTF-8 validation, base64, and durations as flags
// spell them ("500ms", "5s", "2m"). Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc {

bool is_valid_utf8(std::string_view s);
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// "250ms", "5s", "1.5s", "2m", "1h"; a bare number means seconds. Returns milliseconds.
Result<std::uint64_t> parse_duration_ms(std::string_view text);

}  // namespace kvc
