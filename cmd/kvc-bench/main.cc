// kvc-bench: the load generator for a kvc cluster. Parses flags (named like etcd's benchmark
// tool's, so that runs line up), shows progress on a terminal, and prints the result; the work
// is done by bench/kvc_bench_lib (runner.h).
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <mutex>

#include "cli.h"
#include "kvc/client/client.h"
#include "kvc/common/text.h"
#include "report.h"
#include "runner.h"

namespace {

using kvc::bench::BenchOptions;
using kvc::bench::Workload;

constexpr const char* kDefaultEndpoint = "127.0.0.1:2379";

struct Flags {
  std::string endpoints;
  std::string output = "simple";
  std::string duration;
  std::string timeout = "5s";
  std::string idle_hold = "0s";
  std::string read_ratio = "0.5";
  bool no_progress = false;
  kvc::LogOptions log;
};

int usage(const std::string& message) {
  std::fprintf(stderr, "kvc-bench: %s\n", message.c_str());
  return kvc::kExitUsage;
}

}  // namespace

int main(int argc, char** argv) {
  std::signal(SIGPIPE, SIG_IGN);
  Flags f;
  f.log.level = "warn";
  BenchOptions o;
  CLI::App app(
      "kvc-bench: load generator for a kvc cluster; reports throughput, latency "
      "percentiles and errors.",
      "kvc-bench");
  kvc::cli::add_common_flags(app, f.log);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--endpoints", f.endpoints,
                 "Comma-separated member client addresses, HOST:PORT (default 127.0.0.1:2379)")
      ->envname("KVC_ENDPOINTS");
  app.add_option("--secret-file", o.secret_file,
                 "File holding the cluster's shared secret (mode 600), when the members have one")
      ->envname("KVC_SECRET_FILE");
  app.add_option("--cacert", o.tls.trusted_ca_file,
                 "TLS: verify the members' certificates with these CA certificates (PEM)")
      ->envname("KVC_CACERT");
  app.add_option("--cert", o.tls.cert_file,
                 "TLS: this client's certificate (PEM), for members with --client-cert-auth")
      ->envname("KVC_CERT");
  app.add_option("--key", o.tls.key_file, "TLS: the key of --cert")->envname("KVC_KEY");
  app.add_option("--token", o.token,
                 "A named token of the members' --permissions-file (kvc-permissions(5))")
      ->envname("KVC_TOKEN");
  app.add_option("--clients", o.clients, "Requests in flight at once (closed loop)")
      ->capture_default_str();
  app.add_option("--conns", o.conns, "TCP connections to each member")->capture_default_str();
  app.add_option("--total", o.total, "Operations to run (puts, for watch)")->capture_default_str();
  app.add_option("--duration", f.duration, "Run this long instead of --total, e.g. 30s");
  app.add_option("--key-size", o.key_size, "Key size in bytes")->capture_default_str();
  app.add_option("--val-size", o.val_size, "Value size in bytes")->capture_default_str();
  app.add_option("--key-space-size", o.key_space_size, "Keys are drawn from this many")
      ->capture_default_str();
  app.add_flag("--sequential-keys", o.sequential_keys, "Use keys 0, 1, 2, ... instead of random");
  app.add_option("--first-key", o.first_key,
                 "With --sequential-keys: start at this key number (to load in stages)")
      ->capture_default_str();
  app.add_flag("--target-leader", o.target_leader, "Send every request to the leader only");
  app.add_option("--rate", o.rate,
                 "Open loop: start this many operations per second on a fixed schedule and "
                 "measure latency from the scheduled time (0: closed loop)")
      ->capture_default_str();
  app.add_option("--idle-conns", o.idle_conns,
                 "Also open this many connections spread over the endpoints, complete their "
                 "handshake, and hold them idle until the workload ends")
      ->capture_default_str();
  app.add_option("--idle-hold", f.idle_hold,
                 "With --idle-conns: wait this long after they are open before the workload, "
                 "e.g. 2s")
      ->capture_default_str();
  app.add_option("--timeout", f.timeout, "Deadline of each request, e.g. 500ms, 5s")
      ->capture_default_str();
  app.add_option("--seed", o.seed, "Seed for key and read/write choices")->capture_default_str();
  app.add_option("-o,--output", f.output, "Output format: simple or json")
      ->check(CLI::IsMember({"simple", "json"}))
      ->capture_default_str();
  app.add_flag("--no-progress", f.no_progress,
               "No progress bar (there is none anyway when stderr is not a terminal)");
  app.footer(kvc::cli::exit_code_footer(
      "  kvc-bench --endpoints 127.0.0.1:2379 --target-leader --clients 64 --conns 8 \\\n"
      "      put --key-size 8 --val-size 256 --total 20000 --key-space-size 100000\n"
      "  kvc-bench --clients 64 get --serializable -o json",
      "  5  every operation failed: cluster unavailable\n"
      "  6  every operation failed: timed out\n"));

  auto example = [](const char* text) { return std::string("Example:\n  ") + text; };

  auto* put = app.add_subcommand("put", "Write keys from the key space");
  put->footer(example("kvc-bench --clients 64 --conns 8 put --val-size 256 --total 20000"));

  bool get_serializable = false;
  std::string get_key;
  auto* get = app.add_subcommand("get", "Read keys (linearizable unless --serializable)");
  get->add_flag("--serializable", get_serializable,
                "Read the answering member's state without a quorum round; spread over members");
  get->add_option("--key", get_key, "Read this one key every time instead of the key space");
  get->footer(example("kvc-bench --clients 64 --target-leader get --key foo"));

  bool range_serializable = false;
  auto* range = app.add_subcommand("range", "Read up to --limit keys under a prefix");
  range->add_option("--prefix", o.prefix, "Keys that start with this ('' reads from the first)");
  range->add_option("--limit", o.limit, "At most this many keys per request")
      ->capture_default_str();
  range->add_flag("--serializable", range_serializable,
                  "Read the answering member's state without a quorum round");
  range->footer(example("kvc-bench --clients 8 range --prefix 0000 --limit 100"));

  auto* cas = app.add_subcommand("cas", "Compare-and-set: each client updates its own key");
  cas->footer(example("kvc-bench --clients 16 cas --total 5000"));

  auto* watch = app.add_subcommand(
      "watch",
      "Put keys under a prefix while watchers stream them; latency is put sent to "
      "event delivered");
  watch->add_option("--watchers", o.watchers, "Watch streams on the prefix")->capture_default_str();
  watch->add_option("--watch-prefix", o.watch_prefix, "Prefix that is watched and put under")
      ->capture_default_str();
  watch->add_flag("--per-watch-responses", o.per_watch_responses,
                  "Ask for one response per watcher (as older clients get) instead of shared "
                  "watch responses, to compare the two");
  watch->footer(example("kvc-bench --clients 4 --val-size 64 watch --watchers 100 --total 2000"));

  auto* lease_expiry = app.add_subcommand(
      "lease-expiry",
      "Grant --total leases with one key each and never renew them; latency is ttl end to the "
      "key's delete event");
  lease_expiry->add_option("--lease-ttl", o.lease_ttl_s, "Each lease's ttl, seconds")
      ->capture_default_str();
  lease_expiry->footer(example("kvc-bench --clients 8 lease-expiry --total 200 --lease-ttl 2"));

  bool mixed_serializable = false;
  auto* mixed = app.add_subcommand("mixed", "Gets and puts over the key space");
  mixed->add_option("--read-ratio", f.read_ratio, "Fraction of gets: 0.9 or 90%")
      ->capture_default_str();
  mixed->add_flag("--serializable", mixed_serializable, "Serializable gets");
  mixed->footer(example("kvc-bench --clients 32 mixed --read-ratio 0.9 --duration 30s"));

  o.watch_prefix = "bench-watch/";
  if (auto early = kvc::cli::parse(app, argc, argv)) return *early;
  if (kvc::Status s = kvc::setup_logging(f.log); !s.ok()) return usage(s.message());

  if (put->parsed()) o.workload = Workload::kPut;
  if (get->parsed()) {
    o.workload = Workload::kGet;
    o.serializable = get_serializable;
    if (!get_key.empty()) o.key = get_key;
  }
  if (range->parsed()) {
    o.workload = Workload::kRange;
    o.serializable = range_serializable;
  }
  if (cas->parsed()) o.workload = Workload::kCas;
  if (lease_expiry->parsed()) {
    o.workload = Workload::kLeaseExpiry;
    o.watch_prefix = "bench-lease/";
  }
  if (watch->parsed()) o.workload = Workload::kWatch;
  if (mixed->parsed()) {
    o.workload = Workload::kMixed;
    o.serializable = mixed_serializable;
    kvc::Result<double> r = kvc::bench::parse_ratio(f.read_ratio);
    if (!r.ok()) return usage("--read-ratio: " + r.status().message());
    o.read_ratio = *r;
  }

  const std::string eps = f.endpoints.empty() ? kDefaultEndpoint : f.endpoints;
  kvc::Result<std::vector<kvc::net::Address>> list = kvc::client::parse_endpoints(eps);
  if (!list.ok()) return usage("--endpoints: " + list.status().message());
  o.endpoints = std::move(*list);
  kvc::Result<std::uint64_t> timeout = kvc::parse_duration_ms(f.timeout);
  if (!timeout.ok()) return usage("--timeout: " + timeout.status().message());
  o.timeout_ms = *timeout;
  if (!f.duration.empty()) {
    kvc::Result<std::uint64_t> d = kvc::parse_duration_ms(f.duration);
    if (!d.ok()) return usage("--duration: " + d.status().message());
    if (*d == 0) return usage("--duration must be more than 0");
    o.duration_ms = *d;
  }
  kvc::Result<std::uint64_t> hold = kvc::parse_duration_ms(f.idle_hold);
  if (!hold.ok()) return usage("--idle-hold: " + hold.status().message());
  o.idle_hold_ms = *hold;
  if (kvc::Status s = kvc::bench::validate(o); !s.ok()) return usage(s.message());

  // Every connection is a file descriptor: take the hard limit, and say so when even that is
  // too low for the idle connections asked for (a run that hits it would measure the limit).
  kvc::Result<std::uint64_t> fd_limit = kvc::bench::raise_fd_limit();
  if (!fd_limit.ok()) return kvc::cli::fail("kvc-bench", fd_limit.status());
  const std::uint64_t fds_needed =
      o.idle_conns + o.conns * o.endpoints.size() * 2 + 64;  // + the client's sockets, stdio
  if (o.idle_conns > 0 && fds_needed > *fd_limit) {
    std::fprintf(stderr,
                 "kvc-bench: --idle-conns %zu needs about %llu file descriptors but the limit "
                 "(RLIMIT_NOFILE, hard) is %llu: raise it (ulimit -Hn, limits.conf) or ask for "
                 "fewer\n",
                 o.idle_conns, static_cast<unsigned long long>(fds_needed),
                 static_cast<unsigned long long>(*fd_limit));
    return kvc::kExitError;
  }
  if (o.idle_conns > 0) {
    o.on_idle_open = [](const kvc::bench::IdleSummary& s) {
      // compare-etcd waits for this line to read the members' memory with the connections open.
      std::fprintf(stderr,
                   "kvc-bench: idle connections open: %zu of %zu (%zu refused, %zu failed)\n",
                   s.opened, s.requested, s.refused, s.failed);
      std::fflush(stderr);
    };
  }

  const bool progress = !f.no_progress && isatty(STDERR_FILENO) == 1;
  std::mutex progress_mu;
  bool drew = false;
  if (progress) {
    o.on_progress = [&](std::uint64_t done, double elapsed) {
      std::lock_guard<std::mutex> lock(progress_mu);
      std::fprintf(stderr, "\r%s\033[K", kvc::bench::progress_line(o, done, elapsed).c_str());
      std::fflush(stderr);
      drew = true;
    };
  }
  kvc::Result<kvc::bench::BenchResult> r = kvc::bench::run_bench(o);
  if (drew) std::fprintf(stderr, "\r\033[K");
  if (!r.ok()) return kvc::cli::fail("kvc-bench", r.status());
  if (f.output == "json") {
    std::printf("%s\n", kvc::bench::format_json(o, *r).c_str());
  } else {
    std::fputs(kvc::bench::format_text(o, *r).c_str(), stdout);
  }
  std::fflush(stdout);
  if (r->ok == 0 && r->error_count() > 0) {
    return kvc::cli::fail(
        "kvc-bench",
        kvc::Status(r->first_error_code, "every operation failed; first error: " + r->first_error));
  }
  return kvc::kExitOk;
}
