#include "kvc/wire/handshake.h"

#include <utility>

#include "kvc/wire/auth.h"

namespace kvc::wire {

// ---------------------------------------------------------------------------------------------
// MemberHandshake

MemberHandshake::MemberHandshake(std::string secret, HelloReply identity, Admit admit)
    : secret_(std::move(secret)), identity_(std::move(identity)), admit_(std::move(admit)) {
  identity_.code = Code::kOk;
  identity_.message.clear();
  identity_.nonce.clear();
  identity_.proof.clear();
}

HandshakeStep MemberHandshake::on_frame(const Envelope& frame) {
  switch (state_) {
    case State::kHello:
      return on_hello(frame);
    case State::kAuth:
      return on_auth(frame);
    case State::kOpen:
    case State::kRefused:
      break;
  }
  return {};
}

HandshakeStep MemberHandshake::refuse(const Status& why, HelloReply reply) {
  reply.code = why.code();
  reply.message = why.message();
  reply.nonce.clear();
  reply.proof.clear();
  HandshakeStep step{.action = HandshakeAction::kRefuse, .why = why};
  append_hello_reply(step.frames, reply);
  state_ = State::kRefused;
  challenge_ = {};
  return step;
}

HandshakeStep MemberHandshake::on_hello(const Envelope& frame) {
  if (frame.kind != FrameKind::kHello) {
    state_ = State::kRefused;
    return {.action = HandshakeAction::kClose,
            .why = Status::failed_precondition("first frame must be a hello")};
  }
  Result<Hello> hello = decode_hello(*frame.body);
  if (!hello.ok()) return refuse(hello.status(), identity_);
  hello_ = std::move(*hello);
  if (hello_.protocol_version != kProtocolVersion) {
    return refuse(
        Status::failed_precondition("protocol version " + std::to_string(hello_.protocol_version) +
                                    " is not supported (this member speaks " +
                                    std::to_string(kProtocolVersion) + ")"),
        identity_);
  }
  if (Status s = check_hello_auth(!secret_.empty(), hello_); !s.ok()) return refuse(s, identity_);
  challenge_ = identity_;
  // A refusal from the port's check keeps what it set in the reply (a removed peer is told so).
  if (admit_) {
    if (Status s = admit_(hello_, &challenge_); !s.ok()) return refuse(s, std::move(challenge_));
  }
  if (!secret_.empty()) {
    if (Status s = answer_challenge(secret_, hello_, &challenge_); !s.ok()) {
      return refuse(s, std::move(challenge_));
    }
  }
  HandshakeStep step;
  append_hello_reply(step.frames, challenge_);
  if (secret_.empty()) {
    state_ = State::kOpen;
    step.action = HandshakeAction::kOpen;
    challenge_ = {};
  } else {
    // The reply is kept until the dialer's proof checks out; nothing else is handled before.
    state_ = State::kAuth;
  }
  return step;
}

HandshakeStep MemberHandshake::on_auth(const Envelope& frame) {
  const Status proved = check_auth_frame(secret_, hello_, challenge_, frame);
  if (!proved.ok()) return refuse(proved, identity_);
  state_ = State::kOpen;
  challenge_ = {};
  hello_.nonce.clear();
  hello_.proof.clear();
  return {.action = HandshakeAction::kOpen};
}

// ---------------------------------------------------------------------------------------------
// DialerHandshake

DialerHandshake::DialerHandshake(std::string secret, Hello hello)
    : secret_(std::move(secret)), hello_(std::move(hello)) {
  hello_.nonce.clear();
}

HandshakeStep DialerHandshake::fail(Failure f, HandshakeAction action, Status why,
                                    std::string frames) {
  state_ = State::kFailed;
  failure_ = f;
  return {.action = action, .frames = std::move(frames), .why = std::move(why)};
}

HandshakeStep DialerHandshake::start() {
  if (state_ != State::kStart) {
    return fail(Failure::kLocal, HandshakeAction::kClose,
                Status::internal("handshake started twice"));
  }
  if (!secret_.empty()) {
    Result<std::string> nonce = make_nonce();
    if (!nonce.ok()) return fail(Failure::kLocal, HandshakeAction::kClose, nonce.status());
    hello_.nonce = std::move(*nonce);
  }
  HandshakeStep step;
  append_hello(step.frames, hello_);
  state_ = State::kReply;
  return step;
}

HandshakeStep DialerHandshake::on_frame(const Envelope& frame) {
  if (state_ != State::kReply) return {};
  if (frame.kind != FrameKind::kHelloReply) {
    return fail(Failure::kNotKvc, HandshakeAction::kClose,
                Status::corruption("it answered the hello with another kind of message"));
  }
  Result<HelloReply> reply = decode_hello_reply(*frame.body);
  if (!reply.ok()) {
    return fail(Failure::kNotKvc, HandshakeAction::kClose,
                Status::corruption("bad hello reply: " + reply.status().message()));
  }
  reply_ = std::move(*reply);
  if (reply_.code != Code::kOk) {
    return fail(Failure::kRefused, HandshakeAction::kRefuse, Status(reply_.code, reply_.message));
  }
  HandshakeStep step{.action = HandshakeAction::kOpen};
  if (!secret_.empty()) {
    AuthProof answer;
    Status proved = check_member_proof(secret_, hello_.role, hello_.nonce, reply_, &answer);
    append_auth_proof(step.frames, answer);
    if (!proved.ok()) {
      return fail(Failure::kAuth, HandshakeAction::kRefuse, proved, std::move(step.frames));
    }
  }
  state_ = State::kOpen;
  return step;
}

}  // namespace kvc::wire
