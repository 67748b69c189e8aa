#include <cachecar/proxy/forwarding.hpp>

#include <cachecar/route/key_builder.hpp>

#include <algorithm>
#include <array>

namespace cachecar::proxy {

namespace bh = beast::http;

namespace {

// A name as the application sees it: lower case, and '_' as '-' when they alias.
std::string canonical(std::string_view name, bool alias_underscores) {
    std::string out(name);
    for (auto& c : out) {
        c = util::ascii_lower(c);
        if (alias_underscores && c == '_') c = '-';
    }
    return out;
}

bool one_of(std::string_view name, std::initializer_list<std::string_view> names, bool alias_underscores) {
    return std::any_of(names.begin(), names.end(),
                       [&](std::string_view n) { return same_field_name(name, n, alias_underscores); });
}

bool keyed_by(const route::compiled_route* route, std::string_view name, bool alias_underscores) {
    if (route == nullptr) return false;
    return std::any_of(route->key_fields.begin(), route->key_fields.end(), [&](const route::template_part& f) {
        return f.from == route::source::header && same_field_name(f.text, name, alias_underscores);
    });
}

// The target with the route's ignore_query parameters removed; the rest byte for byte
// (untouched entirely when none was there).
std::string without_ignored_parameters(std::string_view target, const std::vector<std::string>& ignore) {
    const auto [path, query] = split(target);
    std::vector<std::string_view> kept;
    bool removed = false;
    std::string_view rest = query;
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto item = rest.substr(0, amp);
        rest = amp == std::string_view::npos ? std::string_view() : rest.substr(amp + 1);
        if (item.empty()) continue;
        // Decoded as the key decodes it (a lone name parses to itself with no value).
        const auto parsed = route::parse_query(item.substr(0, item.find('=')));
        if (!parsed.empty() && route::ignored_query_name(ignore, parsed.front().first)) {
            removed = true;
        } else {
            kept.push_back(item);
        }
    }
    if (!removed) return std::string(target);
    std::string out(path);
    for (std::size_t i = 0; i < kept.size(); ++i) out.append(i == 0 ? "?" : "&").append(kept[i]);
    return out;
}

// Forwarded (RFC 7239): the values of one parameter across all elements, in order.
void forwarded_parameters(std::string_view value, std::string_view parameter, std::vector<std::string>& out) {
    for_each_list_item(value, [&](std::string_view element) {
        while (!element.empty()) {
            const auto semi = element.find(';');
            auto pair = trim(element.substr(0, semi));
            const auto eq = pair.find('=');
            if (eq != std::string_view::npos && util::iequals(trim(pair.substr(0, eq)), parameter)) {
                auto v = trim(pair.substr(eq + 1));
                if (v.size() >= 2 && v.front() == '"' && v.back() == '"') v = v.substr(1, v.size() - 2);
                out.emplace_back(v);
            }
            if (semi == std::string_view::npos) break;
            element.remove_prefix(semi + 1);
        }
    });
}

}  // namespace

forwarding_policy forwarding_policy::from(const config::server_config& server) {
    forwarding_policy p;
    for (const auto& text : server.trusted_proxies) {
        if (auto prefix = util::parse_ip_prefix(text)) p.trusted_proxies.push_back(*prefix);  // the loader validated it
    }
    p.upstream_host = server.upstream_host;
    const auto& up = server.upstream;
    const bool v6 = up.host.find(':') != std::string::npos;
    // Appended piecewise: GCC 12 -O3 misreports "x" + std::string&& (-Wstringop-overflow).
    if (v6) p.upstream_authority.append("[").append(up.host).append("]");
    else p.upstream_authority = up.host;
    if (up.port != 80) p.upstream_authority.append(":").append(std::to_string(up.port));
    p.underscores_in_headers = server.underscores_in_headers;
    p.method_override = server.method_override;
    return p;
}

bool forwarding_policy::trusts(std::string_view peer_address) const {
    return std::any_of(trusted_proxies.begin(), trusted_proxies.end(),
                       [&](const util::ip_prefix& p) { return util::prefix_contains(p, peer_address); });
}

forwarding_kind classify_forwarding_field(std::string_view name, bool alias_underscores) {
    // Every request runs each of its fields through here: reject the common names
    // (Accept, User-Agent, ...) by their first letter before any comparison.
    if (name.empty()) return forwarding_kind::none;
    const char first = util::ascii_lower(name.front());
    if (first != 'x' && first != 'f' && first != 't' && first != 'c') return forwarding_kind::none;
    if (one_of(name,
               {"x-forwarded-for", "x-real-ip", "true-client-ip", "x-client-ip", "cf-connecting-ip", "x-cluster-client-ip",
                "fastly-client-ip", "x-originating-ip", "client-ip", "x-remote-ip", "x-remote-addr"},
               alias_underscores))
        return forwarding_kind::client_identity;
    constexpr std::string_view prefix = "x-forwarded-";
    if ((name.size() > prefix.size() && same_field_name(name.substr(0, prefix.size()), prefix, alias_underscores)) ||
        one_of(name, {"forwarded", "front-end-https", "x-url-scheme", "x-scheme"}, alias_underscores))
        return forwarding_kind::addressing;
    return forwarding_kind::none;
}

bool is_method_override_field(std::string_view name, bool alias_underscores) {
    return one_of(name, {"x-http-method-override", "x-http-method", "x-method-override"}, alias_underscores);
}

