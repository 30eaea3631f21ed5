// The simulated cluster's clients and checks (sim_internal.h): client operations recorded in
// the history for the linearizability checker, reads served, and the safety checks run after
// every step (election safety, leader completeness, commit monotonicity, state machine safety)
// and at the end (no acknowledged write lost, linearizability). Invariant kept here: each client
// has at most one operation outstanding, and it ends with an outcome in the history.
#include "kvc/sim/sim_internal.h"

namespace kvc::sim::raft_cluster {

// ---------------------------------------------------------------------------------------------
// Clients.

void Cluster::respond(Client& c, check::Outcome outcome) {
  check::Operation& op = history_[c.op];
  op.outcome = outcome;
  op.response_time = outcome == check::Outcome::kUnknown ? check::kNever : ++clock_;
  if (outcome == check::Outcome::kOk) ++result_.stats.operations_ok;
  if (outcome == check::Outcome::kUnknown) ++result_.stats.operations_unknown;
  if (!c.is_read) pending_writes_.erase({c.member, c.op_id});
  if (opt_.trace) {
    trace("client " + std::to_string(c.id) + " op " + std::to_string(c.op_id) + " -> " +
          (outcome == check::Outcome::kOk       ? "ok"
           : outcome == check::Outcome::kFailed ? "failed"
                                                : "unknown") +
          " found=" + std::to_string(op.found) + " rev=" + std::to_string(op.revision) +
          (op.kind == check::OpKind::kGet ? " value=" + op.read_value : ""));
  }
  c.busy = false;
}

void Cluster::fail_client_ops_on(NodeId id) {
  for (Client& c : clients_) {
    if (c.busy && c.member == id)
      respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
  }
}

void Cluster::client_actions() {
  for (Client& c : clients_) {
    if (c.busy) {
      if (now_ >= c.deadline)
        respond(c, c.is_read ? check::Outcome::kFailed : check::Outcome::kUnknown);
      continue;
    }
    if (healed_ || !chance(12)) continue;
    std::vector<Member*> up;
    for (auto& [id, m] : members_) {
      if (m.alive) up.push_back(&m);
    }
    if (up.empty()) continue;
    // Mostly the leader (as real clients redirect), sometimes anyone.
    Member* l = leader();
    Member* target = (l && !chance(3)) ? l : up[rng_.uniform(up.size())];
    check::Operation op;
    op.client = c.id;
    op.key = kKeys[rng_.uniform(std::size(kKeys))];
    const std::uint64_t k = rng_.uniform(100);
    op.kind = k < 35   ? check::OpKind::kGet
              : k < 70 ? check::OpKind::kPut
              : k < 90 ? check::OpKind::kCas
                       : check::OpKind::kDelete;
    c.op_id = next_op_id_++;
    if (op.kind == check::OpKind::kPut || op.kind == check::OpKind::kCas) {
      op.value = "v" + std::to_string(c.op_id);
    }
    if (op.kind == check::OpKind::kCas) {
      auto it = c.seen_revision.find(op.key);
      op.expect_revision = (it == c.seen_revision.end() || chance(4)) ? 0 : it->second;
    }
    op.invoke_time = ++clock_;
    c.busy = true;
    c.member = target->id;
    c.op = history_.size();
    c.deadline = now_ + kOpTimeoutSteps;
    c.is_read = op.kind == check::OpKind::kGet;
    c.read_index.reset();
    std::uint64_t data_hash = 0;
    history_.push_back(op);
    ++result_.stats.operations;
    if (target->damaged) {
      // A member that found its state damaged serves nothing until it is repaired.
      respond(c, check::Outcome::kFailed);
    } else if (c.is_read) {
      c.ctx = "r" + std::to_string(c.op_id);
      std::uint64_t mc = max_commit_seen_;
      for (auto& [id, m] : members_) {
        if (m.alive) mc = std::max(mc, m.node->commit());
      }
      c.read_min_commit = mc;
      Status s = target->node->read_index(c.ctx);
      if (opt_.trace)
        trace("client " + std::to_string(c.id) + " get " + op.key + " via " +
              std::to_string(target->id));
      if (!s.ok()) respond(c, check::Outcome::kFailed);
    } else {
      KvCommand cmd{c.op_id, op.kind, op.key, op.value, op.expect_revision};
      std::string data = encode_command(cmd);
      Entry tmp;
      tmp.data = data;
      data_hash = entry_hash(tmp);
      auto idx = target->node->propose(std::move(data));
      if (opt_.trace) {
        trace("client " + std::to_string(c.id) + " op " + std::to_string(c.op_id) + " " +
              encode_command(cmd) + " via " + std::to_string(target->id) +
              (idx.ok() ? " index=" + std::to_string(*idx) : " refused"));
      }
      if (idx.ok()) {
        pending_writes_[{target->id, c.op_id}] = static_cast<std::size_t>(&c - clients_.data());
      } else {
        respond(c, check::Outcome::kFailed);
      }
    }
    history_hash_.push_back(data_hash);
  }
}

void Cluster::serve_reads() {
  for (Client& c : clients_) {
    if (!c.busy || !c.is_read || !c.read_index) continue;
    Member* m = member(c.member);
    if (m == nullptr || !m->alive) continue;
    if (m->damaged) {
      respond(c, check::Outcome::kFailed);
      continue;
    }
    if (m->kv.applied() < *c.read_index) continue;
    check::Operation& op = history_[c.op];
    const Result<const KvStore::Item*> got = m->kv.get(op.key);
    if (!got.ok()) {
      // Never served: the read fails (found_damage fails it) and the member starts a repair.
      found_damage(*m, "read of key " + op.key + ": " + got.status().message());
      continue;
    }
    if (const KvStore::Item* item = *got) {
      op.found = true;
      op.read_value = item->value;
      op.revision = item->mod_revision;
      c.seen_revision[op.key] = item->mod_revision;
    } else {
      op.found = false;
    }
    respond(c, check::Outcome::kOk);
  }
}

// ---------------------------------------------------------------------------------------------
// Checks.

void Cluster::check_step() {
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    raft::Node& n = *m.node;
    n.check_invariants();
    if (n.role() == Role::kLeader) {
      auto [it, inserted] = leader_of_term_.emplace(n.term(), id);
      if (!inserted && it->second != id) {
        violate("election safety: members " + std::to_string(it->second) + " and " +
                std::to_string(id) + " are both leaders of term " + std::to_string(n.term()));
      }
      if (m.led_terms.insert(n.term()).second) {
        ++result_.stats.elections;
        if (crashes_ && !healed_ && chance(2)) churn_crash_at_[id] = now_ + 1 + rng_.uniform(40);
        if (targeted_ && !healed_) plan_leader(m);
        // Leader completeness: every entry committed in an earlier term is in the new
        // leader's log.
        const raft::RaftLog& log = n.log();
        for (std::uint64_t i = log.first_index(); i < committed_.size(); ++i) {
          const CommittedInfo& ci = committed_[i];
          if (!ci.known || ci.observed_term >= n.term()) continue;
          if (!log.match_term(i, ci.term)) {
            violate("leader completeness: leader " + std::to_string(id) + " of term " +
                    std::to_string(n.term()) + " lacks committed entry index=" + std::to_string(i) +
                    " term=" + std::to_string(ci.term));
          }
        }
      }
    }
    if (n.commit() < m.last_commit) {
      violate("commit index of member " + std::to_string(id) + " went back from " +
              std::to_string(m.last_commit) + " to " + std::to_string(n.commit()));
    }
    m.last_commit = n.commit();
    // Record newly committed entries; two members must never disagree on one.
    const raft::RaftLog& log = n.log();
    for (std::uint64_t i = std::max(m.recorded_commit + 1, log.first_index()); i <= n.commit();
         ++i) {
      const Entry& e = log.at(i);
      if (i >= committed_.size()) committed_.resize(i + 1);
      CommittedInfo& ci = committed_[i];
      if (!ci.known) {
        ci = {true, e.term, entry_hash(e), n.term()};
      } else if (ci.term != e.term || ci.hash != entry_hash(e)) {
        violate("state machine safety: member " + std::to_string(id) + " committed index " +
                std::to_string(i) + " term " + std::to_string(e.term) + " but term " +
                std::to_string(ci.term) + " was committed there before");
      }
    }
    m.recorded_commit = std::max(m.recorded_commit, n.commit());
    max_commit_seen_ = std::max(max_commit_seen_, n.commit());
  }
  result_.stats.committed = max_commit_seen_;
}

