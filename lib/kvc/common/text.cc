#include "kvc/common/text.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>

namespace kvc {

std::size_t utf8_sequence_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  if (c < 0x80) return 1;
  std::size_t len;
  std::uint32_t cp;
  if ((c & 0xe0) == 0xc0) {
    len = 2;
    cp = c & 0x1f;
  } else if ((c & 0xf0) == 0xe0) {
    len = 3;
    cp = c & 0x0f;
  } else if ((c & 0xf8) == 0xf0) {
    len = 4;
    cp = c & 0x07;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0) != 0x80) return 0;
    cp = (cp << 6) | (cc & 0x3f);
  }
  const std::uint32_t min_cp = len == 2 ? 0x80 : len == 3 ? 0x800 : 0x10000;
  if (cp < min_cp || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

bool is_valid_utf8(std::string_view s) {
  for (std::size_t i = 0; i < s.size();) {
    const std::size_t n = utf8_sequence_length(s, i);
    if (n == 0) return false;
    i += n;
  }
  return true;
}

std::string json_escape(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 8);
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    const std::size_t n = utf8_sequence_length(s, i);
    if (n > 1) {
      out.append(s.substr(i, n));
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '"':
        out += "\\\"";
        continue;
      case '\\':
        out += "\\\\";
        continue;
      case '\n':
        out += "\\n";
        continue;
      case '\r':
        out += "\\r";
        continue;
      case '\t':
        out += "\\t";
        continue;
      default:
        break;
    }
    if (n == 1 && c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
    } else {
      // A control character, or a byte that is not part of well-formed UTF-8: \u00XX of the
      // byte keeps the result valid JSON.
      out += "\\u00";
      out += hex_encode(s.substr(i - 1, 1));
    }
  }
  return out;
}

std::string backslash_escape(std::string_view bytes, EscapeOptions options) {
  std::string out;
  out.reserve(bytes.size() + 2);
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (c == '"' && options.quote) {
      out += "\\\"";
    } else if (c == '\t' && options.tab_cr) {
      out += "\\t";
    } else if (c == '\r' && options.tab_cr) {
      out += "\\r";
    } else if (((c < 0x20 || c == 0x7f) && options.hex_controls) ||
               (c >= 0x80 && options.hex_non_ascii)) {
      out += "\\x";
      out += hex_encode(std::string_view(&ch, 1));
    } else {
      out += ch;
    }
  }
  return out;
}

std::string json_bytes_member(std::string_view name, std::string_view bytes) {
  std::string out = "\"";
  out += name;
  if (is_valid_utf8(bytes)) {
    out += "\":\"";
    out += json_escape(bytes);
  } else {
    out += "_base64\":\"";
    out += base64_encode(bytes);
  }
  out += '"';
  return out;
}

std::string id_hex(std::uint64_t id) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

std::string human_bytes(std::uint64_t n) {
  static const char* const kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 4) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  if (u == 0) {
    std::snprintf(buf, sizeof buf, "%llu B", static_cast<unsigned long long>(n));
  } else {
    std::snprintf(buf, sizeof buf, "%.1f %s", v, kUnits[u]);
  }
  return buf;
}

std::string u32_hex(std::uint32_t v) {
  char buf[9];
  std::snprintf(buf, sizeof buf, "%08x", static_cast<unsigned>(v));
  return buf;
}

std::optional<std::uint64_t> parse_hex_u64(std::string_view s) {
  if (s.empty() || s.size() > 16) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : s) {
    if (c >= 'A' && c <= 'F') return std::nullopt;  // lowercase only, as written
    const int d = hex_digit_value(c);
    if (d < 0) return std::nullopt;
    v = (v << 4) | static_cast<std::uint64_t>(d);
  }
  return v;
}

namespace {
constexpr char kHexDigits[] = "0123456789abcdef";
}

std::string hex_encode(std::string_view bytes) {
  std::string out;
  out.reserve(2 * bytes.size());
  for (const char ch : bytes) {
    const auto c = static_cast<unsigned char>(ch);
    out += kHexDigits[c >> 4];
    out += kHexDigits[c & 0xf];
  }
  return out;
}

