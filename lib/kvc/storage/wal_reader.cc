#include "kvc/storage/wal_reader.h"

#include <sys/stat.h>

#include <algorithm>
#include <memory>

namespace kvc::storage {
namespace {

std::string index_text(std::uint64_t index) {
  return index == 0 ? std::string("the start of the log") : "index " + std::to_string(index);
}

// The segment sequence rules and the check that the log's start is covered.
class SegmentRules {
 public:
  explicit SegmentRules(LogState& log) : log_(log) {}

  // Checks a segment's place in the sequence; returns the reason it does not fit, or "".
  std::string start_segment(const SegmentSummary& seg) {
    if (!started_) {
      started_ = true;
      log_.first_index = seg.header.first_index;
      log_.last_index = seg.header.first_index - 1;
      prev_seq_ = seg.header.seq;
      return "";
    }
    if (seg.header.seq != prev_seq_ + 1) {
      return "segment sequence number " + std::to_string(seg.header.seq) + " follows " +
             std::to_string(prev_seq_) + " (a segment is missing)";
    }
    prev_seq_ = seg.header.seq;
    if (seg.header.first_index != log_.last_index + 1) {
      return "segment starts at index " + std::to_string(seg.header.first_index) +
             " but the log before it ends at index " + std::to_string(log_.last_index);
    }
    return "";
  }

  // Whether the log is whole from the snapshot marker (or index 1) on; "" when it is.
  std::string check_start() const {
    if (!started_) return "";
    const std::uint64_t covered = log_.snapshot ? log_.snapshot->index : 0;
    // Without a reset by a marker, first_index only moves down from the oldest segment's start.
    if (log_.first_index > covered + 1) {
      return "entries " + std::to_string(covered + 1) + ".." +
             std::to_string(log_.first_index - 1) + " are missing: the log starts at index " +
             std::to_string(log_.first_index) +
             (log_.snapshot
                  ? " but the snapshot marker covers only up to " + std::to_string(covered)
                  : " and no snapshot marker covers the entries before it");
    }
    return "";
  }

