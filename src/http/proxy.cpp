#include <cachecar/http/proxy.hpp>

#include <cachecar/http/cache_rules.hpp>
#include <cachecar/http/forwarding.hpp>
#include <cachecar/http/routing.hpp>
#include <cachecar/route/key_builder.hpp>
#include <cachecar/util/ascii.hpp>

#include <cachecar/logging.hpp>

#include <boost/json.hpp>
#include <fmt/chrono.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>

namespace cachecar::http {

namespace bh = beast::http;
using cache::clock;

snapshot::snapshot(config::config c, stats::registry& metrics, std::shared_ptr<upstream_pool> pool)
    : cfg(std::move(c)), routes(cfg), forwarding(forwarding_policy::from(cfg.server)), upstream(std::move(pool)) {
    for (const auto& r : routes.routes()) route_stats.push_back(&metrics.route(r.cfg.name));
    for (const auto& inv : routes.invalidations()) {
        invalidation_stats.push_back(&metrics.route("invalidate:" + inv.cfg.method + " " + inv.cfg.path_pattern));
    }
}

namespace {

// UTC, millisecond resolution: "2026-11-21T23:57:39.742Z".
std::string iso_now() {
    const auto now = std::chrono::system_clock::now();
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count() % 1000;
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:03}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(now)), ms);
}

// The upstream response as the client gets it. A HEAD may have been answered by a
// GET (cacheable routes ask for the whole response): its head, without the body.
response client_response(const response& upstream, const request& req, std::string_view x_cache) {
    response out = upstream;
    strip_hop_by_hop(out.base());
    out.set(bh::field::via, "1.1 cachecar");
    if (!x_cache.empty()) out.set("X-Cache", x_cache);
    if (req.method() != bh::verb::head) {
        out.prepare_payload();
    } else if (!out.body().empty()) {
        out.content_length(out.body().size());
        out.body().clear();
    }
    out.version(11);
    return out;
}

reply error_reply(unsigned status, std::string_view message, std::string_view x_cache) {
    reply r;
    r.message = response{static_cast<bh::status>(status), 11};
    r.message.set(bh::field::content_type, "application/json");
    r.message.set(bh::field::via, "1.1 cachecar");
    if (!x_cache.empty()) r.message.set("X-Cache", x_cache);
    r.message.body() = std::string("{\"error\":\"") + std::string(message) + "\"}\n";
    r.message.prepare_payload();
    return r;
}

unsigned status_for(const error_code& ec) {
    return ec == make_error_code(upstream_error::timeout) ? 504 : 502;
}

// Why a cacheable route's response may not be stored, or "" when it may.
// `credentialed`: the request carried a credential (Authorization, Cookie, ...).
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

// The stale windows that apply to an entry: the route's, widened by the response's
// own stale-if-error / stale-while-revalidate directives (RFC 5861).
struct stale_windows {
    std::chrono::milliseconds if_error{0};
    std::chrono::milliseconds while_revalidate{0};
};

stale_windows windows_for(const route::compiled_route& route, std::string_view cache_control) {
    stale_windows w{route.cfg.stale_if_error, route.cfg.stale_while_revalidate};
    if (auto v = directive_seconds(cache_control, "stale-if-error")) w.if_error = std::max<std::chrono::milliseconds>(w.if_error, *v);
    if (auto v = directive_seconds(cache_control, "stale-while-revalidate")) {
        w.while_revalidate = std::max<std::chrono::milliseconds>(w.while_revalidate, *v);
    }
    return w;
}

// A Vary marker stands at the base key of a varying resource and names the request
// headers that select the variant; the variants live at derived keys.
bool is_vary_marker(const cache::entry& e) { return e.status == 0; }

