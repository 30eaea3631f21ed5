// JSON Lines for histories: a writer, and a small strict JSON reader for one flat object per
// line (nested values in unknown fields are skipped, to a bounded depth).
#include "kvc/check/history_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <optional>
#include <set>

#include "kvc/common/text.h"

namespace kvc::check {
namespace {

constexpr int kMaxSkipDepth = 32;                            // nesting in unknown fields
constexpr std::size_t kMaxFileBytes = std::size_t{1} << 30;  // read_history_file refuses more

void append_bytes_field(std::string* out, std::string_view name, std::string_view bytes) {
  *out += ",\"";
  *out += name;
  if (is_valid_utf8(bytes)) {
    *out += "\":\"";
    *out += json_escape(bytes);
  } else {
    *out += "_hex\":\"";
    *out += hex_encode(bytes);
  }
  *out += "\"";
}

void append_u64_field(std::string* out, std::string_view name, std::uint64_t v) {
  *out += ",\"";
  *out += name;
  *out += "\":";
  *out += std::to_string(v);
}

void append_utf8(std::string* out, std::uint32_t cp) {
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

// A cursor over one line of JSON. Every method reports failure with a Status that says what
// was expected and at which byte.
class Reader {
 public:
  explicit Reader(std::string_view text) : s_(text) {}

  void skip_ws() {
    while (pos_ < s_.size() &&
           (s_[pos_] == ' ' || s_[pos_] == '\t' || s_[pos_] == '\r' || s_[pos_] == '\n')) {
      ++pos_;
    }
  }
  bool at_end() const { return pos_ >= s_.size(); }
  bool peek(char c) const { return pos_ < s_.size() && s_[pos_] == c; }
  bool consume(char c) {
    skip_ws();
    if (!peek(c)) return false;
    ++pos_;
    return true;
  }
  Status expect(char c) {
    if (consume(c)) return Status();
    return error(std::string("expected '") + c + "'");
  }
  Status error(const std::string& what) const {
    return Status::invalid_argument(what + " at byte " + std::to_string(pos_ + 1));
  }

  Status parse_string(std::string* out) {
    skip_ws();
    if (!peek('"')) return error("expected a string");
    ++pos_;
    out->clear();
    while (true) {
      if (pos_ >= s_.size()) return error("unterminated string");
      const auto c = static_cast<unsigned char>(s_[pos_]);
      if (c == '"') {
        ++pos_;
        return Status();
      }
      if (c < 0x20) return error("control character in a string");
      if (c != '\\') {
        *out += static_cast<char>(c);
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= s_.size()) return error("unterminated escape");
      const char e = s_[pos_ + 1];
      pos_ += 2;
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
          KVC_RETURN_IF_ERROR(parse_hex4(&cp));
          if (cp >= 0xdc00 && cp <= 0xdfff) return error("unpaired low surrogate");
          if (cp >= 0xd800 && cp <= 0xdbff) {
            std::uint32_t low = 0;
            if (pos_ + 1 >= s_.size() || s_[pos_] != '\\' || s_[pos_ + 1] != 'u') {
              return error("unpaired high surrogate");
            }
            pos_ += 2;
            KVC_RETURN_IF_ERROR(parse_hex4(&low));
            if (low < 0xdc00 || low > 0xdfff) return error("unpaired high surrogate");
            cp = 0x10000 + ((cp - 0xd800) << 10) + (low - 0xdc00);
          }
          append_utf8(out, cp);
          break;
        }
        default:
          --pos_;
          return error("unknown escape");
      }
    }
  }

  // A non-negative integer that fits 64 bits (no sign, fraction or exponent).
  Status parse_u64(std::uint64_t* out) {
    skip_ws();
    if (pos_ >= s_.size() || s_[pos_] < '0' || s_[pos_] > '9') {
      return error("expected a non-negative integer");
    }
    std::uint64_t v = 0;
    while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') {
      const auto d = static_cast<std::uint64_t>(s_[pos_] - '0');
      if (v > (kNever - d) / 10) return error("integer out of range");
      v = v * 10 + d;
      ++pos_;
    }
    if (pos_ < s_.size() && (s_[pos_] == '.' || s_[pos_] == 'e' || s_[pos_] == 'E')) {
      return error("expected an integer");
    }
    *out = v;
    return Status();
  }

  bool consume_word(std::string_view w) {
    skip_ws();
    if (s_.substr(pos_, w.size()) != w) return false;
    pos_ += w.size();
    return true;
  }

  Status parse_bool(bool* out) {
    if (consume_word("true")) {
      *out = true;
      return Status();
    }
    if (consume_word("false")) {
      *out = false;
      return Status();
    }
    return error("expected true or false");
  }

