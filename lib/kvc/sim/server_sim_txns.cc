// The server simulation's txn checker (server_sim_internal.h). The linearizability checker sees
// a txn only as one operation per key (server_sim_clients.cc, finish_txn), which cannot tell
// whether the branch taken matches the compares, nor whether the gets of one txn read one state.
// This checker replays the committed log (every entry as it was first seen committed on any
// member) through a key-value model of its own, written from the documented semantics and not
// from the state machine's code, and requires every acknowledged txn's answer to equal what the
// model computes for that txn at its index: the branch (every compare evaluated on the state
// just before the txn), each op's result (a get's key, value and revisions as of its place in the
// txn), and the revision. The committed order is what the cluster claims; that it respects real
// time is the linearizability checker's part. docs/checker.md ("Transactions") says more.
#include <set>

#include "kvc/sim/server_sim_internal.h"
#include "kvc/storage/command.h"
#include "kvc/storage/state_types.h"

namespace kvc::sim::server_cluster {

namespace {

// What the model computed for one txn entry.
struct TxnOutcome {
  Code code = Code::kOk;
  bool succeeded = false;
  std::uint64_t revision = 0;  // what the answer carries: the index if it wrote, else the store's
  std::vector<wire::TxnResult> results;
  std::string compares;  // how each compare evaluated, for a violation's message
};

std::string describe_kvs(const std::vector<wire::KeyValue>& kvs) {
  if (kvs.empty()) return "nothing";
  std::string out;
  for (const wire::KeyValue& kv : kvs) {
    if (!out.empty()) out += ", ";
    out += kv.key + "=" + kv.value + " (mod " + std::to_string(kv.mod_revision) + ", create " +
           std::to_string(kv.create_revision) + ", version " + std::to_string(kv.version) +
           (kv.lease != 0 ? ", lease " + std::to_string(kv.lease) : "") + ")";
  }
  return out;
}

std::string describe_result(const wire::TxnResult& t) {
  std::string out(txn_op_name(t.type));
  if (t.type == TxnOpType::kGet || t.type == TxnOpType::kGetPrefix) {
    return out + " -> " + describe_kvs(t.kvs) + (t.more ? " (more)" : "");
  }
  return out + " -> revision " + std::to_string(t.revision) + ", deleted " +
         std::to_string(t.deleted);
}

// The key-value store kvc documents (docs/state.md, kvc-wal(5) "COMMANDS"): keys with a value,
// create and mod revisions, a version and a lease; revisions are the indexes of the entries
// that changed something. Deliberately small and separate from the state machine.
class KvModel {
 public:
  // Applies the command of the committed entry at `index`; for a txn, what it answered.
  std::optional<TxnOutcome> apply(std::uint64_t index, const storage::Command& c) {
    bool changed = false;
    std::optional<TxnOutcome> out;
    const bool key_ok = !c.key.empty() && c.key.size() <= storage::kMaxKeyBytes;
    switch (c.op) {
      case storage::CommandOp::kBarrier:
      case storage::CommandOp::kHashVerdict:
        break;
      case storage::CommandOp::kPut:
      case storage::CommandOp::kCas:
      case storage::CommandOp::kPutLease: {
        const std::uint64_t lease = c.op == storage::CommandOp::kPutLease ? c.lease : 0;
        if (!key_ok || c.value.size() > storage::kMaxValueBytes) break;
        if (lease != 0 && !leases_.contains(lease)) break;
        if (c.op == storage::CommandOp::kCas && mod_of(c.key) != c.expect_revision) break;
        put(index, c.key, c.value, lease);
        changed = true;
        break;
      }
      case storage::CommandOp::kDelete:
        changed = key_ok && erase(c.key);
        break;
      case storage::CommandOp::kDeletePrefix:
        changed = erase_prefix(c.key) != 0;
        break;
      case storage::CommandOp::kTxn:
        out = txn(index, c, changed);
        break;
      case storage::CommandOp::kLeaseGrant:
        if (c.lease != 0 && c.ttl != 0 && !leases_.contains(c.lease)) leases_[c.lease];
        break;
      case storage::CommandOp::kLeaseRevoke: {
        auto it = leases_.find(c.lease);
        if (it == leases_.end()) break;
        const std::set<std::string> doomed = it->second;
        for (const std::string& key : doomed) changed = erase(key) || changed;
        leases_.erase(c.lease);
        break;
      }
    }
    if (changed) revision_ = index;
    if (out && out->revision == 0) out->revision = revision_;
    return out;
  }

 private:
  struct Kv {
    std::string value;
    std::uint64_t create = 0, mod = 0, version = 0, lease = 0;
  };

