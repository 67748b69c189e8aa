// Per-category generation numbers: purging a category is one increment, and entries
// stamped with an older generation become unreachable (checked lazily at lookup),
// so purge cost does not depend on how many entries are stored.
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/net.hpp>

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace cachecar::cache {

// Where generations live. The in-process store below serves a single instance;
// shared tiers (Redis, MongoDB) provide stores every instance sees.
class generation_store {
public:
    virtual ~generation_store() = default;

    // Current generations of `categories` (unknown categories are generation 0),
    // in the same order. Completes on the caller's executor.
    virtual net::awaitable<result<std::vector<std::uint64_t>>> current(
        std::vector<std::string> categories) = 0;
    // Increments each category's generation; returns the new values. A category
    // listed twice is incremented twice.
    virtual net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) = 0;

    // The hit-path shortcut: whether `stamps` are current according to what this
    // process already knows, without waiting. nullopt: not known locally, ask
    // current(). Stores must only answer when their local view cannot be older than
    // the purges this instance must honour (see SPEC: the purge window).
    virtual std::optional<bool> validate_cached(const std::vector<category_stamp>& stamps) const {
        (void)stamps;
        return std::nullopt;
    }
};

// Thread-safe in-process generations. Synchronous accessors are exposed because they
// never wait; the awaitable interface wraps them.
//
// Bounded: every purged category keeps an entry, and per-key categories
// ("video:{path.uuid}") would otherwise grow the map with the key space for as long as
// the process runs. When a new category would exceed `max_categories`, the map is
// emptied and every category, known or not, moves to a generation above any issued
// so far (the floor). No stamp issued before matches again -- the effect of a purge of
// everything, which is always safe -- and unknown categories report the floor instead
// of 0.
class local_generation_store final : public generation_store {
public:
    static constexpr std::size_t default_max_categories = 65536;
    explicit local_generation_store(std::size_t max_categories = default_max_categories)
        : max_categories_(max_categories) {}

    std::uint64_t get(std::string_view category) const;
    std::vector<std::uint64_t> get_all(const std::vector<std::string>& categories) const;
    std::uint64_t bump_one(std::string_view category);
    // True iff every stamp still carries its category's current generation
    // (vacuously true for no stamps; make_stamps always adds all_category).
    bool still_valid(const std::vector<category_stamp>& stamps) const;
    std::size_t category_count() const;

    net::awaitable<result<std::vector<std::uint64_t>>> current(std::vector<std::string> categories) override;
    net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) override;
    std::optional<bool> validate_cached(const std::vector<category_stamp>& stamps) const override {
        return still_valid(stamps);
    }

private:
    struct string_hash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
    };
    // All with mutex_ held. make_room: reset (see above) unless `incoming` new
    // categories fit.
    void make_room(std::size_t incoming);
    std::uint64_t lookup(std::string_view category) const;
    std::uint64_t bump_locked(std::string_view category);

    std::size_t max_categories_;
    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::uint64_t, string_hash, std::equal_to<>> generations_;
    std::uint64_t floor_ = 0;  // the generation of every category not in the map
};

// Returns `categories` with all_category appended unless it is already present.
// Use it to build the list whose generations are fetched before a fill, so that the
// generation of all_category is read together with the others.
std::vector<std::string> with_all_category(std::vector<std::string> categories);

// Zips categories with their generations (as returned by current() for that same
// list) into stamps. Precondition: both have the same size and `categories`
// contains all_category -- build it with with_all_category(). If the precondition is
// broken the result fails closed: a category without a generation, or a missing
// all_category, is stamped with a generation no store reaches (UINT64_MAX), so the
// entry is never served rather than possibly served across a purge.
std::vector<category_stamp> make_stamps(const std::vector<std::string>& categories,
                                        const std::vector<std::uint64_t>& generations);

}  // namespace cachecar::cache
