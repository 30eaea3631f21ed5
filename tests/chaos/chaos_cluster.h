// A cluster of real kvc-node processes for the chaos tests: each member listens for peers on
// its own loopback port, while every member's --initial-cluster names the FaultProxy port in
// front of it, so all Raft traffic passes through the proxy. Members can be killed (SIGKILL),
// stopped cleanly (SIGTERM), paused (SIGSTOP/SIGCONT), restarted with the same command line,
// given a slow disk (the slowfs LD_PRELOAD shim, switched by a control file), and added or
// retired for membership changes. Every process is started from the thread that owns the
// cluster, dies with it (PR_SET_PDEATHSIG), and is stopped by PID in the destructor even when
// a check failed. A member that exits without the harness stopping it is recorded as an
// anomaly (see take_unexpected_exits). What it shares with the process-test harness (member
// slots, the command line, spawning and reaping by PID) is in tests/support.
//
// Thread-safety: start/kill/terminate/pause/resume/add_member must be called from the thread
// that created the cluster (children die with the thread that forked them); the query methods
// (status, find_leader, addresses) are safe from any thread.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "fault_proxy.h"
#include "kvc/client/client.h"
#include "kvc/common/status.h"
#include "support/node_member.h"

namespace kvc::chaos {

struct ClusterConfig {
  int members = 3;
  std::string dir;          // the run's directory (data dirs and logs go under it)
  std::string node_binary;  // kvc-node, or kvc-node-unsafe for mutation runs
  std::string test_mutation;
  std::string slowfs_library;  // the shim's path; empty: disks are never slowed
  std::string token = "chaos";
  std::vector<std::string> extra_flags;  // for every member (timing, retention)
  std::uint64_t seed = 1;                // for the proxy's loss and jitter choices
  // The cluster's shared secret (mode 600), or empty: with it every member gets --secret-file,
  // so both ports speak TLS (the secret as a TLS 1.3 pre-shared key), and every client the
  // harness makes goes through secure().
  std::string secret_file;
};

// A member: its slot (name, ports, data dir, log; tests/support/node_member.h), the proxy port
// the others dial, and what the harness knows of its process.
struct MemberProcess : test::NodeSlot {
  std::uint16_t proxy_port = 0;  // what the others dial (the proxy in front of peer_port)
  std::string disk_control;      // the slowfs control file
  std::string initial_state = "new";
  pid_t pid = 0;
  bool paused = false;
  bool retired = false;  // removed from the cluster by a membership change
  // Being removed from the cluster (the removal's outcome may not be known yet): a member
  // that learns it was removed stops by itself, and that exit is expected, not an anomaly.
  bool may_exit = false;
  std::string exit_while_leaving;  // how it exited while may_exit was set ("" if it did not)
  std::uint64_t id = 0;            // learned from its status
  int starts = 0;
};

class ChaosCluster {
 public:
  explicit ChaosCluster(ClusterConfig config);
  // Kills (SIGCONT, SIGKILL) and reaps every member still running.
  ~ChaosCluster();
  ChaosCluster(const ChaosCluster&) = delete;
  ChaosCluster& operator=(const ChaosCluster&) = delete;

  // Creates the directory, starts the proxy and every member.
  Status start_all();
  // Gives a client of this cluster its credentials (the secret, when the cluster has one).
  void secure(client::ClientOptions& o) const { o.secret_file = config_.secret_file; }
  Status start(int i);
  Status kill(int i);  // SIGKILL, then reap (bounded)
  // SIGTERM, then reap; the exit status (0 for a clean stop, 128+signal when killed).
  Result<int> terminate(int i);
  Status pause(int i);   // SIGSTOP
  Status resume(int i);  // SIGCONT
  bool running(int i);   // started, and not exited (reaps an exit it finds)
  bool paused(int i) const;
  // Members that exited without the harness stopping them since the last call, as
  // "m2 (pid 123) exited with status 1" lines. Checks every member first.
  std::vector<std::string> take_unexpected_exits();

  // A new member slot (name m<N+1>, fresh ports and data dir, --initial-cluster-state
  // existing, --initial-cluster the current members plus itself). Not started.
  Result<int> add_member_slot();
  void retire(int i);  // no longer part of the cluster (already stopped)
  // Member i is being removed (true) and may stop by itself; or it stays a member after all
  // (false): if it exited in the meantime, that exit becomes an unexpected one.
  void expect_exit(int i, bool may_exit);

  Status set_disk_delay(int i, std::uint32_t ms);

  int size() const;
  MemberProcess member(int i) const;
  std::string client_addr(int i) const;
  std::string proxy_addr(int i) const;      // the peer address the others use
  std::vector<int> active_members() const;  // not retired
  FaultProxy& proxy() { return *proxy_; }
  const std::string& dir() const { return config_.dir; }
  std::vector<std::string> command_line(int i) const;

  // Asks member i for its status (kStatus, that member only).
  wire::Response status(int i, std::uint64_t timeout_ms = 500) const;
  // The member that calls itself leader in the highest term among those answering, or -1.
  int find_leader(std::uint64_t timeout_ms = 500) const;
  // Any request to member i only.
  wire::Response call(int i, wire::Request req, std::uint64_t timeout_ms = 2000) const;
  // The index of the member whose id is `id`, or -1.
  int index_of_id(std::uint64_t id) const;

 private:
  std::string initial_cluster_locked() const;
  // Member slot i (not started) in the run's directory.
  MemberProcess make_member(int i) const;

  ClusterConfig config_;
  std::unique_ptr<FaultProxy> proxy_;
  std::unique_ptr<client::Client> admin_;  // created once the members' ports are known
  mutable std::mutex mu_;
  mutable std::vector<MemberProcess> members_;  // guarded by mu_ (status() records ids)
  std::vector<std::string> unexpected_;         // guarded by mu_
};

}  // namespace kvc::chaos
