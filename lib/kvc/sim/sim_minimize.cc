// Fault minimization (sim_minimize.h): the fault lists of --only-faults and --suppress-faults,
// the kind of a violation, ddmin over a failing run's faults, and the shortest non-linearizable
// prefix of a history.
#include "kvc/sim/sim_minimize.h"

#include <algorithm>
#include <chrono>
#include <map>

#if KVC_SIM_HAVE_CHECKER
#include "kvc/check/linearizability.h"
#endif

namespace kvc::sim {

Result<std::set<std::uint64_t>> parse_fault_list(std::string_view text) {
  std::set<std::uint64_t> out;
  if (text == "none") return out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    std::string_view word = text.substr(pos, comma - pos);
    while (!word.empty() && word.front() == ' ') word.remove_prefix(1);
    while (!word.empty() && word.back() == ' ') word.remove_suffix(1);
    if (!word.empty()) {
      std::uint64_t v = 0;
      for (char ch : word) {
        if (ch < '0' || ch > '9' || v > (UINT64_MAX - 9) / 10) {
          return Status::invalid_argument(
              "fault list: expected ordinals separated by commas, not " + std::string(word));
        }
        v = v * 10 + static_cast<std::uint64_t>(ch - '0');
      }
      out.insert(v);
    }
    pos = comma + 1;
  }
  return out;
}

std::string format_fault_list(const std::set<std::uint64_t>& ordinals) {
  if (ordinals.empty()) return "none";
  std::string s;
  for (std::uint64_t o : ordinals) s += (s.empty() ? "" : ",") + std::to_string(o);
  return s;
}

std::string violation_kind(std::string_view violation) {
  const std::string_view head = violation.substr(0, violation.find(':'));
  std::string out;
  std::size_t pos = 0;
  while (pos < head.size()) {
    std::size_t end = head.find(' ', pos);
    if (end == std::string_view::npos) end = head.size();
    const std::string_view word = head.substr(pos, end - pos);
    const bool numbered =
        std::any_of(word.begin(), word.end(), [](char c) { return c >= '0' && c <= '9'; });
    if (!word.empty() && !numbered) out += (out.empty() ? "" : " ") + std::string(word);
    pos = end + 1;
  }
  return out;
}

namespace {

std::vector<std::uint64_t> minus(const std::vector<std::uint64_t>& a,
                                 const std::vector<std::uint64_t>& b) {
  std::vector<std::uint64_t> out;
  std::set_difference(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(out));
  return out;
}

}  // namespace

MinimizeOutcome minimize_faults(const std::vector<std::uint64_t>& faults,
                                const std::vector<std::vector<std::uint64_t>>& groups,
                                const std::vector<std::uint64_t>& background,
                                const FaultRerun& rerun, const MinimizeLimits& limits,
                                const MinimizeProgress& progress) {
  const auto start = std::chrono::steady_clock::now();
  const auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  MinimizeOutcome out;
  std::vector<std::uint64_t> c = faults;
  std::sort(c.begin(), c.end());
  c.erase(std::unique(c.begin(), c.end()), c.end());
  std::map<std::vector<std::uint64_t>, bool> tried;
  // Whether `subset` still fails; if so it (its faults that were applied) becomes `c`.
  const auto fails = [&](const std::vector<std::uint64_t>& subset) {
    if (out.bounded) return false;
    if (auto it = tried.find(subset); it != tried.end()) return it->second;
    if (out.runs >= limits.max_runs || elapsed() >= limits.max_seconds) {
      out.bounded = true;
      return false;
    }
    ++out.runs;
    const std::optional<std::vector<std::uint64_t>> applied =
        rerun(std::set<std::uint64_t>(subset.begin(), subset.end()));
    tried[subset] = applied.has_value();
    if (applied) {
      // Faults of the subset the run never reached change nothing: they go too.
      std::vector<std::uint64_t> a = *applied;
      std::sort(a.begin(), a.end());
      std::vector<std::uint64_t> kept;
      std::set_intersection(subset.begin(), subset.end(), a.begin(), a.end(),
                            std::back_inserter(kept));
      c = std::move(kept);
    }
    if (progress) progress(out.runs, c.size());
    return applied.has_value();
  };

  std::vector<std::uint64_t> back = background;
  std::sort(back.begin(), back.end());
  // ddmin over the faults of `c` in `scope` (the others stay): split them into n chunks; keep a
  // chunk, or drop one, when that still fails; else split finer, down to single faults.
  const auto ddmin = [&](bool in_background) {
    std::size_t n = 2;
    while (!out.bounded) {
      std::vector<std::uint64_t> cand, fixed;
      for (std::uint64_t f : c) {
        (std::binary_search(back.begin(), back.end(), f) == in_background ? cand : fixed)
            .push_back(f);
      }
      if (cand.empty()) return;
      if (cand.size() == 1) {
        (void)fails(fixed);
        return;
      }
      n = std::min(n, cand.size());
      std::vector<std::vector<std::uint64_t>> chunks;
      for (std::size_t i = 0; i < n; ++i) {
        const std::size_t from = i * cand.size() / n, to = (i + 1) * cand.size() / n;
        chunks.emplace_back(cand.begin() + static_cast<std::ptrdiff_t>(from),
                            cand.begin() + static_cast<std::ptrdiff_t>(to));
      }
      bool reduced = false;
      for (const auto& chunk : chunks) {
        std::vector<std::uint64_t> with = fixed;
        with.insert(with.end(), chunk.begin(), chunk.end());
        std::sort(with.begin(), with.end());
        if (fails(with)) {
          n = 2;
          reduced = true;
          break;
        }
      }
      if (!reduced && n > 2) {  // (with two chunks, a complement is the other chunk)
        for (const auto& chunk : chunks) {
          if (fails(minus(c, chunk))) {
            n = std::max<std::size_t>(n - 1, 2);
            reduced = true;
            break;
          }
        }
      }
      if (!reduced) {
        if (n >= cand.size()) return;
        n = std::min(2 * n, cand.size());
      }
    }
  };

  if (!c.empty() && !fails({})) {
    // Whole kinds of faults first (most often: every lost or delayed message), largest first.
    std::vector<std::vector<std::uint64_t>> by_size = groups;
    for (auto& g : by_size) std::sort(g.begin(), g.end());
    std::stable_sort(by_size.begin(), by_size.end(),
                     [](const auto& a, const auto& b) { return a.size() > b.size(); });
    for (const auto& g : by_size) {
      const std::vector<std::uint64_t> rest = minus(c, g);
      if (rest.size() != c.size() && !rest.empty()) (void)fails(rest);
    }
    std::vector<std::uint64_t> before;
    do {
      before = c;
      ddmin(false);
      ddmin(true);
    } while (c != before && !out.bounded);
  }
  out.kept = c;
  out.seconds = elapsed();
  return out;
}

