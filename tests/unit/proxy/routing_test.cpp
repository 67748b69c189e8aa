// Routing: which rule answers a request, and the view the key reads.
#include <cachecar/proxy/routing.hpp>

#include <cachecar/config/config.hpp>
#include <cachecar/route/key_builder.hpp>

#include <gtest/gtest.h>

namespace cachecar::proxy {
namespace {

namespace bh = beast::http;

TEST(routing, write_routes_first_then_cacheable_then_pass_through) {
    auto loaded = config::load_string(R"(
routes:
  - { name: one, match: "GET /v/{id}", tiers: [memory], ttl: 1m, key: [path.id], categories: ["v:{path.id}"] }
invalidate:
  - { match: "DELETE /v/{id}", purge: ["v:{path.id}"] }
)");
    ASSERT_TRUE(loaded.value);
    const route::matcher routes(*loaded.value);

    request get{bh::verb::get, "/v/a%20b?x=1", 11};
    get.set(bh::field::authorization, "Bearer t");
    get.set(bh::field::host, "app.test");
    auto d = decide_route(routes, get);
    ASSERT_TRUE(d.cacheable);
    EXPECT_FALSE(d.invalidation);
    const keyed_request keyed(get, d.cacheable.params, false);
    const auto& view = keyed.view();
    ASSERT_EQ(view.addressing.size(), 1u);
    EXPECT_EQ(view.addressing[0].value, "app.test");
    EXPECT_EQ(view.path, "/v/a%20b");
    EXPECT_EQ(view.query, "x=1");
    EXPECT_EQ(route::expand_categories(d.cacheable.target->categories, view), std::vector<std::string>{"v:a b"});
    const auto key = route::request_key("ns", *d.cacheable.target, view);
    EXPECT_EQ(key.rfind("ns:one:", 0), 0u);
    EXPECT_NE(key, route::build_key("ns", *d.cacheable.target, view, ""));  // keyed per credential

    request del{bh::verb::delete_, "/v/a", 11};
    d = decide_route(routes, del);
    EXPECT_TRUE(d.invalidation);
    EXPECT_FALSE(d.cacheable);

    request other{bh::verb::get, "/elsewhere", 11};
    d = decide_route(routes, other);
    EXPECT_FALSE(d.invalidation || d.cacheable);
}

TEST(routing, ambiguous_paths_bypass_the_cache_and_writes_purge_for_both_readings) {
    auto loaded = config::load_string(R"(
routes:
  - { name: one, match: "GET /v/{id}", tiers: [memory], ttl: 1m, key: [path.id], categories: ["v:{path.id}"] }
  - { name: files, match: "GET /files/*", tiers: [memory], ttl: 1m, shared: true }
invalidate:
  - { match: "DELETE /v/{id}", purge: ["v:{path.id}"] }
)");
    ASSERT_TRUE(loaded.value);
    const route::matcher routes(*loaded.value);
    request deceptive{bh::verb::get, "/files/..%2Fv%2F1", 11};
    auto d = decide_route(routes, deceptive);
    ASSERT_TRUE(d.cacheable);
    EXPECT_EQ(d.bypass, "ambiguous_path");
    request plain{bh::verb::get, "/files/a.css", 11};
    EXPECT_EQ(decide_route(routes, plain).bypass, "");

    // The matcher reads one segment "7/..%2F8" (no match); a WSGI backend deletes 8.
    request del{bh::verb::delete_, "/v/7%2F..%2F8", 11};
    d = decide_route(routes, del);
    ASSERT_TRUE(d.invalidation);
    EXPECT_EQ(d.invalidation.params.at(0).second, "7/../8");
    ASSERT_TRUE(d.invalidation_resolved);
    EXPECT_EQ(d.invalidation_resolved.params.at(0).second, "8");
    request del2{bh::verb::delete_, "/v/x/..%2F8", 11};
    d = decide_route(routes, del2);
    ASSERT_TRUE(d.invalidation) << "matched under the resolved reading only";
    EXPECT_EQ(d.invalidation.params.at(0).second, "8");
    EXPECT_FALSE(d.invalidation_resolved);

    request override_get{bh::verb::post, "/v/1", 11};
    d = decide_route(routes, override_get, "GET");
    ASSERT_TRUE(d.cacheable);
    EXPECT_EQ(d.bypass, "method_override");
}

}  // namespace
}  // namespace cachecar::proxy
