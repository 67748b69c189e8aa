// The ordered tiers of a route: lookup walks them in the route's order, a hit in a
// later tier fills the earlier ones, a store writes to all of them. A failing tier is
// skipped and counted, never turned into an error for the client.
#pragma once

#include <cachecar/cache/generations.hpp>
#include <cachecar/cache/memory/memory_tier.hpp>
#include <cachecar/cache/tier.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/stats/metrics.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace cachecar::cache {

class tier_chain {
public:
    // `background` runs the writes to slower tiers.
    tier_chain(net::any_io_executor background, std::shared_ptr<memory_tier> memory,
               std::shared_ptr<generation_store> generations, stats::registry& metrics);

    // Installs (or, with null, removes) the tier for a kind; the memory tier is fixed.
    void set_tier(config::tier_kind kind, std::shared_ptr<tier> t);
    std::shared_ptr<tier> find(config::tier_kind kind) const;
    memory_tier& memory() { return *memory_; }
    generation_store& generations() { return *generations_; }

    struct lookup_outcome {
        entry_ptr fresh;                   // servable now
        config::tier_kind from = config::tier_kind::memory;
        entry_ptr expired;                 // past expires_at but retained and not purged (for stale serving)
        config::tier_kind expired_from = config::tier_kind::memory;
        // The current generations of the `categories` given to lookup(), read alongside
        // the first shared-tier lookup; empty if none was read. Read before any fetch,
        // so a miss may stamp its fill with them instead of asking again.
        std::optional<result<std::vector<std::uint64_t>>> generations;
    };

    // Walks `order`; entries whose category generations moved on (purged) are erased
    // and ignored. A fresh hit in a later tier is copied into the earlier ones.
    // `categories`, if given, are what this request's fill would be stamped with
    // (all_category included, as proxy builds them): their generations are then read
    // concurrently with the first shared-tier (Redis, MongoDB) lookup, so a shared-tier
    // hit stamped with exactly these categories is validated without a second round
    // trip, and a miss needs no further read before fetching. Entries stamped
    // otherwise (e.g. stored before a reload changed the route) are checked exactly.
    net::awaitable<lookup_outcome> lookup(const std::vector<config::tier_kind>& order, const std::string& key,
                                          const std::vector<std::string>* categories = nullptr);

    // Writes `e` to every tier in `order`. The memory tier is written before this
    // returns; slower tiers in the background (bounded: beyond the bound the write is
    // skipped and counted), so a store never delays a response.
    void store(const std::vector<config::tier_kind>& order, const std::string& key, entry_ptr e);

    // Drops everything in every tier (purge all); generations are the caller's job.
    net::awaitable<void> clear_all();

    // True iff every stamp still carries its category's current generation, asked of
    // the generation store; a store failure counts as "not valid" (never serve what
    // may be purged). lookup() first lets the store's local copy answer for entries
    // from this process's memory tier; shared tiers are always checked this way.
    net::awaitable<bool> still_valid(const entry& e);

private:
    // Every (operation, outcome) pair a tier is counted under, in the order of the
    // label table in tier_chain.cpp.
    enum class tier_event : std::uint8_t {
        lookup_hit, lookup_miss, lookup_expired, lookup_purged, lookup_error, lookup_skipped,
        store_ok, store_too_large, store_skipped, store_dropped, store_error,
        clear_ok, clear_error, erase_ok, erase_error,
    };
    static constexpr std::size_t tier_event_count = 15;

    std::shared_ptr<tier> at(config::tier_kind kind) const;
    // Resolved once in the constructor: the hit path indexes an array, never builds
    // or compares label strings.
    stats::counter& op_counter(config::tier_kind kind, tier_event event) {
        return *op_counters_[static_cast<std::size_t>(kind)][static_cast<std::size_t>(event)];
    }

    net::any_io_executor background_;
    std::shared_ptr<memory_tier> memory_;
    std::shared_ptr<generation_store> generations_;
    stats::registry& metrics_;
    std::array<std::array<stats::counter*, tier_event_count>, 3> op_counters_{};
    mutable std::mutex tiers_mutex_;  // guards tiers_ (changed only at start-up and reload)
    std::array<std::shared_ptr<tier>, 3> tiers_;
    std::shared_ptr<std::atomic<int>> background_writes_ = std::make_shared<std::atomic<int>>(0);
    static constexpr int max_background_writes = 1024;
};

}  // namespace cachecar::cache
