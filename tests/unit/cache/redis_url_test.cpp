#include <cachecar/cache/redis/redis_client.hpp>

#include <gtest/gtest.h>

namespace cachecar::cache::redis {
namespace {

TEST(redis_url, host_port_db) {
    auto o = parse_redis_url("redis://10.1.2.3:6380/4");
    ASSERT_TRUE(o) << o.error;
    EXPECT_EQ(o->host, "10.1.2.3");
    EXPECT_EQ(o->port, 6380);
    EXPECT_EQ(o->db, 4);
    EXPECT_TRUE(o->password.empty());
    EXPECT_TRUE(o->unix_path.empty());
}

TEST(redis_url, defaults_port_and_db) {
    auto o = parse_redis_url("redis://cache.internal");
    ASSERT_TRUE(o) << o.error;
    EXPECT_EQ(o->host, "cache.internal");
    EXPECT_EQ(o->port, 6379);
    EXPECT_EQ(o->db, 0);
}

TEST(redis_url, credentials) {
    auto o = parse_redis_url("redis://app:s3cr:et@127.0.0.1:6379/0");
    ASSERT_TRUE(o) << o.error;
    EXPECT_EQ(o->user, "app");
    EXPECT_EQ(o->password, "s3cr:et");
    auto p = parse_redis_url("redis://onlypass@127.0.0.1/1");
    ASSERT_TRUE(p);
    EXPECT_EQ(p->user, "");
    EXPECT_EQ(p->password, "onlypass");
    EXPECT_EQ(p->db, 1);
}

TEST(redis_url, ipv6_and_unix_socket) {
    auto o = parse_redis_url("redis://[::1]:7000/2");
    ASSERT_TRUE(o) << o.error;
    EXPECT_EQ(o->host, "::1");
    EXPECT_EQ(o->port, 7000);
    auto u = parse_redis_url("unix:///run/redis/redis.sock?db=3&password=pw");
    ASSERT_TRUE(u) << u.error;
    EXPECT_EQ(u->unix_path, "/run/redis/redis.sock");
    EXPECT_EQ(u->db, 3);
    EXPECT_EQ(u->password, "pw");
}

TEST(redis_url, rejects_bad_urls) {
    for (const char* bad : {"http://x", "redis://", "redis://h:0", "redis://h:70000", "redis://h:port",
                            "redis://h/x", "redis://h/-1", "unix://relative.sock", "unix://", "redis://[::1",
                            "redis://h?colour=red"}) {
        EXPECT_FALSE(parse_redis_url(bad)) << bad;
    }
}

TEST(redis_format, resp_encoding_is_binary_safe) {
    EXPECT_EQ(format_command(args("GET", "k")), "*2\r\n$3\r\nGET\r\n$1\r\nk\r\n");
    EXPECT_EQ(format_command(args("SET", std::string("a\0b", 3))), std::string("*2\r\n$3\r\nSET\r\n$3\r\na\0b\r\n", 22));
}

}  // namespace
}  // namespace cachecar::cache::redis
