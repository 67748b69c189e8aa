#include <cachecar/cache/coalescer.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <future>
#include <set>
#include <thread>

namespace cachecar::cache {
namespace {

using namespace std::chrono_literals;

struct value {
    int n = 0;
    bool shareable = true;
};

class coalescer_test : public ::testing::Test {
protected:
    // Runs `count` concurrent callers for one key, each on its own strand of a
    // multi-threaded context, and returns what each got.
    std::vector<coalescer<value>::outcome> race(int count, bool shareable, std::chrono::milliseconds fetch_time,
                                                std::chrono::milliseconds wait_limit = 5s) {
        net::io_context io(4);
        auto work = net::make_work_guard(io);
        std::vector<std::thread> threads;
        for (int i = 0; i < 4; ++i) threads.emplace_back([&] { io.run(); });
        std::vector<std::future<coalescer<value>::outcome>> futures;
        for (int i = 0; i < count; ++i) {
            futures.push_back(net::co_spawn(
                net::make_strand(io),
                [&, shareable, fetch_time, wait_limit]() -> net::awaitable<coalescer<value>::outcome> {
                    auto fetch = [&, shareable, fetch_time]() -> net::awaitable<std::shared_ptr<const value>> {
                        const int n = ++fetches_;
                        net::steady_timer t(co_await net::this_coro::executor, fetch_time);
                        co_await t.async_wait(net::use_awaitable);
                        co_return std::make_shared<const value>(value{n, shareable});
                    };
                    // Named before co_return: see coalescer.hpp (GCC 12 and co_await).
                    auto got = co_await coalescer_.run("k", std::chrono::steady_clock::now() + wait_limit, fetch,
                                                       [](const value& v) { return v.shareable; });
                    co_return got;
                },
                net::use_future));
            std::this_thread::sleep_for(1ms);
        }
        std::vector<coalescer<value>::outcome> out;
        for (auto& f : futures) out.push_back(f.get());
        work.reset();
        for (auto& t : threads) t.join();
        return out;
    }

    coalescer<value> coalescer_;
    std::atomic<int> fetches_{0};
};

TEST_F(coalescer_test, concurrent_callers_share_one_fetch) {
    auto outcomes = race(16, true, 200ms);
    EXPECT_EQ(fetches_.load(), 1);
    int leaders = 0;
    for (const auto& o : outcomes) {
        ASSERT_NE(o.value, nullptr);
        EXPECT_EQ(o.value->n, 1);
        leaders += o.led ? 1 : 0;
    }
    EXPECT_EQ(leaders, 1);
    EXPECT_EQ(coalescer_.in_flight(), 0u);
}

TEST_F(coalescer_test, unshareable_result_makes_waiters_fetch_their_own) {
    auto outcomes = race(8, false, 100ms);
    EXPECT_EQ(fetches_.load(), 8);
    std::set<int> seen;
    for (const auto& o : outcomes) {
        ASSERT_NE(o.value, nullptr);
        EXPECT_TRUE(o.led);
        seen.insert(o.value->n);
    }
    EXPECT_EQ(seen.size(), 8u) << "each caller must get its own response";
}

TEST_F(coalescer_test, waiter_past_its_deadline_fetches_itself) {
    auto outcomes = race(3, true, 300ms, 50ms);
    EXPECT_EQ(fetches_.load(), 3);
    for (const auto& o : outcomes) EXPECT_NE(o.value, nullptr);
}

TEST_F(coalescer_test, later_callers_start_a_new_flight) {
    race(4, true, 50ms);
    race(4, true, 50ms);
    EXPECT_EQ(fetches_.load(), 2);
}

}  // namespace
}  // namespace cachecar::cache
