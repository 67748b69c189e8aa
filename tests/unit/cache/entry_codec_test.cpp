#include <cachecar/cache/entry_codec.hpp>
#include <cachecar/http/message.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <cstdint>
#include <limits>
#include <set>
#include <string>
#include <vector>

namespace {

using cachecar::cache::category_stamp;
using cachecar::cache::clock;
using cachecar::cache::decode_entry;
using cachecar::cache::decode_error;
using cachecar::cache::encode_entry;
using cachecar::cache::entry;
using cachecar::cache::header_field;

// Offsets into an encoding (v1 and v2 share the layout), from the format comment in
// entry_codec.hpp.
constexpr std::size_t version_offset = 3;
constexpr std::size_t length_offset = 4;
constexpr std::size_t status_offset = 8;
constexpr std::size_t header_count_offset = status_offset + 2 + 3 * 8;

// v1's checksum, FNV-1a 32.
std::uint32_t fnv1a(std::string_view bytes) {
    std::uint32_t h = 2166136261u;
    for (unsigned char c : bytes) {
        h ^= c;
        h *= 16777619u;
    }
    return h;
}

// v2's checksum, CRC-32 (ISO-HDLC) bit by bit from its definition: reflected
// polynomial 0xEDB88320, initial value and final xor 0xFFFFFFFF. Independent of zlib,
// which the codec uses.
std::uint32_t crc32_reference(std::string_view bytes) {
    std::uint32_t crc = 0xFFFFFFFFu;
    for (unsigned char c : bytes) {
        crc ^= c;
        for (int k = 0; k < 8; ++k) crc = (crc >> 1) ^ (0xEDB88320u & (0u - (crc & 1u)));
    }
    return ~crc;
}

// The checksum of `bytes` for the version its header names.
std::uint32_t checksum_for(std::string_view bytes) {
    return bytes.size() > version_offset && bytes[version_offset] == 1 ? fnv1a(bytes) : crc32_reference(bytes);
}

// Builds encodings byte by byte from the documented format, independently of the
// codec, so that tests can state exactly which malformation they plant and still give
// it a valid checksum (otherwise every malformation would stop at bad_checksum).
class raw_builder {
public:
    explicit raw_builder(std::uint8_t version = 2) {
        bytes_ = std::string("CCE", 3) + static_cast<char>(version) + std::string(4, '\0');
    }

    raw_builder& u8(std::uint8_t v) { return le(v, 1); }
    raw_builder& u16(std::uint16_t v) { return le(v, 2); }
    raw_builder& u32(std::uint32_t v) { return le(v, 4); }
    raw_builder& u64(std::uint64_t v) { return le(v, 8); }
    raw_builder& i64(std::int64_t v) { return le(static_cast<std::uint64_t>(v), 8); }
    raw_builder& raw(std::string_view s) {
        bytes_.append(s);
        return *this;
    }
    raw_builder& str(std::string_view s) {
        u32(static_cast<std::uint32_t>(s.size()));
        return raw(s);
    }
    // status and the three time points: the fixed part every encoding starts with.
    raw_builder& fixed(std::uint16_t status = 200, std::int64_t stored = 1, std::int64_t expires = 2,
                       std::int64_t retain = 3) {
        return u16(status).i64(stored).i64(expires).i64(retain);
    }

    // Fills in the total length and appends the checksum, as a writer would.
    std::string seal() const {
        std::string out = bytes_;
        patch_u32(out, length_offset, static_cast<std::uint32_t>(out.size() - 8 + 4));
        const std::uint32_t sum = checksum_for(out);
        for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>((sum >> (8 * i)) & 0xFF));
        return out;
    }

    // Appends the checksum to `unsealed` (an encoding without its last four bytes).
    static std::string seal_as_is(std::string unsealed) {
        const std::uint32_t sum = checksum_for(unsealed);
        for (int i = 0; i < 4; ++i) unsealed.push_back(static_cast<char>((sum >> (8 * i)) & 0xFF));
        return unsealed;
    }

    static void patch_u32(std::string& s, std::size_t at, std::uint32_t v) {
        for (int i = 0; i < 4; ++i) s[at + static_cast<std::size_t>(i)] = static_cast<char>((v >> (8 * i)) & 0xFF);
    }

private:
    raw_builder& le(std::uint64_t v, int n) {
        for (int i = 0; i < n; ++i) bytes_.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
        return *this;
    }
    std::string bytes_;
};

// Recomputes the checksum after a test has edited an encoding.
std::string reseal(std::string bytes) {
    bytes.resize(bytes.size() - 4);
    const std::uint32_t sum = checksum_for(bytes);
    for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((sum >> (8 * i)) & 0xFF));
    return bytes;
}

