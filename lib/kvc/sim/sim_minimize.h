// Fault minimization for both simulations (sim.h, server_sim.h). Every fault decision a run's
// harness takes (a crash, a partition, a lost or duplicated message, a membership change, a
// damaged value, a failed fsync, ...) gets an ordinal, in the order the run takes them. A
// FaultFilter names the ordinals a run applies; a suppressed fault draws the same random numbers
// as an applied one, so the decisions up to the first change in the cluster's state stay the
// same, but leaves the cluster as it was. With the default filter every fault applies and the
// run is exactly the run of the seed.
//
// After a seed fails, minimize_faults() reruns it with subsets of its faults (delta debugging,
// Zeller's ddmin, after a pass that drops whole kinds of faults) and keeps a subset only if the
// run still fails with the same kind of violation, within a bound of reruns and seconds. The
// faults of single messages and fsyncs (drops, duplicates, delays, slow syncs: hundreds per run)
// are minimized after the others (crashes, partitions, membership changes, ...), so a bounded
// minimization spends its reruns on the faults a reader looks for first. The result is a set of
// ordinals that `--only-faults` replays. Pure functions of their inputs (the
// predicate reruns the simulation); not thread-safe beyond what the predicate is.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/check/history.h"
#include "kvc/common/status.h"

namespace kvc::sim {

// Which of a run's fault decisions apply.
struct FaultFilter {
  // When set, only these ordinals apply (the rest are suppressed).
  std::optional<std::set<std::uint64_t>> only;
  // These ordinals are suppressed.
  std::set<std::uint64_t> suppress;

  bool applies(std::uint64_t ordinal) const {
    return (!only || only->count(ordinal) != 0) && suppress.count(ordinal) == 0;
  }
  // Every fault applies: the run is the seed's own.
  bool all() const { return !only && suppress.empty(); }
};

// One fault decision of a run (recorded when the options ask for it).
struct FaultRecord {
  std::uint64_t ordinal = 0;
  std::uint64_t at = 0;  // the step (Raft-core simulation) or microsecond (server simulation)
  std::string kind;      // crash, partition, drop, duplicate, delay, ...
  std::string what;      // a line of description
  bool applied = true;
};

// "3,17,22" (also "" or "none": the empty set). Fails on anything but ordinals and commas.
Result<std::set<std::uint64_t>> parse_fault_list(std::string_view text);
std::string format_fault_list(const std::set<std::uint64_t>& ordinals);

// The kind of a violation, for "fails the same way": its text before the first colon, without
// the words that carry numbers or member names ("two leaders in term 5: m1 and m2" -> "two
// leaders in term"; "committed entry 12 differs on m2 (term 3, ...)" -> "committed entry
// differs on").
std::string violation_kind(std::string_view violation);

struct MinimizeLimits {
  int max_runs = 1000;      // reruns of the simulation, at most
  double max_seconds = 60;  // wall-clock seconds, at most (checked between reruns)
};

struct MinimizeOutcome {
  std::vector<std::uint64_t> kept;  // ordinals (sorted) of a subset whose run still fails
  int runs = 0;
  double seconds = 0;
  bool bounded = false;  // stopped by the limits: `kept` fails, but may not be 1-minimal
};

// Reruns a subset of the faults: the ordinals of the faults of that run that were applied
// (sorted), if it fails the same way; nullopt if it passes or fails otherwise.
using FaultRerun =
    std::function<std::optional<std::vector<std::uint64_t>>(const std::set<std::uint64_t>& only)>;
// Called after every rerun: (reruns so far, faults in the smallest failing subset so far).
using MinimizeProgress = std::function<void(int runs, std::size_t kept)>;

// Minimizes `faults` (the ordinals applied by the failing run): first the empty set, then each
// group of `groups` (e.g. all the lost messages) removed at once, largest first, then ddmin on
// the faults not in `background`, then on those in it (again while either pass removes some).
// The result is 1-minimal (removing any single fault makes the run pass or fail otherwise)
// unless `bounded`.
MinimizeOutcome minimize_faults(const std::vector<std::uint64_t>& faults,
                                const std::vector<std::vector<std::uint64_t>>& groups,
                                const std::vector<std::uint64_t>& background,
                                const FaultRerun& rerun, const MinimizeLimits& limits,
                                const MinimizeProgress& progress = {});

// The applied faults of a record grouped by kind (the groups minimize_faults tries first).
std::vector<std::vector<std::uint64_t>> fault_groups(const std::vector<FaultRecord>& faults);
// The applied faults of a record that concern one message or one fsync (drop, duplicate,
// delay, slow-sync): minimize_faults' background.
std::vector<std::uint64_t> message_faults(const std::vector<FaultRecord>& faults);

// For a non-linearizable history: the shortest prefix (by time: the operations invoked before
// some moment, those still running then taken as unanswered) that is still not linearizable,
// restricted to the failing key when that alone fails. Empty when the checker is not built or
// the history is linearizable.
struct HistoryCut {
  std::string key;  // "" when the failure needs several keys
  // The operations of the prefix that may have taken effect, in invocation order, as text.
  std::vector<std::string> ops;
  std::string explanation;  // the checker's, for the prefix
};
HistoryCut smallest_failing_prefix(const check::History& history);

}  // namespace kvc::sim
