// The in-process tier: byte-bounded, sharded, LRU eviction, per-entry expiry.
#pragma once

#include <cachecar/cache/tier.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>

namespace cachecar::cache {

// Keys are spread over shard_count() shards, each with its own mutex, LRU list, hash
// table and expiry heap (one node per entry serves all three), and a byte budget of
// max_bytes / shard_count(). Up to 16 shards, halved until each gets at least 4 MiB,
// so a 1 MiB object (the default max_object_bytes) never takes more than a quarter
// of its shard; small tiers get one shard, hence exact global LRU.
// The shard count is fixed at construction; resize() changes only the budgets.
class memory_tier final : public tier {
public:
    // max_bytes bounds the sum of entry footprints (key + headers + body + stamps +
    // bookkeeping, see entry::footprint). An entry larger than max_bytes / shard
    // count is not stored.
    explicit memory_tier(std::size_t max_bytes);
    ~memory_tier() override;

    // Synchronous API (never waits beyond a shard mutex), used on the hot path.
    // get() returns null on a miss or once now >= retain_until (the entry is dropped);
    // a hit makes the entry the most recently used of its shard. No allocation.
    entry_ptr get(std::string_view key, clock::time_point now = clock::now());
    // Replaces any entry under `key`. Returns false if not stored: e is null, its
    // footprint exceeds the shard budget (the previous entry is dropped all the same,
    // so a failed replace never leaves older content behind), or the key is 4 GiB or
    // longer (never stored, so nothing to drop). An entry already past retain_until is
    // accepted (true) but not kept. To make room, entries past retain_until go first,
    // then the least recently used.
    bool put(std::string key, entry_ptr e);
    bool remove(std::string_view key);  // false: nothing was stored under key
    void remove_all();
    // Drops entries past retain_until; touches at most `budget` entries. Returns how many were dropped.
    std::size_t sweep(clock::time_point now, std::size_t budget);
    // Changes the byte bound (on reload); evicts down to it.
    void resize(std::size_t max_bytes);
    std::size_t max_bytes() const;
    std::size_t shard_count() const;

    // tier
    config::tier_kind kind() const override { return config::tier_kind::memory; }
    net::awaitable<result<entry_ptr>> lookup(std::string key) override;
    // Wraps put(): errc::file_too_large when the entry exceeds the shard budget,
    // errc::invalid_argument for a null entry. Completes without suspending.
    net::awaitable<error_code> store(std::string key, entry_ptr e) override;
    net::awaitable<error_code> erase(std::string key) override;
    net::awaitable<error_code> clear() override;
    tier_state state() const override { return tier_state::up; }
    tier_usage usage() const override;

    // Live entries dropped to make room (put, resize). Expired entries dropped by
    // get(), put() or sweep() are not evictions.
    std::uint64_t evictions() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::cache
