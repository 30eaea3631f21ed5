// Fault minimization (lib/kvc/sim/sim_minimize.h): the ddmin routine on synthetic predicates,
// the fault lists and violation kinds, and the Raft-core simulation under a fault filter: with
// no fault suppressed a run is exactly the run it was before faults were numbered.
#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

#include "kvc/sim/sim.h"
#include "kvc/sim/sim_minimize.h"
#include "trace_hash.h"

namespace kvc::sim {
namespace {

std::vector<std::uint64_t> range(std::uint64_t from, std::uint64_t to) {
  std::vector<std::uint64_t> v;
  for (std::uint64_t i = from; i <= to; ++i) v.push_back(i);
  return v;
}

// A run that fails when it keeps every fault of `needed`; each fault it keeps applies.
FaultRerun needs(std::vector<std::uint64_t> needed, int* runs) {
  return [needed,
          runs](const std::set<std::uint64_t>& only) -> std::optional<std::vector<std::uint64_t>> {
    ++*runs;
    for (std::uint64_t n : needed) {
      if (only.count(n) == 0) return std::nullopt;
    }
    return std::vector<std::uint64_t>(only.begin(), only.end());
  };
}

TEST(MinimizeFaultsTest, DdminKeepsExactlyTheFaultsThePredicateNeeds) {
  const struct {
    const char* name;
    std::vector<std::uint64_t> faults;
    std::vector<std::uint64_t> needed;
  } cases[] = {
      {"none needed", range(1, 50), {}},
      {"one", range(1, 50), {17}},
      {"three spread out", range(1, 200), {3, 99, 200}},
      {"adjacent", range(1, 64), {31, 32}},
      {"all", range(1, 5), {1, 2, 3, 4, 5}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    int runs = 0;
    const MinimizeOutcome m = minimize_faults(c.faults, {}, {}, needs(c.needed, &runs), {});
    EXPECT_EQ(m.kept, c.needed);
    EXPECT_FALSE(m.bounded);
    EXPECT_EQ(m.runs, runs);
    EXPECT_LT(m.runs, 150);
  }
}

TEST(MinimizeFaultsTest, AGroupGoesInOneRerun) {
  // 400 lost messages and two crashes, of which one crash is needed: dropping the group of
  // lost messages first leaves two faults, so a handful of reruns suffice.
  std::vector<std::uint64_t> faults = range(1, 402);
  const std::vector<std::uint64_t> drops = range(1, 400);
  int runs = 0;
  const MinimizeOutcome m =
      minimize_faults(faults, {{401, 402}, drops}, drops, needs({402}, &runs), {});
  EXPECT_EQ(m.kept, std::vector<std::uint64_t>{402});
  EXPECT_LE(m.runs, 5);
}

TEST(MinimizeFaultsTest, TheOtherFaultsGoBeforeTheBackground) {
  // 200 message faults (the background) and 10 others; one of each is needed. With a small
  // bound the others are minimized first: of them only the needed one is kept.
  const std::vector<std::uint64_t> messages = range(1, 200);
  int runs = 0;
  MinimizeLimits limits;
  limits.max_runs = 12;
  const MinimizeOutcome m =
      minimize_faults(range(1, 210), {}, messages, needs({50, 205}, &runs), limits);
  EXPECT_TRUE(m.bounded);
  std::vector<std::uint64_t> others;
  for (std::uint64_t f : m.kept) {
    if (f > 200) others.push_back(f);
  }
  EXPECT_EQ(others, std::vector<std::uint64_t>{205});
  EXPECT_TRUE(std::binary_search(m.kept.begin(), m.kept.end(), 50));
  // Unbounded, both passes reach the two faults.
  runs = 0;
  EXPECT_EQ(minimize_faults(range(1, 210), {}, messages, needs({50, 205}, &runs), {}).kept,
            (std::vector<std::uint64_t>{50, 205}));
}

TEST(MinimizeFaultsTest, FaultsTheRunNeverReachedAreDropped) {
  // The run reaches only the faults below 10 (say it fails at the step of fault 9): a failing
  // subset shrinks to what it applied.
  int runs = 0;
  const FaultRerun rerun =
      [&](const std::set<std::uint64_t>& only) -> std::optional<std::vector<std::uint64_t>> {
    ++runs;
    if (only.count(9) == 0) return std::nullopt;
    return std::vector<std::uint64_t>(only.begin(), only.find(10));
  };
  const MinimizeOutcome m = minimize_faults(range(1, 100), {}, {}, rerun, {});
  EXPECT_EQ(m.kept, std::vector<std::uint64_t>{9});
}

TEST(MinimizeFaultsTest, StopsAtTheBoundWithAFailingSet) {
  int runs = 0;
  const std::vector<std::uint64_t> needed = {5, 50, 95};
  MinimizeLimits limits;
  limits.max_runs = 4;
  const MinimizeOutcome m = minimize_faults(range(1, 100), {}, {}, needs(needed, &runs), limits);
  EXPECT_TRUE(m.bounded);
  EXPECT_EQ(m.runs, 4);
  EXPECT_EQ(runs, 4);
  for (std::uint64_t n : needed) {
    EXPECT_TRUE(std::binary_search(m.kept.begin(), m.kept.end(), n)) << n;
  }
}

TEST(MinimizeFaultsTest, FaultListsParseAndPrint) {
  auto a = parse_fault_list("3,17, 22");
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(*a, (std::set<std::uint64_t>{3, 17, 22}));
  EXPECT_EQ(format_fault_list(*a), "3,17,22");
  auto none = parse_fault_list("none");
  ASSERT_TRUE(none.ok());
  EXPECT_TRUE(none->empty());
  EXPECT_EQ(format_fault_list({}), "none");
  for (const char* bad : {"x", "3;4", "-1", "1,2a", "99999999999999999999999"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(parse_fault_list(bad).ok());
  }
}

TEST(MinimizeFaultsTest, ViolationKindsIgnoreNumbersAndNames) {
  EXPECT_EQ(violation_kind("two leaders in term 5: m1 and m2"), "two leaders in term");
  EXPECT_EQ(violation_kind("leader completeness: leader 3 of term 9 lacks committed entry"),
            "leader completeness");
  EXPECT_EQ(violation_kind("committed entry 12 differs on m2 (term 3, first seen with term 2)"),
            violation_kind("committed entry 40 differs on m3 (term 7, first seen with term 6)"));
  EXPECT_NE(violation_kind("history not linearizable: key a: ..."),
            violation_kind("liveness: no write committed within 200 ticks"));
}

TEST(FaultFilterTest, OnlyAndSuppress) {
  FaultFilter f;
  EXPECT_TRUE(f.all());
  EXPECT_TRUE(f.applies(7));
  f.suppress = {7};
  EXPECT_FALSE(f.applies(7));
  EXPECT_TRUE(f.applies(8));
  f.suppress.clear();
  f.only = std::set<std::uint64_t>{3};
  EXPECT_FALSE(f.all());
  EXPECT_TRUE(f.applies(3));
  EXPECT_FALSE(f.applies(4));
}

using trace_testing::trace_hash;

std::vector<std::string> traced(SimOptions opt, SimResult* r, bool keep_fault_lines) {
  std::vector<std::string> lines;
  opt.trace = true;
  opt.trace_sink = [&](std::string_view l) {
    if (keep_fault_lines || l.find("] fault #") == std::string_view::npos) lines.emplace_back(l);
  };
  *r = run_simulation(opt);
  return lines;
}

TEST(SimulatorFaultFilterTest, NoFaultSuppressedIsTheRunOfBefore) {
  // The trace of seed 77 (3 members, faults all) as kvc-sim printed it once a leader sent
  // appends during its own write (1,390 lines; first pinned at commit 3c6a14a, before faults
  // were numbered): the numbered run, without its "fault #N" lines, is the same line for line,
  // with every filter that suppresses nothing. (Re-pin when the schedule changes on purpose.)
  SimOptions opt;
  opt.seed = 77;
  opt.members = 3;
  opt.faults = FaultMix::kAll;
  constexpr std::uint64_t kHashBefore = 0x1d2983c42f2829a5ull;
  SimResult plain;
  const auto lines = traced(opt, &plain, false);
  ASSERT_TRUE(plain.ok) << plain.violation;
  EXPECT_EQ(lines.size(), 1390u);
  EXPECT_EQ(trace_hash(lines), kHashBefore);
  EXPECT_GT(plain.fault_decisions, 10u);

  SimOptions recorded = opt;
  recorded.record = true;
  SimOptions beyond = opt;  // suppresses only decisions the run never takes
  beyond.fault_filter.suppress = {plain.fault_decisions + 1, plain.fault_decisions + 100};
  SimOptions only_all = opt;  // applies every decision the run takes
  only_all.fault_filter.only = std::set<std::uint64_t>();
  for (std::uint64_t i = 1; i <= plain.fault_decisions; ++i) only_all.fault_filter.only->insert(i);
  for (const SimOptions& o : {recorded, beyond, only_all}) {
    SimResult r;
    EXPECT_EQ(trace_hash(traced(o, &r, false)), kHashBefore);
    EXPECT_EQ(r.fault_decisions, plain.fault_decisions);
    EXPECT_EQ(r.stats.messages, plain.stats.messages);
  }
  // Recording lists every decision, each applied, with the ordinals in order.
  SimResult rec = run_simulation(recorded);
  ASSERT_EQ(rec.fault_log.size(), plain.fault_decisions);
  for (std::size_t i = 0; i < rec.fault_log.size(); ++i) {
    EXPECT_EQ(rec.fault_log[i].ordinal, i + 1);
    EXPECT_TRUE(rec.fault_log[i].applied);
  }
  EXPECT_FALSE(rec.history.empty());
}

TEST(SimulatorFaultFilterTest, ASuppressedCrashLeavesTheMemberUpAndTheRunReplays) {
  SimOptions opt;
  opt.seed = 77;
  opt.members = 3;
  opt.faults = FaultMix::kAll;
  opt.record = true;
  const SimResult full = run_simulation(opt);
  auto crash = std::find_if(full.fault_log.begin(), full.fault_log.end(),
                            [](const FaultRecord& f) { return f.kind == "crash"; });
  ASSERT_NE(crash, full.fault_log.end());
  SimOptions less = opt;
  less.fault_filter.suppress = {crash->ordinal};
  SimResult a, b;
  const auto ta = traced(less, &a, true);
  const auto tb = traced(less, &b, true);
  EXPECT_EQ(ta, tb);  // a filtered run replays bit for bit too
  const std::string applied_line = "fault #" + std::to_string(crash->ordinal) + " ";
  for (const std::string& l : ta) EXPECT_EQ(l.find(applied_line), std::string::npos) << l;
  bool listed = false;
  for (const FaultRecord& f : a.fault_log) {
    if (f.ordinal == crash->ordinal) {
      listed = true;
      EXPECT_FALSE(f.applied);
      EXPECT_EQ(f.kind, "crash");
    }
  }
  EXPECT_TRUE(listed);
  // The decisions before it are the same.
  for (std::size_t i = 0; i + 1 < crash->ordinal; ++i) {
    EXPECT_EQ(a.fault_log[i].what, full.fault_log[i].what);
    EXPECT_EQ(a.fault_log[i].at, full.fault_log[i].at);
  }
  EXPECT_NE(replay_command(less, a).find("--suppress-faults " + std::to_string(crash->ordinal)),
            std::string::npos);
}

}  // namespace
}  // namespace kvc::sim
