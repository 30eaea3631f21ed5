#include "kvc/common/txn.h"

namespace kvc {

std::string_view compare_target_name(CompareTarget t) {
  switch (t) {
    case CompareTarget::kValue:
      return "value";
    case CompareTarget::kModRevision:
      return "mod";
    case CompareTarget::kCreateRevision:
      return "create";
    case CompareTarget::kVersion:
      return "version";
    case CompareTarget::kLease:
      return "lease";
  }
  return "unknown";
}

std::string_view compare_op_name(CompareOp op) {
  switch (op) {
    case CompareOp::kEqual:
      return "=";
    case CompareOp::kNotEqual:
      return "!=";
    case CompareOp::kLess:
      return "<";
    case CompareOp::kGreater:
      return ">";
  }
  return "?";
}

std::string_view txn_op_name(TxnOpType t) {
  switch (t) {
    case TxnOpType::kPut:
      return "put";
    case TxnOpType::kDelete:
      return "delete";
    case TxnOpType::kDeletePrefix:
      return "delete_prefix";
    case TxnOpType::kGet:
      return "get";
    case TxnOpType::kGetPrefix:
      return "get_prefix";
  }
  return "unknown";
}

}  // namespace kvc
