#include <cachecar/http/proxy.hpp>

#include <cachecar/route/key_builder.hpp>

#include <boost/algorithm/string/predicate.hpp>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <chrono>

namespace cachecar::http {

namespace bh = beast::http;
using cache::clock;

snapshot::snapshot(config::config c, stats::registry& metrics, std::shared_ptr<upstream_pool> pool)
    : cfg(std::move(c)), routes(cfg), upstream(std::move(pool)) {
    for (const auto& r : routes.routes()) route_stats.push_back(&metrics.route(r.cfg.name));
    for (const auto& inv : routes.invalidations()) {
        invalidation_stats.push_back(&metrics.route("invalidate:" + inv.cfg.method + " " + inv.cfg.path_pattern));
    }
}

namespace {

std::shared_ptr<spdlog::logger> named_logger(const std::string& name, bool to_stdout) {
    if (auto existing = spdlog::get(name)) return existing;
    std::shared_ptr<spdlog::logger> logger;
    if (to_stdout) {
        logger = std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stdout_sink_mt>());
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z %v");
    } else {
        logger = std::make_shared<spdlog::logger>(name, std::make_shared<spdlog::sinks::stderr_sink_mt>());
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z [%n] %l: %v");
    }
    spdlog::register_logger(logger);
    return logger;
}

std::vector<route::header_view> header_views(const request& req) {
    std::vector<route::header_view> out;
    out.reserve(16);
    for (const auto& f : req) out.push_back({f.name_string(), f.value()});
    return out;
}

// The request as the backend gets it: same method, target and body; hop-by-hop
// headers dropped; X-Forwarded-For and Via added.
request make_upstream_request(const request& in, const connection_info& conn, const route::compiled_route* route) {
    request out{in.method(), in.target(), 11};
    if (in.method() == bh::verb::unknown) out.method_string(in.method_string());
    for (const auto& f : in) {
        if (f.name() == bh::field::unknown) {
            out.insert(f.name_string(), f.value());
        } else {
            out.insert(f.name(), f.value());
        }
    }
    strip_hop_by_hop(out.base());
    out.erase(bh::field::content_length);
    if (route != nullptr) {
        for (const auto& name : route->cfg.strip_headers) out.erase(name);
    }
    if (!conn.client_address.empty()) {
        auto prior = in["X-Forwarded-For"];
        out.set("X-Forwarded-For",
                prior.empty() ? conn.client_address : std::string(prior) + ", " + conn.client_address);
    }
    auto via = in[bh::field::via];
    out.set(bh::field::via, via.empty() ? std::string("1.1 cachecar") : std::string(via) + ", 1.1 cachecar");
    out.body() = in.body();
    out.keep_alive(true);
    if (!out.body().empty() || in.has_content_length() || in.chunked()) out.prepare_payload();
    return out;
}

// The upstream response as the client gets it.
response client_response(const response& upstream, const request& req, std::string_view x_cache) {
    response out = upstream;
    strip_hop_by_hop(out.base());
    out.set(bh::field::via, "1.1 cachecar");
    if (!x_cache.empty()) out.set("X-Cache", x_cache);
    if (req.method() != bh::verb::head) out.prepare_payload();
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

std::string_view not_storable_reason(const route::compiled_route& route, const request& req, const response& res,
                                     std::size_t max_object_bytes) {
    if (req.method() == bh::verb::head) return "head";
    const auto status = res.result_int();
    if (std::find(route.cfg.status.begin(), route.cfg.status.end(), status) == route.cfg.status.end()) return "status";
    if (res.count(bh::field::set_cookie) > 0) return "set_cookie";
    auto cc = res[bh::field::cache_control];
    if (has_directive(cc, "no-store")) return "no_store";
    if (has_directive(cc, "private")) return "private";
    // Vary needs per-variant keys; until those exist, a varying response is passed
    // through rather than risk serving one variant to a client that asked for another.
    if (res.count(bh::field::vary) > 0) return "vary";
    if (res.body().size() > max_object_bytes) return "too_large";
    return {};
}

cache::entry_ptr make_entry(const response& res, const route::compiled_route& route,
                            std::vector<cache::category_stamp> stamps) {
    auto e = std::make_shared<cache::entry>();
    e->status = res.result_int();
    for (const auto& f : res) {
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
            e->headers.push_back({std::string(f.name_string()), std::string(f.value())});
        }
    }
    e->body = res.body();
    e->stored_at = clock::now();
    e->expires_at = e->stored_at + route.cfg.ttl;
    e->retain_until = e->expires_at + std::max(route.cfg.stale_if_error, route.cfg.stale_while_revalidate);
    e->stamps = std::move(stamps);
    return e;
}

std::string hit_headers(std::string_view x_cache, config::tier_kind tier, const cache::entry& e) {
    auto age = std::chrono::duration_cast<std::chrono::seconds>(clock::now() - e.stored_at).count();
    std::string h = "X-Cache: ";
    h += x_cache;
    h += "\r\nX-Cache-Tier: ";
    h += config::to_string(tier);
    h += "\r\nAge: ";
    h += std::to_string(std::max<long long>(0, age));
    h += "\r\nVia: 1.1 cachecar\r\n";
    return h;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

proxy::proxy(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics)
    : snapshots_(snapshots),
      tiers_(tiers),
      metrics_(metrics),
      access_log_(named_logger("access", true)),
      log_(named_logger("proxy", false)) {}

config::limits_config proxy::limits() const { return snapshots_.load()->cfg.limits; }

void proxy::on_rejected(unsigned status) {
    metrics_.get("cachecar_bad_requests_total", {{"status", std::to_string(status)}})++;
}

void proxy::on_complete(const request& req, const reply& r, const connection_info& conn,
                        std::chrono::steady_clock::duration elapsed) {
    if (!access_log_->should_log(spdlog::level::info)) return;
    const auto ms = std::chrono::duration<double, std::milli>(elapsed).count();
    const auto body_bytes = r.hit ? (r.head_only ? 0 : r.hit->body.size()) : r.message.body().size();
    if (r.access.upstream_seconds >= 0) {
        access_log_->info("{} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms={:.2f} total_ms={:.2f}",
                          conn.client_address, req.method_string(), req.target(), r.status(), body_bytes,
                          r.access.route, r.access.result, r.access.tier, r.access.upstream_seconds * 1000.0, ms);
    } else {
        access_log_->info("{} \"{} {}\" {} {}B route={} result={} tier={} upstream_ms=- total_ms={:.2f}",
                          conn.client_address, req.method_string(), req.target(), r.status(), body_bytes,
                          r.access.route, r.access.result, r.access.tier, ms);
    }
}

net::awaitable<reply> proxy::handle(request& req, const connection_info& conn) {
    // Hold the snapshot for the whole request: a reload swaps in a new one for later requests.
    snapshot_ptr snap = snapshots_.load();
    const auto [path, query] = split(req.target());
    const auto method = req.method_string();

    if (auto inv = snap->routes.find_invalidation(method, path)) {
        co_return co_await serve_write(req, conn, *snap, inv);
    }
    if (auto m = snap->routes.find_route(method, path)) {
        co_return co_await serve_cacheable(req, conn, *snap, m);
    }
    co_return co_await serve_pass_through(req, conn, *snap);
}

net::awaitable<fetched> proxy::fetch(const request& req, const connection_info& conn, const snapshot& snap,
                                     const route::compiled_route* route) {
    fetched out;
    const auto t0 = std::chrono::steady_clock::now();
    out.upstream = co_await snap.upstream->send(make_upstream_request(req, conn, route));
    out.upstream_seconds = seconds_since(t0);
    metrics_.upstream_seconds().observe(out.upstream_seconds);
    if (!out.upstream) {
        auto kind = out.upstream.error() == make_error_code(upstream_error::timeout)          ? "timeout"
                    : out.upstream.error() == make_error_code(upstream_error::connect_failed) ? "connect"
                                                                                              : "io";
        metrics_.get("cachecar_upstream_errors_total", {{"route", "*"}, {"kind", kind}})++;
        log_->warn("upstream {} {}: {}", req.method_string(), req.target(), out.upstream.error().message());
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
    co_return r;
}

net::awaitable<reply> proxy::serve_write(request& req, const connection_info& conn, const snapshot& snap,
                                         const route::match_result<route::compiled_invalidation>& m) {
    const auto& inv = *m.target;
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
        // write, no read may return what was cached before it.
        const auto [path, query] = split(req.target());
        auto headers = header_views(req);
        route::request_view view{req.method_string(), path, query, headers, req.body(), &m.params};
        auto categories = route::expand_categories(inv.purges, view);
        auto bumped = co_await tiers_.generations().bump(categories);
        if (bumped) {
            *counters.purges += categories.size();
            metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "ok"}}) += categories.size();
        } else {
            // The backend has done the write, so its answer goes to the client. The
            // generation store keeps the purge pending and serves nothing it could
            // affect until the purge lands (see redis_generations.hpp).
            log_->error("purge of {} categories deferred: {}", categories.size(), bumped.error().message());
        }
    }
    ++*counters.requests[static_cast<std::size_t>(stats::request_result::write)];
    r.message = client_response(*f.upstream, req, {});
    co_return r;
}

