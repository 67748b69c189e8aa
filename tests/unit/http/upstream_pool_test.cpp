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

http::request get(const char* target, cachecar::beast::http::verb method = cachecar::beast::http::verb::get) {
    http::request req{method, target, 11};
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
    // The outcome itself, error or response.
    cachecar::result<http::response> try_send(const char* target,
                                              cachecar::beast::http::verb method = cachecar::beast::http::verb::get) {
        return net::co_spawn(
                   io_,
                   [pool = pool_, req = get(target, method)]() -> net::awaitable<cachecar::result<http::response>> {
                       auto r = co_await pool->send(req);
                       co_return r;
                   },
                   net::use_future)
            .get();
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

// Response desync: which answers leave a connection the next request may use. Each
// row's answer is followed (at once or a little later) by a complete fake response;
// the next request must go out on a fresh connection, or it would read the fake.
TEST_F(upstream_pool_test, NoConnectionIsReusedWhenBytesMayFollowTheAnswer) {
    using cachecar::beast::http::verb;
    const std::string fake = "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nFAKE";
    struct row {
        const char* shape;
        verb method;
        std::string answer;
        std::string late;
        bool reuse;
    };
    const std::vector<row> table{
        {"control: a plain 200", verb::get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", "", true},
        {"HEAD (frameworks send the body anyway)", verb::head, "HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\n", "FAKE", false},
        {"204", verb::get, "HTTP/1.1 204 No Content\r\n\r\n", fake, false},
        {"304", verb::get, "HTTP/1.1 304 Not Modified\r\n\r\n", fake, false},
        {"interim 100 before the answer", verb::get,
         "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake, false},
        {"bytes past Content-Length in the same write", verb::get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + fake, "", false},
        {"bytes past Content-Length while idle", verb::get, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake, false},
    };
    for (const auto& r : table) {
        pool_->close_idle();
        origin_.set_handler([&r](const cachecar::test::origin_request& req, std::size_t) {
            cachecar::test::origin_response out;
            if (req.target == "/next") {
                out.body = "real";
                return out;
            }
            out.fault = cachecar::test::origin_fault::raw_keep_open;
            out.body = r.answer;
            out.late_bytes = r.late;
            out.late_delay = 20ms;
            return out;
        });
        auto first = try_send("/first", r.method);
        ASSERT_TRUE(first) << r.shape << ": " << first.error().message();
        std::this_thread::sleep_for(100ms);  // the late bytes have arrived
        auto next = try_send("/next");
        ASSERT_TRUE(next) << r.shape << ": " << next.error().message();
        EXPECT_EQ(next->body(), "real") << r.shape;
        const auto seen = origin_.requests();
        ASSERT_GE(seen.size(), 2u);
        EXPECT_EQ(seen[seen.size() - 1].connection == seen[seen.size() - 2].connection, r.reuse) << r.shape;
    }
}

TEST_F(upstream_pool_test, AnswersAClientCouldReadDifferentlyAreBadResponses) {
    struct row {
        const char* shape;
        std::string answer;
    };
    const std::vector<row> table{
        {"status 600", "HTTP/1.1 600 Nope\r\nContent-Length: 0\r\n\r\n"},
        {"status 099", "HTTP/1.1 099 Nope\r\nContent-Length: 0\r\n\r\n"},
        {"status 000", "HTTP/1.1 000 Nope\r\nContent-Length: 0\r\n\r\n"},
        {"unsolicited 101", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"},
        {"Content-Length with Transfer-Encoding", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"Transfer-Encoding: gzip", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nxx"},
        {"two Transfer-Encoding lines", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
        {"obs-fold", "HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 0\r\n\r\n"},
        {"bare LF", "HTTP/1.1 200 OK\nContent-Length: 0\r\n\r\n"},
        {"a control character", std::string("HTTP/1.1 200 OK\r\nX-A: \x01\r\nContent-Length: 0\r\n\r\n")},
        {"nine interim responses", [] {
             std::string s;
             for (int i = 0; i < 9; ++i) s += "HTTP/1.1 103 Early Hints\r\n\r\n";
             return s + "HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n";
         }()},
    };
    for (const auto& r : table) {
        origin_.set_handler([&r](const cachecar::test::origin_request&, std::size_t) {
            cachecar::test::origin_response out;
            out.fault = cachecar::test::origin_fault::raw;
            out.body = r.answer;
            return out;
        });
        auto res = try_send("/x");
        ASSERT_FALSE(res) << r.shape << " was accepted";
        EXPECT_EQ(res.error(), http::make_error_code(http::upstream_error::bad_response)) << r.shape;
    }
    // Eight interim responses are still fine.
    origin_.set_handler([](const cachecar::test::origin_request&, std::size_t) {
        cachecar::test::origin_response out;
        out.fault = cachecar::test::origin_fault::raw;
        for (int i = 0; i < 8; ++i) out.body += "HTTP/1.1 103 Early Hints\r\n\r\n";
        out.body += "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        return out;
    });
    auto fine = try_send("/x");
    ASSERT_TRUE(fine);
    EXPECT_EQ(fine->body(), "ok");
}

}  // namespace
