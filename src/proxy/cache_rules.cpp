#include <cachecar/proxy/cache_rules.hpp>

#include <cachecar/route/key_builder.hpp>
#include <cachecar/util/ascii.hpp>

#include <algorithm>
#include <array>
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

std::optional<std::chrono::seconds> parse_delta_seconds(std::string_view text) {
    if (text.empty()) return std::nullopt;
    long long n = 0;
    for (const char c : text) {
        if (c < '0' || c > '9') return std::nullopt;
        if (n < max_delta_seconds.count()) n = n * 10 + (c - '0');  // stops growing once past the cap
    }
    return std::chrono::seconds(std::min(n, static_cast<long long>(max_delta_seconds.count())));
}

std::optional<std::chrono::seconds> directive_seconds(std::string_view cache_control, std::string_view name) {
    std::optional<std::chrono::seconds> out;
    for_each_item(cache_control, [&](std::string_view item) {
        auto eq = item.find('=');
        if (eq == std::string_view::npos || !util::iequals(trim(item.substr(0, eq)), name)) return;
        auto v = trim(item.substr(eq + 1));
        if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
        if (auto n = parse_delta_seconds(v)) out = n;
    });
    return out;
}

namespace {

// Reads exactly `width` digits at `pos`; -1 if any is not a digit.
int digits(std::string_view s, std::size_t pos, std::size_t width) {
    if (pos + width > s.size()) return -1;
    int n = 0;
    for (std::size_t i = pos; i < pos + width; ++i) {
        if (s[i] < '0' || s[i] > '9') return -1;
        n = n * 10 + (s[i] - '0');
    }
    return n;
}

// The index of `name` in `names` when `s` holds it at `pos` (case-sensitive), or -1.
template <std::size_t N>
int name_at(std::string_view s, std::size_t pos, const std::array<std::string_view, N>& names, std::size_t width) {
    if (pos + width > s.size()) return -1;
    const auto got = s.substr(pos, width);
    for (std::size_t i = 0; i < N; ++i) {
        if (names[i] == got) return static_cast<int>(i);
    }
    return -1;
}

constexpr std::array<std::string_view, 12> months{"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                                  "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
constexpr std::array<std::string_view, 7> short_days{"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"};
constexpr std::array<std::string_view, 7> long_days{"Monday", "Tuesday", "Wednesday", "Thursday",
                                                    "Friday", "Saturday", "Sunday"};

// "HH:MM:SS" at `pos` into tm; false if malformed or out of range (60 allows a leap second).
bool time_of_day(std::string_view s, std::size_t pos, std::tm& tm) {
    if (pos + 8 > s.size() || s[pos + 2] != ':' || s[pos + 5] != ':') return false;
    tm.tm_hour = digits(s, pos, 2);
    tm.tm_min = digits(s, pos + 3, 2);
    tm.tm_sec = digits(s, pos + 6, 2);
    return tm.tm_hour >= 0 && tm.tm_hour <= 23 && tm.tm_min >= 0 && tm.tm_min <= 59 && tm.tm_sec >= 0 &&
           tm.tm_sec <= 60;
}

std::optional<std::chrono::sys_seconds> to_time_point(std::tm& tm) {
    if (tm.tm_mday < 1 || tm.tm_mday > 31 || tm.tm_year < 0) return std::nullopt;
    const int day = tm.tm_mday;
    const int month = tm.tm_mon;
    const auto t = ::timegm(&tm);
    // timegm normalises 31 Feb into March: such a date does not exist.
    if (t < 0 || tm.tm_mday != day || tm.tm_mon != month) return std::nullopt;
    return std::chrono::sys_seconds(std::chrono::seconds(t));
}

}  // namespace

std::optional<std::chrono::sys_seconds> parse_http_date(std::string_view s) {
    s = trim(s);  // the field value's surrounding whitespace is not part of it
    std::tm tm{};
    // IMF-fixdate: "Sun, 06 Nov 1994 08:49:37 GMT"
    if (s.size() == 29 && name_at(s, 0, short_days, 3) >= 0 && s.substr(3, 2) == ", " && s[7] == ' ' &&
        s[11] == ' ' && s[16] == ' ' && s.substr(25) == " GMT") {
        tm.tm_mday = digits(s, 5, 2);
        tm.tm_mon = name_at(s, 8, months, 3);
        const int year = digits(s, 12, 4);
        if (tm.tm_mon < 0 || year < 0 || !time_of_day(s, 17, tm)) return std::nullopt;
        tm.tm_year = year - 1900;
        return to_time_point(tm);
    }
    // asctime: "Sun Nov  6 08:49:37 1994" (a one-digit day is preceded by a space)
    if (s.size() == 24 && name_at(s, 0, short_days, 3) >= 0 && s[3] == ' ' && s[7] == ' ' && s[10] == ' ' &&
        s[19] == ' ') {
        tm.tm_mon = name_at(s, 4, months, 3);
        tm.tm_mday = s[8] == ' ' ? digits(s, 9, 1) : digits(s, 8, 2);
        const int year = digits(s, 20, 4);
        if (tm.tm_mon < 0 || year < 0 || !time_of_day(s, 11, tm)) return std::nullopt;
        tm.tm_year = year - 1900;
        return to_time_point(tm);
    }
    // RFC 850: "Sunday, 06-Nov-94 08:49:37 GMT"
    const auto comma = s.find(',');
    if (comma != std::string_view::npos && name_at(s, 0, long_days, comma) >= 0 && s.size() == comma + 24 &&
        s[comma + 1] == ' ' && s[comma + 4] == '-' && s[comma + 8] == '-' && s[comma + 11] == ' ' &&
        s.substr(comma + 20) == " GMT") {
        tm.tm_mday = digits(s, comma + 2, 2);
        tm.tm_mon = name_at(s, comma + 5, months, 3);
        int year = digits(s, comma + 9, 2);
        if (tm.tm_mon < 0 || year < 0 || !time_of_day(s, comma + 12, tm)) return std::nullopt;
        // A two-digit year more than 50 years in the future is in the past (RFC 9110 5.6.7).
        std::tm now{};
        const auto t = std::time(nullptr);
        ::gmtime_r(&t, &now);
        int full = (now.tm_year + 1900) / 100 * 100 + year;
        if (full > now.tm_year + 1900 + 50) full -= 100;
        tm.tm_year = full - 1900;
        return to_time_point(tm);
    }
    return std::nullopt;
}

std::chrono::seconds initial_age(const beast::http::fields& fields, std::chrono::system_clock::time_point response_time,
                                 std::chrono::seconds response_delay) {
    using std::chrono::seconds;
    seconds apparent{0};
    if (const auto date = single_value(fields, "date")) {
        const auto received = std::chrono::floor<seconds>(response_time);
        if (auto d = parse_http_date(*date); d && *d < received) apparent = received - *d;
    }
    seconds corrected{0};
    // Age is a singleton: on several lines, or not delta-seconds, it is ignored (5.1).
    if (const auto age = single_value(fields, "age")) {
        if (auto a = parse_delta_seconds(*age)) corrected = *a + response_delay;
    }
    return std::min(std::max(apparent, corrected), max_delta_seconds);
}

std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields,
                                                     std::chrono::system_clock::time_point response_time) {
    return origin_freshness(fields, response_time, directives_of(fields, {}));
}

