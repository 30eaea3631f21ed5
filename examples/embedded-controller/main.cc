// A small cluster controller that embeds kvc instead of depending on etcd or ZooKeeper, the way
// the Apache Kvrocks controller would: three instances form a cluster; only the one that leads
// runs the periodic job (it learns when through on_leader_change), and the job keeps the
// cluster topology under a key prefix:
//
//   /kvrocks/namespaces/<ns>                              -> namespace record
//   /kvrocks/namespaces/<ns>/clusters/<cluster>           -> cluster record
//   /kvrocks/namespaces/<ns>/clusters/<cluster>/shards/<i> -> shard record (JSON)
//   /kvrocks/controller/heartbeat                         -> "<name> <round>" of the leader
//
// Build: part of the kvc build (build/examples/embedded-controller/embedded-controller).
// Run three (each in its own terminal, or with &):
//   embedded-controller --name c1 --data-dir /tmp/c1 --listen-peer 127.0.0.1:7001
//     --listen-client 127.0.0.1:7101
//     --initial-cluster c1=127.0.0.1:7001,c2=127.0.0.1:7002,c3=127.0.0.1:7003
// then watch it work with: kvc-ctl --endpoints 127.0.0.1:7101 list /kvrocks/ --keys-only
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

#include "kvc/server/engine.h"

namespace {

std::atomic<bool> g_stop{false};

const char* arg(int argc, char** argv, const char* flag, const char* fallback) {
  for (int i = 1; i + 1 < argc; ++i) {
    if (std::strcmp(argv[i], flag) == 0) return argv[i + 1];
  }
  return fallback;
}

// One round of the controller's job: make sure the topology records exist, move a shard's
// primary around (as a failover would), and record that this member ran the round. Every write
// is compare-and-set on the revision it read, so two controllers could never both apply a
// stale decision.
kvc::Status run_round(kvc::server::Engine& engine, const std::string& name, std::uint64_t round) {
  const std::string ns = "/kvrocks/namespaces/ns1";
  const std::string cluster = ns + "/clusters/c1";
  for (const auto& [key, value] : {std::pair<std::string, std::string>{ns, R"({"name":"ns1"})"},
                                   {cluster, R"({"name":"c1","version":1})"}}) {
    kvc::Result<bool> exists = engine.exists(key);
    if (!exists.ok()) return exists.status();
    if (!*exists) {
      kvc::Result<std::uint64_t> r = engine.cas(key, value, 0);
      if (!r.ok() && r.status().code() != kvc::Code::kCompareFailed) return r.status();
    }
  }
  for (int shard = 0; shard < 2; ++shard) {
    const std::string key = cluster + "/shards/" + std::to_string(shard);
    kvc::Result<std::optional<kvc::server::KeyValue>> cur = engine.get(key);
    if (!cur.ok()) return cur.status();
    const std::uint64_t expect = *cur ? (*cur)->mod_revision : 0;
    const std::string value = "{\"primary\":\"10.0.0." + std::to_string(shard * 10 + round % 3) +
                              ":6666\",\"round\":" + std::to_string(round) + "}";
    kvc::Result<std::uint64_t> r = engine.cas(key, value, expect);
    if (!r.ok() && r.status().code() != kvc::Code::kCompareFailed) return r.status();
  }
  kvc::Result<std::uint64_t> hb =
      engine.set("/kvrocks/controller/heartbeat", name + " " + std::to_string(round));
  return hb.ok() ? kvc::Status() : hb.status();
}

}  // namespace

int main(int argc, char** argv) {
  kvc::server::EngineOptions o;
  o.name = arg(argc, argv, "--name", "");
  o.data_dir = arg(argc, argv, "--data-dir", "");
  o.listen_peer = arg(argc, argv, "--listen-peer", "");
  o.listen_client = arg(argc, argv, "--listen-client", "");
  o.initial_cluster = arg(argc, argv, "--initial-cluster", "");
  o.cluster_token = arg(argc, argv, "--cluster-token", "kvrocks-controller");
  const int run_seconds = std::atoi(arg(argc, argv, "--run-for", "3600"));
  if (o.name.empty() || o.data_dir.empty() || o.listen_peer.empty()) {
    std::fprintf(stderr,
                 "usage: embedded-controller --name N --data-dir D --listen-peer H:P "
                 "[--listen-client H:P] --initial-cluster N=H:P,... [--run-for SECONDS]\n");
    return 2;
  }
  signal(SIGTERM, [](int) { g_stop = true; });
  signal(SIGINT, [](int) { g_stop = true; });

  kvc::Result<std::unique_ptr<kvc::server::Engine>> opened = kvc::server::Engine::open(o);
  if (!opened.ok()) {
    std::fprintf(stderr, "embedded-controller: %s\n", opened.status().to_string().c_str());
    return 1;
  }
  kvc::server::Engine& engine = **opened;
  std::atomic<bool> leading{false};
  engine.on_leader_change([&](const kvc::server::LeaderInfo& info) {
    const bool me = info.id == engine.id();
    if (me != leading.exchange(me)) {
      std::printf("%s: %s the controller job (leader %s, term %llu)\n", o.name.c_str(),
                  me ? "starting" : "stopping", info.name.c_str(),
                  static_cast<unsigned long long>(info.term));
      std::fflush(stdout);
    }
  });

  const auto end = std::chrono::steady_clock::now() + std::chrono::seconds(run_seconds);
  std::uint64_t round = 0;
  while (!g_stop && std::chrono::steady_clock::now() < end && engine.failure().ok()) {
    if (leading && engine.is_ready()) {
      ++round;
      if (kvc::Status s = run_round(engine, o.name, round); !s.ok()) {
        std::fprintf(stderr, "%s: round %llu failed: %s\n", o.name.c_str(),
                     static_cast<unsigned long long>(round), s.to_string().c_str());
      }
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  kvc::Status s = engine.close();
  if (!s.ok()) {
    std::fprintf(stderr, "embedded-controller: %s\n", s.to_string().c_str());
    return 1;
  }
  return 0;
}
