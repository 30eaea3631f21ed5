// Hand-written histories: tricky linearizable ones must pass, and each anomaly the checker
// exists to catch must be rejected with an explanation that names the culprit.
#include "kvc/check/linearizability.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <string>
#include <vector>

namespace kvc::check {
namespace {

// Builders: client, key, then results, then [invoke, response].
Operation put(std::uint64_t c, std::string k, std::string v, std::uint64_t rev, std::uint64_t inv,
              std::uint64_t resp) {
  Operation op;
  op.client = c;
  op.kind = OpKind::kPut;
  op.key = std::move(k);
  op.value = std::move(v);
  op.revision = rev;
  op.invoke_time = inv;
  op.response_time = resp;
  return op;
}
Operation unknown(Operation op) {
  op.outcome = Outcome::kUnknown;
  op.found = false;
  op.read_value.clear();
  op.revision = 0;
  op.response_time = kNever;
  return op;
}
Operation failed(Operation op) {
  op.outcome = Outcome::kFailed;
  return op;
}
Operation get(std::uint64_t c, std::string k, std::string v, std::uint64_t rev, std::uint64_t inv,
              std::uint64_t resp) {
  Operation op;
  op.client = c;
  op.kind = OpKind::kGet;
  op.key = std::move(k);
  op.found = true;
  op.read_value = std::move(v);
  op.revision = rev;
  op.invoke_time = inv;
  op.response_time = resp;
  return op;
}
Operation get_none(std::uint64_t c, std::string k, std::uint64_t inv, std::uint64_t resp) {
  Operation op = get(c, std::move(k), "", 0, inv, resp);
  op.found = false;
  return op;
}
Operation del(std::uint64_t c, std::string k, bool found, std::uint64_t rev, std::uint64_t inv,
              std::uint64_t resp) {
  Operation op;
  op.client = c;
  op.kind = OpKind::kDelete;
  op.key = std::move(k);
  op.found = found;
  op.revision = rev;
  op.invoke_time = inv;
  op.response_time = resp;
  return op;
}
Operation cas(std::uint64_t c, std::string k, std::string v, std::uint64_t expect, bool ok,
              std::uint64_t rev, std::uint64_t inv, std::uint64_t resp) {
  Operation op;
  op.client = c;
  op.kind = OpKind::kCas;
  op.key = std::move(k);
  op.value = std::move(v);
  op.expect_revision = expect;
  op.found = ok;
  op.revision = ok ? rev : 0;
  op.invoke_time = inv;
  op.response_time = resp;
  return op;
}

struct Case {
  const char* name;
  History history;
};

TEST(CheckHistoryTest, AcceptsLinearizableHistories) {
  const Case cases[] = {
      {"empty", {}},
      {"sequential put get delete",
       {put(1, "x", "a", 1, 0, 1), get(1, "x", "a", 1, 2, 3), del(1, "x", true, 2, 4, 5),
        get_none(1, "x", 6, 7), del(1, "x", false, 0, 8, 9), put(1, "x", "b", 3, 10, 11)}},
      {"concurrent writes, read between them sees the first",
       {put(1, "x", "a", 1, 0, 10), put(2, "x", "b", 2, 0, 10), get(3, "x", "a", 1, 5, 15)}},
      {"concurrent writes, read sees the second",
       {put(1, "x", "a", 1, 0, 10), put(2, "x", "b", 2, 0, 10), get(3, "x", "b", 2, 5, 15)}},
      {"concurrent writes without revisions read in either order",
       {put(1, "x", "a", 0, 0, 10), put(2, "x", "b", 0, 0, 10), get(3, "x", "a", 0, 11, 12),
        put(1, "y", "a", 0, 0, 10), put(2, "y", "b", 0, 0, 10), get(3, "y", "b", 0, 11, 12)}},
      {"read overlapping a write sees the old value",
       {put(1, "x", "a", 1, 0, 1), put(2, "x", "b", 2, 2, 10), get(3, "x", "a", 1, 3, 4)}},
      {"read overlapping a write sees the new value, a later read too",
       {put(1, "x", "a", 1, 0, 1), put(2, "x", "b", 2, 2, 10), get(3, "x", "b", 2, 3, 4),
        get(4, "x", "b", 2, 5, 6)}},
      {"equal times count as overlapping", {put(1, "x", "a", 1, 0, 5), get_none(2, "x", 5, 6)}},
      {"unknown put that took effect is read later",
       {unknown(put(1, "x", "a", 0, 0, 0)), get(2, "x", "a", 5, 20, 30)}},
      {"unknown put that never took effect",
       {put(1, "x", "a", 1, 0, 5), unknown(put(2, "x", "b", 0, 6, 0)), get(3, "x", "a", 1, 20, 30),
        get(3, "x", "a", 1, 40, 50)}},
      {"unknown put takes effect long after its client gave up",
       {put(1, "x", "a", 1, 1, 5), unknown(put(2, "x", "b", 0, 0, 0)), get(3, "x", "a", 1, 10, 11),
        get(3, "x", "b", 3, 20, 21), get(4, "x", "b", 3, 30, 31)}},
      {"unknown put read, then its revision used by a cas",
       {unknown(put(1, "x", "a", 0, 0, 0)), get(2, "x", "a", 7, 5, 6),
        cas(2, "x", "b", 7, true, 8, 7, 8), get(3, "x", "b", 8, 9, 10)}},
      {"unknown put's revision is bound by a cas that succeeds against it",
       {put(1, "x", "a", 1, 0, 1), unknown(put(1, "x", "b", 0, 2, 0)),
        cas(2, "x", "c", 5, true, 6, 10, 11), get(3, "x", "c", 6, 12, 13)}},
      {"unknown cas that succeeded",
       {put(1, "x", "a", 1, 0, 1), unknown(cas(2, "x", "b", 1, false, 0, 5, 0)),
        get(3, "x", "b", 7, 10, 11)}},
      {"unknown cas that failed",
       {put(1, "x", "a", 1, 0, 1), put(1, "x", "a2", 2, 2, 3),
        unknown(cas(2, "x", "b", 1, false, 0, 4, 0)), get(3, "x", "a2", 2, 10, 11)}},
      {"unknown delete that took effect",
       {put(1, "x", "a", 1, 0, 1), unknown(del(2, "x", false, 0, 5, 0)), get_none(3, "x", 10, 11),
        put(3, "x", "c", 9, 12, 13), get(3, "x", "c", 9, 14, 15)}},
      {"unknown delete that did not take effect",
       {put(1, "x", "a", 1, 0, 1), unknown(del(2, "x", false, 0, 5, 0)),
        get(3, "x", "a", 1, 10, 11)}},
      {"unknown get is ignored", {unknown(get(1, "x", "zz", 3, 0, 0))}},
      {"failed operations are dropped",
       {failed(put(1, "x", "a", 0, 0, 1)), get_none(2, "x", 2, 3),
        failed(get(2, "x", "never", 9, 4, 5))}},
      {"cas chain",
       {put(1, "x", "a", 1, 0, 1), cas(1, "x", "b", 1, true, 2, 2, 3),
        cas(2, "x", "c", 2, true, 3, 4, 5), cas(3, "x", "d", 1, false, 0, 6, 7),
        get(1, "x", "c", 3, 8, 9)}},
      {"concurrent cas with the same expectation: one wins",
       {put(1, "x", "a", 1, 0, 1), cas(1, "x", "b", 1, true, 2, 2, 10),
        cas(2, "x", "c", 1, false, 0, 2, 10), get(3, "x", "b", 2, 11, 12)}},
      {"cas expecting absence, then again after a delete",
       {cas(1, "x", "a", 0, true, 1, 0, 1), cas(2, "x", "b", 0, false, 0, 2, 3),
        del(1, "x", true, 2, 4, 5), cas(2, "x", "c", 0, true, 3, 6, 7)}},
      {"cas compare fails against a value of unknown revision",
       {unknown(put(1, "x", "a", 0, 0, 0)), cas(2, "x", "b", 4, false, 0, 5, 6),
        get(3, "x", "a", 3, 7, 8)}},
      {"delete found with revision, then a put above it",
       {put(1, "x", "a", 1, 0, 1), del(2, "x", true, 5, 2, 3), put(1, "x", "b", 6, 4, 5)}},
      {"get without revision", {put(1, "x", "a", 3, 0, 1), get(2, "x", "a", 0, 2, 3)}},
      {"keys are independent",
       {put(1, "x", "a", 1, 0, 1), put(2, "y", "a", 2, 2, 3), get(1, "y", "a", 2, 4, 5),
        get(2, "x", "a", 1, 4, 5)}},
      {"same value written twice",
       {put(1, "x", "a", 1, 0, 1), put(1, "x", "a", 2, 2, 3), get(2, "x", "a", 2, 4, 5)}},
      {"many unknown puts, one of them read",
       {unknown(put(1, "x", "a1", 0, 0, 0)), unknown(put(2, "x", "a2", 0, 0, 0)),
        unknown(put(3, "x", "a3", 0, 0, 0)), unknown(put(4, "x", "a4", 0, 0, 0)),
        get(5, "x", "a2", 4, 10, 11), get(5, "x", "a4", 6, 12, 13), get(5, "x", "a1", 9, 14, 15)}},
      {"binary keys and values",
       {put(1, std::string("\0k", 2), std::string("\xff\0", 2), 1, 0, 1),
        get(2, std::string("\0k", 2), std::string("\xff\0", 2), 1, 2, 3)}},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.name);
    const CheckResult r = check_history(c.history);
    EXPECT_EQ(r.verdict, Verdict::kLinearizable) << r.explanation;
    EXPECT_TRUE(r.culprits.empty());
  }
}

struct AnomalyCase {
  const char* name;
  History history;
  std::vector<std::size_t> culprits;  // must be among the reported culprits
};

TEST(CheckHistoryTest, RejectsAnomalies) {
  const AnomalyCase cases[] = {
      {"stale read after a completed write",
       {put(1, "x", "a", 1, 0, 1), put(1, "x", "b", 2, 2, 3), get(2, "x", "a", 1, 4, 5)},
       {2}},
      {"lost acknowledged write", {put(1, "x", "a", 1, 0, 1), get_none(2, "x", 2, 3)}, {1}},
      {"lost acknowledged write, older value read back",
       {put(1, "x", "a", 1, 0, 1), put(2, "x", "b", 2, 2, 3), get(3, "x", "a", 1, 10, 11)},
       {2}},
      {"read of a value never written",
       {put(1, "x", "a", 1, 0, 1), get(2, "x", "zz", 1, 2, 3)},
       {1}},
      {"read of a value written only by a failed operation",
       {failed(put(1, "x", "a", 0, 0, 1)), get(2, "x", "a", 1, 2, 3)},
       {1}},
      {"cas succeeds against a stale revision",
       {put(1, "x", "a", 1, 0, 1), put(1, "x", "b", 2, 2, 3), cas(2, "x", "c", 1, true, 3, 4, 5)},
       {2}},
      {"two cas with the same expected revision both succeed",
       {put(1, "x", "a", 1, 0, 1), cas(1, "x", "b", 1, true, 2, 2, 10),
        cas(2, "x", "c", 1, true, 3, 2, 10)},
       {}},
      {"two cas expecting absence both succeed",
       {cas(1, "x", "a", 0, true, 1, 0, 10), cas(2, "x", "b", 0, true, 2, 0, 10)},
       {}},
      {"cas compare fails although the revision matched",
       {put(1, "x", "a", 1, 0, 1), cas(2, "x", "b", 1, false, 0, 2, 3)},
       {1}},
      {"cas succeeds on an absent key",
       {put(1, "x", "a", 1, 0, 1), del(1, "x", true, 2, 2, 3), cas(2, "x", "b", 1, true, 4, 4, 5)},
       {2}},
      {"read goes backwards in time",
       {put(1, "x", "a", 1, 0, 1), put(2, "x", "b", 2, 2, 20), get(3, "x", "b", 2, 3, 4),
        get(4, "x", "a", 1, 5, 6)},
       {3}},
      {"read goes backwards after an unknown write was observed",
       {put(1, "x", "a", 1, 0, 1), unknown(put(2, "x", "b", 0, 2, 0)), get(3, "x", "b", 5, 3, 4),
        get(4, "x", "a", 1, 5, 6)},
       {3}},
      {"revision goes backwards on one key",
       {put(1, "x", "a", 5, 0, 1), put(1, "x", "b", 3, 2, 3)},
       {1}},
      {"revision repeats on one key", {put(1, "x", "a", 5, 0, 1), put(2, "x", "b", 5, 0, 1)}, {}},
      {"read reports another revision than the write",
       {put(1, "x", "a", 5, 0, 1), get(2, "x", "a", 4, 2, 3)},
       {1}},
      {"unknown write read with a revision below the key's",
       {put(1, "x", "a", 10, 0, 1), unknown(put(2, "x", "b", 0, 2, 0)), get(3, "x", "b", 4, 5, 6)},
       {2}},
      {"cas against a revision the unknown write did not get",
       {unknown(put(1, "x", "a", 0, 0, 0)), get(2, "x", "a", 7, 5, 6),
        cas(2, "x", "b", 6, true, 8, 7, 8)},
       {2}},
      {"observed unknown write is lost",
       {unknown(put(1, "x", "a", 0, 0, 0)), get(2, "x", "a", 3, 5, 6), get_none(3, "x", 7, 8)},
       {2}},
      {"delete finds a key that never existed", {del(1, "x", true, 1, 0, 1)}, {0}},
      {"delete misses a key that exists",
       {put(1, "x", "a", 1, 0, 1), del(2, "x", false, 0, 2, 3)},
       {1}},
      {"put below the revision of a delete",
       {put(1, "x", "a", 1, 0, 1), del(2, "x", true, 5, 2, 3), put(1, "x", "b", 4, 4, 5)},
       {2}},
      {"revisions go backwards across keys",
       {put(1, "x", "a", 5, 0, 1), put(2, "y", "b", 3, 2, 3)},
       {0, 1}},
      {"write read before it was invoked",
       {get(1, "x", "a", 1, 0, 1), put(2, "x", "a", 1, 2, 3)},
       {0}},
  };
  for (const AnomalyCase& c : cases) {
    SCOPED_TRACE(c.name);
    const CheckResult r = check_history(c.history);
    EXPECT_EQ(r.verdict, Verdict::kNotLinearizable);
    EXPECT_FALSE(r.explanation.empty());
    EXPECT_FALSE(r.culprits.empty());
    for (std::size_t want : c.culprits) {
      EXPECT_NE(std::find(r.culprits.begin(), r.culprits.end(), want), r.culprits.end())
          << "culprit " << want << " missing; explanation:\n"
          << r.explanation;
    }
  }
}

TEST(CheckHistoryTest, ExplanationNamesKeyPrefixAndOverwrittenRead) {
  // Without revisions only the search can tell: the prefix, the state, and the read it strands.
  const History h = {put(1, "x", "a", 0, 0, 1), put(1, "x", "b", 0, 2, 3),
                     get(2, "x", "a", 0, 4, 5), put(1, "y", "c", 3, 0, 1)};
  const CheckResult r = check_history(h);
  ASSERT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.key, "x");
  EXPECT_EQ(r.culprits, std::vector<std::size_t>{2});
  EXPECT_NE(r.explanation.find("key x: not linearizable"), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("places 2 of 3"), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("value b at an unknown revision above 0"), std::string::npos)
      << r.explanation;
  EXPECT_NE(r.explanation.find("    " + describe(h[1]) + "\n"), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find(describe(h[2]) + ": the value it read was overwritten"),
            std::string::npos)
      << r.explanation;
  EXPECT_EQ(r.operations, 4u);
  EXPECT_GT(r.states_explored, 0u);
}

