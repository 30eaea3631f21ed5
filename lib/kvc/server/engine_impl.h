// Engine::Impl: the machinery behind server::Engine. Internal to server/; split from engine.cc
// only to keep the files readable. Threads: the loop thread runs libuv (network, ticks), the
// Raft core and the state machine's owning side; `disk_` runs WAL writes and fsyncs; `flush_`
// runs state flushes; `scan_` the scans of the whole state (barrier hashes, snapshot
// creation), beside the flushes so that the applied overlay never waits a whole scan for its
// flush. Everything below marked "loop" is touched only on the loop thread.
#pragma once

#include <uv.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <unordered_map>
#include <vector>

#include "kvc/http/kv_routes.h"
#include "kvc/http/server.h"
#include "kvc/net/connection.h"
#include "kvc/raft/conf_change.h"
#include "kvc/raft/node.h"
#include "kvc/server/bootstrap.h"
#include "kvc/server/engine.h"
#include "kvc/server/engine_metrics.h"
#include "kvc/server/environment.h"
#include "kvc/server/http_backend.h"
#include "kvc/server/loop_util.h"
#include "kvc/server/peer_transport.h"
#include "kvc/server/permissions.h"
#include "kvc/storage/data_dir.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/repair_file.h"
#include "kvc/storage/state.h"
#include "kvc/storage/wal.h"
#include "kvc/wire/handshake.h"
#include "kvc/wire/messages.h"

namespace kvc::client {
class Client;
struct ClientOptions;
}  // namespace kvc::client

namespace kvc::server {

// Adapts the Raft core's logger to spdlog.
class SpdRaftLogger final : public raft::Logger {
 public:
  void log(raft::LogLevel level, std::string_view line) override;
};

class Engine::Impl {
 public:
  using Reply = std::function<void(wire::Response)>;

  explicit Impl(EngineOptions options);
  ~Impl();

  Status start();
  // Starts in a simulated environment (environment.h): no thread, listener or timer; the
  // simulator drives the loop through SimMember (sim_member.h).
  Status start_simulated(const SimEnvironment& env);
  Status close();
  Status reload_tls();          // Engine::reload_tls (client_sessions.cc)
  Status reload_permissions();  // Engine::reload_permissions (client_sessions.cc)
  void wait();

  // Any thread: runs a request on the loop and calls `reply` there.
  void submit(wire::Request req, Reply reply);
  // Any thread: the same, blocking for the answer (forwarding writes to the leader when this
  // member is a follower). Not on the loop thread.
  wire::Response call(wire::Request req);

  std::uint64_t id() const { return identity_.member_id; }
  std::uint64_t cluster_id() const { return identity_.cluster_id; }
  LeaderInfo leader() const;
  bool is_ready() const { return ready_.load(); }
  void on_leader_change(std::function<void(const LeaderInfo&)> cb);
  std::string client_address() const { return client_bound_; }
  std::string peer_address() const { return peer_bound_; }
  std::string http_address() const { return http_bound_; }
  Status failure() const;
  Result<std::uint64_t> watch(const std::string& key, bool prefix, std::uint64_t start_revision,
                              std::function<void(const WatchEvent&)> callback);
  void unwatch(std::uint64_t handle);

 private:
  friend class EngineHttpBackend;
  friend class SimMember;

  // Loop: a worker thread is using the state machine (commit_install and the last flush at a
  // stop wait until none is).
  bool state_in_use() const {
    return flushing_ || snapshotting_ || scrubbing_ || mapping_in_ || pending_barrier_ != 0 ||
           snapshot_saves_ > 0;
  }
  // Runs `fn` on the loop (from any thread, or from a job of another executor).
  void post_loop(std::function<void()> fn) { loop_exec_->post(std::move(fn)); }
  // The loop's clock (ms) and randomness: the environment's when simulated.
  std::uint64_t now_ms() const {
    return sim_ ? sim_->now_ms() : uv_now(const_cast<uv_loop_t*>(&loop_));
  }
  std::uint64_t next_random() const;
  // A peer message, from the transport (or the simulated network).
  void on_peer_message(raft::Message m);
  // A peer refused this member because it was removed from the cluster: it stops.
  void on_told_removed(const std::string& told_by);

