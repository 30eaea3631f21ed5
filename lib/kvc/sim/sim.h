// The deterministic cluster simulator: one process, one seed, a whole kvc Raft cluster (3 or 5
// members) over a simulated lossy network and simulated disks that lose unsynced writes on a
// crash. Clients put/get/cas/delete through any member while faults run (drops, delays,
// duplicates, reordering, symmetric and one-way partitions, crashes and restarts, membership
// changes, leadership transfers, snapshots and compaction, members restarted on an older copy
// of their disk, damaged state values; with kTargeted also faults aimed at leader changes, see
// docs/simulator.md). Raft's safety properties are checked after every step; after the faults heal,
// a leader must be elected and a write must commit within a bound; at the end the client history
// goes to the linearizability checker. Everything is a function of the seed: a run replays bit for
// bit. Test tooling; not thread-safe (one simulation per thread; the mutation switch is
// process-wide).
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/raft/mutation.h"
#include "kvc/sim/sim_minimize.h"

namespace kvc::sim {

// Which faults a run injects.
enum class FaultMix : std::uint8_t {
  kNone,        // a good day
  kNet,         // drop, delay, duplicate, reorder
  kPartition,   // kNet + symmetric, one-way and isolating partitions
  kCrash,       // kNet + crashes and restarts (unsynced writes lost, torn batches)
  kMembership,  // kNet + membership changes, leadership transfers, snapshots, compaction
  kRepair,      // kNet + crashes + rollbacks to older disk images + damaged state values
  kAll,         // everything at once
  kTargeted,    // kAll + faults aimed at leader changes (stop a leader at the step its entries
                // are on a minority or its commit first moves, crash unsynced votes, bursts)
  kMixed,       // one of the above chosen from the seed (mostly kAll or kTargeted)
};

std::string_view fault_mix_name(FaultMix mix);
bool fault_mix_from_name(std::string_view name, FaultMix& out);

struct SimOptions {
  std::uint64_t seed = 1;
  int members = 0;  // 3 or 5; 0: chosen from the seed
  FaultMix faults = FaultMix::kMixed;
  raft::Mutation mutation = raft::Mutation::kNone;
  int fault_ticks = 300;     // ticks of faulty operation before everything heals
  int liveness_ticks = 200;  // after healing, a leader and a committed write within this
  int clients = 4;
  bool trace = false;                                // record every step (costly); see trace_sink
  std::function<void(std::string_view)> trace_sink;  // receives trace lines when trace is on
  // The fault decisions that apply (sim_minimize.h); by default all of them.
  FaultFilter fault_filter;
  // Fill SimResult::faults and SimResult::history (for the minimizer; costs a little).
  bool record = false;
};

struct SimStats {
  std::uint64_t steps = 0;
  std::uint64_t ticks = 0;
  std::uint64_t messages = 0;
  std::uint64_t committed = 0;   // highest commit index reached
  std::uint64_t operations = 0;  // client operations recorded
  std::uint64_t operations_ok = 0;
  std::uint64_t operations_unknown = 0;  // the rest of the non-ok ones definitely failed
  std::uint64_t checked_operations = 0;  // operations the linearizability checker examined
  std::uint64_t crashes = 0;
  std::uint64_t partitions = 0;
  std::uint64_t conf_changes = 0;
  std::uint64_t transfers = 0;
  std::uint64_t snapshots_sent = 0;
  std::uint64_t elections = 0;
  std::uint64_t rollbacks = 0;        // members restarted on an older copy of their disk
  std::uint64_t losses_detected = 0;  // leaders found a member lost entries it acknowledged
  std::uint64_t damages = 0;          // state values damaged
  std::uint64_t damage_detected = 0;  // members that found a bad checksum and marked damaged
  std::uint64_t repairs = 0;          // repairs completed (log repaired, state reinstalled)
  bool linearizability_checked = false;
};

struct SimResult {
  bool ok = true;
  std::string violation;  // what failed, when not ok
  int members = 0;
  FaultMix faults = FaultMix::kMixed;
  SimStats stats;
  std::uint64_t fault_decisions = 0;   // fault decisions taken (the highest ordinal)
  std::vector<FaultRecord> fault_log;  // with SimOptions::record: each decision
  check::History history;              // with SimOptions::record: the client history
};

SimResult run_simulation(const SimOptions& options);

// The command that replays a run exactly (with its fault filter, if any).
std::string replay_command(const SimOptions& options, const SimResult& result);

// Whether this build links the linearizability checker (lib/kvc/check).
bool linearizability_checker_available();

}  // namespace kvc::sim