std::string variant_key(const std::string& base, const std::vector<std::string>& names, const request& req,
                        bool alias_underscores) {
    return base + "#v:" + variant_fingerprint(names, req, alias_underscores);
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

// 304 for a request whose validators match the stored response (RFC 9110 15.4.5:
// the fields a 200 would have carried that describe the representation).
reply not_modified_reply(const cache::entry& e, std::string_view x_cache, std::string_view tier) {
    reply r;
    r.message = response{bh::status::not_modified, 11};
    for (auto name : {"ETag", "Last-Modified", "Cache-Control", "Expires", "Vary", "Content-Location", "Date"}) {
        for_each_line(e.headers, name, [&](std::string_view v) { r.message.insert(name, v); });
    }
    r.message.set("X-Cache", x_cache);
    if (!tier.empty()) {
        r.message.set("X-Cache-Tier", tier);
        auto age = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - e.stored_at).count();
        r.message.set(bh::field::age, std::to_string(std::max<long long>(0, age)));
    }
    r.message.set(bh::field::via, "1.1 cachecar");
    return r;
}

http::hit_info hit_meta(std::string_view x_cache, config::tier_kind tier, const cache::entry& e) {
    const auto age = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - e.stored_at).count();
    return {x_cache, config::to_string(tier), static_cast<std::int64_t>(age)};
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

proxy::proxy(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics)
    : snapshots_(snapshots),
      tiers_(tiers),
      metrics_(metrics),
      pass_through_requests_(metrics.requests("-", stats::request_result::pass)),
      access_log_(logging::get("access")),
      log_(logging::get("proxy")) {}

config::limits_config proxy::limits() const { return snapshots_.load()->cfg.limits; }

void proxy::on_rejected(unsigned status) {
    if (status == 503) {
        metrics_.get("cachecar_connections_refused_total", {})++;  // max_connections reached
        return;
    }
    metrics_.get("cachecar_bad_requests_total", {{"status", std::to_string(status)}})++;
}

void proxy::on_complete(const request& req, const reply& r, const connection_info& conn,
                        std::chrono::steady_clock::duration elapsed) {
    if (!access_log_->should_log(spdlog::level::info)) return;
    const auto ms = std::chrono::duration<double, std::milli>(elapsed).count();
    const auto body_bytes = r.hit ? (r.head_only ? 0 : r.hit->body.size()) : r.message.body().size();
    const auto stamp = iso_now();
    if (logging::access_format() == config::logging_config::access_format::json) {
        // One JSON object per line; serialised by Boost.JSON so every field is escaped.
        boost::json::object line{{"ts", stamp},
                                 {"client", conn.client_address},
                                 {"method", std::string(req.method_string())},
                                 {"target", std::string(req.target())},
                                 {"status", r.status()},
                                 {"bytes", body_bytes},
                                 {"route", std::string(r.access.route)},
                                 {"result", std::string(r.access.result)},
                                 {"tier", std::string(r.access.tier)},
                                 {"total_ms", ms}};
        if (r.access.upstream_seconds >= 0) line["upstream_ms"] = r.access.upstream_seconds * 1000.0;
        access_log_->info(boost::json::serialize(line));
        return;
    }
    if (r.access.upstream_seconds >= 0) {
        access_log_->info("{} {} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms={:.2f} total_ms={:.2f}", stamp,
                          conn.client_address, req.method_string(), req.target(), r.status(), body_bytes,
                          r.access.route, r.access.result, r.access.tier, r.access.upstream_seconds * 1000.0, ms);
    } else {
        access_log_->info("{} {} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms=- total_ms={:.2f}", stamp,
                          conn.client_address, req.method_string(), req.target(), r.status(), body_bytes,
                          r.access.route, r.access.result, r.access.tier, ms);
    }
}

