// Wires the simulator's history to check::check_history() when the checker is built.
#include "kvc/sim/history_check.h"

#include "kvc/sim/sim.h"

#if KVC_SIM_HAVE_CHECKER
#include "kvc/check/linearizability.h"
#endif

namespace kvc::sim {

bool linearizability_checker_available() { return KVC_SIM_HAVE_CHECKER != 0; }

HistoryCheck check_history_linearizable(const check::History& history) {
  HistoryCheck out;
#if KVC_SIM_HAVE_CHECKER
  const check::CheckResult r = check::check_history(history);
  out.checked = r.verdict != check::Verdict::kGaveUp;
  out.ok = r.verdict != check::Verdict::kNotLinearizable;
  out.operations = r.operations;
  if (r.verdict == check::Verdict::kNotLinearizable) {
    out.explanation = r.explanation;  // names the key already
  } else if (r.verdict == check::Verdict::kGaveUp) {
    out.explanation = "checker gave up on key " + r.key;
  }
#else
  (void)history;
#endif
  return out;
}

}  // namespace kvc::sim
