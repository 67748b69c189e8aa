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

// RFC 9110 5.6.7 is a fixed grammar; strptime accepted variants a recipient must treat
// as invalid, so a malformed Expires made a response fresh (RFC 9111 5.3: invalid means
// already expired).
TEST(cache_rules, http_dates_outside_the_grammar_are_invalid) {
    for (const char* bad : {
             "Sun, 06 Nov 1994  08:49:37 GMT",  // two spaces
             "Sun,  06 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 8:49:37 GMT",    // one-digit hour
             "Sun, 6 Nov 1994 08:49:37 GMT",    // one-digit day
             "Sun, 06 Nov 94 08:49:37 GMT",     // two-digit year in IMF-fixdate
             "Sun, 06 Nov 1994 08:49:37 UTC",   // not GMT
             "Sun, 06 Nov 1994 08:49:37 gmt",   // case-sensitive
             "sun, 06 nov 1994 08:49:37 GMT",
             "Sun, 06 November 1994 08:49:37 GMT",
             "Sun 06 Nov 1994 08:49:37 GMT",    // no comma
             "Sun, 06 Nov 1994 24:00:00 GMT",   // hour out of range
             "Sun, 06 Nov 1994 08:60:37 GMT",
             "Sun, 31 Feb 1994 08:49:37 GMT",   // no such day
             "Sun, 00 Nov 1994 08:49:37 GMT",
             "Sun, 06 Nov 1994 08:49:37 +0000",
             "Sun, 06 Nov 1994 08:49:37",
             "Sunday, 06-Nov-1994 08:49:37 GMT",
             "Sun, 06-Nov-94 08:49:37 GMT",     // RFC 850 needs the full day name
             "Sun Nov 6 08:49:37 1994",         // asctime pads a one-digit day with a space
             "Sun Nov 06 08:49:37 1994 GMT",
             "2026-12-07T10:00:00Z",
             "1733565600",
             "",
         }) {
        EXPECT_EQ(parse_http_date(bad), std::nullopt) << '"' << bad << '"';
    }
    EXPECT_EQ(parse_http_date("Sun Nov 16 08:49:37 1994"), std::chrono::system_clock::from_time_t(784111777 + 10 * 86400));
    EXPECT_EQ(parse_http_date(" Sun, 06 Nov 1994 08:49:37 GMT "), std::chrono::system_clock::from_time_t(784111777))
        << "the field's surrounding whitespace is not part of the value";
    EXPECT_EQ(parse_http_date("Thu, 01 Jan 2287 00:00:00 GMT").has_value(), true) << "far-future dates parse";
}

// RFC 9111 1.2.2: delta-seconds is 1*DIGIT; a value too large to represent is 2^31.
TEST(cache_rules, delta_seconds_are_digits_clamped_at_2_to_the_31) {
    EXPECT_EQ(parse_delta_seconds("0"), seconds(0));
    EXPECT_EQ(parse_delta_seconds("7200"), seconds(7200));
    EXPECT_EQ(parse_delta_seconds("2147483648"), max_delta_seconds);
    EXPECT_EQ(parse_delta_seconds("99999999999"), max_delta_seconds);
    EXPECT_EQ(parse_delta_seconds("999999999999999999999999999999"), max_delta_seconds) << "overflow is 2^31, not invalid";
    for (const char* bad : {"7200.0", "-1", "+5", " 5", "5 ", "", "1e3", "0x10", "5s"}) {
        EXPECT_EQ(parse_delta_seconds(bad), std::nullopt) << '"' << bad << '"';
    }
    EXPECT_EQ(directive_seconds("max-age=99999999999", "max-age"), max_delta_seconds);
    EXPECT_EQ(directive_seconds("max-age=1.5", "max-age"), std::nullopt);
}

