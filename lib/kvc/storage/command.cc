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
  }
  return "unknown";
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
  if (op < 1 || op > 6) return Status::corruption("command: unknown op " + std::to_string(op));
  c.op = static_cast<CommandOp>(op);
  in.remove_prefix(2);
  if (!get_varint(in, c.request_id)) return Status::corruption("command: truncated request id");
  if (!get_string(in, c.key)) return Status::corruption("command: truncated key");
  if (c.op == CommandOp::kCas && !get_varint(in, c.expect_revision)) {
    return Status::corruption("command: truncated expected revision");
  }
  if ((c.op == CommandOp::kPut || c.op == CommandOp::kCas) && !get_string(in, c.value)) {
    return Status::corruption("command: truncated value");
  }
  if (c.op == CommandOp::kHashVerdict &&
      (!get_varint(in, c.expect_revision) || !get_varint(in, c.hash))) {
    return Status::corruption("command: truncated hash verdict");
  }
  if (!in.empty())
    return Status::corruption("command: " + std::to_string(in.size()) + " trailing bytes");
  return c;
}

std::string describe_command(const Command& c) {
  std::string s(command_op_name(c.op));
  s += c.op == CommandOp::kDeletePrefix ? " prefix=" : " key=";
  s += printable(c.key);
  if (c.op == CommandOp::kCas) s += " expect_revision=" + std::to_string(c.expect_revision);
  if (c.op == CommandOp::kHashVerdict) {
    s += " index=" + std::to_string(c.expect_revision) + " hash=" + id_hex(c.hash);
  }
  if (c.op == CommandOp::kPut || c.op == CommandOp::kCas) s += " value=" + printable(c.value);
  s += " request_id=" + std::to_string(c.request_id);
  return s;
}

}  // namespace kvc::storage