 private:
  LogState& log_;
  bool started_ = false;
  std::uint64_t prev_seq_ = 0;
};

using SourceGetter = std::function<Result<ByteSource*>(std::size_t)>;

// Records the damage found in segment `i` at `offset` (`whole`: the segment as a whole).
void note_damage(WalSummary& summary, std::size_t i, DamageKind kind, std::uint64_t offset,
                 bool whole, std::string reason) {
  const SegmentSummary& seg = summary.segments[i];
  WalDamage d;
  d.kind = kind;
  d.segment_pos = i;
  d.segment = seg.file.name;
  d.path = seg.file.path;
  d.offset = offset;
  d.whole_segment = whole;
  d.after_index = summary.log.last_index;
  d.reason = std::move(reason);
  d.end_offset = seg.file.file_size;
  summary.damage = std::move(d);
}

// Segment `i` did not end cleanly: a torn tail when it is the last segment and nothing valid
// follows the bad record, corruption otherwise.
void note_unclean_end(WalSummary& summary, std::size_t i, const SegmentEnd& end,
                      bool last_segment) {
  std::string reason(record_check_name(end.reason));
  if (end.reason == RecordCheck::kZero) reason = "non-zero bytes after a zero record header";
  if (!end.detail.empty()) reason += ": " + end.detail;
  const bool torn = last_segment && !end.valid_after;
  note_damage(summary, i, torn ? DamageKind::kTornTail : DamageKind::kCorruption, end.offset, false,
              reason);
  WalDamage& d = *summary.damage;
  d.end_offset = torn ? end.nonzero_end : summary.segments[i].file.file_size;
  d.valid_after = end.valid_after;
  if (end.valid_after && end.valid_after_record.type == RecordType::kEntry) {
    d.valid_after_index = end.valid_after_record.entry.index;
  }
  if (!torn && !end.valid_after) {
    d.reason += " (in a segment that is not the last, so it was synced before)";
  }
}

// The log's start is not covered (SegmentRules::check_start said why).
void note_missing_start(WalSummary& summary, std::string why) {
  WalDamage d;
  d.kind = DamageKind::kCorruption;
  d.segment = summary.segments.front().file.name;
  d.path = summary.segments.front().file.path;
  d.offset = kSegmentHeaderBytes;
  d.missing_start = true;
  d.after_index = 0;
  d.reason = std::move(why);
  d.end_offset = summary.segments.front().file.file_size;
  summary.damage = std::move(d);
}

Result<WalSummary> scan_impl(WalSummary summary, const SourceGetter& get_source,
                             const RecordVisitor& visit, const ScanOptions& options) {
  SegmentRules rules(summary.log);
  std::uint64_t total = 0;
  for (const SegmentSummary& seg : summary.segments) total += seg.file.file_size;
  summary.bytes_on_disk = total;
  std::uint64_t done = 0;
  std::uint64_t last_report = 0;
  // Reported at the start of every segment, every MiB and at the end.
  auto progress = [&](std::uint64_t at, bool always) {
    if (options.progress && (always || at - last_report >= (1u << 20) || at == total)) {
      last_report = at;
      options.progress(at, total);
    }
  };
  const std::size_t n = summary.segments.size();
  for (std::size_t i = 0; i < n; ++i) {
    SegmentSummary& seg = summary.segments[i];
    progress(done, true);
    const bool last_segment = i + 1 == n;
    auto damage = [&](DamageKind kind, std::uint64_t offset, bool whole, std::string reason) {
      note_damage(summary, i, kind, offset, whole, std::move(reason));
    };
    Result<ByteSource*> source = get_source(i);
    if (!source.ok()) return source.status();
    seg.file.file_size = (*source)->size();
    SegmentScanner scanner(**source);
    Result<SegmentHeader> header = scanner.read_header();
    if (!header.ok()) {
      if (header.status().code() != Code::kCorruption) return header.status();
      damage(DamageKind::kCorruption, 0, true, header.status().message());
      return summary;
    }
    seg.header = *header;
    seg.header_ok = true;
    if (seg.header.seq != seg.file.seq || seg.header.first_index != seg.file.first_index) {
      damage(DamageKind::kCorruption, 0, true,
             "the header says sequence " + std::to_string(seg.header.seq) + " first index " +
                 std::to_string(seg.header.first_index) + ", the file name does not");
      return summary;
    }
    if (std::string why = rules.start_segment(seg); !why.empty()) {
      damage(DamageKind::kCorruption, 0, true, std::move(why));
      return summary;
    }
    seg.used_bytes = kSegmentHeaderBytes;
    summary.bytes_used += kSegmentHeaderBytes;
    Record rec;
    std::uint64_t offset = 0;
    std::uint32_t bytes = 0;
    for (;;) {
      Result<bool> more = scanner.next(rec, offset, bytes);
      if (!more.ok()) return more.status();
      if (!*more) break;
      LogChange change;
      if (std::string why = apply_log_rules(summary.log, rec, &change); !why.empty()) {
        damage(DamageKind::kCorruption, offset, false, std::move(why));
        return summary;
      }
      ++seg.records;
      ++summary.records;
      if (rec.type == RecordType::kEntry) ++summary.entry_records;
      seg.used_bytes = offset + bytes;
      summary.bytes_used += bytes;
      if (rec.type == RecordType::kEntry) {
        if (seg.min_index == 0 || rec.entry.index < seg.min_index) seg.min_index = rec.entry.index;
        seg.max_index = std::max(seg.max_index, rec.entry.index);
      }
      if (visit) {
        KVC_RETURN_IF_ERROR(visit(ScannedRecord{seg, offset, bytes, rec, change, summary.log}));
      }
      progress(done + offset + bytes, false);
    }
    const SegmentEnd& end = scanner.end();
    if (!end.clean) {
      note_unclean_end(summary, i, end, last_segment);
      return summary;
    }
    done += seg.file.file_size;
    progress(done, false);
  }
  if (std::string why = rules.check_start(); !why.empty())
    note_missing_start(summary, std::move(why));
  return summary;
}

}  // namespace

std::string apply_log_rules(LogState& s, const Record& r, LogChange* change) {
  LogChange unused;
  LogChange& c = change != nullptr ? *change : unused;
  c = LogChange{};
  switch (r.type) {
    case RecordType::kEntry: {
      const raft::Entry& e = r.entry;
      if (e.index == 0 || e.index == UINT64_MAX) {
        return "entry index " + std::to_string(e.index) + " is out of range";
      }
      if (s.snapshot && e.index <= s.snapshot->index) {
        return "entry " + std::to_string(e.index) + " rewrites the log at or below the " +
               "snapshot marker at index " + std::to_string(s.snapshot->index);
      }
      if (e.index > s.last_index + 1) {
        return "gap: entry " + std::to_string(e.index) + " follows " + index_text(s.last_index);
      }
      if (e.index <= s.last_index) {
        if (s.hard_state && e.index <= s.hard_state->commit) {
          return "entry " + std::to_string(e.index) + " rewrites a committed index (commit " +
                 std::to_string(s.hard_state->commit) + ")";
        }
        c.replaced_to = s.last_index;
        if (e.index < s.first_index) s.first_index = e.index;
      } else if (e.term < s.last_term) {
        return "term goes back: entry " + std::to_string(e.index) + " has term " +
               std::to_string(e.term) + " after term " + std::to_string(s.last_term);
      }
      if (s.empty() || e.index == s.first_index) {
        s.first_index = e.index;
        s.first_term = e.term;
      }
      s.last_index = e.index;
      s.last_term = e.term;
      return "";
    }
    case RecordType::kHardState: {
      const raft::HardState& hs = r.hard_state;
      if (s.hard_state && hs.term < s.hard_state->term) {
        return "hard state term goes back from " + std::to_string(s.hard_state->term) + " to " +
               std::to_string(hs.term);
      }
      if (hs.commit > s.last_index) {
        return "hard state commit " + std::to_string(hs.commit) + " is past the last index " +
               std::to_string(s.last_index);
      }
      s.hard_state = hs;
      return "";
    }
    case RecordType::kSnapshot: {
      const raft::SnapshotMeta& m = r.snapshot;
      if (m.index == UINT64_MAX) return "snapshot marker index is out of range";
      if (s.snapshot && m.index < s.snapshot->index) {
        return "snapshot marker goes back from index " + std::to_string(s.snapshot->index) +
               " to " + std::to_string(m.index);
      }
      if (m.index >= s.last_index) {
        c.reset = true;
        s.last_index = m.index;
        s.last_term = m.term;
        s.first_index = m.index + 1;
        s.first_term = 0;
      }
      s.snapshot = m;
      return "";
    }
  }
  return "unknown record type";
}

std::string_view damage_kind_name(DamageKind kind) {
  return kind == DamageKind::kTornTail ? "torn_tail" : "corruption";
}

std::string WalDamage::describe() const {
  if (missing_start) return "corruption: the start of the log is missing: " + reason;
  std::string s = kind == DamageKind::kTornTail ? "torn tail" : "corruption";
  s += " in segment " + segment;
  if (whole_segment) {
    s += " (the whole segment)";
  } else {
    s += " at offset " + std::to_string(offset);
  }
  s += " after " + index_text(after_index) + ": " + reason;
  if (kind == DamageKind::kTornTail) {
    s += "; " + std::to_string(end_offset - offset) +
         " bytes of an interrupted write follow, with no valid record after them";
  } else if (valid_after) {
    s += "; a valid record";
    if (valid_after_index) s += " (entry " + std::to_string(*valid_after_index) + ")";
    s += " follows at offset " + std::to_string(*valid_after) + ", so this is not a torn tail";
  }
  return s;
}

Result<WalListing> list_wal_dir(const std::string& dir) {
  Result<std::vector<std::string>> names = list_dir(dir);
  if (!names.ok()) return names.status();
  WalListing out;
  for (const std::string& name : *names) {
    SegmentFile f;
    if (parse_segment_file_name(name, &f.seq, &f.first_index)) {
      f.name = name;
      f.path = dir + "/" + name;
      Result<std::uint64_t> size = file_size(f.path);
      f.file_size = size.ok() ? *size : 0;
      out.segments.push_back(std::move(f));
    } else if (name.size() > kTempSuffix.size() &&
               name.substr(name.size() - kTempSuffix.size()) == kTempSuffix &&
               parse_segment_file_name(name.substr(0, name.size() - kTempSuffix.size()), &f.seq,
                                       &f.first_index)) {
      out.temp_files.push_back(name);
    } else {
      out.other_files.push_back(name);
    }
  }
  std::sort(out.segments.begin(), out.segments.end(),
            [](const SegmentFile& a, const SegmentFile& b) { return a.seq < b.seq; });
  return out;
}

Result<WalSummary> scan_wal(const std::string& dir, const RecordVisitor& visit,
                            const ScanOptions& options) {
  Result<WalListing> listing = list_wal_dir(dir);
  if (!listing.ok()) return listing.status();
  WalSummary summary;
  summary.dir = dir;
  summary.temp_files = listing->temp_files;
  summary.other_files = listing->other_files;
  for (SegmentFile& f : listing->segments) summary.segments.push_back(SegmentSummary{.file = f});
  std::unique_ptr<FileSource> current;
  const std::vector<SegmentFile>& files = listing->segments;
  auto get = [&](std::size_t i) -> Result<ByteSource*> {
    Result<FileSource> src = FileSource::open(files[i].path);
    if (!src.ok()) {
      if (src.status().code() == Code::kNotFound) {
        return Status::io_error("segment " + files[i].path +
                                " disappeared while reading (released by a running member?)");
      }
      return src.status();
    }
    current = std::make_unique<FileSource>(std::move(*src));
    return static_cast<ByteSource*>(current.get());
  };
  return scan_impl(std::move(summary), get, visit, options);
}

Result<WalSummary> scan_segments(const std::vector<SegmentFile>& files,
                                 const std::vector<ByteSource*>& sources,
                                 const RecordVisitor& visit, const ScanOptions& options) {
  KVC_CHECK_EQ(files.size(), sources.size());
  WalSummary summary;
  for (const SegmentFile& f : files) summary.segments.push_back(SegmentSummary{.file = f});
  auto get = [&](std::size_t i) -> Result<ByteSource*> { return sources[i]; };
  return scan_impl(std::move(summary), get, visit, options);
}

}  // namespace kvc::storage
