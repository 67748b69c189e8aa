#include <cachecar/proxy/cache_rules.hpp>

#include <gtest/gtest.h>

namespace cachecar::proxy {
namespace {

using std::chrono::seconds;

TEST(cache_rules, directive_seconds) {
    EXPECT_EQ(directive_seconds("max-age=60", "max-age"), seconds(60));
    EXPECT_EQ(directive_seconds("public, S-MAXAGE=5, max-age=60", "s-maxage"), seconds(5));
    EXPECT_EQ(directive_seconds("max-age=\"7\"", "max-age"), seconds(7));
    EXPECT_EQ(directive_seconds("max-age=-1", "max-age"), std::nullopt);
    EXPECT_EQ(directive_seconds("max-age=abc", "max-age"), std::nullopt);
    EXPECT_EQ(directive_seconds("no-cache", "max-age"), std::nullopt);
    EXPECT_EQ(directive_seconds("max-agex=5", "max-age"), std::nullopt);
}

TEST(cache_rules, http_dates_in_all_three_forms) {
    const auto expected = std::chrono::system_clock::from_time_t(784111777);
    EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT"), expected);
    EXPECT_EQ(parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT"), expected);
    EXPECT_EQ(parse_http_date("Sun Nov  6 08:49:37 1994"), expected);
    EXPECT_EQ(parse_http_date("0"), std::nullopt);
    EXPECT_EQ(parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT trailing"), std::nullopt);
}

TEST(cache_rules, origin_freshness_precedence_and_age) {
    beast::http::fields f;
    EXPECT_EQ(origin_freshness(f), std::nullopt);
    f.set(beast::http::field::expires, "Sun, 06 Nov 1994 08:49:47 GMT");
    f.set(beast::http::field::date, "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_EQ(origin_freshness(f), seconds(10));
    f.set(beast::http::field::cache_control, "max-age=30");
    EXPECT_EQ(origin_freshness(f), seconds(30));
    f.set(beast::http::field::cache_control, "max-age=30, s-maxage=20");
    EXPECT_EQ(origin_freshness(f), seconds(20));
    f.set(beast::http::field::age, "5");
    EXPECT_EQ(origin_freshness(f), seconds(15));
    f.set(beast::http::field::age, "50");
    EXPECT_EQ(origin_freshness(f), seconds(0));
    beast::http::fields bad_expires;
    bad_expires.set(beast::http::field::expires, "0");
    EXPECT_EQ(origin_freshness(bad_expires), seconds(0)) << "an invalid Expires means already expired";
}

TEST(cache_rules, vary_names_normalised) {
    EXPECT_EQ(vary_names("Accept-Language, accept-encoding"), (std::vector<std::string>{"accept-encoding", "accept-language"}));
    EXPECT_EQ(vary_names("Origin, *"), (std::vector<std::string>{"*"}));
    EXPECT_TRUE(vary_names("").empty());
}

TEST(cache_rules, variant_fingerprint_distinguishes_absent_from_empty) {
    request a, b, c;
    b.set("Accept-Language", "");
    c.set("Accept-Language", "en");
    const std::vector<std::string> names{"accept-language"};
    EXPECT_NE(variant_fingerprint(names, a), variant_fingerprint(names, b));
    EXPECT_NE(variant_fingerprint(names, b), variant_fingerprint(names, c));
    request c2;
    c2.set("accept-language", "en");
    EXPECT_EQ(variant_fingerprint(names, c), variant_fingerprint(names, c2));
}

TEST(cache_rules, not_modified_rules) {
    request r;
    EXPECT_FALSE(not_modified(r, "\"a\"", ""));
    r.set(beast::http::field::if_none_match, "W/\"a\"");
    EXPECT_TRUE(not_modified(r, "\"a\"", ""));
    EXPECT_FALSE(not_modified(r, "", "")) << "no stored ETag cannot match";
    request ims;
    ims.set(beast::http::field::if_modified_since, "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_TRUE(not_modified(ims, "", "Sun, 06 Nov 1994 08:49:37 GMT"));
    EXPECT_FALSE(not_modified(ims, "", "Sun, 06 Nov 1994 08:49:38 GMT"));
    EXPECT_FALSE(not_modified(ims, "", "garbage"));
}

}  // namespace
}  // namespace cachecar::proxy
