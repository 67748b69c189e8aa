// The storage tier interface. Every tier (memory, Redis, MongoDB) implements it and
// passes the shared conformance suite (tests/unit/cache/tier_conformance.hpp).
//
// Contract:
//  - A miss is a value (a null entry_ptr), not an error. Errors are real failures
//    (tier down, timeout, corrupt value); the caller skips the tier and counts it.
//  - Coroutines complete on the caller's executor. Implementations must not block an
//    I/O thread.
//  - lookup() never returns an entry past its retain_until. Generation checks are the
//    caller's job (cache::generation_store), so tiers stay ignorant of purges.
//  - Dropping (cancelling) the awaiting coroutine abandons the operation.
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/net.hpp>

#include <cstdint>
#include <string>

namespace cachecar::cache {

enum class tier_state { up, down };

struct tier_usage {
    std::uint64_t entries = 0;
    std::uint64_t bytes = 0;
};

class tier {
public:
    virtual ~tier() = default;

    virtual config::tier_kind kind() const = 0;

    virtual net::awaitable<result<entry_ptr>> lookup(std::string key) = 0;
    // Stores (replacing any previous entry) until e->retain_until. An entry the tier
    // declines to hold (e.g. larger than it accepts) yields an error -- the memory
    // tier uses errc::file_too_large -- so the caller counts it as "not stored"; any
    // previous entry under the key is dropped in that case too.
    virtual net::awaitable<error_code> store(std::string key, entry_ptr e) = 0;
    virtual net::awaitable<error_code> erase(std::string key) = 0;
    // Drops every entry this tier holds for the namespace (purge all).
    virtual net::awaitable<error_code> clear() = 0;

    virtual tier_state state() const = 0;
    virtual tier_usage usage() const = 0;
};

}  // namespace cachecar::cache
