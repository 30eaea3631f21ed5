#include "kvc/storage/consistency.h"

#include <algorithm>

#include "kvc/storage/fs.h"
#include "kvc/storage/state_check.h"

namespace kvc::storage {
namespace {

constexpr const char* kRebuild =
    "rebuild this member from the cluster: 'kvc-ctl member remove NAME', move the data "
    "directory aside, 'kvc-ctl member add NAME PEER_ADDR' and start it with the command line "
    "that prints (kvc-node(1), \"JOINING A RUNNING CLUSTER\")";

std::string range_text(std::uint64_t from, std::uint64_t to) {
  return from == to ? "entry " + std::to_string(from)
                    : "entries " + std::to_string(from) + ".." + std::to_string(to);
}

std::string log_text(const LogFacts& log) {
  if (log.segments == 0) return "the wal in " + log.wal_dir + " has no segments";
  if (log.log.last_index == 0) return "the wal in " + log.wal_dir + " holds no entries";
  return "the wal in " + log.wal_dir + " ends at index " + std::to_string(log.log.last_index);
}

}  // namespace

std::string_view rebuild_advice() { return kRebuild; }

LogFacts log_facts(const Wal& wal) {
  return LogFacts{.wal_dir = wal.dir(), .segments = wal.segment_count(), .log = wal.log()};
}

LogFacts log_facts(const WalSummary& summary) {
  return LogFacts{.wal_dir = summary.dir, .segments = summary.segments.size(), .log = summary.log};
}

std::string_view violation_name(Violation v) {
  switch (v) {
    case Violation::kStateBehindMarker:
      return "state_behind_marker";
    case Violation::kLogTruncated:
      return "log_truncated";
    case Violation::kLogGap:
      return "log_gap";
    case Violation::kCommitNotCovered:
      return "commit_not_covered";
    case Violation::kNoMembership:
      return "no_membership";
  }
  return "unknown";
}

std::string ConsistencyReport::describe() const {
  if (violations.empty()) return "consistent";
  std::string s;
  for (const ConsistencyViolation& v : violations) {
    if (!s.empty()) s += "\n";
    s += v.message;
  }
  return s;
}

Status ConsistencyReport::status() const {
  if (ok()) return Status();
  return Status::corruption("data directory inconsistent: " + describe());
}

ConsistencyReport check_consistency(const StateFacts& state, const LogFacts& log) {
  ConsistencyReport r{.state = state, .log = log, .violations = {}};
  const std::uint64_t d = state.applied_index;
  const std::uint64_t w = log.log.last_index;
  const std::uint64_t m = log.log.snapshot ? log.log.snapshot->index : 0;
  const std::uint64_t l = state.log_durable_index;
  auto add = [&r](Violation kind, std::string message) {
    r.violations.push_back({kind, std::move(message)});
  };
  const std::string state_at =
      "the state in " + state.state_dir + " is at applied index " + std::to_string(d);

  if (m > d) {
    add(Violation::kStateBehindMarker,
        state_at + ", but the wal in " + log.wal_dir + " has a snapshot marker at index " +
            std::to_string(m) +
            ", which is written only once the state durably holds that index: the state is "
            "older than its log (an older copy put back?), and " +
            range_text(d + 1, m) +
            " may no longer be in the log. Put back the state that belongs with this log, or " +
            kRebuild);
  }
  // A state installed from a snapshot at D may be ahead of a log that has not recorded the
  // snapshot yet (a restored member before its first start, a crash right after an install).
  const bool installed_ahead = state.installed_index != 0 && state.installed_index == d;
  const std::uint64_t need = std::max(installed_ahead ? 0 : d, l);
  if (w < need) {
    std::string why;
    if (!installed_ahead && d > w) why = "the state applied up to index " + std::to_string(d);
    if (l > w) {
      if (!why.empty()) why += " and ";
      why += "at its last flush the log durably held committed entries up to index " +
             std::to_string(l);
    }
    add(Violation::kLogTruncated,
        log_text(log) + ", but " + why + " (state " + state.state_dir +
            "): " + range_text(w + 1, need) +
            " are missing from the log (its newest segment files removed or lost, or the log "
            "replaced by an older copy), and this member may have acknowledged them. Put back "
            "the missing segment files, or " +
            kRebuild);
  }
  if (m <= d && w > d && log.log.first_index > d + 1) {
    add(Violation::kLogGap, state_at + ", but the log in " + log.wal_dir + " starts at index " +
                                std::to_string(log.log.first_index) + ": " +
                                range_text(d + 1, log.log.first_index - 1) +
                                " are missing between them. " + kRebuild);
  }
  if (log.log.hard_state && log.log.hard_state->commit > std::max(w, d)) {
    const std::uint64_t c = log.log.hard_state->commit;
    add(Violation::kCommitNotCovered,
        "the hard state in " + log.wal_dir + " has commit index " + std::to_string(c) +
            ", past both the log's last index " + std::to_string(w) +
            " and the state's applied index " + std::to_string(d) + ": committed " +
            range_text(std::max(w, d) + 1, c) + " are missing. " + kRebuild);
  }
  if (d > 0 && !state.has_membership) {
    add(Violation::kNoMembership, state_at +
                                      " but has no membership (its meta record is "
                                      "damaged or was written by a bug). " +
                                      kRebuild);
  }
  return r;
}

Result<ConsistencyReport> check_data_dir_consistency(const std::string& data_dir,
                                                     const ScanOptions& scan) {
  Result<StateFacts> state = read_state_facts(data_dir + "/state");
  if (!state.ok()) return state.status();
  const std::string wal_dir = data_dir + "/wal";
  LogFacts log{.wal_dir = wal_dir, .segments = 0, .log = {}};
  if (path_exists(wal_dir)) {
    Result<WalSummary> s = scan_wal(wal_dir, nullptr, scan);
    if (!s.ok()) return s.status();
    if (s->damage && s->damage->kind == DamageKind::kCorruption) {
      return Status::corruption("wal " + wal_dir + ": " + s->damage->describe() +
                                " (the cross-file checks need a readable log)");
    }
    log = log_facts(*s);
  }
  return check_consistency(*state, log);
}

}  // namespace kvc::storage
