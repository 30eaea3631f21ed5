#include "output.h"

#include <unistd.h>

#include <algorithm>

#include "kvc/common/log.h"
#include "kvc/common/text.h"

namespace kvc::ctl {

void json_bytes(std::string& out, std::string_view name, std::string_view bytes) {
  if (out.size() > 1) out += ',';
  out += '"';
  out += name;
  if (is_valid_utf8(bytes)) {
    out += "\":\"";
    out += json_escape(bytes);
  } else {
    out += "_base64\":\"";
    out += base64_encode(bytes);
  }
  out += '"';
}

void json_string(std::string& out, std::string_view name, std::string_view text) {
  if (out.size() > 1) out += ',';
  out += '"';
  out += name;
  out += "\":\"";
  out += json_escape(text);
  out += '"';
}

void json_uint(std::string& out, std::string_view name, std::uint64_t v) {
  if (out.size() > 1) out += ',';
  out += '"';
  out += name;
  out += "\":";
  out += std::to_string(v);
}

void json_bool(std::string& out, std::string_view name, bool v) {
  if (out.size() > 1) out += ',';
  out += '"';
  out += name;
  out += v ? "\":true" : "\":false";
}

std::string kv_json(const wire::KeyValue& kv, bool keys_only) {
  std::string o = "{";
  json_bytes(o, "key", kv.key);
  if (!keys_only) json_bytes(o, "value", kv.value);
  json_uint(o, "create_revision", kv.create_revision);
  json_uint(o, "mod_revision", kv.mod_revision);
  json_uint(o, "version", kv.version);
  o += '}';
  return o;
}

std::string printable(std::string_view bytes) {
  if (is_valid_utf8(bytes)) {
    bool plain = std::none_of(bytes.begin(), bytes.end(), [](char c) {
      const auto u = static_cast<unsigned char>(c);
      return u < 0x20 || u == 0x7f || c == '\\';
    });
    if (plain) return std::string(bytes);
  }
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  for (const char c : bytes) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f && c != '\\') {
      out += c;
    } else {
      out += "\\x";
      out += kHex[u >> 4];
      out += kHex[u & 0xf];
    }
  }
  return out;
}

void write_raw(std::string_view bytes) { std::fwrite(bytes.data(), 1, bytes.size(), stdout); }

void end_raw_value() {
  if (::isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
}

void Table::print() const {
  std::vector<std::size_t> width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows_) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

}  // namespace kvc::ctl
