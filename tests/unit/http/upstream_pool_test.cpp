// upstream_pool against a real test backend: which connections it keeps for reuse.
#include <cachecar/http/upstream_pool.hpp>

#include "support/test_origin.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <thread>
#include <vector>

namespace {

using namespace std::chrono_literals;
namespace net = cachecar::net;
namespace http = cachecar::http;

http::request get(const char* target) {
    http::request req{cachecar::beast::http::verb::get, target, 11};
    req.set(cachecar::beast::http::field::host, "origin");
    return req;
}

class upstream_pool_test : public ::testing::Test {
protected:
    upstream_pool_test() {
        http::upstream_options o;
        o.target.host = "127.0.0.1";
        o.target.port = origin_.port();
        o.timeout = 5s;
        o.max_idle_age = 300ms;
        pool_ = std::make_shared<http::upstream_pool>(io_.get_executor(), o);
        thread_ = std::thread([this] { io_.run(); });
    }
    ~upstream_pool_test() override {
        work_.reset();
        thread_.join();
    }

    std::future<http::response> send(const char* target) {
        return net::co_spawn(
            io_,
            [pool = pool_, req = get(target)]() -> net::awaitable<http::response> {
                auto r = co_await pool->send(req);
                if (!r) throw std::system_error(r.error());
                co_return std::move(*r);
            },
            net::use_future);
    }

    cachecar::test::test_origin origin_;
    net::io_context io_;
    net::executor_work_guard<net::io_context::executor_type> work_ = net::make_work_guard(io_);
    std::shared_ptr<http::upstream_pool> pool_;
    std::thread thread_;
};

TEST_F(upstream_pool_test, ConnectionsOfABurstAreClosedOnceIdlePastTheirAge) {
    // Three slow answers at once: three connections, all kept for reuse.
    origin_.set_handler([](const cachecar::test::origin_request&, std::size_t seq) {
        cachecar::test::origin_response r;
        r.body = "ok";
        if (seq <= 3) r.delay = 100ms;
        return r;
    });
    std::vector<std::future<http::response>> burst;
    for (int i = 0; i < 3; ++i) burst.push_back(send("/burst"));
    for (auto& f : burst) EXPECT_EQ(f.get().result_int(), 200u);
    EXPECT_EQ(pool_->idle_count(), 3u);

    // Then one request at a time for longer than max_idle_age: each reuses the most
    // recently returned connection, so the other two are never used again and must be
    // closed rather than held (a backend closing them would leave them in CLOSE-WAIT).
    const auto until = std::chrono::steady_clock::now() + 700ms;
    while (std::chrono::steady_clock::now() < until) {
        EXPECT_EQ(send("/steady").get().result_int(), 200u);
        std::this_thread::sleep_for(50ms);
    }
    EXPECT_EQ(pool_->idle_count(), 1u);
    EXPECT_EQ(origin_.count("/steady"), origin_.count() - 3);
}

TEST_F(upstream_pool_test, SequentialRequestsShareOneConnection) {
    for (int i = 0; i < 5; ++i) EXPECT_EQ(send("/seq").get().body(), "GET /seq #" + std::to_string(i + 1));
    EXPECT_EQ(pool_->idle_count(), 1u);
}

}  // namespace
