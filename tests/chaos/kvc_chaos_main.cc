// kvc-chaos: process-level fault testing of real kvc-node clusters (a test tool, built with the
// tests and never installed). Runs one chaos run per seed (chaos_run.h), or seed after seed for
// as long as --soak asks, prints each run's report on stdout and progress on stderr, and exits
// 0 when every run passed (with --expect-violation: when every run caught a safety violation),
// 1 otherwise, 2 on a usage error.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include "chaos_run.h"
#include "cli.h"
#include "kvc/common/text.h"

#ifndef KVC_NODE_BINARY
#error "KVC_NODE_BINARY must be defined by the build"
#endif

namespace {

using kvc::chaos::ChaosOptions;
using kvc::chaos::ChaosResult;

kvc::Result<std::vector<std::uint64_t>> parse_seeds(const std::string& text) {
  std::vector<std::uint64_t> out;
  std::size_t pos = 0;
  while (pos <= text.size()) {
    const std::size_t comma = std::min(text.find(',', pos), text.size());
    const std::string item = text.substr(pos, comma - pos);
    char* end = nullptr;
    const unsigned long long v = std::strtoull(item.c_str(), &end, 10);
    if (item.empty() || end == nullptr || *end != '\0') {
      return kvc::Status::invalid_argument("bad seed '" + item + "' in '" + text + "'");
    }
    out.push_back(v);
    pos = comma + 1;
  }
  return out;
}

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v != nullptr && v[0] != '\0' ? v : fallback;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app(
      "kvc-chaos: start a real kvc-node cluster on 127.0.0.1, run dozens of clients against it "
      "while killing, pausing, partitioning (through a fault proxy) and slowing its members, "
      "rolling a member back to an older copy of its data and damaging a stored value, on a "
      "seeded schedule, then heal it and check the history for linearizability, every "
      "acknowledged write in every member, identical member states and clean stops.",
      "kvc-chaos");
  kvc::LogOptions log;
  log.level = "warn";
  kvc::cli::add_common_flags(app, log);
  std::uint64_t seed = 1;
  std::string seeds;
  std::uint64_t count = 1;
  std::string duration = "20s";
  std::string soak;
  int members = 3;
  int clients = 24;
  int keys = 8;
  int targeted_reads = 50;
  std::string binary = "kvc-node";
  std::string mutation;
  bool expect_violation = false;
  std::uint64_t catch_within = 1;
  std::string faults = "all";
  std::string work_dir;
  bool keep = false;
  bool tls = false;
  std::string op_timeout = "1500ms";
  std::string check_interval = "4s";
  app.add_option("--seed", seed, "The first seed")->capture_default_str();
  app.add_option("--seeds", seeds, "Comma-separated seeds to run (env KVC_CHAOS_SEEDS)");
  app.add_option("--count", count, "Run this many seeds from --seed on")->capture_default_str();
  app.add_option("--duration", duration,
                 "How long each run injects faults (env KVC_CHAOS_DURATION overrides)")
      ->capture_default_str();
  app.add_option("--soak", soak,
                 "Run seed after seed (from --seed) until this much time has passed, then "
                 "report operations checked per minute (env KVC_CHAOS_SOAK)");
  app.add_option("--members", members, "Cluster size")
      ->check(CLI::IsMember({3, 5}))
      ->capture_default_str();
  app.add_option("--clients", clients, "Concurrent clients")
      ->check(CLI::Range(1, 256))
      ->capture_default_str();
  app.add_option("--keys", keys, "Size of the key space")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  app.add_option("--targeted-reads", targeted_reads,
                 "Percent of the reads sent to one chosen member only (the rest follow the "
                 "leader)")
      ->check(CLI::Range(0, 100))
      ->capture_default_str();
  app.add_option("--binary", binary,
                 "kvc-node, kvc-node-unsafe (the test-only broken build) or a path")
      ->capture_default_str();
  app.add_option("--test-mutation", mutation,
                 "With kvc-node-unsafe: ack-before-commit, local-reads or unverified-reads "
                 "(stored values are not checked against their checksums: a damaged value is "
                 "served)");
  app.add_flag("--expect-violation", expect_violation,
               "Succeed only if every run finds a safety violation (for broken builds)");
  app.add_option("--catch-within", catch_within,
                 "With --expect-violation: a seed that finds none is followed by the next seeds, "
                 "up to this many runs in all, and counts as caught if one of them finds one "
                 "(a loaded machine runs fewer operations in the same time)")
      ->check(CLI::Range(1, 100))
      ->capture_default_str();
  app.add_option("--faults", faults,
                 "all, none, or a comma-separated list of fault kinds and groups: kill "
                 "(kill, kill-leader, kill-majority), restart, pause (pause, pause-leader), "
                 "partition (isolate, split, one-way, blackhole), net (lossy-links, "
                 "slow-links), disk (slow-disk), membership (transfer-leader, "
                 "member-replace), integrity (rollback, damage)")
      ->capture_default_str();
  app.add_option("--work-dir", work_dir, "Where run directories go (default $TMPDIR or /tmp)");
  app.add_flag("--keep", keep, "Keep the run directory (logs, data) even when a run passes");
  app.add_flag("--tls", tls,
               "Run the cluster with a shared secret: TLS (a pre-shared key) on the peer and "
               "client ports, for the members and the harness's clients");
  app.add_option("--op-timeout", op_timeout, "Client deadline of each operation")
      ->capture_default_str();
  app.add_option("--check-interval", check_interval,
                 "How often the growing history is checked while faults run")
      ->capture_default_str();
  app.footer(kvc::cli::exit_code_footer(
      "  kvc-chaos --seed 7 --duration 30s\n"
      "  kvc-chaos --seeds 1,2,3 --members 5\n"
      "  kvc-chaos --soak 30m\n"
      "  kvc-chaos --binary kvc-node-unsafe --test-mutation local-reads --expect-violation",
      "  1  a check failed (or, with --expect-violation, a run found no violation)\n"));
  if (auto rc = kvc::cli::parse_and_setup(app, argc, argv, log)) return *rc;