std::string Cluster::describe_cluster() {
  std::string state;
  for (auto& [id, m] : members_) {
    if (!m.alive) continue;
    state += " [" + std::to_string(id) + " " + std::string(raft::role_name(m.node->role())) +
             " term=" + std::to_string(m.node->term()) +
             " commit=" + std::to_string(m.node->commit()) +
             " last=" + std::to_string(m.node->log().last_index()) + "]";
    for (const auto& p : m.node->progress()) {
      state += " {" + std::to_string(p.id) + " " + std::string(raft::progress_state_name(p.state)) +
               " match=" + std::to_string(p.match) + " next=" + std::to_string(p.next) +
               " inflight=" + std::to_string(p.inflight_msgs) + "}";
    }
  }
  return state;
}

void Cluster::liveness_probe() {
  if (live_) return;
  if (now_ > heal_at_ + static_cast<std::uint64_t>(opt_.liveness_ticks) * kTickSteps) {
    violate("liveness: no write committed within " + std::to_string(opt_.liveness_ticks) +
            " ticks after the faults healed:" + describe_cluster());
    return;
  }
  Member* l = leader();
  if (l == nullptr) return;
  if (probe_ && probe_->first == l->id && l->node->term() == probe_->second) return;
  probe_data_ = encode_command({0, check::OpKind::kPut, "probe", "p" + std::to_string(now_), 0});
  auto idx = l->node->propose(probe_data_);
  if (idx.ok()) {
    probe_ = std::make_pair(l->id, l->node->term());
    trace("liveness probe proposed on " + std::to_string(l->id) + " index=" + std::to_string(*idx));
  }
}

void Cluster::final_checks() {
  // Nothing acknowledged is lost: each acknowledged write is the committed entry at its
  // revision.
  for (std::size_t i = 0; i < history_.size(); ++i) {
    const check::Operation& op = history_[i];
    if (op.outcome != check::Outcome::kOk || op.kind == check::OpKind::kGet || op.revision == 0)
      continue;
    if (op.revision >= committed_.size() || !committed_[op.revision].known ||
        committed_[op.revision].hash != history_hash_[i]) {
      violate("acknowledged write lost: client " + std::to_string(op.client) + " " + op.key +
              " revision " + std::to_string(op.revision));
    }
  }
  HistoryCheck hc = check_history_linearizable(history_);
  result_.stats.linearizability_checked = hc.checked;
  result_.stats.checked_operations = hc.operations;
  if (hc.checked && !hc.ok) violate("linearizability: " + hc.explanation);
}

}  // namespace kvc::sim::raft_cluster
