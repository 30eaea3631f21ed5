// kvc-wal repair (wal_tool.h): the repair plan (where to cut a damaged log and what the cut
// throws away), the repaired copy written beside the original, and the in-place repair under
// the data directory's lock. Invariant kept here: before the log itself changes, everything
// the cut removes is saved durably in the backup directory, and removed segments go newest
// first, so the log stays a prefix after any crash; without --in-place only a copy is written
// and the original is untouched (as ZooKeeper's log tools do).
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <sstream>
#include <variant>

#include "kvc/common/coding.h"
#include "kvc/common/log.h"
#include "kvc/common/text.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/wal_tool_internal.h"

namespace kvc::storage {

using namespace wal_tool_internal;  // the tool's shared internals (wal_tool_internal.h)

namespace {

// ---- repair ----

// What a cut would throw away, as far as it can be read.
struct Salvage {
  std::uint64_t records = 0;
  std::uint64_t entries = 0;
  std::uint64_t min_index = 0;
  std::uint64_t max_index = 0;
  std::optional<raft::HardState> newest_hard_state;   // the highest term seen
  std::optional<raft::SnapshotMeta> newest_snapshot;  // the highest index seen
};

Status salvage_region(const std::string& path, std::uint64_t from,
                      std::optional<std::uint32_t> salt, Salvage& out) {
  Result<FileSource> src = FileSource::open(path);
  if (!src.ok()) return src.status();
  if (!salt) {
    // The header is damaged; its salt field may still be right.
    Result<std::string_view> h = src->read(0, kSegmentHeaderBytes);
    if (!h.ok()) return h.status();
    if (h->size() < kSegmentHeaderBytes) return Status();
    salt = get_u32_le(h->data() + 12);
    from = kSegmentHeaderBytes;
  }
  for (int guard = 0; guard < (1 << 30); ++guard) {
    Record rec;
    std::uint32_t bytes = 0;
    Result<std::optional<std::uint64_t>> at =
        find_valid_record(*src, *salt, from, src->size(), &rec, &bytes);
    if (!at.ok()) return at.status();
    if (!*at) break;
    ++out.records;
    if (rec.type == RecordType::kEntry) {
      ++out.entries;
      if (out.min_index == 0 || rec.entry.index < out.min_index) out.min_index = rec.entry.index;
      out.max_index = std::max(out.max_index, rec.entry.index);
    } else if (rec.type == RecordType::kHardState) {
      if (!out.newest_hard_state || rec.hard_state.term >= out.newest_hard_state->term) {
        out.newest_hard_state = rec.hard_state;
      }
    } else if (rec.type == RecordType::kSnapshot) {
      if (!out.newest_snapshot || rec.snapshot.index >= out.newest_snapshot->index) {
        out.newest_snapshot = rec.snapshot;
      }
    }
    from = **at + bytes;
  }
  return Status();
}

struct RepairPlan {
  WalDamage damage;
  bool refuse = false;  // no cut can repair this
  std::string refuse_reason;
  // Keep segments [0, cut_segment) whole and segment cut_segment up to cut_offset; with
  // drop_cut_segment the cut segment goes too. Every later segment goes.
  std::size_t cut_segment = 0;
  std::uint64_t cut_offset = 0;
  bool drop_cut_segment = false;
  std::uint64_t cut_bytes = 0;  // bytes removed from the cut segment (up to its last non-zero)
  std::vector<SegmentSummary> removed;  // whole segments removed
  std::uint64_t keep_last_index = 0;    // the last index read before the damage
  std::uint64_t last_index_after = 0;   // the log's last index after the repair
  Salvage lost;
  std::optional<raft::HardState> kept_hard_state;
  // Appended after the cut: the newest snapshot marker read in the removed part (the state
  // machine durably covers its index, and segments released because of it may be needed).
  std::optional<raft::SnapshotMeta> new_snapshot;
  // Appended after it, so the member never votes twice in a term: the newest term and vote
  // read anywhere, with commit clamped to the kept log.
  std::optional<raft::HardState> new_hard_state;
  // Where the appended records go: segment position and offset.
  std::size_t append_segment = 0;
  std::uint64_t append_offset = 0;
};

// What the cut throws away, as far as anything in it can be read (into p.lost).
Status salvage_cut(const WalSummary& s, RepairPlan& p) {
  const SegmentSummary& cut = s.segments[p.cut_segment];
  if (!p.drop_cut_segment) {
    KVC_RETURN_IF_ERROR(salvage_region(cut.file.path, p.cut_offset, cut.header.salt, p.lost));
  }
  for (const SegmentSummary& r : p.removed) {
    std::optional<std::uint32_t> salt;
    if (r.header_ok) salt = r.header.salt;
    KVC_RETURN_IF_ERROR(salvage_region(r.file.path, kSegmentHeaderBytes, salt, p.lost));
  }
  return Status();
}

// The hard state appended after the cut (p.new_hard_state, when it differs from the kept one),
// for the repaired log `result`.
void plan_hard_state(const LogState& result, RepairPlan& p) {
  // The hard state keeps the newest term and vote read anywhere (so the member cannot vote
  // twice in a term), and the highest commit index known, clamped to the repaired log (and at
  // least the snapshot marker: what the state machine applied was committed).
  const std::optional<raft::HardState>& kept_hs = p.kept_hard_state;
  const std::optional<raft::HardState>& newest = p.lost.newest_hard_state;
  if (kept_hs || newest) {
    raft::HardState hs = kept_hs ? *kept_hs : *newest;
    if (newest && kept_hs &&
        (newest->term > kept_hs->term ||
         (newest->term == kept_hs->term && newest->vote != kept_hs->vote))) {
      hs.term = newest->term;
      hs.vote = newest->vote;
    }
    std::uint64_t commit = std::max(kept_hs ? kept_hs->commit : 0, newest ? newest->commit : 0);
    commit = std::max<std::uint64_t>(commit, result.snapshot ? result.snapshot->index : 0);
    hs.commit = std::min(commit, result.last_index);
    LogState check = result;
    if ((!kept_hs || !(hs == *kept_hs)) &&
        apply_log_rules(check, Record::of(hs), nullptr).empty()) {
      p.new_hard_state = hs;
    }
  }
}

Result<RepairPlan> make_plan(const WalSummary& s) {
  RepairPlan p;
  p.damage = *s.damage;
  const WalDamage& d = p.damage;
  p.keep_last_index = d.after_index;
  p.kept_hard_state = s.log.hard_state;
  if (d.missing_start) {
    p.refuse = true;
    p.refuse_reason = "the start of the log is missing (" + d.reason +
                      "); cutting cannot fix that: rebuild the member from a snapshot or "
                      "remove it and add it back";
    return p;
  }
  p.cut_segment = d.segment_pos;
  p.drop_cut_segment = d.whole_segment;
  p.cut_offset = d.whole_segment ? 0 : d.offset;
  const SegmentSummary& cut = s.segments[p.cut_segment];
  if (!p.drop_cut_segment) {
    Result<FileSource> src = FileSource::open(cut.file.path);
    if (!src.ok()) return src.status();
    Result<std::uint64_t> nz = nonzero_end(*src, p.cut_offset);
    if (!nz.ok()) return nz.status();
    p.cut_bytes = *nz - p.cut_offset;
  }
  for (std::size_t i = p.cut_segment + (p.drop_cut_segment ? 0 : 1); i < s.segments.size(); ++i) {
    p.removed.push_back(s.segments[i]);
  }
  if (p.cut_segment == 0 && p.drop_cut_segment) {
    p.refuse = true;
    p.refuse_reason =
        "the damage is in the oldest segment's header: nothing of the log would "
        "remain; rebuild the member from a snapshot or remove it and add it back";
    return p;
  }
  if (d.kind == DamageKind::kCorruption) KVC_RETURN_IF_ERROR(salvage_cut(s, p));
  // What was read before the damage is exactly what a cut keeps. Replay what the repair
  // appends on top of it under the log's rules.
  LogState result = s.log;
  const std::optional<raft::SnapshotMeta>& marker = p.lost.newest_snapshot;
  if (marker && (!result.snapshot || marker->index > result.snapshot->index) &&
      apply_log_rules(result, Record::of(*marker), nullptr).empty()) {
    p.new_snapshot = marker;
  } else {
    result = s.log;
  }
  const std::uint64_t covered = result.snapshot ? result.snapshot->index : 0;
  if (result.first_index > covered + 1) {
    p.refuse = true;
    p.refuse_reason =
        "a cut at the damage would leave a log without its start (no snapshot "
        "marker left covers entries " +
        std::to_string(covered + 1) + ".." + std::to_string(result.first_index - 1) +
        "); rebuild the member from a snapshot or remove it and add it back";
    return p;
  }
  plan_hard_state(result, p);
  p.last_index_after = result.last_index;
  if (p.drop_cut_segment) {
    p.append_segment = p.cut_segment - 1;
    p.append_offset = s.segments[p.append_segment].used_bytes;
  } else {
    p.append_segment = p.cut_segment;
    p.append_offset = p.cut_offset;
  }
  return p;
}

std::string plan_text(const RepairPlan& p, const WalSummary& s) {
  std::ostringstream o;
  const WalDamage& d = p.damage;
  o << "found: " << d.describe() << "\n";
  if (p.refuse) {
    o << "plan: none possible: " << p.refuse_reason << "\n";
    return o.str();
  }
  o << "plan:\n";
  const SegmentSummary& cut = s.segments[p.cut_segment];
  if (p.drop_cut_segment) {
    o << "  remove segment " << cut.file.name << " (" << cut.file.file_size << " bytes)\n";
  } else {
    o << "  truncate segment " << cut.file.name << " at offset " << p.cut_offset << " (remove "
      << p.cut_bytes << " bytes)\n";
  }
  for (const SegmentSummary& r : p.removed) {
    if (r.file.name == cut.file.name) continue;
    o << "  remove segment " << r.file.name << " (" << r.file.file_size << " bytes)\n";
  }
  if (p.new_snapshot) {
    o << "  append snapshot marker " << snapshot_text(p.new_snapshot)
      << " (the newest found after the cut: the state machine covers up to its index)\n";
  }
  if (p.new_hard_state) {
    o << "  append hard state " << hard_state_text(p.new_hard_state)
      << " (the newest term and vote read anywhere, so the member cannot vote twice in a term; "
         "the highest commit index known, within the repaired log)\n";
  }
  o << "result: the log ends at index " << p.last_index_after << "\n";
  if (d.kind == DamageKind::kTornTail) {
    o << "lost: nothing that was synced: the removed bytes are one interrupted write\n";
  } else {
    o << "lost: every entry after index " << p.keep_last_index << " on this member";
    if (p.last_index_after > p.keep_last_index) {
      o << " (those up to " << p.last_index_after << " are in the state machine)";
    }
    if (p.lost.entries > 0) {
      o << "; readable in the removed part: " << p.lost.entries << " entry record(s), indexes "
        << p.lost.min_index << ".." << p.lost.max_index;
    } else {
      o << "; nothing in the removed part is readable";
    }
    o << "\n";
    o << "after: the member must catch up from its peers: restart it while the rest of the "
         "cluster has a quorum, and the leader sends it the missing entries (or a snapshot)\n";
  }
  return o.str();
}

std::string plan_json(const RepairPlan& p, const WalSummary& s, bool applied,
                      const std::string& result_dir) {
  JsonObject j;
  j.str("status", status_name(s)).raw("damage", damage_json(p.damage));
  j.boolean("possible", !p.refuse);
  if (p.refuse) j.str("refuse_reason", p.refuse_reason);
  std::string actions = "[";
  auto add = [&actions](const std::string& a) { actions += (actions.size() > 1 ? "," : "") + a; };
  if (!p.refuse) {
    const SegmentSummary& cut = s.segments[p.cut_segment];
    if (p.drop_cut_segment) {
      add(JsonObject()
              .str("action", "remove_segment")
              .str("segment", cut.file.name)
              .num("bytes", cut.file.file_size)
              .done());
    } else {
      add(JsonObject()
              .str("action", "truncate_segment")
              .str("segment", cut.file.name)
              .num("offset", p.cut_offset)
              .num("bytes", p.cut_bytes)
              .done());
    }
    for (const SegmentSummary& r : p.removed) {
      if (r.file.name == cut.file.name) continue;
      add(JsonObject()
              .str("action", "remove_segment")
              .str("segment", r.file.name)
              .num("bytes", r.file.file_size)
              .done());
    }
    if (p.new_snapshot) {
      add(JsonObject()
              .str("action", "append_snapshot")
              .raw("snapshot", snapshot_json(p.new_snapshot))
              .done());
    }
    if (p.new_hard_state) {
      add(JsonObject()
              .str("action", "append_hard_state")
              .raw("hard_state", hard_state_json(p.new_hard_state))
              .done());
    }
  }
  actions += "]";
  j.raw("actions", actions);
  j.num("last_index_after", p.last_index_after);
  JsonObject lost;
  lost.num("entry_records", p.lost.entries);
  if (p.lost.entries > 0) {
    lost.num("min_index", p.lost.min_index).num("max_index", p.lost.max_index);
  } else {
    lost.null("min_index").null("max_index");
  }
  j.raw("lost_readable", lost.done());
  j.boolean("applied", applied);
  if (result_dir.empty()) {
    j.null("result_dir");
  } else {
    j.str("result_dir", result_dir);
  }
  return j.done() + "\n";
}

Status copy_prefix(const std::string& from, const std::string& to, std::uint64_t bytes,
                   std::uint64_t final_size) {
  Result<UniqueFd> in = open_file(from, O_RDONLY);
  if (!in.ok()) return in.status();
  Result<UniqueFd> out = open_file(to, O_WRONLY | O_CREAT | O_EXCL, 0644);
  if (!out.ok()) return out.status();
  std::uint64_t off = 0;
  while (off < bytes) {
    const std::size_t n = static_cast<std::size_t>(std::min<std::uint64_t>(1u << 20, bytes - off));
    Result<std::string> chunk = pread_up_to(in->get(), n, off, from);
    if (!chunk.ok()) return chunk.status();
    if (chunk->empty()) break;
    KVC_RETURN_IF_ERROR(pwrite_all(out->get(), *chunk, off, to));
    off += chunk->size();
  }
  if (final_size > off && ::ftruncate(out->get(), static_cast<off_t>(final_size)) != 0) {
    return errno_status("extend " + to, errno);
  }
  return fdatasync_fd(out->get(), to);
}

// Appends the repair's snapshot marker and hard state (those it has) at `offset`, durably.
Status append_repair_records(const RepairPlan& p, const std::string& path, std::uint32_t salt) {
  std::string bytes;
  if (p.new_snapshot) append_record(bytes, salt, Record::of(*p.new_snapshot));
  if (p.new_hard_state) append_record(bytes, salt, Record::of(*p.new_hard_state));
  if (bytes.empty()) return Status();
  Result<UniqueFd> fd = open_file(path, O_RDWR);
  if (!fd.ok()) return fd.status();
  KVC_RETURN_IF_ERROR(pwrite_all(fd->get(), bytes, p.append_offset, path));
  return fdatasync_fd(fd->get(), path);
}

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? std::string("/") : path.substr(0, slash);
}

// Creates `dir` and makes its name durable in its parent.
Status make_dir_durably(const std::string& dir) {
  KVC_RETURN_IF_ERROR(make_dirs(dir, 0700));
  return fsync_dir(parent_dir(dir));
}

// Moves a file into another directory; across file systems by copying, syncing and removing.
Status move_file(const std::string& from, const std::string& to) {
  if (::rename(from.c_str(), to.c_str()) == 0) return Status();
  if (errno != EXDEV) return errno_status("move " + from + " to " + to, errno);
  Result<std::uint64_t> size = file_size(from);
  if (!size.ok()) return size.status();
  KVC_RETURN_IF_ERROR(copy_prefix(from, to, *size, *size));
  KVC_RETURN_IF_ERROR(fsync_dir(parent_dir(to)));
  if (::unlink(from.c_str()) != 0) return errno_status("remove " + from, errno);
  return Status();
}

std::string utc_stamp() {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y%m%dT%H%M%SZ", &tm);
  return buf;
}

Status write_repaired_copy(const RepairPlan& p, const WalSummary& s, const std::string& out_dir) {
  if (path_exists(out_dir)) {
    Result<std::vector<std::string>> names = list_dir(out_dir);
    if (!names.ok()) return names.status();
    if (!names->empty()) {
      return Status::already_exists("--out " + out_dir + " exists and is not empty");
    }
  }
  KVC_RETURN_IF_ERROR(make_dir_durably(out_dir));
  for (std::size_t i = 0; i < p.cut_segment; ++i) {
    const SegmentSummary& seg = s.segments[i];
    KVC_RETURN_IF_ERROR(copy_prefix(seg.file.path, out_dir + "/" + seg.file.name, seg.used_bytes,
                                    seg.file.file_size));
  }
  if (!p.drop_cut_segment) {
    const SegmentSummary& seg = s.segments[p.cut_segment];
    KVC_RETURN_IF_ERROR(copy_prefix(seg.file.path, out_dir + "/" + seg.file.name, p.cut_offset,
                                    seg.file.file_size));
  }
  const SegmentSummary& tail = s.segments[p.append_segment];
  KVC_RETURN_IF_ERROR(append_repair_records(p, out_dir + "/" + tail.file.name, tail.header.salt));
  return fsync_dir(out_dir);
}

// Holds DATA_DIR/lock for the duration of an in-place repair.
Result<UniqueFd> lock_data_dir(const WalLocation& where) {
  if (where.data_dir.empty()) return UniqueFd();
  const std::string lock = where.data_dir + "/lock";
  if (!path_exists(lock)) return UniqueFd();
  Result<UniqueFd> fd = open_file(lock, O_RDWR);
  if (!fd.ok()) return fd.status();
  if (::flock(fd->get(), LOCK_EX | LOCK_NB) != 0) {
    return Status::failed_precondition("the member using " + where.data_dir +
                                       " is running (it holds " + lock +
                                       "); stop it before repairing in place");
  }
  return fd;
}

// Sets *touched once the log itself starts to change.
Status repair_in_place(const RepairPlan& p, const WalSummary& s, const WalLocation& where,
                       const std::string& backup_dir, const std::string& plan, bool* touched) {
  *touched = false;
  if (path_exists(backup_dir)) {
    return Status::already_exists("backup directory " + backup_dir + " already exists");
  }
  KVC_RETURN_IF_ERROR(make_dir_durably(backup_dir));
  // 1. Save everything that is about to go, durably, before touching the log.
  std::string readme = "kvc-wal repair --in-place of " + where.wal_dir + " at " + utc_stamp() +
                       "\n\n" + plan + "\nSaved here:\n";
  const SegmentSummary& cut = s.segments[p.cut_segment];
  if (!p.drop_cut_segment && p.cut_bytes > 0) {
    const std::string name = cut.file.name + ".from-" + std::to_string(p.cut_offset);
    Result<UniqueFd> in = open_file(cut.file.path, O_RDONLY);
    if (!in.ok()) return in.status();
    Result<std::string> bytes =
        pread_up_to(in->get(), static_cast<std::size_t>(p.cut_bytes), p.cut_offset, cut.file.path);
    if (!bytes.ok()) return bytes.status();
    Result<UniqueFd> out = open_file(backup_dir + "/" + name, O_WRONLY | O_CREAT | O_EXCL, 0644);
    if (!out.ok()) return out.status();
    KVC_RETURN_IF_ERROR(write_all(out->get(), *bytes, backup_dir + "/" + name));
    KVC_RETURN_IF_ERROR(fsync_fd(out->get(), backup_dir + "/" + name));
    readme += "  " + name + ": bytes " + std::to_string(p.cut_offset) + ".." +
              std::to_string(p.cut_offset + p.cut_bytes) + " of " + cut.file.name +
              " (undo: dd if=" + name + " of=WAL/" + cut.file.name +
              " oflag=seek_bytes seek=" + std::to_string(p.cut_offset) + " conv=notrunc)\n";
  }
  for (const SegmentSummary& r : p.removed) {
    readme += "  " + r.file.name + ": a whole segment (undo: move it back)\n";
  }
  KVC_RETURN_IF_ERROR(write_file_atomic(backup_dir + "/README", readme));
  KVC_RETURN_IF_ERROR(fsync_dir(backup_dir));
  // 2. Move removed segments out, newest first, so the log stays a prefix after any crash.
  *touched = true;
  for (auto it = p.removed.rbegin(); it != p.removed.rend(); ++it) {
    KVC_RETURN_IF_ERROR(move_file(it->file.path, backup_dir + "/" + it->file.name));
    KVC_RETURN_IF_ERROR(fsync_dir(where.wal_dir));
  }
  KVC_RETURN_IF_ERROR(fsync_dir(backup_dir));
  // 3. Zero the cut segment's tail, then add the hard state.
  if (!p.drop_cut_segment && p.cut_bytes > 0) {
    Result<UniqueFd> fd = open_file(cut.file.path, O_RDWR);
    if (!fd.ok()) return fd.status();
    const std::string zeros(
        static_cast<std::size_t>(std::min<std::uint64_t>(p.cut_bytes, 1u << 20)), '\0');
    for (std::uint64_t off = 0; off < p.cut_bytes; off += zeros.size()) {
      const std::size_t n =
          static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), p.cut_bytes - off));
      KVC_RETURN_IF_ERROR(pwrite_all(fd->get(), std::string_view(zeros).substr(0, n),
                                     p.cut_offset + off, cut.file.path));
    }
    KVC_RETURN_IF_ERROR(fdatasync_fd(fd->get(), cut.file.path));
  }
  const SegmentSummary& tail = s.segments[p.append_segment];
  return append_repair_records(p, tail.file.path, tail.header.salt);
}

