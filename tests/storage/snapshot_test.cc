#include "kvc/storage/snapshot.h"

#include <gtest/gtest.h>

#include <atomic>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <thread>

#include "kvc/common/crc32c.h"
#include "kvc/storage/state.h"
#include "state_test_util.h"

namespace kvc::storage {
namespace {

using testing::all_keys;
using testing::apply_both;
using testing::fresh_dir;
using testing::Model;
using testing::StepGenerator;

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
}

void spit(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << bytes;
}

// Puts keys "k1".."kN" as entries 1..N of `term`, the value of key i being value(i), and
// flushes them, so that a snapshot sees them all.
void put_and_flush(StateMachine& sm, std::uint64_t n, std::uint64_t term,
                   const std::function<std::string(std::uint64_t)>& value) {
  for (std::uint64_t i = 1; i <= n; ++i) {
    ASSERT_TRUE(sm.apply(i, term,
                         {.op = CommandOp::kPut, .key = "k" + std::to_string(i), .value = value(i)})
                    .ok());
  }
  ASSERT_TRUE(sm.flush_all().ok());
}

// Reads bytes as a snapshot to the end and says what, if anything, is wrong.
SnapshotProblem classify(std::string bytes) {
  SnapshotProblem p = SnapshotProblem::kNone;
  Result<SnapshotReader> r = SnapshotReader::from_bytes(std::move(bytes), &p);
  if (!r.ok()) {
    EXPECT_NE(p, SnapshotProblem::kNone) << r.status().to_string();
    return p;
  }
  Status s = r->for_each([](const KeyValue&) { return Status(); });
  if (!s.ok()) {
    EXPECT_NE(r->problem(), SnapshotProblem::kNone) << s.to_string();
  }
  return r->problem();
}

SnapshotHeader header(std::uint64_t index) {
  SnapshotHeader h;
  h.index = index;
  h.term = 4;
  h.revision = index;
  h.created_unix_ms = 1700000000000;
  h.membership.members = {{.id = 1, .name = "a", .peer_addr = "h:1"},
                          {.id = 2, .name = "b", .peer_addr = "h:2", .learner = true}};
  return h;
}

// A small snapshot file with many blocks (a tiny block target).
std::string small_snapshot(const std::string& dir, int keys = 60) {
  const std::string path = dir + "/small.snap";
  auto w = SnapshotWriter::create(path, header(500), 100);
  EXPECT_TRUE(w.ok());
  for (int i = 0; i < keys; ++i) {
    char key[16];
    std::snprintf(key, sizeof key, "key%04d", i);
    EXPECT_TRUE(
        (*w)->add({key, std::string(static_cast<std::size_t>(i % 7) * 5, 'v'),
                   static_cast<std::uint64_t>(i + 1), static_cast<std::uint64_t>(i + 10), 9})
            .ok());
  }
  EXPECT_TRUE((*w)->finish().ok());
  return path;
}

TEST(SnapshotTest, WriteVerifyInstallGivesAnIdenticalHash) {
  const std::string dir = fresh_dir();
  auto src = StateMachine::open(dir + "/src");
  ASSERT_TRUE(src.ok());
  Model model;
  Membership members;
  StepGenerator gen(21);
  for (std::uint64_t i = 1; i <= 400; ++i) {
    apply_both(**src, model, i, 1 + i / 100, gen.next(model), &members);
  }
  ASSERT_TRUE((*src)->flush_all().ok());
  const std::uint64_t want_hash = *(*src)->hash();
  ASSERT_EQ(want_hash, model.hash());

  Result<SnapshotInfo> info = (*src)->write_snapshot(dir + "/s.snap");
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  EXPECT_EQ(info->header.index, 400u);
  EXPECT_EQ(info->header.term, 5u);
  EXPECT_EQ(info->header.revision, model.revision);
  EXPECT_EQ(info->header.membership, members);
  EXPECT_EQ(info->record_count, model.kvs.size());
  EXPECT_FALSE(std::filesystem::exists(dir + "/s.snap.tmp"));

  Result<VerifyReport> rep = verify_snapshot(dir + "/s.snap");
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->problem, SnapshotProblem::kNone) << rep->message;
  EXPECT_EQ(rep->info.record_count, info->record_count);
  EXPECT_EQ(rep->info.file_crc, info->file_crc);
  EXPECT_EQ(rep->info.size_bytes, std::filesystem::file_size(dir + "/s.snap"));

