// The exactly-once checkers for the state machine, shared by the real tests (which expect them
// to pass) and by the mutation tests (which expect them to catch deliberately broken builds).
// Each returns "" when the state behaved, else a description of the first divergence. They use
// no gtest assertions, so a caller decides what a failure means. Test-only; not thread-safe.
//
// The model: a fixed, seeded log of steps (the "WAL"). The state machine applies a prefix of
// it, flushing now and then, and "crashes" (the object is dropped without flushing, or the
// process applying it is killed with SIGKILL, even in the middle of a flush). After every
// crash the state is reopened; its durable index D must not exceed what was applied, its keys,
// revisions, hash and membership must equal the reference model at exactly D, and replaying the
// log from D + 1 must give the same results as the model.
#pragma once

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdint>
#include <cstdlib>
#include <sstream>
#include <string>
#include <vector>

#include "state_test_util.h"

namespace kvc::storage::testing {

// The log: steps[i] is applied at index i + 1.
struct Log {
  std::vector<Step> steps;

  static Log generate(std::uint64_t seed, std::size_t n) {
    Log log;
    StepGenerator gen(seed, /*coordination=*/true);  // leases and txns too
    Model m;
    for (std::size_t i = 1; i <= n; ++i) {
      Step s = gen.next(m);
      if (s.kind == Step::Kind::kCommand) {
        m.apply(i, s.command);
      } else {
        m.noop(i);
      }
      log.steps.push_back(std::move(s));
    }
    return log;
  }

  std::uint64_t term_of(std::uint64_t index) const { return 1 + index / 97; }

