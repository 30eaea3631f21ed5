// The server simulation (server_sim.h). One ServerSim per run: a time-ordered event queue
// (simulated microseconds, then sequence), member slots (the SimMember of the current
// incarnation, its executors and its network endpoint), clients, the fault schedule and the
// checks. A member's executors are FIFO queues, each run by events at seeded delays (the loop's
// jobs within microseconds, disk and flush jobs after a simulated fsync), so the loop, the disk
// thread and the flush thread interleave as they do in kvc-node, reproducibly.
#include "kvc/sim/server_sim.h"

#include "kvc/sim/server_sim_internal.h"

namespace kvc::sim {

const std::vector<std::string>& server_mutations() {
#ifdef KVC_MUTATIONS
  static const std::vector<std::string> kMutations = {
      "ack-before-commit",    "ack-before-apply",  "read-before-applied",   "local-reads",
      "skip-wal-replay",      "unverified-reads",  "persist-without-fsync", "marker-before-flush",
      "follower-lease-clock", "no-lease-grace",    "txn-applies-half",      "txn-wrong-branch",
      "txn-torn-read",        "diverge-every-put",
  };
#else
  // A build without the planted bugs (the sanitizer build) runs the real server only.
  static const std::vector<std::string> kMutations;
#endif
  return kMutations;
}

namespace server_cluster {

void SimExecutor::post(std::function<void()> job) {
  jobs_.push_back(std::move(job));
  if (!armed_) arm();
}

void SimExecutor::arm() {
  armed_ = true;
  const std::uint64_t epoch = epoch_;
  sim_->at(sim_->now() + sim_->delay_for(kind_), [this, epoch] { run_one(epoch); });
}

void SimExecutor::run_one(std::uint64_t epoch) {
  if (epoch != epoch_ || jobs_.empty()) return;
  armed_ = false;
  std::function<void()> job = std::move(jobs_.front());
  jobs_.pop_front();
  sim_->enter(slot_);
  job();
  if (epoch != epoch_) return;  // the job crashed the member (it never does today)
  if (!jobs_.empty() && !armed_) arm();
  if (kind_ == Kind::kLoop) sim_->after_event(slot_);
}

void SimNet::send(const raft::Message& m) { sim_->send(slot_, m); }

Status ServerSim::make_root() {
  std::string base = o_.data_root;
  if (base.empty()) {
    std::error_code ec;
    base = std::filesystem::is_directory("/dev/shm", ec) ? "/dev/shm" : "";
    if (base.empty()) {
      const char* tmp = std::getenv("TMPDIR");
      base = tmp != nullptr && *tmp != '\0' ? tmp : "/tmp";
    }
  }
  std::string pattern = base + "/kvc-server-sim-XXXXXX";
  if (::mkdtemp(pattern.data()) == nullptr) {
    return Status::io_error("cannot make a temporary directory under " + base);
  }
  root_ = pattern;
  // Member names are m1, m2, ...: their state directories stay on tmpfs (LMDB cannot sit on the
  // simulated disk; it has its own durability contract, kept by its fully synced commits).
  std::vector<std::string> passthrough;
  for (int k = 1; k <= kMaxNames; ++k)
    passthrough.push_back(root_ + "/m" + std::to_string(k) + "/state");
  fs_ = std::make_unique<storage::SimFileSystem>(std::vector<std::string>{root_}, rng_.next_u64(),
                                                 std::move(passthrough));
  fs_guard_.emplace(fs_.get());
  return Status();
}

void ServerSim::make_slots() {
  for (int i = 0; i < o_.members; ++i) {
    if (i > 0) founders_ += ",";
    founders_ += "m" + std::to_string(i + 1) + "=127.0.0.1:" + std::to_string(10001 + i);
  }
  // Founders, then spare slots for members added later (kMaxAdded at a time).
  const int slots = o_.members + kSpareSlots;
  slots_.resize(static_cast<std::size_t>(slots));
  group_of_.assign(slots_.size(), 0);
  for (int i = 0; i < slots; ++i) {
    Slot& s = slots_[static_cast<std::size_t>(i)];
    s.index = i;
    s.loop = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kLoop);
    s.disk = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kDisk);
    s.flush = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kFlush);
    s.scrub = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kFlush);
    s.scan = std::make_unique<SimExecutor>(this, i, SimExecutor::Kind::kFlush);
    s.net = std::make_unique<SimNet>(this, i);
    s.env.loop = s.loop.get();
    s.env.disk = s.disk.get();
    s.env.flush = s.flush.get();
    s.env.scrub = s.scrub.get();
    s.env.scan = s.scan.get();
    s.env.transport = s.net.get();
    s.env.now_ms = [this] { return now_us_ / 1000; };
    s.env.random = [this] { return rng_.next_u64(); };
    s.env.join = [this](const std::string& name) { return join(name); };
    if (i < o_.members) name_slot(s, "m" + std::to_string(i + 1), "new");
  }
}

