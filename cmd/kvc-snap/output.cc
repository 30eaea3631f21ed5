#include "output.h"

#include <unistd.h>

#include <cstdio>
#include <ctime>

#include "kvc/common/text.h"

namespace kvc::snap {

std::string escape_text(std::string_view s) { return kvc::terminal_cell(s); }

std::string hex32(std::uint32_t v) { return kvc::u32_hex(v); }

std::string utc_time(std::uint64_t unix_ms) {
  const std::time_t t = static_cast<std::time_t>(unix_ms / 1000);
  std::tm tm{};
  if (gmtime_r(&t, &tm) == nullptr) return "-";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

std::string shell_quote(std::string_view s) {
  if (!s.empty() && s.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_-./:=,@%+[]") == std::string_view::npos) {
    return std::string(s);
  }
  std::string out = "'";
  for (const char c : s) {
    if (c == '\'') {
      out += "'\\''";
    } else {
      out += c;
    }
  }
  return out + "'";
}

Progress::Progress(std::string label)
    : label_(std::move(label)), enabled_(::isatty(1) == 1 && ::isatty(2) == 1) {}

void Progress::update(std::uint64_t done, std::uint64_t total) {
  if (!enabled_ || total == 0) return;
  const auto now = std::chrono::steady_clock::now();
  if (drawn_ && done < total && now - last_ < std::chrono::milliseconds(100)) return;
  last_ = now;
  constexpr int kWidth = 30;
  const double f = std::min(1.0, static_cast<double>(done) / static_cast<double>(total));
  const int fill = static_cast<int>(f * kWidth);
  std::string bar(static_cast<std::size_t>(fill), '#');
  bar.append(static_cast<std::size_t>(kWidth - fill), ' ');
  std::fprintf(stderr, "\r[%s] %3d%%  %s", bar.c_str(), static_cast<int>(f * 100), label_.c_str());
  std::fflush(stderr);
  drawn_ = true;
}

void Progress::done() {
  if (!drawn_) return;
  std::fprintf(stderr, "\r\033[K");
  std::fflush(stderr);
  drawn_ = false;
}

}  // namespace kvc::snap
