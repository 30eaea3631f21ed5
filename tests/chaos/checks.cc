#include "checks.h"

#include <algorithm>
#include <cstdio>
#include <map>
#include <set>

namespace kvc::chaos {
namespace {

constexpr std::size_t kMaxProblems = 20;

void add_problem(WriteCheck& w, std::size_t& total, std::string p) {
  if (w.problems.size() < kMaxProblems) w.problems.push_back(std::move(p));
  ++total;
}

bool took_effect(const check::Operation& op) {
  if (op.outcome != check::Outcome::kOk || op.revision == 0) return false;
  switch (op.kind) {
    case check::OpKind::kPut:
      return true;
    case check::OpKind::kCas:
    case check::OpKind::kDelete:
      return op.found;
    case check::OpKind::kGet:
      return false;
  }
  return false;
}

std::string describe_event(const wire::Event& e) {
  if (e.type == wire::EventType::kDelete) return "delete(" + e.kv.key + ")";
  return "put(" + e.kv.key + ", " + e.kv.value + ")";
}

std::string seconds(std::uint64_t us) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3fs", static_cast<double>(us) / 1e6);
  return buf;
}

}  // namespace

WriteCheck check_acknowledged_writes(const check::History& h,
                                     const std::vector<wire::Event>& events,
                                     std::uint64_t first_revision, const std::string& member) {
  WriteCheck w;
  std::size_t total = 0;
  std::set<std::string> keys;
  std::map<std::string, std::vector<std::size_t>> writers;  // value -> ops writing it
  for (std::size_t i = 0; i < h.size(); ++i) {
    keys.insert(h[i].key);
    if (h[i].kind == check::OpKind::kPut || h[i].kind == check::OpKind::kCas) {
      writers[h[i].value].push_back(i);
    }
  }
  std::map<std::uint64_t, const wire::Event*> by_revision;
  for (const wire::Event& e : events) {
    if (keys.count(e.kv.key) == 0) continue;
    ++w.events;
    auto [it, fresh] = by_revision.emplace(e.kv.mod_revision, &e);
    if (!fresh) {
      add_problem(w, total,
                  member + " has two changes at revision " + std::to_string(e.kv.mod_revision) +
                      ": " + describe_event(*it->second) + " and " + describe_event(e));
    }
  }
  for (const check::Operation& op : h) {
    if (!took_effect(op)) continue;
    if (op.revision < first_revision) {
      ++w.acknowledged_compacted;
      continue;
    }
    auto it = by_revision.find(op.revision);
    if (it == by_revision.end()) {
      add_problem(w, total,
                  "acknowledged write lost: " + check::describe(op) + " is not in " + member +
                      "'s history (no change to a client key at revision " +
                      std::to_string(op.revision) + ")");
      continue;
    }
    const wire::Event& e = *it->second;
    const bool is_delete = op.kind == check::OpKind::kDelete;
    const bool match = e.kv.key == op.key &&
                       (is_delete ? e.type == wire::EventType::kDelete
                                  : e.type == wire::EventType::kPut && e.kv.value == op.value);
    if (!match) {
      add_problem(w, total,
                  "acknowledged write lost: " + check::describe(op) + ", but at revision " +
                      std::to_string(op.revision) + " " + member + " has " + describe_event(e));
      continue;
    }
    ++w.acknowledged_checked;
  }
  std::map<std::string, std::uint64_t> applied_at;  // value -> revision
  for (const auto& [revision, e] : by_revision) {
    if (e->type != wire::EventType::kPut) continue;
    auto [seen, fresh] = applied_at.emplace(e->kv.value, revision);
    if (!fresh) {
      add_problem(w, total,
                  "write applied twice: value " + e->kv.value + " of key " + e->kv.key +
                      " is the change at revisions " + std::to_string(seen->second) + " and " +
                      std::to_string(revision) + " on " + member);
    }
    auto wr = writers.find(e->kv.value);
    if (wr == writers.end()) {
      add_problem(w, total,
                  "phantom write: " + member + " has " + describe_event(*e) + " at revision " +
                      std::to_string(revision) + ", a value no client wrote");
      continue;
    }
    bool possible = false;
    for (std::size_t i : wr->second) {
      if (h[i].outcome != check::Outcome::kFailed && h[i].key == e->kv.key) possible = true;
    }
    if (!possible) {
      add_problem(w, total,
                  "a write the client was told failed (not applied) was applied: " +
                      check::describe(h[wr->second.front()]) + " is the change at revision " +
                      std::to_string(revision) + " on " + member);
    }
  }
  if (total > w.problems.size()) {
    w.problems.push_back("... and " + std::to_string(total - w.problems.size()) + " more");
  }
  return w;
}

