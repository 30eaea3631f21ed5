// The administration service: membership changes (add, remove, promote, with their safety
// checks), leadership transfer, barrier hashes (kvc-ctl check hash).
//
// Invariants kept here:
// - One membership change at a time; a change that would cost the cluster its quorum, or
//   promote a learner far behind the leader, is refused unless forced.
// - A transfer or a removal of the leader is answered once the leadership moved, or at its
//   deadline.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

// ---------------------------------------------------------------------------------------------
// Administration: membership, leadership, state hashes

const storage::Member* Engine::Impl::find_member(const wire::Request& req) const {
  const storage::Membership m = current_membership();
  for (const storage::Member& mem : m.members) {
    if ((req.member_id != 0 && mem.id == req.member_id) ||
        (req.member_id == 0 && !req.name.empty() && mem.name == req.name)) {
      return member(mem.id);
    }
  }
  return nullptr;
}

std::set<std::uint64_t> Engine::Impl::reachable_voters() const {
  std::set<std::uint64_t> out;
  const raft::ConfState& conf = node_->conf_state();
  for (const raft::PeerProgress& p : node_->progress()) {
    if (!raft::is_voter(conf, p.id)) continue;
    if (p.id == identity_.member_id || p.recent_active) out.insert(p.id);
  }
  if (raft::is_voter(conf, identity_.member_id)) out.insert(identity_.member_id);
  return out;
}

std::uint64_t Engine::Impl::best_transfer_target(std::uint64_t excluding) const {
  std::uint64_t best = 0, best_match = 0;
  for (const raft::PeerProgress& p : node_->progress()) {
    if (p.id == identity_.member_id || p.id == excluding || p.learner || !p.recent_active ||
        p.repairing) {
      continue;
    }
    if (best == 0 || p.match > best_match) {
      best = p.id;
      best_match = p.match;
    }
  }
  return best;
}

// Administration runs on the leader: anywhere else `r` is answered "not the leader" (with the
// leader it knows, which base_response filled in) or "no leader"; true when it was.
bool Engine::Impl::refuse_if_damaged(wire::Response& r, const Reply& reply) {
  if (!damaged_) return false;
  r.code = Code::kUnavailable;
  r.message = damaged_message();
  reply(std::move(r));
  return true;
}

bool Engine::Impl::refuse_unless_leader(wire::Response& r, const Reply& reply) {
  if (node_->role() == raft::Role::kLeader) return false;
  r.code = r.leader_id == raft::kNoNode ? Code::kUnavailable : Code::kNotLeader;
  r.message = r.leader_id == raft::kNoNode ? "no leader" : "not the leader";
  reply(std::move(r));
  return true;
}

void Engine::Impl::answer_member_list(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  for (const storage::Member& mem : state_->membership().members) {
    const storage::Member* known = member(mem.id);
    r.members.push_back({mem.id, mem.name, mem.peer_addr,
                         known != nullptr ? known->client_addr : mem.client_addr, mem.learner,
                         mem.id == node_->leader()});
  }
  reply(std::move(r));
}

// kvc-ctl check hash: a barrier through the log (no revision given), then each member's hash
// at that barrier (the revision names it).
void Engine::Impl::handle_hash(wire::Request req, Reply reply) {
  if (req.start_revision == 0) {
    propose_barrier(std::move(req), std::move(reply));
  } else {
    answer_hash(std::move(req), std::move(reply));
  }
}

