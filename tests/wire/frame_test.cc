#include "kvc/wire/frame.h"

#include <gtest/gtest.h>

#include <vector>

namespace kvc::wire {
namespace {

std::vector<std::string> drain(FrameDecoder& d, Status* status) {
  std::vector<std::string> out;
  for (;;) {
    std::string_view p;
    bool has = false;
    *status = d.next(&p, &has);
    if (!status->ok() || !has) return out;
    out.emplace_back(p);
  }
}

TEST(FrameDecoderTest, ReassemblesFramesSplitAtEveryByte) {
  std::string stream;
  const std::vector<std::string> frames = {"a", std::string(300, 'b'), "ccc", std::string(1, '\0')};
  for (const auto& f : frames) append_frame(stream, f);
  for (std::size_t split = 0; split <= stream.size(); ++split) {
    FrameDecoder d(1024);
    Status s;
    d.feed(stream.data(), split);
    std::vector<std::string> got = drain(d, &s);
    ASSERT_TRUE(s.ok());
    d.feed(stream.data() + split, stream.size() - split);
    std::vector<std::string> rest = drain(d, &s);
    ASSERT_TRUE(s.ok());
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, frames) << "split at " << split;
    EXPECT_EQ(d.buffered_bytes(), 0u);
  }
}

TEST(FrameDecoderTest, ByteAtATime) {
  std::string stream;
  for (int i = 0; i < 50; ++i)
    append_frame(stream, std::string(static_cast<std::size_t>(i + 1), 'x'));
  FrameDecoder d(1024);
  int count = 0;
  for (char c : stream) {
    d.feed(&c, 1);
    Status s;
    count += static_cast<int>(drain(d, &s).size());
    ASSERT_TRUE(s.ok());
  }
  EXPECT_EQ(count, 50);
}

// release_consumed between reads keeps a partial frame and drops only what was handed out.
TEST(FrameDecoderTest, ReleasingConsumedBytesKeepsAPartialFrame) {
  std::string stream;
  append_frame(stream, std::string(100000, 'a'));
  append_frame(stream, "tail");
  FrameDecoder d(1 << 20);
  d.feed(stream.data(), stream.size() - 2);  // the second frame is cut short
  Status s;
  std::vector<std::string> got = drain(d, &s);
  ASSERT_TRUE(s.ok());
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].size(), 100000u);
  d.release_consumed(16 << 10);
  EXPECT_EQ(d.buffered_bytes(), kFrameHeaderBytes + 2);
  d.feed(stream.data() + stream.size() - 2, 2);
  got = drain(d, &s);
  ASSERT_TRUE(s.ok());
  EXPECT_EQ(got, std::vector<std::string>{"tail"});
  d.release_consumed(16 << 10);
  EXPECT_EQ(d.buffered_bytes(), 0u);
}

TEST(FrameDecoderTest, OversizedFrameIsRefusedBeforeBuffering) {
  std::string stream;
  append_frame(stream, std::string(2000, 'x'));
  FrameDecoder d(1000);
  d.feed(stream.data(), 4);  // only the header: refused at once, without waiting for the body
  std::string_view p;
  bool has = false;
  Status s = d.next(&p, &has);
  EXPECT_EQ(s.code(), Code::kResourceExhausted);
  EXPECT_NE(s.message().find("2000"), std::string::npos);
  EXPECT_FALSE(has);
}

TEST(FrameDecoderTest, AnOversizedFrameCanBeSkippedWithoutBuffering) {
  std::string stream;
  append_frame(stream, "a");
  append_frame(stream, std::string(5000, 'x'));
  append_frame(stream, "b");
  // Every way of cutting the stream in two: the skipped bytes arrive before, across and after
  // the cut.
  for (std::size_t cut = 0; cut <= stream.size(); cut += 97) {
    SCOPED_TRACE(cut);
    FrameDecoder d(1000);
    std::vector<std::string> got;
    std::size_t skipped = 0;
    for (const std::string_view part :
         {std::string_view(stream).substr(0, cut), std::string_view(stream).substr(cut)}) {
      d.feed(part.data(), part.size());
      for (;;) {
        Status s;
        std::vector<std::string> frames = drain(d, &s);
        got.insert(got.end(), frames.begin(), frames.end());
        if (s.ok()) break;
        ASSERT_EQ(s.code(), Code::kResourceExhausted);
        skipped = d.skip_oversized();
      }
      EXPECT_LE(d.buffered_bytes(), 1000u + kFrameHeaderBytes) << "the big frame was buffered";
    }
    EXPECT_EQ(skipped, 5000u);
    EXPECT_EQ(got, (std::vector<std::string>{"a", "b"}));
  }
}

TEST(FrameDecoderTest, EmptyFrameIsCorruption) {
  const char zeros[4] = {0, 0, 0, 0};
  FrameDecoder d;
  d.feed(zeros, 4);
  std::string_view p;
  bool has = false;
  EXPECT_EQ(d.next(&p, &has).code(), Code::kCorruption);
}

TEST(FrameTest, BeginFinishWritesBigEndianLength) {
  std::string out = "pre";
  const std::size_t at = begin_frame(out);
  out.append(258, 'z');
  finish_frame(out, at);
  ASSERT_EQ(out.size(), 3u + 4u + 258u);
  EXPECT_EQ(out.substr(3, 4), std::string("\0\0\x01\x02", 4));
}

}  // namespace
}  // namespace kvc::wire
