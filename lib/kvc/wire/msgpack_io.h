// Small, checked helpers over msgpack-c for kvc's wire messages: a writer that packs into a
// std::string (so a frame is built in place), and a parser plus typed accessors that turn every
// malformed input into a Status instead of an exception or a crash. The parser bounds msgpack-c's
// allocations by the input size (a 10-byte payload cannot declare a 4-billion-element array).
// This is the single place where msgpack-c's exceptions are caught. A message's fields are
// listed once, as a field list that both encodes and decodes it (see "Field lists" below), so
// its encoder and decoder cannot drift apart. Thread-compatible.
#pragma once

#include <cstdint>
#include <memory>
// Only what the helpers use: <msgpack.hpp> also brings every adaptor (msgpack/type.hpp), which
// doubled the parse time of each of the ~100 files that include this header.
#include <msgpack/object.hpp>
#include <msgpack/pack.hpp>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

#include "kvc/common/coding.h"
#include "kvc/common/status.h"

namespace kvc::wire {

// msgpack-c's packer writes through any type with write(const char*, size_t).
class StringSink {
 public:
  explicit StringSink(std::string& out) : out_(&out) {}
  void write(const char* data, std::size_t n) { out_->append(data, n); }
  std::string& out() const { return *out_; }

 private:
  std::string* out_;
};

class Writer {
 public:
  explicit Writer(std::string& out) : sink_(out), pk_(sink_) {}
  // The string written to (for a nested MapWriter).
  std::string& out() const { return sink_.out(); }
  void array(std::uint32_t n) { pk_.pack_array(n); }
  void map(std::uint32_t n) { pk_.pack_map(n); }
  void uint(std::uint64_t v) { pk_.pack_uint64(v); }
  void boolean(bool v) { v ? pk_.pack_true() : pk_.pack_false(); }
  void nil() { pk_.pack_nil(); }
  // Arbitrary bytes (msgpack bin).
  void bin(std::string_view b) {
    pk_.pack_bin(static_cast<std::uint32_t>(b.size()));
    pk_.pack_bin_body(b.data(), static_cast<std::uint32_t>(b.size()));
  }
  // Human text (msgpack str).
  void str(std::string_view s) {
    pk_.pack_str(static_cast<std::uint32_t>(s.size()));
    pk_.pack_str_body(s.data(), static_cast<std::uint32_t>(s.size()));
  }

 private:
  StringSink sink_;
  msgpack::packer<StringSink> pk_;
};

// Writes a msgpack map whose size is known only at the end: a map32 header is reserved and
// patched by finish(). Fields equal to their default are simply not written.
class MapWriter {
 public:
  explicit MapWriter(std::string& out) : out_(&out), w_(out), header_(out.size()) {
    out.append("\xdf\0\0\0\0", 5);
  }
  // Starts field `id`; write its value with the returned writer next.
  Writer& field(std::uint32_t id) {
    w_.uint(id);
    ++count_;
    return w_;
  }
  void uint(std::uint32_t id, std::uint64_t v) {
    if (v != 0) field(id).uint(v);
  }
  void boolean(std::uint32_t id, bool v) {
    if (v) field(id).boolean(true);
  }
  void bin(std::uint32_t id, std::string_view v) {
    if (!v.empty()) field(id).bin(v);
  }
  void str(std::uint32_t id, std::string_view v) {
    if (!v.empty()) field(id).str(v);
  }
  void finish() { store_u32_be(out_->data() + header_ + 1, count_); }