  // Skips any JSON value (for fields this version does not know).
  Status skip_value(int depth) {
    if (depth > kMaxSkipDepth) return error("nesting too deep");
    skip_ws();
    if (pos_ >= s_.size()) return error("expected a value");
    const char c = s_[pos_];
    if (c == '"') {
      std::string ignored;
      return parse_string(&ignored);
    }
    if (c == '{' || c == '[') {
      const char close = c == '{' ? '}' : ']';
      ++pos_;
      if (consume(close)) return Status();
      while (true) {
        if (c == '{') {
          std::string name;
          KVC_RETURN_IF_ERROR(parse_string(&name));
          KVC_RETURN_IF_ERROR(expect(':'));
        }
        KVC_RETURN_IF_ERROR(skip_value(depth + 1));
        if (consume(close)) return Status();
        KVC_RETURN_IF_ERROR(expect(','));
      }
    }
    if (consume_word("true") || consume_word("false") || consume_word("null")) return Status();
    // A number: -?digits(.digits)?([eE][+-]?digits)?
    const std::size_t start = pos_;
    if (peek('-')) ++pos_;
    auto digits = [&] {
      const std::size_t from = pos_;
      while (pos_ < s_.size() && s_[pos_] >= '0' && s_[pos_] <= '9') ++pos_;
      return pos_ > from;
    };
    if (!digits()) {
      pos_ = start;
      return error("expected a value");
    }
    if (peek('.')) {
      ++pos_;
      if (!digits()) return error("expected digits after '.'");
    }
    if (peek('e') || peek('E')) {
      ++pos_;
      if (peek('+') || peek('-')) ++pos_;
      if (!digits()) return error("expected an exponent");
    }
    return Status();
  }

 private:
  Status parse_hex4(std::uint32_t* out) {
    if (pos_ + 4 > s_.size()) return error("short \\u escape");
    std::uint32_t v = 0;
    for (int k = 0; k < 4; ++k) {
      const int h = hex_digit_value(s_[pos_ + k]);
      if (h < 0) return error("bad \\u escape");
      v = v * 16 + static_cast<std::uint32_t>(h);
    }
    pos_ += 4;
    *out = v;
    return Status();
  }

  std::string_view s_;
  std::size_t pos_ = 0;
};

Status parse_operation(std::string_view line, Operation* op) {
  Reader r(line);
  KVC_RETURN_IF_ERROR(r.expect('{'));
  std::set<std::string> seen;
  bool has_kind = false, has_key = false;
  if (!r.consume('}')) {
    while (true) {
      std::string name;
      KVC_RETURN_IF_ERROR(r.parse_string(&name));
      KVC_RETURN_IF_ERROR(r.expect(':'));
      if (!seen.insert(name).second) return r.error("duplicate field \"" + name + "\"");
      // The two spellings of a byte string are one field.
      auto bytes = [&](std::string_view field, std::string* out) -> Status {
        if (name == std::string(field) + "_hex") {
          if (seen.count(std::string(field)) != 0)
            return r.error("both " + name + " and its text form");
          std::string hex;
          KVC_RETURN_IF_ERROR(r.parse_string(&hex));
          Result<std::string> decoded = hex_decode(hex);
          if (!decoded.ok()) return r.error(name + ": " + decoded.status().message());
          *out = std::move(*decoded);
          return Status();
        }
        if (seen.count(std::string(field) + "_hex") != 0) {
          return r.error("both " + name + " and " + name + "_hex");
        }
        return r.parse_string(out);
      };
      if (name == "client") {
        KVC_RETURN_IF_ERROR(r.parse_u64(&op->client));
      } else if (name == "kind") {
        std::string v;
        KVC_RETURN_IF_ERROR(r.parse_string(&v));
        if (v == "put") {
          op->kind = OpKind::kPut;
        } else if (v == "get") {
          op->kind = OpKind::kGet;
        } else if (v == "delete") {
          op->kind = OpKind::kDelete;
        } else if (v == "cas") {
          op->kind = OpKind::kCas;
        } else {
          return r.error("unknown kind \"" + v + "\"");
        }
        has_kind = true;
      } else if (name == "key" || name == "key_hex") {
        KVC_RETURN_IF_ERROR(bytes("key", &op->key));
        has_key = true;
      } else if (name == "value" || name == "value_hex") {
        KVC_RETURN_IF_ERROR(bytes("value", &op->value));
      } else if (name == "read_value" || name == "read_value_hex") {
        KVC_RETURN_IF_ERROR(bytes("read_value", &op->read_value));
      } else if (name == "expect_revision") {
        KVC_RETURN_IF_ERROR(r.parse_u64(&op->expect_revision));
      } else if (name == "outcome") {
        std::string v;
        KVC_RETURN_IF_ERROR(r.parse_string(&v));
        if (v == "ok") {
          op->outcome = Outcome::kOk;
        } else if (v == "failed") {
          op->outcome = Outcome::kFailed;
        } else if (v == "unknown") {
          op->outcome = Outcome::kUnknown;
        } else {
          return r.error("unknown outcome \"" + v + "\"");
        }
      } else if (name == "found") {
        KVC_RETURN_IF_ERROR(r.parse_bool(&op->found));
      } else if (name == "revision") {
        KVC_RETURN_IF_ERROR(r.parse_u64(&op->revision));
      } else if (name == "invoke_time") {
        KVC_RETURN_IF_ERROR(r.parse_u64(&op->invoke_time));
      } else if (name == "response_time") {
        if (r.consume_word("null")) {
          op->response_time = kNever;
        } else {
          KVC_RETURN_IF_ERROR(r.parse_u64(&op->response_time));
        }
      } else {
        KVC_RETURN_IF_ERROR(r.skip_value(0));
      }
      if (r.consume('}')) break;
      KVC_RETURN_IF_ERROR(r.expect(','));
    }
  }
  r.skip_ws();
  if (!r.at_end()) return r.error("text after the object");
  if (!has_kind) return Status::invalid_argument("missing field \"kind\"");
  if (!has_key) return Status::invalid_argument("missing field \"key\"");
  if (op->outcome != Outcome::kUnknown && op->response_time < op->invoke_time) {
    return Status::invalid_argument("response_time " + std::to_string(op->response_time) +
                                    " is before invoke_time " + std::to_string(op->invoke_time));
  }
  return Status();
}

}  // namespace

