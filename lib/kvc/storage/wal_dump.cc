// kvc-wal dump (wal_tool.h): every record of a log, one per line, as text or JSON, with the
// commands decoded. Invariant kept here: reads only; bytes that are not text are shown in hex.
#include <string>

#include "kvc/common/coding.h"
#include "kvc/common/text.h"
#include "kvc/storage/command.h"
#include "kvc/storage/wal_tool_internal.h"

namespace kvc::storage {

using namespace wal_tool_internal;  // the tool's shared internals (wal_tool_internal.h)

namespace {

// ---- dump formatting ----

std::string hex_value(std::string_view bytes) { return "0x" + hex_encode(bytes); }

// Conf-change data is encoded by the Raft core; until kvc-wal decodes it, it is shown as hex.
// A state hash as kvc-ctl check hash prints it: 16 hex digits.
std::string hash_hex(std::uint64_t h) { return id_hex(h); }

std::string command_text(const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    return "data=" + (e.data.empty() ? std::string("-") : hex_value(e.data));
  }
  if (e.data.empty()) return "noop";
  Result<Command> c = decode_command(e.data);
  if (!c.ok()) {
    return "data=" + text_value(e.data) + " undecodable=" + text_value(c.status().message());
  }
  // A txn or a lease command reads as describe_command writes it (every byte printable).
  if (c->op == CommandOp::kTxn || c->op == CommandOp::kLeaseGrant ||
      c->op == CommandOp::kLeaseRevoke) {
    return describe_command(*c);
  }
  std::string s(command_op_name(c->op));
  s += c->op == CommandOp::kDeletePrefix ? " prefix=" : " key=";
  s += text_value(c->key);
  if (c->op == CommandOp::kCas) s += " expect_revision=" + std::to_string(c->expect_revision);
  if (c->op == CommandOp::kPut || c->op == CommandOp::kCas || c->op == CommandOp::kPutLease) {
    s += " value=" + text_value(c->value);
  }
  if (c->op == CommandOp::kPutLease) s += " lease=" + id_hex(c->lease);
  if (c->op == CommandOp::kHashVerdict) {
    s += " index=" + std::to_string(c->expect_revision) + " hash=" + hash_hex(c->hash);
  }
  s += " request_id=" + std::to_string(c->request_id);
  return s;
}

// A txn branch as a JSON array of op objects.
std::string txn_ops_json(const std::vector<TxnOp>& ops) {
  std::string out = "[";
  for (const TxnOp& op : ops) {
    if (out.size() > 1) out += ",";
    JsonObject o;
    o.str("type", txn_op_name(op.type)).bytes("key", op.key);
    if (op.type == TxnOpType::kPut) {
      o.bytes("value", op.value);
      if (op.lease != 0) o.str("lease", id_hex(op.lease));
    }
    if (op.type == TxnOpType::kGetPrefix || op.type == TxnOpType::kGet) o.num("limit", op.limit);
    out += o.done();
  }
  return out + "]";
}

void command_json(JsonObject& j, const raft::Entry& e) {
  if (e.type == raft::EntryType::kConfChange) {
    j.null("command").base64("data", e.data);
    return;
  }
  if (e.data.empty()) {
    j.raw("command", JsonObject().str("op", "noop").done());
    return;
  }
  Result<Command> c = decode_command(e.data);
  if (!c.ok()) {
    j.null("command").base64("data", e.data).str("decode_error", c.status().message());
    return;
  }
  JsonObject cj;
  cj.str("op", command_op_name(c->op)).num("request_id", c->request_id).bytes("key", c->key);
  if (c->op == CommandOp::kCas) cj.num("expect_revision", c->expect_revision);
  if (c->op == CommandOp::kPut || c->op == CommandOp::kCas || c->op == CommandOp::kPutLease) {
    cj.bytes("value", c->value);
  }
  if (c->op == CommandOp::kPutLease || c->op == CommandOp::kLeaseGrant ||
      c->op == CommandOp::kLeaseRevoke) {
    cj.str("lease", id_hex(c->lease));
  }
  if (c->op == CommandOp::kLeaseGrant) cj.num("ttl", c->ttl);
  if (c->op == CommandOp::kHashVerdict) {
    cj.num("index", c->expect_revision).str("hash", hash_hex(c->hash));
  }
  if (c->op == CommandOp::kTxn) {
    std::string cmps = "[";
    for (const Compare& cmp : c->compares) {
      if (cmps.size() > 1) cmps += ",";
      JsonObject o;
      o.str("target", compare_target_name(cmp.target))
          .str("op", compare_op_name(cmp.op))
          .bytes("key", cmp.key);
      if (cmp.target == CompareTarget::kValue) {
        o.bytes("value", cmp.value);
      } else {
        o.num("number", cmp.number);
      }
      cmps += o.done();
    }
    cj.raw("compares", cmps + "]")
        .raw("then", txn_ops_json(c->then_ops))
        .raw("else", txn_ops_json(c->else_ops));
  }
  j.raw("command", cj.done());
}

std::string record_line(const ScannedRecord& r, OutputFormat format) {
  const Record& rec = r.record;
  if (format == OutputFormat::kJson) {
    JsonObject j;
    j.str("segment", r.segment.file.name)
        .num("offset", r.offset)
        .num("bytes", r.bytes)
        .str("type", record_type_name(rec.type));
    switch (rec.type) {
      case RecordType::kEntry:
        j.num("index", rec.entry.index)
            .num("term", rec.entry.term)
            .str("entry_type",
                 rec.entry.type == raft::EntryType::kNormal ? "normal" : "conf_change")
            .num("data_len", rec.entry.data.size());
        if (r.change.replaced_to != 0) {
          j.raw("replaces",
                JsonObject().num("from", rec.entry.index).num("to", r.change.replaced_to).done());
        } else {
          j.null("replaces");
        }
        command_json(j, rec.entry);
        break;
      case RecordType::kHardState:
        j.num("term", rec.hard_state.term)
            .str("vote", vote_json(rec.hard_state.vote))
            .num("commit", rec.hard_state.commit);
        break;
      case RecordType::kSnapshot:
        j.num("index", rec.snapshot.index)
            .num("term", rec.snapshot.term)
            .raw("voters", json_ids(rec.snapshot.conf.voters))
            .raw("learners", json_ids(rec.snapshot.conf.learners))
            .boolean("reset", r.change.reset);
        break;
    }
    return j.done() + "\n";
  }
  std::string s = "seg=" + std::to_string(r.segment.header.seq) +
                  " off=" + std::to_string(r.offset) + " " +
                  std::string(record_type_name(rec.type));
  switch (rec.type) {
    case RecordType::kEntry:
      s += " index=" + std::to_string(rec.entry.index) + " term=" + std::to_string(rec.entry.term) +
           " type=" + (rec.entry.type == raft::EntryType::kNormal ? "normal" : "conf_change") +
           " len=" + std::to_string(rec.entry.data.size());
      if (r.change.replaced_to != 0) {
        s += " replaces=" + std::to_string(rec.entry.index) + ".." +
             std::to_string(r.change.replaced_to);
      }
      s += " " + command_text(rec.entry);
      break;
    case RecordType::kHardState:
      s += " " + hard_state_text(rec.hard_state);
      break;
    case RecordType::kSnapshot:
      s += " " + snapshot_text(rec.snapshot);
      if (r.change.reset) s += " reset";
      break;
  }
  return s + "\n";
}

}  // namespace

