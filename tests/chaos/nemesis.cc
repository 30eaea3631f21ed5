#include "nemesis.h"

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <thread>

#include "kvc/sim/disk_faults.h"
#include "support/wait.h"

namespace kvc::chaos {
namespace {

struct KindInfo {
  FaultKind kind;
  const char* name;
  const char* group;
  std::uint32_t weight;
  std::uint64_t min_hold_ms, max_hold_ms;
};

// Weights favour what finds bugs in the assembled system: leader loss in every form.
constexpr KindInfo kKinds[] = {
    {FaultKind::kKill, "kill", "kill", 3, 500, 2500},
    {FaultKind::kKillLeader, "kill-leader", "kill", 4, 300, 2000},
    {FaultKind::kKillMajority, "kill-majority", "kill", 1, 800, 2000},
    {FaultKind::kRestart, "restart", "restart", 2, 200, 1500},
    {FaultKind::kPause, "pause", "pause", 2, 1000, 2500},
    {FaultKind::kPauseLeader, "pause-leader", "pause", 3, 1500, 3000},
    {FaultKind::kIsolate, "isolate", "partition", 3, 1200, 3000},
    {FaultKind::kSplit, "split", "partition", 2, 1200, 3000},
    {FaultKind::kOneWay, "one-way", "partition", 2, 1200, 3000},
    {FaultKind::kBlackhole, "blackhole", "partition", 2, 1200, 3000},
    {FaultKind::kLossyLinks, "lossy-links", "net", 2, 1500, 4000},
    {FaultKind::kSlowLinks, "slow-links", "net", 2, 1500, 4000},
    {FaultKind::kSlowDisk, "slow-disk", "disk", 2, 1000, 3000},
    {FaultKind::kTransferLeader, "transfer-leader", "membership", 1, 0, 0},
    {FaultKind::kMemberReplace, "member-replace", "membership", 1, 0, 0},
    // The hold of a rollback is how long the member runs on (and acknowledges writes) after its
    // copy was taken; a damage's, the pause before the next fault.
    {FaultKind::kRollback, "rollback", "integrity", 1, 1500, 4000},
    {FaultKind::kDamage, "damage", "integrity", 1, 1000, 3000},
};

const KindInfo& info(FaultKind kind) {
  for (const KindInfo& k : kKinds) {
    if (k.kind == kind) return k;
  }
  KVC_CHECK(false, "unknown fault kind");
  return kKinds[0];
}

std::string seconds(std::uint64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(ms) / 1000.0);
  return buf;
}

bool not_supported(const wire::Response& r) {
  return r.code == Code::kInvalidArgument && r.message.find("not supported") != std::string::npos;
}

std::string answer(const wire::Response& r) {
  if (r.code == Code::kOk) return "ok";
  return std::string(code_name(r.code)) + " (" + r.message + ")";
}

const wire::MemberInfo* find_member(const std::vector<wire::MemberInfo>& members, std::uint64_t id,
                                    const std::string& name) {
  for (const wire::MemberInfo& m : members) {
    if ((id != 0 && m.id == id) || (!name.empty() && m.name == name)) return &m;
  }
  return nullptr;
}

// How long the nemesis keeps reading the membership to learn a lost answer's outcome. Longer
// than any fault's hold: the change may wait for a member that a fault holds back.
constexpr std::uint64_t kResolveTimeoutMs = 30000;
constexpr std::chrono::milliseconds kPollEvery{50};  // the waits of the integrity faults

}  // namespace

ChangeResolution resolve_change(
    const ChangeProbe& probe,
    const std::function<bool(const std::vector<wire::MemberInfo>&)>& applied,
    std::uint64_t timeout_ms) {
  ChangeResolution out;
  const std::uint64_t deadline = probe.now_ms() + timeout_ms;
  std::string last = "no leader";
  for (int attempt = 1;; ++attempt) {
    const int l = probe.find_leader();
    if (l >= 0) {
      const wire::Response before = probe.call(l, {.op = wire::Op::kMemberList}, 2000);
      if (before.code == Code::kOk && applied(before.members)) {
        out.outcome = ChangeOutcome::kApplied;
        out.members = before.members;
        out.how =
            "outcome read from the membership: applied (attempt " + std::to_string(attempt) + ")";
        return out;
      }
      const wire::Response barrier = probe.call(l, {.op = wire::Op::kHash}, 3000);
      if (barrier.code == Code::kOk) {
        const wire::Response after = probe.call(l, {.op = wire::Op::kMemberList}, 2000);
        if (after.code == Code::kOk) {
          out.outcome =
              applied(after.members) ? ChangeOutcome::kApplied : ChangeOutcome::kNotApplied;
          out.members = after.members;
          out.how = std::string("outcome read from the membership after a barrier at index ") +
                    std::to_string(barrier.revision) + ": " +
                    (out.outcome == ChangeOutcome::kApplied ? "applied" : "not applied") +
                    " (attempt " + std::to_string(attempt) + ")";
          return out;
        }
        last = "membership list: " + answer(after);
      } else {
        last = "barrier: " + answer(barrier);
      }
    }
    if (probe.now_ms() >= deadline) break;
    probe.idle();
  }
  out.how =
      "outcome still unknown after " + std::to_string(timeout_ms) + " ms (last: " + last + ")";
  return out;
}

std::string_view fault_name(FaultKind kind) { return info(kind).name; }

std::vector<FaultKind> all_fault_kinds() {
  std::vector<FaultKind> out;
  for (const KindInfo& k : kKinds) out.push_back(k.kind);
  return out;
}

