// The linearizability check: per key, exact linear-time passes for the common anomalies, then
// Wing & Gong's backtracking over a list of call and return events with Lowe's memo table of
// (linearized set, model state), operations of unknown outcome treated as optional, and pruning
// by revision deadlines, stranded reads and forced read-only steps; on failure, a bisection for
// the first instant the history goes wrong, to explain it. docs/checker.md describes the model
// and why each pruning rule keeps the check sound. No shared state: thread-safe.
#include "kvc/check/linearizability.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <optional>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>

#include "kvc/check/linearizability_internal.h"
#include "kvc/common/check.h"
#include "kvc/common/status.h"
#include "kvc/common/text.h"

namespace kvc::check {

using namespace linearizability_internal;  // the check's shared internals
                                           // (linearizability_internal.h)

namespace linearizability_internal {

// A string as describe() shows it: bare when plain, else quoted with C escapes; shortened.
std::string shown(const std::string& v) {
  const bool plain =
      !v.empty() && v.size() <= kShownBytes && std::all_of(v.begin(), v.end(), [](char c) {
        return c > 0x20 && c < 0x7f && c != '"' && c != '\\' && c != ',' && c != '(' && c != ')';
      });
  if (plain) return v;
  const std::size_t n = std::min(v.size(), kShownBytes);
  std::string out =
      "\"" + backslash_escape(std::string_view(v).substr(0, n), {.hex_non_ascii = true});
  out += "\"";
  if (v.size() > n) out += "...(" + std::to_string(v.size()) + " bytes)";
  return out;
}

// True when a CAS expecting `expect` may succeed in `s`; binds the mod revision into *bound.
bool cas_may_succeed(const State& s, std::uint64_t expect, std::uint64_t* bound) {
  if (expect == 0) {
    *bound = s.floor;
    return !s.present();
  }
  if (!s.present()) return false;
  *bound = expect;
  return s.exact ? s.floor == expect : expect > s.floor;
}

// The highest floor (see State) under which `op` can still be linearized; a key's floor
// never decreases along a linearization, so once it passes a remaining op's deadline that op
// can never be placed and the branch is dead. Catching that at once, rather than when the
// op's return blocks the search, is what keeps concurrent writes with known revisions cheap.
std::uint64_t deadline(const KeyOp& op) {
  std::uint64_t d = kNever;
  auto below = [&](std::uint64_t rev) {
    if (rev != 0) d = std::min(d, rev - 1);
  };
  switch (op.kind) {
    case OpKind::kPut:
      below(op.revision);
      break;
    case OpKind::kGet:
      if (op.found && op.revision != 0) d = op.revision;
      break;
    case OpKind::kDelete:
      if (op.found) below(op.revision);
      break;
    case OpKind::kCas:
      if (op.found) {
        below(op.revision);
        if (op.expect != 0) d = std::min(d, op.expect);
      }
      break;
  }
  return d;
}

// A floor the key has reached once `op` (completed) is linearized: its revisions only grow.
std::uint64_t floor_after(const KeyOp& op) {
  switch (op.kind) {
    case OpKind::kPut:
      return op.revision;
    case OpKind::kGet:
      return op.found ? op.revision : 0;
    case OpKind::kDelete:
      return op.found ? op.revision : 0;
    case OpKind::kCas:
      if (!op.found) return 0;
      return op.revision != 0 ? op.revision : op.expect;
  }
  return 0;
}

// Why `op` cannot be placed once the key's floor is `floor` (> deadline(op)).
std::string past_deadline(const KeyOp& op, std::uint64_t floor) {
  const std::string at = "the key is already at revision " + std::to_string(floor);
  if (op.kind == OpKind::kGet) {
    return "it returned revision " + std::to_string(op.revision) + ", but " + at +
           " and revisions only grow";
  }
  if (op.kind == OpKind::kCas && op.expect != 0 && op.expect < floor) {
    return "it expected revision " + std::to_string(op.expect) + ", but " + at +
           " and revisions only grow";
  }
  return "its revision " + std::to_string(op.revision) + " is not above the key's " +
         std::to_string(floor);
}

// Applies `op` to `s`. For a completed operation: false when its recorded result is impossible
// in `s` (with the reason in *why when given). For an optional one: the state if it took effect
// (a CAS that succeeded, a delete that found the key); false when it cannot take effect in `s`.
// Long (about 90 lines): the model's one table of rules, a case per operation kind and outcome,
// read side by side with docs/checker.md.
bool step(const KeyOp& op, const State& s, State* out, std::string* why) {
  auto fail = [&](std::string reason) {
    if (why != nullptr) *why = std::move(reason);
    return false;
  };
  auto rev_after = [&](std::uint64_t bound, std::uint64_t rev) -> bool {
    if (rev != 0 && rev <= bound) {
      return fail("its revision " + std::to_string(rev) + " is not above the key's revision " +
                  std::to_string(bound));
    }
    *out = State{rev != 0 ? rev : bound, op.value, rev != 0};
    return true;
  };
  switch (op.kind) {
    case OpKind::kPut:
      if (op.optional) {
        *out = State{s.floor, op.value, false};
        return true;
      }
      return rev_after(s.floor, op.revision);
    case OpKind::kGet:
      KVC_CHECK(!op.optional, "unknown-outcome reads are dropped before the search");
      if (!op.found) {
        if (s.present()) return fail("it found nothing but the key exists");
        *out = s;
        return true;
      }
      if (!s.present()) return fail("it read a value but the key does not exist");
      if (s.value != op.read_value) return fail("it read another value than the key holds");
      *out = s;
      if (op.revision == 0) return true;
      if (s.exact) {
        if (op.revision != s.floor) {
          return fail("it read revision " + std::to_string(op.revision) + " but the value has " +
                      std::to_string(s.floor));
        }
        return true;
      }
      if (op.revision <= s.floor) {
        return fail("it read revision " + std::to_string(op.revision) +
                    " but the value was written after revision " + std::to_string(s.floor));
      }
      *out = State{op.revision, s.value, true};  // the read tells the unknown revision
      return true;
    case OpKind::kDelete:
      if (op.optional) {
        if (!s.present()) return false;
        *out = absent_with_floor(s.floor);
        return true;
      }
      if (!op.found) {
        if (s.present()) return fail("it found nothing but the key exists");
        *out = s;
        return true;
      }
      if (!s.present()) return fail("it deleted a key that does not exist");
      if (op.revision != 0 && op.revision <= s.floor) {
        return fail("its revision " + std::to_string(op.revision) +
                    " is not above the key's revision " + std::to_string(s.floor));
      }
      *out = absent_with_floor(op.revision != 0 ? op.revision : s.floor);
      return true;
    case OpKind::kCas: {
      std::uint64_t bound = 0;
      const bool may_succeed = cas_may_succeed(s, op.expect, &bound);
      if (op.optional) {
        if (!may_succeed) return false;
        *out = State{bound, op.value, false};
        return true;
      }
      if (op.found) {
        if (!may_succeed) {
          if (!s.present()) return fail("it succeeded but the key does not exist");
          if (op.expect == 0) return fail("it expected no key and succeeded but the key exists");
          return fail("it succeeded but the key's revision is " +
                      (s.exact ? std::to_string(s.floor) : "above " + std::to_string(s.floor)));
        }
        return rev_after(bound, op.revision);
      }
      // A failed compare: possible unless the compare certainly matches. A present key whose
      // revision is unknown might still hold `expect`; that is left open (sound, not complete).
      const bool certainly_matches =
          op.expect == 0 ? !s.present() : (s.present() && s.exact && s.floor == op.expect);
      if (certainly_matches) return fail("its compare failed but the key matched");
      *out = s;
      return true;
    }
  }
  return fail("unknown operation kind");
}

}  // namespace linearizability_internal

namespace {

// Per key: once a completed op left the key at revision f, every op invoked after it finished
// needs the key at f or later. A cheap, exact first pass for most stale reads and writes;
// returns a non-ok Status (and fills *result) when it finds one.
Status check_key_revision_order(const std::string& key, const std::vector<KeyOp>& ops,
                                const History& history, CheckResult* result) {
  std::vector<const KeyOp*> by_response, by_invoke;
  for (const KeyOp& op : ops) {
    if (op.optional) continue;
    if (floor_after(op) != 0) by_response.push_back(&op);
    if (deadline(op) != kNever) by_invoke.push_back(&op);
  }
  std::sort(by_response.begin(), by_response.end(),
            [](const KeyOp* a, const KeyOp* b) { return a->response < b->response; });
  std::sort(by_invoke.begin(), by_invoke.end(),
            [](const KeyOp* a, const KeyOp* b) { return a->invoke < b->invoke; });
  std::size_t done = 0;
  const KeyOp* highest = nullptr;
  for (const KeyOp* b : by_invoke) {
    while (done < by_response.size() && by_response[done]->response < b->invoke) {
      const KeyOp* a = by_response[done++];
      if (highest == nullptr || floor_after(*a) > floor_after(*highest)) highest = a;
    }
    if (highest == nullptr || floor_after(*highest) <= deadline(*b)) continue;
    result->verdict = Verdict::kNotLinearizable;
    result->key = key;
    result->culprits = {std::min(highest->index, b->index), std::max(highest->index, b->index)};
    result->explanation = "key " + shown(key) + ": not linearizable: an operation began after " +
                          "another had finished, yet needs an older revision.\n    " +
                          describe(history[highest->index]) + ": left the key at revision " +
                          std::to_string(floor_after(*highest)) + " or later\n    " +
                          describe(history[b->index]) + ": " +
                          past_deadline(*b, floor_after(*highest)) + "\n";
    return Status::failed_precondition("not linearizable");
  }
  return Status();
}

// Writes must get revisions in real-time order, across keys: when one write finished before
// another began, its revision is smaller. Only completed writes with a known revision count.
bool check_revision_order(const History& history, CheckResult* result) {
  std::vector<std::size_t> writes;
  for (std::size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome != Outcome::kOk || op.revision == 0) continue;
    const bool wrote = op.kind == OpKind::kPut ||
                       ((op.kind == OpKind::kDelete || op.kind == OpKind::kCas) && op.found);
    if (wrote) writes.push_back(i);
  }
  std::vector<std::size_t> by_response = writes;
  std::sort(by_response.begin(), by_response.end(), [&](std::size_t a, std::size_t b) {
    return history[a].response_time < history[b].response_time;
  });
  std::sort(writes.begin(), writes.end(), [&](std::size_t a, std::size_t b) {
    return history[a].invoke_time < history[b].invoke_time;
  });
  std::size_t done = 0;
  std::optional<std::size_t> highest;  // the finished write with the highest revision so far
  for (std::size_t b : writes) {
    while (done < by_response.size() &&
           history[by_response[done]].response_time < history[b].invoke_time) {
      const std::size_t a = by_response[done++];
      if (!highest || history[a].revision > history[*highest].revision) highest = a;
    }
    if (highest && history[*highest].revision >= history[b].revision) {
      const Operation& a = history[*highest];
      const Operation& later = history[b];
      result->verdict = Verdict::kNotLinearizable;
      result->key = later.key;
      result->culprits = {std::min(*highest, b), std::max(*highest, b)};
      result->explanation =
          "revisions go backwards in real time: a write finished before another began but got "
          "a revision that is not smaller.\n  first:  " +
          describe(a) + "\n  second: " + describe(later) + "\n";
      return false;
    }
  }
  return true;
}

// The key's sub-history as it stood at time `t`: ops completed by then are required; ops
// invoked by then but not completed, like unknown-outcome ones, are optional (reads among them
// constrain nothing and are dropped); later ops are left out. If the whole history is
// linearizable so is every such prefix (cut a linearization at t), so the first `t` at which
// it is not is where the history first goes wrong.
std::vector<KeyOp> prefix_at(const std::vector<KeyOp>& ops, std::uint64_t t) {
  std::vector<KeyOp> out;
  for (const KeyOp& op : ops) {
    if (op.invoke > t) continue;
    KeyOp k = op;
    if (!op.optional && op.response > t) {
      if (op.kind == OpKind::kGet) continue;
      k.optional = true;
      k.found = false;
      k.revision = 0;
      k.response = kNever;
    }
    out.push_back(k);
  }
  return out;
}

// Replaces a failed key's explanation with one about the first time its history goes wrong:
// a binary search over response times for the shortest failing prefix, whose last completed
// op is the culprit. Leaves *result alone if a probe gives up.
void explain_first_failure(const std::string& key, const std::vector<KeyOp>& ops,
                           const ValueTable& values, const History& history,
                           const CheckOptions& options, std::uint64_t main_states,
                           CheckResult* result) {
  std::vector<std::uint64_t> times;
  for (const KeyOp& op : ops) {
    if (!op.optional) times.push_back(op.response);
  }
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  if (times.empty()) return;
  // A prefix can be much harder to check than the whole (a planted anomaly often dooms every
  // branch of the whole early), so the probes share a budget of states; past it, the
  // explanation of the whole history stands.
  std::uint64_t budget =
      std::min(options.max_states_per_key,
               std::max<std::uint64_t>(kExplainMinStates, kExplainStatesFactor * main_states));
  CheckOptions probe_options = options;
  std::size_t lo = 0, hi = times.size() - 1;  // Invariant: the prefix at times[hi] fails.
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    probe_options.max_states_per_key = budget;
    const KeyResult probe =
        search_ops(key, prefix_at(ops, times[mid]), values, history, probe_options, false);
    if (probe.verdict == Verdict::kGaveUp) return;
    budget -= std::min(budget, probe.states);
    if (probe.verdict == Verdict::kNotLinearizable) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  const std::uint64_t t = times[hi];
  probe_options.max_states_per_key = budget;
  KeyResult failing = search_ops(key, prefix_at(ops, t), values, history, probe_options, true);
  if (failing.verdict != Verdict::kNotLinearizable) return;
  std::vector<std::size_t> last;
  for (const KeyOp& op : ops) {
    if (!op.optional && op.response == t) last.push_back(op.index);
  }
  std::sort(last.begin(), last.end());
  std::string out = "key " + shown(key) + ": not linearizable. Its operations are linearizable" +
                    (hi > 0 ? " up to time " + std::to_string(times[hi - 1]) : "") +
                    ", but not once this completes at time " + std::to_string(t) + ":\n";
  for (std::size_t i : last) out += "    " + describe(history[i]) + "\n";
  out += "  Up to then: " + failing.explanation;
  result->explanation = std::move(out);
  result->culprits = std::move(last);
}

// The key's operations (`indexes` into `history`) as KeyOps, their values interned into
// `values`.
std::vector<KeyOp> key_ops(const History& history, const std::vector<std::size_t>& indexes,
                           ValueTable& values) {
  std::vector<KeyOp> ops;
  ops.reserve(indexes.size());
  for (std::size_t i : indexes) {
    const Operation& op = history[i];
    KeyOp k;
    k.index = i;
    k.kind = op.kind;
    k.optional = op.outcome == Outcome::kUnknown;
    k.found = op.found;
    if (op.kind == OpKind::kPut || op.kind == OpKind::kCas) k.value = values.intern(op.value);
    if (op.kind == OpKind::kGet && op.found) k.read_value = values.intern(op.read_value);
    k.expect = op.expect_revision;
    k.revision = op.revision;
    k.invoke = op.invoke_time;
    k.response = k.optional ? kNever : std::max(op.response_time, op.invoke_time);
    ops.push_back(k);
  }
  return ops;
}

// Reads that fail wherever they are placed, found directly: a read of a value no operation on
// the key wrote, or of a value whose writes all got other revisions than the one read. Like
// check_key_revision_order: a non-ok Status (and *result filled) when it finds one.
Status check_key_reads(const std::string& key, const std::vector<KeyOp>& ops,
                       std::size_t value_count, const History& history, CheckResult* result) {
  // A read of a value that no operation on the key wrote fails wherever it is placed; saying
  // so directly is clearer (and quicker) than an exhausted search.
  std::vector<bool> written(value_count, false);
  for (const KeyOp& k : ops) {
    if (k.kind == OpKind::kPut || k.kind == OpKind::kCas) written[k.value] = true;
  }
  for (const KeyOp& k : ops) {
    if (k.kind != OpKind::kGet || !k.found || written[k.read_value]) continue;
    result->verdict = Verdict::kNotLinearizable;
    result->key = key;
    result->culprits = {k.index};
    result->explanation = "key " + shown(key) + ": not linearizable: a read returned a value " +
                          "that no operation on the key wrote.\n    " + describe(history[k.index]) +
                          "\n";
    return Status::failed_precondition("not linearizable");
  }
  // Likewise a read of a value whose every write completed with a known revision, none of
  // them the revision read.
  std::vector<std::vector<std::uint64_t>> revisions(value_count);
  std::vector<bool> any_revision(value_count, false);
  for (const KeyOp& k : ops) {
    if (k.kind != OpKind::kPut && k.kind != OpKind::kCas) continue;
    if (k.optional || k.revision == 0) {
      any_revision[k.value] = true;
    } else if (k.kind == OpKind::kPut || k.found) {
      revisions[k.value].push_back(k.revision);
    }
  }
  for (const KeyOp& k : ops) {
    if (k.kind != OpKind::kGet || !k.found || k.revision == 0 || any_revision[k.read_value]) {
      continue;
    }
    const auto& revs = revisions[k.read_value];
    if (std::find(revs.begin(), revs.end(), k.revision) != revs.end()) continue;
    result->verdict = Verdict::kNotLinearizable;
    result->key = key;
    result->culprits = {k.index};
    result->explanation = "key " + shown(key) + ": not linearizable: a read returned a value " +
                          "with a revision that no write of that value got.\n    " +
                          describe(history[k.index]) + "\n";
    return Status::failed_precondition("not linearizable");
  }
  return Status();
}

}  // namespace

