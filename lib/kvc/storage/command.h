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
//   op 7 txn           key (empty), varint n, n compares, varint n, n "then" ops, varint n,
//                                    n "else" ops: every compare holds -> the "then" ops,
//                                    else the "else" ops, applied in order at one revision
//     compare          u8 target (1 value, 2 mod revision, 3 create revision, 4 version,
//                      5 lease), u8 op (1 =, 2 !=, 3 <, 4 >), key, then for target 1 the value
//                      (a string), else a varint
//     op               u8 type (1 put, 2 delete, 3 delete_prefix, 4 get, 5 get_prefix), key,
//                      then for put: value, varint lease (0: none); for get and get_prefix:
//                      varint limit (0: no limit)
//   op 8 lease_grant   key (empty), varint lease id, varint ttl seconds
//   op 9 lease_revoke  key (empty), varint lease id   deletes the lease and every key on it
//   op 10 put_lease    key, value, varint lease id    a put that attaches the key to the lease
// Nothing may follow the last field. An entry with empty data is the leader's no-op.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/common/txn.h"

namespace kvc::storage {

inline constexpr std::uint8_t kCommandVersion = 1;

enum class CommandOp : std::uint8_t {
  kPut = 1,
  kDelete = 2,
  kDeletePrefix = 3,
  kCas = 4,
  kBarrier = 5,
  kHashVerdict = 6,
  kTxn = 7,
  kLeaseGrant = 8,
  kLeaseRevoke = 9,
  kPutLease = 10,
};

// Limits every member enforces when it applies a txn (kInvalidArgument, nothing applied), so
// that a command in the log can never be too large to apply. The server's flags (kvc-node
// --max-txn-ops) are normally lower.
inline constexpr std::size_t kMaxTxnCompares = 10000;
inline constexpr std::size_t kMaxTxnOps = 10000;
// A get_prefix in a txn returns at most this many keys, whatever its limit.
inline constexpr std::size_t kMaxTxnGetKeys = 10000;

struct Command {
  CommandOp op = CommandOp::kPut;
  // Chosen by the proposing member so it can match the applied entry to the waiting request.
  // Not interpreted by the state machine.
  std::uint64_t request_id = 0;
  std::string key;  // the prefix for kDeletePrefix
  std::string value;
  std::uint64_t expect_revision = 0;  // kCas; kHashVerdict: the barrier's index
  std::uint64_t hash = 0;             // kHashVerdict: the majority's state hash there
  std::uint64_t lease = 0;            // kLeaseGrant, kLeaseRevoke, kPutLease: the lease id
  std::uint64_t ttl = 0;              // kLeaseGrant: its time to live, seconds
  std::vector<Compare> compares;      // kTxn
  std::vector<TxnOp> then_ops;        // kTxn: applied when every compare holds
  std::vector<TxnOp> else_ops;        // kTxn: applied otherwise

  friend bool operator==(const Command&, const Command&) = default;
};

std::string encode_command(const Command& c);
// Fails with kCorruption on truncated, oversized or unknown input; never crashes.
Result<Command> decode_command(std::string_view data);

// "put key=... value=..." for logs and dumps; bytes that are not printable are escaped.
std::string describe_command(const Command& c);
std::string_view command_op_name(CommandOp op);
// Why a txn's ops are not acceptable, or ok: two ops of one branch write the same key (or one
// writes a key under another's deleted prefix), or a limit is exceeded. Checked by the proposer
// (to answer with a clear error) and again by apply (deterministically on every member).
Status validate_txn(const Command& c);

// Appends / reads an unsigned LEB128 varint (shared by the storage formats).
void put_varint(std::string& out, std::uint64_t v);
// Reads a varint from the front of `in` and advances it; false on truncation or overflow.
bool get_varint(std::string_view& in, std::uint64_t& v);
// A byte string as its varint length and then the bytes (shared by the storage formats).
void put_string(std::string& out, std::string_view s);
// Reads one from the front of `in` and advances it; false when it is cut short.
bool get_string(std::string_view& in, std::string& s);

}  // namespace kvc::storage
