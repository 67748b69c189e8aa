#include <cachecar/route/matcher.hpp>

#include <gtest/gtest.h>

#include <stdexcept>

namespace cachecar::route {
namespace {

config::route_config make_route(std::string name, std::string method, std::string path) {
    config::route_config r;
    r.name = std::move(name);
    r.method = std::move(method);
    r.path_pattern = std::move(path);
    r.tiers = {config::tier_kind::memory};
    r.ttl = std::chrono::minutes(1);
    return r;
}

config::invalidate_config make_invalidation(std::string method, std::string path, std::vector<std::string> purge) {
    config::invalidate_config i;
    i.method = std::move(method);
    i.path_pattern = std::move(path);
    i.purge = std::move(purge);
    return i;
}

std::string route_name(const matcher& m, std::string_view method, std::string_view path) {
    auto r = m.find_route(method, path);
    return r ? r.target->cfg.name : std::string("-");
}

TEST(matcher, first_listed_route_wins) {
    config::config cfg;
    cfg.routes = {
        make_route("exact", "GET", "/api/v1/videos/special"),
        make_route("param", "GET", "/api/v1/videos/{uuid}"),
        make_route("wild", "GET", "/api/*"),
        make_route("post", "POST", "/api/v1/videos/{uuid}"),
        make_route("late_exact", "GET", "/api/v1/other"),
    };
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "GET", "/api/v1/videos/special"), "exact");
    EXPECT_EQ(route_name(m, "GET", "/api/v1/videos/42"), "param");
    EXPECT_EQ(route_name(m, "GET", "/api/v1/videos"), "wild");
    EXPECT_EQ(route_name(m, "GET", "/api/v1/other"), "wild");  // wildcard listed before the literal
    EXPECT_EQ(route_name(m, "GET", "/api"), "wild");           // "*" matches zero segments
    EXPECT_EQ(route_name(m, "POST", "/api/v1/videos/42"), "post");
    EXPECT_EQ(route_name(m, "PUT", "/api/v1/videos/42"), "-");
    EXPECT_EQ(route_name(m, "GET", "/other"), "-");
    EXPECT_EQ(route_name(m, "get", "/api/v1/videos/42"), "-");  // methods are case-sensitive
}

TEST(matcher, literal_beats_param_only_when_listed_first) {
    config::config cfg;
    cfg.routes = {make_route("param", "GET", "/v/{id}"), make_route("literal", "GET", "/v/list")};
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "GET", "/v/list"), "param");
    EXPECT_EQ(m.routes()[1].index, 1u);
}

TEST(matcher, backtracks_across_branches) {
    config::config cfg;
    cfg.routes = {make_route("p", "GET", "/a/{x}/c"), make_route("l", "GET", "/a/b/d")};
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "GET", "/a/b/c"), "p");  // literal "b" branch is a dead end for "c"
    EXPECT_EQ(route_name(m, "GET", "/a/b/d"), "l");
    EXPECT_EQ(route_name(m, "GET", "/a/z/d"), "-");
}

TEST(matcher, captures_decoded_params) {
    config::config cfg;
    cfg.routes = {make_route("two", "GET", "/u/{user}/v/{video}"), make_route("rest", "GET", "/files/{dir}/*")};
    matcher m(cfg);
    auto r = m.find_route("GET", "/u/al%20ice/v/a%2Fb");
    ASSERT_TRUE(r);
    EXPECT_EQ(r.params, (path_params{{"user", "al ice"}, {"video", "a/b"}}));
    auto plus = m.find_route("GET", "/u/a+b/v/1");
    ASSERT_TRUE(plus);
    EXPECT_EQ(plus.params[0].second, "a+b");  // '+' is only a space in queries
    auto w = m.find_route("GET", "/files/docs/x/y.txt");
    ASSERT_TRUE(w);
    EXPECT_EQ(w.params, (path_params{{"dir", "docs"}}));
}

TEST(matcher, literal_segments_match_decoded) {
    config::config cfg;
    cfg.routes = {make_route("v", "GET", "/api/videos")};
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "GET", "/api/vid%65os"), "v");
}

TEST(matcher, trailing_slash_is_ignored) {
    config::config cfg;
    cfg.routes = {make_route("ab", "GET", "/a/b"), make_route("root", "GET", "/"), make_route("p", "GET", "/p/{x}")};
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "GET", "/a/b/"), "ab");
    EXPECT_EQ(route_name(m, "GET", "/a/b"), "ab");
    EXPECT_EQ(route_name(m, "GET", "/a/b//"), "-");  // only one empty final segment is dropped
    EXPECT_EQ(route_name(m, "GET", "/"), "root");
    EXPECT_EQ(route_name(m, "GET", ""), "root");
    EXPECT_EQ(route_name(m, "GET", "/p/"), "-");  // a parameter never matches an empty segment
    EXPECT_EQ(route_name(m, "GET", "*"), "-");
    EXPECT_EQ(route_name(m, "GET", "http://h/a/b"), "-");
}

TEST(matcher, head_uses_get_routes) {
    config::config cfg;
    cfg.routes = {make_route("get", "GET", "/g"), make_route("head", "HEAD", "/h"), make_route("get_h", "GET", "/h")};
    matcher m(cfg);
    EXPECT_EQ(route_name(m, "HEAD", "/g"), "get");
    EXPECT_EQ(route_name(m, "HEAD", "/h"), "head");
    EXPECT_EQ(route_name(m, "GET", "/h"), "get_h");
}