Result<std::vector<FaultKind>> parse_fault_mix(std::string_view text) {
  if (text == "all") return all_fault_kinds();
  if (text == "none") return std::vector<FaultKind>{};
  std::vector<FaultKind> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const std::string_view item = text.substr(pos, comma - pos);
    bool matched = false;
    for (const KindInfo& k : kKinds) {
      if (item == k.name || item == k.group) {
        if (std::find(out.begin(), out.end(), k.kind) == out.end()) out.push_back(k.kind);
        matched = true;
      }
    }
    if (!matched) {
      return Status::invalid_argument(
          "unknown fault '" + std::string(item) +
          "' (all, none, or kinds and groups: kill, kill-leader, kill-majority, restart, pause, "
          "pause-leader, partition, isolate, split, one-way, blackhole, net, lossy-links, "
          "slow-links, disk, slow-disk, membership, transfer-leader, member-replace, "
          "integrity, rollback, damage)");
    }
    pos = comma + 1;
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string FaultStep::to_string() const {
  std::string s = "t=" + seconds(at_ms) + " " + std::string(fault_name(kind));
  if (hold_ms != 0) s += " hold=" + seconds(hold_ms);
  if (hit_leader) s += " leader";
  if (drop > 0) s += " drop=" + std::to_string(static_cast<int>(drop * 100 + 0.5)) + "%";
  if (delay_ms != 0)
    s += " delay=" + std::to_string(delay_ms) + "ms+" + std::to_string(jitter_ms) + "ms";
  if (disk_delay_ms != 0) s += " fsync+" + std::to_string(disk_delay_ms) + "ms";
  return s;
}

std::vector<FaultStep> make_schedule(std::uint64_t seed, std::uint64_t duration_ms,
                                     const std::vector<FaultKind>& kinds) {
  std::vector<FaultStep> steps;
  if (kinds.empty()) return steps;
  std::mt19937_64 rng(seed * 0x2545f4914f6cdd1dull + 0x6e656d65736973ull);
  auto uniform = [&rng](std::uint64_t lo, std::uint64_t hi) {
    return hi <= lo ? lo : lo + rng() % (hi - lo + 1);
  };
  std::uint64_t total = 0;
  for (FaultKind k : kinds) total += info(k).weight;
  constexpr std::uint64_t kWarmUpMs = 1500;  // a leader and some history first
  std::uint64_t t = kWarmUpMs;
  while (t + 1000 < duration_ms) {
    std::uint64_t roll = rng() % total;
    FaultKind kind = kinds.front();
    for (FaultKind k : kinds) {
      if (roll < info(k).weight) {
        kind = k;
        break;
      }
      roll -= info(k).weight;
    }
    FaultStep s;
    s.at_ms = t;
    s.kind = kind;
    s.hold_ms = uniform(info(kind).min_hold_ms, info(kind).max_hold_ms);
    for (int i = 0; i < 8; ++i) s.picks.push_back(rng());
    s.hit_leader = rng() % 10 < 7;
    // A rolled-back leader is the weaker case (docs/chaos.md): about one rollback in three.
    if (kind == FaultKind::kRollback) s.hit_leader = s.picks.at(5) % 3 == 0;
    if (kind == FaultKind::kLossyLinks) s.drop = static_cast<double>(uniform(5, 40)) / 100.0;
    if (kind == FaultKind::kSlowLinks) {
      s.delay_ms = static_cast<std::uint32_t>(uniform(5, 120));
      s.jitter_ms = static_cast<std::uint32_t>(uniform(0, 60));
    }
    if (kind == FaultKind::kSlowDisk)
      s.disk_delay_ms = static_cast<std::uint32_t>(uniform(20, 250));
    steps.push_back(s);
    // Now and then the next fault starts while this one still holds.
    t += rng() % 10 < 3 ? std::max<std::uint64_t>(200, s.hold_ms / 2)
                        : s.hold_ms + uniform(100, 800);
  }
  return steps;
}

void EventLog::add(std::uint64_t time_us, std::string line) {
  std::lock_guard<std::mutex> lock(mu_);
  lines_.emplace_back(time_us, std::move(line));
}

std::vector<std::pair<std::uint64_t, std::string>> EventLog::lines() const {
  std::lock_guard<std::mutex> lock(mu_);
  return lines_;
}

std::string EventLog::text() const {
  std::string out;
  for (const auto& [t, line] : lines()) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%9.3fs  ", static_cast<double>(t) / 1e6);
    out += "  " + std::string(buf) + line + "\n";
  }
  return out;
}

Nemesis::Nemesis(ChaosCluster& cluster, EventLog& log, Recorder& recorder, NemesisOptions options)
    : cluster_(cluster), log_(log), clock_(recorder), options_(std::move(options)) {}

void Nemesis::note(const std::string& line) { log_.add(clock_.now_us(), line); }

std::string Nemesis::membership_support() const {
  auto say = [](int v) { return v < 0 ? "untried" : v == 0 ? "not supported" : "supported"; };
  return std::string("transfer-leader ") + say(transfer_supported_) + ", member changes " +
         say(membership_supported_);
}

std::vector<int> Nemesis::choose(std::vector<int> from, std::size_t count,
                                 const std::vector<std::uint64_t>& picks, std::size_t offset) {
  std::vector<int> out;
  for (std::size_t i = 0; i < count && !from.empty(); ++i) {
    const std::uint64_t p = picks.empty() ? 0 : picks[(offset + i) % picks.size()];
    const std::size_t k = static_cast<std::size_t>(p % from.size());
    out.push_back(from[k]);
    from.erase(from.begin() + static_cast<std::ptrdiff_t>(k));
  }
  return out;
}

void Nemesis::run(const std::vector<FaultStep>& schedule, std::uint64_t end_ms,
                  const std::function<bool()>& stop) {
  std::size_t next = 0;
  while (!stop()) {
    if (now_ms() >= end_ms) break;
    heal_due();
    // A rollback that is due: it heals and holds every other fault, so the rest of the schedule
    // moves on by the time that took.
    for (std::size_t i = 0; i < active_.size(); ++i) {
      if (active_[i].rollback.empty() || active_[i].heal_at_ms > now_ms()) continue;
      const PendingRollback r = active_[i].rollback.front();
      active_.erase(active_.begin() + static_cast<std::ptrdiff_t>(i));
      const std::uint64_t held = finish_rollback(r);
      held_ms_ += held;
      for (Active& a : active_) a.heal_at_ms += held;
      break;
    }
    const std::uint64_t now = now_ms();
    if (now >= end_ms) break;
    while (next < schedule.size() && schedule[next].at_ms + held_ms_ <= now) {
      const FaultStep& s = schedule[next++];
      Active a;
      a.kind = s.kind;
      if (apply(s, a)) {
        ++counts_[s.kind].applied;
        a.heal_at_ms = now_ms() + s.hold_ms;
        active_.push_back(std::move(a));
      } else {
        ++counts_[s.kind].skipped;
        heal(a);  // whatever part of it was applied
      }
    }
    std::uint64_t wake = std::min(end_ms, now + 50);
    if (next < schedule.size()) wake = std::min(wake, schedule[next].at_ms + held_ms_);
    for (const Active& a : active_) wake = std::min(wake, a.heal_at_ms);
    const std::uint64_t t = now_ms();
    if (wake > t) std::this_thread::sleep_for(std::chrono::milliseconds(wake - t));
  }
}

