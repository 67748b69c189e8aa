#include <cachecar/config/config.hpp>

#include <gtest/gtest.h>

#include <chrono>

namespace cachecar::config {
namespace {

using std::chrono::milliseconds;

TEST(parse_duration, accepts_every_unit) {
    EXPECT_EQ(parse_duration("500ms"), milliseconds(500));
    EXPECT_EQ(parse_duration("30s"), milliseconds(30'000));
    EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
    EXPECT_EQ(parse_duration("2h"), milliseconds(7'200'000));
    EXPECT_EQ(parse_duration("1d"), milliseconds(86'400'000));
    EXPECT_EQ(parse_duration("0s"), milliseconds(0));
}

TEST(parse_duration, rejects_bare_numbers_and_junk) {
    EXPECT_FALSE(parse_duration("30"));
    EXPECT_FALSE(parse_duration(""));
    EXPECT_FALSE(parse_duration("s"));
    EXPECT_FALSE(parse_duration("5 m"));
    EXPECT_FALSE(parse_duration("-5s"));
    EXPECT_FALSE(parse_duration("1.5s"));
    EXPECT_FALSE(parse_duration("5min"));
    EXPECT_FALSE(parse_duration("5M"));
    EXPECT_FALSE(parse_duration("1h30m"));
    EXPECT_FALSE(parse_duration("99999999999999999999d"));  // overflows
    EXPECT_FALSE(parse_duration("9999999999999999d"));      // overflows the millisecond count
}

TEST(parse_size, binary_decimal_and_plain) {
    EXPECT_EQ(parse_size("512KiB"), 512u * 1024u);
    EXPECT_EQ(parse_size("256MiB"), 256u * 1024u * 1024u);
    EXPECT_EQ(parse_size("1GiB"), 1024u * 1024u * 1024u);
    EXPECT_EQ(parse_size("10KB"), 10'000u);
    EXPECT_EQ(parse_size("1MB"), 1'000'000u);
    EXPECT_EQ(parse_size("2GB"), 2'000'000'000u);
    EXPECT_EQ(parse_size("16384"), 16384u);
    EXPECT_EQ(parse_size("100B"), 100u);
    EXPECT_EQ(parse_size("0"), 0u);
}

TEST(parse_size, rejects_junk) {
    EXPECT_FALSE(parse_size(""));
    EXPECT_FALSE(parse_size("MiB"));
    EXPECT_FALSE(parse_size("1.5MiB"));
    EXPECT_FALSE(parse_size("1 MiB"));
    EXPECT_FALSE(parse_size("1mib"));
    EXPECT_FALSE(parse_size("1XB"));
    EXPECT_FALSE(parse_size("-1"));
    EXPECT_FALSE(parse_size("99999999999999999999"));
    EXPECT_FALSE(parse_size("17179869184GiB"));  // 2^64 bytes
}

TEST(tier_kind, names) {
    EXPECT_EQ(to_string(tier_kind::memory), "memory");
    EXPECT_EQ(to_string(tier_kind::redis), "redis");
    EXPECT_EQ(to_string(tier_kind::mongo), "mongo");
}

TEST(diagnostic, formats_like_a_compiler) {
    diagnostic d{"conf/x.yaml", 12, 7, "bad thing"};
    EXPECT_EQ(d.to_string(), "conf/x.yaml:12:7: bad thing");
}

}  // namespace
}  // namespace cachecar::config
