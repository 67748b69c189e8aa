// A borrowed, parser-independent view of a client request: what key and category
// templates read. Built by the HTTP side from the request *as it will be forwarded*
// (http/forwarding), so a key can only hold what the backend receives. Never owns data.
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
    std::string_view path;   // target before '?', exactly as forwarded
    std::string_view query;  // target after '?', without it; empty if none
    std::span<const header_view> headers;  // every field line, in order
    std::string_view body;
    const path_params* params = nullptr;  // captured by the matcher; may be null
    // Fields that say where the request was addressed (Host, a trusted proxy's
    // X-Forwarded-Proto, ...): part of every key, whatever the route's `key` says.
    std::span<const header_view> addressing = {};
    bool alias_underscores = false;  // '_' and '-' name the same field (server.underscores_in_headers)

    // Every line of the field `name` (case-insensitive), in order.
    template <class F>
    void for_each_header_line(std::string_view name, F&& f) const;
    // All lines joined with ", " (RFC 9110 5.3); nullopt if the field is absent.
    std::optional<std::string> header(std::string_view name) const;
    // Decoded path parameter by name.
    std::optional<std::string_view> param(std::string_view name) const;
};

}  // namespace cachecar::route

#include <cachecar/util/ascii.hpp>

template <class F>
void cachecar::route::request_view::for_each_header_line(std::string_view name, F&& f) const {
    for (const auto& h : headers) {
        if (util::same_field_name(h.name, name, alias_underscores)) f(h.value);
    }
}
