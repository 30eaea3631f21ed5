// Process-wide logging setup: spdlog to stderr (or a file), as text or one JSON object per line.
// Called once by each binary's main before any work; libraries below `server` log through
// spdlog's default logger (raft/ logs through an injected raft::Logger instead). Not
// thread-safe to call concurrently with logging; call it first.
#pragma once

#include <string>

#include "kvc/common/status.h"
#include "kvc/common/text.h"  // json_escape, which JSON log lines use

namespace kvc {

struct LogOptions {
  std::string level = "info";   // trace|debug|info|warn|error|critical|off
  std::string format = "text";  // text|json
  std::string file;             // empty: stderr
};

// Installs the default logger. Fails on an unknown level or format, or an unwritable file.
Status setup_logging(const LogOptions& options);

}  // namespace kvc
