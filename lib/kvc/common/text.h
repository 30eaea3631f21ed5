// Text helpers shared by the tools' output: UTF-8 validation, base64, JSON strings and the one
// JSON form of keys and values (kvc(7), "JSON OUTPUT"), member ids as hex, terminal display
// width and truncation for tables, the nearest spelling of a mistyped name, and durations as
// flags spell them ("500ms", "5s", "2m"). Pure functions; thread-safe. Part of kvc_base, so the
// Raft core may use them.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "kvc/common/status.h"

namespace kvc {

bool is_valid_utf8(std::string_view s);
// Length (1..4) of the well-formed UTF-8 sequence starting at s[i] (i < s.size()), or 0 when
// there is none: no overlong forms, no surrogates, nothing above U+10FFFF.
std::size_t utf8_sequence_length(std::string_view s, std::size_t i);
std::string base64_encode(std::string_view bytes);
Result<std::string> base64_decode(std::string_view text);

// Escapes `s` for use inside a JSON string (quotes, backslashes, control characters; invalid
// UTF-8 bytes become \u00XX of the byte, so the output is always valid JSON).
std::string json_escape(std::string_view s);

// How backslash_escape treats the bytes besides backslash and newline, which it always escapes
// (as \\ and \n).
struct EscapeOptions {
  bool quote = true;           // " as \"
  bool tab_cr = true;          // tab and carriage return as \t and \r
  bool hex_controls = true;    // the other bytes below 0x20, and 0x7f, as \xNN
  bool hex_non_ascii = false;  // bytes from 0x80 as \xNN (else kept: UTF-8 text stays readable)
};
// The one backslash escaper for text shown inside double quotes (tools, checker explanations)
// and for Prometheus's label values ({.tab_cr = false, .hex_controls = false}) and HELP text
// (the same, and {.quote = false}). Bytes not named above are kept as they are.
std::string backslash_escape(std::string_view bytes, EscapeOptions options = {});

// The one JSON form of a key, a value or any other byte string, shared by kvc-ctl, kvc-snap,
// kvc-wal and the HTTP API: `"NAME":"text"` when the bytes are valid UTF-8 (jq reads them as
// they are), else `"NAME_base64":"..."` holding the exact bytes. Exactly one of the two appears.
// Returns the member without a separating comma.
std::string json_bytes_member(std::string_view name, std::string_view bytes);

// A member id as 16 lowercase hex digits, as identity files, logs, tools and JSON show it
// (64-bit ids do not survive a JSON number: jq rounds them to doubles). Also any other 64-bit
// value shown in hex (state hashes, file-name fields).
std::string id_hex(std::uint64_t id);
// A 32-bit value (a CRC) as 8 lowercase hex digits.
std::string u32_hex(std::uint32_t v);
// 1 to 16 lowercase hex digits (what id_hex and file names write) as a number, else nullopt.
std::optional<std::uint64_t> parse_hex_u64(std::string_view s);

// Bytes as lowercase hex, two digits a byte.
std::string hex_encode(std::string_view bytes);
// The inverse of hex_encode; either case is accepted. Errors: "odd number of hex digits",
// "bad hex digit".
Result<std::string> hex_decode(std::string_view hex);
// The value (0..15) of one hex digit of either case, or -1.
int hex_digit_value(char c);

// A size for people: 1536 -> "1.5 KiB", 999 -> "999 B"; up to TiB.
std::string human_bytes(std::uint64_t n);

// Columns a terminal uses for `text` (UTF-8): East Asian wide and fullwidth characters count
// 2, combining marks and zero-width characters 0, other printable characters 1. Bytes that
// are not valid UTF-8 and control characters count 1 each (callers escape them first).
std::size_t display_width(std::string_view text);
// A byte string as a terminal cell: valid UTF-8 text as is, except that control characters,
// DEL and backslash are escaped (\t, \n, \r, \\, \xNN), as is every byte that is not part of
// valid UTF-8 (\xNN), so binary shows as escaped text and one cell stays on one line. When the
// result would be wider than `max_columns` display columns, it is cut to fit, ending in "…".
// Stops reading `bytes` once the cell is full, so a huge value costs no more than a short one.
std::string terminal_cell(std::string_view bytes, std::size_t max_columns = SIZE_MAX);

// Levenshtein distance (insertions, deletions, substitutions), for "did you mean" hints.
std::size_t edit_distance(std::string_view a, std::string_view b);
// The candidate closest to `word` when it is close enough to be a likely typo (distance at
// most 2, or a third of the word's length for long names), else "".
std::string nearest_name(std::string_view word, const std::vector<std::string>& candidates);

// "250ms", "5s", "1.5s", "2m", "1h"; a bare number means seconds. Returns milliseconds.
Result<std::uint64_t> parse_duration_ms(std::string_view text);

}  // namespace kvc