// Gives a slot a member of its own: a name, an empty data directory, its options.
void ServerSim::name_slot(Slot& s, const std::string& name, const std::string& state) {
  s.name = name;
  s.dir = root_ + "/" + name;
  s.in_use = true;
  s.started = false;
  s.sync_fault = 0;
  s.read_fault = false;
  s.damage_pending = false;
  std::error_code ec;
  std::filesystem::create_directories(s.dir, ec);  // on tmpfs: the parent of its state/
  server::EngineOptions& eo = s.options;
  eo = server::EngineOptions();
  eo.name = name;
  eo.data_dir = s.dir;
  // Addresses by name (never bound): a slot's next member must not reuse its predecessor's.
  const int number = std::stoi(name.substr(1));
  eo.listen_peer = "127.0.0.1:" + std::to_string(10000 + number);
  eo.listen_client = "127.0.0.1:" + std::to_string(20000 + number);
  eo.initial_cluster = founders_;
  if (state == "existing") eo.initial_cluster += "," + name + "=" + eo.listen_peer;
  eo.initial_cluster_state = state;
  eo.cluster_token = "sim";
  eo.tick_ms = kTickMs;
  eo.election_ticks = 10;
  eo.heartbeat_ticks = 1;
  eo.flush_interval_ms = kFlushIntervalMs;
  eo.retained_entries = 40;  // followers that fall behind need a snapshot
  eo.request_timeout_ms = 1500;
  eo.wal_segment_bytes = 64 << 10;
  eo.state_map_size = 64ull << 20;
  eo.snapshots_kept = 2;
  eo.history_revisions = 1000;
  eo.history_bytes = 1 << 20;
  eo.scrub_bytes_per_second = 256 << 10;  // finds damage nobody reads
  eo.hash_check_interval_ms = 0;
  // "diverge-every-put" is planted in one member only (its state must differ from the others').
  eo.test_mutation = o_.mutation == "diverge-every-put" && s.index != 1 ? "" : o_.mutation;
}

// A joining member asks the members it can reach which id the cluster gave it.
Result<server::JoinAnswer> ServerSim::join(const std::string& name) {
  for (Slot& s : slots_) {
    if (!s.member || s.member->stopped() || s.name == name) continue;
    Result<std::uint64_t> id = s.member->lookup_joining(name);
    if (!id.ok()) continue;
    server::JoinAnswer a;
    a.member_id = *id;
    a.cluster_id = s.member->cluster_id();
    a.answered_by = {s.id, s.name, s.options.listen_peer, s.options.listen_client};
    return a;
  }
  return Status::unavailable("no member knows '" + name + "' yet");
}

Status ServerSim::start_member(Slot& s) {
  ++s.incarnation;
  s.stopping = false;
  s.checked_commit = 0;
  s.net->forget_removed();
  enter(s.index);
  Result<std::unique_ptr<SimMember>> m = SimMember::open(s.options, s.env);
  if (!m.ok()) return m.status();
  s.member = std::move(*m);
  s.started = true;
  s.id = s.member->id();
  slot_of_id_[s.id] = s.index;
  trace(s.name + " started incarnation=" + std::to_string(s.incarnation));
  schedule_timers(s);
  return Status();
}