TEST(CheckHistoryTest, ExplanationListsWhatCannotGoNext) {
  const History h = {put(1, "x", "a", 1, 0, 1), get_none(2, "x", 2, 3)};
  const CheckResult r = check_history(h);
  ASSERT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.culprits, std::vector<std::size_t>{1});
  EXPECT_NE(r.explanation.find("places 1 of 2"), std::string::npos) << r.explanation;
  EXPECT_NE(r.explanation.find("none of these can be placed next:\n    " + describe(h[1]) +
                               ": it found nothing but the key exists"),
            std::string::npos)
      << r.explanation;
}

TEST(CheckHistoryTest, ExplanationOfAStaleRevisionNamesBothOperations) {
  const History h = {put(1, "x", "a", 1, 0, 1), put(1, "x", "b", 2, 2, 3),
                     get(2, "x", "a", 1, 4, 5)};
  const CheckResult r = check_history(h);
  ASSERT_EQ(r.verdict, Verdict::kNotLinearizable);
  EXPECT_EQ(r.culprits, (std::vector<std::size_t>{1, 2}));
  EXPECT_NE(r.explanation.find(describe(h[1]) + ": left the key at revision 2 or later"),
            std::string::npos)
      << r.explanation;
  EXPECT_NE(r.explanation.find(describe(h[2]) +
                               ": it returned revision 1, but the key is already at revision 2"),
            std::string::npos)
      << r.explanation;
}

