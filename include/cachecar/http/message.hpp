// Message types and header rules shared by the client side and the upstream side.
#pragma once

#include <cachecar/net.hpp>

#include <functional>
#include <string_view>

namespace cachecar::http {

using request = beast::http::request<beast::http::string_body>;
using response = beast::http::response<beast::http::string_body>;

// Removes hop-by-hop headers (RFC 9110 §7.6.1): Connection and every field it names,
// Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade.
void strip_hop_by_hop(beast::http::fields& fields);

// True for methods RFC 9110 §9.2.2 calls idempotent (safe to retry on a fresh connection).
bool is_idempotent(beast::http::verb method);

// Case-insensitive search for a directive (e.g. "no-store") in a comma-separated
// header value such as Cache-Control.
bool has_directive(std::string_view header_value, std::string_view directive);

// Optional whitespace (SP, HTAB) removed from both ends.
std::string_view trim(std::string_view s);
// Calls `f` with each non-empty, trimmed element of a comma-separated header list.
void for_each_list_item(std::string_view list, const std::function<void(std::string_view)>& f);

// The request target split at '?'.
struct split_target {
    std::string_view path;
    std::string_view query;
};
split_target split(std::string_view target);

}  // namespace cachecar::http
