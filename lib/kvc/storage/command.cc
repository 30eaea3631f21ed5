#include "kvc/storage/command.h"

#include <cstdio>

#include "kvc/common/text.h"

namespace kvc::storage {
namespace {

std::string printable(std::string_view s) {
  std::string out;
  for (const char ch : s) {
    const auto c = static_cast<unsigned char>(ch);
    if (c >= 0x20 && c < 0x7f && c != '\\') {
      out += ch;
    } else {
      out += "\\x" + hex_encode(std::string_view(&ch, 1));
    }
  }
  return out;
}

}  // namespace

void put_varint(std::string& out, std::uint64_t v) {
  while (v >= 0x80) {
    out += static_cast<char>((v & 0x7f) | 0x80);
    v >>= 7;
  }
  out += static_cast<char>(v);
}

bool get_varint(std::string_view& in, std::uint64_t& v) {
  v = 0;
  for (int shift = 0; shift < 64; shift += 7) {
    if (in.empty()) return false;
    const auto b = static_cast<unsigned char>(in.front());
    in.remove_prefix(1);
    if (shift == 63 && b > 1) return false;  // overflow past 64 bits
    v |= static_cast<std::uint64_t>(b & 0x7f) << shift;
    if ((b & 0x80) == 0) return true;
  }
  return false;
}

void put_string(std::string& out, std::string_view s) {
  put_varint(out, s.size());
  out.append(s);
}

bool get_string(std::string_view& in, std::string& s) {
  std::uint64_t n = 0;
  if (!get_varint(in, n) || n > in.size()) return false;
  s.assign(in.data(), static_cast<std::size_t>(n));
  in.remove_prefix(static_cast<std::size_t>(n));
  return true;
}

std::string_view command_op_name(CommandOp op) {
  switch (op) {
    case CommandOp::kPut:
      return "put";
    case CommandOp::kDelete:
      return "delete";
    case CommandOp::kDeletePrefix:
      return "delete_prefix";
    case CommandOp::kCas:
      return "cas";
    case CommandOp::kBarrier:
      return "barrier";
    case CommandOp::kHashVerdict:
      return "hash_verdict";
    case CommandOp::kTxn:
      return "txn";
    case CommandOp::kLeaseGrant:
      return "lease_grant";
    case CommandOp::kLeaseRevoke:
      return "lease_revoke";
    case CommandOp::kPutLease:
      return "put_lease";
  }
  return "unknown";
}

namespace {

bool writes(TxnOpType t) {
  return t == TxnOpType::kPut || t == TxnOpType::kDelete || t == TxnOpType::kDeletePrefix;
}

Status validate_branch(const std::vector<TxnOp>& ops, std::string_view branch) {
  if (ops.size() > kMaxTxnOps) {
    return Status::invalid_argument("txn: " + std::to_string(ops.size()) + " " +
                                    std::string(branch) + " ops exceed the limit of " +
                                    std::to_string(kMaxTxnOps));
  }
  // Quadratic in the writes of one branch, which are few; a txn is bounded by kMaxTxnOps and the
  // server's much lower --max-txn-ops.
  for (std::size_t i = 0; i < ops.size(); ++i) {
    if (!writes(ops[i].type)) continue;
    for (std::size_t j = 0; j < i; ++j) {
      if (!writes(ops[j].type)) continue;
      const TxnOp& a = ops[j];
      const TxnOp& b = ops[i];
      auto covers = [](const TxnOp& x, const TxnOp& y) {  // x's range holds y's key or prefix
        if (x.type == TxnOpType::kDeletePrefix) return y.key.substr(0, x.key.size()) == x.key;
        return y.type != TxnOpType::kDeletePrefix && x.key == y.key;
      };
      if (covers(a, b) || covers(b, a)) {
        return Status::invalid_argument(
            "txn: " + std::string(branch) + " ops " + std::to_string(j + 1) + " (" +
            std::string(txn_op_name(a.type)) + ") and " + std::to_string(i + 1) + " (" +
            std::string(txn_op_name(b.type)) +
            ") write the same key; a txn may write each key once");
      }
    }
  }
  return Status();
}

void put_txn_ops(std::string& out, const std::vector<TxnOp>& ops) {
  put_varint(out, ops.size());
  for (const TxnOp& op : ops) {
    out += static_cast<char>(op.type);
    put_string(out, op.key);
    if (op.type == TxnOpType::kPut) {
      put_string(out, op.value);
      put_varint(out, op.lease);
    } else if (op.type == TxnOpType::kGet || op.type == TxnOpType::kGetPrefix) {
      put_varint(out, op.limit);
    }
  }
}

bool get_u8(std::string_view& in, std::uint8_t& v) {
  if (in.empty()) return false;
  v = static_cast<std::uint8_t>(in.front());
  in.remove_prefix(1);
  return true;
}

Status get_txn_ops(std::string_view& in, std::vector<TxnOp>& ops) {
  std::uint64_t n = 0;
  // Every op takes at least two bytes: a count larger than what is left is damage, not a
  // reason to reserve memory.
  if (!get_varint(in, n) || n > in.size() / 2)
    return Status::corruption("command: bad txn op count");
  ops.resize(static_cast<std::size_t>(n));
  for (TxnOp& op : ops) {
    std::uint8_t t = 0;
    if (!get_u8(in, t) || t < 1 || t > 5) return Status::corruption("command: bad txn op type");
    op.type = static_cast<TxnOpType>(t);
    if (!get_string(in, op.key)) return Status::corruption("command: truncated txn op key");
    if (op.type == TxnOpType::kPut) {
      if (!get_string(in, op.value) || !get_varint(in, op.lease)) {
        return Status::corruption("command: truncated txn put");
      }
    } else if ((op.type == TxnOpType::kGet || op.type == TxnOpType::kGetPrefix) &&
               !get_varint(in, op.limit)) {
      return Status::corruption("command: truncated txn get");
    }
  }
  return Status();
}

}  // namespace

Status validate_txn(const Command& c) {
  if (c.compares.size() > kMaxTxnCompares) {
    return Status::invalid_argument("txn: " + std::to_string(c.compares.size()) +
                                    " compares exceed the limit of " +
                                    std::to_string(kMaxTxnCompares));
  }
  KVC_RETURN_IF_ERROR(validate_branch(c.then_ops, "success"));
  return validate_branch(c.else_ops, "failure");
}

std::string encode_command(const Command& c) {
  std::string out;
  out.reserve(16 + c.key.size() + c.value.size());
  out += static_cast<char>(kCommandVersion);
  out += static_cast<char>(c.op);
  put_varint(out, c.request_id);
  put_string(out, c.key);
  switch (c.op) {
    case CommandOp::kPut:
      put_string(out, c.value);
      break;
    case CommandOp::kDelete:
    case CommandOp::kDeletePrefix:
    case CommandOp::kBarrier:
      break;
    case CommandOp::kCas:
      put_varint(out, c.expect_revision);
      put_string(out, c.value);
      break;
    case CommandOp::kHashVerdict:
      put_varint(out, c.expect_revision);
      put_varint(out, c.hash);
      break;
    case CommandOp::kTxn:
      put_varint(out, c.compares.size());
      for (const Compare& cmp : c.compares) {
        out += static_cast<char>(cmp.target);
        out += static_cast<char>(cmp.op);
        put_string(out, cmp.key);
        if (cmp.target == CompareTarget::kValue) {
          put_string(out, cmp.value);
        } else {
          put_varint(out, cmp.number);
        }
      }
      put_txn_ops(out, c.then_ops);
      put_txn_ops(out, c.else_ops);
      break;
    case CommandOp::kLeaseGrant:
      put_varint(out, c.lease);
      put_varint(out, c.ttl);
      break;
    case CommandOp::kLeaseRevoke:
      put_varint(out, c.lease);
      break;
    case CommandOp::kPutLease:
      put_string(out, c.value);
      put_varint(out, c.lease);
      break;
  }
  return out;
}

Result<Command> decode_command(std::string_view in) {
  if (in.size() < 2) return Status::corruption("command: truncated header");
  if (static_cast<std::uint8_t>(in[0]) != kCommandVersion) {
    return Status::corruption("command: unknown version " +
                              std::to_string(static_cast<std::uint8_t>(in[0])));
  }
  Command c;
  const auto op = static_cast<std::uint8_t>(in[1]);
  if (op < 1 || op > 10) return Status::corruption("command: unknown op " + std::to_string(op));
  c.op = static_cast<CommandOp>(op);
  in.remove_prefix(2);
  if (!get_varint(in, c.request_id)) return Status::corruption("command: truncated request id");
  if (!get_string(in, c.key)) return Status::corruption("command: truncated key");
  if (c.op == CommandOp::kCas && !get_varint(in, c.expect_revision)) {
    return Status::corruption("command: truncated expected revision");
  }
  if ((c.op == CommandOp::kPut || c.op == CommandOp::kCas || c.op == CommandOp::kPutLease) &&
      !get_string(in, c.value)) {
    return Status::corruption("command: truncated value");
  }
  if (c.op == CommandOp::kHashVerdict &&
      (!get_varint(in, c.expect_revision) || !get_varint(in, c.hash))) {
    return Status::corruption("command: truncated hash verdict");
  }
  if ((c.op == CommandOp::kLeaseGrant || c.op == CommandOp::kLeaseRevoke ||
       c.op == CommandOp::kPutLease) &&
      !get_varint(in, c.lease)) {
    return Status::corruption("command: truncated lease id");
  }
  if (c.op == CommandOp::kLeaseGrant && !get_varint(in, c.ttl)) {
    return Status::corruption("command: truncated lease ttl");
  }
  if (c.op == CommandOp::kTxn) {
    std::uint64_t n = 0;
    if (!get_varint(in, n) || n > in.size() / 3) {
      return Status::corruption("command: bad txn compare count");
    }
    c.compares.resize(static_cast<std::size_t>(n));
    for (Compare& cmp : c.compares) {
      std::uint8_t t = 0, o = 0;
      if (!get_u8(in, t) || t < 1 || t > 5 || !get_u8(in, o) || o < 1 || o > 4) {
        return Status::corruption("command: bad txn compare");
      }
      cmp.target = static_cast<CompareTarget>(t);
      cmp.op = static_cast<CompareOp>(o);
      const bool ok = get_string(in, cmp.key) &&
                      (cmp.target == CompareTarget::kValue ? get_string(in, cmp.value)
                                                           : get_varint(in, cmp.number));
      if (!ok) return Status::corruption("command: truncated txn compare");
    }
    KVC_RETURN_IF_ERROR(get_txn_ops(in, c.then_ops));
    KVC_RETURN_IF_ERROR(get_txn_ops(in, c.else_ops));
  }
  if (!in.empty())
    return Status::corruption("command: " + std::to_string(in.size()) + " trailing bytes");
  return c;
}

namespace {
void describe_ops(std::string& s, const std::vector<TxnOp>& ops) {
  for (std::size_t i = 0; i < ops.size(); ++i) {
    const TxnOp& op = ops[i];
    s += i == 0 ? " " : "; ";
    s += std::string(txn_op_name(op.type)) + " " + printable(op.key);
    if (op.type == TxnOpType::kPut) {
      s += " value=" + printable(op.value);
      if (op.lease != 0) s += " lease=" + id_hex(op.lease);
    }
    if (op.limit != 0) s += " limit=" + std::to_string(op.limit);
  }
}
}  // namespace

std::string describe_command(const Command& c) {
  std::string s(command_op_name(c.op));
  if (c.op == CommandOp::kTxn) {
    s += " if";
    for (std::size_t i = 0; i < c.compares.size(); ++i) {
      const Compare& cmp = c.compares[i];
      s += i == 0 ? " " : " && ";
      s += std::string(compare_target_name(cmp.target)) + "(" + printable(cmp.key) + ") " +
           std::string(compare_op_name(cmp.op)) + " " +
           (cmp.target == CompareTarget::kValue ? "\"" + printable(cmp.value) + "\""
                                                : std::to_string(cmp.number));
    }
    s += " then {";
    describe_ops(s, c.then_ops);
    s += " } else {";
    describe_ops(s, c.else_ops);
    s += " } request_id=" + std::to_string(c.request_id);
    return s;
  }
  if (c.op == CommandOp::kLeaseGrant || c.op == CommandOp::kLeaseRevoke) {
    s += " lease=" + id_hex(c.lease);
    if (c.op == CommandOp::kLeaseGrant) s += " ttl=" + std::to_string(c.ttl) + "s";
    s += " request_id=" + std::to_string(c.request_id);
    return s;
  }
  s += c.op == CommandOp::kDeletePrefix ? " prefix=" : " key=";
  s += printable(c.key);
  if (c.op == CommandOp::kCas) s += " expect_revision=" + std::to_string(c.expect_revision);
  if (c.op == CommandOp::kHashVerdict) {
    s += " index=" + std::to_string(c.expect_revision) + " hash=" + id_hex(c.hash);
  }
  if (c.op == CommandOp::kPut || c.op == CommandOp::kCas || c.op == CommandOp::kPutLease) {
    s += " value=" + printable(c.value);
  }
  if (c.op == CommandOp::kPutLease) s += " lease=" + id_hex(c.lease);
  s += " request_id=" + std::to_string(c.request_id);
  return s;
}

}  // namespace kvc::storage
