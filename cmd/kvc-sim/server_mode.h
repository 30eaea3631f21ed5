// kvc-sim --server: runs the server simulation (lib/kvc/sim/server_sim.h), the real Engine code
// under the simulator, over a range of seeds, and reports like the Raft-level runs.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "minimize.h"

struct ServerModeArgs {
  std::uint64_t seed = 1;
  std::uint64_t seeds = 1;
  double time_limit = 0;
  std::string members = "mixed";
  std::string mutation = "none";
  bool expect_violation = false;
  bool keep_going = false;
  bool trace = false;
  int trace_lines = 200;
  std::string output = "simple";
  std::uint64_t fault_ms = 0;     // 0: the simulation's default
  std::uint64_t liveness_ms = 0;  // 0: the simulation's default
  int clients = 0;                // 0: the simulation's default
  kvc::sim::FaultFilter fault_filter;
  bool minimize = false;  // minimize a failing seed's faults (minimize.h)
  MinimizeArgs minimize_args;
};

// Whether this build has the server simulation (it needs the mutable server library).
bool server_mode_available();
// A server-level planted bug's name (kvc-sim --server --mutation), and all of them (none when
// the build has no server simulation).
bool is_server_mutation(const std::string& name);
std::vector<std::string> server_mutation_names();
int run_server_mode(const ServerModeArgs& args);
