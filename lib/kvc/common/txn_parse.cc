#include "kvc/common/txn_parse.h"

#include <charconv>
#include <optional>
#include <string>
#include <vector>

#include "kvc/common/json.h"
#include "kvc/common/text.h"

namespace kvc {
namespace {

// A decimal unsigned 64-bit number, all of `s`.
Result<std::uint64_t> parse_uint(std::string_view s) {
  std::uint64_t v = 0;
  const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size()) {
    return Status::invalid_argument("'" + std::string(s) + "' is not a number");
  }
  return v;
}

// ---- txn text (etcdctl's format) ----

// Splits a line into words: blanks separate them, "..." holds blanks and backslash escapes
// (\" \\ \n \t \r \xHH), '...' holds anything literally.
Result<std::vector<std::string>> words(std::string_view line) {
  std::vector<std::string> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    std::string w;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      const char ch = line[i];
      if (ch == '\'') {
        const std::size_t end = line.find('\'', i + 1);
        if (end == std::string_view::npos) return Status::invalid_argument("unterminated '");
        w.append(line.substr(i + 1, end - i - 1));
        i = end + 1;
      } else if (ch == '"') {
        ++i;
        bool closed = false;
        while (i < line.size()) {
          char c = line[i++];
          if (c == '"') {
            closed = true;
            break;
          }
          if (c == '\\' && i < line.size()) {
            c = line[i++];
            switch (c) {
              case 'n':
                w += '\n';
                break;
              case 't':
                w += '\t';
                break;
              case 'r':
                w += '\r';
                break;
              case 'x': {
                const std::optional<std::uint64_t> v =
                    i + 2 <= line.size() ? parse_hex_u64(line.substr(i, 2)) : std::nullopt;
                if (!v) return Status::invalid_argument("bad \\x escape");
                w += static_cast<char>(*v);
                i += 2;
                break;
              }
              default:
                w += c;
            }
          } else {
            w += c;
          }
        }
        if (!closed) return Status::invalid_argument("unterminated \"");
      } else {
        w += ch;
        ++i;
      }
    }
    out.push_back(std::move(w));
  }
  return out;
}

// `target("key") op value`, or exists("key") / missing("key").
Result<Compare> parse_compare(std::string_view line) {
  const std::size_t open = line.find('(');
  if (open == std::string_view::npos) {
    return Status::invalid_argument("a compare looks like mod(\"key\") > \"0\"");
  }
  const std::string target(line.substr(0, open));
  // The key's closing parenthesis: after a quoted key, else the first one.
  std::size_t close;
  std::size_t at = open + 1;
  while (at < line.size() && line[at] == ' ') ++at;
  if (at < line.size() && (line[at] == '"' || line[at] == '\'')) {
    const char q = line[at];
    std::size_t end = at + 1;
    while (end < line.size() && line[end] != q) end += line[end] == '\\' && q == '"' ? 2 : 1;
    close = line.find(')', end);
  } else {
    close = line.find(')', at);
  }
  if (close == std::string_view::npos) return Status::invalid_argument("missing ')'");
  Result<std::vector<std::string>> key = words(line.substr(open + 1, close - open - 1));
  if (!key.ok()) return key.status();
  if (key->size() != 1) return Status::invalid_argument("a compare names one key");
  Compare c;
  c.key = (*key)[0];
  Result<std::vector<std::string>> rest = words(line.substr(close + 1));
  if (!rest.ok()) return rest.status();
  if (target == "exists" || target == "missing") {
    if (!rest->empty())
      return Status::invalid_argument(target + "(\"key\") takes nothing after it");
    c.target = CompareTarget::kCreateRevision;
    c.op = target == "exists" ? CompareOp::kGreater : CompareOp::kEqual;
    return c;
  }
  if (rest->size() != 2) return Status::invalid_argument("a compare needs an operator and a value");
  const std::string& op = (*rest)[0];
  const std::string& value = (*rest)[1];
  if (op == "=" || op == "==") {
    c.op = CompareOp::kEqual;
  } else if (op == "!=") {
    c.op = CompareOp::kNotEqual;
  } else if (op == "<") {
    c.op = CompareOp::kLess;
  } else if (op == ">") {
    c.op = CompareOp::kGreater;
  } else {
    return Status::invalid_argument("unknown operator '" + op + "' (=, !=, <, >)");
  }
  if (target == "val" || target == "value") {
    c.target = CompareTarget::kValue;
    c.value = value;
    return c;
  }
  if (target == "c" || target == "create") {
    c.target = CompareTarget::kCreateRevision;
  } else if (target == "m" || target == "mod") {
    c.target = CompareTarget::kModRevision;
  } else if (target == "ver" || target == "version") {
    c.target = CompareTarget::kVersion;
  } else if (target == "lease") {
    c.target = CompareTarget::kLease;
    Result<std::uint64_t> id =
        value == "0" ? Result<std::uint64_t>(std::uint64_t{0}) : parse_lease_id(value);
    if (!id.ok()) return id.status();
    c.number = *id;
    return c;
  } else {
    return Status::invalid_argument("unknown compare target '" + target +
                                    "' (value, mod, create, version, lease, exists, missing)");
  }
  Result<std::uint64_t> n = parse_uint(value);
  if (!n.ok()) return Status::invalid_argument("'" + value + "' is not a number");
  c.number = *n;
  return c;
}