std::string all_byte_values() {
    std::string s;
    for (int i = 0; i < 256; ++i) s.push_back(static_cast<char>(i));
    return s;
}

entry rich_entry() {
    entry e;
    e.status = 203;
    e.headers = {
        {"Content-Type", "application/octet-stream"},
        {"X-Obs-Text", "a\tb \x80\xff"},
        {"X-Empty", ""},
        {"X-Colon", "a: b:c"},
        {"X-Utf8", "vidéo — 東京 🎬"},
        {"Set-Twice", "1"},
        {"Set-Twice", "2"},
    };
    e.body = all_byte_values() + std::string(3, '\0') + "tail";
    // Odd nanosecond counts prove no precision is lost; one point before the epoch
    // proves the sign survives.
    const auto now = clock::now();
    e.stored_at = now + clock::duration(1);
    e.expires_at = now + std::chrono::minutes(5) + clock::duration(7);
    e.retain_until = clock::time_point(clock::duration(-123456789));
    e.stamps = {
        {"*", 0},
        {"videos", 42},
        {"video:3fa85f64-5717-4562-b3fc-2c963f66afa6", std::numeric_limits<std::uint64_t>::max()},
        {"", 1},
    };
    return e;
}

// A smaller entry for the exhaustive mutation loops (each mutation is one decode).
entry small_entry() {
    entry e;
    e.status = 200;
    e.headers = {{"Content-Type", "text/plain"}, {"X-Tab", "a\tb"}};
    e.body = std::string("hello\0world", 11);
    e.stored_at = clock::time_point(clock::duration(1700000000123456789));
    e.expires_at = e.stored_at + std::chrono::seconds(30);
    e.retain_until = e.expires_at + std::chrono::seconds(60);
    e.stamps = {{"*", 3}, {"videos", 9}};
    return e;
}

void expect_same(const entry& a, const entry& b) {
    EXPECT_EQ(a.status, b.status);
    EXPECT_EQ(a.headers.size(), b.headers.size());
    EXPECT_EQ(a.headers.wire(), b.headers.wire());
    EXPECT_EQ(a.body, b.body);
    EXPECT_EQ(a.stored_at, b.stored_at);
    EXPECT_EQ(a.expires_at, b.expires_at);
    EXPECT_EQ(a.retain_until, b.retain_until);
    ASSERT_EQ(a.stamps.size(), b.stamps.size());
    for (std::size_t i = 0; i < a.stamps.size(); ++i) {
        EXPECT_EQ(a.stamps[i].category, b.stamps[i].category) << "stamp " << i;
        EXPECT_EQ(a.stamps[i].generation, b.stamps[i].generation) << "stamp " << i;
    }
}

entry must_decode(std::string_view bytes) {
    const auto r = decode_entry(bytes);
    EXPECT_FALSE(r.error.has_value()) << "decode failed: " << to_string(*r.error);
    EXPECT_NE(r.value, nullptr);
    return r.value ? *r.value : entry{};
}

decode_error must_fail(std::string_view bytes) {
    const auto r = decode_entry(bytes);
    EXPECT_EQ(r.value, nullptr);
    EXPECT_TRUE(r.error.has_value());
    return r.error.value_or(decode_error{});
}

TEST(entry_codec, round_trips_a_rich_entry) {
    const entry e = rich_entry();
    const std::string bytes = encode_entry(e);
    expect_same(must_decode(bytes), e);
}

TEST(entry_codec, round_trips_an_empty_entry) {
    const entry e;  // no headers, no stamps, empty body, epoch time points
    const std::string bytes = encode_entry(e);
    // magic+version+length, status, 3 time points, 2 counts, body length, checksum
    EXPECT_EQ(bytes.size(), 8u + 2 + 24 + 4 + 4 + 4 + 4);
    expect_same(must_decode(bytes), e);
}

TEST(entry_codec, round_trips_many_headers_and_a_large_body) {
    entry e;
    for (int i = 0; i < 5000; ++i) e.headers.add("X-H" + std::to_string(i), std::string(static_cast<std::size_t>(i % 50), 'v'));
    for (int i = 0; i < 300; ++i) e.stamps.push_back({"cat" + std::to_string(i), static_cast<std::uint64_t>(i) * 1000003});
    e.body.reserve(1 << 20);
    for (std::size_t i = 0; i < (1u << 20); ++i) e.body.push_back(static_cast<char>((i * 131) ^ (i >> 8)));
    expect_same(must_decode(encode_entry(e)), e);
}

