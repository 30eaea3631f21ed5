// Helpers for the state machine and snapshot tests: fresh temporary directories, a reference
// model of the state machine's semantics written independently of it (a std::map), and a
// seeded generator of random command streams. Test-only; not thread-safe.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <map>
#include <random>
#include <string>
#include <vector>

#include "kvc/storage/command.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/state.h"
#include "kvc/storage/state_types.h"
#include "support/test_dir.h"

namespace kvc::storage::testing {

// A new empty directory of the running test (tests/support/test_dir.h: removed when the test
// passes, kept for a look when it fails); `tag` names one of several.
inline std::string fresh_dir(const std::string& tag = "") {
  return kvc::test::fresh_dir(tag.empty() ? "state" : tag);
}

// One step of a replicated log as the tests feed it: a command, a no-op or a membership.
struct Step {
  enum class Kind { kCommand, kNoop, kMembership } kind = Kind::kCommand;
  Command command;
  Membership membership;
};

// The reference: the documented semantics on a std::map, nothing shared with the real code.
class Model {
 public:
  ApplyResult apply(std::uint64_t index, const Command& c) {
    EXPECT_EQ(index, applied + 1);
    applied = index;
    ApplyResult r;
    const bool key_ok = !c.key.empty() && c.key.size() <= kMaxKeyBytes;
    auto it = kvs.find(c.key);
    switch (c.op) {
      case CommandOp::kBarrier:
      case CommandOp::kHashVerdict:
        return r;  // changes nothing
      case CommandOp::kPut:
      case CommandOp::kCas:
      case CommandOp::kPutLease: {
        if (!key_ok || c.value.size() > kMaxValueBytes) {
          r.code = Code::kInvalidArgument;
          return r;
        }
        const std::uint64_t lease = c.op == CommandOp::kPutLease ? c.lease : 0;
        if (lease != 0 && !leases.contains(lease)) {
          r.code = Code::kNotFound;
          return r;
        }
        const std::uint64_t cur = it == kvs.end() ? 0 : it->second.mod_revision;
        if (c.op == CommandOp::kCas && cur != c.expect_revision) {
          r.code = Code::kCompareFailed;
          r.revision = cur;
          return r;
        }
        std::uint32_t seq = 0;
        put(index, seq, c.key, c.value, lease);
        r.revision = index;
        revision = index;
        return r;
      }
      case CommandOp::kDelete:
        if (!key_ok) {
          r.code = Code::kInvalidArgument;
          return r;
        }
        if (it == kvs.end()) {
          r.code = Code::kNotFound;
          return r;
        }
        {
          std::uint32_t seq = 0;
          erase(index, seq, c.key);
        }
        r.revision = index;
        r.deleted = 1;
        revision = index;
        return r;
      case CommandOp::kDeletePrefix: {
        std::uint32_t seq = 0;
        r.deleted = erase_prefix(index, seq, c.key);
        if (seq > 0) {
          r.revision = index;
          revision = index;
        }
        return r;
      }
      case CommandOp::kLeaseGrant:
        if (c.lease == 0 || c.ttl == 0) {
          r.code = Code::kInvalidArgument;
        } else if (leases.contains(c.lease)) {
          r.code = Code::kAlreadyExists;
        } else {
          leases[c.lease] = Lease{c.lease, c.ttl, index, {}};
        }
        return r;
      case CommandOp::kLeaseRevoke: {
        auto l = leases.find(c.lease);
        if (l == leases.end()) {
          r.code = Code::kNotFound;
          return r;
        }
        std::uint32_t seq = 0;
        for (const std::string& k : std::vector<std::string>(l->second.keys)) erase(index, seq, k);
        leases.erase(c.lease);
        r.deleted = seq;
        if (seq > 0) {
          r.revision = index;
          revision = index;
        }
        return r;
      }
      case CommandOp::kTxn:
        return txn(index, c);
    }
    return r;
  }

