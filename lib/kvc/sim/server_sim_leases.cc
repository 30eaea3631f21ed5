// The server simulation's lease checker (server_sim_internal.h). It reads two things: the
// clients' lease requests and answers (server_sim_clients.cc), and the committed log (every
// grant and revoke entry, at the simulated time it was first seen committed on any member, which
// is when its leader learned it). Checked, on the simulation's global clock:
//   safety:   a revoke that no client asked for (an expiry) never commits before
//             (the invoke time of the holder's last acknowledged grant or keep-alive) + ttl;
//   liveness: once the faults healed and a leader is stable, a lease nobody keeps alive is
//             revoked within ttl + an election timeout + kLeaseSlackMs of the latest of (the
//             heal, that leader's first sighting, the grant's commit, the last acknowledgement).
// docs/checker.md ("Leases") explains the choices.
#include "kvc/sim/server_sim_internal.h"
#include "kvc/storage/command.h"

namespace kvc::sim::server_cluster {

namespace {
// Covers the leader's tick granularity, its revoke's way through a slow simulated disk (the
// liveness probe allows a committed write much longer; a lease whose bound falls after the
// run's end is not checked) and a revoke retried after a lost proposal.
constexpr std::uint64_t kLeaseSlackMs = 1500;
constexpr std::uint64_t kElectionMs = kTickMs * 10;  // EngineOptions::election_ticks in the sim
}  // namespace

void ServerSim::committed_entry(const raft::Entry& e) {
  if (e.type != raft::EntryType::kNormal || e.data.empty() || leases_.empty()) return;
  Result<storage::Command> cmd = storage::decode_command(e.data);
  if (!cmd.ok()) return;
  if (cmd->op != storage::CommandOp::kLeaseGrant && cmd->op != storage::CommandOp::kLeaseRevoke) {
    return;
  }
  auto it = leases_.find(cmd->lease);
  if (it == leases_.end()) return;
  LeaseRecord& l = it->second;
  if (cmd->op == storage::CommandOp::kLeaseGrant) {
    if (l.granted_commit == 0) l.granted_commit = now_us_;
    return;
  }
  if (l.revoked_commit != 0 || l.granted_commit == 0) return;  // a repeat, or nothing to revoke
  l.revoked_commit = now_us_;
  if (l.client_revoke > now_us_) ++result_.stats.lease_expiries;
  trace("lease " + std::to_string(cmd->lease) + " revoke committed at index " +
        std::to_string(e.index) + (l.client_revoke > now_us_ ? " (expiry)" : " (client)"));
  check_lease_safety(cmd->lease);
}

void ServerSim::check_lease_safety(std::uint64_t id) {
  const LeaseRecord& l = leases_[id];
  // A revoke committed after a client asked for one may be that client's.
  if (l.revoked_commit == 0 || !l.acked || l.client_revoke <= l.revoked_commit) return;
  const std::uint64_t until = l.last_ack_invoke + l.ttl_ms * 1000;
  // The members' clock counts whole milliseconds (SimEnvironment::now_ms truncates): a deadline
  // may be up to 1 ms short of the microsecond one, which is not a bug.
  if (l.revoked_commit + 1000 < until) {
    violation("lease " + std::to_string(id) + " (ttl " + std::to_string(l.ttl_ms) +
              " ms) expired early: its revoke committed at t=" + std::to_string(l.revoked_commit) +
              " but a grant or keep-alive sent at t=" + std::to_string(l.last_ack_invoke) +
              " was acknowledged, so it had until t=" + std::to_string(until));
  }
}

std::uint64_t ServerSim::lease_liveness_deadline(const LeaseRecord& l) const {
  const std::uint64_t from =
      std::max({heal_at_, leader_since_, l.granted_commit, l.last_ack_response});
  return from + (l.ttl_ms + kElectionMs + kLeaseSlackMs) * 1000;
}

// Leases that must still be revoked before the run may end (the run goes on for them).
bool ServerSim::lease_liveness_pending() const {
  if (!healed_) return false;
  for (const auto& [id, l] : leases_) {
    if (l.granted_commit == 0 || l.revoked_commit != 0 || l.client_revoked) continue;
    const std::uint64_t d = lease_liveness_deadline(l);
    if (d <= end_at_ && now_us_ < d) return true;
  }
  return false;
}

void ServerSim::check_lease_liveness() {
  if (!healed_ || !probe_ok_) return;  // the cluster was not healthy: liveness is not owed
  for (const auto& [id, l] : leases_) {
    if (l.granted_commit == 0 || l.client_revoked) continue;
    if (l.revoked_commit != 0 && l.revoked_commit < std::max(heal_at_, leader_since_)) continue;
    const std::uint64_t d = lease_liveness_deadline(l);
    if (l.revoked_commit == 0 && d > now_us_) continue;  // the run ended before its deadline
    ++result_.stats.lease_liveness_checked;
    if (l.revoked_commit != 0 && l.revoked_commit <= d) {
      const std::uint64_t due = d - (kElectionMs + kLeaseSlackMs) * 1000;  // from + ttl
      const std::uint64_t late = l.revoked_commit > due ? (l.revoked_commit - due) / 1000 : 0;
      result_.stats.lease_max_late_ms = std::max(result_.stats.lease_max_late_ms, late);
      continue;
    }
    violation("lease " + std::to_string(id) + " (ttl " + std::to_string(l.ttl_ms) +
              " ms) not revoked by t=" + std::to_string(d) +
              " (ttl + election timeout + slack after the cluster healed and its leader was "
              "stable)" +
              (l.revoked_commit != 0 ? ": revoked at t=" + std::to_string(l.revoked_commit) : ""));
    return;
  }
}

}  // namespace kvc::sim::server_cluster
