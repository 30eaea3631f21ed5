// The repair file, DATA_DIR/repair: the Raft core's RepairState (raft/types.h), kept while a
// member is being repaired (it lost entries it had acknowledged, or its state machine is
// damaged) so that a restart in the middle of a repair does not let it vote again. Absent when no
// repair is in progress. key=value lines, like the identity file, ending in a CRC32C (hex) of
// everything before it (kvc-node(1), FILES):
//
//   # kvc repair state: do not edit (kvc-node(1), FILES)
//   format_version=1
//   log_to=1234
//   needs_snapshot=1
//   snapshot_from=1200
//   reason=state checksum mismatch in key "/a"
//   crc32c=0a1b2c3d
//
// Written atomically (temporary file, fsync, rename, directory fsync). Thread-compatible.
#pragma once

#include <optional>
#include <string>

#include "kvc/common/status.h"
#include "kvc/raft/types.h"

namespace kvc::storage {

struct RepairRecord {
  raft::RepairState state;
  std::string reason;  // one line, for operators; may be empty

  friend bool operator==(const RepairRecord&, const RepairRecord&) = default;
};

std::string encode_repair_record(const RepairRecord& r);
// kCorruption (naming `path`) for a file that is not a valid repair record.
Result<RepairRecord> decode_repair_record(std::string_view text, const std::string& path);

// Writes the record, or removes the file when the state is not active. Durable on return.
Status save_repair_file(const std::string& path, const RepairRecord& r);
// nullopt when there is no file.
Result<std::optional<RepairRecord>> load_repair_file(const std::string& path);

}  // namespace kvc::storage
