#include "kvc/sim/disk_faults.h"

#include <fcntl.h>
#include <lmdb.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "kvc/storage/consistency.h"
#include "kvc/storage/state_check.h"
#include "kvc/storage/state_format.h"

namespace kvc::sim {
namespace {

namespace fs = std::filesystem;

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// The live LMDB environment of a member's state: DATA_DIR/state/<the generation CURRENT names>.
Result<std::string> live_generation(const std::string& data_dir) {
  const std::string current = data_dir + "/state/CURRENT";
  std::string gen = read_whole(current);
  while (!gen.empty() && (gen.back() == '\n' || gen.back() == '\r')) gen.pop_back();
  if (gen.empty() || gen.find('/') != std::string::npos) {
    return Status::not_found(current + ": names no state generation");
  }
  return data_dir + "/state/" + gen;
}

std::string lmdb_error(int rc, const std::string& what) { return what + ": " + mdb_strerror(rc); }

// A key's stored record as LMDB returns it (the sealed bytes: checksum, revisions, value), and
// the value alone.
struct Located {
  std::string record;
  std::string value;
};

class ReadOnlyEnv {
 public:
  ~ReadOnlyEnv() {
    if (txn_ != nullptr) mdb_txn_abort(txn_);
    if (env_ != nullptr) mdb_env_close(env_);
  }
  Status open(const std::string& dir) {
    if (int rc = mdb_env_create(&env_); rc != 0) {
      env_ = nullptr;
      return Status::io_error(lmdb_error(rc, dir + ": create environment"));
    }
    if (int rc = mdb_env_set_maxdbs(env_, 4); rc != 0) {
      return Status::io_error(lmdb_error(rc, dir + ": set maxdbs"));
    }
    if (int rc = mdb_env_open(env_, dir.c_str(), MDB_RDONLY | MDB_NOLOCK | MDB_NOTLS, 0600);
        rc != 0) {
      return Status::io_error(lmdb_error(rc, dir + ": open read-only"));
    }
    if (int rc = mdb_txn_begin(env_, nullptr, MDB_RDONLY, &txn_); rc != 0) {
      txn_ = nullptr;
      return Status::io_error(lmdb_error(rc, dir + ": begin a read transaction"));
    }
    if (int rc = mdb_dbi_open(txn_, "kv", 0, &kv_); rc != 0) {
      return Status::io_error(lmdb_error(rc, dir + ": open the kv database"));
    }
    return Status();
  }

  // The record of `key`, if it is there with a value of at least one byte past its header.
  Result<Located> locate(const std::string& key) const {
    MDB_val k{key.size(), const_cast<char*>(key.data())};
    MDB_val v{};
    const int rc = mdb_get(txn_, kv_, &k, &v);
    if (rc == MDB_NOTFOUND) return Status::not_found("no record of " + key);
    if (rc != 0) return Status::io_error(lmdb_error(rc, "get " + key));
    const char* data = static_cast<const char*>(v.mv_data);
    // A sealed record is a 4-byte checksum, three varints, then the value to the end
    // (kvc-state(5)).
    if (v.mv_size < 4 + 3 + 1) return Status::not_found(key + " holds an empty value");
    Located out;
    out.record.assign(data, v.mv_size);
    // The value: the bytes after the varints (each ends with a byte below 0x80).
    std::size_t at = 4;
    for (int varint = 0; varint < 3 && at < v.mv_size; ++varint) {
      while (at < v.mv_size && (static_cast<unsigned char>(data[at]) & 0x80) != 0) ++at;
      ++at;
    }
    if (at >= v.mv_size) return Status::not_found(key + " holds an empty value");
    out.value.assign(data + at, v.mv_size - at);
    return out;
  }

