// tier_chain over a scripted shared tier and generation store: which reads a lookup
// makes, in what order, and what it serves.
#include <cachecar/cache/tier_chain.hpp>

#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <map>
#include <string>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace net = cachecar::net;
namespace cache = cachecar::cache;
using cachecar::error_code;
using cachecar::result;
using cachecar::config::tier_kind;

// Every awaited operation below takes a little (timer) time, as a network round trip
// would, and appends "<op> start" / "<op> end" to a shared log: the log shows what ran
// concurrently.
net::awaitable<void> round_trip() {
    net::steady_timer t(co_await net::this_coro::executor, 20ms);
    co_await t.async_wait(net::use_awaitable);
}

class scripted_tier final : public cache::tier {
public:
    explicit scripted_tier(std::vector<std::string>& log) : log_(log) {}
    std::map<std::string, cache::entry_ptr> entries;
    int erased = 0;

    tier_kind kind() const override { return tier_kind::redis; }
    net::awaitable<result<cache::entry_ptr>> lookup(std::string key) override {
        log_.push_back("lookup start");
        co_await round_trip();
        log_.push_back("lookup end");
        const auto it = entries.find(key);
        co_return it == entries.end() ? cache::entry_ptr{} : it->second;
    }
    net::awaitable<error_code> store(std::string key, cache::entry_ptr e) override {
        entries[key] = std::move(e);
        co_return error_code{};
    }
    net::awaitable<error_code> erase(std::string key) override {
        ++erased;
        entries.erase(key);
        co_return error_code{};
    }
    net::awaitable<error_code> clear() override {
        entries.clear();
        co_return error_code{};
    }
    cache::tier_state state() const override { return cache::tier_state::up; }
    cache::tier_usage usage() const override { return {}; }

private:
    std::vector<std::string>& log_;
};

// Generations kept locally but answered like a shared store: after a round trip, and
// never from a local copy.
class scripted_generations final : public cache::generation_store {
public:
    explicit scripted_generations(std::vector<std::string>& log) : log_(log) {}
    cache::local_generation_store values;
    bool failing = false;
    int reads = 0;

    net::awaitable<result<std::vector<std::uint64_t>>> current(std::vector<std::string> categories) override {
        ++reads;
        log_.push_back("generations start");
        co_await round_trip();
        log_.push_back("generations end");
        if (failing) co_return make_error_code(boost::system::errc::connection_refused);
        co_return values.get_all(categories);
    }
    net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) override {
        auto bumped = co_await values.bump(std::move(categories));  // named: GCC 12 (see coalescer.hpp)
        co_return bumped;
    }

private:
    std::vector<std::string>& log_;
};

class tier_chain_test : public ::testing::Test {
protected:
    tier_chain_test() {
        chain_.set_tier(tier_kind::redis, shared_);
    }

    // An entry fresh for an hour, stamped with `categories` at their current generations.
    cache::entry_ptr stamped(const std::vector<std::string>& categories) {
        auto e = std::make_shared<cache::entry>();
        e->body = "stored";
        e->stored_at = cache::clock::now();
        e->expires_at = e->stored_at + 1h;
        e->retain_until = e->expires_at;
        e->stamps = cache::make_stamps(categories, generations_->values.get_all(categories));
        return e;
    }

    cache::tier_chain::lookup_outcome lookup(const std::string& key, const std::vector<std::string>* categories) {
        log_.clear();
        auto done = net::co_spawn(io_, chain_.lookup(order_, key, categories), net::use_future);
        io_.restart();
        io_.run();
        return done.get();
    }

    std::size_t position(const std::string& event) const {
        return static_cast<std::size_t>(std::find(log_.begin(), log_.end(), event) - log_.begin());
    }

    net::io_context io_;
    std::vector<std::string> log_;
    cachecar::stats::registry metrics_;
    std::shared_ptr<scripted_tier> shared_ = std::make_shared<scripted_tier>(log_);
    std::shared_ptr<scripted_generations> generations_ = std::make_shared<scripted_generations>(log_);
    cache::tier_chain chain_{io_.get_executor(), std::make_shared<cache::memory_tier>(1u << 20), generations_,
                             metrics_};
    const std::vector<tier_kind> order_{tier_kind::redis};
    const std::vector<std::string> categories_ = cache::with_all_category({"videos", "video:42"});
};

TEST_F(tier_chain_test, SharedTierHitReadsEntryAndGenerationsInOneRoundTrip) {
    shared_->entries["k"] = stamped(categories_);
    const auto out = lookup("k", &categories_);
    ASSERT_TRUE(out.fresh);
    EXPECT_EQ(out.fresh->body, "stored");
    EXPECT_EQ(out.from, tier_kind::redis);
    EXPECT_EQ(generations_->reads, 1);
    // Both reads were under way before either answered.
    EXPECT_LT(position("generations start"), position("lookup end")) << testing::PrintToString(log_);
    EXPECT_LT(position("lookup start"), position("generations end")) << testing::PrintToString(log_);
}

TEST_F(tier_chain_test, WithoutCategoriesTheGenerationsAreReadAfterTheEntry) {
    shared_->entries["k"] = stamped(categories_);
    const auto out = lookup("k", nullptr);
    ASSERT_TRUE(out.fresh);
    EXPECT_FALSE(out.generations);
    EXPECT_EQ(generations_->reads, 1);
    EXPECT_GT(position("generations start"), position("lookup end")) << testing::PrintToString(log_);
}

TEST_F(tier_chain_test, SharedTierEntryPurgedSinceItsFillIsNotServedAndIsErased) {
    shared_->entries["k"] = stamped(categories_);
    generations_->values.bump_one("video:42");
    const auto out = lookup("k", &categories_);
    EXPECT_FALSE(out.fresh);
    EXPECT_FALSE(out.expired);
    EXPECT_EQ(shared_->erased, 1);
    EXPECT_EQ(generations_->reads, 1);
}

TEST_F(tier_chain_test, EntryStampedWithOtherCategoriesIsCheckedExactly) {
    // Stored under an older version of the route (before a reload changed its
    // categories): the concurrent read does not cover its stamps, so it is checked on
    // its own -- and a purge of one of its own categories still hides it.
    const auto old_categories = cache::with_all_category({"legacy"});
    shared_->entries["k"] = stamped(old_categories);
    auto out = lookup("k", &categories_);
    ASSERT_TRUE(out.fresh);
    EXPECT_EQ(generations_->reads, 2);

    generations_->values.bump_one("legacy");
    out = lookup("k", &categories_);
    EXPECT_FALSE(out.fresh);
    EXPECT_EQ(shared_->erased, 1);
}

TEST_F(tier_chain_test, MissHandsBackTheGenerationsItRead) {
    generations_->values.bump_one("videos");
    generations_->values.bump_one("videos");
    const auto out = lookup("absent", &categories_);
    EXPECT_FALSE(out.fresh);
    ASSERT_TRUE(out.generations);
    ASSERT_TRUE(*out.generations);
    EXPECT_EQ(**out.generations, generations_->values.get_all(categories_));
    EXPECT_EQ((**out.generations)[0], 2u);
}

TEST_F(tier_chain_test, GenerationStoreFailureNeverServesTheEntry) {
    shared_->entries["k"] = stamped(categories_);
    generations_->failing = true;
    const auto out = lookup("k", &categories_);
    EXPECT_FALSE(out.fresh);
    ASSERT_TRUE(out.generations);
    EXPECT_FALSE(*out.generations);
}

}  // namespace
