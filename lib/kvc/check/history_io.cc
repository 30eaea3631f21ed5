// JSON Lines for histories: a writer, and a reader of one flat object per line on top of
// kvc::parse_json (nested values in unknown fields are ignored, to a bounded depth).
#include "kvc/check/history_io.h"

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <initializer_list>
#include <optional>
#include <set>

#include "kvc/common/json.h"
#include "kvc/common/text.h"

namespace kvc::check {
namespace {

constexpr int kMaxDepth = 32;                                // nesting in unknown fields
constexpr std::size_t kMaxFileBytes = std::size_t{1} << 30;  // read_history_file refuses more

// "<name>" when the bytes are valid UTF-8, else "<name>_hex".
void bytes_field(JsonObject& o, const std::string& name, std::string_view bytes) {
  if (is_valid_utf8(bytes)) {
    o.str(name, bytes);
  } else {
    o.str(name + "_hex", hex_encode(bytes));
  }
}

// One field's value as a non-negative 64-bit integer, exactly as written.
Status u64_value(const JsonValue& v, std::uint64_t* out) {
  if (v.type != JsonValue::Type::kNumber || v.text.empty() || v.text[0] == '-') {
    return Status::invalid_argument("expected a non-negative integer");
  }
  if (v.text.find_first_of(".eE") != std::string::npos) {
    return Status::invalid_argument("expected an integer");
  }
  const std::optional<std::uint64_t> n = v.as_uint64();
  if (!n) return Status::invalid_argument("integer out of range");
  *out = *n;
  return Status();
}

Status string_value(const JsonValue& v, std::string* out) {
  if (v.type != JsonValue::Type::kString) return Status::invalid_argument("expected a string");
  *out = v.text;
  return Status();
}

// One of `all` by the name the format gives it (op_kind_name, outcome_name).
template <typename E>
Status named_value(const JsonValue& v, std::initializer_list<E> all, std::string_view (*name)(E),
                   const char* what, E* out) {
  std::string text;
  KVC_RETURN_IF_ERROR(string_value(v, &text));
  for (const E e : all) {
    if (name(e) == text) {
      *out = e;
      return Status();
    }
  }
  return Status::invalid_argument(std::string("unknown ") + what + " \"" + text + "\"");
}

Status parse_operation(std::string_view line, Operation* op) {
  Result<JsonValue> doc = parse_json(line, kMaxDepth);
  if (!doc.ok()) return doc.status();
  if (doc->type != JsonValue::Type::kObject) {
    return Status::invalid_argument("expected an object");
  }
  std::set<std::string_view> seen;
  bool has_kind = false, has_key = false;
  for (const JsonMember& m : doc->object) {
    const std::string& name = m.key;
    const JsonValue& v = m.value;
    if (!seen.insert(name).second) {
      return Status::invalid_argument("duplicate field \"" + name + "\"");
    }
    // The two spellings of a byte string are one field.
    auto bytes = [&](const std::string& field, std::string* out) -> Status {
      const bool hex = name != field;
      if (seen.count(hex ? field : field + "_hex") != 0) {
        return Status::invalid_argument("both " + field + " and " + field + "_hex");
      }
      if (!hex) return string_value(v, out);
      std::string text;
      KVC_RETURN_IF_ERROR(string_value(v, &text));
      Result<std::string> decoded = hex_decode(text);
      if (!decoded.ok()) return decoded.status();
      *out = std::move(*decoded);
      return Status();
    };
    Status s;
    if (name == "client") {
      s = u64_value(v, &op->client);
    } else if (name == "kind") {
      s = named_value(v, {OpKind::kPut, OpKind::kGet, OpKind::kDelete, OpKind::kCas}, op_kind_name,
                      "kind", &op->kind);
      has_kind = true;
    } else if (name == "key" || name == "key_hex") {
      s = bytes("key", &op->key);
      has_key = true;
    } else if (name == "value" || name == "value_hex") {
      s = bytes("value", &op->value);
    } else if (name == "read_value" || name == "read_value_hex") {
      s = bytes("read_value", &op->read_value);
    } else if (name == "expect_revision") {
      s = u64_value(v, &op->expect_revision);
    } else if (name == "outcome") {
      s = named_value(v, {Outcome::kOk, Outcome::kFailed, Outcome::kUnknown}, outcome_name,
                      "outcome", &op->outcome);
    } else if (name == "found") {
      if (v.type != JsonValue::Type::kBool) {
        s = Status::invalid_argument("expected true or false");
      } else {
        op->found = v.boolean;
      }
    } else if (name == "revision") {
      s = u64_value(v, &op->revision);
    } else if (name == "invoke_time") {
      s = u64_value(v, &op->invoke_time);
    } else if (name == "response_time") {
      if (v.type == JsonValue::Type::kNull) {
        op->response_time = kNever;
      } else {
        s = u64_value(v, &op->response_time);
      }
    }  // other fields: from a later version of the format, ignored
    if (!s.ok()) return s.with_context("field \"" + name + "\"");
  }
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
  JsonObject o;
  o.num("client", op.client).str("kind", op_kind_name(op.kind));
  bytes_field(o, "key", op.key);
  bytes_field(o, "value", op.value);
  o.num("expect_revision", op.expect_revision)
      .str("outcome", outcome_name(op.outcome))
      .boolean("found", op.found);
  bytes_field(o, "read_value", op.read_value);
  o.num("revision", op.revision).num("invoke_time", op.invoke_time);
  if (op.response_time == kNever) {
    o.null("response_time");
  } else {
    o.num("response_time", op.response_time);
  }
  return o.done();
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