int hex_digit_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

Result<std::string> hex_decode(std::string_view hex) {
  if (hex.size() % 2 != 0) return Status::invalid_argument("odd number of hex digits");
  std::string out;
  out.reserve(hex.size() / 2);
  for (std::size_t i = 0; i < hex.size(); i += 2) {
    const int hi = hex_digit_value(hex[i]);
    const int lo = hex_digit_value(hex[i + 1]);
    if (hi < 0 || lo < 0) return Status::invalid_argument("bad hex digit");
    out += static_cast<char>(hi * 16 + lo);
  }
  return out;
}

namespace {

struct Range {
  std::uint32_t first, last;
};

// Characters a terminal draws in no column: combining marks, zero-width and format characters,
// variation selectors, emoji skin-tone modifiers.
constexpr Range kZeroWidth[] = {
    {0x0300, 0x036f},   {0x0483, 0x0489}, {0x0591, 0x05bd}, {0x05bf, 0x05bf},   {0x05c1, 0x05c2},
    {0x05c4, 0x05c5},   {0x05c7, 0x05c7}, {0x0610, 0x061a}, {0x064b, 0x065f},   {0x0670, 0x0670},
    {0x06d6, 0x06dc},   {0x06df, 0x06e4}, {0x06e7, 0x06e8}, {0x06ea, 0x06ed},   {0x0711, 0x0711},
    {0x0730, 0x074a},   {0x07a6, 0x07b0}, {0x0900, 0x0902}, {0x093a, 0x093a},   {0x093c, 0x093c},
    {0x0941, 0x0948},   {0x094d, 0x094d}, {0x0951, 0x0957}, {0x0962, 0x0963},   {0x0e31, 0x0e31},
    {0x0e34, 0x0e3a},   {0x0e47, 0x0e4e}, {0x1ab0, 0x1aff}, {0x1dc0, 0x1dff},   {0x200b, 0x200f},
    {0x202a, 0x202e},   {0x2060, 0x2064}, {0x20d0, 0x20ff}, {0x302a, 0x302d},   {0x3099, 0x309a},
    {0xfe00, 0xfe0f},   {0xfe20, 0xfe2f}, {0xfeff, 0xfeff}, {0x1f3fb, 0x1f3ff}, {0xe0000, 0xe007f},
    {0xe0100, 0xe01ef},
};

// East Asian Wide and Fullwidth characters, and emoji drawn in two columns.
constexpr Range kWide[] = {
    {0x1100, 0x115f},   {0x231a, 0x231b},   {0x2329, 0x232a},   {0x23e9, 0x23ec},
    {0x23f0, 0x23f0},   {0x23f3, 0x23f3},   {0x25fd, 0x25fe},   {0x2614, 0x2615},
    {0x2648, 0x2653},   {0x267f, 0x267f},   {0x2693, 0x2693},   {0x26a1, 0x26a1},
    {0x26aa, 0x26ab},   {0x26bd, 0x26be},   {0x26c4, 0x26c5},   {0x26ce, 0x26ce},
    {0x26d4, 0x26d4},   {0x26ea, 0x26ea},   {0x26f2, 0x26f3},   {0x26f5, 0x26f5},
    {0x26fa, 0x26fa},   {0x26fd, 0x26fd},   {0x2705, 0x2705},   {0x270a, 0x270b},
    {0x2728, 0x2728},   {0x274c, 0x274c},   {0x274e, 0x274e},   {0x2753, 0x2755},
    {0x2757, 0x2757},   {0x2795, 0x2797},   {0x27b0, 0x27b0},   {0x27bf, 0x27bf},
    {0x2b1b, 0x2b1c},   {0x2b50, 0x2b50},   {0x2b55, 0x2b55},   {0x2e80, 0x303e},
    {0x3041, 0x3098},   {0x309b, 0x33ff},   {0x3400, 0x4dbf},   {0x4e00, 0x9fff},
    {0xa000, 0xa4cf},   {0xa960, 0xa97f},   {0xac00, 0xd7a3},   {0xf900, 0xfaff},
    {0xfe10, 0xfe19},   {0xfe30, 0xfe6f},   {0xff00, 0xff60},   {0xffe0, 0xffe6},
    {0x16fe0, 0x16fe4}, {0x17000, 0x18cff}, {0x1b000, 0x1b2ff}, {0x1f004, 0x1f004},
    {0x1f0cf, 0x1f0cf}, {0x1f18e, 0x1f18e}, {0x1f191, 0x1f19a}, {0x1f200, 0x1f251},
    {0x1f300, 0x1f3fa}, {0x1f400, 0x1f64f}, {0x1f680, 0x1f6ff}, {0x1f7e0, 0x1f7eb},
    {0x1f90c, 0x1f9ff}, {0x1fa70, 0x1faff}, {0x20000, 0x2fffd}, {0x30000, 0x3fffd},
};

template <std::size_t N>
bool in_table(const Range (&table)[N], std::uint32_t cp) {
  const Range* end = table + N;
  const Range* it =
      std::upper_bound(table, end, cp, [](std::uint32_t v, const Range& r) { return v < r.first; });
  return it != table && cp <= (it - 1)->last;
}

// The code point of the well-formed sequence of `len` bytes at s[i].
std::uint32_t decode_at(std::string_view s, std::size_t i, std::size_t len) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::uint32_t cp = len == 1 ? c : len == 2 ? (c & 0x1f) : len == 3 ? (c & 0x0f) : (c & 0x07);
  for (std::size_t k = 1; k < len; ++k) {
    cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  }
  return cp;
}

