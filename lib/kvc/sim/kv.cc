// The simulator's key-value state machine.
#include "kvc/sim/kv.h"

#include <charconv>

#include "kvc/common/crc32c.h"

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

std::uint32_t item_checksum(std::string_view key, std::string_view value, std::uint64_t rev) {
  std::uint32_t crc = crc32c::extend(0, key.data(), key.size());
  const char sep = 0;
  crc = crc32c::extend(crc, &sep, 1);
  crc = crc32c::extend(crc, value.data(), value.size());
  unsigned char r[8];
  for (int i = 0; i < 8; ++i) r[i] = static_cast<unsigned char>(rev >> (8 * i));
  return crc32c::extend(crc, r, sizeof r);
}

KvStore::Item make_item(std::string_view key, std::string value, std::uint64_t rev) {
  KvStore::Item item;
  item.checksum = item_checksum(key, value, rev);
  item.value = std::move(value);
  item.mod_revision = rev;
  return item;
}

Status check_item(const std::string& key, const KvStore::Item& item) {
  if (item_checksum(key, item.value, item.mod_revision) == item.checksum) return ok_status();
  return Status::corruption("kv state: checksum mismatch in the value of key " + key +
                            " (revision " + std::to_string(item.mod_revision) + ")");
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

Result<KvResult> KvStore::apply(const KvCommand& c, std::uint64_t index) {
  KvResult r;
  auto it = items_.find(c.key);
  if (it != items_.end()) {
    if (Status s = check_item(it->first, it->second); !s.ok()) return s;
  }
  switch (c.kind) {
    case check::OpKind::kPut:
      items_[c.key] = make_item(c.key, c.value, index);
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
        items_[c.key] = make_item(c.key, c.value, index);
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

Result<const KvStore::Item*> KvStore::get(const std::string& key) const {
  auto it = items_.find(key);
  if (it == items_.end()) return static_cast<const Item*>(nullptr);
  if (Status s = check_item(it->first, it->second); !s.ok()) return s;
  return &it->second;
}

Status KvStore::verify() const {
  for (const auto& [k, item] : items_) KVC_RETURN_IF_ERROR(check_item(k, item));
  return ok_status();
}

std::vector<std::string> KvStore::keys() const {
  std::vector<std::string> out;
  for (const auto& [k, item] : items_) out.push_back(k);
  return out;
}

bool KvStore::damage(const std::string& key) {
  auto it = items_.find(key);
  if (it == items_.end()) return false;
  std::string& v = it->second.value;
  if (v.empty()) {
    v = "x";
  } else {
    // A value no client wrote (simulated values are printable): if one were ever served, the
    // linearizability checker would see a read of a value that was never written.
    v[v.size() / 2] = static_cast<char>(v[v.size() / 2] ^ 0x20);
  }
  return true;
}

Result<std::string> KvStore::serialize() const {
  std::string out = "kvsnap|" + std::to_string(applied_) + "\n";
  for (const auto& [k, item] : items_) {
    KVC_RETURN_IF_ERROR(check_item(k, item));
    out += k + "|" + item.value + "|" + std::to_string(item.mod_revision) + "|" +
           std::to_string(item.checksum) + "\n";
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
    std::uint64_t crc = 0;
    if (f.size() != 4 || !parse_u64(f[2], item.mod_revision) || !parse_u64(f[3], crc) ||
        crc > 0xffffffffu) {
      return Status::corruption("kv snapshot: bad line " + std::to_string(i));
    }
    item.value = std::string(f[1]);
    item.checksum = static_cast<std::uint32_t>(crc);
    const std::string key(f[0]);
    if (Status st = check_item(key, item); !st.ok()) {
      return Status::corruption("kv snapshot: line " + std::to_string(i) + ": " + st.message());
    }
    s.items_[key] = std::move(item);
  }
  return s;
}

}  // namespace kvc::sim
