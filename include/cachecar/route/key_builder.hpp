// Cache keys and category names for one request. Pure functions.
//
// A key is "<namespace>:<route>:<hex SHA-256>" where the hash covers the namespace,
// the route name, the method, the addressing fields (Host, ...), the path exactly as
// forwarded, every key field (header fields line by line) and the credential, each
// written as "<length>:<bytes>" so that no two different requests produce the same
// input. The view must be of the request as forwarded (http/forwarding).
#pragma once

#include <cachecar/route/matcher.hpp>
#include <cachecar/route/request_view.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachecar::route {

// Lower-case hex SHA-256.
std::string sha256_hex(std::string_view data);

// Canonical JSON (object keys sorted by code point, no insignificant whitespace,
// numbers and strings in one normal form), or nullopt if `text` is not JSON.
std::optional<std::string> canonical_json(std::string_view text);

// Query parameters percent-decoded ('+' as space), sorted by name; repeated names keep
// their order (backends read the first or the last, so order is meaning).
std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query);

// Whether a decoded parameter name is one of a route's ignore_query entries (a final
// '*' matches a prefix).
bool ignored_query_name(const std::vector<std::string>& ignore, std::string_view name);

// On a route with an explicit key: the first query parameter the key does not name
// (and ignore_query does not list), whose value the backend may read although the key
// does not hold it. nullopt when every parameter is keyed, and always for default-key
// routes (they key the whole query).
std::optional<std::string> unkeyed_query_parameter(const compiled_route& route, std::string_view query);

// Hash of every credential header present (the route's credential_headers), or
// empty if the request carries none. Used for keys and for coalescing.
std::string credential_fingerprint(const compiled_route& route, const request_view& req);

// The storage key. `credential` is credential_fingerprint(), or "" when the route is
// shared or the request carries no credential.
std::string build_key(std::string_view key_namespace, const compiled_route& route,
                      const request_view& req, std::string_view credential);

// The key a request is stored under: build_key() with the request's credential
// fingerprint, or with none when the route is `shared`.
std::string request_key(std::string_view key_namespace, const compiled_route& route, const request_view& req);

// Expands category templates against a request: "video:{query.uuid}" -> "video:42".
// A placeholder whose value is absent expands to the empty string.
std::vector<std::string> expand_categories(const std::vector<category_template>& templates,
                                           const request_view& req);

}  // namespace cachecar::route