std::size_t code_point_width(std::uint32_t cp) {
  if (in_table(kZeroWidth, cp)) return 0;
  return in_table(kWide, cp) ? 2 : 1;
}

}  // namespace

std::size_t display_width(std::string_view text) {
  std::size_t width = 0;
  for (std::size_t i = 0; i < text.size();) {
    const std::size_t n = utf8_sequence_length(text, i);
    if (n <= 1) {
      ++width;
      ++i;
      continue;
    }
    width += code_point_width(decode_at(text, i, n));
    i += n;
  }
  return width;
}

std::string terminal_cell(std::string_view bytes, std::size_t max_columns) {
  static constexpr char kHex[] = "0123456789abcdef";
  static constexpr std::string_view kEllipsis = "\xe2\x80\xa6";  // U+2026, one column
  if (max_columns == 0) return "";
  std::string out;
  std::size_t width = 0;
  std::size_t cut = 0;  // out.size() while the text still left a column for the ellipsis
  auto escape_byte = [&](unsigned char c) {
    out += "\\x";
    out += kHex[c >> 4];
    out += kHex[c & 0xf];
    width += 4;
  };
  for (std::size_t i = 0; i < bytes.size();) {
    if (width <= max_columns - 1) cut = out.size();
    if (width > max_columns) break;
    const auto c = static_cast<unsigned char>(bytes[i]);
    const std::size_t n = utf8_sequence_length(bytes, i);
    if (n > 1) {
      const std::uint32_t cp = decode_at(bytes, i, n);
      if (cp >= 0x80 && cp <= 0x9f) {  // C1 controls: a terminal may act on them
        for (std::size_t k = 0; k < n; ++k) escape_byte(static_cast<unsigned char>(bytes[i + k]));
      } else {
        out.append(bytes.substr(i, n));
        width += code_point_width(cp);
      }
      i += n;
      continue;
    }
    ++i;
    switch (c) {
      case '\\':
        out += "\\\\";
        width += 2;
        continue;
      case '\t':
        out += "\\t";
        width += 2;
        continue;
      case '\n':
        out += "\\n";
        width += 2;
        continue;
      case '\r':
        out += "\\r";
        width += 2;
        continue;
      default:
        break;
    }
    if (n == 1 && c >= 0x20 && c != 0x7f) {
      out += static_cast<char>(c);
      ++width;
    } else {
      escape_byte(c);
    }
  }
  if (width <= max_columns) return out;
  out.resize(cut);
  out += kEllipsis;
  return out;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t subst = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, subst});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string nearest_name(std::string_view word, const std::vector<std::string>& candidates) {
  const std::size_t limit = std::max<std::size_t>(2, word.size() / 3);
  std::string best;
  std::size_t best_distance = limit + 1;
  for (const std::string& c : candidates) {
    const std::size_t d = edit_distance(word, c);
    if (d < best_distance) {
      best_distance = d;
      best = c;
    }
  }
  return best;
}

