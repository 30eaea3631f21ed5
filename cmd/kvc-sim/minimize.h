// kvc-sim's report of a failing seed with its faults minimized (lib/kvc/sim/sim_minimize.h),
// shared by the Raft-core runs (main.cc) and the server runs (server_mode.cc): reruns the seed
// with subsets of its faults, then prints the violation, "minimized: K of N faults needed", the
// kept faults, the trace of the minimized run and the line that replays it. Everything goes to
// stderr.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "cli.h"
#include "kvc/sim/sim.h"
#include "kvc/sim/sim_minimize.h"

struct MinimizeArgs {
  kvc::sim::MinimizeLimits limits;
  int trace_lines = 200;  // lines of the minimized run's trace shown (0: all)
};

// kvc-sim's flags for fault filters and minimization (--only-faults, --suppress-faults,
// --minimize, --no-minimize, --minimize-runs, --minimize-seconds).
struct MinimizeFlags {
  std::string only, suppress;
  bool minimize = false, no_minimize = false;
  MinimizeArgs args;
  bool enabled = false;  // after resolve_minimize_flags(): minimize a failing seed
};
void add_minimize_flags(CLI::App& app, MinimizeFlags& flags);
// After parsing: sets `filter` and flags.enabled (minimization is off by default with
// --expect-violation, --keep-going or a fault filter). An exit code on a bad fault list.
std::optional<int> resolve_minimize_flags(CLI::App& app, MinimizeFlags& flags,
                                          bool expect_violation, bool keep_going, int trace_lines,
                                          kvc::sim::FaultFilter& filter);

// Minimizes the faults of a failing Raft-core run and reports it.
void minimize_raft_run(const kvc::sim::SimOptions& failed, const kvc::sim::SimResult& result,
                       const MinimizeArgs& args);

// One run of the failing seed under a fault filter, as the minimizer sees it.
struct MinimizeRun {
  bool ok = true;
  std::string violation;
  std::vector<kvc::sim::FaultRecord> faults;  // recorded decisions
  kvc::check::History history;
};

// Runs the seed with `filter`, recording its faults; `trace` (when set) receives the trace.
using MinimizeRunner = std::function<MinimizeRun(
    const kvc::sim::FaultFilter& filter, const std::function<void(std::string_view)>* trace)>;
// The command line that replays the seed with `filter`.
using MinimizeReplay = std::function<std::string(const kvc::sim::FaultFilter& filter)>;

// `violation`: the failing run's; `time_unit`: "step" or "us" (what FaultRecord::at counts).
// Returns the filter of the minimized run.
kvc::sim::FaultFilter minimize_and_report(std::uint64_t seed, const std::string& violation,
                                          const MinimizeRunner& run, const MinimizeReplay& replay,
                                          const MinimizeArgs& args, const char* time_unit);