void Engine::Impl::member_change(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  auto refuse = [&](Code code, std::string msg) {
    r.code = code;
    r.message = std::move(msg);
    reply(std::move(r));
  };
  if (refuse_unless_leader(r, reply)) return;
  const storage::Member* target = nullptr;
  if (req.op != wire::Op::kMemberAdd) {
    target = find_member(req);
    if (target == nullptr) {
      return refuse(Code::kNotFound,
                    "no member " + (req.member_id != 0 ? hex(req.member_id) : req.name));
    }
  }
  if (req.op == wire::Op::kMemberRemove && target->id == identity_.member_id) {
    return remove_self(std::move(req), std::move(reply));
  }
  Result<MemberChangePlan> plan = req.op == wire::Op::kMemberAdd       ? plan_add(req)
                                  : req.op == wire::Op::kMemberUpdate  ? plan_update(req, *target)
                                  : req.op == wire::Op::kMemberPromote ? plan_promote(req, *target)
                                                                       : plan_remove(req, *target);
  if (!plan.ok()) return refuse(plan.status().code(), plan.status().message());
  if (plan->nothing) {
    r.revision = 0;  // already so: nothing to commit
    reply(std::move(r));
    return;
  }
  Result<std::uint64_t> index = node_->propose_conf_change(plan->cc);
  if (!index.ok()) {
    std::string msg = index.status().message();
    if (msg.find("in progress") != std::string::npos) msg += "; try again when it commits";
    return refuse(index.status().code(), msg);
  }
  if (plan->added) learned_[plan->added->id] = *plan->added;
  spdlog::info("membership change proposed change=\"{}\" index={}", plan->what, *index);
  waiters_[*index] = Waiter{0,
                            node_->term(),
                            req,
                            std::move(reply),
                            deadline_for(req),
                            raft::encode_conf_change(plan->cc)};
}

Result<Engine::Impl::MemberChangePlan> Engine::Impl::plan_add(const wire::Request& req) {
  if (req.name.empty() || req.name.find_first_of(",= \t\n") != std::string::npos) {
    return Status::invalid_argument(
        "a member name must be non-empty, without ',', '=' or whitespace");
  }
  Result<net::Address> addr = net::parse_address(req.peer_addr);
  if (!addr.ok()) return Status::invalid_argument(addr.status().message());
  const storage::Membership m = current_membership();
  for (const storage::Member& mem : m.members) {
    if (mem.name == req.name) {
      return Status::already_exists("a member named '" + req.name + "' exists (id " + hex(mem.id) +
                                    ")");
    }
    if (mem.peer_addr == addr->to_string()) {
      return Status::already_exists("member '" + mem.name + "' already uses peer address " +
                                    mem.peer_addr);
    }
  }
  const std::size_t voters = node_->conf_state().voters.size();
  const std::size_t reachable = reachable_voters().size();
  if (!req.learner && !req.force && reachable < (voters + 1) / 2 + 1) {
    return Status::failed_precondition(
        "adding a voter now would leave the cluster without a quorum until it catches up (" +
        std::to_string(reachable) + " of " + std::to_string(voters) + " voters reachable, " +
        std::to_string((voters + 1) / 2 + 1) +
        " needed): add it with --learner and promote it later, or use --force");
  }
  std::uint64_t id = 0;
  while (id == 0 || m.find(id) != nullptr || m.was_removed(id) || learned_.count(id) != 0) {
    id = next_random();
  }
  storage::Membership one;
  one.members.push_back({id, req.name, addr->to_string(), req.client_addr, req.learner});
  MemberChangePlan plan;
  plan.cc = {req.learner ? raft::ConfChangeType::kAddLearner : raft::ConfChangeType::kAddVoter, id,
             storage::encode_membership(one)};
  plan.added = one.members.front();
  plan.what = "add " + req.name;
  return plan;
}

Result<Engine::Impl::MemberChangePlan> Engine::Impl::plan_update(const wire::Request& req,
                                                                 const storage::Member& target) {
  Result<net::Address> addr = net::parse_address(req.peer_addr);
  if (!addr.ok()) return Status::invalid_argument(addr.status().message());
  const std::string peer = addr->to_string();
  const storage::Membership m = current_membership();
  MemberChangePlan plan;
  const storage::Member* stored = m.find(target.id);
  if (stored != nullptr && stored->peer_addr == peer) {
    plan.nothing = true;
    return plan;
  }
  for (const storage::Member& mem : m.members) {
    if (mem.id != target.id && mem.peer_addr == peer) {
      return Status::already_exists("member '" + mem.name + "' already uses peer address " + peer);
    }
  }
  storage::Membership one;
  one.members.push_back(
      {target.id, target.name, peer, "", raft::is_learner(node_->conf_state(), target.id)});
  plan.cc = {raft::ConfChangeType::kUpdate, target.id, storage::encode_membership(one)};
  plan.what = "update " + target.name + " peer " + peer;
  return plan;
}