TEST(CheckHistoryTest, CountsOperationsAndKeys) {
  const History h = {put(1, "x", "a", 1, 0, 1), failed(put(1, "y", "b", 0, 2, 3)),
                     unknown(get(2, "z", "", 0, 0, 0)), get(2, "x", "a", 1, 4, 5)};
  const CheckResult r = check_history(h);
  EXPECT_EQ(r.verdict, Verdict::kLinearizable);
  EXPECT_EQ(r.operations, 3u);  // the failed put is dropped
  EXPECT_EQ(r.keys, 1u);        // the unknown get constrains nothing
}

TEST(CheckHistoryTest, GivesUpPastTheStateLimit) {
  History h;
  for (std::uint64_t c = 0; c < 8; ++c) {
    h.push_back(put(c, "x", "v" + std::to_string(c), 0, 0, 100));
  }
  h.push_back(get(9, "x", "v0", 0, 101, 102));
  h.push_back(get(9, "x", "v1", 0, 103, 104));  // impossible: only an exhausted search says so
  CheckOptions options;
  options.max_states_per_key = 10;
  const CheckResult r = check_history(h, options);
  EXPECT_EQ(r.verdict, Verdict::kGaveUp);
  EXPECT_EQ(r.key, "x");
  EXPECT_NE(r.explanation.find("gave up"), std::string::npos);
  EXPECT_EQ(check_history(h).verdict, Verdict::kNotLinearizable);
}