std::string_view op_kind_name(OpKind kind) {
  switch (kind) {
    case OpKind::kPut:
      return "put";
    case OpKind::kGet:
      return "get";
    case OpKind::kDelete:
      return "delete";
    case OpKind::kCas:
      return "cas";
  }
  return "unknown";
}

std::string_view outcome_name(Outcome outcome) {
  switch (outcome) {
    case Outcome::kOk:
      return "ok";
    case Outcome::kFailed:
      return "failed";
    case Outcome::kUnknown:
      return "unknown";
  }
  return "unknown";
}

std::string operation_to_json(const Operation& op) {
  std::string out = "{\"client\":" + std::to_string(op.client);
  out += ",\"kind\":\"";
  out += op_kind_name(op.kind);
  out += "\"";
  append_bytes_field(&out, "key", op.key);
  append_bytes_field(&out, "value", op.value);
  append_u64_field(&out, "expect_revision", op.expect_revision);
  out += ",\"outcome\":\"";
  out += outcome_name(op.outcome);
  out += "\",\"found\":";
  out += op.found ? "true" : "false";
  append_bytes_field(&out, "read_value", op.read_value);
  append_u64_field(&out, "revision", op.revision);
  append_u64_field(&out, "invoke_time", op.invoke_time);
  if (op.response_time == kNever) {
    out += ",\"response_time\":null";
  } else {
    append_u64_field(&out, "response_time", op.response_time);
  }
  out += "}";
  return out;
}

Result<Operation> operation_from_json(std::string_view line) {
  Operation op;
  if (Status s = parse_operation(line, &op); !s.ok()) return s;
  return op;
}

std::string history_to_jsonl(const History& history) {
  std::string out;
  for (const Operation& op : history) {
    out += operation_to_json(op);
    out += '\n';
  }
  return out;
}

Result<History> history_from_jsonl(std::string_view text) {
  History history;
  std::size_t line_no = 0;
  while (!text.empty()) {
    ++line_no;
    const std::size_t nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    Operation op;
    if (Status s = parse_operation(line, &op); !s.ok()) {
      return s.with_context("line " + std::to_string(line_no));
    }
    history.push_back(std::move(op));
  }
  return history;
}

Status write_history_file(const std::string& path, const History& history) {
  const std::string tmp = path + ".tmp";
  std::FILE* f = std::fopen(tmp.c_str(), "wb");
  if (f == nullptr) return Status::from_errno("open " + tmp, errno);
  const std::string text = history_to_jsonl(history);
  const bool wrote = std::fwrite(text.data(), 1, text.size(), f) == text.size();
  const int write_errno = errno;
  if (std::fclose(f) != 0 || !wrote) {
    const int err = wrote ? errno : write_errno;
    std::remove(tmp.c_str());
    return Status::from_errno("write " + tmp, err);
  }
  if (std::rename(tmp.c_str(), path.c_str()) != 0) {
    const int err = errno;
    std::remove(tmp.c_str());
    return Status::from_errno("rename " + tmp + " to " + path, err);
  }
  return Status();
}

Result<History> read_history_file(const std::string& path) {
  std::FILE* f = std::fopen(path.c_str(), "rb");
  if (f == nullptr) return Status::from_errno("open " + path, errno);
  std::string text;
  char buf[1 << 16];
  while (true) {
    const std::size_t n = std::fread(buf, 1, sizeof(buf), f);
    text.append(buf, n);
    if (text.size() > kMaxFileBytes) {
      std::fclose(f);
      return Status::resource_exhausted(path + ": larger than " +
                                        std::to_string(kMaxFileBytes >> 20) + " MiB");
    }
    if (n < sizeof(buf)) break;
  }
  const bool failed = std::ferror(f) != 0;
  const int err = errno;
  std::fclose(f);
  if (failed) return Status::from_errno("read " + path, err);
  Result<History> history = history_from_jsonl(text);
  if (!history.ok()) return history.status().with_context(path);
  return history;
}

}  // namespace kvc::check