net::awaitable<reply> proxy::handle(request& req, const connection_info& conn) {
    // Hold the snapshot for the whole request: a reload swaps in a new one for later requests.
    snapshot_ptr snap = snapshots_.load();
    const auto& policy = snap->forwarding;
    const auto decision = decide_route(snap->routes, req, overridden_method(req, policy));
    // From here on `req` is the request the backend receives; the key is read from it.
    prepare_forwarded_request(req, policy, conn.client_address, decision.cacheable ? decision.cacheable.target : nullptr);

    reply r;
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

net::awaitable<fetched> proxy::fetch(const request& req, const connection_info& conn, const snapshot& snap,
                                     const route::compiled_route* route) {
    fetched out;
    const auto t0 = std::chrono::steady_clock::now();
    // A cacheable route asks for the whole response even for a HEAD, so it can be
    // stored and answer later GETs (nginx's proxy_cache_convert_head).
    out.upstream =
        co_await snap.upstream->send(make_upstream_request(req, conn.client_address, route != nullptr, route != nullptr));
    out.upstream_seconds = seconds_since(t0);
    metrics_.upstream_seconds().observe(out.upstream_seconds);
    if (!out.upstream) {
        auto kind = out.upstream.error() == make_error_code(upstream_error::timeout)          ? "timeout"
                    : out.upstream.error() == make_error_code(upstream_error::connect_failed) ? "connect"
                    : out.upstream.error() == make_error_code(upstream_error::bad_response)   ? "bad_response"
                                                                                              : "io";
        metrics_.get("cachecar_upstream_errors_total", {{"route", "*"}, {"kind", kind}})++;
        if (auto held_back = upstream_error_log_.admit()) {
            log_->warn("upstream {} {}: {}{}", req.method_string(), req.target(), out.upstream.error().message(),
                       *held_back ? fmt::format(" ({} similar failures not logged in the last second)", *held_back) : "");
        }
    } else if (out.upstream->result_int() >= 500) {
        metrics_.get("cachecar_upstream_errors_total", {{"route", "*"}, {"kind", "status_5xx"}})++;
    }
    co_return out;
}

net::awaitable<reply> proxy::serve_pass_through(request& req, const connection_info& conn, const snapshot& snap) {
    auto f = co_await fetch(req, conn, snap, nullptr);
    reply r;
    if (!f.upstream) {
        r = error_reply(status_for(f.upstream.error()), f.upstream.error().message(), {});
    } else {
        r.message = client_response(*f.upstream, req, {});
    }
    r.access = {"-", "pass", "-", f.upstream_seconds};
    ++pass_through_requests_;  // route "-": matched no route
    co_return r;
}

net::awaitable<reply> proxy::serve_write(request& req, const connection_info& conn, const snapshot& snap,
                                         const route_decision& decision) {
    const auto& inv = *decision.invalidation.target;
    auto& counters = *snap.invalidation_stats[inv.index];
    auto f = co_await fetch(req, conn, snap, nullptr);
    reply r;
    r.access = {"invalidate", "write", "-", f.upstream_seconds};
    if (!f.upstream) {
        ++*counters.errors;
        r = error_reply(status_for(f.upstream.error()), f.upstream.error().message(), {});
        r.access = {"invalidate", "error", "-", f.upstream_seconds};
        co_return r;
    }
    const auto status = f.upstream->result_int();
    if (status >= 200 && status < 300) {
        // Purge before the client sees the response: once it has the answer to its
        // write, no read may return what was cached before it. A path the backend may
        // read another way purges for both readings.
        const bool alias = snap.cfg.server.underscores_in_headers;
        std::vector<std::string> categories;
        for (const auto* m : {&decision.invalidation, &decision.invalidation_resolved}) {
            if (!*m) continue;
            const keyed_request keyed(req, m->params, alias);
            for (auto& c : route::expand_categories(m->target->purges, keyed.view())) {
                if (std::find(categories.begin(), categories.end(), c) == categories.end()) categories.push_back(std::move(c));
            }
        }
        auto bumped = co_await tiers_.generations().bump(categories);
        if (bumped) {
            *counters.purges += categories.size();
            metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "ok"}}) += categories.size();
        } else {
            // The backend has done the write, so its answer goes to the client. The
            // generation store keeps the purge pending and serves nothing it could
            // affect until the purge lands (see redis_generations.hpp).
            if (auto held_back = deferred_purge_log_.admit()) {
                log_->error("purge of {} categories deferred: {}{}", categories.size(), bumped.error().message(),
                            *held_back ? fmt::format(" ({} more deferred purges not logged)", *held_back) : "");
            }
        }
    }
    ++*counters.requests[static_cast<std::size_t>(stats::request_result::write)];
    r.message = client_response(*f.upstream, req, {});
    co_return r;
}

