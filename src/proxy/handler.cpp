// Dispatch, and the life of a request on a cacheable route on one screen.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>

#include <spdlog/spdlog.h>

namespace cachecar::proxy {

handler::handler(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics)
    : snapshots_(snapshots),
      tiers_(tiers),
      metrics_(metrics),
      pass_through_requests_(metrics.requests("-", stats::request_result::pass)),
      access_log_(logging::get("access")),
      log_(logging::get("proxy")) {}

config::limits_config handler::limits() const { return snapshots_.load()->cfg.limits; }

void handler::on_rejected(unsigned status) {
    if (status == 503) {
        metrics_.get("cachecar_connections_refused_total", {})++;  // max_connections reached
        return;
    }
    metrics_.get("cachecar_bad_requests_total", {{"status", std::to_string(status)}})++;
}

net::awaitable<http::reply> handler::handle(request& req, const http::connection_info& conn) {
    // Hold the snapshot for the whole request: a reload swaps in a new one for later requests.
    snapshot_ptr snap = snapshots_.load();
    const auto& policy = snap->forwarding;
    const auto decision = decide_route(snap->routes, req, overridden_method(req, policy));
    // From here on `req` is the request the backend receives; the key is read from it.
    prepare_forwarded_request(req, policy, conn.client_address, decision.cacheable ? decision.cacheable.target : nullptr);

    http::reply r;
    if (decision.invalidation) {
        r = co_await serve_write(req, conn, *snap, decision);
    } else if (decision.cacheable) {
        r = co_await serve_cacheable(req, conn, snap, decision.cacheable, decision.bypass);
    } else {
        r = co_await serve_pass_through(req, conn, *snap);
    }
    // The access record names the route from this snapshot; it is logged after the
    // write, possibly after a reload has dropped the snapshot otherwise.
    r.owner = snap;
    co_return r;
}

void cacheable_request::build_categories() {
    categories = route::expand_categories(route.categories, keyed->view());
    categories.emplace_back(cache::all_category);
}

net::awaitable<http::reply> handler::serve_cacheable(request& req, const http::connection_info& conn, snapshot_ptr snap,
                                                     const route::match_result<route::compiled_route>& m,
                                                     std::string_view routing_bypass) {
    cacheable_request r{*snap, snap, *m.target, m.params, req, conn, *snap->route_stats[m.target->index], routing_bypass};
    step next = bypass_reason(req, r.route, routing_bypass).empty() ? step::lookup : step::bypass;
    while (next != step::done) {
        switch (next) {
        case step::lookup: next = co_await lookup(r); break;           // lookup.cpp
        case step::hit: next = deliver_hit(r); break;                  // deliver.cpp
        case step::revalidate: next = revalidate(r); break;            // refresh.cpp
        case step::fill: next = co_await fill(r); break;               // fill.cpp
        case step::stale_if_error: next = stale_if_error(r); break;    // deliver.cpp
        case step::deliver_fetched: next = deliver_fetched(r); break;  // deliver.cpp
        case step::bypass: next = co_await bypass(r); break;           // forward.cpp
        case step::done: break;
        }
    }
    co_return std::move(r.reply);
}

}  // namespace cachecar::proxy
