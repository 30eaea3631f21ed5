// kvc-sim: runs the deterministic cluster simulator over a range of seeds and reports the
// first violation with a one-line replay command and a readable trace.
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <optional>
#include <sstream>

#include "cli.h"
#include "kvc/common/log.h"
#include "kvc/sim/sim.h"
#include "minimize.h"
#include "server_mode.h"

namespace {

constexpr int kExitCaughtNothing = 1;

struct Totals {
  std::uint64_t seeds = 0, failed = 0, steps = 0, ticks = 0, messages = 0, operations = 0,
                operations_ok = 0, unknown = 0, checked = 0, commits = 0, crashes = 0,
                partitions = 0, conf_changes = 0, transfers = 0, snapshots = 0, elections = 0,
                rollbacks = 0, losses_detected = 0, damages = 0, damage_detected = 0, repairs = 0;
};

void add(Totals& t, const kvc::sim::SimResult& r) {
  ++t.seeds;
  t.failed += r.ok ? 0 : 1;
  t.steps += r.stats.steps;
  t.ticks += r.stats.ticks;
  t.messages += r.stats.messages;
  t.operations += r.stats.operations;
  t.operations_ok += r.stats.operations_ok;
  t.unknown += r.stats.operations_unknown;
  t.checked += r.stats.checked_operations;
  t.commits += r.stats.committed;
  t.crashes += r.stats.crashes;
  t.partitions += r.stats.partitions;
  t.conf_changes += r.stats.conf_changes;
  t.transfers += r.stats.transfers;
  t.snapshots += r.stats.snapshots_sent;
  t.elections += r.stats.elections;
  t.rollbacks += r.stats.rollbacks;
  t.losses_detected += r.stats.losses_detected;
  t.damages += r.stats.damages;
  t.damage_detected += r.stats.damage_detected;
  t.repairs += r.stats.repairs;
}

// Replays `opt` with tracing and prints the last `lines` lines of the trace to stderr.
void print_trace(kvc::sim::SimOptions opt, int lines) {
  std::deque<std::string> tail;
  opt.trace = true;
  opt.trace_sink = [&](std::string_view line) {
    tail.emplace_back(line);
    if (lines > 0 && static_cast<int>(tail.size()) > lines) tail.pop_front();
  };
  (void)kvc::sim::run_simulation(opt);
  std::cerr << "--- trace (last " << tail.size() << " lines) ---\n";
  for (const auto& l : tail) std::cerr << l << '\n';
  std::cerr << "--- end of trace ---\n";
}

// A start seed from /dev/urandom, small enough to read and type (1..2^40).
kvc::Result<std::uint64_t> random_seed() {
  std::ifstream in("/dev/urandom", std::ios::binary);
  std::uint64_t v = 0;
  if (!in.read(reinterpret_cast<char*>(&v), sizeof v)) {
    return kvc::Status::io_error("/dev/urandom: cannot read a random start seed");
  }
  return (v & ((std::uint64_t{1} << 40) - 1)) + 1;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "kvc-sim: the deterministic Raft cluster simulator. Each seed runs a whole 3- or 5-member "
      "cluster with a faulty network, crashing and rolled-back disks and damaged state values, "
      "checks Raft's safety properties after every step, liveness and repair after the faults "
      "heal, and linearizability of the client history. With --server each seed runs the real "
      "server code (the Engine kvc-node runs) instead of the Raft core alone.",
      "kvc-sim");
  kvc::LogOptions log;
  kvc::cli::add_common_flags(app, log);

  std::uint64_t seed = 1;
  std::uint64_t seeds = 1;
  std::string start_seed;
  double time_limit = 0;
  std::string members = "mixed";
  std::string faults = "mixed";
  std::string mutation = "none";
  std::string seed_file;
  bool expect_violation = false;
  bool keep_going = false;
  bool trace = false;
  int trace_lines = 200;
  std::string output = "simple";
  kvc::sim::SimOptions base;
  bool server = false;
  MinimizeFlags min_flags;

