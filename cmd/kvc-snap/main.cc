// kvc-snap: inspect, verify, dump and restore kvc snapshots, offline.
#include "cli.h"

int main(int argc, char** argv) {
  CLI::App app("kvc-snap: inspect, verify, dump and restore kvc snapshots, offline.", "kvc-snap");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  app.footer(kvc::cli::exit_code_footer("  kvc-snap --version"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  return kvc::cli::fail("kvc-snap", kvc::Status::failed_precondition("not built yet; see the open issues"));
}
