// The admin API: health, stats, metrics, purge, reload, token.
#include "support/proxy_fixture.hpp"

#include <boost/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace cachecar::test {
namespace {

namespace json = boost::json;

const std::string routes = R"(
routes:
  - name: videos
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    categories: [videos]
  - name: lookup
    match: GET /api/v1/lookup
    tiers: [memory]
    ttl: 5m
    categories: [meta]
)";

class admin_test : public proxy_fixture {};

TEST_F(admin_test, HealthReportsTiers) {
    start(routes);
    auto r = admin("GET", "/health");
    ASSERT_EQ(r.status, 200u);
    auto doc = json::parse(r.body).as_object();
    EXPECT_EQ(doc.at("status").as_string(), "ok");
    EXPECT_EQ(doc.at("tiers").at("memory").as_string(), "up");
    EXPECT_EQ(doc.at("tiers").at("redis").as_string(), "disabled");
    EXPECT_EQ(doc.at("tiers").at("mongo").as_string(), "disabled");
}

TEST_F(admin_test, StatsCountHitsMissesAndStoresPerRoute) {
    start(routes);
    get("/api/v1/videos");
    get("/api/v1/videos");
    get("/api/v1/videos");
    auto doc = json::parse(admin("GET", "/stats").body).as_object();
    const auto& videos = doc.at("routes").at("videos").as_object();
    EXPECT_EQ(videos.at("miss").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(videos.at("hit").to_number<std::uint64_t>(), 2u);
    EXPECT_EQ(videos.at("stores").to_number<std::uint64_t>(), 1u);
    const auto& memory = doc.at("tiers").at("memory").as_object();
    EXPECT_EQ(memory.at("entries").to_number<std::uint64_t>(), 1u);
    EXPECT_GT(memory.at("bytes").to_number<std::uint64_t>(), 0u);
}

TEST_F(admin_test, MetricsAreValidPrometheusText) {
    start(routes);
    get("/api/v1/videos");
    get("/api/v1/videos");
    auto r = admin("GET", "/metrics");
    ASSERT_EQ(r.status, 200u);
    EXPECT_NE(r.header("content-type").find("text/plain"), std::string::npos);
    EXPECT_NE(r.body.find("cachecar_requests_total{route=\"videos\",result=\"hit\"} 1\n"), std::string::npos) << r.body;
    EXPECT_NE(r.body.find("cachecar_requests_total{route=\"videos\",result=\"miss\"} 1\n"), std::string::npos);
    EXPECT_NE(r.body.find("# TYPE cachecar_upstream_seconds histogram"), std::string::npos);
    EXPECT_NE(r.body.find("cachecar_upstream_seconds_count 1\n"), std::string::npos);
    EXPECT_NE(r.body.find("cachecar_tier_ops_total{tier=\"memory\",op=\"lookup\",outcome=\"hit\"} 1\n"), std::string::npos);
    EXPECT_NE(r.body.find("cachecar_tier_up{tier=\"memory\"} 1\n"), std::string::npos);
    // Every sample line is "name{labels} value" or "name value".
    std::istringstream lines(r.body);
    for (std::string line; std::getline(lines, line);) {
        if (line.empty() || line[0] == '#') continue;
        auto space = line.rfind(' ');
        ASSERT_NE(space, std::string::npos) << line;
        EXPECT_NO_THROW((void)std::stod(line.substr(space + 1))) << line;
    }
}

TEST_F(admin_test, PurgeByCategoryAndAll) {
    start(routes);
    get("/api/v1/videos");
    get("/api/v1/lookup");
    auto r = admin("POST", "/purge", R"({"categories": ["videos"]})");
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_EQ(json::parse(r.body).at("purged").to_number<std::uint64_t>(), 1u);
    EXPECT_EQ(get("/api/v1/videos").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/lookup").header("x-cache"), "HIT");

    r = admin("POST", "/purge", R"({"all": true})");
    ASSERT_EQ(r.status, 200u);
    EXPECT_EQ(get("/api/v1/lookup").header("x-cache"), "MISS");
    EXPECT_EQ(get("/api/v1/videos").header("x-cache"), "MISS");

    EXPECT_EQ(admin("POST", "/purge", "not json").status, 400u);
    EXPECT_EQ(admin("POST", "/purge", R"({"categories": "videos"})").status, 400u);
    EXPECT_EQ(admin("POST", "/purge", R"({})").status, 400u);
    EXPECT_EQ(admin("GET", "/purge").status, 405u);
    EXPECT_EQ(admin("GET", "/nope").status, 404u);
}

TEST_F(admin_test, TokenIsRequiredForWritesWhenSet) {
    start(routes, "  admin_token: s3cret\n");
    EXPECT_EQ(admin("POST", "/purge", R"({"all": true})").status, 401u);
    EXPECT_EQ(admin("POST", "/purge", R"({"all": true})", {{"Authorization", "Bearer wrong"}}).status, 401u);
    EXPECT_EQ(admin("POST", "/purge", R"({"all": true})", {{"Authorization", "Bearer s3cret"}}).status, 200u);
    EXPECT_EQ(admin("POST", "/reload", "", {{"Authorization", "Bearer nope"}}).status, 401u);
    // Reads stay open.
    EXPECT_EQ(admin("GET", "/health").status, 200u);
}

class reload_test : public ::testing::Test {
protected:
    void write(const std::string& text) {
        std::ofstream(path_) << with_upstream(text, origin_.port());
    }
    void TearDown() override {
        if (cachecar_) cachecar_->stop();
        std::filesystem::remove(path_);
    }
    std::string path_ = (std::filesystem::temp_directory_path() / ("cachecar-reload-" + std::to_string(::getpid()) + ".yaml")).string();
    test_origin origin_;
    std::unique_ptr<app> cachecar_;
};

const std::string base = R"(server:
  listen: 127.0.0.1:0
  admin_listen: 127.0.0.1:0
  upstream: http://127.0.0.1:{UPSTREAM}
routes:
  - name: a
    match: GET /a
    tiers: [memory]
    ttl: 5m
)";

TEST_F(reload_test, GoodConfigIsSwappedInAndBadOneIsRejected) {
    write(base);
    auto loaded = config::load_file(path_);
    ASSERT_TRUE(loaded.value);
    cachecar_ = std::make_unique<app>(std::move(*loaded.value));
    cachecar_->start();
    const auto port = cachecar_->port();
    const auto admin_port = cachecar_->admin_port();
    EXPECT_EQ(http_get(port, "/b").header("x-cache"), "");  // not a route yet

    write(base + "  - name: b\n    match: GET /b\n    tiers: [memory]\n    ttl: 5m\n");
    auto ok = http_request(admin_port, "POST", "/reload");
    EXPECT_EQ(ok.status, 200u) << ok.body;
    EXPECT_EQ(http_get(port, "/b").header("x-cache"), "MISS");
    EXPECT_EQ(http_get(port, "/b").header("x-cache"), "HIT");

    write(base + "  - name: c\n    match: GET /c\n    tiers: [memory]\n    ttl: forever\n    colour: blue\n");
    auto bad = http_request(admin_port, "POST", "/reload");
    EXPECT_EQ(bad.status, 400u);
    auto doc = json::parse(bad.body).as_object();
    EXPECT_EQ(doc.at("status").as_string(), "rejected");
    ASSERT_EQ(doc.at("errors").as_array().size(), 2u) << bad.body;
    EXPECT_NE(std::string(doc.at("errors").as_array()[0].as_string()).find(path_ + ":13:"), std::string::npos) << bad.body;
    // The previous config keeps serving, cache intact.
    EXPECT_EQ(http_get(port, "/b").header("x-cache"), "HIT");
    EXPECT_EQ(http_get(port, "/c").header("x-cache"), "");
}

}  // namespace
}  // namespace cachecar::test
