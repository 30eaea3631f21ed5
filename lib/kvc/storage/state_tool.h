// `kvc-snap check`: the offline check of a member's LMDB state (state_check.h: every record's
// checksum, every database walked, the meta record) and of its data directory's cross-file
// invariants (consistency.h), as one library function that prints to the ToolContext and
// returns the exit code, so cmd/kvc-snap/main.cc only parses flags. Reads only and takes no
// lock, so it can look at a live member's directory (it warns that the files may move while it
// reads). Exit codes (kvc-snap(1)): 0 clean, 3 no state there, 8 a damaged record or LMDB page
// (or a corrupt WAL), 9 the state and the WAL disagree, 1 another error. Not thread-safe.
#pragma once

#include <string>

#include "kvc/storage/tool_util.h"

namespace kvc::storage {

// DIR is a data directory (its state/ and wal/ are checked, and the two against each other) or
// a state directory (it holds CURRENT; only the state is checked).
int run_state_check(const std::string& dir, ToolContext& ctx);

}  // namespace kvc::storage
