#include "kvc/storage/membership.h"

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <set>

#include "kvc/common/text.h"
#include "kvc/storage/command.h"
#include "kvc/storage/data_dir.h"

namespace kvc::storage {
namespace {

constexpr std::uint8_t kLearnerFlag = 0x01;
constexpr std::uint8_t kMembershipVersion1 = 1;  // no removed ids

bool valid_name(std::string_view name) {
  if (name.empty()) return false;
  for (const char ch : name) {
    const auto c = static_cast<unsigned char>(ch);
    if (c <= 0x20 || c == 0x7f || c == ',' || c == '=') return false;
  }
  return true;
}

// host:port, port 1..65535, host non-empty and free of whitespace, ',' and '='.
bool valid_addr(std::string_view addr) {
  const std::size_t colon = addr.rfind(':');
  if (colon == std::string_view::npos || colon == 0 || colon + 1 == addr.size()) return false;
  const std::string_view port = addr.substr(colon + 1);
  if (port.size() > 5 || port.find_first_not_of("0123456789") != std::string_view::npos) {
    return false;
  }
  const unsigned long p = std::stoul(std::string(port));
  if (p == 0 || p > 65535) return false;
  return valid_name(addr.substr(0, colon));
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

}  // namespace

raft::ConfState Membership::to_conf_state() const {
  raft::ConfState cs;
  for (const Member& m : members) (m.learner ? cs.learners : cs.voters).push_back(m.id);
  return cs;  // members are sorted by id, so both lists are too
}

const Member* Membership::find(std::uint64_t id) const {
  auto it = std::lower_bound(members.begin(), members.end(), id,
                             [](const Member& m, std::uint64_t v) { return m.id < v; });
  return it != members.end() && it->id == id ? &*it : nullptr;
}

bool Membership::was_removed(std::uint64_t id) const {
  return std::binary_search(removed.begin(), removed.end(), id);
}

void Membership::add_removed(std::uint64_t id) {
  auto it = std::lower_bound(removed.begin(), removed.end(), id);
  if (it == removed.end() || *it != id) removed.insert(it, id);
}

const Member* Membership::find_name(std::string_view name) const {
  for (const Member& m : members) {
    if (m.name == name) return &m;
  }
  return nullptr;
}

Status validate_membership(const Membership& m) {
  std::set<std::string_view> names;
  for (std::size_t i = 0; i < m.members.size(); ++i) {
    const Member& x = m.members[i];
    if (x.id == 0) return Status::invalid_argument("membership: member id 0 is reserved");
    if (i > 0 && m.members[i - 1].id >= x.id) {
      return Status::invalid_argument("membership: ids not strictly ascending at member " +
                                      member_id_hex(x.id));
    }
    if (!names.insert(x.name).second) {
      return Status::invalid_argument("membership: duplicate member name '" + x.name + "'");
    }
  }
  for (std::size_t i = 0; i < m.removed.size(); ++i) {
    const std::uint64_t id = m.removed[i];
    if (id == 0) return Status::invalid_argument("membership: removed id 0");
    if (i > 0 && m.removed[i - 1] >= id) {
      return Status::invalid_argument("membership: removed ids not strictly ascending at " +
                                      member_id_hex(id));
    }
    if (m.find(id) != nullptr) {
      return Status::invalid_argument("membership: member " + member_id_hex(id) +
                                      " is both a member and removed");
    }
  }
  return Status();
}

std::string encode_membership(const Membership& m) {
  KVC_CHECK(validate_membership(m).ok(), "encoding an invalid membership");
  std::string out;
  out += static_cast<char>(m.removed.empty() ? kMembershipVersion1 : kMembershipVersion);
  put_varint(out, m.members.size());
  for (const Member& x : m.members) {
    put_varint(out, x.id);
    put_string(out, x.name);
    put_string(out, x.peer_addr);
    put_string(out, x.client_addr);
    out += static_cast<char>(x.learner ? kLearnerFlag : 0);
  }
  if (!m.removed.empty()) {
    put_varint(out, m.removed.size());
    for (const std::uint64_t id : m.removed) put_varint(out, id);
  }
  return out;
}

Result<Membership> decode_membership(std::string_view in) {
  if (in.empty()) return Status::corruption("membership: empty");
  const auto version = static_cast<std::uint8_t>(in[0]);
  if (version != kMembershipVersion1 && version != kMembershipVersion) {
    return Status::corruption("membership: unknown version " + std::to_string(version));
  }
  in.remove_prefix(1);
  std::uint64_t count = 0;
  if (!get_varint(in, count)) return Status::corruption("membership: truncated count");
  // Every member takes at least 5 bytes, so a count larger than that is a lie: refuse it before
  // reserving memory for it.
  if (count > in.size() / 5) return Status::corruption("membership: count exceeds the data");
  Membership m;
  m.members.reserve(static_cast<std::size_t>(count));
  for (std::uint64_t i = 0; i < count; ++i) {
    Member x;
    if (!get_varint(in, x.id) || !get_string(in, x.name) || !get_string(in, x.peer_addr) ||
        !get_string(in, x.client_addr) || in.empty()) {
      return Status::corruption("membership: truncated member " + std::to_string(i));
    }
    const auto flags = static_cast<std::uint8_t>(in[0]);
    in.remove_prefix(1);
    if ((flags & ~kLearnerFlag) != 0) {
      return Status::corruption("membership: unknown flags in member " + std::to_string(i));
    }
    x.learner = (flags & kLearnerFlag) != 0;
    m.members.push_back(std::move(x));
  }
  if (version >= 2) {
    std::uint64_t n = 0;
    if (!get_varint(in, n)) return Status::corruption("membership: truncated removed count");
    // Version 2 is written only with removed ids, and each takes at least one byte.
    if (n == 0 || n > in.size()) {
      return Status::corruption("membership: bad removed count " + std::to_string(n));
    }
    m.removed.reserve(static_cast<std::size_t>(n));
    for (std::uint64_t i = 0; i < n; ++i) {
      std::uint64_t id = 0;
      if (!get_varint(in, id)) {
        return Status::corruption("membership: truncated removed id " + std::to_string(i));
      }
      m.removed.push_back(id);
    }
  }
  if (!in.empty()) {
    return Status::corruption("membership: " + std::to_string(in.size()) + " trailing bytes");
  }
  if (Status s = validate_membership(m); !s.ok()) return Status::corruption(s.message());
  return m;
}

Result<Membership> parse_initial_cluster(std::string_view cluster_token,
                                         std::string_view initial_cluster) {
  Membership m;
  std::set<std::string> names, addrs;
  std::string_view rest = initial_cluster;
  if (trim(rest).empty()) return Status::invalid_argument("--initial-cluster is empty");
  while (true) {
    const std::size_t comma = rest.find(',');
    const std::string_view item = trim(rest.substr(0, comma));
    const std::size_t eq = item.find('=');
    if (eq == std::string_view::npos) {
      return Status::invalid_argument("--initial-cluster: '" + std::string(item) +
                                      "' is not NAME=HOST:PORT");
    }
    const std::string name(item.substr(0, eq));
    const std::string addr(item.substr(eq + 1));
    if (!valid_name(name)) {
      return Status::invalid_argument("--initial-cluster: bad member name '" + name + "'");
    }
    if (!valid_addr(addr)) {
      return Status::invalid_argument("--initial-cluster: bad peer address '" + addr +
                                      "' for member " + name + " (want HOST:PORT)");
    }
    if (!names.insert(name).second) {
      return Status::invalid_argument("--initial-cluster: member name " + name + " appears twice");
    }
    if (!addrs.insert(addr).second) {
      return Status::invalid_argument("--initial-cluster: peer address " + addr + " appears twice");
    }
    m.members.push_back(
        {.id = derive_member_id(cluster_token, name), .name = name, .peer_addr = addr});
    if (comma == std::string_view::npos) break;
    rest.remove_prefix(comma + 1);
  }
  std::sort(m.members.begin(), m.members.end(),
            [](const Member& a, const Member& b) { return a.id < b.id; });
  for (std::size_t i = 1; i < m.members.size(); ++i) {
    if (m.members[i - 1].id == m.members[i].id) {
      return Status::invalid_argument("--initial-cluster: members " + m.members[i - 1].name +
                                      " and " + m.members[i].name +
                                      " derive the same id; rename one");
    }
  }
  return m;
}

std::string sorted_initial_cluster(const Membership& m) {
  std::vector<std::string> items;
  items.reserve(m.members.size());
  for (const Member& x : m.members) items.push_back(x.name + "=" + x.peer_addr);
  std::sort(items.begin(), items.end());
  std::string out;
  for (const std::string& s : items) {
    if (!out.empty()) out += ',';
    out += s;
  }
  return out;
}

std::string describe_membership(const Membership& m) {
  if (m.members.empty()) return "(none)";
  std::string out;
  for (const Member& x : m.members) {
    if (!out.empty()) out += ", ";
    out += x.name + " (id " + member_id_hex(x.id) + ", peer " +
           (x.peer_addr.empty() ? "-" : x.peer_addr);
    if (!x.client_addr.empty()) out += ", client " + x.client_addr;
    out += x.learner ? ", learner)" : ", voter)";
  }
  if (!m.removed.empty()) {
    out += "; removed";
    for (const std::uint64_t id : m.removed) out += " " + member_id_hex(id);
  }
  return out;
}

std::string member_id_hex(std::uint64_t id) { return id_hex(id); }

}  // namespace kvc::storage
