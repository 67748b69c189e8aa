#include <cachecar/cache/generations.hpp>

#include <algorithm>
#include <limits>

namespace cachecar::cache {

namespace {

// No store ever reaches this generation, so a stamp carrying it never validates.
constexpr std::uint64_t unreachable_generation = std::numeric_limits<std::uint64_t>::max();

}  // namespace

std::uint64_t local_generation_store::get(std::string_view category) const {
    const std::lock_guard lock(mutex_);
    const auto found = generations_.find(category);
    return found == generations_.end() ? 0 : found->second;
}

std::vector<std::uint64_t> local_generation_store::get_all(const std::vector<std::string>& categories) const {
    std::vector<std::uint64_t> out;
    out.reserve(categories.size());
    // One lock for the whole list: the caller gets a consistent snapshot, never half of
    // a concurrent multi-category bump.
    const std::lock_guard lock(mutex_);
    for (const auto& category : categories) {
        const auto found = generations_.find(std::string_view(category));
        out.push_back(found == generations_.end() ? 0 : found->second);
    }
    return out;
}

std::uint64_t local_generation_store::bump_one(std::string_view category) {
    const std::lock_guard lock(mutex_);
    // Heterogeneous find first: only a category's first bump allocates its key.
    if (const auto found = generations_.find(category); found != generations_.end()) {
        return ++found->second;
    }
    return generations_.emplace(std::string(category), 1).first->second;
}

bool local_generation_store::still_valid(const std::vector<category_stamp>& stamps) const {
    const std::lock_guard lock(mutex_);
    return std::all_of(stamps.begin(), stamps.end(), [this](const category_stamp& stamp) {
        const auto found = generations_.find(std::string_view(stamp.category));
        return (found == generations_.end() ? 0 : found->second) == stamp.generation;
    });
}

net::awaitable<result<std::vector<std::uint64_t>>> local_generation_store::current(
    std::vector<std::string> categories) {
    co_return get_all(categories);
}

net::awaitable<result<std::vector<std::uint64_t>>> local_generation_store::bump(std::vector<std::string> categories) {
    std::vector<std::uint64_t> out;
    out.reserve(categories.size());
    {
        // A purge of several categories is applied at once, so no lookup sees some of
        // them purged and others not.
        const std::lock_guard lock(mutex_);
        for (auto& category : categories) {
            if (const auto found = generations_.find(std::string_view(category)); found != generations_.end()) {
                out.push_back(++found->second);
            } else {
                out.push_back(generations_.emplace(std::move(category), 1).first->second);
            }
        }
    }
    co_return out;
}

std::vector<std::string> with_all_category(std::vector<std::string> categories) {
    if (std::find(categories.begin(), categories.end(), all_category) == categories.end()) {
        categories.emplace_back(all_category);
    }
    return categories;
}

std::vector<category_stamp> make_stamps(const std::vector<std::string>& categories,
                                        const std::vector<std::uint64_t>& generations) {
    std::vector<category_stamp> stamps;
    stamps.reserve(categories.size() + 1);
    bool has_all = false;
    for (std::size_t i = 0; i < categories.size(); ++i) {
        has_all = has_all || categories[i] == all_category;
        stamps.push_back({categories[i], i < generations.size() ? generations[i] : unreachable_generation});
    }
    if (!has_all) {
        // Without the all_category stamp a purge-all could not reach the entry; make
        // it unservable instead.
        stamps.push_back({std::string(all_category), unreachable_generation});
    }
    return stamps;
}

}  // namespace cachecar::cache
