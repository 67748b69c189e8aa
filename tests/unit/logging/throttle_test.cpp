// logging::throttle keeps an outage from flooding the log: one line per interval,
// with the count of lines held back.
#include <cachecar/logging.hpp>

#include <gtest/gtest.h>

#include <thread>

using cachecar::logging::throttle;
using namespace std::chrono_literals;

TEST(log_throttle, first_message_passes_then_one_per_interval) {
    throttle t(1h);
    EXPECT_EQ(t.admit(), std::optional<std::uint64_t>(0));
    for (int i = 0; i < 100; ++i) EXPECT_EQ(t.admit(), std::nullopt);
}

TEST(log_throttle, the_next_message_reports_how_many_were_held_back) {
    throttle t(200ms);
    ASSERT_EQ(t.admit(), std::optional<std::uint64_t>(0));
    for (int i = 0; i < 3; ++i) ASSERT_EQ(t.admit(), std::nullopt);
    std::this_thread::sleep_for(250ms);
    EXPECT_EQ(t.admit(), std::optional<std::uint64_t>(3));
    EXPECT_EQ(t.admit(), std::nullopt);  // and the window starts again
}

TEST(log_throttle, concurrent_callers_let_exactly_one_through_per_window) {
    throttle t(1h);
    std::atomic<int> admitted{0};
    std::vector<std::thread> threads;
    for (int i = 0; i < 8; ++i) {
        threads.emplace_back([&] {
            for (int j = 0; j < 1000; ++j) {
                if (t.admit()) ++admitted;
            }
        });
    }
    for (auto& th : threads) th.join();
    EXPECT_EQ(admitted.load(), 1);
}
