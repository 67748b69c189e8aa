#include <cachecar/cache/generations.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <future>
#include <limits>
#include <numeric>
#include <string>
#include <thread>
#include <vector>

namespace {

using cachecar::cache::all_category;
using cachecar::cache::category_stamp;
using cachecar::cache::local_generation_store;
using cachecar::cache::make_stamps;
using cachecar::cache::with_all_category;

template <class T>
T run(cachecar::net::awaitable<T> op) {
    cachecar::net::io_context io;
    auto done = cachecar::net::co_spawn(io, std::move(op), cachecar::net::use_future);
    io.run();  // the local store completes without waiting on anything
    return done.get();
}

const std::string all(all_category);

TEST(local_generation_store, unknown_category_is_generation_zero) {
    local_generation_store store;
    EXPECT_EQ(store.get("videos"), 0u);
    EXPECT_EQ(store.get(all_category), 0u);
    const auto current = run(store.current({"a", "b"}));
    ASSERT_TRUE(current.has_value());
    EXPECT_EQ(*current, (std::vector<std::uint64_t>{0, 0}));
}

TEST(local_generation_store, bump_increments_and_returns_the_new_value) {
    local_generation_store store;
    EXPECT_EQ(store.bump_one("videos"), 1u);
    EXPECT_EQ(store.bump_one("videos"), 2u);
    EXPECT_EQ(store.get("videos"), 2u);
    EXPECT_EQ(store.get("search"), 0u) << "other categories are untouched";
    EXPECT_EQ(store.get_all({"search", "videos", "search"}), (std::vector<std::uint64_t>{0, 2, 0}));
}

TEST(local_generation_store, awaitable_bump_and_current) {
    local_generation_store store;
    const auto bumped = run(store.bump({"a", "b", "a"}));
    ASSERT_TRUE(bumped.has_value());
    EXPECT_EQ(*bumped, (std::vector<std::uint64_t>{1, 1, 2})) << "a listed twice is bumped twice";
    const auto current = run(store.current({"b", "a", "c"}));
    ASSERT_TRUE(current.has_value());
    EXPECT_EQ(*current, (std::vector<std::uint64_t>{1, 2, 0}));
    EXPECT_EQ(*run(store.bump({})), std::vector<std::uint64_t>{});
}

TEST(local_generation_store, still_valid_until_a_stamped_category_is_bumped) {
    local_generation_store store;
    store.bump_one("videos");
    const auto categories = with_all_category({"videos", "video:42"});
    const auto stamps = make_stamps(categories, store.get_all(categories));
    EXPECT_TRUE(store.still_valid(stamps));

    store.bump_one("search");
    EXPECT_TRUE(store.still_valid(stamps)) << "an unrelated purge";

    store.bump_one("video:42");
    EXPECT_FALSE(store.still_valid(stamps));
    EXPECT_FALSE(store.still_valid(stamps)) << "and it stays invalid";
}

TEST(local_generation_store, bumping_all_category_invalidates_everything) {
    local_generation_store store;
    const auto a = make_stamps(with_all_category({"videos"}), store.get_all(with_all_category({"videos"})));
    const auto b = make_stamps(with_all_category({}), store.get_all(with_all_category({})));
    ASSERT_TRUE(store.still_valid(a));
    ASSERT_TRUE(store.still_valid(b));
    store.bump_one(all_category);
    EXPECT_FALSE(store.still_valid(a));
    EXPECT_FALSE(store.still_valid(b));

    // Entries stamped after the purge-all are valid again.
    const auto c = make_stamps(with_all_category({"videos"}), store.get_all(with_all_category({"videos"})));
    EXPECT_TRUE(store.still_valid(c));
}

TEST(local_generation_store, still_valid_compares_every_stamp) {
    local_generation_store store;
    store.bump_one("a");
    store.bump_one("b");
    EXPECT_TRUE(store.still_valid({{"a", 1}, {"b", 1}, {"c", 0}, {all, 0}}));
    EXPECT_FALSE(store.still_valid({{"a", 1}, {"b", 0}, {all, 0}})) << "older generation";
    EXPECT_FALSE(store.still_valid({{"a", 2}, {"b", 1}, {all, 0}})) << "a generation from the future";
    EXPECT_FALSE(store.still_valid({{"a", 1}, {"c", 1}, {all, 0}}));
    EXPECT_TRUE(store.still_valid({})) << "vacuously; make_stamps never produces this";
}

TEST(make_stamps, with_all_category_appends_star_once) {
    EXPECT_EQ(with_all_category({}), std::vector<std::string>{all});
    EXPECT_EQ(with_all_category({"videos", "video:1"}), (std::vector<std::string>{"videos", "video:1", all}));
    EXPECT_EQ(with_all_category({all, "x"}), (std::vector<std::string>{all, "x"})) << "already present";
    EXPECT_EQ(with_all_category({"x", all}), (std::vector<std::string>{"x", all}));
}

TEST(make_stamps, zips_categories_and_generations) {
    const auto stamps = make_stamps({"videos", "video:1", all}, {4, 0, 9});
    ASSERT_EQ(stamps.size(), 3u);
    EXPECT_EQ(stamps[0].category, "videos");
    EXPECT_EQ(stamps[0].generation, 4u);
    EXPECT_EQ(stamps[1].category, "video:1");
    EXPECT_EQ(stamps[1].generation, 0u);
    EXPECT_EQ(stamps[2].category, all);
    EXPECT_EQ(stamps[2].generation, 9u);
}

TEST(make_stamps, always_includes_all_category) {
    for (const auto& categories : std::vector<std::vector<std::string>>{{}, {"a"}, {"a", "b"}, {all}, {"a", all}}) {
        const auto full = with_all_category(categories);
        const auto stamps = make_stamps(full, std::vector<std::uint64_t>(full.size(), 0));
        EXPECT_EQ(std::count_if(stamps.begin(), stamps.end(),
                                [](const category_stamp& s) { return s.category == all_category; }),
                  1)
            << categories.size();
    }
}

// A caller that forgot all_category, or passed too few generations, gets stamps that
// never validate: the entry is not served, rather than served across a purge.
TEST(make_stamps, broken_precondition_fails_closed) {
    local_generation_store store;
    constexpr auto unreachable = std::numeric_limits<std::uint64_t>::max();

    const auto no_star = make_stamps({"videos"}, {0});
    ASSERT_EQ(no_star.size(), 2u);
    EXPECT_EQ(no_star[1].category, all);
    EXPECT_EQ(no_star[1].generation, unreachable);
    EXPECT_FALSE(store.still_valid(no_star));

    const auto short_generations = make_stamps({"videos", all}, {0});
    ASSERT_EQ(short_generations.size(), 2u);
    EXPECT_EQ(short_generations[1].generation, unreachable);
    EXPECT_FALSE(store.still_valid(short_generations));

    const auto extra_generations = make_stamps({"videos", all}, {0, 0, 5});
    EXPECT_EQ(extra_generations.size(), 2u) << "surplus generations are ignored";
    EXPECT_TRUE(store.still_valid(extra_generations));
}

TEST(local_generation_store, concurrent_bumps_are_all_counted) {
    local_generation_store store;
    constexpr int threads = 8;
    constexpr int bumps = 2000;
    std::vector<std::vector<std::uint64_t>> seen(threads);
    std::vector<std::thread> pool;
    for (int t = 0; t < threads; ++t) {
        pool.emplace_back([&store, &seen, t] {
            seen[static_cast<std::size_t>(t)].reserve(bumps);
            for (int i = 0; i < bumps; ++i) {
                seen[static_cast<std::size_t>(t)].push_back(store.bump_one("shared"));
                store.bump_one("own:" + std::to_string(t));
            }
        });
    }
    for (auto& th : pool) {
        th.join();
    }
    EXPECT_EQ(store.get("shared"), std::uint64_t{threads} * bumps);
    for (int t = 0; t < threads; ++t) {
        EXPECT_EQ(store.get("own:" + std::to_string(t)), std::uint64_t{bumps});
    }
    // Every bump got its own new value: together they are exactly 1..N*M.
    std::vector<std::uint64_t> all_values;
    for (const auto& s : seen) {
        EXPECT_TRUE(std::is_sorted(s.begin(), s.end()));
        all_values.insert(all_values.end(), s.begin(), s.end());
    }
    std::sort(all_values.begin(), all_values.end());
    std::vector<std::uint64_t> expected(all_values.size());
    std::iota(expected.begin(), expected.end(), std::uint64_t{1});
    EXPECT_EQ(all_values, expected);
}

// Readers racing a multi-category bump see it whole or not at all, and generations
// never go backwards.
TEST(local_generation_store, readers_see_multi_category_bumps_whole) {
    local_generation_store store;
    constexpr int bumps = 3000;
    std::atomic<bool> done{false};
    std::atomic<int> torn{0};
    std::atomic<int> backwards{0};
    auto writer = std::async(std::launch::async, [&] {
        for (int i = 0; i < bumps; ++i) {
            (void)run(store.bump({"x", "y"}));
        }
        done = true;
    });
    std::vector<std::thread> readers;
    for (int r = 0; r < 3; ++r) {
        readers.emplace_back([&] {
            std::uint64_t last = 0;
            while (!done.load()) {
                const auto g = store.get_all({"x", "y"});
                if (g[0] != g[1]) {
                    ++torn;
                }
                if (g[0] < last) {
                    ++backwards;
                }
                last = g[0];
                (void)store.still_valid({{"x", g[0]}, {"y", g[1]}, {all, 0}});
            }
        });
    }
    writer.get();
    for (auto& th : readers) {
        th.join();
    }
    EXPECT_EQ(torn.load(), 0);
    EXPECT_EQ(backwards.load(), 0);
    EXPECT_EQ(store.get_all({"x", "y"}), (std::vector<std::uint64_t>{bumps, bumps}));
}

// Per-key categories ("video:{path.uuid}") make the category set as large as the key
// space; the store must stay bounded without ever validating a stamp across a purge.
TEST(local_generation_store, stays_bounded_and_a_reset_invalidates_every_earlier_stamp) {
    local_generation_store store(4);
    store.bump_one("videos");
    const auto categories = with_all_category({"videos"});
    const auto before = make_stamps(categories, store.get_all(categories));
    ASSERT_TRUE(store.still_valid(before));
    for (int i = 0; i < 3; ++i) store.bump_one("video:" + std::to_string(i));
    EXPECT_EQ(store.category_count(), 4u);
    EXPECT_TRUE(store.still_valid(before)) << "not full yet";

    store.bump_one("video:new");  // a fifth category: the store resets
    EXPECT_LE(store.category_count(), 4u);
    EXPECT_FALSE(store.still_valid(before)) << "a reset acts as a purge of everything";
    EXPECT_GT(store.get("video:0"), 1u) << "a forgotten purge must not fall back to 0";
    EXPECT_GT(store.get("video:new"), store.get("never-seen")) << "the bump is above the floor";

    const auto after = make_stamps(categories, store.get_all(categories));
    EXPECT_TRUE(store.still_valid(after)) << "entries stamped after the reset are valid";
    for (int i = 0; i < 1000; ++i) store.bump_one("k" + std::to_string(i));
    EXPECT_LE(store.category_count(), 4u);
}

TEST(local_generation_store, a_reset_never_splits_one_purge) {
    local_generation_store store(3);
    store.bump_one("a");
    store.bump_one("b");
    const auto bumped = run(store.bump({"c", "d"}));  // does not fit: reset first
    ASSERT_TRUE(bumped.has_value());
    EXPECT_EQ(*bumped, store.get_all({"c", "d"})) << "what bump returns is what readers see";
    EXPECT_GT(store.get("a"), 1u);
}

}  // namespace
