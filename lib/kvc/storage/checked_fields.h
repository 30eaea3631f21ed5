// The form of the small text files kvc-node keeps beside its data, the identity file
// (data_dir.h) and the repair file (repair_file.h): key=value lines (blank lines and '#'
// comments skipped; a value may hold '='), then a last line "crc32c=<8 hex digits>" over all
// that comes before it, so that an edited or torn file is refused. kvc-node(1), FILES. What the
// keys mean is the caller's business. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::storage {

// `body` (whole lines, each ending in '\n') followed by its crc32c line.
std::string seal_fields(std::string body);

// One key=value line of a checked file; views into the text given to parse_checked_fields.
using CheckedField = std::pair<std::string_view, std::string_view>;

// Checks the crc32c line of `text` and returns its fields in file order. Errors are
// kCorruption with a short reason for the caller to put in context: "no crc32c line",
// "bad crc32c 'X'", "checksum mismatch", "malformed line 'X'".
Result<std::vector<CheckedField>> parse_checked_fields(std::string_view text);

}  // namespace kvc::storage