  Result<SnapshotInfo> cheap = read_snapshot_info(dir + "/s.snap");
  ASSERT_TRUE(cheap.ok()) << cheap.status().to_string();
  EXPECT_EQ(cheap->header, info->header);
  EXPECT_EQ(cheap->record_count, info->record_count);
  EXPECT_EQ(cheap->file_crc, info->file_crc);

  auto dst = StateMachine::open(dir + "/dst");
  ASSERT_TRUE(dst.ok());
  ASSERT_TRUE((*dst)->apply(1, 1, {.op = CommandOp::kPut, .key = "stale", .value = "x"}).ok());
  Status s = (*dst)->install_snapshot(dir + "/s.snap");
  ASSERT_TRUE(s.ok()) << s.to_string();
  EXPECT_EQ(*(*dst)->hash(), want_hash);
  EXPECT_EQ((*dst)->applied_index(), 400u);
  EXPECT_EQ((*dst)->applied_term(), 5u);
  EXPECT_EQ((*dst)->durable_index(), 400u);
  EXPECT_EQ((*dst)->revision(), model.revision);
  EXPECT_EQ((*dst)->membership(), members);
  EXPECT_EQ(all_keys(**dst), model.all());
  // The history before the snapshot is gone; after it, it goes on.
  EXPECT_EQ(*(*dst)->compact_revision(), 401u);
  EXPECT_EQ((*dst)->events_since({.from_revision = 5, .prefix = true}).status().code(),
            Code::kFailedPrecondition);
  ASSERT_TRUE((*dst)->apply(401, 5, {.op = CommandOp::kPut, .key = "new", .value = "y"}).ok());
  ASSERT_EQ((*dst)->events_since({.from_revision = 401, .prefix = true})->events.size(), 1u);
  // Survives a reopen.
  const std::string dst_dir = (*dst)->state_dir();
  ASSERT_TRUE((*dst)->flush_all().ok());
  dst->reset();
  auto again = StateMachine::open(dst_dir);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ((*again)->applied_index(), 401u);
  EXPECT_EQ((*again)->membership(), members);
}

TEST(SnapshotTest, EmptyStateRoundTrips) {
  const std::string dir = fresh_dir();
  auto src = StateMachine::open(dir + "/src");
  ASSERT_TRUE(src.ok());
  Result<SnapshotInfo> info = (*src)->write_snapshot(dir + "/e.snap");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->record_count, 0u);
  EXPECT_EQ(classify(slurp(dir + "/e.snap")), SnapshotProblem::kNone);
  auto dst = StateMachine::open(dir + "/dst");
  ASSERT_TRUE((*dst)->install_snapshot(dir + "/e.snap").ok());
  EXPECT_EQ(*(*dst)->hash(), *(*src)->hash());
}

TEST(SnapshotTest, EveryTruncationIsDetectedAsTruncation) {
  const std::string bytes = slurp(small_snapshot(fresh_dir()));
  ASSERT_GT(bytes.size(), 1000u);
  ASSERT_EQ(classify(bytes), SnapshotProblem::kNone);
  for (std::size_t n = 0; n < bytes.size(); ++n) {
    ASSERT_EQ(classify(bytes.substr(0, n)), SnapshotProblem::kTruncated) << "length " << n;
  }
}

TEST(SnapshotTest, EveryFlippedBitIsDetectedAsCorruption) {
  const std::string bytes = slurp(small_snapshot(fresh_dir()));
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    for (int bit = 0; bit < 8; ++bit) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      ASSERT_EQ(classify(bad), SnapshotProblem::kCorrupt) << "byte " << i << " bit " << bit;
    }
  }
  // Bytes after the trailer, and a whole block removed, are corruption too.
  EXPECT_EQ(classify(bytes + "x"), SnapshotProblem::kCorrupt);
}

