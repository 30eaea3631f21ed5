// JSON for kvc: one reader and one object writer, shared by the HTTP API, the offline tools,
// kvc-ctl, kvc-bench and the checker's history files.
//
// Reading is Debian's nlohmann-json (RFC 8259, strict: one value with optional surrounding
// whitespace, no trailing commas or comments, strings of valid UTF-8 whose \u escapes pair
// their surrogates), driven through its SAX interface so that nothing throws: a malformed
// document is a Status saying what was wrong and at which byte. On top of it kvc keeps what
// callers need and nlohmann's own value type drops: members in document order with
// duplicates kept (so a caller can refuse them), numbers as written (so 64-bit revisions
// survive exactly), and a nesting limit so that hostile input cannot exhaust memory or stack.
//
// Writing is JsonObject, keys in the order added and every string through kvc::json_escape
// (common/text.h), the one escaper: it keeps the bytes of kvc(7) "JSON OUTPUT" stable and,
// unlike nlohmann's dump(), never throws on bytes that are not UTF-8. Pure functions and
// values; thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc {

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

// Parses one JSON document. Containers nested more than `max_depth` deep below the top value
// are refused. Errors are kInvalidArgument: "invalid json at byte N: ..." (N counts from 1: the
// byte where the parser gave up).
Result<JsonValue> parse_json(std::string_view text, int max_depth = 32);

// Builds one JSON object, keys in the order added: {"a":1,"b":"x"}. Keys are written as given
// (callers pass snake_case literals).
class JsonObject {
 public:
  JsonObject& num(std::string_view key, std::uint64_t v);
  JsonObject& str(std::string_view key, std::string_view v);
  JsonObject& boolean(std::string_view key, bool v);
  JsonObject& null(std::string_view key);
  // `json` is already JSON (a nested object, an array, a formatted number).
  JsonObject& raw(std::string_view key, std::string_view json);
  // A key or value in the one JSON form of kvc(7): "<key>" as text when the bytes are valid
  // UTF-8, else "<key>_base64".
  JsonObject& bytes(std::string_view key, std::string_view v);
  // Opaque binary data, always base64: "<key>_base64".
  JsonObject& base64(std::string_view key, std::string_view v);
  std::string done() const { return s_.empty() ? "{}" : s_ + "}"; }

 private:
  void begin_member();
  std::string s_;
};

// `s` as a JSON string literal, quotes included.
std::string json_quote(std::string_view s);

}  // namespace kvc
