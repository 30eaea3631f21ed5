// Fuzz target: arbitrary bytes as a snapshot file (kvc-snap(5)). The reader must classify
// every input as clean, truncated, corrupt or unsupported with a Status, never crash, never
// read out of bounds and never allocate more than the input's size for a block. A clean input
// must also satisfy the format's promises: strictly ascending keys and a trailer count equal
// to the records seen.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kvc/common/check.h"
#include "kvc/storage/snapshot.h"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace kvc::storage;  // NOLINT: a fuzz target's body
  SnapshotProblem problem = SnapshotProblem::kNone;
  kvc::Result<SnapshotReader> r =
      SnapshotReader::from_bytes(std::string(reinterpret_cast<const char*>(data), size), &problem);
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