bool confirm(ToolContext& ctx) {
  std::fprintf(ctx.err, "apply this repair? [y/N] ");
  std::fflush(ctx.err);
  char line[64] = {0};
  if (std::fgets(line, sizeof line, ctx.in) == nullptr) return false;
  return line[0] == 'y' || line[0] == 'Y';
}

}  // namespace

namespace {

// The repair of a log that reads clean: nothing to cut, but a log that lacks what the state needs
// (its newest segments removed) is reported, since no cut brings that back.
int repair_clean_log(const Target& t, const WalSummary& s, ToolContext& ctx) {
  if (ctx.format == OutputFormat::kJson) {
    print(
        ctx.out,
        JsonObject().str("status", "clean").raw("actions", "[]").boolean("applied", false).done() +
            "\n");
  } else {
    print(ctx.out, "nothing to repair: the log is clean\n");
  }
  const CrossCheck cross = cross_check(t, s);
  if (cross.report && !cross.report->ok()) {
    std::fprintf(
        ctx.err,
        "%s: but the log and the state disagree, which no repair of the log can fix:\n%s\n", kTool,
        cross.report->describe().c_str());
    return kExitInconsistent;
  }
  return kExitOk;
}

// Prints the plan: its text, or its JSON with whether it was applied and where the result is.
void show_plan(ToolContext& ctx, const RepairPlan& p, const WalSummary& s, const std::string& text,
               bool applied, const std::string& result_dir) {
  if (ctx.format == OutputFormat::kJson) {
    print(ctx.out, plan_json(p, s, applied, result_dir));
  } else {
    print(ctx.out, text);
  }
  std::fflush(ctx.out);
}

// Whether the plan may be carried out: an exit code when it may not (refused, a dry run, a cut
// that needs --truncate-corrupt, no confirmation), nullopt when it may.
std::optional<int> stop_before_repair(const RepairPlan& p, const WalSummary& s,
                                      const std::string& text, const RepairOptions& opt,
                                      ToolContext& ctx) {
  const bool needs_flag = p.damage.kind == DamageKind::kCorruption && !opt.truncate_corrupt;
  if (p.refuse) {
    show_plan(ctx, p, s, text, false, "");
    std::fprintf(ctx.err, "%s: cannot repair: %s\n", kTool, p.refuse_reason.c_str());
    return kExitError;
  }
  if (opt.dry_run) {
    show_plan(ctx, p, s, text, false, "");
    if (needs_flag) {
      std::fprintf(ctx.err, "%s: dry run; this cut loses entries and needs --truncate-corrupt\n",
                   kTool);
    } else {
      std::fprintf(ctx.err, "%s: dry run; nothing was changed\n", kTool);
    }
    return kExitOk;
  }
  if (needs_flag) {
    show_plan(ctx, p, s, text, false, "");
    std::fprintf(ctx.err,
                 "%s: refusing: the log is corrupt before its tail, and cutting it there loses "
                 "the entries listed above; rerun with --truncate-corrupt to cut it\n",
                 kTool);
    return kExitError;
  }
  if (!opt.yes) {
    if (!ctx.interactive) {
      show_plan(ctx, p, s, text, false, "");
      std::fprintf(ctx.err,
                   "%s: refusing to repair without confirmation (stdin is not a terminal); "
                   "pass --yes\n",
                   kTool);
      return kExitError;
    }
    print(ctx.err, text);
    if (!confirm(ctx)) {
      std::fprintf(ctx.err, "%s: aborted; nothing was changed\n", kTool);
      return kExitError;
    }
  }
  return std::nullopt;
}

// Carries out the plan, in place or as a copy in opt.out_dir; the repaired log's directory, or
// the exit code of a failure (already reported).
std::variant<std::string, int> carry_out_repair(const RepairPlan& p, const WalSummary& s,
                                                const Target& t, const std::string& text,
                                                const RepairOptions& opt, ToolContext& ctx) {
  if (!opt.in_place) {
    if (Status st = write_repaired_copy(p, s, opt.out_dir); !st.ok()) return fail(ctx, st);
    std::fprintf(ctx.err,
                 "%s: wrote a repaired copy to %s; the original is untouched. To use it, stop "
                 "the member and replace its wal/ folder with this one\n",
                 kTool, opt.out_dir.c_str());
    return opt.out_dir;
  }
  const std::string backup =
      opt.backup_dir.empty() ? t.where.wal_dir + ".repair-" + utc_stamp() : opt.backup_dir;
  bool touched = false;
  if (Status st = repair_in_place(p, s, t.where, backup, text, &touched); !st.ok()) {
    if (touched) {
      std::fprintf(ctx.err,
                   "%s: repair failed part way: %s; everything removed so far is saved in %s "
                   "(see its README); run the repair again\n",
                   kTool, st.message().c_str(), backup.c_str());
    } else {
      std::fprintf(ctx.err, "%s: repair failed before changing the log: %s\n", kTool,
                   st.message().c_str());
    }
    return kExitError;
  }
  std::fprintf(ctx.err, "%s: repaired %s in place; the removed bytes are saved in %s\n", kTool,
               t.where.wal_dir.c_str(), backup.c_str());
  return t.where.wal_dir;
}

}  // namespace