std::string_view verdict_name(Verdict verdict) {
  switch (verdict) {
    case Verdict::kLinearizable:
      return "linearizable";
    case Verdict::kNotLinearizable:
      return "not linearizable";
    case Verdict::kGaveUp:
      return "gave up";
  }
  return "unknown verdict";
}

std::string describe(const Operation& op) {
  std::string out = "c" + std::to_string(op.client) + " ";
  switch (op.kind) {
    case OpKind::kPut:
      out += "put(" + shown(op.key) + ", " + shown(op.value) + ")";
      break;
    case OpKind::kGet:
      out += "get(" + shown(op.key) + ")";
      break;
    case OpKind::kDelete:
      out += "delete(" + shown(op.key) + ")";
      break;
    case OpKind::kCas:
      out += "cas(" + shown(op.key) + ", " + shown(op.value) +
             ", expect=" + std::to_string(op.expect_revision) + ")";
      break;
  }
  out += " -> ";
  const std::string rev = op.revision != 0 ? " rev=" + std::to_string(op.revision) : "";
  switch (op.outcome) {
    case Outcome::kFailed:
      out += "failed";
      break;
    case Outcome::kUnknown:
      out += "unknown";
      break;
    case Outcome::kOk:
      switch (op.kind) {
        case OpKind::kPut:
          out += "ok" + rev;
          break;
        case OpKind::kGet:
          out += op.found ? shown(op.read_value) + rev : "not found";
          break;
        case OpKind::kDelete:
          out += op.found ? "deleted" + rev : "not found";
          break;
        case OpKind::kCas:
          out += op.found ? "ok" + rev : "compare failed";
          break;
      }
      break;
  }
  out += " [" + std::to_string(op.invoke_time) + ",";
  out += op.outcome == Outcome::kUnknown || op.response_time == kNever
             ? std::string("inf")
             : std::to_string(op.response_time);
  out += "]";
  return out;
}

