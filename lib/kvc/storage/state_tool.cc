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

// What run_state_check found, for printing.
struct StateCheckResult {
  std::string state_dir;
  std::string data_dir;  // empty when a state directory was given
  StateCheckReport report;
  std::optional<ConsistencyReport> cross;  // the state against the log, when it was checked
  Status wal_error;                        // the log could not be read (or is corrupt)
  std::string status;                      // clean, damaged, error or inconsistent
};

// A state directory holds CURRENT; a data directory holds state/.
Status locate_state(const std::string& dir, StateCheckResult& c) {
  if (path_exists(dir + "/" + kCurrentFile)) {
    c.state_dir = dir;
  } else if (path_exists(dir + "/state")) {
    c.state_dir = dir + "/state";
    c.data_dir = dir;
  } else {
    return Status::not_found(dir +
                             " is neither a data directory (it has no state/ "
                             "folder) nor a state directory (it has no " +
                             kCurrentFile + " file)");
  }
  return Status();
}

// The data directory's cross-file invariants, from the same facts kvc-node checks at start.
void check_against_wal(ToolContext& ctx, StateCheckResult& c) {
  if (c.data_dir.empty() || !path_exists(c.data_dir + "/wal")) return;
  Progress wal_progress(ctx, "reading the wal:");
  Result<WalSummary> s =
      scan_wal(c.data_dir + "/wal", nullptr,
               {.progress = [&](std::uint64_t d, std::uint64_t t) { wal_progress.update(d, t); }});
  wal_progress.clear();
  if (!s.ok()) {
    c.wal_error = s.status();
  } else if (s->damage && s->damage->kind == DamageKind::kCorruption) {
    c.wal_error = Status::corruption("wal " + s->dir + ": " + s->damage->describe() +
                                     " ('kvc-wal verify' says more)");
  } else {
    c.cross = check_consistency(c.report.facts, log_facts(*s));
  }
}

void print_json(ToolContext& ctx, const StateCheckResult& c) {
  JsonObject j;
  j.str("state_dir", c.state_dir)
      .str("generation_dir", c.report.generation_dir)
      .num("format", c.report.facts.format)
      .num("applied_index", c.report.facts.applied_index)
      .num("applied_term", c.report.facts.applied_term)
      .num("revision", c.report.facts.revision)
      .num("log_durable_index", c.report.facts.log_durable_index)
      .num("installed_index", c.report.facts.installed_index)
      .num("keys", c.report.keys)
      .num("events", c.report.events)
      .num("meta_records", c.report.meta_records)
      .num("leases", c.report.leases)
      .num("bytes", c.report.bytes)
      .boolean("checksums", c.report.facts.format >= 2)
      .num("damaged_count", c.report.damaged_count)
      .raw("damaged", json_list(c.report.damaged))
      .num("problem_count", c.report.problem_count)
      .raw("problems", json_list(c.report.problems));
  if (!c.wal_error.ok()) {
    j.raw("consistency",
          JsonObject().str("status", "unreadable").str("error", c.wal_error.message()).done());
  } else if (c.cross) {
    std::string list = "[";
    for (std::size_t i = 0; i < c.cross->violations.size(); ++i) {
      list += (i ? "," : "") + JsonObject()
                                   .str("kind", violation_name(c.cross->violations[i].kind))
                                   .str("message", c.cross->violations[i].message)
                                   .done();
    }
    j.raw("consistency", JsonObject()
                             .str("status", c.cross->ok() ? "consistent" : "inconsistent")
                             .str("wal_dir", c.cross->log.wal_dir)
                             .num("wal_last_index", c.cross->log.log.last_index)
                             .raw("violations", list + "]")
                             .done());
  } else {
    j.null("consistency");
  }
  j.str("status", c.status);
  print(ctx.out, j.done() + "\n");
}