// Why a request on a cacheable route must neither be served from nor stored in the
// cache, or "": each is a part of the forwarded request the backend may read but the
// key does not hold.
std::string_view proxy::bypass_reason(const request& req, const route::compiled_route& route,
                                      std::string_view routing_bypass) {
    if (!routing_bypass.empty()) return routing_bypass;
    // A client that forbids storing gets a straight forward, and nothing is kept.
    if (has_directive(list_value(req.base(), "cache-control"), "no-store")) return "no_store";
    // A body the key does not read (a GET body, as Elasticsearch-style APIs send) is
    // still forwarded, so the answer is for this body alone.
    if (!req.body().empty() && std::none_of(route.key_fields.begin(), route.key_fields.end(), [](const auto& f) {
            return f.from == route::source::body;
        }))
        return "body";
    if (!route.default_key && route::unkeyed_query_parameter(route, split(req.target()).query)) return "unkeyed_query";
    return {};
}

void proxy::store_fetched(const snapshot& snap, const route::compiled_route& route, const std::string& key,
                          const request& req, const cache::entry_ptr& e, const std::vector<std::string>& vary) {
    if (vary.empty()) {
        tiers_.store(route.cfg.tiers, key, e);
    } else {
        // The marker tells later lookups which headers pick the variant.
        tiers_.store(route.cfg.tiers, key, make_vary_marker(*e, vary));
        tiers_.store(route.cfg.tiers, variant_key(key, vary, req, snap.cfg.server.underscores_in_headers), e);
    }
}

