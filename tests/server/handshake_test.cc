// The connection handshake's two state machines (wire/handshake.h), run against each other in
// memory: every state and transition of the member's side (client and peer ports share it) and
// the dialer's side (client library, peer links, joins), with and without a shared secret, and
// the refusals: secret on one side only, wrong secret on either side, a replayed proof, a first
// frame that is not a hello, an unknown protocol version, the port's own refusal, and frames
// that arrive after a refusal.
#include "kvc/wire/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "kvc/wire/auth.h"
#include "kvc/wire/frame.h"

namespace kvc::wire {
namespace {

constexpr std::uint64_t kCluster = 0x1234abcd5678ef00ull;
constexpr std::uint64_t kMember = 0x42;

// The frames in a run of framed bytes, each opened (the Envelope owns its decoded body).
std::vector<Envelope> frames_of(const std::string& bytes) {
  FrameDecoder decoder;
  decoder.feed(bytes.data(), bytes.size());
  std::vector<Envelope> out;
  for (;;) {
    std::string_view payload;
    bool has = false;
    EXPECT_TRUE(decoder.next(&payload, &has).ok());
    if (!has) break;
    Result<Envelope> env = open_envelope(payload);
    EXPECT_TRUE(env.ok()) << env.status().message();
    if (env.ok()) out.push_back(std::move(*env));
  }
  return out;
}

// The one frame in `bytes`.
Envelope only_frame(const std::string& bytes) {
  std::vector<Envelope> frames = frames_of(bytes);
  EXPECT_EQ(frames.size(), 1u);
  return frames.empty() ? Envelope{} : std::move(frames.front());
}

HelloReply reply_in(const std::string& bytes) {
  Envelope env = only_frame(bytes);
  EXPECT_EQ(env.kind, FrameKind::kHelloReply);
  Result<HelloReply> r = decode_hello_reply(*env.body);
  EXPECT_TRUE(r.ok());
  return r.ok() ? *r : HelloReply{};
}

HelloReply identity() {
  return {.cluster_id = kCluster,
          .member_id = kMember,
          .name = "m1",
          .software_version = "test",
          .client_addr = "127.0.0.1:1",
          .max_frame_bytes = 1000,
          .max_request_bytes = 500};
}

Hello client_hello() {
  return {.role = Role::kClient, .cluster_id = kCluster, .name = "ctl", .software_version = "test"};
}

// A member and a dialer, and how many times the member's port check ran.
struct Pair {
  MemberHandshake member;
  DialerHandshake dialer;
  int admitted = 0;

  Pair(std::string member_secret, std::string dialer_secret, Hello hello = client_hello(),
       MemberHandshake::Admit admit = nullptr)
      : member(std::move(member_secret), identity(),
               [this, admit](const Hello& h, HelloReply* r) {
                 ++admitted;
                 return admit ? admit(h, r) : Status();
               }),
        dialer(std::move(dialer_secret), std::move(hello)) {}
};

TEST(HandshakeTest, WithoutASecretBothSidesOpenAfterOneRoundTrip) {
  Pair p("", "");
  HandshakeStep hello = p.dialer.start();
  ASSERT_EQ(hello.action, HandshakeAction::kContinue);
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kReply);
  Envelope h = only_frame(hello.frames);
  ASSERT_EQ(h.kind, FrameKind::kHello);
  EXPECT_TRUE(decode_hello(*h.body)->nonce.empty());

  HandshakeStep answer = p.member.on_frame(h);
  EXPECT_EQ(answer.action, HandshakeAction::kOpen);
  EXPECT_EQ(p.member.state(), MemberHandshake::State::kOpen);
  EXPECT_EQ(p.admitted, 1);
  EXPECT_EQ(p.member.hello().name, "ctl");
  const HelloReply r = reply_in(answer.frames);
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_EQ(r.member_id, kMember);
  EXPECT_EQ(r.max_frame_bytes, 1000u);
  EXPECT_TRUE(r.nonce.empty());
  EXPECT_TRUE(r.proof.empty());

  HandshakeStep opened = p.dialer.on_frame(only_frame(answer.frames));
  EXPECT_EQ(opened.action, HandshakeAction::kOpen);
  EXPECT_TRUE(opened.frames.empty()) << "no Auth frame without a secret";
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kOpen);
  EXPECT_EQ(p.dialer.reply().name, "m1");
}

