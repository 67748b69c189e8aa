// End-to-end behaviour of the request path on the memory tier: cachecar runs
// in-process in front of a real HTTP origin that counts what it receives.
#include "support/proxy_fixture.hpp"

#include <atomic>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

const std::string video_api = R"(
routes:
  - name: videos_list
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    key: [query.page, query.limit]
    ignore_query: [utm_source]
    categories: [videos]
  - name: lookup
    match: GET /api/v1/lookup
    tiers: [memory]
    ttl: 60m
    key: [query.uuid]
    categories: [video_meta, "video:{query.uuid}"]
  - name: search
    match: POST /api/v1/search
    tiers: [memory]
    ttl: 5m
    key: [body]
    categories: [search]
  - name: short
    match: GET /api/v1/short
    tiers: [memory]
    ttl: 1s
  - name: flaky
    match: GET /api/v1/flaky
    tiers: [memory]
    ttl: 1s
    stale_if_error: 1m
  - name: public_feed
    match: GET /api/v1/feed
    tiers: [memory]
    ttl: 5m
    shared: true
invalidate:
  - match: POST /api/v1/register
    purge: [videos]
  - match: DELETE /api/v1/videos/{uuid}
    purge: [videos, "video:{path.uuid}"]
  - match: POST /api/v1/vectorize
    purge: [search]
)";

class proxy_test : public proxy_fixture {
protected:
    void SetUp() override { start(video_api); }
};

