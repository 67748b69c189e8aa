// What the backend receives: the one place that decides which parts of a client's
// request are forwarded.
//
// The request is rewritten in place into the message the backend will get *before*
// anything is keyed, and the key is built from that rewritten message (routing.hpp's
// make_request_view). So a key can hold only what the backend receives, and whatever
// the backend receives that says where the request was addressed (Host, a trusted
// proxy's forwarding fields) is in every key: what cachecar keys and what it forwards
// cannot disagree.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/proxy/http_names.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/route/request_view.hpp>
#include <cachecar/util/address.hpp>

#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace cachecar::proxy {

// The server options that shape forwarding, compiled once per config snapshot.
struct forwarding_policy {
    std::vector<util::ip_prefix> trusted_proxies;
    std::string upstream_host;       // "" = the client's Host is forwarded (and keyed)
    std::string upstream_authority;  // server.upstream as a Host value, for requests that had none
    bool underscores_in_headers = false;
    bool method_override = false;

    static forwarding_policy from(const config::server_config& server);
    bool trusts(std::string_view peer_address) const;
};

// Client-sent fields that say how a request reached cachecar.
enum class forwarding_kind {
    none,
    client_identity,  // who the client is: X-Forwarded-For, X-Real-IP, Forwarded for=, ...
    addressing,       // how it was addressed: X-Forwarded-Proto/-Host/-Port/-Prefix/..., Forwarded
};
forwarding_kind classify_forwarding_field(std::string_view name, bool alias_underscores);

// Fields that make a backend route, or answer for, another URL, host or method than
// the request line says (X-Original-URL, X-Rewrite-URL, X-Host, X-HTTP-Method-Override,
// ...). Never forwarded, except where a route keys one explicitly.
bool is_override_field(std::string_view name, bool alias_underscores);
// The method-override fields alone (X-HTTP-Method-Override, X-HTTP-Method, X-Method-Override).
bool is_method_override_field(std::string_view name, bool alias_underscores);

// With policy.method_override, the method a POST asks to be treated as (its
// X-HTTP-Method-Override, upper-cased), else "". `conflicting` when its lines (of any
// of the override fields) name different methods or one is not a method token: such a
// request is refused, since backends disagree on which line wins.
struct method_override {
    std::string method;
    bool conflicting = false;
};
method_override overridden_method(const request& req, const forwarding_policy& policy);

// Rewrites `req` in place into the request the backend gets, except the per-exchange
// parts make_upstream_request() adds (framing, the peer in X-Forwarded-For, Via; on
// cacheable routes, dropping the client's validators, which cachecar answers itself;
// none of them is keyed, and a hit never pays for them). In this order:
//  1. hop-by-hop fields and every field a Connection line names; Expect (cachecar has
//     answered it);
//  2. field names with '_' unless underscores_in_headers (nginx's default: CGI-style
//     backends read X_API_KEY as X-API-Key);
//  3. override fields, unless `route` keys them (method overrides: unless
//     method_override is on);
//  4. forwarding fields, unless the peer is a trusted proxy or `route` keys them
//     (an untrusted client's X-Forwarded-For always goes);
//  5. the route's strip_headers;
//  6. Host: upstream_host when set; the upstream's authority when the client sent none
//     (HTTP/1.0);
//  7. the route's ignore_query parameters removed from the target (the rest of the
//     target is left byte for byte as sent).
// `route` is the cacheable route the request matched, or null.
void prepare_forwarded_request(request& req, const forwarding_policy& policy, std::string_view peer_address,
                               const route::compiled_route* route);

// The addressing fields of a prepared request, one entry per line: Host, and the
// addressing-kind forwarding fields that were kept (a trusted proxy's, or keyed ones);
// of Forwarded, only its host= and proto= parameters (its for= identifies the client,
// like X-Forwarded-For, and is not keyed). Every key holds these (key_builder.hpp).
std::vector<std::pair<std::string, std::string>> addressing_fields(const request& prepared, bool alias_underscores);

// The message sent upstream for a prepared request: its method (a HEAD becomes a GET
// when `head_as_get`, so the answer can be stored and serve later GETs), target,
// fields and body, framed afresh; X-Forwarded-For ends with `peer_address` (after a
// trusted proxy's chain) and Via with "1.1 cachecar"; on a cacheable route without
// the client's If-None-Match / If-Modified-Since, so the full response comes back to
// be stored.
request make_upstream_request(const request& prepared, std::string_view peer_address, bool cacheable_route,
                              bool head_as_get);

}  // namespace cachecar::proxy
