// Lookup: the key (from the request as forwarded), the categories a fill would be
// stamped with, the route's tiers in order, and the Vary marker that leads to this
// request's variant.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>

#include <algorithm>

namespace cachecar::proxy {

stale_windows windows_for(const route::compiled_route& route, std::string_view cache_control) {
    // The origin forbids serving it stale, whatever the route says: must-revalidate
    // (RFC 9111 5.2.2.2), proxy-revalidate (5.2.2.8) and s-maxage (5.2.2.10, which
    // implies it for a shared cache), and no-cache (5.2.2.4: never reused unvalidated).
    for (const auto directive : {"must-revalidate", "proxy-revalidate", "no-cache", "s-maxage"}) {
        if (has_directive(cache_control, directive)) return {};
    }
    stale_windows w{route.cfg.stale_if_error, route.cfg.stale_while_revalidate};
    if (auto v = directive_seconds(cache_control, "stale-if-error")) w.if_error = std::max<std::chrono::milliseconds>(w.if_error, *v);
    if (auto v = directive_seconds(cache_control, "stale-while-revalidate")) {
        w.while_revalidate = std::max<std::chrono::milliseconds>(w.while_revalidate, *v);
    }
    return w;
}

stale_windows windows_for(const route::compiled_route& route, const cache::entry& stored) {
    return windows_for(route, directives_of(stored.headers, route.cfg.cache_control_fields).list);
}

bool is_vary_marker(const cache::entry& e) { return e.status == 0; }

std::string variant_key(const std::string& base, const std::vector<std::string>& names, const request& req,
                        bool alias_underscores) {
    return base + "#v:" + variant_fingerprint(names, req, alias_underscores);
}

cache::entry_ptr make_vary_marker(const cache::entry& variant, const std::vector<std::string>& names) {
    auto m = std::make_shared<cache::entry>();
    m->status = 0;
    std::string joined;
    for (const auto& n : names) joined += (joined.empty() ? "" : ", ") + n;
    m->headers.add("Vary", joined);
    m->stored_at = variant.stored_at;
    m->expires_at = variant.expires_at;
    m->retain_until = variant.retain_until;
    m->stamps = variant.stamps;
    return m;
}

net::awaitable<step> handler::lookup(cacheable_request& r) {
    const bool alias = r.snap.cfg.server.underscores_in_headers;
    r.keyed.emplace(r.req, r.params, alias);
    const auto& view = r.keyed->view();
    const std::string credential = route::credential_fingerprint(r.route, view);
    r.credentialed = !credential.empty();
    // As route::request_key: per credential, unless the route is shared.
    r.key = route::build_key(r.snap.cfg.server.key_namespace, r.route, view,
                             r.route.cfg.shared ? std::string() : credential);
    r.head = r.req.method() == bh::verb::head;

    // A route with a shared tier needs the categories for the lookup already (see
    // tier_chain::lookup: one round trip per hit); a memory-only route builds them only
    // on a miss, keeping its hits allocation-light.
    r.shared_tier = std::any_of(r.route.cfg.tiers.begin(), r.route.cfg.tiers.end(),
                                [](config::tier_kind k) { return k != config::tier_kind::memory; });
    if (r.shared_tier) r.build_categories();
    const std::vector<std::string>* lookup_categories = r.shared_tier ? &r.categories : nullptr;

    r.found = co_await tiers_.lookup(r.route.cfg.tiers, r.key, lookup_categories);
    r.entry_key = r.key;
    if (auto marker = r.found.fresh ? r.found.fresh : r.found.expired; marker && is_vary_marker(*marker)) {
        r.entry_key = variant_key(r.key, vary_names(list_value(marker->headers, "vary")), r.req, alias);
        auto variant = co_await tiers_.lookup(r.route.cfg.tiers, r.entry_key, lookup_categories);
        r.found = std::move(variant);
    }
    if (r.found.fresh && !is_vary_marker(*r.found.fresh)) co_return step::hit;
    if (!r.shared_tier) r.build_categories();
    if (r.found.expired && !is_vary_marker(*r.found.expired)) {
        const auto w = windows_for(r.route, *r.found.expired);
        if (clock::now() < r.found.expired->expires_at + w.while_revalidate) co_return step::revalidate;
    }
    co_return step::fill;
}

}  // namespace cachecar::proxy
