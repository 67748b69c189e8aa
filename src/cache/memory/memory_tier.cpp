#include <cachecar/cache/memory/memory_tier.hpp>

#include <atomic>
#include <functional>
#include <iterator>
#include <list>
#include <map>
#include <mutex>
#include <unordered_map>
#include <utility>

namespace cachecar::cache {

namespace {

constexpr std::size_t max_shards = 16;
// Each shard gets at least this much budget (see the class comment): with the default
// max_object_bytes of 1 MiB, one largest object never flushes more than a quarter of
// its shard.
constexpr std::size_t min_shard_bytes = std::size_t{4} * 1024 * 1024;

std::size_t choose_shard_count(std::size_t max_bytes) {
    std::size_t shards = max_shards;
    while (shards > 1 && max_bytes / shards < min_shard_bytes) {
        shards /= 2;
    }
    return shards;
}

bool expired(clock::time_point retain_until, clock::time_point now) { return now >= retain_until; }

}  // namespace

struct memory_tier::impl {
    using expiry_index = std::multimap<clock::time_point, std::string_view>;

    struct node {
        std::string key;  // owns the bytes the index and expiry entries view
        entry_ptr value;
        std::size_t footprint = 0;
        expiry_index::iterator by_expiry;
    };
    using lru_list = std::list<node>;

    // entry_bookkeeping_bytes is charged for these structures; keep that constant honest.
    static_assert(sizeof(entry) + 2 * sizeof(void*)                         // make_shared block
                          + sizeof(node) + 2 * sizeof(void*)                // list node
                          + sizeof(std::string_view) + 4 * sizeof(void*)    // hash node + bucket
                          + sizeof(expiry_index::value_type) + 4 * sizeof(void*)  // tree node
                      <= entry_bookkeeping_bytes,
                  "entry_bookkeeping_bytes no longer covers the memory tier's per-entry structures");

    // alignas: shards are hit from every I/O thread; keep each mutex on its own cache line.
    struct alignas(64) shard {
        std::mutex mutex;
        lru_list lru;  // front: most recently used
        // Keys are views into the list nodes, which never move, so get() looks up a
        // string_view without building a std::string.
        std::unordered_map<std::string_view, lru_list::iterator> index;
        expiry_index by_expiry;  // earliest retain_until first: sweep and make_room start there
        std::size_t bytes = 0;
        std::size_t budget = 0;
    };

    explicit impl(std::size_t max)
        : shard_count(choose_shard_count(max)), shards(new shard[shard_count]), max_bytes(max) {
        for (std::size_t i = 0; i < shard_count; ++i) {
            shards[i].budget = max / shard_count;
        }
    }

    shard& shard_for(std::string_view key) {
        // shard_count is a power of two. The per-shard map reduces the same hash modulo
        // a prime bucket count, so the low bits used here do not skew its buckets.
        return shards[std::hash<std::string_view>{}(key) & (shard_count - 1)];
    }

    // Caller holds s.mutex. The removed node is moved to `graveyard` when given, so the
    // entry (possibly a large body) is freed after the lock is released.
    void unlink(shard& s, lru_list::iterator it, lru_list* graveyard = nullptr) {
        s.index.erase(std::string_view(it->key));
        s.by_expiry.erase(it->by_expiry);
        s.bytes -= it->footprint;
        bytes.fetch_sub(it->footprint, std::memory_order_relaxed);
        entries.fetch_sub(1, std::memory_order_relaxed);
        if (graveyard != nullptr) {
            graveyard->splice(graveyard->end(), s.lru, it);
        } else {
            s.lru.erase(it);
        }
    }

    // Caller holds s.mutex. Frees space until `need` more bytes fit the shard budget.
    void make_room(shard& s, std::size_t need, clock::time_point now, lru_list& graveyard) {
        while (s.bytes + need > s.budget && !s.lru.empty()) {
            // An expired entry can never be served again, so it goes before any live one.
            if (const auto first = s.by_expiry.begin(); expired(first->first, now)) {
                unlink(s, s.index.find(first->second)->second, &graveyard);
                continue;
            }
            unlink(s, std::prev(s.lru.end()), &graveyard);
            evictions.fetch_add(1, std::memory_order_relaxed);
        }
    }

