// The state-machine commands carried in the data of normal Raft entries, and their binary
// encoding. This is an on-disk format (the WAL stores these bytes; see kvc-wal(5), "COMMANDS"):
// change it only by adding a new version. Plain values and pure functions; thread-safe.
//
// Encoding (all integers unsigned LEB128 varints, strings as varint length + bytes):
//   u8 version (= 1) | u8 op | varint request_id | op fields
//   op 1 put           key, value
//   op 2 delete        key
//   op 3 delete_prefix prefix                     (an empty prefix deletes every key)
//   op 4 cas           key, varint expect_revision, value   (expect 0: key must not exist)
//   op 5 barrier       key (empty)   changes nothing; marks an index every member hashes its
//                                    state at (kvc-ctl check hash)
//   op 6 hash_verdict  key (empty), varint index, varint hash   changes nothing; the leader's
//                                    periodic hash check found `hash` to be the majority's
//                                    state hash at barrier `index`: a member whose hash there
//                                    differs repairs its state (kvc-node(1), "INTEGRITY")
// Nothing may follow the last field. An entry with empty data is the leader's no-op.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc::storage {

inline constexpr std::uint8_t kCommandVersion = 1;

enum class CommandOp : std::uint8_t {
  kPut = 1,
  kDelete = 2,
  kDeletePrefix = 3,
  kCas = 4,
  kBarrier = 5,
  kHashVerdict = 6,
};

struct Command {
  CommandOp op = CommandOp::kPut;
  // Chosen by the proposing member so it can match the applied entry to the waiting request.
  // Not interpreted by the state machine.
  std::uint64_t request_id = 0;
  std::string key;  // the prefix for kDeletePrefix
  std::string value;
  std::uint64_t expect_revision = 0;  // kCas; kHashVerdict: the barrier's index
  std::uint64_t hash = 0;             // kHashVerdict: the majority's state hash there

  friend bool operator==(const Command&, const Command&) = default;
};

std::string encode_command(const Command& c);
// Fails with kCorruption on truncated, oversized or unknown input; never crashes.
Result<Command> decode_command(std::string_view data);

// "put key=... value=..." for logs and dumps; bytes that are not printable are escaped.
std::string describe_command(const Command& c);
std::string_view command_op_name(CommandOp op);

// Appends / reads an unsigned LEB128 varint (shared by the storage formats).
void put_varint(std::string& out, std::uint64_t v);
// Reads a varint from the front of `in` and advances it; false on truncation or overflow.
bool get_varint(std::string_view& in, std::uint64_t& v);
// A byte string as its varint length and then the bytes (shared by the storage formats).
void put_string(std::string& out, std::string_view s);
// Reads one from the front of `in` and advances it; false when it is cut short.
bool get_string(std::string_view& in, std::string& s);

}  // namespace kvc::storage
