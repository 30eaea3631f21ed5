// kvc-wal's library side (wal_tool.h): the output helpers the subcommands share, locating the
// log, and the `info` and `verify` subcommands with the cross-file check against the state.
// Invariant kept here: nothing in this file writes to a data directory; a running member is
// warned about, never stopped.
#include "kvc/storage/wal_tool.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sstream>

#include "kvc/common/coding.h"
#include "kvc/common/log.h"
#include "kvc/common/text.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_check.h"
#include "kvc/storage/wal_tool_internal.h"

namespace kvc::storage {

using namespace wal_tool_internal;  // the tool's shared internals (wal_tool_internal.h)

namespace wal_tool_internal {

// ---- small output helpers ----

// Member ids are 16-hex-digit strings in every output (JSON numbers this large lose precision
// in jq); "no vote" is "" in JSON and "-" in text.
std::string json_ids(const std::vector<raft::NodeId>& ids) {
  std::string s = "[";
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? ",\"" : "\"") + id_hex(ids[i]) + "\"";
  return s + "]";
}

std::string text_ids(const std::vector<raft::NodeId>& ids) {
  if (ids.empty()) return "-";
  std::string s;
  for (std::size_t i = 0; i < ids.size(); ++i) s += (i ? "," : "") + id_hex(ids[i]);
  return s;
}

std::string vote_json(raft::NodeId vote) { return vote == raft::kNoNode ? "" : id_hex(vote); }
std::string vote_text(raft::NodeId vote) { return vote == raft::kNoNode ? "-" : id_hex(vote); }

std::string hard_state_json(const std::optional<raft::HardState>& hs) {
  if (!hs) return "null";
  return JsonObject()
      .num("term", hs->term)
      .str("vote", vote_json(hs->vote))
      .num("commit", hs->commit)
      .done();
}
std::string hard_state_text(const std::optional<raft::HardState>& hs) {
  if (!hs) return "none";
  return "term=" + std::to_string(hs->term) + " vote=" + vote_text(hs->vote) +
         " commit=" + std::to_string(hs->commit);
}
std::string snapshot_json(const std::optional<raft::SnapshotMeta>& m) {
  if (!m) return "null";
  return JsonObject()
      .num("index", m->index)
      .num("term", m->term)
      .raw("voters", json_ids(m->conf.voters))
      .raw("learners", json_ids(m->conf.learners))
      .done();
}
std::string snapshot_text(const std::optional<raft::SnapshotMeta>& m) {
  if (!m) return "none";
  return "index=" + std::to_string(m->index) + " term=" + std::to_string(m->term) +
         " voters=" + text_ids(m->conf.voters) + " learners=" + text_ids(m->conf.learners);
}

std::string damage_json(const std::optional<WalDamage>& d) {
  if (!d) return "null";
  JsonObject j;
  j.str("kind", damage_kind_name(d->kind))
      .str("segment", d->segment)
      .str("path", d->path)
      .num("offset", d->offset)
      .boolean("whole_segment", d->whole_segment)
      .boolean("missing_start", d->missing_start)
      .num("after_index", d->after_index)
      .str("reason", d->reason)
      .num("end_offset", d->end_offset);
  if (d->valid_after) {
    j.num("valid_after", *d->valid_after);
  } else {
    j.null("valid_after");
  }
  if (d->valid_after_index) {
    j.num("valid_after_index", *d->valid_after_index);
  } else {
    j.null("valid_after_index");
  }
  return j.str("message", d->describe()).done();
}

std::string status_name(const WalSummary& s) {
  if (!s.damage) return "clean";
  return std::string(damage_kind_name(s.damage->kind));
}

int status_exit_code(const WalSummary& s) {
  if (!s.damage) return kExitOk;
  return s.damage->kind == DamageKind::kTornTail ? kExitTornTail : kExitCorruption;
}

ScanOptions scan_options_for(Progress& progress, const ToolContext& ctx) {
  ScanOptions o;
  if (ctx.progress) {
    o.progress = [&progress](std::uint64_t d, std::uint64_t t) { progress.update(d, t); };
  }
  return o;
}

int fail(ToolContext& ctx, const Status& s) {
  std::fprintf(ctx.err, "%s: %s\n", kTool, s.message().c_str());
  return exit_code(s);
}

std::optional<Target> open_target(const std::string& dir, ToolContext& ctx, int* rc) {
  Result<WalLocation> where = locate_wal(dir);
  if (!where.ok()) {
    *rc = fail(ctx, where.status());
    return std::nullopt;
  }
  Target t{*where, find_live_writer(*where)};
  if (t.live.running) {
    std::fprintf(ctx.err,
                 "%s: warning: a running member (pid %ld) holds %s/lock: the log may change "
                 "while it is read, and its tail may still be being written\n",
                 kTool, t.live.pid, t.where.data_dir.c_str());
  }
  return t;
}

void warn_live_tail(const Target& t, const WalSummary& s, ToolContext& ctx) {
  if (t.live.running && s.damage && s.damage->kind == DamageKind::kTornTail) {
    std::fprintf(ctx.err,
                 "%s: warning: the member is running, so the torn tail may be a write still in "
                 "progress rather than damage\n",
                 kTool);
  }
}

Result<WalSummary> scan_target(const Target& t, const char* doing, ToolContext& ctx) {
  Progress progress(ctx, doing);
  Result<WalSummary> scanned = scan_wal(t.where.wal_dir, nullptr, scan_options_for(progress, ctx));
  progress.clear();
  if (scanned.ok()) warn_live_tail(t, *scanned, ctx);
  return scanned;
}

CrossCheck cross_check(const Target& t, const WalSummary& s) {
  CrossCheck c;
  if (t.where.data_dir.empty() || (s.damage && s.damage->kind == DamageKind::kCorruption)) {
    return c;
  }
  const std::string state_dir = t.where.data_dir + "/state";
  if (!path_exists(state_dir)) return c;
  c.checked = true;
  Result<StateFacts> facts = read_state_facts(state_dir);
  if (!facts.ok()) {
    c.error = facts.status();
    return c;
  }
  c.report = check_consistency(*facts, log_facts(s));
  return c;
}

}  // namespace wal_tool_internal