TEST_F(proxy_test, MissThenHitServesStoredResponseWithoutCallingOrigin) {
    auto first = get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(first.status, 200u);
    EXPECT_EQ(first.header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count(), 1u);

    auto second = get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(second.status, 200u);
    EXPECT_EQ(second.header("x-cache"), "HIT");
    EXPECT_EQ(second.header("x-cache-tier"), "memory");
    EXPECT_FALSE(second.header("age").empty());
    EXPECT_EQ(second.body, first.body);
    EXPECT_EQ(second.header("content-type"), "text/plain");
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(proxy_test, KeyUsesOnlyConfiguredFieldsAndIgnoresParameterOrder) {
    get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(get("/api/v1/videos?limit=10&page=1").header("x-cache"), "HIT");
    // ignore_query: removed before forwarding, so it cannot split (or poison) the cache.
    EXPECT_EQ(get("/api/v1/videos?page=1&limit=10&utm_source=mail").header("x-cache"), "HIT");
    EXPECT_EQ(get("/api/v1/videos?page=2&limit=10").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/videos?page=1").header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count(), 3u);
    // Any other parameter the key does not name reaches the backend: never cached.
    EXPECT_EQ(get("/api/v1/videos?page=1&limit=10&debug=1").header("x-cache"), "BYPASS");
    EXPECT_EQ(origin_.count(), 4u);
}

TEST_F(proxy_test, DefaultKeyCoversWholeQuery) {
    EXPECT_EQ(get("/api/v1/feed?a=1&b=2").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/feed?b=2&a=1").header("x-cache"), "HIT");
    EXPECT_EQ(get("/api/v1/feed?a=1&b=3").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/feed?a=1").header("x-cache"), "MISS");
}

TEST_F(proxy_test, EntryExpiresAfterTtl) {
    EXPECT_EQ(get("/api/v1/short").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/short").header("x-cache"), "HIT");
    std::this_thread::sleep_for(1200ms);
    auto after = get("/api/v1/short");
    EXPECT_EQ(after.header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count("/api/v1/short"), 2u);
}

TEST_F(proxy_test, SuccessfulWritePurgesCategoryBeforeResponding) {
    get("/api/v1/videos?page=1&limit=10");
    get("/api/v1/lookup?uuid=a");
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        return origin_response{r.method == "POST" ? 201u : 200u, {}, "v" + std::to_string(n)};
    });
    auto write = send("POST", "/api/v1/register", R"({"url":"x"})");
    EXPECT_EQ(write.status, 201u);
    auto after = get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(after.header("x-cache"), "MISS");
    // Only the purged category is affected.
    EXPECT_EQ(get("/api/v1/lookup?uuid=a").header("x-cache"), "HIT");
}

TEST_F(proxy_test, FailedWriteDoesNotPurge) {
    get("/api/v1/videos?page=1&limit=10");
    origin_.set_handler([](const origin_request& r, std::size_t) {
        return origin_response{r.method == "POST" ? 500u : 200u, {}, "x"};
    });
    EXPECT_EQ(send("POST", "/api/v1/register", "{}").status, 500u);
    EXPECT_EQ(get("/api/v1/videos?page=1&limit=10").header("x-cache"), "HIT");
}

TEST_F(proxy_test, TemplatedPurgeDropsOnlyThatEntity) {
    get("/api/v1/lookup?uuid=a");
    get("/api/v1/lookup?uuid=b");
    get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(send("DELETE", "/api/v1/videos/a").status, 200u);
    EXPECT_EQ(get("/api/v1/lookup?uuid=a").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/lookup?uuid=b").header("x-cache"), "HIT");
    EXPECT_EQ(get("/api/v1/videos?page=1&limit=10").header("x-cache"), "MISS");
}

TEST_F(proxy_test, PostBodyKeyIsCanonicalJson) {
    auto a = send("POST", "/api/v1/search", R"({"query":"cats","top_k":5})");
    EXPECT_EQ(a.header("x-cache"), "MISS");
    auto b = send("POST", "/api/v1/search", "{ \"top_k\": 5,\n  \"query\": \"cats\" }");
    EXPECT_EQ(b.header("x-cache"), "HIT");
    EXPECT_EQ(b.body, a.body);
    EXPECT_EQ(send("POST", "/api/v1/search", R"({"query":"dogs","top_k":5})").header("x-cache"), "MISS");
    // The backend receives the body exactly as the client sent it.
    auto seen = origin_.requests();
    ASSERT_EQ(seen.size(), 2u);
    EXPECT_EQ(seen[0].body, R"({"query":"cats","top_k":5})");
    // A purge of the category empties it.
    send("POST", "/api/v1/vectorize", "{}");
    EXPECT_EQ(send("POST", "/api/v1/search", R"({"query":"cats","top_k":5})").header("x-cache"), "MISS");
}

TEST_F(proxy_test, ConcurrentMissesMakeOneUpstreamRequest) {
    origin_.set_handler([](const origin_request&, std::size_t n) {
        return origin_response{200, {}, "slow #" + std::to_string(n), 400ms};
    });
    constexpr int clients = 24;
    std::vector<client_response> answers(clients);
    std::vector<std::thread> threads;
    for (int i = 0; i < clients; ++i) {
        threads.emplace_back([&, i] { answers[i] = get("/api/v1/videos?page=7&limit=1"); });
    }
    for (auto& t : threads) t.join();
    EXPECT_EQ(origin_.count(), 1u);
    for (const auto& a : answers) {
        EXPECT_EQ(a.status, 200u);
        EXPECT_EQ(a.body, "slow #1");
    }
}

TEST_F(proxy_test, UnmatchedRoutesPassThroughUncached) {
    auto a = get("/api/v1/other?x=1");
    auto b = get("/api/v1/other?x=1");
    EXPECT_EQ(a.status, 200u);
    EXPECT_EQ(a.header("x-cache"), "");
    EXPECT_NE(a.body, b.body);
    EXPECT_EQ(origin_.count(), 2u);
    // Methods other than the route's pass through too.
    send("PUT", "/api/v1/videos?page=1&limit=10", "x");
    send("PUT", "/api/v1/videos?page=1&limit=10", "x");
    EXPECT_EQ(origin_.count(), 4u);
}

TEST_F(proxy_test, CredentialedRequestsAreIsolatedPerCredential) {
    auto alice = get("/api/v1/lookup?uuid=z", {{"Authorization", "Bearer alice"}});
    EXPECT_EQ(alice.header("x-cache"), "MISS");
    auto alice2 = get("/api/v1/lookup?uuid=z", {{"Authorization", "Bearer alice"}});
    EXPECT_EQ(alice2.header("x-cache"), "HIT");
    EXPECT_EQ(alice2.body, alice.body);
    auto bob = get("/api/v1/lookup?uuid=z", {{"Authorization", "Bearer bob"}});
    EXPECT_EQ(bob.header("x-cache"), "MISS");
    EXPECT_NE(bob.body, alice.body);
    auto anon = get("/api/v1/lookup?uuid=z");
    EXPECT_EQ(anon.header("x-cache"), "MISS");
    auto cookie = get("/api/v1/lookup?uuid=z", {{"Cookie", "session=1"}});
    EXPECT_EQ(cookie.header("x-cache"), "MISS");
    auto key = get("/api/v1/lookup?uuid=z", {{"X-API-Key", "k1"}});
    EXPECT_EQ(key.header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count(), 5u);
}

TEST_F(proxy_test, SharedRouteServesAcrossCredentials) {
    get("/api/v1/feed");
    EXPECT_EQ(get("/api/v1/feed", {{"Authorization", "Bearer bob"}}).header("x-cache"), "HIT");
    // An answer to a request with credentials is shared only when the origin says it
    // may be (RFC 9111 3.5): public here.
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"Cache-Control", "public, max-age=60"}}, "public feed"};
    });
    get("/api/v1/feed?v=2", {{"Authorization", "Bearer alice"}});
    EXPECT_EQ(get("/api/v1/feed?v=2", {{"Authorization", "Bearer bob"}}).header("x-cache"), "HIT");
}