// The tick, flush and scrub timers of one incarnation (they stop with it).
void ServerSim::schedule_timers(Slot& s) {
  const std::uint64_t inc = s.incarnation;
  const int i = s.index;
  at(now_us_ + 1 + rand(kTickMs * 1000), [this, i, inc] { fire_timer(i, inc, Timer::kTick); });
  at(now_us_ + 1 + rand(kFlushIntervalMs * 500),
     [this, i, inc] { fire_timer(i, inc, Timer::kFlush); });
  at(now_us_ + 1 + rand(100'000), [this, i, inc] { fire_timer(i, inc, Timer::kScrub); });
}

// One timer of incarnation `inc` of slot `i` fires, and is set again (each firing schedules the
// next as a new event, so no event refers to itself).
void ServerSim::fire_timer(int i, std::uint64_t inc, Timer which) {
  Slot& sl = slots_[static_cast<std::size_t>(i)];
  if (sl.incarnation != inc || !sl.member) return;
  enter(i);
  std::uint64_t period_us = 0;
  switch (which) {
    case Timer::kTick:
      sl.member->tick();
      period_us = kTickMs * 1000;
      break;
    case Timer::kFlush:
      sl.member->flush_timer();
      period_us = kFlushIntervalMs * 500;
      break;
    case Timer::kScrub:
      sl.member->scrub_timer();
      period_us = 100'000;
      break;
  }
  after_event(i);
  at(now_us_ + period_us, [this, i, inc, which] { fire_timer(i, inc, which); });
}

void ServerSim::crash_member(Slot& s, bool count) {
  if (!s.member) return;
  if (count) ++result_.stats.crashes;
  trace(s.name + " crashed");
  // The executors' jobs hold the member: they go first.
  s.loop->clear();
  s.disk->clear();
  s.flush->clear();
  s.scrub->clear();
  s.scan->clear();
  s.member.reset();
  if (fs_) fs_->crash(s.dir);  // writes it did not sync are lost, kept, or torn
  ++s.incarnation;             // timers and deliveries of the old incarnation do nothing
  // Requests it held: writes have an unknown outcome, reads simply failed.
  for (InFlightOp& f : inflight_) {
    if (f.done || f.slot != s.index) continue;
    f.done = true;
    if (f.kind == InFlightOp::Kind::kTxn) {
      finish_txn(f, nullptr);  // unknown
    } else if (f.kind == InFlightOp::Kind::kLease) {
      ClientState& holder = clients_[static_cast<std::size_t>(f.client)];
      if (f.req.op == wire::Op::kLeaseGrant && holder.lease == f.req.lease) holder.lease = 0;
    } else {
      check::Operation& op = history_[f.op];
      op.outcome =
          op.kind == check::OpKind::kGet ? check::Outcome::kFailed : check::Outcome::kUnknown;
      op.response_time = op.outcome == check::Outcome::kUnknown ? check::kNever : now_us_;
    }
    clients_[static_cast<std::size_t>(f.client)].busy = false;
    const int c = f.client;
    at(now_us_ + 1000 + rand(5000), [this, c] { next_op(clients_[static_cast<std::size_t>(c)]); });
  }
}

void ServerSim::restart_later(Slot& s, std::uint64_t after_us) {
  const int i = s.index;
  at(now_us_ + after_us, [this, i] {
    Slot& sl = slots_[static_cast<std::size_t>(i)];
    if (sl.member || !sl.in_use) return;
    Status st = start_member(sl);
    if (st.ok()) {
      if (sl.join_tries > 0) ++result_.stats.joined;
      sl.join_tries = 0;
      return;
    }
    sl.member.reset();
    if (st.message().find("was removed from the cluster") != std::string::npos) {
      free_removed(sl, st.message());
    } else if (sl.read_fault || sl.sync_fault > 0) {
      // A bit flipped on a read, or a failed sync, during start-up: refused, as it must be;
      // the next start reads the disk again.
      trace(sl.name + " refused to start after a disk fault: " + st.message());
      if (sl.read_fault) {
        sl.read_fault = false;
      } else {
        --sl.sync_fault;
      }
      restart_later(sl, 10'000 + rand(100'000));
    } else if (sl.join_tries > 0) {
      // Added, but no member it can reach has applied the addition yet: ask again later.
      if (--sl.join_tries == 0) {
        trace(sl.name + " gave up joining: " + st.message());
        sl.in_use = false;
      } else {
        restart_later(sl, 50'000);
      }
    } else {
      violation("member " + sl.name + " could not restart: " + st.to_string());
    }
  });
}

Slot* ServerSim::leader_slot() {
  Slot* best = nullptr;
  for (Slot& s : slots_) {
    if (!s.member || s.member->stopped()) continue;
    const raft::Node& n = s.member->node();
    if (n.role() == raft::Role::kLeader &&
        (best == nullptr || n.term() > best->member->node().term())) {
      best = &s;
    }
  }
  return best;
}

// After every event that ran member code: the loop's check phase, then the checks.
void ServerSim::after_event(int slot) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (!s.member) return;
  if (!s.member->stopped()) s.member->check();
  if (s.member->stopped()) {
    const Status failure = s.member->failure();
    if (!failure.ok() && s.member->removed()) {
      free_removed(s, failure.message());
      return;
    }
    if (!failure.ok() && s.sync_fault > 0) {
      // A failed fsync must stop the member (it may not go on as if the data were durable);
      // it is restarted like a crashed one.
      trace(s.name + " stopped after a failed sync: " + failure.message());
      --s.sync_fault;
      crash_member(s, false);
      restart_later(s, 10'000 + rand(300'000));
      return;
    }
    if (!failure.ok()) {
      violation("member " + s.name + " stopped itself: " + failure.to_string());
      crash_member(s, false);
      return;
    }
    if (s.stopping) {
      trace(s.name + " stopped cleanly");
      crash_member(s, false);  // nothing is left to lose: it flushed and synced
      restart_later(s, 10'000 + rand(300'000));
    }
    return;
  }
  check_member(s);
}