namespace {

std::string consistency_json(const CrossCheck& c) {
  if (!c.checked) return "null";
  JsonObject j;
  if (!c.error.ok()) {
    return j.str("status", "unreadable").str("error", c.error.message()).done();
  }
  const ConsistencyReport& r = *c.report;
  j.str("status", r.ok() ? "consistent" : "inconsistent")
      .str("state_dir", r.state.state_dir)
      .num("state_format", r.state.format)
      .num("applied_index", r.state.applied_index)
      .num("log_durable_index", r.state.log_durable_index)
      .num("installed_index", r.state.installed_index);
  std::string v = "[";
  for (std::size_t i = 0; i < r.violations.size(); ++i) {
    v += (i ? "," : "") + JsonObject()
                              .str("kind", violation_name(r.violations[i].kind))
                              .str("message", r.violations[i].message)
                              .done();
  }
  return j.raw("violations", v + "]").done();
}

void print_consistency(const CrossCheck& c, ToolContext& ctx) {
  if (!c.checked || !c.error.ok()) return;
  const ConsistencyReport& r = *c.report;
  if (r.ok()) {
    print(ctx.out, "consistent with the state in " + r.state.state_dir + " (applied index " +
                       std::to_string(r.state.applied_index) + ")\n");
    return;
  }
  for (const ConsistencyViolation& v : r.violations) {
    print(ctx.out, "inconsistent: " + v.message + "\n");
  }
}

// 8 for a corrupt log, 9 when the files disagree, 7 for a torn tail, 0 when all is well.
int verify_exit_code(const WalSummary& s, const CrossCheck& c) {
  if (s.damage && s.damage->kind == DamageKind::kCorruption) return kExitCorruption;
  if (!c.error.ok()) {
    return c.error.code() == Code::kCorruption ? kExitCorruption : exit_code(c.error);
  }
  if (c.report && !c.report->ok()) return kExitInconsistent;
  return status_exit_code(s);
}

}  // namespace

// ---- public helpers ----

Result<WalLocation> locate_wal(const std::string& dir_arg) {
  std::string dir = dir_arg;
  while (dir.size() > 1 && dir.back() == '/') dir.pop_back();
  struct stat st {};
  if (::stat(dir.c_str(), &st) != 0) return Status::not_found(dir + " does not exist");
  if (!S_ISDIR(st.st_mode)) return Status::not_found(dir + " is not a directory");
  auto parent_of = [](const std::string& d) {
    const std::size_t slash = d.find_last_of('/');
    if (slash == std::string::npos) return std::string("..");
    return slash == 0 ? std::string("/") : d.substr(0, slash);
  };
  auto is_data_dir = [](const std::string& d) {
    return path_exists(d + "/lock") || path_exists(d + "/identity");
  };
  struct stat wst {};
  if (::stat((dir + "/wal").c_str(), &wst) == 0 && S_ISDIR(wst.st_mode)) {
    return WalLocation{dir + "/wal", dir};
  }
  Result<WalListing> listing = list_wal_dir(dir);
  if (!listing.ok()) return listing.status();
  const std::size_t slash = dir.find_last_of('/');
  const std::string base = slash == std::string::npos ? dir : dir.substr(slash + 1);
  if (!listing->segments.empty() || !listing->temp_files.empty() || base == "wal") {
    const std::string parent = parent_of(dir);
    return WalLocation{dir, is_data_dir(parent) ? parent : std::string()};
  }
  return Status::not_found(dir +
                           " is neither a data directory (it has no wal/ folder) nor a WAL "
                           "directory (it has no segment files)");
}

