// The connection handshake as two I/O-free state machines, one per side, shared by every port
// and every dialer: the member's client port and peer port (MemberHandshake), and the client
// library, a member's outgoing peer links and a joining member's id request (DialerHandshake).
// They take decoded frames and return the bytes to send and what the caller must do next; they
// own no socket, timer or log, so the same code runs under libuv, over a blocking socket and in
// tests (tests/server/handshake_test.cc walks every transition).
//
// The exchange (kvc-node(1), "WIRE PROTOCOL"):
//
//   dialer                                   member
//   Hello                    ------------->  kHello: decode, protocol version, the port's own
//                                            admission check (cluster, role, ...)
//                            <-------------  HelloReply ok   or a refusal
//   kReply: refusal -> kFailed, else kOpen   kOpen: requests are handled
//
// Authentication is not here: with a shared secret or certificates the connection speaks TLS
// (net/tls.h) and the hello travels inside it, so both sides are authenticated before the first
// frame. States never go back; kRefused and kFailed are final.
//
// Invariants:
// - A member handles nothing but a hello before kOpen; a refused connection handles nothing
//   more (frames that arrive while the refusal is flushed are dropped).
// - A refusal always goes out as a HelloReply with a non-ok code and a message the other side
//   can show; frames that are not kvc messages at all get no answer (kClose).
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include "kvc/common/status.h"
#include "kvc/wire/messages.h"

namespace kvc::wire {

// What the caller does with a connection after feeding it one frame.
enum class HandshakeAction : std::uint8_t {
  kContinue,  // send `frames` (if any) and wait for the next frame
  kOpen,      // send `frames`; the handshake is complete: requests (or Raft messages) may flow
  kRefuse,    // send `frames` (the refusal), handle nothing more, close once they are flushed
  kClose,     // close at once: the other side does not speak kvc (nothing is sent)
};

struct HandshakeStep {
  HandshakeAction action = HandshakeAction::kContinue;
  std::string frames;  // framed bytes to send, in order
  Status why;          // kRefuse, kClose (and a dialer's kRefuse): the reason, for logs and callers
};

// ---------------------------------------------------------------------------------------------
// The member's side: one per accepted connection, on the client and peer ports alike.
class MemberHandshake {
 public:
  enum class State : std::uint8_t { kHello, kOpen, kRefused };

  // The port's own check of a decoded hello (after the protocol version passed): a refusal, or
  // ok after filling the port's fields of *reply.
  using Admit = std::function<Status(const Hello& hello, HelloReply* reply)>;

  // `identity` fills every reply this side sends (cluster id, member id, name, version,
  // addresses, limits); its code and message are ignored.
  MemberHandshake(HelloReply identity, Admit admit);

  // Feeds the next frame of the connection. In kOpen the caller handles frames itself and must not
  // call this; in kRefused every frame is dropped (kContinue, nothing to send).
  HandshakeStep on_frame(const Envelope& frame);

  State state() const { return state_; }
  bool open() const { return state_ == State::kOpen; }
  // The dialer's hello, once decoded (kOpen; in kRefused when it could be decoded).
  const Hello& hello() const { return hello_; }

 private:
  HandshakeStep on_hello(const Envelope& frame);
  HandshakeStep refuse(const Status& why, HelloReply reply);

  HelloReply identity_;
  Admit admit_;
  State state_ = State::kHello;
  Hello hello_;
};

// ---------------------------------------------------------------------------------------------
// The dialer's side: one per outgoing connection.
class DialerHandshake {
 public:
  enum class State : std::uint8_t { kStart, kReply, kOpen, kFailed };
  // Why a dialer's handshake failed, so the caller can tell "not a kvc member" from a refusal.
  enum class Failure : std::uint8_t {
    kNone,
    kNotKvc,   // the answer is not a hello reply (another protocol, garbage, another frame)
    kRefused,  // the member refused the hello: reply() says how (code, removed, ...)
    kLocal,    // this side misused the machine (start() twice)
  };

  explicit DialerHandshake(Hello hello);

  // kStart -> kReply: the hello frame to send first.
  HandshakeStep start();
  // kReply: the member's answer. kOpen, kRefuse (the member refused: close), or kClose (not
  // kvc).
  HandshakeStep on_frame(const Envelope& frame);

  State state() const { return state_; }
  Failure failure() const { return failure_; }
  const Hello& hello() const { return hello_; }
  // The member's hello reply, once received (ok, or the refusal with its code and flags).
  const HelloReply& reply() const { return reply_; }

 private:
  HandshakeStep fail(Failure f, HandshakeAction action, Status why);

  Hello hello_;
  HelloReply reply_;
  State state_ = State::kStart;
  Failure failure_ = Failure::kNone;
};

}  // namespace kvc::wire