void ServerSim::check_member(Slot& s) {
  const bool damaged = s.member->damaged();
  if (damaged && !s.was_damaged) ++result_.stats.damage_detected;
  if (!damaged && s.was_damaged) {
    ++result_.stats.repairs;
    s.damage_pending = false;
  }
  s.was_damaged = damaged;
  const raft::Node& n = s.member->node();
  if (n.role() == raft::Role::kLeader) {
    auto [it, fresh] = leader_of_term_.try_emplace(n.term(), s.id);
    if (fresh) {
      ++result_.stats.elections;
      leader_since_ = now_us_;
    }
    if (it->second != s.id) {
      auto other = slot_of_id_.find(it->second);
      violation("two leaders in term " + std::to_string(n.term()) + ": " +
                (other != slot_of_id_.end() ? slots_[static_cast<std::size_t>(other->second)].name
                                            : std::to_string(it->second)) +
                " and " + s.name);
    }
  }
  const std::uint64_t commit = n.commit();
  result_.stats.committed = std::max(result_.stats.committed, commit);
  const raft::RaftLog& log = n.log();
  for (std::uint64_t i = std::max(s.checked_commit + 1, log.first_index());
       i <= commit && i <= log.last_index(); ++i) {
    const raft::Entry& e = log.at(i);
    const std::pair<std::uint64_t, std::size_t> mine{e.term, std::hash<std::string>{}(e.data)};
    auto [it, fresh] = committed_.try_emplace(i, mine);
    if (fresh) {
      if (e.type == raft::EntryType::kNormal && !e.data.empty()) committed_data_[i] = e.data;
      committed_entry(e);
    }
    if (!fresh && it->second != mine) {
      violation("committed entry " + std::to_string(i) + " differs on " + s.name + " (term " +
                std::to_string(e.term) + ", first seen with term " +
                std::to_string(it->second.first) + ")");
    }
  }
  s.checked_commit = std::max(s.checked_commit, commit);
}