int run_dump(const std::string& dir, const DumpOptions& options, ToolContext& ctx) {
  int rc = 0;
  std::optional<Target> t = open_target(dir, ctx, &rc);
  if (!t) return rc;
  auto wanted_type = [&](RecordType type) {
    return options.types.empty() ||
           std::find(options.types.begin(), options.types.end(), type) != options.types.end();
  };
  auto in_range = [&](std::uint64_t index) {
    return (!options.from || index >= *options.from) && (!options.to || index <= *options.to);
  };
  std::uint64_t shown = 0;
  auto visit = [&](const ScannedRecord& r) -> Status {
    if (!wanted_type(r.record.type)) return Status();
    std::uint64_t index = r.log.last_index;
    if (r.record.type == RecordType::kEntry) index = r.record.entry.index;
    if (r.record.type == RecordType::kSnapshot) index = r.record.snapshot.index;
    if (!in_range(index)) return Status();
    print(ctx.out, record_line(r, ctx.format));
    ++shown;
    if (std::ferror(ctx.out)) return Status::io_error("write to standard output failed");
    return Status();
  };
  Result<WalSummary> scanned = scan_wal(t->where.wal_dir, visit);
  if (!scanned.ok()) return fail(ctx, scanned.status());
  std::fflush(ctx.out);
  warn_live_tail(*t, *scanned, ctx);
  if (scanned->damage) {
    std::fprintf(ctx.err, "%s: %s\n", kTool, scanned->damage->describe().c_str());
  }
  return status_exit_code(*scanned);
}

}  // namespace kvc::storage
