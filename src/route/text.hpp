// Small text helpers shared by the route component (pattern parsing, matching, keys).
#pragma once

#include <cachecar/util/ascii.hpp>

#include <string>
#include <string_view>

namespace cachecar::route::text {

// RFC 9110 token character (methods, header names).
using util::is_tchar;
using util::is_token;

std::string to_lower(std::string_view s);
std::string to_upper(std::string_view s);

// Percent-decodes `s`; malformed escapes are kept as written so that two different
// inputs never decode to the same output by accident of error handling.
// `plus_is_space` is for query strings (application/x-www-form-urlencoded).
std::string percent_decode(std::string_view s, bool plus_is_space);

}  // namespace cachecar::route::text
