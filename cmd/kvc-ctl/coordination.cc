#include "coordination.h"

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <iterator>
#include <thread>

#include "kvc/client/concurrency.h"
#include "kvc/common/json.h"
#include "kvc/common/text.h"
#include "kvc/common/txn_parse.h"

namespace kvc::ctl {
namespace {

std::atomic<int> g_signal{0};
std::atomic<bool> g_stop{false};  // g_signal != 0, as the recipes' cancel flag

extern "C" void on_stop_signal(int sig) {
  g_signal.store(sig);
  g_stop.store(true);
}

// SIGINT and SIGTERM end a hold (lock, elect, keep-alive) cleanly: the key is released first.
void catch_stop_signals() {
  struct sigaction sa {};
  sa.sa_handler = on_stop_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGINT, &sa, nullptr);
  sigaction(SIGTERM, &sa, nullptr);
}

bool stop_requested() { return g_signal.load() != 0; }

void sleep_ms(std::uint64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

std::string lease_text(std::uint64_t id) { return id_hex(id); }

void print_json(const JsonObject& o) { std::printf("%s\n", o.done().c_str()); }

const char* op_word(TxnOpType t) {
  switch (t) {
    case TxnOpType::kPut:
      return "put";
    case TxnOpType::kGet:
    case TxnOpType::kGetPrefix:
      return "get";
    case TxnOpType::kDelete:
    case TxnOpType::kDeletePrefix:
      return "delete";
  }
  return "?";
}

Result<std::string> read_all(std::istream& in) {
  std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) return Status::io_error("reading the txn failed");
  return data;
}

}  // namespace

Result<std::uint64_t> parse_lease_id(const std::string& text) { return kvc::parse_lease_id(text); }

// ---- leases ----

int run_lease_grant(const Env& env, std::uint64_t ttl_s) {
  if (ttl_s == 0) return env.fail(Status::invalid_argument("TTL must be at least 1 second"));
  wire::Response r = env.client->call_sync({.op = wire::Op::kLeaseGrant, .ttl = ttl_s});
  if (int rc = env.check(r); rc != 0) return rc;
  switch (env.format) {
    case Format::kSimple:
      std::printf("lease %s granted with TTL(%llus)\n", lease_text(r.lease).c_str(),
                  static_cast<unsigned long long>(r.ttl));
      break;
    case Format::kJson:
      print_json(JsonObject()
                     .str("lease", lease_text(r.lease))
                     .num("ttl", r.ttl)
                     .num("revision", r.revision));
      break;
    case Format::kTable: {
      Table t({"LEASE", "TTL"});
      t.add({lease_text(r.lease), std::to_string(r.ttl)});
      t.print();
      break;
    }
  }
  return kExitOk;
}

int run_lease_revoke(const Env& env, const std::string& id_text) {
  Result<std::uint64_t> id = parse_lease_id(id_text);
  if (!id.ok()) return env.fail(id.status());
  wire::Response r = env.client->call_sync({.op = wire::Op::kLeaseRevoke, .lease = *id});
  if (int rc = env.check(r); rc != 0) return rc;
  switch (env.format) {
    case Format::kSimple:
      std::printf("lease %s revoked (%llu keys deleted)\n", lease_text(*id).c_str(),
                  static_cast<unsigned long long>(r.count));
      break;
    case Format::kJson:
      print_json(JsonObject()
                     .str("lease", lease_text(*id))
                     .num("deleted", r.count)
                     .num("revision", r.revision));
      break;
    case Format::kTable: {
      Table t({"LEASE", "DELETED"});
      t.add({lease_text(*id), std::to_string(r.count)});
      t.print();
      break;
    }
  }
  return kExitOk;
}

