// kvc-ctl's cluster commands: membership, leadership, status, health, snapshots, hash checks.
#include "admin.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <future>
#include <map>
#include <optional>

#include "kvc/common/text.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/snapshot.h"

namespace kvc::ctl {
namespace {

// NAME or a 16-hex-digit member id into the request fields the member resolves.
void name_or_id(const std::string& arg, wire::Request& q) {
  const std::optional<std::uint64_t> id = arg.size() == 16 ? parse_hex_u64(arg) : std::nullopt;
  if (id) {
    q.member_id = *id;
  } else {
    q.name = arg;
  }
}

wire::Response members(const Env& env) {
  return env.client->call_sync({.op = wire::Op::kMemberList});
}

// Client addresses to ask: every member's (with --cluster), else the --endpoints themselves.
Result<std::vector<std::pair<std::string, std::string>>> targets(const Env& env, bool cluster) {
  std::vector<std::pair<std::string, std::string>> out;  // name (may be ""), address
  if (!cluster) {
    for (const net::Address& a : env.endpoints) out.push_back({"", a.to_string()});
    return out;
  }
  wire::Response r = members(env);
  if (r.code != Code::kOk) return Status(r.code, r.message);
  for (const wire::MemberInfo& m : r.members) {
    if (m.client_addr.empty()) {
      out.push_back({m.name, ""});
    } else {
      out.push_back({m.name, m.client_addr});
    }
  }
  return out;
}

std::string member_command(const std::string& name, const std::string& peer,
                           const std::string& initial, const std::string& token,
                           const std::string& secret_file) {
  return "kvc-node --name " + name + " --data-dir DATA_DIR --listen-peer " + peer +
         " --listen-client HOST:PORT \\\n    --initial-cluster " + initial +
         " --initial-cluster-state existing --cluster-token " + token +
         (secret_file.empty() ? "" : " \\\n    --secret-file " + secret_file);
}

}  // namespace

int run_member_change(const Env& env, const MemberArgs& a) {
  wire::Request q;
  q.force = a.force;
  if (a.action == "add") {
    q.op = wire::Op::kMemberAdd;
    q.name = a.target;
    q.peer_addr = a.peer_addr;
    q.learner = a.learner;
  } else if (a.action == "update") {
    q.op = wire::Op::kMemberUpdate;
    q.peer_addr = a.peer_addr;
    name_or_id(a.target, q);
  } else {
    q.op = a.action == "promote" ? wire::Op::kMemberPromote : wire::Op::kMemberRemove;
    name_or_id(a.target, q);
  }
  wire::Response r = env.client->call_sync(q);
  if (int rc = env.check(r); rc != 0) return rc;
  if (a.action == "update") {
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_string(o, "member", a.target);
      json_string(o, "action", a.action);
      json_string(o, "peer_addr", a.peer_addr);
      json_uint(o, "index", r.revision);
      std::printf("%s}\n", o.c_str());
    } else if (r.revision == 0) {
      std::printf("member %s already has peer address %s\n", a.target.c_str(), a.peer_addr.c_str());
    } else {
      std::printf(
          "member %s now has peer address %s (log index %llu); restart it listening "
          "there (--listen-peer %s)\n",
          a.target.c_str(), a.peer_addr.c_str(), static_cast<unsigned long long>(r.revision),
          a.peer_addr.c_str());
    }
    return kExitOk;
  }
  if (a.action != "add") {
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_string(o, "member", a.target);
      json_string(o, "action", a.action);
      json_uint(o, "index", r.revision);
      std::printf("%s}\n", o.c_str());
    } else {
      std::printf("member %s %s (log index %llu)\n", a.target.c_str(),
                  a.action == "promote" ? "promoted to voter" : "removed",
                  static_cast<unsigned long long>(r.revision));
    }
    return kExitOk;
  }
  std::string initial;
  std::uint64_t new_id = 0;
  for (const wire::MemberInfo& m : r.members) {
    if (!initial.empty()) initial += ",";
    initial += m.name + "=" + m.peer_addr;
    if (m.name == a.target) new_id = m.id;
  }
  const std::string cmd = member_command(a.target, a.peer_addr, initial, r.data, env.secret_file);
  if (env.format == Format::kJson) {
    std::string o = "{";
    json_string(o, "id", id_hex(new_id));
    json_string(o, "name", a.target);
    json_string(o, "peer_addr", a.peer_addr);
    json_bool(o, "learner", a.learner);
    json_string(o, "initial_cluster", initial);
    json_string(o, "cluster_token", r.data);
    std::printf("%s}\n", o.c_str());
  } else {
    std::printf("member %s added with id %s as a %s\n", a.target.c_str(), id_hex(new_id).c_str(),
                a.learner ? "learner" : "voter");
    std::printf("start it with:\n  %s\n", cmd.c_str());
    if (a.learner) {
      std::printf("then, once it has caught up:\n  kvc-ctl member promote %s\n", a.target.c_str());
    }
  }
  return kExitOk;
}