 private:
  std::string* out_;
  Writer w_;
  std::size_t header_;
  std::uint32_t count_ = 0;
};

// Returns a zone to its thread's pool of cleared zones (or frees it when the pool is full).
struct ZoneReturn {
  void operator()(msgpack::zone* z) const noexcept;
};
using PooledZone = std::unique_ptr<msgpack::zone, ZoneReturn>;

// A parsed payload. Objects, strings and bins live in `zone` (copied from the input), so the
// input may be released once parse() returns. Zones are reused, per thread: a new zone costs
// two allocations, one of them its 8 KiB first chunk, above malloc's per-thread cache, and
// every frame (each request, response and Raft message) is parsed into one.
struct Parsed {
  msgpack::object object;
  PooledZone zone;
  const msgpack::object& root() const { return object; }
};

// Parses exactly one msgpack value that spans all of `payload`.
Result<Parsed> parse(std::string_view payload);

// Typed access; `what` names the field in the error ("request.key").
Status get_uint(const msgpack::object& o, std::uint64_t* v, const char* what);
Status get_bool(const msgpack::object& o, bool* v, const char* what);
// Accepts bin or str.
Status get_bytes(const msgpack::object& o, std::string* v, const char* what);
Status get_array(const msgpack::object& o, const msgpack::object** items, std::uint32_t* n,
                 const char* what);
Status get_map(const msgpack::object& o, const msgpack::object_kv** items, std::uint32_t* n,
               const char* what);

template <typename T>
Status get_uint_as(const msgpack::object& o, T* v, const char* what) {
  std::uint64_t u = 0;
  KVC_RETURN_IF_ERROR(get_uint(o, &u, what));
  if (u > static_cast<std::uint64_t>(static_cast<T>(~T{0}))) {
    return Status::corruption(std::string(what) + ": value " + std::to_string(u) + " out of range");
  }
  *v = static_cast<T>(u);
  return Status();
}

// ---- Field lists ----
// A message's fields are listed once, in wire order, as a generic lambda over an Io and the
// message (const when encoding):
//   constexpr auto hello_fields = [](auto& io, auto& m) {
//     io.uint(hello_f::kVersion, "hello.version", m.protocol_version);
//     io.str(hello_f::kName, "hello.name", m.name);
//     io.field(hello_f::kRole, "hello.role", m.role, RoleCodec{});  // any other value type
//   };
// The same list serves a map (ids are map keys; a field equal to its default is not written;
// unknown keys are skipped, as a newer peer may send them) and a positional array (ids are the
// positions 0, 1, ..., in order; every field is written; elements past the end of a shorter
// array, from an older peer, keep their defaults). `what` names the field in errors.
//
// A codec reads and writes one value: is_default(v), write(Writer&, v), and
// read(const msgpack::object&, T*, what) -> Status.

// Unsigned integers and enums (as their value), range-checked on read.
struct UintCodec {
  template <typename T>
  static bool is_default(const T& v) {
    return v == T{};
  }
  template <typename T>
  static void write(Writer& w, const T& v) {
    w.uint(static_cast<std::uint64_t>(v));
  }
  template <typename T>
  static Status read(const msgpack::object& o, T* v, const char* what) {
    if constexpr (std::is_enum_v<T>) {
      std::underlying_type_t<T> u{};
      KVC_RETURN_IF_ERROR(get_uint_as(o, &u, what));
      *v = static_cast<T>(u);
      return Status();
    } else {
      return get_uint_as(o, v, what);
    }
  }
};

struct BoolCodec {
  static bool is_default(bool v) { return !v; }
  static void write(Writer& w, bool v) { w.boolean(v); }
  static Status read(const msgpack::object& o, bool* v, const char* what) {
    return get_bool(o, v, what);
  }
};

// Bytes written as msgpack bin (BinCodec) or str (StrCodec); either is accepted on read.
template <bool kText>
struct BytesCodec {
  static bool is_default(const std::string& v) { return v.empty(); }
  static void write(Writer& w, const std::string& v) { kText ? w.str(v) : w.bin(v); }
  static Status read(const msgpack::object& o, std::string* v, const char* what) {
    return get_bytes(o, v, what);
  }
};
using BinCodec = BytesCodec<false>;
using StrCodec = BytesCodec<true>;

// An enum whose values outside [kMin, kMax] are corruption ("<what>: unknown value N").
template <auto kMin, auto kMax>
struct EnumCodec : UintCodec {
  using E = decltype(kMin);
  static Status read(const msgpack::object& o, E* v, const char* what) {
    std::uint64_t u = 0;
    KVC_RETURN_IF_ERROR(get_uint(o, &u, what));
    if (u < static_cast<std::uint64_t>(kMin) || u > static_cast<std::uint64_t>(kMax)) {
      return Status::corruption(std::string(what) + ": unknown value " + std::to_string(u));
    }
    *v = static_cast<E>(u);
    return Status();
  }
};

// A std::vector written as a msgpack array, each element with codec `Elem`.
template <typename Elem>
struct ListCodec {
  template <typename T>
  static bool is_default(const std::vector<T>& v) {
    return v.empty();
  }
  template <typename T>
  static void write(Writer& w, const std::vector<T>& v) {
    w.array(static_cast<std::uint32_t>(v.size()));
    for (const T& e : v) Elem::write(w, e);
  }
  template <typename T>
  static Status read(const msgpack::object& o, std::vector<T>* v, const char* what) {
    const msgpack::object* items = nullptr;
    std::uint32_t n = 0;
    KVC_RETURN_IF_ERROR(get_array(o, &items, &n, what));
    v->resize(n);
    for (std::uint32_t i = 0; i < n; ++i) KVC_RETURN_IF_ERROR(Elem::read(items[i], &(*v)[i], what));
    return Status();
  }
};

// The typed shorthands every Io offers, in terms of its field().
template <typename Io>
class FieldIo {
 public:
  template <typename T>
  void uint(std::uint32_t id, const char* what, T& v) {
    self().field(id, what, v, UintCodec{});
  }
  template <typename T>
  void boolean(std::uint32_t id, const char* what, T& v) {
    self().field(id, what, v, BoolCodec{});
  }
  template <typename T>
  void bin(std::uint32_t id, const char* what, T& v) {
    self().field(id, what, v, BinCodec{});
  }
  template <typename T>
  void str(std::uint32_t id, const char* what, T& v) {
    self().field(id, what, v, StrCodec{});
  }

