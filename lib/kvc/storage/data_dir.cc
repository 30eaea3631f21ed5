#include "kvc/storage/data_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cinttypes>
#include <cstdio>
#include <map>

#include "kvc/common/text.h"
#include "kvc/storage/checked_fields.h"

namespace kvc::storage {
namespace {

constexpr const char* kHeader =
    "# kvc member identity: which member of which cluster this is.\n"
    "# Written by kvc-node; do not edit (a checksum guards it).\n";

bool valid_text_field(const std::string& s) {
  return s.find_first_of("\n\r=") == std::string::npos;
}

Result<std::uint64_t> parse_hex(const std::string& s, const std::string& what,
                                const std::string& path) {
  const std::optional<std::uint64_t> v = parse_hex_u64(s);
  if (!v) return Status::corruption(path + ": bad " + what + " '" + s + "'");
  return *v;
}

std::uint64_t fnv1a(std::string_view a, std::string_view b) {
  std::uint64_t h = 0xcbf29ce484222325ull;
  auto mix = [&h](std::string_view s) {
    for (const char c : s) {
      h ^= static_cast<unsigned char>(c);
      h *= 0x100000001b3ull;
    }
  };
  mix(a);
  mix(std::string_view("\0", 1));
  mix(b);
  return h == 0 ? 1 : h;
}

}  // namespace

std::uint64_t derive_member_id(std::string_view cluster_token, std::string_view name) {
  return fnv1a(cluster_token, name);
}

std::uint64_t derive_cluster_id(std::string_view cluster_token,
                                std::string_view sorted_initial_cluster) {
  return fnv1a(cluster_token, sorted_initial_cluster);
}

std::string encode_identity(const Identity& id) {
  KVC_CHECK(valid_text_field(id.name) && valid_text_field(id.cluster_token) &&
                id.initial_cluster.find_first_of("\n\r") == std::string::npos,
            "identity fields must not contain newlines or '='");
  std::string body = kHeader;
  body += "format_version=" + std::to_string(id.format_version) + "\n";
  body += "name=" + id.name + "\n";
  body += "member_id=" + id_hex(id.member_id) + "\n";
  body += "cluster_id=" + id_hex(id.cluster_id) + "\n";
  body += "cluster_token=" + id.cluster_token + "\n";
  body += "initial_cluster=" + id.initial_cluster + "\n";
  return seal_fields(std::move(body));
}

Result<Identity> decode_identity(std::string_view text, const std::string& path) {
  Result<std::vector<CheckedField>> fields = parse_checked_fields(text);
  if (!fields.ok()) {
    return Status::corruption(path + ": " + fields.status().message() +
                              " (the identity file is truncated, edited or damaged)");
  }
  std::map<std::string, std::string> kv;
  for (const auto& [key, value] : *fields) kv[std::string(key)] = std::string(value);
  for (const char* field : {"format_version", "name", "member_id", "cluster_id", "cluster_token"}) {
    if (kv.find(field) == kv.end()) return Status::corruption(path + ": missing " + field);
  }
  Identity id;
  const std::string& v = kv["format_version"];
  if (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos) {
    return Status::corruption(path + ": bad format_version '" + v + "'");
  }
  id.format_version = static_cast<std::uint32_t>(std::stoul(v));
  if (id.format_version != kDataDirFormatVersion) {
    return Status::failed_precondition(path + ": data directory format version " + v +
                                       " is not supported by this kvc (supports " +
                                       std::to_string(kDataDirFormatVersion) + ")");
  }
  id.name = kv["name"];
  id.cluster_token = kv["cluster_token"];
  id.initial_cluster = kv["initial_cluster"];  // optional
  Result<std::uint64_t> member = parse_hex(kv["member_id"], "member_id", path);
  if (!member.ok()) return member.status();
  Result<std::uint64_t> cluster = parse_hex(kv["cluster_id"], "cluster_id", path);
  if (!cluster.ok()) return cluster.status();
  id.member_id = *member;
  id.cluster_id = *cluster;
  return id;
}

Result<DataDir> DataDir::open(const std::string& path, Mode mode) {
  if (path.empty()) return Status::invalid_argument("empty data directory path");
  if (mode == Mode::kReadOnly) {
    if (!path_exists(path)) return Status::not_found("data directory " + path + " does not exist");
    return DataDir(path, UniqueFd());
  }
  KVC_RETURN_IF_ERROR(make_dirs(path, 0700));
  const std::string lock_path = path + "/lock";
  Result<UniqueFd> fd = open_file(lock_path, O_RDWR | O_CREAT, 0600);
  if (!fd.ok()) return fd.status();
  if (const int err = lock_fd(fd->get()); err != 0) {
    if (err != EWOULDBLOCK) return errno_status("lock " + lock_path, err);
    Result<std::string> holder = read_file(lock_path);
    std::string pid = holder.ok() ? *holder : "";
    while (!pid.empty() && (pid.back() == '\n' || pid.back() == ' ')) pid.pop_back();
    return Status::failed_precondition("data directory " + path + " is in use by another process" +
                                       (pid.empty() ? "" : " (pid " + pid + ")"));
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  KVC_RETURN_IF_ERROR(truncate_file(fd->get(), 0, lock_path));
  KVC_RETURN_IF_ERROR(pwrite_all(fd->get(), pid, 0, lock_path));
  for (const char* sub : {"/wal", "/snap", "/state"}) {
    KVC_RETURN_IF_ERROR(make_dirs(path + sub, 0700));
  }
  KVC_RETURN_IF_ERROR(fsync_dir(path));
  return DataDir(path, std::move(*fd));
}

bool DataDir::has_identity() const { return path_exists(identity_path()); }

Result<Identity> DataDir::read_identity() const {
  Result<std::string> text = read_file(identity_path());
  if (!text.ok()) return text.status();
  return decode_identity(*text, identity_path());
}

Status DataDir::write_identity(const Identity& id) {
  if (read_only()) return Status::failed_precondition("data directory opened read-only");
  if (!valid_text_field(id.name) || !valid_text_field(id.cluster_token)) {
    return Status::invalid_argument(
        "member name and cluster token must not contain newlines or '='");
  }
  return write_file_atomic(identity_path(), encode_identity(id));
}

bool DataDir::is_empty() const {
  Result<std::vector<std::string>> names = list_dir(path_);
  if (!names.ok()) return false;
  for (const std::string& n : *names) {
    if (n == "lock") continue;
    if (n == "wal" || n == "snap" || n == "state") {
      Result<std::vector<std::string>> inner = list_dir(path_ + "/" + n);
      if (inner.ok() && inner->empty()) continue;
    }
    return false;
  }
  return true;
}

}  // namespace kvc::storage