LiveWriter find_live_writer(const WalLocation& where) {
  LiveWriter w;
  if (where.data_dir.empty()) return w;
  const std::string lock = where.data_dir + "/lock";
  struct stat st {};
  if (::stat(lock.c_str(), &st) != 0) return w;
  Result<std::string> locks = read_file("/proc/locks");
  if (locks.ok()) {
    // "1: FLOCK  ADVISORY  WRITE 1234 fd:01:5678 0 EOF" (device major:minor in hex, inode).
    std::istringstream in(*locks);
    std::string line;
    while (std::getline(in, line)) {
      std::istringstream f(line);
      std::string id, kind, mode, access, pid, devino;
      if (!(f >> id >> kind)) continue;
      if (kind == "->") continue;  // a waiter, not a holder
      if (!(f >> mode >> access >> pid >> devino)) continue;
      unsigned int maj = 0, min = 0;
      unsigned long long ino = 0;
      if (std::sscanf(devino.c_str(), "%x:%x:%llu", &maj, &min, &ino) != 3) continue;
      if (maj == major(st.st_dev) && min == minor(st.st_dev) && ino == st.st_ino) {
        w.running = true;
        w.pid = std::strtol(pid.c_str(), nullptr, 10);
        return w;
      }
    }
    return w;
  }
  // No /proc/locks: trust a live pid recorded in the lock file (it may be a reused pid).
  Result<std::string> text = read_file(lock);
  if (!text.ok()) return w;
  const long pid = std::strtol(text->c_str(), nullptr, 10);
  if (pid > 0 && (::kill(static_cast<pid_t>(pid), 0) == 0 || errno == EPERM)) {
    w.running = true;
    w.pid = pid;
  }
  return w;
}

namespace {

// `info` as one JSON object.
void print_info_json(const Target& t, const WalSummary& s, ToolContext& ctx) {
  const LogState& log = s.log;
  JsonObject j;
  j.str("wal_dir", t.where.wal_dir);
  if (t.where.data_dir.empty()) {
    j.null("data_dir");
  } else {
    j.str("data_dir", t.where.data_dir);
  }
  j.boolean("writer_running", t.live.running);
  if (t.live.running) {
    j.num("writer_pid", static_cast<std::uint64_t>(t.live.pid));
  } else {
    j.null("writer_pid");
  }
  std::string segs = "[";
  for (std::size_t i = 0; i < s.segments.size(); ++i) {
    const SegmentSummary& g = s.segments[i];
    JsonObject sj;
    sj.str("file", g.file.name).num("seq", g.file.seq).num("first_index", g.file.first_index);
    sj.boolean("read", g.header_ok && (!s.damage || i <= s.damage->segment_pos));
    if (g.max_index != 0) {
      sj.num("min_index", g.min_index).num("max_index", g.max_index);
    } else {
      sj.null("min_index").null("max_index");
    }
    sj.num("records", g.records).num("used_bytes", g.used_bytes).num("file_size", g.file.file_size);
    segs += (i ? "," : "") + sj.done();
  }
  j.raw("segments", segs + "]");
  j.num("records", s.records).num("entry_records", s.entry_records);
  j.num("bytes_used", s.bytes_used).num("bytes_on_disk", s.bytes_on_disk);
  if (log.empty()) {
    j.null("first_index").null("first_term").null("last_index").null("last_term");
  } else {
    j.num("first_index", log.first_index).num("first_term", log.first_term);
    j.num("last_index", log.last_index).num("last_term", log.last_term);
  }
  j.raw("snapshot", snapshot_json(log.snapshot));
  j.raw("hard_state", hard_state_json(log.hard_state));
  j.str("status", status_name(s)).raw("damage", damage_json(s.damage));
  std::string tmp = "[", other = "[";
  for (std::size_t i = 0; i < s.temp_files.size(); ++i)
    tmp += (i ? "," : "") + json_quote(s.temp_files[i]);
  for (std::size_t i = 0; i < s.other_files.size(); ++i)
    other += (i ? "," : "") + json_quote(s.other_files[i]);
  j.raw("temp_files", tmp + "]").raw("other_files", other + "]");
  print(ctx.out, j.done() + "\n");
}

// `info` as text: a summary, then a table of the segments.
void print_info_text(const Target& t, const WalSummary& s, ToolContext& ctx) {
  const LogState& log = s.log;
  std::ostringstream o;
  o << "wal_dir:     " << t.where.wal_dir << "\n";
  o << "writer:      "
    << (t.live.running ? "running (pid " + std::to_string(t.live.pid) + ")" : "none") << "\n";
  o << "segments:    " << s.segments.size() << " (" << human_bytes(s.bytes_used) << " used, "
    << human_bytes(s.bytes_on_disk) << " on disk)\n";
  o << "records:     " << s.records << " (" << s.entry_records << " entries)\n";
  if (log.empty()) {
    o << "entries:     none";
    if (log.snapshot)
      o << " (the log continues after the snapshot at index " << log.snapshot->index << ")";
    o << "\n";
  } else {
    o << "entries:     " << log.first_index << ".." << log.last_index << " (terms "
      << log.first_term << ".." << log.last_term << ")\n";
  }
  o << "snapshot:    " << snapshot_text(log.snapshot) << "\n";
  o << "hard_state:  " << hard_state_text(log.hard_state) << "\n";
  o << "status:      " << (s.damage ? s.damage->describe() : std::string("clean")) << "\n";
  if (!s.temp_files.empty()) o << "unfinished:  " << s.temp_files.size() << " .tmp file(s)\n";
  if (!s.other_files.empty()) o << "ignored:     " << s.other_files.size() << " other file(s)\n";
  o << "\n";
  char line[256];
  std::snprintf(line, sizeof line, "%-6s %-20s %-27s %-9s %-12s %s\n", "SEQ", "FIRST_INDEX",
                "ENTRIES", "RECORDS", "USED", "SIZE");
  o << line;
  for (const SegmentSummary& g : s.segments) {
    const std::string range =
        g.max_index == 0 ? "-" : std::to_string(g.min_index) + ".." + std::to_string(g.max_index);
    std::snprintf(line, sizeof line,
                  "%-6" PRIu64 " %-20" PRIu64 " %-27s %-9" PRIu64 " %-12" PRIu64 " %" PRIu64 "\n",
                  g.file.seq, g.file.first_index, range.c_str(), g.records, g.used_bytes,
                  g.file.file_size);
    o << line;
  }
  print(ctx.out, o.str());
}

}  // namespace

