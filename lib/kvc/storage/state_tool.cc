#include "kvc/storage/state_tool.h"

#include <optional>
#include <sstream>

#include "kvc/common/text.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_check.h"
#include "kvc/storage/state_lmdb.h"
#include "kvc/storage/wal_tool.h"

namespace kvc::storage {
namespace {

std::string json_list(const std::vector<std::string>& items) {
  std::string s = "[";
  for (std::size_t i = 0; i < items.size(); ++i) s += (i ? "," : "") + json_quote(items[i]);
  return s + "]";
}

int fail(ToolContext& ctx, const Status& s) {
  std::fprintf(ctx.err, "%s: %s\n", ctx.tool, s.message().c_str());
  return s.code() == Code::kCorruption ? kExitCorruption : exit_code(s);
}

}  // namespace

int run_state_check(const std::string& dir, ToolContext& ctx) {
  if (!path_exists(dir)) return fail(ctx, Status::not_found(dir + ": no such directory"));
  // A state directory holds CURRENT; a data directory holds state/.
  std::string state_dir, data_dir;
  if (path_exists(dir + "/" + kCurrentFile)) {
    state_dir = dir;
  } else if (path_exists(dir + "/state")) {
    state_dir = dir + "/state";
    data_dir = dir;
  } else {
    return fail(ctx, Status::not_found(dir +
                                       " is neither a data directory (it has no state/ "
                                       "folder) nor a state directory (it has no " +
                                       kCurrentFile + " file)"));
  }
  const LiveWriter live = find_live_writer(WalLocation{
      .wal_dir = data_dir.empty() ? std::string() : data_dir + "/wal", .data_dir = data_dir});
  if (live.running) {
    std::fprintf(ctx.err,
                 "%s: warning: a running member (pid %ld) holds %s/lock: the state and the log "
                 "may move on while they are read\n",
                 ctx.tool, live.pid, data_dir.c_str());
  }

  Progress progress(ctx, "checking the state:", "records");
  Result<StateCheckReport> checked = check_state(
      state_dir, {.progress = [&](std::uint64_t d, std::uint64_t t) { progress.update(d, t); }});
  progress.clear();
  if (!checked.ok()) return fail(ctx, checked.status());
  const StateCheckReport& r = *checked;
  const StateFacts& f = r.facts;

  // The data directory's cross-file invariants, from the same facts kvc-node checks at start.
  std::optional<ConsistencyReport> cross;
  Status wal_error;
  if (!data_dir.empty() && path_exists(data_dir + "/wal")) {
    Progress wal_progress(ctx, "reading the wal:");
    Result<WalSummary> s = scan_wal(
        data_dir + "/wal", nullptr,
        {.progress = [&](std::uint64_t d, std::uint64_t t) { wal_progress.update(d, t); }});
    wal_progress.clear();
    if (!s.ok()) {
      wal_error = s.status();
    } else if (s->damage && s->damage->kind == DamageKind::kCorruption) {
      wal_error = Status::corruption("wal " + s->dir + ": " + s->damage->describe() +
                                     " ('kvc-wal verify' says more)");
    } else {
      cross = check_consistency(f, log_facts(*s));
    }
  }

  const bool damaged = !r.ok();
  const bool inconsistent = cross && !cross->ok();
  std::string status = "clean";
  int rc = kExitOk;
  if (damaged || (!wal_error.ok() && wal_error.code() == Code::kCorruption)) {
    status = "damaged";
    rc = kExitCorruption;
  } else if (!wal_error.ok()) {
    status = "error";
    rc = exit_code(wal_error);
  } else if (inconsistent) {
    status = "inconsistent";
    rc = kExitInconsistent;
  }

  if (ctx.format == OutputFormat::kJson) {
    JsonObject j;
    j.str("state_dir", state_dir)
        .str("generation_dir", r.generation_dir)
        .num("format", f.format)
        .num("applied_index", f.applied_index)
        .num("applied_term", f.applied_term)
        .num("revision", f.revision)
        .num("log_durable_index", f.log_durable_index)
        .num("installed_index", f.installed_index)
        .num("keys", r.keys)
        .num("events", r.events)
        .num("meta_records", r.meta_records)
        .num("bytes", r.bytes)
        .boolean("checksums", f.format >= 2)
        .num("damaged_count", r.damaged_count)
        .raw("damaged", json_list(r.damaged))
        .num("problem_count", r.problem_count)
        .raw("problems", json_list(r.problems));
    if (!wal_error.ok()) {
      j.raw("consistency",
            JsonObject().str("status", "unreadable").str("error", wal_error.message()).done());
    } else if (cross) {
      std::string list = "[";
      for (std::size_t i = 0; i < cross->violations.size(); ++i) {
        list += (i ? "," : "") + JsonObject()
                                     .str("kind", violation_name(cross->violations[i].kind))
                                     .str("message", cross->violations[i].message)
                                     .done();
      }
      j.raw("consistency", JsonObject()
                               .str("status", cross->ok() ? "consistent" : "inconsistent")
                               .str("wal_dir", cross->log.wal_dir)
                               .num("wal_last_index", cross->log.log.last_index)
                               .raw("violations", list + "]")
                               .done());
    } else {
      j.null("consistency");
    }
    j.str("status", status);
    print(ctx.out, j.done() + "\n");
  } else {
    std::ostringstream o;
    o << "state:      " << r.generation_dir << " (format " << f.format << ")\n";
    o << "applied:    index " << f.applied_index << ", term " << f.applied_term << ", revision "
      << f.revision << "\n";
    o << "records:    " << r.keys << " keys, " << r.events << " events, " << r.meta_records
      << " meta (" << human_bytes(r.bytes) << ")\n";
    if (f.format < 2) {
      o << "checksums:  none (format 1; kvc-node adds them when it next opens this state)\n";
    } else if (r.damaged_count == 0) {
      o << "checksums:  ok\n";
    } else {
      o << "checksums:  " << r.damaged_count << " damaged record(s)\n";
    }
    for (const std::string& d : r.damaged) o << "  damaged: " << d << "\n";
    if (r.damaged_count > r.damaged.size()) {
      o << "  ... and " << (r.damaged_count - r.damaged.size()) << " more\n";
    }
    o << "structure:  "
      << (r.problem_count == 0 ? "ok" : std::to_string(r.problem_count) + " problem(s)") << "\n";
    for (const std::string& p : r.problems) o << "  problem: " << p << "\n";
    if (r.problem_count > r.problems.size()) {
      o << "  ... and " << (r.problem_count - r.problems.size()) << " more\n";
    }
    if (!wal_error.ok()) {
      o << "wal:        " << wal_error.message() << "\n";
    } else if (cross) {
      if (cross->ok()) {
        o << "wal:        consistent (" << cross->log.wal_dir << " ends at index "
          << cross->log.log.last_index << ")\n";
      } else {
        for (const ConsistencyViolation& v : cross->violations) {
          o << "wal:        inconsistent: " << v.message << "\n";
        }
      }
    } else {
      o << "wal:        not checked ("
        << (data_dir.empty() ? "a state directory was given" : "the data directory has no wal/")
        << ")\n";
    }
    o << "status:     " << status << "\n";
    print(ctx.out, o.str());
  }
  if (rc == kExitCorruption && damaged) {
    std::fprintf(ctx.err,
                 "%s: the state is damaged; a member serves none of the damaged records. "
                 "Rebuild it from the cluster (kvc-snap(1), \"CHECKING A STATE\")\n",
                 ctx.tool);
  } else if (rc == kExitInconsistent) {
    std::fprintf(ctx.err,
                 "%s: kvc-node will not start on this data directory: the state and the log "
                 "disagree\n",
                 ctx.tool);
  }
  return rc;
}

}  // namespace kvc::storage
