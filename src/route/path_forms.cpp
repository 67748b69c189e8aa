#include <cachecar/route/path_forms.hpp>

#include "text.hpp"

#include <cstdint>
#include <vector>

namespace cachecar::route {

namespace {

int hex_value(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

// Whether `s` is well-formed UTF-8 (RFC 3629: no overlong forms, no surrogates, at
// most U+10FFFF). Old servers decoded the overlong "%c0%af" as '/'.
bool valid_utf8(std::string_view s) {
    for (std::size_t i = 0; i < s.size();) {
        const auto c = static_cast<unsigned char>(s[i]);
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c < 0x80) {
            ++i;
            continue;
        } else if (c >= 0xc2 && c <= 0xdf) {
            len = 2;
            cp = c & 0x1f;
        } else if (c >= 0xe0 && c <= 0xef) {
            len = 3;
            cp = c & 0x0f;
        } else if (c >= 0xf0 && c <= 0xf4) {
            len = 4;
            cp = c & 0x07;
        } else {
            return false;  // a continuation byte, or 0xc0/0xc1/0xf5+ (overlong or out of range)
        }
        if (i + len > s.size()) return false;
        for (std::size_t k = 1; k < len; ++k) {
            const auto cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xc0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3f);
        }
        if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
            return false;
        i += len;
    }
    return true;
}

}  // namespace

std::string_view path_ambiguity(std::string_view path) {
    if (path.empty() || path.front() != '/') return {};  // not origin-form: never routed
    // Fast path (every request): printable ASCII without '%', '\\' and ';', and no
    // empty or dot-only segment, cannot be read two ways.
    bool plain = true;
    std::size_t seg_start = 1;
    for (std::size_t i = 1; i <= path.size() && plain; ++i) {
        if (i == path.size() || path[i] == '/') {
            const auto seg = path.substr(seg_start, i - seg_start);
            plain = seg != "." && seg != ".." && (!seg.empty() || i == path.size());
            seg_start = i + 1;
            continue;
        }
        const auto c = static_cast<unsigned char>(path[i]);
        plain = c > 0x20 && c < 0x7f && c != '%' && c != '\\' && c != ';';
    }
    if (plain) return {};
    std::size_t start = 1;
    std::string decoded;  // one buffer for every segment: no allocation per request for short ones
    while (start <= path.size()) {
        auto end = path.find('/', start);
        if (end == std::string_view::npos) end = path.size();
        const auto seg = path.substr(start, end - start);
        const bool last = end == path.size();
        if (seg.empty() && !last) return "empty path segment";  // "//": merged by some, kept by others
        decoded.clear();
        for (std::size_t i = 0; i < seg.size(); ++i) {
            const auto c = static_cast<unsigned char>(seg[i]);
            if (c == '%') {
                if (i + 2 >= seg.size() || hex_value(seg[i + 1]) < 0 || hex_value(seg[i + 2]) < 0)
                    return "malformed percent-encoding";
                const auto byte = static_cast<unsigned char>(hex_value(seg[i + 1]) * 16 + hex_value(seg[i + 2]));
                if (byte == '/') return "encoded slash";
                if (byte == '\\') return "encoded backslash";
                if (byte == ';') return "encoded ';'";
                if (byte == '%') return "encoded '%' (double decoding)";
                if (byte < 0x20 || byte == 0x7f) return "encoded control character";
                decoded.push_back(static_cast<char>(byte));
                i += 2;
                continue;
            }
            if (c == '\\') return "backslash";
            if (c == ';') return "';' path parameter";
            if (c <= 0x20 || c >= 0x7f) return "byte outside printable ASCII";
            decoded.push_back(static_cast<char>(c));
        }
        if (decoded == "." || decoded == "..") return "dot segment";
        if (!valid_utf8(decoded)) return "percent-encoded bytes that are not UTF-8";
        start = end + 1;
    }
    return {};
}

std::string resolved_path(std::string_view path) {
    std::string decoded = text::percent_decode(path, false);
    for (auto& c : decoded) {
        if (c == '\\') c = '/';
    }
    const bool trailing = decoded.size() > 1 && decoded.back() == '/';
    std::vector<std::string> out;
    std::size_t start = 0;
    while (start <= decoded.size()) {
        auto end = decoded.find('/', start);
        if (end == std::string::npos) end = decoded.size();
        std::string seg = decoded.substr(start, end - start);
        if (auto semi = seg.find(';'); semi != std::string::npos) seg.erase(semi);
        if (seg == "..") {
            if (!out.empty()) out.pop_back();
        } else if (!seg.empty() && seg != ".") {
            out.push_back(std::move(seg));
        }
        start = end + 1;
    }
    std::string joined;
    for (const auto& s : out) {
        joined += '/';
        for (char c : s) {
            if (c == '%') {
                joined += "%25";
            } else {
                joined += c;
            }
        }
    }
    if (joined.empty()) return "/";
    if (trailing) joined += '/';
    return joined;
}

}  // namespace cachecar::route
