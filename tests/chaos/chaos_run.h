// One chaos run: a 3- or 5-member kvc-node cluster in a fresh directory, dozens of clients
// recording a history, the seed's fault schedule (nemesis.h) for a bounded time, then healing,
// convergence, and the checks: the history is linearizable (lib/kvc/check), every
// acknowledged write is in every member's change history (and nothing failed, unknown to any
// client or doubled was applied), members' states are identical, every member stops cleanly
// (SIGTERM, exit 0), and no member exited on its own or logged a failed check or a sanitizer
// report. The history is also checked every few seconds while the faults run, so a broken
// build fails early. A failure report prints the seed, the schedule, what the harness did, the
// history excerpt around the anomaly and where the members' logs and the history file are (the
// run directory is kept). Every process is stopped by PID, also when a check fails.
//
// Thread-safety: run_chaos starts its own threads; call it from one thread at a time.
#pragma once

#include <cstdint>
#include <map>
#include <ostream>
#include <string>
#include <vector>

#include "nemesis.h"

namespace kvc::chaos {

struct ChaosOptions {
  std::uint64_t seed = 1;
  std::uint64_t duration_ms = 20000;  // faults and load; healing and checks come after
  int members = 3;
  int clients = 24;
  int keys = 8;
  int cold_keys = 4;               // written rarely, read often (workload.h)
  int targeted_read_percent = 50;  // of the reads, those sent to one chosen member only
  std::string node_binary;         // path of kvc-node (or kvc-node-unsafe)
  std::string test_mutation;       // --test-mutation for every member (kvc-node-unsafe only)
  std::string slowfs_library;      // the slow-disk shim; empty: no slow-disk faults
  // Both ports speak TLS: the cluster has a shared secret (a TLS 1.3 pre-shared key), made
  // for the run, and every client of the harness uses it.
  bool tls = false;
  std::vector<FaultKind> faults = all_fault_kinds();
  std::string work_dir;  // parent of the run directory ($TMPDIR or /tmp when empty)
  bool keep = false;     // keep the run directory even when every check passed
  std::uint64_t op_timeout_ms = 1500;
  std::uint64_t check_interval_ms = 4000;  // history checks while the faults run
  std::uint64_t converge_timeout_ms = 30000;
  std::ostream* progress = nullptr;  // one line per phase (stderr in kvc-chaos)
};

struct ChaosResult {
  bool passed = false;
  // A safety violation (not linearizable, an acknowledged write lost, a write applied that
  // should not have been, members' states differ): what a broken build must produce.
  bool violation = false;
  std::vector<std::string> failures;  // each a paragraph; empty when passed
  std::uint64_t operations = 0, ok = 0, failed = 0, unknown = 0;
  std::uint64_t checked = 0;  // operations the linearizability checker placed (kFailed dropped)
  std::uint64_t acknowledged_writes = 0;           // put, successful cas, delete that found
  std::uint64_t acknowledged_writes_covered = 0;   // at or above some member's history start
  std::uint64_t acknowledged_writes_verified = 0;  // found in a member's history, summed
  std::uint64_t hash_checked = 0;  // members whose state hash was compared at the final barrier
  std::uint64_t states_checked_offline = 0;  // members' states checked record by record at the end
  std::map<FaultKind, FaultCount> faults;
  IntegrityCounts integrity;
  std::string membership_support;
  double seconds = 0;  // wall time of the whole run
  std::string run_dir;
  std::string report;  // the printable summary (and failure details)
};

ChaosResult run_chaos(const ChaosOptions& options);

// "kill=3 kill-leader=2 ... (skipped: transfer-leader=1)".
std::string format_fault_counts(const std::map<FaultKind, FaultCount>& counts);
// The kinds as --faults takes them: "all", "none", or their names joined by commas.
std::string fault_mix_text(const std::vector<FaultKind>& kinds);

}  // namespace kvc::chaos
