#include <cachecar/route/key_builder.hpp>

#include <gtest/gtest.h>

#include <optional>
#include <vector>

namespace cachecar::route {
namespace {

// One compiled route; `key` nullopt = default key.
class key_fixture {
public:
    explicit key_fixture(std::optional<std::vector<std::string>> key, std::string name = "r",
                         std::string path = "/v/{id}", std::vector<std::string> categories = {})
        : matcher_(make_config(std::move(key), std::move(name), std::move(path), std::move(categories))) {}

    const compiled_route& route() const { return matcher_.routes()[0]; }

    struct request {
        std::string method = "GET";
        std::string path = "/v/1";
        std::string query = {};
        std::vector<header_view> headers = {};
        std::string body = {};
    };

    std::string key(const request& r, std::string_view ns = "ns", std::string_view credential = "") const {
        auto m = matcher_.find_route(r.method == "HEAD" ? "GET" : r.method, r.path);
        path_params params = m ? m.params : path_params{};
        request_view v{r.method, r.path, r.query, r.headers, r.body, &params};
        return build_key(ns, route(), v, credential);
    }

    std::string fingerprint(const request& r) const {
        request_view v{r.method, r.path, r.query, r.headers, r.body, nullptr};
        return credential_fingerprint(route(), v);
    }

private:
    static config::config make_config(std::optional<std::vector<std::string>> key, std::string name,
                                      std::string path, std::vector<std::string> categories) {
        config::route_config rc;
        rc.name = std::move(name);
        rc.method = "GET";
        rc.path_pattern = std::move(path);
        rc.tiers = {config::tier_kind::memory};
        rc.ttl = std::chrono::minutes(1);
        rc.key = std::move(key);
        rc.categories = std::move(categories);
        config::config cfg;
        cfg.routes = {rc};
        return cfg;
    }

