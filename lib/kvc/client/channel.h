// What the coordination recipes (concurrency.h) need from a way into the cluster: a blocking
// request, a stream of responses (a watch) and its cancellation. Client implements it over the
// network; Engine::channel() implements it inside a member, so an embedding program can take
// locks and elections without a client of its own. Implementations are thread-safe.
#pragma once

#include <cstdint>
#include <functional>

#include "kvc/wire/messages.h"

namespace kvc::client {

class Channel {
 public:
  // Called for each response of a stream; return false to stop receiving. The last call has
  // `done` set or a non-ok code.
  using StreamFn = std::function<bool(const wire::Response&)>;

  virtual ~Channel() = default;
  // Sends `req` and waits for its answer (a failure to deliver it is an answer with the code
  // set). Never from a callback of this channel.
  virtual wire::Response channel_call(wire::Request req) = 0;
  // Starts a watch (req.op == kWatch); returns an id for channel_cancel. `fn` may run on
  // another thread and must not block.
  virtual std::uint64_t channel_stream(wire::Request req, StreamFn fn) = 0;
  // Ends the stream (idempotent; also after it ended by itself).
  virtual void channel_cancel(std::uint64_t id) = 0;
};

}  // namespace kvc::client
