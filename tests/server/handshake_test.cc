// The connection handshake's two state machines (wire/handshake.h), run against each other in
// memory: every state and transition of the member's side (client and peer ports share it) and
// the dialer's side (client library, peer links, joins), and the refusals: a first frame that is
// not a hello, an unknown protocol version, the port's own refusal, and frames that arrive after
// a refusal. Authentication is TLS's (tests/net/tls_test.cc), below these machines.
#include "kvc/wire/handshake.h"

#include <gtest/gtest.h>

#include <string>
#include <vector>

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

  explicit Pair(Hello hello = client_hello(), MemberHandshake::Admit admit = nullptr)
      : member(identity(),
               [this, admit](const Hello& h, HelloReply* r) {
                 ++admitted;
                 return admit ? admit(h, r) : Status();
               }),
        dialer(std::move(hello)) {}
};

TEST(HandshakeTest, BothSidesOpenAfterOneRoundTrip) {
  Pair p;
  HandshakeStep hello = p.dialer.start();
  ASSERT_EQ(hello.action, HandshakeAction::kContinue);
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kReply);
  Envelope h = only_frame(hello.frames);
  ASSERT_EQ(h.kind, FrameKind::kHello);

  HandshakeStep answer = p.member.on_frame(h);
  EXPECT_EQ(answer.action, HandshakeAction::kOpen);
  EXPECT_EQ(p.member.state(), MemberHandshake::State::kOpen);
  EXPECT_EQ(p.admitted, 1);
  EXPECT_EQ(p.member.hello().name, "ctl");
  const HelloReply r = reply_in(answer.frames);
  EXPECT_EQ(r.code, Code::kOk);
  EXPECT_EQ(r.member_id, kMember);
  EXPECT_EQ(r.max_frame_bytes, 1000u);

  HandshakeStep opened = p.dialer.on_frame(only_frame(answer.frames));
  EXPECT_EQ(opened.action, HandshakeAction::kOpen);
  EXPECT_TRUE(opened.frames.empty()) << "nothing more to send";
  EXPECT_EQ(p.dialer.state(), DialerHandshake::State::kOpen);
  EXPECT_EQ(p.dialer.reply().name, "m1");
}

TEST(HandshakeTest, AFirstFrameThatIsNotAHelloClosesWithoutAnAnswer) {
  Pair p;
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
  Pair p(future);
  HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  EXPECT_EQ(p.admitted, 0);
  const std::string msg = reply_in(refused.frames).message;
  EXPECT_NE(msg.find(std::to_string(kProtocolVersion + 1)), std::string::npos) << msg;
  EXPECT_NE(msg.find("speaks " + std::to_string(kProtocolVersion)), std::string::npos) << msg;
}

TEST(HandshakeTest, ThePortsRefusalKeepsWhatItSet) {
  // The peer port tells a removed member so (HelloReply::removed).
  Pair p(client_hello(), [](const Hello&, HelloReply* r) {
    r->removed = true;
    return Status::failed_precondition("member 7 was removed from the cluster");
  });
  HandshakeStep refused = p.member.on_frame(only_frame(p.dialer.start().frames));
  EXPECT_EQ(refused.action, HandshakeAction::kRefuse);
  const HelloReply r = reply_in(refused.frames);
  EXPECT_TRUE(r.removed);
  HandshakeStep seen = p.dialer.on_frame(only_frame(refused.frames));
  EXPECT_EQ(p.dialer.failure(), DialerHandshake::Failure::kRefused);
  EXPECT_TRUE(p.dialer.reply().removed);
  EXPECT_NE(seen.why.message().find("removed"), std::string::npos);
}

TEST(HandshakeTest, TheDialerTakesOnlyAHelloReplyAsTheAnswer) {
  DialerHandshake d(client_hello());
  (void)d.start();
  std::string request;
  append_request(request, Request{.id = 1, .op = Op::kGet, .key = "k"});
  HandshakeStep closed = d.on_frame(only_frame(request));
  EXPECT_EQ(closed.action, HandshakeAction::kClose);
  EXPECT_EQ(d.failure(), DialerHandshake::Failure::kNotKvc);
  EXPECT_NE(closed.why.message().find("another kind of message"), std::string::npos);
}

TEST(HandshakeTest, AHandshakeStartsOnceAndARefusedMemberIgnoresTheRest) {
  DialerHandshake d(client_hello());
  EXPECT_EQ(d.start().action, HandshakeAction::kContinue);
  EXPECT_EQ(d.start().action, HandshakeAction::kClose) << "a handshake starts once";
  EXPECT_EQ(d.failure(), DialerHandshake::Failure::kLocal);
}

}  // namespace
}  // namespace kvc::wire
