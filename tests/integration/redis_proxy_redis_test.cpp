// cachecar instances sharing one real redis-server: the Redis tier end to end.
#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"
#include "support/redis_server.hpp"

#include <sstream>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

std::string config_for(std::uint16_t origin, const redis_server& redis, const std::string& ns) {
    return "server:\n"
           "  listen: 127.0.0.1:0\n"
           "  admin_listen: 127.0.0.1:0\n"
           "  upstream: http://127.0.0.1:" + std::to_string(origin) + "\n"
           "  namespace: " + ns + "\n"
           "  threads: 2\n"
           "tiers:\n"
           "  memory: { max_bytes: 16MiB }\n"
           "  redis: { url: \"" + redis.url() + "\", timeout: 100ms, pool: 2 }\n"
           "routes:\n"
           "  - name: videos\n"
           "    match: GET /api/v1/videos\n"
           "    tiers: [memory, redis]\n"
           "    ttl: 5m\n"
           "    categories: [videos]\n"
           "  - name: shared_only\n"
           "    match: GET /api/v1/lookup\n"
           "    tiers: [redis]\n"
           "    ttl: 5m\n"
           "    key: [query.uuid]\n"
           "    categories: [\"video:{query.uuid}\"]\n"
           "invalidate:\n"
           "  - match: POST /api/v1/register\n"
           "    purge: [videos]\n"
           "  - match: DELETE /api/v1/videos/{uuid}\n"
           "    purge: [\"video:{path.uuid}\"]\n";
}

class redis_proxy_test : public ::testing::Test {
protected:
    std::unique_ptr<app> start_instance(const std::string& ns = "shared") {
        auto a = std::make_unique<app>(must_load(config_for(origin_.port(), redis_, ns)));
        a->start();
        const auto admin_port = a->admin_port();
        EXPECT_TRUE(eventually([&] { return tier_state(admin_port, "redis") == "up"; })) << "redis tier never came up";
        return a;
    }
    static client_response get(const app& a, const std::string& target) {
        return http_get(const_cast<app&>(a).port(), target);
    }

    redis_server redis_;
    test_origin origin_;
};

TEST_F(redis_proxy_test, HitIsServedByRedisWithItsTierHeader) {
    auto a = start_instance();
    EXPECT_EQ(get(*a, "/api/v1/lookup?uuid=1").header("x-cache"), "MISS");
    // The Redis write happens off the response path: wait for the write itself. A
    // request polled for a hit before it lands is rightly a second miss (the same race
    // made mongo_proxy_test's twin of this test flaky).
    ASSERT_TRUE(eventually([&] {
        return metric(a->admin_port(), R"(cachecar_tier_ops_total{tier="redis",op="store",outcome="ok"})") >= 1;
    }));
    auto hit = get(*a, "/api/v1/lookup?uuid=1");
    EXPECT_EQ(hit.header("x-cache"), "HIT");
    EXPECT_EQ(hit.header("x-cache-tier"), "redis");
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(redis_proxy_test, EntryStoredByOneInstanceIsAHitForAnotherAndFillsItsMemory) {
    auto a = start_instance();
    auto b = start_instance();
    auto first = get(*a, "/api/v1/videos?page=1");
    EXPECT_EQ(first.header("x-cache"), "MISS");
    ASSERT_TRUE(eventually([&] { return redis_.command({"DBSIZE"}) != "0"; }));
    auto from_redis = get(*b, "/api/v1/videos?page=1");
    EXPECT_EQ(from_redis.header("x-cache"), "HIT");
    EXPECT_EQ(from_redis.header("x-cache-tier"), "redis");
    EXPECT_EQ(from_redis.body, first.body);
    auto from_memory = get(*b, "/api/v1/videos?page=1");
    EXPECT_EQ(from_memory.header("x-cache-tier"), "memory");
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(redis_proxy_test, PurgeThroughOneInstanceReachesTheOthersMemoryTier) {
    auto a = start_instance();
    auto b = start_instance();
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        return origin_response{r.method == "POST" ? 201u : 200u, {}, "v" + std::to_string(n)};
    });
    const auto old_body = get(*a, "/api/v1/videos?page=1").body;
    ASSERT_TRUE(eventually([&] { return redis_.command({"DBSIZE"}) != "0"; }));
    get(*b, "/api/v1/videos?page=1");  // redis -> b's memory
    ASSERT_EQ(get(*b, "/api/v1/videos?page=1").header("x-cache-tier"), "memory");

    EXPECT_EQ(http_request(a->port(), "POST", "/api/v1/register", {}, "{}").status, 201u);
    // The instance that forwarded the write is exact.
    auto after_a = get(*a, "/api/v1/videos?page=1");
    EXPECT_EQ(after_a.header("x-cache"), "MISS");
    EXPECT_NE(after_a.body, old_body);
    // The other one hears of it through the purge channel within milliseconds; it
    // may then be served a's fresh copy from Redis, but never the old one.
    EXPECT_TRUE(eventually([&] { return get(*b, "/api/v1/videos?page=1").body != old_body; }, 1s));

    // And a purge through the admin API of b reaches a.
    const auto second_body = get(*a, "/api/v1/videos?page=1").body;
    auto purge = http_request(b->admin_port(), "POST", "/purge", {}, R"({"categories":["videos"]})");
    EXPECT_EQ(purge.status, 200u);
    EXPECT_TRUE(eventually([&] { return get(*a, "/api/v1/videos?page=1").body != second_body; }, 1s));
}

