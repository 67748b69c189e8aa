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

    // Categories held at most. Per-key categories ("video:{query.uuid}") make the set
    // of categories as large as the key space, so the copy is bounded: when a new
    // category would exceed the bound, the copy starts afresh. Forgetting is always
    // safe (an unknown category means "ask the store"); it costs round trips only.
    static constexpr std::size_t default_max_known = 65536;
    // Pending purges held at most (counting repeats). Beyond it they collapse into one
    // pending purge of all_category: while the store is unreachable the writes keep
    // coming, and the retry must stay one small command rather than grow with them.
    static constexpr std::size_t default_max_pending = 1024;
    explicit generation_cache(std::size_t max_known = default_max_known,
                              std::size_t max_pending = default_max_pending)
        : max_known_(max_known), max_pending_(max_pending) {}

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
    std::size_t known_count() const;

private:
    struct known {
        std::uint64_t generation = 0;
        steady::time_point seen{};
    };
    std::size_t max_known_;
    std::size_t max_pending_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, known> known_;
    std::multiset<std::string> pending_;
};

}  // namespace cachecar::cache
