// What reaches the backend (http/forwarding): one table per rule, each a client request
// and the fields the backend must (or must not) get.
#include <cachecar/proxy/forwarding.hpp>

#include <cachecar/config/config.hpp>
#include <cachecar/route/key_builder.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace cachecar::proxy {
namespace {

namespace bh = beast::http;
using lines = std::vector<std::pair<std::string, std::string>>;

request make(const lines& fields, std::string target = "/v/1") {
    request r{bh::verb::get, target, 11};
    for (const auto& [n, v] : fields) r.insert(n, v);
    return r;
}

forwarding_policy policy(std::string extra = {}) {
    auto loaded = config::load_string("server:\n  upstream: http://127.0.0.1:3002\n" + extra);
    EXPECT_TRUE(loaded.value) << (loaded.errors.empty() ? "" : loaded.errors[0].to_string());
    return forwarding_policy::from(loaded.value->server);
}

class forwarding_test : public ::testing::Test {
protected:
    forwarding_test() {
        auto loaded = config::load_string(R"(
routes:
  - name: r
    match: GET /v/{id}
    tiers: [memory]
    ttl: 1m
    key: [path.id, header.X-Forwarded-Host]
    strip_headers: [X-Debug]
    ignore_query: [utm_*, fbclid]
)");
        EXPECT_TRUE(loaded.value);
        cfg_ = std::move(*loaded.value);
        matcher_ = std::make_unique<route::matcher>(cfg_);
    }
    const route::compiled_route* route() const { return &matcher_->routes()[0]; }
    config::config cfg_;
    std::unique_ptr<route::matcher> matcher_;
};

TEST_F(forwarding_test, what_an_untrusted_client_cannot_send_the_backend) {
    struct row {
        const char* rule;
        std::string field;
        bool forwarded;  // on a pass-through request (no route)
    };
    const std::vector<row> table{
        {"ordinary field", "Accept-Language", true},
        {"X-Forwarded-Proto (redirect-loop gadget)", "X-Forwarded-Proto", false},
        {"X-Forwarded-Host (poisoning gadget)", "X-Forwarded-Host", false},
        {"X-Forwarded-Prefix", "X-Forwarded-Prefix", false},
        {"X-Forwarded-Port", "X-Forwarded-Port", false},
        {"X-Forwarded-Scheme", "X-Forwarded-Scheme", false},
        {"X-Forwarded-Server", "X-Forwarded-Server", false},
        {"any X-Forwarded-*", "X-Forwarded-Whatever", false},
        {"Forwarded (RFC 7239)", "Forwarded", false},
        {"X-Real-IP", "X-Real-IP", false},
        {"True-Client-IP", "True-Client-IP", false},
        {"X-Original-URL (Symfony, IIS)", "X-Original-URL", false},
        {"X-Rewrite-URL", "X-Rewrite-URL", false},
        {"X-Original-Host", "X-Original-Host", false},
        {"X-Host", "X-Host", false},
        {"X-HTTP-Method-Override (CPDoS, purge bypass)", "X-HTTP-Method-Override", false},
        {"X-HTTP-Method", "X-HTTP-Method", false},
        {"X-Method-Override", "X-Method-Override", false},
        {"a name with '_' (CGI alias)", "X_API_KEY", false},
        {"a mixed '_' name", "X-Api_Key", false},
        {"Expect (answered by cachecar)", "Expect", false},
        {"Keep-Alive (hop-by-hop)", "Keep-Alive", false},
    };
    const auto p = policy();
    for (const auto& r : table) {
        auto req = make({{"Host", "app.test"}, {r.field, "x"}});
        prepare_forwarded_request(req, p, "192.0.2.7", nullptr);
        EXPECT_EQ(line_count(req.base(), r.field), r.forwarded ? 1u : 0u) << r.rule;
    }
}

TEST_F(forwarding_test, forwarding_fields_from_a_trusted_proxy_pass_and_are_keyed) {
    const auto p = policy("  trusted_proxies: [10.0.0.0/8]\n");
    auto req = make({{"Host", "app.test"},
                     {"X-Forwarded-Proto", "https"},
                     {"X-Forwarded-For", "203.0.113.5"},
                     {"Forwarded", "for=203.0.113.5;proto=https;host=app.test"},
                     {"X-Original-URL", "/admin"}});
    prepare_forwarded_request(req, p, "10.1.2.3", nullptr);
    EXPECT_EQ(list_value(req.base(), "x-forwarded-proto"), "https");
    EXPECT_EQ(list_value(make_upstream_request(req, "10.1.2.3", false, false).base(), "x-forwarded-for"),
              "203.0.113.5, 10.1.2.3");
    EXPECT_EQ(line_count(req.base(), "x-original-url"), 0u) << "overrides pass from nobody";
    const auto addressing = addressing_fields(req, false);
    const lines expected{{"host", "app.test"},
                         {"x-forwarded-proto", "https"},
                         {"forwarded;host", "app.test"},
                         {"forwarded;proto", "https"}};
    EXPECT_EQ(addressing, expected) << "the client's address (for=, X-Forwarded-For) is not keyed";

    auto untrusted = make({{"Host", "app.test"}, {"X-Forwarded-Proto", "http"}, {"X-Forwarded-For", "6.6.6.6"}});
    prepare_forwarded_request(untrusted, p, "192.0.2.1", nullptr);
    EXPECT_EQ(line_count(untrusted.base(), "x-forwarded-proto"), 0u);
    EXPECT_EQ(line_count(untrusted.base(), "x-forwarded-for"), 0u);
    EXPECT_EQ(list_value(make_upstream_request(untrusted, "192.0.2.1", false, false).base(), "x-forwarded-for"), "192.0.2.1");
    EXPECT_EQ(addressing_fields(untrusted, false), (lines{{"host", "app.test"}}));
}

TEST_F(forwarding_test, fields_a_route_keys_are_forwarded_and_the_rest_of_its_rules_apply) {
    auto req = make({{"Host", "app.test"}, {"X-Forwarded-Host", "a.example"}, {"X-Debug", "1"}, {"X-Keep", "1"}},
                    "/v/1?utm_source=x&id=2&&fbclid=3&utm_medium=y");
    prepare_forwarded_request(req, policy(), "192.0.2.7", route());
    EXPECT_EQ(list_value(req.base(), "x-forwarded-host"), "a.example") << "keyed by the route: forwarded (and split)";
    EXPECT_EQ(line_count(req.base(), "x-debug"), 0u) << "strip_headers";
    EXPECT_EQ(list_value(req.base(), "x-keep"), "1");
    EXPECT_EQ(req.target(), "/v/1?id=2") << "ignore_query parameters never reach the backend";
    auto untouched = make({{"Host", "app.test"}}, "/v/1?b=1&&a=%41");
    prepare_forwarded_request(untouched, policy(), "192.0.2.7", route());
    EXPECT_EQ(untouched.target(), "/v/1?b=1&&a=%41") << "nothing ignored: the target byte for byte";
}

TEST_F(forwarding_test, connection_named_fields_go_before_anything_is_keyed) {
    auto req = make({{"Host", "app.test"}, {"X-Lang", "fr"}, {"Connection", "keep-alive"}, {"Connection", "X-Lang, Host"}});
    prepare_forwarded_request(req, policy(), "192.0.2.7", nullptr);
    EXPECT_EQ(line_count(req.base(), "x-lang"), 0u);
    EXPECT_EQ(list_value(req.base(), "host"), "app.test");
}

TEST_F(forwarding_test, host_and_via) {
    auto old = make({});
    old.version(10);
    prepare_forwarded_request(old, policy(), "192.0.2.7", nullptr);
    EXPECT_EQ(list_value(old.base(), "host"), "127.0.0.1:3002") << "HTTP/1.0 without Host: the upstream's";
    EXPECT_EQ(list_value(make_upstream_request(old, "192.0.2.7", false, false).base(), "via"), "1.1 cachecar");
    auto fixed = make({{"Host", "one.example"}, {"Via", "1.1 edge"}});
    prepare_forwarded_request(fixed, policy("  upstream_host: api.internal\n"), "192.0.2.7", nullptr);
    EXPECT_EQ(list_value(fixed.base(), "host"), "api.internal");
    EXPECT_EQ(list_value(make_upstream_request(fixed, "192.0.2.7", false, false).base(), "via"), "1.1 edge, 1.1 cachecar");
}

TEST_F(forwarding_test, underscores_allowed_alias_their_dashed_names) {
    const auto p = policy("  underscores_in_headers: true\n");
    auto req = make({{"Host", "app.test"}, {"X_API_KEY", "k"}, {"X_Forwarded_Host", "evil"}, {"X_HTTP_Method_Override", "DELETE"}});
    prepare_forwarded_request(req, p, "192.0.2.7", nullptr);
    EXPECT_EQ(list_value(req.base(), "X_API_KEY"), "k");
    EXPECT_EQ(line_count(req.base(), "X_Forwarded_Host"), 0u) << "a forwarding field under its CGI alias";
    EXPECT_EQ(line_count(req.base(), "X_HTTP_Method_Override"), 0u);
}

TEST_F(forwarding_test, method_override_is_honoured_only_when_configured) {
    auto post = make({{"Host", "app.test"}, {"X-HTTP-Method-Override", "delete"}});
    post.method(bh::verb::post);
    EXPECT_EQ(overridden_method(post, policy()).method, "");
    const auto on = policy("  method_override: true\n");
    EXPECT_EQ(overridden_method(post, on).method, "DELETE");
    prepare_forwarded_request(post, on, "192.0.2.7", nullptr);
    EXPECT_EQ(list_value(post.base(), "x-http-method-override"), "delete") << "forwarded, so the backend acts on it";
    auto get = make({{"Host", "app.test"}, {"X-HTTP-Method-Override", "DELETE"}});
    EXPECT_EQ(overridden_method(get, on).method, "") << "only a POST is overridden (as Express, Symfony do)";
}

// A backend reads the first, the last or the joined lines of an override: cachecar
// cannot know which, so lines that disagree are refused, never routed by the first
// (X-HTTP-Method-Override: GET then DELETE would be routed as a read, purge nothing,
// and delete on a last-wins backend).
TEST_F(forwarding_test, method_override_lines_that_disagree_are_conflicting) {
    const auto on = policy("  method_override: true\n");
    struct row {
        std::vector<std::pair<std::string, std::string>> fields;
        std::string method;
        bool conflicting;
    };
    const std::vector<row> rows = {
        {{{"X-HTTP-Method-Override", "DELETE"}, {"X-HTTP-Method-Override", "delete"}}, "DELETE", false},
        {{{"X-HTTP-Method-Override", "GET"}, {"X-HTTP-Method-Override", "DELETE"}}, "", true},
        {{{"X-HTTP-Method-Override", "GET"}, {"X-HTTP-Method", "PUT"}}, "", true},
        {{{"X-Method-Override", "GET"}, {"X-HTTP-Method-Override", "PATCH"}}, "", true},
        {{{"X-HTTP-Method-Override", "GET, DELETE"}}, "", true},
        {{{"X-HTTP-Method-Override", ""}}, "", true},
        {{{"X-HTTP-Method-Override", "PUT"}, {"X-HTTP-Method", " put "}}, "PUT", false},
    };
    for (const auto& row : rows) {
        auto req = make({{"Host", "app.test"}});
        for (const auto& [n, v] : row.fields) req.insert(n, v);
        req.method(bh::verb::post);
        const auto got = overridden_method(req, on);
        EXPECT_EQ(got.method, row.method) << row.fields.front().second;
        EXPECT_EQ(got.conflicting, row.conflicting) << row.fields.front().second << " / " << row.fields.back().second;
    }
}

TEST_F(forwarding_test, the_upstream_request_is_reframed_and_drops_validators_on_cacheable_routes) {
    auto req = make({{"Host", "app.test"}, {"If-None-Match", "\"a\""}, {"If-Modified-Since", "x"}, {"Content-Length", "3"}});
    req.method(bh::verb::head);
    req.body() = "abc";
    auto cacheable = make_upstream_request(req, "192.0.2.7", true, true);
    EXPECT_EQ(cacheable.method(), bh::verb::get) << "a HEAD miss asks for the whole response, to store it";
    EXPECT_EQ(line_count(cacheable.base(), "if-none-match") + line_count(cacheable.base(), "if-modified-since"), 0u);
    EXPECT_EQ(list_value(cacheable.base(), "content-length"), "3");
    auto pass = make_upstream_request(req, "192.0.2.7", false, false);
    EXPECT_EQ(pass.method(), bh::verb::head);
    EXPECT_EQ(list_value(pass.base(), "if-none-match"), "\"a\"");
    auto empty_post = make({{"Host", "app.test"}});
    empty_post.method(bh::verb::post);
    EXPECT_EQ(list_value(make_upstream_request(empty_post, "192.0.2.7", false, false).base(), "content-length"), "0");
}

}  // namespace
}  // namespace cachecar::proxy