Result<Engine::Impl::MemberChangePlan> Engine::Impl::plan_promote(const wire::Request& req,
                                                                  const storage::Member& target) {
  if (!raft::is_learner(node_->conf_state(), target.id)) {
    return Status::failed_precondition("member " + target.name + " is not a learner");
  }
  std::uint64_t match = 0;
  bool active = false;
  for (const raft::PeerProgress& p : node_->progress()) {
    if (p.id == target.id) {
      match = p.match;
      active = p.recent_active;
    }
  }
  // Caught up means both close in entries and close in proportion (etcd asks for 90 % of the
  // leader's progress): a learner that has nothing yet is never "a few entries behind" a young
  // cluster.
  const std::uint64_t commit = node_->commit();
  const std::uint64_t lag = commit > match ? commit - match : 0;
  const std::uint64_t max_lag = options_.retained_entries / 10 + 100;
  const bool close = lag <= max_lag && match * 10 >= commit * 9;
  if (!req.force && (!active || !close)) {
    return Status::failed_precondition(
        "learner " + target.name + " has not caught up: it has " + std::to_string(match) + " of " +
        std::to_string(commit) + " committed entries (" + std::to_string(lag) +
        " behind; promotion needs at least 90% and at most " + std::to_string(max_lag) +
        " behind)" + (active ? "" : " and is not responding") + "; wait for it, or use --force");
  }
  MemberChangePlan plan;
  plan.cc = {raft::ConfChangeType::kPromoteLearner, target.id, ""};
  plan.what = "promote " + target.name;
  return plan;
}

Result<Engine::Impl::MemberChangePlan> Engine::Impl::plan_remove(const wire::Request& req,
                                                                 const storage::Member& target) {
  const std::size_t voters = node_->conf_state().voters.size();
  const bool voter = raft::is_voter(node_->conf_state(), target.id);
  if (voter && voters == 1) return Status::failed_precondition("cannot remove the last voter");
  if (voter && !req.force) {
    const std::set<std::uint64_t> reachable = reachable_voters();
    const std::size_t left = reachable.size() - (reachable.count(target.id) != 0 ? 1 : 0);
    const std::size_t need = (voters - 1) / 2 + 1;
    if (left < need) {
      return Status::failed_precondition("removing " + target.name + " would leave " +
                                         std::to_string(left) + " reachable voters of the " +
                                         std::to_string(need) +
                                         " a quorum needs; use --force to remove it anyway");
    }
  }
  MemberChangePlan plan;
  plan.cc = {raft::ConfChangeType::kRemove, target.id, ""};
  plan.what = "remove " + target.name;
  return plan;
}

// The leader leaves: hand leadership over first, then the new leader removes it (the client
// follows the redirect the answer carries; settle_transfers answers).
void Engine::Impl::remove_self(wire::Request req, Reply reply) {
  auto refuse = [&](Code code, std::string msg) {
    wire::Response r = base_response(req.id);
    r.code = code;
    r.message = std::move(msg);
    reply(std::move(r));
  };
  if (node_->conf_state().voters.size() == 1) {
    return refuse(Code::kFailedPrecondition, "cannot remove the last voter");
  }
  const std::uint64_t target_id = best_transfer_target(identity_.member_id);
  if (target_id == 0) {
    return refuse(Code::kUnavailable,
                  "no caught-up voter to hand leadership to before removing the leader");
  }
  Status s = node_->transfer_leadership(target_id);
  if (!s.ok()) return refuse(s.code(), s.message());
  const std::uint64_t deadline =
      now_ms() + 2 * options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  transfers_.push_back({std::move(req), std::move(reply), target_id, deadline});
}

