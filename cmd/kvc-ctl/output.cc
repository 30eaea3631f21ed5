#include "output.h"

#include <unistd.h>

#include <algorithm>

#include "kvc/common/text.h"

namespace kvc::ctl {

void json_bytes(std::string& out, std::string_view name, std::string_view bytes) {
  if (out.size() > 1) out += ',';
  out += json_bytes_member(name, bytes);
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

std::string kv_json(const wire::KeyValue& kv, bool keys_only, std::uint64_t revision) {
  std::string o = "{";
  json_bytes(o, "key", kv.key);
  if (!keys_only) json_bytes(o, "value", kv.value);
  json_uint(o, "create_revision", kv.create_revision);
  json_uint(o, "mod_revision", kv.mod_revision);
  json_uint(o, "version", kv.version);
  if (kv.lease != 0) json_string(o, "lease", id_hex(kv.lease));
  if (revision != 0) json_uint(o, "revision", revision);
  o += '}';
  return o;
}

std::string printable(std::string_view bytes) { return terminal_cell(bytes); }

std::string table_cell(std::string_view bytes) { return terminal_cell(bytes, kTableCellColumns); }

void write_raw(std::string_view bytes) { std::fwrite(bytes.data(), 1, bytes.size(), stdout); }

void end_raw_value() {
  if (::isatty(STDOUT_FILENO)) std::fputc('\n', stdout);
}

void Table::print() const {
  std::vector<std::size_t> width;
  std::vector<std::vector<std::size_t>> cell_width;
  for (const auto& row : rows_) {
    if (width.size() < row.size()) width.resize(row.size(), 0);
    std::vector<std::size_t>& cw = cell_width.emplace_back();
    for (std::size_t i = 0; i < row.size(); ++i) {
      cw.push_back(display_width(row[i]));
      width[i] = std::max(width[i], cw.back());
    }
  }
  for (std::size_t r = 0; r < rows_.size(); ++r) {
    const auto& row = rows_[r];
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line.append(width[i] - cell_width[r][i] + 2, ' ');
    }
    while (!line.empty() && line.back() == ' ') line.pop_back();
    line += '\n';
    std::fwrite(line.data(), 1, line.size(), stdout);
  }
}

}  // namespace kvc::ctl
