// kvc-snap: inspect, verify, dump and restore kvc snapshots, offline (kvc-snap(1); the file
// format is kvc-snap(5)). Parses flags, calls kvc_storage, prints; stdout carries the data,
// stderr the diagnostics and the progress bar.
#include <sys/stat.h>
#include <unistd.h>

#include <cstdio>
#include <string>
#include <vector>

#include "cli.h"
#include "kvc/common/json.h"
#include "kvc/common/text.h"
#include "kvc/storage/snapshot.h"
#include "kvc/storage/snapshot_restore.h"
#include "kvc/storage/state_tool.h"
#include "output.h"

namespace {

using kvc::Status;
using kvc::storage::SnapshotProblem;
using namespace kvc::snap;  // NOLINT: this file's own helpers

constexpr int kExitTruncated = 7;  // the same codes as kvc-wal: 7 torn/truncated, 8 corrupt
constexpr int kExitCorrupt = 8;
constexpr const char* kProgram = "kvc-snap";

int exit_for(SnapshotProblem p, const Status& s) {
  switch (p) {
    case SnapshotProblem::kTruncated:
      return kExitTruncated;
    case SnapshotProblem::kCorrupt:
      return kExitCorrupt;
    default:
      return kvc::exit_code(s);
  }
}

// The exit code of a verified file: 0 clean, 7 truncated, 8 corrupt, 1 unsupported version.
int exit_for_report(SnapshotProblem p) {
  return p == SnapshotProblem::kUnsupported ? kvc::kExitError : exit_for(p, Status());
}

int fail(const Status& s, SnapshotProblem p = SnapshotProblem::kNone) {
  std::fprintf(stderr, "%s: %s\n", kProgram, s.message().c_str());
  return exit_for(p, s);
}

bool is_dir(const std::string& p) {
  struct stat st {};
  return ::stat(p.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
}

std::string members_json(const kvc::storage::Membership& m) {
  std::string out = "[";
  for (const kvc::storage::Member& x : m.members) {
    if (out.size() > 1) out += ",";
    out += "{\"id\":\"" + kvc::storage::member_id_hex(x.id) +
           "\",\"name\":" + kvc::json_quote(x.name) +
           ",\"peer_addr\":" + kvc::json_quote(x.peer_addr) +
           ",\"client_addr\":" + kvc::json_quote(x.client_addr) +
           ",\"learner\":" + (x.learner ? "true" : "false") + "}";
  }
  return out + "]";
}

std::string removed_json(const kvc::storage::Membership& m) {
  std::string out = "[";
  for (const std::uint64_t id : m.removed) {
    if (out.size() > 1) out += ",";
    out += "\"" + kvc::id_hex(id) + "\"";
  }
  return out + "]";
}

// The exit code for a list of files: the worst problem wins (corrupt, truncated, error).
int worse(int a, int b) {
  for (const int code : {kExitCorrupt, kExitTruncated, kvc::kExitError, kvc::kExitNotFound}) {
    if (a == code || b == code) return code;
  }
  return 0;
}

// One snapshot's info, verified, in the chosen format. Returns its exit code contribution.
int print_info(const std::string& path, const std::string& output, bool first, bool listed) {
  Progress progress("verifying " + path);
  kvc::Result<kvc::storage::VerifyReport> rep = kvc::storage::verify_snapshot(
      path, [&](std::uint64_t d, std::uint64_t t) { progress.update(d, t); });
  progress.done();
  if (!rep.ok()) {
    if (listed && rep.status().code() == kvc::Code::kNotFound) {
      // A live member pruned it between the listing and now.
      std::fprintf(stderr, "%s: %s was removed while listing (pruned by a running member)\n",
                   kProgram, path.c_str());
      return 0;
    }
    std::fprintf(stderr, "%s: %s\n", kProgram, rep.status().message().c_str());
    return kvc::exit_code(rep.status());
  }
  const kvc::storage::SnapshotInfo& i = rep->info;
  const kvc::storage::SnapshotHeader& h = i.header;
  const bool clean = rep->problem == SnapshotProblem::kNone;
  const std::string status(kvc::storage::snapshot_problem_name(rep->problem));
  if (output == "json") {
    std::string j = "{\"file\":" + kvc::json_quote(path);
    if (rep->header_read) {
      j += ",\"index\":" + std::to_string(h.index) + ",\"term\":" + std::to_string(h.term) +
           ",\"revision\":" + std::to_string(h.revision) +
           ",\"created_unix_ms\":" + std::to_string(h.created_unix_ms) +
           ",\"members\":" + members_json(h.membership) +
           ",\"removed_ids\":" + removed_json(h.membership) +
           ",\"lease_count\":" + std::to_string(h.lease_count);
    } else {
      j += ",\"index\":null,\"term\":null,\"revision\":null,\"created_unix_ms\":null,"
           "\"members\":null,\"removed_ids\":null,\"lease_count\":null";
    }
    j += ",\"key_count\":" + (clean ? std::to_string(i.record_count) : std::string("null"));
    j += ",\"size_bytes\":" + std::to_string(i.size_bytes);
    j += ",\"checksum\":" + kvc::json_quote(status == "ok" ? "ok" : status);
    j += ",\"crc32c\":" + (clean ? kvc::json_quote(hex32(i.file_crc)) : std::string("null"));
    j += ",\"problem\":" + (clean ? std::string("null") : kvc::json_quote(rep->message)) + "}";
    std::printf("%s\n", j.c_str());
    return exit_for_report(rep->problem);
  }
  if (!first) std::printf("\n");
  std::printf("file:      %s\n", escape_text(path).c_str());
  if (rep->header_read) {
    std::printf("index:     %llu\n", static_cast<unsigned long long>(h.index));
    std::printf("term:      %llu\n", static_cast<unsigned long long>(h.term));
    std::printf("revision:  %llu\n", static_cast<unsigned long long>(h.revision));
    std::printf("created:   %s\n", utc_time(h.created_unix_ms).c_str());
    std::printf("leases:    %llu\n", static_cast<unsigned long long>(h.lease_count));
    std::printf("members:   %zu\n", h.membership.members.size());
    for (const kvc::storage::Member& m : h.membership.members) {
      std::printf("  %s  id %s  peer %s  client %s  %s\n", escape_text(m.name).c_str(),
                  kvc::storage::member_id_hex(m.id).c_str(),
                  m.peer_addr.empty() ? "-" : escape_text(m.peer_addr).c_str(),
                  m.client_addr.empty() ? "-" : escape_text(m.client_addr).c_str(),
                  m.learner ? "learner" : "voter");
    }
    if (!h.membership.removed.empty()) {
      std::string ids;
      for (const std::uint64_t id : h.membership.removed) ids += " " + kvc::id_hex(id);
      std::printf("removed:  %s\n", ids.c_str());
    }
  }
  if (clean) std::printf("keys:      %llu\n", static_cast<unsigned long long>(i.record_count));
  std::printf("size:      %llu bytes (%s)\n", static_cast<unsigned long long>(i.size_bytes),
              kvc::human_bytes(i.size_bytes).c_str());
  if (clean) {
    std::printf("checksum:  ok (crc32c %s)\n", hex32(i.file_crc).c_str());
  } else {
    std::printf("checksum:  %s: %s\n", status.c_str(), escape_text(rep->message).c_str());
  }
  return exit_for_report(rep->problem);
}

int cmd_info(const std::string& path, const std::string& output) {
  if (!kvc::storage::path_exists(path)) {
    return fail(Status::not_found(path + ": no such file or directory"));
  }
  std::vector<std::string> files;
  if (is_dir(path)) {
    const std::string dir = is_dir(path + "/snap") ? path + "/snap" : path;
    kvc::Result<std::vector<kvc::storage::SnapshotFile>> list = kvc::storage::list_snapshots(dir);
    if (!list.ok()) return fail(list.status());
    if (list->empty()) return fail(Status::not_found("no snapshot files in " + dir));
    for (const auto& f : *list) files.push_back(f.path);
  } else {
    files.push_back(path);
  }
  int rc = 0;
  for (std::size_t n = 0; n < files.size(); ++n) {
    rc = worse(rc, print_info(files[n], output, n == 0, files.size() > 1 || path != files[n]));
  }
  return rc;
}

int cmd_verify(const std::string& path, const std::string& output) {
  Progress progress("verifying " + path);
  kvc::Result<kvc::storage::VerifyReport> rep = kvc::storage::verify_snapshot(
      path, [&](std::uint64_t d, std::uint64_t t) { progress.update(d, t); });
  progress.done();
  if (!rep.ok()) return fail(rep.status());
  const auto& i = rep->info;
  const std::string status(kvc::storage::snapshot_problem_name(rep->problem));
  if (output == "json") {
    std::string j = "{\"file\":" + kvc::json_quote(path) + ",\"status\":" + kvc::json_quote(status);
    if (rep->problem == SnapshotProblem::kNone) {
      j += ",\"key_count\":" + std::to_string(i.record_count) +
           ",\"index\":" + std::to_string(i.header.index) +
           ",\"term\":" + std::to_string(i.header.term) +
           ",\"crc32c\":" + kvc::json_quote(hex32(i.file_crc)) + ",\"problem\":null}";
    } else {
      j += ",\"problem\":" + kvc::json_quote(rep->message) + "}";
    }
    std::printf("%s\n", j.c_str());
  } else if (rep->problem == SnapshotProblem::kNone) {
    std::printf("%s: ok: %llu keys, index %llu, term %llu, crc32c %s\n", escape_text(path).c_str(),
                static_cast<unsigned long long>(i.record_count),
                static_cast<unsigned long long>(i.header.index),
                static_cast<unsigned long long>(i.header.term), hex32(i.file_crc).c_str());
  } else {
    std::printf("%s\n", escape_text(rep->message).c_str());
  }
  return exit_for_report(rep->problem);
}

// One line per lease: its id, ttl, granting index and keys (those under `prefix`, when given).
std::string lease_line(const kvc::storage::Lease& l, const std::string& prefix, bool json) {
  std::string line;
  if (json) {
    line = "{\"lease\":" + kvc::json_quote(kvc::id_hex(l.id)) +
           ",\"ttl\":" + std::to_string(l.ttl) +
           ",\"granted_index\":" + std::to_string(l.granted_index) + ",\"keys\":[";
  } else {
    line = kvc::id_hex(l.id) + "\tttl=" + std::to_string(l.ttl) +
           "s\tgranted_index=" + std::to_string(l.granted_index) + "\tkeys=";
  }
  bool first = true;
  for (const std::string& k : l.keys) {
    if (k.compare(0, prefix.size(), prefix) != 0) continue;
    if (!first) line += ",";
    line += json ? "{" + kvc::json_bytes_member("key", k) + "}" : escape_text(k);
    first = false;
  }
  line += json ? "]}\n" : "\n";
  return line;
}

int cmd_dump(const std::string& path, const std::string& prefix, const std::string& output,
             bool leases) {
  SnapshotProblem problem = SnapshotProblem::kNone;
  kvc::Result<kvc::storage::SnapshotReader> r = kvc::storage::SnapshotReader::open(path, &problem);
  if (!r.ok()) return fail(r.status(), problem);
  // No progress bar: the keys themselves stream to the terminal (or to a file or pipe, where
  // the tool stays quiet).
  const bool json = output == "json";
  std::string line;
  auto emit = [&]() -> Status {
    if (std::fwrite(line.data(), 1, line.size(), stdout) != line.size()) {
      return Status::io_error("write to standard output failed");
    }
    return Status();
  };
  Status s = r->for_each(
      [&](const kvc::storage::KeyValue& kv) -> Status {
        if (leases || kv.key.compare(0, prefix.size(), prefix) != 0) return Status();
        if (json) {
          // The key-value object of kvc(7), "JSON OUTPUT".
          line = "{" + kvc::json_bytes_member("key", kv.key) + "," +
                 kvc::json_bytes_member("value", kv.value) +
                 ",\"create_revision\":" + std::to_string(kv.create_revision) +
                 ",\"mod_revision\":" + std::to_string(kv.mod_revision) +
                 ",\"version\":" + std::to_string(kv.version) + "}\n";
        } else {
          line = escape_text(kv.key) + "\t" + escape_text(kv.value) + "\n";
        }
        return emit();
      },
      {},
      [&](const kvc::storage::Lease& l) -> Status {
        if (!leases) return Status();
        line = lease_line(l, prefix, json);
        return emit();
      });
  if (std::fflush(stdout) != 0 && s.ok()) s = Status::io_error("write to standard output failed");
  if (!s.ok()) return fail(s, r->problem());
  return 0;
}

int cmd_restore(const kvc::storage::RestoreOptions& in) {
  kvc::storage::RestoreOptions o = in;
  Progress progress("restoring " + o.snapshot_path);
  o.progress = [&](std::uint64_t d, std::uint64_t t) { progress.update(d, t); };
  SnapshotProblem problem = SnapshotProblem::kNone;
  kvc::Result<kvc::storage::RestoreResult> r = kvc::storage::restore_snapshot(o, &problem);
  progress.done();
  if (!r.ok()) return fail(r.status(), problem);
  const std::string cluster = kvc::storage::sorted_initial_cluster(r->membership);
  const std::string token_flag = " --cluster-token " + shell_quote(o.cluster_token);
  std::printf(
      "restored %s (index %llu, term %llu, %llu keys) into %s as member %s\n",
      escape_text(o.snapshot_path).c_str(), static_cast<unsigned long long>(r->source.index),
      static_cast<unsigned long long>(r->source.term), static_cast<unsigned long long>(r->keys),
      escape_text(o.data_dir).c_str(), o.name.c_str());
  std::printf("  member id %s, cluster id %s, cluster token %s\n",
              kvc::storage::member_id_hex(r->identity.member_id).c_str(),
              kvc::storage::member_id_hex(r->identity.cluster_id).c_str(),
              escape_text(o.cluster_token).c_str());
  std::printf("  members: %s\n", cluster.c_str());
  std::printf("  base snapshot: %s\n\n", escape_text(r->base_snapshot.path).c_str());
  if (r->membership.members.size() > 1) {
    std::printf(
        "Next, restore the same snapshot for every other member, each into its own "
        "empty data directory\n(on that member's host):\n");
    for (const auto& m : r->membership.members) {
      if (m.name == o.name) continue;
      std::printf("  kvc-snap restore %s --data-dir %s --name %s --initial-cluster %s%s\n",
                  shell_quote(o.snapshot_path).c_str(), shell_quote(o.data_dir).c_str(),
                  shell_quote(m.name).c_str(), shell_quote(cluster).c_str(), token_flag.c_str());
    }
    std::printf("\n");
  }
  std::printf("Then start every member (add its listen flags as usual):\n");
  for (const auto& m : r->membership.members) {
    std::printf("  kvc-node --name %s --data-dir %s --initial-cluster %s%s\n",
                shell_quote(m.name).c_str(), shell_quote(o.data_dir).c_str(),
                shell_quote(cluster).c_str(), token_flag.c_str());
  }
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app("kvc-snap: inspect, verify, dump and restore kvc snapshots, offline.", "kvc-snap");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  const std::string codes =
      "  3  file or directory not found (info: no snapshot in the directory)\n"
      "  7  the snapshot is truncated (it ends early; the bytes present are intact)\n"
      "  8  the snapshot is corrupt (a checksum or structure check failed)\n"
      "  9  check: the state and the write-ahead log disagree\n";
  app.footer(kvc::cli::exit_code_footer(
      "  kvc-snap info /var/lib/kvc\n  kvc-snap verify snap/00000000000004d2-0000000000000003.snap",
      codes));
  app.require_subcommand(1);
  app.fallthrough();  // the logging flags may also follow the subcommand

  std::string output = "simple";
  auto add_output = [&output](CLI::App* sub) {
    sub->add_option("-o,--output", output, "Output format: simple or json (one object per line)")
        ->check(CLI::IsMember({"simple", "json"}))
        ->capture_default_str();
  };

  std::string info_path;
  CLI::App* info =
      app.add_subcommand("info", "Show index, term, members, key count, size and checksum status");
  info->add_option("PATH", info_path,
                   "A snapshot file, a snapshot directory, or a data directory (uses DIR/snap)")
      ->required();
  add_output(info);
  info->footer(kvc::cli::exit_code_footer("  kvc-snap info /var/lib/kvc -o json", codes));

  std::string verify_path;
  CLI::App* verify = app.add_subcommand(
      "verify", "Check every checksum of a snapshot file (exit code: clean or not)");
  verify->add_option("FILE", verify_path, "The snapshot file")->required();
  add_output(verify);
  verify->footer(kvc::cli::exit_code_footer("  kvc-snap verify backup.snap && echo clean", codes));

  std::string dump_path, prefix;
  bool dump_leases = false;
  CLI::App* dump = app.add_subcommand("dump", "Print the keys and values of a snapshot file");
  dump->add_option("FILE", dump_path, "The snapshot file")->required();
  dump->add_option("--prefix", prefix, "Only keys that start with this prefix");
  dump->add_flag("--leases", dump_leases,
                 "Print the leases instead of the keys: id, ttl, granting index and attached keys "
                 "(with --prefix, only the keys under it)");
  add_output(dump);
  dump->footer(
      kvc::cli::exit_code_footer("  kvc-snap dump backup.snap --prefix /cluster/ -o json", codes));

  std::string check_dir;
  bool check_progress = false;
  CLI::App* check = app.add_subcommand(
      "check",
      "Check a member's state offline: every record's checksum, every LMDB page, the meta "
      "record, and the state against the write-ahead log");
  check->add_option("DIR", check_dir, "A data directory, or its state/ folder")->required();
  add_output(check);
  check->add_flag("--progress", check_progress,
                  "Show progress on stderr even when it is not a terminal");
  check->footer(kvc::cli::exit_code_footer(
      "  kvc-snap check /var/lib/kvc && echo clean",
      "  3  DIR is not a data or state directory\n"
      "  8  a record or an LMDB page is damaged (or the write-ahead log is corrupt)\n"
      "  9  the state and the write-ahead log disagree (kvc-node refuses to start)\n"));

  kvc::storage::RestoreOptions ro;
  CLI::App* restore = app.add_subcommand(
      "restore", "Build a new member data directory from a snapshot (new cluster)");
  restore->add_option("FILE", ro.snapshot_path, "The snapshot file")->required();
  restore->add_option("--data-dir", ro.data_dir, "The new member's data directory (new or empty)")
      ->required();
  restore->add_option("--name", ro.name, "This member's name (one of --initial-cluster)")
      ->required();
  restore
      ->add_option("--initial-cluster", ro.initial_cluster,
                   "The new cluster's members: NAME=HOST:PORT,... (peer addresses)")
      ->required();
  restore
      ->add_option("--cluster-token", ro.cluster_token,
                   "The new cluster's token (member and cluster ids derive from it)")
      ->capture_default_str();
  restore
      ->add_option("--state-map-size", ro.map_size,
                   "Largest size the state database may grow to (e.g. 8GiB)")
      ->transform(CLI::AsSizeValue(false))
      ->default_str("8GiB");
  restore->footer(kvc::cli::exit_code_footer(
      "  kvc-snap restore backup.snap --data-dir /var/lib/kvc --name m1 \\\n"
      "      --initial-cluster m1=10.0.0.1:2380,m2=10.0.0.2:2380,m3=10.0.0.3:2380",
      codes));

  kvc::cli::add_global_options_to_help(app);
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  if (info->parsed()) return cmd_info(info_path, output);
  if (verify->parsed()) return cmd_verify(verify_path, output);
  if (dump->parsed()) return cmd_dump(dump_path, prefix, output, dump_leases);
  if (restore->parsed()) return cmd_restore(ro);
  if (check->parsed()) {
    kvc::storage::ToolContext ctx;
    ctx.tool = kProgram;
    ctx.format =
        output == "json" ? kvc::storage::OutputFormat::kJson : kvc::storage::OutputFormat::kSimple;
    ctx.progress = (::isatty(STDOUT_FILENO) && ::isatty(STDERR_FILENO)) || check_progress;
    return kvc::storage::run_state_check(check_dir, ctx);
  }
  return kvc::kExitUsage;
}
