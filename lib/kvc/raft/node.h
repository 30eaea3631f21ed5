// raft::Node, the Raft consensus algorithm as a value you step. It takes ticks, messages and
// proposals and hands back Ready batches of work (state to persist, messages to send, entries
// to apply, snapshot chunks to write); it does no I/O, reads no clock, starts no thread and
// takes its randomness from an injected Rng. It implements leader election with randomized
// timeouts, PreVote and CheckQuorum; pipelined, batched, flow-controlled log replication with
// fast conflict back-off; commitment by counting only of current-term entries; chunked
// InstallSnapshot; single-step membership change with learners; leadership transfer; and
// ReadIndex (no clock-based leases). Not thread-safe: one thread drives a Node.
//
// THE CALLER'S LOOP (the order it must keep)
//
//   while (node.has_ready()) {
//     Ready rd = node.ready();
//     // (1) send rd.messages now: they depend on nothing that is not yet durable.
//     // (2) persist, in this order, then fsync:
//     //     a. if rd.snapshot: the received snapshot file (all of rd.snapshot_chunks for it are
//     //        written first) becomes the member's snapshot; truncate the whole log to start
//     //        after rd.snapshot->index; load the state machine from it.
//     //     b. rd.snapshot_chunks: write each at its offset into the incoming-snapshot file
//     //        (offset 0 starts a new file, discarding any earlier partial one).
//     //     c. rd.entries: if the first index is <= the last index stored, truncate the stored
//     //        log there first; then append.
//     //     d. rd.hard_state, if set.
//     // (3) once durable: send rd.messages_after_persist (votes, append acknowledgements).
//     // (4) node.advance(rd).
//     // (5) apply rd.committed in order (now or later, on another thread if you like); after
//     //     applying up to index i, call node.applied_to(i). A ReadState may be served once the
//     //     state machine has applied its index.
//   }
//
// Between ready() and advance() the caller may keep calling tick(), step(), propose() and the
// rest (the server keeps its network running during an fsync); the next Ready then carries
// what happened meanwhile. Only one Ready may be outstanding: call advance() before ready().
// A leader's caller may also call take_messages() while a Ready is outstanding (its fsync in
// flight) and send what it returns at once: appends of entries proposed since then go to the
// followers while the leader's own write runs (Raft thesis 10.2.1), instead of after it.
// Before sending a kSnapshot message, fill its `chunk` with chunk_length bytes at
// snapshot_offset of the snapshot named by its `snapshot` field; if that snapshot is gone,
// drop the message and call report_snapshot(to, false).
//
// REPAIR (protocol-aware recovery)
// A member that lost data it had acknowledged, or whose state machine is damaged, must not lead
// or count toward a quorum until the leader has repaired it; the core keeps a RepairState for
// that (persisted by the caller through Ready::repair, restored through RestoreState::repair).
//   - Damaged state machine: the caller finds a checksum mismatch and calls mark_damaged(). The
//     member stops campaigning (it still grants votes: its log is intact, and a cluster with a
//     damaged member and a member down must still elect the leader that repairs it), a leader
//     hands its leadership to another voter, and
//     every message it sends asks for a snapshot at or above its applied index. The leader
//     sends one (making a new one through Ready::snapshot_wanted if its own is too old); the
//     member installs it even when its log already holds that index (keeping its log), and the
//     repair ends when the install is advanced.
//   - Lost acknowledged entries (e.g. a member restarted on an older copy of its data): every
//     message carries the sender's boot_id. A leader that sees a new boot_id from a follower
//     stops trusting what the earlier incarnation acknowledged (its match index restarts from
//     0) and probes the entry it had acknowledged last; if the follower no longer has it, the
//     leader logs it, tells the follower (Message::repair_to) and repairs it by normal
//     replication. The follower does not vote until its log matches the leader's up to that
//     index again, durably.
// While repairing, a member's acknowledgements count neither toward commitment nor toward a
// ReadIndex quorum, and it is never a leadership transfer target. Limits: a loss is noticed
// only by a leader that saw the earlier incarnation's acknowledgements; a rollback that no
// surviving leader witnessed cannot be told from a clean restart (docs/raft.md).
//
// MEMBERSHIP
// A ConfChange takes effect on append (every member uses the latest configuration in its log,
// committed or not; truncation rolls it back). Ready::conf_state reports each new
// configuration; a caller that keeps membership in its state machine applies the decoded
// ConfChange with apply_conf_change() when it applies the entry, and conf_state_at() gives the
// configuration at any retained index for snapshot metadata. A new change is refused while an
// earlier one is uncommitted or before the leader has committed an entry of its term.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/raft/conf_change.h"
#include "kvc/raft/log.h"
#include "kvc/raft/message.h"
#include "kvc/raft/types.h"