int run_leader_watch(const Env& env, std::uint64_t count) {
  std::promise<wire::Response> end;
  std::atomic<bool> finished{false};
  std::uint64_t seen = 0;
  std::uint64_t last = ~0ull;
  env.client->stream({.op = wire::Op::kWatchLeader}, [&](const wire::Response& r) {
    if (r.code == Code::kOk && r.leader_id != last) {
      last = r.leader_id;
      if (r.leader_id != 0) ++seen;  // --count counts elected leaders, not the gaps between

      if (env.format == Format::kJson) {
        std::string o = "{";
        json_string(o, "name", r.leader_name);
        json_string(o, "id", r.leader_id == 0 ? "" : id_hex(r.leader_id));
        json_string(o, "client_addr", r.leader_client_addr);
        json_uint(o, "term", r.count);
        std::printf("%s}\n", o.c_str());
      } else if (r.leader_id == 0) {
        std::printf("(no leader) term %llu\n", static_cast<unsigned long long>(r.count));
      } else {
        std::printf("%s %s %s term %llu\n", r.leader_name.c_str(), id_hex(r.leader_id).c_str(),
                    r.leader_client_addr.c_str(), static_cast<unsigned long long>(r.count));
      }
      std::fflush(stdout);
    }
    const bool stop = (count != 0 && seen >= count) || r.done || r.code != Code::kOk;
    if (stop && !finished.exchange(true)) end.set_value(r);
    return !stop;
  });
  wire::Response r = end.get_future().get();
  if (count != 0 && seen >= count) return kExitOk;
  return r.code == Code::kOk ? kExitOk : env.check(r);
}

int run_transfer_leader(const Env& env, const std::string& target) {
  wire::Request q{.op = wire::Op::kTransferLeader};
  name_or_id(target, q);
  wire::Response r = env.client->call_sync(q);
  if (int rc = env.check(r); rc != 0) return rc;
  if (env.format == Format::kJson) {
    std::string o = "{";
    json_string(o, "leader", r.leader_name);
    json_string(o, "id", id_hex(r.leader_id));
    std::printf("%s}\n", o.c_str());
  } else {
    std::printf("leadership moved to %s (%s)\n", r.leader_name.c_str(),
                id_hex(r.leader_id).c_str());
  }
  return kExitOk;
}

