// The byte encoding of an entry for tiers that store bytes (Redis, MongoDB).
//
// Format v2 (all integers little-endian):
//   magic "CCE" | version u8 = 2 | total length u32 (of everything after this field)
//   status u16 | stored_at i64 | expires_at i64 | retain_until i64  (system_clock ticks since epoch)
//   header count u32, then per header: name (u32 len + bytes), value (u32 len + bytes)
//   stamp count u32, then per stamp: category (u32 len + bytes), generation u64
//   body (u32 len + bytes)
//   checksum u32 (CRC-32, as zlib's crc32(), of everything before it)
// encode() writes v2. decode() also reads v1, written by earlier releases: the same
// layout with version 1 and an FNV-1a 32 checksum (too slow for large bodies).
// decode() rejects anything that is not exactly this: wrong magic or version, a
// length that disagrees with the data, counts that overrun, trailing bytes, a bad
// checksum. A rejected value is a corrupt entry, never served.
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/net.hpp>

#include <optional>
#include <string>
#include <string_view>

namespace cachecar::cache {

std::string encode_entry(const entry& e);

enum class decode_error {
    truncated = 1,    // shorter than its headers or its declared length
    bad_magic,        // not a cachecar entry at all
    bad_version,      // written by an incompatible cachecar
    bad_length,       // declared length disagrees with the bytes present
    bad_checksum,     // bytes changed after writing
    malformed,        // counts or lengths overrun the value, or trailing garbage
};
std::string_view to_string(decode_error e);
// decode_error as an error_code, so tiers can return it from lookup().
const boost::system::error_category& decode_category();
error_code make_error_code(decode_error e);

struct decode_result {
    entry_ptr value;                     // set on success
    std::optional<decode_error> error;   // set on failure
};
decode_result decode_entry(std::string_view bytes);

}  // namespace cachecar::cache

namespace boost::system {
template <>
struct is_error_code_enum<cachecar::cache::decode_error> : std::true_type {};
}  // namespace boost::system
