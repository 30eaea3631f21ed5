// kvc-ctl's coordination commands (coordination.cc): leases, txn, lock and elect, on the
// client library's leases, txns and recipes (kvc/client/concurrency.h).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "admin.h"

namespace kvc::ctl {

// A lease id as kvc-ctl prints it (16 hex digits) or any 1 to 16 hex digits; kInvalidArgument
// otherwise.
Result<std::uint64_t> parse_lease_id(const std::string& text);

int run_lease_grant(const Env& env, std::uint64_t ttl_s);
int run_lease_revoke(const Env& env, const std::string& id);
int run_lease_keep_alive(const Env& env, const std::string& id, bool once);
int run_lease_ttl(const Env& env, const std::string& id, bool keys);
int run_lease_list(const Env& env);

struct TxnArgs {
  std::string json_file;  // "" reads etcdctl's text format from stdin; "-" JSON from stdin
};
int run_txn(const Env& env, const TxnArgs& a);

struct LockArgs {
  std::string name;
  std::uint64_t ttl_s = 60;
  std::vector<std::string> command;  // run while holding the lock, then release
};
int run_lock(const Env& env, const LockArgs& a);

struct ElectArgs {
  std::string name;
  std::string proposal;
  bool listen = false;
  std::uint64_t ttl_s = 60;
};
int run_elect(const Env& env, const ElectArgs& a);

// Parses etcdctl's txn text (compares, blank line, success ops, blank line, failure ops) into
// a txn request, with the parser HTTP's POST /v1/txn shares (common/txn_parse.h). Errors name
// the line.
Result<wire::Request> parse_txn_text(const std::string& text);
// The JSON form: {"compares":[...],"success":[...],"failure":[...]} (kvc-ctl(1), "txn").
Result<wire::Request> parse_txn_json(const std::string& text);

}  // namespace kvc::ctl
