#include "kvc/wire/raft_codec.h"

#include "kvc/wire/frame.h"
#include "kvc/wire/messages.h"

namespace kvc::wire {
namespace {

// The first 17 fields are the original format; later fields are appended and optional, so an
// older member's messages still decode (their new fields read as zero).
constexpr std::uint32_t kRequiredFields = 17;
constexpr std::uint32_t kFields = 21;

void write_ids(Writer& w, const std::vector<raft::NodeId>& ids) {
  w.array(static_cast<std::uint32_t>(ids.size()));
  for (raft::NodeId id : ids) w.uint(id);
}

Status read_ids(const msgpack::object& o, std::vector<raft::NodeId>* ids, const char* what) {
  const msgpack::object* items = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_array(o, &items, &n, what));
  ids->resize(n);
  for (std::uint32_t i = 0; i < n; ++i) KVC_RETURN_IF_ERROR(get_uint(items[i], &(*ids)[i], what));
  return Status();
}

}  // namespace

void append_raft_message(std::string& out, const raft::Message& m) {
  const std::size_t at = begin_frame(out);
  Writer w(out);
  w.array(2);
  w.uint(static_cast<std::uint8_t>(FrameKind::kRaft));
  w.array(kFields);
  w.uint(static_cast<std::uint8_t>(m.type));
  w.uint(m.from);
  w.uint(m.to);
  w.uint(m.term);
  w.uint(m.log_term);
  w.uint(m.index);
  w.uint(m.commit);
  w.boolean(m.reject);
  w.uint(m.reject_hint);
  w.array(static_cast<std::uint32_t>(m.entries.size()));
  for (const raft::Entry& e : m.entries) {
    w.array(4);
    w.uint(e.index);
    w.uint(e.term);
    w.uint(static_cast<std::uint8_t>(e.type));
    w.bin(e.data);
  }
  w.bin(m.context);
  w.array(4);
  w.uint(m.snapshot.index);
  w.uint(m.snapshot.term);
  write_ids(w, m.snapshot.conf.voters);
  write_ids(w, m.snapshot.conf.learners);
  w.uint(m.snapshot_size);
  w.uint(m.snapshot_offset);
  w.uint(m.chunk_length);
  w.boolean(m.snapshot_done);
  w.bin(m.chunk);
  w.uint(m.boot_id);
  w.boolean(m.repairing);
  w.uint(m.snapshot_from);
  w.uint(m.repair_to);
  finish_frame(out, at);
}

Result<raft::Message> decode_raft_message(const msgpack::object& body) {
  const msgpack::object* f = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_array(body, &f, &n, "raft message"));
  if (n < kRequiredFields) {
    return Status::corruption("raft message: expected " + std::to_string(kRequiredFields) +
                              " fields, got " + std::to_string(n));
  }
  raft::Message m;
  std::uint64_t type = 0;
  KVC_RETURN_IF_ERROR(get_uint(f[0], &type, "raft.type"));
  if (type >= static_cast<std::uint64_t>(raft::kMessageTypeCount)) {
    return Status::corruption("raft message: unknown type " + std::to_string(type));
  }
  m.type = static_cast<raft::MessageType>(type);
  KVC_RETURN_IF_ERROR(get_uint(f[1], &m.from, "raft.from"));
  KVC_RETURN_IF_ERROR(get_uint(f[2], &m.to, "raft.to"));
  KVC_RETURN_IF_ERROR(get_uint(f[3], &m.term, "raft.term"));
  KVC_RETURN_IF_ERROR(get_uint(f[4], &m.log_term, "raft.log_term"));
  KVC_RETURN_IF_ERROR(get_uint(f[5], &m.index, "raft.index"));
  KVC_RETURN_IF_ERROR(get_uint(f[6], &m.commit, "raft.commit"));
  KVC_RETURN_IF_ERROR(get_bool(f[7], &m.reject, "raft.reject"));
  KVC_RETURN_IF_ERROR(get_uint(f[8], &m.reject_hint, "raft.reject_hint"));
  const msgpack::object* ents = nullptr;
  std::uint32_t ne = 0;
  KVC_RETURN_IF_ERROR(get_array(f[9], &ents, &ne, "raft.entries"));
  m.entries.resize(ne);
  for (std::uint32_t i = 0; i < ne; ++i) {
    const msgpack::object* ef = nullptr;
    std::uint32_t nf = 0;
    KVC_RETURN_IF_ERROR(get_array(ents[i], &ef, &nf, "raft.entry"));
    if (nf < 4) return Status::corruption("raft entry: expected 4 fields");
    raft::Entry& e = m.entries[i];
    KVC_RETURN_IF_ERROR(get_uint(ef[0], &e.index, "raft.entry.index"));
    KVC_RETURN_IF_ERROR(get_uint(ef[1], &e.term, "raft.entry.term"));
    std::uint64_t et = 0;
    KVC_RETURN_IF_ERROR(get_uint(ef[2], &et, "raft.entry.type"));
    if (et > static_cast<std::uint64_t>(raft::EntryType::kConfChange)) {
      return Status::corruption("raft entry: unknown type " + std::to_string(et));
    }
    e.type = static_cast<raft::EntryType>(et);
    KVC_RETURN_IF_ERROR(get_bytes(ef[3], &e.data, "raft.entry.data"));
  }
  KVC_RETURN_IF_ERROR(get_bytes(f[10], &m.context, "raft.context"));
  const msgpack::object* sf = nullptr;
  std::uint32_t ns = 0;
  KVC_RETURN_IF_ERROR(get_array(f[11], &sf, &ns, "raft.snapshot"));
  if (ns < 4) return Status::corruption("raft snapshot meta: expected 4 fields");
  KVC_RETURN_IF_ERROR(get_uint(sf[0], &m.snapshot.index, "raft.snapshot.index"));
  KVC_RETURN_IF_ERROR(get_uint(sf[1], &m.snapshot.term, "raft.snapshot.term"));
  KVC_RETURN_IF_ERROR(read_ids(sf[2], &m.snapshot.conf.voters, "raft.snapshot.voters"));
  KVC_RETURN_IF_ERROR(read_ids(sf[3], &m.snapshot.conf.learners, "raft.snapshot.learners"));
  KVC_RETURN_IF_ERROR(get_uint(f[12], &m.snapshot_size, "raft.snapshot_size"));
  KVC_RETURN_IF_ERROR(get_uint(f[13], &m.snapshot_offset, "raft.snapshot_offset"));
  KVC_RETURN_IF_ERROR(get_uint(f[14], &m.chunk_length, "raft.chunk_length"));
  KVC_RETURN_IF_ERROR(get_bool(f[15], &m.snapshot_done, "raft.snapshot_done"));
  KVC_RETURN_IF_ERROR(get_bytes(f[16], &m.chunk, "raft.chunk"));
  if (n > 17) KVC_RETURN_IF_ERROR(get_uint(f[17], &m.boot_id, "raft.boot_id"));
  if (n > 18) KVC_RETURN_IF_ERROR(get_bool(f[18], &m.repairing, "raft.repairing"));
  if (n > 19) KVC_RETURN_IF_ERROR(get_uint(f[19], &m.snapshot_from, "raft.snapshot_from"));
  if (n > 20) KVC_RETURN_IF_ERROR(get_uint(f[20], &m.repair_to, "raft.repair_to"));
  return m;
}

}  // namespace kvc::wire