  struct Waiter {
    std::uint64_t request_id = 0;
    std::uint64_t term = 0;
    wire::Request req;
    Reply reply;
    std::uint64_t deadline = 0;  // uv_now ms
    std::string conf_data;       // a membership change: the entry data it proposed
  };
  struct PendingRead {
    wire::Request req;
    Reply reply;
    std::uint64_t deadline = 0;
  };
  struct ReadBatch {
    std::string context;
    std::uint64_t index = 0;  // 0 until the ReadState arrives
    std::uint64_t started = 0;
    std::vector<PendingRead> reads;
  };
  struct Watcher {
    std::uint64_t id = 0;    // the client's request id (or the embedded handle)
    std::uint64_t conn = 0;  // 0 for an embedded watcher
    std::string key;
    bool prefix = false;
    std::uint64_t next_revision = 0;
    std::uint32_t next_sequence = 0;
    bool prev_kv = false;  // client watchers: send each event's previous key-value
    // Whose watch it is (client port and HTTP; empty for an embedded watcher, never checked):
    // a permissions reload ends the watch when this identity may no longer read its range.
    std::string identity;
    std::function<void(const WatchEvent&)> callback;  // embedded watchers
    std::shared_ptr<http::WatchSink> sink;            // HTTP watch streams (http_backend.cc)
    // Shared watch responses (watch_hub.cc): on a connection whose client understands them,
    // the ids of every watch this watcher serves, its group (named by `id`, the first, which
    // may since have been cancelled). Empty: a watcher of its own, answered under `id`.
    std::vector<std::uint64_t> group;
  };
  // What makes watches of one connection see the same events: joined into one group when
  // their positions are equal too (watch_hub.cc).
  using WatchGroupKey = std::tuple<std::uint64_t /*conn*/, std::string /*key*/, bool /*prefix*/,
                                   bool /*prev_kv*/, std::string /*identity*/>;
  struct ClientConn {
    std::shared_ptr<net::Connection> conn;
    std::string address;  // the client's IP address, for clients_per_address_
    // The handshake (wire/handshake.h) until it completes, then null: requests are handled
    // only on a connection without one. A refused connection keeps its (kRefused) machine
    // while the refusal is flushed, so later frames are dropped.
    std::unique_ptr<wire::MemberHandshake> handshake;
    std::uint64_t handshake_deadline = 0;  // now_ms(): closed if the handshake is not done by then
    // Who the client is (permissions.h), fixed at the hello: the certificate's subject, the
    // token's name, `secret` or `anonymous`.
    std::string identity;
    // Authenticated as a cluster member (the secret without a token, or a certificate that
    // names a member's peer address): may act on behalf of a caller (Request::on_behalf_of).
    bool member = false;
    std::uint64_t inflight = 0;
    bool paused = false;
    // Its hello said it understands shared watch responses (Hello::shared_watches).
    bool shared_watches = false;
  };
  struct LeaderWatcher {
    std::uint64_t conn = 0;
    std::uint64_t id = 0;
  };
  struct Transfer {  // a snapshot streamed to a client (kvc-ctl snapshot save)
    std::uint64_t conn = 0;
    std::uint64_t id = 0;
    std::string path;
    storage::UniqueFd fd;
    std::uint64_t offset = 0;
    std::uint64_t size = 0;
    std::uint64_t index = 0;
  };
  struct PendingTransfer {  // leadership transfer (or a remove that waits for one)
    wire::Request req;
    Reply reply;
    std::uint64_t target = 0;
    std::uint64_t deadline = 0;
  };
  struct PersistJob {
    raft::Ready rd;
    bool sync = false;
    // A newer commit index held back from earlier Readys (unwritten_commit_), written with this
    // job's entries when rd has no hard state of its own.
    std::optional<raft::HardState> held_commit;
    // What the WAL records as the hard state: the Ready's own, else the held-back commit.
    const std::optional<raft::HardState>& hard_state_to_write() const {
      return rd.hard_state ? rd.hard_state : held_commit;
    }
    Status status;
    std::optional<storage::StagedInstall> staged;
    std::optional<storage::RepairRecord> repair;  // the repair file to write (rd.repair)
  };

