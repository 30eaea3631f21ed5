// raft::Node: the algorithm. This file has construction, roles, Ready/advance, status and the
// invariants; node_step.cc the inputs, replication.cc both sides of log replication, repair.cc
// protocol-aware repair and the read index, requests.cc the caller's requests. Section
// references are to Ongaro's thesis ("Consensus: Bridging Theory and Practice", 2014) and the
// Raft paper (§5.x).
#include "kvc/raft/node.h"

#include <algorithm>
#include <sstream>

#include "kvc/common/check.h"
#include "kvc/common/coding.h"
#include "kvc/common/text.h"
#include "kvc/raft/mutation.h"
#include "kvc/raft/node_internal.h"

namespace kvc::raft {
namespace {

// Messages that may leave before this Ready's hard state and entries are durable: they carry
// nothing that a crash could take back (the leader's own term was durable before it won).
bool sendable_at_once(MessageType t) {
  switch (t) {
    case MessageType::kAppend:
    case MessageType::kHeartbeat:
    case MessageType::kSnapshot:
    case MessageType::kTimeoutNow:
    case MessageType::kPreVote:
    case MessageType::kPreVoteResp:
    case MessageType::kReadIndex:
    case MessageType::kReadIndexResp:
    case MessageType::kTransferLeader:
      return true;
    default:
      return false;
  }
}

}  // namespace

std::uint64_t SplitMix64::next_u64() {
  std::uint64_t z = (state_ += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

std::string_view role_name(Role role) {
  switch (role) {
    case Role::kFollower:
      return "follower";
    case Role::kPreCandidate:
      return "pre_candidate";
    case Role::kCandidate:
      return "candidate";
    case Role::kLeader:
      return "leader";
  }
  return "unknown";
}

std::string_view progress_state_name(ProgressState state) {
  switch (state) {
    case ProgressState::kProbe:
      return "probe";
    case ProgressState::kReplicate:
      return "replicate";
    case ProgressState::kSnapshot:
      return "snapshot";
  }
  return "unknown";
}

RestoreState bootstrap_state(const std::vector<NodeId>& voters) {
  RestoreState st;
  std::vector<NodeId> sorted = voters;
  std::sort(sorted.begin(), sorted.end());
  for (NodeId v : sorted) {
    Entry e;
    e.index = st.entries.size() + 1;
    e.term = 1;
    e.type = EntryType::kConfChange;
    e.data = encode_conf_change({ConfChangeType::kAddVoter, v, {}});
    st.entries.push_back(std::move(e));
  }
  st.hard_state = {1, kNoNode, st.entries.size()};
  return st;
}

bool Ready::empty() const {
  return !soft_state && !hard_state && entries.empty() && messages.empty() &&
         messages_after_persist.empty() && committed.empty() && read_states.empty() && !snapshot &&
         snapshot_chunks.empty() && !conf_state && !snapshot_wanted && !repair;
}

// ---------------------------------------------------------------------------------------------
// Construction and restore.

Result<std::unique_ptr<Node>> Node::create(const Config& config, RestoreState state) {
  if (config.id == kNoNode) return Status::invalid_argument("raft config: id must not be 0");
  if (config.rng == nullptr || config.logger == nullptr) {
    return Status::invalid_argument("raft config: rng and logger are required");
  }
  if (config.heartbeat_ticks <= 0 || config.election_ticks <= config.heartbeat_ticks) {
    return Status::invalid_argument("raft config: need 0 < heartbeat_ticks < election_ticks");
  }
  if (config.max_inflight_msgs <= 0 || config.max_msg_bytes == 0 ||
      config.max_inflight_bytes == 0 || config.snapshot_chunk_bytes == 0) {
    return Status::invalid_argument("raft config: flow-control limits must be positive");
  }
  const SnapshotMeta& snap = state.snapshot;
  std::uint64_t prev_index = snap.index;
  std::uint64_t prev_term = snap.term;
  for (const Entry& e : state.entries) {
    if (e.index != prev_index + 1) {
      return Status::corruption("raft restore: entry " + std::to_string(e.index) + " follows " +
                                std::to_string(prev_index));
    }
    if (e.term < prev_term) {
      return Status::corruption("raft restore: term goes back at index " + std::to_string(e.index));
    }
    if (e.type == EntryType::kConfChange && !decode_conf_change(e.data).ok()) {
      return Status::corruption("raft restore: bad conf change at index " +
                                std::to_string(e.index));
    }
    prev_index = e.index;
    prev_term = e.term;
  }
  const HardState& hs = state.hard_state;
  if (hs.commit > prev_index) {
    return Status::corruption("raft restore: commit " + std::to_string(hs.commit) +
                              " beyond last index " + std::to_string(prev_index));
  }
  for (const auto* list : {&snap.conf.voters, &snap.conf.learners}) {
    if (!std::is_sorted(list->begin(), list->end())) {
      return Status::corruption("raft restore: snapshot membership is not sorted");
    }
  }
  if (!state.repair.needs_snapshot && state.repair.snapshot_from != 0) {
    return Status::corruption("raft restore: repair state asks for no snapshot but names one");
  }
  return std::unique_ptr<Node>(new Node(config, std::move(state)));
}

Node::Node(const Config& config, RestoreState state)
    : cfg_(config), rng_(config.rng), logger_(config.logger), id_(config.id) {
  const SnapshotMeta& snap = state.snapshot;
  log_ = RaftLog(snap.index, snap.term, std::move(state.entries));
  term_ = state.hard_state.term;
  vote_ = state.hard_state.vote;
  if (log_.last_term() > term_) {
    // A torn write kept entries of a newer term but not the hard state written after them.
    // Nothing was sent that depended on that hard state, so taking the entries' term (with no
    // vote) is safe.
    term_ = log_.last_term();
    vote_ = kNoNode;
  }
  commit_ = std::max(state.hard_state.commit, snap.index);
  applied_ = std::clamp(state.applied, snap.index, commit_);
  applying_ = applied_;
  durable_ = log_.last_index();  // what we were given is on stable storage
  persist_from_ = log_.last_index() + 1;
  snap_conf_ = snap.conf;
  conf_ = snap.conf;
  for (std::uint64_t i = log_.first_index(); i <= log_.last_index(); ++i) note_appended(log_.at(i));
  repair_ = state.repair;
  if (repair_.needs_snapshot) {
    // A crash may have kept the install of the repair snapshot but lost the end of the repair:
    // ask for a snapshot at least as new as our own, so a repair never takes the member back
    // below its snapshot (and its commit index).
    repair_.snapshot_from = std::max(repair_.snapshot_from, snap.index);
  }
  prev_repair_ = repair_;
  prev_hard_state_ = hard_state();
  prev_soft_state_ = {role_, leader_, term_};
  prev_conf_ = conf_;
  reset_randomized_timeout();
  if (repair_.active()) {
    logf(LogLevel::kWarn, "raft started in repair: it will not vote until repaired id=" +
                              kvc::id_hex(id_) + " log_to=" + std::to_string(repair_.log_to) +
                              " needs_snapshot=" + (repair_.needs_snapshot ? "1" : "0") +
                              " snapshot_from=" + std::to_string(repair_.snapshot_from));
  }
  logf(LogLevel::kInfo, "raft started id=" + kvc::id_hex(id_) + " term=" + std::to_string(term_) +
                            " commit=" + std::to_string(commit_) +
                            " last_index=" + std::to_string(log_.last_index()) +
                            " voters=" + std::to_string(conf_.voters.size()));
}

Result<ConfState> Node::conf_state_at(std::uint64_t index) const {
  if (index < log_.snapshot_index() || index > log_.last_index()) {
    return Status::invalid_argument("conf_state_at: index " + std::to_string(index) +
                                    " is outside the retained log");
  }
  ConfState c = snap_conf_;
  for (const auto& [i, conf] : conf_history_) {
    if (i > index) break;
    c = conf;
  }
  return c;
}

// ---------------------------------------------------------------------------------------------
// Roles.

void Node::reset_randomized_timeout() {
  randomized_timeout_ =
      cfg_.election_ticks +
      static_cast<int>(rng_->uniform(static_cast<std::uint64_t>(cfg_.election_ticks)));
}

void Node::reset(std::uint64_t term) {
  if (term_ != term) {
    term_ = term;
    vote_ = kNoNode;
    matched_leader_to_ = 0;
  }
  leader_ = kNoNode;
  election_elapsed_ = 0;
  heartbeat_elapsed_ = 0;
  reset_randomized_timeout();
  votes_.clear();
  prs_.clear();
  lead_transferee_ = kNoNode;
  reads_before_noop_.clear();
  read_queue_.clear();
  uncommitted_bytes_ = 0;
}

bool Node::promotable() const {
  // A member being repaired may have lost what it acknowledged: it must not stand for election
  // (nor vote, see handle_vote_request) until the leader has given it back.
  if (repair_.active() && !mutation_enabled(Mutation::kRepairIgnored)) return false;
  return is_voter(conf_, id_);
}

void Node::become_follower(std::uint64_t term, NodeId leader) {
  const bool was_leader = role_ == Role::kLeader;
  reset(term);
  role_ = Role::kFollower;
  leader_ = leader;
  if (was_leader) {
    logf(LogLevel::kInfo, "stepped down term=" + std::to_string(term_) + " id=" + kvc::id_hex(id_));
  }
}

void Node::become_pre_candidate() {
  // PreVote (thesis §9.6): ask whether we could win before disturbing anyone's term.
  votes_.clear();
  prs_.clear();
  role_ = Role::kPreCandidate;
  leader_ = kNoNode;
  election_elapsed_ = 0;
  reset_randomized_timeout();
}

void Node::become_candidate() {
  reset(term_ + 1);
  role_ = Role::kCandidate;
  vote_ = id_;
}

void Node::become_leader() {
  KVC_CHECK(role_ != Role::kFollower, "a follower cannot become leader directly");
  reset(term_);
  role_ = Role::kLeader;
  leader_ = id_;
  for (NodeId v : conf_.voters) {
    if (v != id_) prs_[v].next = log_.last_index() + 1;
  }
  for (NodeId l : conf_.learners) {
    if (l != id_) prs_[l].next = log_.last_index() + 1;
  }
  for (auto& [pid, pr] : prs_) pr.recent_active = true;
  for (std::uint64_t i = commit_ + 1; i <= log_.last_index(); ++i) {
    uncommitted_bytes_ += log_.at(i).data.size();
  }
  // The no-op (§5.4.2, thesis §6.4): commits everything before it and lets ReadIndex start.
  Entry noop;
  noop.index = log_.last_index() + 1;
  noop.term = term_;
  append_local({noop});
  logf(LogLevel::kInfo, "became leader term=" + std::to_string(term_) + " id=" + kvc::id_hex(id_) +
                            " last_index=" + std::to_string(log_.last_index()) +
                            " voters=" + std::to_string(conf_.voters.size()));
  bcast_append();
  maybe_commit();  // a single voter commits as soon as its write is durable
}

void Node::campaign(bool pre_vote, bool transfer) {
  if (!promotable()) return;
  if (pre_vote) {
    become_pre_candidate();
  } else {
    become_candidate();
  }
  const std::uint64_t vote_term = pre_vote ? term_ + 1 : term_;
  const MessageType type = pre_vote ? MessageType::kPreVote : MessageType::kVote;
  logf(LogLevel::kInfo, std::string(pre_vote ? "pre-campaign" : "campaign") +
                            " term=" + std::to_string(vote_term) + " id=" + kvc::id_hex(id_));
  votes_[id_] = true;
  if (static_cast<int>(votes_.size()) >= quorum()) {
    // A single voter wins at once.
    if (pre_vote) {
      campaign(false, transfer);
    } else {
      become_leader();
    }
    return;
  }
  for (NodeId v : conf_.voters) {
    if (v == id_) continue;
    Message m;
    m.type = type;
    m.to = v;
    m.term = vote_term;
    m.index = log_.last_index();
    m.log_term = log_.last_term();
    if (transfer) m.context = std::string(kTransferContext);
    send(std::move(m));
  }
}

// ---------------------------------------------------------------------------------------------
// Ready / advance.

void Node::send(Message m) {
  m.from = id_;
  if (m.term == 0) m.term = term_;  // votes and pre-votes set their term themselves
  m.boot_id = cfg_.boot_id;
  m.repairing = repair_.active();
  // Ask for the snapshot until one has arrived (then it is being installed).
  if (repair_.needs_snapshot && !snapshot_received_) {
    m.snapshot_from = std::max<std::uint64_t>(repair_.snapshot_from, 1);
  }
  if (sendable_at_once(m.type)) {
    msgs_.push_back(std::move(m));
  } else {
    msgs_after_.push_back(std::move(m));
  }
}

bool Node::has_ready() const {
  if (ready_outstanding_) return false;
  if (bcast_pending_ && role_ == Role::kLeader) return true;
  if (!msgs_.empty() || !msgs_after_.empty() || !read_states_.empty() || !chunks_.empty()) {
    return true;
  }
  if (pending_install_ || snapshot_wanted_) return true;
  if (!(repair_ == prev_repair_)) return true;
  if (persist_from_ <= log_.last_index()) return true;
  if (!(hard_state() == prev_hard_state_)) return true;
  if (!(SoftState{role_, leader_, term_} == prev_soft_state_)) return true;
  if (!(conf_ == prev_conf_)) return true;
  return applying_ < std::min(commit_, durable_);
}

Ready Node::ready() {
  KVC_CHECK(!ready_outstanding_, "ready() called again before advance()");
  if (bcast_pending_ && role_ == Role::kLeader) bcast_append();
  bcast_pending_ = false;
  Ready rd;
  const SoftState ss{role_, leader_, term_};
  if (!(ss == prev_soft_state_)) {
    rd.soft_state = ss;
    prev_soft_state_ = ss;
  }
  const HardState hs = hard_state();
  if (!(hs == prev_hard_state_)) {
    rd.hard_state = hs;
    prev_hard_state_ = hs;
  }
  if (!(conf_ == prev_conf_)) {
    rd.conf_state = conf_;
    prev_conf_ = conf_;
  }
  rd.snapshot = pending_install_;
  pending_install_.reset();
  rd.snapshot_chunks = std::move(chunks_);
  chunks_.clear();
  if (persist_from_ <= log_.last_index()) {
    rd.entries = log_.slice(persist_from_, log_.last_index(), ~0ull);
    persist_from_ = log_.last_index() + 1;
  }
  const std::uint64_t apply_to = std::min(commit_, durable_);
  if (applying_ < apply_to && applying_ >= log_.snapshot_index()) {
    rd.committed = log_.slice(applying_ + 1, apply_to, cfg_.max_apply_bytes);
    applying_ = rd.committed.back().index;
  }
  rd.messages = std::move(msgs_);
  msgs_.clear();
  rd.messages_after_persist = std::move(msgs_after_);
  msgs_after_.clear();
  rd.read_states = std::move(read_states_);
  read_states_.clear();
  rd.snapshot_wanted = snapshot_wanted_;
  snapshot_wanted_ = false;
  if (!(repair_ == prev_repair_)) {
    rd.repair = repair_;
    prev_repair_ = repair_;
  }
  ready_outstanding_ = true;
  return rd;
}

std::vector<Message> Node::take_messages() {
  std::vector<Message> out;
  if (!ready_outstanding_ || role_ != Role::kLeader || !msgs_after_.empty()) return out;
  if (bcast_pending_) bcast_append();
  bcast_pending_ = false;
  out = std::move(msgs_);
  msgs_.clear();
  return out;
}

void Node::advance(const Ready& rd) {
  KVC_CHECK(ready_outstanding_, "advance() without ready()");
  ready_outstanding_ = false;
  if (rd.snapshot && install_pending_index_ == rd.snapshot->index) {
    // The installed snapshot is now this member's own: it can send it on if it leads.
    snapshot_available(*rd.snapshot, install_size_);
    install_pending_index_ = 0;
    durable_ = std::max(durable_, std::min(rd.snapshot->index, log_.last_index()));
    applied_ = std::max(applied_, rd.snapshot->index);
    applying_ = std::max(applying_, rd.snapshot->index);
    if (snapshot_received_) {
      snapshot_received_ = false;
      if (repair_.needs_snapshot && rd.snapshot->index >= repair_.snapshot_from) {
        logf(LogLevel::kInfo, "state repaired from a snapshot index=" +
                                  std::to_string(rd.snapshot->index) + " id=" + kvc::id_hex(id_));
        repair_.needs_snapshot = false;
        repair_.snapshot_from = 0;
      }
    }
  }
  if (!rd.entries.empty()) {
    const Entry& last = rd.entries.back();
    // Entries overwritten since ready() are not durable in their new form yet.
    if (log_.match_term(last.index, last.term)) durable_ = std::max(durable_, last.index);
  }
  maybe_finish_log_repair();
  if (role_ == Role::kLeader && maybe_commit() && role_ == Role::kLeader) bcast_append();
}

// ---------------------------------------------------------------------------------------------
// Status and invariants.

std::vector<PeerProgress> Node::progress() const {
  std::vector<PeerProgress> out;
  if (role_ != Role::kLeader) return out;
  std::map<NodeId, PeerProgress> all;
  PeerProgress self;
  self.id = id_;
  self.learner = is_learner(conf_, id_);
  self.match = durable_;
  self.next = log_.last_index() + 1;
  self.state = ProgressState::kReplicate;
  self.recent_active = true;
  all[id_] = self;
  for (const auto& [pid, pr] : prs_) {
    PeerProgress p;
    p.id = pid;
    p.learner = is_learner(conf_, pid);
    p.match = pr.match;
    p.next = pr.next;
    p.state = pr.state;
    p.recent_active = pr.recent_active;
    p.inflight_msgs = static_cast<int>(pr.inflights.size());
    p.inflight_bytes = pr.inflight_bytes;
    p.snapshot_index = pr.state == ProgressState::kSnapshot ? pr.snap.index : 0;
    p.repairing = pr.repairing;
    p.repair_to = pr.repair_to;
    all[pid] = p;
  }
  for (auto& [id, p] : all) out.push_back(p);
  return out;
}

void Node::check_invariants() const {
  KVC_CHECK(log_.snapshot_index() <= applied_ || install_pending_index_ == log_.snapshot_index(),
            "applied is below the snapshot point");
  KVC_CHECK_LE(applied_, applying_);
  KVC_CHECK_LE(applying_, commit_);
  KVC_CHECK_LE(commit_, log_.last_index());
  KVC_CHECK_LE(durable_, log_.last_index());
  KVC_CHECK_LE(persist_from_, log_.last_index() + 1);
  KVC_CHECK_GE(term_, log_.last_term());
  if (role_ == Role::kLeader) {
    KVC_CHECK_EQ(leader_, id_);
    KVC_CHECK_EQ(vote_, id_);
    for (const auto& [pid, pr] : prs_) {
      KVC_CHECK(is_voter(conf_, pid) || is_learner(conf_, pid), "progress for a non-member");
      KVC_CHECK_LE(pr.match, log_.last_index());
      KVC_CHECK_LE(pr.match + 1, pr.next);
      KVC_CHECK_LE(pr.next, log_.last_index() + 1);
    }
  }
  std::uint64_t prev = log_.snapshot_index();
  for (const auto& [i, conf] : conf_history_) {
    KVC_CHECK_GT(i, prev);
    KVC_CHECK_LE(i, log_.last_index());
    prev = i;
  }
}

}  // namespace kvc::raft
