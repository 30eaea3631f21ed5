// kvc-ctl: admin and data commands against a running kvc cluster.
#include "cli.h"

int main(int argc, char** argv) {
  CLI::App app("kvc-ctl: admin and data commands against a running kvc cluster.", "kvc-ctl");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  app.footer(kvc::cli::exit_code_footer("  kvc-ctl --version"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  return kvc::cli::fail("kvc-ctl", kvc::Status::failed_precondition("not built yet; see the open issues"));
}
