// What the offline tools' commands share (kvc-wal's in wal_tool.h, `kvc-snap check` in
// state_tool.h): where output goes, the text and JSON forms of values, and a progress line on
// stderr. Not thread-safe (one command per process).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

#include "kvc/common/json.h"

namespace kvc::storage {

// The offline tools' own exit codes, next to the shared ones of status.h (kvc-wal(1),
// kvc-snap(1)).
inline constexpr int kExitTornTail = 7;      // the log ends in a torn tail (snapshot: truncated)
inline constexpr int kExitCorruption = 8;    // a record or file failed its checks
inline constexpr int kExitInconsistent = 9;  // the files disagree (consistency.h)

enum class OutputFormat : std::uint8_t { kSimple, kJson };

struct ToolContext {
  std::FILE* out = stdout;   // data
  std::FILE* err = stderr;   // diagnostics, warnings, progress, prompts
  std::FILE* in = stdin;     // the answer to repair's question
  bool interactive = false;  // stdin and stderr are terminals: repair may ask
  bool progress = false;     // show progress on `err` (both terminals, or --progress)
  OutputFormat format = OutputFormat::kSimple;
  const char* tool = "kvc-wal";  // names the program in messages
};

// How values are shown. Text: valid UTF-8 in double quotes with \" \\ and control characters
// escaped (\n, \t, \r, \xNN); anything else as 0x followed by hex.
std::string text_value(std::string_view bytes);

void print(std::FILE* f, const std::string& s);

// "\r<tool>: <what> 12.0 MiB of 64.0 MiB (18%)" on ctx.err when ctx.progress, at most every
// 100 ms; `units` names what is counted ("bytes" are shown as sizes, anything else as counts).
class Progress {
 public:
  Progress(const ToolContext& ctx, std::string what, std::string units = "bytes")
      : ctx_(ctx), what_(std::move(what)), units_(std::move(units)) {}
  ~Progress() { clear(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(std::uint64_t done, std::uint64_t total);
  void clear();

 private:
  std::string amount(std::uint64_t n) const;

  const ToolContext& ctx_;
  std::string what_;
  std::string units_;
  bool shown_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace kvc::storage
