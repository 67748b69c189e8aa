// A stored response and the facts needed to decide whether it may be served.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::cache {

using clock = std::chrono::system_clock;

struct header_field {
    std::string name;
    std::string value;
};

// The generation a category had when the fill that produced an entry *started*.
// An entry is valid only while every stamped category still has that generation.
struct category_stamp {
    std::string category;
    std::uint64_t generation = 0;
};

// The category every entry implicitly belongs to; bumping it purges everything.
inline constexpr std::string_view all_category = "*";

// Fixed bytes charged per entry on top of its variable-size parts, so that many tiny
// entries cannot hold far more memory than the byte bound says. Measured on
// libstdc++/x86-64: the entry object inside its make_shared block (128), the memory
// tier's LRU list node with the key string (88), hash-map node + bucket slot (48),
// expiry-index node (56), and ~16 bytes of allocator header for each of those four
// allocations and the two vector buffers (96). memory_tier.cpp static_asserts that
// its own node layout still fits.
inline constexpr std::size_t entry_bookkeeping_bytes = 416;

struct entry {
    unsigned status = 200;
    std::vector<header_field> headers;  // end-to-end headers only, as received from the origin
    std::string body;
    clock::time_point stored_at{};
    clock::time_point expires_at{};    // fresh until then
    clock::time_point retain_until{};  // kept (for stale_if_error) until then; >= expires_at
    std::vector<category_stamp> stamps;  // includes all_category

    bool fresh_at(clock::time_point now) const { return now < expires_at; }
    // Bytes this entry costs in a tier, counting the key, headers, body and stamps:
    // key + body + each header's name + value + sizeof(header_field) + each stamp's
    // category + sizeof(category_stamp) + entry_bookkeeping_bytes. An estimate of
    // heap use (allocator slack and string capacity beyond size are not seen).
    std::size_t footprint(std::string_view key) const;
};

using entry_ptr = std::shared_ptr<const entry>;

}  // namespace cachecar::cache