void Engine::Impl::transfer_leader(wire::Request req, Reply reply) {
  const storage::Member* target = find_member(req);
  wire::Response r = base_response(req.id);
  if (target == nullptr) {
    r.code = Code::kNotFound;
    r.message = "no member " + (req.member_id != 0 ? hex(req.member_id) : req.name);
    reply(std::move(r));
    return;
  }
  if (!raft::is_voter(node_->conf_state(), target->id)) {
    r.code = Code::kFailedPrecondition;
    r.message = "member " + target->name + " is not a voter";
    reply(std::move(r));
    return;
  }
  if (node_->leader() == target->id) {
    reply(std::move(r));  // already there
    return;
  }
  if (refuse_unless_leader(r, reply)) return;
  Status s = node_->transfer_leadership(target->id);
  if (!s.ok()) {
    set_error(r, s);
    reply(std::move(r));
    return;
  }
  const std::uint64_t wait =
      2 * options_.tick_ms * static_cast<std::uint64_t>(options_.election_ticks);
  transfers_.push_back({std::move(req), std::move(reply), target->id, now_ms() + wait});
}

// Answers leadership transfers (and removals of the old leader) once the leader changed or
// their time is up.
void Engine::Impl::settle_transfers() {
  const std::uint64_t now = now_ms();
  for (auto it = transfers_.begin(); it != transfers_.end();) {
    const bool moved = node_->leader() != raft::kNoNode && node_->leader() != identity_.member_id;
    if (!moved && now < it->deadline) {
      ++it;
      continue;
    }
    wire::Response r = base_response(it->req.id);
    if (it->req.op == wire::Op::kMemberRemove) {
      // Not applied here: the client retries at the new leader, which removes this member.
      r.code = moved ? Code::kNotLeader : Code::kUnavailable;
      r.message = moved ? "leadership handed over before removing this member; ask the new leader"
                        : "the leadership hand-over before the removal did not complete";
    } else if (node_->leader() != it->target) {
      r.code = moved ? Code::kUnavailable : Code::kTimeout;
      r.message = moved ? "leadership moved to another member than the one asked for"
                        : "the leadership transfer did not complete in time";
    }
    it->reply(std::move(r));
    it = transfers_.erase(it);
  }
}

void Engine::Impl::propose_barrier(wire::Request req, Reply reply) {
  wire::Response r = base_response(req.id);
  if (refuse_if_damaged(r, reply) || refuse_unless_leader(r, reply)) return;
  storage::Command cmd;
  cmd.op = storage::CommandOp::kBarrier;
  cmd.request_id = ++request_seq_;
  const std::uint64_t term = node_->term();
  Result<std::uint64_t> index = node_->propose(storage::encode_command(cmd));
  if (!index.ok()) {
    set_error(r, index.status());
    reply(std::move(r));
    return;
  }
  const std::uint64_t deadline = deadline_for(req);
  waiters_[*index] = Waiter{cmd.request_id, term, std::move(req), std::move(reply), deadline};
}

void Engine::Impl::answer_hash(wire::Request req, Reply reply) {
  const std::uint64_t index = req.start_revision;
  if (wire::Response r = base_response(req.id); refuse_if_damaged(r, reply)) return;
  auto it = barrier_hashes_.find(index);
  if (it != barrier_hashes_.end()) {
    wire::Response r = base_response(req.id);
    r.revision = index;
    r.hash = it->second;
    reply(std::move(r));
    return;
  }
  if (state_->applied_index() >= index && pending_barrier_ != index) {
    wire::Response r = base_response(req.id);
    r.code = Code::kNotFound;
    r.message = "this member has no state hash at index " + std::to_string(index) +
                " (it applied that index before it last started, or it is not a barrier)";
    reply(std::move(r));
    return;
  }
  const std::uint64_t deadline = deadline_for(req);
  hash_waiters_[index].push_back({std::move(req), std::move(reply), deadline});
}

}  // namespace kvc::server
