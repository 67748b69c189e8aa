// Message types and the one way cachecar reads header fields, shared by the client
// side, the upstream side and the stored entries.
//
// A field is always read as all of its lines (RFC 9110 5.3: the lines of a list field
// are one comma-separated list; a singleton field on several lines is invalid). The
// helpers below are the only code that looks fields up by name; nothing else indexes
// a field set directly, so no caller can read the first line and miss the second.
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/net.hpp>
#include <cachecar/util/ascii.hpp>

#include <cstddef>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>

namespace cachecar::http {

using request = beast::http::request<beast::http::string_body>;
using response = beast::http::response<beast::http::string_body>;

// ---- field names --------------------------------------------------------------------

using util::same_field_name;

inline std::string_view field_name(const beast::http::fields::value_type& f) { return f.name_string(); }
inline std::string_view field_value(const beast::http::fields::value_type& f) { return f.value(); }
inline std::string_view field_name(const cache::header_view& f) { return f.name; }
inline std::string_view field_value(const cache::header_view& f) { return f.value; }

// ---- reading a field as all its lines ---------------------------------------------------
// `Fields` is a Beast field set or a stored cache::header_block.

// Calls `f(value)` for every line of the field, in order.
template <class Fields, class F>
void for_each_line(const Fields& fields, std::string_view name, F&& f, bool alias_underscores = false) {
    if constexpr (std::is_base_of_v<beast::http::fields, Fields>) {
        if (!alias_underscores) {
            // Beast keeps a case-insensitive index by name, with a name's lines in order.
            auto [first, last] = fields.equal_range(name);
            for (auto it = first; it != last; ++it) f(it->value());
            return;
        }
    }
    for (const auto& line : fields) {
        if (same_field_name(field_name(line), name, alias_underscores)) f(field_value(line));
    }
}

template <class Fields>
std::size_t line_count(const Fields& fields, std::string_view name, bool alias_underscores = false) {
    std::size_t n = 0;
    for_each_line(fields, name, [&](std::string_view) { ++n; }, alias_underscores);
    return n;
}

// The field as one list: every line, joined with ", " in order. "" if absent.
template <class Fields>
std::string list_value(const Fields& fields, std::string_view name, bool alias_underscores = false) {
    std::string out;
    bool first = true;
    for_each_line(
        fields, name,
        [&](std::string_view v) {
            if (!first) out += ", ";
            out += v;
            first = false;
        },
        alias_underscores);
    return out;
}

// A singleton field (Host, Age, Date, Expires, If-Modified-Since, ETag, ...): its
// value when it has exactly one line; nullopt when absent *or repeated*, because a
// repeated singleton is invalid and two readers may pick different lines.
template <class Fields>
std::optional<std::string_view> single_value(const Fields& fields, std::string_view name) {
    std::optional<std::string_view> out;
    std::size_t n = 0;
    for_each_line(fields, name, [&](std::string_view v) {
        if (n++ == 0) out = v;
    });
    if (n != 1) return std::nullopt;
    return out;
}

// ---- lists and directives ------------------------------------------------------------------

// Optional whitespace (SP, HTAB) removed from both ends.
std::string_view trim(std::string_view s);
// Calls `f` with each non-empty, trimmed element of a comma-separated list (RFC 9110
// 5.6.1). Commas inside a quoted-string (RFC 9110 5.6.4) do not split, so
// `private="A, B"` is one element.
void for_each_list_item(std::string_view list, const std::function<void(std::string_view)>& f);
// Whether a list field of `fields` (all lines) has an element equal to `token`
// (case-insensitive; parameters after ';' and values after '=' are ignored).
template <class Fields>
bool list_has(const Fields& fields, std::string_view name, std::string_view token) {
    bool found = false;
    for_each_line(fields, name, [&](std::string_view line) {
        for_each_list_item(line, [&](std::string_view item) {
            item = trim(item.substr(0, item.find_first_of(";=")));
            found = found || util::iequals(item, token);
        });
    });
    return found;
}

// Case-insensitive search for a directive (e.g. "no-store") in a comma-separated
// value such as a Cache-Control list (use list_value() to get all lines).
bool has_directive(std::string_view list, std::string_view directive);

// ---- message rules ---------------------------------------------------------------------------

// Removes every line of the field (with `alias_underscores`, of its '_' forms too).
void erase_field(beast::http::fields& fields, std::string_view name, bool alias_underscores = false);

// Removes hop-by-hop fields (RFC 9110 7.6.1): Connection and every field any of its
// lines names, Keep-Alive, Proxy-Connection, TE, Trailer, Transfer-Encoding, Upgrade.
// Host is never removed (a Connection line cannot unname the target).
void strip_hop_by_hop(beast::http::fields& fields, bool alias_underscores = false);

// True for methods RFC 9110 §9.2.2 calls idempotent (safe to retry on a fresh connection).
bool is_idempotent(beast::http::verb method);

// The request target split at '?'.
struct split_target {
    std::string_view path;
    std::string_view query;
};
split_target split(std::string_view target);

}  // namespace cachecar::http
