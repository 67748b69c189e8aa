// A stored response and the facts needed to decide whether it may be served.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <initializer_list>
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

struct header_view {
    std::string_view name;
    std::string_view value;
};

// End-to-end response header fields kept in their wire form, "Name: value\r\n" per
// field in arrival order. A hit writes them with one copy (no re-serialisation), and
// all of an entry's fields cost one allocation instead of two strings each.
// Invariant: every name is an RFC 9110 token and no value holds CR, LF or NUL, so the
// block can never split a response; add() enforces it.
class header_block {
public:
    header_block() = default;
    header_block(std::initializer_list<header_field> fields);

    // Appends a field. Throws std::invalid_argument if !valid(name, value).
    void add(std::string_view name, std::string_view value);
    static bool valid(std::string_view name, std::string_view value);
    // Gives back the growth slack of the appends; call once the block is complete
    // (an entry holds it for its whole life).
    void shrink_to_fit() { wire_.shrink_to_fit(); }

    std::size_t size() const { return count_; }
    bool empty() const { return count_ == 0; }
    // The serialised fields, each ending in CRLF (no final blank line). Fields are read
    // by name through http/message.hpp (every line of a field), never one by one here.
    std::string_view wire() const { return wire_; }

    class iterator {
    public:
        using value_type = header_view;
        using difference_type = std::ptrdiff_t;
        iterator() = default;
        explicit iterator(std::string_view rest) : rest_(rest) { parse(); }
        const header_view& operator*() const { return current_; }
        const header_view* operator->() const { return &current_; }
        iterator& operator++() {
            rest_.remove_prefix(line_);
            parse();
            return *this;
        }
        iterator operator++(int) {
            auto old = *this;
            ++*this;
            return old;
        }
        bool operator==(const iterator& o) const { return rest_.data() == o.rest_.data() && rest_.size() == o.rest_.size(); }

    private:
        void parse();
        std::string_view rest_;
        header_view current_;
        std::size_t line_ = 0;
    };
    iterator begin() const { return iterator(wire_); }
    iterator end() const { return iterator(std::string_view(wire_).substr(wire_.size())); }

    bool operator==(const header_block& o) const { return wire_ == o.wire_; }

private:
    std::string wire_;
    std::uint32_t count_ = 0;
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
// libstdc++/x86-64: the entry object inside its make_shared block (128 + 16), the
// memory tier's node, which holds the LRU, hash-chain and expiry-heap links and is
// followed by the key bytes (72), a hash bucket slot and an expiry-heap slot, each
// counted twice because the bucket array and heap vector grow by doubling (32), and
// ~16 bytes of allocator header for each of the five allocations: entry block, node,
// body, header wire string and stamp vector (80). memory_tier.cpp static_asserts that
// its own node layout still fits.
inline constexpr std::size_t entry_bookkeeping_bytes = 328;

struct entry {
    unsigned status = 200;
    header_block headers;  // end-to-end headers only, as received from the origin
    std::string body;
    // When the origin produced the response, as far as cachecar can tell: the time it
    // was received less its corrected initial age (RFC 9111 4.2.3). Age on a hit is
    // now - stored_at.
    clock::time_point stored_at{};
    clock::time_point expires_at{};    // fresh until then
    clock::time_point retain_until{};  // kept (for stale_if_error) until then; >= expires_at
    std::vector<category_stamp> stamps;  // includes all_category

    bool fresh_at(clock::time_point now) const { return now < expires_at; }
    // Bytes this entry costs in a tier, counting the key, headers, body and stamps:
    // key + body + the headers' wire size + each stamp's category +
    // sizeof(category_stamp) + entry_bookkeeping_bytes. An estimate of
    // heap use (allocator slack and string capacity beyond size are not seen).
    std::size_t footprint(std::string_view key) const;
};

using entry_ptr = std::shared_ptr<const entry>;

}  // namespace cachecar::cache