TEST(SnapshotTest, AMissingOrRepeatedBlockIsCorruption) {
  const std::string bytes = slurp(small_snapshot(fresh_dir()));
  // Walk the blocks: 16-byte prologue, then 16-byte headers with the payload length at +4.
  std::vector<std::pair<std::size_t, std::size_t>> blocks;  // offset, total size
  for (std::size_t off = kSnapshotPrologueBytes; off < bytes.size();) {
    std::uint32_t len = 0;
    std::memcpy(&len, bytes.data() + off + 4, 4);
    blocks.emplace_back(off, kSnapshotBlockHeaderBytes + len);
    off += kSnapshotBlockHeaderBytes + len;
  }
  ASSERT_GT(blocks.size(), 5u);
  for (std::size_t b = 1; b + 1 < blocks.size(); ++b) {  // every records block
    const auto [off, size] = blocks[b];
    std::string removed = bytes.substr(0, off) + bytes.substr(off + size);
    EXPECT_EQ(classify(removed), SnapshotProblem::kCorrupt) << "block " << b << " removed";
    std::string repeated = bytes.substr(0, off + size) + bytes.substr(off);
    EXPECT_EQ(classify(repeated), SnapshotProblem::kCorrupt) << "block " << b << " repeated";
  }
}

// A block's records reach the caller only once the block's own checksum passed: damage in a
// block must not hand the caller a changed record, even though the trailer would catch it
// later (an installer or a dump would already have used it).
TEST(SnapshotTest, RecordsOfADamagedBlockNeverReachTheCaller) {
  const std::string bytes = slurp(small_snapshot(fresh_dir()));
  std::vector<KeyValue> clean;
  {
    Result<SnapshotReader> r = SnapshotReader::from_bytes(bytes);
    ASSERT_TRUE(r.ok());
    ASSERT_TRUE(r->for_each([&](const KeyValue& kv) {
                   clean.push_back(kv);
                   return Status();
                 }).ok());
  }
  std::size_t damaged = 0;
  for (std::size_t off = kSnapshotPrologueBytes; off < bytes.size();) {
    std::uint32_t len = 0;
    std::memcpy(&len, bytes.data() + off + 4, 4);
    const std::size_t end = off + kSnapshotBlockHeaderBytes + len;
    if (bytes[off] == static_cast<char>(SnapshotBlockType::kRecords)) {
      // The block's last byte is its last record's version: flipping its low bit keeps the
      // record well formed but different.
      std::string bad = bytes;
      bad[end - 1] ^= 1;
      Result<SnapshotReader> r = SnapshotReader::from_bytes(bad);
      ASSERT_TRUE(r.ok());
      std::size_t seen = 0;
      Status s = r->for_each([&](const KeyValue& kv) {
        EXPECT_EQ(kv, clean[seen]) << "a damaged record reached the caller";
        ++seen;
        return Status();
      });
      EXPECT_EQ(r->problem(), SnapshotProblem::kCorrupt) << s.to_string();
      ++damaged;
    }
    off = end;
  }
  EXPECT_GT(damaged, 5u);
}

TEST(SnapshotTest, UnknownVersionIsUnsupportedNotCorrupt) {
  std::string bytes = slurp(small_snapshot(fresh_dir()));
  bytes[8] = 3;  // version 3 (unknown), with a matching prologue checksum
  const std::uint32_t crc = crc32c::mask(crc32c::value(bytes.data(), 12));
  for (int i = 0; i < 4; ++i) bytes[12 + i] = static_cast<char>((crc >> (8 * i)) & 0xff);
  SnapshotProblem p;
  Result<SnapshotReader> r = SnapshotReader::from_bytes(bytes, &p);
  EXPECT_EQ(p, SnapshotProblem::kUnsupported);
  EXPECT_EQ(r.status().code(), Code::kFailedPrecondition);
  EXPECT_NE(r.status().message().find("version 3"), std::string::npos);
  EXPECT_EQ(classify("not a snapshot at all, just text"), SnapshotProblem::kCorrupt);
}

