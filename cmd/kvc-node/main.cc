// kvc-node: one member of a kvc cluster (Raft log, snapshots, LMDB state).
#include "cli.h"

int main(int argc, char** argv) {
  CLI::App app("kvc-node: one member of a kvc cluster (Raft log, snapshots, LMDB state).", "kvc-node");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);
  app.footer(kvc::cli::exit_code_footer("  kvc-node --version"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  return kvc::cli::fail("kvc-node", kvc::Status::failed_precondition("not built yet; see the open issues"));
}