  auto usage = [](const std::string& m) {
    std::fprintf(stderr, "kvc-chaos: %s\n", m.c_str());
    return kvc::kExitUsage;
  };
  ChaosOptions o;
  o.members = members;
  o.clients = clients;
  o.keys = keys;
  o.targeted_read_percent = targeted_reads;
  o.test_mutation = mutation;
  o.work_dir = work_dir;
  o.keep = keep;
  o.tls = tls;
  o.progress = &std::cerr;
  o.slowfs_library = KVC_SLOWFS_LIBRARY;
  if (binary == "kvc-node") {
    o.node_binary = KVC_NODE_BINARY;
  } else if (binary == "kvc-node-unsafe") {
    o.node_binary = KVC_NODE_UNSAFE_BINARY;
    if (o.node_binary.empty()) return usage("kvc-node-unsafe is not built (-DKVC_MUTATIONS=ON)");
  } else {
    o.node_binary = binary;
  }
  if (!mutation.empty() && mutation != "ack-before-commit" && mutation != "local-reads" &&
      mutation != "unverified-reads") {
    return usage("--test-mutation must be ack-before-commit, local-reads or unverified-reads");
  }
  kvc::Result<std::vector<kvc::chaos::FaultKind>> kinds = kvc::chaos::parse_fault_mix(faults);
  if (!kinds.ok()) return usage("--faults: " + kinds.status().message());
  o.faults = *kinds;
  duration = env_or("KVC_CHAOS_DURATION", duration);
  kvc::Result<std::uint64_t> d = kvc::parse_duration_ms(duration);
  if (!d.ok() || *d == 0) return usage("bad --duration '" + duration + "'");
  o.duration_ms = *d;
  kvc::Result<std::uint64_t> t = kvc::parse_duration_ms(op_timeout);
  if (!t.ok() || *t == 0) return usage("bad --op-timeout '" + op_timeout + "'");
  o.op_timeout_ms = *t;
  kvc::Result<std::uint64_t> ci = kvc::parse_duration_ms(check_interval);
  if (!ci.ok() || *ci == 0) return usage("bad --check-interval '" + check_interval + "'");
  o.check_interval_ms = *ci;
  soak = env_or("KVC_CHAOS_SOAK", soak);
  std::uint64_t soak_ms = 0;
  if (!soak.empty()) {
    kvc::Result<std::uint64_t> s = kvc::parse_duration_ms(soak);
    if (!s.ok() || *s == 0) return usage("bad --soak '" + soak + "'");
    soak_ms = *s;
  }
  seeds = env_or("KVC_CHAOS_SEEDS", seeds);
  std::vector<std::uint64_t> list;
  if (!seeds.empty()) {
    kvc::Result<std::vector<std::uint64_t>> parsed = parse_seeds(seeds);
    if (!parsed.ok()) return usage(parsed.status().message());
    list = *parsed;
  } else {
    for (std::uint64_t i = 0; i < count; ++i) list.push_back(seed + i);
  }

