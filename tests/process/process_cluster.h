// Real kvc-node processes on 127.0.0.1 for process-level tests: picks free ports, starts
// members in a temporary directory, kills, pauses and restarts them by PID, and always stops
// every process it started (destructor), even when a test fails. What it shares with the chaos
// harness (member slots, the command line, spawning and reaping) is in tests/support.
// Single-threaded use.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "kvc/client/client.h"
#include "kvc/common/status.h"
#include "support/child_process.h"
#include "support/node_member.h"
#include "support/ports.h"
#include "support/temp_dir.h"

namespace kvc::test {

// A member: its slot (name, ports, data dir, log; tests/support/node_member.h) and how it starts.
struct MemberSpec : NodeSlot {
  std::vector<std::string> extra_flags;
  // A member added to a running cluster: started with this --initial-cluster and
  // --initial-cluster-state existing.
  std::string join_initial_cluster;
  // Overrides ClusterOptions::secret_file for this member (e.g. a wrong secret).
  std::string secret_file;
  // Extra environment for this member's process, "NAME=VALUE" (e.g. a fault-injecting
  // LD_PRELOAD for one member only).
  std::vector<std::string> env;
  // Another kvc-node build for this member (a name under the build's cmd/kvc-node/, e.g.
  // "kvc-node-unsafe" for test mutations); empty: kvc-node.
  std::string binary;
  // The host of its peer and client addresses (a host name is resolved by kvc-node and kvc-ctl;
  // it must name a loopback address).
  std::string host = "127.0.0.1";
};

struct ClusterOptions {
  int members = 3;
  std::string token = "test-cluster";
  std::vector<std::string> extra_flags;  // for every member, e.g. {"--retained-entries", "50"}
  std::string log_level = "info";
  std::string env_preload;  // LD_PRELOAD for the members (fault injection)
  // The cluster's shared secret: members get --secret-file, client()/client_for() use it.
  // ctl() does not: tests pass kvc-ctl's --secret-file themselves.
  std::string secret_file;
  // TLS with certificates for client()/client_for() (and so wait_for_leader, status): the CA
  // to trust and a client certificate. ctl() does not use it either.
  net::TlsConfig client_tls;
};

// Writes `secret` to `path` with mode 600 (a secret file kvc accepts).
Status write_secret_file(const std::string& path, const std::string& secret);

class ProcessCluster {
 public:
  // Creates a fresh directory under $TMPDIR (or /tmp) named after `test_name` (a ScopedTempDir,
  // kept when KVC_KEEP_TEST_DIRS is set).
  ProcessCluster(const std::string& test_name, ClusterOptions options);
  ~ProcessCluster();
  ProcessCluster(const ProcessCluster&) = delete;
  ProcessCluster& operator=(const ProcessCluster&) = delete;

  // Starts every member that is not running.
  Status start_all();
  Status start(int i);
  // Sends `sig` and, for SIGKILL/SIGTERM, waits for the process to exit (bounded).
  Status kill(int i, int sig);
  // SIGTERM and wait; returns the exit status (0 on a clean stop).
  Result<int> stop(int i);
  void stop_all();
  Status pause(int i);   // SIGSTOP
  Status resume(int i);  // SIGCONT
  bool running(int i) const;
  // Waits (bounded) for member i to exit by itself; returns its exit status (128 + signal when
  // a signal ended it), or kTimeout when it is still running.
  Result<int> wait_exit(int i, std::uint64_t timeout_ms) const;
  // How member i's last process ended: its exit code, 128 + signal when killed, or -1 when it
  // has not ended (or never ran).
  int exit_status(int i) const { return exit_status_[static_cast<std::size_t>(i)]; }
  pid_t pid(int i) const { return pids_[static_cast<std::size_t>(i)]; }

  int size() const { return static_cast<int>(specs_.size()); }
  std::string client_addr(int i) const;
  std::string peer_addr(int i) const;
  std::string endpoints() const;  // every member's client address, comma-separated
  const MemberSpec& spec(int i) const { return specs_[static_cast<std::size_t>(i)]; }
  MemberSpec& mutable_spec(int i) { return specs_[static_cast<std::size_t>(i)]; }
  std::string log_path(int i) const;
  const std::string& dir() const { return dir_.path(); }
  std::string initial_cluster() const;

  // A client for one member (no leader following beyond what the client does by itself), or
  // for all of them.
  std::unique_ptr<client::Client> client_for(int i, std::uint64_t timeout_ms = 3000) const;
  std::unique_ptr<client::Client> client(std::uint64_t timeout_ms = 3000) const;
  // Member i's own status (kStatus, asked of that member only, with a fresh client).
  wire::Response status(int i, std::uint64_t timeout_ms = 2000) const;

  // Waits until some running member reports a leader that every running member agrees on;
  // returns the leader's index, or an error after `timeout_ms`.
  Result<int> wait_for_leader(std::uint64_t timeout_ms = 10000) const;
  // Waits until member i's applied index reaches `index`.
  Status wait_applied(int i, std::uint64_t index, std::uint64_t timeout_ms = 10000) const;
  // The index of the member whose id is `id`, or -1.
  int index_of_id(std::uint64_t id) const;

  // The command line member i runs with.
  std::vector<std::string> command_line(int i) const;
  // A new member spec (not started) named `name`, for a member to add with kvc-ctl member add;
  // returns its index.
  int add_spec(const std::string& name);
  // Runs kvc-ctl with `args` against the running members; returns exit status and output.
  struct CtlResult {
    int status = -1;
    std::string out;  // stdout and stderr
  };
  CtlResult ctl(const std::vector<std::string>& args) const;
  // kvc-ctl with `args` against the running members, stdout and stderr apart, bounded in time.
  RunResult ctl_run(const std::vector<std::string>& args, std::uint64_t timeout_ms = 30000,
                    const std::string& input = "") const;
  // The same with the given --endpoints (in that order) and, if `stdin_path` is set, that file
  // as kvc-ctl's standard input.
  CtlResult ctl_with(const std::string& endpoints, const std::vector<std::string>& args,
                     const std::string& stdin_path = "") const;
  const std::string& token() const { return options_.token; }

 private:
  // Sends SIGTERM or SIGKILL and reaps (bounded; SIGKILL after the bound): the exit status.
  Result<int> stop_with(int i, int sig);

  ClusterOptions options_;
  ScopedTempDir dir_;
  std::vector<MemberSpec> specs_;
  std::vector<pid_t> pids_;
  // The exit status of a member that exited by itself (recorded when running() reaps it).
  mutable std::vector<int> exit_status_;
  mutable std::vector<std::uint64_t> ids_;
};

// "kvc-ctl member add" prints the new member's command line; this is its --initial-cluster
// value ("" when the output has none).
std::string printed_initial_cluster(const std::string& member_add_output);

// The path of a built binary (from the compile definition set by CMake).
std::string binary_path(const std::string& name);

// A blocking TCP socket connected to "IPV4:PORT" with a 2 s read timeout, for raw bytes at a
// member; -1 when it cannot connect. The caller closes it.
int raw_connect(const std::string& addr);

}  // namespace kvc::test
