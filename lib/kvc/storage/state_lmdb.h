// LMDB plumbing shared by the state machine (state*.cc) and the offline state check
// (state_check.cc), internal to kvc_storage (it includes lmdb.h, which only this library links):
// transactions and cursors that clean up after themselves, the meta record read and written as
// a whole (verified), and LMDB's return codes turned into Statuses. Record bytes are in
// state_format.h. Thread-compatible: each object belongs to one thread at a time.
#pragma once

#include <lmdb.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "kvc/common/status.h"
#include "kvc/storage/membership.h"
#include "kvc/storage/state_format.h"
#include "kvc/storage/state_types.h"

namespace kvc::storage {

// The state directory's layout (docs/state.md, "Directory layout"): CURRENT names the live
// generation, a directory gen-NNNNNNNNNN holding data.mdb and lock.mdb.
inline constexpr const char* kCurrentFile = "CURRENT";
inline constexpr const char* kFirstGen = "gen-0000000001";
inline constexpr std::size_t kGenNameBytes = 14;  // "gen-" + 10 digits
inline bool valid_gen_name(std::string_view n) {
  return n.size() == kGenNameBytes && n.substr(0, 4) == "gen-" &&
         n.substr(4).find_first_not_of("0123456789") == std::string_view::npos;
}

inline MDB_val val_of(std::string_view s) { return MDB_val{s.size(), const_cast<char*>(s.data())}; }
inline std::string_view view_of(const MDB_val& v) {
  return std::string_view(static_cast<const char*>(v.mv_data), v.mv_size);
}

// An LMDB transaction that aborts unless committed.
class Txn {
 public:
  Txn() = default;
  ~Txn() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
  }
  Txn(const Txn&) = delete;
  Txn& operator=(const Txn&) = delete;

  int begin(MDB_env* env, unsigned flags) { return mdb_txn_begin(env, nullptr, flags, &txn_); }
  int commit() {
    const int rc = mdb_txn_commit(txn_);
    txn_ = nullptr;  // committed or, on failure, freed by LMDB
    return rc;
  }
  MDB_txn* get() const { return txn_; }

 private:
  MDB_txn* txn_ = nullptr;
};

// A cursor that closes itself.
class Cursor {
 public:
  Cursor() = default;
  ~Cursor() {
    if (c_ != nullptr) mdb_cursor_close(c_);
  }
  Cursor(const Cursor&) = delete;
  Cursor& operator=(const Cursor&) = delete;
  int open(MDB_txn* txn, MDB_dbi dbi) { return mdb_cursor_open(txn, dbi, &c_); }
  MDB_cursor* get() const { return c_; }

 private:
  MDB_cursor* c_ = nullptr;
};

// Every meta field (state_format.h names them).
struct StateMeta {
  std::uint64_t format = kStateFormatVersion;
  std::uint64_t applied_index = 0;
  std::uint64_t applied_term = 0;
  std::uint64_t revision = 0;
  std::uint64_t compact_revision = 1;
  std::uint64_t events_bytes = 0;
  std::uint64_t log_durable_index = 0;
  std::uint64_t installed_index = 0;
  Membership membership;

  StateFacts facts(const std::string& state_dir) const;
};

// The format version the meta database says, 0 when it is empty (a new state). A version 1
// "format" record is 8 bytes; a version 2 one is sealed. kCorruption when it is neither.
Result<std::uint32_t> read_state_format(MDB_txn* txn, MDB_dbi meta, const std::string& where);

// Reads every field of the meta database, verifying each record's seal (a version 1 state is
// read unsealed, without the fields version 2 added). kCorruption names the field and the
// problem ("checksum mismatch", "missing", "malformed"); kFailedPrecondition a version this kvc
// does not read. `where` starts every message ("state DIR").
Status read_state_meta(MDB_txn* txn, MDB_dbi meta, StateMeta& m, const std::string& where);
// Writes every field, sealed (version 2). Returns LMDB's code.
int write_state_meta(MDB_txn* txn, MDB_dbi meta, const StateMeta& m);

// A version 1 state never recorded that it was installed from a snapshot; one that was (an
// install writes no events and sets compact_revision to index + 1) and has applied nothing
// since still looks exactly so. Used when upgrading or reading a version 1 state.
bool looks_installed(const StateMeta& m, std::uint64_t event_count);

// "state DIR: WHAT: " + LMDB's error: kCorruption for a damaged file (MDB_CORRUPTED,
// MDB_PAGE_NOTFOUND, MDB_INVALID, ...), kResourceExhausted for a full map (naming `map_flag`)
// or a full disk, else kIOError. LMDB reports a short write (a full disk) as EIO; when the file
// system holding `dir` has no space left, the message says so.
Status lmdb_status(int rc, const std::string& dir, const std::string& what,
                   std::uint64_t map_size = 0, const std::string& map_flag = "");

}  // namespace kvc::storage
