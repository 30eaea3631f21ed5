#include "kvc/wire/msgpack_io.h"

#include <msgpack/unpack.hpp>

namespace kvc::wire {
namespace {

Status type_error(const char* what, const char* want) {
  return Status::corruption(std::string(what) + ": expected " + want);
}

}  // namespace

Result<Parsed> parse(std::string_view payload) {
  // Every array element and map entry takes at least one byte of input, so limits derived from
  // the input size bound the allocations without rejecting any well-formed message.
  const std::size_t n = payload.size();
  const msgpack::unpack_limit limit(/*array=*/n, /*map=*/n / 2 + 1, /*str=*/n, /*bin=*/n,
                                    /*ext=*/0, /*depth=*/16);
  try {
    std::size_t offset = 0;
    Parsed p{msgpack::unpack(payload.data(), payload.size(), offset, nullptr, nullptr, limit)};
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
