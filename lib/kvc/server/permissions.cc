#include "kvc/server/permissions.h"

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include <fstream>
#include <sstream>

#include "kvc/common/text.h"

namespace kvc::server {
namespace {

std::array<unsigned char, 32> sha256(std::string_view bytes) {
  std::array<unsigned char, 32> out{};
  unsigned int n = 0;
  // EVP_Digest with SHA-256 cannot fail short of memory exhaustion, which aborts anyway.
  EVP_Digest(bytes.data(), bytes.size(), out.data(), &n, EVP_sha256(), nullptr);
  return out;
}

bool is_token_name(std::string_view s) {
  if (s.empty()) return false;
  for (char c : s) {
    const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_' || c == '-' || c == '.' || c == '@';
    if (!ok) return false;
  }
  return true;
}

// Splits a line into words: runs of non-blanks, or "quoted" strings with \" \\ and \xHH.
Result<std::vector<std::string>> split_words(std::string_view line) {
  std::vector<std::string> words;
  std::size_t i = 0;
  while (true) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    if (i == line.size()) break;
    std::string w;
    if (line[i] != '"') {
      while (i < line.size() && line[i] != ' ' && line[i] != '\t') {
        if (line[i] == '"') return Status::invalid_argument("a quote inside an unquoted word");
        w += line[i++];
      }
      words.push_back(std::move(w));
      continue;
    }
    ++i;
    bool closed = false;
    while (i < line.size()) {
      const char c = line[i++];
      if (c == '"') {
        closed = true;
        break;
      }
      if (c != '\\') {
        w += c;
        continue;
      }
      if (i == line.size()) break;
      const char e = line[i++];
      if (e == '"' || e == '\\') {
        w += e;
      } else if (e == 'x' && i + 2 <= line.size() && hex_digit_value(line[i]) >= 0 &&
                 hex_digit_value(line[i + 1]) >= 0) {
        w += static_cast<char>(hex_digit_value(line[i]) * 16 + hex_digit_value(line[i + 1]));
        i += 2;
      } else {
        // Kept as written, so that an RFC 2253 subject's own escapes ("O=a\, Inc.") can be
        // copied into the file as OpenSSL prints them.
        w += '\\';
        w += e;
      }
    }
    if (!closed) return Status::invalid_argument("unterminated quoted string");
    if (i < line.size() && line[i] != ' ' && line[i] != '\t') {
      return Status::invalid_argument("no blank after a quoted string");
    }
    words.push_back(std::move(w));
  }
  return words;
}

std::string quote(std::string_view s) { return "\"" + backslash_escape(s) + "\""; }

}  // namespace

std::string token_digest(std::string_view token) {
  const std::array<unsigned char, 32> d = sha256(token);
  return hex_encode(std::string_view(reinterpret_cast<const char*>(d.data()), d.size()));
}

