#include <cachecar/cache/tier_chain.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <spdlog/spdlog.h>

#include <tuple>

namespace cachecar::cache {

namespace {
std::size_t slot(config::tier_kind kind) { return static_cast<std::size_t>(kind); }

// Whether `e` was stamped with exactly `categories`, in order (make_stamps keeps the
// order of the list it is given), so that their generations decide its validity.
bool stamped_with(const entry& e, const std::vector<std::string>& categories) {
    if (e.stamps.size() != categories.size()) return false;
    for (std::size_t i = 0; i < categories.size(); ++i) {
        if (e.stamps[i].category != categories[i]) return false;
    }
    return true;
}

bool stamps_current(const entry& e, const std::vector<std::uint64_t>& generations) {
    for (std::size_t i = 0; i < e.stamps.size(); ++i) {
        if (generations[i] != e.stamps[i].generation) return false;
    }
    return true;
}
}  // namespace

tier_chain::tier_chain(net::any_io_executor background, std::shared_ptr<memory_tier> memory,
                       std::shared_ptr<generation_store> generations, stats::registry& metrics)
    : background_(std::move(background)),
      memory_(std::move(memory)),
      generations_(std::move(generations)),
      metrics_(metrics) {
    tiers_[slot(config::tier_kind::memory)] = memory_;
    // Labels of tier_event, in its order.
    static constexpr std::pair<std::string_view, std::string_view> labels[] = {
        {"lookup", "hit"},  {"lookup", "miss"},      {"lookup", "expired"}, {"lookup", "purged"},
        {"lookup", "error"}, {"lookup", "skipped"},  {"store", "ok"},       {"store", "too_large"},
        {"store", "skipped"}, {"store", "dropped"},  {"store", "error"},    {"clear", "ok"},
        {"clear", "error"}, {"erase", "ok"},      {"erase", "error"}};
    static_assert(std::size(labels) == tier_event_count);
    for (auto kind : {config::tier_kind::memory, config::tier_kind::redis, config::tier_kind::mongo}) {
        for (std::size_t i = 0; i < tier_event_count; ++i) {
            op_counters_[slot(kind)][i] = &metrics_.tier_op(config::to_string(kind), labels[i].first, labels[i].second);
        }
    }
}

void tier_chain::set_tier(config::tier_kind kind, std::shared_ptr<tier> t) {
    if (kind == config::tier_kind::memory) return;
    std::lock_guard lock(tiers_mutex_);
    tiers_[slot(kind)] = std::move(t);
}

std::shared_ptr<tier> tier_chain::find(config::tier_kind kind) const { return at(kind); }

std::shared_ptr<tier> tier_chain::at(config::tier_kind kind) const {
    if (kind == config::tier_kind::memory) return memory_;
    std::lock_guard lock(tiers_mutex_);
    return tiers_[slot(kind)];
}

net::awaitable<bool> tier_chain::still_valid(const entry& e) {
    std::vector<std::string> categories;
    categories.reserve(e.stamps.size());
    for (const auto& s : e.stamps) categories.push_back(s.category);
    auto current = co_await generations_->current(std::move(categories));
    if (!current || current->size() != e.stamps.size()) co_return false;
    co_return stamps_current(e, *current);
}

net::awaitable<tier_chain::lookup_outcome> tier_chain::lookup(const std::vector<config::tier_kind>& order,
                                                             const std::string& key,
                                                             const std::vector<std::string>* categories) {
    lookup_outcome out;
    const auto now = clock::now();
    for (std::size_t i = 0; i < order.size(); ++i) {
        const auto kind = order[i];
        entry_ptr found;
        if (kind == config::tier_kind::memory) {
            found = memory_->get(key, now);
        } else {
            auto t = at(kind);
            if (!t || t->state() == tier_state::down) {
                op_counter(kind, tier_event::lookup_skipped)++;
                continue;
            }
            result<entry_ptr> r = entry_ptr{};
            if (categories != nullptr && !out.generations) {
                // One round trip instead of two: the entry and the generations that
                // decide whether it may be served are asked for at the same time.
                using namespace net::experimental::awaitable_operators;
                auto both = co_await (t->lookup(key) && generations_->current(*categories));
                r = std::move(std::get<0>(both));
                out.generations = std::move(std::get<1>(both));
            } else {
                auto looked = co_await t->lookup(key);
                r = std::move(looked);
            }
            if (!r) {
                op_counter(kind, tier_event::lookup_error)++;
                continue;
            }
            found = *r;
        }
        if (!found) {
            op_counter(kind, tier_event::lookup_miss)++;
            continue;
        }
        // Memory hits are usually settled by the local generation copy, without a
        // round trip and synchronously (the common hit starts no coroutine); anything
        // it cannot answer, and every shared-tier entry, is checked exactly.
        std::optional<bool> valid;
        if (kind == config::tier_kind::memory) {
            valid = generations_->validate_cached(found->stamps);
        } else if (out.generations && *out.generations && (*out.generations)->size() == categories->size() &&
                   stamped_with(*found, *categories)) {
            valid = stamps_current(*found, **out.generations);
        }
        if (!valid) {
            const bool checked = co_await still_valid(*found);
            valid = checked;
        }
        if (!*valid) {
            // Purged: unreachable from now on; drop it so it stops costing space.
            op_counter(kind, tier_event::lookup_purged)++;
            if (kind == config::tier_kind::memory) {
                memory_->remove(key);
            } else if (auto t = at(kind)) {
                auto ec = co_await t->erase(key);
                op_counter(kind, ec ? tier_event::erase_error : tier_event::erase_ok)++;
            }
            continue;
        }
        if (!found->fresh_at(now)) {
            op_counter(kind, tier_event::lookup_expired)++;
            if (!out.expired) {
                out.expired = found;
                out.expired_from = kind;
            }
            continue;
        }
        op_counter(kind, tier_event::lookup_hit)++;
        out.fresh = found;
        out.from = kind;
        // Fill the faster tiers in front of the one that answered.
        std::vector<config::tier_kind> above(order.begin(), order.begin() + static_cast<std::ptrdiff_t>(i));
        if (!above.empty()) store(above, key, found);
        co_return out;
    }
    co_return out;
}

void tier_chain::store(const std::vector<config::tier_kind>& order, const std::string& key, entry_ptr e) {
    for (auto kind : order) {
        if (kind == config::tier_kind::memory) {
            op_counter(kind, memory_->put(key, e) ? tier_event::store_ok : tier_event::store_too_large)++;
            continue;
        }
        auto t = at(kind);
        if (!t || t->state() == tier_state::down) {
            op_counter(kind, tier_event::store_skipped)++;
            continue;
        }
        if (background_writes_->fetch_add(1) >= max_background_writes) {
            background_writes_->fetch_sub(1);
            op_counter(kind, tier_event::store_dropped)++;
            continue;
        }
        auto* ok = &op_counter(kind, tier_event::store_ok);
        auto* failed = &op_counter(kind, tier_event::store_error);
        net::co_spawn(
            net::make_strand(background_),
            [t, key, e, ok, failed, pending = background_writes_]() -> net::awaitable<void> {
                auto ec = co_await t->store(key, e);
                (ec ? *failed : *ok)++;
                pending->fetch_sub(1);
            },
            net::detached);
    }
}

net::awaitable<void> tier_chain::clear_all() {
    memory_->remove_all();
    for (auto kind : {config::tier_kind::redis, config::tier_kind::mongo}) {
        auto t = at(kind);
        if (!t) continue;
        auto ec = co_await t->clear();
        op_counter(kind, ec ? tier_event::clear_error : tier_event::clear_ok)++;
    }
}

}  // namespace cachecar::cache