  // A txn as its documentation says: refused whole (nothing applied) when two writes of a
  // branch touch one key or a put names a missing lease; compares decide the branch; ops apply
  // in order, each seeing the ones before.
  ApplyResult txn(std::uint64_t index, const Command& c) {
    ApplyResult r;
    for (const auto* branch : {&c.then_ops, &c.else_ops}) {
      std::vector<const TxnOp*> writes;
      for (const TxnOp& op : *branch) {
        if (op.type == TxnOpType::kGet || op.type == TxnOpType::kGetPrefix) continue;
        for (const TxnOp* w : writes) {
          auto under = [](const TxnOp& p, const TxnOp& q) {
            return p.type == TxnOpType::kDeletePrefix && q.key.rfind(p.key, 0) == 0;
          };
          if (w->key == op.key || under(*w, op) || under(op, *w)) {
            r.code = Code::kInvalidArgument;
            return r;
          }
        }
        writes.push_back(&op);
      }
    }
    bool holds = true;
    for (const Compare& cmp : c.compares) {
      auto it = kvs.find(cmp.key);
      bool ok = false;
      if (cmp.target == CompareTarget::kValue) {
        if (it != kvs.end()) ok = ordered(it->second.value.compare(cmp.value), cmp.op);
      } else {
        std::uint64_t v = 0;
        if (it != kvs.end()) {
          v = cmp.target == CompareTarget::kModRevision      ? it->second.mod_revision
              : cmp.target == CompareTarget::kCreateRevision ? it->second.create_revision
              : cmp.target == CompareTarget::kVersion        ? it->second.version
                                                             : lease_of(cmp.key);
        }
        ok = ordered(v < cmp.number ? -1 : v > cmp.number ? 1 : 0, cmp.op);
      }
      if (!ok) {
        holds = false;
        break;
      }
    }
    const std::vector<TxnOp>& ops = holds ? c.then_ops : c.else_ops;
    for (const TxnOp& op : ops) {
      const bool prefix = op.type == TxnOpType::kDeletePrefix || op.type == TxnOpType::kGetPrefix;
      if (!prefix && (op.key.empty() || op.key.size() > kMaxKeyBytes)) {
        r.code = Code::kInvalidArgument;
        return r;
      }
      if (op.type == TxnOpType::kPut && op.lease != 0 && !leases.contains(op.lease)) {
        r.code = Code::kNotFound;
        return r;
      }
    }
    r.succeeded = holds;
    std::uint32_t seq = 0;
    bool changed = false;
    for (const TxnOp& op : ops) {
      TxnOpResult o;
      o.type = op.type;
      switch (op.type) {
        case TxnOpType::kPut:
          put(index, seq, op.key, op.value, op.lease);
          o.revision = index;
          break;
        case TxnOpType::kDelete:
          if (kvs.contains(op.key)) {
            erase(index, seq, op.key);
            o.deleted = 1;
            o.revision = index;
          }
          break;
        case TxnOpType::kDeletePrefix:
          o.deleted = erase_prefix(index, seq, op.key);
          if (o.deleted != 0) o.revision = index;
          break;
        case TxnOpType::kGet:
          if (auto it = kvs.find(op.key); it != kvs.end()) o.kvs.push_back(with_lease(it->second));
          break;
        case TxnOpType::kGetPrefix:
          for (auto it = kvs.lower_bound(op.key);
               it != kvs.end() && it->first.compare(0, op.key.size(), op.key) == 0; ++it) {
            if (op.limit != 0 && o.kvs.size() == op.limit) {
              o.more = true;
              break;
            }
            o.kvs.push_back(with_lease(it->second));
          }
          break;
      }
      changed = changed || o.revision != 0;
      r.ops.push_back(std::move(o));
    }
    if (changed) {
      r.revision = index;
      revision = index;
    }
    return r;
  }

  static bool ordered(int order, CompareOp op) {
    switch (op) {
      case CompareOp::kEqual:
        return order == 0;
      case CompareOp::kNotEqual:
        return order != 0;
      case CompareOp::kLess:
        return order < 0;
      case CompareOp::kGreater:
        return order > 0;
    }
    return false;
  }

