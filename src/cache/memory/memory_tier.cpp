#include <cachecar/cache/memory/memory_tier.hpp>

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <cstring>
#include <functional>
#include <limits>
#include <mutex>
#include <new>
#include <utility>
#include <vector>

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

std::size_t hash_of(std::string_view key) { return std::hash<std::string_view>{}(key); }

}  // namespace

struct memory_tier::impl {
    struct lru_links {
        lru_links* prev = this;
        lru_links* next = this;
    };

    // One allocation per stored entry: this header, then the key bytes. It is at once
    // the LRU list element, the hash-chain element and what the expiry heap points
    // at, so an entry costs the tier one malloc instead of four (list node, key
    // string, hash node, tree node).
    struct node : lru_links {
        node* chain = nullptr;  // next in the hash bucket
        entry_ptr value;
        // Copied from value so heap compares stay within the node and the heap.
        clock::time_point retain_until;
        std::size_t hash;
        std::size_t footprint;
        std::uint32_t heap_index = 0;
        std::uint32_t key_size;

        node(std::string_view key, std::size_t h, entry_ptr e, std::size_t fp) noexcept
            : value(std::move(e)), retain_until(value->retain_until), hash(h), footprint(fp),
              key_size(static_cast<std::uint32_t>(key.size())) {
            std::memcpy(key_bytes(), key.data(), key.size());
        }
        node(const node&) = delete;
        node& operator=(const node&) = delete;
        ~node() = default;

        char* key_bytes() noexcept { return reinterpret_cast<char*>(this) + sizeof(node); }
        std::string_view key() const noexcept {
            return {reinterpret_cast<const char*>(this) + sizeof(node), key_size};
        }

        // Key bytes follow the node; operator new's alignment covers the node's.
        static node* make(std::string_view key, std::size_t h, entry_ptr e, std::size_t fp) {
            void* mem = ::operator new(sizeof(node) + key.size());
            return ::new (mem) node(key, h, std::move(e), fp);  // noexcept: nothing leaks
        }
        // Unsized delete: clang (the fuzz and sanitizer builds) has sized deallocation
        // off by default.
        static void destroy(node* n) noexcept {
            n->~node();
            ::operator delete(static_cast<void*>(n));
        }
    };
    static_assert(alignof(node) <= __STDCPP_DEFAULT_NEW_ALIGNMENT__);

    struct node_deleter {
        void operator()(node* n) const noexcept { node::destroy(n); }
    };
    using node_ptr = std::unique_ptr<node, node_deleter>;

    // key_size and heap_index are 32-bit to keep the node at 72 bytes.
    static constexpr std::size_t max_key_bytes = std::numeric_limits<std::uint32_t>::max();
    static constexpr std::size_t max_shard_entries = std::numeric_limits<std::uint32_t>::max();

    // Nodes unlinked under a shard lock, freed (with their entries, possibly large
    // bodies) when this goes out of scope: declare it before the lock_guard. Chained
    // through the LRU `next` link, which a removed node no longer uses.
    struct graveyard {
        lru_links* head = nullptr;
        graveyard() = default;
        graveyard(const graveyard&) = delete;
        graveyard& operator=(const graveyard&) = delete;
        ~graveyard() {
            while (head != nullptr) {
                auto* n = static_cast<node*>(head);
                head = head->next;
                node::destroy(n);
            }
        }
        void add(node* n) noexcept {
            n->next = head;
            head = n;
        }
    };

    static constexpr std::size_t initial_buckets = 16;

    // entry_bookkeeping_bytes is charged for these structures; keep that constant honest.
    // Bucket and heap slots count twice: the bucket array doubles at load factor 1 and
    // the heap vector doubles when full, so either may be half empty.
    static_assert(sizeof(entry) + 2 * sizeof(void*)  // entry inside its make_shared block
                          + sizeof(node)             // this tier's node (key bytes are charged apart)
                          + 2 * sizeof(node*)        // bucket slot
                          + 2 * sizeof(node*)        // heap slot
                          + 5 * 16                   // malloc headers: entry block, node, body, header wire, stamps
                      <= entry_bookkeeping_bytes,
                  "entry_bookkeeping_bytes no longer covers the memory tier's per-entry structures");

    // alignas: shards are hit from every I/O thread; keep each mutex on its own cache line.
    struct alignas(64) shard {
        std::mutex mutex;
        lru_links lru;  // ring sentinel; next: most recently used, prev: least
        std::unique_ptr<node*[]> buckets{new node*[initial_buckets]()};
        std::size_t bucket_bits = 4;  // log2 of the bucket count
        // Binary min-heap on retain_until: sweep and make_room start at heap[0].
        std::vector<node*> heap;
        std::size_t bytes = 0;
        std::size_t budget = 0;