TEST(HandshakeTest, WithASecretTheMemberOpensOnlyAfterTheDialersProof) {
  Pair p("s3cret", "s3cret");
  HandshakeStep hello = p.dialer.start();
  Envelope h = only_frame(hello.frames);
  EXPECT_EQ(decode_hello(*h.body)->nonce.size(), kNonceBytes);

  HandshakeStep challenge = p.member.on_frame(h);
  EXPECT_EQ(challenge.action, HandshakeAction::kContinue);
  EXPECT_EQ(p.member.state(), MemberHandshake::State::kAuth);
  const HelloReply r = reply_in(challenge.frames);
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_EQ(r.nonce.size(), kNonceBytes);
  EXPECT_EQ(r.proof.size(), kProofBytes);

  HandshakeStep proof = p.dialer.on_frame(only_frame(challenge.frames));
  EXPECT_EQ(proof.action, HandshakeAction::kOpen) << proof.why.message();
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kOpen);
  Envelope auth = only_frame(proof.frames);
  ASSERT_EQ(auth.kind, FrameKind::kAuth);

  HandshakeStep opened = p.member.on_frame(auth);
  EXPECT_EQ(opened.action, HandshakeAction::kOpen) << opened.why.message();
  EXPECT_TRUE(opened.frames.empty());
  EXPECT_TRUE(p.member.open());
}

TEST(HandshakeTest, ARequestInPlaceOfTheProofIsRefusedAndNothingMoreIsHandled) {
  Pair p("s3cret", "s3cret");
  (void)p.member.on_frame(only_frame(p.dialer.start().frames));
  ASSERT_EQ(p.member.state(), MemberHandshake::State::kAuth);
  std::string request;
  append_request(request, Request{.id = 7, .op = Op::kPut, .key = "k", .value = "v"});
  HandshakeStep refused = p.member.on_frame(only_frame(request));
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  EXPECT_EQ(p.member.state(), MemberHandshake::State::kRefused);
  const HelloReply r = reply_in(refused.frames);
  EXPECT_EQ(r.code, Code::kFailedPrecondition);
  EXPECT_NE(r.message.find("expected the proof"), std::string::npos) << r.message;
  EXPECT_TRUE(r.nonce.empty());
  EXPECT_TRUE(r.proof.empty());
  // Frames behind it (the request again) are dropped while the refusal is flushed.
  HandshakeStep after = p.member.on_frame(only_frame(request));
  EXPECT_EQ(after.action, HandshakeAction::kContinue);
  EXPECT_TRUE(after.frames.empty());
}

TEST(HandshakeTest, ADialerWithAnotherSecretGivesUpAndTheMemberLogsWhy) {
  Pair p("s3cret", "other");
  HandshakeStep challenge = p.member.on_frame(only_frame(p.dialer.start().frames));
  HandshakeStep give_up = p.dialer.on_frame(only_frame(challenge.frames));
  EXPECT_EQ(give_up.action, HandshakeAction::kRefuse);
  EXPECT_EQ(p.dialer.failure(), DialerHandshake::Failure::kAuth);
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kFailed);
  EXPECT_NE(give_up.why.message().find("proof of the shared secret is wrong"), std::string::npos)
      << give_up.why.message();
  Envelope auth = only_frame(give_up.frames);
  ASSERT_EQ(auth.kind, FrameKind::kAuth);
  EXPECT_TRUE(decode_auth_proof(*auth.body)->proof.empty()) << "a give-up carries no proof";

  HandshakeStep refused = p.member.on_frame(auth);
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  EXPECT_NE(refused.why.message().find("gave up"), std::string::npos) << refused.why.message();
  // Once failed, the dialer ignores whatever else arrives.
  EXPECT_EQ(p.dialer.on_frame(only_frame(challenge.frames)).action, HandshakeAction::kContinue);
}

TEST(HandshakeTest, AMemberWithAnotherSecretIsCaughtByTheDialerBeforeItsProofIsSent) {
  // The member's proof is checked first: a dialer never proves itself to a member that could
  // not prove itself.
  Pair p("other", "s3cret");
  HandshakeStep challenge = p.member.on_frame(only_frame(p.dialer.start().frames));
  HandshakeStep give_up = p.dialer.on_frame(only_frame(challenge.frames));
  EXPECT_EQ(p.dialer.failure(), DialerHandshake::Failure::kAuth);
  EXPECT_TRUE(decode_auth_proof(*only_frame(give_up.frames).body)->proof.empty());
}

TEST(HandshakeTest, AProofFromAnotherConnectionIsRefused) {
  Pair first("s3cret", "s3cret");
  HandshakeStep c1 = first.member.on_frame(only_frame(first.dialer.start().frames));
  HandshakeStep proof1 = first.dialer.on_frame(only_frame(c1.frames));
  ASSERT_EQ(proof1.action, HandshakeAction::kOpen);

  // A second connection: the member's fresh nonce makes the recorded proof useless.
  Pair second("s3cret", "s3cret");
  (void)second.member.on_frame(only_frame(second.dialer.start().frames));
  HandshakeStep replayed = second.member.on_frame(only_frame(proof1.frames));
  EXPECT_EQ(replayed.action, HandshakeAction::kRefuse);
  EXPECT_NE(replayed.why.message().find("wrong proof"), std::string::npos)
      << replayed.why.message();
}

