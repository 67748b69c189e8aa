#include <cachecar/cache/generations.hpp>

#include <algorithm>
#include <limits>

namespace cachecar::cache {

namespace {

// No store ever reaches this generation, so a stamp carrying it never validates.
constexpr std::uint64_t unreachable_generation = std::numeric_limits<std::uint64_t>::max();

}  // namespace

std::uint64_t local_generation_store::lookup(std::string_view category) const {
    const auto found = generations_.find(category);
    return found == generations_.end() ? floor_ : found->second;
}

void local_generation_store::make_room(std::size_t incoming) {
    if (generations_.size() + incoming <= max_categories_) return;
    // Above every generation issued so far, so no earlier stamp matches any more.
    std::uint64_t top = floor_;
    for (const auto& [name, generation] : generations_) top = std::max(top, generation);
    floor_ = top + 1;
    generations_.clear();
}

std::uint64_t local_generation_store::bump_locked(std::string_view category) {
    // Heterogeneous find first: only a category's first bump allocates its key.
    if (const auto found = generations_.find(category); found != generations_.end()) {
        return ++found->second;
    }
    return generations_.emplace(std::string(category), floor_ + 1).first->second;
}

std::uint64_t local_generation_store::get(std::string_view category) const {
    const std::lock_guard lock(mutex_);
    return lookup(category);
}

std::vector<std::uint64_t> local_generation_store::get_all(const std::vector<std::string>& categories) const {
    std::vector<std::uint64_t> out;
    out.reserve(categories.size());
    // One lock for the whole list: the caller gets a consistent snapshot, never half of
    // a concurrent multi-category bump.
    const std::lock_guard lock(mutex_);
    for (const auto& category : categories) out.push_back(lookup(category));
    return out;
}

std::uint64_t local_generation_store::bump_one(std::string_view category) {
    const std::lock_guard lock(mutex_);
    if (!generations_.contains(category)) make_room(1);
    return bump_locked(category);
}

bool local_generation_store::still_valid(const std::vector<category_stamp>& stamps) const {
    const std::lock_guard lock(mutex_);
    return std::all_of(stamps.begin(), stamps.end(),
                       [this](const category_stamp& stamp) { return lookup(stamp.category) == stamp.generation; });
}

std::size_t local_generation_store::category_count() const {
    const std::lock_guard lock(mutex_);
    return generations_.size();
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
        // Room first, so a reset never lands between two categories of one purge.
        const auto is_new = [this](const std::string& c) { return !generations_.contains(std::string_view(c)); };
        make_room(static_cast<std::size_t>(std::count_if(categories.begin(), categories.end(), is_new)));
        for (const auto& category : categories) out.push_back(bump_locked(category));
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