int run_status(const Env& env, bool cluster) {
  Result<std::vector<std::pair<std::string, std::string>>> ts = targets(env, cluster);
  if (!ts.ok()) return env.fail(ts.status());
  Table t({"ENDPOINT", "NAME", "ID", "VERSION", "ROLE", "LEADER", "TERM", "COMMIT", "APPLIED",
           "FLUSHED", "WAL", "STATE", "ERRORS"});
  int rc = kExitOk;
  for (const auto& [name, addr] : *ts) {
    wire::Response r;
    if (addr.empty()) {
      r.code = Code::kUnavailable;
      r.message = "client address unknown";
    } else {
      r = env.client->call_sync({.op = wire::Op::kStatus}, {.target = *net::parse_address(addr)});
    }
    const wire::StatusInfo& s = r.status;
    std::string errors;
    for (const std::string& e : s.errors) errors += (errors.empty() ? "" : "; ") + e;
    if (r.code != Code::kOk) {
      errors = r.message;
      rc = kExitUnavailable;
    }
    switch (env.format) {
      case Format::kJson: {
        std::string o = "{";
        json_string(o, "endpoint", addr);
        json_bool(o, "reachable", r.code == Code::kOk);
        if (r.code == Code::kOk) {
          json_string(o, "name", s.name);
          json_string(o, "id", id_hex(s.member_id));
          json_string(o, "version", s.version);
          json_string(o, "role", s.role);
          json_bool(o, "is_leader", s.leader_id == s.member_id);
          json_string(o, "leader_id", s.leader_id == 0 ? "" : id_hex(s.leader_id));
          json_uint(o, "term", s.term);
          json_uint(o, "commit_index", s.commit_index);
          json_uint(o, "applied_index", s.applied_index);
          json_uint(o, "durable_index", s.durable_index);
          json_uint(o, "wal_bytes", s.wal_bytes);
          json_uint(o, "state_bytes", s.state_bytes);
          json_string(o, "leader_name", r.leader_name);
          json_bool(o, "damaged", s.damaged);
          json_bool(o, "repairing", s.repairing);
          json_string(o, "repair_reason", s.repair_reason);
          json_uint(o, "scrub_passes", s.scrub_passes);
          json_uint(o, "scrub_records", s.scrub_records);
          json_uint(o, "scrub_damaged", s.scrub_damaged);
          json_uint(o, "hash_check_index", s.hash_check_index);
          json_string(o, "hash_check_result", s.hash_check_result);
          json_uint(o, "lost_entries_detected", s.lost_entries_detected);
        } else {
          json_string(o, "name", name);
        }
        o += ",\"errors\":[";
        bool first = true;
        auto add = [&](const std::string& e) {
          if (!first) o += ",";
          first = false;
          o += "\"" + json_escape(e) + "\"";
        };
        if (r.code != Code::kOk) add(r.message);
        for (const std::string& e : s.errors) add(e);
        std::printf("%s]}\n", o.c_str());
        break;
      }
      case Format::kSimple:
      case Format::kTable:
        if (r.code != Code::kOk) {
          t.add({addr.empty() ? "-" : addr, name, "", "", "unreachable", "", "", "", "", "", "", "",
                 errors});
        } else {
          // The leader this member knows (a learner's status answers "who leads?" too).
          std::string leader = s.leader_id == 0             ? "-"
                               : s.leader_id == s.member_id ? "yes"
                               : !r.leader_name.empty()     ? r.leader_name
                                                            : id_hex(s.leader_id);
          t.add({addr, s.name, id_hex(s.member_id), s.version, s.role, leader,
                 std::to_string(s.term), std::to_string(s.commit_index),
                 std::to_string(s.applied_index), std::to_string(s.durable_index),
                 human_bytes(s.wal_bytes), human_bytes(s.state_bytes), errors});
        }
        break;
    }
  }
  if (env.format != Format::kJson) t.print();
  return rc;
}