std::optional<std::chrono::seconds> origin_freshness(const beast::http::fields& fields,
                                                     std::chrono::system_clock::time_point response_time,
                                                     const response_directives& directives) {
    const auto& cc = directives.list;
    std::optional<std::chrono::seconds> lifetime = directive_seconds(cc, "s-maxage");
    if (!lifetime) lifetime = directive_seconds(cc, "max-age");
    if (!lifetime && !directives.targeted && line_count(fields, "expires") > 0) {
        // Expires and Date are singletons: on several lines they are invalid, and an
        // invalid Expires (e.g. "0") means already expired (RFC 9111 5.3).
        const auto expires = single_value(fields, "expires");
        const auto date = single_value(fields, "date");
        // In whole seconds: a date past 2262 does not fit the nanosecond clock.
        auto base = std::chrono::floor<std::chrono::seconds>(response_time);
        if (date) {
            if (auto d = parse_http_date(*date)) base = *d;
        }
        lifetime = std::chrono::seconds(0);
        if (expires) {
            if (auto e = parse_http_date(*expires); e && *e > base) lifetime = std::min(*e - base, max_delta_seconds);
        }
    }
    if (!lifetime) return std::nullopt;
    return std::max(std::chrono::seconds(0), *lifetime - initial_age(fields, response_time));
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