namespace kvc::raft {

// A seeded generator. The core draws election timeouts from it; nothing else is random.
class Rng {
 public:
  virtual ~Rng() = default;
  virtual std::uint64_t next_u64() = 0;
  // Uniform in [0, n); n > 0.
  std::uint64_t uniform(std::uint64_t n) { return next_u64() % n; }
};

// splitmix64: small, fast, good enough for timeouts and simulations; deterministic per seed.
class SplitMix64 final : public Rng {
 public:
  explicit SplitMix64(std::uint64_t seed) : state_(seed) {}
  std::uint64_t next_u64() override;

 private:
  std::uint64_t state_;
};

enum class LogLevel : std::uint8_t { kDebug, kInfo, kWarn, kError };

// Where the core's log lines go (the server adapts it to spdlog; the simulator records it).
// Each line is a short lowercase event followed by key=value fields.
class Logger {
 public:
  virtual ~Logger() = default;
  virtual void log(LogLevel level, std::string_view line) = 0;
};

// Drops everything.
class NullLogger final : public Logger {
 public:
  void log(LogLevel, std::string_view) override {}
};

struct Config {
  NodeId id = kNoNode;
  int election_ticks = 10;  // a follower campaigns after [election_ticks, 2*election_ticks)
  int heartbeat_ticks = 1;  // < election_ticks
  std::uint64_t max_msg_bytes = 1 << 20;              // entry data per append (>= 1 entry)
  int max_inflight_msgs = 256;                        // appends in flight per follower
  std::uint64_t max_inflight_bytes = 32ull << 20;     // entry bytes in flight per follower
  std::uint64_t max_uncommitted_bytes = 64ull << 20;  // propose() refuses beyond this; 0: no cap
  std::uint64_t snapshot_chunk_bytes = 1 << 20;       // bytes per kSnapshot message
  std::uint64_t max_apply_bytes = 64ull << 20;        // committed entry data per Ready
  // A learner is promoted only when its match index is at most this far behind the commit
  // index (0: it must have everything committed). A lag is safe, only slower to become useful.
  std::uint64_t promote_lag_slack = 0;
  bool pre_vote = true;
  bool check_quorum = true;
  // Random, different at every process start (and never 0 in a server): stamped on every
  // message so a leader can tell a restarted follower (see REPAIR). 0 disables the detection.
  std::uint64_t boot_id = 0;
  Rng* rng = nullptr;        // required; outlives the Node
  Logger* logger = nullptr;  // required; outlives the Node
};

// What the caller restores from its storage. A brand-new cluster member passes an empty log
// and snapshot {index 0, term 0, conf = the bootstrap voters} (or an empty conf when it will be
// added by a ConfChange); it passes the same again on restart until it has a real snapshot.
struct RestoreState {
  HardState hard_state;
  SnapshotMeta snapshot;       // the log starts after snapshot.index
  std::vector<Entry> entries;  // contiguous from snapshot.index + 1
  // The highest index the state machine has applied durably (clamped to
  // [snapshot.index, hard_state.commit]); committed entries after it are handed out again.
  std::uint64_t applied = 0;
  // A repair in progress when the member stopped (the last Ready::repair persisted).
  RepairState repair;
};

// The restore state of a brand-new cluster's members: the bootstrap voters as AddVoter
// ConfChange entries 1..n at term 1, committed (hard state term 1, commit n). Every founding
// member starts from the same state, and a member added later replays the same log (or gets a
// snapshot), so all agree on the membership. The caller persists these entries and this hard
// state before its first Ready, like any restored state.
RestoreState bootstrap_state(const std::vector<NodeId>& voters);

enum class Role : std::uint8_t { kFollower, kPreCandidate, kCandidate, kLeader };
std::string_view role_name(Role role);

enum class ProgressState : std::uint8_t { kProbe, kReplicate, kSnapshot };
std::string_view progress_state_name(ProgressState state);

// The leader's view of one member, for status commands.
struct PeerProgress {
  NodeId id = kNoNode;
  bool learner = false;
  std::uint64_t match = 0;
  std::uint64_t next = 0;
  ProgressState state = ProgressState::kProbe;
  bool recent_active = false;  // heard from within the current election period
  int inflight_msgs = 0;
  std::uint64_t inflight_bytes = 0;
  std::uint64_t snapshot_index = 0;  // kSnapshot: the snapshot being sent
  bool repairing = false;            // the member says it is being repaired (REPAIR)
  std::uint64_t repair_to = 0;       // it lost acknowledged entries up to here; 0: none
};

// A ReadIndex result: the read with this context may be served once applied >= index.
struct ReadState {
  std::string context;
  std::uint64_t index = 0;
};

// A received piece of a snapshot, to be written at `offset` of the incoming-snapshot file.
struct SnapshotChunk {
  SnapshotMeta meta;
  std::uint64_t size = 0;  // the whole snapshot's size
  std::uint64_t offset = 0;
  std::string data;
};

// Role and leader, reported when either changes.
struct SoftState {
  Role role = Role::kFollower;
  NodeId leader = kNoNode;
  std::uint64_t term = 0;
  friend bool operator==(const SoftState&, const SoftState&) = default;
};

struct Ready {
  std::optional<SoftState> soft_state;  // role or leader changed
  std::optional<HardState> hard_state;  // persist when set
  std::vector<Entry> entries;           // persist (truncating the stored log at the first index)
  std::vector<Message> messages;        // send at once
  std::vector<Message> messages_after_persist;  // send once this Ready is durable
  std::vector<Entry> committed;                 // apply, in order
  std::vector<ReadState> read_states;
  // Install the received snapshot (see the loop above). Once installed it is this member's own
  // snapshot, which it sends on if it leads, without a snapshot_available() call.
  std::optional<SnapshotMeta> snapshot;
  std::vector<SnapshotChunk> snapshot_chunks;
  std::optional<ConfState> conf_state;  // the configuration changed (on append or restore)
  bool snapshot_wanted = false;  // a follower needs a snapshot and the caller has given none:
                                 // make one (at applied) and call snapshot_available()
  // The repair state changed (REPAIR): persist it with the hard state, before sending
  // messages_after_persist.
  std::optional<RepairState> repair;

