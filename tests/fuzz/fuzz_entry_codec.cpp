// The entry decoder (cache/entry_codec.hpp): what Redis and MongoDB hand back is
// untrusted bytes. decode_entry() must answer an entry or a decode_error for any
// input, never crash. The format is exact (no slack, no trailing bytes), so
//  - a decoded value re-encodes to the very bytes it came from (a v1 value: the same
//    bytes as v2, but for the version and the checksum), and
//  - an entry built from the input encodes into bytes that decode to an equal entry.
// The first byte picks which of the two the rest of the input feeds.
#include "fuzz_common.hpp"

#include <cachecar/cache/entry_codec.hpp>

#include <fuzzer/FuzzedDataProvider.h>

#include <cstddef>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>

namespace {

using namespace cachecar::cache;

bool same(const entry& a, const entry& b) {
    if (a.status != b.status || a.body != b.body || a.stored_at != b.stored_at || a.expires_at != b.expires_at ||
        a.retain_until != b.retain_until || a.headers.size() != b.headers.size() || !(a.headers == b.headers) ||
        a.stamps.size() != b.stamps.size())
        return false;
    for (std::size_t i = 0; i < a.stamps.size(); ++i)
        if (a.stamps[i].category != b.stamps[i].category || a.stamps[i].generation != b.stamps[i].generation)
            return false;
    return true;
}

void decode_bytes(std::string_view bytes) {
    const auto d = decode_entry(bytes);
    FUZZ_CHECK((d.value != nullptr) != d.error.has_value());
    if (d.error) {
        FUZZ_CHECK(!to_string(*d.error).empty());
        FUZZ_CHECK(make_error_code(*d.error).failed());
        return;
    }
    const std::string reencoded = encode_entry(*d.value);
    if (bytes[3] == 1) {
        // Read from format v1, written as v2: the same bytes but the version and the
        // checksum (see entry_codec.hpp).
        FUZZ_CHECK(reencoded.size() == bytes.size() && reencoded[3] == 2);
        FUZZ_CHECK(reencoded.compare(4, reencoded.size() - 8, bytes, 4, bytes.size() - 8) == 0);
    } else {
        FUZZ_CHECK(reencoded == bytes);
    }
    const auto again = decode_entry(reencoded);
    FUZZ_CHECK(again.value && same(*again.value, *d.value));
}

void encode_built(FuzzedDataProvider& in) {
    entry e;
    e.status = in.ConsumeIntegral<std::uint16_t>();
    e.stored_at = clock::time_point(clock::duration(in.ConsumeIntegral<clock::rep>()));
    e.expires_at = clock::time_point(clock::duration(in.ConsumeIntegral<clock::rep>()));
    e.retain_until = clock::time_point(clock::duration(in.ConsumeIntegral<clock::rep>()));
    // Fields a stored response could carry; the rest are refused by header_block
    // itself (a hit replays them verbatim), which decode must mirror.
    for (int n = in.ConsumeIntegralInRange<int>(0, 8); n > 0; --n) {
        const auto name = in.ConsumeRandomLengthString(32);
        const auto value = in.ConsumeRandomLengthString(64);
        if (header_block::valid(name, value)) {
            e.headers.add(name, value);
        } else {
            bool refused = false;
            try {
                e.headers.add(name, value);
            } catch (const std::invalid_argument&) {
                refused = true;
            }
            FUZZ_CHECK(refused);
        }
    }
    for (int n = in.ConsumeIntegralInRange<int>(0, 8); n > 0; --n)
        e.stamps.push_back({in.ConsumeRandomLengthString(32), in.ConsumeIntegral<std::uint64_t>()});
    e.body = in.ConsumeRemainingBytesAsString();

    const std::string bytes = encode_entry(e);
    const auto d = decode_entry(bytes);
    FUZZ_CHECK(d.value != nullptr);
    FUZZ_CHECK(same(*d.value, e));
    FUZZ_CHECK(encode_entry(*d.value) == bytes);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size == 0) return 0;
    if (data[0] & 1) {
        FuzzedDataProvider in(data + 1, size - 1);
        encode_built(in);
    } else {
        decode_bytes(std::string_view(reinterpret_cast<const char*>(data + 1), size - 1));
    }
    return 0;
}
