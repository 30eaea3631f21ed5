#include "kvc/storage/segment.h"

#include <fcntl.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "kvc/common/coding.h"
#include "kvc/common/crc32c.h"
#include "kvc/common/text.h"

namespace kvc::storage {
namespace {

constexpr std::size_t kWindowBytes = 1u << 20;

bool parse_hex16(std::string_view s, std::uint64_t* v) {
  const std::optional<std::uint64_t> x = s.size() == 16 ? parse_hex_u64(s) : std::nullopt;
  if (x) *v = *x;
  return x.has_value();
}

}  // namespace

std::string encode_segment_header(const SegmentHeader& h) {
  std::string out(kSegmentMagic, sizeof kSegmentMagic);
  put_u32_le(out, h.version);
  put_u32_le(out, h.salt);
  put_u64_le(out, h.seq);
  put_u64_le(out, h.first_index);
  put_u32_le(out, 0);
  put_u32_le(out, crc32c::mask(crc32c::value(out)));
  KVC_CHECK_EQ(out.size(), kSegmentHeaderBytes);
  return out;
}

Result<SegmentHeader> decode_segment_header(std::string_view b) {
  if (b.size() < kSegmentHeaderBytes) {
    return Status::corruption("segment header: file has " + std::to_string(b.size()) +
                              " bytes, shorter than the 40-byte header");
  }
  if (std::memcmp(b.data(), kSegmentMagic, sizeof kSegmentMagic) != 0) {
    return Status::corruption("segment header: bad magic (not a kvc WAL segment)");
  }
  if (crc32c::mask(crc32c::value(b.data(), 36)) != get_u32_le(b.data() + 36)) {
    return Status::corruption("segment header: checksum mismatch");
  }
  SegmentHeader h;
  h.version = get_u32_le(b.data() + 8);
  if (h.version != kWalFormatVersion) {
    return Status::corruption("segment header: format version " + std::to_string(h.version) +
                              " is not supported (this kvc reads version " +
                              std::to_string(kWalFormatVersion) + ")");
  }
  h.salt = get_u32_le(b.data() + 12);
  h.seq = get_u64_le(b.data() + 16);
  h.first_index = get_u64_le(b.data() + 24);
  if (get_u32_le(b.data() + 32) != 0) {
    return Status::corruption("segment header: reserved bytes set");
  }
  if (h.seq == 0 || h.first_index == 0 || h.seq == UINT64_MAX || h.first_index == UINT64_MAX) {
    return Status::corruption("segment header: sequence number or first index out of range");
  }
  return h;
}

std::string segment_file_name(std::uint64_t seq, std::uint64_t first_index) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "-%016" PRIx64 ".wal", seq, first_index);
  return buf;
}

bool parse_segment_file_name(std::string_view name, std::uint64_t* seq,
                             std::uint64_t* first_index) {
  if (name.size() != 16 + 1 + 16 + kSegmentSuffix.size() || name[16] != '-' ||
      name.substr(33) != kSegmentSuffix) {
    return false;
  }
  return parse_hex16(name.substr(0, 16), seq) && parse_hex16(name.substr(17, 16), first_index);
}

std::uint32_t random_salt() {
  std::uint32_t v = 0;
  if (::getrandom(&v, sizeof v, GRND_NONBLOCK) == static_cast<ssize_t>(sizeof v)) return v;
  const auto t =
      static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count());
  const std::uint64_t mix =
      (t ^ (static_cast<std::uint64_t>(::getpid()) << 32)) * 0x9e3779b97f4a7c15ull;
  return static_cast<std::uint32_t>(mix >> 32);
}

Result<std::string_view> MemorySource::read(std::uint64_t offset, std::size_t n) {
  if (offset >= bytes_.size()) return std::string_view();
  return bytes_.substr(static_cast<std::size_t>(offset), n);
}

Result<FileSource> FileSource::open(const std::string& path) {
  Result<UniqueFd> fd = open_file(path, O_RDONLY);
  if (!fd.ok()) return fd.status();
  Result<FileInfo> info = fd_info(fd->get(), path);
  if (!info.ok()) return info.status();
  return FileSource(path, std::move(*fd), info->size);
}

Result<std::string_view> FileSource::read(std::uint64_t offset, std::size_t n) {
  if (offset >= size_) return std::string_view();
  n = static_cast<std::size_t>(std::min<std::uint64_t>(n, size_ - offset));
  if (offset >= window_offset_ && offset + n <= window_offset_ + window_.size()) {
    return std::string_view(window_).substr(static_cast<std::size_t>(offset - window_offset_), n);
  }
  const std::size_t want =
      static_cast<std::size_t>(std::min<std::uint64_t>(std::max(n, kWindowBytes), size_ - offset));
  Result<std::string> got = pread_up_to(fd_.get(), want, offset, path_);
  if (!got.ok()) return got.status();
  window_ = std::move(*got);
  window_offset_ = offset;
  return std::string_view(window_).substr(0, std::min(n, window_.size()));
}

Result<SegmentHeader> SegmentScanner::read_header() {
  Result<std::string_view> b = source_.read(0, kSegmentHeaderBytes);
  if (!b.ok()) return b.status();
  Result<SegmentHeader> h = decode_segment_header(*b);
  if (!h.ok()) return h.status();
  header_ = *h;
  pos_ = kSegmentHeaderBytes;
  return h;
}

