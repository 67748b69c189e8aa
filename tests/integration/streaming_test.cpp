// cachecar as a transparent HTTP/1.1 proxy for everything it does not answer from
// cache: responses and request bodies stream both ways, chunk by chunk, with
// backpressure; interim responses and trailers pass; upgrades become tunnels.
//
// The streaming tests cannot pass through a buffering proxy: the backend sends the
// next piece only once the client has received the last one (and the client sends
// the next part of an upload only once the backend has the last one). A proxy that
// holds pieces back deadlocks, and the test fails by that deadline, never by a timing.
#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"
#include "support/raw_connection.hpp"

#include <boost/beast/websocket.hpp>

#include <atomic>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

const std::string routes = R"(
limits:
  max_object_bytes: 1MiB
  max_body_bytes: 4KiB
  client_idle_timeout: 2s
  tunnel_idle_timeout: 1s
routes:
  - name: items
    match: GET /items/*
    tiers: [memory]
    ttl: 5m
  - name: keyed_body
    match: POST /search
    tiers: [memory]
    ttl: 5m
    key: [body]
)";

class streaming_test : public proxy_fixture {
protected:
    void SetUp() override { start(routes); }
    std::uint16_t port() { return cachecar_->port(); }

    static std::string get_request(const std::string& target, const std::string& extra = {}) {
        return "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n" + extra + "\r\n";
    }
    // The origin accepts every WebSocket upgrade and echoes each message.
    void echo_websockets() {
        origin_.set_handler([](const origin_request&, std::size_t) {
            origin_response out;
            out.websocket_echo = true;
            return out;
        });
    }
    static std::size_t head_end(const std::string& s) {
        const auto e = s.find("\r\n\r\n");
        return e == std::string::npos ? std::string::npos : e + 4;
    }
};

std::string event(std::size_t i) { return "data: event " + std::to_string(i) + "\n\n"; }

// --- responses stream ---------------------------------------------------------------------

TEST_F(streaming_test, ServerSentEventsArriveOneByOne) {
    // Event i leaves the backend only once the client has event i-1.
    std::atomic<std::size_t> received{0};
    origin_.set_handler([&](const origin_request&, std::size_t) {
        origin_response out;
        out.headers = {{"Content-Type", "text/event-stream"}, {"Cache-Control", "no-cache, no-store"}};
        for (std::size_t i = 0; i < 5; ++i) out.parts.push_back(event(i));
        out.gate = [&](std::size_t i) { return received.load() >= i; };
        return out;
    });
    // Through a pass-through path and through a cacheable route (whose answer may not be stored).
    for (const auto& target : {std::string("/events"), std::string("/items/events")}) {
        received = 0;
        raw_connection c(port());
        ASSERT_TRUE(c.send(get_request(target)));
        for (std::size_t i = 0; i < 5; ++i) {
            ASSERT_TRUE(c.read_until([&](const std::string& s) { return s.find(event(i)) != std::string::npos; }, 15s))
                << target << ": event " << i << " never arrived (held back by the proxy?); got:\n" << c.received();
            received = i + 1;
        }
        EXPECT_NE(c.received().find("Transfer-Encoding: chunked"), std::string::npos) << c.received().substr(0, 300);
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("0\r\n\r\n") != std::string::npos; }, 5s));
    }
}

TEST_F(streaming_test, LargeResponsesStreamWhole) {
    constexpr std::uint64_t size = 24u << 20;
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response out;
        out.generated_bytes = size;
        return out;
    });
    raw_connection c(port());
    ASSERT_TRUE(c.send(get_request("/download", "Connection: close\r\n")));
    ASSERT_TRUE(c.read_to_close(60s));
    const auto& got = c.received();
    const auto body_at = head_end(got);
    ASSERT_NE(body_at, std::string::npos);
    EXPECT_NE(got.find("Content-Length: " + std::to_string(size)), std::string::npos) << got.substr(0, 300);
    ASSERT_EQ(got.size() - body_at, size);
    for (std::uint64_t i = 0; i < size; i += 4093) ASSERT_EQ(got[body_at + i], generated_byte(i)) << "byte " << i;
}

TEST_F(streaming_test, TrailersPassAsTrailers) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response out;
        out.parts = {"hello ", "world"};
        out.trailers = "X-Checksum: 5eb63bbb\r\nSet-Cookie: planted=1\r\nAuthorization: Bearer x\r\n";
        return out;
    });
    raw_connection c(port());
    ASSERT_TRUE(c.send(get_request("/with-trailers", "Connection: close\r\n")));
    ASSERT_TRUE(c.read_to_close(10s));
    const auto& got = c.received();
    const auto body_at = head_end(got);
    ASSERT_NE(body_at, std::string::npos);
    std::string body, trailers;
    ASSERT_TRUE(dechunk(got.substr(body_at), body, &trailers)) << got;
    EXPECT_EQ(body, "hello world");
    EXPECT_NE(trailers.find("X-Checksum: 5eb63bbb"), std::string::npos) << trailers;
    // Response control and authentication never travel as trailers (RFC 9110 6.5.1).
    EXPECT_EQ(trailers.find("Set-Cookie"), std::string::npos) << trailers;
    EXPECT_EQ(trailers.find("Authorization"), std::string::npos) << trailers;
    EXPECT_EQ(got.substr(0, body_at).find("X-Checksum"), std::string::npos) << "a trailer joined the head";
}

TEST_F(streaming_test, InterimResponsesAreRelayedBeforeTheAnswer) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response out;
        out.fault = origin_fault::raw_keep_open;
        out.body = "HTTP/1.1 103 Early Hints\r\nLink: </style.css>; rel=preload\r\n\r\n"
                   "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
        return out;
    });
    for (const auto& target : {std::string("/hints"), std::string("/items/hints")}) {
        raw_connection c(port());
        ASSERT_TRUE(c.send(get_request(target)));
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("\r\n\r\nok") != std::string::npos; }, 10s))
            << c.received();
        const auto& got = c.received();
        EXPECT_EQ(got.rfind("HTTP/1.1 103 Early Hints\r\n", 0), 0u) << target << ":\n" << got;
        EXPECT_NE(got.find("Link: </style.css>; rel=preload"), std::string::npos);
        EXPECT_LT(got.find("103"), got.find("HTTP/1.1 200"));
    }
    // The 103 is never stored: a hit is the 200 alone.
    auto hit = get("/items/hints");
    EXPECT_EQ(hit.header("x-cache"), "HIT");
    EXPECT_EQ(hit.status, 200u);
}

TEST_F(streaming_test, BodiesOfEveryFramingAndSplitArriveWholeAndInOrder) {
    // Content-Length bodies are read straight from the socket and chunked ones through
    // the parser; either way the bytes that came with the head go first, no byte is read
    // past the body, and sizes around a piece (64 KiB) lose nothing. Each body is
    // distinct (its size and a pattern) so a byte from the wrong place shows.
    auto body_of = [](std::size_t n) {
        std::string b(n, '\0');
        for (std::size_t i = 0; i < n; ++i) b[i] = static_cast<char>('A' + (i * 31 + n) % 53);
        return b;
    };
    enum class framing { length_together, length_late, close_delimited, chunked };
    const std::vector<std::pair<framing, const char*>> framings{{framing::length_together, "length, head and body in one write"},
                                                                {framing::length_late, "length, body 30 ms after the head"},
                                                                {framing::close_delimited, "until the backend closes"},
                                                                {framing::chunked, "chunked"}};
    for (const std::size_t size : {std::size_t{1}, std::size_t{1000}, std::size_t{65535}, std::size_t{65536},
                                   std::size_t{65537}, std::size_t{3 * 65536 + 11}, std::size_t{1} << 20}) {
        for (const auto& [how, label] : framings) {
            const std::string body = body_of(size);
            origin_.set_handler([&, how = how](const origin_request&, std::size_t) {
                origin_response out;
                const std::string head = "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n";
                switch (how) {
                case framing::length_together:
                    out.fault = origin_fault::raw_keep_open;
                    out.body = head + "Content-Length: " + std::to_string(size) + "\r\n\r\n" + body;
                    break;
                case framing::length_late:
                    out.fault = origin_fault::raw_keep_open;
                    out.body = head + "Content-Length: " + std::to_string(size) + "\r\n\r\n";
                    out.late_bytes = body;
                    out.late_delay = 30ms;
                    break;
                case framing::close_delimited:
                    out.fault = origin_fault::raw;
                    out.body = head + "Connection: close\r\n\r\n" + body;
                    break;
                case framing::chunked:
                    for (std::size_t at = 0; at < size; at += 40000) out.parts.push_back(body.substr(at, 40000));
                    break;
                }
                return out;
            });
            const auto got = get("/pass/" + std::to_string(size));
            EXPECT_EQ(got.status, 200u) << label << ", " << size << " bytes";
            EXPECT_EQ(got.body.size(), size) << label;
            EXPECT_TRUE(got.body == body) << label << ", " << size << " bytes: the body differs";
        }
    }
    // The connections those answers left in the pool carry the next answer intact.
    origin_.set_handler({});
    for (int i = 0; i < 4; ++i) EXPECT_EQ(get("/pass/after").status, 200u);
}

TEST_F(streaming_test, ABackendDyingMidBodyCutsTheClientShortAndStoresNothing) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response r{200, {}, std::string(200 * 1024, 'x')};
        r.fault = origin_fault::reset_mid_body;
        return r;
    });
    raw_connection c(port());
    ASSERT_TRUE(c.send(get_request("/items/dies")));
    ASSERT_TRUE(c.read_to_close(10s)) << "the client's connection must be closed";
    const auto& got = c.received();
    EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u);
    EXPECT_LT(got.size() - head_end(got), 200u * 1024u) << "never passed off as whole";
    origin_.set_handler({});
    EXPECT_EQ(get("/items/dies").header("x-cache"), "MISS") << "a partial body was stored";
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_stream_aborts_total{side="upstream"})"), 0);
}

TEST_F(streaming_test, AClientThatStopsReadingReleasesItsUpstreamConnection) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response out;
        out.generated_bytes = std::uint64_t{1} << 30;
        return out;
    });
    {
        raw_connection c(port());
        ASSERT_TRUE(c.send(get_request("/huge")));
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.size() > 1000000; }, 10s));
        ASSERT_EQ(origin_.active(), 1u) << "the backend is sending";
        // Not reading now: within client_idle_timeout (2 s) without progress cachecar
        // cuts the client off and closes the backend connection (never back to the pool).
        EXPECT_TRUE(eventually([&] { return origin_.active() == 0; }, 15s)) << "the backend is still sending";
    }
    EXPECT_TRUE(eventually([&] { return metric(cachecar_->admin_port(), R"(cachecar_stream_aborts_total{side="client"})") > 0; }));
}

// --- storing while streaming ----------------------------------------------------------------

TEST_F(streaming_test, StorableResponsesAreStoredAsTheyStream) {
    origin_.set_handler([](const origin_request&, std::size_t n) {
        origin_response out;
        out.parts = {std::string(100000, 'a'), std::string(100000, 'b'), "#" + std::to_string(n)};
        return out;
    });
    auto first = get("/items/stream");
    EXPECT_EQ(first.header("x-cache"), "MISS");
    auto again = get("/items/stream");
    EXPECT_EQ(again.header("x-cache"), "HIT");
    EXPECT_EQ(again.body, first.body);
    EXPECT_EQ(again.header("content-length"), std::to_string(first.body.size()));
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(streaming_test, ResponsesOverMaxObjectBytesStreamOnAndAreNotStored) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        origin_response out;
        out.parts = {std::string(700000, 'a'), std::string(700000, 'b')};  // chunked: the size shows only on the way
        return out;
    });
    auto first = get("/items/big");
    EXPECT_EQ(first.body.size(), 1400000u) << "the stream must go on past the store's limit";
    EXPECT_EQ(get("/items/big").header("x-cache"), "MISS");
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_not_stored_total{route="items",reason="too_large"})"), 0);
}

TEST_F(streaming_test, RequestsCoalescedBehindAFillGetTheStoredEntry) {
    origin_.set_handler([](const origin_request&, std::size_t n) {
        return origin_response{200, {}, "fill #" + std::to_string(n), 300ms};
    });
    std::vector<client_response> got(6);
    std::vector<std::thread> clients;
    for (auto& g : got) {
        clients.emplace_back([&] { g = get("/items/coalesced"); });
        std::this_thread::sleep_for(10ms);
    }
    for (auto& c : clients) c.join();
    for (const auto& g : got) EXPECT_EQ(g.body, "fill #1");
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(streaming_test, AResponseThatWillNotBeStoredReleasesTheOthersAtItsHead) {
    // The leader's answer says Set-Cookie: not for sharing. Its body is held until the
    // requests behind it have finished, so they finish only if released at the head.
    std::atomic<int> finished{0};
    origin_.set_handler([&](const origin_request&, std::size_t n) {
        origin_response out;
        out.headers = {{"Set-Cookie", "s=" + std::to_string(n)}};
        if (n == 1) {
            out.delay = 100ms;  // the others join its flight meanwhile
            out.parts = {"leader ", "body"};
            out.gate = [&](std::size_t) { return finished.load() == 3; };
        } else {
            out.parts = {"own"};
        }
        return out;
    });
    std::thread leader([&] { EXPECT_EQ(get("/items/private").body, "leader body"); });
    std::this_thread::sleep_for(30ms);
    std::vector<std::thread> others;
    for (int i = 0; i < 3; ++i) {
        others.emplace_back([&] {
            EXPECT_EQ(get("/items/private").body, "own");
            ++finished;
        });
    }
    for (auto& o : others) o.join();
    leader.join();
    EXPECT_EQ(origin_.count(), 4u);
}

// --- request bodies stream ------------------------------------------------------------------

TEST_F(streaming_test, UploadsReachTheBackendAsTheyArrive) {
    // The second half is sent only once the backend has the first: a proxy that reads
    // the whole body before forwarding deadlocks here.
    for (const std::size_t part_size : {std::size_t{256 * 1024}, std::size_t{10}})
    for (const bool chunked : {true, false}) {
        const std::string part(part_size, 'u');
        const auto before = origin_.body_bytes_received();
        raw_connection c(port());
        std::string head = "POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\n";
        head += chunked ? "Transfer-Encoding: chunked\r\n\r\n" : "Content-Length: " + std::to_string(2 * part.size()) + "\r\n\r\n";
        auto framed = [&](const std::string& p) {
            if (!chunked) return p;
            char size[16];
            std::snprintf(size, sizeof size, "%zx\r\n", p.size());
            return std::string(size) + p + "\r\n";
        };
        ASSERT_TRUE(c.send(head + framed(part)));
        ASSERT_TRUE(eventually([&] { return origin_.body_bytes_received() >= before + part.size(); }, 10s))
            << (chunked ? "chunked" : "Content-Length") << ": the first half never reached the backend";
        ASSERT_TRUE(c.send(framed(part) + (chunked ? "0\r\n\r\n" : "")));
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("POST /upload") != std::string::npos; }, 10s))
            << c.received();
        EXPECT_EQ(c.received().rfind("HTTP/1.1 200", 0), 0u);
        EXPECT_EQ(origin_.requests().back().body_bytes, 2 * part.size());
        // Still arriving when forwarded, so it went on chunked (cachecar's chunks).
        EXPECT_EQ(origin_.requests().back().headers["transfer-encoding"], chunked ? "chunked" : "");
    }
}

TEST_F(streaming_test, UpstreamTimeoutBoundsSilenceNotTheWholeTransfer) {
    // Uploads and downloads that take longer than upstream_timeout in all, but never fall
    // silent for that long, go through: the head wait starts once the request is sent,
    // and a body's deadline restarts with every piece.
    cachecar_->stop();
    cachecar_.reset();
    start("limits:\n  upstream_timeout: 400ms\nroutes: []\n");
    static constexpr int parts = 8;
    static constexpr auto gap = 150ms;  // parts * gap = 1.2 s, three times the timeout
    const std::string part(1000, 'p');
    raw_connection up(port());
    ASSERT_TRUE(up.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: " + std::to_string(parts * part.size()) +
                        "\r\n\r\n"));
    for (int i = 0; i < parts; ++i) {
        std::this_thread::sleep_for(gap);
        ASSERT_TRUE(up.send(part));
    }
    ASSERT_TRUE(up.read_until([](const std::string& s) { return s.find("POST /upload") != std::string::npos; }, 10s))
        << up.received();
    EXPECT_EQ(up.received().rfind("HTTP/1.1 200", 0), 0u) << up.received();
    EXPECT_EQ(origin_.requests().back().body_bytes, parts * part.size());

    const auto t0 = std::chrono::steady_clock::now();
    origin_.set_handler([t0](const origin_request&, std::size_t) {
        origin_response out;
        for (int i = 0; i < parts; ++i) out.parts.push_back("part " + std::to_string(i) + "\n");
        out.gate = [t0](std::size_t i) { return std::chrono::steady_clock::now() >= t0 + gap * static_cast<int>(i); };
        return out;
    });
    raw_connection down(port());
    ASSERT_TRUE(down.send(get_request("/slow-download")));
    ASSERT_TRUE(down.read_until([](const std::string& s) { return s.find("0\r\n\r\n") != std::string::npos; }, 10s))
        << down.received();
    EXPECT_EQ(down.received().rfind("HTTP/1.1 200", 0), 0u) << down.received();
    std::string body;
    ASSERT_TRUE(dechunk(down.received().substr(head_end(down.received())), body)) << down.received();
    EXPECT_EQ(body.find("part 7\n"), body.size() - 7) << body;
}

TEST_F(streaming_test, ExpectContinueIsAnsweredBeforeTheBody) {
    raw_connection c(port());
    ASSERT_TRUE(c.send("POST /upload HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"));
    ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("HTTP/1.1 100 Continue\r\n\r\n") != std::string::npos; }, 5s))
        << "no 100 Continue: the client would wait for nothing";
    ASSERT_TRUE(c.send("hello"));
    ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("POST /upload") != std::string::npos; }, 5s));
    EXPECT_EQ(origin_.requests().back().body, "hello");
    // Refused before the body: no 100, so the client never sends it.
    raw_connection refused(port());
    ASSERT_TRUE(refused.send("POST /search HTTP/1.1\r\nHost: 127.0.0.1\r\nExpect: 100-continue\r\nContent-Length: 100000\r\n\r\n"));
    ASSERT_TRUE(refused.read_until([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }, 5s));
    EXPECT_EQ(refused.received().rfind("HTTP/1.1 413", 0), 0u) << refused.received();
}

// --- upgrades -------------------------------------------------------------------------------

TEST_F(streaming_test, WebSocketsWorkThroughATunnel) {
    echo_websockets();
    net::io_context io;
    beast::websocket::stream<beast::tcp_stream> ws(io);
    ws.next_layer().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port()));
    ws.next_layer().expires_after(10s);
    ws.handshake("127.0.0.1", "/ws");
    for (const auto& msg : std::vector<std::string>{"hello", "second message", std::string(100000, 'w')}) {
        ws.write(net::buffer(msg));
        beast::flat_buffer buffer;
        ws.read(buffer);
        EXPECT_EQ(beast::buffers_to_string(buffer.data()), msg);
    }
    ws.binary(true);
    ws.write(net::buffer(std::string("\x00\x01\x02", 3)));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), std::string("\x00\x01\x02", 3));
    EXPECT_EQ(metric(cachecar_->admin_port(), "cachecar_tunnels_open"), 1) << "the open tunnel is a gauge in /metrics";
    ws.close(beast::websocket::close_code::normal);
    EXPECT_GE(metric(cachecar_->admin_port(), "cachecar_tunnels_total"), 1);
    EXPECT_TRUE(eventually([&] { return metric(cachecar_->admin_port(), "cachecar_tunnels_open") == 0; }))
        << "a closed tunnel is no longer counted open";
    EXPECT_TRUE(origin_.requests().back().headers.count("sec-websocket-key")) << "the handshake fields must pass";
}

TEST_F(streaming_test, AnIdleTunnelIsClosedAfterItsTimeout) {
    echo_websockets();
    raw_connection c(port());
    ASSERT_TRUE(c.send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }, 5s));
    EXPECT_EQ(c.received().rfind("HTTP/1.1 101", 0), 0u) << c.received();
    EXPECT_EQ(c.received().find("Connection: close"), std::string::npos);
    const auto started = std::chrono::steady_clock::now();
    EXPECT_TRUE(c.read_to_close(10s)) << "tunnel_idle_timeout (1 s) did not close it";
    EXPECT_LT(std::chrono::steady_clock::now() - started, 8s);
}

TEST_F(streaming_test, ATunnelOpenAtShutdownIsClosedAfterTheDrainTimeout) {
    // A busy tunnel (idle timeout far away) does not hold a stop forever: drain waits
    // drain_timeout for it, then closes it, and the client sees its connection end.
    cachecar_->stop();
    cachecar_.reset();
    start(R"(
limits:
  tunnel_idle_timeout: 10m
  drain_timeout: 500ms
routes: []
)");
    echo_websockets();
    net::io_context io;
    beast::websocket::stream<beast::tcp_stream> ws(io);
    ws.next_layer().connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port()));
    ws.next_layer().expires_after(20s);
    ws.handshake("127.0.0.1", "/ws");
    ws.write(net::buffer(std::string("before the stop")));
    beast::flat_buffer buffer;
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), "before the stop");

    bool drained = true;
    std::thread stopper([&] { drained = cachecar_->stop(); });
    // The tunnel still works while the drain waits for it ...
    ws.write(net::buffer(std::string("during the drain")));
    buffer.clear();
    ws.read(buffer);
    EXPECT_EQ(beast::buffers_to_string(buffer.data()), "during the drain");
    // ... and is then cut: the next read ends with an error, not a 20 s timeout.
    buffer.clear();
    error_code ec;
    ws.read(buffer, ec);
    stopper.join();
    EXPECT_TRUE(ec) << "the tunnel outlived the stop";
    EXPECT_NE(ec, beast::error::timeout) << "the tunnel was not closed by the drain";
    EXPECT_FALSE(drained) << "a tunnel still open is not a drained connection";
}

// h2c smuggling: a backend that agrees to switch to HTTP/2 cleartext would take every
// request inside the tunnel straight from the client, past the forwarding rules, the
// underscore rule and the key. cachecar never offers h2c: the request goes on as plain
// HTTP/1.1 without Upgrade, and the connection stays cachecar's (RFC 9113 3.1 lets any
// server ignore the upgrade).
TEST_F(streaming_test, H2cUpgradesAreNeverOfferedToTheBackend) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        origin_response out;
        if (r.headers.count("upgrade") != 0) {
            // A backend that would switch to whatever it is asked.
            out.fault = origin_fault::raw_keep_open;
            out.body = "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: " + r.headers.at("upgrade") +
                       "\r\n\r\n";
            return out;
        }
        out.body = "plain #" + std::to_string(n);
        return out;
    });
    for (const std::string upgrade : {"h2c", "H2C", "h2c/2", "h2c, h2c"}) {
        SCOPED_TRACE(upgrade);
        const auto before = origin_.count();
        raw_connection c(port());
        ASSERT_TRUE(c.send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: " +
                           upgrade + "\r\nHTTP2-Settings: AAMAAABkAAQAoAAAAAIAAAAA\r\n\r\n"));
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("plain #") != std::string::npos; }, 5s))
            << c.received();
        EXPECT_EQ(c.received().rfind("HTTP/1.1 200", 0), 0u) << c.received();
        ASSERT_EQ(origin_.count(), before + 1);
        const auto got = origin_.requests().back();  // a copy: requests() returns one
        EXPECT_EQ(got.headers.count("upgrade"), 0u) << "h2c was offered to the backend";
        EXPECT_EQ(got.headers.count("http2-settings"), 0u);
        // Still an HTTP/1.1 connection of cachecar's: a second request is answered.
        ASSERT_TRUE(c.send(get_request("/after")));
        ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("plain #", s.find("plain #") + 1) != std::string::npos; }, 5s))
            << c.received();
        EXPECT_EQ(origin_.requests().back().target, "/after");
    }
}

// Another protocol offered next to h2c is still tunnelled, without h2c.
TEST_F(streaming_test, OnlyH2cIsRemovedFromAnUpgradeList) {
    echo_websockets();
    raw_connection c(port());
    ASSERT_TRUE(c.send("GET /ws HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\n"
                       "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"));
    ASSERT_TRUE(c.read_until([](const std::string& s) { return s.find("\r\n\r\n") != std::string::npos; }, 5s));
    EXPECT_EQ(c.received().rfind("HTTP/1.1 101", 0), 0u) << c.received();
    EXPECT_EQ(origin_.requests().back().headers.at("upgrade"), "websocket");
}

// An upgrade request on a cacheable route is never answered from, nor stored in, the
// cache, even when the backend declines it with an ordinary 200: that answer was for
// a request the key does not describe.
TEST_F(streaming_test, UpgradeRequestsOnCacheableRoutesAreNeverCached) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        origin_response out;
        out.body = (r.headers.count("upgrade") ? "declined #" : "document #") + std::to_string(n);
        return out;
    });
    auto declined = raw_exchange(port(), "GET /items/u HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
                                         "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                                         "Sec-WebSocket-Version: 13\r\nConnection: close\r\n\r\n");
    EXPECT_NE(declined.find("declined #1"), std::string::npos) << declined;
    auto plain = raw_exchange(port(), get_request("/items/u", "Connection: close\r\n"));
    EXPECT_NE(plain.find("document #2"), std::string::npos) << "the declined upgrade's answer was served from cache: " << plain;
    EXPECT_EQ(origin_.count(), 2u);
}

TEST_F(streaming_test, ConnectIsRefused) {
    auto reply = raw_exchange(port(), "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n");
    EXPECT_EQ(reply.rfind("HTTP/1.1 501", 0), 0u) << reply;
    EXPECT_EQ(origin_.count(), 0u);
}

}  // namespace
}  // namespace cachecar::test
