#include "kvc/wire/frame.h"

#include <algorithm>

#include "kvc/common/coding.h"
namespace kvc::wire {
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
  store_u32_be(out.data() + header_offset, static_cast<std::uint32_t>(n));
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

void FrameDecoder::release_consumed(std::size_t keep_capacity) {
  buf_.erase(0, pos_);
  pos_ = 0;
  if (buf_.empty() && buf_.capacity() > keep_capacity) std::string().swap(buf_);
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