TEST(SnapshotTest, WriterRefusesMalformedRecords) {
  const std::string dir = fresh_dir();
  auto w = SnapshotWriter::create(dir + "/w.snap", header(100));
  ASSERT_TRUE(w.ok());
  ASSERT_TRUE((*w)->add({"b", "v", 1, 2, 2}).ok());
  const KeyValue bad[] = {
      {"a", "v", 1, 1, 1}, {"b", "v", 1, 1, 1}, {"", "v", 1, 1, 1},
      {"c", "v", 0, 1, 1}, {"c", "v", 3, 2, 1}, {"c", "v", 1, 101, 1},
      {"c", "v", 1, 2, 3}, {"c", "v", 1, 2, 0}, {std::string(kMaxKeyBytes + 1, 'z'), "v", 1, 1, 1}};
  for (const KeyValue& kv : bad) {
    EXPECT_EQ((*w)->add(kv).code(), Code::kInvalidArgument) << kv.key.substr(0, 8);
  }
  ASSERT_TRUE((*w)->add({"c", "v", 1, 100, 100}).ok());
  Result<SnapshotInfo> info = (*w)->finish();
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->record_count, 2u);
  // A writer dropped before finish leaves nothing behind.
  {
    auto dropped = SnapshotWriter::create(dir + "/dropped.snap", header(100));
    ASSERT_TRUE(dropped.ok());
    ASSERT_TRUE((*dropped)->add({"a", "v", 1, 1, 1}).ok());
  }
  EXPECT_FALSE(std::filesystem::exists(dir + "/dropped.snap"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/dropped.snap.tmp"));
}

TEST(SnapshotTest, ChunkedTransferReassemblesAndIsAdopted) {
  const std::string dir = fresh_dir();
  auto src = StateMachine::open(dir + "/src");
  ASSERT_TRUE(src.ok());
  put_and_flush(**src, 2000, 2, [](std::uint64_t i) { return std::string(i % 300, 'x'); });
  Result<SnapshotInfo> info = (*src)->save_snapshot(dir + "/snap");
  ASSERT_TRUE(info.ok());
  Result<SnapshotReader> r = SnapshotReader::open(info->path);
  ASSERT_TRUE(r.ok());
  // The follower's side: chunks of varying sizes into a temporary file in its snap dir.
  const std::string follower_snap = dir + "/follower/snap";
  std::filesystem::create_directories(follower_snap);
  const std::string part = follower_snap + "/incoming.snap.tmp";
  std::string assembled;
  std::mt19937_64 rng(3);
  for (std::uint64_t off = 0; off < r->size();) {
    Result<std::string> chunk = r->read_chunk(off, 1 + rng() % 70000);
    ASSERT_TRUE(chunk.ok());
    ASSERT_FALSE(chunk->empty());
    assembled += *chunk;
    off += chunk->size();
  }
  EXPECT_EQ(r->read_chunk(r->size(), 10)->size(), 0u);
  EXPECT_EQ(r->read_chunk(r->size() + 1, 10).status().code(), Code::kInvalidArgument);
  // A transfer cut short is refused and left in place.
  spit(part, assembled.substr(0, assembled.size() / 2));
  EXPECT_EQ(adopt_snapshot(part, follower_snap).status().code(), Code::kCorruption);
  EXPECT_TRUE(std::filesystem::exists(part));
  spit(part, assembled);
  Result<SnapshotInfo> adopted = adopt_snapshot(part, follower_snap);
  ASSERT_TRUE(adopted.ok()) << adopted.status().to_string();
  EXPECT_EQ(adopted->path, follower_snap + "/" + snapshot_file_name(2000, 2));
  EXPECT_FALSE(std::filesystem::exists(part));
  auto dst = StateMachine::open(dir + "/follower/state");
  ASSERT_TRUE((*dst)->install_snapshot(adopted->path).ok());
  EXPECT_EQ(*(*dst)->hash(), *(*src)->hash());
}

TEST(SnapshotTest, DirectoryKeepsTheNewestAndIgnoresOtherFiles) {
  const std::string dir = fresh_dir();
  for (std::uint64_t idx : {100, 300, 200, 500, 400}) {
    auto w = SnapshotWriter::create(dir + "/" + snapshot_file_name(idx, 2), header(idx));
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->finish().ok());
  }
  spit(dir + "/README", "not a snapshot");
  spit(dir + "/" + snapshot_file_name(600, 2) + ".tmp", "an interrupted write");
  Result<std::vector<SnapshotFile>> files = list_snapshots(dir);
  ASSERT_TRUE(files.ok());
  ASSERT_EQ(files->size(), 5u);
  EXPECT_EQ((*files)[0].index, 500u);
  EXPECT_EQ((*files)[4].index, 100u);
  ASSERT_TRUE(prune_snapshots(dir, 3).ok());
  files = list_snapshots(dir);
  ASSERT_EQ(files->size(), 3u);
  EXPECT_EQ((*files)[2].index, 300u);
  EXPECT_EQ(prune_snapshots(dir, 0).code(), Code::kInvalidArgument);
  ASSERT_TRUE(remove_temp_snapshots(dir).ok());
  EXPECT_FALSE(std::filesystem::exists(dir + "/" + snapshot_file_name(600, 2) + ".tmp"));
  EXPECT_TRUE(std::filesystem::exists(dir + "/README"));

  // save_snapshot keeps the newest N of its own.
  auto sm = StateMachine::open(dir + "/state");
  ASSERT_TRUE(sm.ok());
  const std::string snap = dir + "/snap";
  for (std::uint64_t i = 1; i <= 5; ++i) {
    (*sm)->apply_noop(i, 1);
    ASSERT_TRUE((*sm)->flush_all().ok());
    ASSERT_TRUE((*sm)->save_snapshot(snap, 2).ok());
  }
  files = list_snapshots(snap);
  ASSERT_EQ(files->size(), 2u);
  EXPECT_EQ((*files)[0].index, 5u);
  EXPECT_EQ((*files)[1].index, 4u);
}

