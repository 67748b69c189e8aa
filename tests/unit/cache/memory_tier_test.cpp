#include <cachecar/cache/memory/memory_tier.hpp>

#include "tier_conformance.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <map>
#include <random>
#include <string>
#include <thread>
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

}  // namespace
