#include "kvc/wire/messages.h"

#include <gtest/gtest.h>

#include <random>

#include "kvc/common/text.h"
#include "kvc/wire/frame.h"

namespace kvc::wire {
namespace {

// The payload of the single frame in `framed`.
std::string_view payload_of(const std::string& framed) {
  EXPECT_GE(framed.size(), kFrameHeaderBytes);
  return std::string_view(framed).substr(kFrameHeaderBytes);
}

Request full_request() {
  return {.id = 77,
          .op = Op::kCas,
          .key = std::string("k\0\xff", 3),
          .value = "v",
          .prefix = true,
          .limit = 10,
          .expect_revision = 99,
          .serializable = true,
          .keys_only = true,
          .count_only = true,
          .start_revision = 5,
          .watch_id = 6,
          .member_id = 7,
          .name = "m4",
          .peer_addr = "127.0.0.1:1",
          .client_addr = "127.0.0.1:2",
          .learner = true,
          .force = true,
          .timeout_ms = 5000};
}

Response full_response() {
  Response r{.id = 9,
             .code = Code::kNotLeader,
             .message = "not leader",
             .leader_id = 3,
             .leader_name = "m3",
             .leader_client_addr = "127.0.0.1:2379",
             .revision = 1234};
  r.kvs = {{"a", "1", 2, 3, 4}, {std::string("\x80\x81", 2), "", 5, 6, 1}};
  r.more = true;
  r.count = 2;
  r.found = true;
  r.members = {{1, "m1", "127.0.0.1:1", "127.0.0.1:2", false, true},
               {2, "m2", "127.0.0.1:3", "", true, false}};
  r.has_status = true;
  r.status = {.member_id = 1,
              .name = "m1",
              .version = "0.1",
              .cluster_id = 8,
              .leader_id = 1,
              .term = 4,
              .commit_index = 10,
              .applied_index = 9,
              .durable_index = 8,
              .wal_bytes = 100,
              .state_bytes = 200,
              .learner = false,
              .role = "leader",
              .errors = {"disk slow", "peer m2 unreachable"}};
  r.watch_id = 11;
  r.events = {{EventType::kPut, {"a", "1", 2, 3, 1}}, {EventType::kDelete, {"b", "", 0, 4, 0}}};
  r.compact_revision = 2;
  r.data = std::string(100, '\0');
  r.done = true;
  r.hash = 0xdeadbeefcafe;
  r.member_id = 1;
  return r;
}

Hello full_hello() {
  return {.role = Role::kPeer,
          .cluster_id = 5,
          .member_id = 6,
          .name = "m1",
          .software_version = "0.1",
          .proof = "p",
          .peer_addr = "h:2",
          .client_addr = "h:1"};
}

HelloReply full_hello_reply() {
  return {.code = Code::kFailedPrecondition,
          .message = "no",
          .cluster_id = 1,
          .member_id = 2,
          .name = "m2",
          .software_version = "0.2",
          .client_addr = "h:3",
          .assigned_member_id = 77,
          .removed = true,
          .max_frame_bytes = 16u << 20,
          .max_request_bytes = 1536u << 10,
          .refused_frame_bytes = 20000000};
}

// Encodes `want` as one frame, opens it and decodes it back.
template <typename M>
void expect_round_trip(void (*append)(std::string&, const M&),
                       Result<M> (*decode)(const msgpack::object&), FrameKind kind, const M& want) {
  std::string f;
  append(f, want);
  Result<Envelope> env = open_envelope(payload_of(f));
  ASSERT_TRUE(env.ok()) << env.status().to_string();
  ASSERT_EQ(env->kind, kind);
  Result<M> got = decode(*env->body);
  ASSERT_TRUE(got.ok()) << got.status().to_string();
  EXPECT_EQ(*got, want);
}

// Decodes a request frame whose map `fill` writes by hand, as a newer or a broken client might.
template <typename Fill>
Result<Request> decode_written_request(Fill fill) {
  std::string f;
  const std::size_t at = begin_frame(f);
  Writer w(f);
  w.array(2);
  w.uint(static_cast<std::uint8_t>(FrameKind::kRequest));
  MapWriter m(f);
  fill(m);
  m.finish();
  finish_frame(f, at);
  Result<Envelope> env = open_envelope(payload_of(f));
  if (!env.ok()) return env.status();
  return decode_request(*env->body);
}

TEST(MessagesTest, RequestRoundTrips) {
  for (const Request& want :
       {Request{}, Request{.id = 1, .op = Op::kPut, .key = "a"}, full_request()}) {
    expect_round_trip(append_request, decode_request, FrameKind::kRequest, want);
  }
}

TEST(MessagesTest, ResponseRoundTrips) {
  for (const Response& want : {Response{}, full_response()}) {
    expect_round_trip(append_response, decode_response, FrameKind::kResponse, want);
  }
}

TEST(MessagesTest, HandshakeRoundTrips) {
  expect_round_trip(append_hello, decode_hello, FrameKind::kHello, full_hello());
  expect_round_trip(append_hello_reply, decode_hello_reply, FrameKind::kHelloReply,
                    full_hello_reply());
}

TEST(MessagesTest, EncodingIsPinned) {
  Response resp = full_response();
  resp.data = "d";
  resp.status.damaged = true;
  resp.status.repairing = true;
  resp.status.repair_reason = "r";
  resp.status.scrub_passes = 1;
  resp.status.scrub_records = 2;
  resp.status.scrub_damaged = 3;
  resp.status.hash_check_index = 4;
  resp.status.hash_check_result = "ok";
  resp.status.lost_entries_detected = 5;
  std::string f;
  append_hello(f, full_hello());
  // Hello field 7 and hello reply fields 7 and 8 (the retired HMAC challenge) are gone: the
  // test values no longer set them; every other byte is as before.
  EXPECT_EQ(hex_encode(f),
            "000000269201df00000009010102010305040605a26d3106a3302e3108c4017009a3683a320aa368"
            "3a31");
  f.clear();
  append_hello_reply(f, full_hello_reply());
  EXPECT_EQ(hex_encode(f),
            "000000359202df0000000c010502a26e6f0301040205a26d3206a3302e3209a3683a330a4d0bc30c"
            "ce010000000dce001800000ece01312d00");
  f.clear();
  append_request(f, full_request());
  EXPECT_EQ(hex_encode(f),
            "0000004d9204df00000013014d020503c4036b00ff04c4017605c3060a076308c309c30ac30b050c"
            "060d070ea26d340fab3132372e302e302e313a3110ab3132372e302e302e313a3211c312c313cd13"
            "88");
  f.clear();
  append_request(f, Request{});
  EXPECT_EQ(hex_encode(f), "000000099204df000000010201");
  f.clear();
  append_response(f, resp);
  EXPECT_EQ(hex_encode(f),
            "000001149205df000000140109020703aa6e6f74206c6561646572040305a26d3306ae3132372e30"
            "2e302e313a3233373907cd04d2089296c40161c401310203040096c4028081c4000506010009c30a"
            "020bc30c929601a26d31ab3132372e302e302e313a31ab3132372e302e302e313a32c2c39602a26d"
            "32ab3132372e302e302e313a33a0c3c20ddf00000016010102a26d3103a3302e3104080501060407"
            "0a080909080a640bccc80da66c65616465720e92a96469736b20736c6f77b370656572206d322075"
            "6e726561636861626c6528c329c32aa1722b012c022d032e042fa26f6b30050e0b0f92920196c401"
            "61c4013102030100920296c40162c40000040000100211c4016412c313cf0000deadbeefcafe1401");
  f.clear();
  append_response(f, Response{});
  EXPECT_EQ(hex_encode(f), "000000079205df00000000");
}

// Shared watch responses (kvc-node(1), "WIRE PROTOCOL"): hello field 12, response fields 30
// and 31.
TEST(MessagesTest, SharedWatchFieldsRoundTripAndArePinned) {
  const Hello hello{.shared_watches = true};
  expect_round_trip(append_hello, decode_hello, FrameKind::kHello, hello);
  Response r;
  r.watch_group = 7;
  r.group_events = true;
  expect_round_trip(append_response, decode_response, FrameKind::kResponse, r);
  std::string f;
  append_hello(f, hello);
  EXPECT_EQ(hex_encode(f), "0000000d9201df00000003010102020cc3");
  f.clear();
  append_response(f, r);
  EXPECT_EQ(hex_encode(f), "0000000b9205df000000021e071fc3");
}

TEST(MessagesTest, EveryTruncationFailsCleanly) {
  std::string f;
  append_response(f, full_response());
  const std::string_view p = payload_of(f);
  for (std::size_t n = 0; n < p.size(); ++n) {
    Result<Envelope> env = open_envelope(p.substr(0, n));
    if (env.ok()) {
      // A prefix can only parse if it is itself a complete value; it must not decode as ours.
      EXPECT_FALSE(decode_response(*env->body).ok()) << "prefix " << n;
    }
  }
}

TEST(MessagesTest, UnknownFieldsAreSkipped) {
  // A newer client sends field 200: this member ignores it.
  Result<Request> r = decode_written_request([](MapWriter& m) {
    m.uint(1, 5);
    m.field(2).uint(static_cast<std::uint8_t>(Op::kGet));
    m.field(200).str("from the future");
  });
  ASSERT_TRUE(r.ok()) << r.status().to_string();
  EXPECT_EQ(r->id, 5u);
}

TEST(MessagesTest, MalformedInputIsRejected) {
  const struct {
    const char* name;
    std::string bytes;
  } cases[] = {
      {"empty", ""},
      {"not an array", "\x01"},
      {"wrong arity", "\x91\x04"},
      {"unknown kind", "\x92\x63\x80"},
      {"huge declared array", std::string("\xdd\xff\xff\xff\xff", 5)},
      {"huge declared string", std::string("\x92\x04\xdb\xff\xff\xff\xff", 7)},
      {"trailing bytes", std::string("\x92\x04\x80\x00", 4)},
      {"deep nesting", std::string(64, '\x91') + "\x00"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.name);
    Result<Envelope> env = open_envelope(c.bytes);
    EXPECT_FALSE(env.ok());
  }
}

TEST(MessagesTest, WrongFieldTypesAreRejected) {
  Result<Request> r = decode_written_request([](MapWriter& m) { m.field(1).str("not a number"); });
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.status().message().find("request.id"), std::string::npos);
}

TEST(MessagesTest, UnknownOpIsInvalidArgument) {
  EXPECT_EQ(decode_written_request([](MapWriter& m) { m.field(2).uint(250); }).status().code(),
            Code::kInvalidArgument);
}

TEST(MessagesTest, RandomBytesNeverCrash) {
  std::mt19937 rng(20261125);
  for (int i = 0; i < 20000; ++i) {
    std::string b(rng() % 64, '\0');
    for (auto& c : b) c = static_cast<char>(rng());
    if (!b.empty()) b[0] = static_cast<char>(0x92);  // mostly a 2-element array
    Result<Envelope> env = open_envelope(b);
    if (!env.ok()) continue;
    (void)decode_request(*env->body);
    (void)decode_response(*env->body);
    (void)decode_hello(*env->body);
    (void)decode_hello_reply(*env->body);
  }
}

}  // namespace
}  // namespace kvc::wire