Result<bool> SegmentScanner::next(Record& out, std::uint64_t& offset, std::uint32_t& bytes) {
  KVC_CHECK(pos_ >= kSegmentHeaderBytes, "SegmentScanner::next before read_header");
  if (done_) return false;
  const std::uint64_t size = source_.size();
  if (pos_ >= size) {
    end_ = SegmentEnd{.clean = true, .offset = pos_, .nonzero_end = pos_};
    done_ = true;
    return false;
  }
  Result<std::string_view> hb = source_.read(pos_, kRecordHeaderBytes);
  if (!hb.ok()) return hb.status();
  if (hb->size() < kRecordHeaderBytes) {
    KVC_RETURN_IF_ERROR(finish(RecordCheck::kTruncated, ""));
    return false;
  }
  const RecordHeader h = parse_record_header(hb->data());
  const RecordCheck hc = check_header(h, hb->data());
  if (hc != RecordCheck::kOk) {
    KVC_RETURN_IF_ERROR(finish(hc, ""));
    return false;
  }
  const std::uint64_t total = kRecordHeaderBytes + std::uint64_t{h.length};
  if (pos_ + total > size) {
    KVC_RETURN_IF_ERROR(finish(RecordCheck::kTruncated, ""));
    return false;
  }
  Result<std::string_view> rb = source_.read(pos_, static_cast<std::size_t>(total));
  if (!rb.ok()) return rb.status();
  std::string why;
  const RecordCheck rc =
      rb->size() < total ? RecordCheck::kTruncated : check_record(header_.salt, *rb, &out, &why);
  if (rc != RecordCheck::kOk) {
    KVC_RETURN_IF_ERROR(finish(rc, why));
    return false;
  }
  offset = pos_;
  bytes = static_cast<std::uint32_t>(total);
  pos_ += total;
  return true;
}

Status SegmentScanner::finish(RecordCheck reason, std::string detail) {
  done_ = true;
  end_ = SegmentEnd{};
  end_.offset = pos_;
  end_.reason = reason;
  end_.detail = std::move(detail);
  // Only zeros after the last record: the clean end of a preallocated segment.
  Result<std::uint64_t> nz = nonzero_end(source_, pos_);
  if (!nz.ok()) return nz.status();
  end_.nonzero_end = *nz;
  if (end_.nonzero_end == pos_) {
    end_.clean = true;
    end_.reason = RecordCheck::kOk;
    return Status();
  }
  end_.clean = false;
  // A record has a non-zero type byte, so any valid one starts before nonzero_end.
  std::uint32_t bytes = 0;
  Result<std::optional<std::uint64_t>> after = find_valid_record(
      source_, header_.salt, pos_ + 1, end_.nonzero_end, &end_.valid_after_record, &bytes);
  if (!after.ok()) return after.status();
  end_.valid_after = *after;
  return Status();
}

Result<std::optional<std::uint64_t>> find_valid_record(ByteSource& source, std::uint32_t salt,
                                                       std::uint64_t from, std::uint64_t limit,
                                                       Record* out, std::uint32_t* bytes) {
  const std::uint64_t size = source.size();
  limit = std::min(limit, size);
  std::uint64_t chunk_start = from;
  while (chunk_start < limit && chunk_start + kRecordHeaderBytes <= size) {
    const std::size_t chunk =
        static_cast<std::size_t>(std::min<std::uint64_t>(kWindowBytes, limit - chunk_start));
    Result<std::string_view> view = source.read(chunk_start, chunk + kRecordHeaderBytes - 1);
    if (!view.ok()) return view.status();
    for (std::size_t i = 0; i < chunk && i + kRecordHeaderBytes <= view->size(); ++i) {
      const char* raw = view->data() + i;
      // Cheap filters first: almost every offset fails on the type byte.
      if (!is_known_record_type(static_cast<std::uint8_t>(raw[8]))) continue;
      const RecordHeader h = parse_record_header(raw);
      if (check_header(h, raw) != RecordCheck::kOk) continue;
      const std::uint64_t p = chunk_start + i;
      const std::uint64_t total = kRecordHeaderBytes + std::uint64_t{h.length};
      if (p + total > size) continue;
      Result<std::string_view> rb = source.read(p, static_cast<std::size_t>(total));
      if (!rb.ok()) return rb.status();
      Record rec;
      if (rb->size() == total && check_record(salt, *rb, &rec, nullptr) == RecordCheck::kOk) {
        if (out != nullptr) *out = std::move(rec);
        if (bytes != nullptr) *bytes = static_cast<std::uint32_t>(total);
        return std::optional<std::uint64_t>(p);
      }
      view = source.read(chunk_start, chunk + kRecordHeaderBytes - 1);  // the window moved
      if (!view.ok()) return view.status();
    }
    chunk_start += chunk;
  }
  return std::optional<std::uint64_t>();
}

Result<std::uint64_t> nonzero_end(ByteSource& source, std::uint64_t from) {
  std::uint64_t end = source.size();
  while (end > from) {
    const std::uint64_t start = end - std::min<std::uint64_t>(kWindowBytes, end - from);
    Result<std::string_view> view = source.read(start, static_cast<std::size_t>(end - start));
    if (!view.ok()) return view.status();
    // Word at a time from the end: a preallocated segment is mostly zeros.
    std::size_t n = view->size();
    while (n >= 8) {
      std::uint64_t word;
      std::memcpy(&word, view->data() + n - 8, 8);
      if (word != 0) break;
      n -= 8;
    }
    while (n > 0) {
      if ((*view)[n - 1] != 0) return start + n;
      --n;
    }
    end = start;
  }
  return from;
}

}  // namespace kvc::storage