// Lifetimes never overflow the clock: a huge max-age or an Expires centuries ahead is
// clamped, so the response is stored and reused instead of expiring at once.
TEST(cache_rules, huge_lifetimes_are_clamped_not_overflowed) {
    const auto now = std::chrono::system_clock::now();
    beast::http::fields f;
    f.set(beast::http::field::cache_control, "max-age=99999999999");
    ASSERT_EQ(origin_freshness(f, now), max_delta_seconds);
    EXPECT_GT(now + *origin_freshness(f, now), now) << "adding the lifetime to the clock must not wrap";
    beast::http::fields far;
    far.set(beast::http::field::expires, "Thu, 01 Jan 2287 00:00:00 GMT");
    ASSERT_TRUE(origin_freshness(far, now).has_value());
    EXPECT_EQ(*origin_freshness(far, now), max_delta_seconds);
    EXPECT_GT(now + *origin_freshness(far, now), now);
}

// RFC 9111 4.2.3: corrected_initial_age = max(apparent_age, Age + response_delay).
TEST(cache_rules, initial_age_takes_age_and_date_into_account) {
    using std::chrono::system_clock;
    const auto now = system_clock::from_time_t(784111777 + 100);  // Date + 100 s
    const auto with = [](std::vector<std::pair<std::string, std::string>> lines) {
        beast::http::fields f;
        for (const auto& [n, v] : lines) f.insert(n, v);
        return f;
    };
    EXPECT_EQ(initial_age(with({}), now), seconds(0));
    EXPECT_EQ(initial_age(with({{"Age", "30"}}), now), seconds(30));
    EXPECT_EQ(initial_age(with({{"Age", "30"}}), now, seconds(2)), seconds(32)) << "plus the response delay";
    EXPECT_EQ(initial_age(with({{"Date", "Sun, 06 Nov 1994 08:49:37 GMT"}}), now), seconds(100)) << "apparent age";
    EXPECT_EQ(initial_age(with({{"Date", "Sun, 06 Nov 1994 08:49:37 GMT"}, {"Age", "500"}}), now), seconds(500));
    EXPECT_EQ(initial_age(with({{"Date", "Sun, 06 Nov 1994 08:51:37 GMT"}}), now), seconds(0)) << "a Date ahead of us";
    EXPECT_EQ(initial_age(with({{"Age", "7200.0"}}), now), seconds(0)) << "an invalid Age is ignored (5.1)";
    EXPECT_EQ(initial_age(with({{"Age", "-5"}}), now), seconds(0));
    EXPECT_EQ(initial_age(with({{"Age", "10"}, {"Age", "20"}}), now), seconds(0)) << "Age on two lines is invalid";
    EXPECT_EQ(initial_age(with({{"Age", "99999999999"}}), now), max_delta_seconds);
}

TEST(cache_rules, origin_freshness_precedence_and_age) {
    beast::http::fields f;
    EXPECT_EQ(origin_freshness(f), std::nullopt);
    // Received when the origin's Date says it was made: no apparent age.
    const auto received = std::chrono::system_clock::from_time_t(784111777);
    f.set(beast::http::field::expires, "Sun, 06 Nov 1994 08:49:47 GMT");
    f.set(beast::http::field::date, "Sun, 06 Nov 1994 08:49:37 GMT");
    EXPECT_EQ(origin_freshness(f, received), seconds(10));
    EXPECT_EQ(origin_freshness(f, received + seconds(4)), seconds(6)) << "4 s of apparent age (Date) are used up";
    f.set(beast::http::field::cache_control, "max-age=30");
    EXPECT_EQ(origin_freshness(f, received), seconds(30));
    f.set(beast::http::field::cache_control, "max-age=30, s-maxage=20");
    EXPECT_EQ(origin_freshness(f, received), seconds(20));
    f.set(beast::http::field::age, "5");
    EXPECT_EQ(origin_freshness(f, received), seconds(15));
    f.set(beast::http::field::age, "50");
    EXPECT_EQ(origin_freshness(f, received), seconds(0));
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
