#include <cachecar/cache/generation_cache.hpp>

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace {

using cachecar::cache::generation_cache;

// The local copy of shared generations learns a category per key for per-key
// categories; it must stay bounded, and forgetting must only ever mean "ask the store".
TEST(generation_cache, stays_bounded_and_forgets_to_unknown) {
    generation_cache cache(3);
    cache.raise("videos", 5);
    cache.raise("a", 1);
    cache.raise("b", 1);
    EXPECT_EQ(cache.validate({{"videos", 5}}), std::optional<bool>(true));
    cache.raise("videos", 6);  // known: no reset
    EXPECT_EQ(cache.known_count(), 3u);
    EXPECT_EQ(cache.validate({{"videos", 5}}), std::optional<bool>(false));

    cache.raise("c", 1);  // a fourth category
    EXPECT_LE(cache.known_count(), 3u);
    EXPECT_EQ(cache.validate({{"videos", 5}}), std::nullopt) << "forgotten: ask the store, never 'valid'";
    for (int i = 0; i < 1000; ++i) cache.raise("k" + std::to_string(i), 1);
    EXPECT_LE(cache.known_count(), 3u);
}

TEST(generation_cache, pending_purges_survive_a_reset) {
    generation_cache cache(2);
    cache.add_pending({"videos"});
    for (int i = 0; i < 10; ++i) cache.raise("k" + std::to_string(i), 1);
    EXPECT_EQ(cache.pending_count(), 1u);
    EXPECT_EQ(cache.validate({{"k9", 1}}), std::optional<bool>(false)) << "a pending purge blocks local answers";
}

// While the store is unreachable every write adds a pending purge; the retry must not
// grow with them. Beyond the bound they become one purge of everything.
TEST(generation_cache, pending_purges_collapse_into_a_purge_of_everything) {
    const std::string all(cachecar::cache::all_category);
    generation_cache cache(16, 4);
    cache.add_pending({"videos", "videos", "video:1"});
    EXPECT_EQ(cache.pending(), (std::vector<std::string>{"video:1", "videos", "videos"}));
    const auto in_flight = cache.pending();  // a flush takes these

    cache.add_pending({"video:2", "video:3"});  // over the bound
    EXPECT_EQ(cache.pending(), std::vector<std::string>{all});
    cache.add_pending({all, "video:4"});  // again, with a purge-all pending
    EXPECT_EQ(cache.pending(), (std::vector<std::string>{all, all, "video:4"}));
    cache.add_pending({"video:5", "video:6"});
    EXPECT_EQ(cache.pending(), (std::vector<std::string>{all, all, all}))
        << "pending purges of everything are kept, one per collapse";

    cache.settle(in_flight);  // the earlier flush lands: nothing of the collapse is settled
    EXPECT_EQ(cache.pending_count(), 3u);
    cache.settle({all});
    EXPECT_EQ(cache.pending_count(), 2u);
}

}  // namespace
