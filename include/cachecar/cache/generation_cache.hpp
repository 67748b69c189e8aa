// The local copy of shared category generations, and the purges a shared store has
// not taken yet. Shared generation stores (Redis, MongoDB) use it to answer memory
// hits without a round trip; they decide when the copy may be trusted.
#pragma once

#include <cachecar/cache/entry.hpp>

#include <chrono>
#include <cstdint>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

namespace cachecar::cache {

class generation_cache {
public:
    using steady = std::chrono::steady_clock;

    // Records that `category` has reached at least `generation` (never lowers it).
    void raise(const std::string& category, std::uint64_t generation, steady::time_point seen = steady::now());
    void clear();

    // true: every stamp is current; false: some stamp is older than what is known
    // (purged) or a purge is pending; nullopt: not known well enough, ask the store.
    // Entries seen longer than `max_age` ago count as unknown.
    std::optional<bool> validate(const std::vector<category_stamp>& stamps,
                                 std::optional<steady::duration> max_age = std::nullopt) const;

    void add_pending(const std::vector<std::string>& categories);
    std::vector<std::string> pending() const;
    // Removes one pending purge per applied category.
    void settle(const std::vector<std::string>& applied);
    std::size_t pending_count() const;

private:
    struct known {
        std::uint64_t generation = 0;
        steady::time_point seen{};
    };
    mutable std::mutex mutex_;
    std::unordered_map<std::string, known> known_;
    std::multiset<std::string> pending_;
};

}  // namespace cachecar::cache