TEST_F(redis_proxy_test, TemplatedPurgeOfASharedOnlyRoute) {
    auto a = start_instance();
    auto b = start_instance();
    get(*a, "/api/v1/lookup?uuid=x");
    get(*a, "/api/v1/lookup?uuid=y");
    ASSERT_TRUE(eventually([&] { return get(*b, "/api/v1/lookup?uuid=x").header("x-cache") == "HIT"; }));
    ASSERT_TRUE(eventually([&] { return get(*b, "/api/v1/lookup?uuid=y").header("x-cache") == "HIT"; }));
    EXPECT_EQ(http_request(a->port(), "DELETE", "/api/v1/videos/x").status, 200u);
    // Shared tiers are exact for every instance: no window at all.
    EXPECT_EQ(get(*b, "/api/v1/lookup?uuid=x").header("x-cache"), "MISS");
    EXPECT_EQ(get(*b, "/api/v1/lookup?uuid=y").header("x-cache"), "HIT");
}

TEST_F(redis_proxy_test, CorruptValueInRedisIsAMissNotABadResponse) {
    auto a = start_instance();
    auto first = get(*a, "/api/v1/lookup?uuid=c");
    ASSERT_TRUE(eventually([&] { return redis_.command({"DBSIZE"}) != "0"; }));
    std::string key;
    for (std::istringstream keys(redis_.command({"KEYS", "shared:shared_only:*"})); std::getline(keys, key);) break;
    ASSERT_FALSE(key.empty());
    redis_.command({"SET", key, "HTTP/1.1 200 OK\r\n\r\nplanted"});
    auto r = get(*a, "/api/v1/lookup?uuid=c");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-cache"), "MISS");
    EXPECT_NE(r.body.find("GET /api/v1/lookup?uuid=c"), std::string::npos) << r.body;
    EXPECT_EQ(origin_.count(), 2u);
    auto metrics = http_get(a->admin_port(), "/metrics").body;
    EXPECT_NE(metrics.find("cachecar_tier_corrupt_total{tier=\"redis\",reason=\"bad_magic\"} 1"), std::string::npos)
        << metrics;
}

TEST_F(redis_proxy_test, NamespacesOnOneRedisNeverSeeEachOther) {
    auto prod = start_instance("momentry");
    auto dev = start_instance("momentry_dev");
    get(*prod, "/api/v1/lookup?uuid=n");
    ASSERT_TRUE(eventually([&] { return get(*prod, "/api/v1/lookup?uuid=n").header("x-cache") == "HIT"; }));
    EXPECT_EQ(get(*dev, "/api/v1/lookup?uuid=n").header("x-cache"), "MISS");
    ASSERT_TRUE(eventually([&] { return get(*dev, "/api/v1/lookup?uuid=n").header("x-cache") == "HIT"; }));
    // A purge in one environment leaves the other alone.
    EXPECT_EQ(http_request(dev->port(), "DELETE", "/api/v1/videos/n").status, 200u);
    EXPECT_EQ(get(*dev, "/api/v1/lookup?uuid=n").header("x-cache"), "MISS");
    EXPECT_EQ(get(*prod, "/api/v1/lookup?uuid=n").header("x-cache"), "HIT");
    // Purge-all in dev deletes only dev's keys.
    http_request(dev->admin_port(), "POST", "/purge", {}, R"({"all":true})");
    // Entry keys only ("<ns>:<route>:..."); generation keys ("<ns>::gen:...") stay by design.
    EXPECT_EQ(redis_.command({"KEYS", "momentry_dev:[^:]*"}), "");
    EXPECT_NE(redis_.command({"KEYS", "momentry:[^:]*"}), "");
    EXPECT_EQ(get(*prod, "/api/v1/lookup?uuid=n").header("x-cache"), "HIT");
}

}  // namespace
}  // namespace cachecar::test
