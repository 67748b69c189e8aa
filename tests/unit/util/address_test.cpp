#include <cachecar/util/address.hpp>

#include <gtest/gtest.h>

#include <vector>

namespace cachecar::util {
namespace {

TEST(address, ip_prefixes) {
    auto p = parse_ip_prefix("10.0.0.0/8");
    ASSERT_TRUE(p);
    EXPECT_TRUE(prefix_contains(*p, "10.1.2.3"));
    EXPECT_TRUE(prefix_contains(*p, "::ffff:10.1.2.3")) << "the IPv4-mapped form of the same address";
    EXPECT_FALSE(prefix_contains(*p, "11.0.0.1"));
    EXPECT_FALSE(prefix_contains(*p, "not an address"));
    auto host = parse_ip_prefix("127.0.0.1");
    ASSERT_TRUE(host);
    EXPECT_TRUE(prefix_contains(*host, "127.0.0.1"));
    EXPECT_FALSE(prefix_contains(*host, "127.0.0.2"));
    auto v6 = parse_ip_prefix("fd00::/8");
    ASSERT_TRUE(v6);
    EXPECT_TRUE(prefix_contains(*v6, "fd12::1"));
    EXPECT_FALSE(prefix_contains(*v6, "fe80::1"));
    auto all = parse_ip_prefix("0.0.0.0/0");
    ASSERT_TRUE(all);
    EXPECT_TRUE(prefix_contains(*all, "203.0.113.9"));
    EXPECT_FALSE(prefix_contains(*all, "2001:db8::1")) << "an IPv4 /0 is every IPv4 address only";
    for (const char* bad : {"", "10.0.0.0/33", "10.0.0.1/8", "10.0.0.0/", "10.0.0.0/x", "::1/129", "host.example", "10.0.0/8"}) {
        EXPECT_FALSE(parse_ip_prefix(bad)) << bad;
    }
}

TEST(address, host_field_values) {
    for (const char* ok : {"app.test", "app.test:8080", "127.0.0.1", "127.0.0.1:80", "[::1]", "[::1]:8080", "", "a%2Db",
                           "xn--bcher-kva.example", "under_score.test", "host:"}) {
        EXPECT_TRUE(valid_authority(ok)) << ok;
    }
    for (const char* bad : {"a b", "a/b", "u@a", "a:1:2", "a:8o", "[::1", "[1.2.3.4]", "a%2", "a%zz", "[::1]x", "a\\b",
                            "a:123456", "a#b", "a?b"}) {
        EXPECT_FALSE(valid_authority(bad)) << bad;
    }
}

}  // namespace
}  // namespace cachecar::util
