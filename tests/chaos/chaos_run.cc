#include "chaos_run.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <sstream>
#include <thread>

#include "checks.h"
#include "kvc/check/history_io.h"
#include "kvc/check/linearizability.h"
#include "kvc/sim/disk_faults.h"
#include "support/temp_dir.h"
#include "support/wait.h"

namespace kvc::chaos {
namespace {

constexpr char kBarrierKey[] = "chaos/barrier";

constexpr std::chrono::milliseconds kPollEvery{50};

std::string fmt_seconds(double s) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1fs", s);
  return buf;
}

bool not_supported(const wire::Response& r) {
  return r.code == Code::kInvalidArgument && r.message.find("not supported") != std::string::npos;
}

std::unique_ptr<client::Client> leader_client(const ChaosCluster& cluster,
                                              std::uint64_t timeout_ms) {
  client::ClientOptions o;
  for (int m : cluster.active_members())
    o.endpoints.push_back({"127.0.0.1", cluster.member(m).client_port});
  o.timeout_ms = timeout_ms;
  o.connect_timeout_ms = 500;
  o.name = "kvc-chaos-check";
  cluster.secure(o);
  Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
  KVC_CHECK(c.ok(), "opening a client with endpoints cannot fail");
  return std::move(*c);
}

// Every active member answers, all name the same leader in the same term, and every member has
// applied everything the leader has committed; twice in a row, 100 ms apart.
Status wait_converged(ChaosCluster& cluster, std::uint64_t timeout_ms, std::string* detail) {
  int stable = 0;
  std::uint64_t last_applied = 0;
  const Status converged = test::wait_until(
      [&] {
        std::uint64_t leader = 0, term = 0, applied = 0, commit = 0;
        std::string seen;
        bool agree = true;
        for (int m : cluster.active_members()) {
          const wire::Response r = cluster.status(m, 500);
          if (r.code != Code::kOk) {
            seen += " " + cluster.member(m).name + ":" + std::string(code_name(r.code));
            agree = false;
            continue;
          }
          const wire::StatusInfo& s = r.status;
          seen += " " + s.name + ":" + s.role + "/term " + std::to_string(s.term) + "/applied " +
                  std::to_string(s.applied_index) + "/commit " + std::to_string(s.commit_index);
          if (s.leader_id == 0 || (leader != 0 && (s.leader_id != leader || s.term != term))) {
            agree = false;
          }
          if (s.role == "leader") commit = s.commit_index;
          if (applied != 0 && s.applied_index != applied) agree = false;
          leader = s.leader_id;
          term = s.term;
          applied = s.applied_index;
        }
        *detail = seen;
        if (!agree || commit == 0 || applied != commit) {
          stable = 0;
          return false;
        }
        stable = applied == last_applied ? stable + 1 : 1;
        last_applied = applied;
        if (stable < 2) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        return stable >= 2;
      },
      std::chrono::milliseconds(timeout_ms), "the members to converge", kPollEvery);
  if (!converged.ok()) {
    return Status::timeout("the members did not converge within " + std::to_string(timeout_ms) +
                           " ms:" + *detail);
  }
  return Status();
}

// A write through the leader, retried (with fresh values) until one is acknowledged.
Result<std::uint64_t> barrier_write(client::Client& c, const std::string& value_prefix,
                                    std::uint64_t timeout_ms, std::string* value) {
  Status last;
  const auto deadline = Clock::now() + std::chrono::milliseconds(timeout_ms);
  for (int attempt = 0; Clock::now() < deadline && attempt < 100; ++attempt) {
    *value = value_prefix + "." + std::to_string(attempt);
    const wire::Response r = c.put(kBarrierKey, *value);
    if (r.code == Code::kOk) return r.revision;
    last = Status(r.code, r.message);
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  return Status::timeout("no write was acknowledged within " + std::to_string(timeout_ms) +
                         " ms (last answer: " + last.to_string() + ")");
}

// Member i's change history of every key, from revision 1 (or the oldest it keeps) up to a
// barrier write made after the watch started.
Result<std::vector<wire::Event>> member_history(ChaosCluster& cluster, int i,
                                                client::Client& writer,
                                                std::uint64_t* first_revision) {
  client::ClientOptions o;
  o.endpoints.push_back({"127.0.0.1", cluster.member(i).client_port});
  o.timeout_ms = 5000;
  o.name = "kvc-chaos-watch";
  cluster.secure(o);
  Result<std::unique_ptr<client::Client>> c = client::Client::open(std::move(o));
  if (!c.ok()) return c.status();
  std::uint64_t from = 1;
  for (int attempt = 0; attempt < 3; ++attempt) {
    struct Shared {
      std::mutex mu;
      std::condition_variable cv;
      std::vector<wire::Event> events;
      std::string barrier;  // the barrier value to wait for ("" until written)
      std::vector<std::string> barrier_seen;
      bool done = false;
      bool reached = false;
      Status error;
      std::uint64_t compact = 0;
    };
    auto shared = std::make_shared<Shared>();
    const std::uint64_t stream = (*c)->stream(
        {.op = wire::Op::kWatch, .key = "", .prefix = true, .start_revision = from},
        [shared](const wire::Response& r) {
          std::lock_guard<std::mutex> lock(shared->mu);
          if (r.code != Code::kOk) {
            shared->error = Status(r.code, r.message);
            shared->compact = r.compact_revision;
            shared->done = true;
            shared->cv.notify_all();
            return false;
          }
          for (const wire::Event& e : r.events) {
            if (e.kv.key == kBarrierKey) {
              shared->barrier_seen.push_back(e.kv.value);
            } else {
              shared->events.push_back(e);
            }
          }
          if (r.done) shared->done = true;
          for (const std::string& v : shared->barrier_seen) {
            if (!shared->barrier.empty() && v == shared->barrier) shared->reached = true;
          }
          shared->cv.notify_all();
          return !shared->reached && !shared->done;
        },
        {.timeout_ms = 5000, .target = net::Address{"127.0.0.1", cluster.member(i).client_port}});
    std::string value;
    Result<std::uint64_t> rev = barrier_write(
        writer, "watch-" + cluster.member(i).name + "-" + std::to_string(attempt), 20000, &value);
    if (!rev.ok()) {
      (*c)->cancel(stream);
      return rev.status().with_context("barrier for " + cluster.member(i).name + "'s history");
    }
    std::unique_lock<std::mutex> lock(shared->mu);
    shared->barrier = value;
    for (const std::string& v : shared->barrier_seen) {
      if (v == value) shared->reached = true;
    }
    shared->cv.wait_for(lock, std::chrono::seconds(20),
                        [&] { return shared->reached || shared->done; });
    if (shared->reached) {
      lock.unlock();
      (*c)->cancel(stream);
      *first_revision = from;
      std::lock_guard<std::mutex> relock(shared->mu);
      return shared->events;
    }
    if (shared->compact > from) {  // compacted: start from the oldest kept revision
      from = shared->compact;
      continue;
    }
    const Status error = shared->error;
    lock.unlock();
    (*c)->cancel(stream);
    if (!error.ok()) return error.with_context(cluster.member(i).name + " watch");
    return Status::timeout(cluster.member(i).name + "'s watch did not deliver the barrier write " +
                           value + " within 20 s");
  }
  return Status::internal(cluster.member(i).name + "'s history stayed compacted");
}

// Every key of member i, read from its own state (serializable), page by page.
Result<MemberState> member_state(ChaosCluster& cluster, int i) {
  MemberState s;
  s.name = cluster.member(i).name;
  const wire::Response st = cluster.status(i, 2000);
  if (st.code != Code::kOk) return Status(st.code, s.name + " status: " + st.message);
  s.applied_index = st.status.applied_index;
  std::string start;
  for (int page = 0; page < 10000; ++page) {
    const wire::Response r = cluster.call(
        i, {.op = wire::Op::kRange, .key = start, .limit = 1000, .serializable = true}, 5000);
    if (r.code != Code::kOk) return Status(r.code, s.name + " range: " + r.message);
    for (const wire::KeyValue& kv : r.kvs) {
      if (kv.key != kBarrierKey) s.kvs.push_back(kv);
    }
    if (!r.more || r.kvs.empty()) break;
    start = r.kvs.back().key + std::string(1, '\0');
  }
  const wire::Response after = cluster.status(i, 2000);
  if (after.code == Code::kOk && after.status.applied_index != s.applied_index) {
    return Status::failed_precondition(s.name + " applied more while being read");
  }
  return s;
}

// The lines of a member's log that say something went badly wrong inside it.
std::vector<std::string> scan_log(const std::string& path) {
  // "kvc: check failed at" is a failed KVC_CHECK (common/check.h); the members' own "hash check
  // failed" (a periodic hash check that timed out under faults) is not a failure.
  static const char* const kPatterns[] = {
      "kvc: check failed at", "AddressSanitizer", "LeakSanitizer",     "UndefinedBehaviorSanitizer",
      "runtime error:",       "terminate called", "Segmentation fault"};
  std::vector<std::string> out;
  std::ifstream f(path);
  std::string line;
  std::size_t n = 0;
  while (std::getline(f, line) && out.size() < 5) {
    ++n;
    for (const char* p : kPatterns) {
      if (line.find(p) != std::string::npos) {
        out.push_back(path + ":" + std::to_string(n) + ": " + line.substr(0, 300));
        break;
      }
    }
  }
  return out;
}

std::string schedule_text(const std::vector<FaultStep>& schedule) {
  std::string out;
  for (const FaultStep& s : schedule) out += "  " + s.to_string() + "\n";
  return out.empty() ? "  (no faults)\n" : out;
}

}  // namespace

std::string format_fault_counts(const std::map<FaultKind, FaultCount>& counts) {
  std::string applied, skipped;
  for (const auto& [kind, c] : counts) {
    if (c.applied != 0) {
      applied += (applied.empty() ? "" : " ") + std::string(fault_name(kind)) + "=" +
                 std::to_string(c.applied);
    }
    if (c.skipped != 0) {
      skipped += (skipped.empty() ? "" : " ") + std::string(fault_name(kind)) + "=" +
                 std::to_string(c.skipped);
    }
  }
  std::string out = applied.empty() ? "none" : applied;
  if (!skipped.empty()) out += " (skipped: " + skipped + ")";
  return out;
}

std::string fault_mix_text(const std::vector<FaultKind>& kinds) {
  if (kinds.empty()) return "none";
  std::vector<FaultKind> sorted = kinds, all = all_fault_kinds();
  std::sort(sorted.begin(), sorted.end());
  std::sort(all.begin(), all.end());
  if (sorted == all) return "all";
  std::string out;
  for (FaultKind k : sorted) out += (out.empty() ? "" : ",") + std::string(fault_name(k));
  return out;
}

ChaosResult run_chaos(const ChaosOptions& o) {
  const auto started = Clock::now();
  ChaosResult result;
  // Removed when the run returns, unless it failed or --keep asked for it (below).
  test::ScopedTempDir run_dir("kvc-chaos-s" + std::to_string(o.seed), o.work_dir);
  result.run_dir = run_dir.path();
  const std::string tag = "[seed " + std::to_string(o.seed) + "] ";
  auto progress = [&](const std::string& line) {
    if (o.progress != nullptr) *o.progress << tag << line << std::endl;
  };
  auto fail = [&](std::string what, bool violation) {
    result.failures.push_back(std::move(what));
    if (violation) result.violation = true;
  };

  ClusterConfig cc;
  cc.members = o.members;
  cc.dir = result.run_dir;
  cc.node_binary = o.node_binary;
  cc.test_mutation = o.test_mutation;
  cc.slowfs_library = o.slowfs_library;
  cc.seed = o.seed;
  if (o.tls) {
    // A secret as `openssl rand -hex 32` makes one (a weak one is refused), from the seed.
    std::mt19937_64 gen(o.seed * 0x9e3779b97f4a7c15ull + 1);
    std::string secret;
    for (int i = 0; i < 4; ++i) {
      char part[17];
      std::snprintf(part, sizeof part, "%016llx", static_cast<unsigned long long>(gen()));
      secret += part;
    }
    cc.secret_file = result.run_dir + "/secret";
    secret += "\n";
    const int fd = ::open(cc.secret_file.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0 ||
        ::write(fd, secret.data(), secret.size()) != static_cast<ssize_t>(secret.size())) {
      fail("cannot write the secret file " + cc.secret_file, false);
      if (fd >= 0) ::close(fd);
      return result;
    }
    ::close(fd);
  }
  cc.extra_flags = {"--log-level", "info", "--tick", "50ms", "--election-timeout", "1s",
                    "--heartbeat-interval", "100ms", "--retained-entries", "400",
                    "--wal-segment-bytes", "1048576", "--state-map-size", "268435456",
                    "--snapshots-kept", "2",
                    // The periodic cross-member hash check runs during the run, not once in 5
                    // minutes (the default): it is one of the ways damage is found.
                    "--hash-check-interval", "3s"};
  std::vector<FaultKind> kinds = o.faults;
  if (o.slowfs_library.empty()) {
    kinds.erase(std::remove(kinds.begin(), kinds.end(), FaultKind::kSlowDisk), kinds.end());
  }
  const std::vector<FaultStep> schedule = make_schedule(o.seed, o.duration_ms, kinds);

  EventLog events;
  check::History history;
  std::string excerpt;
  {
    ChaosCluster cluster(cc);
    Recorder recorder(Clock::now());
    NemesisOptions no;
    no.keys = workload_keys(o.keys, o.cold_keys);
    no.cold_keys = static_cast<std::size_t>(o.cold_keys);
    no.op_timeout_ms = o.op_timeout_ms;
    no.first_probe_client = static_cast<std::uint64_t>(o.clients) + 1;
    Nemesis nemesis(cluster, events, recorder, no);
    std::string detail;
    if (Status s = cluster.start_all(); !s.ok()) {
      fail("harness: starting the cluster: " + s.to_string(), false);
    } else if (!test::wait_until([&] { return cluster.find_leader(300) >= 0; },
                                 std::chrono::seconds(20), "a leader", kPollEvery)
                    .ok()) {
      fail("harness: no leader within 20 s of starting the cluster", false);
    }
    if (result.failures.empty()) {
      progress("cluster of " + std::to_string(o.members) + " up in " + result.run_dir + ", " +
               std::to_string(schedule.size()) + " fault steps over " +
               fmt_seconds(static_cast<double>(o.duration_ms) / 1000));
      events.add(recorder.now_us(), "cluster up, leader " +
                                        cluster.member(std::max(cluster.find_leader(300), 0)).name);
      Workload workload(cluster, recorder,
                        {.clients = o.clients,
                         .keys = o.keys,
                         .cold_keys = o.cold_keys,
                         .op_timeout_ms = o.op_timeout_ms,
                         .seed = o.seed,
                         .targeted_read_percent = o.targeted_read_percent});
      if (Status s = workload.start(); !s.ok()) fail("harness: clients: " + s.to_string(), false);

      // Faults, with the history checked as it grows.
      auto last_check = Clock::now();
      bool early = false;
      auto stop = [&] {
        if (!cluster.take_unexpected_exits().empty()) return true;
        if (Clock::now() - last_check < std::chrono::milliseconds(o.check_interval_ms)) {
          return false;
        }
        last_check = Clock::now();
        const check::History h = recorder.snapshot();
        check::CheckOptions co;
        co.max_states_per_key = 2'000'000;
        const check::CheckResult r = check::check_history(h, co);
        const WorkloadStats ws = workload.stats();
        progress(fmt_seconds(static_cast<double>(recorder.now_us()) / 1e6) + ": " +
                 std::to_string(h.size()) + " operations (ok " + std::to_string(ws.ok) +
                 ", failed " + std::to_string(ws.failed) + ", unknown " +
                 std::to_string(ws.unknown) + "), history so far " +
                 std::string(check::verdict_name(r.verdict)));
        if (r.verdict == check::Verdict::kNotLinearizable) {
          events.add(recorder.now_us(), "history so far is not linearizable: stopping early");
          early = true;
          return true;
        }
        return false;
      };
      nemesis.run(schedule, o.duration_ms, stop);
      if (Status s = nemesis.heal_all(); !s.ok()) fail("harness: healing: " + s.to_string(), false);
      progress("healed" + std::string(early ? " (stopped early: anomaly found)" : ""));
      if (o.tls) {
        // The faults reach TLS links only when the proxy learns who dialled each of them.
        const ProxyStats ps = cluster.proxy().stats();
        progress("tls: proxy learned the sender of " + std::to_string(ps.senders_found) +
                 " peer connections (" + std::to_string(ps.senders_unknown) + " unknown), cut " +
                 std::to_string(ps.connections_cut) + ", dropped " +
                 std::to_string(ps.frames_dropped) + " records");
        if (ps.senders_found == 0) {
          fail(
              "harness: with --tls the proxy learned no connection's sender: no link fault "
              "was applied",
              false);
        }
      }
      // Two more seconds of load on the healed cluster (not a wait for a condition: the
      // clients keep recording while the members recover), then the clients finish.
      if (!early) std::this_thread::sleep_for(std::chrono::seconds(2));
      workload.stop();
      events.add(recorder.now_us(), "clients stopped");
      const WorkloadStats ws = workload.stats();
      result.ok = ws.ok;
      result.failed = ws.failed;
      result.unknown = ws.unknown;

      // Convergence, and a write must get through.
      auto writer = leader_client(cluster, 3000);
      std::string value;
      Result<std::uint64_t> barrier = barrier_write(*writer, "converge", 20000, &value);
      if (!barrier.ok()) {
        fail("liveness: after healing, " + barrier.status().message(), false);
      } else if (Status s = wait_converged(cluster, o.converge_timeout_ms, &detail); !s.ok()) {
        fail("liveness: " + s.message(), false);
      } else {
        events.add(recorder.now_us(), "converged");
        // Every damaged value was found (or its state replaced), and nobody is still damaged.
        for (const std::string& p : nemesis.verify_damage_repaired()) fail(p, false);
      }

      // Final linearizable reads of every key join the history: a lost write shows there too.
      const std::uint64_t final_client = static_cast<std::uint64_t>(o.clients);
      for (const std::string& key : workload_keys(o.keys, o.cold_keys)) {
        for (int attempt = 0; attempt < 5; ++attempt) {
          check::Operation op;
          op.client = final_client;
          op.kind = check::OpKind::kGet;
          op.key = key;
          const std::size_t h = recorder.begin(op);
          const wire::Response r = writer->get(op.key);
          recorder.complete(h, r);
          if (r.code == Code::kOk) break;
        }
      }
      history = recorder.snapshot();
      result.operations = history.size();

      // Linearizability of the whole history.
      const check::CheckResult lin = check::check_history(history);
      result.checked = lin.operations;
      progress("history: " + std::to_string(history.size()) + " operations, " +
               std::to_string(lin.operations) + " checked over " + std::to_string(lin.keys) +
               " keys: " + std::string(check::verdict_name(lin.verdict)));
      if (lin.verdict == check::Verdict::kNotLinearizable) {
        excerpt = history_excerpt(history, lin, events.lines());
        fail("not linearizable: " + lin.explanation + "\n" + excerpt, true);
      } else if (lin.verdict == check::Verdict::kGaveUp) {
        fail("the linearizability checker gave up on key " + lin.key + ": " + lin.explanation,
             false);
      }

      if (const std::vector<std::string> dup = check_revisions_unique(history); !dup.empty()) {
        std::string text;
        for (const std::string& d : dup) text += "\n  " + d;
        fail("acknowledged writes share a revision:" + text, true);
      }

      // Every acknowledged write is in every member's change history (from where that
      // history starts: a member restored from a snapshot keeps none before it).
      std::uint64_t oldest_start = check::kNever;
      for (int m : cluster.active_members()) {
        std::uint64_t first = 1;
        Result<std::vector<wire::Event>> evs = member_history(cluster, m, *writer, &first);
        if (!evs.ok()) {
          fail("harness: reading " + cluster.member(m).name +
                   "'s change history: " + evs.status().to_string(),
               false);
          continue;
        }
        const WriteCheck wc =
            check_acknowledged_writes(history, *evs, first, cluster.member(m).name);
        result.acknowledged_writes_verified += wc.acknowledged_checked;
        oldest_start = std::min(oldest_start, first);
        progress(cluster.member(m).name + ": " + std::to_string(wc.acknowledged_checked) +
                 " acknowledged writes found in its history of " + std::to_string(wc.events) +
                 " changes (from revision " + std::to_string(first) + ", " +
                 std::to_string(wc.acknowledged_compacted) + " older ones compacted)");
        if (!wc.problems.empty()) {
          std::string text;
          for (const std::string& p : wc.problems) text += "\n  " + p;
          fail(cluster.member(m).name + "'s change history:" + text, true);
        }
      }

      for (const check::Operation& op : history) {
        const bool effective =
            op.outcome == check::Outcome::kOk && op.revision != 0 &&
            (op.kind == check::OpKind::kPut || (op.kind != check::OpKind::kGet && op.found));
        if (!effective) continue;
        ++result.acknowledged_writes;
        if (op.revision >= oldest_start) ++result.acknowledged_writes_covered;
      }
      progress(std::to_string(result.acknowledged_writes_covered) + " of " +
               std::to_string(result.acknowledged_writes) +
               " acknowledged writes checked in at least one member's history");

      // Identical states (and the state hash, once the members answer kHash).
      if (Status s = wait_converged(cluster, o.converge_timeout_ms, &detail); !s.ok()) {
        fail("liveness (after the history checks): " + s.message(), false);
      } else {
        // The members' states, compared at one applied index. The members keep committing
        // after convergence (the periodic hash check's barrier, every 3 s here), so a round of
        // reads that an entry landed in (during one member's read, or between two members') is
        // read again, at most 5 rounds; a member still at another index after that is reported
        // by compare_states.
        std::vector<MemberState> states;
        Status unread;
        for (int round = 0; round < 5; ++round) {
          states.clear();
          unread = Status();
          for (int m : cluster.active_members()) {
            Result<MemberState> st = member_state(cluster, m);
            if (!st.ok()) {
              unread = st.status().with_context("reading " + cluster.member(m).name + "'s state");
              break;
            }
            states.push_back(std::move(*st));
          }
          const bool one_index =
              std::all_of(states.begin(), states.end(), [&](const MemberState& st) {
                return st.applied_index == states.front().applied_index;
              });
          if (unread.ok() ? one_index : unread.code() != Code::kFailedPrecondition) break;
        }
        if (!unread.ok()) fail("harness: " + unread.to_string(), false);
        if (unread.ok()) {
          const std::vector<std::string> diffs = compare_states(states);
          if (!diffs.empty()) {
            std::string text;
            for (const std::string& d : diffs) text += "\n  " + d;
            fail("members' states differ after convergence:" + text, true);
          }
        }
        // The state hash (kvc-ctl check hash's protocol): the leader commits a barrier entry,
        // then every member answers the hash of its state at that index. A member that has no
        // hash there (it was restored past it) answers kNotFound and is only noted.
        std::string hash_note = "state hash: ";
        const wire::Response hash_barrier = writer->call_sync({.op = wire::Op::kHash});
        if (not_supported(hash_barrier)) {
          hash_note += "not supported by the members (full states compared instead)";
        } else if (hash_barrier.code != Code::kOk) {
          fail("harness: the state hash barrier: " + std::string(code_name(hash_barrier.code)) +
                   " " + hash_barrier.message,
               false);
        } else {
          std::map<std::uint64_t, std::string> by_hash;  // hash -> members
          for (int m : cluster.active_members()) {
            const wire::Response r = cluster.call(
                m, {.op = wire::Op::kHash, .start_revision = hash_barrier.revision}, 10000);
            if (r.code != Code::kOk) {
              hash_note += cluster.member(m).name + " " + std::string(code_name(r.code)) + "; ";
              continue;
            }
            std::string& who = by_hash[r.hash];
            who += (who.empty() ? "" : ",") + cluster.member(m).name;
          }
          if (by_hash.size() > 1) {
            std::string text;
            for (const auto& [h, who] : by_hash) {
              char buf[24];
              std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(h));
              text += " " + who + "=" + buf;
            }
            fail("state hashes differ at index " + std::to_string(hash_barrier.revision) + ":" +
                     text,
                 true);
          }
          std::size_t agreeing = 0;
          for (const auto& [h, who] : by_hash)
            agreeing += 1 + std::count(who.begin(), who.end(), ',');
          hash_note += std::to_string(agreeing) + " members hashed at index " +
                       std::to_string(hash_barrier.revision) +
                       (by_hash.size() <= 1 ? ", identical" : ", DIFFERENT");
          result.hash_checked = agreeing;
        }
        progress(std::to_string(states.size()) + " members' states compared (" +
                 std::to_string(states.empty() ? 0 : states.front().kvs.size()) + " keys); " +
                 hash_note);
      }

      // Clean stops: every member exits 0 on SIGTERM.
      writer.reset();
      for (int m : cluster.active_members()) {
        if (!cluster.running(m)) continue;
        Result<int> rc = cluster.terminate(m);
        if (!rc.ok()) {
          fail("clean stop of " + cluster.member(m).name + ": " + rc.status().to_string(), false);
        } else if (*rc != 0) {
          fail(cluster.member(m).name + " exited with status " + std::to_string(*rc) +
                   " on SIGTERM (a clean stop exits 0); log " + cluster.member(m).log_path,
               false);
        }
      }
    }
    // Offline, once every member has stopped: no damage is left in any member's state (what
    // `kvc-snap check` reports), whatever the faults did to it.
    if (result.failures.empty()) {
      for (int m : cluster.active_members()) {
        if (cluster.running(m)) continue;
        Result<std::vector<std::string>> found = sim::damaged_records(cluster.member(m).data_dir);
        if (!found.ok()) {
          fail("harness: checking " + cluster.member(m).name +
                   "'s state offline: " + found.status().to_string(),
               false);
          continue;
        }
        ++result.states_checked_offline;
        std::string text;
        for (const std::string& d : *found) text += "\n  " + d;
        if (!found->empty()) {
          fail(cluster.member(m).name + "'s state is still damaged after the run:" + text, false);
        }
      }
    }
    for (const std::string& p : nemesis.problems()) fail(p, false);
    for (const std::string& e : cluster.take_unexpected_exits()) fail(e, false);
    for (int m = 0; m < cluster.size(); ++m) {
      for (const std::string& line : scan_log(cluster.member(m).log_path)) fail(line, false);
    }
    result.faults = nemesis.counts();
    result.integrity = nemesis.integrity();
    result.membership_support = nemesis.membership_support();
    // ~ChaosCluster kills whatever still runs, by PID.
  }
  result.passed = result.failures.empty();
  result.seconds = std::chrono::duration<double>(Clock::now() - started).count();