net::awaitable<reply> proxy::serve_cacheable(request& req, const connection_info& conn, const snapshot& snap,
                                             const route::match_result<route::compiled_route>& m) {
    const auto& route = *m.target;
    auto& counters = *snap.route_stats[route.index];
    auto count = [&](stats::request_result res) { ++*counters.requests[static_cast<std::size_t>(res)]; };

    // A client that forbids storing gets a straight forward, and nothing is kept.
    if (has_directive(req[bh::field::cache_control], "no-store")) {
        auto f = co_await fetch(req, conn, snap, &route);
        count(stats::request_result::bypass);
        reply r = f.upstream ? reply{} : error_reply(status_for(f.upstream.error()), f.upstream.error().message(), "BYPASS");
        if (f.upstream) r.message = client_response(*f.upstream, req, "BYPASS");
        r.access = {route.cfg.name, "bypass", "-", f.upstream_seconds};
        co_return r;
    }

    const auto [path, query] = split(req.target());
    auto headers = header_views(req);
    route::request_view view{req.method_string(), path, query, headers, req.body(), &m.params};
    const std::string credential = route.cfg.shared ? std::string{} : route::credential_fingerprint(route, view);
    const std::string key = route::build_key(snap.cfg.server.key_namespace, route, view, credential);
    const bool head = req.method() == bh::verb::head;

    auto found = co_await tiers_.lookup(route.cfg.tiers, key);
    if (found.fresh) {
        count(stats::request_result::hit);
        reply r;
        r.hit = found.fresh;
        r.head_only = head;
        r.hit_headers = hit_headers("HIT", found.from, *found.fresh);
        r.access = {route.cfg.name, "hit", config::to_string(found.from), -1};
        co_return r;
    }

    // Miss. Note the generations *before* fetching: if a purge lands while the fetch
    // runs, the entry is stamped with the old generation and is never served.
    auto categories = route::expand_categories(route.categories, view);
    categories.emplace_back(cache::all_category);
    auto generations = co_await tiers_.generations().current(categories);

    std::string flight_key = key;
    if (generations) {
        for (auto g : *generations) {
            flight_key += '/';
            flight_key += std::to_string(g);
        }
    }
    const bool may_store = generations.has_value() && !head;
    const auto limits = snap.cfg.limits;
    auto do_fetch = [&]() -> net::awaitable<std::shared_ptr<const fetched>> {
        fetched result_of_fetch = co_await fetch(req, conn, snap, &route);  // named: see coalescer.hpp
        auto f = std::make_shared<fetched>(std::move(result_of_fetch));
        if (f->upstream && may_store) {
            auto reason = not_storable_reason(route, req, *f->upstream, limits.max_object_bytes);
            if (reason.empty()) {
                f->stored = make_entry(*f->upstream, route, cache::make_stamps(categories, *generations));
                tiers_.store(route.cfg.tiers, key, f->stored);
                ++*counters.stores;
            } else {
                metrics_.get("cachecar_not_stored_total", {{"route", route.cfg.name}, {"reason", std::string(reason)}})++;
            }
        }
        co_return f;
    };

    std::shared_ptr<const fetched> f;
    bool led = true;
    if (head) {
        f = co_await do_fetch();  // a HEAD answer cannot stand in for a GET: never shared
    } else {
        // Only storable answers and upstream failures are shared; a response that may
        // not be stored (Set-Cookie, private) is for its own requester alone.
        auto outcome = co_await coalescer_.run(
            flight_key, std::chrono::steady_clock::now() + limits.upstream_timeout, do_fetch,
            [](const fetched& x) { return x.stored != nullptr || !x.upstream; });
        f = std::move(outcome.value);
        led = outcome.led;
    }
    if (!led) metrics_.get("cachecar_coalesced_total", {{"route", route.cfg.name}})++;

    const bool upstream_failed = !f->upstream || f->upstream->result_int() >= 500;
    if (upstream_failed && found.expired &&
        clock::now() < found.expired->expires_at + route.cfg.stale_if_error) {
        count(stats::request_result::stale);
        metrics_.get("cachecar_stale_served_total", {{"route", route.cfg.name}})++;
        reply r;
        r.hit = found.expired;
        r.head_only = head;
        r.hit_headers = hit_headers("STALE", found.expired_from, *found.expired);
        r.access = {route.cfg.name, "stale", config::to_string(found.expired_from), f->upstream_seconds};
        co_return r;
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
    r.message = client_response(*f->upstream, req, "MISS");
    r.access = {route.cfg.name, "miss", "-", led ? f->upstream_seconds : 0.0};
    co_return r;
}

}  // namespace cachecar::http