CheckResult check_history(const History& history, const CheckOptions& options) {
  CheckResult result;
  // Partition by key; std::map so keys are checked (and failures reported) in a stable order.
  std::map<std::string, std::vector<std::size_t>> by_key;
  for (std::size_t i = 0; i < history.size(); ++i) {
    const Operation& op = history[i];
    if (op.outcome == Outcome::kFailed) continue;
    ++result.operations;
    if (op.outcome == Outcome::kUnknown && op.kind == OpKind::kGet) continue;  // constrains nothing
    by_key[op.key].push_back(i);
  }
  result.keys = by_key.size();
  std::optional<CheckResult> gave_up;
  for (const auto& [key, indexes] : by_key) {
    ValueTable values;
    const std::vector<KeyOp> ops = key_ops(history, indexes, values);
    if (Status why = check_key_reads(key, ops, values.size(), history, &result); !why.ok()) {
      return result;
    }
    // An op that needs a revision below one an op that finished before it began left.
    if (Status why = check_key_revision_order(key, ops, history, &result); !why.ok()) {
      return result;
    }
    KeyResult kr = search_ops(key, ops, values, history, options, true);
    result.states_explored += kr.states;
    if (kr.verdict == Verdict::kNotLinearizable) {
      result.verdict = Verdict::kNotLinearizable;
      result.key = key;
      result.explanation = "key " + shown(key) + ": not linearizable. " + kr.explanation;
      result.culprits = std::move(kr.culprits);
      explain_first_failure(key, ops, values, history, options, kr.states, &result);
      return result;
    }
    if (kr.verdict == Verdict::kGaveUp && !gave_up) {
      gave_up = CheckResult{Verdict::kGaveUp, key, std::move(kr.explanation), {}, 0, 0, 0};
    }
  }
  if (options.check_revision_order && !check_revision_order(history, &result)) return result;
  if (gave_up) {
    result.verdict = Verdict::kGaveUp;
    result.key = gave_up->key;
    result.explanation = std::move(gave_up->explanation);
  }
  return result;
}

}  // namespace kvc::check
