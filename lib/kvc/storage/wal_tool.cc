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

namespace kvc::storage {
namespace {

constexpr const char* kTool = "kvc-wal";

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

// Locates the log and warns about a live writer. nullopt after printing an error.
struct Target {
  WalLocation where;
  LiveWriter live;
};
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

// ---- dump formatting ----

std::string hex_value(std::string_view bytes) { return "0x" + hex_encode(bytes); }

// Conf-change data is encoded by the Raft core; until kvc-wal decodes it, it is shown as hex.
// A state hash as kvc-ctl check hash prints it: 16 hex digits.
std::string hash_hex(std::uint64_t h) { return id_hex(h); }

std::string command_text(const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    return "data=" + (e.data.empty() ? std::string("-") : hex_value(e.data));
  }
  if (e.data.empty()) return "noop";
  Result<Command> c = decode_command(e.data);
  if (!c.ok()) {
    return "data=" + text_value(e.data) + " undecodable=" + text_value(c.status().message());
  }
  std::string s(command_op_name(c->op));
  s += c->op == CommandOp::kDeletePrefix ? " prefix=" : " key=";
  s += text_value(c->key);
  if (c->op == CommandOp::kCas) s += " expect_revision=" + std::to_string(c->expect_revision);
  if (c->op == CommandOp::kPut || c->op == CommandOp::kCas) s += " value=" + text_value(c->value);
  if (c->op == CommandOp::kHashVerdict) {
    s += " index=" + std::to_string(c->expect_revision) + " hash=" + hash_hex(c->hash);
  }
  s += " request_id=" + std::to_string(c->request_id);
  return s;
}

void command_json(JsonObject& j, const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    j.null("command").base64("data", e.data);
    return;
  }
  if (e.data.empty()) {
    j.raw("command", JsonObject().str("op", "noop").done());
    return;
  }
  Result<Command> c = decode_command(e.data);
  if (!c.ok()) {
    j.null("command").base64("data", e.data).str("decode_error", c.status().message());
    return;
  }
  JsonObject cj;
  cj.str("op", command_op_name(c->op)).num("request_id", c->request_id).bytes("key", c->key);
  if (c->op == CommandOp::kCas) cj.num("expect_revision", c->expect_revision);
  if (c->op == CommandOp::kPut || c->op == CommandOp::kCas) cj.bytes("value", c->value);
  if (c->op == CommandOp::kHashVerdict) {
    cj.num("index", c->expect_revision).str("hash", hash_hex(c->hash));
  }
  j.raw("command", cj.done());
}

std::string record_line(const ScannedRecord& r, OutputFormat format) {
  const Record& rec = r.record;
  if (format == OutputFormat::kJson) {
    JsonObject j;
    j.str("segment", r.segment.file.name)
        .num("offset", r.offset)
        .num("bytes", r.bytes)
        .str("type", record_type_name(rec.type));
    switch (rec.type) {
      case RecordType::kEntry:
        j.num("index", rec.entry.index)
            .num("term", rec.entry.term)
            .str("entry_type",
                 rec.entry.type == raft::EntryType::kNormal ? "normal" : "conf_change")
            .num("data_len", rec.entry.data.size());
        if (r.change.replaced_to != 0) {
          j.raw("replaces",
                JsonObject().num("from", rec.entry.index).num("to", r.change.replaced_to).done());
        } else {
          j.null("replaces");
        }
        command_json(j, rec.entry);
        break;
      case RecordType::kHardState:
        j.num("term", rec.hard_state.term)
            .str("vote", vote_json(rec.hard_state.vote))
            .num("commit", rec.hard_state.commit);
        break;
      case RecordType::kSnapshot:
        j.num("index", rec.snapshot.index)
            .num("term", rec.snapshot.term)
            .raw("voters", json_ids(rec.snapshot.conf.voters))
            .raw("learners", json_ids(rec.snapshot.conf.learners))
            .boolean("reset", r.change.reset);
        break;
    }
    return j.done() + "\n";
  }
  std::string s = "seg=" + std::to_string(r.segment.header.seq) +
                  " off=" + std::to_string(r.offset) + " " +
                  std::string(record_type_name(rec.type));
  switch (rec.type) {
    case RecordType::kEntry:
      s += " index=" + std::to_string(rec.entry.index) + " term=" + std::to_string(rec.entry.term) +
           " type=" + (rec.entry.type == raft::EntryType::kNormal ? "normal" : "conf_change") +
           " len=" + std::to_string(rec.entry.data.size());
      if (r.change.replaced_to != 0) {
        s += " replaces=" + std::to_string(rec.entry.index) + ".." +
             std::to_string(r.change.replaced_to);
      }
      s += " " + command_text(rec.entry);
      break;
    case RecordType::kHardState:
      s += " " + hard_state_text(rec.hard_state);
      break;
    case RecordType::kSnapshot:
      s += " " + snapshot_text(rec.snapshot);
      if (r.change.reset) s += " reset";
      break;
  }
  return s + "\n";
}

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
  if (d.kind == DamageKind::kCorruption) {
    // What the cut throws away, as far as anything in it can be read.
    if (!p.drop_cut_segment) {
      KVC_RETURN_IF_ERROR(salvage_region(cut.file.path, p.cut_offset, cut.header.salt, p.lost));
    }
    for (const SegmentSummary& r : p.removed) {
      std::optional<std::uint32_t> salt;
      if (r.header_ok) salt = r.header.salt;
      KVC_RETURN_IF_ERROR(salvage_region(r.file.path, kSegmentHeaderBytes, salt, p.lost));
    }
  }
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