std::vector<std::string> check_revisions_unique(const check::History& h) {
  std::vector<std::string> problems;
  std::map<std::uint64_t, std::size_t> by_revision;  // revision -> first op acknowledged there
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (!took_effect(h[i])) continue;
    auto [it, fresh] = by_revision.emplace(h[i].revision, i);
    if (!fresh && problems.size() < kMaxProblems) {
      problems.push_back("two writes acknowledged at revision " + std::to_string(h[i].revision) +
                         " (one of them was lost): " + check::describe(h[it->second]) + " and " +
                         check::describe(h[i]));
    }
  }
  return problems;
}

std::vector<std::string> compare_states(const std::vector<MemberState>& states) {
  std::vector<std::string> out;
  if (states.empty()) return out;
  const MemberState& ref = states.front();
  for (std::size_t i = 1; i < states.size(); ++i) {
    const MemberState& s = states[i];
    if (s.applied_index != ref.applied_index) {
      out.push_back(s.name + " is at applied index " + std::to_string(s.applied_index) + ", " +
                    ref.name + " at " + std::to_string(ref.applied_index));
    }
    std::map<std::string, const wire::KeyValue*> a, b;
    for (const wire::KeyValue& kv : ref.kvs) a[kv.key] = &kv;
    for (const wire::KeyValue& kv : s.kvs) b[kv.key] = &kv;
    std::set<std::string> all;
    for (const auto& [k, v] : a) all.insert(k);
    for (const auto& [k, v] : b) all.insert(k);
    std::size_t diffs = 0;
    for (const std::string& k : all) {
      auto x = a.find(k);
      auto y = b.find(k);
      std::string d;
      auto show = [](const wire::KeyValue* kv) {
        return kv == nullptr ? std::string("absent")
                             : "'" + kv->value + "' mod=" + std::to_string(kv->mod_revision) +
                                   " create=" + std::to_string(kv->create_revision) +
                                   " version=" + std::to_string(kv->version);
      };
      const wire::KeyValue* l = x == a.end() ? nullptr : x->second;
      const wire::KeyValue* r = y == b.end() ? nullptr : y->second;
      if (l != nullptr && r != nullptr && *l == *r) continue;
      if (++diffs > 10) continue;
      out.push_back("state differs at key " + k + ": " + ref.name + " " + show(l) + ", " + s.name +
                    " " + show(r));
    }
    if (diffs > 10) out.push_back("... and " + std::to_string(diffs - 10) + " more keys differ");
  }
  return out;
}

std::string history_excerpt(const check::History& h, const check::CheckResult& r,
                            const std::vector<std::pair<std::uint64_t, std::string>>& events,
                            std::uint64_t window_us, std::size_t max_lines) {
  std::uint64_t lo = check::kNever, hi = 0;
  std::set<std::size_t> culprits(r.culprits.begin(), r.culprits.end());
  for (std::size_t i : culprits) {
    if (i >= h.size()) continue;
    lo = std::min(lo, h[i].invoke_time);
    hi = std::max(hi, h[i].response_time == check::kNever ? h[i].invoke_time : h[i].response_time);
  }
  if (lo == check::kNever) {  // no culprit named: the key's last operations
    for (const check::Operation& op : h) {
      if (op.key == r.key) hi = std::max(hi, op.invoke_time);
    }
    lo = hi;
  }
  const std::uint64_t from = lo > window_us ? lo - window_us : 0;
  const std::uint64_t to = hi + window_us;
  std::vector<std::size_t> picked;
  for (std::size_t i = 0; i < h.size(); ++i) {
    const check::Operation& op = h[i];
    if (op.key != r.key) continue;
    const std::uint64_t end = op.response_time == check::kNever ? check::kNever : op.response_time;
    if (end < from || op.invoke_time > to) continue;
    picked.push_back(i);
  }
  // Keep the culprits and the operations nearest to them when there are too many.
  if (picked.size() > max_lines) {
    const std::uint64_t mid = lo / 2 + hi / 2;
    std::stable_sort(picked.begin(), picked.end(), [&](std::size_t a, std::size_t b) {
      const bool ca = culprits.count(a) != 0, cb = culprits.count(b) != 0;
      if (ca != cb) return ca;
      auto dist = [&](std::size_t i) {
        const std::uint64_t t = h[i].invoke_time;
        return t > mid ? t - mid : mid - t;
      };
      return dist(a) < dist(b);
    });
    picked.resize(max_lines);
    std::sort(picked.begin(), picked.end());
  }
  std::string out = "operations on key " + r.key + " between " + seconds(from) + " and " +
                    seconds(to) + " (times in microseconds since the run began; >> marks the " +
                    "operations the checker could not place):\n";
  for (std::size_t i : picked) {
    out += (culprits.count(i) != 0 ? "  >> " : "     ") + check::describe(h[i]) + "\n";
  }
  std::string acts;
  for (const auto& [t, line] : events) {
    if (t + window_us < from || t > to + window_us) continue;
    acts += "     " + seconds(t) + "  " + line + "\n";
  }
  if (!acts.empty()) out += "what the harness did around then:\n" + acts;
  return out;
}

}  // namespace kvc::chaos