 private:
  Io& self() { return static_cast<Io&>(*this); }
};

// Writes the fields that differ from their defaults into a map.
class MapFieldWriter : public FieldIo<MapFieldWriter> {
 public:
  explicit MapFieldWriter(std::string& out) : map_(out) {}
  template <typename T, typename Codec>
  void field(std::uint32_t id, const char*, const T& v, Codec) {
    if (!Codec::is_default(v)) Codec::write(map_.field(id), v);
  }
  void finish() { map_.finish(); }

 private:
  MapWriter map_;
};

// Decodes one map entry (key `id`) into the field listed with that id, if any.
class MapFieldReader : public FieldIo<MapFieldReader> {
 public:
  MapFieldReader(std::uint64_t id, const msgpack::object& value) : id_(id), value_(&value) {}
  template <typename T, typename Codec>
  void field(std::uint32_t id, const char* what, T& v, Codec) {
    if (id == id_) status_ = Codec::read(*value_, &v, what);
  }
  const Status& status() const { return status_; }

 private:
  std::uint64_t id_;
  const msgpack::object* value_;
  Status status_;
};

// Counts the fields of a list (the length of its array).
class FieldCounter : public FieldIo<FieldCounter> {
 public:
  template <typename T, typename Codec>
  void field(std::uint32_t, const char*, const T&, Codec) {
    ++count_;
  }
  std::uint32_t count() const { return count_; }

 private:
  std::uint32_t count_ = 0;
};

// Writes every field, in order, as the elements of an array.
class ArrayFieldWriter : public FieldIo<ArrayFieldWriter> {
 public:
  explicit ArrayFieldWriter(Writer& w) : w_(&w) {}
  template <typename T, typename Codec>
  void field(std::uint32_t, const char*, const T& v, Codec) {
    Codec::write(*w_, v);
  }

 private:
  Writer* w_;
};

// Decodes element `id` of an array into its field; fields past the array's end are left alone.
class ArrayFieldReader : public FieldIo<ArrayFieldReader> {
 public:
  ArrayFieldReader(const msgpack::object* items, std::uint32_t n) : items_(items), n_(n) {}
  template <typename T, typename Codec>
  void field(std::uint32_t id, const char* what, T& v, Codec) {
    if (status_.ok() && id < n_) status_ = Codec::read(items_[id], &v, what);
  }
  const Status& status() const { return status_; }

 private:
  const msgpack::object* items_;
  std::uint32_t n_;
  Status status_;
};

// Writes `m` as a map at the writer's position.
template <typename M, typename Fields>
void encode_map(Writer& w, const M& m, const Fields& fields) {
  MapFieldWriter io(w.out());
  fields(io, m);
  io.finish();
}

// Decodes a map into `m`: each key is dispatched to the field listed with that id.
template <typename M, typename Fields>
Status decode_map(const msgpack::object& body, const char* what, M* m, const Fields& fields) {
  const msgpack::object_kv* items = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_map(body, &items, &n, what));
  for (std::uint32_t i = 0; i < n; ++i) {
    std::uint64_t id = 0;
    KVC_RETURN_IF_ERROR(get_uint(items[i].key, &id, what));
    MapFieldReader io(id, items[i].val);
    fields(io, *m);
    KVC_RETURN_IF_ERROR(io.status());
  }
  return Status();
}

// Writes `m` as an array of all its fields.
template <typename M, typename Fields>
void encode_array(Writer& w, const M& m, const Fields& fields) {
  FieldCounter counter;
  fields(counter, m);
  w.array(counter.count());
  ArrayFieldWriter io(w);
  fields(io, m);
}

// Decodes an array of at least `required` elements into `m`; elements past the listed fields
// (a newer peer's) are ignored.
template <typename M, typename Fields>
Status decode_array(const msgpack::object& body, const char* what, std::uint32_t required, M* m,
                    const Fields& fields) {
  const msgpack::object* items = nullptr;
  std::uint32_t n = 0;
  KVC_RETURN_IF_ERROR(get_array(body, &items, &n, what));
  if (n < required) {
    return Status::corruption(std::string(what) + ": expected " + std::to_string(required) +
                              " fields, got " + std::to_string(n));
  }
  ArrayFieldReader io(items, n);
  fields(io, *m);
  return io.status();
}

// A nested positional record (its field list `Fields`, at least `kRequired` elements) as the
// value of a field.
template <typename Fields, std::uint32_t kRequired>
struct ArrayCodec {
  template <typename T>
  static bool is_default(const T&) {
    return false;
  }
  template <typename T>
  static void write(Writer& w, const T& v) {
    encode_array(w, v, Fields{});
  }
  template <typename T>
  static Status read(const msgpack::object& o, T* v, const char* what) {
    return decode_array(o, what, kRequired, v, Fields{});
  }
};

}  // namespace kvc::wire
