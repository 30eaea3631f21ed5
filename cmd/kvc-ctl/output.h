// How kvc-ctl prints: `simple` (for scripts: values as raw bytes, one item per line), `json`
// (a stable contract, kvc(7) "JSON OUTPUT": snake_case keys; text as text, and bytes that are
// not valid UTF-8 as "<field>_base64"; member ids as 16 hex digits), and `table` (columns
// aligned by display width for people; long or binary keys and values cut to kTableCellColumns
// and escaped). Data goes to stdout only.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/wire/messages.h"

namespace kvc::ctl {

enum class Format { kSimple, kJson, kTable };

// The widest a key or value cell of a table may be, in display columns.
inline constexpr std::size_t kTableCellColumns = 64;

// Appends `"name":"text"`, or `"name_base64":"..."` when the bytes are not valid UTF-8.
void json_bytes(std::string& out, std::string_view name, std::string_view bytes);
void json_string(std::string& out, std::string_view name, std::string_view text);
void json_uint(std::string& out, std::string_view name, std::uint64_t v);
void json_bool(std::string& out, std::string_view name, bool v);

// {"key":...,"value":...,"create_revision":N,"mod_revision":N,"version":N,"revision":N}: the
// key-value object of kvc(7); `revision` (when non-zero) is the store revision the read was
// served at.
std::string kv_json(const wire::KeyValue& kv, bool keys_only, std::uint64_t revision = 0);
// Bytes for an error message or a table cell: valid UTF-8 text as is, control characters and
// bytes that are not UTF-8 escaped (kvc::terminal_cell), never cut.
std::string printable(std::string_view bytes);
// A key or value as a table cell: printable() cut to kTableCellColumns display columns.
std::string table_cell(std::string_view bytes);

// Writes raw bytes to stdout.
void write_raw(std::string_view bytes);
// Adds a newline after a raw value only when stdout is a terminal (so `get k > file` holds the
// value's exact bytes).
void end_raw_value();

// Collects rows and prints them with columns aligned by display width (kvc::display_width:
// wide characters count two columns, combining marks none).
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvc::ctl