net::awaitable<reply> proxy::serve_cacheable(request& req, const connection_info& conn, snapshot_ptr snap_ptr,
                                             const route::match_result<route::compiled_route>& m,
                                             std::string_view routing_bypass) {
    const snapshot& snap = *snap_ptr;
    const auto& route = *m.target;
    auto& counters = *snap.route_stats[route.index];
    auto count = [&](stats::request_result res) { ++*counters.requests[static_cast<std::size_t>(res)]; };

    if (const auto why = bypass_reason(req, route, routing_bypass); !why.empty()) {
        metrics_.get("cachecar_bypass_total", {{"route", route.cfg.name}, {"reason", std::string(why)}})++;
        // Forwarded as the client sent it (a HEAD stays a HEAD): nothing is stored.
        auto f = co_await fetch(req, conn, snap, nullptr);
        count(stats::request_result::bypass);
        reply r = f.upstream ? reply{} : error_reply(status_for(f.upstream.error()), f.upstream.error().message(), "BYPASS");
        if (f.upstream) r.message = client_response(*f.upstream, req, "BYPASS");
        r.access = {route.cfg.name, "bypass", "-", f.upstream_seconds};
        co_return r;
    }

    const bool alias = snap.cfg.server.underscores_in_headers;
    const keyed_request keyed(req, m.params, alias);
    const auto& view = keyed.view();
    const std::string credential = route::credential_fingerprint(route, view);
    const bool credentialed = !credential.empty();
    // As route::request_key: per credential, unless the route is shared.
    const std::string key =
        route::build_key(snap.cfg.server.key_namespace, route, view, route.cfg.shared ? std::string() : credential);
    const bool head = req.method() == bh::verb::head;

    // The categories a fill would be stamped with. A route with a shared tier needs
    // them for the lookup already (see tier_chain::lookup: one round trip per hit); a
    // memory-only route builds them only on a miss, keeping its hits allocation-light.
    std::vector<std::string> categories;
    auto build_categories = [&] {
        categories = route::expand_categories(route.categories, view);
        categories.emplace_back(cache::all_category);
    };
    const bool shared_tier = std::any_of(route.cfg.tiers.begin(), route.cfg.tiers.end(),
                                         [](config::tier_kind k) { return k != config::tier_kind::memory; });
    if (shared_tier) build_categories();
    const std::vector<std::string>* lookup_categories = shared_tier ? &categories : nullptr;

    // Look up; a Vary marker at the base key leads to this request's variant.
    auto found = co_await tiers_.lookup(route.cfg.tiers, key, lookup_categories);
    std::string variant_entry_key;  // set when a Vary marker leads to this request's variant
    if (auto marker = found.fresh ? found.fresh : found.expired; marker && is_vary_marker(*marker)) {
        variant_entry_key = variant_key(key, vary_names(list_value(marker->headers, "vary")), req, alias);
        auto variant = co_await tiers_.lookup(route.cfg.tiers, variant_entry_key, lookup_categories);
        found = std::move(variant);
    }
    const std::string& entry_key = variant_entry_key.empty() ? key : variant_entry_key;

    // Answers from a stored entry: 304 when the client's validators match.
    auto from_entry = [&](const cache::entry_ptr& e, std::string_view x_cache, config::tier_kind tier,
                          stats::request_result result, double upstream_seconds) {
        count(result);
        const auto tier_name = config::to_string(tier);
        reply r;
        // The stored validators are looked up only for a conditional request: a hit
        // must not pay for reading its stored fields.
        const bool conditional = line_count(req.base(), "if-none-match") + line_count(req.base(), "if-modified-since") > 0;
        if (conditional && not_modified(req, single_value(e->headers, "etag").value_or(""),
                                        single_value(e->headers, "last-modified").value_or(""))) {
            r = not_modified_reply(*e, x_cache, tier_name);
        } else {
            r.hit = e;
            r.head_only = head;
            r.hit_meta = hit_meta(x_cache, tier, *e);
        }
        r.access = {route.cfg.name, stats::to_string(result), tier_name, upstream_seconds};
        return r;
    };

    if (found.fresh && !is_vary_marker(*found.fresh)) {
        co_return from_entry(found.fresh, "HIT", found.from, stats::request_result::hit, -1);
    }

    if (!shared_tier) build_categories();

    // stale-while-revalidate: answer from the expired entry now, refresh behind it.
    if (found.expired && !is_vary_marker(*found.expired)) {
        const auto w = windows_for(route, list_value(found.expired->headers, "cache-control"));
        if (clock::now() < found.expired->expires_at + w.while_revalidate) {
            start_refresh(req, conn, snap_ptr, &route, key, entry_key, categories, credentialed);
            metrics_.get("cachecar_stale_served_total", {{"route", route.cfg.name}, {"why", "revalidate"}})++;
            co_return from_entry(found.expired, "STALE", found.expired_from, stats::request_result::stale, -1);
        }
    }

    // Miss. Note the generations *before* fetching: if a purge lands while the fetch
    // runs, the entry is stamped with the old generation and is never served. The
    // lookup may have read them already (a route with a shared tier).
    result<std::vector<std::uint64_t>> generations = make_error_code(boost::system::errc::operation_canceled);
    if (found.generations) {
        generations = std::move(*found.generations);
    } else {
        auto current = co_await tiers_.generations().current(categories);
        generations = std::move(current);
    }
    std::string flight_key = entry_key;
    if (generations) {
        for (auto g : *generations) {
            flight_key += '/';
            flight_key += std::to_string(g);
        }
    }
    const bool may_store = generations.has_value();
    const auto limits = snap.cfg.limits;
    auto do_fetch = [&]() -> net::awaitable<std::shared_ptr<const fetched>> {
        fetched result_of_fetch = co_await fetch(req, conn, snap, &route);  // named: see coalescer.hpp
        auto f = std::make_shared<fetched>(std::move(result_of_fetch));
        if (f->upstream && may_store) {
            auto reason = not_storable_reason(route, credentialed, *f->upstream, limits.max_object_bytes);
            if (reason.empty()) {
                f->stored = make_entry(*f->upstream, route, cache::make_stamps(categories, *generations));
                f->vary = vary_names(list_value(f->upstream->base(), "vary"));
                if (!f->vary.empty()) f->variant = variant_fingerprint(f->vary, req, alias);
                store_fetched(snap, route, key, req, f->stored, f->vary);
                ++*counters.stores;
            } else {
                metrics_.get("cachecar_not_stored_total", {{"route", route.cfg.name}, {"reason", std::string(reason)}})++;
            }
        }
        co_return f;
    };

    // Shared: upstream failures, and stored responses of this request's variant. A
    // response that may not be stored (Set-Cookie, private) is for its own requester
    // alone. A HEAD joins a GET's flight (both ask the backend the same GET).
    auto outcome = co_await coalescer_.run(
        flight_key, std::chrono::steady_clock::now() + limits.upstream_timeout, do_fetch,
        [&req, alias](const fetched& x) {
            if (!x.upstream) return true;
            if (!x.stored) return false;
            return x.vary.empty() || variant_fingerprint(x.vary, req, alias) == x.variant;
        });
    std::shared_ptr<const fetched> f = std::move(outcome.value);
    const bool led = outcome.led;
    if (!led) metrics_.get("cachecar_coalesced_total", {{"route", route.cfg.name}})++;

    const bool upstream_failed = !f->upstream || f->upstream->result_int() >= 500;
    if (upstream_failed && found.expired && !is_vary_marker(*found.expired)) {
        const auto w = windows_for(route, list_value(found.expired->headers, "cache-control"));
        if (clock::now() < found.expired->expires_at + w.if_error) {
            metrics_.get("cachecar_stale_served_total", {{"route", route.cfg.name}, {"why", "error"}})++;
            co_return from_entry(found.expired, "STALE", found.expired_from, stats::request_result::stale,
                                 f->upstream_seconds);
        }
    }
    if (!f->upstream) {
        count(stats::request_result::error);
        ++*counters.errors;
        reply r = error_reply(status_for(f->upstream.error()), f->upstream.error().message(), "MISS");
        r.access = {route.cfg.name, "error", "-", f->upstream_seconds};
        co_return r;
    }
    count(stats::request_result::miss);
    reply r;
    const auto& res = *f->upstream;
    if (res.result_int() == 200 && not_modified(req, single_value(res.base(), "etag").value_or(""),
                                                single_value(res.base(), "last-modified").value_or(""))) {
        // The validators were not forwarded (so the response could be stored); answer them here.
        cache::entry probe;
        for (const auto& h : res) {
            if (cache::header_block::valid(h.name_string(), h.value())) probe.headers.add(h.name_string(), h.value());
        }
        r = not_modified_reply(probe, "MISS", {});
    } else {
        r.message = client_response(res, req, "MISS");
    }
    r.access = {route.cfg.name, "miss", "-", led ? f->upstream_seconds : 0.0};
    co_return r;
}