// put KEY VALUE [--lease ID], get KEY [--prefix] [--limit N], del KEY [--prefix].
Result<TxnOp> parse_op(std::string_view line) {
  Result<std::vector<std::string>> w = words(line);
  if (!w.ok()) return w.status();
  if (w->empty()) return Status::invalid_argument("empty op");
  const std::string verb = (*w)[0];
  std::vector<std::string> args;
  bool prefix = false;
  std::string lease, limit;
  for (std::size_t i = 1; i < w->size(); ++i) {
    const std::string& a = (*w)[i];
    auto value_of = [&](const std::string& flag, std::string& out) -> bool {
      if (a.rfind(flag + "=", 0) == 0) {
        out = a.substr(flag.size() + 1);
        return true;
      }
      if (a == flag && i + 1 < w->size()) {
        out = (*w)[++i];
        return true;
      }
      return false;
    };
    if (a == "--prefix") {
      prefix = true;
    } else if (value_of("--lease", lease) || value_of("--limit", limit)) {
    } else if (a.rfind("--", 0) == 0) {
      return Status::invalid_argument("unknown flag " + a);
    } else {
      args.push_back(a);
    }
  }
  TxnOp op;
  if (verb == "put") {
    if (args.size() != 2 || prefix) return Status::invalid_argument("put KEY VALUE [--lease ID]");
    op.type = TxnOpType::kPut;
    op.value = args[1];
    if (!lease.empty()) {
      Result<std::uint64_t> id = parse_lease_id(lease);
      if (!id.ok()) return id.status();
      op.lease = *id;
    }
  } else if (verb == "get") {
    if (args.size() != 1) return Status::invalid_argument("get KEY [--prefix] [--limit N]");
    op.type = prefix ? TxnOpType::kGetPrefix : TxnOpType::kGet;
    if (!limit.empty()) {
      Result<std::uint64_t> n = parse_uint(limit);
      if (!n.ok()) return Status::invalid_argument("--limit: not a number");
      op.limit = *n;
    }
  } else if (verb == "del" || verb == "delete") {
    if (args.size() != 1) return Status::invalid_argument("del KEY [--prefix]");
    op.type = prefix ? TxnOpType::kDeletePrefix : TxnOpType::kDelete;
  } else {
    return Status::invalid_argument("unknown op '" + verb + "' (put, get, del)");
  }
  if ((!lease.empty() && verb != "put") || (!limit.empty() && verb != "get")) {
    return Status::invalid_argument("--lease goes with put, --limit with get");
  }
  op.key = args[0];
  return op;
}

// ---- txn JSON ----

Result<std::string> json_bytes_field(const JsonValue& o, const std::string& name, bool required) {
  if (const JsonValue* v = o.find(name); v != nullptr) {
    if (v->type != JsonValue::Type::kString)
      return Status::invalid_argument(name + ": not a string");
    return v->text;
  }
  if (const JsonValue* v = o.find(name + "_base64"); v != nullptr) {
    if (v->type != JsonValue::Type::kString) {
      return Status::invalid_argument(name + "_base64: not a string");
    }
    return base64_decode(v->text);
  }
  if (required) return Status::invalid_argument("missing \"" + name + "\"");
  return std::string();
}

Result<std::vector<TxnOp>> json_ops(const JsonValue* list, const char* what) {
  std::vector<TxnOp> out;
  if (list == nullptr) return out;
  if (list->type != JsonValue::Type::kArray) {
    return Status::invalid_argument(std::string(what) + ": not an array");
  }
  for (const JsonValue& o : list->array) {
    if (o.type != JsonValue::Type::kObject) {
      return Status::invalid_argument(std::string(what) + ": an op is not an object");
    }
    const JsonValue* verb = o.find("op");
    if (verb == nullptr || verb->type != JsonValue::Type::kString) {
      return Status::invalid_argument(std::string(what) + ": an op without \"op\"");
    }
    TxnOp op;
    Result<std::string> key = json_bytes_field(o, "key", true);
    if (!key.ok()) return key.status();
    op.key = *key;
    const JsonValue* prefix = o.find("prefix");
    const bool is_prefix =
        prefix != nullptr && prefix->type == JsonValue::Type::kBool && prefix->boolean;
    if (verb->text == "put") {
      op.type = TxnOpType::kPut;
      Result<std::string> value = json_bytes_field(o, "value", true);
      if (!value.ok()) return value.status();
      op.value = *value;
      if (const JsonValue* l = o.find("lease"); l != nullptr) {
        Result<std::uint64_t> id = parse_lease_id(l->text);
        if (!id.ok()) return id.status();
        op.lease = *id;
      }
    } else if (verb->text == "get") {
      op.type = is_prefix ? TxnOpType::kGetPrefix : TxnOpType::kGet;
      if (const JsonValue* l = o.find("limit"); l != nullptr) {
        std::optional<std::uint64_t> n = l->as_uint64();
        if (!n) return Status::invalid_argument("limit: not a non-negative integer");
        op.limit = *n;
      }
    } else if (verb->text == "del" || verb->text == "delete") {
      op.type = is_prefix ? TxnOpType::kDeletePrefix : TxnOpType::kDelete;
    } else {
      return Status::invalid_argument("unknown op \"" + verb->text + "\" (put, get, del)");
    }
    out.push_back(std::move(op));
  }
  return out;
}

}  // namespace