  std::ostringstream r;
  r << "kvc-chaos seed=" << o.seed << " members=" << o.members << " clients=" << o.clients
    << " keys=" << o.keys << " duration=" << fmt_seconds(static_cast<double>(o.duration_ms) / 1000)
    << " binary=" << std::filesystem::path(o.node_binary).filename().string()
    << " mutation=" << (o.test_mutation.empty() ? "none" : o.test_mutation) << "\n";
  r << "  result: "
    << (result.passed      ? "passed"
        : result.violation ? "FAILED (safety violation)"
                           : "FAILED")
    << "\n";
  r << "  operations=" << result.operations << " ok=" << result.ok << " failed=" << result.failed
    << " unknown=" << result.unknown << " checked=" << result.checked
    << "\n  acknowledged_writes=" << result.acknowledged_writes
    << " in_some_member_history=" << result.acknowledged_writes_covered
    << " found_summed_over_members=" << result.acknowledged_writes_verified
    << " state_hashes_compared=" << result.hash_checked
    << " states_checked_offline=" << result.states_checked_offline << "\n";
  r << "  faults: " << format_fault_counts(result.faults) << "\n";
  r << "  integrity: " << result.integrity.to_string() << "\n";
  r << "  membership: " << result.membership_support << "\n";
  r << "  time: " << fmt_seconds(result.seconds) << "\n";
  if (!result.passed) {
    if (!history.empty()) {
      (void)check::write_history_file(result.run_dir + "/history.jsonl", history);
    }
    {
      std::ofstream f(result.run_dir + "/events.txt");
      f << events.text();
    }
    r << "\nFAILED, seed " << o.seed << ":\n";
    for (const std::string& f : result.failures) r << "- " << f << "\n";
    r << "\nschedule (seed " << o.seed << "):\n" << schedule_text(schedule);
    r << "\nwhat the harness did:\n" << events.text();
    r << "\nmember logs: " << result.run_dir << "/m*.log; data dirs " << result.run_dir << "/m*/\n";
    r << "history: " << result.run_dir
      << "/history.jsonl (re-check with: check_bench --check <file>)\n";
    r << "rerun: kvc-chaos --seed " << o.seed << " --duration "
      << fmt_seconds(static_cast<double>(o.duration_ms) / 1000) << " --members " << o.members
      << " --clients " << o.clients << " --faults " << fault_mix_text(o.faults)
      << (o.targeted_read_percent != 50
              ? " --targeted-reads " + std::to_string(o.targeted_read_percent)
              : std::string())
      << (o.test_mutation.empty() ? ""
                                  : " --binary kvc-node-unsafe --test-mutation " + o.test_mutation)
      << "\n";
  } else if (o.keep) {
    std::ofstream f(result.run_dir + "/events.txt");
    f << events.text();
  }
  if (!result.passed || o.keep) run_dir.keep();
  if (result.passed || o.keep)
    r << "  run dir: " << result.run_dir << (o.keep ? " (kept)" : " (removed)") << "\n";
  result.report = r.str();
  return result;
}

}  // namespace kvc::chaos
