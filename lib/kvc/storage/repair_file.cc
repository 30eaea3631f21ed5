#include "kvc/storage/repair_file.h"

#include <unistd.h>

#include <cerrno>
#include <cstdio>

#include "kvc/common/text.h"
#include "kvc/storage/checked_fields.h"
#include "kvc/storage/fs.h"

namespace kvc::storage {
namespace {

constexpr std::string_view kHeader = "# kvc repair state: do not edit (kvc-node(1), FILES)\n";

bool parse_u64_text(std::string_view s, std::uint64_t& v) {
  if (s.empty() || s.size() > 20) return false;
  v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    const std::uint64_t d = static_cast<std::uint64_t>(c - '0');
    if (v > (UINT64_MAX - d) / 10) return false;
    v = v * 10 + d;
  }
  return true;
}

std::string one_line(std::string_view s) {
  std::string out;
  for (char c : s) out.push_back(c == '\n' || c == '\r' ? ' ' : c);
  return out;
}

}  // namespace

std::string encode_repair_record(const RepairRecord& r) {
  std::string body(kHeader);
  body += "format_version=1\n";
  body += "log_to=" + std::to_string(r.state.log_to) + "\n";
  body += "needs_snapshot=" + std::string(r.state.needs_snapshot ? "1" : "0") + "\n";
  body += "snapshot_from=" + std::to_string(r.state.snapshot_from) + "\n";
  body += "reason=" + one_line(r.reason) + "\n";
  return seal_fields(std::move(body));
}

Result<RepairRecord> decode_repair_record(std::string_view text, const std::string& path) {
  auto bad = [&](const std::string& why) {
    return Status::corruption(path + ": not a valid repair file (" + why +
                              "); kvc-node writes it only while the member is being repaired: "
                              "remove the member and add it again");
  };
  Result<std::vector<CheckedField>> fields = parse_checked_fields(text);
  if (!fields.ok()) return bad(fields.status().message());
  RepairRecord r;
  bool version = false, log_to = false, needs = false, from = false;
  for (const auto& [key, val] : *fields) {
    if (key == "format_version") {
      if (val != "1") return bad("format version " + std::string(val) + " is not supported");
      version = true;
    } else if (key == "log_to") {
      log_to = parse_u64_text(val, r.state.log_to);
      if (!log_to) return bad("log_to is not a number");
    } else if (key == "needs_snapshot") {
      needs = val == "0" || val == "1";
      if (!needs) return bad("needs_snapshot is not 0 or 1");
      r.state.needs_snapshot = val == "1";
    } else if (key == "snapshot_from") {
      from = parse_u64_text(val, r.state.snapshot_from);
      if (!from) return bad("snapshot_from is not a number");
    } else if (key == "reason") {
      r.reason = std::string(val);
    }  // other keys: written by a newer kvc, ignored
  }
  if (!version || !log_to || !needs || !from) return bad("a field is missing");
  if (!r.state.needs_snapshot && r.state.snapshot_from != 0) {
    return bad("snapshot_from without needs_snapshot");
  }
  return r;
}

Status save_repair_file(const std::string& path, const RepairRecord& r) {
  if (!r.state.active()) {
    KVC_RETURN_IF_ERROR(remove_file(path));
    const std::size_t slash = path.find_last_of('/');
    return fsync_dir(slash == std::string::npos ? "." : path.substr(0, slash));
  }
  return write_file_atomic(path, encode_repair_record(r));
}

Result<std::optional<RepairRecord>> load_repair_file(const std::string& path) {
  if (!path_exists(path)) return std::optional<RepairRecord>();
  Result<std::string> text = read_file(path);
  if (!text.ok()) return text.status();
  Result<RepairRecord> r = decode_repair_record(*text, path);
  if (!r.ok()) return r.status();
  return std::optional<RepairRecord>(std::move(*r));
}

}  // namespace kvc::storage
