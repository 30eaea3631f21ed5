#include "server_mode.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <deque>
#include <iostream>
#include <string>
#include <utility>
#include <vector>

#include "kvc/common/status.h"

#if KVC_SIM_SERVER
#include "kvc/sim/server_sim.h"
#endif

namespace {
constexpr int kExitCaughtNothing = 1;
}

#if KVC_SIM_SERVER

bool server_mode_available() { return true; }

std::vector<std::string> server_mutation_names() { return kvc::sim::server_mutations(); }

bool is_server_mutation(const std::string& name) {
  const auto& all = kvc::sim::server_mutations();
  return std::find(all.begin(), all.end(), name) != all.end();
}

namespace {

kvc::sim::ServerSimOptions options_for(const ServerModeArgs& a, std::uint64_t seed) {
  kvc::sim::ServerSimOptions o;
  o.seed = seed;
  o.members = a.members == "mixed" ? (seed % 4 == 0 ? 5 : 3) : std::stoi(a.members);
  if (a.mutation != "none") o.mutation = a.mutation;
  if (a.fault_ms != 0) o.fault_ms = a.fault_ms;
  if (a.liveness_ms != 0) o.liveness_ms = a.liveness_ms;
  if (a.clients != 0) o.clients = a.clients;
  o.fault_filter = a.fault_filter;
  return o;
}

std::string replay_line(const ServerModeArgs& a, const kvc::sim::ServerSimOptions& o) {
  std::string s = "kvc-sim --server --seed " + std::to_string(o.seed) + " --members " +
                  std::to_string(o.members);
  if (!o.mutation.empty()) s += " --mutation " + o.mutation;
  if (a.fault_ms != 0) s += " --fault-ticks " + std::to_string(a.fault_ms / 10);
  if (a.liveness_ms != 0) s += " --liveness-ticks " + std::to_string(a.liveness_ms / 10);
  if (a.clients != 0) s += " --clients " + std::to_string(a.clients);
  if (o.fault_filter.only)
    s += " --only-faults " + kvc::sim::format_fault_list(*o.fault_filter.only);
  if (!o.fault_filter.suppress.empty()) {
    s += " --suppress-faults " + kvc::sim::format_fault_list(o.fault_filter.suppress);
  }
  return s;
}

// Minimizes the faults of a failing server run and reports it (minimize.h).
void minimize_server_run(const ServerModeArgs& a, const kvc::sim::ServerSimOptions& failed,
                         const std::string& violation) {
  kvc::sim::ServerSimOptions base = failed;
  base.trace = false;
  base.trace_sink = nullptr;
  const MinimizeRunner run = [&](const kvc::sim::FaultFilter& filter,
                                 const std::function<void(std::string_view)>* trace) {
    kvc::sim::ServerSimOptions o = base;
    o.fault_filter = filter;
    o.record = true;
    if (trace != nullptr) {
      o.trace = true;
      o.trace_sink = *trace;
    }
    kvc::sim::ServerSimResult x = kvc::sim::run_server_simulation(o);
    return MinimizeRun{x.ok, x.violation, std::move(x.fault_log), std::move(x.history)};
  };
  const MinimizeReplay replay = [&](const kvc::sim::FaultFilter& filter) {
    kvc::sim::ServerSimOptions o = base;
    o.fault_filter = filter;
    return replay_line(a, o) + " --trace";
  };
  (void)minimize_and_report(base.seed, violation, run, replay, a.minimize_args, "us");
}

void print_trace(kvc::sim::ServerSimOptions o, int lines) {
  std::deque<std::string> tail;
  o.trace = true;
  o.trace_sink = [&](std::string_view line) {
    tail.emplace_back(line);
    if (lines > 0 && static_cast<int>(tail.size()) > lines) tail.pop_front();
  };
  (void)kvc::sim::run_server_simulation(o);
  std::cerr << "--- trace (last " << tail.size() << " lines) ---\n";
  for (const auto& l : tail) std::cerr << l << '\n';
  std::cerr << "--- end of trace ---\n";
}

}  // namespace