        shard() = default;
        shard(const shard&) = delete;
        shard& operator=(const shard&) = delete;
        ~shard() {
            for (lru_links* l = lru.next; l != &lru;) {
                auto* n = static_cast<node*>(l);
                l = l->next;
                node::destroy(n);
            }
        }

        std::size_t size() const noexcept { return heap.size(); }
        std::size_t bucket_count() const noexcept { return std::size_t{1} << bucket_bits; }

        // The shard index took the hash's low bits, which are therefore the same for
        // every key here; a Fibonacci multiply folds all bits into the high ones used.
        std::size_t bucket_of(std::size_t h) const noexcept {
            return (h * std::size_t{0x9E3779B97F4A7C15}) >> (std::numeric_limits<std::size_t>::digits - bucket_bits);
        }

        node* find(std::string_view key, std::size_t h) const noexcept {
            for (node* n = buckets[bucket_of(h)]; n != nullptr; n = n->chain) {
                if (n->hash == h && n->key() == key) {
                    return n;
                }
            }
            return nullptr;
        }

        // Makes sure one more node fits without allocating: the only step of an
        // insertion that can throw, so it runs before anything changes.
        void reserve_one() {
            if (heap.size() == heap.capacity()) {
                heap.reserve(std::max<std::size_t>(16, 2 * heap.capacity()));
            }
            if (heap.size() + 1 > bucket_count()) {
                rehash(bucket_bits + 1);
            }
        }

        void rehash(std::size_t bits) {
            std::unique_ptr<node*[]> grown(new node*[std::size_t{1} << bits]());
            buckets.swap(grown);
            bucket_bits = bits;
            for (std::size_t b = 0; b < (std::size_t{1} << (bits - 1)); ++b) {
                for (node* n = grown[b]; n != nullptr;) {
                    node* const next = n->chain;
                    node*& head = buckets[bucket_of(n->hash)];
                    n->chain = head;
                    head = n;
                    n = next;
                }
            }
        }

        // Heap of node pointers ordered by retain_until; each node knows its index.
        void heap_set(std::size_t i, node* n) noexcept {
            heap[i] = n;
            n->heap_index = static_cast<std::uint32_t>(i);
        }
        void sift_up(std::size_t i) noexcept {
            node* const n = heap[i];
            while (i > 0) {
                const std::size_t parent = (i - 1) / 2;
                if (!(n->retain_until < heap[parent]->retain_until)) {
                    break;
                }
                heap_set(i, heap[parent]);
                i = parent;
            }
            heap_set(i, n);
        }
        void sift_down(std::size_t i) noexcept {
            node* const n = heap[i];
            const std::size_t count = heap.size();
            for (;;) {
                std::size_t child = 2 * i + 1;
                if (child >= count) {
                    break;
                }
                if (child + 1 < count && heap[child + 1]->retain_until < heap[child]->retain_until) {
                    ++child;
                }
                if (!(heap[child]->retain_until < n->retain_until)) {
                    break;
                }
                heap_set(i, heap[child]);
                i = child;
            }
            heap_set(i, n);
        }

        // Caller has called reserve_one().
        void link(node* n) noexcept {
            node*& head = buckets[bucket_of(n->hash)];
            n->chain = head;
            head = n;
            n->prev = &lru;
            n->next = lru.next;
            lru.next->prev = n;
            lru.next = n;
            heap.push_back(n);  // capacity reserved: does not throw
            sift_up(heap.size() - 1);
            bytes += n->footprint;
        }

        void unlink(node* n) noexcept {
            node** p = &buckets[bucket_of(n->hash)];
            while (*p != n) {
                p = &(*p)->chain;
            }
            *p = n->chain;
            n->prev->next = n->next;
            n->next->prev = n->prev;
            const std::size_t i = n->heap_index;
            node* const last = heap.back();
            heap.pop_back();
            if (last != n) {
                heap_set(i, last);
                if (i > 0 && last->retain_until < heap[(i - 1) / 2]->retain_until) {
                    sift_up(i);
                } else {
                    sift_down(i);
                }
            }
            bytes -= n->footprint;
        }

        void touch(node* n) noexcept {
            if (lru.next == n) {
                return;
            }
            n->prev->next = n->next;
            n->next->prev = n->prev;
            n->prev = &lru;
            n->next = lru.next;
            lru.next->prev = n;
            lru.next = n;
        }

        node* least_recent() const noexcept { return static_cast<node*>(lru.prev); }
        node* earliest() const noexcept { return heap.front(); }
    };

