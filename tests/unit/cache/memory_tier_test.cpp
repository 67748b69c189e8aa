#include <cachecar/cache/memory/memory_tier.hpp>

#include "tier_conformance.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <iterator>
#include <limits>
#include <list>
#include <map>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace {

using namespace std::chrono_literals;
using cachecar::cache::clock;
using cachecar::cache::entry;
using cachecar::cache::entry_ptr;
using cachecar::cache::memory_tier;

constexpr std::size_t kib = 1024;
constexpr std::size_t mib = 1024 * kib;

struct memory_factory {
    static std::unique_ptr<cachecar::cache::tier> make(cachecar::net::any_io_executor) {
        // Large enough for the suite's 1 MiB body with 16 shards of 4 MiB.
        return std::make_unique<memory_tier>(64 * mib);
    }
};

}  // namespace

CACHECAR_TIER_CONFORMANCE(memory, memory_factory);

namespace {

// An entry with a body of `body_bytes`, retained `retain` past now.
entry_ptr sized_entry(std::size_t body_bytes, clock::duration retain = std::chrono::hours(1)) {
    auto e = std::make_shared<entry>();
    e->body.assign(body_bytes, 'b');
    e->stored_at = clock::now();
    e->expires_at = e->stored_at + retain / 2;
    e->retain_until = e->stored_at + retain;
    e->stamps = {{std::string(cachecar::cache::all_category), 0}};
    return e;
}

// Like sized_entry, but kept until an exact time point: tests that check the expiry
// order need retain_until values that do not depend on when the entry was built.
entry_ptr entry_until(clock::time_point retain_until, std::size_t body_bytes = 100) {
    auto e = std::make_shared<entry>();
    e->body.assign(body_bytes, 'b');
    e->stored_at = clock::now();
    e->expires_at = retain_until;
    e->retain_until = retain_until;
    e->stamps = {{std::string(cachecar::cache::all_category), 0}};
    return e;
}

constexpr std::size_t unlimited = std::numeric_limits<std::size_t>::max();

// Keys of equal length, so equal-bodied entries have equal footprints.
std::string key_of(int i) {
    std::string k = std::to_string(i);
    return "key:" + std::string(6 - std::min<std::size_t>(6, k.size()), '0') + k;
}

TEST(memory_tier, shard_count_leaves_every_shard_at_least_4_mib) {
    EXPECT_EQ(memory_tier(0).shard_count(), 1u);
    EXPECT_EQ(memory_tier(64 * kib).shard_count(), 1u);
    EXPECT_EQ(memory_tier(4 * mib).shard_count(), 1u);
    EXPECT_EQ(memory_tier(8 * mib).shard_count(), 2u);
    EXPECT_EQ(memory_tier(16 * mib).shard_count(), 4u);
    EXPECT_EQ(memory_tier(64 * mib).shard_count(), 16u);
    EXPECT_EQ(memory_tier(256 * mib).shard_count(), 16u);
    EXPECT_EQ(memory_tier(64 * mib).max_bytes(), 64 * mib);
}

TEST(memory_tier, footprint_counts_key_headers_body_and_stamps) {
    entry e;
    const std::size_t bare = e.footprint("");
    EXPECT_EQ(bare, cachecar::cache::entry_bookkeeping_bytes);
    EXPECT_EQ(e.footprint("0123456789"), bare + 10);
    e.body.assign(1000, 'x');
    EXPECT_EQ(e.footprint(""), bare + 1000);
    e.headers.add("abc", "defgh");  // stored as "abc: defgh\r\n"
    EXPECT_EQ(e.footprint(""), bare + 1000 + 12);
    e.stamps.push_back({"videos", 12345});
    EXPECT_EQ(e.footprint(""), bare + 1000 + 12 + 6 + sizeof(cachecar::cache::category_stamp));
}

TEST(memory_tier, usage_is_the_sum_of_footprints) {
    memory_tier t(mib);
    const auto a = sized_entry(100);
    const auto b = sized_entry(5000);
    ASSERT_TRUE(t.put("a", a));
    ASSERT_TRUE(t.put("bee", b));
    EXPECT_EQ(t.usage().entries, 2u);
    EXPECT_EQ(t.usage().bytes, a->footprint("a") + b->footprint("bee"));
    EXPECT_EQ(t.get("a"), a) << "the stored entry itself is shared, not copied";
}

TEST(memory_tier, evicts_least_recently_used_and_get_refreshes) {
    const std::size_t fp = sized_entry(1000)->footprint(key_of(0));
    memory_tier t(3 * fp + fp / 2);  // room for exactly three
    ASSERT_EQ(t.shard_count(), 1u);
    ASSERT_TRUE(t.put(key_of(0), sized_entry(1000)));
    ASSERT_TRUE(t.put(key_of(1), sized_entry(1000)));
    ASSERT_TRUE(t.put(key_of(2), sized_entry(1000)));
    ASSERT_NE(t.get(key_of(0)), nullptr);  // 0 is now the most recently used

    ASSERT_TRUE(t.put(key_of(3), sized_entry(1000)));
    EXPECT_EQ(t.get(key_of(1)), nullptr) << "1 was least recently used";
    EXPECT_NE(t.get(key_of(2)), nullptr);  // order now (most recent first): 2 3 0
    EXPECT_NE(t.get(key_of(0)), nullptr);  // 0 2 3
    EXPECT_NE(t.get(key_of(3)), nullptr);  // 3 0 2
    EXPECT_EQ(t.evictions(), 1u);

    ASSERT_TRUE(t.put(key_of(4), sized_entry(1000)));
    EXPECT_EQ(t.get(key_of(2)), nullptr);
    EXPECT_NE(t.get(key_of(0)), nullptr);
    EXPECT_EQ(t.evictions(), 2u);
    EXPECT_EQ(t.usage().entries, 3u);
    EXPECT_EQ(t.usage().bytes, 3 * fp);
}

TEST(memory_tier, byte_bound_holds_after_every_put) {
    for (const std::size_t max : {std::size_t{10} * kib, std::size_t{200} * kib, std::size_t{16} * mib}) {
        memory_tier t(max);
        std::mt19937 rng(42);
        const std::size_t largest = max / t.shard_count() / 2;
        std::uniform_int_distribution<std::size_t> body_size(0, largest);
        std::uint64_t stored = 0;
        for (int i = 0; i < 300; ++i) {
            if (t.put(key_of(i), sized_entry(body_size(rng)))) {
                ++stored;
            }
            ASSERT_LE(t.usage().bytes, max) << "after put #" << i << " with max " << max;
        }
        EXPECT_EQ(stored, 300u);
        EXPECT_GT(t.evictions(), 0u) << max;
        EXPECT_EQ(t.evictions(), stored - t.usage().entries) << "every live entry lost was an eviction";
    }
}

TEST(memory_tier, oversize_entry_is_rejected_and_drops_the_old_one) {
    memory_tier t(64 * kib);
    ASSERT_TRUE(t.put("k", sized_entry(10)));
    ASSERT_TRUE(t.put("other", sized_entry(10)));
    const auto before = t.usage();

    const auto huge = sized_entry(64 * kib);
    EXPECT_FALSE(t.put("k", huge));
    EXPECT_EQ(t.get("k"), nullptr) << "a failed replace must not leave the older entry";
    EXPECT_NE(t.get("other"), nullptr);
    EXPECT_EQ(t.usage().entries, before.entries - 1);
    EXPECT_EQ(t.usage().bytes, sized_entry(10)->footprint("other"));
    EXPECT_EQ(t.evictions(), 0u);

    cachecar::net::io_context io;
    const auto ec = cachecar::cache::conformance::run(io, t.store("k", huge));
    EXPECT_EQ(ec, boost::system::errc::file_too_large);
    EXPECT_EQ(cachecar::cache::conformance::run(io, t.store("k", nullptr)), boost::system::errc::invalid_argument);
    EXPECT_FALSE(t.put("k", nullptr));
}

TEST(memory_tier, entry_of_exactly_the_shard_budget_fits) {
    memory_tier t(64 * kib);
    const std::size_t overhead = sized_entry(0)->footprint("k");
    ASSERT_TRUE(t.put("k", sized_entry(64 * kib - overhead)));
    EXPECT_EQ(t.usage().bytes, 64 * kib);
    EXPECT_FALSE(t.put("k", sized_entry(64 * kib - overhead + 1)));
    EXPECT_EQ(t.usage().bytes, 0u);
}

TEST(memory_tier, limit_is_per_shard_not_total) {
    memory_tier t(64 * mib);  // 16 shards of 4 MiB
    ASSERT_EQ(t.shard_count(), 16u);
    EXPECT_TRUE(t.put("fits", sized_entry(3 * mib)));
    EXPECT_FALSE(t.put("too-big-for-a-shard", sized_entry(5 * mib)));
}

TEST(memory_tier, expired_entries_go_before_live_ones_when_making_room) {
    const std::size_t fp = sized_entry(1000)->footprint(key_of(0));
    memory_tier t(3 * fp);
    ASSERT_TRUE(t.put(key_of(0), sized_entry(1000)));  // will be the LRU tail
    ASSERT_TRUE(t.put(key_of(1), sized_entry(1000)));
    ASSERT_TRUE(t.put(key_of(2), sized_entry(1000, 5ms)));  // most recent, expires soon
    std::this_thread::sleep_for(15ms);

    ASSERT_TRUE(t.put(key_of(3), sized_entry(1000)));
    EXPECT_NE(t.get(key_of(0)), nullptr) << "a live entry was evicted while an expired one was held";
    EXPECT_EQ(t.get(key_of(2)), nullptr);
    EXPECT_EQ(t.evictions(), 0u);
    EXPECT_EQ(t.usage().entries, 3u);
}

TEST(memory_tier, get_drops_an_entry_at_retain_until) {
    memory_tier t(mib);
    const auto e = sized_entry(100);
    ASSERT_TRUE(t.put("k", e));
    EXPECT_EQ(t.get("k", e->expires_at + 1s), e) << "stale but retained is still returned";
    EXPECT_EQ(t.get("k", e->retain_until - 1ns), e);
    EXPECT_EQ(t.get("k", e->retain_until), nullptr);
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
    EXPECT_EQ(t.get("k"), nullptr) << "dropped, not merely hidden";
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(memory_tier, put_of_an_already_expired_entry_is_accepted_but_not_kept) {
    memory_tier t(mib);
    ASSERT_TRUE(t.put("k", sized_entry(100)));
    EXPECT_TRUE(t.put("k", sized_entry(100, -1s)));
    EXPECT_EQ(t.get("k"), nullptr);
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
}

TEST(memory_tier, sweep_drops_expired_entries_within_budget) {
    memory_tier t(mib);
    const auto now = clock::now();
    for (int i = 0; i < 5; ++i) {
        ASSERT_TRUE(t.put("short" + std::to_string(i), sized_entry(10, 10min)));
        ASSERT_TRUE(t.put("long" + std::to_string(i), sized_entry(10, 1h)));
    }
    const std::size_t long_bytes = 5 * sized_entry(10)->footprint("long0");
    EXPECT_EQ(t.sweep(now + 30min, 0), 0u);
    EXPECT_EQ(t.sweep(now + 30min, 2), 2u);
    EXPECT_EQ(t.usage().entries, 8u);
    EXPECT_EQ(t.sweep(now + 30min, 100), 3u);
    EXPECT_EQ(t.sweep(now + 30min, 100), 0u);
    EXPECT_EQ(t.usage().entries, 5u);
    EXPECT_EQ(t.usage().bytes, long_bytes);
    for (int i = 0; i < 5; ++i) {
        EXPECT_NE(t.get("long" + std::to_string(i), now + 30min), nullptr);
    }
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(memory_tier, sweep_covers_every_shard) {
    memory_tier t(64 * mib);
    ASSERT_EQ(t.shard_count(), 16u);
    const auto now = clock::now();
    for (int i = 0; i < 200; ++i) {
        ASSERT_TRUE(t.put(key_of(i), sized_entry(10, i % 2 == 0 ? 10min : 1h)));
    }
    std::size_t dropped = 0;
    for (int pass = 0; pass < 100; ++pass) {
        const std::size_t n = t.sweep(now + 30min, 8);
        EXPECT_LE(n, 8u);
        dropped += n;
    }
    EXPECT_EQ(dropped, 100u);
    EXPECT_EQ(t.usage().entries, 100u);
}

TEST(memory_tier, resize_shrinks_and_evicts) {
    memory_tier t(mib);
    const std::size_t fp = sized_entry(10 * kib)->footprint(key_of(0));
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(t.put(key_of(i), sized_entry(10 * kib)));
    }
    ASSERT_EQ(t.usage().entries, 20u);

    t.resize(3 * fp);
    EXPECT_EQ(t.max_bytes(), 3 * fp);
    EXPECT_EQ(t.usage().entries, 3u);
    EXPECT_LE(t.usage().bytes, 3 * fp);
    EXPECT_EQ(t.evictions(), 17u);
    for (int i = 17; i < 20; ++i) {
        EXPECT_NE(t.get(key_of(i)), nullptr) << "the most recent survive";
    }

    t.resize(0);
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
    EXPECT_FALSE(t.put("k", sized_entry(1)));

    t.resize(mib);
    EXPECT_TRUE(t.put("k", sized_entry(1)));
    EXPECT_EQ(t.get(key_of(19)), nullptr) << "growing does not bring entries back";
}

TEST(memory_tier, remove_and_remove_all) {
    memory_tier t(64 * mib);
    for (int i = 0; i < 50; ++i) {
        ASSERT_TRUE(t.put(key_of(i), sized_entry(100)));
    }
    EXPECT_TRUE(t.remove(key_of(7)));
    EXPECT_FALSE(t.remove(key_of(7)));
    EXPECT_FALSE(t.remove("never"));
    EXPECT_EQ(t.get(key_of(7)), nullptr);
    EXPECT_EQ(t.usage().entries, 49u);

    t.remove_all();
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
    EXPECT_EQ(t.evictions(), 0u) << "clearing is not evicting";
    for (int i = 0; i < 50; ++i) {
        EXPECT_EQ(t.get(key_of(i)), nullptr);
    }
    EXPECT_TRUE(t.put(key_of(1), sized_entry(100)));
    EXPECT_EQ(t.usage().entries, 1u);
}

TEST(memory_tier, entries_handed_out_outlive_their_removal) {
    memory_tier t(mib);
    ASSERT_TRUE(t.put("k", sized_entry(100)));
    const auto held = t.get("k");
    t.remove_all();
    ASSERT_NE(held, nullptr);
    EXPECT_EQ(held->body, std::string(100, 'b'));
}

// A model of what should be held, checked against usage() after every operation.
TEST(memory_tier, usage_is_exact_after_every_operation) {
    memory_tier t(64 * mib);  // large enough that nothing is evicted
    std::map<std::string, std::size_t> model;
    std::mt19937 rng(7);
    auto check = [&](int step) {
        std::size_t bytes = 0;
        for (const auto& [key, fp] : model) {
            bytes += fp;
        }
        ASSERT_EQ(t.usage().entries, model.size()) << "step " << step;
        ASSERT_EQ(t.usage().bytes, bytes) << "step " << step;
    };
    for (int step = 0; step < 2000; ++step) {
        const std::string key = key_of(static_cast<int>(rng() % 40));
        switch (rng() % 5) {
        case 0:
        case 1: {
            const auto e = sized_entry(rng() % 3000);
            ASSERT_TRUE(t.put(key, e));
            model[key] = e->footprint(key);
            break;
        }
        case 2:
            EXPECT_EQ(t.remove(key), model.erase(key) == 1);
            break;
        case 3:
            EXPECT_EQ(t.get(key) != nullptr, model.count(key) == 1);
            break;
        default:  // a read far in the future drops the entry
            EXPECT_EQ(t.get(key, clock::now() + 2h), nullptr);
            model.erase(key);
            break;
        }
        check(step);
    }
    t.remove_all();
    model.clear();
    check(-1);
}

// Threads hammer a bounded tier; a monitor checks the bound the whole time, and at the
// end the counters agree with what can actually be read back.
TEST(memory_tier, concurrent_use_keeps_bound_and_counters) {
    for (const std::size_t max : {std::size_t{256} * kib, std::size_t{64} * mib}) {
        memory_tier t(max);
        constexpr int threads = 4;
        constexpr int ops = 1500;
        constexpr int key_space = 400;
        const std::size_t largest = std::min<std::size_t>(max / t.shard_count() / 8, 48 * kib);
        std::atomic<bool> stop{false};
        std::atomic<std::uint64_t> bound_violations{0};
        std::thread monitor([&] {
            while (!stop.load()) {
                if (t.usage().bytes > max) {
                    ++bound_violations;
                }
                std::this_thread::yield();
            }
        });
        std::vector<std::thread> pool;
        for (int w = 0; w < threads; ++w) {
            pool.emplace_back([&, w] {
                std::mt19937 rng(static_cast<unsigned>(w));
                for (int i = 0; i < ops; ++i) {
                    const std::string key = key_of(static_cast<int>(rng() % key_space));
                    switch (rng() % 6) {
                    case 0:
                        t.remove(key);
                        break;
                    case 1:
                    case 2:
                        if (const auto e = t.get(key); e != nullptr && e->body.size() >= largest) {
                            ++bound_violations;  // bodies are drawn below `largest`
                        }
                        break;
                    case 3:
                        if (i % 500 == 0) {
                            t.sweep(clock::now(), 50);
                        }
                        break;
                    default:
                        t.put(key, sized_entry(rng() % largest, std::chrono::milliseconds(1 + rng() % 200)));
                        break;
                    }
                }
            });
        }
        for (auto& th : pool) {
            th.join();
        }
        stop = true;
        monitor.join();
        EXPECT_EQ(bound_violations.load(), 0u) << max;
        EXPECT_LE(t.usage().bytes, max);

        // get() at the epoch never finds an entry past retain_until, so it drops
        // nothing: reading every key counts exactly what is held.
        const auto long_ago = clock::time_point{};
        std::uint64_t readable = 0;
        for (int k = 0; k < key_space; ++k) {
            readable += t.get(key_of(k), long_ago) != nullptr ? 1 : 0;
        }
        EXPECT_EQ(t.usage().entries, readable) << max;
        t.remove_all();
        EXPECT_EQ(t.usage().entries, 0u);
        EXPECT_EQ(t.usage().bytes, 0u);
    }
}

// Each shard's hash table starts small and doubles: every key must stay reachable
// through many rehashes, in a many-shard tier and in a one-shard tier.
TEST(memory_tier, every_key_stays_reachable_across_rehashes) {
    for (const auto& [max, n] : {std::pair{std::size_t{1} << 30, 100000}, std::pair{7 * mib, 15000}}) {
        memory_tier t(max);
        const auto e = sized_entry(0);
        std::uint64_t bytes = 0;
        for (int i = 0; i < n; ++i) {
            const std::string key = "k" + std::to_string(i);  // varied lengths
            ASSERT_TRUE(t.put(key, e));
            bytes += e->footprint(key);
        }
        ASSERT_EQ(t.evictions(), 0u) << "the tier must be large enough for this test";
        EXPECT_EQ(t.usage().entries, static_cast<std::uint64_t>(n));
        EXPECT_EQ(t.usage().bytes, bytes);
        for (int i = 0; i < n; ++i) {
            ASSERT_EQ(t.get("k" + std::to_string(i)), e) << i;
        }
        EXPECT_EQ(t.get("k" + std::to_string(n)), nullptr);
        EXPECT_EQ(t.get("k"), nullptr);
        EXPECT_EQ(t.get(""), nullptr);
        for (int i = 1; i < n; i += 2) {
            ASSERT_TRUE(t.remove("k" + std::to_string(i))) << i;
        }
        EXPECT_EQ(t.usage().entries, static_cast<std::uint64_t>((n + 1) / 2));
        for (int i = 0; i < n; ++i) {
            ASSERT_EQ(t.get("k" + std::to_string(i)) != nullptr, i % 2 == 0) << i;
        }
    }
}

// A model of the recency order, checked by which key each put evicts, while gets keep
// reshuffling the order.
TEST(memory_tier, lru_order_stays_exact_over_many_gets) {
    constexpr int n = 64;
    const std::size_t fp = sized_entry(100)->footprint(key_of(0));
    memory_tier t(n * fp + fp / 2);
    ASSERT_EQ(t.shard_count(), 1u);
    std::list<std::string> order;  // front: most recently used
    for (int i = 0; i < n; ++i) {
        ASSERT_TRUE(t.put(key_of(i), sized_entry(100)));
        order.push_front(key_of(i));
    }
    std::mt19937 rng(11);
    auto touch_some = [&](int count) {
        for (int g = 0; g < count; ++g) {
            auto it = std::next(order.begin(), static_cast<std::ptrdiff_t>(rng() % order.size()));
            ASSERT_NE(t.get(*it), nullptr) << *it;
            order.splice(order.begin(), order, it);
        }
    };
    ASSERT_NO_FATAL_FAILURE(touch_some(5000));
    for (int j = 0; j < 500; ++j) {
        ASSERT_NO_FATAL_FAILURE(touch_some(static_cast<int>(rng() % 8)));
        const std::string victim = order.back();
        ASSERT_TRUE(t.put(key_of(1000 + j), sized_entry(100)));
        order.pop_back();
        order.push_front(key_of(1000 + j));
        ASSERT_EQ(t.evictions(), static_cast<std::uint64_t>(j + 1));
        ASSERT_EQ(t.usage().entries, static_cast<std::uint64_t>(n));
        ASSERT_EQ(t.get(victim), nullptr) << "put #" << j << " should have evicted the least recently used";
    }
}

// Distinct retain_until values inserted in random order: sweep must drop them
// earliest first, exactly `budget` at a time.
TEST(memory_tier, sweep_drops_the_earliest_retain_until_first) {
    memory_tier t(mib);
    ASSERT_EQ(t.shard_count(), 1u);
    const auto base = clock::now() + 1h;
    std::vector<int> minutes(200);
    std::iota(minutes.begin(), minutes.end(), 1);
    std::shuffle(minutes.begin(), minutes.end(), std::mt19937(5));
    for (const int m : minutes) {
        ASSERT_TRUE(t.put(key_of(m), entry_until(base + std::chrono::minutes(m))));
    }
    for (int round = 1; round <= 20; ++round) {
        ASSERT_EQ(t.sweep(base + 1000min, 10), 10u);
        for (int m = 1; m <= 200; ++m) {
            // get() at `base` is before every retain_until, so it drops nothing.
            ASSERT_EQ(t.get(key_of(m), base) == nullptr, m <= round * 10) << "round " << round << ", minute " << m;
        }
    }
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
    EXPECT_EQ(t.evictions(), 0u);
}

// Random puts (with new TTLs for existing keys) and removes between sweeps at an
// advancing time: each sweep drops exactly the entries a model says have expired.
TEST(memory_tier, sweep_matches_a_model_under_random_replaces_and_removes) {
    memory_tier t(64 * mib);  // 16 shards; nothing is evicted
    const auto base = clock::now() + 1h;
    std::map<std::string, clock::time_point> model;
    std::mt19937 rng(3);
    auto swept_to = base;
    for (int step = 0; step < 6000; ++step) {
        const std::string key = key_of(static_cast<int>(rng() % 300));
        switch (rng() % 5) {
        case 0:
        case 1:
        case 2: {
            const auto until = swept_to + std::chrono::seconds(1 + rng() % 7200);
            ASSERT_TRUE(t.put(key, entry_until(until, rng() % 200)));
            model[key] = until;
            break;
        }
        case 3:
            ASSERT_EQ(t.remove(key), model.erase(key) == 1) << "step " << step;
            break;
        default: {
            swept_to += std::chrono::seconds(rng() % 600);
            const auto expected = std::erase_if(model, [&](const auto& kv) { return kv.second <= swept_to; });
            ASSERT_EQ(t.sweep(swept_to, unlimited), expected) << "step " << step;
            break;
        }
        }
        ASSERT_EQ(t.usage().entries, model.size()) << "step " << step;
    }
    for (const auto& [key, until] : model) {
        EXPECT_NE(t.get(key, swept_to), nullptr) << key;
        EXPECT_EQ(t.get(key, until), nullptr) << key << " is dropped exactly at its retain_until";
    }
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.evictions(), 0u);
}

TEST(memory_tier, replacing_an_entry_takes_the_new_retain_until) {
    memory_tier t(mib);
    const auto base = clock::now() + 1h;
    ASSERT_TRUE(t.put("sooner", entry_until(base + 2h)));
    ASSERT_TRUE(t.put("later", entry_until(base + 1min)));
    const auto sooner = entry_until(base + 1min);
    const auto later = entry_until(base + 2h, 500);
    ASSERT_TRUE(t.put("sooner", sooner));
    ASSERT_TRUE(t.put("later", later));
    EXPECT_EQ(t.usage().entries, 2u);
    EXPECT_EQ(t.usage().bytes, sooner->footprint("sooner") + later->footprint("later"));

    EXPECT_EQ(t.sweep(base + 30min, unlimited), 1u);
    EXPECT_EQ(t.get("sooner", base), nullptr);
    EXPECT_EQ(t.get("later", base), later) << "the replaced entry's old retain_until must not drop the new one";
    EXPECT_EQ(t.sweep(base + 2h - 1ns, unlimited), 0u);
    EXPECT_EQ(t.sweep(base + 2h, unlimited), 1u);
    EXPECT_EQ(t.usage().entries, 0u);
    EXPECT_EQ(t.usage().bytes, 0u);
}

// Expiring entries at several times, all more recently used than any live one: room
// for new entries comes from every expired one before a single live eviction, and
// then from the least recently used live entry.
TEST(memory_tier, making_room_takes_every_expired_entry_before_any_live_one) {
    constexpr int n = 20;
    const std::size_t fp = entry_until(clock::now())->footprint(key_of(0));
    memory_tier t(n * fp + fp / 2);
    ASSERT_EQ(t.shard_count(), 1u);
    const auto now = clock::now();
    const auto soon = now + 300ms;
    int expiring = 0;
    for (int i = 0; i < n; ++i) {
        const bool expires = i % 3 == 0;
        expiring += expires ? 1 : 0;
        const auto until = expires ? soon + std::chrono::milliseconds(i) : now + 1h + std::chrono::minutes(n - i);
        ASSERT_TRUE(t.put(key_of(i), entry_until(until)));
    }
    ASSERT_EQ(t.usage().entries, static_cast<std::uint64_t>(n)) << "the machine stalled past `soon`; the test is void";
    for (int i = 0; i < n; i += 3) {
        ASSERT_NE(t.get(key_of(i)), nullptr);  // plain LRU would now evict live entries first
    }
    std::this_thread::sleep_until(soon + 100ms);

    for (int j = 0; j < expiring; ++j) {
        ASSERT_TRUE(t.put(key_of(100 + j), entry_until(now + 3h)));
        ASSERT_EQ(t.evictions(), 0u) << "put #" << j << " evicted a live entry while an expired one was held";
        ASSERT_EQ(t.usage().entries, static_cast<std::uint64_t>(n));
    }
    ASSERT_TRUE(t.put(key_of(200), entry_until(now + 3h)));
    EXPECT_EQ(t.evictions(), 1u);
    EXPECT_EQ(t.get(key_of(1)), nullptr) << "the least recently used live entry goes first";
    for (int i = 2; i < n; ++i) {
        EXPECT_EQ(t.get(key_of(i)) != nullptr, i % 3 != 0) << i;
    }
}

// remove and remove_all must leave the hash table, LRU list and expiry heap ready for
// reuse: each round repeats the same checks on the same tier.
TEST(memory_tier, works_as_new_after_remove_and_remove_all) {
    const std::size_t fp = entry_until(clock::now())->footprint(key_of(0));
    memory_tier t(10 * fp);
    ASSERT_EQ(t.shard_count(), 1u);
    for (int round = 0; round < 3; ++round) {
        const auto base = clock::now() + 1h;
        auto until = [&](int i) { return base + std::chrono::minutes(i); };
        for (int i = 0; i < 10; ++i) {
            ASSERT_TRUE(t.put(key_of(i), entry_until(until(i))));
        }
        ASSERT_EQ(t.usage().entries, 10u);
        ASSERT_TRUE(t.remove(key_of(3)));
        ASSERT_FALSE(t.remove(key_of(3)));
        const auto again = entry_until(until(3));
        ASSERT_TRUE(t.put(key_of(3), again));  // now the most recently used
        EXPECT_EQ(t.get(key_of(3)), again);

        ASSERT_TRUE(t.put(key_of(10), entry_until(until(10))));
        EXPECT_EQ(t.evictions(), static_cast<std::uint64_t>(round + 1));
        EXPECT_EQ(t.get(key_of(0)), nullptr) << "round " << round << ": 0 was least recently used";

        EXPECT_EQ(t.sweep(until(5), unlimited), 5u) << "round " << round;  // 1..5
        EXPECT_EQ(t.usage().entries, 5u);
        EXPECT_EQ(t.usage().bytes, 5 * fp);
        for (int i = 6; i <= 10; ++i) {
            EXPECT_NE(t.get(key_of(i), base), nullptr) << i;
        }

        t.remove_all();
        EXPECT_EQ(t.usage().entries, 0u);
        EXPECT_EQ(t.usage().bytes, 0u);
        for (int i = 0; i <= 10; ++i) {
            EXPECT_EQ(t.get(key_of(i), base), nullptr) << i;
        }
        EXPECT_EQ(t.sweep(until(100), unlimited), 0u);
    }
}

}  // namespace