  std::uint64_t mod_of(const std::string& key) const {
    auto it = keys_.find(key);
    return it == keys_.end() ? 0 : it->second.mod;
  }
  wire::KeyValue kv_of(const std::string& key, const Kv& kv) const {
    return {key, kv.value, kv.create, kv.mod, kv.version, kv.lease};
  }
  void put(std::uint64_t index, const std::string& key, const std::string& value,
           std::uint64_t lease) {
    auto [it, fresh] = keys_.try_emplace(key);
    Kv& kv = it->second;
    if (fresh) kv.create = index;
    kv.value = value;
    kv.mod = index;
    ++kv.version;
    if (kv.lease != 0) leases_[kv.lease].erase(key);
    kv.lease = lease;  // a put without a lease detaches the key (etcd's rule)
    if (lease != 0) leases_[lease].insert(key);
  }
  bool erase(const std::string& key) {
    auto it = keys_.find(key);
    if (it == keys_.end()) return false;
    if (it->second.lease != 0) leases_[it->second.lease].erase(key);
    keys_.erase(it);
    return true;
  }
  std::uint64_t erase_prefix(const std::string& prefix) {
    std::vector<std::string> doomed;
    for (auto it = keys_.lower_bound(prefix);
         it != keys_.end() && it->first.compare(0, prefix.size(), prefix) == 0; ++it) {
      doomed.push_back(it->first);
    }
    for (const std::string& key : doomed) erase(key);
    return doomed.size();
  }

  // A value compare never holds on an absent key; the numbers of an absent key are 0.
  bool holds(const Compare& cmp, std::string& why) const {
    auto it = keys_.find(cmp.key);
    const Kv* kv = it == keys_.end() ? nullptr : &it->second;
    std::string actual = "absent";
    int order = 0;
    if (cmp.target == CompareTarget::kValue) {
      if (kv != nullptr) {
        actual = kv->value;
        order = kv->value < cmp.value ? -1 : kv->value > cmp.value ? 1 : 0;
      }
    } else {
      std::uint64_t v = 0;
      if (kv != nullptr) {
        v = cmp.target == CompareTarget::kModRevision      ? kv->mod
            : cmp.target == CompareTarget::kCreateRevision ? kv->create
            : cmp.target == CompareTarget::kVersion        ? kv->version
                                                           : kv->lease;
      }
      actual = std::to_string(v);
      order = v < cmp.number ? -1 : v > cmp.number ? 1 : 0;
    }
    bool h = false;
    if (cmp.target != CompareTarget::kValue || kv != nullptr) {
      h = cmp.op == CompareOp::kEqual      ? order == 0
          : cmp.op == CompareOp::kNotEqual ? order != 0
          : cmp.op == CompareOp::kLess     ? order < 0
                                           : order > 0;
    }
    why += (why.empty() ? "" : "; ") + std::string(compare_target_name(cmp.target)) + "(" +
           cmp.key + ") " + std::string(compare_op_name(cmp.op)) + " " +
           (cmp.target == CompareTarget::kValue ? cmp.value : std::to_string(cmp.number)) + " is " +
           (h ? "true" : "false") + " (it is " + actual + ")";
    return h;
  }

  TxnOutcome txn(std::uint64_t index, const storage::Command& c, bool& changed) {
    TxnOutcome out;
    if (!storage::validate_txn(c).ok()) {
      out.code = Code::kInvalidArgument;
      return out;
    }
    out.succeeded = true;
    for (const Compare& cmp : c.compares) out.succeeded = holds(cmp, out.compares) && out.succeeded;
    const std::vector<TxnOp>& ops = out.succeeded ? c.then_ops : c.else_ops;
    for (const TxnOp& op : ops) {
      const bool prefix = op.type == TxnOpType::kDeletePrefix || op.type == TxnOpType::kGetPrefix;
      if ((!prefix && (op.key.empty() || op.key.size() > storage::kMaxKeyBytes)) ||
          op.value.size() > storage::kMaxValueBytes) {
        out.code = Code::kInvalidArgument;
        return out;
      }
      if (op.type == TxnOpType::kPut && op.lease != 0 && !leases_.contains(op.lease)) {
        out.code = Code::kNotFound;
        return out;
      }
    }
    // Each op sees the store as the txn's earlier ops left it, all at one revision.
    for (const TxnOp& op : ops) {
      wire::TxnResult t;
      t.type = op.type;
      switch (op.type) {
        case TxnOpType::kPut:
          put(index, op.key, op.value, op.lease);
          t.revision = index;
          break;
        case TxnOpType::kDelete:
          t.deleted = erase(op.key) ? 1 : 0;
          break;
        case TxnOpType::kDeletePrefix:
          t.deleted = erase_prefix(op.key);
          break;
        case TxnOpType::kGet:
          if (auto it = keys_.find(op.key); it != keys_.end()) {
            t.kvs.push_back(kv_of(it->first, it->second));
          }
          break;
        case TxnOpType::kGetPrefix: {
          const std::uint64_t limit =
              op.limit == 0 ? storage::kMaxTxnGetKeys
                            : std::min<std::uint64_t>(op.limit, storage::kMaxTxnGetKeys);
          for (auto it = keys_.lower_bound(op.key);
               it != keys_.end() && it->first.compare(0, op.key.size(), op.key) == 0; ++it) {
            if (t.kvs.size() == limit) {
              t.more = true;
              break;
            }
            t.kvs.push_back(kv_of(it->first, it->second));
          }
          break;
        }
      }
      if (op.type == TxnOpType::kDelete || op.type == TxnOpType::kDeletePrefix) {
        t.revision = t.deleted != 0 ? index : 0;
      }
      changed = changed || t.revision != 0;
      out.results.push_back(std::move(t));
    }
    out.revision = changed ? index : 0;  // 0: the store's revision (apply fills it in)
    return out;
  }