  bool empty() const;
};

class Node {
 public:
  // Validates the config and the restored state (contiguous entries, commit within the log,
  // ids) and returns a follower. Bad restored state is a Status, never a crash.
  static Result<std::unique_ptr<Node>> create(const Config& config, RestoreState state);

  // Time passes by one tick: elections, heartbeats, CheckQuorum, retransmission.
  void tick();
  // Handles a message from a peer. A malformed message (wrong `to`, unknown type, entries that
  // are not contiguous, an acknowledgement beyond our log, a chunk outside its snapshot...) is
  // refused with kInvalidArgument and changes nothing.
  Status step(const Message& m);
  // True when stepping `m` now would complete the snapshot this follower is receiving (it is
  // the next chunk of the current leader's transfer, and the last). The caller may check the
  // whole file first and step `m` with snapshot_damaged set when it fails its checks: the core
  // then installs nothing and the leader makes a new snapshot and starts again.
  bool completes_snapshot(const Message& m) const;
  // Appends `data` as a normal entry. kNotLeader ("leader=N" in the message, N = leader()) when
  // not leader; kUnavailable during leadership transfer; kResourceExhausted when too much is
  // uncommitted. On success returns the entry's index (it may still be lost if leadership is).
  Result<std::uint64_t> propose(std::string data);
  // Appends a membership change (see MEMBERSHIP above); returns its index.
  Result<std::uint64_t> propose_conf_change(const ConfChange& cc);
  // Starts a linearizable read; the ReadState with this context arrives in a later Ready.
  // Contexts should be unique among outstanding reads. kUnavailable when no leader is known.
  // Lost reads (a leader change, a dropped message) never answer: the caller times them out.
  Status read_index(std::string context);
  // Makes `target` leader: brings it up to date, then tells it to campaign at once. Aborted
  // after an election timeout. Forwarded to the leader when called on a follower.
  Status transfer_leadership(NodeId target);
  // The transport could not reach `peer`: the leader stops pipelining to it and probes.
  void report_unreachable(NodeId peer);
  // A kSnapshot message to `peer` could not be sent (ok=false): the transfer restarts later.
  // (If the file is gone, make a new snapshot and call snapshot_available(); one at the same
  // index replaces the lost one.)
  void report_snapshot(NodeId peer, bool ok);
  // The caller now has a snapshot at `meta` of `size` bytes, which the leader sends to members
  // whose next entry was compacted away. An older one is ignored; one at the same index
  // replaces the current (e.g. a remade file).
  void snapshot_available(const SnapshotMeta& meta, std::uint64_t size);
  // Drops in-memory entries up to `index`. Requires index <= applied() (else
  // kInvalidArgument); the state machine must durably hold that index. A follower that later
  // needs a dropped entry gets a snapshot: the core sets Ready::snapshot_wanted and the caller
  // must answer with snapshot_available() at or beyond the highest index it compacted to.
  Status compact(std::uint64_t index);
  // The state machine has applied everything up to `index` (<= what Ready::committed gave).
  void applied_to(std::uint64_t index);
  // The caller found its state machine damaged at applied index `applied` (it applies nothing
  // more until a snapshot is installed): start a repair (see REPAIR). A leader hands its
  // leadership to the most up-to-date voter first. Idempotent.
  void mark_damaged(std::uint64_t applied);

