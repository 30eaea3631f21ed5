// Benchmark of the linearizability checker: random histories from a simulated atomic store
// (random_history.h) at several sizes, concurrencies and unknown-outcome rates, each checked a
// few times; prints the best time, ops/s and the ratio to a baseline measured in the same run
// (the same number of operations issued by one client, no unknown outcomes). Also re-checks a
// saved history: `check_bench --check FILE` prints the verdict and explanation and exits 0
// (linearizable), 1 (not linearizable), 3 (gave up) or 2 (bad usage or unreadable file).
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "kvc/check/history_io.h"
#include "kvc/check/linearizability.h"
#include "kvc/check/random_history.h"

namespace {

using kvc::check::CheckResult;
using kvc::check::History;
using kvc::check::RandomHistoryOptions;

struct Timed {
  double best_ms = 0;
  CheckResult result;
};

Timed time_check(const History& h, int repeats) {
  Timed t;
  for (int i = 0; i < repeats; ++i) {
    const auto start = std::chrono::steady_clock::now();
    CheckResult r = kvc::check::check_history(h);
    const double ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start).count();
    if (i == 0 || ms < t.best_ms) t.best_ms = ms;
    t.result = std::move(r);
  }
  return t;
}

// Makes the first read it can into a stale one: it returns a value that a write which
// finished before the read began had already replaced. Returns false when there is no site.
bool plant_stale_read(History& h) {
  for (std::size_t g = h.size() / 2; g < h.size(); ++g) {
    auto& read = h[g];
    if (read.kind != kvc::check::OpKind::kGet || read.outcome != kvc::check::Outcome::kOk) continue;
    for (std::size_t n = 0; n < h.size(); ++n) {
      const auto& w_new = h[n];
      const bool wrote = w_new.outcome == kvc::check::Outcome::kOk &&
                         (w_new.kind == kvc::check::OpKind::kPut ||
                          (w_new.kind != kvc::check::OpKind::kGet && w_new.found));
      if (!wrote || w_new.key != read.key || w_new.response_time >= read.invoke_time) continue;
      for (std::size_t o = 0; o < h.size(); ++o) {
        const auto& w_old = h[o];
        if (w_old.outcome != kvc::check::Outcome::kOk || w_old.key != read.key ||
            w_old.kind != kvc::check::OpKind::kPut || w_old.response_time >= w_new.invoke_time) {
          continue;
        }
        read.found = true;
        read.read_value = w_old.value;
        read.revision = w_old.revision;
        return true;
      }
    }
  }
  return false;
}

int recheck(const char* path) {
  const kvc::Result<History> h = kvc::check::read_history_file(path);
  if (!h.ok()) {
    std::fprintf(stderr, "check_bench: %s\n", h.status().to_string().c_str());
    return 2;
  }
  const Timed t = time_check(*h, 1);
  std::printf("%s: %zu operations, %llu keys, %llu states, %.1f ms\n",
              std::string(kvc::check::verdict_name(t.result.verdict)).c_str(), h->size(),
              static_cast<unsigned long long>(t.result.keys),
              static_cast<unsigned long long>(t.result.states_explored), t.best_ms);
  if (!t.result.explanation.empty()) std::printf("%s", t.result.explanation.c_str());
  switch (t.result.verdict) {
    case kvc::check::Verdict::kLinearizable:
      return 0;
    case kvc::check::Verdict::kNotLinearizable:
      return 1;
    case kvc::check::Verdict::kGaveUp:
      return 3;
  }
  return 1;
}

void usage() {
  std::fprintf(stderr,
               "usage: check_bench [--ops N] [--seed S] [--repeat R]\n"
               "       check_bench --check FILE.jsonl\n"
               "example: check_bench --ops 10000\n");
}

}  // namespace

int main(int argc, char** argv) {
  std::uint64_t ops = 10'000, seed = 1;
  int repeat = 3;
  for (int i = 1; i < argc; ++i) {
    const std::string a = argv[i];
    const bool has_value = i + 1 < argc;
    if (a == "--check" && has_value) return recheck(argv[++i]);
    if (a == "--ops" && has_value) {
      ops = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && has_value) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--repeat" && has_value) {
      repeat = std::atoi(argv[++i]);
    } else if (a == "-h" || a == "--help") {
      usage();
      return 0;
    } else {
      usage();
      return 2;
    }
  }
  if (ops == 0 || repeat <= 0) {
    usage();
    return 2;
  }

  struct Config {
    const char* name;
    std::uint64_t clients, keys;
    double unknown;
    bool plant;
  };
  const Config configs[] = {
      {"baseline: 1 client, sequential", 1, 20, 0, false},
      {"10 clients, 20 keys", 10, 20, 0, false},
      {"30 clients, 20 keys", 30, 20, 0, false},
      {"30 clients, 20 keys, 3% unknown", 30, 20, 0.03, false},
      {"30 clients, 20 keys, 10% unknown", 30, 20, 0.10, false},
      {"30 clients, 1 key, 3% unknown", 30, 1, 0.03, false},
      {"30 clients, 1 key, 10% unknown", 30, 1, 0.10, false},
      {"30 clients, 20 keys, 3% unknown, stale read", 30, 20, 0.03, true},
      {"30 clients, 1 key, 10% unknown, stale read", 30, 1, 0.10, true},
  };
  std::printf("linearizability checker: %llu operations per history, seed %llu, best of %d\n",
              static_cast<unsigned long long>(ops), static_cast<unsigned long long>(seed), repeat);
  std::printf("%-46s %-17s %10s %9s %12s %8s\n", "history", "verdict", "states", "ms", "ops/s",
              "ratio");
  double baseline_ms = 0;
  int rc = 0;
  for (const Config& c : configs) {
    RandomHistoryOptions o;
    o.seed = seed;
    o.operations = ops;
    o.clients = c.clients;
    o.keys = c.keys;
    o.unknown_fraction = c.unknown;
    History h = kvc::check::random_history(o);
    if (c.plant && !plant_stale_read(h)) {
      std::printf("%-46s (no site for the anomaly)\n", c.name);
      continue;
    }
    const Timed t = time_check(h, repeat);
    if (baseline_ms == 0) baseline_ms = t.best_ms > 0 ? t.best_ms : 1e-3;
    const bool want = !c.plant;
    const bool got = t.result.verdict == kvc::check::Verdict::kLinearizable;
    if (want != got || t.result.verdict == kvc::check::Verdict::kGaveUp) rc = 1;
    std::printf("%-46s %-17s %10llu %9.2f %12.0f %8.2f\n", c.name,
                std::string(kvc::check::verdict_name(t.result.verdict)).c_str(),
                static_cast<unsigned long long>(t.result.states_explored), t.best_ms,
                static_cast<double>(h.size()) / (t.best_ms / 1000.0), t.best_ms / baseline_ms);
  }
  if (rc != 0) std::fprintf(stderr, "check_bench: a verdict was not the expected one\n");
  return rc;
}
