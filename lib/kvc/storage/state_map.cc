// Mapping the LMDB file into the process ahead of reads (StateMachine::map_in, state.h).
//
// LMDB reads through a read-only shared mapping of data.mdb. Writes go through pwrite (no
// MDB_WRITEMAP), so a page a flush wrote, or any page after a start, a failover or a snapshot
// install, is not in this process's page tables until something reads it: that first read
// takes a page fault. With millions of keys a random read finds a new page almost every time,
// and on a virtual machine a fault costs tens of microseconds (docs/performance.md). map_in
// asks the kernel to fill the page tables for the whole file in bounded steps
// (MADV_POPULATE_READ, Linux 5.14), on a worker thread, so the faults are taken there once
// instead of by the reads that serve clients. Pages not in the page cache are read from disk
// on the worker's time. Nothing here changes what is stored or read.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cinttypes>
#include <cstdio>
#include <cstring>

#include "kvc/storage/state_internal.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22  // Linux 5.14 (include/uapi/asm-generic/mman-common.h)
#endif

namespace kvc::storage {

using namespace state_internal;  // the state machine's shared internals (state_internal.h)

namespace {

// The start of the mapping that holds `inside` (a pointer into a file mapping), from
// /proc/self/maps: the start of its VMA less the VMA's file offset. nullptr when not found.
char* mapping_base(const void* inside) {
  std::FILE* f = std::fopen("/proc/self/maps", "re");
  if (f == nullptr) return nullptr;
  const auto p = reinterpret_cast<std::uintptr_t>(inside);
  char* base = nullptr;
  char line[512];
  while (std::fgets(line, sizeof line, f) != nullptr) {
    std::uintptr_t start = 0, end = 0;
    unsigned long long offset = 0;
    char perms[8];
    if (std::sscanf(line, "%" SCNxPTR "-%" SCNxPTR " %7s %llx", &start, &end, perms, &offset) !=
        4) {
      continue;
    }
    if (p >= start && p < end && offset <= start) {
      base = reinterpret_cast<char*>(start - static_cast<std::uintptr_t>(offset));
      break;
    }
  }
  std::fclose(f);
  return base;
}

}  // namespace

void StateMachine::find_map() {
  map_base_ = nullptr;
  mapped_in_.store(0, std::memory_order_relaxed);
  Txn txn;
  if (txn.begin(env_, MDB_RDONLY) != 0) return;
  Cursor c;
  MDB_val k, v;
  // Any record read in a read-only transaction points into the map: the meta database always
  // has one.
  if (c.open(txn.get(), dbs_->meta) != 0 || mdb_cursor_get(c.get(), &k, &v, MDB_FIRST) != 0) {
    return;
  }
  map_base_ = mapping_base(v.mv_data);
}

std::uint64_t StateMachine::map_file_bytes() const {
  mdb_filehandle_t fd = -1;
  struct stat st {};
  if (env_ == nullptr || mdb_env_get_fd(env_, &fd) != 0 || ::fstat(fd, &st) != 0) return 0;
  const auto page = static_cast<std::uint64_t>(::sysconf(_SC_PAGESIZE));
  return static_cast<std::uint64_t>(st.st_size) / page * page;
}

bool StateMachine::map_in_pending() const {
  return map_base_ != nullptr && !map_in_off_.load(std::memory_order_relaxed) &&
         mapped_in_.load(std::memory_order_relaxed) < map_file_bytes();
}

std::uint64_t StateMachine::map_in(std::uint64_t max_bytes) {
  BusyGuard busy(busy_);
  if (map_base_ == nullptr || map_in_off_.load(std::memory_order_relaxed)) return 0;
  const std::uint64_t from = mapped_in_.load(std::memory_order_relaxed);
  const std::uint64_t end = map_file_bytes();
  if (from >= end) return 0;
  const std::uint64_t n = std::min(max_bytes, end - from);
  // The file only grows while this environment is open (LMDB never shrinks it), so the range
  // is inside both the file and the mapping.
  int rc = 0;
  do {
    rc = ::madvise(map_base_ + from, n, MADV_POPULATE_READ);
  } while (rc != 0 && errno == EINTR);
  if (rc != 0) {
    // EINVAL: a kernel older than 5.14. Anything else (ENOMEM, EFAULT, EIO): the mapping is
    // not what we took it for, or the disk failed a read; the reads that serve clients find
    // out for themselves. Either way, stop trying for this environment.
    spdlog::info("not mapping the state file in ahead of reads path={} error={}", state_dir_,
                 std::strerror(errno));
    map_in_off_.store(true, std::memory_order_relaxed);
    return 0;
  }
  mapped_in_.store(from + n, std::memory_order_relaxed);
  return n;
}

}  // namespace kvc::storage