int run_info(const std::string& dir, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  Result<WalSummary> scanned = scan_target(*t, "reading", ctx);
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  if (ctx.format == OutputFormat::kJson) {
    print_info_json(*t, s, ctx);
  } else {
    print_info_text(*t, s, ctx);
  }
  return kExitOk;
}

int run_verify(const std::string& dir, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  Result<WalSummary> scanned = scan_target(*t, "verifying", ctx);
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  CrossCheck cross = cross_check(*t, s);
  if (ctx.format == OutputFormat::kJson) {
    JsonObject j;
    j.str("status", status_name(s)).num("segments", s.segments.size()).num("records", s.records);
    if (s.log.empty()) {
      j.null("first_index").null("last_index");
    } else {
      j.num("first_index", s.log.first_index).num("last_index", s.log.last_index);
    }
    j.raw("damage", damage_json(s.damage));
    j.raw("consistency", consistency_json(cross));
    print(ctx.out, j.done() + "\n");
  } else {
    if (!s.damage) {
      std::ostringstream o;
      o << "clean: " << s.segments.size() << " segment(s), " << s.records << " record(s)";
      if (!s.log.empty()) o << ", entries " << s.log.first_index << ".." << s.log.last_index;
      o << "\n";
      print(ctx.out, o.str());
    } else {
      print(ctx.out, s.damage->describe() + "\n");
    }
    print_consistency(cross, ctx);
  }
  if (!cross.error.ok()) {
    std::fprintf(ctx.err, "%s: cannot check the log against the state: %s\n", kTool,
                 cross.error.message().c_str());
  } else if (cross.report && !cross.report->ok()) {
    std::fprintf(ctx.err,
                 "%s: the member will not start on this data directory: the log and the state "
                 "disagree (kvc-wal(1), \"CROSS-FILE CHECKS\")\n",
                 kTool);
  } else if (s.damage && s.damage->kind == DamageKind::kTornTail) {
    std::fprintf(ctx.err,
                 "%s: kvc-node truncates a torn tail by itself when it starts; to do it now: "
                 "kvc-wal repair %s --out NEWDIR (or --in-place)\n",
                 kTool, dir.c_str());
  } else if (s.damage) {
    std::fprintf(ctx.err,
                 "%s: the member will not start on this log; 'kvc-wal repair %s "
                 "--truncate-corrupt --dry-run' shows what a cut would lose\n",
                 kTool, dir.c_str());
  }
  return verify_exit_code(s, cross);
}

}  // namespace kvc::storage