  // Setup (calling thread, before the loop runs).
  Status open_data_dir();
  Status join_existing_cluster(const storage::Membership& initial);
  Status open_storage();
  Status make_node(storage::RecoveredLog log);
  Status bootstrap_log(storage::RecoveredLog& log);
  // The TLS contexts of both ports (certificates, else the secret as a pre-shared key, else
  // none: plaintext), built once at start; errors name the flag and the file.
  // The TLS contexts of the three roles, made from the options' files (null where a port speaks
  // plaintext).
  struct TlsContexts {
    std::shared_ptr<const net::TlsContext> client_port, peer_port, peer_dial;
    // The HTTP port's: the client port's certificates, a client certificate optional (the
    // open paths need none; /v1 takes a verified certificate or a Bearer token).
    std::shared_ptr<const net::TlsContext> http_port;
  };
  Result<TlsContexts> make_tls() const;
  // The shared secret, moved here from options_.secret (then wiped) at start; empty without.
  net::SecretBytes secret_;
  Status build_tls();
  bool http_tls() const;
  // How this member's own clients (forwarding, hash checks) authenticate to a client port.
  void secure_internal_client(client::ClientOptions& o) const;
  Status bind_listeners();
  Status listen_clients();
  Status listen_peers(const net::Address& peer);
  Status listen_http();

  // Loop: time and Raft.
  void on_tick();
  void on_check();
  void process_ready();
  void on_persisted(std::shared_ptr<PersistJob> job);
  void install_then_persist(std::shared_ptr<PersistJob> job);
  void complete_ready(const raft::Ready& rd);
  void apply_durable_committed(raft::Ready& rd);
  void note_read_states(const std::vector<raft::ReadState>& states);
  Status persist(PersistJob& job);                                               // disk thread
  Status write_snapshot_chunks(const std::vector<raft::SnapshotChunk>& chunks);  // disk thread
  void send_message(raft::Message m);
  void on_soft_state(const raft::SoftState& ss);
  void on_conf_state(const raft::ConfState& conf);
  void learn_entries(const std::vector<raft::Entry>& entries);
  void apply_committed(const std::vector<raft::Entry>& entries);
  void ack_before_apply(const std::vector<raft::Entry>& entries);  // a test mutation
  void drain_apply();
  bool apply_one(const raft::Entry& e);
  void apply_conf_entry(const raft::Entry& e);
  void take_barrier_hash(std::uint64_t index);
  void finish_barrier_hash(std::uint64_t index, const Result<storage::StateMachine::IndexedHash>& h,
                           double scan_ms = 0);
  void finish_waiter(std::uint64_t index, const raft::Entry& e,
                     const std::optional<storage::Command>& cmd,
                     const storage::ApplyResult* result);
  void fatal(const Status& s);

