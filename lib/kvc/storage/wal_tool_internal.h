// Internals of kvc-wal's library side (wal_tool.h), shared by its files: the output helpers,
// the target log (located, with a warning about a live writer) and the check of the log against
// its data directory's state. Not a public API: only lib/kvc/storage/wal_*.cc of the tool
// include it. The tool is spread over files by job: wal_tool.cc (these helpers, locating the
// log, `info` and `verify`), wal_dump.cc (`dump`), wal_repair.cc (`repair`: the plan, the
// repaired copy, the in-place cut under the data directory's lock). Not thread-safe.
#pragma once

#include <optional>
#include <string>
#include <vector>

#include "kvc/storage/consistency.h"
#include "kvc/storage/wal_tool.h"

// A named namespace (not an anonymous one): the tool's files share these.
namespace kvc::storage::wal_tool_internal {

inline constexpr const char* kTool = "kvc-wal";

// Member ids are 16-hex-digit strings in every output (JSON numbers this large lose precision
// in jq); "no vote" is "" in JSON and "-" in text.
std::string json_ids(const std::vector<raft::NodeId>& ids);

std::string vote_json(raft::NodeId vote);

std::string hard_state_json(const std::optional<raft::HardState>& hs);

std::string hard_state_text(const std::optional<raft::HardState>& hs);

std::string snapshot_json(const std::optional<raft::SnapshotMeta>& m);

std::string snapshot_text(const std::optional<raft::SnapshotMeta>& m);

std::string damage_json(const std::optional<WalDamage>& d);

std::string status_name(const WalSummary& s);

int status_exit_code(const WalSummary& s);

ScanOptions scan_options_for(Progress& progress, const ToolContext& ctx);

int fail(ToolContext& ctx, const Status& s);

// Locates the log and warns about a live writer. nullopt after printing an error.
struct Target {
  WalLocation where;
  LiveWriter live;
};
std::optional<Target> open_target(const std::string& dir, ToolContext& ctx, int* rc);

void warn_live_tail(const Target& t, const WalSummary& s, ToolContext& ctx);

// Reads the target's whole log (`doing` names the progress line) and warns about a live tail.
Result<WalSummary> scan_target(const Target& t, const char* doing, ToolContext& ctx);

// The log against the state of its data directory, when there is one and the log could be
// read to its end (a corrupt log's facts would be incomplete).
struct CrossCheck {
  bool checked = false;
  std::optional<ConsistencyReport> report;
  Status error;  // the state could not be read
};

CrossCheck cross_check(const Target& t, const WalSummary& s);

}  // namespace kvc::storage::wal_tool_internal
