// Fuzz target: arbitrary bytes as a snapshot file (kvc-snap(5)). The reader must classify
// every input as clean, truncated, corrupt or unsupported with a Status, never crash, never
// read out of bounds and never allocate more than the input's size for a block. A clean input
// must also satisfy the format's promises: strictly ascending keys and a trailer count equal
// to the records seen.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kvc/common/check.h"
#include "kvc/common/crc32c.h"
#include "kvc/storage/snapshot.h"

namespace {

void put_u32(std::string& s, std::size_t at, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) s[at + i] = static_cast<char>((v >> (8 * i)) & 0xff);
}

std::uint32_t get_u32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 0; i < 4; ++i) {
    v |= static_cast<std::uint32_t>(static_cast<unsigned char>(s[at + i])) << (8 * i);
  }
  return v;
}

// Rewrites every checksum (and the trailer's offset) to match the bytes, so that mutations
// reach the parsers behind the checksums instead of stopping at the first mismatch.
void fix_checksums(std::string& s) {
  using kvc::crc32c::mask;
  using kvc::crc32c::value;
  if (s.size() < 16) return;
  put_u32(s, 12, mask(value(s.data(), 12)));
  std::size_t off = 16;
  while (off + 16 <= s.size()) {
    std::uint32_t len = get_u32(s, off + 4);
    if (len > s.size() - off - 16) {
      len = static_cast<std::uint32_t>(s.size() - off - 16);
      put_u32(s, off + 4, len);
    }
    if (static_cast<unsigned char>(s[off]) == 3 && len == 20) {
      for (int i = 0; i < 8; ++i) s[off + 16 + 8 + i] = static_cast<char>((off >> (8 * i)) & 0xff);
      put_u32(s, off + 16 + 16, mask(value(s.data(), off)));
    }
    put_u32(s, off + 8, mask(value(s.data() + off + 16, len)));
    put_u32(s, off + 12, mask(value(s.data() + off, 12)));
    off += 16 + len;
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::storage;  // NOLINT: a fuzz target's body
  // The first byte picks the mode: odd, checksums are made to match (structure fuzzing); even,
  // the bytes are read as they are (checksum and framing fuzzing).
  if (size == 0) return 0;
  std::string bytes(reinterpret_cast<const char*>(data) + 1, size - 1);
  if ((data[0] & 1) != 0) fix_checksums(bytes);
  size = bytes.size();
  SnapshotProblem problem = SnapshotProblem::kNone;
  kvc::Result<SnapshotReader> r = SnapshotReader::from_bytes(std::move(bytes), &problem);
  if (!r.ok()) {
    KVC_CHECK(problem != SnapshotProblem::kNone, "a failed open must say what is wrong");
    return 0;
  }
  std::string last;
  std::uint64_t seen = 0;
  kvc::Status s = r->for_each([&](const KeyValue& kv) {
    KVC_CHECK(seen == 0 || kv.key > last, "records out of order reached the caller");
    KVC_CHECK(kv.create_revision >= 1 && kv.create_revision <= kv.mod_revision,
              "invalid revisions reached the caller");
    last = kv.key;
    ++seen;
    return kvc::Status();
  });
  if (s.ok()) {
    KVC_CHECK(r->problem() == SnapshotProblem::kNone, "success with a problem");
    KVC_CHECK(r->info().record_count == seen, "trailer count differs from the records seen");
    KVC_CHECK(r->info().size_bytes == size, "size differs");
  } else {
    KVC_CHECK(r->problem() != SnapshotProblem::kNone, "a failed read must say what is wrong");
  }
  // Raw chunk reads never go out of bounds.
  kvc::Result<std::string> c = r->read_chunk(size / 2, size);
  KVC_CHECK(c.ok() && c->size() == size - size / 2, "chunk of the wrong size");
  return 0;
}
