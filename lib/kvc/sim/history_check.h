// The one call from the simulator to the linearizability checker (lib/kvc/check). When the
// build has the checker (target kvc_check), check_history_linearizable() runs
// check::check_history(); otherwise it reports checked=false and the simulator says so in its
// summary. Test tooling; thread-safe (pure function).
#pragma once

#include <cstdint>
#include <string>

#include "kvc/check/history.h"

namespace kvc::sim {

struct HistoryCheck {
  bool checked = false;  // false: the checker is not built into this binary
  bool ok = true;
  std::uint64_t operations = 0;
  std::string explanation;
};

HistoryCheck check_history_linearizable(const check::History& history);

}  // namespace kvc::sim
