// A recorded history of key-value client operations, the input of the linearizability
// checker (linearizability.h). The deterministic simulator and the process-level chaos tests
// both record into this shape. Plain values; thread-compatible.
//
// The model is kvc's key-value API: every successful write gets a revision, strictly
// increasing over the whole store (kvc uses the Raft index of the entry that wrote it);
// a key's mod revision is the revision of the write that produced its current value.
#pragma once

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "kvc/common/status.h"

namespace kvc::check {

enum class OpKind : std::uint8_t {
  kPut,     // set key to value
  kGet,     // read key
  kDelete,  // remove key
  kCas,     // set key to value if its mod revision equals expect_revision (0: must not exist)
};

enum class Outcome : std::uint8_t {
  kOk,       // the client saw a response; the result fields are valid
  kFailed,   // the operation definitely did not take effect (e.g. rejected before proposal)
  kUnknown,  // no response (timeout, connection lost): it may or may not have taken effect,
             // at any time after its invocation
};

inline constexpr std::uint64_t kNever = std::numeric_limits<std::uint64_t>::max();

struct Operation {
  std::uint64_t client = 0;  // which client issued it (a client has one operation at a time)
  OpKind kind = OpKind::kGet;
  std::string key;
  std::string value;                  // kPut, kCas: the value written
  std::uint64_t expect_revision = 0;  // kCas: the revision compared against

  Outcome outcome = Outcome::kOk;
  // Results, valid when outcome == kOk:
  //   kGet:    found, and when found, read_value and revision (the value's mod revision)
  //   kPut:    revision of the write
  //   kDelete: found (whether the key existed), revision of the delete when found
  //   kCas:    found = whether the compare succeeded; revision of the write when it did
  // A revision of 0 means the client did not learn it; the checker then leaves it unchecked.
  bool found = false;
  std::string read_value;
  std::uint64_t revision = 0;

  // Times on one clock shared by all clients (a logical clock is fine). invoke < response.
  std::uint64_t invoke_time = 0;
  std::uint64_t response_time = kNever;  // kNever for kUnknown
};

using History = std::vector<Operation>;

// Records a definite answer to `op` (outcome kOk) from `r`, kvc's client response
// (wire::Response: a template parameter, so that check does not depend on the wire layer). The
// caller decides which answers are definite; any code but kOk (a cas whose compare failed, a key
// not found) is a definite "no": found false, no revision. The simulator and the chaos tests
// both record through this.
template <typename Response>
void record_answer(Operation& op, const Response& r) {
  op.outcome = Outcome::kOk;
  op.found = false;
  op.read_value.clear();
  op.revision = 0;
  if (r.code != Code::kOk) return;
  switch (op.kind) {
    case OpKind::kGet:
      if (r.found && !r.kvs.empty()) {
        op.found = true;
        op.read_value = r.kvs.front().value;
        op.revision = r.kvs.front().mod_revision;
      }
      break;
    case OpKind::kPut:
      op.revision = r.revision;
      break;
    case OpKind::kDelete:
      op.found = r.found;
      if (r.found) op.revision = r.revision;
      break;
    case OpKind::kCas:
      op.found = true;
      op.revision = r.revision;
      break;
  }
}

}  // namespace kvc::check
