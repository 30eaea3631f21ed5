// The permissions file (kvc-permissions(5)): parsing and its errors, prefix matching, read vs
// readwrite vs admin, deny by default, token digests, and the checks each request needs.
#include "kvc/server/permissions.h"

#include <gtest/gtest.h>

namespace kvc::server {
namespace {

// sha256("ctl-secret-value") and sha256("ro-secret-value"), as `printf %s V | sha256sum` prints.
const std::string kCtl = "ctl-secret-value";
const std::string kRo = "ro-secret-value";

std::string file_text() {
  return "# a comment\n"
         "\n"
         "token ctl " +
         token_digest(kCtl) +
         "\n"
         "token ro sha256:" +
         token_digest(kRo) +
         "\n"
         "grant ctl readwrite /clusters/\n"
         "  grant ro read /\n"
         "grant \"CN=ops,O=example\\, Inc.\" readwrite \"\"\n"
         "admin \"CN=ops,O=example\\, Inc.\"\n"
         "grant secret read /pub/\n"
         "grant \"CN=bin\" read \"\\x00\\x01\"\n";
}

Permissions parsed() {
  Result<Permissions> p = Permissions::parse(file_text(), "perms");
  EXPECT_TRUE(p.ok()) << p.status().to_string();
  return p.ok() ? std::move(*p) : Permissions();
}

AccessCheck check(Access a, std::string key = {}) {
  return {.access = a, .what = "op", .key = key};
}

TEST(PermissionsTest, TokenDigestIsSha256Hex) {
  // printf %s abc | sha256sum
  EXPECT_EQ(token_digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(PermissionsTest, TokensMatchByDigestAndUnknownOnesAreRefused) {
  const Permissions p = parsed();
  ASSERT_TRUE(p.token_name(kCtl).ok());
  EXPECT_EQ(*p.token_name(kCtl), "ctl");
  EXPECT_EQ(*p.token_name(kRo), "ro");
  EXPECT_EQ(p.token_name("ctl").status().code(), Code::kUnauthenticated);
  EXPECT_EQ(p.token_name(kCtl + "x").status().code(), Code::kUnauthenticated);
  EXPECT_EQ(p.token_name("").status().code(), Code::kUnauthenticated);
}

TEST(PermissionsTest, PrefixesMatchBytesNotPathComponents) {
  const Permissions p = parsed();
  EXPECT_TRUE(p.allows("ctl", check(Access::kReadWrite, "/clusters/a")));
  EXPECT_TRUE(p.allows("ctl", check(Access::kReadWrite, "/clusters/")));
  EXPECT_FALSE(p.allows("ctl", check(Access::kReadWrite, "/clusters")));
  EXPECT_FALSE(p.allows("ctl", check(Access::kReadWrite, "/clustersx")));
  EXPECT_FALSE(p.allows("ctl", check(Access::kRead, "/other")));
  EXPECT_TRUE(p.allows("secret", check(Access::kRead, "/pub/x")));
  EXPECT_FALSE(p.allows("secret", check(Access::kRead, "/public")));
  // A quoted prefix with \xHH bytes.
  EXPECT_TRUE(p.allows("CN=bin", check(Access::kRead, std::string("\0\1\2", 3))));
  EXPECT_FALSE(p.allows("CN=bin", check(Access::kRead, std::string("\0\2", 2))));
  // The empty prefix covers everything.
  EXPECT_TRUE(p.allows("CN=ops,O=example\\, Inc.", check(Access::kReadWrite, "")));
  EXPECT_TRUE(p.allows("CN=ops,O=example\\, Inc.", check(Access::kReadWrite, "anything")));
}

TEST(PermissionsTest, ReadWriteAndAdminAreSeparate) {
  const Permissions p = parsed();
  EXPECT_TRUE(p.allows("ro", check(Access::kRead, "/clusters/a")));
  EXPECT_FALSE(p.allows("ro", check(Access::kReadWrite, "/clusters/a")));
  EXPECT_FALSE(p.allows("ro", check(Access::kAnyWrite)));
  EXPECT_TRUE(p.allows("ctl", check(Access::kRead, "/clusters/a")));  // readwrite reads too
  EXPECT_TRUE(p.allows("ctl", check(Access::kAnyWrite)));
  EXPECT_FALSE(p.allows("ctl", check(Access::kAdmin)));
  EXPECT_FALSE(p.allows("ro", check(Access::kAdmin)));
  EXPECT_TRUE(p.allows("CN=ops,O=example\\, Inc.", check(Access::kAdmin)));
  EXPECT_TRUE(p.allows("ro", check(Access::kAuthenticated)));
}

TEST(PermissionsTest, WhatIsNotGrantedIsDenied) {
  const Permissions p = parsed();
  EXPECT_FALSE(p.allows("anonymous", check(Access::kRead, "/")));
  EXPECT_FALSE(p.allows("CN=someone", check(Access::kRead, "/")));
  EXPECT_FALSE(p.allows("secret", check(Access::kReadWrite, "/pub/x")));
  const Result<Permissions> empty = Permissions::parse("", "perms");
  ASSERT_TRUE(empty.ok());
  EXPECT_FALSE(empty->allows("ctl", check(Access::kRead, "/")));
}

TEST(PermissionsTest, DescribeListsGrantsInFileOrder) {
  const Permissions p = parsed();
  EXPECT_EQ(p.describe("ctl"), std::vector<std::string>{"readwrite \"/clusters/\""});
  EXPECT_EQ(p.describe("CN=ops,O=example\\, Inc."),
            (std::vector<std::string>{"readwrite \"\"", "admin"}));
  EXPECT_TRUE(p.describe("nobody").empty());
}

TEST(PermissionsTest, EveryErrorNamesFileAndLine) {
  const std::string d = token_digest("x");
  const struct {
    const char* name;
    std::string text;
    std::string want;  // a substring of the message
  } cases[] = {
      {"unknown directive", "\nallow ro /\n", "perms:2: unknown directive \"allow\""},
      {"unknown access", "token ro " + d + "\ngrant ro write /\n",
       "perms:2: grant: unknown access \"write\" (read or readwrite)"},
      {"grant arity", "grant ro read\n", "perms:1: grant: expected"},
      {"admin arity", "admin\n", "perms:1: admin: expected"},
      {"unknown token", "grant ctrl read /\n", "perms:1: grant: no token named \"ctrl\""},
      {"admin unknown token", "#\nadmin ctrl\n", "perms:2: admin: no token named \"ctrl\""},
      {"short digest", "token ro abcd\n", "perms:1: token ro: the digest must be 64 hex digits"},
      {"bad hex", "token ro " + std::string(64, 'g') + "\n", "perms:1: token ro: the digest"},
      {"token arity", "token ro\n", "perms:1: token: expected"},
      {"bad token name", "token \"a b\" " + d + "\n", "perms:1: token: bad name"},
      {"reserved token name", "token secret " + d + "\n", "perms:1: token: secret is a reserved"},
      {"duplicate token", "token a " + d + "\ntoken a " + token_digest("y") + "\n",
       "perms:2: token: a is defined twice"},
      {"duplicate digest", "token a " + d + "\ntoken b " + d + "\n",
       "perms:2: token b: the same digest"},
      {"embedded", "admin embedded\n", "perms:1: admin: embedded is the embedding program"},
      {"unterminated quote", "grant \"CN=a read /\n", "perms:1: unterminated quoted string"},
      {"quote in a word", "grant CN=\"a\" read /\n", "perms:1: a quote inside"},
      {"no blank after quote", "grant \"CN=a\"x read /\n", "perms:1: no blank after"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<Permissions> p = Permissions::parse(c.text, "perms");
    ASSERT_FALSE(p.ok());
    EXPECT_EQ(p.status().code(), Code::kInvalidArgument);
    EXPECT_NE(p.status().message().find(c.want), std::string::npos) << p.status().message();
  }
}

TEST(PermissionsTest, LoadNamesAMissingFile) {
  Result<Permissions> p = Permissions::load("/nonexistent/perms");
  ASSERT_FALSE(p.ok());
  EXPECT_NE(p.status().message().find("/nonexistent/perms"), std::string::npos);
}

TEST(PermissionsTest, RequestsNeedTheRightChecks) {
  using wire::Op;
  const Permissions p = parsed();
  auto denied = [&](const std::string& who, const wire::Request& req) -> std::string {
    for (const AccessCheck& c : required_access(req)) {
      if (!p.allows(who, c)) return permission_denied(who, c).message();
    }
    return "";
  };
  EXPECT_EQ(denied("ro", {.op = Op::kGet, .key = "/x"}), "");
  EXPECT_EQ(denied("ro", {.op = Op::kPut, .key = "/clusters/a"}),
            "permission denied: ro may not put /clusters/a");
  EXPECT_EQ(denied("ctl", {.op = Op::kPut, .key = "/clusters/a"}), "");
  EXPECT_EQ(denied("ctl", {.op = Op::kCas, .key = "/other"}),
            "permission denied: ctl may not cas /other");
  EXPECT_EQ(denied("ctl", {.op = Op::kDelete, .key = "/", .prefix = true}),
            "permission denied: ctl may not delete prefix /");
  // A range reads the prefix in `value`.
  EXPECT_EQ(denied("ctl", {.op = Op::kRange, .key = "/clusters/", .value = "/"}),
            "permission denied: ctl may not range prefix /");
  EXPECT_EQ(denied("ctl", {.op = Op::kRange, .key = "", .value = ""}),
            "permission denied: ctl may not range prefix \"\"");
  EXPECT_EQ(denied("ctl", {.op = Op::kRange, .key = "/clusters/a", .value = "/clusters/"}), "");
  EXPECT_EQ(denied("ctl", {.op = Op::kWatch, .key = "/x/", .prefix = true}),
            "permission denied: ctl may not watch prefix /x/");
  EXPECT_EQ(denied("ro", {.op = Op::kMemberAdd}),
            "permission denied: ro may not member_add (needs admin)");
  EXPECT_EQ(denied("ro", {.op = Op::kSnapshotSave}),
            "permission denied: ro may not snapshot_save (needs admin)");
  EXPECT_EQ(denied("ro", {.op = Op::kTransferLeader}),
            "permission denied: ro may not transfer_leader (needs admin)");
  EXPECT_EQ(denied("CN=ops,O=example\\, Inc.", {.op = Op::kMemberRemove, .force = true}), "");
  EXPECT_EQ(denied("ro", {.op = Op::kLeaseGrant}),
            "permission denied: ro may not lease_grant (needs readwrite on some prefix)");
  EXPECT_EQ(denied("anonymous", {.op = Op::kStatus}), "");
  EXPECT_EQ(denied("anonymous", {.op = Op::kWhoami}), "");
  // A txn: every compare is a read, every put or delete a write, in both branches.
  wire::Request txn{.op = Op::kTxn};
  txn.compares.push_back({.key = "/clusters/a"});
  txn.then_ops.push_back({.type = TxnOpType::kPut, .key = "/clusters/b"});
  txn.else_ops.push_back({.type = TxnOpType::kGet, .key = "/x"});
  EXPECT_EQ(denied("ctl", txn), "permission denied: ctl may not txn get /x");
  EXPECT_EQ(denied("ro", txn), "permission denied: ro may not txn put /clusters/b");
  txn.else_ops.clear();
  EXPECT_EQ(denied("ctl", txn), "");
  // Revoking a lease writes its keys.
  EXPECT_EQ(lease_revoke_checks({"/a"}).front().what, "lease_revoke");
  EXPECT_EQ(permission_denied("ro", lease_revoke_checks({"/a"}).front()).message(),
            "permission denied: ro may not lease_revoke /a");
}

}  // namespace
}  // namespace kvc::server
