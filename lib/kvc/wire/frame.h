// Length-prefixed framing for every kvc connection (peer and client). A frame is a 4-byte
// big-endian payload length followed by the payload, one msgpack value (see kvc-node(1),
// "WIRE PROTOCOL"). The decoder enforces a maximum frame size before buffering a frame, so a
// peer cannot make a member allocate more than that. Not thread-safe; one decoder per
// connection.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"

namespace kvc::wire {

inline constexpr std::size_t kFrameHeaderBytes = 4;
inline constexpr std::size_t kDefaultMaxFrameBytes = 16u << 20;

// Appends a frame (header + payload) to `out`.
void append_frame(std::string& out, std::string_view payload);
// Reserves the header in `out` and returns its offset; call finish_frame once the payload is
// appended after it. Lets encoders write the payload in place without a copy.
std::size_t begin_frame(std::string& out);
void finish_frame(std::string& out, std::size_t header_offset);

class FrameDecoder {
 public:
  explicit FrameDecoder(std::size_t max_frame_bytes = kDefaultMaxFrameBytes)
      : max_frame_bytes_(max_frame_bytes) {}

  // Adds bytes read from the connection.
  void feed(const char* data, std::size_t n);

  // Takes the next complete frame's payload. Returns ok with an empty optional-like flag:
  // `*has_frame` false when more bytes are needed. Fails (kResourceExhausted) when a frame
  // header announces more than the maximum, or (kCorruption) a zero-length frame; the
  // connection must then be closed. The view stays valid until the next feed() or next().
  Status next(std::string_view* payload, bool* has_frame);

  // After next() failed with kResourceExhausted (a frame larger than the maximum): drops that
  // frame, the bytes already buffered now and the rest as feed() brings them, without buffering
  // them, so that decoding goes on with the next frame. Returns the dropped payload's length.
  std::size_t skip_oversized();

  std::size_t buffered_bytes() const { return buf_.size() - pos_; }
  // Drops the bytes next() has handed out (their views become invalid) and, when nothing is
  // left and the buffer has grown beyond `keep_capacity`, gives its memory back.
  void release_consumed(std::size_t keep_capacity);

 private:
  std::size_t max_frame_bytes_;
  std::string buf_;
  std::size_t pos_ = 0;   // start of unconsumed bytes in buf_
  std::size_t skip_ = 0;  // bytes of a skipped frame still to drop as they arrive
};

}  // namespace kvc::wire
