// Helpers for the state machine and snapshot tests: fresh temporary directories, a reference
// model of the state machine's semantics written independently of it (a std::map), and a
// seeded generator of random command streams. Test-only; not thread-safe.
#pragma once

#include <gtest/gtest.h>
#include <unistd.h>

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
      case CommandOp::kCas: {
        if (!key_ok || c.value.size() > kMaxValueBytes) {
          r.code = Code::kInvalidArgument;
          return r;
        }
        const std::uint64_t cur = it == kvs.end() ? 0 : it->second.mod_revision;
        if (c.op == CommandOp::kCas && cur != c.expect_revision) {
          r.code = Code::kCompareFailed;
          r.revision = cur;
          return r;
        }
        KeyValue kv{c.key, c.value, index, index, 1};
        if (it != kvs.end()) {
          kv.create_revision = it->second.create_revision;
          kv.version = it->second.version + 1;
        }
        events.push_back(
            {index, 0, EventType::kPut, c.key, c.value, kv.create_revision, kv.version, cur});
        kvs[c.key] = kv;
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
        events.push_back({index, 0, EventType::kDelete, c.key, "", 0, 0, it->second.mod_revision});
        kvs.erase(it);
        r.revision = index;
        r.deleted = 1;
        revision = index;
        return r;
      case CommandOp::kDeletePrefix: {
        std::uint32_t seq = 0;
        for (auto p = kvs.lower_bound(c.key);
             p != kvs.end() && p->first.compare(0, c.key.size(), c.key) == 0;) {
          events.push_back(
              {index, seq++, EventType::kDelete, p->first, "", 0, 0, p->second.mod_revision});
          p = kvs.erase(p);
        }
        r.deleted = seq;
        if (seq > 0) {
          r.revision = index;
          revision = index;
        }
        return r;
      }
    }
    return r;
  }
  void noop(std::uint64_t index) {
    EXPECT_EQ(index, applied + 1);
    applied = index;
  }
  std::uint64_t hash() const {
    StateHasher h;
    for (const auto& [k, kv] : kvs) h.add(kv);
    return h.finish(applied);
  }
  std::vector<KeyValue> all() const {
    std::vector<KeyValue> out;
    for (const auto& [k, kv] : kvs) out.push_back(kv);
    return out;
  }

  std::map<std::string, KeyValue> kvs;
  std::vector<Event> events;
  std::uint64_t applied = 0;
  std::uint64_t revision = 0;
};

// A seeded random command stream over a small key space (so keys collide, cas sometimes
// matches and delete_prefix removes several keys).
class StepGenerator {
 public:
  explicit StepGenerator(std::uint64_t seed) : rng_(seed) {}

  Step next(const Model& model) {
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