TEST_F(proxy_test, ResponsesThatForbidStoringAreNotStored) {
    int n = 0;
    origin_.set_handler([&n](const origin_request& r, std::size_t) {
        ++n;
        if (r.target.find("uuid=cookie") != std::string::npos) return origin_response{200, {{"Set-Cookie", "s=1"}}, "c"};
        if (r.target.find("uuid=private") != std::string::npos)
            return origin_response{200, {{"Cache-Control", "private, max-age=60"}}, "p"};
        if (r.target.find("uuid=nostore") != std::string::npos)
            return origin_response{200, {{"Cache-Control", "no-store"}}, "n"};
        if (r.target.find("uuid=error") != std::string::npos) return origin_response{500, {}, "e"};
        if (r.target.find("uuid=forbidden") != std::string::npos) return origin_response{403, {}, "f"};
        return origin_response{200, {}, "ok"};
    });
    for (auto uuid : {"cookie", "private", "nostore", "error", "forbidden"}) {
        get(std::string("/api/v1/lookup?uuid=") + uuid);
        auto again = get(std::string("/api/v1/lookup?uuid=") + uuid);
        EXPECT_EQ(again.header("x-cache"), "MISS") << uuid;
    }
    EXPECT_EQ(origin_.count(), 10u);
    // A 404 is storable by default.
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{404, {}, "nf"}; });
    get("/api/v1/lookup?uuid=missing");
    EXPECT_EQ(get("/api/v1/lookup?uuid=missing").header("x-cache"), "HIT");
}

TEST_F(proxy_test, RequestNoStoreBypassesTheCache) {
    get("/api/v1/videos?page=1&limit=10");
    auto bypass = get("/api/v1/videos?page=1&limit=10", {{"Cache-Control", "no-store"}});
    EXPECT_EQ(bypass.header("x-cache"), "BYPASS");
    EXPECT_EQ(origin_.count(), 2u);
}

TEST_F(proxy_test, StaleIfErrorServesExpiredEntryWhenOriginFails) {
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{200, {}, "good"}; });
    EXPECT_EQ(get("/api/v1/flaky").body, "good");
    std::this_thread::sleep_for(1100ms);
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{503, {}, "down"}; });
    auto stale = get("/api/v1/flaky");
    EXPECT_EQ(stale.status, 200u);
    EXPECT_EQ(stale.header("x-cache"), "STALE");
    EXPECT_EQ(stale.body, "good");
    // Without stale_if_error, the failure is passed on.
    get("/api/v1/short");
    std::this_thread::sleep_for(1100ms);
    EXPECT_EQ(get("/api/v1/short").status, 503u);
}