bool is_override_field(std::string_view name, bool alias_underscores) {
    if (name.empty() || util::ascii_lower(name.front()) != 'x') return false;  // all of them are X-...
    return is_method_override_field(name, alias_underscores) ||
           one_of(name,
                  {"x-original-url", "x-rewrite-url", "x-original-uri", "x-override-url", "x-original-host", "x-host",
                   "x-http-host-override"},
                  alias_underscores);
}

method_override overridden_method(const request& req, const forwarding_policy& policy) {
    method_override out;
    if (!policy.method_override || req.method() != bh::verb::post) return out;
    // Every line of every override field: backends differ on which one they read
    // (first, last, joined), so all of them must name the same method.
    for (const auto& f : req) {
        if (!is_method_override_field(f.name_string(), policy.underscores_in_headers)) continue;
        std::string m(trim(f.value()));
        for (auto& c : m) c = static_cast<char>(c >= 'a' && c <= 'z' ? c - 'a' + 'A' : c);
        if (!util::is_token(m) || (!out.method.empty() && m != out.method)) {
            out.conflicting = true;
            out.method.clear();
            return out;
        }
        out.method = std::move(m);
    }
    return out;
}

void prepare_forwarded_request(request& req, const forwarding_policy& policy, std::string_view peer_address,
                               const route::compiled_route* route) {
    const bool alias = policy.underscores_in_headers;
    strip_hop_by_hop(req.base(), alias);
    erase_field(req.base(), "expect");  // answered by cachecar; the body is sent whole

    const bool trusted = policy.trusts(peer_address);
    for (auto it = req.begin(); it != req.end();) {
        const auto name = it->name_string();
        bool drop = false;
        if (!alias && name.find('_') != std::string_view::npos) {
            drop = true;
        } else if (route != nullptr && std::any_of(route->cfg.strip_headers.begin(), route->cfg.strip_headers.end(),
                                                   [&](const std::string& s) { return same_field_name(s, name, alias); })) {
            drop = true;
        } else if (is_override_field(name, alias)) {
            drop = !keyed_by(route, name, alias) && !(policy.method_override && is_method_override_field(name, alias));
        } else if (classify_forwarding_field(name, alias) != forwarding_kind::none) {
            // Only from a trusted proxy, or where the route keys them. A trusted proxy's
            // X-Forwarded-For stays, to be extended with the peer when the request is sent.
            drop = !(trusted || keyed_by(route, name, alias)) ||
                   (!trusted && same_field_name(name, "x-forwarded-for", alias));
        }
        it = drop ? req.erase(it) : std::next(it);
    }

    if (!policy.upstream_host.empty()) {
        req.set(bh::field::host, policy.upstream_host);
    } else if (line_count(req.base(), "host") == 0) {
        req.set(bh::field::host, policy.upstream_authority);
    }
    if (route != nullptr && !route->cfg.ignore_query.empty()) {
        auto target = without_ignored_parameters(req.target(), route->cfg.ignore_query);
        if (target != req.target()) req.target(target);
    }
}

std::vector<std::pair<std::string, std::string>> addressing_fields(const request& prepared, bool alias_underscores) {
    std::vector<std::pair<std::string, std::string>> out;
    out.reserve(2);
    for (const auto& f : prepared) {
        const auto name = f.name_string();
        if (f.name() == bh::field::host) {
            out.emplace_back("host", f.value());
            continue;
        }
        if (classify_forwarding_field(name, alias_underscores) != forwarding_kind::addressing) continue;
        if (same_field_name(name, "forwarded")) {
            std::vector<std::string> values;
            forwarded_parameters(f.value(), "host", values);
            for (auto& v : values) out.emplace_back("forwarded;host", std::move(v));
            values.clear();
            forwarded_parameters(f.value(), "proto", values);
            for (auto& v : values) out.emplace_back("forwarded;proto", std::move(v));
            continue;
        }
        out.emplace_back(canonical(name, alias_underscores), f.value());
    }
    return out;
}

request make_upstream_request(const request& prepared, std::string_view peer_address, bool cacheable_route,
                              bool head_as_get) {
    const bool as_get = head_as_get && prepared.method() == bh::verb::head;
    request out{as_get ? bh::verb::get : prepared.method(), prepared.target(), 11};
    if (prepared.method() == bh::verb::unknown) out.method_string(prepared.method_string());
    bool had_length = false;
    std::string forwarded_for, via;
    for (const auto& f : prepared) {
        const auto name = f.name_string();
        if (same_field_name(name, "content-length")) {
            had_length = true;
            continue;  // re-framed below
        }
        // cachecar answers the client's validators itself from what it stores.
        if (cacheable_route && (same_field_name(name, "if-none-match") || same_field_name(name, "if-modified-since")))
            continue;
        // Extended below (only a trusted proxy's X-Forwarded-For survived preparation).
        if (same_field_name(name, "x-forwarded-for") || same_field_name(name, "via")) {
            auto& joined = same_field_name(name, "via") ? via : forwarded_for;
            if (!joined.empty()) joined += ", ";
            joined += f.value();
            continue;
        }
        out.insert(name, f.value());
    }
    if (!peer_address.empty()) {
        if (!forwarded_for.empty()) forwarded_for += ", ";
        forwarded_for += peer_address;
    }
    if (!forwarded_for.empty()) out.set("X-Forwarded-For", forwarded_for);
    out.set(bh::field::via, via.empty() ? std::string("1.1 cachecar") : via + ", 1.1 cachecar");
    out.body() = prepared.body();
    out.keep_alive(true);
    const auto m = out.method();
    if (!out.body().empty() || had_length || m == bh::verb::post || m == bh::verb::put || m == bh::verb::patch) {
        out.content_length(out.body().size());
    }
    return out;
}

}  // namespace cachecar::proxy
