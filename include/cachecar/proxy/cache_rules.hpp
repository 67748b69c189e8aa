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

// The value of a `name=N` directive in a Cache-Control value, in seconds; nullopt if
// absent or not a non-negative integer (quoted values are accepted).
std::optional<std::chrono::seconds> directive_seconds(std::string_view cache_control, std::string_view name);

// IMF-fixdate, RFC 850 and asctime forms (RFC 9110 5.6.7); nullopt if unparseable.
std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text);

// The freshness lifetime a shared cache may give this response (RFC 9111 4.2.1):
// s-maxage, else max-age, else Expires minus Date; minus the response's Age. nullopt
// when the origin says nothing. Never negative.
std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields);

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
