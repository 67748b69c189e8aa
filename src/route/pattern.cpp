#include <cachecar/route/pattern.hpp>

#include "text.hpp"

#include <algorithm>
#include <cstddef>
#include <vector>

namespace cachecar::route {

namespace {

bool is_space(char c) { return c == ' ' || c == '\t'; }

std::string_view trim(std::string_view s) {
    while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
    while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
    return s;
}

bool is_param_name(std::string_view s) {
    if (s.empty()) return false;
    return std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
    });
}

bool has_control(std::string_view s) {
    return std::any_of(s.begin(), s.end(), [](char c) {
        auto u = static_cast<unsigned char>(c);
        return u < 0x20 || u == 0x7f;
    });
}

// Built by appending: GCC 12 at -O3 misreports "\"" + std::string&& as a memcpy past
// any object size (-Wstringop-overflow, GCC bug 105329), failing -Werror Release builds.
std::string quoted(std::string_view s) {
    std::string out;
    out.reserve(s.size() + 2);
    out.append("\"").append(s).append("\"");
    return out;
}

parsed<path_pattern> parse_path(std::string_view path) {
    using result_t = parsed<path_pattern>;
    if (path.empty() || path.front() != '/') return result_t::fail("path must start with '/'");
    if (path.find_first_of("?#") != std::string_view::npos)
        return result_t::fail("path may not contain a query or fragment ('?', '#')");
    if (has_control(path)) return result_t::fail("path contains a control character");

    path_pattern out;
    std::string_view rest = path.substr(1);
    // "/a/b/" is the same pattern as "/a/b": the matcher ignores an empty final segment.
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.empty()) return result_t::ok(std::move(out));

    std::vector<std::string_view> raw;
    for (std::size_t start = 0;;) {
        std::size_t slash = rest.find('/', start);
        raw.push_back(rest.substr(start, slash == std::string_view::npos ? std::string_view::npos : slash - start));
        if (slash == std::string_view::npos) break;
        start = slash + 1;
    }

    for (std::size_t i = 0; i < raw.size(); ++i) {
        std::string_view seg = raw[i];
        const bool last = i + 1 == raw.size();
        if (seg.empty()) return result_t::fail("empty path segment ('//')");
        if (seg == "*") {
            if (!last) return result_t::fail("'*' is only allowed as the final segment");
            out.trailing_wildcard = true;
            continue;
        }
        if (seg.front() == '{') {
            const bool whole = seg.size() >= 2 && seg.back() == '}' &&
                               seg.substr(1, seg.size() - 2).find_first_of("{}") == std::string_view::npos;
            if (!whole)
                return result_t::fail("a parameter must fill a whole segment: " + quoted(seg));
            std::string_view name = seg.substr(1, seg.size() - 2);
            if (name.empty()) return result_t::fail("empty parameter name '{}'");
            if (!is_param_name(name))
                return result_t::fail("bad parameter name " + quoted(name) + " (use letters, digits and '_')");
            for (const auto& s : out.segments)
                if (s.is_param && s.text == name)
                    return result_t::fail("duplicate parameter {" + std::string(name) + "}");
            out.segments.push_back({true, std::string(name)});
            continue;
        }
        if (seg.find_first_of("{}") != std::string_view::npos)
            return result_t::fail("a parameter must fill a whole segment: " + quoted(seg));
        if (seg.find('*') != std::string_view::npos)
            return result_t::fail("'*' must be a whole final segment: " + quoted(seg));
        // Literals are compared with decoded request segments, so store them decoded.
        out.segments.push_back({false, text::percent_decode(seg, false)});
    }
    return result_t::ok(std::move(out));
}

bool is_query_name(std::string_view s) {
    return !s.empty() && !has_control(s) && s.find_first_of("{} ") == std::string_view::npos;
}

}  // namespace

std::vector<std::string> path_pattern::param_names() const {
    std::vector<std::string> names;
    for (const auto& s : segments)
        if (s.is_param) names.push_back(s.text);
    return names;
}

parsed<method_and_pattern> parse_match(std::string_view text_in) {
    using result_t = parsed<method_and_pattern>;
    std::string_view t = trim(text_in);
    if (t.empty()) return result_t::fail("empty match (expected \"METHOD /path\")");
    std::size_t sp = 0;
    while (sp < t.size() && !is_space(t[sp])) ++sp;
    if (sp == t.size()) {
        if (t.front() == '/') return result_t::fail("missing method (expected \"METHOD /path\")");
        return result_t::fail("missing path (expected \"METHOD /path\")");
    }
    std::string_view method = t.substr(0, sp);
    std::string_view path = trim(t.substr(sp));
    if (!text::is_token(method)) return result_t::fail("bad method " + quoted(method));
    for (char c : path)
        if (is_space(c)) return result_t::fail("unexpected text after the path");

    auto pattern = parse_path(path);
    if (!pattern) return result_t::fail(pattern.error);
    return result_t::ok(method_and_pattern{text::to_upper(method), std::string(path), std::move(*pattern.value)});
}