void print_text(ToolContext& ctx, const StateCheckResult& c) {
  std::ostringstream o;
  o << "state:      " << c.report.generation_dir << " (format " << c.report.facts.format << ")\n";
  o << "applied:    index " << c.report.facts.applied_index << ", term "
    << c.report.facts.applied_term << ", revision " << c.report.facts.revision << "\n";
  o << "records:    " << c.report.keys << " keys, " << c.report.events << " events, "
    << c.report.meta_records << " meta, " << c.report.leases << " leases ("
    << human_bytes(c.report.bytes) << ")\n";
  if (c.report.facts.format < 2) {
    o << "checksums:  none (format 1; kvc-node adds them when it next opens this state)\n";
  } else if (c.report.damaged_count == 0) {
    o << "checksums:  ok\n";
  } else {
    o << "checksums:  " << c.report.damaged_count << " damaged record(s)\n";
  }
  for (const std::string& d : c.report.damaged) o << "  damaged: " << d << "\n";
  if (c.report.damaged_count > c.report.damaged.size()) {
    o << "  ... and " << (c.report.damaged_count - c.report.damaged.size()) << " more\n";
  }
  o << "structure:  "
    << (c.report.problem_count == 0 ? "ok" : std::to_string(c.report.problem_count) + " problem(s)")
    << "\n";
  for (const std::string& p : c.report.problems) o << "  problem: " << p << "\n";
  if (c.report.problem_count > c.report.problems.size()) {
    o << "  ... and " << (c.report.problem_count - c.report.problems.size()) << " more\n";
  }
  if (!c.wal_error.ok()) {
    o << "wal:        " << c.wal_error.message() << "\n";
  } else if (c.cross) {
    if (c.cross->ok()) {
      o << "wal:        consistent (" << c.cross->log.wal_dir << " ends at index "
        << c.cross->log.log.last_index << ")\n";
    } else {
      for (const ConsistencyViolation& v : c.cross->violations) {
        o << "wal:        inconsistent: " << v.message << "\n";
      }
    }
  } else {
    o << "wal:        not checked ("
      << (c.data_dir.empty() ? "a state directory was given" : "the data directory has no wal/")
      << ")\n";
  }
  o << "status:     " << c.status << "\n";
  print(ctx.out, o.str());
}

}  // namespace

int run_state_check(const std::string& dir, ToolContext& ctx) {
  if (!path_exists(dir)) return fail(ctx, Status::not_found(dir + ": no such directory"));
  StateCheckResult c;
  if (Status s = locate_state(dir, c); !s.ok()) return fail(ctx, s);
  const LiveWriter live = find_live_writer(WalLocation{
      .wal_dir = c.data_dir.empty() ? std::string() : c.data_dir + "/wal", .data_dir = c.data_dir});
  if (live.running) {
    std::fprintf(ctx.err,
                 "%s: warning: a running member (pid %ld) holds %s/lock: the state and the log "
                 "may move on while they are read\n",
                 ctx.tool, live.pid, c.data_dir.c_str());
  }

  Progress progress(ctx, "checking the state:", "records");
  Result<StateCheckReport> checked = check_state(
      c.state_dir, {.progress = [&](std::uint64_t d, std::uint64_t t) { progress.update(d, t); }});
  progress.clear();
  if (!checked.ok()) return fail(ctx, checked.status());
  c.report = std::move(*checked);
  check_against_wal(ctx, c);

  const bool damaged = !c.report.ok();
  const bool inconsistent = c.cross && !c.cross->ok();
  c.status = "clean";
  int rc = kExitOk;
  if (damaged || (!c.wal_error.ok() && c.wal_error.code() == Code::kCorruption)) {
    c.status = "damaged";
    rc = kExitCorruption;
  } else if (!c.wal_error.ok()) {
    c.status = "error";
    rc = exit_code(c.wal_error);
  } else if (inconsistent) {
    c.status = "inconsistent";
    rc = kExitInconsistent;
  }
  if (ctx.format == OutputFormat::kJson) {
    print_json(ctx, c);
  } else {
    print_text(ctx, c);
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