  const auto started = std::chrono::steady_clock::now();
  auto elapsed_ms = [&] {
    return static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(
                                          std::chrono::steady_clock::now() - started)
                                          .count());
  };
  std::uint64_t runs = 0, passed = 0, violations = 0, checked = 0, operations = 0;
  std::vector<std::uint64_t> failed_seeds, quiet_seeds;
  std::map<kvc::chaos::FaultKind, kvc::chaos::FaultCount> faults_total;
  kvc::chaos::IntegrityCounts integrity_total;
  for (std::size_t i = 0;; ++i) {
    std::uint64_t s;
    if (soak_ms != 0) {
      // Leave room for one more whole run (faults plus about 30 s of healing and checks).
      if (i > 0 && elapsed_ms() + o.duration_ms + 30000 > soak_ms) break;
      s = (list.empty() ? seed : list.front()) + i;
    } else {
      if (i >= list.size()) break;
      s = list[i];
    }
    o.seed = s;
    ChaosResult r = kvc::chaos::run_chaos(o);
    std::fputs(r.report.c_str(), stdout);
    for (std::uint64_t extra = 1; expect_violation && !r.violation && extra < catch_within;
         ++extra) {
      std::printf(
          "  (no violation with seed %llu: trying seed %llu, %llu of --catch-within %llu)\n",
          static_cast<unsigned long long>(o.seed), static_cast<unsigned long long>(s + extra),
          static_cast<unsigned long long>(extra + 1),
          static_cast<unsigned long long>(catch_within));
      if (!keep) {
        std::error_code ec;
        std::filesystem::remove_all(r.run_dir, ec);
      }
      o.seed = s + extra;
      r = kvc::chaos::run_chaos(o);
      std::fputs(r.report.c_str(), stdout);
    }
    if (expect_violation && r.violation && !keep) {
      // The expected outcome of a broken build: its run directory is not evidence of anything.
      std::error_code ec;
      std::filesystem::remove_all(r.run_dir, ec);
      std::printf("  (expected violation: run dir %s removed; --keep keeps it)\n",
                  r.run_dir.c_str());
    }
    std::fflush(stdout);
    ++runs;
    operations += r.operations;
    checked += r.checked;
    for (const auto& [k, c] : r.faults) {
      faults_total[k].applied += c.applied;
      faults_total[k].skipped += c.skipped;
    }
    integrity_total += r.integrity;
    if (r.passed) ++passed;
    if (r.violation) ++violations;
    if (!r.passed) failed_seeds.push_back(s);
    if (!r.violation) quiet_seeds.push_back(s);
  }
  const double minutes = static_cast<double>(elapsed_ms()) / 60000.0;
  std::string seed_list;
  auto join = [](const std::vector<std::uint64_t>& v) {
    std::string out;
    for (std::uint64_t x : v) out += (out.empty() ? "" : ",") + std::to_string(x);
    return out.empty() ? std::string("none") : out;
  };
  std::printf(
      "kvc-chaos summary: runs=%llu passed=%llu violations=%llu operations=%llu checked=%llu "
      "minutes=%.2f checked_per_minute=%.0f failed_seeds=%s\n  faults: %s\n  integrity: %s\n",
      static_cast<unsigned long long>(runs), static_cast<unsigned long long>(passed),
      static_cast<unsigned long long>(violations), static_cast<unsigned long long>(operations),
      static_cast<unsigned long long>(checked), minutes,
      minutes > 0 ? static_cast<double>(checked) / minutes : 0.0, join(failed_seeds).c_str(),
      kvc::chaos::format_fault_counts(faults_total).c_str(), integrity_total.to_string().c_str());
  if (expect_violation) {
    if (quiet_seeds.empty() && runs > 0) {
      std::printf("kvc-chaos: every run caught the broken build (as expected)\n");
      return kvc::kExitOk;
    }
    std::printf("kvc-chaos: NOT CAUGHT: no safety violation in seeds %s\n",
                join(quiet_seeds).c_str());
    return kvc::kExitError;
  }
  return passed == runs ? kvc::kExitOk : kvc::kExitError;
}
