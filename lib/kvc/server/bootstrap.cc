// Bootstrap rules as functions (see bootstrap.h).
#include "kvc/server/bootstrap.h"

#include <algorithm>

#include "kvc/raft/conf_change.h"

namespace kvc::server {

Result<storage::Identity> founder_identity(const std::string& name, const std::string& token,
                                           const storage::Membership& initial) {
  const storage::Member* self = initial.find_name(name);
  if (self == nullptr) {
    return Status::invalid_argument("--initial-cluster does not name this member ('" + name + "')");
  }
  storage::Identity id;
  id.name = name;
  id.cluster_token = token;
  id.member_id = self->id;
  id.initial_cluster = storage::sorted_initial_cluster(initial);
  id.cluster_id = storage::derive_cluster_id(token, id.initial_cluster);
  return id;
}

std::optional<InitialLog> initial_log(const storage::Membership& founders,
                                      const storage::RecoveredLog& log,
                                      std::uint64_t state_applied) {
  if (founders.empty() || log.hard_state || !log.entries.empty() || log.snapshot ||
      state_applied != 0) {
    return std::nullopt;
  }
  InitialLog out;
  for (const storage::Member& m : founders.members) {
    storage::Membership one;
    one.members.push_back(m);
    out.entries.push_back({out.entries.size() + 1, 1, raft::EntryType::kConfChange,
                           raft::encode_conf_change({raft::ConfChangeType::kAddVoter, m.id,
                                                     storage::encode_membership(one)})});
  }
  out.hard_state = {1, raft::kNoNode, out.entries.size()};
  return out;
}

ForcedCluster force_new_cluster(const StateFacts& state, const storage::RecoveredLog& log,
                                std::uint64_t self, const std::string& name,
                                const std::string& peer_addr) {
  raft::ConfState conf = state.conf;
  std::uint64_t last = state.applied;
  std::uint64_t last_term = state.applied_term;
  for (const raft::Entry& e : log.entries) {
    if (e.index <= state.applied) continue;
    if (e.type == raft::EntryType::kConfChange) {
      Result<raft::ConfChange> cc = raft::decode_conf_change(e.data);
      if (cc.ok()) {
        Result<raft::ConfState> next = raft::apply_conf_change(conf, *cc);
        if (next.ok()) conf = *next;
      }
    }
    last = e.index;
    last_term = e.term;
  }
  ForcedCluster out;
  out.hard_state = log.hard_state.value_or(raft::HardState{});
  const std::uint64_t term = std::max(out.hard_state.term, last_term);
  auto add = [&](const raft::ConfChange& cc) {
    Result<raft::ConfState> next = raft::apply_conf_change(conf, cc);
    if (!next.ok()) return;
    conf = *next;
    out.entries.push_back(
        {++last, term, raft::EntryType::kConfChange, raft::encode_conf_change(cc)});
  };
  if (raft::is_learner(conf, self)) add({raft::ConfChangeType::kPromoteLearner, self, ""});
  if (!raft::is_voter(conf, self)) {
    storage::Membership one;
    one.members.push_back({self, name, peer_addr, "", false});
    add({raft::ConfChangeType::kAddVoter, self, storage::encode_membership(one)});
  }
  std::vector<std::uint64_t> others;
  for (const auto* list : {&conf.voters, &conf.learners}) {
    for (std::uint64_t id : *list) {
      if (id != self) others.push_back(id);
    }
  }
  for (std::uint64_t id : others) add({raft::ConfChangeType::kRemove, id, ""});
  out.hard_state.term = term;
  out.hard_state.commit = last;
  out.removed = others.size();
  out.last = last;
  return out;
}

RestorePlan restore_plan(const StateFacts& state, storage::RecoveredLog log,
                         std::uint64_t wal_last_index) {
  const std::uint64_t d = state.applied;
  RestorePlan plan;
  raft::RestoreState& rs = plan.restore;
  rs.snapshot = {d, state.applied_term, state.conf};
  plan.needs_snapshot_marker = wal_last_index < d;
  if (log.hard_state) rs.hard_state = *log.hard_state;
  std::uint64_t expect = d + 1;
  for (raft::Entry& e : log.entries) {
    if (e.index <= d) continue;
    // storage::check_consistency refused a log that does not continue at d + 1.
    KVC_CHECK_EQ(e.index, expect);
    if (e.term < state.applied_term) {
      plan.dropped_from = e.index;
      plan.dropped_term = e.term;
      break;
    }
    rs.entries.push_back(std::move(e));
    ++expect;
  }
  plan.last = rs.entries.empty() ? d : rs.entries.back().index;
  rs.hard_state.commit = std::clamp(rs.hard_state.commit, d, plan.last);
  if (rs.hard_state.term < state.applied_term) rs.hard_state.term = state.applied_term;
  rs.applied = d;
  return plan;
}

}  // namespace kvc::server