void ServerSim::send(int from, const raft::Message& m) {
  ++result_.stats.messages;
  if (m.type == raft::MessageType::kSnapshot) ++result_.stats.snapshot_chunks;
  if (m.type == raft::MessageType::kSnapshotResp && m.snapshot_damaged) {
    ++result_.stats.snapshots_refused;
  }
  auto to_it = slot_of_id_.find(m.to);
  if (to_it == slot_of_id_.end()) return;
  const int to = to_it->second;
  Slot& target = slots_[static_cast<std::size_t>(to)];
  if (!target.member || partitioned(from, to) || (drop_percent_ > 0 && chance(drop_percent_))) {
    if (!target.member && chance(30)) {
      // The connection is refused: the sender's transport says so (as PeerTransport does).
      const std::uint64_t inc = slots_[static_cast<std::size_t>(from)].incarnation;
      const std::uint64_t peer = m.to;
      at(now_us_ + 200 + rand(2000), [this, from, inc, peer] {
        Slot& sl = slots_[static_cast<std::size_t>(from)];
        if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
        enter(from);
        sl.member->unreachable(peer);
        after_event(from);
      });
    }
    return;
  }
  if (target.net->removed().count(slots_[static_cast<std::size_t>(from)].id) != 0) {
    // The target refuses a removed member's connection, saying why (PeerTransport does).
    const std::uint64_t inc = slots_[static_cast<std::size_t>(from)].incarnation;
    const std::string by = target.name;
    at(now_us_ + 200 + rand(2000), [this, from, inc, by] {
      Slot& sl = slots_[static_cast<std::size_t>(from)];
      if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
      enter(from);
      sl.member->told_removed(by);
      after_event(from);
    });
    return;
  }
  const std::uint64_t inc = target.incarnation;
  raft::Message delivered = m;
  if (o_.snapshot_damage && m.type == raft::MessageType::kSnapshot && !m.chunk.empty() &&
      chance(3)) {
    // A chunk damaged in transit (a fault): one bit flipped.
    const std::size_t byte = rand(m.chunk.size());
    const int bit = static_cast<int>(rand(8));
    if (take_fault("damaged snapshot chunk", [&] { return describe(m); })) {
      delivered.chunk[byte] = static_cast<char>(delivered.chunk[byte] ^ (1 << bit));
      ++result_.stats.snapshot_chunks_damaged;
    }
  }
  // A duplicate and a delay spike are faults (numbered, sim_minimize.h); suppressed, they draw
  // the same numbers and the message goes once, at a usual latency.
  const int copies = chance(2) ? 2 : 1;
  const bool dup_on = copies == 2 && take_fault("duplicate", [&] { return describe(m); });
  for (int c = 0; c < copies; ++c) {
    const bool sent = c == 0 || dup_on;
    std::uint64_t latency = 0;
    if (chance(5)) {
      const std::uint64_t slow = rand(30'000);
      const bool on = sent && take_fault("delay", [&] {
                        return "+" + std::to_string(slow) + " us " + describe(m);
                      });
      latency = on ? 2000 + slow : 100 + slow % 1500;
    } else {
      latency = 100 + rand(1500);
    }
    if (!sent) break;
    at(now_us_ + latency, [this, to, inc, delivered] {
      Slot& sl = slots_[static_cast<std::size_t>(to)];
      if (sl.incarnation != inc || !sl.member || sl.member->stopped()) return;
      enter(to);
      sl.member->deliver(delivered);
      after_event(to);
    });
  }
}

ServerSimResult ServerSim::run() {
#ifdef KVC_MUTATIONS
  // A process-wide switch a member sets when it runs with "unverified-reads": each run starts
  // without it.
  storage::g_state_mutation = storage::StateMutation::kNone;
#endif
  if (Status s = make_root(); !s.ok()) {
    result_.ok = false;
    result_.violation = "setup: " + s.to_string();
    return result_;
  }
  make_slots();
  for (Slot& s : slots_) {
    if (!s.in_use) continue;
    if (Status st = start_member(s); !st.ok()) {
      result_.ok = false;
      result_.violation = "member " + s.name + " could not start: " + st.to_string();
      return result_;
    }
  }
  clients_.resize(static_cast<std::size_t>(o_.clients));
  for (int i = 0; i < o_.clients; ++i) {
    clients_[static_cast<std::size_t>(i)].id = i;
    at(100'000 + rand(200'000), [this, i] { next_op(clients_[static_cast<std::size_t>(i)]); });
  }
  at(200'000 + rand(300'000), [this] { fault(); });
  at(300'000 + rand(300'000), [this] { membership_tick(); });
  if (o_.hash_audits) at(400'000 + rand(400'000), [this] { hash_audit_tick(); });
  const std::uint64_t heal_at = o_.fault_ms * 1000;
  const std::uint64_t end_at = heal_at + o_.liveness_ms * 1000;
  heal_at_ = heal_at;
  end_at_ = end_at;
  at(heal_at, [this] { heal(); });
  while (!events_.empty() && result_.ok) {
    Event e = events_.top();
    events_.pop();
    if (e.at > end_at) break;
    now_us_ = std::max(now_us_, e.at);
    ++result_.stats.events;
    e.fn();
    if (healed_ && probe_ok_) {
      bool idle = true;
      for (const InFlightOp& f : inflight_) idle = idle && f.done;
      // Leases whose liveness deadline falls within the run are waited for.
      if (idle && !lease_liveness_pending()) break;
    }
  }
  if (fs_) {
    result_.stats.lost_writes = fs_->stats().lost_changes;
    result_.stats.torn_writes = fs_->stats().torn_writes;
  }
  if (result_.ok && !probe_ok_) {
    violation("no write committed within " + std::to_string(o_.liveness_ms) +
              " ms after the faults healed");
  }
  check_lease_liveness();
  for (InFlightOp& f : inflight_) {
    if (f.done) continue;
    f.done = true;
    if (f.kind == InFlightOp::Kind::kTxn) finish_txn(f, nullptr);
    if (f.kind != InFlightOp::Kind::kKv) continue;
    check::Operation& op = history_[f.op];
    op.outcome =
        op.kind == check::OpKind::kGet ? check::Outcome::kFailed : check::Outcome::kUnknown;
    op.response_time = check::kNever;
  }
  if (o_.record) result_.history = history_;
  if (result_.ok) check_txns();
  if (result_.ok) {
    HistoryCheck hc = check_history_linearizable(history_);
    result_.stats.linearizability_checked = hc.checked;
    if (!hc.ok) violation("history not linearizable: " + hc.explanation);
  }
  return result_;
}

// spdlog is process-wide: the members' lines go to the trace, or nowhere, during a run.
class LogCapture {
 public:
  LogCapture(bool on, std::function<void(std::string_view)> out)
      : saved_(spdlog::default_logger()) {
    auto sink = std::make_shared<TraceSink>(std::move(out));
    auto logger = std::make_shared<spdlog::logger>("kvc-server-sim", sink);
    logger->set_level(on ? spdlog::level::info : spdlog::level::off);
    spdlog::set_default_logger(logger);
  }
  ~LogCapture() { spdlog::set_default_logger(saved_); }

 private:
  std::shared_ptr<spdlog::logger> saved_;
};

}  // namespace server_cluster

ServerSimResult run_server_simulation(const ServerSimOptions& options) {
  // The capture outlives the simulation, so the members' last lines (their crashes at the end)
  // are captured too.
  server_cluster::ServerSim* running = nullptr;
  server_cluster::LogCapture capture(options.trace && options.trace_sink,
                                     [&running](std::string_view line) {
                                       if (running != nullptr) running->member_log(line);
                                     });
  server_cluster::ServerSim sim(options);
  running = &sim;
  return sim.run();
}

}  // namespace kvc::sim
