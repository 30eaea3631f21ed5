// kvc-ctl: admin and data commands against a running kvc cluster. Parses flags and prints;
// the work is done by the client library (lib/kvc/client).
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <future>
#include <iostream>
#include <iterator>
#include <thread>

#include "admin.h"
#include "cli.h"
#include "coordination.h"
#include "kvc/client/client.h"
#include "kvc/common/json.h"
#include "kvc/common/text.h"
#include "kvc/server/permissions.h"
#include "output.h"

namespace kvc::ctl {
namespace {

constexpr const char* kDefaultEndpoint = "127.0.0.1:2379";

struct Globals {
  std::string endpoints;
  std::string secret_file;
  std::string cacert, cert, key;  // --cacert, --cert, --key: TLS with certificates
  std::string token;              // --token, KVC_TOKEN: a named token (kvc-permissions(5))
  std::string output = "simple";
  std::string timeout = "5s";
  LogOptions log;
  Format format = Format::kSimple;
  std::uint64_t timeout_ms = 5000;
  std::vector<net::Address> endpoint_list;  // --endpoints, parsed (client::parse_endpoints)
};

Globals g;

int fail(const Status& s) { return cli::fail("kvc-ctl", s); }

// Reports a response's failure on stderr and returns its exit code (0 when ok).
int check(const wire::Response& r) {
  if (r.code == Code::kOk) return kExitOk;
  std::string msg = r.message;
  if (r.code == Code::kNotLeader && !r.leader_client_addr.empty()) {
    msg += " (leader: " + r.leader_client_addr + ")";
  }
  return fail(Status(r.code, msg));
}

// The client for every command. Failover rules (hello budget, reads retried elsewhere, writes
// never) are the library's: see client.h and kvc-ctl(1), "FAILOVER".
Result<std::unique_ptr<client::Client>> connect() {
  client::ClientOptions o;
  o.endpoints = g.endpoint_list;
  o.timeout_ms = g.timeout_ms;
  o.connect_timeout_ms = std::min<std::uint64_t>(g.timeout_ms, 2000);
  o.name = "kvc-ctl";
  o.secret_file = g.secret_file;
  o.tls.trusted_ca_file = g.cacert;
  o.tls.cert_file = g.cert;
  o.tls.key_file = g.key;
  o.token = g.token;
  return client::Client::open(std::move(o));
}

Result<std::string> read_stdin() {
  std::string data((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (std::cin.bad()) return Status::io_error("reading the value from standard input failed");
  return data;
}

// `revision`: the store revision the read was served at (JSON's "revision").
void print_kvs(const std::vector<wire::KeyValue>& kvs, bool keys_only, Table* table,
               std::uint64_t revision) {
  for (const wire::KeyValue& kv : kvs) {
    switch (g.format) {
      case Format::kSimple:
        write_raw(kv.key);
        std::fputc('\n', stdout);
        if (!keys_only) {
          write_raw(kv.value);
          std::fputc('\n', stdout);
        }
        break;
      case Format::kJson:
        std::printf("%s\n", kv_json(kv, keys_only, revision).c_str());
        break;
      case Format::kTable:
        table->add({table_cell(kv.key), keys_only ? "" : table_cell(kv.value),
                    std::to_string(kv.create_revision), std::to_string(kv.mod_revision),
                    std::to_string(kv.version)});
        break;
    }
  }
}

Table kv_table(bool keys_only) {
  return Table({"KEY", keys_only ? "" : "VALUE", "CREATE_REV", "MOD_REV", "VERSION"});
}

// --- put ---------------------------------------------------------------------------------
struct PutArgs {
  std::string key, value;
  std::string lease;  // --lease ID (hex)
};
int run_put(const PutArgs& a) {
  std::string value = a.value;
  if (value == "-") {
    Result<std::string> in = read_stdin();
    if (!in.ok()) return fail(in.status());
    value = std::move(*in);
  }
  std::uint64_t lease = 0;
  if (!a.lease.empty()) {
    Result<std::uint64_t> id = parse_lease_id(a.lease);
    if (!id.ok()) return fail(id.status());
    lease = *id;
  }
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r =
      (*c)->call_sync({.op = wire::Op::kPut, .key = a.key, .value = value, .lease = lease});
  if (int rc = check(r); rc != 0) return rc;
  switch (g.format) {
    case Format::kSimple:
      std::printf("OK\n");
      break;
    case Format::kJson: {
      std::string o = "{";
      json_uint(o, "revision", r.revision);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable:
      Table t({"REVISION"});
      t.add({std::to_string(r.revision)});
      t.print();
      break;
  }
  return kExitOk;
}

// --- get / list ----------------------------------------------------------------------------
struct GetArgs {
  std::string key;
  bool prefix = false;
  std::uint64_t limit = 0;
  bool keys_only = false;
  bool serializable = false;
};

// Pages through a prefix with range requests, printing as it goes. Each page is read at its own
// revision; JSON lines carry the first page's, the one a watch must start after to miss nothing
// (a later page may already show some of the changes such a watch replays).
int range_all(client::Client& c, const std::string& prefix, std::uint64_t limit, bool keys_only,
              bool serializable) {
  constexpr std::uint64_t kPage = 1000;
  Table table = kv_table(keys_only);
  std::string start = prefix;
  std::uint64_t printed = 0;
  std::uint64_t revision = 0;
  for (;;) {
    std::uint64_t want = kPage;
    if (limit != 0) want = std::min(want, limit - printed);
    wire::Request q{.op = wire::Op::kRange,
                    .key = start,
                    .value = prefix,
                    .prefix = true,
                    .limit = want,
                    .serializable = serializable,
                    .keys_only = keys_only};
    wire::Response r = c.call_sync(q);
    if (int rc = check(r); rc != 0) return rc;
    if (revision == 0) revision = r.revision;
    print_kvs(r.kvs, keys_only, &table, revision);
    printed += r.kvs.size();
    if (!r.more || r.kvs.empty() || (limit != 0 && printed >= limit)) break;
    start = r.kvs.back().key;
    start.push_back('\0');  // the smallest key after the last one
  }
  if (g.format == Format::kTable) table.print();
  return kExitOk;
}

int run_get(const GetArgs& a) {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  if (a.prefix) return range_all(**c, a.key, a.limit, a.keys_only, a.serializable);
  wire::Response r = (*c)->call_sync({.op = wire::Op::kGet,
                                      .key = a.key,
                                      .serializable = a.serializable,
                                      .keys_only = a.keys_only});
  if (int rc = check(r); rc != 0) return rc;
  if (!r.found || r.kvs.empty())
    return fail(Status::not_found("key not found: " + printable(a.key)));
  const wire::KeyValue& kv = r.kvs.front();
  switch (g.format) {
    case Format::kSimple:
      if (a.keys_only) {
        write_raw(kv.key);
        std::fputc('\n', stdout);
      } else {
        write_raw(kv.value);
        end_raw_value();
      }
      break;
    case Format::kJson:
      std::printf("%s\n", kv_json(kv, a.keys_only, r.revision).c_str());
      break;
    case Format::kTable: {
      Table t = kv_table(a.keys_only);
      print_kvs({kv}, a.keys_only, &t, r.revision);
      t.print();
      break;
    }
  }
  return kExitOk;
}

struct ListArgs {
  std::string prefix;
  std::uint64_t limit = 0;
  bool keys_only = false;
  bool serializable = false;
};
int run_list(const ListArgs& a) {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  return range_all(**c, a.prefix, a.limit, a.keys_only, a.serializable);
}

// --- del / exists / cas ------------------------------------------------------------------
struct DelArgs {
  std::string key;
  bool prefix = false;
  std::uint64_t expect = 0;  // --expect-revision: delete only at this mod revision
};
// A cas or compare-and-delete whose expected revision did not match: the key's current one
// (0: absent) goes to stdout in JSON, the reason to stderr; exit 4.
int compare_failed(const wire::Response& r) {
  std::fprintf(stderr, "kvc-ctl: compare failed: %s\n", r.message.c_str());
  if (g.format == Format::kJson) {
    std::string o = "{";
    json_bool(o, "succeeded", false);
    json_uint(o, "mod_revision", r.revision);
    std::printf("%s}\n", o.c_str());
  }
  return kExitCompareFailed;
}

int run_del(const DelArgs& a) {
  if (a.prefix && a.expect != 0) {
    return fail(Status::invalid_argument("--expect-revision deletes one key, not a --prefix"));
  }
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync(
      {.op = wire::Op::kDelete, .key = a.key, .prefix = a.prefix, .expect_revision = a.expect});
  if (r.code == Code::kCompareFailed) return compare_failed(r);
  if (int rc = check(r); rc != 0) return rc;
  const std::uint64_t n = a.prefix ? r.count : (r.found ? 1 : 0);
  if (n == 0 && !a.prefix) return fail(Status::not_found("key not found: " + printable(a.key)));
  switch (g.format) {
    case Format::kSimple:
      std::printf("%llu\n", static_cast<unsigned long long>(n));
      break;
    case Format::kJson: {
      std::string o = "{";
      json_uint(o, "deleted", n);
      json_uint(o, "revision", r.revision);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable: {
      Table t({"DELETED", "REVISION"});
      t.add({std::to_string(n), std::to_string(r.revision)});
      t.print();
      break;
    }
  }
  return kExitOk;
}

struct ExistsArgs {
  std::string key;
  bool serializable = false;
};
int run_exists(const ExistsArgs& a) {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync(
      {.op = wire::Op::kGet, .key = a.key, .serializable = a.serializable, .keys_only = true});
  if (int rc = check(r); rc != 0) return rc;
  switch (g.format) {
    case Format::kSimple:
      std::printf("%s\n", r.found ? "true" : "false");
      break;
    case Format::kJson: {
      std::string o = "{";
      json_bool(o, "exists", r.found);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable: {
      Table t({"KEY", "EXISTS"});
      t.add({printable(a.key), r.found ? "true" : "false"});
      t.print();
      break;
    }
  }
  return r.found ? kExitOk : kExitNotFound;
}

struct CasArgs {
  std::string key, value;
  std::uint64_t expect = 0;
  std::string lease;
};
int run_cas(const CasArgs& a) {
  std::string value = a.value;
  if (value == "-") {
    Result<std::string> in = read_stdin();
    if (!in.ok()) return fail(in.status());
    value = std::move(*in);
  }
  std::uint64_t lease = 0;
  if (!a.lease.empty()) {
    Result<std::uint64_t> id = parse_lease_id(a.lease);
    if (!id.ok()) return fail(id.status());
    lease = *id;
  }
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync({.op = wire::Op::kCas,
                                      .key = a.key,
                                      .value = value,
                                      .expect_revision = a.expect,
                                      .lease = lease});
  if (r.code == Code::kCompareFailed) return compare_failed(r);
  if (int rc = check(r); rc != 0) return rc;
  switch (g.format) {
    case Format::kSimple:
      std::printf("OK\n");
      break;
    case Format::kJson: {
      std::string o = "{";
      json_bool(o, "succeeded", true);
      json_uint(o, "revision", r.revision);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable: {
      Table t({"REVISION"});
      t.add({std::to_string(r.revision)});
      t.print();
      break;
    }
  }
  return kExitOk;
}

// --- watch ---------------------------------------------------------------------------------
struct WatchArgs {
  std::string key;
  bool prefix = false;
  std::uint64_t rev = 0;
  std::uint64_t count = 0;
  bool prev_kv = false;
};

// `prev`: the key before the event (watch --prev-kv), null or an empty key when there was none.
void print_event(const wire::Event& e, const wire::KeyValue* prev) {
  const bool has_prev = prev != nullptr && !prev->key.empty();
  const char* type = e.type == wire::EventType::kPut ? "PUT" : "DELETE";
  switch (g.format) {
    case Format::kSimple:
      std::printf("%s\n", type);
      if (has_prev) {  // etcdctl's order: the previous key and value, then the event's
        write_raw(prev->key);
        std::fputc('\n', stdout);
        write_raw(prev->value);
        std::fputc('\n', stdout);
      }
      write_raw(e.kv.key);
      std::fputc('\n', stdout);
      if (e.type == wire::EventType::kPut) {
        write_raw(e.kv.value);
        std::fputc('\n', stdout);
      }
      break;
    case Format::kJson: {
      std::string o = "{";
      json_string(o, "type", e.type == wire::EventType::kPut ? "put" : "delete");
      json_bytes(o, "key", e.kv.key);
      if (e.type == wire::EventType::kPut) json_bytes(o, "value", e.kv.value);
      json_uint(o, "mod_revision", e.kv.mod_revision);
      if (e.type == wire::EventType::kPut) {
        json_uint(o, "create_revision", e.kv.create_revision);
        json_uint(o, "version", e.kv.version);
      }
      // The store revision this line reflects: that of the event (a later watch from
      // revision + 1 goes on after it).
      json_uint(o, "revision", e.kv.mod_revision);
      if (has_prev) o += ",\"prev_kv\":" + kv_json(*prev, false);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable: {
      std::string line = std::string(type) + std::string(8 - std::strlen(type), ' ');
      std::string rev = std::to_string(e.kv.mod_revision);
      if (rev.size() < 10) rev.append(10 - rev.size(), ' ');
      line += rev + " " + table_cell(e.kv.key);
      if (e.type == wire::EventType::kPut) line += "  " + table_cell(e.kv.value);
      line += '\n';
      std::fwrite(line.data(), 1, line.size(), stdout);
      break;
    }
  }
  std::fflush(stdout);
}

int run_watch(const WatchArgs& a) {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  std::uint64_t next_rev = a.rev;
  std::uint64_t seen = 0;
  // A broken stream resumes from the revision after the last event printed, so no event is
  // lost or repeated; it gives up when no member answers within --timeout.
  for (;;) {
    std::promise<wire::Response> end;
    std::atomic<bool> finished{false};
    wire::Request q{
        .op = wire::Op::kWatch, .key = a.key, .prefix = a.prefix, .start_revision = next_rev};
    q.prev_kv = a.prev_kv;
    (*c)->stream(q, [&](const wire::Response& r) {
      if (r.code == Code::kOk) {
        for (std::size_t i = 0; i < r.events.size(); ++i) {
          const wire::Event& e = r.events[i];
          if (a.count != 0 && seen >= a.count) break;
          print_event(e, i < r.prev_kvs.size() ? &r.prev_kvs[i] : nullptr);
          ++seen;
          next_rev = e.kv.mod_revision + 1;
        }
        if (next_rev == 0 && r.revision != 0) next_rev = r.revision + 1;
      }
      const bool stop = (a.count != 0 && seen >= a.count) || r.done || r.code != Code::kOk;
      if (stop && !finished.exchange(true)) end.set_value(r);
      return !stop;
    });
    wire::Response last = end.get_future().get();
    if (a.count != 0 && seen >= a.count) return kExitOk;
    if (last.code == Code::kOk) return kExitOk;
    if (last.code != Code::kUnavailable && last.code != Code::kShuttingDown) return check(last);
    std::fprintf(stderr, "kvc-ctl: watch interrupted (%s); resuming from revision %llu\n",
                 last.message.c_str(), static_cast<unsigned long long>(next_rev));
  }
}

// Runs an admin command with a connected client.
int with_env(const std::function<int(const Env&)>& fn) {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  Env env;
  env.client = c->get();
  env.endpoints = g.endpoint_list;
  env.format = g.format;
  env.timeout_ms = g.timeout_ms;
  env.secret_file = g.secret_file;
  env.check = check;
  env.fail = fail;
  return fn(env);
}

// --- auth ----------------------------------------------------------------------------------
// whoami: the identity the member sees on this connection and what the permissions file
// grants it.
int run_auth_whoami() {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync({.op = wire::Op::kWhoami});
  if (int rc = check(r); rc != 0) return rc;
  switch (g.format) {
    case Format::kSimple:
      std::printf("%s\n", r.identity.c_str());
      if (!r.permissions) {
        std::printf("(no permissions file: may do everything)\n");
      } else if (r.grants.empty()) {
        std::printf("(no grants)\n");
      }
      for (const std::string& line : r.grants) std::printf("%s\n", line.c_str());
      break;
    case Format::kJson: {
      std::string grants = "[";
      for (const std::string& line : r.grants) {
        grants += (grants.size() > 1 ? "," : "") + json_quote(line);
      }
      grants += "]";
      std::printf("{\"identity\":%s,\"permissions\":%s,\"grants\":%s}\n",
                  json_quote(r.identity).c_str(), r.permissions ? "true" : "false", grants.c_str());
      break;
    }
    case Format::kTable: {
      Table t({"IDENTITY", "GRANT"});
      if (r.grants.empty()) t.add({r.identity, r.permissions ? "" : "(everything)"});
      for (const std::string& line : r.grants) t.add({r.identity, line});
      t.print();
      break;
    }
  }
  return kExitOk;
}

// hash-token: the line a permissions file needs for a token, from its value on stdin (so the
// value is not in the shell's history or the process list).
int run_auth_hash_token(const std::string& name) {
  Result<std::string> in = read_stdin();
  if (!in.ok()) return fail(in.status());
  std::string token = std::move(*in);
  if (!token.empty() && token.back() == '\n') token.pop_back();
  if (token.empty()) return fail(Status::invalid_argument("empty token on standard input"));
  std::printf("token %s %s\n", name.c_str(), server::token_digest(token).c_str());
  return kExitOk;
}

// --- leader --------------------------------------------------------------------------------
int run_leader(bool watch, std::uint64_t count) {
  if (watch) return with_env([&](const Env& env) { return run_leader_watch(env, count); });
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync({.op = wire::Op::kLeader});
  if (int rc = check(r); rc != 0) return rc;
  if (r.leader_id == 0) return fail(Status::unavailable("the cluster has no leader right now"));
  switch (g.format) {
    case Format::kSimple:
      std::printf("%s %s %s\n", r.leader_name.c_str(), id_hex(r.leader_id).c_str(),
                  r.leader_client_addr.c_str());
      break;
    case Format::kJson: {
      std::string o = "{";
      json_string(o, "name", r.leader_name);
      json_string(o, "id", id_hex(r.leader_id));
      json_string(o, "client_addr", r.leader_client_addr);
      std::printf("%s}\n", o.c_str());
      break;
    }
    case Format::kTable: {
      Table t({"NAME", "ID", "CLIENT_ADDR"});
      t.add({r.leader_name, id_hex(r.leader_id), r.leader_client_addr});
      t.print();
      break;
    }
  }
  return kExitOk;
}

// --- member list ---------------------------------------------------------------------------
int run_member_list() {
  auto c = connect();
  if (!c.ok()) return fail(c.status());
  wire::Response r = (*c)->call_sync({.op = wire::Op::kMemberList});
  if (int rc = check(r); rc != 0) return rc;
  Table t({"ID", "NAME", "PEER_ADDR", "CLIENT_ADDR", "ROLE", "LEADER"});
  for (const wire::MemberInfo& m : r.members) {
    const char* role = m.learner ? "learner" : "voter";
    switch (g.format) {
      case Format::kSimple:
        std::printf("%s, %s, %s, %s, %s, %s\n", id_hex(m.id).c_str(), m.name.c_str(),
                    m.peer_addr.c_str(), m.client_addr.c_str(), role, m.is_leader ? "leader" : "-");
        break;
      case Format::kJson: {
        std::string o = "{";
        json_string(o, "id", id_hex(m.id));
        json_string(o, "name", m.name);
        json_string(o, "peer_addr", m.peer_addr);
        json_string(o, "client_addr", m.client_addr);
        json_bool(o, "learner", m.learner);
        json_bool(o, "is_leader", m.is_leader);
        std::printf("%s}\n", o.c_str());
        break;
      }
      case Format::kTable:
        t.add({id_hex(m.id), m.name, m.peer_addr, m.client_addr, role, m.is_leader ? "yes" : ""});
        break;
    }
  }
  if (g.format == Format::kTable) t.print();
  return kExitOk;
}

}  // namespace
}  // namespace kvc::ctl

int main(int argc, char** argv) {
  using namespace kvc::ctl;
  using kvc::kExitUsage;
  std::signal(SIGPIPE, SIG_IGN);
  CLI::App app("kvc-ctl: admin and data commands against a running kvc cluster.", "kvc-ctl");
  kvc::cli::add_common_flags(app, g.log);
  app.require_subcommand(1);
  app.fallthrough();
  app.add_option("--endpoints", g.endpoints,
                 "Comma-separated member client addresses, HOST:PORT; HOST is an IP address, "
                 "[IPv6] or a host name (default 127.0.0.1:2379)")
      ->envname("KVC_ENDPOINTS");
  app.add_option("--secret-file", g.secret_file,
                 "File holding the cluster's shared secret (mode 600), when the members have one")
      ->envname("KVC_SECRET_FILE");
  app.add_option("--cacert", g.cacert,
                 "TLS: verify the members' certificates with these CA certificates (PEM); they "
                 "must name the endpoint dialled")
      ->envname("KVC_CACERT");
  app.add_option("--cert", g.cert,
                 "TLS: this client's certificate (PEM), for members with --client-cert-auth")
      ->envname("KVC_CERT");
  app.add_option("--key", g.key, "TLS: the key of --cert")->envname("KVC_KEY");
  app.add_option("--token", g.token,
                 "A named token of the members' --permissions-file: the identity requests are "
                 "checked as (prefer KVC_TOKEN: a flag shows in the process list)")
      ->envname("KVC_TOKEN");
  app.add_option("-o,--output", g.output, "Output format: simple, json or table")
      ->check(CLI::IsMember({"simple", "json", "table"}))
      ->capture_default_str();
  app.add_option("--timeout", g.timeout, "Give up after this long, e.g. 500ms, 5s, 1m")
      ->capture_default_str();
  app.footer(
      kvc::cli::exit_code_footer("  kvc-ctl --endpoints 127.0.0.1:2379 put /config/a 1\n"
                                 "  kvc-ctl get /config/a",
                                 "  3  key not found\n"
                                 "  4  compare failed (cas)\n"
                                 "  5  cluster unavailable, nothing applied\n"
                                 "  6  timed out, outcome unknown\n"));

  int rc = kExitUsage;
  auto example = [](const char* text) { return std::string("Example:\n  ") + text; };

  PutArgs put;
  auto* put_cmd = app.add_subcommand("put", "Write a key; VALUE '-' reads standard input");
  put_cmd->add_option("key", put.key, "The key")->required();
  put_cmd->add_option("value", put.value, "The value, or - to read it from standard input")
      ->required();
  put_cmd->add_option("--lease", put.lease,
                      "Attach the key to this lease (hex id from lease grant): it is deleted "
                      "when the lease ends");
  put_cmd->footer(example("kvc-ctl put /clusters/c1/shard/0 '{\"primary\":\"10.0.0.1:6666\"}'"));

  GetArgs get;
  auto* get_cmd = app.add_subcommand("get", "Read a key (or every key under a prefix)");
  get_cmd->add_option("key", get.key, "The key, or the prefix with --prefix")->required();
  get_cmd->add_flag("--prefix", get.prefix, "Read every key that starts with KEY");
  get_cmd->add_option("--limit", get.limit, "With --prefix: at most this many keys");
  get_cmd->add_flag("--keys-only", get.keys_only, "Print keys without values");
  get_cmd->add_flag("--serializable", get.serializable,
                    "Read the answering member's state without a quorum round (may be stale)");
  get_cmd->footer(example("kvc-ctl get /config/a > value.bin"));

  DelArgs del;
  auto* del_cmd = app.add_subcommand("del", "Delete a key (or every key under a prefix)");
  del_cmd->add_option("key", del.key, "The key, or the prefix with --prefix")->required();
  del_cmd->add_flag("--prefix", del.prefix, "Delete every key that starts with KEY");
  del_cmd->add_option("--expect-revision", del.expect,
                      "Delete only if the key's mod revision is this (compare-and-delete; "
                      "exit 4 otherwise)");
  del_cmd->footer(example("kvc-ctl del --prefix /tmp/"));

  ExistsArgs exists;
  auto* exists_cmd = app.add_subcommand("exists", "Exit 0 if the key exists, 3 if not");
  exists_cmd->add_option("key", exists.key, "The key")->required();
  exists_cmd->add_flag("--serializable", exists.serializable,
                       "Ask the answering member's state without a quorum round");
  exists_cmd->footer(example("kvc-ctl exists /lock && echo taken"));

  ListArgs list;
  auto* list_cmd = app.add_subcommand("list", "List every key under a prefix, paging underneath");
  list_cmd->add_option("prefix", list.prefix, "The prefix ('' lists everything)")->required();
  list_cmd->add_option("--limit", list.limit, "At most this many keys");
  list_cmd->add_flag("--keys-only", list.keys_only, "Print keys without values");
  list_cmd->add_flag("--serializable", list.serializable,
                     "Read the answering member's state without a quorum round");
  list_cmd->footer(example("kvc-ctl list /clusters/ --keys-only"));

  CasArgs cas;
  auto* cas_cmd = app.add_subcommand("cas", "Write a key only if its revision is as expected");
  cas_cmd->add_option("key", cas.key, "The key")->required();
  cas_cmd->add_option("value", cas.value, "The value, or - to read it from standard input")
      ->required();
  cas_cmd
      ->add_option("--expect-revision", cas.expect,
                   "The key's current mod revision; 0 means the key must not exist")
      ->required();
  cas_cmd->add_option("--lease", cas.lease, "Attach the key to this lease (hex id)");
  cas_cmd->footer(example("kvc-ctl cas /leader-lease me --expect-revision 0"));

  WatchArgs watch;
  auto* watch_cmd =
      app.add_subcommand("watch", "Print changes to a key (or prefix) as they happen");
  watch_cmd->add_option("key", watch.key, "The key, or the prefix with --prefix")->required();
  watch_cmd->add_flag("--prefix", watch.prefix, "Watch every key that starts with KEY");
  watch_cmd->add_option("--rev", watch.rev, "Replay changes from this revision first");
  watch_cmd->add_option("--count", watch.count, "Exit after this many events");
  watch_cmd->add_flag("--prev-kv", watch.prev_kv,
                      "Also print each key's previous value (before the put or delete)");
  watch_cmd->footer(example("kvc-ctl watch --prefix /clusters/ --count 1"));

  auto* leader_cmd =
      app.add_subcommand("leader", "Print the current leader: name, id, client address");
  bool leader_watch = false;
  std::uint64_t leader_count = 0;
  leader_cmd->add_flag("--watch", leader_watch, "Print every leader change until interrupted");
  leader_cmd->add_option("--count", leader_count, "With --watch: exit after this many changes");
  leader_cmd->footer(example("kvc-ctl leader --watch -o json"));

  auto* member_cmd = app.add_subcommand("member", "Cluster membership");
  member_cmd->require_subcommand(1);
  member_cmd->footer(
      "Examples:\n"
      "  kvc-ctl member list -o table\n"
      "  kvc-ctl member add m4 10.0.0.4:2380 --learner\n"
      "  kvc-ctl member promote m4\n"
      "  kvc-ctl member update m4 10.0.0.14:2380\n"
      "  kvc-ctl member remove m4");
  auto* member_list_cmd =
      member_cmd->add_subcommand("list", "List the members: id, name, addresses, role, leader");
  member_list_cmd->footer(example("kvc-ctl member list -o table"));
  MemberArgs madd{.action = "add"};
  auto* member_add_cmd =
      member_cmd->add_subcommand("add", "Add a member and print the command line that starts it");
  member_add_cmd->add_option("name", madd.target, "The new member's name")->required();
  member_add_cmd->add_option("peer_addr", madd.peer_addr, "Its peer address, HOST:PORT")
      ->required();
  member_add_cmd->add_flag("--learner", madd.learner,
                           "Add it as a learner (gets the log, does not vote); promote later");
  member_add_cmd->add_flag("--force", madd.force,
                           "Add a voter even if the cluster could lose its quorum meanwhile");
  member_add_cmd->footer(example("kvc-ctl member add m4 127.0.0.1:2386 --learner"));
  MemberArgs mpromote{.action = "promote"};
  auto* member_promote_cmd =
      member_cmd->add_subcommand("promote", "Make a caught-up learner a voter");
  member_promote_cmd->add_option("member", mpromote.target, "NAME or 16-hex-digit ID")->required();
  member_promote_cmd->add_flag("--force", mpromote.force, "Promote even if it lags behind");
  member_promote_cmd->footer(example("kvc-ctl member promote m4"));
  MemberArgs mremove{.action = "remove"};
  auto* member_remove_cmd = member_cmd->add_subcommand(
      "remove", "Remove a member (the leader hands over leadership first)");
  member_remove_cmd->add_option("member", mremove.target, "NAME or 16-hex-digit ID")->required();
  member_remove_cmd->add_flag("--force", mremove.force,
                              "Remove even if the remaining voters could not reach a quorum");
  member_remove_cmd->footer(example("kvc-ctl member remove m4"));
  MemberArgs mupdate{.action = "update"};
  auto* member_update_cmd = member_cmd->add_subcommand(
      "update", "Change a member's peer address (then restart it listening there)");
  member_update_cmd->add_option("member", mupdate.target, "NAME or 16-hex-digit ID")->required();
  member_update_cmd->add_option("peer_addr", mupdate.peer_addr, "Its new peer address, HOST:PORT")
      ->required();
  member_update_cmd->footer(example("kvc-ctl member update m4 10.0.0.14:2380"));

  std::string transfer_target;
  auto* transfer_cmd = app.add_subcommand(
      "transfer-leader", "Move leadership to a member, wait for it, report the result");
  transfer_cmd->add_option("member", transfer_target, "NAME or 16-hex-digit ID")->required();
  transfer_cmd->footer(example("kvc-ctl transfer-leader m2"));

  bool status_cluster = false;
  auto* status_cmd = app.add_subcommand(
      "status", "One row per endpoint: name, id, version, role, term, indexes, sizes, errors");
  status_cmd->add_flag("--cluster", status_cluster, "Ask every member, not just --endpoints");
  status_cmd->footer(example("kvc-ctl status --cluster -o table"));

  bool health_cluster = false;
  auto* health_cmd = app.add_subcommand(
      "health", "Exit 0 only if a quorum confirms a linearizable read within --timeout");
  health_cmd->add_flag("--cluster", health_cluster, "Check every member; exit 0 only if all are");
  health_cmd->footer(example("kvc-ctl health --cluster"));

  auto* auth_cmd = app.add_subcommand("auth", "Identities and permissions (kvc-permissions(5))");
  auth_cmd->require_subcommand(1);
  auth_cmd->footer(
      "Examples:\n"
      "  KVC_TOKEN=$(cat ctl.token) kvc-ctl auth whoami\n"
      "  openssl rand -hex 32 | tee ctl.token | kvc-ctl auth hash-token ctl >> permissions");
  auto* auth_whoami_cmd = auth_cmd->add_subcommand(
      "whoami", "Print the identity the member sees and what the permissions file grants it");
  auth_whoami_cmd->footer(example("KVC_TOKEN=$(cat ~/.kvc-token) kvc-ctl auth whoami"));
  std::string token_name;
  auto* auth_hash_cmd = auth_cmd->add_subcommand(
      "hash-token", "Read a token's value on standard input, print its permissions-file line");
  auth_hash_cmd->add_option("name", token_name, "The token's name in the file")->required();
  auth_hash_cmd->footer(
      example("openssl rand -hex 32 | tee ctl.token | kvc-ctl auth hash-token ctl"));

  auto* snapshot_cmd = app.add_subcommand("snapshot", "Snapshots of the cluster's state");
  snapshot_cmd->require_subcommand(1);
  snapshot_cmd->footer(
      "Examples:\n"
      "  kvc-ctl snapshot save backup.snap\n"
      "  kvc-ctl snapshot save backup.snap --force && kvc-snap verify backup.snap");
  std::string snapshot_path;
  bool snapshot_force = false;
  auto* snapshot_save_cmd = snapshot_cmd->add_subcommand(
      "save", "Stream a consistent snapshot from a member into FILE and verify it");
  snapshot_save_cmd->add_option("file", snapshot_path, "Where to write the snapshot")->required();
  snapshot_save_cmd->add_flag("--force", snapshot_force, "Replace FILE if it exists");
  snapshot_save_cmd->footer(
      example("kvc-ctl snapshot save backup.snap && kvc-snap info backup.snap"));

  auto* check_cmd = app.add_subcommand("check", "Consistency checks");
  check_cmd->require_subcommand(1);
  check_cmd->footer(
      "Examples:\n"
      "  kvc-ctl check hash\n"
      "  kvc-ctl check hash -o json | jq -r 'select(.matches | not) | .name'");
  auto* check_hash_cmd =
      check_cmd->add_subcommand("hash", "Compare every member's state hash at the same log index");
  check_hash_cmd->footer(example("kvc-ctl check hash"));
  auto* lease_cmd = app.add_subcommand("lease", "Leases: keys that vanish when their holder stops");
  lease_cmd->require_subcommand(1);
  lease_cmd->footer(
      "Examples:\n"
      "  id=$(kvc-ctl lease grant 10 -o json | jq -r .lease)\n"
      "  kvc-ctl put /nodes/n1 alive --lease $id\n"
      "  kvc-ctl lease keep-alive $id &\n"
      "  kvc-ctl lease ttl $id --keys");
  std::uint64_t grant_ttl = 0;
  auto* lease_grant_cmd =
      lease_cmd->add_subcommand("grant", "Grant a lease of TTL seconds and print its id");
  lease_grant_cmd->add_option("ttl", grant_ttl, "Seconds (the leader raises it to its minimum)")
      ->required();
  lease_grant_cmd->footer(example("kvc-ctl lease grant 30"));
  std::string lease_id;
  auto* lease_revoke_cmd =
      lease_cmd->add_subcommand("revoke", "End a lease now: its keys are deleted in one revision");
  lease_revoke_cmd->add_option("id", lease_id, "The lease id (hex)")->required();
  lease_revoke_cmd->footer(example("kvc-ctl lease revoke 694d71ddacfda227"));
  bool keep_alive_once = false;
  auto* lease_keep_alive_cmd = lease_cmd->add_subcommand(
      "keep-alive", "Keep a lease alive (every TTL/3) until interrupted or the lease is gone");
  lease_keep_alive_cmd->add_option("id", lease_id, "The lease id (hex)")->required();
  lease_keep_alive_cmd->add_flag("--once", keep_alive_once, "Renew it once and exit");
  lease_keep_alive_cmd->footer(example("kvc-ctl lease keep-alive 694d71ddacfda227"));
  bool ttl_keys = false;
  auto* lease_ttl_cmd = lease_cmd->add_subcommand(
      "ttl", "Print a lease's granted and remaining time (the leader's clock)");
  lease_ttl_cmd->add_option("id", lease_id, "The lease id (hex)")->required();
  lease_ttl_cmd->add_flag("--keys", ttl_keys, "Also print the keys attached to it");
  lease_ttl_cmd->footer(example("kvc-ctl lease ttl 694d71ddacfda227 --keys"));
  auto* lease_list_cmd = lease_cmd->add_subcommand("list", "List every lease");
  lease_list_cmd->footer(example("kvc-ctl lease list -o table"));

  TxnArgs txn;
  auto* txn_cmd = app.add_subcommand(
      "txn", "Compare keys, then apply one list of ops or the other, atomically");
  txn_cmd->add_option("--json", txn.json_file,
                      "Read the txn as JSON from FILE ('-': standard input) instead of etcdctl's "
                      "text (compares, blank line, success ops, blank line, failure ops)");
  txn_cmd->footer(
      "Example (standard input):\n"
      "  printf 'mod(\"/cfg\") = \"7\"\\n\\nput /cfg v2\\n\\nget /cfg\\n' | kvc-ctl txn");

  LockArgs lock;
  auto* lock_cmd = app.add_subcommand(
      "lock", "Hold a lock (print its key and fencing token), or run a command while holding it");
  lock_cmd->add_option("name", lock.name, "The lock's name (its keys go under NAME/)")->required();
  lock_cmd->add_option("command", lock.command,
                       "After --: a command to run while holding the lock (KVC_LOCK_KEY and "
                       "KVC_LOCK_TOKEN set); the lock is released when it exits");
  lock_cmd->add_option("--ttl", lock.ttl_s, "Seconds the lock outlives a holder that stops")
      ->capture_default_str();
  lock_cmd->footer(example("kvc-ctl lock /locks/rebalance -- ./rebalance.sh"));

  ElectArgs elect;
  auto* elect_cmd = app.add_subcommand(
      "elect", "Campaign to lead with PROPOSAL (hold until interrupted), or --listen");
  elect_cmd->add_option("name", elect.name, "The election's name (keys go under NAME/)")
      ->required();
  elect_cmd->add_option("proposal", elect.proposal, "This candidate's value");
  elect_cmd->add_flag("-l,--listen", elect.listen, "Print each leader as it changes");
  elect_cmd->add_option("--ttl", elect.ttl_s, "Seconds leadership outlives a leader that stops")
      ->capture_default_str();
  elect_cmd->footer(example("kvc-ctl elect /elections/controller node-a:9000"));
  kvc::cli::add_global_options_to_help(app);

  if (auto early = kvc::cli::parse(app, argc, argv)) return *early;
  kvc::Result<std::uint64_t> t = kvc::parse_duration_ms(g.timeout);
  if (!t.ok()) {
    std::fprintf(stderr, "kvc-ctl: --timeout: %s\n", t.status().message().c_str());
    return kExitUsage;
  }
  g.timeout_ms = *t;
  // Malformed endpoints are a usage error; names that do not resolve are found when used
  // (exit 5: nothing could be reached).
  kvc::Result<std::vector<kvc::net::Address>> eps =
      kvc::client::parse_endpoints(g.endpoints.empty() ? kDefaultEndpoint : g.endpoints);
  if (!eps.ok()) {
    std::fprintf(stderr, "kvc-ctl: --endpoints: %s\n", eps.status().message().c_str());
    return kExitUsage;
  }
  g.endpoint_list = std::move(*eps);
  g.format = g.output == "json"    ? Format::kJson
             : g.output == "table" ? Format::kTable
                                   : Format::kSimple;
  if (kvc::Status s = kvc::setup_logging(g.log); !s.ok()) {
    std::fprintf(stderr, "kvc-ctl: %s\n", s.message().c_str());
    return kExitUsage;
  }
  if (auth_whoami_cmd->parsed()) rc = run_auth_whoami();
  if (auth_hash_cmd->parsed()) rc = run_auth_hash_token(token_name);
  if (put_cmd->parsed()) rc = run_put(put);
  if (get_cmd->parsed()) rc = run_get(get);
  if (del_cmd->parsed()) rc = run_del(del);
  if (exists_cmd->parsed()) rc = run_exists(exists);
  if (list_cmd->parsed()) rc = run_list(list);
  if (cas_cmd->parsed()) rc = run_cas(cas);
  if (watch_cmd->parsed()) rc = run_watch(watch);
  if (leader_cmd->parsed()) rc = run_leader(leader_watch, leader_count);
  if (member_add_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_member_change(e, madd); });
  if (member_promote_cmd->parsed()) {
    rc = with_env([&](const Env& e) { return run_member_change(e, mpromote); });
  }
  if (member_remove_cmd->parsed()) {
    rc = with_env([&](const Env& e) { return run_member_change(e, mremove); });
  }
  if (member_update_cmd->parsed()) {
    rc = with_env([&](const Env& e) { return run_member_change(e, mupdate); });
  }
  if (transfer_cmd->parsed()) {
    rc = with_env([&](const Env& e) { return run_transfer_leader(e, transfer_target); });
  }
  if (status_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_status(e, status_cluster); });
  if (health_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_health(e, health_cluster); });
  if (snapshot_save_cmd->parsed()) {
    rc =
        with_env([&](const Env& e) { return run_snapshot_save(e, snapshot_path, snapshot_force); });
  }
  if (check_hash_cmd->parsed()) rc = with_env([&](const Env& e) { return run_check_hash(e); });
  if (member_list_cmd->parsed()) rc = run_member_list();
  if (lease_grant_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_lease_grant(e, grant_ttl); });
  if (lease_revoke_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_lease_revoke(e, lease_id); });
  if (lease_keep_alive_cmd->parsed()) {
    rc = with_env([&](const Env& e) { return run_lease_keep_alive(e, lease_id, keep_alive_once); });
  }
  if (lease_ttl_cmd->parsed())
    rc = with_env([&](const Env& e) { return run_lease_ttl(e, lease_id, ttl_keys); });
  if (lease_list_cmd->parsed()) rc = with_env([&](const Env& e) { return run_lease_list(e); });
  if (txn_cmd->parsed()) rc = with_env([&](const Env& e) { return run_txn(e, txn); });
  if (lock_cmd->parsed()) rc = with_env([&](const Env& e) { return run_lock(e, lock); });
  if (elect_cmd->parsed()) rc = with_env([&](const Env& e) { return run_elect(e, elect); });
  std::fflush(stdout);
  return rc;
}
