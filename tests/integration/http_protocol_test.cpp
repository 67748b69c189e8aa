// Client-side HTTP handling: malformed input, limits, connection limits.
#include "support/proxy_fixture.hpp"

namespace cachecar::test {
namespace {

const std::string routes = R"(
limits:
  max_header_bytes: 4KiB
  max_body_bytes: 64KiB
  max_upload_bytes: 64KiB
  max_connections: 4
  client_idle_timeout: 2s
routes:
  - name: videos
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
)";

class http_protocol_test : public proxy_fixture {
protected:
    void SetUp() override { start(routes); }
    std::string exchange(const std::string& bytes) { return raw_exchange(cachecar_->port(), bytes); }
};

bool starts_with(const std::string& s, const std::string& prefix) { return s.rfind(prefix, 0) == 0; }

TEST_F(http_protocol_test, MalformedRequestGets400AndConnectionClosed) {
    // raw_exchange returns only once the server closed the connection.
    auto reply = exchange("GARBAGE\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 400")) << reply;
    reply = exchange("GET /api/v1/videos HTTP/9.9\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 400")) << reply;
    EXPECT_EQ(origin_.count(), 0u);
}

TEST_F(http_protocol_test, ContentLengthWithTransferEncodingIsRejected) {
    auto reply = exchange(
        "POST /api/v1/videos HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        "0\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 400")) << reply;
    EXPECT_EQ(origin_.count(), 0u);
}

TEST_F(http_protocol_test, OversizedHeadGets431) {
    auto reply = exchange("GET /api/v1/videos HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(8000, 'a') + "\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 431")) << reply.substr(0, 100);
    EXPECT_EQ(origin_.count(), 0u);
}

TEST_F(http_protocol_test, OversizedBodyGets413) {
    auto reply = exchange("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + std::string(100000, 'b'));
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 413")) << reply.substr(0, 100);
    EXPECT_EQ(origin_.count(), 0u);
}

TEST_F(http_protocol_test, PipelinedRequestsAreAnsweredInOrder) {
    auto reply = exchange(
        "GET /api/v1/videos?n=1 HTTP/1.1\r\nHost: x\r\n\r\n"
        "GET /api/v1/videos?n=1 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
    auto first = reply.find("X-Cache: MISS");
    auto second = reply.find("X-Cache: HIT");
    EXPECT_NE(first, std::string::npos) << reply;
    EXPECT_NE(second, std::string::npos) << reply;
    EXPECT_LT(first, second);
}

TEST_F(http_protocol_test, ConnectionsBeyondTheLimitAreRefusedWith503) {
    std::vector<std::unique_ptr<http_session>> held;
    for (int i = 0; i < 4; ++i) {
        held.push_back(std::make_unique<http_session>(cachecar_->port()));
        EXPECT_EQ(held.back()->request("GET", "/api/v1/videos").status, 200u);
    }
    auto refused = exchange("GET /api/v1/videos HTTP/1.1\r\nHost: x\r\n\r\n");
    EXPECT_TRUE(starts_with(refused, "HTTP/1.1 503")) << refused;
    held.clear();
    // Once connections close, new ones are served again.
    for (int attempt = 0; attempt < 50; ++attempt) {
        if (get("/api/v1/videos").status == 200) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    ADD_FAILURE() << "connections were not released";
}

TEST_F(http_protocol_test, IdleConnectionsAreClosedAfterTheIdleTimeout) {
    auto started = std::chrono::steady_clock::now();
    auto reply = raw_exchange(cachecar_->port(), "", std::chrono::seconds(10));
    auto waited = std::chrono::steady_clock::now() - started;
    EXPECT_TRUE(reply.empty());
    // Closed by the server (2 s idle timeout), not by our 10 s client deadline.
    EXPECT_LT(waited, std::chrono::seconds(8));
}

}  // namespace
}  // namespace cachecar::test
