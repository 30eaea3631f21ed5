#include "kvc/wire/raft_codec.h"

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"

namespace kvc::wire {
namespace {

// The first 17 fields are the original format; later fields are appended and optional, so an
// older member's messages still decode (their new fields read as zero).
constexpr std::uint32_t kRequiredFields = 17;

using IdsCodec = ListCodec<UintCodec>;

constexpr auto entry_fields = [](auto& io, auto& e) {
  io.uint(0, "raft.entry.index", e.index);
  io.uint(1, "raft.entry.term", e.term);
  io.field(2, "raft.entry.type", e.type,
           EnumCodec<raft::EntryType::kNormal, raft::EntryType::kConfChange>{});
  io.bin(3, "raft.entry.data", e.data);
};

constexpr auto snapshot_meta_fields = [](auto& io, auto& s) {
  io.uint(0, "raft.snapshot.index", s.index);
  io.uint(1, "raft.snapshot.term", s.term);
  io.field(2, "raft.snapshot.voters", s.conf.voters, IdsCodec{});
  io.field(3, "raft.snapshot.learners", s.conf.learners, IdsCodec{});
};

constexpr raft::MessageType kLastMessageType =
    static_cast<raft::MessageType>(raft::kMessageTypeCount - 1);

// Positions are the wire format (raft_codec.h): never reorder; append new fields at the end.
constexpr auto message_fields = [](auto& io, auto& m) {
  io.field(0, "raft.type", m.type, EnumCodec<raft::MessageType{}, kLastMessageType>{});
  io.uint(1, "raft.from", m.from);
  io.uint(2, "raft.to", m.to);
  io.uint(3, "raft.term", m.term);
  io.uint(4, "raft.log_term", m.log_term);
  io.uint(5, "raft.index", m.index);
  io.uint(6, "raft.commit", m.commit);
  io.boolean(7, "raft.reject", m.reject);
  io.uint(8, "raft.reject_hint", m.reject_hint);
  io.field(9, "raft.entries", m.entries, ListCodec<ArrayCodec<decltype(entry_fields), 4>>{});
  io.bin(10, "raft.context", m.context);
  io.field(11, "raft.snapshot", m.snapshot, ArrayCodec<decltype(snapshot_meta_fields), 4>{});
  io.uint(12, "raft.snapshot_size", m.snapshot_size);
  io.uint(13, "raft.snapshot_offset", m.snapshot_offset);
  io.uint(14, "raft.chunk_length", m.chunk_length);
  io.boolean(15, "raft.snapshot_done", m.snapshot_done);
  io.bin(16, "raft.chunk", m.chunk);
  io.uint(17, "raft.boot_id", m.boot_id);
  io.boolean(18, "raft.repairing", m.repairing);
  io.uint(19, "raft.snapshot_from", m.snapshot_from);
  io.uint(20, "raft.repair_to", m.repair_to);
  io.boolean(21, "raft.snapshot_damaged", m.snapshot_damaged);
};

}  // namespace

void append_raft_message(std::string& out, const raft::Message& m) {
  const std::size_t at = begin_frame(out);
  Writer w(out);
  w.array(2);
  w.uint(static_cast<std::uint8_t>(FrameKind::kRaft));
  encode_array(w, m, message_fields);
  finish_frame(out, at);
}

Result<raft::Message> decode_raft_message(const msgpack::object& body) {
  raft::Message m;
  KVC_RETURN_IF_ERROR(decode_array(body, "raft message", kRequiredFields, &m, message_fields));
  return m;
}

}  // namespace kvc::wire
