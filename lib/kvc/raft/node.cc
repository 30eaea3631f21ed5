// raft::Node: the algorithm. Section references are to Ongaro's thesis ("Consensus: Bridging
// Theory and Practice", 2014) and the Raft paper (§5.x).
#include "kvc/raft/node.h"

#include <algorithm>
#include <sstream>

#include "kvc/common/check.h"
#include "kvc/common/coding.h"
#include "kvc/common/text.h"
#include "kvc/raft/mutation.h"

namespace kvc::raft {
namespace {

std::string encode_seq(std::uint64_t seq) { return u64_le_bytes(seq); }
std::optional<std::uint64_t> decode_seq(const std::string& s) {
  if (s.size() != 8) return std::nullopt;
  return get_u64_le(s.data());
}

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
// Inputs.

void Node::tick() {
  if (role_ == Role::kLeader) {
    ++heartbeat_elapsed_;
    ++election_elapsed_;
    for (auto& [pid, pr] : prs_) {
      if (pr.state == ProgressState::kSnapshot && pr.snap_inflight &&
          ++pr.snap_elapsed >= cfg_.election_ticks) {
        // The chunk or its acknowledgement was lost: send it again.
        pr.snap_inflight = false;
        send_snapshot_chunk(pid, pr);
      }
      if (pr.match < log_.last_index()) {
        ++pr.stall_ticks;
      } else {
        pr.stall_ticks = 0;
      }
    }
    if (election_elapsed_ >= cfg_.election_ticks) {
      election_elapsed_ = 0;
      if (cfg_.check_quorum) {
        // CheckQuorum (thesis §6.2): a leader that has not heard from a quorum steps down.
        int active = is_voter(conf_, id_) ? 1 : 0;
        for (auto& [pid, pr] : prs_) {
          if (pr.recent_active && is_voter(conf_, pid)) ++active;
          pr.recent_active = false;
        }
        if (active < quorum()) {
          logf(LogLevel::kWarn, "check quorum failed, stepping down term=" + std::to_string(term_) +
                                    " active=" + std::to_string(active));
          become_follower(term_, kNoNode);
          return;
        }
      }
      if (lead_transferee_ != kNoNode) {
        logf(LogLevel::kInfo,
             "leadership transfer aborted target=" + kvc::id_hex(lead_transferee_));
        lead_transferee_ = kNoNode;
      }
    }
    if (heartbeat_elapsed_ >= cfg_.heartbeat_ticks) {
      heartbeat_elapsed_ = 0;
      // A damaged leader keeps trying to hand over (REPAIR): when the damage was found no voter
      // may have been active yet (the flags restart every election period), or the transfer
      // may have been aborted.
      if (repair_.needs_snapshot && lead_transferee_ == kNoNode) {
        (void)hand_over_damaged_leadership();
      }
      bcast_heartbeat(read_queue_.empty() ? std::string() : encode_seq(read_queue_.back().seq));
    }
    return;
  }
  ++election_elapsed_;
  if (promotable() && election_elapsed_ >= randomized_timeout_) {
    election_elapsed_ = 0;
    campaign(cfg_.pre_vote, false);
  }
}

Status Node::step(const Message& m) {
  if (m.to != id_) {
    return Status::invalid_argument("raft: message for " + kvc::id_hex(m.to) + " reached " +
                                    kvc::id_hex(id_));
  }
  if (static_cast<int>(m.type) >= kMessageTypeCount) {
    return Status::invalid_argument("raft: unknown message type " +
                                    std::to_string(static_cast<int>(m.type)));
  }
  if (m.from == kNoNode || m.from == id_) {
    return Status::invalid_argument("raft: message with bad sender " + kvc::id_hex(m.from));
  }
  if (Status s = validate(m); !s.ok()) return s;
  const bool vote_req = m.type == MessageType::kVote || m.type == MessageType::kPreVote;
  const bool from_leader = m.type == MessageType::kAppend || m.type == MessageType::kHeartbeat ||
                           m.type == MessageType::kSnapshot;

  if (m.term > term_) {
    if (vote_req) {
      // Thesis §4.2.3: a member that heard from a live leader within the minimum election
      // timeout ignores vote requests, so a removed or rejoining member cannot disrupt it
      // (unless the leader itself asked for the election by transferring leadership).
      const bool force = m.context == kTransferContext;
      const bool in_lease =
          cfg_.check_quorum && leader_ != kNoNode && election_elapsed_ < cfg_.election_ticks;
      if (!force && in_lease) return ok_status();
    }
    if (m.type == MessageType::kPreVote) {
      // Not a reason to change our term.
    } else if (m.type == MessageType::kPreVoteResp && !m.reject) {
      // A granted pre-vote carries the term we would campaign in.
    } else {
      become_follower(m.term, from_leader ? m.from : kNoNode);
    }
  } else if (m.term < term_) {
    if ((cfg_.check_quorum || cfg_.pre_vote) &&
        (m.type == MessageType::kHeartbeat || m.type == MessageType::kAppend)) {
      // A stale leader (e.g. after a partition): tell it our term so it steps down. Without
      // this, a member whose term rose by campaigning would ignore it forever.
      Message r;
      r.type = MessageType::kAppendResp;
      r.to = m.from;
      send(std::move(r));
    } else if (m.type == MessageType::kPreVote) {
      Message r;
      r.type = MessageType::kPreVoteResp;
      r.to = m.from;
      r.reject = true;
      send(std::move(r));
    }
    return ok_status();
  }

  if (vote_req) {
    handle_vote_request(m);
    return ok_status();
  }
  switch (role_) {
    case Role::kLeader:
      step_leader(m);
      break;
    case Role::kCandidate:
    case Role::kPreCandidate:
      step_candidate(m);
      break;
    case Role::kFollower:
      step_follower(m);
      break;
  }
  return ok_status();
}

Status Node::validate(const Message& m) const {
  // A message is decoded network bytes: anything the algorithm would trust blindly (and so
  // could trip a KVC_CHECK) is checked here and refused with a Status.
  const auto bad = [&](const std::string& why) {
    return Status::invalid_argument("raft: malformed " + std::string(message_type_name(m.type)) +
                                    " from " + kvc::id_hex(m.from) + ": " + why);
  };
  switch (m.type) {
    case MessageType::kAppend: {
      if (m.log_term > m.term) return bad("log_term above term");
      std::uint64_t prev_term = m.log_term;
      for (std::size_t i = 0; i < m.entries.size(); ++i) {
        const Entry& e = m.entries[i];
        if (e.index != m.index + 1 + i) return bad("entries are not contiguous after index");
        if (e.term < prev_term || e.term > m.term) return bad("entry terms out of order");
        if (e.type != EntryType::kNormal && e.type != EntryType::kConfChange) {
          return bad("unknown entry type");
        }
        prev_term = e.term;
      }
      break;
    }
    case MessageType::kAppendResp:
      // In our term as leader, every append we sent had its index within our log (a leader's
      // log never shrinks), so an acknowledgement or a rejection beyond it is not an answer to
      // anything we sent.
      if (m.term == term_ && role_ == Role::kLeader && m.index > log_.last_index()) {
        return bad(std::string(m.reject ? "rejects" : "acknowledges") + " index " +
                   std::to_string(m.index) + " beyond our log");
      }
      break;
    case MessageType::kSnapshot: {
      if (m.snapshot.term > m.term) return bad("snapshot term above term");
      const auto& v = m.snapshot.conf.voters;
      const auto& l = m.snapshot.conf.learners;
      if (!std::is_sorted(v.begin(), v.end()) || !std::is_sorted(l.begin(), l.end()) ||
          std::adjacent_find(v.begin(), v.end()) != v.end() ||
          std::adjacent_find(l.begin(), l.end()) != l.end()) {
        return bad("snapshot membership not sorted and unique");
      }
      for (NodeId id : l) {
        if (std::binary_search(v.begin(), v.end(), id)) return bad("voter is also a learner");
      }
      if (m.chunk.size() != m.chunk_length || m.snapshot_offset > m.snapshot_size ||
          m.chunk_length > m.snapshot_size - m.snapshot_offset) {
        return bad("chunk outside the snapshot");
      }
      break;
    }
    default:
      break;
  }
  return ok_status();
}

void Node::handle_vote_request(const Message& m) {
  // §5.2, §5.4.1. We may vote if we already voted for this candidate, or have not voted and
  // know no leader in this term; a pre-vote for a future term does not bind us.
  // A member that lost log entries votes for nobody: its log or its term may be older than what
  // it promised before (REPAIR in node.h). One whose state machine only is damaged still votes
  // (its log is intact): otherwise a damaged member and a member down could leave a cluster
  // without the leader that would repair it.
  const bool repairing = repair_.log_to != 0 && !mutation_enabled(Mutation::kRepairIgnored);
  const bool can_vote =
      !repairing && (vote_ == m.from || (vote_ == kNoNode && leader_ == kNoNode) ||
                     (m.type == MessageType::kPreVote && m.term > term_));
  Message r;
  r.type = m.type == MessageType::kVote ? MessageType::kVoteResp : MessageType::kPreVoteResp;
  r.to = m.from;
  if (can_vote && log_.is_up_to_date(m.index, m.log_term)) {
    r.term = m.term;
    if (m.type == MessageType::kVote) {
      election_elapsed_ = 0;
      vote_ = m.from;
    }
  } else {
    r.term = term_;
    r.reject = true;
  }
  if (m.type == MessageType::kVote && mutation_enabled(Mutation::kVoteNotPersisted)) {
    r.from = id_;
    msgs_.push_back(std::move(r));  // MUTATION: the vote leaves before it is durable
    return;
  }
  send(std::move(r));
}

void Node::step_candidate(const Message& m) {
  const MessageType resp_type =
      role_ == Role::kPreCandidate ? MessageType::kPreVoteResp : MessageType::kVoteResp;
  switch (m.type) {
    case MessageType::kAppend:
      become_follower(m.term, m.from);
      handle_append(m);
      return;
    case MessageType::kHeartbeat:
      become_follower(m.term, m.from);
      handle_heartbeat(m);
      return;
    case MessageType::kSnapshot:
      become_follower(m.term, m.from);
      handle_snapshot(m);
      return;
    default:
      break;
  }
  if (m.type != resp_type) return;
  if (!is_voter(conf_, m.from)) return;
  votes_.emplace(m.from, !m.reject);
  int granted = 0, rejected = 0;
  for (const auto& [id, g] : votes_) (g ? granted : rejected)++;
  if (granted >= quorum()) {
    if (role_ == Role::kPreCandidate) {
      campaign(false, false);
    } else {
      become_leader();
    }
  } else if (rejected >= quorum()) {
    become_follower(term_, kNoNode);
  }
}

void Node::step_follower(const Message& m) {
  switch (m.type) {
    case MessageType::kAppend:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_append(m);
      break;
    case MessageType::kHeartbeat:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_heartbeat(m);
      break;
    case MessageType::kSnapshot:
      election_elapsed_ = 0;
      leader_ = m.from;
      handle_snapshot(m);
      break;
    case MessageType::kTimeoutNow:
      // Leadership transfer (thesis §3.10): campaign at once, skipping PreVote.
      if (promotable()) {
        logf(LogLevel::kInfo,
             "campaign on timeout_now term=" + std::to_string(term_) + " id=" + kvc::id_hex(id_));
        campaign(false, true);
      }
      break;
    case MessageType::kReadIndexResp:
      if (!m.reject) read_states_.push_back({m.context, m.index});
      break;
    case MessageType::kTransferLeader:
      // Not the leader (any more): pass it on when we know one. A ReadIndex that reaches a
      // non-leader is dropped; its caller times out and retries.
      if (leader_ != kNoNode) {
        Message fwd = m;
        fwd.to = leader_;
        fwd.term = 0;
        send(std::move(fwd));
      }
      break;
    default:
      break;
  }
}

void Node::step_leader(const Message& m) {
  switch (m.type) {
    case MessageType::kReadIndex:
      handle_read_request(m.from, m.context);
      return;
    case MessageType::kTransferLeader:
      if (Status s = transfer_leadership(m.index); !s.ok()) {
        logf(LogLevel::kDebug, "transfer request refused: " + s.to_string());
      }
      return;
    default:
      break;
  }
  auto it = prs_.find(m.from);
  if (it == prs_.end()) return;  // not a member (any more)
  Progress& pr = it->second;
  if (!note_incarnation(m, pr)) return;
  pr.recent_active = true;
  switch (m.type) {
    case MessageType::kAppendResp:
      handle_append_resp(m, pr);
      break;
    case MessageType::kHeartbeatResp:
      handle_heartbeat_resp(m, pr);
      break;
    case MessageType::kSnapshotResp:
      handle_snapshot_resp(m, pr);
      break;
    default:
      break;
  }
  // A damaged member asks for a snapshot; an idle, caught-up one would otherwise wait for the
  // next write to get it.
  if (role_ == Role::kLeader && prs_.count(m.from) != 0) {
    Progress& p = prs_.at(m.from);
    if (p.snapshot_from != 0 && p.state != ProgressState::kSnapshot) send_append(m.from, true);
  }
}

// ---------------------------------------------------------------------------------------------
// Follower side of replication.

void Node::handle_append(const Message& m) {
  if (m.repair_to != 0) note_repair_to(m.repair_to);
  Message r;
  r.type = MessageType::kAppendResp;
  r.to = m.from;
  if (m.index < commit_) {
    // Everything up to our commit index matches already (Log Matching).
    r.index = commit_;
    matched_leader_to_ = std::max(matched_leader_to_, commit_);
    maybe_finish_log_repair();
    send(std::move(r));
    return;
  }
  bool matches = log_.match_term(m.index, m.log_term);
  if (mutation_enabled(Mutation::kNoLogMatchingCheck) && m.index <= log_.last_index()) {
    matches = true;  // MUTATION: skip the consistency check of §5.3
  }
  if (matches) {
    const std::uint64_t last_new = m.index + m.entries.size();
    const std::uint64_t conflict = log_.find_conflict(m.entries);
    if (conflict != 0 && conflict <= commit_) {
      // Only a broken leader asks us to overwrite a committed entry: refuse, never obey.
      logf(LogLevel::kError, "append would overwrite committed entry index=" +
                                 std::to_string(conflict) + " from=" + kvc::id_hex(m.from));
      return;
    }
    if (conflict != 0) {
      const std::uint64_t skip = conflict - m.entries.front().index;
      append_from_leader(std::span<const Entry>(m.entries).subspan(skip));
    }
    commit_to(std::min(m.commit, last_new));
    // Log Matching: our log now equals the leader's up to last_new.
    matched_leader_to_ = std::max(matched_leader_to_, last_new);
    maybe_finish_log_repair();
    r.index = last_new;
    send(std::move(r));
    return;
  }
  // Fast back-off (thesis §5.3 / etcd): hint the largest index whose term is <= the leader's
  // term at the probe point, so the leader skips a whole term per round trip.
  const auto [hint_index, hint_term] =
      log_.find_conflict_by_term(std::min(m.index, log_.last_index()), m.log_term);
  r.reject = true;
  r.index = m.index;
  r.reject_hint = hint_index;
  r.log_term = hint_term;
  send(std::move(r));
}

void Node::handle_heartbeat(const Message& m) {
  if (m.repair_to != 0) note_repair_to(m.repair_to);
  // A heartbeat's commit is min(match, commit) for what the leader believes we acknowledged.
  // After a restart on an older copy of our data (REPAIR), that may be what an earlier
  // incarnation acknowledged, and our entry at that index may differ: commit only what an
  // append of this leader has shown to match (with boot ids off, restarts are trusted).
  std::uint64_t limit = log_.last_index();
  if (cfg_.boot_id != 0) limit = std::min(limit, matched_leader_to_);
  commit_to(std::min(m.commit, limit));
  Message r;
  r.type = MessageType::kHeartbeatResp;
  r.to = m.from;
  r.context = m.context;
  r.index = log_.last_index();
  send(std::move(r));
}

void Node::handle_snapshot(const Message& m) {
  Message r;
  r.type = MessageType::kSnapshotResp;
  r.to = m.from;
  r.snapshot = m.snapshot;
  // A damaged state machine takes a snapshot at or above its applied index even when the log
  // already holds that index (REPAIR).
  const bool repair = repair_.needs_snapshot && m.snapshot.index >= repair_.snapshot_from;
  if (repair && snapshot_received_) {
    // A repair snapshot already awaits its install by the caller: a new incoming file (offset
    // 0 starts one) would replace the file being installed. The same snapshot is done
    // (acknowledged after persist, like the first); another one is dropped (the leader resends
    // it, and then it is not needed any more).
    if (m.snapshot.index == install_pending_index_) {
      receiving_.reset();
      r.snapshot_offset = m.snapshot_size;
      r.snapshot_done = true;
      send(std::move(r));
    }
    return;
  }
  if (m.snapshot.index <= commit_ && !repair) {
    // We have all of it already: tell the leader where our log stands.
    receiving_.reset();
    Message a;
    a.type = MessageType::kAppendResp;
    a.to = m.from;
    a.index = commit_;
    send(std::move(a));
    return;
  }
  const bool same =
      receiving_ && receiving_->meta == m.snapshot && receiving_->size == m.snapshot_size;
  if (same && m.snapshot_offset < receiving_->next_offset) {
    // A duplicate of a chunk we have: acknowledge again what we have.
    r.snapshot_offset = receiving_->next_offset;
    send(std::move(r));
    return;
  }
  if (same && m.snapshot_offset == receiving_->next_offset) {
    // The next chunk.
  } else if (m.snapshot_offset == 0) {
    receiving_ = Receiving{m.snapshot, m.snapshot_size, 0};
  } else {
    r.reject = true;
    r.snapshot_offset = same ? receiving_->next_offset : 0;
    send(std::move(r));
    return;
  }
  if (m.chunk.size() != m.chunk_length || m.snapshot_offset + m.chunk_length > m.snapshot_size) {
    logf(LogLevel::kWarn, "snapshot chunk with a bad length from=" + kvc::id_hex(m.from));
    receiving_.reset();
    r.reject = true;
    r.snapshot_offset = 0;
    send(std::move(r));
    return;
  }
  chunks_.push_back({m.snapshot, m.snapshot_size, m.snapshot_offset, m.chunk});
  receiving_->next_offset += m.chunk_length;
  r.snapshot_offset = receiving_->next_offset;
  if (receiving_->next_offset == receiving_->size) {
    receiving_.reset();
    r.snapshot_done = true;
    if (repair && log_.match_term(m.snapshot.index, m.snapshot.term)) {
      // Replace the state machine only: the log after the snapshot stays, and the committed
      // entries after it are applied again on top of the new state.
      logf(LogLevel::kInfo, "installing snapshot to repair the state index=" +
                                std::to_string(m.snapshot.index) + " id=" + kvc::id_hex(id_));
      commit_to(m.snapshot.index);
      // The caller's state machine restarts from the snapshot, so every committed entry after
      // it is handed out again, including any handed out before that the damaged state
      // machine could not apply (it applied nothing past repair_.snapshot_from <= here).
      applying_ = std::max(applied_, m.snapshot.index);
      // Entries up to the snapshot that are not yet handed out for persisting never will be:
      // the installed snapshot covers them, and a stored log may not hold an entry at or below
      // its snapshot (the entries after it stay).
      persist_from_ = std::max(persist_from_, m.snapshot.index + 1);
      pending_install_ = m.snapshot;
      install_pending_index_ = m.snapshot.index;
      install_size_ = m.snapshot_size;
      snapshot_received_ = true;
    } else if (repair) {
      restore_snapshot(m.snapshot);
      install_size_ = m.snapshot_size;
      snapshot_received_ = true;
    } else if (log_.match_term(m.snapshot.index, m.snapshot.term)) {
      // Our log already holds the snapshot's last entry: just move commit (etcd's rule).
      commit_to(m.snapshot.index);
    } else {
      restore_snapshot(m.snapshot);
      install_size_ = m.snapshot_size;
    }
  }
  send(std::move(r));
}

void Node::restore_snapshot(const SnapshotMeta& meta) {
  logf(LogLevel::kInfo, "installing snapshot index=" + std::to_string(meta.index) +
                            " term=" + std::to_string(meta.term) + " id=" + kvc::id_hex(id_));
  log_.restore(meta.index, meta.term);
  commit_ = meta.index;
  applying_ = std::max(applying_, meta.index);
  durable_ = std::min(durable_, meta.index);
  persist_from_ = meta.index + 1;
  snap_conf_ = meta.conf;
  conf_history_.clear();
  set_conf(meta.conf);
  pending_install_ = meta;
  install_pending_index_ = meta.index;
}

void Node::append_from_leader(std::span<const Entry> ents) {
  if (ents.empty()) return;
  const std::uint64_t from = ents.front().index;
  if (from <= log_.last_index()) note_truncated_from(from);
  log_.truncate_and_append(ents);
  for (const Entry& e : ents) note_appended(e);
}

void Node::note_truncated_from(std::uint64_t index) {
  persist_from_ = std::min(persist_from_, index);
  durable_ = std::min(durable_, index - 1);
  bool changed = false;
  while (!conf_history_.empty() && conf_history_.back().first >= index) {
    conf_history_.pop_back();
    changed = true;
  }
  if (changed) set_conf(conf_history_.empty() ? snap_conf_ : conf_history_.back().second);
}

void Node::note_appended(const Entry& e) {
  if (e.type != EntryType::kConfChange) return;
  Result<ConfChange> cc = decode_conf_change(e.data);
  if (!cc.ok()) {
    logf(LogLevel::kError, "ignoring undecodable conf change index=" + std::to_string(e.index) +
                               " error=" + cc.status().to_string());
    return;
  }
  Result<ConfState> next = apply_conf_change(conf_, *cc);
  if (!next.ok()) {
    // Every member ignores the same entry the same way: the function is pure.
    logf(LogLevel::kWarn, "ignoring conf change index=" + std::to_string(e.index) +
                              " error=" + next.status().to_string());
    return;
  }
  conf_history_.emplace_back(e.index, *next);
  set_conf(*next);
}

void Node::set_conf(const ConfState& conf) {
  if (conf == conf_) return;
  conf_ = conf;
  logf(LogLevel::kInfo, "membership changed id=" + kvc::id_hex(id_) +
                            " voters=" + std::to_string(conf_.voters.size()) +
                            " learners=" + std::to_string(conf_.learners.size()));
  if (role_ == Role::kLeader) sync_progress_with_conf();
  if (lead_transferee_ != kNoNode && !is_voter(conf_, lead_transferee_)) lead_transferee_ = kNoNode;
}

void Node::sync_progress_with_conf() {
  for (auto it = prs_.begin(); it != prs_.end();) {
    if (!is_voter(conf_, it->first) && !is_learner(conf_, it->first)) {
      it = prs_.erase(it);
    } else {
      ++it;
    }
  }
  auto add = [&](NodeId id) {
    if (id == id_ || prs_.count(id)) return;
    Progress& pr = prs_[id];
    pr.next = log_.last_index() + 1;
    pr.recent_active = true;
  };
  for (NodeId v : conf_.voters) add(v);
  for (NodeId l : conf_.learners) add(l);
}

// ---------------------------------------------------------------------------------------------
// Leader side of replication.

bool Node::paused(const Progress& pr) const {
  switch (pr.state) {
    case ProgressState::kProbe:
      return pr.probe_sent;
    case ProgressState::kReplicate:
      return static_cast<int>(pr.inflights.size()) >= cfg_.max_inflight_msgs ||
             pr.inflight_bytes >= cfg_.max_inflight_bytes;
    case ProgressState::kSnapshot:
      return true;
  }
  return true;
}

void Node::become_probe(Progress& pr) {
  pr.state = ProgressState::kProbe;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap_inflight = false;
}

void Node::become_replicate(Progress& pr) {
  pr.state = ProgressState::kReplicate;
  pr.next = pr.match + 1;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
}

bool Node::send_append(NodeId to, bool send_if_empty) {
  Progress& pr = prs_.at(to);
  if (paused(pr)) return false;
  const std::uint64_t prev = pr.next - 1;
  const std::optional<std::uint64_t> prev_term = log_.term(prev);
  if (pr.snapshot_from != 0) {
    // Its state machine is damaged (REPAIR): only a snapshot at or above what it applied
    // helps; make one when ours is older.
    if (!local_snapshot_ || local_snapshot_->index < pr.snapshot_from ||
        local_snapshot_->index < log_.snapshot_index()) {
      snapshot_wanted_ = true;
      return false;
    }
    start_snapshot(to, pr);
    return true;
  }
  if (!prev_term) {
    // The entries it needs were compacted away: send a snapshot instead. Only one that reaches
    // the compaction point helps: after an older one the member would need compacted entries
    // again (and a member that already has it would be offered it forever).
    if (!local_snapshot_ || local_snapshot_->index < log_.snapshot_index()) {
      snapshot_wanted_ = true;
      return false;
    }
    start_snapshot(to, pr);
    return true;
  }
  std::vector<Entry> ents;
  if (pr.next <= log_.last_index()) {
    std::uint64_t budget = cfg_.max_msg_bytes;
    if (pr.state == ProgressState::kReplicate) {
      budget = std::min(budget, cfg_.max_inflight_bytes - pr.inflight_bytes);
    }
    ents = log_.slice(pr.next, log_.last_index(), budget);
  }
  if (ents.empty() && !send_if_empty) return false;
  Message m;
  m.type = MessageType::kAppend;
  m.to = to;
  m.index = prev;
  m.log_term = *prev_term;
  m.commit = commit_;
  m.repair_to = pr.repair_to;
  std::uint64_t bytes = 0;
  for (const Entry& e : ents) bytes += RaftLog::entry_bytes(e);
  const std::uint64_t last = prev + ents.size();
  m.entries = std::move(ents);
  if (pr.state == ProgressState::kReplicate) {
    if (last > prev) {
      pr.next = last + 1;
      pr.inflights.push_back({last, bytes});
      pr.inflight_bytes += bytes;
    }
  } else {
    pr.probe_sent = true;
  }
  send(std::move(m));
  return true;
}

void Node::start_snapshot(NodeId to, Progress& pr) {
  pr.state = ProgressState::kSnapshot;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap = *local_snapshot_;
  pr.snap_size = local_snapshot_size_;
  pr.snap_offset = 0;
  pr.snap_inflight = false;
  logf(LogLevel::kInfo, "sending snapshot to=" + kvc::id_hex(to) +
                            " index=" + std::to_string(pr.snap.index) +
                            " size=" + std::to_string(pr.snap_size) +
                            (pr.snapshot_from != 0 ? " reason=repair" : ""));
  send_snapshot_chunk(to, pr);
}

void Node::send_snapshot_chunk(NodeId to, Progress& pr) {
  if (pr.snap_inflight) return;
  Message m;
  m.type = MessageType::kSnapshot;
  m.to = to;
  m.snapshot = pr.snap;
  m.snapshot_size = pr.snap_size;
  m.snapshot_offset = pr.snap_offset;
  m.chunk_length = std::min(cfg_.snapshot_chunk_bytes, pr.snap_size - pr.snap_offset);
  m.snapshot_done = pr.snap_offset + m.chunk_length == pr.snap_size;
  pr.snap_inflight = true;
  pr.snap_elapsed = 0;
  send(std::move(m));
}

void Node::bcast_append() {
  for (auto& [pid, pr] : prs_) {
    // Fill the pipeline: several appends in flight, each a batch of up to max_msg_bytes.
    bool first = true;
    for (int i = 0; i <= cfg_.max_inflight_msgs; ++i) {
      if (!send_append(pid, first)) break;
      first = false;
      if (pr.state != ProgressState::kReplicate) break;
    }
  }
}

void Node::bcast_heartbeat(const std::string& context) {
  for (const auto& [pid, pr] : prs_) {
    Message m;
    m.type = MessageType::kHeartbeat;
    m.to = pid;
    m.commit = std::min(pr.match, commit_);
    m.context = context;
    m.repair_to = pr.repair_to;
    send(std::move(m));
  }
}

bool Node::committed_in_term() const { return log_.term(commit_).value_or(0) == term_; }

bool Node::maybe_commit() {
  if (role_ != Role::kLeader) return false;
  std::vector<std::uint64_t> matches;
  for (NodeId v : conf_.voters) {
    if (v == id_) {
      // The leader counts itself only for what is durable on its own disk.
      matches.push_back(mutation_enabled(Mutation::kLeaderCountsUndurable) ? log_.last_index()
                                                                           : durable_);
    } else {
      auto it = prs_.find(v);
      matches.push_back(it == prs_.end() || !counts(it->second) ? 0 : it->second.match);
    }
  }
  if (matches.empty()) return false;
  std::sort(matches.begin(), matches.end(), std::greater<>());
  const std::uint64_t idx = matches[static_cast<std::size_t>(quorum() - 1)];
  if (idx <= commit_) return false;
  // §5.4.2: only entries of the current term are committed by counting replicas.
  const bool current_term = log_.term(idx).value_or(0) == term_;
  if (!current_term && !mutation_enabled(Mutation::kCommitOldTerm)) return false;
  commit_to(idx);
  return true;
}

void Node::commit_to(std::uint64_t index) {
  if (index <= commit_) return;
  KVC_CHECK_LE(index, log_.last_index());
  const std::uint64_t old = commit_;
  commit_ = index;
  on_commit_advanced(old);
}

void Node::on_commit_advanced(std::uint64_t old_commit) {
  if (role_ != Role::kLeader) return;
  for (std::uint64_t i = old_commit + 1; i <= commit_; ++i) {
    const std::uint64_t b = log_.at(i).data.size();
    uncommitted_bytes_ = uncommitted_bytes_ > b ? uncommitted_bytes_ - b : 0;
  }
  if (!committed_in_term()) return;
  // The no-op is committed: reads that waited for it may start.
  if (!reads_before_noop_.empty()) {
    auto pending = std::move(reads_before_noop_);
    reads_before_noop_.clear();
    for (auto& [from, ctx] : pending) handle_read_request(from, std::move(ctx));
  }
  if (!is_voter(conf_, id_)) {
    // The configuration that removed us is committed (thesis §4.2.2): step down cleanly.
    if (conf_history_.empty() || conf_history_.back().first <= commit_) {
      logf(LogLevel::kInfo, "removed from the configuration, stepping down id=" + kvc::id_hex(id_));
      bcast_append();  // tell the others the new commit index before leaving
      become_follower(term_, kNoNode);
    }
  }
}

void Node::handle_append_resp(const Message& m, Progress& pr) {
  if (pr.verify_to != 0) {
    if (m.reject && m.index == pr.verify_to) {
      // The probe of the last entry its earlier incarnation acknowledged failed: it lost it.
      found_lost_entries(m.from, pr, std::min(m.reject_hint, m.index));
    } else if (!m.reject && m.index >= pr.verify_to) {
      pr.verify_to = 0;  // a clean restart: it still has everything it acknowledged
    }
  }
  if (m.reject) {
    // Fast back-off: the follower's hint (largest index with term <= ours at the probe point),
    // refined by our own log.
    std::uint64_t probe = m.reject_hint;
    if (m.log_term > 0) probe = log_.find_conflict_by_term(m.reject_hint, m.log_term).first;
    if (pr.state == ProgressState::kReplicate) {
      if (m.index <= pr.match) return;  // stale
      become_probe(pr);
      pr.next = std::max(pr.match + 1, std::min(probe + 1, m.index));
    } else if (pr.state == ProgressState::kProbe) {
      if (m.index != pr.next - 1) return;  // stale
      pr.next = std::max(pr.match + 1, std::min(probe + 1, m.index));
      pr.probe_sent = false;
    } else {
      return;
    }
    send_append(m.from, true);
    return;
  }
  const NodeId from = m.from;
  if (m.index > pr.match) {
    pr.match = m.index;
    pr.stall_ticks = 0;
  }
  if (pr.repair_to != 0 && pr.match >= pr.repair_to) {
    logf(LogLevel::kInfo, "member repaired: it has every entry it had acknowledged again peer=" +
                              kvc::id_hex(from) + " index=" + std::to_string(pr.repair_to));
    pr.repair_to = 0;
  }
  pr.next = std::max(pr.next, pr.match + 1);
  switch (pr.state) {
    case ProgressState::kProbe:
      become_replicate(pr);
      break;
    case ProgressState::kSnapshot:
      if (pr.match + 1 >= log_.first_index()) {
        become_replicate(pr);
      } else if (pr.match >= pr.snap.index) {
        // It has the snapshot being sent (its acknowledgement was lost) but we compacted past
        // it since: probing again makes send_append ask for a newer snapshot, where staying
        // would resend this one forever (NodeTest.SnapshotWhoseAcknowledgementWasLost...).
        become_probe(pr);
      }
      break;
    case ProgressState::kReplicate:
      while (!pr.inflights.empty() && pr.inflights.front().last_index <= m.index) {
        pr.inflight_bytes -= pr.inflights.front().bytes;
        pr.inflights.pop_front();
      }
      break;
  }
  if (maybe_commit()) {
    if (role_ != Role::kLeader) return;
    bcast_append();
  } else if (prs_.count(from)) {
    for (int i = 0; i <= cfg_.max_inflight_msgs && send_append(from, false); ++i) {
    }
  }
  if (role_ == Role::kLeader && from == lead_transferee_ && prs_.count(from) &&
      prs_.at(from).match == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = from;
    send(std::move(t));
  }
}

void Node::handle_heartbeat_resp(const Message& m, Progress& pr) {
  pr.probe_sent = false;
  if (pr.state == ProgressState::kReplicate && !pr.inflights.empty() &&
      pr.stall_ticks >= cfg_.election_ticks) {
    // Appends or their acknowledgements were lost (nothing moved for a whole election period
    // while the pipeline was busy): fall back to probing from what it acknowledged.
    become_probe(pr);
    pr.stall_ticks = 0;
  }
  if (pr.verify_to != 0 && log_.term(pr.verify_to) == std::nullopt) {
    // The entry to probe was compacted here: judge by the length of its log instead.
    if (m.index < pr.verify_to) {
      found_lost_entries(m.from, pr, m.index);
    } else {
      pr.verify_to = 0;
    }
  }
  if (pr.state == ProgressState::kProbe && pr.verify_to == 0 && m.index + 1 < pr.next) {
    // Its log ends before where we would probe: start there (an idle new member would
    // otherwise wait for the next write to learn anything).
    pr.next = std::max(pr.match + 1, m.index + 1);
  }
  // In probe state an empty append is the probe: without it, a member that joined an idle
  // cluster would get nothing until the next write.
  if (pr.match < log_.last_index()) send_append(m.from, pr.state == ProgressState::kProbe);
  if (!m.context.empty()) {
    const std::optional<std::uint64_t> seq = decode_seq(m.context);
    if (!seq || read_queue_.empty() || !is_voter(conf_, m.from)) return;
    if (!counts(pr)) return;  // a member being repaired does not confirm leadership
    // An ack for a round acknowledges every read queued before it.
    for (auto& req : read_queue_) {
      if (req.seq > *seq) break;
      req.acks[m.from] = true;
    }
    while (!read_queue_.empty() && static_cast<int>(read_queue_.front().acks.size()) >= quorum()) {
      ReadRequest req = std::move(read_queue_.front());
      read_queue_.pop_front();
      answer_read(req.from, req.context, req.index);
    }
  }
}

void Node::handle_snapshot_resp(const Message& m, Progress& pr) {
  if (pr.state != ProgressState::kSnapshot || !(m.snapshot == pr.snap)) return;
  if (m.snapshot_done && !m.reject) {
    logf(LogLevel::kInfo,
         "snapshot sent to=" + kvc::id_hex(m.from) + " index=" + std::to_string(pr.snap.index));
    pr.snapshot_from = 0;  // served; a later request asks again
    pr.match = std::max(pr.match, pr.snap.index);
    become_probe(pr);
    send_append(m.from, true);
    return;
  }
  if (!m.reject && m.snapshot_offset <= pr.snap_offset) return;  // stale ack
  pr.snap_offset = std::min(m.snapshot_offset, pr.snap_size);
  pr.snap_inflight = false;
  send_snapshot_chunk(m.from, pr);
}

// ---------------------------------------------------------------------------------------------
// Repair (REPAIR in node.h).

bool Node::note_incarnation(const Message& m, Progress& pr) {
  pr.repairing = m.repairing;
  if (m.type == MessageType::kAppendResp || m.type == MessageType::kHeartbeatResp ||
      m.type == MessageType::kSnapshotResp) {
    pr.snapshot_from = m.snapshot_from;
  }
  if (m.boot_id == 0 || m.boot_id == pr.boot_id || mutation_enabled(Mutation::kRepairIgnored)) {
    return true;
  }
  if (std::find(pr.retired_boot_ids.begin(), pr.retired_boot_ids.end(), m.boot_id) !=
      pr.retired_boot_ids.end()) {
    return false;  // a late message from an earlier incarnation: what it says is gone
  }
  const std::uint64_t previous = pr.boot_id;
  pr.boot_id = m.boot_id;
  if (previous == 0) return true;  // the first we hear of it in this term
  pr.retired_boot_ids.push_back(previous);
  if (pr.retired_boot_ids.size() > 8) pr.retired_boot_ids.erase(pr.retired_boot_ids.begin());
  // It restarted: what the earlier incarnation acknowledged may be gone (an older copy of its
  // data, a lost disk cache). Count nothing it said before, and probe the last entry it had
  // acknowledged to learn whether it still has it.
  const std::uint64_t acked = std::max(pr.match, pr.verify_to);
  logf(LogLevel::kInfo,
       "member restarted peer=" + kvc::id_hex(m.from) + " acknowledged=" + std::to_string(acked));
  pr.match = 0;
  pr.state = ProgressState::kProbe;
  pr.probe_sent = false;
  pr.inflights.clear();
  pr.inflight_bytes = 0;
  pr.snap_inflight = false;
  if (acked > 0) {
    pr.verify_to = acked;
    pr.next = acked + 1;
  }
  return true;
}

void Node::found_lost_entries(NodeId peer, Progress& pr, std::uint64_t has_to) {
  ++lost_entries_detected_;
  pr.repair_to = std::max(pr.repair_to, pr.verify_to);
  logf(LogLevel::kWarn, "member lost entries it had acknowledged peer=" + kvc::id_hex(peer) +
                            " acknowledged=" + std::to_string(pr.verify_to) +
                            " has=" + std::to_string(has_to) +
                            "; it may not vote until it is repaired, repairing it");
  pr.verify_to = 0;
}

bool Node::counts(const Progress& pr) const {
  return !pr.repairing || mutation_enabled(Mutation::kRepairIgnored);
}

void Node::note_repair_to(std::uint64_t index) {
  if (index <= repair_.log_to) return;
  if (durable_ >= index && matched_leader_to_ >= index) return;  // already repaired
  repair_.log_to = index;
  logf(LogLevel::kWarn, "the leader says this member lost entries it had acknowledged index=" +
                            std::to_string(index) + " id=" + kvc::id_hex(id_) +
                            "; it will not vote until its log is repaired");
}

void Node::maybe_finish_log_repair() {
  if (repair_.log_to == 0) return;
  if (std::min(durable_, matched_leader_to_) < repair_.log_to) return;
  logf(LogLevel::kInfo, "log repaired: it matches the leader's again index=" +
                            std::to_string(repair_.log_to) + " id=" + kvc::id_hex(id_));
  repair_.log_to = 0;
}

void Node::mark_damaged(std::uint64_t applied) {
  const std::uint64_t from = std::max(applied, applied_);
  if (repair_.needs_snapshot && repair_.snapshot_from >= from && !snapshot_received_) return;
  repair_.needs_snapshot = true;
  repair_.snapshot_from = std::max(repair_.snapshot_from, from);
  snapshot_received_ = false;
  logf(LogLevel::kWarn, "state machine damaged: asking the leader for a snapshot from=" +
                            std::to_string(repair_.snapshot_from) + " id=" + kvc::id_hex(id_));
  if (role_ != Role::kLeader) return;
  // A damaged leader hands over first: the new leader repairs it.
  if (!hand_over_damaged_leadership()) {
    logf(LogLevel::kError,
         "state machine damaged on the leader and no other voter can take over yet id=" +
             kvc::id_hex(id_) + "; retrying at every heartbeat");
  }
}

bool Node::hand_over_damaged_leadership() {
  NodeId best = kNoNode;
  std::uint64_t best_match = 0;
  for (const auto& [pid, pr] : prs_) {
    if (!is_voter(conf_, pid) || !pr.recent_active || pr.repairing) continue;
    if (best == kNoNode || pr.match > best_match) {
      best = pid;
      best_match = pr.match;
    }
  }
  if (best == kNoNode) return false;
  if (Status s = transfer_leadership(best); !s.ok()) {
    logf(LogLevel::kError, "cannot hand over leadership: " + s.to_string());
    return false;
  }
  return true;
}

void Node::handle_read_request(NodeId from, std::string context) {
  if (!committed_in_term() && !mutation_enabled(Mutation::kReadIndexWithoutNoop)) {
    // Thesis §6.4: until its no-op commits, a new leader's commit index may be behind.
    reads_before_noop_.emplace_back(from, std::move(context));
    return;
  }
  if (quorum() <= 1 && is_voter(conf_, id_)) {
    answer_read(from, context, commit_);
    return;
  }
  ReadRequest req;
  req.seq = ++read_seq_;
  req.from = from;
  req.context = std::move(context);
  req.index = commit_;
  if (is_voter(conf_, id_)) req.acks[id_] = true;
  read_queue_.push_back(std::move(req));
  bcast_heartbeat(encode_seq(read_seq_));
}

void Node::answer_read(NodeId from, const std::string& context, std::uint64_t index) {
  if (from == id_) {
    read_states_.push_back({context, index});
    return;
  }
  Message r;
  r.type = MessageType::kReadIndexResp;
  r.to = from;
  r.index = index;
  r.context = context;
  send(std::move(r));
}

// ---------------------------------------------------------------------------------------------
// Caller requests.

void Node::append_local(std::vector<Entry> ents) {
  for (Entry& e : ents) {
    uncommitted_bytes_ += e.data.size();
    log_.append(e);
    note_appended(log_.at(log_.last_index()));
  }
}

Result<std::uint64_t> Node::propose(std::string data) {
  if (role_ != Role::kLeader) {
    return Status::not_leader("not leader; leader=" + kvc::id_hex(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("leadership transfer to " + kvc::id_hex(lead_transferee_) +
                               " in progress");
  }
  if (cfg_.max_uncommitted_bytes > 0 && uncommitted_bytes_ > 0 &&
      uncommitted_bytes_ + data.size() > cfg_.max_uncommitted_bytes) {
    return Status::resource_exhausted(
        "too much uncommitted data: " + std::to_string(uncommitted_bytes_) + " bytes");
  }
  Entry e;
  e.index = log_.last_index() + 1;
  e.term = term_;
  e.data = std::move(data);
  append_local({std::move(e)});
  // Batching: proposals made before the next ready() leave together, one append per follower.
  bcast_pending_ = true;
  maybe_commit();
  return log_.last_index();
}

Result<std::uint64_t> Node::propose_conf_change(const ConfChange& cc) {
  if (role_ != Role::kLeader) {
    return Status::not_leader("not leader; leader=" + kvc::id_hex(leader_));
  }
  if (lead_transferee_ != kNoNode) {
    return Status::unavailable("leadership transfer in progress");
  }
  if (!committed_in_term()) {
    // Ongaro's fix to single-server changes: commit an entry of our term first.
    return Status::unavailable("leader has not committed an entry of its term yet");
  }
  if (!conf_history_.empty() && conf_history_.back().first > commit_) {
    return Status::failed_precondition("a membership change is already in progress");
  }
  Result<ConfState> next = apply_conf_change(conf_, cc);
  if (!next.ok()) return next.status();
  if (cc.type == ConfChangeType::kPromoteLearner) {
    auto it = prs_.find(cc.node);
    if (it == prs_.end() || it->second.match + cfg_.promote_lag_slack < commit_) {
      return Status::failed_precondition("learner " + kvc::id_hex(cc.node) + " has not caught up");
    }
  }
  Entry e;
  e.index = log_.last_index() + 1;
  e.term = term_;
  e.type = EntryType::kConfChange;
  e.data = encode_conf_change(cc);
  append_local({std::move(e)});
  logf(LogLevel::kInfo, "proposed conf change type=" + std::string(conf_change_type_name(cc.type)) +
                            " node=" + kvc::id_hex(cc.node) +
                            " index=" + std::to_string(log_.last_index()));
  bcast_append();
  maybe_commit();
  return log_.last_index();
}

Status Node::read_index(std::string context) {
  if (role_ == Role::kLeader) {
    handle_read_request(id_, std::move(context));
    return ok_status();
  }
  if (leader_ == kNoNode) return Status::unavailable("no leader known");
  Message m;
  m.type = MessageType::kReadIndex;
  m.to = leader_;
  m.context = std::move(context);
  send(std::move(m));
  return ok_status();
}

Status Node::transfer_leadership(NodeId target) {
  if (role_ != Role::kLeader) {
    if (leader_ == kNoNode) return Status::unavailable("no leader known");
    Message m;
    m.type = MessageType::kTransferLeader;
    m.to = leader_;
    m.index = target;
    send(std::move(m));
    return ok_status();
  }
  if (target == id_) return ok_status();
  if (!is_voter(conf_, target)) {
    return Status::invalid_argument("transfer target " + kvc::id_hex(target) + " is not a voter");
  }
  if (auto t = prs_.find(target); t != prs_.end() && t->second.repairing) {
    return Status::failed_precondition("transfer target " + kvc::id_hex(target) +
                                       " is being repaired and may not lead");
  }
  if (lead_transferee_ == target) return ok_status();
  lead_transferee_ = target;
  election_elapsed_ = 0;  // the transfer is aborted after one election timeout
  logf(LogLevel::kInfo, "leadership transfer started target=" + kvc::id_hex(target) +
                            " term=" + std::to_string(term_));
  Progress& pr = prs_.at(target);
  if (pr.match == log_.last_index()) {
    Message t;
    t.type = MessageType::kTimeoutNow;
    t.to = target;
    send(std::move(t));
  } else {
    send_append(target, true);
  }
  return ok_status();
}

void Node::report_unreachable(NodeId peer) {
  if (role_ != Role::kLeader) return;
  auto it = prs_.find(peer);
  if (it != prs_.end() && it->second.state == ProgressState::kReplicate) become_probe(it->second);
}

void Node::report_snapshot(NodeId peer, bool ok) {
  if (role_ != Role::kLeader || ok) return;
  auto it = prs_.find(peer);
  if (it != prs_.end() && it->second.state == ProgressState::kSnapshot) {
    become_probe(it->second);
    it->second.probe_sent = true;  // wait for the next heartbeat response before retrying
  }
}

void Node::snapshot_available(const SnapshotMeta& meta, std::uint64_t size) {
  // A newer snapshot replaces ours; one at the same index too (a remade file).
  if (local_snapshot_ && local_snapshot_->index > meta.index) return;
  local_snapshot_ = meta;
  local_snapshot_size_ = size;
  snapshot_wanted_ = false;
}

Status Node::compact(std::uint64_t index) {
  if (index <= log_.snapshot_index()) return ok_status();
  if (index > applied_) {
    return Status::invalid_argument("compact: index " + std::to_string(index) +
                                    " is beyond applied " + std::to_string(applied_));
  }
  Result<ConfState> conf = conf_state_at(index);
  KVC_CHECK(conf.ok(), "conf_state_at within the log");
  snap_conf_ = *conf;
  while (!conf_history_.empty() && conf_history_.front().first <= index) {
    conf_history_.erase(conf_history_.begin());
  }
  log_.compact(index);
  return ok_status();
}

void Node::applied_to(std::uint64_t index) {
  KVC_CHECK_LE(index, applying_);
  applied_ = std::max(applied_, index);
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