TEST(SnapshotTest, InstallRefusesBadAndStaleSnapshotsAndKeepsTheState) {
  const std::string dir = fresh_dir();
  auto sm = StateMachine::open(dir + "/state");
  ASSERT_TRUE(sm.ok());
  for (std::uint64_t i = 1; i <= 600; ++i) {
    ASSERT_TRUE(
        (*sm)
            ->apply(i, 1,
                    {.op = CommandOp::kPut, .key = "k" + std::to_string(i % 50), .value = "v"})
            .ok());
  }
  ASSERT_TRUE((*sm)->flush_all().ok());
  const std::uint64_t before = *(*sm)->hash();
  const std::string path = small_snapshot(dir);  // index 500 < 600
  EXPECT_EQ((*sm)->install_snapshot(path).code(), Code::kFailedPrecondition);
  std::string bytes = slurp(path);
  bytes[bytes.size() - 30] ^= 1;  // in the trailer: found only after every record was loaded
  spit(dir + "/bad.snap", bytes);
  SnapshotProblem p;
  Result<StagedInstall> staged = (*sm)->stage_install(dir + "/bad.snap", std::nullopt, {}, &p);
  EXPECT_EQ(staged.status().code(), Code::kCorruption);
  EXPECT_EQ(p, SnapshotProblem::kCorrupt);
  spit(dir + "/short.snap", slurp(path).substr(0, 700));
  staged = (*sm)->stage_install(dir + "/short.snap", std::nullopt, {}, &p);
  EXPECT_EQ(p, SnapshotProblem::kTruncated);
  EXPECT_EQ((*sm)->stage_install(dir + "/missing.snap").status().code(), Code::kNotFound);
  EXPECT_EQ(*(*sm)->hash(), before);
  std::vector<std::string> entries;
  for (const auto& e : std::filesystem::directory_iterator(dir + "/state")) {
    entries.push_back(e.path().filename().string());
  }
  std::sort(entries.begin(), entries.end());
  EXPECT_EQ(entries, (std::vector<std::string>{"CURRENT", "gen-0000000001"}));
}

