// A small strict JSON reader (RFC 8259) for the bodies the HTTP API accepts (a PUT with
// Content-Type: application/json) and for tests that read its answers. Strict: one value with
// optional surrounding whitespace, no trailing commas, no comments, strings of valid UTF-8 whose
// \u escapes pair their surrogates; nesting deeper than `max_depth` is refused, so hostile input
// cannot exhaust the stack. Numbers keep their text, so 64-bit revisions survive exactly.
// Writing JSON is plain string building with kvc::json_escape (common/log.h). Pure functions on
// values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::http {

struct JsonMember;

struct JsonValue {
  enum class Type : std::uint8_t { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;  // a string's decoded bytes, or a number as written
  std::vector<JsonValue> array;
  std::vector<JsonMember> object;  // in order; duplicates kept

  // The first member named `key` of an object, or null.
  const JsonValue* find(std::string_view key) const;
  // A number that is a non-negative integer below 2^64, exactly.
  std::optional<std::uint64_t> as_uint64() const;
};

struct JsonMember {
  std::string key;
  JsonValue value;
};

Result<JsonValue> parse_json(std::string_view text, int max_depth = 32);

}  // namespace kvc::http