  bool has_ready() const;
  Ready ready();
  void advance(const Ready& rd);
  // Leader only, while a Ready is outstanding: the messages that may be sent at once (appends,
  // heartbeats...), including appends of entries proposed since ready() that no Ready has
  // handed out for persisting yet. A leader may send entries before they are durable on its
  // own disk: its own copy counts toward a commit only once advance() has made it durable.
  // Empty when not leader, when no Ready is outstanding, or while a message that must wait
  // for the outstanding Ready to be durable is queued (messages keep their order).
  std::vector<Message> take_messages();

  // Queries.
  NodeId id() const { return id_; }
  Role role() const { return role_; }
  std::uint64_t term() const { return term_; }
  NodeId leader() const { return leader_; }
  NodeId vote() const { return vote_; }
  std::uint64_t commit() const { return commit_; }
  std::uint64_t applied() const { return applied_; }
  std::uint64_t durable_index() const { return durable_; }
  const ConfState& conf_state() const { return conf_; }
  // The configuration in force at `index` (snapshot index <= index <= last index).
  Result<ConfState> conf_state_at(std::uint64_t index) const;
  const RaftLog& log() const { return log_; }
  HardState hard_state() const { return {term_, vote_, commit_}; }
  // Leader only (empty otherwise), ordered by id; includes this member.
  std::vector<PeerProgress> progress() const;
  NodeId transfer_target() const { return lead_transferee_; }
  const RepairState& repair() const { return repair_; }
  // Leader: followers found to have lost entries they had acknowledged, since start.
  std::uint64_t lost_entries_detected() const { return lost_entries_detected_; }

  // Costly whole-state consistency checks (the simulator runs them after every step);
  // aborts through KVC_CHECK on a violation.
  void check_invariants() const;