  // The reference state after applying the first `d` steps.
  void model_at(std::uint64_t d, Model& m, Membership& members) const {
    m = Model();
    members = Membership();
    for (std::uint64_t i = 1; i <= d; ++i) {
      const Step& s = steps[i - 1];
      if (s.kind == Step::Kind::kCommand) {
        m.apply(i, s.command);
      } else {
        m.noop(i);
        if (s.kind == Step::Kind::kMembership) members = s.membership;
      }
    }
  }
};

inline std::string describe_kv(const KeyValue& kv) {
  std::ostringstream os;
  os << "{" << kv.key << " create=" << kv.create_revision << " mod=" << kv.mod_revision
     << " version=" << kv.version << " value_len=" << kv.value.size() << "}";
  return os.str();
}

// "" when `sm` holds exactly the model's state.
inline std::string compare_state(StateMachine& sm, const Model& m, const Membership& members,
                                 const std::string& when) {
  Result<RangePage> page = sm.range({});
  if (!page.ok()) return when + ": range failed: " + page.status().to_string();
  const std::vector<KeyValue> want = m.all();
  const std::vector<KeyValue>& got = page->kvs;
  for (std::size_t i = 0; i < std::max(want.size(), got.size()); ++i) {
    if (i >= want.size()) return when + ": extra key " + describe_kv(got[i]);
    if (i >= got.size()) return when + ": missing key " + describe_kv(want[i]);
    if (!(want[i] == got[i])) {
      return when + ": key differs: want " + describe_kv(want[i]) + " got " + describe_kv(got[i]);
    }
  }
  if (sm.applied_index() != m.applied) {
    return when + ": applied index " + std::to_string(sm.applied_index()) + ", model " +
           std::to_string(m.applied);
  }
  if (sm.revision() != m.revision) {
    return when + ": revision " + std::to_string(sm.revision()) + ", model " +
           std::to_string(m.revision);
  }
  if (!(sm.leases(true) == m.all_leases())) return when + ": leases differ";
  Result<std::uint64_t> h = sm.hash();
  if (!h.ok() || *h != m.hash()) return when + ": hash differs";
  if (!(sm.membership() == members)) return when + ": membership differs";
  return "";
}

// Applies log step `index` to `sm` and the model; "" when their results agree.
inline std::string apply_step(StateMachine& sm, Model& m, Membership& members, const Log& log,
                              std::uint64_t index) {
  const Step& s = log.steps[index - 1];
  const std::uint64_t term = log.term_of(index);
  switch (s.kind) {
    case Step::Kind::kCommand: {
      Result<ApplyResult> got = sm.apply(index, term, s.command);
      if (!got.ok()) return "apply " + std::to_string(index) + ": " + got.status().to_string();
      const ApplyResult want = m.apply(index, s.command);
      if (!(*got == want)) {
        std::ostringstream os;
        os << "apply " << index << " (" << describe_command(s.command) << "): got code "
           << code_name(got->code) << " rev " << got->revision << " deleted " << got->deleted
           << ", model code " << code_name(want.code) << " rev " << want.revision << " deleted "
           << want.deleted;
        return os.str();
      }
      return "";
    }
    case Step::Kind::kNoop:
      sm.apply_noop(index, term);
      m.noop(index);
      return "";
    case Step::Kind::kMembership:
      sm.apply_membership(index, term, s.membership);
      m.noop(index);
      members = s.membership;
      return "";
  }
  return "";
}

// In-process crashes: the state machine object is dropped at random points (active overlay
// lost; sometimes a frozen overlay flushed but not retired, or frozen and not flushed).
inline std::string check_exactly_once_in_process(const std::string& dir, std::uint64_t seed,
                                                 int rounds, int steps_per_round) {
  const Log log = Log::generate(seed, static_cast<std::size_t>(rounds * steps_per_round));
  std::mt19937_64 rng(seed ^ 0x5eed);
  auto chance = [&rng](int percent) { return static_cast<int>(rng() % 100) < percent; };
  std::uint64_t applied_before = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::string when = "seed " + std::to_string(seed) + " round " + std::to_string(round);
    Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir);
    if (!opened.ok()) return when + ": open: " + opened.status().to_string();
    StateMachine& sm = **opened;
    const std::uint64_t d = sm.applied_index();
    if (d > applied_before) {
      return when + ": durable index " + std::to_string(d) + " beyond what was applied (" +
             std::to_string(applied_before) + ")";
    }
    Model m;
    Membership members;
    log.model_at(d, m, members);
    if (std::string e =
            compare_state(sm, m, members, when + " after reopen at " + std::to_string(d));
        !e.empty()) {
      return e;
    }
    const std::uint64_t target =
        std::min<std::uint64_t>(log.steps.size(), applied_before + 1 + rng() % steps_per_round);
    bool flushed_not_retired = false;
    for (std::uint64_t i = d + 1; i <= target; ++i) {
      if (std::string e = apply_step(sm, m, members, log, i); !e.empty()) return when + ": " + e;
      if (chance(4)) {
        if (flushed_not_retired) {
          sm.retire_frozen();
          flushed_not_retired = false;
        }
        if (Status s = sm.flush_all(); !s.ok()) return when + ": flush_all: " + s.to_string();
      } else if (chance(4) && !sm.has_frozen()) {
        sm.freeze();
      } else if (chance(4) && sm.has_frozen() && !flushed_not_retired) {
        if (Status s = sm.flush(); !s.ok()) return when + ": flush: " + s.to_string();
        flushed_not_retired = true;
      } else if (chance(4) && flushed_not_retired) {
        sm.retire_frozen();
        flushed_not_retired = false;
      }
      if (chance(3)) {
        if (std::string e = compare_state(sm, m, members, when + " at " + std::to_string(i));
            !e.empty()) {
          return e;
        }
      }
    }
    applied_before = std::max(applied_before, target);
    if (std::string e = compare_state(sm, m, members, when + " before the crash"); !e.empty()) {
      return e;
    }
    opened->reset();  // the crash: nothing more is flushed
  }
  return "";
}