std::vector<std::uint64_t> message_faults(const std::vector<FaultRecord>& faults) {
  std::vector<std::uint64_t> out;
  for (const FaultRecord& f : faults) {
    if (f.applied &&
        (f.kind == "drop" || f.kind == "duplicate" || f.kind == "delay" || f.kind == "slow-sync")) {
      out.push_back(f.ordinal);
    }
  }
  return out;
}

std::vector<std::vector<std::uint64_t>> fault_groups(const std::vector<FaultRecord>& faults) {
  std::map<std::string, std::vector<std::uint64_t>> by_kind;
  for (const FaultRecord& f : faults) {
    if (f.applied) by_kind[f.kind].push_back(f.ordinal);
  }
  std::vector<std::vector<std::uint64_t>> out;
  for (auto& [kind, ordinals] : by_kind) out.push_back(std::move(ordinals));
  return out;
}

#if KVC_SIM_HAVE_CHECKER

namespace {

// The history as it stood at time `t`: operations invoked before it; those not answered by then
// are unanswered (a read among them simply failed).
check::History prefix_at(const check::History& h, std::uint64_t t) {
  check::History out;
  for (const check::Operation& op : h) {
    if (op.invoke_time >= t) continue;
    check::Operation o = op;
    if (o.outcome != check::Outcome::kFailed && o.response_time >= t) {
      o.outcome =
          o.kind == check::OpKind::kGet ? check::Outcome::kFailed : check::Outcome::kUnknown;
      o.response_time = check::kNever;
    }
    out.push_back(std::move(o));
  }
  return out;
}

}  // namespace

HistoryCut smallest_failing_prefix(const check::History& history) {
  HistoryCut cut;
  const check::CheckResult whole = check::check_history(history);
  if (whole.verdict != check::Verdict::kNotLinearizable) return cut;
  // Linearizability is local: the failing key's operations alone fail, unless the failure is
  // the cross-key revision order.
  check::History h;
  for (const check::Operation& op : history) {
    if (op.key == whole.key) h.push_back(op);
  }
  if (check::check_history(h).verdict == check::Verdict::kNotLinearizable) {
    cut.key = whole.key;
  } else {
    h = history;
  }
  // A prefix of a linearizable history is linearizable: the failing prefixes are those past some
  // moment, which a binary search over the response times finds.
  std::vector<std::uint64_t> times;
  for (const check::Operation& op : h) {
    if (op.outcome != check::Outcome::kUnknown && op.response_time != check::kNever) {
      times.push_back(op.response_time + 1);
    }
  }
  times.push_back(check::kNever);
  std::sort(times.begin(), times.end());
  times.erase(std::unique(times.begin(), times.end()), times.end());
  std::size_t lo = 0, hi = times.size() - 1;  // times[hi] fails
  while (lo < hi) {
    const std::size_t mid = lo + (hi - lo) / 2;
    if (check::check_history(prefix_at(h, times[mid])).verdict ==
        check::Verdict::kNotLinearizable) {
      hi = mid;
    } else {
      lo = mid + 1;
    }
  }
  check::History prefix = prefix_at(h, times[hi]);
  std::stable_sort(prefix.begin(), prefix.end(),
                   [](const auto& a, const auto& b) { return a.invoke_time < b.invoke_time; });
  for (const check::Operation& op : prefix) {
    // (Operations that definitely failed do not take part: the checker drops them too.)
    if (op.outcome != check::Outcome::kFailed) cut.ops.push_back(check::describe(op));
  }
  cut.explanation = check::check_history(prefix).explanation;
  return cut;
}

#else

HistoryCut smallest_failing_prefix(const check::History&) { return {}; }

#endif

}  // namespace kvc::sim