// A snapshot written on a worker while the owning thread applies and flushes is consistent
// at the durable index its read transaction saw.
// save_snapshot of a state whose snapshot (same index and term) is already in the directory
// keeps that file, but only once it reads back whole: one damaged at rest since it was written
// (before a restart, or installed from a leader) is written again, never handed to a follower.
TEST(SnapshotTest, SaveRewritesAnExistingSnapshotOfTheSameStateThatIsDamaged) {
  const std::string dir = fresh_dir();
  auto sm = StateMachine::open(dir + "/state");
  ASSERT_TRUE(sm.ok());
  put_and_flush(**sm, 200, 1, [](std::uint64_t) { return std::string(100, 'v'); });
  const std::string snap = dir + "/snap";
  Result<SnapshotInfo> first = (*sm)->save_snapshot(snap);
  ASSERT_TRUE(first.ok()) << first.status().to_string();
  const std::string good = slurp(first->path);

  // Intact: kept as it is (the same bytes, creation time included).
  Result<SnapshotInfo> again = (*sm)->save_snapshot(snap);
  ASSERT_TRUE(again.ok());
  EXPECT_EQ(again->path, first->path);
  EXPECT_EQ(slurp(first->path), good);

  // One bit flipped in the middle of the records: written again, and whole.
  std::string bad = good;
  bad[bad.size() / 2] = static_cast<char>(bad[bad.size() / 2] ^ 0x10);
  spit(first->path, bad);
  ASSERT_NE(verify_snapshot(first->path)->problem, SnapshotProblem::kNone);
  Result<SnapshotInfo> remade = (*sm)->save_snapshot(snap);
  ASSERT_TRUE(remade.ok()) << remade.status().to_string();
  EXPECT_EQ(remade->path, first->path);
  EXPECT_EQ(remade->header.index, 200u);
  Result<VerifyReport> rep = verify_snapshot(remade->path);
  ASSERT_TRUE(rep.ok());
  EXPECT_EQ(rep->problem, SnapshotProblem::kNone) << rep->message;
  EXPECT_EQ(rep->info.record_count, 200u);

  // Cut short: the same.
  spit(first->path, good.substr(0, good.size() - 7));
  remade = (*sm)->save_snapshot(snap);
  ASSERT_TRUE(remade.ok()) << remade.status().to_string();
  EXPECT_EQ(verify_snapshot(remade->path)->problem, SnapshotProblem::kNone);
}

// A transfer reads one descriptor from its first chunk to its last: the file written again
// under the same name in between (as save_snapshot does with a damaged one), or removed, does
// not change the bytes of the transfer in progress; a transfer that starts again (offset 0)
// reads the file that is there now.
TEST(SnapshotTest, ATransferReadsTheFileItStartedWithToItsLastChunk) {
  const std::string dir = fresh_dir();
  const std::string path = dir + "/0000000000000001-0000000000000001.snap";
  const std::string old_bytes(3000, 'a');
  const std::string new_bytes(3000, 'b');
  spit(path, old_bytes);
  SnapshotChunkSource src;
  Result<std::string> c = src.read(7, path, 0, 1000, 3000);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, old_bytes.substr(0, 1000));
  // Another receiver's transfer of the same file, one chunk in.
  ASSERT_TRUE(src.read(8, path, 0, 1000, 3000).ok());
  EXPECT_EQ(src.open_transfers(), 2u);

  // The file is replaced by rename, as a rewrite does.
  spit(path + ".tmp", new_bytes);
  std::filesystem::rename(path + ".tmp", path);
  c = src.read(7, path, 1000, 1000, 3000);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, old_bytes.substr(1000, 1000));
  // The last chunk ends the transfer (its descriptor is closed).
  c = src.read(7, path, 2000, 1000, 3000);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, old_bytes.substr(2000, 1000));
  EXPECT_EQ(src.open_transfers(), 1u);

  // Receiver 8 starts again: the new file.
  c = src.read(8, path, 0, 1000, 3000);
  ASSERT_TRUE(c.ok());
  EXPECT_EQ(*c, new_bytes.substr(0, 1000));
  // Removed (pruned) under it: the transfer still reads what it opened.
  std::filesystem::remove(path);
  c = src.read(8, path, 1000, 1000, 3000);
  ASSERT_TRUE(c.ok()) << c.status().to_string();
  EXPECT_EQ(*c, new_bytes.substr(1000, 1000));
  // A read past the end is an error and ends the transfer; a new one finds no file.
  EXPECT_FALSE(src.read(8, path, 2500, 1000, 3000).ok());
  EXPECT_EQ(src.open_transfers(), 0u);
  EXPECT_EQ(src.read(8, path, 0, 1000, 3000).status().code(), Code::kNotFound);
}

