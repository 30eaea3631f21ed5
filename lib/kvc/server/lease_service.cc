// Leases on the leader: the lease clock, keep-alives, and the lease queries (grant and revoke
// are ordinary writes: kv_service.cc proposes them, the state machine applies them).
//
// Invariants kept here:
// - Only the leader decides that a lease expired, on its own monotonic clock, and the decision
//   takes effect only through a committed revoke entry: a follower's clock never matters, and a
//   leader that lost its quorum expires nothing (its revoke cannot commit).
// - A lease never expires earlier than its holder can believe. A holder counts ttl from when it
//   sent a keep-alive; the leader counts from when it answered, after a ReadIndex round showed
//   it still led (so no other leader existed that could have answered an earlier keep-alive
//   with a later countdown). A new leader gives every lease ttl plus an election timeout from
//   the moment it starts to lead, which is after the old leader's last answer (etcd's rule).
#include <spdlog/spdlog.h>

#include <algorithm>

#include "kvc/common/text.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"

namespace kvc::server {

namespace {
// At most this many revokes are proposed per tick, so that a mass expiry (a leader that was
// paused, a new leader after a long election) does not flood the log in one go. 64 was too few:
// 1,000 leases expiring over a second queued behind it (kvc-bench lease-expiry p50 700 ms);
// with 1,000 the p99 is ~110 ms at 3,000 leases (docs/coordination.md).
constexpr int kRevokesPerTick = 1000;
}  // namespace

// etcd's minimum: one and a half election timeouts, so that a lease survives the leader change
// it was granted just before.
std::uint64_t Engine::Impl::min_lease_ttl_s() const {
  const std::uint64_t election_ms =
      options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  return std::max<std::uint64_t>(1, (election_ms * 3 / 2 + 999) / 1000);
}

void Engine::Impl::handle_lease_read(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  if (node_->role() != raft::Role::kLeader) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = r.leader_id == raft::kNoNode
                    ? "no leader: the cluster is electing one or has no quorum"
                    : "leases are kept by the leader; member " + identity_.name + " is not it";
    reply(std::move(r));
    return;
  }
  if (req.op != wire::Op::kLeaseList && req.lease == 0) {
    r.code = Code::kInvalidArgument;
    r.message = "no lease id";
    reply(std::move(r));
    return;
  }
  queue_read(std::move(req), std::move(reply));
}

void Engine::Impl::serve_lease(const wire::Request& req, wire::Response& r) {
  // A new leader's clock starts at its first tick; a lease request before it starts it now.
  if (node_->role() == raft::Role::kLeader && !lease_clock_running_) lease_tick();
  // The ReadIndex round confirmed leadership when it was sent; a leader change since then
  // means another member keeps the clock now.
  if (node_->role() != raft::Role::kLeader || !lease_clock_running_) {
    r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
    r.message = "leadership changed while the request waited; ask the new leader";
    return;
  }
  const std::uint64_t now = now_ms();
  auto info = [&](const storage::Lease& l, bool with_keys) {
    wire::LeaseInfo li;
    li.id = l.id;
    li.ttl = l.ttl;
    auto c = lease_clock_.find(l.id);
    // A lease granted since the last tick is not on the clock yet: it has its whole ttl.
    li.remaining_ms = c == lease_clock_.end()       ? l.ttl * 1000
                      : c->second.deadline_ms > now ? c->second.deadline_ms - now
                                                    : 0;
    if (with_keys) li.keys = l.keys;
    return li;
  };
  if (req.op == wire::Op::kLeaseList) {
    for (const storage::Lease& l : state_->leases(false)) r.leases.push_back(info(l, false));
    return;
  }
  std::optional<storage::Lease> l = state_->lease(req.lease);
  auto c = lease_clock_.find(req.lease);
  const bool expiring = c != lease_clock_.end() && c->second.revoke_sent_ms != 0;
  if (!l || expiring) {
    r.code = Code::kNotFound;
    r.message =
        "lease " + id_hex(req.lease) +
        (expiring ? " has expired (its revoke is on its way)" : " not found (expired or revoked)");
    return;
  }
  if (req.op == wire::Op::kLeaseTtl) {
    r.leases.push_back(info(*l, req.keys_only));
    return;
  }
  // kLeaseKeepAlive: the countdown restarts now.
  lease_clock_[req.lease].deadline_ms = now + l->ttl * 1000;
  r.lease = l->id;
  r.ttl = l->ttl;
}

