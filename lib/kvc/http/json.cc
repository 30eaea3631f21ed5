#include "kvc/http/json.h"

#include "kvc/common/text.h"

#include <charconv>

namespace kvc::http {
namespace {

class Reader {
 public:
  Reader(std::string_view text, int max_depth) : s_(text), max_depth_(max_depth) {}

  Result<JsonValue> document() {
    JsonValue v;
    KVC_RETURN_IF_ERROR(value(&v, 0));
    skip_ws();
    if (pos_ != s_.size()) return error("trailing characters after the JSON value");
    return v;
  }

 private:
  Status error(std::string_view what) const {
    return Status::invalid_argument("json: " + std::string(what) + " at offset " +
                                    std::to_string(pos_));
  }
  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\n' || s_[pos_] == '\r')) {
      ++pos_;
    }
  }
  bool literal(std::string_view word) {
    if (s_.substr(pos_, word.size()) != word) return false;
    pos_ += word.size();
    return true;
  }

  Status value(JsonValue* out, int depth) {
    if (depth > max_depth_) return error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) return error("unexpected end of input");
    const char c = s_[pos_];
    switch (c) {
      case '{':
        return object(out, depth);
      case '[':
        return array(out, depth);
      case '"':
        out->type = JsonValue::Type::kString;
        return string(&out->text);
      case 't':
      case 'f':
        out->type = JsonValue::Type::kBool;
        out->boolean = c == 't';
        if (!literal(c == 't' ? "true" : "false")) return error("bad literal");
        return Status();
      case 'n':
        out->type = JsonValue::Type::kNull;
        if (!literal("null")) return error("bad literal");
        return Status();
      default:
        return number(out);
    }
  }

  Status object(JsonValue* out, int depth) {
    out->type = JsonValue::Type::kObject;
    ++pos_;  // {
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == '}') {
      ++pos_;
      return Status();
    }
    for (;;) {
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != '"') return error("expected a member name");
      std::string key;
      KVC_RETURN_IF_ERROR(string(&key));
      skip_ws();
      if (pos_ >= s_.size() || s_[pos_] != ':') return error("expected ':'");
      ++pos_;
      JsonValue v;
      KVC_RETURN_IF_ERROR(value(&v, depth + 1));
      out->object.push_back({std::move(key), std::move(v)});
      skip_ws();
      if (pos_ >= s_.size()) return error("unexpected end of input in an object");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == '}') {
        ++pos_;
        return Status();
      }
      return error("expected ',' or '}'");
    }
  }

  Status array(JsonValue* out, int depth) {
    out->type = JsonValue::Type::kArray;
    ++pos_;  // [
    skip_ws();
    if (pos_ < s_.size() && s_[pos_] == ']') {
      ++pos_;
      return Status();
    }
    for (;;) {
      JsonValue v;
      KVC_RETURN_IF_ERROR(value(&v, depth + 1));
      out->array.push_back(std::move(v));
      skip_ws();
      if (pos_ >= s_.size()) return error("unexpected end of input in an array");
      if (s_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (s_[pos_] == ']') {
        ++pos_;
        return Status();
      }
      return error("expected ',' or ']'");
    }
  }

  Status number(JsonValue* out) {
    const std::size_t start = pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (pos_ < s_.size() && s_[pos_] == '-') ++pos_;
    if (pos_ < s_.size() && s_[pos_] == '0') {
      ++pos_;
    } else if (digits() == 0) {
      return error("unexpected character");
    }
    if (pos_ < s_.size() && s_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return error("digits expected after '.'");
    }
    if (pos_ < s_.size() && (s_[pos_] == 'e' || s_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < s_.size() && (s_[pos_] == '+' || s_[pos_] == '-')) ++pos_;
      if (digits() == 0) return error("digits expected in the exponent");
    }
    out->type = JsonValue::Type::kNumber;
    out->text = std::string(s_.substr(start, pos_ - start));
    return Status();
  }

  Status hex4(std::uint32_t* out) {
    if (pos_ + 4 > s_.size()) return error("short \\u escape");
    std::uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char c = s_[pos_++];
      v <<= 4;
      if (c >= '0' && c <= '9') {
        v |= static_cast<std::uint32_t>(c - '0');
      } else if (c >= 'a' && c <= 'f') {
        v |= static_cast<std::uint32_t>(c - 'a' + 10);
      } else if (c >= 'A' && c <= 'F') {
        v |= static_cast<std::uint32_t>(c - 'A' + 10);
      } else {
        return error("bad hex digit in \\u escape");
      }
    }
    *out = v;
    return Status();
  }

  static void append_utf8(std::string* out, std::uint32_t cp) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xc0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xe0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    } else {
      *out += static_cast<char>(0xf0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3f));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3f));
      *out += static_cast<char>(0x80 | (cp & 0x3f));
    }
  }

  // A string starting at the opening quote; raw bytes must be valid UTF-8.
  Status string(std::string* out) {
    ++pos_;  // "
    for (;;) {
      if (pos_ >= s_.size()) return error("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return Status();
      }
      if (c < 0x20) return error("control character in a string");
      if (c == '\\') {
        ++pos_;
        if (pos_ >= s_.size()) return error("unterminated escape");
        const char e = s_[pos_++];
        switch (e) {
          case '"':
            *out += '"';
            break;
          case '\\':
            *out += '\\';
            break;
          case '/':
            *out += '/';
            break;
          case 'b':
            *out += '\b';
            break;
          case 'f':
            *out += '\f';
            break;
          case 'n':
            *out += '\n';
            break;
          case 'r':
            *out += '\r';
            break;
          case 't':
            *out += '\t';
            break;
          case 'u': {
            std::uint32_t cp = 0;
            KVC_RETURN_IF_ERROR(hex4(&cp));
            if (cp >= 0xdc00 && cp <= 0xdfff) return error("lone low surrogate");
            if (cp >= 0xd800 && cp <= 0xdbff) {
              if (s_.substr(pos_, 2) != "\\u") return error("high surrogate without a low one");
              pos_ += 2;
              std::uint32_t lo = 0;
              KVC_RETURN_IF_ERROR(hex4(&lo));
              if (lo < 0xdc00 || lo > 0xdfff) return error("high surrogate without a low one");
              cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
            }
            append_utf8(out, cp);
            break;
          }
          default:
            return error("bad escape");
        }
        continue;
      }
      if (c < 0x80) {
        *out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      // A multi-byte UTF-8 sequence: well formed, shortest form, not a surrogate.
      const std::size_t len = utf8_sequence_length(s_, pos_);
      if (len == 0) return error("invalid UTF-8");
      out->append(s_.substr(pos_, len));
      pos_ += len;
    }
  }

  std::string_view s_;
  std::size_t pos_ = 0;
  int max_depth_;
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
  const auto [ptr, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc() || ptr != text.data() + text.size()) return std::nullopt;
  return v;
}

Result<JsonValue> parse_json(std::string_view text, int max_depth) {
  return Reader(text, max_depth).document();
}

}  // namespace kvc::http