 private:
  struct Inflight {
    std::uint64_t last_index;
    std::uint64_t bytes;
  };
  struct Progress {
    std::uint64_t match = 0;
    std::uint64_t next = 1;
    ProgressState state = ProgressState::kProbe;
    bool probe_sent = false;  // kProbe: an append is out; wait for a response or heartbeat
    bool recent_active = false;
    std::deque<Inflight> inflights;  // kReplicate
    std::uint64_t inflight_bytes = 0;
    int stall_ticks = 0;  // ticks since match last moved while entries were outstanding
    // kSnapshot:
    SnapshotMeta snap;
    std::uint64_t snap_size = 0;
    std::uint64_t snap_offset = 0;  // next byte to send (acknowledged up to here)
    bool snap_inflight = false;
    int snap_elapsed = 0;
    // REPAIR: the incarnation we last heard from, and earlier ones whose late messages are
    // dropped; `verify_to` > 0 while we check that a restarted member still has what its
    // earlier incarnation acknowledged (up to verify_to).
    std::uint64_t boot_id = 0;
    std::vector<std::uint64_t> retired_boot_ids;
    std::uint64_t verify_to = 0;
    bool repairing = false;           // as its latest message said
    std::uint64_t snapshot_from = 0;  // it asks for a snapshot at or above this (0: no)
    std::uint64_t repair_to = 0;      // it lost entries up to here; told until match reaches it
  };
  struct ReadRequest {
    std::uint64_t seq = 0;
    NodeId from = kNoNode;
    std::string context;
    std::uint64_t index = 0;
    std::map<NodeId, bool> acks;
  };
  struct Receiving {
    SnapshotMeta meta;
    std::uint64_t size = 0;
    std::uint64_t next_offset = 0;
  };

  Node(const Config& config, RestoreState state);

  // Roles.
  void become_follower(std::uint64_t term, NodeId leader);
  void become_pre_candidate();
  void become_candidate();
  void become_leader();
  void campaign(bool pre_vote, bool transfer);
  void reset(std::uint64_t term);
  void reset_randomized_timeout();
  bool promotable() const;  // a voter in its own configuration

  // Message handling.
  Status validate(const Message& m) const;
  void send(Message m);
  void step_leader(const Message& m);
  void step_candidate(const Message& m);
  void step_follower(const Message& m);
  void handle_vote_request(const Message& m);
  void handle_append(const Message& m);
  void handle_heartbeat(const Message& m);
  void handle_snapshot(const Message& m);
  // What handle_snapshot does with a snapshot chunk from the leader, by its rules in their order
  // (completes_snapshot asks the same): `repair` is whether the chunk's snapshot would repair a
  // damaged state.
  enum class ChunkFate {
    kRepairPending,  // a repair snapshot already awaits its install
    kHaveIt,         // the log is committed at or past the snapshot
    kDuplicate,      // a chunk of this transfer that arrived before
    kNext,           // the next chunk of this transfer
    kFirst,          // the first chunk of a new transfer
    kOutOfPlace,     // neither: the sender is told where this transfer stands
    kBadLength,      // its length does not fit its snapshot
  };
  ChunkFate chunk_fate(const Message& m, bool repair) const;
  bool receiving_same(const Message& m) const;
  void handle_append_resp(const Message& m, Progress& pr);
  void handle_heartbeat_resp(const Message& m, Progress& pr);
  void handle_snapshot_resp(const Message& m, Progress& pr);
  void handle_read_request(NodeId from, std::string context);
  // REPAIR helpers.
  bool note_incarnation(const Message& m, Progress& pr);  // false: drop a stale incarnation's
  void found_lost_entries(NodeId peer, Progress& pr, std::uint64_t has_to);
  void maybe_finish_log_repair();
  void note_repair_to(std::uint64_t index);  // follower: the leader says we lost entries
  bool counts(const Progress& pr) const;     // toward commitment and ReadIndex quorums
  bool hand_over_damaged_leadership();       // false: no voter can take over now
  void answer_read(NodeId from, const std::string& context, std::uint64_t index);