TEST(CheckHistoryTest, RevisionOrderCheckCanBeTurnedOff) {
  const History h = {put(1, "x", "a", 5, 0, 1), put(2, "y", "b", 3, 2, 3)};
  CheckOptions options;
  options.check_revision_order = false;
  EXPECT_EQ(check_history(h, options).verdict, Verdict::kLinearizable);
  EXPECT_EQ(check_history(h).verdict, Verdict::kNotLinearizable);
}

TEST(DescribeTest, FormatsEachKindAndOutcome) {
  const struct {
    Operation op;
    const char* want;
  } cases[] = {
      {cas(3, "k", "v7", 12, true, 15, 40, 52), "c3 cas(k, v7, expect=12) -> ok rev=15 [40,52]"},
      {cas(3, "k", "v7", 12, false, 0, 40, 52),
       "c3 cas(k, v7, expect=12) -> compare failed [40,52]"},
      {put(1, "k", "v", 5, 1, 2), "c1 put(k, v) -> ok rev=5 [1,2]"},
      {unknown(put(1, "k", "v", 0, 1, 2)), "c1 put(k, v) -> unknown [1,inf]"},
      {failed(put(1, "k", "v", 0, 1, 2)), "c1 put(k, v) -> failed [1,2]"},
      {get(2, "k", "v", 5, 3, 4), "c2 get(k) -> v rev=5 [3,4]"},
      {get_none(2, "k", 3, 4), "c2 get(k) -> not found [3,4]"},
      {del(2, "k", true, 9, 3, 4), "c2 delete(k) -> deleted rev=9 [3,4]"},
      {del(2, "k", false, 0, 3, 4), "c2 delete(k) -> not found [3,4]"},
      {put(1, "a b", std::string("\x01\"", 2), 5, 1, 2),
       "c1 put(\"a b\", \"\\x01\\\"\") -> ok rev=5 [1,2]"},
  };
  for (const auto& c : cases) {
    EXPECT_EQ(describe(c.op), c.want);
  }
  EXPECT_EQ(describe(put(1, "", std::string(50, 'x'), 5, 1, 2)),
            "c1 put(\"\", \"" + std::string(40, 'x') + "\"...(50 bytes)) -> ok rev=5 [1,2]");
}

TEST(VerdictNameTest, NamesEachVerdict) {
  EXPECT_EQ(verdict_name(Verdict::kLinearizable), "linearizable");
  EXPECT_EQ(verdict_name(Verdict::kNotLinearizable), "not linearizable");
  EXPECT_EQ(verdict_name(Verdict::kGaveUp), "gave up");
}

}  // namespace
}  // namespace kvc::check
