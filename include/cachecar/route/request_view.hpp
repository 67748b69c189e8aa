// A borrowed, parser-independent view of a client request: what key and category
// templates read. Built by the HTTP session from the Beast message; never owns data.
#pragma once

#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachecar::route {

struct header_view {
    std::string_view name;  // as received (any case)
    std::string_view value;
};

using path_params = std::vector<std::pair<std::string, std::string>>;  // name -> decoded value

struct request_view {
    std::string_view method;
    std::string_view path;   // target before '?', as received
    std::string_view query;  // target after '?', without it; empty if none
    std::span<const header_view> headers;
    std::string_view body;
    const path_params* params = nullptr;  // captured by the matcher; may be null

    // Case-insensitive header lookup; the first occurrence wins.
    std::optional<std::string_view> header(std::string_view name) const;
    // Decoded path parameter by name.
    std::optional<std::string_view> param(std::string_view name) const;
};

}  // namespace cachecar::route
