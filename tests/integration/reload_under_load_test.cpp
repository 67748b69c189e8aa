// Reloads while clients keep sending: nothing may fail, in-flight requests finish on
// the config they started with, and a changed listen address is rebound.
#include "support/proxy_fixture.hpp"

#include <atomic>
#include <filesystem>
#include <fstream>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

class reload_under_load_test : public ::testing::Test {
protected:
    void write(const std::string& listen, const std::string& ttl, bool with_extra_route) {
        std::ofstream(path_) << "server:\n  listen: " << listen << "\n  admin_listen: 127.0.0.1:0\n  upstream: http://127.0.0.1:"
                             << origin_.port() << "\n  threads: 2\n"
                             << "routes:\n  - name: items\n    match: GET /items\n    tiers: [memory]\n    ttl: " << ttl
                             << "\n    categories: [items]\n"
                             << (with_extra_route ? "  - name: extra\n    match: GET /extra\n    tiers: [memory]\n    ttl: 5m\n" : "")
                             << "invalidate:\n  - match: POST /items\n    purge: [items]\n";
    }
    void start() {
        auto loaded = config::load_file(path_);
        ASSERT_TRUE(loaded.value);
        cachecar_ = std::make_unique<app>(std::move(*loaded.value));
        cachecar_->start();
    }
    void TearDown() override {
        if (cachecar_) cachecar_->stop();
        std::filesystem::remove(path_);
    }
    static std::uint16_t free_port() {
        net::io_context io;
        net::ip::tcp::acceptor a(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
        return a.local_endpoint().port();
    }

    std::string path_ =
        (std::filesystem::temp_directory_path() / ("cachecar-rul-" + std::to_string(::getpid()) + ".yaml")).string();
    test_origin origin_;
    std::unique_ptr<app> cachecar_;
};

TEST_F(reload_under_load_test, NoRequestFailsWhileReloading) {
    write("127.0.0.1:0", "5m", false);
    start();
    const auto port = cachecar_->port();
    std::atomic<bool> stop{false};
    std::atomic<int> ok{0};
    std::vector<std::string> failures;
    std::mutex failures_mutex;
    std::vector<std::thread> clients;
    for (int t = 0; t < 4; ++t) {
        clients.emplace_back([&, t] {
            // Half the clients keep one connection, half open one per request.
            std::unique_ptr<http_session> session = t % 2 ? std::make_unique<http_session>(port) : nullptr;
            for (int i = 0; !stop; ++i) {
                const auto target = (i % 3 == 0 ? std::string("/extra") : std::string("/items")) + "?k=" + std::to_string(i % 7);
                auto r = session ? session->request("GET", target) : http_get(port, target);
                if (session && !session->is_open()) session = std::make_unique<http_session>(port);
                if (r.status == 200) {
                    ++ok;
                } else {
                    std::lock_guard lock(failures_mutex);
                    failures.push_back(target + " -> " + std::to_string(r.status));
                }
            }
        });
    }
    for (int round = 0; round < 10; ++round) {
        std::this_thread::sleep_for(50ms);
        write("127.0.0.1:0", round % 2 ? "5m" : "1s", round % 2 == 0);
        auto outcome = cachecar_->reload();
        EXPECT_TRUE(outcome.ok) << (outcome.errors.empty() ? "" : outcome.errors[0]);
    }
    std::this_thread::sleep_for(50ms);
    stop = true;
    for (auto& c : clients) c.join();
    EXPECT_TRUE(failures.empty()) << failures.size() << " failed, first: " << failures.front();
    EXPECT_GT(ok.load(), 100);
}

TEST_F(reload_under_load_test, InFlightRequestsFinishOnTheConfigTheyStartedWith) {
    write("127.0.0.1:0", "5m", true);
    start();
    origin_.set_handler([](const origin_request&, std::size_t n) { return origin_response{200, {}, "v" + std::to_string(n), 400ms}; });
    client_response in_flight;
    std::thread t([&] { in_flight = http_get(cachecar_->port(), "/extra"); });
    std::this_thread::sleep_for(100ms);
    write("127.0.0.1:0", "5m", false);  // /extra is no longer a route
    ASSERT_TRUE(cachecar_->reload().ok);
    t.join();
    EXPECT_EQ(in_flight.status, 200u);
    EXPECT_EQ(in_flight.header("x-cache"), "MISS") << "answered under the old config, where /extra was cached";
    EXPECT_EQ(http_get(cachecar_->port(), "/extra").header("x-cache"), "") << "new requests use the new config";
}

TEST_F(reload_under_load_test, ChangedListenAddressIsReboundWithoutDroppingConnections) {
    const auto first = free_port();
    write("127.0.0.1:" + std::to_string(first), "5m", false);
    start();
    http_session established(first);
    EXPECT_EQ(established.request("GET", "/items").status, 200u);

    const auto second = free_port();
    write("127.0.0.1:" + std::to_string(second), "5m", false);
    auto outcome = cachecar_->reload();
    ASSERT_TRUE(outcome.ok) << (outcome.errors.empty() ? "" : outcome.errors[0]);
    EXPECT_EQ(cachecar_->port(), second);
    EXPECT_EQ(http_get(second, "/items").status, 200u);
    EXPECT_EQ(http_get(first, "/items").status, 0u) << "the old address no longer accepts";
    EXPECT_EQ(established.request("GET", "/items").status, 200u) << "an open connection keeps working";

    // An address that cannot be bound rejects the reload and changes nothing.
    net::io_context io;
    net::ip::tcp::acceptor squatter(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    write("127.0.0.1:" + std::to_string(squatter.local_endpoint().port()), "5m", true);
    auto rejected = cachecar_->reload();
    EXPECT_FALSE(rejected.ok);
    ASSERT_FALSE(rejected.errors.empty());
    EXPECT_NE(rejected.errors[0].find("cannot listen"), std::string::npos) << rejected.errors[0];
    EXPECT_EQ(http_get(second, "/extra").header("x-cache"), "") << "the rejected config's routes did not apply";
}

}  // namespace
}  // namespace cachecar::test