  std::map<std::string, Kv> keys_;
  std::map<std::uint64_t, std::set<std::string>> leases_;  // lease -> its keys
  std::uint64_t revision_ = 0;
};

// What an answer says that differs from the model's outcome ("" when nothing does).
std::string difference(const wire::Response& r, const TxnOutcome& m) {
  if (m.code != Code::kOk) {
    return "the model refuses it (" + std::string(code_name(m.code)) + ")";
  }
  if (r.succeeded != m.succeeded) {
    return "answered succeeded=" + std::to_string(r.succeeded) +
           " but its compares on the state just before it give " + std::to_string(m.succeeded) +
           ": " + m.compares;
  }
  if (r.txn_results.size() != m.results.size()) {
    return "answered " + std::to_string(r.txn_results.size()) + " op results, the model has " +
           std::to_string(m.results.size());
  }
  for (std::size_t i = 0; i < m.results.size(); ++i) {
    if (!(r.txn_results[i] == m.results[i])) {
      return "op " + std::to_string(i + 1) + " answered " + describe_result(r.txn_results[i]) +
             ", the model has " + describe_result(m.results[i]);
    }
  }
  if (r.revision != m.revision) {
    return "answered revision " + std::to_string(r.revision) + ", the model has " +
           std::to_string(m.revision);
  }
  return "";
}

}  // namespace

void ServerSim::check_txns() {
  if (!o_.txn_model || acked_txns_.empty()) return;
  // The model starts from the empty store at index 1 and needs every entry after it; a run that
  // saw a gap (none is expected: each commit is seen on the member that advanced it) is skipped.
  if (committed_.empty() || committed_.begin()->first != 1 ||
      committed_.rbegin()->first != committed_.size()) {
    trace("txn check skipped: the committed log seen has gaps");
    return;
  }
  KvModel model;
  std::map<std::uint64_t, TxnOutcome> outcomes;
  // Txn entries by content (the command with its request id cleared): a txn with a put carries
  // a value no other request has, but one without may have been sent twice.
  std::multimap<std::string, std::uint64_t> by_content;
  for (const auto& [index, data] : committed_data_) {
    Result<storage::Command> cmd = storage::decode_command(data);
    if (!cmd.ok()) continue;  // every member skips it as a no-op
    std::optional<TxnOutcome> out = model.apply(index, *cmd);
    if (!out) continue;
    cmd->request_id = 0;
    by_content.emplace(storage::encode_command(*cmd), index);
    outcomes.emplace(index, std::move(*out));
  }
  for (const AckedTxn& a : acked_txns_) {
    storage::Command c;
    c.op = storage::CommandOp::kTxn;
    c.compares = a.req.compares;
    c.then_ops = a.req.then_ops;
    c.else_ops = a.req.else_ops;
    auto [lo, hi] = by_content.equal_range(storage::encode_command(c));
    const std::string what = "txn of client c" + std::to_string(a.client) +
                             " answered at revision " + std::to_string(a.resp.revision);
    if (lo == hi) {
      violation(what + " is in no committed entry");
      return;
    }
    // Sound when the same txn was sent twice: one of its entries must explain the answer.
    std::string first;
    std::uint64_t first_index = 0;
    bool explained = false;
    for (auto it = lo; it != hi && !explained; ++it) {
      const std::string d = difference(a.resp, outcomes.at(it->second));
      explained = d.empty();
      if (first_index == 0 || it->second == a.resp.revision) {
        first = d;
        first_index = it->second;
      }
    }
    if (!explained) {
      violation(what + " (committed at index " + std::to_string(first_index) + "): " + first);
      return;
    }
    ++result_.stats.txns_checked;
  }
}

}  // namespace kvc::sim::server_cluster