// ---- cross-file checks (consistency.h) ----

// The log against the state of its data directory, when there is one and the log could be
// read to its end (a corrupt log's facts would be incomplete).
struct CrossCheck {
  bool checked = false;
  std::optional<ConsistencyReport> report;
  Status error;  // the state could not be read
};

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

int run_info(const std::string& dir, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  Progress progress(ctx, "reading");
  Result<WalSummary> scanned = scan_wal(t->where.wal_dir, nullptr, scan_options_for(progress, ctx));
  progress.clear();
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  warn_live_tail(*t, s, ctx);
  const LogState& log = s.log;
  if (ctx.format == OutputFormat::kJson) {
    JsonObject j;
    j.str("wal_dir", t->where.wal_dir);
    if (t->where.data_dir.empty()) {
      j.null("data_dir");
    } else {
      j.str("data_dir", t->where.data_dir);
    }
    j.boolean("writer_running", t->live.running);
    if (t->live.running) {
      j.num("writer_pid", static_cast<std::uint64_t>(t->live.pid));
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
      sj.num("records", g.records)
          .num("used_bytes", g.used_bytes)
          .num("file_size", g.file.file_size);
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
    return kExitOk;
  }
  std::ostringstream o;
  o << "wal_dir:     " << t->where.wal_dir << "\n";
  o << "writer:      "
    << (t->live.running ? "running (pid " + std::to_string(t->live.pid) + ")" : "none") << "\n";
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
  return kExitOk;
}

int run_dump(const std::string& dir, const DumpOptions& options, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  auto wanted_type = [&](RecordType type) {
    return options.types.empty() ||
           std::find(options.types.begin(), options.types.end(), type) != options.types.end();
  };
  auto in_range = [&](std::uint64_t index) {
    return (!options.from || index >= *options.from) && (!options.to || index <= *options.to);
  };
  std::uint64_t shown = 0;
  auto visit = [&](const ScannedRecord& r) -> Status {
    if (!wanted_type(r.record.type)) return Status();
    std::uint64_t index = r.log.last_index;
    if (r.record.type == RecordType::kEntry) index = r.record.entry.index;
    if (r.record.type == RecordType::kSnapshot) index = r.record.snapshot.index;
    if (!in_range(index)) return Status();
    print(ctx.out, record_line(r, ctx.format));
    ++shown;
    if (std::ferror(ctx.out)) return Status::io_error("write to standard output failed");
    return Status();
  };
  Result<WalSummary> scanned = scan_wal(t->where.wal_dir, visit);
  if (!scanned.ok()) return fail(ctx, scanned.status());
  std::fflush(ctx.out);
  warn_live_tail(*t, *scanned, ctx);
  if (scanned->damage) {
    std::fprintf(ctx.err, "%s: %s\n", kTool, scanned->damage->describe().c_str());
  }
  return status_exit_code(*scanned);
}

int run_verify(const std::string& dir, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  Progress progress(ctx, "verifying");
  Result<WalSummary> scanned = scan_wal(t->where.wal_dir, nullptr, scan_options_for(progress, ctx));
  progress.clear();
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  warn_live_tail(*t, s, ctx);
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
  Progress progress(ctx, "reading");
  Result<WalSummary> scanned = scan_wal(t->where.wal_dir, nullptr, scan_options_for(progress, ctx));
  progress.clear();
  if (!scanned.ok()) return fail(ctx, scanned.status());
  const WalSummary& s = *scanned;
  warn_live_tail(*t, s, ctx);
  if (!s.damage) {
    if (ctx.format == OutputFormat::kJson) {
      print(ctx.out, JsonObject()
                             .str("status", "clean")
                             .raw("actions", "[]")
                             .boolean("applied", false)
                             .done() +
                         "\n");
    } else {
      print(ctx.out, "nothing to repair: the log is clean\n");
    }
    // A clean log can still lack what the state needs (its newest segments removed): no cut
    // brings that back, but the operator must hear it.
    const CrossCheck cross = cross_check(*t, s);
    if (cross.report && !cross.report->ok()) {
      std::fprintf(
          ctx.err,
          "%s: but the log and the state disagree, which no repair of the log can fix:\n%s\n",
          kTool, cross.report->describe().c_str());
      return kExitInconsistent;
    }
    return kExitOk;
  }
  Result<RepairPlan> planned = make_plan(s);
  if (!planned.ok()) return fail(ctx, planned.status());
  const RepairPlan& p = *planned;
  const std::string text = plan_text(p, s);
  const bool needs_flag = p.damage.kind == DamageKind::kCorruption && !opt.truncate_corrupt;
  auto show_plan = [&](bool applied, const std::string& result_dir) {
    if (ctx.format == OutputFormat::kJson) {
      print(ctx.out, plan_json(p, s, applied, result_dir));
    } else {
      print(ctx.out, text);
    }
    std::fflush(ctx.out);
  };
  if (p.refuse) {
    show_plan(false, "");
    std::fprintf(ctx.err, "%s: cannot repair: %s\n", kTool, p.refuse_reason.c_str());
    return kExitError;
  }
  if (opt.dry_run) {
    show_plan(false, "");
    if (needs_flag) {
      std::fprintf(ctx.err, "%s: dry run; this cut loses entries and needs --truncate-corrupt\n",
                   kTool);
    } else {
      std::fprintf(ctx.err, "%s: dry run; nothing was changed\n", kTool);
    }
    return kExitOk;
  }
  if (needs_flag) {
    show_plan(false, "");
    std::fprintf(ctx.err,
                 "%s: refusing: the log is corrupt before its tail, and cutting it there loses "
                 "the entries listed above; rerun with --truncate-corrupt to cut it\n",
                 kTool);
    return kExitError;
  }
  if (!opt.yes) {
    if (!ctx.interactive) {
      show_plan(false, "");
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
  std::string result_dir;
  if (opt.in_place) {
    const std::string backup =
        opt.backup_dir.empty() ? t->where.wal_dir + ".repair-" + utc_stamp() : opt.backup_dir;
    bool touched = false;
    if (Status st = repair_in_place(p, s, t->where, backup, text, &touched); !st.ok()) {
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
    result_dir = t->where.wal_dir;
    std::fprintf(ctx.err, "%s: repaired %s in place; the removed bytes are saved in %s\n", kTool,
                 result_dir.c_str(), backup.c_str());
  } else {
    if (Status st = write_repaired_copy(p, s, opt.out_dir); !st.ok()) return fail(ctx, st);
    result_dir = opt.out_dir;
    std::fprintf(ctx.err,
                 "%s: wrote a repaired copy to %s; the original is untouched. To use it, stop "
                 "the member and replace its wal/ folder with this one\n",
                 kTool, result_dir.c_str());
  }
  // The result must read clean; say so if it somehow does not.
  Result<WalSummary> after = scan_wal(result_dir, nullptr);
  if (!after.ok()) return fail(ctx, after.status());
  if (after->damage) {
    show_plan(true, result_dir);
    return fail(ctx, Status::internal("the repaired log still does not read clean: " +
                                      after->damage->describe()));
  }
  show_plan(true, result_dir);
  return kExitOk;
}

}  // namespace kvc::storage
