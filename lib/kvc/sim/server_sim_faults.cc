// The server simulation's faults (server_sim_internal.h): the schedule of crashes, clean stops,
// partitions, cuts and loss bursts; membership changes and transfers through the leader's
// admin path; damaged state values and disk faults; healing and the liveness probe.
#include "kvc/sim/server_sim_internal.h"

namespace kvc::sim::server_cluster {

void ServerSim::fault() {
  if (healed_ || !result_.ok) return;
  const std::uint64_t pick = rand(100);
  int down = 0;
  for (const Slot& s : slots_) down += s.in_use && !s.member ? 1 : 0;
  const int max_down = (o_.members - 1) / 2;
  // Each fault is numbered (sim_minimize.h); a suppressed one draws the same numbers.
  if (pick < 25 && down < max_down) {
    Slot& s = slots_[rand(slots_.size())];
    if (s.member) {
      if (take_fault("crash", [&] { return s.name; })) {
        crash_member(s, true);
        restart_later(s, 20'000 + rand(chance(20) ? 2'000'000 : 400'000));
      } else {
        (void)rand(chance(20) ? 2'000'000 : 400'000);
      }
    }
  } else if (pick < 40 && down < max_down) {
    if (Slot* l = leader_slot()) {
      if (take_fault("crash", [&] { return "leader " + l->name; })) {
        crash_member(*l, true);
        restart_later(*l, 20'000 + rand(600'000));
      } else {
        (void)rand(600'000);
      }
    }
  } else if (pick < 50) {
    Slot& s = slots_[rand(slots_.size())];
    if (s.member && !s.stopping && take_fault("clean-stop", [&] { return s.name; })) {
      trace(s.name + " stopping cleanly");
      ++result_.stats.clean_restarts;
      s.stopping = true;
      enter(s.index);
      s.member->stop();
      after_event(s.index);
    }
  } else if (pick < 70) {
    // A partition: one member alone, or a random split; healed after a while.
    std::vector<int> groups(group_of_.size());
    for (std::size_t i = 0; i < groups.size(); ++i) {
      groups[i] = chance(50) ? 1 : 0;
    }
    if (chance(50)) {
      std::fill(groups.begin(), groups.end(), 0);
      groups[rand(groups.size())] = 1;
    }
    const std::uint64_t until = now_us_ + 50'000 + rand(1'000'000);
    if (take_fault("partition", [&] {
          std::string side;
          for (std::size_t i = 0; i < groups.size(); ++i) {
            if (groups[i] == 1 && slots_[i].in_use)
              side += (side.empty() ? "" : ",") + slots_[i].name;
          }
          return "side " + (side.empty() ? std::string("none") : side) +
                 " until t=" + std::to_string(until);
        })) {
      ++result_.stats.partitions;
      group_of_ = std::move(groups);
      trace("partition");
      at(until, [this] {
        std::fill(group_of_.begin(), group_of_.end(), 0);
        trace("partition healed");
      });
    }
  } else if (pick < 78) {
    const int a = static_cast<int>(rand(slots_.size()));
    const int b = static_cast<int>(rand(slots_.size()));
    if (a != b) {
      const std::uint64_t until = now_us_ + 50'000 + rand(800'000);
      if (take_fault("one-way-cut", [&] {
            return slots_[static_cast<std::size_t>(a)].name + " -> " +
                   slots_[static_cast<std::size_t>(b)].name + " until t=" + std::to_string(until);
          })) {
        cut_.insert({a, b});
        at(until, [this, a, b] { cut_.erase({a, b}); });
      }
    }
  } else if (pick < 86) {
    const int percent = static_cast<int>(rand(30));
    const std::uint64_t until = now_us_ + 50'000 + rand(500'000);
    if (take_fault("loss-burst", [&] {
          return std::to_string(percent) + "% of messages until t=" + std::to_string(until);
        })) {
      drop_percent_ = percent;
      at(until, [this] { drop_percent_ = 0; });
    }
  } else if (pick < 92 && down < max_down) {
    damage_fault();
  } else if (pick < 96) {
    disk_fault();
  }
  at(now_us_ + 20'000 + rand(250'000), [this] { fault(); });
}

