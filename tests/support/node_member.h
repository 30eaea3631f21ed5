// One kvc-node member of a test cluster as the process harness (tests/process/process_cluster.h)
// and the chaos harness (tests/chaos/chaos_cluster.h) both see it: its name, its two loopback
// ports, its data directory and log under the cluster's directory, and the command line that
// starts it. Each harness adds its own parts (the chaos one a fault proxy in front of the peer
// port, a slow disk, pauses); starting and stopping by PID is in child_process.h. No state.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace kvc::test {

struct NodeSlot {
  std::string name;
  std::uint16_t peer_port = 0;    // its own --listen-peer
  std::uint16_t client_port = 0;  // its --listen-client
  std::string data_dir;
  std::string log_path;  // its stdout and stderr, appended over restarts
};
// A member named `name` on two fresh ports (free_port()), with DIR/<name> as its data directory
// and DIR/<name>.log as its log.
NodeSlot make_node_slot(const std::string& dir, const std::string& name);

// kvc-node's flags for one member; the empty optional ones are left out.
struct NodeFlags {
  std::string binary;  // the kvc-node build to run
  std::string name;
  std::string data_dir;
  std::string listen_peer;    // HOST:PORT
  std::string listen_client;  // HOST:PORT
  std::string initial_cluster;
  std::string initial_cluster_state;  // optional: "new" or "existing"
  std::string token;                  // --cluster-token
  std::string log_level;              // optional
  std::string secret_file;            // optional
};
// The command line (binary first), then `extra` as given.
std::vector<std::string> node_command_line(const NodeFlags& flags,
                                           const std::vector<std::string>& extra = {});

}  // namespace kvc::test
