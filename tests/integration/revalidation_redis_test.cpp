// Conditional revalidation (RFC 9111 4.3) on the shared tiers, with real redis-server:
// a 304 freshens the entry in every tier that holds it, so another instance gets the
// freshened entry; a purge that lands during a revalidation wins on every instance.
#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"
#include "support/redis_server.hpp"

#include <atomic>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

class revalidation_redis_test : public ::testing::TestWithParam<std::string> {
protected:
    // The route's tiers: "[redis]" or "[memory, redis]".
    std::unique_ptr<app> start_instance() {
        const std::string yaml = "server:\n"
                                 "  listen: 127.0.0.1:0\n"
                                 "  admin_listen: 127.0.0.1:0\n"
                                 "  upstream: http://127.0.0.1:" + std::to_string(origin_.port()) + "\n"
                                 "  namespace: reval\n"
                                 "  threads: " + std::to_string(test_io_threads()) + "\n"
                                 "tiers:\n"
                                 "  memory: { max_bytes: 16MiB }\n"
                                 "  redis: { url: \"" + redis_.url() + "\", timeout: 200ms, pool: 2 }\n"
                                 "routes:\n"
                                 "  - name: rv\n"
                                 "    match: GET /rv\n"
                                 "    tiers: " + GetParam() + "\n"
                                 "    ttl: 5m\n"
                                 "    categories: [rv]\n"
                                 "invalidate:\n"
                                 "  - match: POST /rv\n"
                                 "    purge: [rv]\n";
        auto a = std::make_unique<app>(must_load(yaml));
        a->start();
        EXPECT_TRUE(eventually([&] { return tier_state(a->admin_port(), "redis") == "up"; }));
        return a;
    }
    static double redis_stores(app& a) {
        return metric(a.admin_port(), R"(cachecar_tier_ops_total{tier="redis",op="store",outcome="ok"})");
    }

    redis_server redis_;
    test_origin origin_;
};

TEST_P(revalidation_redis_test, A304FreshensTheEntryForEveryInstance) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        if (r.headers.count("if-none-match") && r.headers.at("if-none-match") == "\"r1\"")
            return origin_response{304, {{"Cache-Control", "max-age=600"}, {"X-Version", "freshened"}}, ""};
        return origin_response{200, {{"ETag", "\"r1\""}, {"Cache-Control", "no-cache"}, {"X-Version", "first"}}, "redis body"};
    });
    auto a = start_instance();
    EXPECT_EQ(http_get(a->port(), "/rv").header("x-cache"), "MISS");
    ASSERT_TRUE(eventually([&] { return redis_stores(*a) >= 1; }));
    const auto revalidated = http_get(a->port(), "/rv");
    EXPECT_EQ(revalidated.header("x-cache"), "HIT");
    EXPECT_EQ(revalidated.body, "redis body");
    EXPECT_EQ(revalidated.header("x-version"), "freshened");
    ASSERT_EQ(origin_.count(), 2u);
    EXPECT_EQ(origin_.requests().back().headers.at("if-none-match"), "\"r1\"");
    ASSERT_TRUE(eventually([&] { return redis_stores(*a) >= 2; })) << "the freshened entry was not written to Redis";
    // Fresh now, on this instance (its first tier) and on another one (from Redis).
    EXPECT_EQ(http_get(a->port(), "/rv").header("x-cache"), "HIT");
    auto b = start_instance();
    const auto other = http_get(b->port(), "/rv");
    EXPECT_EQ(other.header("x-cache"), "HIT") << "the other instance did not get the freshened entry";
    EXPECT_EQ(other.header("x-cache-tier"), "redis");
    EXPECT_EQ(other.header("x-version"), "freshened");
    EXPECT_EQ(other.body, "redis body");
    EXPECT_EQ(origin_.count(), 2u) << "the freshened entry was not fresh everywhere";
    EXPECT_EQ(metric(a->admin_port(), R"(cachecar_validations_total{route="rv",outcome="not_modified"})"), 1);
}

TEST_P(revalidation_redis_test, APurgeDuringARevalidationWinsOnEveryInstance) {
    std::atomic<bool> conditional_seen{false};
    origin_.set_handler(slow_revalidation_origin(conditional_seen, 1500ms));
    auto a = start_instance();
    auto b = start_instance();
    EXPECT_EQ(http_get(a->port(), "/rv").body, "read #1");
    ASSERT_TRUE(eventually([&] { return redis_stores(*a) >= 1; }));
    std::atomic<bool> answered{false};
    std::thread reader([&] {
        http_get(a->port(), "/rv");
        answered = true;
    });
    ASSERT_TRUE(eventually([&] { return conditional_seen.load(); }));
    // The write goes through the other instance.
    EXPECT_EQ(http_request(b->port(), "POST", "/rv", {}, "x").status, 200u);
    const bool purge_first = !answered.load();
    reader.join();
    ASSERT_TRUE(purge_first) << "the write did not land during the revalidation; the test proves nothing";
    // Neither instance serves what the late 304 tried to freshen: both ask the backend,
    // unconditionally (the purged entry is gone, not revalidated).
    origin_.set_handler([](const origin_request&, std::size_t n) {
        return origin_response{200, {{"Cache-Control", "no-store"}}, "after #" + std::to_string(n)};
    });
    for (auto* instance : {a.get(), b.get()}) {
        const auto before = origin_.count();
        const auto after = http_get(instance->port(), "/rv");
        EXPECT_EQ(after.header("x-cache"), "MISS") << "a purged entry was revalidated back to life";
        EXPECT_EQ(after.body, "after #" + std::to_string(before + 1));
        EXPECT_EQ(origin_.count(), before + 1);
        EXPECT_EQ(origin_.requests().back().headers.count("if-none-match"), 0u) << "a purged entry was revalidated";
    }
}

INSTANTIATE_TEST_SUITE_P(tiers, revalidation_redis_test, ::testing::Values("[redis]", "[memory, redis]"),
                         [](const ::testing::TestParamInfo<std::string>& tier) {
                             return tier.param == "[redis]" ? std::string("redis") : std::string("memory_redis");
                         });

}  // namespace
}  // namespace cachecar::test
