// The entries the WAL tests write: each index has one deterministic term and command, so a test
// (or a crashed child process, see faultfs/wal_child.cc) can check any recovered entry without
// remembering what was written. Header-only; thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "kvc/raft/types.h"
#include "kvc/storage/command.h"

namespace kvc::storage::wal_test {

inline std::uint64_t expected_term(std::uint64_t index) { return 1 + index / 37; }

inline raft::Entry expected_entry(std::uint64_t index) {
  raft::Entry e;
  e.index = index;
  e.term = expected_term(index);
  if (index % 41 == 0) {
    e.type = raft::EntryType::kConfChange;
    e.data = std::string("\x08\x01\x10", 3) + static_cast<char>(index % 7);
  } else if (index % 13 == 0) {
    e.data.clear();  // a leader's no-op
  } else {
    Command c;
    c.op = CommandOp::kPut;
    c.request_id = index;
    c.key = "key/" + std::to_string(index % 50);
    c.value = "value-" + std::to_string(index) + std::string(index % 97, 'x');
    e.data = encode_command(c);
  }
  return e;
}

inline std::vector<raft::Entry> expected_entries(std::uint64_t from, std::uint64_t to) {
  std::vector<raft::Entry> out;
  for (std::uint64_t i = from; i <= to; ++i) out.push_back(expected_entry(i));
  return out;
}

}  // namespace kvc::storage::wal_test