namespace {
constexpr char kB64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
}

std::string base64_encode(std::string_view in) {
  std::string out;
  out.reserve((in.size() + 2) / 3 * 4);
  std::size_t i = 0;
  for (; i + 3 <= in.size(); i += 3) {
    const std::uint32_t v = (static_cast<unsigned char>(in[i]) << 16) |
                            (static_cast<unsigned char>(in[i + 1]) << 8) |
                            static_cast<unsigned char>(in[i + 2]);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += kB64[v & 63];
  }
  if (i + 1 == in.size()) {
    const std::uint32_t v = static_cast<unsigned char>(in[i]) << 16;
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += "==";
  } else if (i + 2 == in.size()) {
    const std::uint32_t v =
        (static_cast<unsigned char>(in[i]) << 16) | (static_cast<unsigned char>(in[i + 1]) << 8);
    out += kB64[v >> 18];
    out += kB64[(v >> 12) & 63];
    out += kB64[(v >> 6) & 63];
    out += '=';
  }
  return out;
}

Result<std::string> base64_decode(std::string_view in) {
  if (in.size() % 4 != 0) return Status::invalid_argument("base64: length not a multiple of 4");
  auto val = [](char c) -> int {
    if (c >= 'A' && c <= 'Z') return c - 'A';
    if (c >= 'a' && c <= 'z') return c - 'a' + 26;
    if (c >= '0' && c <= '9') return c - '0' + 52;
    if (c == '+') return 62;
    if (c == '/') return 63;
    return -1;
  };
  std::string out;
  out.reserve(in.size() / 4 * 3);
  for (std::size_t i = 0; i < in.size(); i += 4) {
    const bool last = i + 4 == in.size();
    int v[4];
    int pad = 0;
    for (int k = 0; k < 4; ++k) {
      const char c = in[i + static_cast<std::size_t>(k)];
      if (c == '=' && last && k >= 2) {
        v[k] = 0;
        ++pad;
      } else {
        if (pad > 0) return Status::invalid_argument("base64: data after padding");
        v[k] = val(c);
        if (v[k] < 0) return Status::invalid_argument("base64: invalid character");
      }
    }
    const std::uint32_t n =
        (static_cast<std::uint32_t>(v[0]) << 18) | (static_cast<std::uint32_t>(v[1]) << 12) |
        (static_cast<std::uint32_t>(v[2]) << 6) | static_cast<std::uint32_t>(v[3]);
    out += static_cast<char>(n >> 16);
    if (pad < 2) out += static_cast<char>((n >> 8) & 0xff);
    if (pad < 1) out += static_cast<char>(n & 0xff);
  }
  return out;
}

Result<std::uint64_t> parse_duration_ms(std::string_view text) {
  const std::string original(text);
  std::size_t unit_at = 0;
  while (unit_at < text.size() &&
         ((text[unit_at] >= '0' && text[unit_at] <= '9') || text[unit_at] == '.')) {
    ++unit_at;
  }
  const std::string number(text.substr(0, unit_at));
  const std::string_view unit = text.substr(unit_at);
  double v = 0;
  auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), v);
  if (number.empty() || ec != std::errc() || end != number.data() + number.size() || v < 0) {
    return Status::invalid_argument("bad duration '" + original + "' (e.g. 500ms, 5s, 2m)");
  }
  double ms;
  if (unit.empty() || unit == "s") {
    ms = v * 1000;
  } else if (unit == "ms") {
    ms = v;
  } else if (unit == "m") {
    ms = v * 60'000;
  } else if (unit == "h") {
    ms = v * 3'600'000;
  } else {
    return Status::invalid_argument("bad duration unit in '" + original + "' (ms, s, m, h)");
  }
  if (ms > 1e15) return Status::invalid_argument("duration '" + original + "' is too long");
  return static_cast<std::uint64_t>(std::llround(ms));
}

}  // namespace kvc