// Membership changes and leadership transfers, through the leader's real admin path.
void ServerSim::admin(wire::Request req, std::function<void(const wire::Response&)> done) {
  Slot* l = leader_slot();
  if (l == nullptr || admin_inflight_) return;
  admin_inflight_ = true;
  const std::uint64_t seq = ++admin_seq_;
  // An answer lost with its member's crash: the outcome is unknown (for an add, the member
  // tries to join), and the next change may go ahead.
  at(now_us_ + 3'000'000, [this, seq, done] {
    if (admin_seq_ != seq || !admin_inflight_) return;
    admin_inflight_ = false;
    wire::Response lost;
    lost.code = Code::kTimeout;
    lost.message = "the answer was lost with its member";
    done(lost);
  });
  trace(std::string("admin ") + std::string(wire::op_name(req.op)) + " " + req.name + " " +
        std::to_string(req.member_id) + " -> " + l->name);
  req.timeout_ms = 2000;
  const int i = l->index;
  enter(i);
  l->member->submit(std::move(req), [this, seq, done](wire::Response r) {
    if (admin_seq_ != seq || !admin_inflight_) return;  // already given up on
    admin_inflight_ = false;
    trace("admin answered: " + std::string(code_name(r.code)) + " " + r.message);
    done(r);
  });
  after_event(i);
}

void ServerSim::membership_tick() {
  if (healed_ || !result_.ok) return;
  membership_fault();
  at(now_us_ + 50'000 + rand(300'000), [this] { membership_tick(); });
}

void ServerSim::membership_fault() {
  Slot* l = leader_slot();
  if (l == nullptr || admin_inflight_) return;
  const raft::ConfState conf = l->member->node().conf_state();
  const std::size_t total = conf.voters.size() + conf.learners.size();
  std::vector<std::uint64_t> all(conf.voters.begin(), conf.voters.end());
  all.insert(all.end(), conf.learners.begin(), conf.learners.end());
  const std::uint64_t kind = rand(4);
  wire::Request req;
  if (kind == 0 && total < static_cast<std::size_t>(o_.members + kSpareSlots) &&
      o_.members + next_name_ < kMaxNames) {
    auto free = std::find_if(slots_.begin(), slots_.end(), [](const Slot& x) { return !x.in_use; });
    if (free == slots_.end()) return;
    if (!take_fault("add-member", [&] {
          return "m" + std::to_string(o_.members + next_name_ + 1) + " -> " + l->name;
        })) {
      (void)chance(60);  // learner or voter
      return;
    }
    Slot& s = *free;
    name_slot(s, "m" + std::to_string(o_.members + ++next_name_), "existing");
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberAdd;
    req.name = s.name;
    req.peer_addr = s.options.listen_peer;
    req.client_addr = s.options.listen_client;
    req.learner = chance(60);
    const int i = s.index;
    admin(std::move(req), [this, i](const wire::Response& r) {
      Slot& sl = slots_[static_cast<std::size_t>(i)];
      if (r.code == Code::kOk || r.code == Code::kTimeout) {
        start_added(i);
      } else {
        sl.in_use = false;
      }
    });
    return;
  }
  if (kind == 1 && !conf.learners.empty()) {
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberPromote;
    req.member_id = conf.learners[rand(conf.learners.size())];
  } else if (kind == 2 && total > static_cast<std::size_t>(o_.members)) {
    ++result_.stats.conf_changes;
    req.op = wire::Op::kMemberRemove;
    req.member_id = all[rand(all.size())];
  } else if (kind == 3 && conf.voters.size() > 1) {
    ++result_.stats.transfers;
    req.op = wire::Op::kTransferLeader;
    req.member_id = conf.voters[rand(conf.voters.size())];
  } else {
    return;
  }
  const char* kinds[] = {"", "promote", "remove-member", "transfer"};
  if (!take_fault(kinds[kind], [&] { return std::to_string(req.member_id) + " -> " + l->name; }))
    return;
  admin(std::move(req), [](const wire::Response&) {});
}

