#include "kvc/common/json.h"

#include <nlohmann/json.hpp>

#include "kvc/common/text.h"

namespace kvc {
namespace {

using njson = nlohmann::json;

// Builds a JsonValue from nlohmann's SAX events. nlohmann reports a malformed document through
// parse_error() (the exception object is handed over, never thrown); a handler that returns
// false stops the parse, which is how the depth limit ends it early.
class Builder {
 public:
  explicit Builder(int max_depth) : max_depth_(max_depth) {}

  bool null() { return add(JsonValue{}); }
  bool boolean(bool b) {
    JsonValue v;
    v.type = JsonValue::Type::kBool;
    v.boolean = b;
    return add(std::move(v));
  }
  bool number_integer(njson::number_integer_t n) { return number(std::to_string(n)); }
  bool number_unsigned(njson::number_unsigned_t n) { return number(std::to_string(n)); }
  bool number_float(njson::number_float_t, const njson::string_t& raw) { return number(raw); }
  bool string(njson::string_t& s) {
    JsonValue v;
    v.type = JsonValue::Type::kString;
    v.text = std::move(s);
    return add(std::move(v));
  }
  bool binary(njson::binary_t&) { return fail("binary values are not json"); }
  bool start_object(std::size_t) { return open(JsonValue::Type::kObject); }
  bool key(njson::string_t& k) {
    stack_.back()->object.push_back(JsonMember{std::move(k), JsonValue{}});
    return true;
  }
  bool end_object() { return close(); }
  bool start_array(std::size_t) { return open(JsonValue::Type::kArray); }
  bool end_array() { return close(); }
  bool parse_error(std::size_t position, const std::string&, const nlohmann::detail::exception& e) {
    // e.what() is "[json.exception.parse_error.101] parse error at line 1, column 5: what";
    // keep the part after the location, and say where as a byte offset.
    std::string_view what = e.what();
    if (const std::size_t at = what.find(": "); at != std::string_view::npos) {
      what.remove_prefix(at + 2);
    }
    return fail("invalid json at byte " + std::to_string(position) + ": " + std::string(what));
  }

  Status status() const { return error_.empty() ? Status() : Status::invalid_argument(error_); }
  JsonValue& root() { return root_; }

 private:
  bool fail(std::string what) {
    if (error_.empty()) error_ = std::move(what);
    return false;
  }
  bool number(std::string text) {
    JsonValue v;
    v.type = JsonValue::Type::kNumber;
    v.text = std::move(text);
    return add(std::move(v));
  }
  bool add(JsonValue v) {
    put(std::move(v));
    return true;
  }
  JsonValue* put(JsonValue v) {
    if (stack_.empty()) {
      root_ = std::move(v);
      return &root_;
    }
    JsonValue& top = *stack_.back();
    if (top.type == JsonValue::Type::kArray) {
      top.array.push_back(std::move(v));
      return &top.array.back();
    }
    top.object.back().value = std::move(v);
    return &top.object.back().value;
  }
  bool open(JsonValue::Type type) {
    if (static_cast<int>(stack_.size()) > max_depth_) {
      return fail("invalid json: nesting deeper than " + std::to_string(max_depth_));
    }
    JsonValue v;
    v.type = type;
    // Invariant: a container on the stack is not moved while it is open: its parent only
    // grows again once it is closed.
    stack_.push_back(put(std::move(v)));
    return true;
  }
  bool close() {
    stack_.pop_back();
    return true;
  }

  const int max_depth_;
  JsonValue root_;
  std::vector<JsonValue*> stack_;
  std::string error_;
};

}  // namespace

const JsonValue* JsonValue::find(std::string_view key) const {
  for (const JsonMember& m : object) {
    if (m.key == key) return &m.value;
  }
  return nullptr;
}

std::optional<std::uint64_t> JsonValue::as_uint64() const {
  if (type != Type::kNumber || text.empty()) return std::nullopt;
  std::uint64_t v = 0;
  for (const char c : text) {
    if (c < '0' || c > '9') return std::nullopt;
    const auto d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return std::nullopt;
    v = v * 10 + d;
  }
  return v;
}

Result<JsonValue> parse_json(std::string_view text, int max_depth) {
  Builder b(max_depth);
  const bool ok = njson::sax_parse(text.begin(), text.end(), &b);
  if (!ok) {
    Status s = b.status();
    if (s.ok()) s = Status::invalid_argument("invalid json");
    return s;
  }
  return std::move(b.root());
}

std::string json_quote(std::string_view s) { return "\"" + json_escape(s) + "\""; }

void JsonObject::begin_member() { s_ += s_.empty() ? "{" : ","; }

JsonObject& JsonObject::raw(std::string_view key, std::string_view json) {
  begin_member();
  s_ += json_quote(key);
  s_ += ':';
  s_ += json;
  return *this;
}

JsonObject& JsonObject::num(std::string_view key, std::uint64_t v) {
  return raw(key, std::to_string(v));
}

JsonObject& JsonObject::str(std::string_view key, std::string_view v) {
  return raw(key, json_quote(v));
}

JsonObject& JsonObject::boolean(std::string_view key, bool v) {
  return raw(key, v ? "true" : "false");
}

JsonObject& JsonObject::null(std::string_view key) { return raw(key, "null"); }

JsonObject& JsonObject::bytes(std::string_view key, std::string_view v) {
  begin_member();
  s_ += json_bytes_member(key, v);
  return *this;
}

JsonObject& JsonObject::base64(std::string_view key, std::string_view v) {
  return str(std::string(key) + "_base64", base64_encode(v));
}

}  // namespace kvc
