// Fault minimization of a failing server-simulation seed (the real Engine under the simulator):
// a planted server bug (skip-wal-replay: a restart forgets the WAL tail after the flushed index)
// caught by the first seed that catches it is minimized to strictly fewer faults, the minimized run
// replays and fails the same way, and with no fault suppressed a run is exactly the run of before.
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kvc/sim/server_sim.h"
#include "kvc/sim/sim_minimize.h"
#include "trace_hash.h"

namespace kvc::sim {
namespace {

std::vector<std::uint64_t> applied(const ServerSimResult& r) {
  std::vector<std::uint64_t> out;
  for (const FaultRecord& f : r.fault_log) {
    if (f.applied) out.push_back(f.ordinal);
  }
  return out;
}

using trace_testing::trace_hash;

TEST(ServerSimFaultFilterTest, NoFaultSuppressedIsTheRunOfBefore) {
  // Seed 5 (3 members) as kvc-sim --server --trace printed it once a completed scrub pass was
  // logged at info only the first time, after damage, or 10 minutes after the last (1,334 lines,
  // the same run without 114 of its scrub lines; 1,448 before, once a follower checked the whole
  // snapshot file before stepping its last chunk; 1,330 before that, once a commit index alone no
  // longer got a disk write of its own; 1,388 before that, when a leader started to send appends
  // during its own write; first pinned at commit 3c6a14a, before faults were numbered); the
  // numbered run without its "fault #N" lines is the same. (Re-pin when the schedule or the
  // server's own log lines change on purpose.) Two parts of the text differ between runs of the
  // same seed and are masked: the temporary directory's name (mkdtemp) and the wall-clock durations
  // the members log (dur_ms=).
  constexpr std::uint64_t kHashBefore = 0x45258828ef58506bull;
  for (bool record : {false, true}) {
    SCOPED_TRACE(record ? "recording" : "plain");
    ServerSimOptions o;
    o.seed = 5;
    o.members = 3;
    o.coordination = false;  // the kv-only workload the hash was pinned with
    o.hash_audits = false;   // and no hash audits or damaged chunks (they came later)
    o.snapshot_damage = false;
    o.record = record;
    o.trace = true;
    std::vector<std::string> lines;
    o.trace_sink = [&](std::string_view l) {
      if (l.find(" fault #") != std::string_view::npos) return;
      std::string line(l);
      for (std::size_t dir = line.find("kvc-server-sim-"); dir != std::string::npos;
           dir = line.find("kvc-server-sim-", dir + 1)) {
        line.replace(dir, 21, "kvc-server-sim-X");
      }
      for (std::size_t d = line.find("dur_ms="); d != std::string::npos;
           d = line.find("dur_ms=", d + 1)) {
        const std::size_t end = line.find_first_not_of("0123456789", d + 7);
        line.replace(d + 7, (end == std::string::npos ? line.size() : end) - d - 7, "X");
      }
      lines.push_back(std::move(line));
    };
    const ServerSimResult r = run_server_simulation(o);
    ASSERT_TRUE(r.ok) << r.violation;
    EXPECT_GT(r.fault_decisions, 10u);
    EXPECT_EQ(lines.size(), 1334u);
    EXPECT_EQ(trace_hash(lines), kHashBefore);
  }
}

TEST(ServerSimMinimizeTest, SkipWalReplaySeedNeedsFewerFaults) {
  // The first seed from 1 that catches skip-wal-replay (seed 2: a txn answered with values the
  // model does not have; kvc-sim's own test, sim.minimize.server-skip-wal-replay, minimizes it
  // too). Searched rather than pinned, since every deliberate change of the schedule moves it.
  // With the txn and lease workload: since a commit index alone gets no disk write of its own,
  // a restart replays less of the log, and the kv-only workload no longer catches this bug in
  // its first 50 seeds (it did at seed 12); this one still does within a few (kvc-sim --server
  // --mutation skip-wal-replay --start-seed random: after 1-18 seeds in 5 runs).
  // Without hash audits, which catch this bug sooner (a member's state hash differs at a
  // barrier) but not as a non-linearizable history, whose smallest failing part is checked
  // below.
  ServerSimOptions opt;
  opt.members = 3;
  opt.mutation = "skip-wal-replay";
  opt.hash_audits = false;
  opt.snapshot_damage = false;
  opt.record = true;
  ServerSimResult failed;
  for (opt.seed = 1; opt.seed <= 50; ++opt.seed) {
    failed = run_server_simulation(opt);
    if (!failed.ok) break;
  }
  ASSERT_FALSE(failed.ok) << "no seed in 1..50 caught skip-wal-replay";
  const std::string kind = violation_kind(failed.violation);
  std::cout << "skip-wal-replay: caught by seed " << opt.seed << "\n";
  const std::vector<std::uint64_t> all = applied(failed);
  ASSERT_GT(all.size(), 10u);

  const FaultRerun rerun =
      [&](const std::set<std::uint64_t>& only) -> std::optional<std::vector<std::uint64_t>> {
    ServerSimOptions o = opt;
    o.fault_filter.only = only;
    const ServerSimResult r = run_server_simulation(o);
    if (r.ok || violation_kind(r.violation) != kind) return std::nullopt;
    return applied(r);
  };
  MinimizeLimits limits;
  limits.max_runs = 200;
  limits.max_seconds = 240;
  const MinimizeOutcome m = minimize_faults(all, fault_groups(failed.fault_log),
                                            message_faults(failed.fault_log), rerun, limits);
  EXPECT_LT(m.kept.size(), all.size());
  std::cout << "skip-wal-replay seed " << opt.seed << ": " << m.kept.size() << " of " << all.size()
            << " faults needed (" << m.runs << " reruns, " << m.seconds << " s)\n";

  ServerSimOptions replay = opt;
  replay.fault_filter.only = std::set<std::uint64_t>(m.kept.begin(), m.kept.end());
  const ServerSimResult a = run_server_simulation(replay);
  const ServerSimResult b = run_server_simulation(replay);
  ASSERT_FALSE(a.ok);
  EXPECT_EQ(violation_kind(a.violation), kind) << a.violation;
  EXPECT_EQ(a.violation, b.violation);
  EXPECT_EQ(a.at_us, b.at_us);
  EXPECT_EQ(applied(a), m.kept);
  // The smallest failing part of the history the checker can give: a prefix of one key's
  // operations that is itself not linearizable, shorter than the whole history.
  const HistoryCut cut = smallest_failing_prefix(a.history);
  ASSERT_FALSE(cut.ops.empty());
  EXPECT_FALSE(cut.key.empty());
  EXPECT_LT(cut.ops.size(), a.history.size());
  EXPECT_NE(cut.explanation.find("not linearizable"), std::string::npos) << cut.explanation;
}

}  // namespace
}  // namespace kvc::sim
