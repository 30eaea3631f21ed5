// kvc-wal: inspect, verify and repair a member's write-ahead log, offline.
#include "cli.h"

int main(int argc, char** argv) {
  CLI::App app("kvc-wal: inspect, verify and repair a member's write-ahead log, offline.", "kvc-wal");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  app.footer(kvc::cli::exit_code_footer("  kvc-wal --version"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  return kvc::cli::fail("kvc-wal", kvc::Status::failed_precondition("not built yet; see the open issues"));
}