Result<std::uint64_t> parse_lease_id(std::string_view text) {
  std::optional<std::uint64_t> v = parse_hex_u64(text);
  if (!v || *v == 0) {
    return Status::invalid_argument("'" + std::string(text) +
                                    "' is not a lease id (1 to 16 hex digits, as lease grant "
                                    "prints it)");
  }
  return *v;
}

Result<TxnSpec> parse_txn_text(std::string_view text) {
  TxnSpec req;
  int section = 0;  // 0 compares, 1 success ops, 2 failure ops
  std::size_t line_no = 0;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    std::size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size();
    std::string_view line(text.data() + pos, nl - pos);
    pos = nl + 1;
    ++line_no;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::size_t first = line.find_first_not_of(" \t");
    if (first == std::string_view::npos) {
      if (pos <= text.size() || section < 2) ++section;  // a blank line ends a section
      if (section > 2 && pos <= text.size()) {
        // Trailing blank lines are fine; anything after them is not.
        if (text.find_first_not_of(" \t\r\n", pos) != std::string::npos) {
          return Status::invalid_argument("line " + std::to_string(line_no + 1) +
                                          ": text after the failure ops");
        }
        break;
      }
      continue;
    }
    line.remove_prefix(first);
    if (line[0] == '#') continue;
    auto at = [&](const Status& s) {
      return Status::invalid_argument("line " + std::to_string(line_no) + ": " + s.message());
    };
    if (section == 0) {
      Result<Compare> c = parse_compare(line);
      if (!c.ok()) return at(c.status());
      req.compares.push_back(std::move(*c));
    } else if (section <= 2) {
      Result<TxnOp> op = parse_op(line);
      if (!op.ok()) return at(op.status());
      (section == 1 ? req.then_ops : req.else_ops).push_back(std::move(*op));
    }
  }
  return req;
}

Result<TxnSpec> parse_txn_json(std::string_view text) {
  Result<JsonValue> doc = parse_json(text);
  if (!doc.ok()) return doc.status();
  if (doc->type != JsonValue::Type::kObject) return Status::invalid_argument("not a JSON object");
  for (const JsonMember& m : doc->object) {
    if (m.key != "compares" && m.key != "success" && m.key != "failure") {
      return Status::invalid_argument("unknown field \"" + m.key +
                                      "\" (compares, success, failure)");
    }
  }
  TxnSpec req;
  if (const JsonValue* cs = doc->find("compares"); cs != nullptr) {
    if (cs->type != JsonValue::Type::kArray)
      return Status::invalid_argument("compares: not an array");
    for (const JsonValue& o : cs->array) {
      const JsonValue* target = o.find("target");
      const JsonValue* op = o.find("op");
      Result<std::string> key = json_bytes_field(o, "key", true);
      if (!key.ok()) return key.status();
      if (target == nullptr || target->type != JsonValue::Type::kString) {
        return Status::invalid_argument("a compare without \"target\"");
      }
      std::string line = target->text + "(" + json_quote(*key) + ")";
      if (target->text != "exists" && target->text != "missing") {
        if (op == nullptr || op->type != JsonValue::Type::kString) {
          return Status::invalid_argument("a compare without \"op\"");
        }
        Result<std::string> value = json_bytes_field(o, "value", false);
        if (!value.ok()) return value.status();
        std::string v = *value;
        if (const JsonValue* n = o.find("number"); n != nullptr) v = n->text;
        line += " " + op->text + " " + json_quote(v);
      }
      // One grammar for both forms: the JSON compare is turned into its text line (json_quote
      // escapes exactly what words() unescapes).
      Result<Compare> c = parse_compare(line);
      if (!c.ok()) return c.status();
      req.compares.push_back(std::move(*c));
    }
  }
  Result<std::vector<TxnOp>> then_ops = json_ops(doc->find("success"), "success");
  if (!then_ops.ok()) return then_ops.status();
  Result<std::vector<TxnOp>> else_ops = json_ops(doc->find("failure"), "failure");
  if (!else_ops.ok()) return else_ops.status();
  req.then_ops = std::move(*then_ops);
  req.else_ops = std::move(*else_ops);
  return req;
}

}  // namespace kvc
