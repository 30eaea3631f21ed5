#include "kvc/storage/snapshot_restore.h"

#include <spdlog/spdlog.h>

#include <filesystem>
#include <optional>

#include "kvc/storage/state.h"

namespace kvc::storage {
namespace {

bool valid_identity_text(const std::string& s) {
  return s.find_first_of("\n\r=") == std::string::npos;
}

// An existing data directory a restore may go into: a directory, and empty.
Status check_empty_data_dir(const std::string& data_dir) {
  std::error_code ec;
  if (!std::filesystem::is_directory(data_dir, ec)) {
    return Status::failed_precondition(data_dir + " exists and is not a directory");
  }
  Result<DataDir> ro = DataDir::open(data_dir, DataDir::Mode::kReadOnly);
  if (!ro.ok()) return ro.status();
  if (!ro->is_empty()) {
    return Status::failed_precondition("data directory " + data_dir +
                                       " is not empty; restore only into a new or empty "
                                       "directory");
  }
  return Status();
}

}  // namespace

Result<RestoreResult> restore_snapshot(const RestoreOptions& o, SnapshotProblem* problem) {
  if (problem != nullptr) *problem = SnapshotProblem::kNone;
  if (o.data_dir.empty()) return Status::invalid_argument("--data-dir is empty");
  if (!valid_identity_text(o.cluster_token)) {
    return Status::invalid_argument("--cluster-token must not contain newlines or '='");
  }
  Result<Membership> members = parse_initial_cluster(o.cluster_token, o.initial_cluster);
  if (!members.ok()) return members.status();
  const Member* self = members->find_name(o.name);
  if (self == nullptr) {
    return Status::invalid_argument("--name " + o.name + " is not a member of --initial-cluster " +
                                    o.initial_cluster);
  }
  if (!path_exists(o.snapshot_path)) {
    return Status::not_found("snapshot " + o.snapshot_path + " does not exist");
  }

  // Refuse before creating anything: a restore never mixes with an existing member's data.
  const bool created_dir = !path_exists(o.data_dir);
  if (!created_dir) KVC_RETURN_IF_ERROR(check_empty_data_dir(o.data_dir));
  std::optional<DataDir> dir;
  {
    Result<DataDir> rw = DataDir::open(o.data_dir, DataDir::Mode::kReadWrite);
    if (!rw.ok()) return rw.status();
    dir.emplace(std::move(*rw));
  }
  if (!dir->is_empty()) {  // someone else wrote into it since the check
    return Status::failed_precondition("data directory " + o.data_dir + " is not empty");
  }
  std::unique_ptr<StateMachine> sm;
  auto undo = [&](Status s) -> Result<RestoreResult> {
    sm.reset();
    std::error_code ec;
    for (const char* sub : {"/state", "/snap", "/wal", "/identity", "/identity.tmp"}) {
      std::filesystem::remove_all(o.data_dir + sub, ec);
    }
    dir.reset();  // releases the lock
    std::filesystem::remove(o.data_dir + "/lock", ec);
    if (created_dir) std::filesystem::remove(o.data_dir, ec);
    return s;
  };

  StateOptions so;
  so.map_size = o.map_size;
  so.map_size_flag = "--state-map-size";
  Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir->state_dir(), so);
  if (!opened.ok()) return undo(opened.status());
  sm = std::move(*opened);
  Result<StagedInstall> staged = sm->stage_install(o.snapshot_path, *members, o.progress, problem);
  if (!staged.ok()) return undo(staged.status());
  RestoreResult out;
  out.source = staged->header;
  out.source.membership = Membership();
  out.keys = staged->records;
  if (Status s = sm->commit_install(std::move(*staged)); !s.ok()) return undo(s);
  {
    // The source's own membership, for the report (the staged header carries the new one).
    Result<SnapshotReader> r = SnapshotReader::open(o.snapshot_path);
    if (r.ok()) out.source.membership = r->header().membership;
  }
  Result<SnapshotInfo> base = sm->save_snapshot(dir->snap_dir(), kDefaultSnapshotsKept);
  if (!base.ok()) return undo(base.status());
  out.base_snapshot = std::move(*base);
  out.membership = sm->membership();
  out.identity =
      Identity{.name = o.name,
               .member_id = self->id,
               .cluster_id = derive_cluster_id(o.cluster_token, sorted_initial_cluster(*members)),
               .cluster_token = o.cluster_token};
  sm.reset();
  // The identity last: a directory with one is a finished member directory.
  if (Status s = dir->write_identity(out.identity); !s.ok()) return undo(s);
  spdlog::info("snapshot restored data_dir={} name={} index={} term={} keys={}", o.data_dir, o.name,
               out.source.index, out.source.term, out.keys);
  return out;
}

}  // namespace kvc::storage
