// The simulator's key-value state machine.
#include "kvc/sim/kv.h"

#include <charconv>
#include <vector>

namespace kvc::sim {
namespace {

std::vector<std::string_view> split(std::string_view s, char sep) {
  std::vector<std::string_view> out;
  std::size_t start = 0;
  while (true) {
    const std::size_t p = s.find(sep, start);
    if (p == std::string_view::npos) {
      out.push_back(s.substr(start));
      return out;
    }
    out.push_back(s.substr(start, p - start));
    start = p + 1;
  }
}

bool parse_u64(std::string_view s, std::uint64_t& v) {
  const auto r = std::from_chars(s.data(), s.data() + s.size(), v);
  return r.ec == std::errc() && r.ptr == s.data() + s.size();
}

}  // namespace

std::string encode_command(const KvCommand& c) {
  return std::to_string(c.op_id) + "|" + std::to_string(static_cast<int>(c.kind)) + "|" + c.key +
         "|" + c.value + "|" + std::to_string(c.expect_revision);
}

Result<KvCommand> decode_command(std::string_view data) {
  const auto parts = split(data, '|');
  if (parts.size() != 5) return Status::corruption("kv command: expected 5 fields");
  KvCommand c;
  std::uint64_t kind = 0;
  if (!parse_u64(parts[0], c.op_id) || !parse_u64(parts[1], kind) || kind > 3 ||
      !parse_u64(parts[4], c.expect_revision)) {
    return Status::corruption("kv command: bad number");
  }
  c.kind = static_cast<check::OpKind>(kind);
  c.key = std::string(parts[2]);
  c.value = std::string(parts[3]);
  return c;
}

KvResult KvStore::apply(const KvCommand& c, std::uint64_t index) {
  KvResult r;
  auto it = items_.find(c.key);
  switch (c.kind) {
    case check::OpKind::kPut:
      items_[c.key] = {c.value, index};
      r.revision = index;
      break;
    case check::OpKind::kDelete:
      if (it != items_.end()) {
        items_.erase(it);
        r.found = true;
        r.revision = index;
      }
      break;
    case check::OpKind::kCas: {
      const bool ok = c.expect_revision == 0
                          ? it == items_.end()
                          : it != items_.end() && it->second.mod_revision == c.expect_revision;
      if (ok) {
        items_[c.key] = {c.value, index};
        r.found = true;
        r.revision = index;
      }
      break;
    }
    case check::OpKind::kGet:
      break;
  }
  applied_ = index;
  return r;
}

const KvStore::Item* KvStore::find(const std::string& key) const {
  auto it = items_.find(key);
  return it == items_.end() ? nullptr : &it->second;
}

std::string KvStore::serialize() const {
  std::string out = "kvsnap|" + std::to_string(applied_) + "\n";
  for (const auto& [k, item] : items_) {
    out += k + "|" + item.value + "|" + std::to_string(item.mod_revision) + "\n";
  }
  return out;
}

Result<KvStore> KvStore::deserialize(std::string_view data) {
  KvStore s;
  auto lines = split(data, '\n');
  if (lines.empty() || lines.back() != "")
    return Status::corruption("kv snapshot: no final newline");
  lines.pop_back();
  if (lines.empty()) return Status::corruption("kv snapshot: empty");
  auto head = split(lines[0], '|');
  if (head.size() != 2 || head[0] != "kvsnap" || !parse_u64(head[1], s.applied_)) {
    return Status::corruption("kv snapshot: bad header");
  }
  for (std::size_t i = 1; i < lines.size(); ++i) {
    auto f = split(lines[i], '|');
    Item item;
    if (f.size() != 3 || !parse_u64(f[2], item.mod_revision)) {
      return Status::corruption("kv snapshot: bad line " + std::to_string(i));
    }
    item.value = std::string(f[1]);
    s.items_[std::string(f[0])] = std::move(item);
  }
  return s;
}

}  // namespace kvc::sim