Result<Permissions> Permissions::parse(std::string_view text, const std::string& file) {
  struct Line {
    int number = 0;
    std::vector<std::string> words;
  };
  std::vector<Line> lines;
  int number = 0;
  for (std::string_view rest = text; !rest.empty();) {
    const std::size_t nl = rest.find('\n');
    std::string_view raw = rest.substr(0, nl);
    rest = nl == std::string_view::npos ? std::string_view() : rest.substr(nl + 1);
    ++number;
    if (!raw.empty() && raw.back() == '\r') raw.remove_suffix(1);
    const std::size_t first = raw.find_first_not_of(" \t");
    if (first == std::string_view::npos || raw[first] == '#') continue;
    Result<std::vector<std::string>> words = split_words(raw);
    if (!words.ok()) {
      return Status::invalid_argument(file + ":" + std::to_string(number) + ": " +
                                      words.status().message());
    }
    lines.push_back({number, std::move(*words)});
  }
  Permissions p;
  // Tokens first, so that a grant may come before the token it names.
  std::set<std::string, std::less<>> digests;
  for (const Line& l : lines) {
    auto fail = [&](const std::string& what) {
      return Status::invalid_argument(file + ":" + std::to_string(l.number) + ": " + what);
    };
    const std::string& kind = l.words[0];
    if (kind != "token") continue;
    if (l.words.size() != 3) return fail("token: expected `token NAME SHA256-HEX`");
    const std::string& name = l.words[1];
    if (!is_token_name(name)) {
      return fail("token: bad name " + quote(name) +
                  " (letters, digits and _ - . @; a certificate subject is not a token)");
    }
    if (name == kIdentitySecret || name == kIdentityAnonymous || name == kIdentityEmbedded) {
      return fail("token: " + name + " is a reserved identity, not a token name");
    }
    for (const Token& t : p.tokens_) {
      if (t.name == name) return fail("token: " + name + " is defined twice");
    }
    std::string hex = l.words[2];
    if (hex.starts_with("sha256:")) hex = hex.substr(7);
    Result<std::string> digest = hex_decode(hex);
    if (!digest.ok() || digest->size() != 32) {
      return fail("token " + name +
                  ": the digest must be 64 hex digits, the SHA-256 of the token's value "
                  "(`printf %s TOKEN | sha256sum` or `kvc-ctl auth hash-token`)");
    }
    if (!digests.insert(*digest).second) {
      return fail("token " + name + ": the same digest as another token");
    }
    Token t{.name = name};
    std::copy(digest->begin(), digest->end(), t.digest.begin());
    p.tokens_.push_back(std::move(t));
  }
  for (const Line& l : lines) {
    auto fail = [&](const std::string& what) {
      return Status::invalid_argument(file + ":" + std::to_string(l.number) + ": " + what);
    };
    const std::string& kind = l.words[0];
    if (kind == "token") continue;
    if (kind != "grant" && kind != "admin") {
      return fail("unknown directive " + quote(kind) + " (token, grant or admin)");
    }
    if (kind == "grant" && l.words.size() != 4) {
      return fail("grant: expected `grant IDENTITY read|readwrite PREFIX`");
    }
    if (kind == "admin" && l.words.size() != 2) return fail("admin: expected `admin IDENTITY`");
    const std::string& who = l.words[1];
    if (who.empty()) return fail(kind + ": empty identity");
    if (who == kIdentityEmbedded) {
      return fail(kind + ": embedded is the embedding program, which is never checked");
    }
    const bool is_subject = who.find('=') != std::string::npos;
    if (!is_subject && who != kIdentitySecret && who != kIdentityAnonymous) {
      bool known = false;
      for (const Token& t : p.tokens_) known = known || t.name == who;
      if (!known) {
        return fail(kind + ": no token named " + quote(who) +
                    " (a certificate subject has an '=', e.g. \"CN=ops,O=kvc\"; other "
                    "identities: secret, anonymous)");
      }
    }
    if (kind == "admin") {
      p.admins_.insert(who);
      continue;
    }
    const std::string& level = l.words[2];
    if (level != "read" && level != "readwrite") {
      return fail("grant: unknown access " + quote(level) + " (read or readwrite)");
    }
    p.grants_[who].push_back({.prefix = l.words[3], .write = level == "readwrite"});
  }
  return p;
}

Result<Permissions> Permissions::load(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Status::from_errno(path, errno);
  std::ostringstream text;
  text << in.rdbuf();
  if (in.bad()) return Status::io_error(path + ": read failed");
  return parse(text.str(), path);
}

Result<std::string> Permissions::token_name(std::string_view token) const {
  const std::array<unsigned char, 32> d = sha256(token);
  const Token* found = nullptr;
  // Every digest is compared, in constant time each, so timing tells nothing about which one
  // (or how much of one) matched.
  for (const Token& t : tokens_) {
    if (CRYPTO_memcmp(t.digest.data(), d.data(), d.size()) == 0) found = &t;
  }
  if (found == nullptr) return Status(Code::kUnauthenticated, "unknown token");
  return found->name;
}

bool Permissions::allows(std::string_view identity, const AccessCheck& check) const {
  if (check.access == Access::kAuthenticated) return true;
  if (check.access == Access::kAdmin) return is_admin(identity);
  auto it = grants_.find(identity);
  if (it == grants_.end()) return false;
  for (const Grant& g : it->second) {
    if (check.access == Access::kAnyWrite) {
      if (g.write) return true;
      continue;
    }
    if (check.access == Access::kReadWrite && !g.write) continue;
    // A grant on a prefix covers every key (and every narrower prefix) that starts with it:
    // "/a/" covers "/a/b" and "/a/", never "/ab".
    if (check.key.starts_with(g.prefix)) return true;
  }
  return false;
}

