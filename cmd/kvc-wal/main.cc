// kvc-wal: inspect, verify and repair a member's write-ahead log, offline. Parses flags and calls
// kvc/storage/wal_tool.h, where the commands live.
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

#include "cli.h"
#include "kvc/storage/wal_tool.h"

namespace {

const char* const kNotFound = "  3  the directory does not exist or holds no WAL\n";
const char* const kDamage =
    "  7  the log ends in a torn tail (repairable; kvc-node truncates it by itself)\n"
    "  8  the log is corrupt before its tail (kvc-node refuses to start on it)\n";
const char* const kInconsistent =
    "  9  the log and the data directory's state disagree (kvc-node refuses to start)\n";

std::string footer(const std::string& examples, const std::string& extra) {
  return kvc::cli::exit_code_footer(examples, extra);
}

}  // namespace

int main(int argc, char** argv) {
  using kvc::storage::OutputFormat;
  CLI::App app(
      "kvc-wal: inspect, verify and repair a member's write-ahead log, offline. DIR is a "
      "member's data directory or its wal/ folder; nothing but 'repair' writes, and no "
      "command takes a lock that could stop a running member.",
      "kvc-wal");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  app.fallthrough();  // the logging flags may also follow the subcommand
  app.require_subcommand(1, 1);
  app.footer(footer("  kvc-wal verify /var/lib/kvc/m1 && echo clean",
                    std::string(kNotFound) + "  7, 8  verify and dump: torn tail, corruption\n" +
                        "  9  verify and repair: the log and the state disagree\n"));

  std::string dir;
  std::string output = "simple";
  auto add_dir_and_output = [&](CLI::App* sub) {
    sub->add_option("DIR", dir, "Data directory, or its wal/ folder")->required();
    sub->add_option("-o,--output", output, "Output format: simple or json")
        ->check(CLI::IsMember({"simple", "json"}))
        ->capture_default_str();
  };

  CLI::App* info = app.add_subcommand(
      "info", "Show segments, first and last index and term, snapshot marker, hard state, sizes");
  add_dir_and_output(info);
  info->footer(footer("  kvc-wal info /var/lib/kvc/m1 -o json | jq .last_index",
                      std::string(kNotFound) +
                          "  (info exits 0 on a damaged log too; its status line says how)\n"));

  kvc::storage::DumpOptions dump_opt;
  std::uint64_t from = 0, to = 0;
  std::vector<std::string> types;
  CLI::App* dump = app.add_subcommand("dump", "Print every record, one per line");
  add_dir_and_output(dump);
  CLI::Option* from_opt =
      dump->add_option("--from", from, "Only entries and snapshot markers with index >= this");
  CLI::Option* to_opt =
      dump->add_option("--to", to, "Only entries and snapshot markers with index <= this");
  dump->add_option("--type", types, "Only these record types (comma-separated or repeated)")
      ->check(CLI::IsMember({"entry", "hard_state", "snapshot"}))
      ->delimiter(',');
  dump->footer(footer("  kvc-wal dump /var/lib/kvc/m1 --from 100 --to 200 --type entry",
                      std::string(kNotFound) + kDamage));

  bool progress_flag = false;
  CLI::App* verify = app.add_subcommand(
      "verify",
      "Check every record and, given a data directory, the log against the state; the exit code "
      "says clean (0), torn tail (7), corrupt (8) or inconsistent (9)");
  add_dir_and_output(verify);
  verify->add_flag("--progress", progress_flag,
                   "Show progress on stderr even when it is not a terminal");
  verify->footer(footer("  kvc-wal verify /var/lib/kvc/m1; echo $?",
                        std::string(kNotFound) + kDamage + kInconsistent));

  kvc::storage::RepairOptions repair_opt;
  CLI::App* repair = app.add_subcommand(
      "repair", "Repair a torn tail, or with --truncate-corrupt cut the log at corruption");
  add_dir_and_output(repair);
  // Exactly one of --out and --in-place (or --dry-run): checked by run_repair (exit code 2).
  repair->add_option("--out", repair_opt.out_dir, "Write a repaired copy to NEWDIR")
      ->type_name("NEWDIR");
  repair->add_flag(
      "--in-place", repair_opt.in_place,
      "Repair the log itself, after saving every removed byte to the backup directory");
  repair
      ->add_option("--backup-dir", repair_opt.backup_dir,
                   "With --in-place: where removed bytes go (default: WALDIR.repair-TIME)")
      ->type_name("DIR");
  repair->add_flag("--truncate-corrupt", repair_opt.truncate_corrupt,
                   "Allow cutting the log at the first corrupt record (loses later entries)");
  repair->add_flag("-y,--yes", repair_opt.yes, "Do not ask for confirmation");
  repair->add_flag("-n,--dry-run", repair_opt.dry_run, "Only show the plan; change nothing");
  repair->footer(footer(
      "  kvc-wal repair /var/lib/kvc/m1 --out /var/lib/kvc/m1-wal-repaired",
      std::string(kNotFound) +
          "  (0 also when nothing needed repair and for --dry-run; 1 when refused or aborted)\n" +
          kInconsistent));

  kvc::cli::add_global_options_to_help(app);
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;

  kvc::storage::ToolContext ctx;
  ctx.format = output == "json" ? OutputFormat::kJson : OutputFormat::kSimple;
  ctx.interactive = ::isatty(STDIN_FILENO) && ::isatty(STDERR_FILENO);
  ctx.progress = (::isatty(STDOUT_FILENO) && ::isatty(STDERR_FILENO)) || progress_flag;
  if (*info) return kvc::storage::run_info(dir, ctx);
  if (*verify) return kvc::storage::run_verify(dir, ctx);
  if (*dump) {
    if (*from_opt) dump_opt.from = from;
    if (*to_opt) dump_opt.to = to;
    for (const std::string& t : types) {
      if (t == "entry") dump_opt.types.push_back(kvc::storage::RecordType::kEntry);
      if (t == "hard_state") dump_opt.types.push_back(kvc::storage::RecordType::kHardState);
      if (t == "snapshot") dump_opt.types.push_back(kvc::storage::RecordType::kSnapshot);
    }
    return kvc::storage::run_dump(dir, dump_opt, ctx);
  }
  if (*repair) return kvc::storage::run_repair(dir, repair_opt, ctx);
  return kvc::kExitUsage;
}
