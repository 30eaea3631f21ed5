// Histories as JSON Lines, so a test that found a failing history can save it and a person or
// a tool can re-check it later. One operation per line, an object with stable snake_case
// fields (added, never renamed or removed):
//
//   {"client":3,"kind":"cas","key":"k","value":"v7","expect_revision":12,"outcome":"ok",
//    "found":true,"read_value":"","revision":15,"invoke_time":40,"response_time":52}
//
// kind is put|get|delete|cas, outcome ok|failed|unknown; response_time is null when it is
// kNever. Strings that are valid UTF-8 are written as JSON strings (escaped as kvc::json_escape
// does); any other byte string goes in "<field>_hex" instead (key_hex, value_hex,
// read_value_hex: lowercase hex), so every byte string round-trips. The reader accepts fields
// in any order, ignores unknown fields, skips blank lines, and answers malformed input with a
// Status naming the line; it never crashes. docs/checker.md has the full format.
// Functions of their arguments; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "kvc/check/history.h"
#include "kvc/common/status.h"

namespace kvc::check {

// "put", "get", "delete", "cas" and "ok", "failed", "unknown": the names the format uses.
std::string_view op_kind_name(OpKind kind);
std::string_view outcome_name(Outcome outcome);

// One operation as one JSON object, without a newline.
std::string operation_to_json(const Operation& op);
Result<Operation> operation_from_json(std::string_view line);

// A whole history, one line per operation, each ending in '\n'.
std::string history_to_jsonl(const History& history);
// Errors say "line N: ...".
Result<History> history_from_jsonl(std::string_view text);

// The same, to and from a file (written whole; an existing file is replaced).
Status write_history_file(const std::string& path, const History& history);
Result<History> read_history_file(const std::string& path);

}  // namespace kvc::check
