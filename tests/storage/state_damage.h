// Damaging a closed state's LMDB file the way a disk or a careless operator would, for the
// integrity tests and the mutation test that shows they have teeth: flip one bit inside a stored
// value (its copy in the kv database, or the one in a put event), then check what the state
// machine makes of it. Test-only; not thread-safe.
#pragma once

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <vector>

#include "kvc/storage/state.h"
#include "state_test_util.h"

namespace kvc::storage::testing {

// The live generation's data.mdb of the state in `state_dir` (which must be closed).
inline std::string live_data_file(const std::string& state_dir) {
  std::ifstream in(state_dir + "/CURRENT");
  std::string gen;
  std::getline(in, gen);
  return state_dir + "/" + gen + "/data.mdb";
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

enum class Copy { kKv, kEvent };

// Flips one bit in the middle of `value` where the file stores it for `key`: in the kv record
// (LMDB's node: key, then the 4-byte checksum and three one-byte varints, then the value) or in
// the put event (its body ends with the key, then the value). Revisions must stay below 128 so
// each varint is one byte. Returns how many copies were damaged (stale copies in LMDB's free
// pages are damaged too, which is harmless).
inline int flip_value_bit(const std::string& state_dir, const std::string& key,
                          const std::string& value, Copy copy) {
  const std::string path = live_data_file(state_dir);
  std::string bytes = read_bytes(path);
  int flipped = 0;
  for (std::size_t pos = bytes.find(value); pos != std::string::npos;
       pos = bytes.find(value, pos + 1)) {
    const std::size_t gap = copy == Copy::kKv ? 7 : 0;
    if (pos < gap + key.size() || bytes.compare(pos - gap - key.size(), key.size(), key) != 0) {
      continue;
    }
    bytes[pos + value.size() / 2] ^= 0x10;
    ++flipped;
  }
  write_bytes(path, bytes);
  return flipped;
}

// Flips bit 0x40 of the last byte of `key` where the kv database stores it (the node's key,
// found as flip_value_bit finds the value after it), so the record lies out of the key order
// under a key nobody wrote. Returns how many copies were damaged.
inline int flip_key_bit(const std::string& state_dir, const std::string& key,
                        const std::string& value) {
  const std::string path = live_data_file(state_dir);
  std::string bytes = read_bytes(path);
  int flipped = 0;
  for (std::size_t pos = bytes.find(value); pos != std::string::npos;
       pos = bytes.find(value, pos + 1)) {
    if (pos < 7 + key.size() || bytes.compare(pos - 7 - key.size(), key.size(), key) != 0) {
      continue;
    }
    bytes[pos - 7 - 1] ^= 0x40;
    ++flipped;
  }
  write_bytes(path, bytes);
  return flipped;
}

// Flips a bit of the body of the meta record `field` (its 8-byte integer follows the 4-byte
// checksum, which follows the field's name).
inline int flip_meta_bit(const std::string& state_dir, const std::string& field) {
  const std::string path = live_data_file(state_dir);
  std::string bytes = read_bytes(path);
  int flipped = 0;
  for (std::size_t pos = bytes.find(field); pos != std::string::npos;
       pos = bytes.find(field, pos + 1)) {
    const std::size_t body = pos + field.size() + 4;
    if (body + 8 > bytes.size()) continue;
    bytes[body] ^= 0x01;
    ++flipped;
  }
  write_bytes(path, bytes);
  return flipped;
}

// Breaks LMDB's B-tree itself: clears the page-type flags of every page that holds `key`'s kv
// record (found as flip_value_bit finds it), so LMDB meets a page that is neither a branch nor
// a leaf. Returns how many pages were damaged. Assumes 4 KiB pages (LMDB uses the OS page size).
inline int break_page_holding(const std::string& state_dir, const std::string& key,
                              const std::string& value) {
  constexpr std::size_t kPage = 4096, kFlags = 10;  // MDB_page: pgno(8) pad(2) flags(2) ...
  const std::string path = live_data_file(state_dir);
  std::string bytes = read_bytes(path);
  int broken = 0;
  for (std::size_t pos = bytes.find(value); pos != std::string::npos;
       pos = bytes.find(value, pos + 1)) {
    if (pos < 7 + key.size() || bytes.compare(pos - 7 - key.size(), key.size(), key) != 0) continue;
    const std::size_t page = pos / kPage * kPage;
    bytes[page + kFlags] = 0;
    bytes[page + kFlags + 1] = 0;
    ++broken;
  }
  write_bytes(path, bytes);
  return broken;
}

// A closed state whose keys d/0..d/(n-1) hold "value-of-d/<i>-<padding>" (unique, long enough
// to find), written by one flush at indexes 1..n (n < 128).
inline std::string damage_value(int i) {
  return "value-of-d/" + std::to_string(i) + "-0123456789abcdefghijklmnopqrstuvwxyz";
}
inline void build_state(const std::string& dir, int n) {
  Result<std::unique_ptr<StateMachine>> sm = StateMachine::open(dir);
  KVC_CHECK(sm.ok(), sm.status().to_string());
  Membership m;
  m.members = {{.id = 1, .name = "m1", .peer_addr = "127.0.0.1:1"}};
  (*sm)->apply_membership(1, 1, m);
  for (int i = 0; i < n; ++i) {
    Result<ApplyResult> r = (*sm)->apply(
        static_cast<std::uint64_t>(i) + 2, 1,
        {.op = CommandOp::kPut, .key = "d/" + std::to_string(i), .value = damage_value(i)});
    KVC_CHECK(r.ok() && r->code == Code::kOk, "build_state: put failed");
  }
  KVC_CHECK((*sm)->flush_all().ok(), "build_state: flush failed");
}

// The whole story the integrity tests tell, as a checker the mutation test reuses: build a
// state, damage one value, reopen, and check that the damaged key is refused on every read
// path while the others still read. Returns "" when the state behaved, else what went wrong.
inline std::string check_damaged_value_is_refused(const std::string& dir) {
  constexpr int kKeys = 20, kVictim = 7;
  build_state(dir, kKeys);
  const std::string key = "d/" + std::to_string(kVictim);
  if (flip_value_bit(dir, key, damage_value(kVictim), Copy::kKv) == 0) {
    return "could not find the value to damage";
  }
  Result<std::unique_ptr<StateMachine>> opened = StateMachine::open(dir);
  if (!opened.ok()) return "open failed: " + opened.status().to_string();
  StateMachine& sm = **opened;
  std::ostringstream bad;
  auto refused = [&](const char* what, const Status& s) {
    if (s.code() != Code::kCorruption || s.message().find("\"d/7\"") == std::string::npos ||
        s.message().find("checksum mismatch") == std::string::npos ||
        s.message().find(dir) == std::string::npos) {
      bad << what << " did not refuse the damaged key: " << s.to_string() << "; ";
    }
  };
  refused("get", sm.get(key).status());
  refused("exists", sm.exists(key).status());
  refused("range", sm.range({}).status());
  refused("range keys_only", sm.range({.keys_only = true}).status());
  refused("hash", sm.hash().status());
  refused("durable_hash", sm.durable_hash().status());
  refused("write_snapshot", sm.write_snapshot(dir + "/out.snap").status());
  if (std::filesystem::exists(dir + "/out.snap") ||
      std::filesystem::exists(dir + "/out.snap.tmp")) {
    bad << "a snapshot file was left behind; ";
  }
  // Each write that reads the damaged key's revisions must be refused, applying nothing (the
  // next index is taken afresh each time, so a broken build that applies one goes on checking).
  const std::uint64_t applied = sm.applied_index();
  const struct {
    const char* what;
    Command command;
  } writes[] = {
      {"apply put", {.op = CommandOp::kPut, .key = key, .value = "x"}},
      {"apply delete", {.op = CommandOp::kDelete, .key = key}},
      {"apply cas", {.op = CommandOp::kCas, .key = key, .value = "x"}},
      {"apply delete_prefix", {.op = CommandOp::kDeletePrefix, .key = "d/"}},
  };
  for (const auto& w : writes) {
    refused(w.what, sm.apply(sm.applied_index() + 1, 1, w.command).status());
  }
  if (sm.applied_index() != applied) bad << "a refused apply advanced the applied index; ";
  // The other keys still read, and a range that does not reach the damage works.
  for (int i : {0, 6, 8, kKeys - 1}) {
    Result<std::optional<KeyValue>> got = sm.get("d/" + std::to_string(i));
    if (!got.ok() || !got->has_value() || (*got)->value != damage_value(i)) {
      bad << "d/" << i << " did not read back; ";
    }
  }
  Result<RangePage> some = sm.range({.prefix = "d/1"});
  if (!some.ok() || some->kvs.size() != 11) bad << "a range beside the damage failed; ";
  const std::vector<std::string> listed = sm.damaged_keys();
  if (listed != std::vector<std::string>{"key \"d/7\""}) {
    bad << "damaged_keys() lists " << listed.size() << " record(s); ";
  }
  return bad.str();
}

}  // namespace kvc::storage::testing
