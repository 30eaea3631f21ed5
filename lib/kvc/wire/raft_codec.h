// The msgpack encoding of Raft messages between members (frame kind kRaft). A message is a
// positional array, fast to write and read on the replication hot path:
//   [type, from, to, term, log_term, index, commit, reject, reject_hint,
//    [[index, term, entry_type, data], ...], context,
//    snapshot_meta, snapshot_size, snapshot_offset, chunk_length, snapshot_done, chunk]
// snapshot_meta: [index, term, [voters...], [learners...]]. Readers accept trailing elements
// they do not know (a newer peer); see kvc-node(1), "WIRE PROTOCOL". Thread-compatible.
#pragma once

#include <string>

#include "kvc/common/status.h"
#include "kvc/raft/message.h"
#include "kvc/wire/msgpack_io.h"

namespace kvc::wire {

// Appends one complete kRaft frame.
void append_raft_message(std::string& out, const raft::Message& m);
// Decodes the body of a kRaft frame. Unknown message types and entry types are kCorruption.
Result<raft::Message> decode_raft_message(const msgpack::object& body);

}  // namespace kvc::wire