TEST_F(proxy_test, HeadIsServedFromTheGetEntry) {
    auto full = get("/api/v1/videos?page=3&limit=10");
    auto head = send("HEAD", "/api/v1/videos?page=3&limit=10");
    EXPECT_EQ(head.status, 200u);
    EXPECT_EQ(head.header("x-cache"), "HIT");
    EXPECT_EQ(head.header("content-length"), std::to_string(full.body.size()));
    EXPECT_TRUE(head.body.empty());
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(proxy_test, UpstreamRequestGetsForwardingHeadersAndNoHopByHop) {
    get("/api/v1/other", {{"Connection", "keep-alive, X-Secret-Hop"}, {"X-Secret-Hop", "1"}, {"X-Forwarded-For", "10.0.0.9"}});
    auto seen = origin_.requests();
    ASSERT_EQ(seen.size(), 1u);
    EXPECT_EQ(seen[0].headers.count("x-secret-hop"), 0u);
    // The client is no trusted proxy: its X-Forwarded-For is replaced, not extended.
    EXPECT_EQ(seen[0].headers["x-forwarded-for"], "127.0.0.1");
    EXPECT_EQ(seen[0].headers["via"], "1.1 cachecar");
    EXPECT_EQ(seen[0].target, "/api/v1/other");
}

TEST_F(proxy_test, FillThatStartedBeforePurgeIsNeverServedAfterIt) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        if (r.method == "GET") return origin_response{200, {}, "list v" + std::to_string(n), 500ms};
        return origin_response{201, {}, "registered"};
    });
    std::thread reader([&] { EXPECT_EQ(get("/api/v1/videos?page=1&limit=10").header("x-cache"), "MISS"); });
    std::this_thread::sleep_for(150ms);  // the fill is now waiting on the origin
    EXPECT_EQ(send("POST", "/api/v1/register", "{}").status, 201u);
    reader.join();
    // The old list was fetched before the write; it must not be served after it.
    auto after = get("/api/v1/videos?page=1&limit=10");
    EXPECT_EQ(after.header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count("/api/v1/videos"), 2u);
}

TEST_F(proxy_test, OversizedResponsesPassThroughUnstored) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {}, std::string(2 * 1024 * 1024, 'x')};  // > max_object_bytes (1 MiB)
    });
    auto a = get("/api/v1/videos?page=9&limit=1");
    EXPECT_EQ(a.body.size(), 2u * 1024 * 1024);
    EXPECT_EQ(get("/api/v1/videos?page=9&limit=1").header("x-cache"), "MISS");
    EXPECT_EQ(origin_.count(), 2u);
}

TEST_F(proxy_test, UnreachableUpstreamGives502) {
    // Point a fresh instance at a port nobody listens on.
    cachecar_->stop();
    net::io_context io;
    net::ip::tcp::acceptor probe(io, net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), 0));
    const auto dead_port = probe.local_endpoint().port();
    probe.close();
    auto yaml = std::string("server: { listen: 127.0.0.1:0, admin_listen: 127.0.0.1:0, upstream: http://127.0.0.1:") +
                std::to_string(dead_port) + " }\n" + video_api;
    cachecar_ = std::make_unique<app>(must_load(yaml));
    cachecar_->start();
    auto r = get("/api/v1/videos?page=1&limit=1");
    EXPECT_EQ(r.status, 502u);
    EXPECT_EQ(r.header("x-cache"), "MISS");
    EXPECT_EQ(get("/elsewhere").status, 502u);
}

TEST_F(proxy_test, KeepAliveConnectionServesManyRequests) {
    http_session s(cachecar_->port());
    for (int i = 0; i < 5; ++i) {
        auto r = s.request("GET", "/api/v1/videos?page=1&limit=10");
        EXPECT_EQ(r.status, 200u);
        EXPECT_EQ(r.header("x-cache"), i == 0 ? "MISS" : "HIT");
    }
    EXPECT_TRUE(s.is_open());
}

}  // namespace
}  // namespace cachecar::test
