#include <cachecar/cache/entry_codec.hpp>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <memory>
#include <stdexcept>

#include <zlib.h>

namespace cachecar::cache {

namespace {

constexpr char magic[3] = {'C', 'C', 'E'};
// Written: v2. Read: v1 as well, so values stored by the previous release stay hits
// after an upgrade. The versions differ only in the checksum (see entry_codec.hpp).
constexpr std::uint8_t format_v1 = 1;
constexpr std::uint8_t format_version = 2;

// magic + version + total length: the part outside the declared length.
constexpr std::size_t prefix_size = 3 + 1 + 4;
// status, three time points, header count, stamp count, body length, checksum: the
// smallest value the declared length can describe (an entry with nothing in it).
constexpr std::size_t min_declared = 2 + 3 * 8 + 4 + 4 + 4 + 4;
constexpr std::size_t checksum_size = 4;
// Each header is at least its two length words; each stamp its length word and generation.
constexpr std::size_t min_header_size = 4 + 4;
constexpr std::size_t min_stamp_size = 4 + 8;

// The format stores raw ticks; a narrower rep would silently change the meaning of
// stored values, so refuse to build rather than write a different format.
static_assert(sizeof(clock::rep) == 8 && std::numeric_limits<clock::rep>::is_signed,
              "entry formats v1 and v2 store system_clock ticks as i64");
static_assert(std::endian::native == std::endian::little || std::endian::native == std::endian::big,
              "mixed-endian hosts are not supported");

constexpr std::uint32_t fnv_offset = 2166136261u;
constexpr std::uint32_t fnv_prime = 16777619u;

// v1's checksum. Byte at a time with a multiply in the dependency chain: ~89 us for a
// 64 KiB body, which made decoding the largest cost of a Redis-tier hit.
std::uint32_t fnv1a(const char* data, std::size_t size) {
    std::uint32_t h = fnv_offset;
    for (std::size_t i = 0; i < size; ++i) {
        h ^= static_cast<unsigned char>(data[i]);
        h *= fnv_prime;
    }
    return h;
}

// v2's checksum: CRC-32 (ISO-HDLC, zlib's), ~6x faster than fnv1a here and a
// stronger detector of the corruption it is for (any burst up to 32 bits).
std::uint32_t crc32_of(const char* data, std::size_t size) {
    uLong crc = crc32_z(0L, Z_NULL, 0);
    crc = crc32_z(crc, reinterpret_cast<const Bytef*>(data), size);
    return static_cast<std::uint32_t>(crc);
}

std::uint32_t checksum(std::uint8_t version, const char* data, std::size_t size) {
    return version == format_v1 ? fnv1a(data, size) : crc32_of(data, size);
}

template <class U>
U to_little(U v) {
    if constexpr (std::endian::native == std::endian::little) {
        return v;
    } else {
        U out = 0;
        for (std::size_t i = 0; i < sizeof(U); ++i) {
            out = static_cast<U>((out << 8) | ((v >> (8 * i)) & 0xFF));
        }
        return out;
    }
}

// Writes into a buffer already sized to the exact encoding, so each field is one
// memcpy with no capacity checks or temporaries.
class writer {
public:
    explicit writer(char* out) : p_(out) {}

    template <class U>
    void put(U v) {
        const U le = to_little(v);
        std::memcpy(p_, &le, sizeof le);
        p_ += sizeof le;
    }
    void put_bytes(const char* data, std::size_t size) {
        // memcpy with a null source is undefined even for size 0 (empty string_view).
        if (size != 0) std::memcpy(p_, data, size);
        p_ += size;
    }
    void put_string(std::string_view s) {
        put(static_cast<std::uint32_t>(s.size()));
        put_bytes(s.data(), s.size());
    }
    void put_time(clock::time_point t) { put(static_cast<std::uint64_t>(t.time_since_epoch().count())); }

    char* position() const { return p_; }

private:
    char* p_;
};

// Every read checks the remaining length first; a failed read leaves the reader
// failed so the caller can test once after a group of reads.
class reader {
public:
    reader(const char* data, std::size_t size) : p_(data), end_(data + size) {}

    std::size_t remaining() const { return static_cast<std::size_t>(end_ - p_); }

