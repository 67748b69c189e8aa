// Hostile and slow clients: headers trickled (slowloris), responses never read
// (slow read), and the connection bound. Each test holds real sockets against the
// running proxy and checks what a client and an operator would see.
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"

#include <boost/asio.hpp>

#include <chrono>
#include <string>
#include <thread>

namespace cachecar::test {
namespace {

namespace net = boost::asio;
using tcp = net::ip::tcp;
using namespace std::chrono_literals;

constexpr std::size_t big_body_bytes = std::size_t{8} << 20;

const std::string routes = R"(
limits:
  client_idle_timeout: 1s
  max_object_bytes: 16MiB
  max_connections: 6
routes:
  - name: videos
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
)";

class limits_test : public proxy_fixture {
protected:
    void SetUp() override {
        origin_.set_handler([](const origin_request& req, std::size_t) {
            origin_response res;
            res.body = req.target == "/big" ? std::string(big_body_bytes, 'b') : "ok";
            return res;
        });
        start(routes);
    }

    // A connected socket with a small receive buffer, so the proxy's writes stall as
    // soon as this client stops reading.
    tcp::socket connect_small_window(int receive_buffer = 4096) {
        tcp::socket sock(io_);
        sock.open(tcp::v4());
        sock.set_option(net::socket_base::receive_buffer_size(receive_buffer));
        sock.connect({net::ip::make_address("127.0.0.1"), cachecar_->port()});
        return sock;
    }

    double proxy_connections() {
        const auto metrics = admin("GET", "/metrics").body;
        const std::string name = "cachecar_connections{listener=\"proxy\"} ";
        const auto at = metrics.find(name);
        return at == std::string::npos ? -1 : std::stod(metrics.substr(at + name.size()));
    }

    // Reads until the peer closes or `limit` passes; returns the bytes read.
    static std::size_t drain(tcp::socket& sock, std::chrono::steady_clock::duration limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        std::size_t total = 0;
        char buf[65536];
        sock.non_blocking(true);
        while (std::chrono::steady_clock::now() < deadline) {
            boost::system::error_code ec;
            const auto n = sock.read_some(net::buffer(buf), ec);
            if (ec == net::error::would_block) {
                std::this_thread::sleep_for(5ms);
                continue;
            }
            if (ec) break;  // closed or reset by the proxy
            total += n;
        }
        return total;
    }

    net::io_context io_;
};

TEST_F(limits_test, HeadersTrickledByteByByteAreCutOffAtTheIdleTimeout) {
    auto sock = connect_small_window();
    const auto started = std::chrono::steady_clock::now();
    const std::string head = "GET /api/v1/videos HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    net::write(sock, net::buffer(head));
    // One byte every 100 ms keeps the connection "active" forever unless the deadline
    // covers the whole head rather than the gap between bytes. Once the proxy has
    // closed, a write is answered with a reset and the next one fails.
    boost::system::error_code ec;
    std::chrono::steady_clock::duration closed_after{};
    for (int i = 0; i < 80 && !ec; ++i) {
        std::this_thread::sleep_for(100ms);
        net::write(sock, net::buffer("a", 1), ec);
    }
    closed_after = std::chrono::steady_clock::now() - started;
    EXPECT_TRUE(ec) << "the proxy kept a trickling head open for 8 s";
    // 1 s idle timeout; generous slack for a loaded machine, far below the 8 s of trickle.
    EXPECT_LT(closed_after, 5s);
    // The proxy never answered the unfinished request, and it serves others after.
    EXPECT_EQ(get("/api/v1/videos").status, 200u);
}

TEST_F(limits_test, ClientThatStopsReadingIsCutOffAndItsConnectionReleased) {
    const double before = proxy_connections();
    auto sock = connect_small_window();
    net::write(sock, net::buffer(std::string("GET /big HTTP/1.1\r\nHost: x\r\n\r\n")));
    // Read nothing for well past the idle timeout: the proxy's write makes no progress.
    std::this_thread::sleep_for(3s);
    EXPECT_TRUE(eventually([&] { return proxy_connections() == before; }, 5s))
        << "the stalled connection was not released; connections=" << proxy_connections();
    // Whatever was in flight arrives, then the connection ends short of the response.
    const auto got = drain(sock, 5s);
    EXPECT_LT(got, big_body_bytes);
    // The proxy is healthy and serves the same response to a normal client.
    const auto ok = get("/big");
    EXPECT_EQ(ok.status, 200u);
    EXPECT_EQ(ok.body.size(), big_body_bytes);
}

TEST_F(limits_test, SlowButSteadyReaderGetsTheWholeResponse) {
    auto sock = connect_small_window(16384);
    net::write(sock, net::buffer(std::string("GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")));
    // At most 16 KiB every 5 ms (~3 MiB/s): 8 MiB takes well over the 1 s idle
    // timeout, so the deadline must restart while bytes move, or this client is cut
    // off mid-body. (The kernel wakes a writer only once a third of its send buffer
    // is free, so progress is seen in steps of up to ~1 MiB: hence not slower.)
    std::size_t total = 0;
    char buf[16384];
    const auto started = std::chrono::steady_clock::now();
    for (;;) {
        boost::system::error_code ec;
        total += sock.read_some(net::buffer(buf), ec);
        if (ec || std::chrono::steady_clock::now() - started > 30s) break;
        std::this_thread::sleep_for(5ms);
    }
    const auto took = std::chrono::steady_clock::now() - started;
    EXPECT_GT(total, big_body_bytes) << "head + body expected; got " << total << " bytes";
    EXPECT_GT(took, 1s) << "the read was not slower than the idle timeout; the test proves nothing";
}

TEST_F(limits_test, ConnectionsBeyondMaxConnectionsAreRefusedCleanlyAndCounted) {
    std::vector<std::unique_ptr<http_session>> held;
    for (int i = 0; i < 6; ++i) {
        held.push_back(std::make_unique<http_session>(cachecar_->port()));
        ASSERT_EQ(held.back()->request("GET", "/api/v1/videos").status, 200u);
    }
    for (int i = 0; i < 3; ++i) {
        const auto refused = raw_exchange(cachecar_->port(), "GET /api/v1/videos HTTP/1.1\r\nHost: x\r\n\r\n");
        EXPECT_EQ(refused.rfind("HTTP/1.1 503", 0), 0u) << refused;
        EXPECT_NE(refused.find("Retry-After: 1"), std::string::npos) << refused;
    }
    // The held connections are unaffected by the refusals.
    for (auto& s : held) EXPECT_EQ(s->request("GET", "/api/v1/videos").status, 200u);
    const auto metrics = admin("GET", "/metrics").body;
    EXPECT_NE(metrics.find("cachecar_connections_refused_total 3"), std::string::npos) << metrics;
    EXPECT_NE(metrics.find("cachecar_connections{listener=\"proxy\"} 6"), std::string::npos);
}

}  // namespace
}  // namespace cachecar::test