void Nemesis::heal_due() {
  const std::uint64_t now = now_ms();
  for (auto it = active_.begin(); it != active_.end();) {
    if (it->heal_at_ms <= now && it->rollback.empty()) {
      heal(*it);
      it = active_.erase(it);
    } else {
      ++it;
    }
  }
}

ChangeResolution Nemesis::resolve(
    const std::function<bool(const std::vector<wire::MemberInfo>&)>& applied) {
  ChangeProbe probe;
  probe.find_leader = [this] { return cluster_.find_leader(300); };
  probe.call = [this](int m, wire::Request req, std::uint64_t timeout_ms) {
    return cluster_.call(m, std::move(req), timeout_ms);
  };
  probe.idle = [this] {
    heal_due();
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  };
  probe.now_ms = [this] { return now_ms(); };
  return resolve_change(probe, applied, kResolveTimeoutMs);
}

std::vector<int> Nemesis::up_members() const {
  std::vector<int> up;
  for (int m : cluster_.active_members()) {
    if (cluster_.running(m) && !cluster_.paused(m)) up.push_back(m);
  }
  return up;
}

bool Nemesis::apply(const FaultStep& s, Active& a) {
  const std::vector<int> members = cluster_.active_members();
  const std::vector<int> up = up_members();
  const std::size_t n = members.size();
  const std::size_t minority = (n - 1) / 2;
  const std::size_t majority = n / 2 + 1;
  const std::string name(fault_name(s.kind));
  auto skip = [&](const std::string& why) {
    note(name + " skipped: " + why);
    return false;
  };
  auto member_name = [this](int m) { return cluster_.member(m).name; };
  auto names = [&](const std::vector<int>& ms) {
    std::string out;
    for (int m : ms) out += (out.empty() ? "" : ",") + member_name(m);
    return out;
  };
  auto leader = [this] { return cluster_.find_leader(300); };
  auto kill_all = [&](const std::vector<int>& victims) {
    for (int v : victims) {
      const pid_t pid = cluster_.member(v).pid;
      if (Status st = cluster_.kill(v); !st.ok()) {
        note(name + ": " + st.to_string());
        continue;
      }
      a.stopped.push_back(v);
      note(name + " SIGKILL " + member_name(v) + " (pid " + std::to_string(pid) + ")");
    }
    return !a.stopped.empty();
  };
  auto cut = [&](int from, int to, const LinkFault& f) {
    cluster_.proxy().set_fault(from, to, f);
    a.links.emplace_back(from, to);
  };
  // The minority side of a split: contains the leader when the step says so.
  auto minority_side = [&]() {
    std::vector<int> side;
    const std::size_t size = 1 + s.picks[0] % std::max<std::size_t>(minority, 1);
    const int l = s.hit_leader ? leader() : -1;
    std::vector<int> rest = members;
    if (l >= 0) {
      side.push_back(l);
      rest.erase(std::find(rest.begin(), rest.end(), l));
    }
    for (int m : choose(rest, size - side.size(), s.picks, 1)) side.push_back(m);
    return side;
  };
  auto others = [&](const std::vector<int>& side) {
    std::vector<int> rest;
    for (int m : members) {
      if (std::find(side.begin(), side.end(), m) == side.end()) rest.push_back(m);
    }
    return rest;
  };

  switch (s.kind) {
    case FaultKind::kKill: {
      if (up.empty()) return skip("no member is up");
      return kill_all(choose(up, 1 + s.picks[0] % std::max<std::size_t>(minority, 1), s.picks, 1));
    }
    case FaultKind::kKillLeader: {
      const int l = leader();
      if (l < 0) return skip("no leader");
      return kill_all({l});
    }
    case FaultKind::kKillMajority: {
      std::vector<int> alive;
      for (int m : members) {
        if (cluster_.running(m)) alive.push_back(m);
      }
      return kill_all(choose(alive, majority, s.picks, 0));
    }
    case FaultKind::kRestart: {
      if (up.empty()) return skip("no member is up");
      int v = s.hit_leader ? leader() : -1;
      if (v < 0) v = choose(up, 1, s.picks, 0).front();
      Result<int> rc = cluster_.terminate(v);
      a.stopped.push_back(v);
      if (!rc.ok()) {
        problems_.push_back("clean stop of " + member_name(v) + ": " + rc.status().to_string());
        note(name + " " + member_name(v) + ": " + rc.status().to_string());
      } else if (*rc != 0) {
        problems_.push_back(member_name(v) + " exited with status " + std::to_string(*rc) +
                            " after SIGTERM (a clean stop exits 0); log " +
                            cluster_.member(v).log_path);
        note(name + " SIGTERM " + member_name(v) + ": exit status " + std::to_string(*rc));
      } else {
        note(name + " SIGTERM " + member_name(v) + ": exit status 0");
      }
      return true;
    }
    case FaultKind::kPause:
    case FaultKind::kPauseLeader: {
      std::vector<int> victims;
      if (s.kind == FaultKind::kPauseLeader) {
        const int l = leader();
        if (l < 0) return skip("no leader");
        victims.push_back(l);
      } else {
        if (up.empty()) return skip("no member is up");
        victims = choose(up, 1 + s.picks[0] % std::max<std::size_t>(minority, 1), s.picks, 1);
      }
      for (int v : victims) {
        if (Status st = cluster_.pause(v); !st.ok()) {
          note(name + ": " + st.to_string());
          continue;
        }
        a.paused.push_back(v);
        note(name + " SIGSTOP " + member_name(v));
      }
      return !a.paused.empty();
    }
    case FaultKind::kIsolate:
    case FaultKind::kBlackhole: {
      int v = s.hit_leader ? leader() : -1;
      if (v < 0) v = choose(members, 1, s.picks, 0).front();
      LinkFault f;
      if (s.kind == FaultKind::kIsolate) {
        f.cut = true;
      } else {
        f.drop = 1;
      }
      for (int m : members) {
        if (m == v) continue;
        cut(v, m, f);
        cut(m, v, f);
      }
      note(name + " " + member_name(v) + " from " + names(others({v})) + " (" + f.to_string() +
           ")");
      return true;
    }
    case FaultKind::kSplit:
    case FaultKind::kOneWay: {
      if (minority == 0) return skip("too few members");
      const std::vector<int> side = minority_side();
      const std::vector<int> rest = others(side);
      const bool outward = s.picks[2] % 2 == 0;
      for (int x : side) {
        for (int y : rest) {
          if (s.kind == FaultKind::kSplit || outward) cut(x, y, {.cut = true});
          if (s.kind == FaultKind::kSplit || !outward) cut(y, x, {.cut = true});
        }
      }
      const std::string arrow = s.kind == FaultKind::kSplit ? " <-x-> "
                                : outward                   ? " -x-> "
                                                            : " <-x- ";
      note(name + " " + names(side) + arrow + names(rest));
      return true;
    }
    case FaultKind::kLossyLinks:
    case FaultKind::kSlowLinks: {
      LinkFault f;
      f.drop = s.drop;
      f.delay_ms = s.delay_ms;
      f.jitter_ms = s.jitter_ms;
      std::vector<std::pair<int, int>> pairs, chosen;
      for (int x : members) {
        for (int y : members) {
          if (x != y) pairs.emplace_back(x, y);
        }
      }
      for (std::size_t k = 0; k < pairs.size(); ++k) {
        if (((s.picks[3] >> (k % 64)) & 1) != 0) chosen.push_back(pairs[k]);
      }
      if (chosen.empty()) chosen.push_back(pairs[s.picks[4] % pairs.size()]);
      std::string which;
      for (const auto& [x, y] : chosen) {
        cut(x, y, f);
        which += (which.empty() ? "" : ",") + member_name(x) + "->" + member_name(y);
      }
      note(name + " " + which + " (" + f.to_string() + ")");
      return true;
    }
    case FaultKind::kSlowDisk: {
      std::vector<int> victims;
      const int l = s.hit_leader ? leader() : -1;
      if (l >= 0) victims.push_back(l);
      std::vector<int> rest = others(victims);
      const std::size_t extra = s.picks[0] % n;
      for (int m : choose(rest, extra, s.picks, 1)) victims.push_back(m);
      if (victims.empty()) victims = choose(members, 1, s.picks, 1);
      for (int v : victims) {
        if (Status st = cluster_.set_disk_delay(v, s.disk_delay_ms); !st.ok()) {
          note(name + ": " + st.to_string());
          continue;
        }
        a.slow_disks.push_back(v);
      }
      note(name + " " + names(a.slow_disks) + " (each fsync +" + std::to_string(s.disk_delay_ms) +
           "ms)");
      return !a.slow_disks.empty();
    }
    case FaultKind::kTransferLeader:
      return transfer_leader(s);
    case FaultKind::kMemberReplace:
      return replace_member(s);
    case FaultKind::kRollback:
      return start_rollback(s, a);
    case FaultKind::kDamage:
      return damage(s);
  }
  return false;
}

