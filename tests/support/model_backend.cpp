#include "support/model_backend.hpp"

#include <algorithm>
#include <cctype>
#include <vector>

namespace cachecar::test {

namespace {

std::string cgi_name(std::string name) {
    for (auto& c : name) c = c == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return name;
}

std::string lower(std::string s) {
    for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return s;
}

int hex(char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

std::string decode(std::string_view s, bool plus_is_space) {
    std::string out;
    for (std::size_t i = 0; i < s.size(); ++i) {
        if (s[i] == '%' && i + 2 < s.size() && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
            out += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
            i += 2;
        } else if (plus_is_space && s[i] == '+') {
            out += ' ';
        } else {
            out += s[i];
        }
    }
    return out;
}

// RFC 3986 5.2.4 on a decoded path, after the framework-style rewrites.
std::string resolve(std::string path) {
    std::replace(path.begin(), path.end(), '\\', '/');
    std::vector<std::string> out;
    std::size_t start = 1;
    const bool trailing = path.size() > 1 && path.back() == '/';
    while (start <= path.size()) {
        auto slash = path.find('/', start);
        if (slash == std::string::npos) slash = path.size();
        std::string seg = path.substr(start, slash - start);
        if (auto semi = seg.find(';'); semi != std::string::npos) seg.erase(semi);
        if (seg == "..") {
            if (!out.empty()) out.pop_back();
        } else if (!seg.empty() && seg != ".") {
            out.push_back(seg);
        }
        start = slash + 1;
    }
    std::string joined;
    for (const auto& s : out) joined += "/" + s;
    if (joined.empty()) joined = "/";
    if (trailing && joined != "/") joined += "/";
    return joined;
}

bool known(const std::string& path) {
    static const std::vector<std::string> exact{"/api/v1/videos", "/api/v1/profile", "/api/v1/feed", "/api/v1/search",
                                                "/api/v1/tracked", "/echo", "/catalog", "/upload", "/not-cached"};
    if (std::find(exact.begin(), exact.end(), path) != exact.end()) return true;
    auto under = [&](const std::string& prefix) {
        return path.rfind(prefix, 0) == 0 && path.size() > prefix.size() && path.find('/', prefix.size()) == std::string::npos;
    };
    return under("/api/v1/items/") || path.rfind("/static/", 0) == 0 || path.rfind("/not-cached/", 0) == 0;
}

// The `name=` parameter of the first Forwarded element that has one.
std::string forwarded_param(const std::string& forwarded, const std::string& name) {
    std::size_t at = 0;
    const auto l = lower(forwarded);
    while ((at = l.find(name + "=", at)) != std::string::npos) {
        if (at == 0 || l[at - 1] == ';' || l[at - 1] == ' ' || l[at - 1] == ',') {
            auto v = forwarded.substr(at + name.size() + 1);
            v = v.substr(0, v.find_first_of(";,"));
            if (!v.empty() && v.front() == '"') v = v.substr(1, v.size() >= 2 ? v.size() - 2 : 0);
            return v;
        }
        ++at;
    }
    return {};
}

}  // namespace

model_reading model_read(const origin_request& req) {
    std::map<std::string, std::string> cgi;
    for (const auto& [name, value] : req.fields) {
        auto& slot = cgi[cgi_name(name)];
        slot = slot.empty() ? value : slot + ", " + value;
    }
    auto get = [&](const char* name) {
        auto it = cgi.find(name);
        return it == cgi.end() ? std::string() : it->second;
    };
    model_reading m;
    m.method = req.method;
    for (const char* h : {"X_HTTP_METHOD_OVERRIDE", "X_HTTP_METHOD", "X_METHOD_OVERRIDE"}) {
        if (auto v = get(h); !v.empty()) {
            m.method = v;
            break;
        }
    }
    std::string target = req.target;
    for (const char* h : {"X_ORIGINAL_URL", "X_REWRITE_URL"}) {
        if (auto v = get(h); !v.empty()) {
            target = v;
            break;
        }
    }
    const auto q = target.find('?');
    m.path = resolve(decode(target.substr(0, q), false));
    if (q != std::string::npos) {
        std::string query = target.substr(q + 1);
        std::size_t start = 0;
        while (start <= query.size()) {
            auto end = query.find_first_of("&;", start);
            if (end == std::string::npos) end = query.size();
            const auto item = query.substr(start, end - start);
            if (!item.empty()) {
                const auto eq = item.find('=');
                m.query[lower(decode(item.substr(0, eq), true))] = eq == std::string::npos ? "" : decode(item.substr(eq + 1), true);
            }
            start = end + 1;
        }
    }
    const auto forwarded = get("FORWARDED");
    m.host = get("X_FORWARDED_HOST");
    if (m.host.empty()) m.host = forwarded_param(forwarded, "host");
    if (m.host.empty()) m.host = get("HOST");
    m.scheme = get("X_FORWARDED_PROTO");
    if (m.scheme.empty()) m.scheme = get("X_FORWARDED_SCHEME");
    if (m.scheme.empty()) m.scheme = forwarded_param(forwarded, "proto");
    m.prefix = get("X_FORWARDED_PREFIX");
    m.port = get("X_FORWARDED_PORT");
    for (const char* h : {"AUTHORIZATION", "COOKIE", "X_API_KEY"}) {
        if (auto v = get(h); !v.empty()) {
            m.user = v;
            break;
        }
    }
    m.lang = get("X_LANG");
    m.accept_language = get("ACCEPT_LANGUAGE");
    m.body = req.body;
    return m;
}

origin_response model_backend(const origin_request& req, std::size_t) {
    const auto m = model_read(req);
    origin_response out;
    out.headers.emplace_back("Vary", "Accept-Language");
    // A smaller head limit than cachecar's: the HTTP Header Oversize lever of CPDoS.
    if (req.raw.find("\r\n\r\n") > 8192) {
        out.status = 400;
        out.body = "request header too large";
        return out;
    }
    if (m.scheme == "http") {
        out.status = 301;
        out.headers.emplace_back("Location", "https://" + m.host + m.prefix + m.path);
        out.body = "moved to https";
        return out;
    }
    if (!known(m.path)) {
        out.status = 404;
        out.body = "no such resource: " + m.path;
        return out;
    }
    if (m.path == "/echo") {
        out.body = req.target.substr(std::min(req.target.size(), req.target.find('?') + 1));
        return out;
    }
    std::string text = m.method + " " + m.path + "\nhost=" + m.host + "\nlink=" + (m.scheme.empty() ? "" : m.scheme + "://") +
                       m.host + (m.port.empty() ? "" : ":" + m.port) + m.prefix + m.path + "\nquery=";
    for (const auto& [k, v] : m.query) text += k + "=" + v + "&";
    text += "\nuser=" + (m.user.empty() ? std::string("anonymous") : "profile of " + m.user);
    text += "\nlang=" + m.lang + "\naccept-language=" + m.accept_language + "\nbody=" + m.body + "\n";
    out.body = std::move(text);
    return out;
}

}  // namespace cachecar::test
