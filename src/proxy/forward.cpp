// The upstream request: a pass-through (no route), a bypass (a cacheable route whose
// cache this request may not use), and the fetch every upstream exchange goes through.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>

#include <spdlog/spdlog.h>

namespace cachecar::proxy {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string_view bypass_reason(const request& req, const route::compiled_route& route, std::string_view routing_bypass) {
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

net::awaitable<fetched> handler::fetch(const request& req, const http::connection_info& conn, const snapshot& snap,
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
        auto kind = out.upstream.error() == make_error_code(http::upstream_error::timeout)          ? "timeout"
                    : out.upstream.error() == make_error_code(http::upstream_error::connect_failed) ? "connect"
                    : out.upstream.error() == make_error_code(http::upstream_error::bad_response)   ? "bad_response"
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

net::awaitable<http::reply> handler::serve_pass_through(request& req, const http::connection_info& conn,
                                                       const snapshot& snap) {
    auto f = co_await fetch(req, conn, snap, nullptr);
    http::reply r;
    if (!f.upstream) {
        r = error_reply(status_for(f.upstream.error()), f.upstream.error().message(), {});
    } else {
        r.message = client_response(*f.upstream, req, {});
    }
    r.access = {"-", "pass", "-", f.upstream_seconds};
    ++pass_through_requests_;  // route "-": matched no route
    co_return r;
}

net::awaitable<step> handler::bypass(cacheable_request& r) {
    const auto why = bypass_reason(r.req, r.route, r.routing_bypass);
    metrics_.get("cachecar_bypass_total", {{"route", r.route.cfg.name}, {"reason", std::string(why)}})++;
    // Forwarded as the client sent it (a HEAD stays a HEAD): nothing is stored.
    auto f = co_await fetch(r.req, r.conn, r.snap, nullptr);
    r.count(stats::request_result::bypass);
    if (f.upstream) {
        r.reply.message = client_response(*f.upstream, r.req, "BYPASS");
    } else {
        r.reply = error_reply(status_for(f.upstream.error()), f.upstream.error().message(), "BYPASS");
    }
    r.reply.access = {r.route.cfg.name, "bypass", "-", f.upstream_seconds};
    co_return step::done;
}

}  // namespace cachecar::proxy