  // Loop: integrity (kvc-node(1), "INTEGRITY").
  // A read, apply, snapshot, hash or scrub found damage in the state (a checksum mismatch, or
  // a hash the majority disagrees with): stop serving reads, applying and voting, and ask the
  // leader for a snapshot. Other errors (I/O) are fatal; returns true when `s` was damage.
  bool damage(const Status& s, const std::string& where);
  void note_repair_progress();  // after advance(): leave the damaged mode once repaired
  std::string damaged_message() const;
  void scrub_tick();
  void start_hash_check();
  bool ensure_hash_client(const std::vector<std::pair<std::uint64_t, std::string>>& others);
  void finish_hash_check(std::uint64_t index, std::map<std::uint64_t, std::uint64_t> hashes,
                         std::vector<std::string> failures);
  void apply_hash_verdict(std::uint64_t index, std::uint64_t hash);
  // Loop: state flushing and snapshots.
  bool maybe_flush(bool force);
  // The flush timer: maybe_flush, then maybe_map_in.
  void on_flush_timer();
  // Maps more of the state file into the page tables on the scan thread, while part of it is
  // not (StateMachine::map_in): reads after a start, an install or growth take no page fault.
  void maybe_map_in();
  // After a burst of writes, once nothing applied waits for a flush: gives the memory the
  // flushed overlays held back to the system (malloc_trim on the flush thread), so a member's
  // resident memory falls back when the writes stop instead of staying at the burst's peak.
  void maybe_trim_heap();
  // A flush's end (loop): retires the frozen overlay, counts what it held for maybe_trim_heap.
  void retire_flushed();
  Status flush_state();
  void after_flush(std::uint64_t index, std::uint64_t term, raft::ConfState conf);
  std::uint64_t record_flush_in_wal(std::uint64_t index, std::uint64_t term,
                                    const raft::ConfState& conf);
  void make_snapshot_for_followers();
  void resume_install();
  Status fill_snapshot_chunk(raft::Message& m);
  void check_received_snapshot(raft::Message m);
  void step_peer_message(const raft::Message& m);

  // Loop: requests.
  void handle_request(wire::Request req, Reply reply);
  void handle_read(wire::Request req, Reply reply);
  void handle_watch(wire::Request req, Reply reply);
  void handle_hash(wire::Request req, Reply reply);
  void answer_leader(wire::Request req, Reply reply);
  void answer_status(wire::Request req, Reply reply);
  void answer_member_list(wire::Request req, Reply reply);
  void propose_write(wire::Request req, Reply reply);
  // The command a write request proposes, or why it is refused (kv_service.cc).
  Result<storage::Command> write_command(const wire::Request& req);
  // The answer to a write from its applied result (apply.cc).
  void fill_write_result(wire::Response& r, const wire::Request& req,
                         const storage::ApplyResult& result);
  // Leases (lease_service.cc). Keep-alive, ttl and list are answered by the leader after a
  // ReadIndex round confirmed it still leads (serve_lease, from serve_read).
  void handle_lease_read(wire::Request req, Reply reply);
  void serve_lease(const wire::Request& req, wire::Response& r);
  // From the tick: the leader's lease clock. It starts when this member leads (every lease
  // then gets ttl plus an election timeout), follows grants and revokes, restarts a lease's
  // countdown on each keep-alive, and proposes a revoke for each lease whose time is up.
  void lease_tick();
  std::uint64_t min_lease_ttl_s() const;
  void propose_barrier(wire::Request req, Reply reply);
  void answer_hash(wire::Request req, Reply reply);
  bool refuse_unless_leader(wire::Response& r, const Reply& reply);
  // While the state is damaged nothing this member holds can be vouched for: answers
  // kUnavailable with damaged_message() and returns true (the client tries another member).
  bool refuse_if_damaged(wire::Response& r, const Reply& reply);
  void member_change(wire::Request req, Reply reply);
  // A membership change checked and ready to propose (or nothing to do).
  struct MemberChangePlan {
    raft::ConfChange cc;
    std::string what;                      // for the log
    bool nothing = false;                  // already so: answer at once
    std::optional<storage::Member> added;  // remembered once proposed
  };
  Result<MemberChangePlan> plan_add(const wire::Request& req);
  Result<MemberChangePlan> plan_update(const wire::Request& req, const storage::Member& target);
  Result<MemberChangePlan> plan_promote(const wire::Request& req, const storage::Member& target);
  Result<MemberChangePlan> plan_remove(const wire::Request& req, const storage::Member& target);
  void remove_self(wire::Request req, Reply reply);
  void transfer_leader(wire::Request req, Reply reply);
  void settle_transfers();
  void start_snapshot_save(std::uint64_t conn, std::uint64_t id);
  void pump_transfers();
  // The member a request names (member_id, else name); nullptr when unknown.
  const storage::Member* find_member(const wire::Request& req) const;
  // Voters that answered the leader recently, this member included (leader only).
  std::set<std::uint64_t> reachable_voters() const;
  std::uint64_t best_transfer_target(std::uint64_t excluding) const;
  storage::Membership current_membership() const;
  void queue_read(wire::Request req, Reply reply);
  void start_read_batch();
  void serve_reads();
  void serve_read(const wire::Request& req, const Reply& reply);
  void sweep_deadlines();
  void add_watcher(Watcher w, const Reply& reply);
  // Shared watch responses: puts a new watch of a client that understands them into a group
  // (an existing one at the same position, else its own). Returns true when it joined one.
  bool join_watch_group(Watcher& w, wire::Response& ack);
  // Ends every watch that `w` serves (its own, or each of its group) with `r` (id and
  // watch_id set per watch).
  void end_watches(const Watcher& w, wire::Response r);
  std::size_t watch_count() const;  // watches open (a group counts each of its watches)
  // After a permissions reload: ends, with permission_denied, every watch whose identity may no
  // longer read its key or prefix (watch_hub.cc).
  void end_unreadable_watches();
  void cancel_watch(std::uint64_t conn_id, std::uint64_t watch_id);
  // Runs a bounded slice of watch delivery now, unless a continuation is already posted (it
  // will see what was applied since). See watch_hub.cc.
  void notify_watchers();
  void notify_slice();
  bool refresh_feed(std::size_t& work);
  // Delivers what watcher `w` has not seen yet, within `work`; false drops it (told "done").
  bool serve_watcher(Watcher& w, std::size_t& work);
  void deliver_events(Watcher& w, const storage::Event* const* first,
                      const storage::Event* const* last);
  void flush_watch_outbox(std::uint64_t conn_id);
  enum class WatchConn { kReady, kClosed, kFull };
  WatchConn watch_conn(std::uint64_t conn_id) const;
  WatchConn watch_state(const Watcher& w) const;  // watch_conn, or the HTTP stream's state
  // From the tick: serves watchers that waited for their connection's output to drain.
  void retry_backlogged_watchers();
  void notify_leader_watchers();
  wire::Response base_response(std::uint64_t req_id) const;
  void fill_leader(wire::Response& r) const;
  void fill_status(wire::Response& r) const;
  std::uint64_t deadline_for(const wire::Request& req) const;