    const std::size_t shard_count;
    const std::unique_ptr<shard[]> shards;
    std::atomic<std::size_t> max_bytes;
    // Totals kept as atomics so usage() never takes the shard locks. They are updated
    // under the owning shard's lock, removals before insertions, so `bytes` never
    // exceeds the sum of the shard budgets.
    std::atomic<std::uint64_t> entries{0};
    std::atomic<std::uint64_t> bytes{0};
    std::atomic<std::uint64_t> evictions{0};
    std::atomic<std::size_t> sweep_cursor{0};  // rotates sweep's first shard
};

memory_tier::memory_tier(std::size_t max_bytes) : impl_(std::make_unique<impl>(max_bytes)) {}

memory_tier::~memory_tier() = default;

entry_ptr memory_tier::get(std::string_view key, clock::time_point now) {
    auto& s = impl_->shard_for(key);
    impl::lru_list graveyard;
    const std::lock_guard lock(s.mutex);
    const auto found = s.index.find(key);
    if (found == s.index.end()) {
        return nullptr;
    }
    const auto it = found->second;
    if (expired(it->value->retain_until, now)) {
        impl_->unlink(s, it, &graveyard);
        return nullptr;
    }
    s.lru.splice(s.lru.begin(), s.lru, it);
    return it->value;
}

bool memory_tier::put(std::string key, entry_ptr e) {
    if (!e) {
        return false;
    }
    const std::size_t footprint = e->footprint(key);
    const auto now = clock::now();
    auto& s = impl_->shard_for(key);
    impl::lru_list graveyard;  // destroyed after the lock is released (declared first)
    const std::lock_guard lock(s.mutex);
    if (const auto found = s.index.find(key); found != s.index.end()) {
        impl_->unlink(s, found->second, &graveyard);
    }
    if (footprint > s.budget) {
        return false;
    }
    if (expired(e->retain_until, now)) {
        return true;  // stored "until retain_until", which has passed
    }
    impl_->make_room(s, footprint, now, graveyard);

    const auto retain_until = e->retain_until;
    s.lru.push_front(impl::node{std::move(key), std::move(e), footprint, {}});
    const auto it = s.lru.begin();
    try {
        // Same-TTL entries arrive in retain_until order; the end hint makes that O(1).
        it->by_expiry = s.by_expiry.emplace_hint(s.by_expiry.end(), retain_until, std::string_view(it->key));
        try {
            s.index.emplace(std::string_view(it->key), it);
        } catch (...) {
            s.by_expiry.erase(it->by_expiry);
            throw;
        }
    } catch (...) {
        s.lru.erase(it);  // leave the shard consistent on bad_alloc
        throw;
    }
    s.bytes += footprint;
    impl_->bytes.fetch_add(footprint, std::memory_order_relaxed);
    impl_->entries.fetch_add(1, std::memory_order_relaxed);
    return true;
}

bool memory_tier::remove(std::string_view key) {
    auto& s = impl_->shard_for(key);
    impl::lru_list graveyard;
    const std::lock_guard lock(s.mutex);
    const auto found = s.index.find(key);
    if (found == s.index.end()) {
        return false;
    }
    impl_->unlink(s, found->second, &graveyard);
    return true;
}

void memory_tier::remove_all() {
    for (std::size_t i = 0; i < impl_->shard_count; ++i) {
        auto& s = impl_->shards[i];
        impl::lru_list graveyard;  // a whole shard's bodies are freed outside its lock
        const std::lock_guard lock(s.mutex);
        s.index.clear();
        s.by_expiry.clear();
        impl_->bytes.fetch_sub(s.bytes, std::memory_order_relaxed);
        impl_->entries.fetch_sub(s.lru.size(), std::memory_order_relaxed);
        s.bytes = 0;
        graveyard.swap(s.lru);
    }
}

std::size_t memory_tier::sweep(clock::time_point now, std::size_t budget) {
    std::size_t touched = 0;
    std::size_t dropped = 0;
    const std::size_t n = impl_->shard_count;
    // Start each sweep at the next shard so a small budget does not always favour shard 0.
    const std::size_t first = impl_->sweep_cursor.fetch_add(1, std::memory_order_relaxed);
    for (std::size_t i = 0; i < n && touched < budget; ++i) {
        auto& s = impl_->shards[(first + i) % n];
        impl::lru_list graveyard;
        const std::lock_guard lock(s.mutex);
        while (touched < budget && !s.by_expiry.empty()) {
            ++touched;
            const auto earliest = s.by_expiry.begin();
            if (!expired(earliest->first, now)) {
                break;  // the rest of this shard expires later still
            }
            impl_->unlink(s, s.index.find(earliest->second)->second, &graveyard);
            ++dropped;
        }
    }
    return dropped;
}

void memory_tier::resize(std::size_t max_bytes) {
    impl_->max_bytes.store(max_bytes, std::memory_order_relaxed);
    const auto now = clock::now();
    for (std::size_t i = 0; i < impl_->shard_count; ++i) {
        auto& s = impl_->shards[i];
        impl::lru_list graveyard;
        const std::lock_guard lock(s.mutex);
        s.budget = max_bytes / impl_->shard_count;
        impl_->make_room(s, 0, now, graveyard);
    }
}

std::size_t memory_tier::max_bytes() const { return impl_->max_bytes.load(std::memory_order_relaxed); }

std::size_t memory_tier::shard_count() const { return impl_->shard_count; }

tier_usage memory_tier::usage() const {
    return {impl_->entries.load(std::memory_order_relaxed), impl_->bytes.load(std::memory_order_relaxed)};
}

std::uint64_t memory_tier::evictions() const { return impl_->evictions.load(std::memory_order_relaxed); }

net::awaitable<result<entry_ptr>> memory_tier::lookup(std::string key) { co_return get(key); }

net::awaitable<error_code> memory_tier::store(std::string key, entry_ptr e) {
    if (!e) {
        co_return make_error_code(boost::system::errc::invalid_argument);
    }
    co_return put(std::move(key), std::move(e)) ? error_code{}
                                                : make_error_code(boost::system::errc::file_too_large);
}

net::awaitable<error_code> memory_tier::erase(std::string key) {
    remove(key);  // erasing an absent key is not a failure
    co_return error_code{};
}

net::awaitable<error_code> memory_tier::clear() {
    remove_all();
    co_return error_code{};
}

}  // namespace cachecar::cache
