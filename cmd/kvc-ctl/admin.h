// kvc-ctl's cluster commands (admin.cc). Env carries what main.cc parsed.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "kvc/client/client.h"
#include "output.h"

namespace kvc::ctl {

struct Env {
  client::Client* client = nullptr;
  std::vector<net::Address> endpoints;
  Format format = Format::kSimple;
  std::uint64_t timeout_ms = 5000;
  std::string secret_file;  // --secret-file, echoed in the command member add prints
  std::function<int(const wire::Response&)> check;  // prints a failure, returns its exit code
  std::function<int(const Status&)> fail;
};

struct MemberArgs {
  std::string action;     // add, promote, remove, update
  std::string target;     // NAME (add) or NAME|ID
  std::string peer_addr;  // add, update
  bool learner = false;
  bool force = false;
};

int run_member_change(const Env& env, const MemberArgs& a);
int run_leader_watch(const Env& env, std::uint64_t count);
int run_transfer_leader(const Env& env, const std::string& target);
int run_status(const Env& env, bool cluster);
int run_health(const Env& env, bool cluster);
// Refuses an existing FILE unless `force`; exit 1 (not 3) when FILE cannot be written.
int run_snapshot_save(const Env& env, const std::string& path, bool force);
int run_check_hash(const Env& env);

}  // namespace kvc::ctl
