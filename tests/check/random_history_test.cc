// Randomized checks of the checker: histories from a simulated atomic store are linearizable by
// construction and must pass; the same histories with one planted anomaly, chosen where the
// anomaly is provably non-linearizable, must fail. Seeds are fixed; KVC_CHECK_SOAK=N runs N
// times as many histories, KVC_CHECK_SEED=S only seed S.
#include "kvc/check/random_history.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "kvc/check/linearizability.h"

namespace kvc::check {
namespace {

bool ok_write(const Operation& op) {  // completed and changed the key
  return op.outcome == Outcome::kOk &&
         (op.kind == OpKind::kPut || (op.kind == OpKind::kDelete && op.found) ||
          (op.kind == OpKind::kCas && op.found));
}
bool ok_value_write(const Operation& op) {  // completed and left a value with a known revision
  return ok_write(op) && op.kind != OpKind::kDelete && op.revision != 0;
}
bool ok_get(const Operation& op) { return op.outcome == Outcome::kOk && op.kind == OpKind::kGet; }

std::vector<std::size_t> shuffled_indexes(std::size_t n, std::mt19937_64& rng) {
  std::vector<std::size_t> v(n);
  for (std::size_t i = 0; i < n; ++i) v[i] = i;
  std::shuffle(v.begin(), v.end(), rng);
  return v;
}

// Each planter changes one operation so that no linearization exists (given that every write
// carries a unique value) and returns its index, or returns -1 when the history has no site.
using Planter = long (*)(History&, std::mt19937_64&);

// A read returns a value that a later completed write overwrote before the read began.
long plant_stale_read(History& h, std::mt19937_64& rng) {
  for (std::size_t g : shuffled_indexes(h.size(), rng)) {
    if (!ok_get(h[g])) continue;
    for (std::size_t w_new = 0; w_new < h.size(); ++w_new) {
      if (!ok_write(h[w_new]) || h[w_new].key != h[g].key ||
          h[w_new].response_time >= h[g].invoke_time) {
        continue;
      }
      for (std::size_t w_old = 0; w_old < h.size(); ++w_old) {
        if (!ok_value_write(h[w_old]) || h[w_old].key != h[g].key ||
            h[w_old].response_time >= h[w_new].invoke_time) {
          continue;
        }
        h[g].found = true;
        h[g].read_value = h[w_old].value;
        h[g].revision = h[w_old].revision;
        return static_cast<long>(g);
      }
    }
  }
  return -1;
}

// A read returns something no one wrote.
long plant_never_written(History& h, std::mt19937_64& rng) {
  for (std::size_t g : shuffled_indexes(h.size(), rng)) {
    if (!ok_get(h[g])) continue;
    h[g].found = true;
    h[g].read_value = "never-written";
    h[g].revision = 1;
    return static_cast<long>(g);
  }
  return -1;
}

// A read returns a value written by a completed write, but with another revision.
long plant_wrong_revision(History& h, std::mt19937_64& rng) {
  std::map<std::pair<std::string, std::string>, std::size_t> writer;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (ok_value_write(h[i])) writer[{h[i].key, h[i].value}] = i;
  }
  for (std::size_t g : shuffled_indexes(h.size(), rng)) {
    if (!ok_get(h[g]) || !h[g].found) continue;
    const auto it = writer.find({h[g].key, h[g].read_value});
    if (it == writer.end()) continue;  // written by an unknown-outcome op: any revision fits
    h[g].revision = h[it->second].revision + 1;
    return static_cast<long>(g);
  }
  return -1;
}

// A read finds nothing after a completed write, on a key no delete could have touched by then.
long plant_lost_write(History& h, std::mt19937_64& rng) {
  for (std::size_t g : shuffled_indexes(h.size(), rng)) {
    if (!ok_get(h[g])) continue;
    bool written_before = false, delete_possible = false;
    for (const Operation& op : h) {
      if (op.key != h[g].key) continue;
      if (ok_value_write(op) && op.response_time < h[g].invoke_time) written_before = true;
      if (op.kind == OpKind::kDelete && op.outcome != Outcome::kFailed &&
          op.invoke_time <= h[g].response_time) {
        delete_possible = true;
      }
    }
    if (!written_before || delete_possible) continue;
    h[g].found = false;
    h[g].read_value.clear();
    h[g].revision = 0;
    return static_cast<long>(g);
  }
  return -1;
}

// A second compare-and-set succeeds against the revision another one already replaced.
long plant_double_cas(History& h, std::mt19937_64& rng) {
  for (std::size_t c1 : shuffled_indexes(h.size(), rng)) {
    const Operation& a = h[c1];
    if (a.kind != OpKind::kCas || a.outcome != Outcome::kOk || !a.found || a.expect_revision == 0) {
      continue;
    }
    for (std::size_t c2 = 0; c2 < h.size(); ++c2) {
      Operation& b = h[c2];
      if (c2 == c1 || b.kind != OpKind::kCas || b.outcome != Outcome::kOk || b.key != a.key) {
        continue;
      }
      b.expect_revision = a.expect_revision;
      if (!b.found) {
        b.found = true;
        b.revision = 0;  // not learned: only the compare is wrong
      }
      return static_cast<long>(c2);
    }
  }
  return -1;
}

// A completed put gets the same revision as a put on its key that finished before it began.
long plant_revision_backwards(History& h, std::mt19937_64& rng) {
  for (std::size_t p2 : shuffled_indexes(h.size(), rng)) {
    if (!ok_value_write(h[p2])) continue;
    for (std::size_t p1 = 0; p1 < h.size(); ++p1) {
      if (ok_value_write(h[p1]) && h[p1].key == h[p2].key &&
          h[p1].response_time < h[p2].invoke_time) {
        h[p2].revision = h[p1].revision;
        return static_cast<long>(p2);
      }
    }
  }
  return -1;
}

struct Planted {
  const char* name;
  Planter plant;
  bool without_revisions;  // still provably wrong when no result carries a revision
  bool sole_culprit;       // the planted op is the one that goes wrong (not its partner)
};
const Planted kPlanters[] = {
    {"stale read", plant_stale_read, true, true},
    {"never written", plant_never_written, true, true},
    {"wrong revision", plant_wrong_revision, false, true},
    {"lost write", plant_lost_write, true, true},
    {"double cas", plant_double_cas, true, false},
    {"revision backwards", plant_revision_backwards, false, false},
};

// The same history with every result's revision forgotten: still linearizable, and the
// revision-based shortcuts can no longer decide, so the search itself must.
History without_revisions(History h) {
  for (Operation& op : h) op.revision = 0;
  return h;
}

std::uint64_t env_u64(const char* name, std::uint64_t fallback) {
  const char* v = std::getenv(name);
  return v == nullptr ? fallback : std::strtoull(v, nullptr, 10);
}

RandomHistoryOptions options_for_seed(std::uint64_t seed) {
  std::mt19937_64 rng(seed);
  auto pick = [&](std::uint64_t lo, std::uint64_t hi) {
    return std::uniform_int_distribution<std::uint64_t>(lo, hi)(rng);
  };
  RandomHistoryOptions o;
  o.seed = seed;
  o.operations = pick(5, 250);
  o.clients = pick(1, 10);
  o.keys = pick(1, 3);
  const double unknown[] = {0, 0.03, 0.1, 0.3};
  o.unknown_fraction = unknown[pick(0, 3)];
  o.failed_fraction = 0.02;
  o.max_latency = pick(1, 30);
  o.max_think = pick(0, 10);
  o.binary_values = seed % 5 == 0;
  return o;
}

TEST(RandomHistoryTest, LinearizableHistoriesPassAndPlantedAnomaliesFail) {
  const std::uint64_t only = env_u64("KVC_CHECK_SEED", 0);
  const std::uint64_t count = only != 0 ? 1 : 300 * env_u64("KVC_CHECK_SOAK", 1);
  std::map<std::string, std::uint64_t> planted;
  CheckOptions per_key_only;
  per_key_only.check_revision_order = false;  // the per-key checks alone must catch each plant
  for (std::uint64_t i = 0; i < count; ++i) {
    const std::uint64_t seed = only != 0 ? only : 1000 + i;
    const RandomHistoryOptions o = options_for_seed(seed);
    const History h = random_history(o);
    const CheckResult r = check_history(h);
    ASSERT_EQ(r.verdict, Verdict::kLinearizable)
        << "seed " << seed << " (rerun: KVC_CHECK_SEED=" << seed << ")\n"
        << r.explanation;
    const CheckResult r0 = check_history(without_revisions(h));
    ASSERT_EQ(r0.verdict, Verdict::kLinearizable)
        << "seed " << seed << ", revisions removed (rerun: KVC_CHECK_SEED=" << seed << ")\n"
        << r0.explanation;
    std::mt19937_64 rng(seed);
    for (const Planted& p : kPlanters) {
      History bad = h;
      const long at = p.plant(bad, rng);
      if (at < 0) continue;
      ++planted[p.name];
      const CheckResult br = check_history(bad, per_key_only);
      ASSERT_EQ(br.verdict, Verdict::kNotLinearizable)
          << p.name << " planted at op " << at << ": " << describe(bad[at]) << "; seed " << seed
          << " (rerun: KVC_CHECK_SEED=" << seed << ")";
      EXPECT_FALSE(br.explanation.empty());
      EXPECT_EQ(br.key, bad[at].key);
      if (!p.without_revisions) continue;
      const CheckResult sr = check_history(without_revisions(bad), per_key_only);
      ASSERT_EQ(sr.verdict, Verdict::kNotLinearizable)
          << p.name << " planted at op " << at << ", revisions removed; seed " << seed
          << " (rerun: KVC_CHECK_SEED=" << seed << ")";
      if (!p.sole_culprit) continue;
      EXPECT_NE(std::find(sr.culprits.begin(), sr.culprits.end(), static_cast<std::size_t>(at)),
                sr.culprits.end())
          << p.name << ": the planted op is not among the culprits; seed " << seed << "\n"
          << sr.explanation;
    }
  }
  if (only == 0) {
    for (const Planted& p : kPlanters) {
      SCOPED_TRACE(p.name);
      EXPECT_GE(planted[p.name], count / 10) << "too few histories had a site for this anomaly";
    }
  }
}

TEST(RandomHistoryTest, CrossKeyRevisionAnomalyFails) {
  const History h = random_history({.seed = 7, .operations = 200, .clients = 4, .keys = 4});
  ASSERT_EQ(check_history(h).verdict, Verdict::kLinearizable);
  // Give a later write on another key a revision below one that finished before it began.
  std::size_t tried = 0;
  for (std::size_t b = 0; b < h.size() && tried < 20; ++b) {
    for (std::size_t a = 0; a < h.size(); ++a) {
      if (!ok_value_write(h[a]) || !ok_value_write(h[b]) || h[a].key == h[b].key ||
          h[a].response_time >= h[b].invoke_time) {
        continue;
      }
      History bad = h;
      bad[b].revision = bad[a].revision;
      ++tried;
      EXPECT_EQ(check_history(bad).verdict, Verdict::kNotLinearizable) << describe(bad[b]);
      break;
    }
  }
  EXPECT_EQ(tried, 20u);
}

TEST(RandomHistoryTest, LargeConcurrentHistoryPasses) {
  // The benchmark's shape: many operations over ~20 keys, many clients, some lost responses.
  const History h = random_history(
      {.seed = 42, .operations = 10'000, .clients = 30, .keys = 20, .unknown_fraction = 0.03});
  const CheckResult r = check_history(h);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable) << r.explanation;
  EXPECT_EQ(r.keys, 20u);
  History bad = h;
  std::mt19937_64 rng(42);
  ASSERT_GE(plant_stale_read(bad, rng), 0);
  EXPECT_EQ(check_history(bad).verdict, Verdict::kNotLinearizable);
}

TEST(RandomHistoryTest, HotKeyWithManyUnknownOutcomesPasses) {
  const History h = random_history(
      {.seed = 9, .operations = 2'000, .clients = 20, .keys = 1, .unknown_fraction = 0.1});
  const CheckResult r = check_history(h);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable) << r.explanation;
}

TEST(RandomHistoryTest, IsDeterministicAndWellFormed) {
  const RandomHistoryOptions o{.seed = 3,
                               .operations = 500,
                               .clients = 8,
                               .keys = 3,
                               .unknown_fraction = 0.1,
                               .failed_fraction = 0.05};
  const History a = random_history(o);
  const History b = random_history(o);
  ASSERT_EQ(a.size(), 500u);
  ASSERT_EQ(a.size(), b.size());
  std::set<std::string> values;
  std::map<Outcome, int> outcomes;
  for (std::size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(describe(a[i]), describe(b[i]));
    ++outcomes[a[i].outcome];
    if (a[i].outcome == Outcome::kUnknown) {
      EXPECT_EQ(a[i].response_time, kNever);
    } else {
      EXPECT_LT(a[i].invoke_time, a[i].response_time);
    }
    if (a[i].kind == OpKind::kPut || a[i].kind == OpKind::kCas) {
      EXPECT_TRUE(values.insert(a[i].value).second) << "values must be unique";
    }
  }
  EXPECT_GT(outcomes[Outcome::kOk], 0);
  EXPECT_GT(outcomes[Outcome::kUnknown], 0);
  EXPECT_GT(outcomes[Outcome::kFailed], 0);
}

}  // namespace
}  // namespace kvc::check