int run_health(const Env& env, bool cluster) {
  if (!cluster) {
    const auto start = std::chrono::steady_clock::now();
    wire::Response r = env.client->call_sync({.op = wire::Op::kHealth});
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_bool(o, "healthy", r.code == Code::kOk);
      json_uint(o, "took_ms", static_cast<std::uint64_t>(ms));
      if (r.code != Code::kOk) json_string(o, "error", r.message);
      std::printf("%s}\n", o.c_str());
    } else if (r.code == Code::kOk) {
      std::printf("healthy: a quorum confirmed a linearizable read in %lld ms\n",
                  static_cast<long long>(ms));
    }
    return env.check(r);
  }
  Result<std::vector<std::pair<std::string, std::string>>> ts = targets(env, true);
  if (!ts.ok()) return env.fail(ts.status());
  int rc = kExitOk;
  Table t({"ENDPOINT", "NAME", "HEALTHY", "TOOK", "ERROR"});
  for (const auto& [name, addr] : *ts) {
    const auto start = std::chrono::steady_clock::now();
    wire::Response r;
    if (addr.empty()) {
      r.code = Code::kUnavailable;
      r.message = "client address unknown";
    } else {
      r = env.client->call_sync({.op = wire::Op::kHealth}, {.target = *net::parse_address(addr)});
    }
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                        std::chrono::steady_clock::now() - start)
                        .count();
    if (r.code != Code::kOk) rc = kExitUnavailable;
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_string(o, "endpoint", addr);
      json_string(o, "name", name);
      json_bool(o, "healthy", r.code == Code::kOk);
      json_uint(o, "took_ms", static_cast<std::uint64_t>(ms));
      if (r.code != Code::kOk) json_string(o, "error", r.message);
      std::printf("%s}\n", o.c_str());
    } else {
      t.add({addr.empty() ? "-" : addr, name, r.code == Code::kOk ? "true" : "false",
             std::to_string(ms) + "ms", r.code == Code::kOk ? "" : r.message});
    }
  }
  if (env.format != Format::kJson) t.print();
  return rc;
}

int run_snapshot_save(const Env& env, const std::string& path, bool force) {
  // Checked before anything is asked of the cluster. Nothing is ever written at `path` but the
  // finished, verified file: the transfer goes to path.tmp, which is renamed over it at the end.
  auto cannot = [&](const std::string& why) {
    return env.fail(Status::io_error("cannot save the snapshot to " + path + ": " + why));
  };
  struct stat st {};
  if (::stat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode)) return cannot("it is a directory");
    if (!force) return cannot("the file exists (use --force to replace it)");
  }
  const std::string part = path + ".tmp";
  Result<storage::UniqueFd> fd = storage::open_file(part, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!fd.ok()) {
    const std::size_t slash = part.find_last_of('/');
    const std::string dir =
        slash == std::string::npos ? "." : part.substr(0, slash == 0 ? 1 : slash);
    struct stat dst {};
    if (::stat(dir.c_str(), &dst) != 0 || !S_ISDIR(dst.st_mode)) {
      return cannot("directory " + dir + " does not exist");
    }
    return cannot(fd.status().message());
  }
  const bool progress = ::isatty(STDERR_FILENO);
  std::promise<wire::Response> end;
  std::atomic<bool> finished{false};
  std::uint64_t written = 0;
  Status write_error;
  auto last_draw = std::chrono::steady_clock::now();
  env.client->stream(
      {.op = wire::Op::kSnapshotSave},
      [&](const wire::Response& r) {
        if (r.code == Code::kOk && !r.data.empty() && write_error.ok()) {
          write_error = storage::pwrite_all(fd->get(), r.data, written, part);
          written += r.data.size();
          const auto now = std::chrono::steady_clock::now();
          if (progress && (r.done || now - last_draw > std::chrono::milliseconds(100))) {
            last_draw = now;
            const int pct = r.count == 0 ? 100 : static_cast<int>(written * 100 / r.count);
            std::fprintf(stderr, "\rsnapshot: %s of %s (%d%%)   ", human_bytes(written).c_str(),
                         human_bytes(r.count).c_str(), pct);
          }
        }
        const bool stop = r.done || r.code != Code::kOk || !write_error.ok();
        if (stop && !finished.exchange(true)) end.set_value(r);
        return !stop;
      },
      {.timeout_ms = env.timeout_ms});
  wire::Response last = end.get_future().get();
  if (progress) std::fprintf(stderr, "\n");
  auto cleanup = [&] { ::unlink(part.c_str()); };
  if (!write_error.ok()) {
    cleanup();
    return env.fail(write_error);
  }
  if (last.code != Code::kOk) {
    cleanup();
    return env.check(last);
  }
  if (Status s = storage::fsync_fd(fd->get(), part); !s.ok()) {
    cleanup();
    return env.fail(s);
  }
  fd->reset();
  // The file is checked end to end before it takes its name: a damaged transfer never leaves a
  // file that looks like a snapshot.
  Result<storage::VerifyReport> report = storage::verify_snapshot(part);
  if (!report.ok()) {
    cleanup();
    return env.fail(report.status().with_context("verifying the received snapshot"));
  }
  if (report->problem != storage::SnapshotProblem::kNone) {
    cleanup();
    return env.fail(
        Status::corruption("the received snapshot failed verification: " + report->message));
  }
  const storage::SnapshotInfo* info = &report->info;
  if (::rename(part.c_str(), path.c_str()) != 0) {
    Status s = Status::from_errno("rename " + part + " to " + path, errno);
    cleanup();
    return env.fail(s);
  }
  const std::size_t slash = path.find_last_of('/');
  (void)storage::fsync_dir(slash == std::string::npos ? "."
                                                      : path.substr(0, slash == 0 ? 1 : slash));
  if (env.format == Format::kJson) {
    std::string o = "{";
    json_string(o, "path", path);
    json_uint(o, "index", info->header.index);
    json_uint(o, "term", info->header.term);
    json_uint(o, "keys", info->record_count);
    json_uint(o, "size_bytes", info->size_bytes);
    std::printf("%s}\n", o.c_str());
  } else {
    std::printf("snapshot saved to %s: index %llu, %llu keys, %s, checksum verified\n",
                path.c_str(), static_cast<unsigned long long>(info->header.index),
                static_cast<unsigned long long>(info->record_count),
                human_bytes(info->size_bytes).c_str());
  }
  return kExitOk;
}

