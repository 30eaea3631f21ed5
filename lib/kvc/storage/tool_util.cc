#include "kvc/storage/tool_util.h"

#include <cinttypes>

#include "kvc/common/log.h"
#include "kvc/common/text.h"

namespace kvc::storage {

std::string text_value(std::string_view bytes) {
  if (!is_valid_utf8(bytes)) return "0x" + hex_encode(bytes);
  return "\"" + backslash_escape(bytes) + "\"";
}

void print(std::FILE* f, const std::string& s) { std::fwrite(s.data(), 1, s.size(), f); }

std::string Progress::amount(std::uint64_t n) const {
  return units_ == "bytes" ? human_bytes(n) : std::to_string(n);
}

void Progress::update(std::uint64_t done, std::uint64_t total) {
  if (!ctx_.progress) return;
  const auto now = std::chrono::steady_clock::now();
  if (shown_ && now - last_ < std::chrono::milliseconds(100) && done != total) return;
  last_ = now;
  const int pct = total == 0 ? 100 : static_cast<int>(done * 100 / total);
  std::string line =
      std::string(ctx_.tool) + ": " + what_ + " " + amount(done) + " of " + amount(total);
  if (units_ != "bytes") line += " " + units_;
  std::fprintf(ctx_.err, "\r%s (%d%%)\x1b[K", line.c_str(), pct);
  std::fflush(ctx_.err);
  shown_ = true;
}

void Progress::clear() {
  if (!shown_) return;
  std::fprintf(ctx_.err, "\r\x1b[K");
  std::fflush(ctx_.err);
  shown_ = false;
}

}  // namespace kvc::storage