// A stopping member cancels a snapshot in progress (write_snapshot's and save_snapshot's
// `cancel`): it ends with kShuttingDown and leaves neither the file nor its temporary.
TEST(SnapshotTest, ACancelledSnapshotEndsEarlyAndLeavesNoFile) {
  const std::string dir = fresh_dir();
  auto sm = StateMachine::open(dir + "/state");
  ASSERT_TRUE(sm.ok());
  put_and_flush(**sm, 5000, 1, [](std::uint64_t) { return std::string("v"); });
  std::atomic<bool> cancel{true};
  Result<SnapshotInfo> w = (*sm)->write_snapshot(dir + "/one.snap", {}, &cancel);
  EXPECT_EQ(w.status().code(), Code::kShuttingDown) << w.status().to_string();
  EXPECT_FALSE(std::filesystem::exists(dir + "/one.snap"));
  EXPECT_FALSE(std::filesystem::exists(dir + "/one.snap.tmp"));
  Result<SnapshotInfo> s = (*sm)->save_snapshot(dir + "/snap", 2, {}, &cancel);
  EXPECT_EQ(s.status().code(), Code::kShuttingDown) << s.status().to_string();
  EXPECT_TRUE(list_snapshots(dir + "/snap")->empty());
  EXPECT_TRUE(std::filesystem::is_empty(dir + "/snap"));
  cancel = false;
  s = (*sm)->save_snapshot(dir + "/snap", 2, {}, &cancel);
  ASSERT_TRUE(s.ok()) << s.status().to_string();
  EXPECT_EQ(s->record_count, 5000u);
}

TEST(SnapshotTest, SnapshotOnAWorkerIsConsistentWhileTheStateMoves) {
  const std::string dir = fresh_dir();
  auto sm = StateMachine::open(dir + "/state");
  ASSERT_TRUE(sm.ok());
  Model model;
  StepGenerator gen(8);
  std::map<std::uint64_t, std::uint64_t> hash_at;  // durable index -> model hash
  std::uint64_t i = 0;
  for (; i < 500; ++i) apply_both(**sm, model, i + 1, 1, gen.next(model));
  ASSERT_TRUE((*sm)->flush_all().ok());
  hash_at[i] = model.hash();
  auto snapshot =
      std::async(std::launch::async, [&] { return (*sm)->write_snapshot(dir + "/moving.snap"); });
  for (int round = 0; round < 20; ++round) {
    for (int n = 0; n < 25; ++n, ++i) apply_both(**sm, model, i + 1, 1, gen.next(model));
    ASSERT_TRUE((*sm)->flush_all().ok());
    hash_at[i] = model.hash();
  }
  Result<SnapshotInfo> info = snapshot.get();
  ASSERT_TRUE(info.ok()) << info.status().to_string();
  ASSERT_EQ(hash_at.count(info->header.index), 1u) << info->header.index;
  auto dst = StateMachine::open(dir + "/dst");
  ASSERT_TRUE((*dst)->install_snapshot(dir + "/moving.snap").ok());
  EXPECT_EQ(*(*dst)->hash(), hash_at[info->header.index]);
}

}  // namespace
}  // namespace kvc::storage