int run_lease_keep_alive(const Env& env, const std::string& id_text, bool once) {
  Result<std::uint64_t> id = parse_lease_id(id_text);
  if (!id.ok()) return env.fail(id.status());
  catch_stop_signals();
  for (;;) {
    const auto sent = std::chrono::steady_clock::now();
    wire::Response r = env.client->call_sync({.op = wire::Op::kLeaseKeepAlive, .lease = *id});
    if (r.code != Code::kOk) {
      // A lease that is gone ends the loop; anything else is retried until the lease's ttl
      // would have run out (the next answer then says whether it did).
      if (r.code == Code::kNotFound || once) return env.check(r);
      std::fprintf(stderr, "kvc-ctl: keep-alive failed (%s); retrying\n", r.message.c_str());
      for (int i = 0; i < 5 && !stop_requested(); ++i) sleep_ms(100);
      if (stop_requested()) return kExitOk;
      continue;
    }
    if (env.format == Format::kJson) {
      print_json(JsonObject().str("lease", lease_text(*id)).num("ttl", r.ttl));
    } else {
      std::printf("lease %s keepalived with TTL(%llu)\n", lease_text(*id).c_str(),
                  static_cast<unsigned long long>(r.ttl));
    }
    std::fflush(stdout);
    if (once) return kExitOk;
    const auto next =
        sent + std::chrono::milliseconds(std::max<std::uint64_t>(r.ttl * 1000 / 3, 100));
    while (std::chrono::steady_clock::now() < next) {
      if (stop_requested()) return kExitOk;
      sleep_ms(50);
    }
  }
}

int run_lease_ttl(const Env& env, const std::string& id_text, bool keys) {
  Result<std::uint64_t> id = parse_lease_id(id_text);
  if (!id.ok()) return env.fail(id.status());
  wire::Response r =
      env.client->call_sync({.op = wire::Op::kLeaseTtl, .keys_only = keys, .lease = *id});
  if (int rc = env.check(r); rc != 0) return rc;
  if (r.leases.empty()) return env.fail(Status::internal("the member answered without the lease"));
  const wire::LeaseInfo& l = r.leases[0];
  const std::uint64_t remaining_s = (l.remaining_ms + 999) / 1000;
  switch (env.format) {
    case Format::kSimple: {
      std::printf("lease %s granted with TTL(%llus), remaining(%llus)", lease_text(l.id).c_str(),
                  static_cast<unsigned long long>(l.ttl),
                  static_cast<unsigned long long>(remaining_s));
      if (keys) {
        std::printf(", attached keys([");
        for (std::size_t i = 0; i < l.keys.size(); ++i) {
          std::printf("%s%s", i == 0 ? "" : " ", printable(l.keys[i]).c_str());
        }
        std::printf("])");
      }
      std::printf("\n");
      break;
    }
    case Format::kJson: {
      std::string ks = "[";
      for (const std::string& k : l.keys) {
        if (ks.size() > 1) ks += ",";
        std::string o = "{";
        json_bytes(o, "key", k);
        ks += o + "}";
      }
      JsonObject o;
      o.str("lease", lease_text(l.id)).num("ttl", l.ttl).num("remaining_ms", l.remaining_ms);
      if (keys) o.raw("keys", ks + "]");
      print_json(o);
      break;
    }
    case Format::kTable: {
      Table t({"LEASE", "TTL", "REMAINING", "KEYS"});
      t.add({lease_text(l.id), std::to_string(l.ttl), std::to_string(remaining_s),
             keys ? std::to_string(l.keys.size()) : "-"});
      t.print();
      break;
    }
  }
  return kExitOk;
}

int run_lease_list(const Env& env) {
  wire::Response r = env.client->call_sync({.op = wire::Op::kLeaseList});
  if (int rc = env.check(r); rc != 0) return rc;
  Table t({"LEASE", "TTL", "REMAINING"});
  for (const wire::LeaseInfo& l : r.leases) {
    switch (env.format) {
      case Format::kSimple:
        std::printf("%s\n", lease_text(l.id).c_str());
        break;
      case Format::kJson:
        print_json(JsonObject()
                       .str("lease", lease_text(l.id))
                       .num("ttl", l.ttl)
                       .num("remaining_ms", l.remaining_ms));
        break;
      case Format::kTable:
        t.add({lease_text(l.id), std::to_string(l.ttl),
               std::to_string((l.remaining_ms + 999) / 1000)});
        break;
    }
  }
  if (env.format == Format::kTable) t.print();
  return kExitOk;
}

// ---- txn ----

namespace {

wire::Request txn_request(TxnSpec spec) {
  return {.op = wire::Op::kTxn,
          .compares = std::move(spec.compares),
          .then_ops = std::move(spec.then_ops),
          .else_ops = std::move(spec.else_ops)};
}

}  // namespace

Result<wire::Request> parse_txn_text(const std::string& text) {
  Result<TxnSpec> spec = kvc::parse_txn_text(text);
  if (!spec.ok()) return spec.status();
  return txn_request(std::move(*spec));
}

