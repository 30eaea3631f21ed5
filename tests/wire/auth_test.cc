#include "kvc/wire/auth.h"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <fstream>
#include <string>

#include "kvc/wire/frame.h"
#include "support/temp_dir.h"

namespace kvc::wire {
namespace {

constexpr std::string_view kSecret = "correct horse battery staple";
constexpr std::uint64_t kCluster = 0x1234abcd5678ef00ull;

// One handshake as the member and the dialer carry it out; the fields tests tamper with.
struct Session {
  Hello hello;
  HelloReply reply;
  AuthProof answer;
};

Session handshake(std::string_view dialer_secret, std::string_view member_secret,
                  Role role = Role::kClient) {
  Session s;
  s.hello.role = role;
  Result<std::string> nonce = make_nonce();
  EXPECT_TRUE(nonce.ok());
  s.hello.nonce = *nonce;
  s.reply.cluster_id = kCluster;
  EXPECT_TRUE(check_hello_auth(true, s.hello).ok());
  EXPECT_TRUE(answer_challenge(member_secret, s.hello, &s.reply).ok());
  (void)check_member_proof(dialer_secret, role, s.hello.nonce, s.reply, &s.answer);
  return s;
}

TEST(AuthTest, SameSecretPassesBothChecks) {
  for (Role role : {Role::kClient, Role::kPeer}) {
    Session s = handshake(kSecret, kSecret, role);
    EXPECT_EQ(s.reply.nonce.size(), kNonceBytes);
    EXPECT_EQ(s.reply.proof.size(), kProofBytes);
    AuthProof answer;
    EXPECT_TRUE(check_member_proof(kSecret, role, s.hello.nonce, s.reply, &answer).ok());
    EXPECT_EQ(answer.proof.size(), kProofBytes);
    EXPECT_TRUE(check_dialer_proof(kSecret, s.hello, s.reply, answer).ok());
    // Neither frame carries the secret.
    for (const std::string& bytes : {s.hello.nonce, s.reply.nonce, s.reply.proof, answer.proof}) {
      EXPECT_EQ(bytes.find(kSecret), std::string::npos);
    }
  }
}

TEST(AuthTest, WrongSecretIsRefusedOnBothEnds) {
  Session s = handshake("another secret", kSecret);
  AuthProof answer;
  Status dialer =
      check_member_proof("another secret", Role::kClient, s.hello.nonce, s.reply, &answer);
  EXPECT_EQ(dialer.code(), Code::kFailedPrecondition);
  EXPECT_NE(dialer.message().find("proof of the shared secret is wrong"), std::string::npos);
  EXPECT_TRUE(answer.proof.empty());  // the dialer gives up without proving anything
  Status member = check_dialer_proof(kSecret, s.hello, s.reply, answer);
  EXPECT_EQ(member.code(), Code::kFailedPrecondition);
  EXPECT_NE(member.message().find("gave up"), std::string::npos);
  // A dialer with the wrong secret that answers anyway is refused by the member too.
  AuthProof forged{.proof = make_proof("another secret", Prover::kDialer, Role::kClient, kCluster,
                                       s.hello.nonce, s.reply.nonce),
                   .message = ""};
  EXPECT_FALSE(check_dialer_proof(kSecret, s.hello, s.reply, forged).ok());
}

TEST(AuthTest, ReplayedProofIsRefused) {
  // An eavesdropper records a good session and replays the dialer's proof on a new connection:
  // the member's fresh nonce makes it worthless.
  Session recorded = handshake(kSecret, kSecret);
  ASSERT_TRUE(check_dialer_proof(kSecret, recorded.hello, recorded.reply, recorded.answer).ok());
  HelloReply fresh{.cluster_id = kCluster};
  ASSERT_TRUE(answer_challenge(kSecret, recorded.hello, &fresh).ok());
  EXPECT_NE(fresh.nonce, recorded.reply.nonce);
  EXPECT_FALSE(check_dialer_proof(kSecret, recorded.hello, fresh, recorded.answer).ok());
  // Replaying a member's recorded reply to a dialer fails the same way.
  Result<std::string> new_nonce = make_nonce();
  ASSERT_TRUE(new_nonce.ok());
  AuthProof answer;
  EXPECT_FALSE(
      check_member_proof(kSecret, Role::kClient, *new_nonce, recorded.reply, &answer).ok());
}

TEST(AuthTest, ReflectedProofIsRefused) {
  // A fake dialer without the secret opens a second connection and offers the member's own
  // proof back: the prover label differs by direction.
  Session s = handshake(kSecret, kSecret);
  AuthProof reflected{.proof = s.reply.proof, .message = ""};
  EXPECT_FALSE(check_dialer_proof(kSecret, s.hello, s.reply, reflected).ok());
  // A fake member that echoes the dialer's nonce as its own, hoping to make the proofs alike.
  HelloReply echo{.cluster_id = kCluster, .nonce = s.hello.nonce};
  echo.proof =
      make_proof(kSecret, Prover::kMember, Role::kClient, kCluster, s.hello.nonce, s.hello.nonce);
  AuthProof answer;
  EXPECT_FALSE(check_member_proof(kSecret, Role::kClient, s.hello.nonce, echo, &answer).ok());
}

TEST(AuthTest, ProofIsBoundToRoleAndCluster) {
  Session s = handshake(kSecret, kSecret, Role::kClient);
  Hello as_peer = s.hello;
  as_peer.role = Role::kPeer;
  EXPECT_FALSE(check_dialer_proof(kSecret, as_peer, s.reply, s.answer).ok());
  HelloReply other_cluster = s.reply;
  other_cluster.cluster_id = kCluster + 1;
  EXPECT_FALSE(check_dialer_proof(kSecret, s.hello, other_cluster, s.answer).ok());
  AuthProof answer;
  EXPECT_FALSE(check_member_proof(kSecret, Role::kPeer, s.hello.nonce, s.reply, &answer).ok());
}

TEST(AuthTest, EveryProofBitMatters) {
  Session s = handshake(kSecret, kSecret);
  for (std::size_t i = 0; i < s.answer.proof.size(); i += 5) {
    AuthProof bad = s.answer;
    bad.proof[i] = static_cast<char>(bad.proof[i] ^ 0x01);
    EXPECT_FALSE(check_dialer_proof(kSecret, s.hello, s.reply, bad).ok()) << "byte " << i;
  }
  AuthProof short_proof{.proof = s.answer.proof.substr(1), .message = ""};
  EXPECT_FALSE(check_dialer_proof(kSecret, s.hello, s.reply, short_proof).ok());
}

TEST(AuthTest, OneSidedSecretIsRefusedWithAClearMessage) {
  Hello without;
  Hello with{.nonce = std::string(kNonceBytes, 'n')};
  EXPECT_TRUE(check_hello_auth(false, without).ok());
  EXPECT_TRUE(check_hello_auth(true, with).ok());
  Status need = check_hello_auth(true, without);
  EXPECT_EQ(need.code(), Code::kFailedPrecondition);
  EXPECT_NE(need.message().find("authentication required"), std::string::npos);
  Status extra = check_hello_auth(false, with);
  EXPECT_EQ(extra.code(), Code::kFailedPrecondition);
  EXPECT_NE(extra.message().find("this member has none"), std::string::npos);
  Hello short_nonce{.nonce = "abc"};
  EXPECT_EQ(check_hello_auth(true, short_nonce).code(), Code::kCorruption);
  // A member without a secret (or an old one) answers without a proof: the dialer refuses it.
  HelloReply no_proof{.cluster_id = kCluster};
  AuthProof answer;
  Status s =
      check_member_proof(kSecret, Role::kClient, std::string(kNonceBytes, 'n'), no_proof, &answer);
  EXPECT_NE(s.message().find("sent no proof"), std::string::npos);
}

TEST(AuthTest, NoncesAreFreshAndFullLength) {
  Result<std::string> a = make_nonce();
  Result<std::string> b = make_nonce();
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->size(), kNonceBytes);
  EXPECT_NE(*a, *b);
}

TEST(AuthTest, AuthFrameRoundTrips) {
  const AuthProof in{.proof = std::string("\x00\xff\x10", 3), .message = "gave up"};
  std::string framed;
  append_auth_proof(framed, in);
  ASSERT_GE(framed.size(), kFrameHeaderBytes);
  Result<Envelope> env = open_envelope(std::string_view(framed).substr(kFrameHeaderBytes));
  ASSERT_TRUE(env.ok()) << env.status().to_string();
  EXPECT_EQ(env->kind, FrameKind::kAuth);
  Result<AuthProof> out = decode_auth_proof(*env->body);
  ASSERT_TRUE(out.ok());
  EXPECT_EQ(*out, in);
}

class SecretFileTest : public ::testing::Test {
 protected:
  std::string write(const std::string& name, const std::string& content, mode_t mode) {
    const std::string path = dir_.file(name);
    std::ofstream(path, std::ios::binary) << content;
    ::chmod(path.c_str(), mode);
    return path;
  }
  test::ScopedTempDir dir_{"kvc-secret-test"};
};

TEST_F(SecretFileTest, LoadsAndStripsOneTrailingNewline) {
  EXPECT_EQ(*load_secret_file(write("a", "s3cret\n", 0600)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("b", "s3cret\r\n", 0400)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("c", "s3cret", 0600)), "s3cret");
  EXPECT_EQ(*load_secret_file(write("d", "two\nlines\n\n", 0600)), "two\nlines\n");
}

TEST_F(SecretFileTest, RefusesUnsafeOrUselessFiles) {
  const struct {
    const char* name;
    std::string content;
    mode_t mode;
    const char* want;
  } cases[] = {
      {"world", "s", 0644, "accessible by group or others (mode 0644); run chmod 600"},
      {"group", "s", 0640, "accessible by group or others"},
      {"empty", "", 0600, ": empty"},
      {"newline only", "\n", 0600, ": empty"},
      {"huge", std::string(kMaxSecretBytes + 1, 'x'), 0600, "larger than"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    const std::string path = write(c.name, c.content, c.mode);
    Result<std::string> r = load_secret_file(path);
    ASSERT_FALSE(r.ok());
    EXPECT_NE(r.status().message().find(c.want), std::string::npos) << r.status().message();
    EXPECT_NE(r.status().message().find(path), std::string::npos);  // names the file
  }
  Result<std::string> missing = load_secret_file(dir_.file("missing"));
  ASSERT_FALSE(missing.ok());
  EXPECT_NE(missing.status().message().find(dir_.file("missing")), std::string::npos);
  EXPECT_FALSE(load_secret_file(dir_.path()).ok());  // a directory
}

}  // namespace
}  // namespace kvc::wire