TEST(entry_codec, encoding_matches_the_documented_layout) {
    entry e;
    e.status = 404;
    e.headers = {{"A", "bc"}};
    e.stamps = {{"*", 0x0102030405060708ull}};
    e.body = "xyz";
    e.stored_at = clock::time_point(clock::duration(-2));
    e.expires_at = clock::time_point(clock::duration(0x1122334455667788));
    e.retain_until = clock::time_point(clock::duration(5));
    const std::string expected = raw_builder()
                                     .fixed(404, -2, 0x1122334455667788, 5)
                                     .u32(1).str("A").str("bc")
                                     .u32(1).str("*").u64(0x0102030405060708ull)
                                     .str("xyz")
                                     .seal();
    EXPECT_EQ(encode_entry(e), expected);
    // Spot-check the little-endian words by hand, not only through the builder.
    EXPECT_EQ(expected.substr(0, 4), std::string("CCE\x02", 4));
    EXPECT_EQ(static_cast<unsigned char>(expected[status_offset]), 404 & 0xFF);
    EXPECT_EQ(static_cast<unsigned char>(expected[status_offset + 1]), 404 >> 8);
    EXPECT_EQ(static_cast<unsigned char>(expected[length_offset]), expected.size() - 8);
}

TEST(entry_codec, checksum_reference_matches_the_crc32_check_value) {
    // The catalogued check value of CRC-32/ISO-HDLC: the test's reference is right.
    EXPECT_EQ(crc32_reference("123456789"), 0xCBF43926u);
    // And the codec's v2 checksum is that CRC: the last four bytes of an encoding.
    const std::string bytes = encode_entry(small_entry());
    const std::string sealed = raw_builder::seal_as_is(bytes.substr(0, bytes.size() - 4));
    EXPECT_EQ(bytes, sealed);
}

TEST(entry_codec, values_written_by_the_previous_format_v1_still_decode) {
    // An upgrade must not turn every stored value into a corrupt one: v1 (FNV-1a
    // checksum) is still read.
    const std::string v1 = raw_builder(1)
                               .fixed(203, 10, 20, 30)
                               .u32(1).str("Content-Type").str("text/plain")
                               .u32(2).str("videos").u64(7).str("*").u64(1)
                               .str("old body")
                               .seal();
    const entry e = must_decode(v1);
    EXPECT_EQ(e.status, 203u);
    EXPECT_EQ(cachecar::http::list_value(e.headers, "content-type"), "text/plain");
    ASSERT_EQ(e.stamps.size(), 2u);
    EXPECT_EQ(e.stamps[0].category, "videos");
    EXPECT_EQ(e.stamps[0].generation, 7u);
    EXPECT_EQ(e.body, "old body");
    EXPECT_EQ(e.retain_until, clock::time_point(clock::duration(30)));

    // Each version is held to its own checksum: v1 bytes sealed with v2's CRC, and the
    // reverse, are corrupt.
    auto sealed_with = [](std::string bytes, std::uint32_t (*sum_of)(std::string_view)) {
        bytes.resize(bytes.size() - 4);
        const std::uint32_t sum = sum_of(bytes);
        for (int i = 0; i < 4; ++i) bytes.push_back(static_cast<char>((sum >> (8 * i)) & 0xFF));
        return bytes;
    };
    EXPECT_EQ(must_fail(sealed_with(v1, crc32_reference)), decode_error::bad_checksum);
    EXPECT_EQ(must_fail(sealed_with(encode_entry(small_entry()), fnv1a)), decode_error::bad_checksum);
    // (and with the right one, both decode)
    EXPECT_EQ(must_decode(sealed_with(v1, fnv1a)).body, "old body");
}

TEST(entry_codec, every_truncation_is_rejected) {
    const std::string bytes = encode_entry(rich_entry());
    for (std::size_t n = 0; n < bytes.size(); ++n) {
        const auto err = must_fail(std::string_view(bytes).substr(0, n));
        EXPECT_TRUE(err == decode_error::truncated || err == decode_error::bad_length || err == decode_error::malformed)
            << "length " << n << ": " << to_string(err);
    }
}

TEST(entry_codec, truncation_inside_the_declared_length_is_reported_as_truncated) {
    const std::string bytes = encode_entry(small_entry());
    EXPECT_EQ(must_fail(std::string_view(bytes).substr(0, 7)), decode_error::truncated);
    EXPECT_EQ(must_fail(std::string_view(bytes).substr(0, bytes.size() - 1)), decode_error::truncated);
}

