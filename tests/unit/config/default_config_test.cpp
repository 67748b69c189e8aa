#include <cachecar/config/config.hpp>

#include <gtest/gtest.h>

#include <filesystem>

namespace cachecar::config {
namespace {

// conf/ relative to this file, so the test runs from any build directory.
std::string conf_file(const char* name) {
    return (std::filesystem::path(__FILE__).parent_path() / "../../../conf" / name).lexically_normal().string();
}

config load_or_fail(const load_result& r) {
    for (const auto& d : r.errors) ADD_FAILURE() << d.to_string();
    return r.value ? *r.value : config{};
}

TEST(default_config, shipped_file_is_valid_and_memory_only) {
    auto cfg = load_or_fail(load_file(conf_file("cachecar.yaml")));
    EXPECT_FALSE(cfg.tiers.redis);
    EXPECT_FALSE(cfg.tiers.mongo);
    EXPECT_EQ(cfg.server.listen.host, "127.0.0.1");
    EXPECT_EQ(cfg.server.listen.port, 8080);
    EXPECT_EQ(cfg.server.upstream.port, 3002);
    ASSERT_TRUE(cfg.server.admin_listen);
    EXPECT_EQ(cfg.server.admin_listen->port, 9901);
    EXPECT_EQ(cfg.server.key_namespace, "cachecar");
    ASSERT_FALSE(cfg.routes.empty());
    EXPECT_EQ(cfg.routes[0].name, "videos_list");
    EXPECT_EQ(cfg.routes[0].ttl, std::chrono::minutes(5));
    EXPECT_FALSE(cfg.invalidations.empty());
}

TEST(default_config, embedded_matches_the_shipped_file) {
    auto file = load_or_fail(load_file(conf_file("cachecar.yaml")));
    auto embedded = load_or_fail(load_string(embedded_default_yaml(), "<embedded>"));
    EXPECT_EQ(embedded.server.listen.host, file.server.listen.host);
    EXPECT_EQ(embedded.server.listen.port, file.server.listen.port);
    EXPECT_EQ(embedded.server.upstream_url, file.server.upstream_url);
    EXPECT_EQ(embedded.server.admin_listen->port, file.server.admin_listen->port);
    EXPECT_EQ(embedded.server.key_namespace, file.server.key_namespace);
    EXPECT_EQ(embedded.server.admin_token, file.server.admin_token);
    EXPECT_EQ(embedded.server.threads, file.server.threads);
    EXPECT_EQ(embedded.limits.max_header_bytes, file.limits.max_header_bytes);
    EXPECT_EQ(embedded.limits.max_body_bytes, file.limits.max_body_bytes);
    EXPECT_EQ(embedded.limits.max_object_bytes, file.limits.max_object_bytes);
    EXPECT_EQ(embedded.limits.upstream_timeout, file.limits.upstream_timeout);
    EXPECT_EQ(embedded.limits.client_idle_timeout, file.limits.client_idle_timeout);
    EXPECT_EQ(embedded.limits.drain_timeout, file.limits.drain_timeout);
    EXPECT_EQ(embedded.limits.max_connections, file.limits.max_connections);
    EXPECT_EQ(embedded.tiers.memory.max_bytes, file.tiers.memory.max_bytes);
    EXPECT_EQ(embedded.tiers.redis.has_value(), file.tiers.redis.has_value());
    EXPECT_EQ(embedded.tiers.mongo.has_value(), file.tiers.mongo.has_value());
    ASSERT_EQ(embedded.routes.size(), file.routes.size());
    for (std::size_t i = 0; i < file.routes.size(); ++i) {
        const auto& a = embedded.routes[i];
        const auto& b = file.routes[i];
        EXPECT_EQ(a.name, b.name);
        EXPECT_EQ(a.method, b.method);
        EXPECT_EQ(a.path_pattern, b.path_pattern);
        EXPECT_EQ(a.tiers, b.tiers);
        EXPECT_EQ(a.ttl, b.ttl);
        EXPECT_EQ(a.key, b.key);
        EXPECT_EQ(a.categories, b.categories);
        EXPECT_EQ(a.shared, b.shared);
        EXPECT_EQ(a.status, b.status);
    }
    ASSERT_EQ(embedded.invalidations.size(), file.invalidations.size());
    for (std::size_t i = 0; i < file.invalidations.size(); ++i) {
        EXPECT_EQ(embedded.invalidations[i].method, file.invalidations[i].method);
        EXPECT_EQ(embedded.invalidations[i].path_pattern, file.invalidations[i].path_pattern);
        EXPECT_EQ(embedded.invalidations[i].purge, file.invalidations[i].purge);
    }
}

TEST(default_config, spec_example_matrix_is_valid) {
    auto cfg = load_or_fail(load_file(conf_file("example-full.yaml")));
    ASSERT_TRUE(cfg.tiers.redis);
    ASSERT_TRUE(cfg.tiers.mongo);
    EXPECT_EQ(cfg.server.key_namespace, "momentry");
    EXPECT_EQ(cfg.tiers.mongo->database, "momentry");
    ASSERT_EQ(cfg.routes.size(), 4u);
    EXPECT_EQ(cfg.routes[0].tiers, (std::vector<tier_kind>{tier_kind::memory, tier_kind::mongo}));
    EXPECT_EQ(cfg.routes[1].categories, (std::vector<std::string>{"video_meta", "video:{query.uuid}"}));
    EXPECT_EQ(cfg.routes[2].key, std::vector<std::string>{"body"});
    EXPECT_EQ(cfg.routes[3].ttl, std::chrono::seconds(30));
    ASSERT_EQ(cfg.invalidations.size(), 3u);
    EXPECT_EQ(cfg.invalidations[1].purge, (std::vector<std::string>{"videos", "video:{path.uuid}"}));
}

}  // namespace
}  // namespace cachecar::config