void Engine::Impl::lease_tick() {
  const bool leading = node_->role() == raft::Role::kLeader && !damaged_ && !stopping_ && !failed_;
#ifdef KVC_MUTATIONS
  // Broken on purpose (test builds only): a follower keeps its own countdown for every lease
  // from when it applied the grant (it never sees keep-alives), and a new leader keeps those
  // deadlines instead of giving ttl + an election timeout from its promotion
  // ("no-lease-grace"); with "follower-lease-clock" a follower whose countdown ran out also
  // acts on it, by asking the leader to hand it leadership (there is no other path from a
  // follower to a revoke) and then expiring on that countdown.
  const bool follower_clock = options_.test_mutation == "follower-lease-clock" ||
                              options_.test_mutation == "no-lease-grace";
  if (!leading && follower_clock && !damaged_ && !stopping_ && !failed_) {
    const std::uint64_t t = now_ms();
    lease_clock_running_ = false;
    std::map<std::uint64_t, LeaseClock> next;
    bool ran_out = false;
    for (const storage::Lease& l : state_->leases(false)) {
      auto it = lease_clock_.find(l.id);
      next[l.id] = it != lease_clock_.end() ? it->second : LeaseClock{t + l.ttl * 1000, 0};
      ran_out |= next[l.id].deadline_ms <= t;
    }
    lease_clock_ = std::move(next);
    if (ran_out && options_.test_mutation == "follower-lease-clock" &&
        node_->role() == raft::Role::kFollower && node_->leader() != raft::kNoNode) {
      (void)node_->transfer_leadership(node_->id());
    }
    return;
  }
#endif
  if (!leading) {
    lease_clock_.clear();
    lease_clock_running_ = false;
    return;
  }
  const std::uint64_t now = now_ms();
  if (!lease_clock_running_) {
    lease_clock_running_ = true;
    lease_clock_epoch_ = state_->lease_epoch();
    const std::uint64_t grace =
        options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
    for (const storage::Lease& l : state_->leases(false)) {
#ifdef KVC_MUTATIONS
      if (follower_clock && lease_clock_.contains(l.id)) continue;  // the follower's deadline
#endif
      lease_clock_[l.id] = LeaseClock{now + l.ttl * 1000 + grace, 0};
    }
    if (!lease_clock_.empty()) {
      spdlog::info("lease clock started leases={} grace_ms={}", lease_clock_.size(), grace);
    }
  } else if (lease_clock_epoch_ != state_->lease_epoch()) {
    // Grants and revokes applied since the last tick.
    lease_clock_epoch_ = state_->lease_epoch();
    const std::vector<storage::Lease> now_held = state_->leases(false);
    std::map<std::uint64_t, LeaseClock> next;
    for (const storage::Lease& l : now_held) {
      auto it = lease_clock_.find(l.id);
      next[l.id] = it != lease_clock_.end() ? it->second : LeaseClock{now + l.ttl * 1000, 0};
    }
    lease_clock_ = std::move(next);
  }
  const std::uint64_t retry_ms =
      options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  int proposed = 0;
  for (auto& [id, c] : lease_clock_) {
    if (c.deadline_ms > now) continue;
    // A revoke lost with a leader change, or still in flight: proposed again after a while.
    if (c.revoke_sent_ms != 0 && now - c.revoke_sent_ms < retry_ms) continue;
    storage::Command cmd;
    cmd.op = storage::CommandOp::kLeaseRevoke;
    cmd.request_id = ++request_seq_;
    cmd.lease = id;
    Result<std::uint64_t> index = node_->propose(storage::encode_command(cmd));
    if (!index.ok()) {
      spdlog::debug("lease revoke not proposed lease={} error={}", id_hex(id),
                    index.status().message());
      break;
    }
    spdlog::info("lease expired lease={} late_ms={} index={}", id_hex(id), now - c.deadline_ms,
                 *index);
    c.revoke_sent_ms = now;
    if (++proposed == kRevokesPerTick) break;
  }
}

}  // namespace kvc::server
