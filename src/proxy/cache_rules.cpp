#include <cachecar/proxy/cache_rules.hpp>

#include <cachecar/route/key_builder.hpp>
#include <cachecar/util/ascii.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>
#include <functional>

namespace cachecar::proxy {

namespace {

template <class F>
void for_each_item(std::string_view list, F&& f) {
    for_each_list_item(list, std::function<void(std::string_view)>(std::forward<F>(f)));
}

std::string lower(std::string_view s) {
    std::string out(s);
    for (auto& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return out;
}

// Strong and weak validators compare equal under weak comparison when their opaque
// parts match (RFC 9110 8.8.3.2).
std::string_view opaque(std::string_view etag) {
    etag = trim(etag);
    if (etag.starts_with("W/")) etag.remove_prefix(2);
    return etag;
}

}  // namespace

std::optional<std::chrono::seconds> directive_seconds(std::string_view cache_control, std::string_view name) {
    std::optional<std::chrono::seconds> out;
    for_each_item(cache_control, [&](std::string_view item) {
        auto eq = item.find('=');
        if (eq == std::string_view::npos || !util::iequals(trim(item.substr(0, eq)), name)) return;
        auto v = trim(item.substr(eq + 1));
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        long long n = 0;
        auto [p, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
        if (ec == std::errc{} && p == v.data() + v.size() && n >= 0) out = std::chrono::seconds(n);
    });
    return out;
}

std::optional<std::chrono::system_clock::time_point> parse_http_date(std::string_view text) {
    const std::string s(trim(text));
    for (const char* format : {"%a, %d %b %Y %H:%M:%S GMT", "%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"}) {
        std::tm tm{};
        const char* end = ::strptime(s.c_str(), format, &tm);
        if (end == nullptr || *end != '\0') continue;
        const auto t = ::timegm(&tm);
        if (t < 0) return std::nullopt;
        return std::chrono::system_clock::from_time_t(t);
    }
    return std::nullopt;
}

std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields) {
    const auto cc = list_value(fields, "cache-control");
    std::optional<std::chrono::seconds> lifetime = directive_seconds(cc, "s-maxage");
    if (!lifetime) lifetime = directive_seconds(cc, "max-age");
    if (!lifetime && line_count(fields, "expires") > 0) {
        // Expires and Date are singletons: on several lines they are invalid, and an
        // invalid Expires (e.g. "0") means already expired (RFC 9111 5.3).
        const auto expires = single_value(fields, "expires");
        const auto date = single_value(fields, "date");
        auto base = std::chrono::system_clock::now();
        if (date) {
            if (auto d = parse_http_date(*date)) base = *d;
        }
        lifetime = std::chrono::seconds(0);
        if (expires) {
            if (auto e = parse_http_date(*expires); e && *e > base)
                lifetime = std::chrono::duration_cast<std::chrono::seconds>(*e - base);
        }
    }
    if (!lifetime) return std::nullopt;
    long long a = 0;
    if (const auto age = single_value(fields, "age")) {
        auto [p, ec] = std::from_chars(age->data(), age->data() + age->size(), a);
        if (ec != std::errc{} || p != age->data() + age->size() || a < 0) a = 0;
    }
    return std::max(std::chrono::seconds(0), *lifetime - std::chrono::seconds(a));
}

bool not_modified(const request& req, std::string_view etag, std::string_view last_modified) {
    if (line_count(req.base(), "if-none-match") > 0) {
        // A list, on any number of lines (RFC 9110 13.1.2).
        const auto inm = list_value(req.base(), "if-none-match");
        bool match = false;
        for_each_item(inm, [&](std::string_view tag) {
            match = match || tag == "*" || (!etag.empty() && opaque(tag) == opaque(etag));
        });
        return match;  // If-Modified-Since is ignored when If-None-Match is present
    }
    // A singleton date: repeated, it is invalid and ignored (RFC 9110 13.1.3).
    const auto ims = single_value(req.base(), "if-modified-since");
    if (!ims || last_modified.empty()) return false;
    auto since = parse_http_date(*ims);
    auto modified = parse_http_date(last_modified);
    return since && modified && *modified <= *since;
}

std::vector<std::string> vary_names(std::string_view vary) {
    std::vector<std::string> out;
    for_each_item(vary, [&](std::string_view name) { out.push_back(lower(name)); });
    if (std::find(out.begin(), out.end(), "*") != out.end()) return {"*"};
    std::sort(out.begin(), out.end());
    out.erase(std::unique(out.begin(), out.end()), out.end());
    return out;
}

std::string variant_fingerprint(const std::vector<std::string>& names, const request& req, bool alias_underscores) {
    std::string in;
    for (const auto& name : names) {
        in.append(std::to_string(name.size())).append(":").append(name);
        // Line by line: the backend that varied on the field may read only its first line.
        std::size_t lines = 0;
        for_each_line(
            req.base(), name,
            [&](std::string_view v) {
                ++lines;
                in.append("+").append(std::to_string(v.size())).append(":").append(v);
            },
            alias_underscores);
        if (lines == 0) in.append("-");
    }
    return route::sha256_hex(in);
}

}  // namespace cachecar::proxy