  // Loop: client connections.
  void on_client_accept(std::shared_ptr<net::Connection> conn);
  void on_client_frame(std::uint64_t conn_id, net::Connection& conn, std::string_view payload);
  void on_client_closed(std::uint64_t conn_id);
  void on_client_handshake(ClientConn& cc, net::Connection& conn, const wire::Envelope& env);
  Status admit_client(std::uint64_t conn_id, const wire::Hello& hello);
  // Whether `identity` may make request `req` (ok without a permissions file); the refusal
  // names the identity, the operation and the key (permissions.h). Loop thread.
  Status authorize(const std::string& identity, const wire::Request& req) const;
  // A request refused by authentication or the permissions file (loop thread): counted in
  // kvc_access_refused_total by code and operation, and logged at info naming the identity, the
  // operation, the key and the client's address, at most one line a second per code (the next
  // line says how many were suppressed), so a misconfigured or hostile client cannot flood the
  // log.
  void note_refusal(const Status& why, std::string_view identity, std::string_view op,
                    std::string_view key, std::string_view from);
  // whoami: the identity and, with a permissions file, its grants.
  wire::Response whoami(const wire::Request& req, const std::string& identity) const;
  // Whether a verified certificate names the peer address of a member this one knows.
  bool certificate_of_member(const net::TlsSession& tls) const;
  void on_client_request(std::uint64_t conn_id, ClientConn& cc, net::Connection& conn,
                         const wire::Envelope& env);
  void send_to_client(std::uint64_t conn_id, const wire::Response& r, bool final);