int run_check_hash(const Env& env) {
  wire::Response barrier = env.client->call_sync({.op = wire::Op::kHash});
  if (int rc = env.check(barrier); rc != 0) return rc;
  const std::uint64_t index = barrier.revision;
  wire::Response list = members(env);
  if (int rc = env.check(list); rc != 0) return rc;
  struct Row {
    std::string name;
    std::string id;
    bool answered = false;
    std::uint64_t hash = 0;
    std::string error;
  };
  std::vector<Row> rows;
  std::map<std::uint64_t, int> by_hash;
  for (const wire::MemberInfo& m : list.members) {
    Row row{m.name, id_hex(m.id)};
    if (m.client_addr.empty()) {
      row.error = "client address unknown";
    } else {
      wire::Response r = env.client->call_sync({.op = wire::Op::kHash, .start_revision = index},
                                               {.target = *net::parse_address(m.client_addr)});
      if (r.code == Code::kOk) {
        row.answered = true;
        row.hash = r.hash;
        ++by_hash[r.hash];
      } else {
        row.error = r.message;
      }
    }
    rows.push_back(row);
  }
  const bool mismatch = by_hash.size() > 1;
  const bool missing =
      std::any_of(rows.begin(), rows.end(), [](const Row& r) { return !r.answered; });
  Table t({"NAME", "ID", "INDEX", "HASH", "RESULT"});
  for (const Row& r : rows) {
    const std::string h = id_hex(r.hash);
    if (env.format == Format::kJson) {
      std::string o = "{";
      json_string(o, "name", r.name);
      json_string(o, "id", r.id);
      json_uint(o, "index", index);
      json_bool(o, "answered", r.answered);
      if (r.answered) json_string(o, "hash", h);
      if (!r.answered) json_string(o, "error", r.error);
      json_bool(o, "matches", r.answered && !mismatch);
      std::printf("%s}\n", o.c_str());
    } else {
      t.add({r.name, r.id, std::to_string(index), r.answered ? h : std::string("-"),
             !r.answered ? "no answer: " + r.error
             : mismatch  ? "MISMATCH"
                         : "ok"});
    }
  }
  if (env.format != Format::kJson) t.print();
  if (mismatch) {
    std::fprintf(stderr,
                 "kvc-ctl: STATE HASH MISMATCH at index %llu: members hold different data. "
                 "Stop writes, keep the data directories, and compare them with kvc-snap dump.\n",
                 static_cast<unsigned long long>(index));
    return kExitError;
  }
  if (missing) {
    std::fprintf(stderr, "kvc-ctl: not every member answered; the ones that did agree\n");
    return kExitUnavailable;
  }
  return kExitOk;
}

}  // namespace kvc::ctl
