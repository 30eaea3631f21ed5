#include "kvc/wire/msgpack_io.h"

#include <memory>
#include <msgpack/unpack.hpp>
#include <vector>

namespace kvc::wire {
namespace {

Status type_error(const char* what, const char* want) {
  return Status::corruption(std::string(what) + ": expected " + want);
}

// Cleared zones kept for reuse by this thread. A zone's clear() keeps its first chunk and
// frees those a large message added, so a pooled zone holds 8 KiB.
// Under AddressSanitizer none is kept, so an object used after its Parsed is gone is reported
// (in a reused zone it would read another message's bytes unnoticed).
#if defined(__SANITIZE_ADDRESS__)
constexpr std::size_t kPooledZones = 0;
#else
constexpr std::size_t kPooledZones = 16;
#endif

// True once this thread's pool is destroyed at thread exit: a parse or a zone returned after
// that (by an object destroyed later in the exit) does without the pool.
thread_local bool zone_pool_gone = false;

struct ZonePool {
  ~ZonePool() { zone_pool_gone = true; }
  std::vector<std::unique_ptr<msgpack::zone>> free;
};

ZonePool& zone_pool() {
  thread_local ZonePool pool;
  return pool;
}

PooledZone take_zone() {
  if (zone_pool_gone) return PooledZone(new msgpack::zone());
  ZonePool& pool = zone_pool();
  if (pool.free.empty()) return PooledZone(new msgpack::zone());
  PooledZone z(pool.free.back().release());
  pool.free.pop_back();
  return z;
}

}  // namespace

void ZoneReturn::operator()(msgpack::zone* z) const noexcept {
  std::unique_ptr<msgpack::zone> owned(z);
  if (zone_pool_gone) return;
  ZonePool& pool = zone_pool();
  if (pool.free.size() >= kPooledZones) return;
  try {
    owned->clear();
    pool.free.push_back(std::move(owned));
  } catch (...) {  // push_back's allocation: the zone is freed instead
  }
}

Result<Parsed> parse(std::string_view payload) {
  // Every array element and map entry takes at least one byte of input, so limits derived from
  // the input size bound the allocations without rejecting any well-formed message.
  const std::size_t n = payload.size();
  const msgpack::unpack_limit limit(/*array=*/n, /*map=*/n / 2 + 1, /*str=*/n, /*bin=*/n,
                                    /*ext=*/0, /*depth=*/16);
  try {
    std::size_t offset = 0;
    Parsed p{.object = {}, .zone = take_zone()};
    p.object =
        msgpack::unpack(*p.zone, payload.data(), payload.size(), offset, nullptr, nullptr, limit);
    if (offset != payload.size()) {
      return Status::corruption("msgpack: " + std::to_string(payload.size() - offset) +
                                " trailing bytes after the message");
    }
    return p;
  } catch (const msgpack::unpack_error& e) {
    return Status::corruption(std::string("msgpack: ") + e.what());
  } catch (const std::bad_alloc&) {
    return Status::resource_exhausted("msgpack: out of memory decoding message");
  } catch (const std::exception& e) {
    return Status::corruption(std::string("msgpack: ") + e.what());
  }
}

Status get_uint(const msgpack::object& o, std::uint64_t* v, const char* what) {
  if (o.type != msgpack::type::POSITIVE_INTEGER) return type_error(what, "unsigned integer");
  *v = o.via.u64;
  return Status();
}

Status get_bool(const msgpack::object& o, bool* v, const char* what) {
  if (o.type != msgpack::type::BOOLEAN) return type_error(what, "boolean");
  *v = o.via.boolean;
  return Status();
}

Status get_bytes(const msgpack::object& o, std::string* v, const char* what) {
  if (o.type == msgpack::type::BIN) {
    v->assign(o.via.bin.ptr, o.via.bin.size);
  } else if (o.type == msgpack::type::STR) {
    v->assign(o.via.str.ptr, o.via.str.size);
  } else {
    return type_error(what, "bytes");
  }
  return Status();
}

Status get_array(const msgpack::object& o, const msgpack::object** items, std::uint32_t* n,
                 const char* what) {
  if (o.type != msgpack::type::ARRAY) return type_error(what, "array");
  *items = o.via.array.ptr;
  *n = o.via.array.size;
  return Status();
}

Status get_map(const msgpack::object& o, const msgpack::object_kv** items, std::uint32_t* n,
               const char* what) {
  if (o.type != msgpack::type::MAP) return type_error(what, "map");
  *items = o.via.map.ptr;
  *n = o.via.map.size;
  return Status();
}

}  // namespace kvc::wire