  // Metrics: a request answered (any thread), and the gauges read at scrape time (loop).
  void count_request(wire::Op op, std::chrono::steady_clock::time_point start, Code code);
  void collect_metrics();
  // The client that forwards writes to the leader at `leader_addr` (any thread); null when it
  // cannot be made. Made on first use with the TLS files as they are then, and made again
  // (lazily, here) after reload_tls() and when the leader's address changes, so it never dials
  // with certificates the cluster no longer trusts. The caller holds the pointer for as long as
  // its call runs: a replaced forwarder lives on (retired_forwarders_) until no caller holds it,
  // so a call in flight is never cut off.
  std::shared_ptr<client::Client> forwarder(const std::string& leader_addr);

  // Loop: shutdown.
  void begin_shutdown();
  void finish_shutdown();
  void finish_simulated_shutdown();

  // Membership as the engine knows it: the state machine's, plus what the log and the peers'
  // handshakes taught (addresses of members being added, client addresses).
  const storage::Member* member(std::uint64_t id) const;
  void update_peers();
  Result<std::uint64_t> lookup_joining(const std::string& name) const;
  Status force_new_cluster(storage::RecoveredLog& log);
  StateFacts state_facts() const;

  EngineOptions options_;
  storage::Identity identity_;
  std::optional<storage::DataDir> data_dir_;
  std::optional<storage::Wal> wal_;  // disk thread after start()
  std::unique_ptr<storage::StateMachine> state_;
  std::unique_ptr<raft::Node> node_;
  raft::SplitMix64 rng_{0};
  SpdRaftLogger raft_logger_;
  storage::Membership bootstrap_membership_;

  uv_loop_t loop_{};
  Inbox inbox_;
  uv_timer_t tick_timer_{};
  uv_timer_t flush_timer_{};
  uv_check_t check_{};
  std::thread loop_thread_;
  // The executors and the transport the code uses: the real ones below, or a simulation's.
  Executor* loop_exec_ = &inbox_;
  Executor* disk_ = nullptr;
  Executor* flush_ = nullptr;
  Executor* scrub_ = nullptr;
  Executor* scan_ = nullptr;
  Transport* peers_ = nullptr;
  const SimEnvironment* sim_ = nullptr;  // &sim_env_ when simulated
  SimEnvironment sim_env_;
  std::unique_ptr<Worker> disk_thread_;
  std::unique_ptr<Worker> flush_thread_;
  std::unique_ptr<Worker> scrub_thread_;
  std::unique_ptr<Worker> scan_thread_;
  std::unique_ptr<PeerTransport> peer_transport_;
  // Open client connections by IP address (--max-client-connections-per-address).
  std::unordered_map<std::string, std::uint64_t> clients_per_address_;
  std::unique_ptr<net::Listener> client_listener_;
  std::string client_bound_;
  std::string peer_bound_;
  std::unique_ptr<EngineMetrics> metrics_;
  std::unique_ptr<EngineHttpBackend> http_backend_;
  std::unique_ptr<http::KvRoutes> http_routes_;
  std::unique_ptr<http::HttpServer> http_;
  std::string http_bound_;
  std::map<std::uint64_t, std::uint64_t> heartbeat_sent_;  // peer -> uv_now ms (leader, loop)
  std::chrono::steady_clock::time_point install_started_{};