// Process crashes: a child process applies the log from the durable index and flushes now and
// then; it is killed with SIGKILL at a chosen crash point of a chosen flush (blocked there, or
// racing on past it). The parent then checks the reopened state at its durable index.
inline std::string check_exactly_once_with_sigkill(const std::string& dir, std::uint64_t seed,
                                                   int rounds, int steps_per_round) {
  const Log log = Log::generate(seed, static_cast<std::size_t>(rounds * steps_per_round));
  std::mt19937_64 rng(seed ^ 0xdead);
  static const char* const kPoints[] = {"flush.before_commit", "flush.after_commit",
                                        "flush.between_txns"};
  std::uint64_t applied_hi = 0;  // an upper bound on what any child applied
  int kills = 0;
  for (int round = 0; round < rounds; ++round) {
    const std::string when = "seed " + std::to_string(seed) + " round " + std::to_string(round);
    const std::uint64_t target =
        std::min<std::uint64_t>(log.steps.size(), (round + 1) * steps_per_round);
    const int flush_every = 5 + static_cast<int>(rng() % 30);
    const int kill_flush = 1 + static_cast<int>(rng() % 4);
    const std::string point = kPoints[rng() % 3];
    const bool block = rng() % 2 == 0;
    int fds[2];
    if (::pipe(fds) != 0) return when + ": pipe failed";
    const pid_t pid = ::fork();
    if (pid < 0) return when + ": fork failed";
    if (pid == 0) {
      ::close(fds[0]);
      ::alarm(60);  // never outlive a parent that failed to kill us
      int flushes = 0;
      StateOptions o;
      o.test_hook = [&](std::string_view p) {
        if (p != point || flushes + 1 != kill_flush) return;
        const char b = 'k';
        if (::write(fds[1], &b, 1) != 1) ::_exit(3);
        if (block) ::pause();
      };
      Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir, o);
      if (!opened.ok()) ::_exit(2);
      StateMachine& sm = **opened;
      for (std::uint64_t i = sm.applied_index() + 1; i <= target; ++i) {
        // No model here: the parent checks what this child left behind.
        const Step& s = log.steps[i - 1];
        if (s.kind == Step::Kind::kCommand) {
          if (!sm.apply(i, log.term_of(i), s.command).ok()) ::_exit(5);
        } else if (s.kind == Step::Kind::kNoop) {
          sm.apply_noop(i, log.term_of(i));
        } else {
          sm.apply_membership(i, log.term_of(i), s.membership);
        }
        if (static_cast<int>(i % flush_every) == 0) {
          if (!sm.flush_all().ok()) ::_exit(4);
          ++flushes;
        }
      }
      ::_exit(0);
    }
    ::close(fds[1]);
    char b;
    const ssize_t n = ::read(fds[0], &b, 1);
    if (n == 1) {
      ::kill(pid, SIGKILL);
      ++kills;
    }
    ::close(fds[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    if (n != 1 && !(WIFEXITED(status) && WEXITSTATUS(status) == 0)) {
      return when + ": child failed (status " + std::to_string(status) + ")";
    }
    applied_hi = std::max(applied_hi, target);
    Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir);
    if (!opened.ok()) return when + ": open: " + opened.status().to_string();
    StateMachine& sm = **opened;
    const std::uint64_t d = sm.applied_index();
    if (d > applied_hi) return when + ": durable index beyond what was applied";
    Model m;
    Membership members;
    log.model_at(d, m, members);
    if (std::string e = compare_state(sm, m, members,
                                      when + " (killed at " + point + " of flush " +
                                          std::to_string(kill_flush) + (block ? ", blocked" : "") +
                                          ") reopened at " + std::to_string(d));
        !e.empty()) {
      return e;
    }
  }
  // Finally replay everything in this process, checking every result against the model.
  Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir);
  if (!opened.ok()) return "final open: " + opened.status().to_string();
  StateMachine& sm = **opened;
  Model m;
  Membership members;
  log.model_at(sm.applied_index(), m, members);
  for (std::uint64_t i = sm.applied_index() + 1; i <= log.steps.size(); ++i) {
    if (std::string e = apply_step(sm, m, members, log, i); !e.empty()) return "final: " + e;
  }
  if (kills == 0) return "no round killed its child: the test did not test anything";
  return compare_state(sm, m, members, "final");
}

// The seed of a randomized check: KVC_STATE_SEED when set, else `fallback`.
inline std::uint64_t seed_from_env(std::uint64_t fallback) {
  const char* s = std::getenv("KVC_STATE_SEED");
  return s != nullptr ? std::strtoull(s, nullptr, 10) : fallback;
}
// A count scaled by KVC_STATE_SOAK (a multiplier for long runs; default 1).
inline int soak(int n) {
  const char* s = std::getenv("KVC_STATE_SOAK");
  const int k = s != nullptr ? std::atoi(s) : 1;
  return n * std::max(k, 1);
}

}  // namespace kvc::storage::testing