  auto* seed_opt = app.add_option("--seed", seed, "first seed (default: $KVC_SIM_SEED, else 1)")
                       ->envname("KVC_SIM_SEED");
  app.add_option("--start-seed", start_seed,
                 "first seed, or random: one drawn from /dev/urandom and printed first, so a run "
                 "starts somewhere new each time and still replays")
      ->excludes(seed_opt);
  app.add_option("--seeds", seeds, "how many seeds to run, from --seed upwards")
      ->check(CLI::PositiveNumber);
  app.add_option("--seed-file", seed_file,
                 "run the seeds listed in FILE (one per line, optionally with faults=MIX and "
                 "members=N; # comments)");
  app.add_option("--time-limit", time_limit,
                 "stop starting new seeds after this many seconds (0: none)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--members", members, "cluster size: 3, 5 or mixed (chosen per seed)")
      ->check(CLI::IsMember({"3", "5", "mixed"}));
  app.add_option("--faults", faults,
                 "fault mix: none, net, partition, crash, membership, repair, all, targeted, mixed")
      ->check(CLI::IsMember({"none", "net", "partition", "crash", "membership", "repair", "all",
                             "targeted", "mixed"}));
  app.add_flag("--server", server,
               "run the real server code (the Engine of kvc-node: WAL replay, the Ready loop, "
               "apply, reads, LMDB flushes) under the simulator instead of the Raft core alone");
  // The accepted names: the Raft core's mutations, then the server's (where built).
  std::vector<std::string> mutation_names = {"none"};
  for (kvc::raft::Mutation m : kvc::raft::kAllMutations) {
    mutation_names.emplace_back(kvc::raft::mutation_name(m));
  }
  std::string raft_names, server_names;
  for (std::size_t i = 1; i < mutation_names.size(); ++i) {
    raft_names += ", " + mutation_names[i];
  }
  for (const std::string& m : server_mutation_names()) {
    mutation_names.push_back(m);
    server_names += (server_names.empty() ? "" : ", ") + m;
  }
  app.add_option(
         "--mutation", mutation,
         "run against a deliberately broken core: none" + raft_names +
             (server_names.empty() ? "" : "; with --server a broken server: " + server_names))
      ->check(CLI::IsMember(mutation_names));
  app.add_flag("--expect-violation", expect_violation,
               "succeed only if some seed finds a violation (mutation runs); stop at the first");
  app.add_flag("--keep-going", keep_going,
               "run every seed even after violations: count them, print each one's violation and "
               "replay line");
  app.add_flag("--trace", trace,
               "print the trace of every step of a single seed (or of a failing seed)");
  app.add_option("--trace-lines", trace_lines,
                 "lines of trace shown for a failing seed (of its minimized run; 0: all)")
      ->check(CLI::NonNegativeNumber);
  add_minimize_flags(app, min_flags);
  auto* fault_ticks =
      app.add_option("--fault-ticks", base.fault_ticks,
                     "ticks of faults before everything heals (--server: ticks of 10 ms)")
          ->check(CLI::PositiveNumber);
  auto* liveness_ticks = app.add_option("--liveness-ticks", base.liveness_ticks,
                                        "after healing, ticks allowed to commit a write")
                             ->check(CLI::PositiveNumber);
  auto* clients = app.add_option("--clients", base.clients, "concurrent simulated clients")
                      ->check(CLI::Range(1, 64));
  app.add_option("-o,--output", output, "summary format: simple or json")
      ->check(CLI::IsMember({"simple", "json"}));
  app.footer(kvc::cli::exit_code_footer(
      "  kvc-sim --seeds 2000                      # the CI run\n"
      "  kvc-sim --seed 42 --members 5 --faults all --trace\n"
      "  kvc-sim --mutation commit-old-term --faults targeted --start-seed random --seeds 1000 \\\n"
      "          --expect-violation                # prints: caught after K seeds (seed S)\n"
      "  kvc-sim --faults repair --seeds 1000     # rollbacks and damaged values\n"
      "  kvc-sim --server --seeds 1000             # the real server code\n"
      "  kvc-sim --server --mutation skip-wal-replay --start-seed random --seeds 1000 \\\n"
      "          --expect-violation\n"
      "  kvc-sim --seeds 1000000 --time-limit 3600 # soak\n"
      "  kvc-sim --mutation commit-old-term --faults targeted --seed 15\n"
      "          # prints: minimized: K of N faults needed, and a replay line with --only-faults",
      "  1   a seed found a violation (or, with --expect-violation, none did)"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;
  if (auto rc = resolve_minimize_flags(app, min_flags, expect_violation, keep_going, trace_lines,
                                       base.fault_filter)) {
    return *rc;
  }
  const bool do_minimize = min_flags.enabled;
  const MinimizeArgs& min_args = min_flags.args;

  if (!start_seed.empty()) {
    if (start_seed == "random") {
      auto r = random_seed();
      if (!r.ok()) return kvc::cli::fail("kvc-sim", r.status());
      seed = *r;
    } else {
      char* end = nullptr;
      errno = 0;
      const unsigned long long v = std::strtoull(start_seed.c_str(), &end, 10);
      if (start_seed[0] == '-' || end == start_seed.c_str() || *end != '\0' || errno != 0) {
        std::cerr << "kvc-sim: --start-seed: expected a number or random, not " << start_seed
                  << '\n';
        return kvc::kExitUsage;
      }
      seed = v;
    }
    // First, so that a run cut short still says where it started.
    std::cerr << "kvc-sim: start seed " << seed << '\n';
  }

  const bool server_mutation = mutation != "none" && !kvc::raft::mutation_from_name(mutation);
  if (server || server_mutation) {
    if (!server) {
      std::cerr << "kvc-sim: --mutation " << mutation << " is a server mutation: add --server\n";
      return kvc::kExitUsage;
    }
    if (mutation != "none" && !is_server_mutation(mutation)) {
      std::cerr << "kvc-sim: --mutation " << mutation
                << " breaks the Raft core: run it without --server\n";
      return kvc::kExitUsage;
    }
    if (!seed_file.empty()) {
      std::cerr << "kvc-sim: --seed-file is for the Raft-level simulation, not --server\n";
      return kvc::kExitUsage;
    }
    ServerModeArgs a;
    a.seed = seed;
    a.seeds = seeds;
    a.time_limit = time_limit;
    a.members = members;
    a.mutation = mutation;
    a.expect_violation = expect_violation;
    a.keep_going = keep_going;
    a.trace = trace;
    a.trace_lines = trace_lines;
    a.output = output;
    a.fault_filter = base.fault_filter;
    a.minimize = do_minimize;
    a.minimize_args = min_args;
    if (fault_ticks->count() != 0) a.fault_ms = static_cast<std::uint64_t>(base.fault_ticks) * 10;
    if (liveness_ticks->count() != 0) {
      a.liveness_ms = static_cast<std::uint64_t>(base.liveness_ticks) * 10;
    }
    if (clients->count() != 0) a.clients = base.clients;
    return run_server_mode(a);
  }

  kvc::sim::FaultMix mix = kvc::sim::FaultMix::kMixed;
  (void)kvc::sim::fault_mix_from_name(faults, mix);
  base.faults = mix;
  base.members = members == "mixed" ? 0 : std::atoi(members.c_str());
  base.mutation = *kvc::raft::mutation_from_name(mutation);
  if (base.mutation != kvc::raft::Mutation::kNone && !kvc::raft::kMutationsCompiled) {
    return kvc::cli::fail("kvc-sim",
                          kvc::Status::failed_precondition(
                              "this build has no mutations (configure with -DKVC_MUTATIONS=ON)"));
  }

  // A seed and, from a seed file, the fault mix and cluster size it failed with.
  struct Run {
    std::uint64_t seed = 0;
    std::optional<kvc::sim::FaultMix> faults;
    int members = 0;
  };
  std::vector<Run> list;
  if (!seed_file.empty()) {
    std::ifstream in(seed_file);
    if (!in) return kvc::cli::fail("kvc-sim", kvc::Status::not_found(seed_file + ": cannot open"));
    std::string line;
    int lineno = 0;
    while (std::getline(in, line)) {
      ++lineno;
      const auto hash = line.find('#');
      if (hash != std::string::npos) line.resize(hash);
      std::istringstream ls(line);
      const auto bad = [&](const std::string& why) {
        return kvc::cli::fail(
            "kvc-sim",
            kvc::Status::invalid_argument(seed_file + ":" + std::to_string(lineno) + ": " + why));
      };
      Run run;
      if (!(ls >> run.seed)) {
        std::string rest;
        std::istringstream check(line);
        if (check >> rest) return bad("not a seed");
        continue;
      }
      // Optional after the seed: faults=MIX and members=3|5 (what the seed failed with).
      std::string word;
      while (ls >> word) {
        kvc::sim::FaultMix named;
        if (word.rfind("faults=", 0) == 0 && kvc::sim::fault_mix_from_name(word.substr(7), named)) {
          run.faults = named;
        } else if (word == "members=3" || word == "members=5") {
          run.members = word.back() - '0';
        } else {
          return bad("expected faults=MIX or members=3|5 after the seed, not " + word);
        }
      }
      list.push_back(run);
    }
  } else {
    for (std::uint64_t i = 0; i < seeds; ++i) list.push_back({seed + i, std::nullopt, 0});
  }

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  Totals totals;
  bool caught = false;
  std::uint64_t caught_seed = 0;
  for (std::size_t i = 0; i < list.size(); ++i) {
    if (time_limit > 0 && elapsed() >= time_limit) break;
    kvc::sim::SimOptions opt = base;
    opt.seed = list[i].seed;
    if (list[i].faults) opt.faults = *list[i].faults;
    if (list[i].members != 0) opt.members = list[i].members;
    if (trace && list.size() == 1) {
      opt.trace = true;
      opt.trace_sink = [](std::string_view l) { std::cerr << l << '\n'; };
    }
    const kvc::sim::SimResult r = kvc::sim::run_simulation(opt);
    add(totals, r);
    if (!r.ok) {
      caught = true;
      caught_seed = opt.seed;
      std::cerr << "kvc-sim: seed " << opt.seed << " (" << r.members << " members, faults "
                << kvc::sim::fault_mix_name(r.faults) << "): VIOLATION: " << r.violation << '\n';
      if (!(trace && list.size() == 1) && !keep_going && !do_minimize) {
        print_trace(opt, trace_lines);
      }
      std::cerr << "kvc-sim: replay with: " << kvc::sim::replay_command(opt, r) << '\n';
      if (do_minimize) minimize_raft_run(opt, r, min_args);
      if (!keep_going) break;
    }
  }
  const double secs = elapsed();
  const bool lin = kvc::sim::linearizability_checker_available();
  if (output == "json") {
    std::printf(
        "{\"seeds\":%llu,\"failed\":%llu,\"mutation\":\"%s\",\"caught_at_seed_index\":%lld,"
        "\"first_seed\":%llu,\"caught_seed\":%lld,"
        "\"operations\":%llu,\"operations_ok\":%llu,\"operations_unknown\":%llu,\"linearizability_"
        "checked\":%s,"
        "\"checked_operations\":%llu,\"steps\":%llu,\"ticks\":%llu,\"messages\":%llu,"
        "\"committed_entries\":%llu,\"elections\":%llu,\"crashes\":%llu,\"partitions\":%llu,"
        "\"conf_changes\":%llu,\"transfers\":%llu,\"snapshots_sent\":%llu,\"rollbacks\":%llu,"
        "\"losses_detected\":%llu,\"damages\":%llu,\"damage_detected\":%llu,\"repairs\":%llu,"
        "\"seconds\":%.3f}\n",
        (unsigned long long)totals.seeds, (unsigned long long)totals.failed, mutation.c_str(),
        caught ? (long long)totals.seeds : -1LL,
        (unsigned long long)(list.empty() ? seed : list[0].seed),
        caught ? (long long)caught_seed : -1LL, (unsigned long long)totals.operations,
        (unsigned long long)totals.operations_ok, (unsigned long long)totals.unknown,
        lin ? "true" : "false", (unsigned long long)totals.checked,
        (unsigned long long)totals.steps, (unsigned long long)totals.ticks,
        (unsigned long long)totals.messages, (unsigned long long)totals.commits,
        (unsigned long long)totals.elections, (unsigned long long)totals.crashes,
        (unsigned long long)totals.partitions, (unsigned long long)totals.conf_changes,
        (unsigned long long)totals.transfers, (unsigned long long)totals.snapshots,
        (unsigned long long)totals.rollbacks, (unsigned long long)totals.losses_detected,
        (unsigned long long)totals.damages, (unsigned long long)totals.damage_detected,
        (unsigned long long)totals.repairs, secs);
  } else {
    std::printf(
        "seeds=%llu failed=%llu operations=%llu ok=%llu unknown=%llu linearizability=%s "
        "checked=%llu "
        "committed=%llu elections=%llu crashes=%llu partitions=%llu conf_changes=%llu "
        "transfers=%llu snapshots=%llu rollbacks=%llu losses_detected=%llu damages=%llu "
        "damage_detected=%llu repairs=%llu messages=%llu seconds=%.1f\n",
        (unsigned long long)totals.seeds, (unsigned long long)totals.failed,
        (unsigned long long)totals.operations, (unsigned long long)totals.operations_ok,
        (unsigned long long)totals.unknown, lin ? "on" : "not-built",
        (unsigned long long)totals.checked, (unsigned long long)totals.commits,
        (unsigned long long)totals.elections, (unsigned long long)totals.crashes,
        (unsigned long long)totals.partitions, (unsigned long long)totals.conf_changes,
        (unsigned long long)totals.transfers, (unsigned long long)totals.snapshots,
        (unsigned long long)totals.rollbacks, (unsigned long long)totals.losses_detected,
        (unsigned long long)totals.damages, (unsigned long long)totals.damage_detected,
        (unsigned long long)totals.repairs, (unsigned long long)totals.messages, secs);
  }
  if (expect_violation) {
    if (caught) {
      std::fprintf(stderr, "kvc-sim: mutation %s caught after %llu seeds (seed %llu)\n",
                   mutation.c_str(), (unsigned long long)totals.seeds,
                   (unsigned long long)caught_seed);
      return kvc::kExitOk;
    }
    std::fprintf(stderr, "kvc-sim: mutation %s NOT caught in %llu seeds\n", mutation.c_str(),
                 (unsigned long long)totals.seeds);
    return kExitCaughtNothing;
  }
  return totals.failed == 0 ? kvc::kExitOk : kvc::kExitError;
}