  // Replication.
  bool send_append(NodeId to, bool send_if_empty);
  void start_snapshot(NodeId to, Progress& pr);  // enter kSnapshot with local_snapshot_
  void send_snapshot_chunk(NodeId to, Progress& pr);
  void bcast_append();
  void bcast_heartbeat(const std::string& context);
  bool maybe_commit();
  void commit_to(std::uint64_t index);
  void on_commit_advanced(std::uint64_t old_commit);
  bool committed_in_term() const;
  void become_probe(Progress& pr);
  void become_replicate(Progress& pr);
  bool paused(const Progress& pr) const;
  int quorum() const { return static_cast<int>(conf_.voters.size()) / 2 + 1; }

  // Log changes.
  void append_local(std::vector<Entry> ents);  // leader: stamp nothing, just append
  void append_from_leader(std::span<const Entry> ents);
  void note_truncated_from(std::uint64_t index);
  void note_appended(const Entry& e);
  void set_conf(const ConfState& conf);
  void sync_progress_with_conf();
  void restore_snapshot(const SnapshotMeta& meta);

  void logf(LogLevel level, const std::string& line) const { logger_->log(level, line); }

  Config cfg_;
  Rng* rng_;
  Logger* logger_;
  NodeId id_;

  std::uint64_t term_ = 0;
  NodeId vote_ = kNoNode;
  NodeId leader_ = kNoNode;
  Role role_ = Role::kFollower;
  RaftLog log_;
  // Invariant: log_.snapshot_index() <= applied_ <= applying_ <= commit_ <= log_.last_index()
  // (applying_ <= durable_ too, unless a snapshot install is pending).
  std::uint64_t commit_ = 0;
  std::uint64_t applied_ = 0;   // reported by the caller (applied_to)
  std::uint64_t applying_ = 0;  // the last index handed out in Ready::committed
  // Invariant: durable_ <= log_.last_index(): every entry up to durable_ is on stable storage.
  std::uint64_t durable_ = 0;
  // The first index not yet handed to the caller to persist.
  std::uint64_t persist_from_ = 1;

  ConfState conf_;
  ConfState snap_conf_;  // the configuration at the snapshot point
  // Configurations of conf-change entries in the log, in index order.
  std::vector<std::pair<std::uint64_t, ConfState>> conf_history_;

  std::map<NodeId, Progress> prs_;  // leader only: every member but this one
  std::map<NodeId, bool> votes_;
  int election_elapsed_ = 0;
  int heartbeat_elapsed_ = 0;
  int randomized_timeout_ = 0;
  NodeId lead_transferee_ = kNoNode;
  std::uint64_t uncommitted_bytes_ = 0;

  // ReadIndex.
  std::vector<std::pair<NodeId, std::string>> reads_before_noop_;
  std::deque<ReadRequest> read_queue_;
  std::uint64_t read_seq_ = 0;
  std::vector<ReadState> read_states_;

  // Snapshots.
  std::optional<SnapshotMeta> local_snapshot_;
  std::uint64_t local_snapshot_size_ = 0;
  bool snapshot_wanted_ = false;
  std::optional<Receiving> receiving_;
  std::optional<SnapshotMeta> pending_install_;
  // A snapshot restored by handle_snapshot, not yet acknowledged by advance(), and its size.
  std::uint64_t install_pending_index_ = 0;
  std::uint64_t install_size_ = 0;
  std::vector<SnapshotChunk> chunks_;

  // REPAIR.
  RepairState repair_;
  RepairState prev_repair_;
  // Follower: its log is known to match the current leader's up to here (this term).
  std::uint64_t matched_leader_to_ = 0;
  bool snapshot_received_ = false;  // a requested snapshot arrived and awaits install
  std::uint64_t lost_entries_detected_ = 0;

  // Ready bookkeeping.
  std::vector<Message> msgs_;
  std::vector<Message> msgs_after_;
  HardState prev_hard_state_;
  SoftState prev_soft_state_;
  ConfState prev_conf_;
  bool ready_outstanding_ = false;
  bool bcast_pending_ = false;  // proposals appended since the last broadcast
};

}  // namespace kvc::raft
