#include "kvc/storage/state_lmdb.h"

#include <sys/statvfs.h>

#include <cerrno>

#include "kvc/storage/fs.h"

namespace kvc::storage {
namespace {

// The meta fields that are integers, in the order they are read and written.
struct IntField {
  std::string_view key;
  std::uint64_t StateMeta::*field;
  bool since_v2;  // absent from a version 1 state
};
constexpr IntField kIntFields[] = {
    {kMetaFormat, &StateMeta::format, false},
    {kMetaAppliedIndex, &StateMeta::applied_index, false},
    {kMetaAppliedTerm, &StateMeta::applied_term, false},
    {kMetaRevision, &StateMeta::revision, false},
    {kMetaCompactRevision, &StateMeta::compact_revision, false},
    {kMetaEventsBytes, &StateMeta::events_bytes, false},
    {kMetaLogDurableIndex, &StateMeta::log_durable_index, true},
    {kMetaInstalledIndex, &StateMeta::installed_index, true},
};

// True when the file system holding `dir` has no block left for this process.
bool file_system_full(const std::string& dir) {
  struct statvfs st {};
  if (::statvfs(dir.c_str(), &st) != 0) return false;
  return st.f_bavail == 0;
}

}  // namespace

StateFacts StateMeta::facts(const std::string& state_dir) const {
  return StateFacts{.state_dir = state_dir,
                    .format = static_cast<std::uint32_t>(format),
                    .applied_index = applied_index,
                    .applied_term = applied_term,
                    .revision = revision,
                    .compact_revision = compact_revision,
                    .log_durable_index = log_durable_index,
                    .installed_index = installed_index,
                    .has_membership = !membership.empty()};
}

Result<std::uint32_t> read_state_format(MDB_txn* txn, MDB_dbi meta, const std::string& where) {
  MDB_val k = val_of(kMetaFormat), v;
  const int rc = mdb_get(txn, meta, &k, &v);
  if (rc == MDB_NOTFOUND) return 0u;
  if (rc != 0) return lmdb_status(rc, where, "read meta");
  std::uint64_t format = 0;
  if (v.mv_size == 8 && parse_u64(view_of(v), format) && format == 1) return 1u;
  std::optional<std::string_view> body = unseal_record(StateDb::kMeta, kMetaFormat, view_of(v));
  if (!body) {
    return Status::corruption("state " + where + ": " + record_name(StateDb::kMeta, kMetaFormat) +
                              ": checksum mismatch");
  }
  if (!parse_u64(*body, format) || format == 0 || format > UINT32_MAX) {
    return Status::corruption("state " + where + ": " + record_name(StateDb::kMeta, kMetaFormat) +
                              ": malformed record");
  }
  return static_cast<std::uint32_t>(format);
}

Status read_state_meta(MDB_txn* txn, MDB_dbi meta, StateMeta& m, const std::string& where) {
  Result<std::uint32_t> format = read_state_format(txn, meta, where);
  if (!format.ok()) return format.status();
  if (*format == 0) {
    return Status::corruption("state " + where + ": " + record_name(StateDb::kMeta, kMetaFormat) +
                              " missing");
  }
  if (*format > kStateFormatVersion) {
    return Status::failed_precondition("state " + where + ": state format version " +
                                       std::to_string(*format) +
                                       " is not supported by this kvc (supports 1 and " +
                                       std::to_string(kStateFormatVersion) + ")");
  }
  const bool sealed = *format >= 2;
  auto get = [&](std::string_view key, std::string_view* body) -> Status {
    MDB_val k = val_of(key), v;
    const int rc = mdb_get(txn, meta, &k, &v);
    const std::string name = record_name(StateDb::kMeta, key);
    if (rc == MDB_NOTFOUND) return Status::corruption("state " + where + ": " + name + " missing");
    if (rc != 0) return lmdb_status(rc, where, "read " + name);
    if (!sealed) {
      *body = view_of(v);
      return Status();
    }
    std::optional<std::string_view> b = unseal_record(StateDb::kMeta, key, view_of(v));
    if (!b) return Status::corruption("state " + where + ": " + name + ": checksum mismatch");
    *body = *b;
    return Status();
  };
  std::string_view body;
  for (const IntField& f : kIntFields) {
    if (f.since_v2 && !sealed) {
      m.*f.field = 0;
      continue;
    }
    KVC_RETURN_IF_ERROR(get(f.key, &body));
    if (!parse_u64(body, m.*f.field)) {
      return Status::corruption("state " + where + ": " + record_name(StateDb::kMeta, f.key) +
                                ": malformed record");
    }
  }
  KVC_RETURN_IF_ERROR(get(kMetaMembership, &body));
  Result<Membership> mem = decode_membership(body);
  if (!mem.ok()) {
    return Status::corruption("state " + where + ": " +
                              record_name(StateDb::kMeta, kMetaMembership) + ": " +
                              mem.status().message());
  }
  m.membership = std::move(*mem);
  return Status();
}

int write_state_meta(MDB_txn* txn, MDB_dbi meta, const StateMeta& m) {
  std::string buf;
  auto put = [&](std::string_view key, std::string_view body) {
    seal_record(buf, StateDb::kMeta, key, body);
    MDB_val k = val_of(key), v = val_of(buf);
    return mdb_put(txn, meta, &k, &v, 0);
  };
  for (const IntField& f : kIntFields) {
    const std::uint64_t v = f.field == &StateMeta::format ? kStateFormatVersion : m.*f.field;
    if (int rc = put(f.key, u64_bytes(v)); rc != 0) return rc;
  }
  return put(kMetaMembership, encode_membership(m.membership));
}

bool looks_installed(const StateMeta& m, std::uint64_t event_count) {
  return m.applied_index != 0 && event_count == 0 && m.compact_revision == m.applied_index + 1;
}

Status lmdb_status(int rc, const std::string& dir, const std::string& what, std::uint64_t map_size,
                   const std::string& map_flag) {
  const std::string where = "state " + dir + ": " + what + ": ";
  switch (rc) {
    case MDB_MAP_FULL:
      return Status::resource_exhausted(
          where + "the state database is full (map size " + std::to_string(map_size >> 20) +
          " MiB); raise " + (map_flag.empty() ? std::string("the map size") : map_flag) +
          " (a limit, not space used)");
    case MDB_READERS_FULL:
      return Status::resource_exhausted(where + "too many concurrent LMDB readers");
    case MDB_CORRUPTED:
    case MDB_PAGE_NOTFOUND:
    case MDB_INVALID:
    case MDB_VERSION_MISMATCH:
      return Status::corruption(where + mdb_strerror(rc) + " (the LMDB file is damaged)");
    case ENOSPC:
    case EDQUOT:
      return errno_status(where.substr(0, where.size() - 2), rc);
    case EIO:
      // LMDB turns a short write (what a full disk gives) into EIO without retrying.
      if (file_system_full(dir)) {
        return Status::resource_exhausted(where +
                                          "no space left on device (lmdb reported an i/o error "
                                          "while the file system was full)");
      }
      return errno_status(where.substr(0, where.size() - 2), rc);
    default:
      if (rc > 0) return errno_status(where.substr(0, where.size() - 2), rc);
      return Status::io_error(where + mdb_strerror(rc));
  }
}

}  // namespace kvc::storage
