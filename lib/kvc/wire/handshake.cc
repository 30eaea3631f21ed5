#include "kvc/wire/handshake.h"

#include <utility>

namespace kvc::wire {

// ---------------------------------------------------------------------------------------------
// MemberHandshake

MemberHandshake::MemberHandshake(HelloReply identity, Admit admit)
    : identity_(std::move(identity)), admit_(std::move(admit)) {
  identity_.code = Code::kOk;
  identity_.message.clear();
}

HandshakeStep MemberHandshake::on_frame(const Envelope& frame) {
  if (state_ != State::kHello) return {};
  return on_hello(frame);
}

HandshakeStep MemberHandshake::refuse(const Status& why, HelloReply reply) {
  reply.code = why.code();
  reply.message = why.message();
  HandshakeStep step{.action = HandshakeAction::kRefuse, .why = why};
  append_hello_reply(step.frames, reply);
  state_ = State::kRefused;
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
  HelloReply reply = identity_;
  // A refusal from the port's check keeps what it set in the reply (a removed peer is told so).
  if (admit_) {
    if (Status s = admit_(hello_, &reply); !s.ok()) return refuse(s, std::move(reply));
  }
  HandshakeStep step{.action = HandshakeAction::kOpen};
  append_hello_reply(step.frames, reply);
  state_ = State::kOpen;
  return step;
}

// ---------------------------------------------------------------------------------------------
// DialerHandshake

DialerHandshake::DialerHandshake(Hello hello) : hello_(std::move(hello)) {}

HandshakeStep DialerHandshake::fail(Failure f, HandshakeAction action, Status why) {
  state_ = State::kFailed;
  failure_ = f;
  return {.action = action, .why = std::move(why)};
}

HandshakeStep DialerHandshake::start() {
  if (state_ != State::kStart) {
    return fail(Failure::kLocal, HandshakeAction::kClose,
                Status::internal("handshake started twice"));
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
  state_ = State::kOpen;
  return {.action = HandshakeAction::kOpen};
}

}  // namespace kvc::wire
