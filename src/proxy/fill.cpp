// A miss: the generations noted before the fetch, the coalesced upstream fetch, and
// the one routine that stores what a fetch brought (the refresh uses it too).
#include "stages.hpp"

#include <algorithm>

namespace cachecar::proxy {

std::string_view not_storable_reason(const route::compiled_route& route, bool credentialed, const response& res,
                                     std::size_t max_object_bytes) {
    const auto status = res.result_int();
    if (std::find(route.cfg.status.begin(), route.cfg.status.end(), status) == route.cfg.status.end()) return "status";
    if (line_count(res.base(), "set-cookie") > 0) return "set_cookie";
    const auto cc = list_value(res.base(), "cache-control");
    if (has_directive(cc, "no-store")) return "no_store";
    if (has_directive(cc, "private")) return "private";
    // Vary: * says no stored response can ever be chosen for another request.
    if (vary_names(list_value(res.base(), "vary")) == std::vector<std::string>{"*"}) return "vary_star";
    // RFC 9111 3.5: a shared cache stores the answer to a request with credentials only
    // when the origin says so; on a `shared` route every user would get it.
    if (route.cfg.shared && credentialed && !route.cfg.store_authenticated && !has_directive(cc, "public") &&
        !has_directive(cc, "s-maxage") && !has_directive(cc, "must-revalidate"))
        return "authenticated";
    if (res.body().size() > max_object_bytes) return "too_large";
    // Stored fields are replayed verbatim on hits; one that could not be written back
    // safely (a control character the parser let through) keeps the response out.
    for (const auto& f : res) {
        if (!cache::header_block::valid(f.name_string(), f.value())) return "bad_header";
    }
    if (route.cfg.ttl_from_origin) {
        auto lifetime = origin_freshness(res.base());
        if (lifetime && lifetime->count() == 0) return "origin_max_age_0";
    }
    return {};
}

cache::entry_ptr make_entry(const response& res, const route::compiled_route& route,
                            std::vector<cache::category_stamp> stamps) {
    auto e = std::make_shared<cache::entry>();
    e->status = res.result_int();
    // Fields the backend names in Connection are for this hop only (RFC 9110 7.6.1):
    // never stored, so never replayed on a hit.
    std::vector<std::string> hop_named;
    for_each_line(res.base(), "connection", [&](std::string_view line) {
        for_each_list_item(line, [&](std::string_view name) { hop_named.emplace_back(name); });
    });
    for (const auto& f : res) {
        if (std::any_of(hop_named.begin(), hop_named.end(),
                        [&](const std::string& n) { return same_field_name(n, f.name_string()); }))
            continue;
        switch (f.name()) {
        case bh::field::connection:
        case bh::field::keep_alive:
        case bh::field::proxy_connection:
        case bh::field::te:
        case bh::field::trailer:
        case bh::field::transfer_encoding:
        case bh::field::upgrade:
        case bh::field::content_length:
        case bh::field::age:
        case bh::field::via:
            continue;  // recomputed per hit, or hop-by-hop
        default:
            e->headers.add(f.name_string(), f.value());
        }
    }
    e->headers.shrink_to_fit();
    e->body = res.body();
    e->stored_at = clock::now();
    config::duration ttl = route.cfg.ttl;
    if (route.cfg.ttl_from_origin) {
        if (auto lifetime = origin_freshness(res.base())) ttl = *lifetime;
    }
    e->expires_at = e->stored_at + ttl;
    const auto w = windows_for(route, list_value(res.base(), "cache-control"));
    e->retain_until = e->expires_at + std::max(w.if_error, w.while_revalidate);
    e->stamps = std::move(stamps);
    return e;
}

void handler::store_fetched(const snapshot& snap, const route::compiled_route& route, const std::string& key,
                            const request& req, const cache::entry_ptr& e, const std::vector<std::string>& vary) {
    if (vary.empty()) {
        tiers_.store(route.cfg.tiers, key, e);
    } else {
        // The marker tells later lookups which headers pick the variant.
        tiers_.store(route.cfg.tiers, key, make_vary_marker(*e, vary));
        tiers_.store(route.cfg.tiers, variant_key(key, vary, req, snap.cfg.server.underscores_in_headers), e);
    }
}

net::awaitable<step> handler::fill(cacheable_request& r) {
    // Note the generations *before* fetching: if a purge lands while the fetch runs, the
    // entry is stamped with the old generation and is never served. The lookup may
    // have read them already (a route with a shared tier).
    result<std::vector<std::uint64_t>> generations = make_error_code(boost::system::errc::operation_canceled);
    if (r.found.generations) {
        generations = std::move(*r.found.generations);
    } else {
        auto current = co_await tiers_.generations().current(r.categories);
        generations = std::move(current);
    }
    std::string flight_key = r.entry_key;
    if (generations) {
        for (auto g : *generations) {
            flight_key += '/';
            flight_key += std::to_string(g);
        }
    }
    const bool may_store = generations.has_value();
    const bool alias = r.snap.cfg.server.underscores_in_headers;
    const auto limits = r.snap.cfg.limits;
    auto do_fetch = [&]() -> net::awaitable<std::shared_ptr<const fetched>> {
        fetched result_of_fetch = co_await fetch(r.req, r.conn, r.snap, &r.route);  // named: see coalescer.hpp
        auto f = std::make_shared<fetched>(std::move(result_of_fetch));
        if (f->upstream && may_store) {
            auto reason = not_storable_reason(r.route, r.credentialed, *f->upstream, limits.max_object_bytes);
            if (reason.empty()) {
                f->stored = make_entry(*f->upstream, r.route, cache::make_stamps(r.categories, *generations));
                f->vary = vary_names(list_value(f->upstream->base(), "vary"));
                if (!f->vary.empty()) f->variant = variant_fingerprint(f->vary, r.req, alias);
                store_fetched(r.snap, r.route, r.key, r.req, f->stored, f->vary);
                ++*r.counters.stores;
            } else {
                metrics_.get("cachecar_not_stored_total", {{"route", r.route.cfg.name}, {"reason", std::string(reason)}})++;
            }
        }
        co_return f;
    };

    // Shared: upstream failures, and stored responses of this request's variant. A
    // response that may not be stored (Set-Cookie, private) is for its own requester
    // alone. A HEAD joins a GET's flight (both ask the backend the same GET).
    auto outcome = co_await coalescer_.run(
        flight_key, std::chrono::steady_clock::now() + limits.upstream_timeout, do_fetch,
        [&r, alias](const fetched& x) {
            if (!x.upstream) return true;
            if (!x.stored) return false;
            return x.vary.empty() || variant_fingerprint(x.vary, r.req, alias) == x.variant;
        });
    r.result_of_fill = std::move(outcome.value);
    r.led = outcome.led;
    if (!r.led) metrics_.get("cachecar_coalesced_total", {{"route", r.route.cfg.name}})++;

    const auto& f = *r.result_of_fill;
    const bool upstream_failed = !f.upstream || f.upstream->result_int() >= 500;
    if (upstream_failed && r.found.expired && !is_vary_marker(*r.found.expired)) co_return step::stale_if_error;
    co_return step::deliver_fetched;
}

}  // namespace cachecar::proxy