    matcher matcher_;
};

using req = key_fixture::request;

TEST(sha256_hex, known_vectors) {
    EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
}

TEST(canonical_json, sorts_keys_and_drops_whitespace) {
    EXPECT_EQ(canonical_json(R"({ "b": 2, "a": [ 1, {"d": null, "c": true} ] })"),
              R"({"a":[1,{"c":true,"d":null}],"b":2})");
    EXPECT_EQ(canonical_json(R"({"a":1,"b":2})"), canonical_json(R"({ "b":2, "a":1 })"));
    EXPECT_EQ(canonical_json("\"x\""), "\"x\"");
    EXPECT_EQ(canonical_json(" 42 "), "42");
}

TEST(canonical_json, keys_sorted_by_code_point) {
    // 'Z' (0x5A) < 'a' (0x61) < 'é' (U+00E9) < '日' (U+65E5)
    EXPECT_EQ(canonical_json(R"({"日":1,"é":2,"a":3,"Z":4})"), R"({"Z":4,"a":3,"é":2,"日":1})");
}

TEST(canonical_json, strings_reescaped) {
    EXPECT_EQ(canonical_json(R"(["\u0041", "a\/b", "tab\there", "\u00e9"])"), "[\"A\",\"a/b\",\"tab\\there\",\"é\"]");
    EXPECT_EQ(canonical_json(R"({"\u0061":1})"), canonical_json(R"({"a":1})"));
}

TEST(canonical_json, numbers_are_kept_exactly) {
    EXPECT_EQ(canonical_json("[1, -2, 1.50, 1e3, 18446744073709551616]"), "[1,-2,1.50,1e3,18446744073709551616]");
    // Differ past double precision: must not become one key.
    EXPECT_NE(canonical_json("12345678901234567890123"), canonical_json("12345678901234567890124"));
}

TEST(canonical_json, not_json) {
    EXPECT_FALSE(canonical_json(""));
    EXPECT_FALSE(canonical_json("{"));
    EXPECT_FALSE(canonical_json("{} x"));
    EXPECT_FALSE(canonical_json("{'a':1}"));
    EXPECT_FALSE(canonical_json("[1,]"));
    EXPECT_FALSE(canonical_json("\"\xff\""));           // invalid UTF-8
    EXPECT_FALSE(canonical_json(R"({"a":1,"a":2})"));  // readers disagree on duplicates
}

TEST(parse_query, decodes_and_sorts) {
    using q = std::vector<std::pair<std::string, std::string>>;
    // By name; a repeated name keeps its values' order (backends take the first or the last).
    EXPECT_EQ(parse_query("b=2&a=1&a=0"), (q{{"a", "1"}, {"a", "0"}, {"b", "2"}}));
    EXPECT_EQ(parse_query("x=a+b%20c%2B&&flag&e="), (q{{"e", ""}, {"flag", ""}, {"x", "a b c+"}}));
    EXPECT_EQ(parse_query("a=%zz%4"), (q{{"a", "%zz%4"}}));
    EXPECT_TRUE(parse_query("").empty());
}

TEST(build_key, format) {
    key_fixture f(std::nullopt, "videos_list", "/api/v1/videos");
    auto key = f.key({.path = "/api/v1/videos", .query = "page=1"}, "momentry");
    ASSERT_EQ(key.size(), std::string("momentry:videos_list:").size() + 64);
    EXPECT_EQ(key.rfind("momentry:videos_list:", 0), 0u);
    EXPECT_EQ(key.find_first_not_of("0123456789abcdef", 21), std::string::npos);
}

TEST(build_key, default_key_sorts_the_query) {
    key_fixture f(std::nullopt);
    EXPECT_EQ(f.key({.query = "a=1&b=2"}), f.key({.query = "b=2&a=1"}));
    EXPECT_EQ(f.key({.query = "a=x%20y"}), f.key({.query = "a=x+y"}));
    EXPECT_NE(f.key({.query = "a=1%262"}), f.key({.query = "a=1&2"}));
    EXPECT_NE(f.key({.query = "a="}), f.key({.query = ""}));
    EXPECT_NE(f.key({.query = "a=1"}), f.key({.query = "a=2"}));
    EXPECT_NE(f.key({.path = "/v/1"}), f.key({.path = "/v/2"}));
    EXPECT_NE(f.key({.query = "ab=c"}), f.key({.query = "a=bc"}));
}

TEST(build_key, query_fields) {
    key_fixture f(std::vector<std::string>{"query.page", "query.limit"});
    EXPECT_EQ(f.key({.query = "page=1&limit=10&utm=x"}), f.key({.query = "limit=10&page=1"}));
    EXPECT_NE(f.key({.query = "page=1&limit=10"}), f.key({.query = "page=10&limit=1"}));
    EXPECT_NE(f.key({.query = "page="}), f.key({.query = ""}));  // empty vs absent
    // Order of repeated parameters is meaning to a backend that takes the first or the last.
    EXPECT_NE(f.key({.query = "page=2&page=1"}), f.key({.query = "page=1&page=2"}));
    EXPECT_NE(f.key({.query = "page=1&page=2"}), f.key({.query = "page=1"}));
    EXPECT_NE(f.key({.query = "page=1%262"}), f.key({.query = "page=1&2"}));
    // "ab"+"c" vs "a"+"bc": length prefixes keep field boundaries.
    EXPECT_NE(f.key({.query = "page=ab&limit=c"}), f.key({.query = "page=a&limit=bc"}));
    EXPECT_NE(f.key({.query = "page=&limit=x"}), f.key({.query = "limit=x"}));
}

TEST(build_key, header_path_method_fields) {
    key_fixture f(std::vector<std::string>{"header.Accept-Language", "path.id", "method"});
    std::vector<header_view> en{{"accept-language", "en"}};
    std::vector<header_view> en_upper{{"ACCEPT-LANGUAGE", "en"}};
    std::vector<header_view> empty{{"Accept-Language", ""}};
    EXPECT_EQ(f.key({.headers = en}), f.key({.headers = en_upper}));
    EXPECT_NE(f.key({.headers = en}), f.key({}));
    EXPECT_NE(f.key({.headers = empty}), f.key({}));
    EXPECT_NE(f.key({.path = "/v/1"}), f.key({.path = "/v/2"}));
    // The path exactly as forwarded: a strict backend may answer one and 404 the other.
    EXPECT_NE(f.key({.path = "/v/a%20b"}), f.key({.path = "/v/a b"}));
    EXPECT_NE(f.key({.path = "/v/1/"}), f.key({.path = "/v/1"}));
    EXPECT_NE(f.key({.path = "/v/%31"}), f.key({.path = "/v/1"}));
    // Every line of a keyed header, each on its own.
    std::vector<header_view> two_lines{{"Accept-Language", "en"}, {"Accept-Language", "fr"}};
    std::vector<header_view> one_list{{"Accept-Language", "en, fr"}};
    std::vector<header_view> second_differs{{"Accept-Language", "en"}, {"Accept-Language", "<script>"}};
    EXPECT_NE(f.key({.headers = two_lines}), f.key({.headers = one_list}));
    EXPECT_NE(f.key({.headers = second_differs}), f.key({.headers = en}));
    EXPECT_NE(f.key({.headers = two_lines}), f.key({.headers = en}));
    EXPECT_EQ(f.key({.method = "HEAD"}), f.key({.method = "GET"}));
}

TEST(build_key, body_field) {
    key_fixture f(std::vector<std::string>{"body"});
    EXPECT_EQ(f.key({.body = R"({"a":1,"b":2})"}), f.key({.body = R"({ "b":2, "a":1 })"}));
    EXPECT_NE(f.key({.body = R"({"a":1})"}), f.key({.body = R"({"a":2})"}));
    EXPECT_NE(f.key({.body = "not json"}), f.key({.body = "not  json"}));
    EXPECT_EQ(f.key({.body = "not json"}), f.key({.body = "not json"}));
    EXPECT_NE(f.key({.body = ""}), f.key({.body = "{}"}));
    // A raw body equal to some canonical form must not collide with the JSON case.
    EXPECT_NE(f.key({.body = R"({"a":1,"a":1})"}), f.key({.body = R"({"a":1})"}));
    EXPECT_EQ(f.key({.method = "GET"}), f.key({.method = "HEAD"}));  // empty body on GET is fine
}

TEST(build_key, namespace_route_and_method_separate_entries) {
    key_fixture a(std::nullopt, "a");
    key_fixture b(std::nullopt, "b");
    EXPECT_NE(a.key({}, "prod"), a.key({}, "dev"));
    EXPECT_NE(a.key({}).substr(5), b.key({}).substr(5));  // hash differs too, not only the prefix
    EXPECT_NE(a.key({.method = "GET"}), a.key({.method = "POST"}));
    EXPECT_EQ(a.key({.method = "HEAD"}), a.key({.method = "GET"}));
    // Namespace/route boundary is length-prefixed inside the hash as well.
    key_fixture ab(std::nullopt, "b_c");
    key_fixture abc(std::nullopt, "c");
    const auto hash = [](const std::string& key) { return key.substr(key.size() - 64); };
    EXPECT_NE(hash(ab.key({}, "a")), hash(abc.key({}, "a_b")));
}

TEST(build_key, no_key_fields_is_one_entry_per_path) {
    // `key: []` keys no parameter, but the path as forwarded is always keyed (the proxy
    // keeps requests with unkeyed parameters out of the cache).
    key_fixture f(std::vector<std::string>{});
    EXPECT_EQ(f.key({.path = "/v/1", .query = "x=1"}), f.key({.path = "/v/1", .query = "y=2"}));
    EXPECT_NE(f.key({.path = "/v/1"}), f.key({.path = "/v/2"}));
}

TEST(build_key, addressing_fields_are_in_every_key) {
    for (auto key : std::vector<std::optional<std::vector<std::string>>>{std::nullopt, std::vector<std::string>{"path.id"}}) {
        key_fixture f(key);
        auto with = [&](std::vector<header_view> addressing) {
            path_params params{{"id", "1"}};
            request_view v{"GET", "/v/1", "", {}, "", &params, addressing};
            return build_key("ns", f.route(), v, "");
        };
        EXPECT_NE(with({{"host", "app.test"}}), with({{"host", "evil.example"}}));
        EXPECT_NE(with({{"host", "app.test"}}), with({}));
        EXPECT_NE(with({{"host", "a"}, {"x-forwarded-proto", "http"}}), with({{"host", "a"}, {"x-forwarded-proto", "https"}}));
        EXPECT_EQ(with({{"host", "a"}}), with({{"host", "a"}}));
    }
}

TEST(query, unkeyed_parameters_of_an_explicit_key) {
    config::route_config rc;
    rc.name = "r";
    rc.method = "GET";
    rc.path_pattern = "/v";
    rc.tiers = {config::tier_kind::memory};
    rc.ttl = std::chrono::minutes(1);
    rc.key = std::vector<std::string>{"query.page", "query.limit"};
    rc.ignore_query = {"utm_*", "fbclid"};
    config::config cfg;
    cfg.routes = {rc};
    matcher m(cfg);
    const auto& r = m.routes()[0];
    struct row {
        const char* query;
        std::optional<std::string> unkeyed;
    };
    const std::vector<row> table{
        {"", std::nullopt},
        {"page=1&limit=2", std::nullopt},
        {"page=1&page=2", std::nullopt},
        {"page=1&utm_source=x&fbclid=y", std::nullopt},
        {"page=1&PAGE=2", "PAGE"},               // names are case-sensitive, the backend's may not be
        {"page=1&x=1;page=2", "x"},              // ';' cloaking rides on an unkeyed parameter
        {"page=1&%70age=2", std::nullopt},       // decodes to page: keyed (as both values)
        {"page=1&fbclidx=1", "fbclidx"},         // no '*': exact name only
        {"page=1&=x", ""},
    };
    for (const auto& t : table) EXPECT_EQ(unkeyed_query_parameter(r, t.query), t.unkeyed) << t.query;
    key_fixture default_key(std::nullopt);
    EXPECT_EQ(unkeyed_query_parameter(default_key.route(), "anything=1"), std::nullopt);
}

TEST(credentials, fingerprint_and_key) {
    key_fixture f(std::nullopt);
    std::vector<header_view> none{{"Accept", "x"}};
    std::vector<header_view> alice{{"Authorization", "Bearer alice"}};
    std::vector<header_view> bob{{"authorization", "Bearer bob"}};
    std::vector<header_view> cookie{{"Cookie", "s=1"}};
    std::vector<header_view> cookies{{"Cookie", "s=1"}, {"Cookie", "t=2"}};
    std::vector<header_view> api{{"X-API-Key", "k"}};

    EXPECT_EQ(f.fingerprint({.headers = none}), "");
    EXPECT_EQ(f.fingerprint({}), "");
    const auto fa = f.fingerprint({.headers = alice});
    const auto fb = f.fingerprint({.headers = bob});
    EXPECT_EQ(fa.size(), 64u);
    EXPECT_NE(fa, fb);
    EXPECT_NE(f.fingerprint({.headers = cookie}), f.fingerprint({.headers = cookies}));
    EXPECT_NE(f.fingerprint({.headers = api}), "");
    // The header name is part of it: the same value in another header is another credential.
    std::vector<header_view> as_cookie{{"Cookie", "Bearer alice"}};
    EXPECT_NE(f.fingerprint({.headers = as_cookie}), fa);

    EXPECT_NE(f.key({}, "ns", fa), f.key({}, "ns", ""));
    EXPECT_NE(f.key({}, "ns", fa), f.key({}, "ns", fb));
}

TEST(credentials, configured_headers_count) {
    config::route_config rc;
    rc.name = "r";
    rc.method = "GET";
    rc.path_pattern = "/";
    rc.tiers = {config::tier_kind::memory};
    rc.ttl = std::chrono::minutes(1);
    rc.credential_headers = {"X-Tenant"};
    config::config cfg;
    cfg.routes = {rc};
    matcher m(cfg);
    std::vector<header_view> tenant{{"x-tenant", "t1"}};
    request_view v{"GET", "/", "", tenant, "", nullptr};
    EXPECT_NE(credential_fingerprint(m.routes()[0], v), "");
}

TEST(expand_categories, placeholders) {
    key_fixture f(std::nullopt, "r", "/v/{id}",
                  {"videos", "video:{query.uuid}", "v:{path.id}", "{method}:{header.X-T}"});
    path_params params{{"id", "7"}};
    std::vector<header_view> headers{{"x-t", "T"}};
    request_view v{"GET", "/v/7", "uuid=42&other=1", headers, "", &params};
    EXPECT_EQ(expand_categories(f.route().categories, v),
              (std::vector<std::string>{"videos", "video:42", "v:7", "GET:T"}));
}

TEST(expand_categories, absent_and_repeated_values) {
    key_fixture f(std::nullopt, "r", "/v/{id}", {"video:{query.uuid}", "h:{header.x}"});
    request_view absent{"HEAD", "/v/7", "", {}, "", nullptr};
    EXPECT_EQ(expand_categories(f.route().categories, absent), (std::vector<std::string>{"video:", "h:"}));
    request_view repeated{"GET", "/v/7", "uuid=2&uuid=1&uuid=2", {}, "", nullptr};
    EXPECT_EQ(expand_categories(f.route().categories, repeated),
              (std::vector<std::string>{"video:2", "video:1", "h:"}));
}

TEST(expand_categories, body_is_hashed) {
    auto t = parse_category_template("search:{body}");
    ASSERT_TRUE(t);
    request_view a{"POST", "/s", "", {}, R"({"q":"x","k":1})", nullptr};
    request_view b{"POST", "/s", "", {}, R"({"k":1, "q":"x"})", nullptr};
    auto ca = expand_categories({*t}, a);
    ASSERT_EQ(ca.size(), 1u);
    EXPECT_EQ(ca, expand_categories({*t}, b));
    EXPECT_EQ(ca[0], "search:" + sha256_hex(R"({"k":1,"q":"x"})"));
}

}  // namespace
}  // namespace cachecar::route