std::vector<std::string> Permissions::describe(std::string_view identity) const {
  std::vector<std::string> out;
  if (auto it = grants_.find(identity); it != grants_.end()) {
    for (const Grant& g : it->second) {
      out.push_back(std::string(g.write ? "readwrite " : "read ") + quote(g.prefix));
    }
  }
  if (is_admin(identity)) out.push_back("admin");
  return out;
}

std::vector<AccessCheck> required_access(const wire::Request& req) {
  using wire::Op;
  std::vector<AccessCheck> out;
  const std::string op(wire::op_name(req.op));
  auto key = [&](Access a, std::string what, const std::string& k) {
    out.push_back({.access = a, .what = std::move(what), .key = k});
  };
  switch (req.op) {
    case Op::kGet:
      key(Access::kRead, "get", req.key);
      break;
    case Op::kRange:
      // Keys from `key` on that start with `value`: the prefix is what is read.
      key(Access::kRead, "range prefix", req.value);
      break;
    case Op::kWatch:
      key(Access::kRead, req.prefix ? "watch prefix" : "watch", req.key);
      break;
    case Op::kPut:
    case Op::kCas:
      key(Access::kReadWrite, op, req.key);
      break;
    case Op::kDelete:
      key(Access::kReadWrite, req.prefix ? "delete prefix" : "delete", req.key);
      break;
    case Op::kTxn:
      for (const Compare& c : req.compares) key(Access::kRead, "txn compare", c.key);
      for (const auto* ops : {&req.then_ops, &req.else_ops}) {
        for (const TxnOp& t : *ops) {
          const bool write = t.type == TxnOpType::kPut || t.type == TxnOpType::kDelete ||
                             t.type == TxnOpType::kDeletePrefix;
          const std::string name(txn_op_name(t.type));
          key(write ? Access::kReadWrite : Access::kRead, "txn " + name, t.key);
        }
      }
      break;
    case Op::kLeaseGrant:
    case Op::kLeaseKeepAlive:
      out.push_back({.access = Access::kAnyWrite, .what = op});
      break;
    case Op::kMemberAdd:
    case Op::kMemberPromote:
    case Op::kMemberRemove:
    case Op::kMemberUpdate:
    case Op::kTransferLeader:
    case Op::kSnapshotSave:
      out.push_back({.access = Access::kAdmin, .what = op});
      break;
    // A state hash at an index (members' hash checks, kvc-ctl check hash) reveals no key.
    case Op::kHash:
    case Op::kLeaseRevoke:  // plus lease_revoke_checks() for its keys
    case Op::kWatchCancel:
    case Op::kLeader:
    case Op::kWatchLeader:
    case Op::kMemberList:
    case Op::kStatus:
    case Op::kHealth:
    case Op::kLeaseTtl:
    case Op::kLeaseList:
    case Op::kWhoami:
      out.push_back({.access = Access::kAuthenticated, .what = op});
      break;
  }
  return out;
}

std::vector<AccessCheck> lease_revoke_checks(const std::vector<std::string>& keys) {
  std::vector<AccessCheck> out;
  for (const std::string& k : keys) {
    out.push_back({.access = Access::kReadWrite, .what = "lease_revoke", .key = k});
  }
  return out;
}

Status permission_denied(std::string_view identity, const AccessCheck& check) {
  std::string m = "permission denied: " + std::string(identity) + " may not " + check.what;
  switch (check.access) {
    case Access::kAdmin:
      m += " (needs admin)";
      break;
    case Access::kAnyWrite:
      m += " (needs readwrite on some prefix)";
      break;
    default:
      m += " " + (check.key.empty() ? std::string("\"\"")
                                    : backslash_escape(check.key, {.quote = false}));
  }
  return Status(Code::kPermissionDenied, std::move(m));
}

}  // namespace kvc::server
