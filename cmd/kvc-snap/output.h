// kvc-snap's presentation: text escaping, JSON fields, and a progress bar on stderr that shows
// only on an interactive terminal. Nothing here reads snapshots (that is kvc_storage).
// Not thread-safe; used by the main thread of kvc-snap only.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>

namespace kvc::snap {

// Text for the simple output (kvc::terminal_cell): valid UTF-8 printed as is, except that
// '\\', tab, newline, carriage return and other control characters are escaped (\\, \t, \n,
// \r, \xNN), as is every byte that is not part of valid UTF-8 (\xNN). One line stays one line.
std::string escape_text(std::string_view s);
std::string hex32(std::uint32_t v);
// "2026-11-25T10:00:00Z" (UTC) from milliseconds since the epoch.
std::string utc_time(std::uint64_t unix_ms);
// A word safe to paste into a POSIX shell (quoted when it needs to be).
std::string shell_quote(std::string_view s);

// "[#####     ]  48%  LABEL" redrawn in place on stderr, at most every 100 ms, when both
// stdout and stderr are terminals (someone is watching; a script or a redirect is not);
// otherwise silent.
class Progress {
 public:
  explicit Progress(std::string label);
  ~Progress() { done(); }
  Progress(const Progress&) = delete;
  Progress& operator=(const Progress&) = delete;

  void update(std::uint64_t done, std::uint64_t total);
  // Erases the bar.
  void done();

 private:
  std::string label_;
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace kvc::snap
