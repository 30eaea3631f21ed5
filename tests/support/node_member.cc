#include "node_member.h"

#include "ports.h"

namespace kvc::test {

NodeSlot make_node_slot(const std::string& dir, const std::string& name) {
  NodeSlot s;
  s.name = name;
  s.peer_port = free_port();
  s.client_port = free_port();
  s.data_dir = dir + "/" + name;
  s.log_path = dir + "/" + name + ".log";
  return s;
}

std::vector<std::string> node_command_line(const NodeFlags& f,
                                           const std::vector<std::string>& extra) {
  std::vector<std::string> args = {f.binary,         "--name",
                                   f.name,           "--data-dir",
                                   f.data_dir,       "--listen-peer",
                                   f.listen_peer,    "--listen-client",
                                   f.listen_client,  "--initial-cluster",
                                   f.initial_cluster};
  auto optional = [&](const char* flag, const std::string& value) {
    if (value.empty()) return;
    args.push_back(flag);
    args.push_back(value);
  };
  optional("--initial-cluster-state", f.initial_cluster_state);
  args.push_back("--cluster-token");
  args.push_back(f.token);
  optional("--log-level", f.log_level);
  optional("--secret-file", f.secret_file);
  args.insert(args.end(), extra.begin(), extra.end());
  return args;
}

}  // namespace kvc::test
