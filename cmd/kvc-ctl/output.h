// How kvc-ctl prints: `simple` (for scripts: values as raw bytes, one item per line), `json`
// (a stable contract: snake_case keys; text as text, and bytes that are not valid UTF-8 as
// "<field>_base64"), and `table` (aligned columns for people). Data goes to stdout only.
#pragma once

#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/wire/messages.h"

namespace kvc::ctl {

enum class Format { kSimple, kJson, kTable };

// Appends `"name":"text"`, or `"name_base64":"..."` when the bytes are not valid UTF-8.
void json_bytes(std::string& out, std::string_view name, std::string_view bytes);
void json_string(std::string& out, std::string_view name, std::string_view text);
void json_uint(std::string& out, std::string_view name, std::uint64_t v);
void json_bool(std::string& out, std::string_view name, bool v);

// {"key":...,"value":...,"create_revision":N,"mod_revision":N,"version":N}
std::string kv_json(const wire::KeyValue& kv, bool keys_only);
// Bytes for a terminal cell: printable ASCII and valid UTF-8 as is, other bytes as \xNN.
std::string printable(std::string_view bytes);

// Writes raw bytes to stdout.
void write_raw(std::string_view bytes);
// Adds a newline after a raw value only when stdout is a terminal (so `get k > file` holds the
// value's exact bytes).
void end_raw_value();

// Collects rows and prints them with aligned columns.
class Table {
 public:
  explicit Table(std::vector<std::string> header) : rows_{std::move(header)} {}
  void add(std::vector<std::string> row) { rows_.push_back(std::move(row)); }
  void print() const;

 private:
  std::vector<std::vector<std::string>> rows_;
};

}  // namespace kvc::ctl
