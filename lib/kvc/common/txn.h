// The parts of a transaction that the client protocol, the state machine's commands and the
// tools share: what a compare looks at and how, and the ops of a branch. The numbering is part of
// two formats (the WAL's txn command, kvc-wal(5); the wire protocol, kvc-node(1)): never
// renumber. Plain values; thread-compatible.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace kvc {

// What a txn compare looks at, and how.
enum class CompareTarget : std::uint8_t {
  kValue = 1,  // the value (bytes, lexicographically); never holds for an absent key (etcd's rule)
  kModRevision = 2,     // 0 when the key is absent
  kCreateRevision = 3,  // 0 when absent: `create = 0` means "does not exist"
  kVersion = 4,         // 0 when absent
  kLease = 5,           // the lease the key is attached to; 0: none or absent
};
enum class CompareOp : std::uint8_t { kEqual = 1, kNotEqual = 2, kLess = 3, kGreater = 4 };

struct Compare {
  CompareTarget target = CompareTarget::kModRevision;
  CompareOp op = CompareOp::kEqual;
  std::string key;
  std::string value;         // kValue
  std::uint64_t number = 0;  // the other targets

  friend bool operator==(const Compare&, const Compare&) = default;
};

enum class TxnOpType : std::uint8_t {
  kPut = 1,
  kDelete = 2,
  kDeletePrefix = 3,
  kGet = 4,
  kGetPrefix = 5,
};

struct TxnOp {
  TxnOpType type = TxnOpType::kGet;
  std::string key;  // the prefix for kDeletePrefix and kGetPrefix
  std::string value;
  std::uint64_t lease = 0;  // kPut: attach the key to this lease (0: to none)
  std::uint64_t limit = 0;  // kGetPrefix: at most this many keys (0: no limit)

  friend bool operator==(const TxnOp&, const TxnOp&) = default;
};

std::string_view compare_target_name(CompareTarget t);  // "value", "mod", "create", ...
std::string_view compare_op_name(CompareOp op);         // "=", "!=", "<", ">"
// "put", "delete", "delete_prefix", "get", "get_prefix"
std::string_view txn_op_name(TxnOpType t);

}  // namespace kvc