  // Loop state.
  bool persisting_ = false;
  bool flushing_ = false;
  bool snapshotting_ = false;
  bool mapping_in_ = false;                // a map_in job is on the scan thread
  std::uint64_t freed_since_trim_ = 0;     // overlay bytes retired since the last heap trim
  std::atomic<bool> cancel_scans_{false};  // any thread reads: stopping, so scans end early
  std::uint64_t snapshot_saves_ = 0;       // kvc-ctl snapshot save jobs on the worker threads
  bool stopping_ = false;
  bool stopped_ = false;
  bool failed_ = false;                          // fatal() ran: no more writes; shutdown follows
  std::shared_ptr<PersistJob> install_waiting_;  // waits for a flush to finish
  raft::HardState synced_hard_state_;
  // The hard state of Readys that changed only the commit index: not written by a disk job of
  // its own (the commit index needs no fsync: it is recomputed after a crash, and never below
  // the state's flushed index), but with the next job that writes entries, or at a clean stop.
  std::optional<raft::HardState> unwritten_commit_;
  std::map<std::uint64_t, Waiter> waiters_;  // by log index
  std::uint64_t request_seq_ = 0;
  std::vector<PendingRead> unsent_reads_;
  // Storage of a served batch, kept for the next one (up to kSpareReadsMax reads).
  std::vector<PendingRead> spare_reads_;
  static constexpr std::size_t kSpareReadsMax = 4096;
  std::deque<ReadBatch> read_batches_;
  std::uint64_t read_seq_ = 0;
  std::map<std::uint64_t, Watcher> watchers_;  // by watcher key
  // The newest group (its watcher key) of each connection, key and options, for joining; an
  // entry may name a watcher since erased (checked at use, dropped with its connection).
  std::map<WatchGroupKey, std::uint64_t> watch_groups_;
  // The shared watch feed (watch_hub.cc): every event at positions [feed_from_, feed_end_),
  // in order, read once for all watchers.
  struct FeedPos {
    std::uint64_t revision = 0;
    std::uint32_t sequence = 0;
    friend auto operator<=>(const FeedPos&, const FeedPos&) = default;
  };
  std::deque<storage::Event> feed_;
  FeedPos feed_from_;
  FeedPos feed_end_;  // revision 0: not started
  std::size_t feed_bytes_ = 0;
  wire::Response watch_base_;        // the header of this slice's watch responses
  bool notify_posted_ = false;       // a delivery continuation is queued on the loop
  bool watch_backlog_ = false;       // a watcher waits for its connection's output to drain
  std::uint64_t notify_cursor_ = 0;  // the sweep resumes at the first watcher key >= this
  std::map<std::uint64_t, std::string> watch_outbox_;  // encoded responses, by connection
  std::map<std::uint64_t, LeaderWatcher> leader_watchers_;
  std::deque<raft::Entry> apply_queue_;  // committed, not yet applied (a barrier may hold it)
  std::map<std::uint64_t, std::uint64_t> barrier_hashes_;           // barrier index -> state hash
  std::map<std::uint64_t, std::vector<PendingRead>> hash_waiters_;  // by barrier index
  std::uint64_t pending_barrier_ = 0;  // a barrier whose hash is being taken (flush, then scan)
  std::vector<PendingTransfer> transfers_;
  std::map<std::uint64_t, Transfer> snapshot_sends_;  // by conn id
  bool removed_ = false;

