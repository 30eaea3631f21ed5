// The server simulation: the deterministic simulator running real kvc members. Each member is
// the Engine code kvc-node runs (server::SimMember: start-up and WAL replay, the Ready loop,
// apply, ReadIndex reads, flushes into LMDB, snapshots), with its disk, flush and loop work as
// queues a seeded scheduler runs on one thread in a random but reproducible interleaving, a
// simulated network (delays, drops, duplicates, partitions) and a simulated clock. Members
// crash (nothing flushed; the jobs they left are dropped) and restart from their data
// directories, stop cleanly, and are cut off from each other; simulated clients put, get,
// compare-and-set and delete through them, run multi-key txns and hold leases. Checked: one
// leader per term, committed entries never change, a member that crashed can restart, and,
// after the faults heal, a leader and a committed write within a bound; leases never expire
// before ttl after their holder's last acknowledged keep-alive was sent, and do expire in time
// once the cluster is healthy; at the end every acknowledged txn's answer is what a model of the
// store replaying the committed log computes for it, and the client history goes to the
// linearizability checker. Everything is a function of the seed.
//
// The members' data directories live under a temporary directory on tmpfs (/dev/shm when it
// exists), removed at the end. Test tooling: one simulation per thread.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/sim/sim_minimize.h"

namespace kvc::sim {

struct ServerSimOptions {
  std::uint64_t seed = 1;
  int members = 3;
  // A planted server-level bug (test builds; EngineOptions::test_mutation): "" for none.
  std::string mutation;
  std::uint64_t fault_ms = 4000;     // simulated time with faults, then everything heals
  std::uint64_t liveness_ms = 6000;  // after healing: a leader and a committed write within this
  int clients = 4;
  int max_ops_per_client = 120;
  std::string data_root;  // where the temporary directory goes; "" picks /dev/shm or $TMPDIR
  bool trace = false;
  std::function<void(std::string_view)> trace_sink;
  // The fault decisions that apply (sim_minimize.h); by default all of them.
  FaultFilter fault_filter;
  // Fill ServerSimResult::fault_log and ::history (for the minimizer).
  bool record = false;
  // The coordination workload: clients also run multi-key txns and hold leases (grant, put with
  // a lease, keep some alive and let others lapse, revoke), and the lease checker runs. Off, the
  // clients draw exactly the random numbers they drew before leases existed (pinned traces).
  bool coordination = true;
  // The txn checker (server_sim_txns.cc). Off, txns are checked only as per-key operations by
  // the linearizability checker (tests show what that alone misses).
  bool txn_model = true;
  // Hash audits: now and then the leader is asked for a state hash at a barrier (as kvc-ctl
  // check hash does) and every other running member for its hash at that index; members that
  // differ are a violation. Off, the run draws the random numbers it drew before audits existed
  // (pinned traces).
  bool hash_audits = true;
  // Snapshot chunks damaged in transit (a fault: one bit flipped in about 3 % of them): the
  // receiver must refuse the file they complete and get a new snapshot, never install it or
  // stop. Off, as hash_audits.
  bool snapshot_damage = true;
};

struct ServerSimStats {
  std::uint64_t events = 0;
  std::uint64_t messages = 0;
  std::uint64_t committed = 0;  // highest commit index seen
  std::uint64_t operations = 0;
  std::uint64_t operations_ok = 0;
  std::uint64_t operations_unknown = 0;
  std::uint64_t crashes = 0;
  std::uint64_t clean_restarts = 0;
  std::uint64_t partitions = 0;
  std::uint64_t snapshot_chunks = 0;  // snapshot messages sent to lagging members
  std::uint64_t conf_changes = 0;     // membership changes asked for (add, promote, remove)
  std::uint64_t transfers = 0;        // leadership transfers asked for
  std::uint64_t joined = 0;           // added members that started
  std::uint64_t removed = 0;          // members that learned they were removed and stopped
  std::uint64_t damages = 0;          // stored values damaged (a bit flipped in LMDB)
  std::uint64_t damage_detected = 0;  // members that entered the damaged mode
  std::uint64_t repairs = 0;          // members that left it, repaired
  std::uint64_t sync_faults = 0;      // WAL fsyncs made to fail
  std::uint64_t read_faults = 0;      // bits flipped in what a restarting member read
  std::uint64_t lost_writes = 0;      // unsynced changes crashes dropped (simulated disk)
  std::uint64_t torn_writes = 0;      // writes crashes kept only in part
  std::uint64_t elections = 0;        // distinct (term, leader) pairs

  // The coordination workload (ServerSimOptions::coordination).
  std::uint64_t txns = 0;            // txns sent (counted in `operations` too, once each)
  std::uint64_t txns_ok = 0;         // txns answered (either branch)
  std::uint64_t txns_checked = 0;    // of those, matched to their entry and checked by the model
  std::uint64_t lease_grants = 0;    // grants acknowledged
  std::uint64_t keep_alives = 0;     // keep-alives acknowledged
  std::uint64_t lease_expiries = 0;  // revokes committed that no client asked for
  // Leases whose liveness deadline the run reached, and of those revoked in time the latest
  // revoke past its lease's ttl.
  std::uint64_t lease_liveness_checked = 0;
  std::uint64_t lease_max_late_ms = 0;
  // Hash audits (ServerSimOptions::hash_audits): barrier hashes the leader answered, and other
  // members' hashes at those indexes compared with it (all equal, or the run fails).
  std::uint64_t hash_audits = 0;
  std::uint64_t hashes_compared = 0;
  std::uint64_t snapshot_chunks_damaged = 0;  // chunks with a bit flipped in transit
  std::uint64_t snapshots_refused = 0;        // whole snapshots refused by their receiver
  bool linearizability_checked = false;
};

struct ServerSimResult {
  bool ok = true;
  std::string violation;
  std::uint64_t at_us = 0;  // simulated time of the violation
  ServerSimStats stats;
  std::uint64_t fault_decisions = 0;   // fault decisions taken (the highest ordinal)
  std::vector<FaultRecord> fault_log;  // with ServerSimOptions::record: each decision
  check::History history;              // with ServerSimOptions::record: the client history
};

ServerSimResult run_server_simulation(const ServerSimOptions& options);

// The server-level planted bugs the server simulation is meant to catch.
const std::vector<std::string>& server_mutations();

}  // namespace kvc::sim