Result<wire::Request> parse_txn_json(const std::string& text) {
  Result<TxnSpec> spec = kvc::parse_txn_json(text);
  if (!spec.ok()) return spec.status();
  return txn_request(std::move(*spec));
}

int run_txn(const Env& env, const TxnArgs& a) {
  Result<std::string> text = std::string();
  if (a.json_file.empty() || a.json_file == "-") {
    text = read_all(std::cin);
  } else {
    std::ifstream f(a.json_file, std::ios::binary);
    if (!f) return env.fail(Status::not_found(a.json_file + ": cannot open"));
    text = read_all(f);
  }
  if (!text.ok()) return env.fail(text.status());
  Result<wire::Request> req = a.json_file.empty() ? parse_txn_text(*text) : parse_txn_json(*text);
  if (!req.ok()) return env.fail(Status::invalid_argument("txn: " + req.status().message()));
  wire::Response r = env.client->call_sync(std::move(*req));
  if (int rc = env.check(r); rc != 0) return rc;
  if (env.format == Format::kJson) {
    std::string results = "[";
    for (const wire::TxnResult& t : r.txn_results) {
      if (results.size() > 1) results += ",";
      JsonObject o;
      o.str("op", op_word(t.type));
      if (t.type == TxnOpType::kPut) o.num("revision", t.revision);
      if (t.type == TxnOpType::kDelete || t.type == TxnOpType::kDeletePrefix) {
        o.num("deleted", t.deleted);
      }
      if (t.type == TxnOpType::kGet || t.type == TxnOpType::kGetPrefix) {
        std::string kvs = "[";
        for (const wire::KeyValue& kv : t.kvs) {
          if (kvs.size() > 1) kvs += ",";
          kvs += kv_json(kv, false);
        }
        o.raw("kvs", kvs + "]").boolean("more", t.more);
      }
      results += o.done();
    }
    print_json(JsonObject()
                   .boolean("succeeded", r.succeeded)
                   .num("revision", r.revision)
                   .raw("results", results + "]"));
    return kExitOk;
  }
  // etcdctl's text: SUCCESS or FAILURE, a blank line, then each op's answer.
  std::printf("%s\n\n", r.succeeded ? "SUCCESS" : "FAILURE");
  for (const wire::TxnResult& t : r.txn_results) {
    switch (t.type) {
      case TxnOpType::kPut:
        std::printf("OK\n");
        break;
      case TxnOpType::kDelete:
      case TxnOpType::kDeletePrefix:
        std::printf("%llu\n", static_cast<unsigned long long>(t.deleted));
        break;
      case TxnOpType::kGet:
      case TxnOpType::kGetPrefix:
        for (const wire::KeyValue& kv : t.kvs) {
          write_raw(kv.key);
          std::fputc('\n', stdout);
          write_raw(kv.value);
          std::fputc('\n', stdout);
        }
        break;
    }
  }
  return kExitOk;
}

// ---- lock and elect ----

namespace {

// Runs `command` with `env_vars` added; returns its exit status (128 + signal when killed).
// The session's loss is reported on stderr while it runs; SIGTERM to kvc-ctl is passed on.
int run_command(const std::vector<std::string>& command,
                const std::vector<std::pair<std::string, std::string>>& env_vars,
                const client::Session& session, bool* lost) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    for (const auto& [k, v] : env_vars) ::setenv(k.c_str(), v.c_str(), 1);
    std::vector<char*> argv;
    for (const std::string& s : command) argv.push_back(const_cast<char*>(s.c_str()));
    argv.push_back(nullptr);
    ::execvp(argv[0], argv.data());
    std::fprintf(stderr, "kvc-ctl: cannot run %s: %s\n", command[0].c_str(), std::strerror(errno));
    ::_exit(127);
  }
  int forwarded = 0;
  for (;;) {
    int st = 0;
    const pid_t w = ::waitpid(pid, &st, WNOHANG);
    if (w == pid) {
      if (WIFEXITED(st)) return WEXITSTATUS(st);
      if (WIFSIGNALED(st)) return 128 + WTERMSIG(st);
      return 1;
    }
    if (const int sig = g_signal.load(); sig != 0 && sig != forwarded) {
      ::kill(pid, sig);
      forwarded = sig;
    }
    if (!*lost && !session.status().ok()) {
      *lost = true;
      std::fprintf(stderr, "kvc-ctl: the lock was lost while the command ran: %s\n",
                   session.status().message().c_str());
    }
    sleep_ms(50);
  }
}

}  // namespace

