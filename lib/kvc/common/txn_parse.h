// The two written forms of a txn that people and programs send: etcdctl's text (compares, a
// blank line, success ops, a blank line, failure ops; kvc-ctl(1), "txn") and the JSON object
// {"compares":[...],"success":[...],"failure":[...]} that `kvc-ctl txn --json` and HTTP
// `POST /v1/txn` read (docs/http.md). One parser for both users, so a txn means the same
// whichever way it arrives; the JSON compares are turned into text lines and parsed by the one
// compare grammar. Checks only the form: limits (--max-txn-ops, --max-request-bytes) and the
// rule that a txn writes each key once are the member's. Pure functions; thread-safe.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"
#include "kvc/common/txn.h"

namespace kvc {

// A txn's compares and its two branches (what wire::Request carries for Op::kTxn).
struct TxnSpec {
  std::vector<Compare> compares;
  std::vector<TxnOp> then_ops;  // when every compare holds ("success")
  std::vector<TxnOp> else_ops;  // otherwise ("failure")
};

// etcdctl's txn text. Errors are kInvalidArgument and name the line.
Result<TxnSpec> parse_txn_text(std::string_view text);
// The JSON form; keys and values as text ("key", "value") or base64 ("key_base64",
// "value_base64"). Errors are kInvalidArgument.
Result<TxnSpec> parse_txn_json(std::string_view text);

// A lease id as kvc prints it (16 hex digits) or any 1 to 16 hex digits, not 0;
// kInvalidArgument otherwise.
Result<std::uint64_t> parse_lease_id(std::string_view text);

}  // namespace kvc