TEST(matcher, invalidations) {
    config::config cfg;
    cfg.routes = {make_route("r", "DELETE", "/v/{uuid}")};
    cfg.invalidations = {make_invalidation("POST", "/register", {"videos"}),
                         make_invalidation("DELETE", "/v/{uuid}", {"videos", "video:{path.uuid}"})};
    matcher m(cfg);
    auto i = m.find_invalidation("DELETE", "/v/42");
    ASSERT_TRUE(i);
    EXPECT_EQ(i.target->index, 1u);
    EXPECT_EQ(i.params, (path_params{{"uuid", "42"}}));
    ASSERT_EQ(i.target->purges.size(), 2u);
    EXPECT_EQ(i.target->purges[1].shape(), "video:{}");
    EXPECT_TRUE(m.find_invalidation("POST", "/register"));
    EXPECT_FALSE(m.find_invalidation("GET", "/register"));
    EXPECT_FALSE(m.find_invalidation("HEAD", "/register"));
    EXPECT_EQ(m.invalidations().size(), 2u);
}

TEST(matcher, compiles_keys_categories_and_credential_headers) {
    config::config cfg;
    auto r = make_route("r", "GET", "/v/{id}");
    r.key = std::vector<std::string>{"path.id", "header.Accept"};
    r.categories = {"videos", "video:{path.id}"};
    r.credential_headers = {"X-Tenant", "Cookie", "x-tenant"};
    cfg.routes = {r, make_route("d", "GET", "/d")};
    matcher m(cfg);
    const auto& c = m.routes()[0];
    EXPECT_FALSE(c.default_key);
    ASSERT_EQ(c.key_fields.size(), 2u);
    EXPECT_EQ(c.key_fields[1].from, source::header);
    EXPECT_EQ(c.key_fields[1].text, "accept");
    EXPECT_EQ(c.categories.size(), 2u);
    EXPECT_EQ(c.credential_headers, (std::vector<std::string>{"authorization", "proxy-authorization", "cookie", "x-api-key", "x-tenant"}));
    EXPECT_TRUE(m.routes()[1].default_key);
    EXPECT_TRUE(m.routes()[1].key_fields.empty());
    EXPECT_EQ(m.routes()[1].credential_headers, (std::vector<std::string>{"authorization", "proxy-authorization", "cookie", "x-api-key"}));
}

TEST(matcher, rejects_what_the_loader_would) {
    config::config bad_pattern;
    bad_pattern.routes = {make_route("r", "GET", "a/b")};
    EXPECT_THROW(matcher{bad_pattern}, std::invalid_argument);

    config::config bad_ref;
    auto r = make_route("r", "GET", "/v/{id}");
    r.categories = {"video:{path.uuid}"};
    bad_ref.routes = {r};
    EXPECT_THROW(matcher{bad_ref}, std::invalid_argument);

    config::config bad_key;
    auto k = make_route("r", "GET", "/v");
    k.key = std::vector<std::string>{"nope"};
    bad_key.routes = {k};
    EXPECT_THROW(matcher{bad_key}, std::invalid_argument);
}

TEST(matcher, ten_thousand_routes) {
    config::config cfg;
    constexpr int n = 10'000;
    for (int i = 0; i < n; ++i) {
        // Mixed shapes so literal and param branches coexist at several levels.
        const std::string s = std::to_string(i);
        if (i % 3 == 0)
            cfg.routes.push_back(make_route("r" + s, "GET", "/api/v" + std::to_string(i % 7) + "/res" + s + "/{id}"));
        else if (i % 3 == 1)
            cfg.routes.push_back(make_route("r" + s, "GET", "/api/{ver}/res" + s));
        else
            cfg.routes.push_back(make_route("r" + s, "POST", "/api/v1/res" + s + "/*"));
    }
    cfg.routes.push_back(make_route("catch_all", "GET", "/*"));
    matcher m(cfg);
    EXPECT_EQ(m.routes().size(), static_cast<std::size_t>(n + 1));
    for (int i = 0; i < n; i += 97) {
        const std::string s = std::to_string(i);
        if (i % 3 == 0) {
            auto r = m.find_route("GET", "/api/v" + std::to_string(i % 7) + "/res" + s + "/abc");
            ASSERT_TRUE(r) << i;
            EXPECT_EQ(r.target->cfg.name, "r" + s);
            EXPECT_EQ(r.params, (path_params{{"id", "abc"}}));
        } else if (i % 3 == 1) {
            EXPECT_EQ(route_name(m, "GET", "/api/v9/res" + s), "r" + s);
        } else {
            EXPECT_EQ(route_name(m, "POST", "/api/v1/res" + s + "/x/y"), "r" + s);
        }
    }
    EXPECT_EQ(route_name(m, "GET", "/api/v1/res999999"), "catch_all");
    EXPECT_EQ(route_name(m, "POST", "/nothing"), "-");
}

TEST(matcher, is_movable) {
    config::config cfg;
    cfg.routes = {make_route("a", "GET", "/a")};
    matcher m1(cfg);
    matcher m2(std::move(m1));
    EXPECT_EQ(route_name(m2, "GET", "/a"), "a");
    config::config other;
    matcher m3(other);
    m3 = std::move(m2);
    EXPECT_EQ(route_name(m3, "GET", "/a"), "a");
}

}  // namespace
}  // namespace cachecar::route
