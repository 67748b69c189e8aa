#include <cachecar/route/key_builder.hpp>

#include "text.hpp"

#include <cachecar/util/ascii.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <stdexcept>

namespace cachecar::route {

namespace {

// Every field of the hashed input is written as "<length>:<bytes>", so a field
// boundary can never be forged by the bytes of a neighbouring field.
void put(std::string& out, std::string_view field) {
    out += std::to_string(field.size());
    out += ':';
    out += field;
}

// HEAD is answered from the GET entry, so both hash alike.
std::string_view key_method(std::string_view method) { return method == "HEAD" ? std::string_view("GET") : method; }

std::string field_spec(const template_part& f) {
    switch (f.from) {
        case source::path: return "path." + f.text;
        case source::query: return "query." + f.text;
        case source::header: return "header." + f.text;
        case source::body: return "body";
        case source::method: return "method";
        case source::literal: break;
    }
    return "literal." + f.text;
}

// JSON bodies are keyed by their canonical form; anything else by its bytes. The
// kind is part of the result so that neither can pose as the other.
std::pair<std::string_view, std::string> body_digest(std::string_view body) {
    if (auto canon = canonical_json(body)) return {"json", sha256_hex(*canon)};
    return {"raw", sha256_hex(body)};
}

std::vector<std::string> query_values(const std::vector<std::pair<std::string, std::string>>& query,
                                      std::string_view name) {
    std::vector<std::string> values;
    for (const auto& [n, v] : query)
        if (n == name) values.push_back(v);  // already sorted by value
    return values;
}

}  // namespace

namespace {

// OpenSSL 3 resolves EVP_sha256() through its provider registry on every EVP_Digest
// call and allocates a fresh context each time; on a cache hit that was a third of
// the key's cost. The algorithm is fetched once per process and the context reused
// per thread (it is reset by EVP_DigestInit_ex2 on every use).
const EVP_MD* sha256_algorithm() {
    static const EVP_MD* const md = [] {
        const EVP_MD* fetched = EVP_MD_fetch(nullptr, "SHA256", nullptr);
        return fetched != nullptr ? fetched : EVP_sha256();
    }();
    return md;
}

struct digest_context {
    EVP_MD_CTX* ctx = EVP_MD_CTX_new();
    ~digest_context() { EVP_MD_CTX_free(ctx); }
};

}  // namespace

std::string sha256_hex(std::string_view data) {
    thread_local digest_context local;
    unsigned char digest[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    if (local.ctx == nullptr || EVP_DigestInit_ex2(local.ctx, sha256_algorithm(), nullptr) != 1 ||
        EVP_DigestUpdate(local.ctx, data.data(), data.size()) != 1 || EVP_DigestFinal_ex(local.ctx, digest, &len) != 1)
        throw std::runtime_error("SHA-256 failed");  // only on allocation failure inside OpenSSL
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(std::size_t{len} * 2, '\0');
    for (unsigned int i = 0; i < len; ++i) {
        out[2 * i] = hex[digest[i] >> 4];
        out[2 * i + 1] = hex[digest[i] & 0x0f];
    }
    return out;
}

std::vector<std::pair<std::string, std::string>> parse_query(std::string_view query) {
    std::vector<std::pair<std::string, std::string>> out;
    while (!query.empty()) {
        std::size_t amp = query.find('&');
        std::string_view item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
        if (item.empty()) continue;
        std::size_t eq = item.find('=');
        std::string_view name = item.substr(0, eq);
        std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
        out.emplace_back(text::percent_decode(name, true), text::percent_decode(value, true));
    }
    // By name only, and stable: repeated parameters keep their order, which backends
    // read (first wins, last wins), so `a=1&a=2` and `a=2&a=1` are different keys.
    std::stable_sort(out.begin(), out.end(), [](const auto& x, const auto& y) { return x.first < y.first; });
    return out;
}

bool ignored_query_name(const std::vector<std::string>& ignore, std::string_view name) {
    return std::any_of(ignore.begin(), ignore.end(), [&](const std::string& pattern) {
        if (!pattern.empty() && pattern.back() == '*') return name.starts_with(std::string_view(pattern).substr(0, pattern.size() - 1));
        return name == pattern;
    });
}

std::optional<std::string> unkeyed_query_parameter(const compiled_route& route, std::string_view query) {
    if (route.default_key || query.empty()) return std::nullopt;
    for (const auto& param : parse_query(query)) {
        const auto& name = param.first;
        const bool keyed = std::any_of(route.key_fields.begin(), route.key_fields.end(),
                                       [&](const template_part& f) { return f.from == source::query && f.text == name; });
        if (!keyed && !ignored_query_name(route.cfg.ignore_query, name)) return name;
    }
    return std::nullopt;
}

std::string credential_fingerprint(const compiled_route& route, const request_view& req) {
    std::string input;
    bool any = false;
    for (const auto& name : route.credential_headers) {
        // Every line counts: "Cookie: a" and "Cookie: a" + "Cookie: b" are
        // different credentials.
        req.for_each_header_line(name, [&](std::string_view value) {
            put(input, name);
            put(input, value);
            any = true;
        });
    }
    return any ? sha256_hex(input) : std::string();
}

std::string build_key(std::string_view key_namespace, const compiled_route& route, const request_view& req,
                      std::string_view credential) {
    std::string in;
    in.reserve(256);  // typical inputs fit: one allocation per key
    put(in, "cachecar-key-v2");  // bump when the input format changes
    put(in, key_namespace);
    put(in, route.cfg.name);
    put(in, key_method(req.method));
    // Where the request was addressed (Host, a trusted proxy's forwarding fields), line
    // by line: the backend sees them, so an answer for one host is never another's.
    put(in, std::to_string(req.addressing.size()));
    for (const auto& a : req.addressing) {
        put(in, a.name);
        put(in, a.value);
    }

    if (route.default_key) {
        const auto query = parse_query(req.query);
        put(in, "default");
        put(in, req.path);
        put(in, std::to_string(query.size()));
        for (const auto& [name, value] : query) {
            put(in, name);
            put(in, value);
        }
    } else {
        // The path exactly as forwarded, whatever the fields: the matcher reads it
        // decoded and without a final '/', a strict backend does not.
        put(in, "path");
        put(in, req.path);
        const auto query = parse_query(req.query);
        for (const auto& f : route.key_fields) {
            put(in, field_spec(f));
            // "+" = present (then the value), "-" = absent: "?a=" and no `a` differ.
            switch (f.from) {
                case source::query: {
                    auto values = query_values(query, f.text);
                    if (values.empty()) {
                        put(in, "-");
                        break;
                    }
                    put(in, "+");
                    put(in, std::to_string(values.size()));
                    for (const auto& v : values) put(in, v);
                    break;
                }
                case source::header: {
                    // Each line on its own: two lines and one line holding both values
                    // are different messages to a backend that reads only the first.
                    std::vector<std::string_view> lines;
                    req.for_each_header_line(f.text, [&](std::string_view v) { lines.push_back(v); });
                    if (lines.empty()) {
                        put(in, "-");
                        break;
                    }
                    put(in, "+");
                    put(in, std::to_string(lines.size()));
                    for (auto v : lines) put(in, v);
                    break;
                }
                case source::path: {
                    auto v = req.param(f.text);
                    if (!v) {
                        put(in, "-");
                        break;
                    }
                    put(in, "+");
                    put(in, *v);
                    break;
                }
                case source::body: {
                    auto [kind, digest] = body_digest(req.body);
                    put(in, "+");
                    put(in, kind);
                    put(in, digest);
                    break;
                }
                case source::method:
                    put(in, "+");
                    put(in, key_method(req.method));
                    break;
                case source::literal:
                    put(in, "+");
                    put(in, f.text);
                    break;
            }
        }
    }

    put(in, "credential");
    put(in, credential);

    std::string key;
    key.reserve(key_namespace.size() + route.cfg.name.size() + 66);
    key.append(key_namespace).append(":").append(route.cfg.name).append(":").append(sha256_hex(in));
    return key;
}

std::string request_key(std::string_view key_namespace, const compiled_route& route, const request_view& req) {
    const std::string credential = route.cfg.shared ? std::string() : credential_fingerprint(route, req);
    return build_key(key_namespace, route, req, credential);
}

std::vector<std::string> expand_categories(const std::vector<category_template>& templates, const request_view& req) {
    // A category is one string per template, except that a query parameter given
    // several times yields one category per value: the entry must be reachable by a
    // purge naming any of them. Bounded so a hostile query cannot blow it up.
    constexpr std::size_t max_per_template = 64;
    std::vector<std::string> out;
    std::optional<std::vector<std::pair<std::string, std::string>>> query;  // parsed on first use
    std::optional<std::string> body_hash;

    for (const auto& t : templates) {
        std::vector<std::string> partial{std::string()};
        for (const auto& p : t.parts) {
            std::vector<std::string> values;
            switch (p.from) {
                case source::literal: values.push_back(p.text); break;
                case source::query: {
                    if (!query) query = parse_query(req.query);
                    values = query_values(*query, p.text);
                    break;
                }
                case source::header:
                    if (auto v = req.header(p.text)) values.emplace_back(*v);
                    break;
                case source::path:
                    if (auto v = req.param(p.text)) values.emplace_back(*v);
                    break;
                case source::body:
                    if (!body_hash) body_hash = body_digest(req.body).second;
                    values.push_back(*body_hash);
                    break;
                case source::method: values.emplace_back(key_method(req.method)); break;
            }
            if (values.empty()) values.emplace_back();  // absent expands to ""
            std::vector<std::string> next;
            for (const auto& prefix : partial) {
                for (const auto& v : values) {
                    if (next.size() == max_per_template) break;
                    next.push_back(prefix + v);
                }
            }
            partial = std::move(next);
        }
        for (auto& c : partial)
            if (std::find(out.begin(), out.end(), c) == out.end()) out.push_back(std::move(c));
    }
    return out;
}

}  // namespace cachecar::route