  // Integrity (loop).
  std::string repair_path_;
  bool damaged_ = false;  // Invariant: while true nothing is applied and no read is served
  std::string damage_reason_;
  bool snapshot_after_flush_ = false;  // a follower's repair wants a snapshot at applied
  uv_timer_t scrub_timer_{};
  bool scrubbing_ = false;
  std::uint64_t scrub_passes_ = 0, scrub_records_ = 0, scrub_damaged_ = 0;
  std::chrono::steady_clock::time_point scrub_pass_started_{};
  // A small state is scrubbed whole many times a second: completed passes are logged at info
  // only the first time, after damage, and then at most every kScrubLogEveryMs.
  std::optional<std::uint64_t> scrub_logged_at_ms_;  // now_ms(): simulated time under kvc-sim
  std::uint64_t scrub_logged_damaged_ = 0;
  storage::ScrubCursor scrub_cursor_;
  double scrub_allowance_ = 0;       // bytes the scrubber may still read (token bucket)
  std::uint64_t scrub_last_ms_ = 0;  // uv_now of the last refill
  double scrub_record_bytes_ = 256;  // running estimate of a record's size
  uv_timer_t hash_timer_{};
  bool hash_checking_ = false;
  std::uint64_t hash_check_index_ = 0;
  std::string hash_check_result_;
  std::unique_ptr<client::Client> hash_client_;  // the loop thread makes, uses and replaces it
  bool hash_client_stale_ = false;  // loop thread: TLS reloaded since hash_client_ was made
  // Null where the port speaks plaintext (build_tls).
  std::shared_ptr<const net::TlsContext> client_port_tls_;  // the client port's server side
  std::shared_ptr<const net::TlsContext> http_port_tls_;    // the HTTP port's (https)
  std::shared_ptr<const net::TlsContext> peer_port_tls_;    // the peer port's server side
  std::shared_ptr<const net::TlsContext> peer_dial_tls_;    // this member dialling a peer
  // The permissions file (EngineOptions::permissions_file) as last loaded; null: none, every
  // identity may do everything. Loop thread (swapped by reload_permissions()).
  std::shared_ptr<const Permissions> permissions_;
  std::uint64_t watcher_seq_ = 0;
  struct RefusalLog {  // note_refusal's rate limit, per code
    std::uint64_t last_ms = 0;
    std::uint64_t suppressed = 0;
  };
  std::map<Code, RefusalLog> refusal_logs_;
  std::unordered_map<std::uint64_t, ClientConn> clients_;
  // Connections refused (too many clients), kept open briefly so the refusal is read.
  std::map<net::Connection*, std::pair<std::shared_ptr<net::Connection>, std::uint64_t>> refused_;
  std::uint64_t conn_seq_ = 0;
  std::map<std::uint64_t, storage::Member> learned_;     // from handshakes and conf entries
  std::map<std::uint64_t, std::string> snapshot_files_;  // snapshot index -> path
  storage::SnapshotChunkSource snapshot_chunks_;         // transfers to followers in progress
  // A received snapshot's file being checked before its last chunk is stepped, and the
  // snapshot chunks that arrived meanwhile (check_received_snapshot).
  bool snapshot_check_running_ = false;
  std::deque<raft::Message> held_snapshot_chunks_;
  static constexpr std::size_t kHeldSnapshotChunksMax = 8;
  std::uint64_t last_leader_ = 0;
  std::uint64_t ready_at_commit_ = 0;  // caught up once applied reaches this
  std::uint64_t replay_to_ = 0;        // the commit index restored at start (WAL replay)
  std::uint64_t last_flush_ms_ = 0;
  std::uint64_t storage_written_at_start_ = 0;  // this process's write_bytes when it started
  std::string incoming_snapshot_path_;
  std::function<void()> shutdown_done_;

  // The leader's lease clock (lease_service.cc; loop thread, leader only, empty otherwise).
  struct LeaseClock {
    std::uint64_t deadline_ms = 0;     // uv_now ms at which the lease expires
    std::uint64_t revoke_sent_ms = 0;  // when a revoke was proposed for it, 0: none yet
  };
  std::map<std::uint64_t, LeaseClock> lease_clock_;  // by lease id
  bool lease_clock_running_ = false;
  std::uint64_t lease_clock_epoch_ = 0;  // the state's lease_epoch() the clock last followed

  // Shared with other threads.
  mutable std::mutex mu_;
  LeaderInfo leader_info_;                                                // guarded by mu_
  std::vector<std::function<void(const LeaderInfo&)>> leader_callbacks_;  // guarded by mu_
  Status failure_;                                                        // guarded by mu_
  bool finished_ = false;                                                 // guarded by mu_
  std::condition_variable finished_cv_;
  std::atomic<bool> ready_{false};
  // The forwarder (forwarder()), made for forwarder_addr_, stale after a TLS reload; replaced
  // ones wait in retired_forwarders_ until their last caller is done. All guarded by mu_.
  struct ForwarderSlot {
    std::unique_ptr<client::Client> client;
    // Callers hold the client through pointers that share this count (the aliasing
    // shared_ptr constructor), not the client itself: dropping one on any thread (the
    // client's own included) never destroys the client, which only forwarder() and close() do.
    std::shared_ptr<int> users = std::make_shared<int>(0);
  };
  std::unique_ptr<ForwarderSlot> forwarder_;
  std::string forwarder_addr_;
  bool forwarder_stale_ = false;
  std::vector<std::unique_ptr<ForwarderSlot>> retired_forwarders_;
};

}  // namespace kvc::server
