// Dispatch, and the life of a request on a cacheable route on one screen.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>
#include <cachecar/util/ascii.hpp>

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

namespace {

// The protocols a request asks to switch to (RFC 9110 7.8), or "" when it asks none:
// Upgrade counts only when Connection names it. h2c is never offered to the backend:
// every request inside an HTTP/2 tunnel would reach it unseen, past the forwarding
// rules and the key (h2c smuggling); such a request is forwarded as plain HTTP/1.1,
// which RFC 9113 3.1 lets any server answer.
std::string upgrade_token(const request& req) {
    if (!list_has(req.base(), "connection", "upgrade")) return {};
    std::string kept;
    for_each_line(req.base(), "upgrade", [&](std::string_view line) {
        for_each_list_item(line, [&](std::string_view protocol) {
            if (util::iequals(protocol.substr(0, protocol.find('/')), "h2c")) return;
            if (!kept.empty()) kept += ", ";
            kept.append(protocol);
        });
    });
    return kept;
}

}  // namespace

net::awaitable<http::reply> handler::handle(http::inbound& in) {
    // Hold the snapshot for the whole request: a reload swaps in a new one for later requests.
    snapshot_ptr snap = snapshots_.load();
    auto& req = in.req;
    http::reply r;
    if (req.method() == bh::verb::connect) {
        // A reverse proxy has no business opening tunnels to arbitrary hosts.
        metrics_.get("cachecar_bad_requests_total", {{"status", "501"}})++;
        r = error_reply(501, "CONNECT is not supported: cachecar is a reverse proxy", {});
        r.close = true;
        r.access = {"-", "error", "-", -1};
        co_return r;
    }
    const auto& policy = snap->forwarding;
    std::string upgrade = upgrade_token(req);
    const auto override = overridden_method(req, policy);
    if (override.conflicting) {
        // Lines that disagree: cachecar would route one method while a backend that reads
        // another line performs a different one (a write that purges nothing).
        metrics_.get("cachecar_bad_requests_total", {{"status", "400"}})++;
        r = error_reply(400, "conflicting or invalid method override fields", {});
        r.close = true;
        r.access = {"-", "error", "-", -1};
        co_return r;
    }
    const auto decision = decide_route(snap->routes, req, override.method);
    // From here on `req` is the request the backend receives; the key is read from it.
    prepare_forwarded_request(req, policy, in.conn.client_address,
                              decision.cacheable && upgrade.empty() ? decision.cacheable.target : nullptr);

    if (!upgrade.empty()) {
        // Never cached, whatever route it matches: the answer is a connection, not a document.
        r = co_await serve_tunnel(in, *snap, std::move(upgrade));
    } else if (decision.invalidation) {
        r = co_await serve_write(in, *snap, decision);
    } else if (decision.cacheable) {
        r = co_await serve_cacheable(in, snap, decision.cacheable, decision.bypass);
    } else {
        r = co_await serve_pass_through(in, *snap);
    }
    // The access record names the route from this snapshot; it is logged after the
    // write, possibly after a reload has dropped the snapshot otherwise.
    r.access_owner = snap;
    co_return r;
}

void cacheable_request::build_categories() {
    categories = route::expand_categories(route.categories, keyed->view());
    categories.emplace_back(cache::all_category);
}

net::awaitable<http::reply> handler::serve_cacheable(http::inbound& in, snapshot_ptr snap,
                                                     const route::match_result<route::compiled_route>& m,
                                                     std::string_view routing_bypass) {
    cacheable_request r{*snap, snap, *m.target, m.params, in, in.req, *snap->route_stats[m.target->index],
                        routing_bypass};
    // A body the key reads is read in first (bounded by max_body_bytes); any other body
    // keeps the request out of the cache (bypass_reason) and streams to the backend.
    const bool keyed_body = std::any_of(r.route.key_fields.begin(), r.route.key_fields.end(),
                                        [](const auto& f) { return f.from == route::source::body; });
    if (keyed_body && in.body.present()) {
        // A declared length over the limit is refused before the body is asked for (a
        // client waiting on Expect: 100-continue then sends nothing).
        const auto declared = in.body.size();
        error_code ec = make_error_code(bh::error::body_limit);
        if (!declared || *declared <= snap->cfg.limits.max_body_bytes) {
            ec = co_await http::read_whole(in.body, in.req.body(), snap->cfg.limits.max_body_bytes);
        }
        if (ec) {
            http::reply failed = failure_reply(ec, "MISS");
            failed.access = {r.route.cfg.name, "error", "-", -1};
            co_return failed;
        }
    }
    step next = bypass_reason(in, r.route, routing_bypass).empty() ? step::lookup : step::bypass;
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

bool handler::passing(const std::string& key) {
    std::lock_guard lock(pass_mutex_);
    auto it = pass_until_.find(key);
    if (it == pass_until_.end()) return false;
    if (std::chrono::steady_clock::now() < it->second) return true;
    pass_until_.erase(it);
    return false;
}

void handler::mark_pass(const std::string& key) {
    constexpr auto pass_for = std::chrono::seconds(10);
    constexpr std::size_t max_marks = 65536;
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(pass_mutex_);
    if (pass_until_.size() >= max_marks) {
        std::erase_if(pass_until_, [&](const auto& kv) { return kv.second <= now; });
        if (pass_until_.size() >= max_marks) pass_until_.clear();  // bounded: the marks are only an optimisation
    }
    pass_until_[key] = now + pass_for;
}

}  // namespace cachecar::proxy