bool Nemesis::transfer_leader(const FaultStep& s) {
  const std::string name = "transfer-leader";
  if (transfer_supported_ == 0) {
    note(name + " skipped: not supported by the members");
    return false;
  }
  const int l = cluster_.find_leader(300);
  if (l < 0) {
    note(name + " skipped: no leader");
    return false;
  }
  std::vector<int> followers;
  for (int m : cluster_.active_members()) {
    if (m != l && cluster_.running(m) && !cluster_.paused(m)) followers.push_back(m);
  }
  if (followers.empty()) {
    note(name + " skipped: no follower is up");
    return false;
  }
  const int to = choose(followers, 1, s.picks, 0).front();
  const wire::Response st = cluster_.status(to, 500);
  if (st.code != Code::kOk) {
    note(name + " skipped: no status from " + cluster_.member(to).name);
    return false;
  }
  const wire::Response r =
      cluster_.call(l, {.op = wire::Op::kTransferLeader, .member_id = st.member_id}, 5000);
  if (not_supported(r)) {
    transfer_supported_ = 0;
    note(name + " skipped: not supported by the members (" + r.message + "); not tried again");
    return false;
  }
  transfer_supported_ = 1;
  std::string outcome = answer(r);
  if (r.code == Code::kTimeout) {
    // Nothing the checks use depends on who leads; the log says what happened.
    const int now = cluster_.find_leader(300);
    outcome +=
        "; " + (now < 0 ? std::string("no leader") : cluster_.member(now).name) + " leads now";
  }
  note(name + " " + cluster_.member(l).name + " -> " + cluster_.member(to).name + ": " + outcome);
  return true;
}