int run_lock(const Env& env, const LockArgs& a) {
  if (a.name.empty()) return env.fail(Status::invalid_argument("empty lock name"));
  catch_stop_signals();
  Result<std::unique_ptr<client::Session>> session =
      client::Session::open(*env.client, {.ttl_s = a.ttl_s});
  if (!session.ok()) return env.fail(session.status());
  client::Mutex mutex(*env.client, **session, a.name + "/");
  // The wait has no deadline of its own (etcdctl's lock waits as long as it takes); a signal
  // makes it give up.
  Result<std::uint64_t> token = mutex.lock(0, &g_stop);
  if (stop_requested()) {
    (void)mutex.unlock();
    (void)(*session)->close();
    return kExitError;
  }
  if (!token.ok()) return env.fail(token.status());
  const std::string token_text = std::to_string(*token);
  int rc = kExitOk;
  if (!a.command.empty()) {
    bool lost = false;
    rc = run_command(a.command,
                     {{"KVC_LOCK_KEY", mutex.key()},
                      {"KVC_LOCK_TOKEN", token_text},
                      {"ETCD_LOCK_KEY", mutex.key()},
                      {"ETCD_LOCK_REV", token_text}},
                     **session, &lost);
    if (rc < 0) rc = env.fail(Status::io_error("fork failed"));
    if (lost && rc == 0) rc = kExitError;
  } else {
    switch (env.format) {
      case Format::kJson: {
        std::string o = "{";
        json_bytes(o, "key", mutex.key());
        json_uint(o, "token", *token);
        json_string(o, "lease", lease_text((*session)->lease()));
        std::printf("%s}\n", o.c_str());
        break;
      }
      default:
        write_raw(mutex.key());
        std::printf("\n%s\n", token_text.c_str());
    }
    std::fflush(stdout);
    while (!stop_requested()) {
      if (Status s = (*session)->status(); !s.ok()) {
        return env.fail(Status(s.code(), "the lock was lost: " + s.message()));
      }
      sleep_ms(100);
    }
  }
  (void)mutex.unlock();
  (void)(*session)->close();
  return rc;
}

int run_elect(const Env& env, const ElectArgs& a) {
  if (a.name.empty()) return env.fail(Status::invalid_argument("empty election name"));
  catch_stop_signals();
  const std::string prefix = a.name + "/";
  auto print_leader = [&](const client::Election::Leader& l) {
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_bytes(o, "key", l.key);
      json_bytes(o, "proposal", l.proposal);
      json_uint(o, "revision", l.revision);
      std::printf("%s}\n", o.c_str());
    } else {
      write_raw(l.key);
      std::fputc('\n', stdout);
      write_raw(l.proposal);
      std::fputc('\n', stdout);
    }
    std::fflush(stdout);
  };
  if (a.listen) {
    Status s = client::Election::observe(
        *env.client, prefix,
        [&](const client::Election::Leader& l) {
          if (!l.key.empty()) print_leader(l);
          return true;
        },
        &g_stop);
    return s.ok() ? kExitOk : env.fail(s);
  }
  if (a.proposal.empty()) {
    return env.fail(Status::invalid_argument("elect NAME PROPOSAL campaigns; --listen observes"));
  }
  Result<std::unique_ptr<client::Session>> session =
      client::Session::open(*env.client, {.ttl_s = a.ttl_s});
  if (!session.ok()) return env.fail(session.status());
  client::Election election(*env.client, **session, prefix);
  Result<std::uint64_t> rev = election.campaign(a.proposal, 0, &g_stop);
  if (stop_requested()) {
    (void)election.resign();
    (void)(*session)->close();
    return kExitError;
  }
  if (!rev.ok()) return env.fail(rev.status());
  print_leader({election.key(), a.proposal, *rev});
  while (!stop_requested()) {
    if (Status s = (*session)->status(); !s.ok()) {
      return env.fail(Status(s.code(), "leadership was lost: " + s.message()));
    }
    sleep_ms(100);
  }
  (void)election.resign();
  (void)(*session)->close();
  return kExitOk;
}

}  // namespace kvc::ctl