  std::uint64_t lease_of(const std::string& key) const {
    for (const auto& [id, l] : leases) {
      if (std::find(l.keys.begin(), l.keys.end(), key) != l.keys.end()) return id;
    }
    return 0;
  }
  KeyValue with_lease(KeyValue kv) const {
    kv.lease = lease_of(kv.key);
    return kv;
  }
  void detach(const std::string& key) {
    for (auto& [id, l] : leases) std::erase(l.keys, key);
  }
  void put(std::uint64_t index, std::uint32_t& seq, const std::string& key,
           const std::string& value, std::uint64_t lease) {
    auto it = kvs.find(key);
    const std::uint64_t cur = it == kvs.end() ? 0 : it->second.mod_revision;
    KeyValue kv{key, value, index, index, 1};
    if (it != kvs.end()) {
      kv.create_revision = it->second.create_revision;
      kv.version = it->second.version + 1;
    }
    events.push_back({index, seq++, EventType::kPut, key, value, kv.create_revision, kv.version,
                      cur, it != kvs.end() ? it->second.value : std::string(),
                      it != kvs.end() ? it->second.create_revision : 0,
                      it != kvs.end() ? it->second.version : 0});
    kvs[key] = kv;
    detach(key);
    if (lease != 0) {
      std::vector<std::string>& ks = leases[lease].keys;
      ks.insert(std::lower_bound(ks.begin(), ks.end(), key), key);
    }
  }
  void erase(std::uint64_t index, std::uint32_t& seq, const std::string& key) {
    const KeyValue& was = kvs.at(key);
    events.push_back({index, seq++, EventType::kDelete, key, "", 0, 0, was.mod_revision, was.value,
                      was.create_revision, was.version});
    kvs.erase(key);
    detach(key);
  }
  std::uint64_t erase_prefix(std::uint64_t index, std::uint32_t& seq, const std::string& prefix) {
    std::vector<std::string> doomed;
    for (auto p = kvs.lower_bound(prefix);
         p != kvs.end() && p->first.compare(0, prefix.size(), prefix) == 0; ++p) {
      doomed.push_back(p->first);
    }
    for (const std::string& k : doomed) erase(index, seq, k);
    return doomed.size();
  }
  void noop(std::uint64_t index) {
    EXPECT_EQ(index, applied + 1);
    applied = index;
  }
  std::uint64_t hash() const {
    StateHasher h;
    for (const auto& [k, kv] : kvs) h.add(kv);
    for (const auto& [id, l] : leases) h.add_lease(l);
    return h.finish(applied);
  }
  std::vector<KeyValue> all() const {
    std::vector<KeyValue> out;
    for (const auto& [k, kv] : kvs) out.push_back(with_lease(kv));
    return out;
  }
  std::vector<Lease> all_leases() const {
    std::vector<Lease> out;
    for (const auto& [id, l] : leases) out.push_back(l);
    return out;
  }

  std::map<std::string, KeyValue> kvs;
  std::map<std::uint64_t, Lease> leases;
  std::vector<Event> events;
  std::uint64_t applied = 0;
  std::uint64_t revision = 0;
};

// A seeded random command stream over a small key space (so keys collide, cas sometimes
// matches and delete_prefix removes several keys).
class StepGenerator {
 public:
  // With `coordination`, a fifth of the steps are lease and txn commands (leases 1 to 4, so
  // grants collide and revokes miss).
  explicit StepGenerator(std::uint64_t seed, bool coordination = false)
      : rng_(seed), coordination_(coordination) {}

  Step next(const Model& model) {
    if (coordination_ && pick(5) == 0) return coordination_step(model);
    Step s;
    const int dice = pick(100);
    const std::string key = random_key();
    if (dice < 45) {
      s.command = {.op = CommandOp::kPut, .key = key, .value = random_value()};
    } else if (dice < 60) {
      s.command = {.op = CommandOp::kDelete, .key = key};
    } else if (dice < 64) {
      static const char* const kPrefixes[] = {"a/", "b/", "a/1", "c", "zz"};
      s.command = {.op = CommandOp::kDeletePrefix, .key = kPrefixes[pick(5)]};
    } else if (dice < 88) {
      std::uint64_t expect = 0;
      auto it = model.kvs.find(key);
      const int how = pick(4);
      if (how < 2 && it != model.kvs.end()) expect = it->second.mod_revision;
      if (how == 2) expect = 1 + pick(static_cast<int>(model.applied + 1));
      s.command = {
          .op = CommandOp::kCas, .key = key, .value = random_value(), .expect_revision = expect};
    } else if (dice < 95) {
      s.kind = Step::Kind::kNoop;
    } else {
      s.kind = Step::Kind::kMembership;
      const int n = 1 + pick(4);
      for (int i = 1; i <= n; ++i) {
        s.membership.members.push_back({.id = static_cast<std::uint64_t>(i * 10 + pick(3)),
                                        .name = "m" + std::to_string(i),
                                        .peer_addr = "10.0.0." + std::to_string(i) + ":2380",
                                        .learner = pick(4) == 0});
      }
    }
    s.command.request_id = rng_();
    return s;
  }