// An added member starts once the cluster knows it (its join retries until some member does).
void ServerSim::start_added(int slot) {
  Slot& s = slots_[static_cast<std::size_t>(slot)];
  if (s.started || s.join_tries > 0) return;
  s.join_tries = 40;
  restart_later(s, 1000 + rand(200'000));
}

// A member that learned it was removed stops for good; its slot may hold a new member later.
void ServerSim::free_removed(Slot& s, const std::string& why) {
  trace(s.name + " removed: " + why);
  ++result_.stats.removed;
  crash_member(s, false);
  slot_of_id_.erase(s.id);
  s.in_use = false;
}

// A bit flipped in a value a client wrote, in a stopped member's LMDB state (disk_faults.h):
// the member must find it (a read, an apply, a snapshot or the scrubber), stop serving and
// applying, and repair itself from the leader; no client may ever see the damaged value.
void ServerSim::damage_fault() {
  // Within the fault model: a majority of the voters keeps a clean state, so one damaged value
  // at a time, and only among three voters or more.
  Slot* l = leader_slot();
  if (l == nullptr || l->member->node().conf_state().voters.size() < 3) return;
  for (const Slot& x : slots_) {
    if (x.damage_pending || (x.member && x.member->damaged())) return;
  }
  Slot& s = slots_[rand(slots_.size())];
  if (!s.member) return;
  const bool on = take_fault("damage", [&] { return "a stored value of " + s.name; });
  if (on) crash_member(s, true);
  std::vector<std::string> keys(std::begin(kKeys), std::end(kKeys));
  for (std::size_t i = keys.size(); i > 1; --i) std::swap(keys[i - 1], keys[rand(i)]);
  if (chance(75)) keys.insert(keys.begin(), kColdKey);  // mostly the cold key, when stored
  if (!on) {
    (void)rand(300'000);  // the restart
    return;
  }
  // The harness's own offline check of the damage must not run with a mutated state reader
  // (the switch is process-wide): it is off while the damage is made and checked.
#ifdef KVC_MUTATIONS
  const storage::StateMutation mutation = storage::g_state_mutation;
  storage::g_state_mutation = storage::StateMutation::kNone;
#endif
  Result<DamagedValue> d = damage_stored_value(s.dir, keys);
#ifdef KVC_MUTATIONS
  storage::g_state_mutation = mutation;
#endif
  if (d.ok()) {
    ++result_.stats.damages;
    s.damage_pending = true;
    damaged_slot_ = s.index;
    damaged_key_ = d->key;
    damaged_read_until_ = now_us_ + 500'000;
    trace(s.name + " damaged key " + d->key + ": " + d->value + " -> " + d->damaged);
  } else {
    trace(s.name + " not damaged: " + d.status().message());
  }
  restart_later(s, 10'000 + rand(300'000));
}

// The simulated disk's faults: an fsync of the WAL fails (the member must stop), or a member
// restarts and reads a flipped bit back (the WAL's checksums must catch it: it refuses to start,
// or drops the record as a torn tail, and then must not vote on what it lost).
void ServerSim::disk_fault() {
  Slot& s = slots_[rand(slots_.size())];
  if (!s.member) return;
  if (chance(50)) {
    if (s.sync_fault > 0) return;  // one at a time: the last one has not struck yet
    if (!take_fault("sync-failure", [&] { return s.name + " next WAL sync"; })) return;
    trace(s.name + " next WAL sync fails");
    ++result_.stats.sync_faults;
    s.sync_fault = 1;
    fs_->fail_next_syncs(s.dir + "/wal", 1);
    return;
  }
  if (!take_fault("read-flip", [&] { return s.name + " WAL, at its next start"; })) {
    (void)rand(300'000);  // the restart
    return;
  }
  crash_member(s, true);
  trace(s.name + " reads a flipped bit at its next start");
  ++result_.stats.read_faults;
  s.read_fault = true;
  fs_->flip_next_reads(s.dir + "/wal", 1);
  restart_later(s, 10'000 + rand(300'000));
}

void ServerSim::heal() {
  healed_ = true;
  trace("heal");
  std::fill(group_of_.begin(), group_of_.end(), 0);
  cut_.clear();
  drop_percent_ = 0;
  for (Slot& s : slots_) {
    if (s.member || !s.in_use) continue;
    if (s.started) {
      restart_later(s, 1000);
    } else {
      start_added(s.index);  // added, its answer not in yet: it joins if the add committed
    }
  }
  probe();
}

// After healing: a write must commit (the liveness check).
void ServerSim::probe() {
  if (probe_ok_ || !result_.ok) return;
  if (!probe_inflight_) {
    Slot* l = leader_slot();
    Slot* target = l != nullptr ? l : &slots_[rand(slots_.size())];
    if (target->member && !target->member->stopped()) {
      probe_inflight_ = true;
      wire::Request req;
      req.op = wire::Op::kPut;
      req.key = "probe";
      req.value = "p" + std::to_string(++probe_seq_);
      req.timeout_ms = 1000;
      const std::uint64_t inc = target->incarnation;
      const int i = target->index;
      enter(i);
      target->member->submit(std::move(req), [this, i, inc](wire::Response r) {
        if (slots_[static_cast<std::size_t>(i)].incarnation != inc) return;
        probe_inflight_ = false;
        if (r.code == Code::kOk) probe_ok_ = true;
      });
      after_event(i);
    }
  }
  at(now_us_ + 50'000, [this] {
    // A probe lost with its member's crash is retried.
    probe_inflight_ = false;
    probe();
  });
}

}  // namespace kvc::sim::server_cluster
