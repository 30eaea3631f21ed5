#include "kvc/storage/wal.h"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <deque>

#include "kvc/storage/wal_mutation.h"

namespace kvc::storage {

#ifdef KVC_MUTATIONS
WalMutation g_wal_mutation = WalMutation::kNone;
#endif

namespace {

constexpr std::size_t kZeroChunk = 1u << 20;

// Writes zeros over [from, to) of `fd`.
Status write_zeros(int fd, std::uint64_t from, std::uint64_t to, const std::string& path) {
  const std::string zeros(static_cast<std::size_t>(std::min<std::uint64_t>(kZeroChunk, to - from)),
                          '\0');
  while (from < to) {
    const std::size_t n =
        static_cast<std::size_t>(std::min<std::uint64_t>(zeros.size(), to - from));
    KVC_RETURN_IF_ERROR(pwrite_all(fd, std::string_view(zeros).substr(0, n), from, path));
    from += n;
  }
  return Status();
}

// Wal::open's steps.

// Removes the unfinished segment creations `temp_files` (a crash during create_segment) from
// `dir`, noting each in `report`.
Status remove_temp_files(const std::string& dir, const std::vector<std::string>& temp_files,
                         RecoveryReport& report) {
  for (const std::string& tmp : temp_files) {
    const std::string path = dir + "/" + tmp;
    KVC_RETURN_IF_ERROR(remove_file(path, "remove unfinished segment " + path));
    spdlog::warn("wal removed unfinished segment path={}", path);
    report.removed_temp_files.push_back(tmp);
  }
  if (!temp_files.empty()) KVC_RETURN_IF_ERROR(fsync_dir(dir));
  return Status();
}

// Keeps `entries` equal to the entries after the newest snapshot marker read so far, with
// overwrites applied as they come.
void collect_entries(std::deque<raft::Entry>& entries, const ScannedRecord& r) {
  if (r.record.type == RecordType::kEntry) {
    const raft::Entry& e = r.record.entry;
    if (r.change.replaced_to != 0) {
      while (!entries.empty() && entries.back().index >= e.index) entries.pop_back();
    }
    KVC_CHECK(entries.empty() || entries.back().index + 1 == e.index,
              "recovered entries are not contiguous");
    entries.push_back(e);
  } else if (r.record.type == RecordType::kSnapshot) {
    if (r.change.reset) {
      entries.clear();
    } else {
      while (!entries.empty() && entries.front().index <= r.record.snapshot.index) {
        entries.pop_front();
      }
    }
  }
}

// A torn tail: the last write before a crash never completed. Zeroes it so the next record
// goes where it began and no fragment of it can be read later.
Status zero_torn_tail(const WalDamage& d) {
  Result<UniqueFd> fd = open_file(d.path, O_RDWR);
  if (!fd.ok()) return fd.status();
  KVC_RETURN_IF_ERROR(write_zeros(fd->get(), d.offset, d.end_offset, d.path));
  KVC_RETURN_IF_ERROR(fdatasync_fd(fd->get(), d.path));
  spdlog::warn("wal torn tail truncated path={} offset={} bytes={} last_index={} reason={}", d.path,
               d.offset, d.end_offset - d.offset, d.after_index, d.reason);
  return Status();
}

}  // namespace

std::string RecoveryReport::describe() const {
  std::string s = "recovered " + std::to_string(segments) + " segment(s), " +
                  std::to_string(records) + " record(s)";
  if (torn_tail) {
    s += "; truncated a torn tail of " + std::to_string(torn_tail->end_offset - torn_tail->offset) +
         " bytes at offset " + std::to_string(torn_tail->offset) + " of " + torn_tail->path;
  }
  if (!removed_temp_files.empty()) {
    s += "; removed " + std::to_string(removed_temp_files.size()) + " unfinished segment file(s)";
  }
  return s;
}

Result<OpenedWal> Wal::open(const std::string& dir, const WalOptions& options) {
  if (options.segment_bytes < kMinSegmentBytes) {
    return Status::invalid_argument("wal segment size " + std::to_string(options.segment_bytes) +
                                    " is below the minimum of " + std::to_string(kMinSegmentBytes) +
                                    " bytes");
  }
  KVC_RETURN_IF_ERROR(make_dirs(dir, 0700));
  RecoveredLog recovered;
  Result<WalListing> listing = list_wal_dir(dir);
  if (!listing.ok()) return listing.status();
  KVC_RETURN_IF_ERROR(remove_temp_files(dir, listing->temp_files, recovered.report));
  // Entries after the newest marker seen so far, with overwrites applied as they come.
  std::deque<raft::Entry> entries;
  auto visit = [&entries](const ScannedRecord& r) -> Status {
    collect_entries(entries, r);
    return Status();
  };
  Result<WalSummary> scanned = scan_wal(dir, visit);
  if (!scanned.ok()) return scanned.status();
  if (scanned->damage) {
    // A read that returned damaged bytes once (a flaky disk, controller or cable) looks exactly
    // like a torn tail or a damaged record, and zeroing a "torn tail" would destroy an intact
    // record that may have been acknowledged and applied. Damage on the medium reads the same
    // every time: read the log once more and trust the second reading when it differs. (Only
    // when something looks wrong, so the cost of reading the log twice is paid rarely.)
    std::deque<raft::Entry> again_entries;
    Result<WalSummary> again = scan_wal(dir, [&again_entries](const ScannedRecord& r) -> Status {
      collect_entries(again_entries, r);
      return Status();
    });
    if (again.ok() && (!again->damage || again->damage->offset != scanned->damage->offset ||
                       again->damage->kind != scanned->damage->kind)) {
      spdlog::warn(
          "wal read twice gave two answers: the first reading found {} at offset {} of {}, the "
          "second {}; keeping the second (a read error, not a torn write)",
          scanned->damage->reason, scanned->damage->offset, scanned->damage->path,
          again->damage ? again->damage->describe() : std::string("no damage"));
      scanned = std::move(again);
      entries = std::move(again_entries);
    }
  }
  WalSummary& summary = *scanned;

  if (summary.damage && summary.damage->kind == DamageKind::kCorruption) {
    return Status::corruption("wal " + dir + ": " + summary.damage->describe() +
                              "; refusing to start on a damaged log (inspect it with 'kvc-wal "
                              "verify " +
                              dir + "'; repair is described in kvc-wal(1))");
  }
  Wal wal(dir, options);
  if (summary.damage) {
    KVC_RETURN_IF_ERROR(zero_torn_tail(*summary.damage));
    recovered.report.torn_tail = *summary.damage;
  }
  recovered.report.segments = summary.segments.size();
  recovered.report.records = summary.records;
  recovered.report.bytes_used = summary.bytes_used;

  wal.log_ = summary.log;
  for (const SegmentSummary& s : summary.segments) {
    wal.segments_.push_back(Segment{.seq = s.header.seq,
                                    .first_index = s.header.first_index,
                                    .path = s.file.path,
                                    .max_index = s.max_index,
                                    .used_bytes = s.used_bytes});
  }
  if (wal.segments_.empty()) {
    KVC_RETURN_IF_ERROR(wal.create_segment(1, wal.log_.last_index + 1, 0));
  } else {
    const SegmentSummary& last = summary.segments.back();
    Result<UniqueFd> fd = open_file(last.file.path, O_RDWR);
    if (!fd.ok()) return fd.status();
    wal.fd_ = std::move(*fd);
    wal.salt_ = last.header.salt;
    wal.offset_ = last.used_bytes;
    wal.capacity_ = std::max(last.file.file_size, last.used_bytes);
    // What was read may still be only in the page cache (the previous process crashed before
    // its sync): make it durable before anyone acts on it.
    KVC_RETURN_IF_ERROR(fdatasync_fd(wal.fd_.get(), last.file.path));
    KVC_RETURN_IF_ERROR(fsync_dir(dir));
  }
  wal.durable_snapshot_ = wal.log_.snapshot;
  wal.publish_bytes_used();

  recovered.hard_state = summary.log.hard_state;
  recovered.snapshot = summary.log.snapshot;
  recovered.entries.assign(std::make_move_iterator(entries.begin()),
                           std::make_move_iterator(entries.end()));
  if (!recovered.entries.empty()) {
    KVC_CHECK_EQ(recovered.entries.back().index, wal.log_.last_index);
  }
  return OpenedWal{std::move(wal), std::move(recovered)};
}

Status Wal::fail(Status s) {
  failure_ = Status::io_error(s.message() +
                              "; the write-ahead log stopped (the member must restart; data "
                              "written since the last successful sync may be lost)");
  spdlog::error("wal failed dir={} error={}", dir_, failure_.message());
  return failure_;
}

void Wal::publish_bytes_used() {
  std::uint64_t sum = 0;
  for (std::size_t i = 0; i + 1 < segments_.size(); ++i) sum += segments_[i].used_bytes;
  if (!segments_.empty()) sum += offset_;
  bytes_used_->store(sum, std::memory_order_relaxed);
}

Status Wal::append(const std::optional<raft::HardState>& hard_state,
                   std::span<const raft::Entry> entries) {
  if (!failure_.ok()) return failure_;
  for (std::size_t i = 1; i < entries.size(); ++i) {
    if (entries[i].index != entries[i - 1].index + 1) {
      return Status::invalid_argument("wal append: entries are not consecutive (" +
                                      std::to_string(entries[i - 1].index) + " then " +
                                      std::to_string(entries[i].index) + "); nothing was written");
    }
  }
  return write_records(nullptr, entries, hard_state);
}

Status Wal::save_snapshot(const raft::SnapshotMeta& meta) {
  if (!failure_.ok()) return failure_;
  return write_records(&meta, {}, std::nullopt);
}

Status Wal::write_records(const raft::SnapshotMeta* marker, std::span<const raft::Entry> entries,
                          const std::optional<raft::HardState>& hard_state) {
  LogState next = log_;
  std::uint64_t need = 0;
  auto check = [&](const Record& r) -> Status {
    if (std::string why = apply_log_rules(next, r, nullptr); !why.empty()) {
      return Status::invalid_argument("wal append: " + why + "; nothing was written");
    }
    return Status();
  };
  Record marker_record;
  if (marker != nullptr) {
    marker_record = Record::of(*marker);
    KVC_RETURN_IF_ERROR(check(marker_record));
    need += framed_size(marker_record);
  }
  Record probe;  // an entry's index and term: all the rules look at
  probe.type = RecordType::kEntry;
  for (const raft::Entry& e : entries) {
    if (e.data.size() > kMaxRecordPayloadBytes - kEntryPayloadFixedBytes) {
      return Status::invalid_argument("wal append: entry " + std::to_string(e.index) + " has " +
                                      std::to_string(e.data.size()) +
                                      " bytes of data, over the limit; nothing was written");
    }
    probe.entry.index = e.index;
    probe.entry.term = e.term;
    KVC_RETURN_IF_ERROR(check(probe));
    need += kRecordHeaderBytes + kEntryPayloadFixedBytes + e.data.size();
  }
  if (hard_state) {
    KVC_RETURN_IF_ERROR(check(Record::of(*hard_state)));
    need += kRecordHeaderBytes + kHardStatePayloadBytes;
  }
  if (need == 0) return Status();
  if (offset_ + need > capacity_) KVC_RETURN_IF_ERROR(rotate(need));

  scratch_.clear();
  scratch_.reserve(need);
  if (marker != nullptr) append_record(scratch_, salt_, marker_record);
  for (const raft::Entry& e : entries) append_entry_record(scratch_, salt_, e);
  if (hard_state) append_record(scratch_, salt_, Record::of(*hard_state));
  KVC_CHECK_EQ(scratch_.size(), need);

  Segment& seg = segments_.back();
  if (Status s = pwrite_all(fd_.get(), scratch_, offset_, seg.path); !s.ok()) {
    // Part of the batch may be in the file. Remove it durably, so the log is exactly as before
    // this call and no half batch can be read after a crash.
    if (Status undo = undo_write(need); !undo.ok()) {
      return fail(Status::io_error(s.message() + "; undoing it failed: " + undo.message()));
    }
    if (s.code() == Code::kResourceExhausted) {
      return Status::resource_exhausted(
          s.message() + " (nothing of this append was kept; retry when there is space)");
    }
    return fail(s);
  }
  for (const raft::Entry& e : entries) seg.max_index = std::max(seg.max_index, e.index);
  log_ = std::move(next);
  offset_ += need;
  seg.used_bytes = offset_;
  unsynced_ = true;
  KVC_CHECK_LE(offset_, capacity_);
  publish_bytes_used();
  return Status();
}

Status Wal::undo_write(std::uint64_t bytes) {
  const std::string& path = segments_.back().path;
  if (!write_zeros(fd_.get(), offset_, offset_ + bytes, path).ok()) {
    // Not even an overwrite goes through: cut the file back to the end of the log instead, then
    // try to preallocate again (without it, the next append starts a new segment).
    KVC_RETURN_IF_ERROR(truncate_file(fd_.get(), offset_, path,
                                      "truncate " + path + " to " + std::to_string(offset_)));
    const std::uint64_t wanted = capacity_;
    capacity_ = offset_;
    if (preallocate(fd_.get(), offset_, wanted - offset_) == 0) {
      capacity_ = wanted;
    }
  }
  KVC_RETURN_IF_ERROR(fdatasync_fd(fd_.get(), path));
  unsynced_ = false;
  durable_snapshot_ = log_.snapshot;
  return Status();
}

Status Wal::sync() {
  if (!failure_.ok()) return failure_;
  if (!unsynced_) return Status();
  if (!KVC_WAL_MUTATED(kSyncSkipsFdatasync)) {
    if (Status s = fdatasync_fd(fd_.get(), segments_.back().path); !s.ok()) return fail(s);
  }
  unsynced_ = false;
  durable_snapshot_ = log_.snapshot;
  return Status();
}

Status Wal::rotate(std::uint64_t need) {
  // Readers call damage in any segment but the last corruption, so everything in the segment
  // being left must be durable before a later segment exists.
  KVC_RETURN_IF_ERROR(sync());
  return create_segment(segments_.back().seq + 1, log_.last_index + 1, need);
}

Status Wal::create_segment(std::uint64_t seq, std::uint64_t first_index, std::uint64_t need) {
  SegmentHeader h{.salt = random_salt(), .seq = seq, .first_index = first_index};
  // The newest marker and hard state start every segment, so they survive the release of the
  // segments that held them first.
  std::string head = encode_segment_header(h);
  if (log_.snapshot) append_record(head, h.salt, Record::of(*log_.snapshot));
  if (log_.hard_state) append_record(head, h.salt, Record::of(*log_.hard_state));
  const std::uint64_t size = std::max<std::uint64_t>(options_.segment_bytes, head.size() + need);
  const std::string path = dir_ + "/" + segment_file_name(seq, first_index);
  const std::string tmp = path + std::string(kTempSuffix);

  (void)remove_file(tmp);
  Result<UniqueFd> fd = open_file(tmp, O_RDWR | O_CREAT | O_EXCL, 0644);
  if (!fd.ok()) return fd.status();
  auto abandon = [&](Status s) {
    fd->reset();
    (void)remove_file(tmp);
    return s;
  };
  // Preallocate, so an fdatasync after an append has no file size to flush.
  if (const int err = preallocate(fd->get(), 0, size); err != 0) {
    if (err != EOPNOTSUPP && err != ENOSYS) {
      return abandon(errno_status(
          "preallocate " + std::to_string(size) + " bytes for wal segment " + tmp, err));
    }
    if (Status s = truncate_file(fd->get(), size, tmp, "extend wal segment " + tmp); !s.ok()) {
      return abandon(s);
    }
  }
  if (Status s = pwrite_all(fd->get(), head, 0, tmp); !s.ok()) return abandon(s);
  if (Status s = fdatasync_fd(fd->get(), tmp); !s.ok()) return fail(abandon(s));
  if (Status s = rename_file(tmp, path); !s.ok()) return abandon(s);
  if (Status s = fsync_dir(dir_); !s.ok()) return fail(s);

  fd_ = std::move(*fd);
  salt_ = h.salt;
  offset_ = head.size();
  capacity_ = size;
  unsynced_ = false;
  segments_.push_back(
      Segment{.seq = seq, .first_index = first_index, .path = path, .used_bytes = offset_});
  publish_bytes_used();
  spdlog::debug("wal segment created path={} first_index={} bytes={}", path, first_index, size);
  return Status();
}

Status Wal::release_to(std::uint64_t index) {
  if (!failure_.ok()) return failure_;
  const std::uint64_t limit = durable_snapshot_ ? durable_snapshot_->index + 1 : 1;
  if (index > limit) {
    return Status::failed_precondition("wal release_to(" + std::to_string(index) +
                                       "): only entries below " + std::to_string(limit) +
                                       " are covered by a synced snapshot marker");
  }
  while (segments_.size() > 1 && segments_.front().max_index < index) {
    const std::string path = segments_.front().path;
    KVC_RETURN_IF_ERROR(remove_file(path, "remove wal segment " + path));
    segments_.erase(segments_.begin());
    publish_bytes_used();
    // One directory sync per removal keeps the remaining segments a suffix after any crash.
    if (Status s = fsync_dir(dir_); !s.ok()) return fail(s);
    spdlog::debug("wal segment released path={} below_index={}", path, index);
  }
  return Status();
}

}  // namespace kvc::storage