TEST(HandshakeTest, ASecretOnOneSideOnlyIsRefusedAtTheHelloWithTheRemedy) {
  {
    Pair p("s3cret", "");
    HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
    EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
    EXPECT_EQ(p.admitted, 0) << "the port's check sees only hellos that passed the common ones";
    HandshakeStep seen = p.dialer.on_frame(only_frame(refused.frames));
    EXPECT_EQ(seen.action, HandshakeAction::kRefuse);
    EXPECT_EQ(p.dialer.failure(), DialerHandshake::Failure::kRefused);
    EXPECT_EQ(p.dialer.reply().code, Code::kFailedPrecondition);
    EXPECT_NE(seen.why.message().find("--secret-file"), std::string::npos) << seen.why.message();
  }
  {
    Pair p("", "s3cret");
    HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
    EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
    EXPECT_NE(refused.why.message().find("authentication mismatch"), std::string::npos);
  }
}

TEST(HandshakeTest, AFirstFrameThatIsNotAHelloClosesWithoutAnAnswer) {
  Pair p("", "");
  std::string request;
  append_request(request, Request{.id = 1, .op = Op::kGet, .key = "k"});
  HandshakeStep closed = p.member.on_frame(only_frame(request));
  EXPECT_EQ(closed.action, HandshakeAction::kClose);
  EXPECT_TRUE(closed.frames.empty());
  EXPECT_EQ(p.member.state(), MemberHandshake::State::kRefused);
  EXPECT_EQ(p.member.on_frame(only_frame(request)).action, HandshakeAction::kContinue);
}

TEST(HandshakeTest, AnUnknownProtocolVersionIsRefusedNamingBoth) {
  Hello future = client_hello();
  future.protocol_version = kProtocolVersion + 1;
  Pair p("", "", future);
  HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  EXPECT_EQ(p.admitted, 0);
  const std::string msg = reply_in(refused.frames).message;
  EXPECT_NE(msg.find(std::to_string(kProtocolVersion + 1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("speaks " + std::to_string(kProtocolVersion)), std::string::npos) << msg;
}

TEST(HandshakeTest, ThePortsRefusalKeepsWhatItSetAndCarriesNoChallenge) {
  // The peer port tells a removed member so (HelloReply::removed), even with a secret.
  Pair p("s3cret", "s3cret", client_hello(), [](const Hello&, HelloReply* r) {
    r->removed = true;
    return Status::failed_precondition("member 7 was removed from the cluster");
  });
  HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  const HelloReply r = reply_in(refused.frames);
  EXPECT_TRUE(r.removed);
  EXPECT_TRUE(r.nonce.empty());
  EXPECT_TRUE(r.proof.empty());
  HandshakeStep seen = p.dialer.on_frame(only_frame(refused.frames));
  EXPECT_EQ(p.dialer.failure(), DialerHandshake::Failure::kRefused);
  EXPECT_TRUE(p.dialer.reply().removed);
  EXPECT_NE(seen.why.message().find("removed"), std::string::npos);
}

TEST(HandshakeTest, TheDialerTakesOnlyAHelloReplyAsTheAnswer) {
  DialerHandshake d("", client_hello());
  (void)d.start();
  std::string request;
  append_request(request, Request{.id = 1, .op = Op::kGet, .key = "k"});
  HandshakeStep closed = d.on_frame(only_frame(request));
  EXPECT_EQ(closed.action, HandshakeAction::kClose);
  EXPECT_EQ(d.failure(), DialerHandshake::Failure::kNotKvc);
  EXPECT_NE(closed.why.message().find("another kind of message"), std::string::npos);
}

TEST(HandshakeTest, AnOkReplyWithoutAProofIsNotEnoughForADialerWithASecret) {
  // An older member, or one without a secret that answers anyway: the dialer must not open.
  DialerHandshake d("s3cret", client_hello());
  (void)d.start();
  std::string reply;
  append_hello_reply(reply, identity());
  HandshakeStep step = d.on_frame(only_frame(reply));
  EXPECT_EQ(step.action, HandshakeAction::kRefuse);
  EXPECT_EQ(d.failure(), DialerHandshake::Failure::kAuth);
  EXPECT_NE(d.state(), DialerHandshake::State::kOpen);
}

TEST(HandshakeTest, EachConnectionGetsAFreshNonce) {
  DialerHandshake a("s3cret", client_hello());
  DialerHandshake b("s3cret", client_hello());
  (void)a.start();
  (void)b.start();
  EXPECT_EQ(a.hello().nonce.size(), kNonceBytes);
  EXPECT_NE(a.hello().nonce, b.hello().nonce);
  EXPECT_EQ(a.start().action, HandshakeAction::kClose) << "a handshake starts once";
}

}  // namespace
}  // namespace kvc::wire
