#include <cachecar/cache/generation_cache.hpp>

#include <iterator>

namespace cachecar::cache {

void generation_cache::raise(const std::string& category, std::uint64_t generation, steady::time_point seen) {
    std::lock_guard lock(mutex_);
    // Clearing all rather than evicting some: no per-entry bookkeeping on the hit
    // path, and a refill costs one store round trip per category actually in use.
    if (known_.size() >= max_known_ && !known_.contains(category)) known_.clear();
    auto& k = known_[category];
    if (generation > k.generation) k.generation = generation;
    if (seen > k.seen) k.seen = seen;
}

void generation_cache::clear() {
    std::lock_guard lock(mutex_);
    known_.clear();
}

std::optional<bool> generation_cache::validate(const std::vector<category_stamp>& stamps,
                                               std::optional<steady::duration> max_age) const {
    const auto now = steady::now();
    std::lock_guard lock(mutex_);
    // A purge this instance acknowledged but the store has not taken: nothing it
    // could affect may be served, and we cannot tell which entries those are.
    if (!pending_.empty()) return false;
    for (const auto& s : stamps) {
        auto it = known_.find(s.category);
        if (it == known_.end()) return std::nullopt;
        if (max_age && now - it->second.seen > *max_age) return std::nullopt;
        if (it->second.generation > s.generation) return false;
        if (it->second.generation < s.generation) return std::nullopt;  // our copy is behind the entry
    }
    return true;
}

void generation_cache::add_pending(const std::vector<std::string>& categories) {
    std::lock_guard lock(mutex_);
    if (pending_.size() + categories.size() <= max_pending_) {
        for (const auto& c : categories) pending_.insert(c);
        return;
    }
    // Collapse into a purge of everything, which covers every dropped category. The
    // all_category purges already pending stay, each one: a flush in flight settles
    // the ones it took, and must not settle this new one.
    const std::string all(all_category);
    for (auto it = pending_.begin(); it != pending_.end();) it = *it == all ? std::next(it) : pending_.erase(it);
    pending_.insert(all);
}

std::vector<std::string> generation_cache::pending() const {
    std::lock_guard lock(mutex_);
    return {pending_.begin(), pending_.end()};
}

void generation_cache::settle(const std::vector<std::string>& applied) {
    std::lock_guard lock(mutex_);
    for (const auto& c : applied) {
        if (auto it = pending_.find(c); it != pending_.end()) pending_.erase(it);
    }
}

std::size_t generation_cache::known_count() const {
    std::lock_guard lock(mutex_);
    return known_.size();
}

std::size_t generation_cache::pending_count() const {
    std::lock_guard lock(mutex_);
    return pending_.size();
}

}  // namespace cachecar::cache
