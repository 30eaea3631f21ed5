// Small, checked helpers over msgpack-c for kvc's wire messages: a writer that packs into a
// std::string (so a frame is built in place), and a parser plus typed accessors that turn every
// malformed input into a Status instead of an exception or a crash. The parser bounds msgpack-c's
// allocations by the input size (a 10-byte payload cannot declare a 4-billion-element array).
// This is the single place where msgpack-c's exceptions are caught. Thread-compatible.
#pragma once

#include <cstdint>
#include <msgpack.hpp>
#include <string>
#include <string_view>

#include "kvc/common/coding.h"
#include "kvc/common/status.h"

namespace kvc::wire {

// msgpack-c's packer writes through any type with write(const char*, size_t).
class StringSink {
 public:
  explicit StringSink(std::string& out) : out_(&out) {}
  void write(const char* data, std::size_t n) { out_->append(data, n); }

 private:
  std::string* out_;
};

class Writer {
 public:
  explicit Writer(std::string& out) : sink_(out), pk_(sink_) {}
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

// A parsed payload. Objects, strings and bins live in `handle`'s zone (copied from the input),
// so the input may be released once parse() returns.
struct Parsed {
  msgpack::object_handle handle;
  const msgpack::object& root() const { return handle.get(); }
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

}  // namespace kvc::wire
