// Compiled routing table. Built once per config snapshot; lookups are lock-free and
// cost O(path depth), independent of the number of routes (a trie by segment).
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/route/pattern.hpp>
#include <cachecar/route/request_view.hpp>

#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::route {

struct compiled_route {
    std::size_t index = 0;  // position in config.routes (first match wins)
    config::route_config cfg;
    path_pattern pattern;
    std::vector<template_part> key_fields;  // empty and default_key: path + whole query
    bool default_key = true;
    std::vector<category_template> categories;
    std::vector<std::string> credential_headers;  // lower-case; always includes authorization, proxy-authorization, cookie, x-api-key
};

struct compiled_invalidation {
    std::size_t index = 0;
    config::invalidate_config cfg;
    path_pattern pattern;
    std::vector<category_template> purges;
};

template <class T>
struct match_result {
    const T* target = nullptr;  // null: no match
    path_params params;
    explicit operator bool() const { return target != nullptr; }
};

class matcher {
public:
    // Compiles every route and invalidation of `cfg`. The loader has validated them;
    // throws std::invalid_argument if a pattern or template does not compile.
    explicit matcher(const config::config& cfg);
    matcher(matcher&&) noexcept;
    matcher& operator=(matcher&&) noexcept;
    ~matcher();

    // `path` is the target without the query. Among all routes whose method and
    // pattern match, the one listed first in the config wins.
    match_result<compiled_route> find_route(std::string_view method, std::string_view path) const;
    match_result<compiled_invalidation> find_invalidation(std::string_view method,
                                                          std::string_view path) const;

    const std::vector<compiled_route>& routes() const;
    const std::vector<compiled_invalidation>& invalidations() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::route