TEST(entry_codec, every_single_bit_flip_is_rejected) {
    const std::string good = encode_entry(small_entry());
    for (std::size_t i = 0; i < good.size(); ++i) {
        for (int bit = 0; bit < 8; ++bit) {
            std::string bad = good;
            bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
            const auto err = must_fail(bad);
            // Where the flip lands decides which check must catch it.
            if (i < 3) {
                EXPECT_EQ(err, decode_error::bad_magic) << "byte " << i << " bit " << bit;
            } else if (i == version_offset) {
                EXPECT_EQ(err, decode_error::bad_version) << "byte " << i << " bit " << bit;
            } else if (i < 8) {
                EXPECT_TRUE(err == decode_error::bad_length || err == decode_error::truncated)
                    << "byte " << i << " bit " << bit << ": " << to_string(err);
            } else {
                EXPECT_EQ(err, decode_error::bad_checksum) << "byte " << i << " bit " << bit;
            }
        }
    }
}

TEST(entry_codec, wrong_magic_is_rejected) {
    std::string bytes = encode_entry(small_entry());
    bytes[0] = 'X';
    EXPECT_EQ(must_fail(bytes), decode_error::bad_magic);
    bytes = encode_entry(small_entry());
    bytes[2] = 'e';
    EXPECT_EQ(must_fail(bytes), decode_error::bad_magic);
}

TEST(entry_codec, other_versions_are_rejected_as_bad_version) {
    for (std::uint8_t v : {0, 3, 255}) {
        std::string bytes = encode_entry(small_entry());
        bytes[version_offset] = static_cast<char>(v);
        // Resealing proves the version itself is checked, not just the checksum.
        EXPECT_EQ(must_fail(reseal(bytes)), decode_error::bad_version) << "version " << int{v};
    }
}

TEST(entry_codec, trailing_bytes_after_the_declared_length_are_rejected) {
    const std::string good = encode_entry(small_entry());
    EXPECT_EQ(must_fail(good + "x"), decode_error::bad_length);
    EXPECT_EQ(must_fail(good + std::string(1, '\0')), decode_error::bad_length);
    EXPECT_EQ(must_fail(good + good), decode_error::bad_length);
}

TEST(entry_codec, trailing_garbage_inside_the_declared_length_is_rejected) {
    // A checksum-valid value whose fields end before the checksum does.
    const std::string bytes = raw_builder().fixed().u32(0).u32(0).str("body").raw("junk").seal();
    EXPECT_EQ(must_fail(bytes), decode_error::malformed);
    // The same value without the junk is accepted, so the junk is what was rejected.
    EXPECT_EQ(must_decode(raw_builder().fixed().u32(0).u32(0).str("body").seal()).body, "body");
}

TEST(entry_codec, huge_header_count_is_rejected_without_allocating) {
    // Resizing for 2^32 headers would need ~256 GiB; the decoder must see that the
    // value cannot hold them before reserving anything (and must not throw).
    const std::string bytes = raw_builder().fixed().u32(0xFFFFFFFF).u32(0).str("").seal();
    EXPECT_EQ(must_fail(bytes), decode_error::malformed);
}

TEST(entry_codec, huge_stamp_count_is_rejected_without_allocating) {
    const std::string bytes = raw_builder().fixed().u32(0).u32(0xFFFFFFFF).str("").seal();
    EXPECT_EQ(must_fail(bytes), decode_error::malformed);
}

TEST(entry_codec, huge_string_lengths_are_rejected) {
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(1).u32(0xFFFFFFFF).str("v").u32(0).str("").seal()),
              decode_error::malformed);
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(1).str("n").u32(0xFFFFFFFF).u32(0).str("").seal()),
              decode_error::malformed);
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(0).u32(1).u32(0xFFFFFFFF).u64(1).str("").seal()),
              decode_error::malformed);
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(0).u32(0).u32(0xFFFFFFFF).seal()), decode_error::malformed);
    // A body length one past what is there.
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(0).u32(0).u32(5).raw("1234").seal()), decode_error::malformed);
}

