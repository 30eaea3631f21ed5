#include "data_dir_faults.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <set>
#include <sstream>

namespace kvc::test {
namespace {

namespace fs = std::filesystem;

std::uint64_t le(const std::string& d, std::size_t at, int bytes) {
  std::uint64_t v = 0;
  for (int i = bytes - 1; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(d[at + i]);
  return v;
}

// The files of `dir` whose names end in `suffix`, sorted by name (kvc names them so that name
// order is log or index order).
std::vector<std::string> files_ending(const std::string& dir, const std::string& suffix) {
  std::vector<std::string> out;
  std::error_code ec;
  for (const fs::directory_entry& e : fs::directory_iterator(dir, ec)) {
    const std::string name = e.path().filename().string();
    if (name.size() > suffix.size() &&
        name.compare(name.size() - suffix.size(), suffix.size(), suffix) == 0) {
      out.push_back(e.path().string());
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

std::string printable(std::string_view s) {
  std::string out;
  for (const char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (u >= 0x20 && u < 0x7f) {
      out.push_back(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", u);
      out += buf;
    }
  }
  return out;
}

// ---- WAL ----

struct WalRecord {
  ByteRange range;
  int type = 0;
};

// Every whole record of every segment, in log order (kvc-wal(5), SEGMENTS and RECORDS).
std::vector<WalRecord> scan_wal_records(const std::string& data_dir) {
  std::vector<WalRecord> out;
  for (const std::string& path : files_ending(data_dir + "/wal", ".wal")) {
    const std::string d = read_whole(path);
    const std::string name = fs::path(path).filename().string();
    std::size_t off = 40;
    while (off + 12 <= d.size()) {
      const std::uint64_t len = le(d, off + 4, 4);
      const int type = static_cast<unsigned char>(d[off + 8]);
      if (type < 1 || type > 3 || off + 12 + len > d.size()) break;  // zeros: the end
      WalRecord r;
      r.type = type;
      r.range.path = path;
      r.range.offset = off;
      r.range.length = 12 + len;
      const char* kind = type == 1 ? "entry" : type == 2 ? "hard state" : "snapshot marker";
      r.range.what = "segment " + name + " offset " + std::to_string(off) + ": " + kind;
      if (type != 2 && len >= 8) r.range.what += " index " + std::to_string(le(d, off + 12, 8));
      out.push_back(std::move(r));
      off += 12 + len;
    }
  }
  return out;
}

// ---- LMDB (lmdb.h and mdb.c: page header, nodes, meta) ----

constexpr std::size_t kPageHeader = 16;       // mp_pgno, mp_pad, mp_flags, mp_lower, mp_upper
constexpr std::size_t kMetaBytes = 16 + 136;  // page header + MDB_meta
constexpr std::uint16_t kPageBranch = 0x01, kPageLeaf = 0x02;
constexpr std::uint16_t kNodeBigData = 0x01, kNodeSubData = 0x02;
constexpr std::uint64_t kInvalidPage = ~std::uint64_t{0};

struct LmdbNode {
  std::size_t at = 0;  // file offset of the node
  std::size_t key_at = 0, key_size = 0;
  std::size_t data_at = 0, data_size = 0;
  std::uint16_t flags = 0;
  std::uint64_t child = 0;  // branch nodes
};

struct LmdbPage {
  std::uint64_t pgno = 0;
  std::string db;  // "main", "kv", "events", "meta"
  bool branch = false;
  std::vector<LmdbNode> nodes;
};

class LmdbFile {
 public:
  explicit LmdbFile(const std::string& path) : path_(path), d_(read_whole(path)) {
    if (d_.size() < 2 * 4096) return;
    const std::uint64_t psize = le(d_, 16 + 24, 4);  // mm_dbs[FREE_DBI].md_pad is the page size
    page_ = psize >= 512 && psize <= 65536 && (psize & (psize - 1)) == 0 ? psize : 4096;
    live_meta_ = le(d_, 144, 8) >= le(d_, page_ + 144, 8) ? 0 : 1;
    const std::uint64_t main_root = le(d_, live_meta_ * page_ + 128, 8);
    if (main_root != kInvalidPage) walk(main_root, "main", 0);
  }

  const std::string& path() const { return path_; }
  const std::string& bytes() const { return d_; }
  std::size_t page_size() const { return page_; }
  int live_meta() const { return live_meta_; }
  const std::vector<LmdbPage>& live_pages() const { return pages_; }

 private:
  void walk(std::uint64_t pgno, const std::string& db, int depth) {
    if (depth > 16 || pgno < 2 || (pgno + 1) * page_ > d_.size() || !seen_.insert(pgno).second) {
      return;
    }
    const std::size_t base = pgno * page_;
    const auto flags = static_cast<std::uint16_t>(le(d_, base + 10, 2));
    const std::size_t lower = le(d_, base + 12, 2);
    if ((flags & (kPageBranch | kPageLeaf)) == 0 || lower < kPageHeader || lower > page_) return;
    LmdbPage page;
    page.pgno = pgno;
    page.db = db;
    page.branch = (flags & kPageBranch) != 0;
    for (std::size_t i = 0; i < (lower - kPageHeader) / 2; ++i) {
      const std::size_t ptr = le(d_, base + kPageHeader + 2 * i, 2);
      if (ptr + 8 > page_) continue;
      LmdbNode n;
      n.at = base + ptr;
      const std::uint64_t lo = le(d_, n.at, 2), hi = le(d_, n.at + 2, 2);
      n.flags = static_cast<std::uint16_t>(le(d_, n.at + 4, 2));
      n.key_size = le(d_, n.at + 6, 2);
      n.key_at = n.at + 8;
      if (page.branch) {
        n.child = lo | (hi << 16) | (std::uint64_t{n.flags} << 32);
      } else {
        n.data_at = n.key_at + n.key_size;
        n.data_size = (n.flags & kNodeBigData) != 0 ? 8 : lo | (hi << 16);
      }
      if (n.key_at + n.key_size + (page.branch ? 0 : n.data_size) > base + page_) continue;
      page.nodes.push_back(n);
    }
    pages_.push_back(page);
    for (const LmdbNode& n : page.nodes) {
      if (page.branch) {
        walk(n.child, db, depth + 1);
      } else if (db == "main" && (n.flags & kNodeSubData) != 0 && n.data_size >= 48) {
        const std::uint64_t root = le(d_, n.data_at + 40, 8);  // MDB_db.md_root
        if (root != kInvalidPage) walk(root, d_.substr(n.key_at, n.key_size), depth + 1);
      }
    }
  }

  std::string path_;
  std::string d_;
  std::size_t page_ = 4096;
  int live_meta_ = 0;
  std::set<std::uint64_t> seen_;
  std::vector<LmdbPage> pages_;
};

}  // namespace

std::string read_whole(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string state_file(const std::string& data_dir) {
  std::string gen = read_whole(data_dir + "/state/CURRENT");
  while (!gen.empty() && gen.back() == '\n') gen.pop_back();
  return data_dir + "/state/" + gen + "/data.mdb";
}

int flip_bit_in_every_copy(const std::string& path, const std::string& needle) {
  std::string data = read_whole(path);
  int n = 0;
  for (std::size_t at = data.find(needle); at != std::string::npos;
       at = data.find(needle, at + needle.size())) {
    data[at + needle.size() / 2] ^= 0x10;
    ++n;
  }
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(data.data(), static_cast<std::streamsize>(data.size()));
  return out.good() ? n : -1;
}

Status flip_bit(const std::string& path, std::uint64_t offset, int bit) {
  std::fstream f(path, std::ios::binary | std::ios::in | std::ios::out);
  if (!f) return Status::io_error("cannot open " + path);
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  if (!f.get(c)) return Status::io_error(path + ": no byte at offset " + std::to_string(offset));
  c = static_cast<char>(c ^ (1 << bit));
  f.seekp(static_cast<std::streamoff>(offset));
  f.put(c);
  f.flush();
  if (!f) return Status::io_error("cannot write " + path);
  return Status();
}

wire::StatusInfo status_of(const ProcessCluster& cluster, int i) {
  return cluster.status(i).status;
}

std::string log_of(const ProcessCluster& cluster, int i) { return read_whole(cluster.log_path(i)); }

Status rebuild_member(ProcessCluster& cluster, int i, const std::string& aside_suffix) {
  const MemberSpec spec = cluster.spec(i);
  RunResult rm = cluster.ctl_run({"member", "remove", spec.name});
  if (rm.status != 0) return Status::internal("kvc-ctl member remove: " + rm.out + rm.err);
  std::error_code ec;
  if (fs::exists(spec.data_dir)) fs::rename(spec.data_dir, spec.data_dir + aside_suffix, ec);
  if (ec) return Status::io_error("moving " + spec.data_dir + " aside: " + ec.message());
  RunResult add = cluster.ctl_run({"member", "add", spec.name, cluster.peer_addr(i)});
  if (add.status != 0) return Status::internal("kvc-ctl member add: " + add.out + add.err);
  const std::string initial = printed_initial_cluster(add.out);
  if (initial.empty()) return Status::internal("member add printed no command line: " + add.out);
  cluster.mutable_spec(i).join_initial_cluster = initial;
  return Status();
}

std::vector<ByteRange> wal_segment_headers(const std::string& data_dir) {
  std::vector<ByteRange> out;
  for (const std::string& path : files_ending(data_dir + "/wal", ".wal")) {
    out.push_back({path, 0, 40, "segment " + fs::path(path).filename().string() + " header"});
  }
  return out;
}

std::vector<ByteRange> wal_records(const std::string& data_dir, WalRecordType type) {
  std::vector<WalRecord> all = scan_wal_records(data_dir);
  if (!all.empty()) all.pop_back();  // the log's last record: a flip there is a torn tail
  std::vector<ByteRange> out;
  for (const WalRecord& r : all) {
    if (r.type == static_cast<int>(type)) out.push_back(r.range);
  }
  return out;
}

std::vector<ByteRange> wal_last_record(const std::string& data_dir) {
  std::vector<WalRecord> all = scan_wal_records(data_dir);
  if (all.empty()) return {};
  ByteRange r = all.back().range;
  r.what += " (the log's last record)";
  return {r};
}

std::vector<ByteRange> snapshot_parts(const std::string& data_dir, SnapPart part) {
  std::vector<ByteRange> out;
  for (const std::string& path : files_ending(data_dir + "/snap", ".snap")) {
    const std::string d = read_whole(path);
    const std::string name = fs::path(path).filename().string();
    if (part == SnapPart::kPrologue) {
      if (d.size() >= 16) out.push_back({path, 0, 16, "snapshot " + name + " prologue"});
      continue;
    }
    std::size_t off = 16;
    while (off + 16 <= d.size()) {
      const int type = static_cast<unsigned char>(d[off]);
      const std::uint64_t len = le(d, off + 4, 4);
      if (off + 16 + len > d.size()) break;
      const bool trailer = type == 3;
      if (trailer == (part == SnapPart::kTrailer)) {
        const char* kind = type == 1 ? "meta block" : type == 2 ? "records block" : "trailer";
        out.push_back({path, off, 16 + len,
                       "snapshot " + name + " " + kind + " at offset " + std::to_string(off)});
      }
      if (trailer) break;
      off += 16 + len;
    }
  }
  return out;
}

std::vector<ByteRange> lmdb_ranges(const std::string& data_dir, LmdbPart part,
                                   const std::string& needle) {
  const LmdbFile f(state_file(data_dir));
  std::vector<ByteRange> out;
  const std::string& d = f.bytes();
  if (part == LmdbPart::kMeta) {
    for (int p = 0; p < 2 && d.size() >= 2 * f.page_size(); ++p) {
      out.push_back({f.path(), p * f.page_size(), kMetaBytes,
                     "meta page " + std::to_string(p) +
                         (p == f.live_meta() ? " (the newest)" : " (the previous)")});
    }
    return out;
  }
  for (const LmdbPage& page : f.live_pages()) {
    const std::string where =
        page.db + " " + (page.branch ? "branch" : "leaf") + " page " + std::to_string(page.pgno);
    for (std::size_t i = 0; i < page.nodes.size(); ++i) {
      const LmdbNode& n = page.nodes[i];
      const std::string key = printable(d.substr(n.key_at, n.key_size));
      switch (part) {
        case LmdbPart::kValue: {
          if (page.branch || (page.db != "kv" && page.db != "events") ||
              (n.flags & kNodeBigData) != 0) {
            break;
          }
          const std::size_t at = d.substr(n.data_at, n.data_size).find(needle);
          if (needle.empty() || at == std::string::npos) break;
          out.push_back({f.path(), n.data_at + at, n.data_size - at,
                         "value bytes of " + page.db + " record \"" + key + "\" in " + where});
          break;
        }
        case LmdbPart::kLeafKey:
          if (!page.branch && page.db == "kv" && n.key_size > 0) {
            out.push_back({f.path(), n.key_at, n.key_size, "key \"" + key + "\" in " + where});
          }
          break;
        case LmdbPart::kBranchKey:
          if (page.branch && (page.db == "kv" || page.db == "events") && n.key_size > 0) {
            out.push_back(
                {f.path(), n.key_at, n.key_size, "separator \"" + key + "\" in " + where});
          }
          break;
        case LmdbPart::kCatalogKey:
          if (!page.branch && page.db == "main" && (n.flags & kNodeSubData) != 0) {
            out.push_back({f.path(), n.key_at, n.key_size, "database name \"" + key + "\""});
          }
          break;
        case LmdbPart::kMeta:
          break;
      }
    }
  }
  return out;
}

std::vector<ByteRange> whole_file(const std::string& data_dir, const std::string& name) {
  const std::string path = data_dir + "/" + name;
  std::error_code ec;
  const std::uintmax_t size = fs::file_size(path, ec);
  if (ec || size == 0) return {};
  return {{path, 0, size, name}};
}

}  // namespace kvc::test