    explicit impl(std::size_t max)
        : shard_count(choose_shard_count(max)), shards(new shard[shard_count]), max_bytes(max) {
        for (std::size_t i = 0; i < shard_count; ++i) {
            shards[i].budget = max / shard_count;
        }
    }

    // shard_count is a power of two; the buckets inside a shard use other bits (bucket_of).
    shard& shard_for(std::size_t h) { return shards[h & (shard_count - 1)]; }

    // Caller holds s.mutex. The node is freed with `graveyard`, after the lock is released.
    void unlink(shard& s, node* n, graveyard& gy) {
        s.unlink(n);
        bytes.fetch_sub(n->footprint, std::memory_order_relaxed);
        entries.fetch_sub(1, std::memory_order_relaxed);
        gy.add(n);
    }

    // Caller holds s.mutex. Frees space until `need` more bytes (and one more node) fit
    // the shard.
    void make_room(shard& s, std::size_t need, clock::time_point now, graveyard& gy) {
        while ((s.bytes + need > s.budget || s.size() >= max_shard_entries) && s.size() > 0) {
            // An expired entry can never be served again, so it goes before any live one.
            if (node* const first = s.earliest(); expired(first->retain_until, now)) {
                unlink(s, first, gy);
                continue;
            }
            unlink(s, s.least_recent(), gy);
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
    const std::size_t h = hash_of(key);
    auto& s = impl_->shard_for(h);
    impl::graveyard graveyard;
    const std::lock_guard lock(s.mutex);
    impl::node* const n = s.find(key, h);
    if (n == nullptr) {
        return nullptr;
    }
    if (expired(n->retain_until, now)) {
        impl_->unlink(s, n, graveyard);
        return nullptr;
    }
    s.touch(n);
    return n->value;
}

bool memory_tier::put(std::string key, entry_ptr e) {
    if (!e || key.size() > impl::max_key_bytes) {
        return false;
    }
    const std::size_t footprint = e->footprint(key);
    const std::size_t h = hash_of(key);
    const auto now = clock::now();
    auto& s = impl_->shard_for(h);
    // Built before taking the lock: the allocation and key copy need none. Freed after
    // the lock is released if not stored (both are declared before the lock_guard).
    impl::node_ptr fresh(impl::node::make(key, h, std::move(e), footprint));
    impl::graveyard graveyard;
    const std::lock_guard lock(s.mutex);
    s.reserve_one();  // may throw bad_alloc; nothing has changed yet
    if (impl::node* const old = s.find(key, h); old != nullptr) {
        impl_->unlink(s, old, graveyard);
    }
    if (footprint > s.budget) {
        return false;
    }
    if (expired(fresh->retain_until, now)) {
        return true;  // stored "until retain_until", which has passed
    }
    impl_->make_room(s, footprint, now, graveyard);
    s.link(fresh.release());
    impl_->bytes.fetch_add(footprint, std::memory_order_relaxed);
    impl_->entries.fetch_add(1, std::memory_order_relaxed);
    return true;
}

bool memory_tier::remove(std::string_view key) {
    const std::size_t h = hash_of(key);
    auto& s = impl_->shard_for(h);
    impl::graveyard graveyard;
    const std::lock_guard lock(s.mutex);
    impl::node* const n = s.find(key, h);
    if (n == nullptr) {
        return false;
    }
    impl_->unlink(s, n, graveyard);
    return true;
}

void memory_tier::remove_all() {
    for (std::size_t i = 0; i < impl_->shard_count; ++i) {
        auto& s = impl_->shards[i];
        impl::graveyard graveyard;  // a whole shard's bodies are freed outside its lock
        const std::lock_guard lock(s.mutex);
        if (s.size() == 0) {
            continue;
        }
        // Hand the whole LRU ring to the graveyard in O(1) rather than node by node.
        s.lru.prev->next = nullptr;
        graveyard.head = s.lru.next;
        s.lru.prev = s.lru.next = &s.lru;
        std::fill_n(s.buckets.get(), s.bucket_count(), nullptr);
        impl_->bytes.fetch_sub(s.bytes, std::memory_order_relaxed);
        impl_->entries.fetch_sub(s.size(), std::memory_order_relaxed);
        s.heap.clear();
        s.bytes = 0;
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
        impl::graveyard graveyard;
        const std::lock_guard lock(s.mutex);
        while (touched < budget && s.size() > 0) {
            ++touched;
            impl::node* const earliest = s.earliest();
            if (!expired(earliest->retain_until, now)) {
                break;  // the rest of this shard expires later still
            }
            impl_->unlink(s, earliest, graveyard);
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
        impl::graveyard graveyard;
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