TEST(entry_codec, header_fields_that_could_split_a_response_are_rejected) {
    // Checksum-valid values from a buggy or hostile writer: a hit replays stored fields
    // verbatim, so CR, LF or NUL in a value, or a name that is not a token, must never
    // decode into an entry.
    for (const std::string& value : {std::string("a\r\nSet-Cookie: stolen=1"), std::string("a\nb"),
                                    std::string("a\rb"), std::string("a\0b", 3)}) {
        EXPECT_EQ(must_fail(raw_builder().fixed().u32(1).str("X-Evil").str(value).u32(0).str("").seal()),
                  decode_error::malformed);
    }
    for (const std::string& name : {std::string(""), std::string("Bad Name"), std::string("X:Y"), std::string("X\r\n")}) {
        EXPECT_EQ(must_fail(raw_builder().fixed().u32(1).str(name).str("v").u32(0).str("").seal()),
                  decode_error::malformed);
    }
    // The same layout with a proper field decodes.
    EXPECT_EQ(cachecar::http::list_value(must_decode(raw_builder().fixed().u32(1).str("X-Fine").str("v").u32(0).str("").seal()).headers,
                                         "x-fine"),
              "v");
}

TEST(entry_codec, counts_that_overrun_the_value_are_rejected) {
    // Two headers declared, one present; the bytes that follow would parse as a header
    // if the decoder did not track where each field ends.
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(2).str("a").str("b").u32(0).str("").seal()), decode_error::malformed);
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(0).u32(2).str("*").u64(0).str("").seal()), decode_error::malformed);
    // Missing body length entirely.
    EXPECT_EQ(must_fail(raw_builder().fixed().u32(0).u32(0).seal()), decode_error::bad_length);
}

TEST(entry_codec, declared_length_disagreeing_with_the_data_is_rejected) {
    std::string bytes = encode_entry(small_entry());
    const auto declared = static_cast<std::uint32_t>(bytes.size() - 8);
    std::string longer = bytes;
    raw_builder::patch_u32(longer, length_offset, declared + 1);
    EXPECT_EQ(must_fail(reseal(longer)), decode_error::truncated);
    std::string huge = bytes;
    raw_builder::patch_u32(huge, length_offset, 0xFFFFFFFF);
    EXPECT_EQ(must_fail(reseal(huge)), decode_error::truncated);
    std::string shorter = bytes;
    raw_builder::patch_u32(shorter, length_offset, declared - 1);
    EXPECT_EQ(must_fail(reseal(shorter)), decode_error::bad_length);
    std::string tiny = bytes;
    raw_builder::patch_u32(tiny, length_offset, 0);
    EXPECT_EQ(must_fail(tiny), decode_error::bad_length);
}

TEST(entry_codec, a_wrong_checksum_is_rejected) {
    std::string bytes = encode_entry(small_entry());
    bytes.back() = static_cast<char>(bytes.back() ^ 0x80);
    EXPECT_EQ(must_fail(bytes), decode_error::bad_checksum);
    // A changed body byte with the old checksum.
    bytes = encode_entry(small_entry());
    bytes[bytes.size() - 5] = 'X';
    EXPECT_EQ(must_fail(bytes), decode_error::bad_checksum);
}

TEST(entry_codec, header_count_edit_without_reseal_is_a_checksum_error) {
    std::string bytes = encode_entry(small_entry());
    raw_builder::patch_u32(bytes, header_count_offset, 0xFFFFFFFF);
    EXPECT_EQ(must_fail(bytes), decode_error::bad_checksum);
    EXPECT_EQ(must_fail(reseal(bytes)), decode_error::malformed);
}

TEST(entry_codec, foreign_values_are_rejected) {
    for (const std::string_view v : {std::string_view("hello"), std::string_view(R"({"status":200,"body":"x"})"),
                                     std::string_view(R"("CCE")"), std::string_view("OK"), std::string_view("h"),
                                     std::string_view("\x00\x00\x00\x00\x00\x00\x00\x00", 8)}) {
        const auto err = must_fail(v);
        EXPECT_TRUE(err == decode_error::bad_magic || err == decode_error::truncated) << v << ": " << to_string(err);
    }
    EXPECT_EQ(must_fail("hello"), decode_error::bad_magic);
    EXPECT_EQ(must_fail(""), decode_error::truncated);
    EXPECT_EQ(must_fail("CC"), decode_error::truncated);
    EXPECT_EQ(must_fail(std::string_view()), decode_error::truncated);
}

TEST(entry_codec, every_error_has_a_distinct_name) {
    std::set<std::string_view> names;
    for (auto e : {decode_error::truncated, decode_error::bad_magic, decode_error::bad_version, decode_error::bad_length,
                   decode_error::bad_checksum, decode_error::malformed}) {
        EXPECT_FALSE(to_string(e).empty());
        names.insert(to_string(e));
    }
    EXPECT_EQ(names.size(), 6u);
}

TEST(entry_codec, statuses_beyond_sixteen_bits_are_refused_at_encode) {
    entry e;
    e.status = 70000;
    EXPECT_THROW((void)encode_entry(e), std::invalid_argument);
}

}  // namespace
