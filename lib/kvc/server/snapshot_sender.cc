// Snapshots sent out: chunks of the newest snapshot file to followers that need one (the
// leader), and whole snapshots streamed to clients (kvc-ctl snapshot save), no faster than the
// receiver reads.
//
// Invariants kept here:
// - A snapshot sent is of LMDB's durable state (flushed first), and carries its checksum.
// - A transfer to a follower reads one open descriptor from its first chunk to its last
//   (storage::SnapshotChunkSource): a file pruned or written again meanwhile does not change it.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>

#include "kvc/client/client.h"
#include "kvc/raft/conf_change.h"
#include "kvc/server/engine_impl.h"
#include "kvc/server/engine_util.h"
#include "kvc/storage/command.h"
#include "kvc/storage/consistency.h"
#include "kvc/storage/fs.h"
#include "kvc/storage/state_mutation.h"

namespace kvc::server {

void Engine::Impl::make_snapshot_for_followers() {
  if (snapshotting_ || damaged_) return;
  if (state_->durable_index() < state_->applied_index()) {
    // A snapshot is of LMDB's durable state: flush first, so it covers what is applied (a
    // follower repairing a damaged state needs one at or above its own applied index).
    snapshot_after_flush_ = true;
    maybe_flush(true);
    return;
  }
  snapshotting_ = true;
  const std::string dir = data_dir_->snap_dir();
  const std::size_t keep = options_.snapshots_kept;
  scan_->post([this, dir, keep] {
    const auto t0 = std::chrono::steady_clock::now();
    Result<storage::SnapshotInfo> info = state_->save_snapshot(dir, keep, {}, &cancel_scans_);
    if (info.ok()) {
      metrics_->snapshot_create.observe_since(t0);
      metrics_->snapshots_created.inc();
    }
    post_loop([this, info] {
      snapshotting_ = false;
      resume_install();
      if (!info.ok()) {
        if (info.status().code() == Code::kShuttingDown) {
          spdlog::info("snapshot for lagging members cancelled reason={}", info.status().message());
        } else if (!damage(info.status(), "making a snapshot for a lagging member")) {
          spdlog::error("cannot make a snapshot for a lagging member error={}",
                        info.status().message());
        }
        return;
      }
      const raft::SnapshotMeta meta = info->header.meta();
      snapshot_files_[meta.index] = info->path;
      while (snapshot_files_.size() > std::max<std::size_t>(options_.snapshots_kept, 1)) {
        snapshot_files_.erase(snapshot_files_.begin());
      }
      spdlog::info("snapshot ready for lagging members index={} bytes={} path={}", meta.index,
                   info->size_bytes, info->path);
      node_->snapshot_available(meta, info->size_bytes);
      process_ready();
    });
  });
}

Status Engine::Impl::fill_snapshot_chunk(raft::Message& m) {
  auto it = snapshot_files_.find(m.snapshot.index);
  if (it == snapshot_files_.end()) {
    snapshot_chunks_.end(m.to);
    return Status::not_found("no snapshot file at index " + std::to_string(m.snapshot.index));
  }
  Result<std::string> chunk =
      snapshot_chunks_.read(m.to, it->second, m.snapshot_offset, m.chunk_length, m.snapshot_size);
  if (!chunk.ok()) return chunk.status();
  m.chunk = std::move(*chunk);
  return Status();
}

// kvc-ctl snapshot save: flush, write a snapshot file on the scan thread once that flush is
// done, then stream it to the client in chunks, no faster than the client reads.
void Engine::Impl::start_snapshot_save(std::uint64_t conn, std::uint64_t id) {
  maybe_flush(true);
  const std::string path =
      data_dir_->snap_dir() + "/send-" + std::to_string(conn) + "-" + std::to_string(id) + ".tmp";
  // Through the flush thread's queue, so the snapshot starts after the flush above is done.
  ++snapshot_saves_;
  flush_->post([this, conn, id, path] {
    scan_->post([this, conn, id, path] {
      Result<storage::SnapshotInfo> info = state_->write_snapshot(path, {}, &cancel_scans_);
      post_loop([this, conn, id, path, info] {
        --snapshot_saves_;
        resume_install();
        if (!info.ok()) {
          wire::Response r = base_response(id);
          set_error(r, info.status());
          if (damage(info.status(), "writing a snapshot for a client")) {
            r.code = Code::kUnavailable;
            r.message = damaged_message() + " (" + info.status().message() + ")";
          }
          r.done = true;
          send_to_client(conn, r, true);
          return;
        }
        Result<storage::UniqueFd> fd = storage::open_file(path, O_RDONLY);
        // Unlinked at once: the open descriptor keeps the data until the transfer ends.
        (void)storage::remove_file(path);
        if (!fd.ok() || clients_.count(conn) == 0) {
          if (fd.ok()) return;
          wire::Response r = base_response(id);
          set_error(r, fd.status());
          r.done = true;
          send_to_client(conn, r, true);
          return;
        }
        Transfer t;
        t.conn = conn;
        t.id = id;
        t.path = path;
        t.fd = std::move(*fd);
        t.size = info->size_bytes;
        t.index = info->header.index;
        snapshot_sends_[++watcher_seq_] = std::move(t);
        spdlog::info("streaming a snapshot to a client index={} bytes={}", info->header.index,
                     info->size_bytes);
        pump_transfers();
      });
    });
  });
}

void Engine::Impl::pump_transfers() {
  constexpr std::uint64_t kChunk = 1u << 20;
  constexpr std::size_t kMaxQueued = 4u << 20;
  for (auto it = snapshot_sends_.begin(); it != snapshot_sends_.end();) {
    Transfer& t = it->second;
    auto c = clients_.find(t.conn);
    if (c == clients_.end()) {
      it = snapshot_sends_.erase(it);
      continue;
    }
    bool finished = false;
    while (c->second.conn->output_bytes() < kMaxQueued) {
      const std::uint64_t n = std::min(kChunk, t.size - t.offset);
      Result<std::string> chunk = storage::pread_up_to(t.fd.get(), n, t.offset, t.path);
      wire::Response r = base_response(t.id);
      r.revision = t.index;
      r.count = t.size;
      if (!chunk.ok() || chunk->size() != n) {
        r.code = Code::kIOError;
        r.message =
            chunk.ok() ? "snapshot file shrank while it was sent" : chunk.status().message();
        r.done = true;
        send_to_client(t.conn, r, true);
        finished = true;
        break;
      }
      r.data = std::move(*chunk);
      t.offset += n;
      r.done = t.offset == t.size;
      send_to_client(t.conn, r, r.done);
      if (r.done) {
        finished = true;
        break;
      }
    }
    it = finished ? snapshot_sends_.erase(it) : std::next(it);
  }
}

}  // namespace kvc::server