void proxy::start_refresh(const request& req, const connection_info& conn, snapshot_ptr snap,
                          const route::compiled_route* route, std::string key, std::string entry_key,
                          std::vector<std::string> categories, bool credentialed) {
    {
        std::lock_guard lock(refreshing_->mutex);
        if (!refreshing_->keys.insert(entry_key).second) return;  // one refresh per key
    }
    // The refresh outlives this request: it owns copies of everything it reads.
    net::co_spawn(
        net::make_strand(snap->upstream->executor()),
        [this, req, conn, snap, route, key = std::move(key), entry_key = std::move(entry_key),
         categories = std::move(categories), credentialed, refreshing = refreshing_]() -> net::awaitable<void> {
            // Touches only the shared key set: the frame may be destroyed after the
            // proxy, when the I/O context is torn down.
            struct done_guard {
                std::shared_ptr<refresh_set> set;
                std::string key;
                ~done_guard() {
                    std::lock_guard lock(set->mutex);
                    set->keys.erase(key);
                }
            } guard{refreshing, entry_key};
            auto generations = co_await tiers_.generations().current(categories);
            if (!generations) co_return;
            fetched f = co_await fetch(req, conn, *snap, route);
            if (!f.upstream) co_return;
            auto reason = not_storable_reason(*route, credentialed, *f.upstream, snap->cfg.limits.max_object_bytes);
            if (!reason.empty()) co_return;
            auto e = make_entry(*f.upstream, *route, cache::make_stamps(categories, *generations));
            store_fetched(*snap, *route, key, req, e, vary_names(list_value(f.upstream->base(), "vary")));
            metrics_.get("cachecar_revalidations_total", {{"route", route->cfg.name}})++;
        },
        net::detached);
}

}  // namespace cachecar::http
