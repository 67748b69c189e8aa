// HTTP caching rules (RFC 9110 / RFC 9111) as pure functions: freshness from origin
// headers, conditional requests and Vary. Every field is read as all of its lines
// (message.hpp).
#pragma once

#include <cachecar/proxy/http_names.hpp>

#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::proxy {

// The largest delta-seconds cachecar represents: a larger value, or one that overflows,
// is taken as 2^31 (RFC 9111 1.2.2), so lifetimes never overflow the clock.
inline constexpr std::chrono::seconds max_delta_seconds{2147483648LL};

// delta-seconds (RFC 9111 1.2.2): 1*DIGIT, clamped to max_delta_seconds; nullopt for
// anything else ("7200.0", "-1", " 5", "").
std::optional<std::chrono::seconds> parse_delta_seconds(std::string_view text);

// The value of a `name=N` directive in a Cache-Control value, as delta-seconds
// (quoted values are accepted); nullopt if absent or not delta-seconds.
std::optional<std::chrono::seconds> directive_seconds(std::string_view cache_control, std::string_view name);

// IMF-fixdate, RFC 850 and asctime forms (RFC 9110 5.6.7), to the letter: fixed field
// widths, one space between fields, GMT, case-sensitive names, valid ranges. nullopt
// for anything else (two spaces, a one-digit hour, "UTC", a trailing byte), which a
// cache must treat as invalid (for Expires: already expired, RFC 9111 5.3). In whole
// seconds, so dates past 2262 (beyond the nanosecond clock) are still representable.
std::optional<std::chrono::sys_seconds> parse_http_date(std::string_view text);

// How old the response already was when cachecar received it at `response_time`:
// RFC 9111 4.2.3's corrected_initial_age, max(apparent age from Date, Age +
// `response_delay`). An invalid or repeated Age is ignored (5.1); a Date that is
// missing, invalid or in the future gives no apparent age. At most max_delta_seconds.
std::chrono::seconds initial_age(const beast::http::fields& fields, std::chrono::system_clock::time_point response_time,
                                 std::chrono::seconds response_delay = std::chrono::seconds(0));

// The cache directives that govern a response (RFC 9213 2.2): the first of `targeted`
// (field names, in order) present with a non-empty value, else Cache-Control. When a
// targeted field is used, Cache-Control and Expires are ignored.
struct response_directives {
    std::string list;
    bool targeted = false;
};
template <class Fields>
response_directives directives_of(const Fields& fields, const std::vector<std::string>& targeted) {
    for (const auto& name : targeted) {
        auto value = list_value(fields, name);
        if (!value.empty()) return {std::move(value), true};
    }
    return {list_value(fields, "cache-control"), false};
}

// The freshness a shared cache may still give this response when received at
// `response_time` (RFC 9111 4.2.1): s-maxage, else max-age, else Expires minus Date,
// less its initial_age(). nullopt when the origin says nothing. Never negative, at most
// max_delta_seconds.
std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields,
                                                     std::chrono::system_clock::time_point response_time =
                                                         std::chrono::system_clock::now());
// The same from the directives that govern the response (directives_of): targeted
// directives give the lifetime alone, without Expires.
std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields,
                                                     std::chrono::system_clock::time_point response_time,
                                                     const response_directives& directives);

// Whether a request's validators match a stored response (RFC 9110 13.1.2, 13.1.3,
// evaluated in the order of 13.2.2): If-None-Match (weak comparison; "*" matches)
// takes precedence over If-Modified-Since. True means: answer 304.
bool not_modified(const request& req, std::string_view etag, std::string_view last_modified);

// Header names listed in a Vary value (pass every line: list_value), lower-cased and
// sorted; {"*"} when "*" is among them.
std::vector<std::string> vary_names(std::string_view vary);
// A digest of the request's lines of those headers; equal digests mean the same
// variant. An absent header differs from an empty one, and two lines from one line
// holding both values.
std::string variant_fingerprint(const std::vector<std::string>& names, const request& req,
                                bool alias_underscores = false);

}  // namespace cachecar::proxy
