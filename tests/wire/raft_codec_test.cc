#include "kvc/wire/raft_codec.h"

#include <gtest/gtest.h>

#include "kvc/common/text.h"
#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"

namespace kvc::wire {
namespace {

raft::Message full_message() {
  raft::Message m{.type = raft::MessageType::kHeartbeat,
                  .from = 1,
                  .to = 2,
                  .term = 3,
                  .log_term = 4,
                  .index = 5,
                  .commit = 6,
                  .reject = true,
                  .reject_hint = 7};
  m.entries = {{.index = 5, .term = 3, .type = raft::EntryType::kNormal, .data = "a"},
               {.index = 6, .term = 3, .type = raft::EntryType::kConfChange, .data = ""}};
  m.context = "transfer";
  m.snapshot = {.index = 4, .term = 2, .conf = {.voters = {1, 2, 3}, .learners = {4}}};
  m.snapshot_size = 100;
  m.snapshot_offset = 10;
  m.chunk_length = 2;
  m.snapshot_done = true;
  m.chunk = "ch";
  m.boot_id = 8;
  m.repairing = true;
  m.snapshot_from = 9;
  m.repair_to = 10;
  m.snapshot_damaged = true;
  return m;
}

Result<raft::Message> decode_frame_bytes(std::string_view framed) {
  Result<Envelope> env = open_envelope(framed.substr(kFrameHeaderBytes));
  if (!env.ok()) return env.status();
  EXPECT_EQ(env->kind, FrameKind::kRaft);
  return decode_raft_message(*env->body);
}

TEST(RaftCodecTest, MessageRoundTrips) {
  for (const raft::Message& want : {raft::Message{}, full_message()}) {
    std::string f;
    append_raft_message(f, want);
    Result<raft::Message> got = decode_frame_bytes(f);
    ASSERT_TRUE(got.ok()) << got.status().to_string();
    EXPECT_EQ(*got, want);
  }
}

// The exact bytes, written down before the codec was rewritten on a field list: a change here
// is a change of the wire format between members.
TEST(RaftCodecTest, EncodingIsPinned) {
  std::string f;
  append_raft_message(f, full_message());
  EXPECT_EQ(hex_encode(f),
            "0000003c9203dc001606010203040506c3079294050300c4016194060301c400c4087472616e7366"
            "6572940402930102039104640a02c3c402636808c3090ac3");
  f.clear();
  append_raft_message(f, raft::Message{});
  EXPECT_EQ(hex_encode(f),
            "000000219203dc001600000000000000c20090c4009400009090000000c2c40000c20000c2");
}

TEST(RaftCodecTest, OlderMembersMessagesDecode) {
  // The 17 original fields only: the later ones read as zero.
  std::string f;
  const std::size_t at = begin_frame(f);
  Writer w(f);
  w.array(2);
  w.uint(static_cast<std::uint8_t>(FrameKind::kRaft));
  w.array(17);
  w.uint(static_cast<std::uint8_t>(raft::MessageType::kVote));
  for (int i = 0; i < 6; ++i) w.uint(i + 1);
  w.boolean(false);
  w.uint(0);
  w.array(0);
  w.bin("");
  w.array(4);
  w.uint(0);
  w.uint(0);
  w.array(0);
  w.array(0);
  for (int i = 0; i < 3; ++i) w.uint(0);
  w.boolean(false);
  w.bin("");
  finish_frame(f, at);
  Result<raft::Message> got = decode_frame_bytes(f);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(got->type, raft::MessageType::kVote);
  EXPECT_EQ(got->commit, 6u);
  EXPECT_EQ(got->boot_id, 0u);
}

TEST(RaftCodecTest, BadInputIsAStatus) {
  std::string f;
  append_raft_message(f, full_message());
  const std::string_view framed = f;
  // Every truncation of the body fails to parse or to decode; none crashes.
  for (std::size_t n = kFrameHeaderBytes; n < framed.size(); ++n) {
    Result<Envelope> env = open_envelope(framed.substr(kFrameHeaderBytes, n - kFrameHeaderBytes));
    if (env.ok()) {
      EXPECT_FALSE(decode_raft_message(*env->body).ok()) << "prefix " << n;
    }
  }
  // An unknown message type and a wrongly typed field name what failed.
  std::string bad = f;
  const std::size_t type_at = kFrameHeaderBytes + 5;  // after [2-array, kind, array16 of 21
  bad[type_at] = 0x63;
  Result<raft::Message> got = decode_frame_bytes(bad);
  ASSERT_FALSE(got.ok());
  EXPECT_EQ(got.status().code(), Code::kCorruption);
  EXPECT_NE(got.status().message().find("99"), std::string::npos) << got.status().to_string();
  bad = f;
  bad[type_at + 1] = static_cast<char>(0xc3);  // `from` becomes true
  got = decode_frame_bytes(bad);
  ASSERT_FALSE(got.ok());
  EXPECT_NE(got.status().message().find("raft.from"), std::string::npos)
      << got.status().to_string();
}

}  // namespace
}  // namespace kvc::wire
