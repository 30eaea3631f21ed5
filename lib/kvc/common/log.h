// Process-wide logging setup: spdlog to stderr (or a file), as text or one JSON object per line.
// Called once by each binary's main before any work; libraries below `server` log through
// spdlog's default logger (raft/ logs through an injected raft::Logger instead). Not
// thread-safe to call concurrently with logging; call it first.
#pragma once

#include <string>

#include "kvc/common/status.h"

namespace kvc {

struct LogOptions {
  std::string level = "info";   // trace|debug|info|warn|error|critical|off
  std::string format = "text";  // text|json
  std::string file;             // empty: stderr
};

// Installs the default logger. Fails on an unknown level or format, or an unwritable file.
Status setup_logging(const LogOptions& options);

// Escapes `s` for use inside a JSON string (quotes, backslashes, control characters; invalid
// UTF-8 bytes become \u00XX of the byte, so the output is always valid JSON).
std::string json_escape(std::string_view s);

}  // namespace kvc