int run_repair(const std::string& dir, const RepairOptions& opt, ToolContext& ctx) {
  if (!opt.dry_run && opt.out_dir.empty() == !opt.in_place) {
    std::fprintf(ctx.err,
                 "%s: repair needs exactly one of --out NEWDIR (write a repaired copy) "
                 "and --in-place (or --dry-run to only see the plan)\n",
                 kTool);
    return kExitUsage;
  }
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  if (t->live.running && opt.in_place && !opt.dry_run) {
    return fail(ctx, Status::failed_precondition("refusing to repair in place: the member (pid " +
                                                 std::to_string(t->live.pid) +
                                                 ") is running; stop it first"));
  }
  // In place: hold the member's lock from before reading until the repair is done.
  UniqueFd lock;
  if (opt.in_place && !opt.dry_run) {
    Result<UniqueFd> l = lock_data_dir(t->where);
    if (!l.ok()) return fail(ctx, l.status());
    lock = std::move(*l);
    if (!lock.valid()) {
      std::fprintf(ctx.err,
                   "%s: warning: %s is not inside a data directory with a lock file, so a member "
                   "using it cannot be detected; make sure none does\n",
                   kTool, t->where.wal_dir.c_str());
    }
  }
  Result<WalSummary> scanned = scan_target(*t, "reading", ctx);
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  if (!s.damage) return repair_clean_log(*t, s, ctx);
  Result<RepairPlan> planned = make_plan(s);
  if (!planned.ok()) return fail(ctx, planned.status());
  const RepairPlan& p = *planned;
  const std::string text = plan_text(p, s);
  if (std::optional<int> stop = stop_before_repair(p, s, text, opt, ctx)) return *stop;
  std::variant<std::string, int> done = carry_out_repair(p, s, *t, text, opt, ctx);
  if (const int* failed = std::get_if<int>(&done)) return *failed;
  const std::string& result_dir = std::get<std::string>(done);
  // The result must read clean; say so if it somehow does not.
  Result<WalSummary> after = scan_wal(result_dir, nullptr);
  if (!after.ok()) return fail(ctx, after.status());
  if (after->damage) {
    show_plan(ctx, p, s, text, true, result_dir);
    return fail(ctx, Status::internal("the repaired log still does not read clean: " +
                                      after->damage->describe()));
  }
  show_plan(ctx, p, s, text, true, result_dir);
  return kExitOk;
}

}  // namespace kvc::storage