    template <class U>
    bool get(U& v) {
        if (remaining() < sizeof(U)) return false;
        U le;
        std::memcpy(&le, p_, sizeof le);
        v = to_little(le);  // the conversion is its own inverse
        p_ += sizeof le;
        return true;
    }
    bool get_string(std::string& s) {
        std::uint32_t len = 0;
        if (!get(len) || remaining() < len) return false;
        s.assign(p_, len);
        p_ += len;
        return true;
    }
    bool get_time(clock::time_point& t) {
        std::uint64_t ticks = 0;
        if (!get(ticks)) return false;
        t = clock::time_point(clock::duration(static_cast<clock::rep>(ticks)));
        return true;
    }

private:
    const char* p_;
    const char* end_;
};

std::uint32_t checked_u32(std::size_t n) {
    // Stored responses are bounded by max_object_bytes far below this; reaching it is a
    // caller bug, and writing a wrapped length would produce an entry that decodes wrong.
    if (n > std::numeric_limits<std::uint32_t>::max()) {
        throw std::length_error("entry field too large for the entry format");
    }
    return static_cast<std::uint32_t>(n);
}

decode_result fail(decode_error e) { return decode_result{nullptr, e}; }

}  // namespace

std::string encode_entry(const entry& e) {
    if (e.status > std::numeric_limits<std::uint16_t>::max()) {
        throw std::invalid_argument("entry status does not fit the entry format");
    }
    std::size_t declared = min_declared + e.body.size();
    for (const auto& h : e.headers) declared += min_header_size + h.name.size() + h.value.size();
    for (const auto& s : e.stamps) declared += min_stamp_size + s.category.size();
    // Every count and length is at most the declared length, so this one check covers
    // all the u32 fields below.
    const std::uint32_t declared32 = checked_u32(declared);

    std::string out;
    out.resize(prefix_size + declared);
    writer w(out.data());
    w.put_bytes(magic, sizeof magic);
    w.put(format_version);
    w.put(declared32);
    w.put(static_cast<std::uint16_t>(e.status));
    w.put_time(e.stored_at);
    w.put_time(e.expires_at);
    w.put_time(e.retain_until);
    w.put(static_cast<std::uint32_t>(e.headers.size()));
    for (const auto& h : e.headers) {
        w.put_string(h.name);
        w.put_string(h.value);
    }
    w.put(static_cast<std::uint32_t>(e.stamps.size()));
    for (const auto& s : e.stamps) {
        w.put_string(s.category);
        w.put(s.generation);
    }
    w.put_string(e.body);
    const auto checked = static_cast<std::size_t>(w.position() - out.data());
    w.put(checksum(format_version, out.data(), checked));
    return out;
}

std::string_view to_string(decode_error e) {
    switch (e) {
    case decode_error::truncated: return "truncated";
    case decode_error::bad_magic: return "bad magic";
    case decode_error::bad_version: return "bad version";
    case decode_error::bad_length: return "bad length";
    case decode_error::bad_checksum: return "bad checksum";
    case decode_error::malformed: return "malformed";
    }
    return "unknown decode error";
}

decode_result decode_entry(std::string_view bytes) {
    // Compare whatever part of the magic is present, so a short foreign value ("hi")
    // is reported as foreign rather than as a truncated entry.
    if (bytes.empty()) return fail(decode_error::truncated);
    const std::size_t magic_present = std::min(bytes.size(), sizeof magic);
    if (std::memcmp(bytes.data(), magic, magic_present) != 0) return fail(decode_error::bad_magic);
    if (bytes.size() < prefix_size) return fail(decode_error::truncated);
    const auto version = static_cast<std::uint8_t>(bytes[3]);
    if (version != format_version && version != format_v1) return fail(decode_error::bad_version);

    reader prefix(bytes.data() + 4, 4);
    std::uint32_t declared = 0;
    prefix.get(declared);
    if (declared < min_declared) return fail(decode_error::bad_length);
    const std::size_t present = bytes.size() - prefix_size;
    if (present < declared) return fail(decode_error::truncated);
    if (present > declared) return fail(decode_error::bad_length);

    // Verify before parsing: a value that fails here was changed after writing, and
    // reporting that is more useful than whichever structural error the change caused.
    const std::size_t checked = bytes.size() - checksum_size;
    reader tail(bytes.data() + checked, checksum_size);
    std::uint32_t stored_sum = 0;
    tail.get(stored_sum);
    if (checksum(version, bytes.data(), checked) != stored_sum) return fail(decode_error::bad_checksum);

    // From here on the checksum matched, so a failure means a writer produced a bad
    // value; the reader still bounds every read, so it cannot go past the fields.
    reader r(bytes.data() + prefix_size, checked - prefix_size);
    auto e = std::make_shared<entry>();
    std::uint16_t status = 0;
    if (!r.get(status) || !r.get_time(e->stored_at) || !r.get_time(e->expires_at) || !r.get_time(e->retain_until)) {
        return fail(decode_error::malformed);
    }
    e->status = status;

    std::uint32_t header_count = 0;
    // Bounding the count by the bytes left keeps a hostile count from reserving memory.
    if (!r.get(header_count) || header_count > r.remaining() / min_header_size) return fail(decode_error::malformed);
    std::string name;
    std::string value;
    for (std::uint32_t i = 0; i < header_count; ++i) {
        // A field that could split the response when written is as bad as a short read.
        if (!r.get_string(name) || !r.get_string(value) || !header_block::valid(name, value)) {
            return fail(decode_error::malformed);
        }
        e->headers.add(name, value);
    }
    e->headers.shrink_to_fit();

    std::uint32_t stamp_count = 0;
    if (!r.get(stamp_count) || stamp_count > r.remaining() / min_stamp_size) return fail(decode_error::malformed);
    e->stamps.resize(stamp_count);
    for (auto& s : e->stamps) {
        if (!r.get_string(s.category) || !r.get(s.generation)) return fail(decode_error::malformed);
    }

    if (!r.get_string(e->body)) return fail(decode_error::malformed);
    if (r.remaining() != 0) return fail(decode_error::malformed);
    return decode_result{std::move(e), std::nullopt};
}

}  // namespace cachecar::cache