 private:
  MDB_env* env_ = nullptr;
  MDB_txn* txn_ = nullptr;
  MDB_dbi kv_ = 0;
};

}  // namespace

Status copy_data_dir(const std::string& from, const std::string& to) {
  std::error_code ec;
  if (fs::exists(to, ec)) return Status::failed_precondition(to + " exists already");
  fs::create_directories(fs::path(to).parent_path(), ec);
  if (ec)
    return Status::io_error("create " + fs::path(to).parent_path().string() + ": " + ec.message());
  fs::copy(from, to, fs::copy_options::recursive, ec);
  if (ec) return Status::io_error("copy " + from + " to " + to + ": " + ec.message());
  return Status();
}

Status restore_data_dir(const std::string& copy, const std::string& dir) {
  std::error_code ec;
  fs::remove_all(dir, ec);
  if (ec) return Status::io_error("remove " + dir + ": " + ec.message());
  fs::rename(copy, dir, ec);
  if (ec) return Status::io_error("move " + copy + " to " + dir + ": " + ec.message());
  return Status();
}

Result<std::uint64_t> last_log_index(const std::string& dir) {
  Result<storage::ConsistencyReport> r = storage::check_data_dir_consistency(dir);
  if (!r.ok()) return r.status().with_context(dir);
  if (!r->ok()) return Status::corruption(dir + ": " + r->describe());
  return std::max(r->log.log.last_index, r->state.applied_index);
}

Result<DamagedValue> damage_stored_value(const std::string& data_dir,
                                         const std::vector<std::string>& keys) {
  Result<std::string> gen = live_generation(data_dir);
  if (!gen.ok()) return gen.status();
  DamagedValue d;
  d.file = *gen + "/data.mdb";
  std::string why, record;
  {
    ReadOnlyEnv env;
    KVC_RETURN_IF_ERROR(env.open(*gen));
    for (const std::string& key : keys) {
      Result<Located> at = env.locate(key);
      if (!at.ok()) {
        why += (why.empty() ? "" : "; ") + at.status().message();
        continue;
      }
      d.key = key;
      d.value = at->value;
      record = at->record;
      break;
    }
  }
  if (d.key.empty()) {
    return Status::not_found(d.file + " holds none of the candidate keys (" + why + ")");
  }
  // The record's bytes are where LMDB keeps it: on its live page, and perhaps on older copies
  // of that page that copy-on-write left behind. Damage every copy; the live one is among them.
  const std::string bytes = read_whole(d.file);
  std::vector<std::uint64_t> at;
  for (std::size_t p = bytes.find(record); p != std::string::npos; p = bytes.find(record, p + 1)) {
    at.push_back(p + record.size() - 1);  // the value's last byte
  }
  if (at.empty()) {
    return Status::internal(d.file + ": the bytes of " + d.key + "'s record are not in the file");
  }
  d.offset = at.front();
  d.copies = at.size();
  const unsigned char flipped = static_cast<unsigned char>(record.back()) ^ 0x40;
  const int fd = ::open(d.file.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return Status::from_errno("open " + d.file, errno);
  Status st;
  for (std::uint64_t off : at) {
    if (::pwrite(fd, &flipped, 1, static_cast<off_t>(off)) != 1) {
      st = Status::from_errno("write " + d.file, errno);
      break;
    }
  }
  if (st.ok() && ::fsync(fd) != 0) st = Status::from_errno("fsync " + d.file, errno);
  ::close(fd);
  KVC_RETURN_IF_ERROR(st);
  d.damaged = d.value;
  d.damaged.back() = static_cast<char>(flipped);

  // The live record, and only it, must now fail its seal.
  Result<std::vector<std::string>> found = damaged_records(data_dir);
  if (!found.ok()) return found.status();
  const std::string name = storage::record_name(storage::StateDb::kKv, d.key);
  const bool named = std::any_of(found->begin(), found->end(),
                                 [&](const std::string& s) { return s.rfind(name + ":", 0) == 0; });
  if (!named) {
    std::string seen;
    for (const std::string& s : *found) seen += (seen.empty() ? "" : "; ") + s;
    return Status::internal("flipped a bit of " + d.key + "'s value at offset " +
                            std::to_string(d.offset) + " of " + d.file +
                            ", but the offline check does not name it (it found: " +
                            (seen.empty() ? std::string("nothing") : seen) + ")");
  }
  return d;
}

Result<std::vector<std::string>> damaged_records(const std::string& data_dir) {
  Result<storage::StateCheckReport> r = storage::check_state(data_dir + "/state");
  if (!r.ok()) return r.status();
  std::vector<std::string> out = r->damaged;
  for (const std::string& p : r->problems) out.push_back(p);
  return out;
}

}  // namespace kvc::sim