bool Nemesis::replace_member(const FaultStep& s) {
  const std::string name = "member-replace";
  if (membership_supported_ == 0) {
    note(name + " skipped: not supported by the members");
    return false;
  }
  const int l = cluster_.find_leader(300);
  if (l < 0) {
    note(name + " skipped: no leader");
    return false;
  }
  std::vector<int> followers;
  for (int m : cluster_.active_members()) {
    if (m != l && cluster_.running(m)) followers.push_back(m);
  }
  if (followers.empty()) {
    note(name + " skipped: no follower");
    return false;
  }
  const int old = choose(followers, 1, s.picks, 0).front();
  const std::string old_name = cluster_.member(old).name;
  const wire::Response st = cluster_.status(old, 500);
  if (st.code != Code::kOk) {
    note(name + " skipped: no status from " + old_name);
    return false;
  }
  const std::uint64_t old_id = st.member_id;
  // Once removed, the member learns it and stops by itself: an expected exit from here on.
  cluster_.expect_exit(old, true);
  wire::Response r = cluster_.call(l, {.op = wire::Op::kMemberRemove, .member_id = old_id}, 5000);
  if (not_supported(r)) {
    cluster_.expect_exit(old, false);
    membership_supported_ = 0;
    note(name + " skipped: not supported by the members (" + r.message + "); not tried again");
    return false;
  }
  membership_supported_ = 1;
  note(name + " remove " + old_name + ": " + answer(r));
  bool removed = r.code == Code::kOk;
  if (r.code == Code::kTimeout) {
    const ChangeResolution res = resolve([&](const std::vector<wire::MemberInfo>& ms) {
      return find_member(ms, old_id, "") == nullptr;
    });
    note(name + " remove " + old_name + ": " + res.how);
    if (res.outcome == ChangeOutcome::kUnresolved) {
      problems_.push_back(name + ": removing " + old_name + " timed out and its " + res.how);
      return true;
    }
    removed = res.outcome == ChangeOutcome::kApplied;
  }
  if (!removed) {
    cluster_.expect_exit(old, false);
    return false;
  }
  (void)cluster_.kill(old);  // it may have stopped by itself already
  cluster_.retire(old);
  Result<int> slot = cluster_.add_member_slot();
  if (!slot.ok()) {
    problems_.push_back(name + ": " + slot.status().to_string());
    return true;
  }
  const int fresh = *slot;
  const std::string fresh_name = cluster_.member(fresh).name;
  const int l2 = std::max(cluster_.find_leader(300), 0);
  r = cluster_.call(l2,
                    {.op = wire::Op::kMemberAdd,
                     .name = fresh_name,
                     .peer_addr = cluster_.proxy_addr(fresh),
                     .client_addr = cluster_.client_addr(fresh),
                     .learner = true},
                    5000);
  note(name + " add learner " + fresh_name + ": " + answer(r));
  std::vector<wire::MemberInfo> members = r.members;
  bool added = r.code == Code::kOk;
  if (r.code == Code::kTimeout) {
    const ChangeResolution res = resolve([&](const std::vector<wire::MemberInfo>& ms) {
      return find_member(ms, 0, fresh_name) != nullptr;
    });
    note(name + " add learner " + fresh_name + ": " + res.how);
    if (res.outcome == ChangeOutcome::kUnresolved) {
      problems_.push_back(name + ": adding " + fresh_name + " timed out and its " + res.how);
      cluster_.retire(fresh);
      return true;
    }
    added = res.outcome == ChangeOutcome::kApplied;
    members = res.members;
  }
  if (!added) {
    cluster_.retire(fresh);
    return true;
  }
  if (Status started = cluster_.start(fresh); !started.ok()) {
    problems_.push_back(name + ": starting " + fresh_name + ": " + started.to_string());
    return true;
  }
  std::uint64_t fresh_id = 0;
  if (const wire::MemberInfo* m = find_member(members, 0, fresh_name)) fresh_id = m->id;
  // Promote once the learner has caught up (bounded: a learner that lags stays a learner).
  bool promoted = false;
  for (int attempt = 0; attempt < 20 && fresh_id != 0 && !promoted; ++attempt) {
    heal_due();
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
    const int l3 = cluster_.find_leader(300);
    if (l3 < 0) continue;
    r = cluster_.call(l3, {.op = wire::Op::kMemberPromote, .member_id = fresh_id}, 3000);
    promoted = r.code == Code::kOk;
    if (r.code == Code::kTimeout) {
      note(name + " promote " + fresh_name + ": " + answer(r));
      const ChangeResolution res = resolve([&](const std::vector<wire::MemberInfo>& ms) {
        const wire::MemberInfo* m = find_member(ms, fresh_id, "");
        return m != nullptr && !m->learner;
      });
      note(name + " promote " + fresh_name + ": " + res.how);
      if (res.outcome == ChangeOutcome::kUnresolved) {
        problems_.push_back(name + ": promoting " + fresh_name + " timed out and its " + res.how);
        return true;
      }
      promoted = res.outcome == ChangeOutcome::kApplied;
    }
  }
  note(name + " promote " + fresh_name + ": " + (promoted ? "ok" : answer(r)));
  return true;
}

void Nemesis::heal(const Active& a) {
  std::string what;
  for (const auto& [from, to] : a.links) cluster_.proxy().set_fault(from, to, {});
  if (!a.links.empty()) what += " links";
  for (int m : a.slow_disks) (void)cluster_.set_disk_delay(m, 0);
  if (!a.slow_disks.empty()) what += " disks";
  for (int m : a.paused) {
    if (cluster_.running(m) && cluster_.paused(m) && cluster_.resume(m).ok()) {
      what += " SIGCONT " + cluster_.member(m).name;
    }
  }
  for (int m : a.stopped) {
    if (cluster_.member(m).retired || cluster_.running(m)) continue;
    if (Status st = cluster_.start(m); !st.ok()) {
      problems_.push_back("restart of " + cluster_.member(m).name + ": " + st.to_string());
      continue;
    }
    what += " restart " + cluster_.member(m).name + " (pid " +
            std::to_string(cluster_.member(m).pid) + ")";
  }
  if (!what.empty()) note("heal " + std::string(fault_name(a.kind)) + ":" + what);
}

Status Nemesis::heal_all() {
  std::vector<PendingRollback> rollbacks;
  for (const Active& a : active_) {
    if (a.rollback.empty()) {
      heal(a);
    } else {
      rollbacks.push_back(a.rollback.front());
    }
  }
  active_.clear();
  for (const PendingRollback& r : rollbacks) (void)finish_rollback(r);
  cluster_.proxy().heal_all();
  for (int m : cluster_.active_members()) {
    (void)cluster_.set_disk_delay(m, 0);
    if (cluster_.running(m) && cluster_.paused(m)) KVC_RETURN_IF_ERROR(cluster_.resume(m));
    if (!cluster_.running(m)) {
      KVC_RETURN_IF_ERROR(cluster_.start(m));
      note("heal-all: restart " + cluster_.member(m).name);
    }
  }
  note("healed everything");
  return Status();
}

// ---------------------------------------------------------------------------------------------
// Integrity faults: rollback and damage

IntegrityCounts& IntegrityCounts::operator+=(const IntegrityCounts& o) {
  rollbacks += o.rollbacks;
  rollbacks_of_leader += o.rollbacks_of_leader;
  rollbacks_detected += o.rollbacks_detected;
  rollback_entries_lost += o.rollback_entries_lost;
  repair_ms_max = std::max(repair_ms_max, o.repair_ms_max);
  damaged += o.damaged;
  damage_found += o.damage_found;
  damage_replaced += o.damage_replaced;
  damage_rolled_back += o.damage_rolled_back;
  probe_reads += o.probe_reads;
  probe_reads_ok += o.probe_reads_ok;
  return *this;
}

std::string IntegrityCounts::to_string() const {
  return "rollbacks=" + std::to_string(rollbacks) + " (of the leader " +
         std::to_string(rollbacks_of_leader) + ", detected by the leader " +
         std::to_string(rollbacks_detected) + ", entries behind " +
         std::to_string(rollback_entries_lost) + ", longest protection window " +
         std::to_string(repair_ms_max) + "ms) damaged=" + std::to_string(damaged) +
         " (found by the member " + std::to_string(damage_found) +
         ", replaced by a snapshot first " + std::to_string(damage_replaced) +
         ", by a rollback first " + std::to_string(damage_rolled_back) +
         ") probe_reads=" + std::to_string(probe_reads) + " (answered " +
         std::to_string(probe_reads_ok) + ")";
}

IntegrityCounts Nemesis::integrity() const {
  IntegrityCounts c = integrity_;
  c.probe_reads = probes_tried_.load();
  c.probe_reads_ok = probes_answered_.load();
  return c;
}

