// Reading a field as all of its lines (RFC 9110 5.3), and lists with quoted strings
// (RFC 9110 5.6.1, 5.6.4): the one helper every field read goes through.
#include <cachecar/http/message.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace cachecar::http {
namespace {

namespace bh = beast::http;

bh::fields fields(std::initializer_list<std::pair<const char*, const char*>> lines) {
    bh::fields f;
    for (const auto& [name, value] : lines) f.insert(name, value);
    return f;
}

std::vector<std::string> items(std::string_view list) {
    std::vector<std::string> out;
    for_each_list_item(list, [&](std::string_view i) { out.emplace_back(i); });
    return out;
}

TEST(fields, every_line_of_a_list_field_is_read_in_order) {
    auto f = fields({{"Cache-Control", "max-age=60"}, {"X-Other", "x"}, {"cache-control", "private"}, {"CACHE-CONTROL", "no-cache"}});
    EXPECT_EQ(list_value(f, "cache-control"), "max-age=60, private, no-cache");
    EXPECT_EQ(line_count(f, "Cache-Control"), 3u);
    EXPECT_TRUE(has_directive(list_value(f, "cache-control"), "private"));
    EXPECT_TRUE(list_has(f, "cache-control", "no-cache"));
    EXPECT_FALSE(list_has(f, "cache-control", "no-store"));
    EXPECT_EQ(list_value(f, "vary"), "");
    EXPECT_EQ(line_count(f, "vary"), 0u);
}

TEST(fields, a_singleton_on_two_lines_is_no_value) {
    auto one = fields({{"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}});
    auto two = fields({{"Expires", "Thu, 01 Jan 2099 00:00:00 GMT"}, {"expires", "0"}});
    EXPECT_EQ(single_value(one, "expires"), "Thu, 01 Jan 2099 00:00:00 GMT");
    EXPECT_EQ(single_value(two, "expires"), std::nullopt) << "invalid: which line counts would be a guess";
    EXPECT_EQ(single_value(one, "date"), std::nullopt);
}

TEST(fields, stored_header_blocks_are_read_the_same_way) {
    cache::header_block b{{"Vary", "Accept"}, {"ETag", "\"a\""}, {"Vary", "Cookie"}};
    EXPECT_EQ(list_value(b, "vary"), "Accept, Cookie");
    EXPECT_EQ(single_value(b, "etag"), "\"a\"");
}

TEST(fields, underscore_aliases_only_when_asked) {
    auto f = fields({{"X-API-Key", "a"}, {"X_API_KEY", "b"}, {"x-api_key", "c"}});
    EXPECT_EQ(list_value(f, "x-api-key"), "a");
    EXPECT_EQ(list_value(f, "x-api-key", true), "a, b, c");
    EXPECT_TRUE(same_field_name("X_Forwarded_Host", "x-forwarded-host", true));
    EXPECT_FALSE(same_field_name("X_Forwarded_Host", "x-forwarded-host", false));
    EXPECT_FALSE(same_field_name("x-forwarded-hos", "x-forwarded-host", true));
}

TEST(fields, list_items_respect_quoted_strings) {
    struct row {
        const char* list;
        std::vector<std::string> expected;
    };
    const std::vector<row> table{
        {"a, b,c", {"a", "b", "c"}},
        {" a ,, b ,", {"a", "b"}},
        {"private=\"Set-Cookie, X-A\", max-age=60", {"private=\"Set-Cookie, X-A\"", "max-age=60"}},
        {"no-cache=\"a\\\", b\", public", {"no-cache=\"a\\\", b\"", "public"}},  // quoted-pair
        {"\"unterminated, x", {"\"unterminated, x"}},
        {"", {}},
    };
    for (const auto& r : table) EXPECT_EQ(items(r.list), r.expected) << r.list;
    // A directive named inside a quoted value is not a directive.
    EXPECT_FALSE(has_directive("no-cache=\"no-store\"", "no-store"));
    EXPECT_TRUE(has_directive("max-age=60, Private=\"X-A, X-B\"", "private"));
}

TEST(fields, hop_by_hop_fields_go_on_every_connection_line_but_host_stays) {
    auto f = fields({{"Connection", "keep-alive, X-A"},
                     {"Connection", "x-b"},
                     {"X-A", "1"},
                     {"X-B", "2"},
                     {"X-C", "3"},
                     {"Keep-Alive", "timeout=5"},
                     {"Transfer-Encoding", "chunked"},
                     {"Upgrade", "websocket"},
                     {"Host", "app.test"}});
    f.insert("Connection", "Host");
    strip_hop_by_hop(f);
    EXPECT_EQ(line_count(f, "x-a"), 0u);
    EXPECT_EQ(line_count(f, "x-b"), 0u);
    EXPECT_EQ(list_value(f, "x-c"), "3");
    EXPECT_EQ(line_count(f, "connection") + line_count(f, "keep-alive") + line_count(f, "transfer-encoding") +
                  line_count(f, "upgrade"),
              0u);
    EXPECT_EQ(list_value(f, "host"), "app.test") << "a Connection line cannot remove the target's host";
}

}  // namespace
}  // namespace cachecar::http