parsed<template_part> parse_key_field(std::string_view t) {
    using result_t = parsed<template_part>;
    if (t == "body") return result_t::ok({source::body, {}});
    if (t == "method") return result_t::ok({source::method, {}});
    auto with_prefix = [&](std::string_view prefix) {
        return t.size() > prefix.size() && t.substr(0, prefix.size()) == prefix;
    };
    if (with_prefix("path.")) {
        auto name = t.substr(5);
        if (!is_param_name(name)) return result_t::fail("bad path parameter name " + quoted(name));
        return result_t::ok({source::path, std::string(name)});
    }
    if (with_prefix("query.")) {
        auto name = t.substr(6);
        if (!is_query_name(name)) return result_t::fail("bad query parameter name " + quoted(name));
        return result_t::ok({source::query, std::string(name)});
    }
    if (with_prefix("header.")) {
        auto name = t.substr(7);
        if (!text::is_token(name)) return result_t::fail("bad header name " + quoted(name));
        return result_t::ok({source::header, text::to_lower(name)});
    }
    return result_t::fail("bad key field " + quoted(t) +
                          " (expected path.NAME, query.NAME, header.NAME, body or method)");
}

bool category_template::has_placeholders() const {
    return std::any_of(parts.begin(), parts.end(), [](const template_part& p) { return p.from != source::literal; });
}

std::string category_template::shape() const {
    std::string out;
    for (const auto& p : parts) out += p.from == source::literal ? p.text : std::string("{}");
    return out;
}

parsed<category_template> parse_category_template(std::string_view t) {
    using result_t = parsed<category_template>;
    if (t.empty()) return result_t::fail("a category may not be empty");
    if (t == "*") return result_t::fail("\"*\" is reserved (purge all)");
    if (has_control(t)) return result_t::fail("a category may not contain control characters");

    category_template out;
    std::string literal;
    auto flush = [&] {
        if (!literal.empty()) out.parts.push_back({source::literal, std::move(literal)});
        literal.clear();
    };
    for (std::size_t i = 0; i < t.size(); ++i) {
        char c = t[i];
        if (c == '}') return result_t::fail("unbalanced '}'");
        if (c != '{') {
            literal.push_back(c);
            continue;
        }
        std::size_t close = t.find_first_of("{}", i + 1);
        if (close == std::string_view::npos || t[close] != '}')
            return result_t::fail(close == std::string_view::npos ? "unbalanced '{'" : "nested '{'");
        std::string_view inner = t.substr(i + 1, close - i - 1);
        if (inner.empty()) return result_t::fail("empty placeholder '{}'");
        auto field = parse_key_field(inner);
        if (!field) return result_t::fail("bad placeholder {" + std::string(inner) + "}: " + field.error);
        flush();
        out.parts.push_back(*field.value);
        i = close;
    }
    flush();
    return result_t::ok(std::move(out));
}

bool purge_reaches(const category_template& purge, const category_template& produced) {
    // Each template denotes a set of strings (a placeholder stands for any string,
    // including the empty one an absent value expands to). The purge reaches the
    // route when the two sets intersect: a glob-vs-glob reachability walk.
    static constexpr int any = -1;
    auto flatten = [](const category_template& ct) {
        std::vector<int> v;
        for (const auto& p : ct.parts) {
            if (p.from != source::literal) {
                if (v.empty() || v.back() != any) v.push_back(any);
                continue;
            }
            for (char c : p.text) v.push_back(static_cast<unsigned char>(c));
        }
        return v;
    };
    const auto a = flatten(purge);
    const auto b = flatten(produced);
    const std::size_t n = a.size(), m = b.size();
    // reach[i][j]: a[0..i) and b[0..j) can produce a common prefix.
    std::vector<std::vector<bool>> reach(n + 1, std::vector<bool>(m + 1, false));
    reach[0][0] = true;
    // Every step advances i or j, so row-major order visits predecessors first.
    for (std::size_t i = 0; i <= n; ++i) {
        for (std::size_t j = 0; j <= m; ++j) {
            if (!reach[i][j]) continue;
            if (i < n && a[i] == any) {
                reach[i + 1][j] = true;
                if (j < m) reach[i][j + 1] = true;
            }
            if (j < m && b[j] == any) {
                reach[i][j + 1] = true;
                if (i < n) reach[i + 1][j] = true;
            }
            if (i < n && j < m && a[i] != any && a[i] == b[j]) reach[i + 1][j + 1] = true;
        }
    }
    return reach[n][m];
}

}  // namespace cachecar::route