  int pick(int n) { return static_cast<int>(rng_() % static_cast<std::uint64_t>(n)); }
  std::mt19937_64& rng() { return rng_; }

 private:
  Step coordination_step(const Model& model) {
    Step s;
    Command& c = s.command;
    const std::uint64_t lease = 1 + pick(4);
    switch (pick(5)) {
      case 0:
        c = {.op = CommandOp::kLeaseGrant,
             .lease = lease,
             .ttl = 1 + static_cast<std::uint64_t>(pick(30))};
        break;
      case 1:
        c = {.op = CommandOp::kLeaseRevoke, .lease = lease};
        break;
      case 2:
        c = {.op = CommandOp::kPutLease,
             .key = random_key(),
             .value = random_value(),
             .lease = lease};
        break;
      default: {
        c.op = CommandOp::kTxn;
        const int ncmp = pick(3);
        for (int i = 0; i < ncmp; ++i) {
          Compare cmp;
          cmp.key = random_key();
          cmp.target = static_cast<CompareTarget>(1 + pick(5));
          cmp.op = static_cast<CompareOp>(1 + pick(4));
          auto it = model.kvs.find(cmp.key);
          if (cmp.target == CompareTarget::kValue) {
            cmp.value = it != model.kvs.end() && pick(2) == 0 ? it->second.value : random_value();
          } else {
            cmp.number = it != model.kvs.end() && pick(2) == 0
                             ? it->second.mod_revision
                             : static_cast<std::uint64_t>(pick(4));
          }
          c.compares.push_back(std::move(cmp));
        }
        for (auto* ops : {&c.then_ops, &c.else_ops}) {
          const int nops = pick(4);
          for (int i = 0; i < nops; ++i) {
            TxnOp op;
            op.type = static_cast<TxnOpType>(1 + pick(5));
            op.key = op.type == TxnOpType::kDeletePrefix || op.type == TxnOpType::kGetPrefix
                         ? std::string(1, "abcd"[pick(4)])
                         : random_key();
            if (op.type == TxnOpType::kPut) {
              op.value = random_value();
              op.lease = pick(3) == 0 ? lease : 0;
            }
            if (op.type == TxnOpType::kGetPrefix) op.limit = static_cast<std::uint64_t>(pick(4));
            ops->push_back(std::move(op));
          }
        }
      }
    }
    c.request_id = rng_();
    return s;
  }

  std::string random_key() {
    static const char* const kDirs[] = {"a/", "a/1", "b/", "c", "d/x/"};
    return std::string(kDirs[pick(5)]) + std::to_string(pick(12));
  }
  std::string random_value() {
    std::string v(static_cast<std::size_t>(pick(40)), '\0');
    for (char& c : v) c = static_cast<char>(pick(256));
    return v;
  }
  std::mt19937_64 rng_;
  bool coordination_ = false;
};

// Applies `step` at `index` to both the state machine and the model; checks they agree.
inline void apply_both(StateMachine& sm, Model& model, std::uint64_t index, std::uint64_t term,
                       const Step& step, Membership* model_membership = nullptr) {
  switch (step.kind) {
    case Step::Kind::kCommand: {
      Result<ApplyResult> got = sm.apply(index, term, step.command);
      ASSERT_TRUE(got.ok()) << got.status().to_string();
      const ApplyResult want = model.apply(index, step.command);
      ASSERT_EQ(got->code, want.code)
          << "index " << index << ": " << describe_command(step.command);
      ASSERT_EQ(got->revision, want.revision) << "index " << index;
      ASSERT_EQ(got->deleted, want.deleted) << "index " << index;
      ASSERT_EQ(got->succeeded, want.succeeded) << "index " << index;
      ASSERT_EQ(got->ops, want.ops) << "index " << index << ": " << describe_command(step.command);
      break;
    }
    case Step::Kind::kNoop:
      sm.apply_noop(index, term);
      model.noop(index);
      break;
    case Step::Kind::kMembership:
      sm.apply_membership(index, term, step.membership);
      model.noop(index);
      if (model_membership != nullptr) *model_membership = step.membership;
      break;
  }
}

// Every key of the merged view, in order, with values.
inline std::vector<KeyValue> all_keys(StateMachine& sm) {
  Result<RangePage> page = sm.range({});
  EXPECT_TRUE(page.ok()) << page.status().to_string();
  return page.ok() ? page->kvs : std::vector<KeyValue>{};
}

}  // namespace kvc::storage::testing
