#include "kvc/storage/snapshot.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cinttypes>
#include <cstdio>

#include "kvc/common/coding.h"
#include "kvc/common/crc32c.h"
#include "kvc/common/text.h"
#include "kvc/storage/command.h"

namespace kvc::storage {
namespace {

std::string parent_dir(const std::string& path) {
  const std::size_t slash = path.find_last_of('/');
  if (slash == std::string::npos) return ".";
  return slash == 0 ? "/" : path.substr(0, slash);
}

std::string prologue(std::uint32_t version) {
  std::string p(kSnapshotMagic);
  put_u32_le(p, version);
  put_u32_le(p, crc32c::mask(crc32c::value(p)));
  return p;
}

std::string block_header(SnapshotBlockType type, std::string_view payload) {
  std::string h;
  h += static_cast<char>(type);
  h.append(3, '\0');
  put_u32_le(h, static_cast<std::uint32_t>(payload.size()));
  put_u32_le(h, crc32c::mask(crc32c::value(payload)));
  put_u32_le(h, crc32c::mask(crc32c::value(h)));
  return h;
}

std::string encode_meta(const SnapshotHeader& h) {
  std::string out;
  put_varint(out, h.index);
  put_varint(out, h.term);
  put_varint(out, h.revision);
  put_varint(out, h.created_unix_ms);
  const std::string m = encode_membership(h.membership);
  put_varint(out, m.size());
  out += m;
  if (h.lease_count != 0) put_varint(out, h.lease_count);
  return out;
}

void append_lease(std::string& out, const Lease& l) {
  put_varint(out, l.id);
  put_varint(out, l.ttl);
  put_varint(out, l.granted_index);
  put_varint(out, l.keys.size());
  for (const std::string& k : l.keys) put_string(out, k);
}

// A lease's fields and keys, or false when malformed (kvc-snap(5), "LEASES").
bool parse_lease(std::string_view& in, Lease& l) {
  std::uint64_t n = 0;
  if (!get_varint(in, l.id) || !get_varint(in, l.ttl) || !get_varint(in, l.granted_index) ||
      !get_varint(in, n) || n > in.size() || l.id == 0 || l.ttl == 0) {
    return false;
  }
  l.keys.assign(static_cast<std::size_t>(n), std::string());
  for (std::size_t i = 0; i < l.keys.size(); ++i) {
    if (!get_string(in, l.keys[i]) || l.keys[i].empty() || l.keys[i].size() > kMaxKeyBytes ||
        (i > 0 && !(l.keys[i - 1] < l.keys[i]))) {
      return false;
    }
  }
  return true;
}

void append_record(std::string& out, const KeyValue& kv) {
  put_varint(out, kv.key.size());
  out += kv.key;
  put_varint(out, kv.value.size());
  out += kv.value;
  put_varint(out, kv.create_revision);
  put_varint(out, kv.mod_revision);
  put_varint(out, kv.version);
}

bool get_bytes(std::string_view& in, std::string& s) {
  std::uint64_t n = 0;
  if (!get_varint(in, n) || n > in.size()) return false;
  s.assign(in.data(), static_cast<std::size_t>(n));
  in.remove_prefix(static_cast<std::size_t>(n));
  return true;
}

bool parse_record(std::string_view& in, KeyValue& kv) {
  return get_bytes(in, kv.key) && get_bytes(in, kv.value) && get_varint(in, kv.create_revision) &&
         get_varint(in, kv.mod_revision) && get_varint(in, kv.version);
}

// The rules every record obeys (kvc-snap(5), "RECORDS"); empty when it does.
std::string record_problem(const KeyValue& kv, const std::string& prev_key, bool first,
                           const SnapshotHeader& h) {
  if (kv.key.empty()) return "empty key";
  if (kv.key.size() > kMaxKeyBytes) return "key longer than " + std::to_string(kMaxKeyBytes);
  if (kv.value.size() > kMaxValueBytes) {
    return "value longer than " + std::to_string(kMaxValueBytes);
  }
  if (!first && kv.key <= prev_key) return "keys not strictly ascending";
  if (kv.create_revision == 0 || kv.create_revision > kv.mod_revision) {
    return "create_revision " + std::to_string(kv.create_revision) + " not in 1..mod_revision " +
           std::to_string(kv.mod_revision);
  }
  if (kv.mod_revision > h.revision) {
    return "mod_revision " + std::to_string(kv.mod_revision) + " above the snapshot's revision " +
           std::to_string(h.revision);
  }
  if (kv.version == 0 || kv.version > kv.mod_revision - kv.create_revision + 1) {
    return "version " + std::to_string(kv.version) + " impossible for revisions " +
           std::to_string(kv.create_revision) + ".." + std::to_string(kv.mod_revision);
  }
  return "";
}

bool parse_hex16(std::string_view s, std::uint64_t& v) {
  const std::optional<std::uint64_t> x = s.size() == 16 ? parse_hex_u64(s) : std::nullopt;
  if (x) v = *x;
  return x.has_value();
}

bool ends_with(std::string_view s, std::string_view suffix) {
  return s.size() >= suffix.size() && s.substr(s.size() - suffix.size()) == suffix;
}

}  // namespace

// ---- writer ----

SnapshotWriter::SnapshotWriter(std::string path, UniqueFd fd, SnapshotHeader header,
                               std::size_t block_target)
    : path_(std::move(path)),
      tmp_path_(path_ + ".tmp"),
      fd_(std::move(fd)),
      header_(std::move(header)),
      block_target_(std::max<std::size_t>(block_target, 1)) {}

SnapshotWriter::~SnapshotWriter() {
  if (!finished_) {
    fd_.reset();
    (void)remove_file(tmp_path_);
  }
}

Result<std::unique_ptr<SnapshotWriter>> SnapshotWriter::create(const std::string& path,
                                                               const SnapshotHeader& header,
                                                               std::size_t block_target) {
  if (header.revision > header.index) {
    return Status::invalid_argument("snapshot revision " + std::to_string(header.revision) +
                                    " is above its index " + std::to_string(header.index));
  }
  if (Status s = validate_membership(header.membership); !s.ok()) return s;
  Result<UniqueFd> fd = open_file(path + ".tmp", O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (!fd.ok()) return fd.status();
  std::unique_ptr<SnapshotWriter> w(new SnapshotWriter(path, std::move(*fd), header, block_target));
  const std::string p = prologue(header.lease_count != 0 ? 2 : 1);
  KVC_RETURN_IF_ERROR(write_all(w->fd_.get(), p, w->tmp_path_));
  w->file_crc_ = crc32c::value(p);
  w->offset_ = p.size();
  KVC_RETURN_IF_ERROR(w->write_block(SnapshotBlockType::kMeta, encode_meta(header)));
  w->block_.reserve(std::min(w->block_target_, kSnapshotBlockTargetBytes) + 1024);
  return w;
}

Status SnapshotWriter::write_block(SnapshotBlockType type, std::string_view payload) {
  KVC_CHECK_LE(payload.size(), kSnapshotMaxBlockBytes);
  std::string buf = block_header(type, payload);
  buf.append(payload);
  KVC_RETURN_IF_ERROR(write_all(fd_.get(), buf, tmp_path_));
  file_crc_ = crc32c::extend(file_crc_, buf.data(), buf.size());
  offset_ += buf.size();
  return Status();
}

Status SnapshotWriter::add(const KeyValue& kv) {
  KVC_CHECK(!finished_, "add after finish");
  if (std::string p = record_problem(kv, last_key_, records_ == 0, header_); !p.empty()) {
    return Status::invalid_argument("snapshot " + path_ + ": record " + std::to_string(records_) +
                                    ": " + p);
  }
  append_record(block_, kv);
  last_key_ = kv.key;
  ++records_;
  if (block_.size() >= block_target_) {
    KVC_RETURN_IF_ERROR(write_block(SnapshotBlockType::kRecords, block_));
    block_.clear();
  }
  return Status();
}

Status SnapshotWriter::add_lease(const Lease& lease) {
  KVC_CHECK(!finished_, "add_lease after finish");
  if (lease.id == 0 || lease.ttl == 0 || lease.id <= last_lease_) {
    return Status::invalid_argument("snapshot " + path_ + ": lease " + id_hex(lease.id) +
                                    ": id 0, ttl 0 or ids not ascending");
  }
  if (leases_ == header_.lease_count) {
    return Status::invalid_argument("snapshot " + path_ + ": more leases than the header's " +
                                    std::to_string(header_.lease_count));
  }
  if (leases_ == 0 && !block_.empty()) {  // the records end here
    KVC_RETURN_IF_ERROR(write_block(SnapshotBlockType::kRecords, block_));
    block_.clear();
  }
  append_lease(block_, lease);
  last_lease_ = lease.id;
  ++leases_;
  if (block_.size() >= block_target_) {
    KVC_RETURN_IF_ERROR(write_block(SnapshotBlockType::kLeases, block_));
    block_.clear();
  }
  return Status();
}

Result<SnapshotInfo> SnapshotWriter::finish() {
  KVC_CHECK(!finished_, "finish twice");
  if (leases_ != header_.lease_count) {
    return Status::invalid_argument("snapshot " + path_ + ": " + std::to_string(leases_) +
                                    " leases added, the header says " +
                                    std::to_string(header_.lease_count));
  }
  if (!block_.empty()) {
    KVC_RETURN_IF_ERROR(write_block(
        leases_ != 0 ? SnapshotBlockType::kLeases : SnapshotBlockType::kRecords, block_));
    block_.clear();
  }
  const std::uint32_t crc_before_trailer = file_crc_;
  std::string trailer;
  put_u64_le(trailer, records_);
  put_u64_le(trailer, offset_);
  put_u32_le(trailer, crc32c::mask(crc_before_trailer));
  KVC_RETURN_IF_ERROR(write_block(SnapshotBlockType::kTrailer, trailer));
  KVC_RETURN_IF_ERROR(fsync_fd(fd_.get(), tmp_path_));
  KVC_RETURN_IF_ERROR(close_fd(fd_.release(), tmp_path_));
  KVC_RETURN_IF_ERROR(rename_file(tmp_path_, path_));
  finished_ = true;
  KVC_RETURN_IF_ERROR(fsync_dir(parent_dir(path_)));
  SnapshotInfo info;
  info.path = path_;
  info.header = header_;
  info.record_count = records_;
  info.size_bytes = offset_;
  info.file_crc = crc_before_trailer;
  return info;
}

// ---- reader ----

std::string_view snapshot_problem_name(SnapshotProblem p) {
  switch (p) {
    case SnapshotProblem::kNone:
      return "ok";
    case SnapshotProblem::kTruncated:
      return "truncated";
    case SnapshotProblem::kCorrupt:
      return "corrupt";
    case SnapshotProblem::kUnsupported:
      return "unsupported";
  }
  return "unknown";
}

Result<SnapshotReader> SnapshotReader::open(const std::string& path, SnapshotProblem* problem) {
  if (problem != nullptr) *problem = SnapshotProblem::kNone;
  Result<UniqueFd> fd = open_file(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  Result<FileInfo> info = fd_info(fd->get(), path);
  if (!info.ok()) return info.status();
  if (!info->regular) return Status::invalid_argument(path + ": not a regular file");
  SnapshotReader r;
  r.path_ = path;
  r.fd_ = std::move(*fd);
  r.size_ = info->size;
  return start(std::move(r), problem);
}

Result<SnapshotReader> SnapshotReader::from_bytes(std::string bytes, SnapshotProblem* problem) {
  if (problem != nullptr) *problem = SnapshotProblem::kNone;
  SnapshotReader r;
  r.path_ = "<memory>";
  r.bytes_ = std::move(bytes);
  r.size_ = r.bytes_.size();
  return start(std::move(r), problem);
}

Result<SnapshotReader> SnapshotReader::start(SnapshotReader r, SnapshotProblem* problem) {
  auto failed = [&](const Status& s) -> Result<SnapshotReader> {
    if (problem != nullptr) *problem = r.problem_;
    return s;
  };
  Result<std::string> pro = r.read_at(0, kSnapshotPrologueBytes);
  if (!pro.ok()) return failed(pro.status());
  const std::string_view p = *pro;
  const std::size_t magic_seen = std::min(p.size(), kSnapshotMagic.size());
  if (p.substr(0, magic_seen) != kSnapshotMagic.substr(0, magic_seen)) {
    return failed(r.fail(SnapshotProblem::kCorrupt, 0, "not a kvc snapshot (bad magic)"));
  }
  if (p.size() < kSnapshotPrologueBytes) {
    return failed(
        r.fail(SnapshotProblem::kTruncated, p.size(), "the file ends inside the prologue"));
  }
  if (crc32c::mask(crc32c::value(p.substr(0, 12))) != get_u32_le(p.data() + 12)) {
    return failed(r.fail(SnapshotProblem::kCorrupt, 8, "prologue checksum mismatch"));
  }
  const std::uint32_t version = get_u32_le(p.data() + 8);
  r.version_ = version;
  if (version < 1 || version > kSnapshotVersion) {
    return failed(r.fail(SnapshotProblem::kUnsupported, 8,
                         "snapshot format version " + std::to_string(version) +
                             " is not supported by this kvc (supports 1 to " +
                             std::to_string(kSnapshotVersion) + ")"));
  }
  Block meta;
  if (Status s = r.read_block(kSnapshotPrologueBytes, meta); !s.ok()) return failed(s);
  if (meta.type != SnapshotBlockType::kMeta) {
    return failed(
        r.fail(SnapshotProblem::kCorrupt, meta.offset, "the first block is not a meta block"));
  }
  if (Status s = r.parse_meta(meta); !s.ok()) return failed(s);
  r.first_records_offset_ = meta.offset + kSnapshotBlockHeaderBytes + meta.payload.size();
  std::uint32_t crc = crc32c::value(p);
  crc = crc32c::extend(crc, meta.header.data(), meta.header.size());
  r.crc_after_meta_ = crc32c::extend(crc, meta.payload.data(), meta.payload.size());
  return r;
}

Result<std::string> SnapshotReader::read_at(std::uint64_t offset, std::size_t n) const {
  if (!fd_.valid()) {
    if (offset >= bytes_.size()) return std::string();
    return bytes_.substr(static_cast<std::size_t>(offset), n);
  }
  return pread_up_to(fd_.get(), n, offset, path_);
}

Status SnapshotReader::fail(SnapshotProblem p, std::uint64_t offset, const std::string& what) {
  problem_ = p;
  const std::string where = path_ + ": " + std::string(snapshot_problem_name(p)) + " at offset " +
                            std::to_string(offset) + ": " + what;
  if (p == SnapshotProblem::kUnsupported) return Status::failed_precondition(where);
  return Status::corruption(where);
}

Status SnapshotReader::read_block(std::uint64_t offset, Block& b) {
  b.offset = offset;
  const std::uint64_t remaining = offset <= size_ ? size_ - offset : 0;
  if (remaining == 0) {
    return fail(SnapshotProblem::kTruncated, offset, "the file ends before its trailer block");
  }
  if (remaining < kSnapshotBlockHeaderBytes) {
    return fail(SnapshotProblem::kTruncated, offset, "the file ends inside a block header");
  }
  Result<std::string> hdr = read_at(offset, kSnapshotBlockHeaderBytes);
  if (!hdr.ok()) return hdr.status();
  const std::string_view h = *hdr;
  if (h.size() < kSnapshotBlockHeaderBytes) {
    return fail(SnapshotProblem::kTruncated, offset, "the file ends inside a block header");
  }
  if (crc32c::mask(crc32c::value(h.substr(0, 12))) != get_u32_le(h.data() + 12)) {
    return fail(SnapshotProblem::kCorrupt, offset, "block header checksum mismatch");
  }
  const auto type = static_cast<std::uint8_t>(h[0]);
  if (h[1] != 0 || h[2] != 0 || h[3] != 0) {
    return fail(SnapshotProblem::kCorrupt, offset, "nonzero reserved bytes in a block header");
  }
  if (type < 1 || type > (version_ >= 2 ? 4 : 3)) {
    return fail(SnapshotProblem::kCorrupt, offset, "unknown block type " + std::to_string(type));
  }
  b.type = static_cast<SnapshotBlockType>(type);
  const std::uint32_t len = get_u32_le(h.data() + 4);
  if (len > kSnapshotMaxBlockBytes) {
    return fail(SnapshotProblem::kCorrupt, offset,
                "block of " + std::to_string(len) + " bytes exceeds the limit");
  }
  if (remaining - kSnapshotBlockHeaderBytes < len) {
    return fail(SnapshotProblem::kTruncated, offset,
                "the file ends inside a block of " + std::to_string(len) + " bytes (" +
                    std::to_string(remaining - kSnapshotBlockHeaderBytes) + " present)");
  }
  Result<std::string> payload = read_at(offset + kSnapshotBlockHeaderBytes, len);
  if (!payload.ok()) return payload.status();
  if (payload->size() < len) {
    return fail(SnapshotProblem::kTruncated, offset, "the file shrank while being read");
  }
  if (crc32c::mask(crc32c::value(*payload)) != get_u32_le(h.data() + 8)) {
    return fail(SnapshotProblem::kCorrupt, offset, "block payload checksum mismatch");
  }
  b.header = std::move(*hdr);
  b.payload = std::move(*payload);
  return Status();
}

Status SnapshotReader::parse_meta(const Block& b) {
  std::string_view in = b.payload;
  SnapshotHeader h;
  std::string membership;
  if (!get_varint(in, h.index) || !get_varint(in, h.term) || !get_varint(in, h.revision) ||
      !get_varint(in, h.created_unix_ms) || !get_bytes(in, membership)) {
    return fail(SnapshotProblem::kCorrupt, b.offset, "malformed meta block");
  }
  if (h.revision > h.index) {
    return fail(SnapshotProblem::kCorrupt, b.offset, "meta block revision above its index");
  }
  if (version_ >= 2 && (!get_varint(in, h.lease_count) || h.lease_count == 0)) {
    return fail(SnapshotProblem::kCorrupt, b.offset, "version 2 meta block without a lease count");
  }
  Result<Membership> m = decode_membership(membership);
  if (!m.ok()) return fail(SnapshotProblem::kCorrupt, b.offset, m.status().message());
  h.membership = std::move(*m);
  header_ = std::move(h);
  return Status();
}

Status SnapshotReader::for_each(const std::function<Status(const KeyValue&)>& fn,
                                const ProgressFn& progress,
                                const std::function<Status(const Lease&)>& lease_fn) {
  problem_ = SnapshotProblem::kNone;
  std::uint64_t offset = first_records_offset_;
  std::uint32_t crc = crc_after_meta_;
  std::uint64_t count = 0;
  std::uint64_t leases = 0, last_lease = 0;
  Lease lease;
  std::string last_key;
  KeyValue kv;
  for (;;) {
    Block b;
    KVC_RETURN_IF_ERROR(read_block(offset, b));
    if (b.type == SnapshotBlockType::kMeta) {
      return fail(SnapshotProblem::kCorrupt, offset, "a second meta block");
    }
    if (b.type == SnapshotBlockType::kTrailer) {
      if (b.payload.size() != kSnapshotTrailerPayloadBytes) {
        return fail(SnapshotProblem::kCorrupt, offset, "trailer of the wrong size");
      }
      const std::uint64_t want_count = get_u64_le(b.payload.data());
      const std::uint64_t want_offset = get_u64_le(b.payload.data() + 8);
      const std::uint32_t want_crc = crc32c::unmask(get_u32_le(b.payload.data() + 16));
      if (want_offset != offset) {
        return fail(SnapshotProblem::kCorrupt, offset,
                    "the trailer says it starts at offset " + std::to_string(want_offset));
      }
      if (want_count != count) {
        return fail(SnapshotProblem::kCorrupt, offset,
                    "the trailer counts " + std::to_string(want_count) +
                        " records, the file holds " + std::to_string(count));
      }
      if (want_crc != crc) {
        return fail(SnapshotProblem::kCorrupt, offset, "whole-file checksum mismatch");
      }
      if (leases != header_.lease_count) {
        return fail(SnapshotProblem::kCorrupt, offset,
                    "the meta block counts " + std::to_string(header_.lease_count) +
                        " leases, the file holds " + std::to_string(leases));
      }
      const std::uint64_t end = offset + kSnapshotBlockHeaderBytes + b.payload.size();
      if (end != size_) {
        return fail(SnapshotProblem::kCorrupt, end,
                    std::to_string(size_ - end) + " bytes follow the trailer");
      }
      record_count_ = count;
      file_crc_ = crc;
      if (progress) progress(size_, size_);
      return Status();
    }
    if (b.payload.empty()) return fail(SnapshotProblem::kCorrupt, offset, "empty block");
    crc = crc32c::extend(crc, b.header.data(), b.header.size());
    crc = crc32c::extend(crc, b.payload.data(), b.payload.size());
    std::string_view in = b.payload;
    if (b.type == SnapshotBlockType::kLeases) {
      while (!in.empty()) {
        if (!parse_lease(in, lease) || lease.id <= last_lease) {
          return fail(SnapshotProblem::kCorrupt, offset,
                      "lease " + std::to_string(leases) + " is malformed or out of order");
        }
        if (lease_fn) KVC_RETURN_IF_ERROR(lease_fn(lease));
        last_lease = lease.id;
        ++leases;
      }
      offset += kSnapshotBlockHeaderBytes + b.payload.size();
      if (progress) progress(offset, size_);
      continue;
    }
    if (leases != 0) {
      return fail(SnapshotProblem::kCorrupt, offset, "a records block after the leases");
    }
    while (!in.empty()) {
      if (!parse_record(in, kv)) {
        return fail(SnapshotProblem::kCorrupt, offset,
                    "record " + std::to_string(count) + " is malformed");
      }
      if (std::string p = record_problem(kv, last_key, count == 0, header_); !p.empty()) {
        return fail(SnapshotProblem::kCorrupt, offset,
                    "record " + std::to_string(count) + ": " + p);
      }
      KVC_RETURN_IF_ERROR(fn(kv));
      last_key = kv.key;
      ++count;
    }
    offset += kSnapshotBlockHeaderBytes + b.payload.size();
    if (progress) progress(offset, size_);
  }
}

SnapshotInfo SnapshotReader::info() const {
  SnapshotInfo i;
  i.path = path_;
  i.header = header_;
  i.record_count = record_count_;
  i.size_bytes = size_;
  i.file_crc = file_crc_;
  return i;
}

Result<std::string> SnapshotReader::read_chunk(std::uint64_t offset, std::size_t len) const {
  if (offset > size_) {
    return Status::invalid_argument(path_ + ": chunk offset " + std::to_string(offset) +
                                    " is past the end (" + std::to_string(size_) + " bytes)");
  }
  const std::uint64_t n = std::min<std::uint64_t>(len, size_ - offset);
  return read_at(offset, static_cast<std::size_t>(n));
}

Result<VerifyReport> verify_snapshot(const std::string& path, const ProgressFn& progress) {
  VerifyReport rep;
  rep.info.path = path;
  SnapshotProblem problem = SnapshotProblem::kNone;
  Result<SnapshotReader> r = SnapshotReader::open(path, &problem);
  if (!r.ok()) {
    if (problem == SnapshotProblem::kNone) return r.status();
    rep.problem = problem;
    rep.message = r.status().message();
    Result<std::uint64_t> size = file_size(path);
    rep.info.size_bytes = size.value_or(0);
    return rep;
  }
  rep.header_read = true;
  rep.info.header = r->header();
  rep.info.size_bytes = r->size();
  Status s = r->for_each([](const KeyValue&) { return Status(); }, progress);
  if (!s.ok()) {
    if (r->problem() == SnapshotProblem::kNone) return s;
    rep.problem = r->problem();
    rep.message = s.message();
    return rep;
  }
  rep.info = r->info();
  return rep;
}

Result<SnapshotInfo> read_snapshot_info(const std::string& path) {
  Result<SnapshotReader> r = SnapshotReader::open(path);
  if (!r.ok()) return r.status();
  constexpr std::uint64_t kTrailerBytes = kSnapshotBlockHeaderBytes + kSnapshotTrailerPayloadBytes;
  if (r->size() < kTrailerBytes) return Status::corruption(path + ": too short for a trailer");
  Result<std::string> t = r->read_chunk(r->size() - kTrailerBytes, kTrailerBytes);
  if (!t.ok()) return t.status();
  const std::string_view tb = *t;
  const std::string_view payload = tb.substr(kSnapshotBlockHeaderBytes);
  if (tb.size() != kTrailerBytes ||
      static_cast<std::uint8_t>(tb[0]) != static_cast<std::uint8_t>(SnapshotBlockType::kTrailer) ||
      tb.substr(0, kSnapshotBlockHeaderBytes) !=
          block_header(SnapshotBlockType::kTrailer, payload) ||
      get_u64_le(payload.data() + 8) != r->size() - kTrailerBytes) {
    return Status::corruption(path +
                              ": no valid trailer at the end (truncated or corrupt; run "
                              "kvc-snap verify)");
  }
  SnapshotInfo info;
  info.path = path;
  info.header = r->header();
  info.record_count = get_u64_le(payload.data());
  info.size_bytes = r->size();
  info.file_crc = crc32c::unmask(get_u32_le(payload.data() + 16));
  return info;
}

std::string snapshot_file_name(std::uint64_t index, std::uint64_t term) {
  char buf[48];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "-%016" PRIx64 ".snap", index, term);
  return buf;
}

Result<std::vector<SnapshotFile>> list_snapshots(const std::string& dir) {
  Result<std::vector<std::string>> names = list_dir(dir);
  if (!names.ok()) return names.status();
  std::vector<SnapshotFile> out;
  for (const std::string& n : *names) {
    if (n.size() != 38 || n[16] != '-' || !ends_with(n, ".snap")) continue;
    SnapshotFile f;
    if (!parse_hex16(std::string_view(n).substr(0, 16), f.index) ||
        !parse_hex16(std::string_view(n).substr(17, 16), f.term)) {
      continue;
    }
    f.path = dir + "/" + n;
    out.push_back(std::move(f));
  }
  std::sort(out.begin(), out.end(), [](const SnapshotFile& a, const SnapshotFile& b) {
    return a.index != b.index ? a.index > b.index : a.term > b.term;
  });
  return out;
}

Status prune_snapshots(const std::string& dir, std::size_t keep) {
  if (keep == 0) return Status::invalid_argument("prune_snapshots: keep must be at least 1");
  Result<std::vector<SnapshotFile>> files = list_snapshots(dir);
  if (!files.ok()) return files.status();
  bool removed = false;
  for (std::size_t i = keep; i < files->size(); ++i) {
    const std::string& p = (*files)[i].path;
    KVC_RETURN_IF_ERROR(remove_file(p));
    removed = true;
  }
  return removed ? fsync_dir(dir) : Status();
}

Status remove_temp_snapshots(const std::string& dir) {
  Result<std::vector<std::string>> names = list_dir(dir);
  if (!names.ok()) return names.status();
  bool removed = false;
  for (const std::string& n : *names) {
    if (!ends_with(n, ".tmp")) continue;
    const std::string p = dir + "/" + n;
    KVC_RETURN_IF_ERROR(remove_file(p));
    removed = true;
  }
  return removed ? fsync_dir(dir) : Status();
}

Result<SnapshotInfo> adopt_snapshot(const std::string& file, const std::string& dir) {
  Result<VerifyReport> rep = verify_snapshot(file);
  if (!rep.ok()) return rep.status();
  if (rep->problem != SnapshotProblem::kNone) return Status::corruption(rep->message);
  {
    Result<UniqueFd> fd = open_file(file, O_RDONLY);
    if (!fd.ok()) return fd.status();
    KVC_RETURN_IF_ERROR(fsync_fd(fd->get(), file));
  }
  SnapshotInfo info = rep->info;
  info.path = dir + "/" + snapshot_file_name(info.header.index, info.header.term);
  KVC_RETURN_IF_ERROR(rename_file(file, info.path));
  KVC_RETURN_IF_ERROR(fsync_dir(dir));
  return info;
}

Result<std::string> SnapshotChunkSource::read(std::uint64_t receiver, const std::string& path,
                                              std::uint64_t offset, std::uint64_t length,
                                              std::uint64_t size) {
  auto it = open_.find(receiver);
  if (it == open_.end() || offset == 0 || it->second.path != path) {
    Result<UniqueFd> fd = open_file(path, O_RDONLY);
    if (!fd.ok()) {
      open_.erase(receiver);
      return fd.status();
    }
    it = open_.insert_or_assign(receiver, Open{path, std::move(*fd)}).first;
  }
  Result<std::string> chunk = pread_up_to(it->second.fd.get(), length, offset, path);
  if (!chunk.ok() || chunk->size() != length || offset + length >= size) open_.erase(it);
  if (!chunk.ok()) return chunk.status();
  if (chunk->size() != length) return Status::corruption(path + ": short read");
  return chunk;
}

}  // namespace kvc::storage
