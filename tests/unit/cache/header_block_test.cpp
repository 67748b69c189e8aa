// header_block: the stored form of a response's header fields, replayed verbatim on
// every hit, so it must keep fields exactly and refuse anything that could split a
// response.
#include <cachecar/cache/entry.hpp>
#include <cachecar/http/message.hpp>

#include <gtest/gtest.h>

#include <stdexcept>
#include <string>
#include <vector>

using cachecar::cache::header_block;
using cachecar::cache::header_view;

namespace {

std::vector<std::pair<std::string, std::string>> fields(const header_block& b) {
    std::vector<std::pair<std::string, std::string>> out;
    for (const header_view& h : b) out.emplace_back(h.name, h.value);
    return out;
}

}  // namespace

TEST(header_block, keeps_fields_in_order_in_wire_form) {
    header_block b;
    b.add("Content-Type", "application/json");
    b.add("Set-Twice", "1");
    b.add("Set-Twice", "2");
    b.add("X-Empty", "");
    b.add("X-Colon", "a: b:c");
    EXPECT_EQ(b.size(), 5u);
    EXPECT_EQ(b.wire(),
              "Content-Type: application/json\r\nSet-Twice: 1\r\nSet-Twice: 2\r\nX-Empty: \r\nX-Colon: a: b:c\r\n");
    const std::vector<std::pair<std::string, std::string>> expected{{"Content-Type", "application/json"},
                                                                     {"Set-Twice", "1"},
                                                                     {"Set-Twice", "2"},
                                                                     {"X-Empty", ""},
                                                                     {"X-Colon", "a: b:c"}};
    EXPECT_EQ(fields(b), expected);
}

TEST(header_block, fields_are_read_by_name_as_all_their_lines) {
    const header_block b{{"ETag", "\"v1\""}, {"Set-Twice", "1"}, {"set-twice", "2"}};
    EXPECT_EQ(cachecar::http::single_value(b, "etag"), "\"v1\"");
    EXPECT_EQ(cachecar::http::list_value(b, "SET-TWICE"), "1, 2");
    EXPECT_EQ(cachecar::http::single_value(b, "set-twice"), std::nullopt);
    EXPECT_EQ(cachecar::http::list_value(b, "Last-Modified"), "");
}

TEST(header_block, refuses_fields_that_could_split_a_response) {
    header_block b;
    EXPECT_THROW(b.add("X-Evil", "a\r\nSet-Cookie: stolen=1"), std::invalid_argument);
    EXPECT_THROW(b.add("X-Evil", "a\nb"), std::invalid_argument);
    EXPECT_THROW(b.add("X-Evil", std::string("a\0b", 3)), std::invalid_argument);
    EXPECT_THROW(b.add("", "v"), std::invalid_argument);
    EXPECT_THROW(b.add("Bad Name", "v"), std::invalid_argument);
    EXPECT_THROW(b.add("X:Y", "v"), std::invalid_argument);
    // Nothing of a refused field is kept.
    EXPECT_TRUE(b.empty());
    EXPECT_EQ(b.wire(), "");
    // Tabs and obs-text (bytes >= 0x80) are legal field content and are kept.
    b.add("X-Obs", "a\tb \x80\xff");
    EXPECT_EQ(cachecar::http::list_value(b, "x-obs"), "a\tb \x80\xff");
}

TEST(header_block, equal_blocks_compare_equal) {
    const header_block a{{"A", "1"}, {"B", "2"}};
    header_block b;
    b.add("A", "1");
    EXPECT_FALSE(a == b);
    b.add("B", "2");
    EXPECT_TRUE(a == b);
}
