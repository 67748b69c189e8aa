// Route patterns (`METHOD /path/{param}/*`) and the templates used for keys and
// categories. Pure functions, no I/O; the config loader uses them to validate and the
// matcher to compile.
#pragma once

#include <cachecar/parsed.hpp>

#include <string>
#include <string_view>
#include <vector>

namespace cachecar::route {

struct path_segment {
    bool is_param = false;
    std::string text;  // literal segment text, or the parameter name
};

struct path_pattern {
    std::vector<path_segment> segments;  // "/" alone = no segments
    bool trailing_wildcard = false;      // final "*": matches zero or more further segments
    std::vector<std::string> param_names() const;
};

// "GET /api/v1/videos/{uuid}" -> method + pattern. Method must be an HTTP token
// (upper-cased on output); path must start with '/'; `{name}` must fill a whole
// segment; `*` only as the final segment; no duplicate parameter names; no '?' .
struct method_and_pattern {
    std::string method;
    std::string path;  // as written
    path_pattern pattern;
};
parsed<method_and_pattern> parse_match(std::string_view text);

// Where a template placeholder or key field takes its value from.
enum class source { literal, path, query, header, body, method };

struct template_part {
    source from = source::literal;
    std::string text;  // literal text, or the parameter/header name (header names lower-cased)
};

// A key field: "query.page", "path.uuid", "header.Accept-Language", "body", "method".
parsed<template_part> parse_key_field(std::string_view text);

// A category template: literal text with `{source.name}` placeholders, e.g.
// "video:{query.uuid}". `{body}` and `{method}` are allowed; braces must balance; a
// category may not be empty or "*" (reserved for purge-all).
struct category_template {
    std::vector<template_part> parts;  // adjacent literals merged
    bool has_placeholders() const;
    // Literal parts with every placeholder replaced by "{}": two templates with equal
    // shapes address the same family of categories.
    std::string shape() const;
};
parsed<category_template> parse_category_template(std::string_view text);

// True when a purge template can name a category the route template produces: their
// literal parts agree and placeholders line up (`video:{path.uuid}` reaches
// `video:{query.uuid}`), or the purge is fully literal and fits the route's template
// (`video:42` reaches `video:{query.uuid}`).
bool purge_reaches(const category_template& purge, const category_template& produced);

}  // namespace cachecar::route