namespace {

std::uint64_t file_size(const std::string& path) {
  std::error_code ec;
  const std::uintmax_t n = std::filesystem::file_size(path, ec);
  return ec ? 0 : static_cast<std::uint64_t>(n);
}

std::string read_from(const std::string& path, std::uint64_t offset) {
  std::ifstream in(path, std::ios::binary);
  in.seekg(static_cast<std::streamoff>(offset));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string describe(const wire::Response& r) {
  if (r.code != Code::kOk) return std::string(code_name(r.code)) + " (" + r.message + ")";
  const wire::StatusInfo& s = r.status;
  return s.role + ", term " + std::to_string(s.term) + ", applied " +
         std::to_string(s.applied_index) + ", commit " + std::to_string(s.commit_index) +
         (s.repairing ? ", repairing" : "") + (s.damaged ? ", damaged" : "");
}

}  // namespace

bool Nemesis::wait_answering(int member, std::uint64_t timeout_ms) {
  return test::wait_until([&] { return cluster_.status(member, 300).code == Code::kOk; },
                          std::chrono::milliseconds(timeout_ms), "an answer")
      .ok();
}

std::vector<std::thread> Nemesis::probe_reads(int member, const std::vector<std::string>& keys) {
  std::vector<std::thread> out;
  for (const std::string& key : keys) {
    const std::uint64_t client = options_.first_probe_client + next_probe_client_++;
    out.emplace_back([this, member, key, client] {
      // Until it is answered, for a bounded time: a member just restarted may not know the
      // leader yet, and one that is repairing refuses; each attempt is an operation of its own.
      const std::uint64_t deadline = now_ms() + kProbeMs;
      do {
        check::Operation op;
        op.client = client;
        op.kind = check::OpKind::kGet;
        op.key = key;
        const std::size_t h = clock_.begin(op);
        const wire::Response r =
            cluster_.call(member, {.op = wire::Op::kGet, .key = key}, options_.op_timeout_ms);
        clock_.complete(h, r);
        ++probes_tried_;
        if (r.code == Code::kOk || r.code == Code::kNotFound) {
          ++probes_answered_;
          return;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(100));
      } while (now_ms() < deadline);
    });
  }
  return out;
}

bool Nemesis::start_rollback(const FaultStep& s, Active& a) {
  const std::string name = "rollback";
  for (const Active& other : active_) {
    if (!other.rollback.empty()) {
      note(name + " skipped: another rollback is pending");
      return false;
    }
  }
  const std::vector<int> up = up_members();
  if (up.empty()) {
    note(name + " skipped: no member is up");
    return false;
  }
  const int v = choose(up, 1, s.picks, 0).front();
  const MemberProcess m = cluster_.member(v);
  Result<int> rc = cluster_.terminate(v);
  if (!rc.ok() || *rc != 0) {
    const std::string why =
        rc.ok() ? "exit status " + std::to_string(*rc) + " after SIGTERM" : rc.status().to_string();
    problems_.push_back(name + ": clean stop of " + m.name + ": " + why + "; log " + m.log_path);
    note(name + " " + m.name + ": " + why);
    a.stopped.push_back(v);  // healed (restarted) as any stopped member
    return false;
  }
  const std::string copy =
      cluster_.dir() + "/rollback-copies/" + m.name + "-" + std::to_string(++copies_);
  Status copied = sim::copy_data_dir(m.data_dir, copy);
  Result<std::uint64_t> last =
      copied.ok() ? sim::last_log_index(copy) : Result<std::uint64_t>(copied);
  if (Status st = cluster_.start(v); !st.ok()) {
    problems_.push_back(name + ": restart of " + m.name + ": " + st.to_string());
  }
  if (!last.ok()) {
    problems_.push_back("harness: " + name + " of " + m.name + ": " + last.status().to_string());
    note(name + " " + m.name + ": " + last.status().to_string());
    return false;
  }
  PendingRollback r;
  r.member = v;
  r.copy = copy;
  r.copy_last_index = *last;
  r.make_leader = s.hit_leader;
  r.kill = s.picks.size() > 6 && s.picks[6] % 2 == 0;
  a.rollback.push_back(r);
  note(name + " " + m.name + ": SIGTERM (exit 0), copied its data dir (log to index " +
       std::to_string(*last) + ") to " + copy + ", restarted; it runs on until the rollback" +
       (r.make_leader ? " (as the leader)" : ""));
  return true;
}

std::uint64_t Nemesis::finish_rollback(const PendingRollback& r) {
  const std::uint64_t started = now_ms();
  const std::string name = "rollback";
  const MemberProcess m = cluster_.member(r.member);
  auto abandon = [&](const std::string& why) {
    note(name + " of " + m.name + " abandoned: " + why);
    --counts_[FaultKind::kRollback].applied;
    ++counts_[FaultKind::kRollback].skipped;
    std::error_code ec;
    std::filesystem::remove_all(r.copy, ec);
    return now_ms() - started;
  };
  if (m.retired) return abandon("it was removed from the cluster");
  auto poll = [](std::uint64_t timeout_ms, const std::function<bool()>& done, const char* what) {
    return test::wait_until(done, std::chrono::milliseconds(timeout_ms), what, kPollEvery).ok();
  };

  // The protection window opens: every other fault is healed now and none is applied until the
  // member is repaired, so the leader that saw its acknowledgements stays to notice the loss.
  for (const Active& a : active_) {
    if (a.rollback.empty()) heal(a);
  }
  active_.erase(std::remove_if(active_.begin(), active_.end(),
                               [](const Active& a) { return a.rollback.empty(); }),
                active_.end());
  cluster_.proxy().heal_all();
  for (int x : cluster_.active_members()) {
    (void)cluster_.set_disk_delay(x, 0);
    if (cluster_.running(x) && cluster_.paused(x)) (void)cluster_.resume(x);
    if (!cluster_.running(x) && cluster_.start(x).ok()) {
      note(name + ": restart " + cluster_.member(x).name);
    }
  }
  note(name + " of " + m.name + ": every other fault healed and held until it is repaired");
  // No member may be damaged or repairing meanwhile: with a leader rolled back, the others must
  // be able to elect a new one.
  std::string busy;
  if (!poll(
          options_.repair_timeout_ms, [&] { return (busy = integrity_busy()).empty(); },
          "no member damaged or repairing")) {
    problems_.push_back(name + " of " + m.name + ": still " + busy + " " +
                        std::to_string(options_.repair_timeout_ms) +
                        " ms after every fault was healed");
    return abandon(busy);
  }

  // It must have acknowledged entries past its copy, or rolling back loses nothing.
  wire::Response st;
  if (!poll(
          20000,
          [&] {
            st = cluster_.status(r.member, 500);
            return st.code == Code::kOk && st.status.applied_index > r.copy_last_index + 10;
          },
          "progress past the copy")) {
    problems_.push_back(name + " of " + m.name + ": it did not get past its copy's index " +
                        std::to_string(r.copy_last_index) +
                        " within 20 s of healing every fault (status: " + describe(st) + ")");
    return abandon("no progress past the copy");
  }
  int leader = cluster_.find_leader(300);
  if (r.make_leader && leader != r.member && leader >= 0) {
    const wire::Response t =
        cluster_.call(leader, {.op = wire::Op::kTransferLeader, .member_id = st.member_id}, 5000);
    const bool moved = poll(
        5000, [&] { return cluster_.find_leader(300) == r.member; }, "the transfer");
    note(name + ": transfer leadership " + cluster_.member(leader).name + " -> " + m.name + ": " +
         (t.code == Code::kOk ? std::string("ok") : std::string(code_name(t.code))) +
         (moved ? "" : " (it does not lead; rolling back a follower)"));
  }
  poll(
      5000, [&] { return (leader = cluster_.find_leader(300)) >= 0; }, "a leader");
  const bool was_leader = leader == r.member;
  if (was_leader) {
    // An entry of its own term committed: it has acknowledged writes as the leader.
    (void)cluster_.call(r.member, {.op = wire::Op::kHash}, 3000);
  }
  const wire::Response before = cluster_.status(r.member, 500);
  wire::Response leader_before;
  if (!was_leader && leader >= 0) leader_before = cluster_.status(leader, 500);

  // Stop it and put the older copy in place of its data directory.
  std::string how;
  if (r.kill) {
    Status k = cluster_.kill(r.member);
    how = k.ok() ? "SIGKILL" : "SIGKILL: " + k.to_string();
  } else {
    Result<int> rc = cluster_.terminate(r.member);
    how = rc.ok() ? "SIGTERM (exit " + std::to_string(*rc) + ")"
                  : "SIGTERM: " + rc.status().to_string();
    if (rc.ok() && *rc != 0) {
      problems_.push_back(m.name + " exited with status " + std::to_string(*rc) +
                          " after SIGTERM (a clean stop exits 0); log " + m.log_path);
    }
  }
  if (Status s = sim::restore_data_dir(r.copy, m.data_dir); !s.ok()) {
    problems_.push_back("harness: " + name + " of " + m.name + ": " + s.to_string());
    (void)cluster_.start(r.member);
    return now_ms() - started;
  }
  for (DamageRecord& d : damaged_) {
    if (d.member == r.member && d.log_end == 0) {
      d.log_end = file_size(m.log_path);
      d.rolled_back = true;
    }
  }
  // A rolled-back leader returns only once a new leader has committed an entry of its own term:
  // that leader holds every committed entry, so the returning member's vote cannot elect one
  // that lacks entries only the old leader and a minority held (the case kvc cannot detect).
  int now_leader = -1;
  if (was_leader) {
    const bool elected = poll(
        20000,
        [&] {
          now_leader = cluster_.find_leader(300);
          return now_leader >= 0 && now_leader != r.member &&
                 cluster_.call(now_leader, {.op = wire::Op::kHash}, 2000).code == Code::kOk;
        },
        "a new leader's commit");
    if (!elected) {
      problems_.push_back(name + " of " + m.name +
                          " (the leader): no new leader committed an entry within 20 s");
    }
  } else {
    now_leader = cluster_.find_leader(300);
  }
  const wire::Response at_restart =
      now_leader >= 0 ? cluster_.status(now_leader, 500) : wire::Response{};
  const std::uint64_t commit = at_restart.code == Code::kOk ? at_restart.status.commit_index : 0;
  if (Status s = cluster_.start(r.member); !s.ok()) {
    problems_.push_back(name + ": restart of " + m.name + ": " + s.to_string());
    return now_ms() - started;
  }
  ++integrity_.rollbacks;
  if (was_leader) ++integrity_.rollbacks_of_leader;
  const std::uint64_t had = before.code == Code::kOk ? before.status.applied_index : 0;
  if (had > r.copy_last_index) integrity_.rollback_entries_lost += had - r.copy_last_index;
  note(name + " " + m.name + " (" + (was_leader ? "the leader" : "a follower") + "): " + how +
       ", restarted on its copy (log to index " + std::to_string(r.copy_last_index) +
       "; it had applied " + std::to_string(had) + "); " +
       (now_leader >= 0
            ? cluster_.member(now_leader).name + " leads, commit index " + std::to_string(commit)
            : std::string("no leader")));

  // Right away, reads of every key through it alone: it must not answer from its older state.
  std::vector<std::thread> probes;
  if (wait_answering(r.member, 10000)) probes = probe_reads(r.member, options_.keys);

  // Repaired: not repairing, not damaged, and applied at least what was committed at the restart.
  wire::Response now;
  const bool repaired = poll(
      options_.repair_timeout_ms,
      [&] {
        now = cluster_.status(r.member, 500);
        return now.code == Code::kOk && !now.status.repairing && !now.status.damaged &&
               now.status.applied_index >= commit && commit > 0;
      },
      "the repair");
  for (std::thread& t : probes) t.join();
  const std::uint64_t held = now_ms() - started;
  integrity_.repair_ms_max = std::max(integrity_.repair_ms_max, held);
  if (!repaired) {
    problems_.push_back(name + " of " + m.name + ": not repaired within " +
                        std::to_string(options_.repair_timeout_ms) +
                        " ms of its restart on the older copy (commit index at the restart " +
                        std::to_string(commit) + "; its status: " + describe(now) + "; log " +
                        m.log_path + ")");
    note(name + " " + m.name + ": NOT repaired: " + describe(now));
    return held;
  }
  // A follower's loss must have been seen by the leader that saw its acknowledgements, when that
  // leader led throughout (same member, same term).
  std::string detected = "not expected (a new leader never saw its acknowledgements)";
  if (!was_leader && leader >= 0 && leader_before.code == Code::kOk) {
    const wire::Response after = cluster_.status(leader, 500);
    const bool same = leader == now_leader && after.code == Code::kOk &&
                      after.status.role == "leader" &&
                      after.status.term == leader_before.status.term;
    const bool seen = after.code == Code::kOk && after.status.lost_entries_detected >
                                                     leader_before.status.lost_entries_detected;
    if (seen) ++integrity_.rollbacks_detected;
    if (seen) {
      detected = "yes (" + cluster_.member(leader).name + ")";
    } else if (same) {
      detected = "NO";
      problems_.push_back(name + " of " + m.name + ": the leader " + cluster_.member(leader).name +
                          ", which led throughout (term " +
                          std::to_string(leader_before.status.term) +
                          "), never reported that it lost entries it had acknowledged "
                          "(lost_entries_detected stayed " +
                          std::to_string(leader_before.status.lost_entries_detected) + "); log " +
                          cluster_.member(leader).log_path);
    } else {
      detected = "not expected (the leader changed)";
    }
  }
  note(name + " " + m.name + ": repaired, " + describe(now) + ", after " + std::to_string(held) +
       " ms; the leader detected the loss: " + detected + "; faults resume");
  return held;
}

bool Nemesis::damage(const FaultStep& s) {
  const std::string name = "damage";
  const std::vector<int> up = up_members();
  if (up.empty()) {
    note(name + " skipped: no member is up");
    return false;
  }
  // One damaged member at a time: a member whose state is damaged neither votes nor counts
  // toward a quorum until the leader repairs it, so a second one (in a 3-member cluster) could
  // leave no majority able to elect that leader.
  if (const std::string busy = integrity_busy(); !busy.empty()) {
    note(name + " skipped: " + busy);
    return false;
  }
  int v = s.hit_leader ? cluster_.find_leader(300) : -1;
  if (v < 0) v = choose(up, 1, s.picks, 0).front();
  const MemberProcess m = cluster_.member(v);
  Result<int> rc = cluster_.terminate(v);
  if (!rc.ok() || *rc != 0) {
    const std::string why =
        rc.ok() ? "exit status " + std::to_string(*rc) + " after SIGTERM" : rc.status().to_string();
    problems_.push_back(name + ": clean stop of " + m.name + ": " + why + "; log " + m.log_path);
    note(name + " " + m.name + ": " + why);
    (void)cluster_.start(v);
    return false;
  }
  // The cold keys first (their values stay for seconds). The run's first damage takes the
  // frozen one (the workload never writes it again, workload.h), so what the member serves or
  // detects is the damaged value itself, never a newer write that replaced it while the member
  // caught up; later ones take the cold keys in an order the seed picks.
  std::vector<std::string> candidates = options_.keys;
  const std::size_t cold = std::min(options_.cold_keys, candidates.size());
  if (!damaged_.empty() && cold > 1 && s.picks.size() > 5) {
    std::rotate(candidates.begin(),
                candidates.begin() + static_cast<std::ptrdiff_t>(s.picks[5] % cold),
                candidates.begin() + static_cast<std::ptrdiff_t>(cold));
  }
  Result<sim::DamagedValue> d = sim::damage_stored_value(m.data_dir, candidates);
  const std::uint64_t log_offset = file_size(m.log_path);
  for (DamageRecord& earlier : damaged_) {
    if (earlier.member == v && earlier.log_end == 0) earlier.log_end = log_offset;
  }
  if (Status st = cluster_.start(v); !st.ok()) {
    problems_.push_back(name + ": restart of " + m.name + ": " + st.to_string());
  }
  if (!d.ok()) {
    problems_.push_back("harness: " + name + " of " + m.name + ": " + d.status().to_string());
    note(name + " " + m.name + ": " + d.status().to_string());
    return false;
  }
  ++integrity_.damaged;
  damaged_.push_back({v, d->key, m.log_path, log_offset, false});
  note(name + " " + m.name + ": SIGTERM (exit 0), flipped a bit of " + d->key + "'s value \"" +
       d->value + "\" -> \"" + d->damaged + "\" at offset " + std::to_string(d->offset) + " of " +
       d->file + " (" + std::to_string(d->copies) + " cop" + (d->copies == 1 ? "y" : "ies") +
       " of the record; the offline check names it), restarted");
  std::vector<std::thread> probes;
  if (wait_answering(v, 10000)) probes = probe_reads(v, {d->key});
  for (std::thread& t : probes) t.join();
  return true;
}

std::string Nemesis::damage_log(const DamageRecord& d) {
  std::string log = read_from(d.log_path, d.log_offset);
  if (d.log_end > d.log_offset && d.log_end - d.log_offset < log.size()) {
    log.resize(d.log_end - d.log_offset);
  }
  return log;
}

std::string Nemesis::integrity_busy() {
  for (const DamageRecord& d : damaged_) {
    const MemberProcess m = cluster_.member(d.member);
    if (m.retired || d.rolled_back) continue;
    const std::string log = damage_log(d);
    if (log.find("state repaired") == std::string::npos &&
        log.find("installed snapshot") == std::string::npos) {
      return "the damage of " + d.key + " in " + m.name + " is not repaired yet";
    }
  }
  for (int x : cluster_.active_members()) {
    if (!cluster_.running(x)) continue;
    const wire::Response st = cluster_.status(x, 500);
    if (st.code == Code::kOk && (st.status.damaged || st.status.repairing)) {
      return cluster_.member(x).name + " is " + (st.status.damaged ? "damaged" : "being repaired");
    }
  }
  return "";
}

std::vector<std::string> Nemesis::verify_damage_repaired() {
  std::vector<std::string> out;
  for (const DamageRecord& d : damaged_) {
    const MemberProcess m = cluster_.member(d.member);
    if (m.retired) continue;
    const std::string log = damage_log(d);
    if (log.find("state damaged") != std::string::npos) {
      ++integrity_.damage_found;
    } else if (log.find("installed snapshot") != std::string::npos) {
      ++integrity_.damage_replaced;
    } else if (d.rolled_back) {
      ++integrity_.damage_rolled_back;  // its data was replaced by the older copy
    } else {
      out.push_back("damage: " + m.name + " never found the damaged value of " + d.key +
                    " (no \"state damaged\" in its log since the restart, and no snapshot "
                    "replaced its state); log " +
                    d.log_path);
    }
  }
  for (int x : cluster_.active_members()) {
    const wire::Response st = cluster_.status(x, 1000);
    if (st.code == Code::kOk && (st.status.damaged || st.status.repairing)) {
      out.push_back("integrity: " + cluster_.member(x).name + " is still " +
                    (st.status.damaged ? "damaged" : "repairing") + " after convergence (" +
                    st.status.repair_reason + ")");
    }
  }
  return out;
}

}  // namespace kvc::chaos
