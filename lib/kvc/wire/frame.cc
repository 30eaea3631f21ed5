#include "kvc/wire/frame.h"

#include <algorithm>

namespace kvc::wire {
namespace {

void put_u32_be(char* p, std::uint32_t v) {
  p[0] = static_cast<char>(v >> 24);
  p[1] = static_cast<char>(v >> 16);
  p[2] = static_cast<char>(v >> 8);
  p[3] = static_cast<char>(v);
}

std::uint32_t get_u32_be(const char* p) {
  return (static_cast<std::uint32_t>(static_cast<unsigned char>(p[0])) << 24) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(p[1])) << 16) |
         (static_cast<std::uint32_t>(static_cast<unsigned char>(p[2])) << 8) |
         static_cast<std::uint32_t>(static_cast<unsigned char>(p[3]));
}

}  // namespace

void append_frame(std::string& out, std::string_view payload) {
  const std::size_t at = begin_frame(out);
  out.append(payload);
  finish_frame(out, at);
}

std::size_t begin_frame(std::string& out) {
  const std::size_t at = out.size();
  out.append(kFrameHeaderBytes, '\0');
  return at;
}

void finish_frame(std::string& out, std::size_t header_offset) {
  const std::size_t n = out.size() - header_offset - kFrameHeaderBytes;
  KVC_CHECK(n <= UINT32_MAX, "frame payload larger than 4 GiB");
  put_u32_be(out.data() + header_offset, static_cast<std::uint32_t>(n));
}

void FrameDecoder::feed(const char* data, std::size_t n) {
  if (skip_ > 0) {
    const std::size_t drop = std::min(n, skip_);
    skip_ -= drop;
    data += drop;
    n -= drop;
    if (n == 0) return;
  }
  // Drop consumed bytes before growing, so the buffer stays about one frame large.
  if (pos_ > 0 && (pos_ == buf_.size() || pos_ >= buf_.size() / 2)) {
    buf_.erase(0, pos_);
    pos_ = 0;
  }
  buf_.append(data, n);
}

Status FrameDecoder::next(std::string_view* payload, bool* has_frame) {
  *has_frame = false;
  const std::size_t avail = buf_.size() - pos_;
  if (avail < kFrameHeaderBytes) return Status();
  const std::uint32_t len = get_u32_be(buf_.data() + pos_);
  if (len == 0) return Status::corruption("empty frame");
  if (len > max_frame_bytes_) {
    return Status::resource_exhausted("frame of " + std::to_string(len) +
                                      " bytes exceeds the maximum of " +
                                      std::to_string(max_frame_bytes_));
  }
  if (avail - kFrameHeaderBytes < len) return Status();
  *payload = std::string_view(buf_.data() + pos_ + kFrameHeaderBytes, len);
  pos_ += kFrameHeaderBytes + len;
  *has_frame = true;
  return Status();
}

std::size_t FrameDecoder::skip_oversized() {
  KVC_CHECK(buf_.size() - pos_ >= kFrameHeaderBytes, "skip_oversized without a frame header");
  const std::size_t len = get_u32_be(buf_.data() + pos_);
  KVC_CHECK(len > max_frame_bytes_, "skip_oversized on a frame within the limit");
  pos_ += kFrameHeaderBytes;
  const std::size_t avail = buf_.size() - pos_;
  if (avail >= len) {
    pos_ += len;
  } else {
    skip_ = len - avail;
    pos_ = buf_.size();
  }
  return len;
}

}  // namespace kvc::wire
