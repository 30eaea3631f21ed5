// Fuzz target for the WAL reader: the bytes are one or more segment files (separated by the
// line "--kvc-segment--"), read with scan_segments() exactly as recovery and kvc-wal read a log
// directory. Whatever the bytes, reading must end in records, a torn tail or corruption, never a
// crash, a hang or a sanitizer report; and what it reports must be self-consistent.
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/storage/wal_reader.h"

namespace {

constexpr std::string_view kSeparator = "\n--kvc-segment--\n";

void require(bool ok) {
  if (!ok) std::abort();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::storage;
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  std::vector<std::string_view> parts;
  std::size_t start = 0;
  while (parts.size() < 4) {
    const std::size_t at = input.find(kSeparator, start);
    if (at == std::string_view::npos) break;
    parts.push_back(input.substr(start, at - start));
    start = at + kSeparator.size();
  }
  parts.push_back(input.substr(start));

  std::vector<SegmentFile> files;
  std::vector<std::unique_ptr<MemorySource>> owned;
  std::vector<ByteSource*> sources;
  for (std::size_t i = 0; i < parts.size(); ++i) {
    SegmentFile f;
    // Name each part after its own header when it has one, so the reader gets past the
    // name check and into the records.
    kvc::Result<SegmentHeader> h = decode_segment_header(parts[i]);
    f.seq = h.ok() ? h->seq : i + 1;
    f.first_index = h.ok() ? h->first_index : 1;
    f.name = segment_file_name(f.seq, f.first_index);
    f.path = "fuzz/" + f.name;
    f.file_size = parts[i].size();
    files.push_back(f);
    owned.push_back(std::make_unique<MemorySource>(parts[i]));
    sources.push_back(owned.back().get());
  }
  std::uint64_t records = 0;
  kvc::Result<WalSummary> s = scan_segments(files, sources, [&](const ScannedRecord& r) {
    ++records;
    require(r.offset + r.bytes <= r.segment.file.file_size);
    require(r.log.last_index + 1 >= r.log.first_index);
    return kvc::Status();
  });
  require(s.ok());  // memory sources cannot fail to read
  require(s->records == records);
  if (s->damage) {
    const WalDamage& d = *s->damage;
    require(d.segment_pos < files.size());
    require(d.whole_segment || d.offset >= kSegmentHeaderBytes || d.missing_start);
    require(d.end_offset <= files[d.segment_pos].file_size);
    if (d.kind == DamageKind::kTornTail) require(d.segment_pos + 1 == files.size());
    (void)d.describe();
  }
  return 0;
}