int run_server_mode(const ServerModeArgs& a) {
  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  };
  kvc::sim::ServerSimStats t;
  std::uint64_t run = 0, failed = 0, caught_seed = 0;
  bool linearizability = true;
  for (std::uint64_t i = 0; i < a.seeds; ++i) {
    if (a.time_limit > 0 && elapsed() >= a.time_limit) break;
    kvc::sim::ServerSimOptions o = options_for(a, a.seed + i);
    const bool trace_all = a.trace && a.seeds == 1;
    if (trace_all) o.trace_sink = [](std::string_view l) { std::cerr << l << '\n'; };
    o.trace = trace_all;
    const kvc::sim::ServerSimResult r = kvc::sim::run_server_simulation(o);
    ++run;
    t.events += r.stats.events;
    t.messages += r.stats.messages;
    t.committed += r.stats.committed;
    t.operations += r.stats.operations;
    t.operations_ok += r.stats.operations_ok;
    t.operations_unknown += r.stats.operations_unknown;
    t.crashes += r.stats.crashes;
    t.clean_restarts += r.stats.clean_restarts;
    t.partitions += r.stats.partitions;
    t.snapshot_chunks += r.stats.snapshot_chunks;
    t.conf_changes += r.stats.conf_changes;
    t.transfers += r.stats.transfers;
    t.joined += r.stats.joined;
    t.removed += r.stats.removed;
    t.damages += r.stats.damages;
    t.damage_detected += r.stats.damage_detected;
    t.repairs += r.stats.repairs;
    t.sync_faults += r.stats.sync_faults;
    t.read_faults += r.stats.read_faults;
    t.lost_writes += r.stats.lost_writes;
    t.torn_writes += r.stats.torn_writes;
    t.elections += r.stats.elections;
    t.txns += r.stats.txns;
    t.txns_ok += r.stats.txns_ok;
    t.txns_checked += r.stats.txns_checked;
    t.lease_grants += r.stats.lease_grants;
    t.keep_alives += r.stats.keep_alives;
    t.lease_expiries += r.stats.lease_expiries;
    t.lease_liveness_checked += r.stats.lease_liveness_checked;
    t.lease_max_late_ms = std::max(t.lease_max_late_ms, r.stats.lease_max_late_ms);
    t.hash_audits += r.stats.hash_audits;
    t.hashes_compared += r.stats.hashes_compared;
    t.snapshot_chunks_damaged += r.stats.snapshot_chunks_damaged;
    t.snapshots_refused += r.stats.snapshots_refused;
    linearizability = linearizability && (r.stats.linearizability_checked || !r.ok);
    if (r.ok) continue;
    ++failed;
    if (caught_seed == 0) caught_seed = o.seed;
    std::cerr << "kvc-sim: seed " << o.seed << " (server, " << o.members
              << " members): VIOLATION at t=" << r.at_us / 1000 << " ms: " << r.violation << '\n';
    if (!trace_all && !a.keep_going && !a.minimize) print_trace(o, a.trace_lines);
    std::cerr << "kvc-sim: replay with: " << replay_line(a, o) << '\n';
    if (a.minimize) minimize_server_run(a, o, r.violation);
    if (!a.keep_going) break;
  }
  const double secs = elapsed();
  const std::vector<std::pair<const char*, std::uint64_t>> counts = {
      {"operations", t.operations},
      {"operations_ok", t.operations_ok},
      {"operations_unknown", t.operations_unknown},
      {"committed_entries", t.committed},
      {"elections", t.elections},
      {"crashes", t.crashes},
      {"clean_restarts", t.clean_restarts},
      {"partitions", t.partitions},
      {"snapshot_chunks", t.snapshot_chunks},
      {"conf_changes", t.conf_changes},
      {"transfers", t.transfers},
      {"joined", t.joined},
      {"removed", t.removed},
      {"damages", t.damages},
      {"damage_detected", t.damage_detected},
      {"repairs", t.repairs},
      {"sync_faults", t.sync_faults},
      {"read_faults", t.read_faults},
      {"lost_writes", t.lost_writes},
      {"torn_writes", t.torn_writes},
      {"txns", t.txns},
      {"txns_ok", t.txns_ok},
      {"txns_checked", t.txns_checked},
      {"lease_grants", t.lease_grants},
      {"keep_alives", t.keep_alives},
      {"lease_expiries", t.lease_expiries},
      {"lease_liveness_checked", t.lease_liveness_checked},
      {"lease_max_late_ms", t.lease_max_late_ms},
      {"hash_audits", t.hash_audits},
      {"hashes_compared", t.hashes_compared},
      {"snapshot_chunks_damaged", t.snapshot_chunks_damaged},
      {"snapshots_refused", t.snapshots_refused},
      {"events", t.events},
      {"messages", t.messages}};
  const bool json = a.output == "json";
  std::string line =
      json ? "{\"mode\":\"server\",\"seeds\":" + std::to_string(run) +
                 ",\"failed\":" + std::to_string(failed) + ",\"mutation\":\"" + a.mutation +
                 "\",\"first_seed\":" + std::to_string(a.seed) +
                 ",\"caught_seed\":" + (failed != 0 ? std::to_string(caught_seed) : "-1") +
                 ",\"linearizability_checked\":" + (linearizability ? "true" : "false")
           : "mode=server seeds=" + std::to_string(run) + " failed=" + std::to_string(failed) +
                 " linearizability=" + (linearizability ? "on" : "not-built");
  for (const auto& [name, value] : counts) {
    line += json ? ",\"" + std::string(name) + "\":" + std::to_string(value)
                 : " " + std::string(name) + "=" + std::to_string(value);
  }
  char secs_text[32];
  std::snprintf(secs_text, sizeof secs_text, json ? "%.3f" : "%.1f", secs);
  line +=
      json ? std::string(",\"seconds\":") + secs_text + "}" : std::string(" seconds=") + secs_text;
  std::printf("%s\n", line.c_str());
  if (a.expect_violation) {
    if (failed != 0) {
      std::fprintf(stderr, "kvc-sim: mutation %s caught after %llu seeds (seed %llu)\n",
                   a.mutation.c_str(), (unsigned long long)run, (unsigned long long)caught_seed);
      return kvc::kExitOk;
    }
    std::fprintf(stderr, "kvc-sim: mutation %s NOT caught in %llu seeds\n", a.mutation.c_str(),
                 (unsigned long long)run);
    return kExitCaughtNothing;
  }
  return failed == 0 ? kvc::kExitOk : kvc::kExitError;
}

#else

bool server_mode_available() { return false; }
bool is_server_mutation(const std::string&) { return false; }
std::vector<std::string> server_mutation_names() { return {}; }
int run_server_mode(const ServerModeArgs&) {
  std::cerr << "kvc-sim: --server needs a build with test mutations (configure with "
               "-DKVC_MUTATIONS=ON -DKVC_BUILD_TESTS=ON)\n";
  return kvc::kExitError;
}

#endif
