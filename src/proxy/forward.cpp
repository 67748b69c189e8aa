// The upstream exchange: every request the cache does not answer goes through
// open_upstream, its body streamed as it arrives and the answer streamed back; the
// pass-through (no route), the bypass (a cacheable route whose cache this request may
// not use) and the tunnel (an upgrade, e.g. WebSocket) are built on it.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace cachecar::proxy {

double seconds_since(std::chrono::steady_clock::time_point t0) {
    return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

std::string_view bypass_reason(const http::inbound& in, const route::compiled_route& route,
                               std::string_view routing_bypass) {
    if (!routing_bypass.empty()) return routing_bypass;
    // A client that forbids storing gets a straight forward, and nothing is kept.
    if (has_directive(list_value(in.req.base(), "cache-control"), "no-store")) return "no_store";
    // A body the key does not read (a GET body, as Elasticsearch-style APIs send) is
    // still forwarded, so the answer is for this body alone.
    const bool keyed_body = std::any_of(route.key_fields.begin(), route.key_fields.end(),
                                        [](const auto& f) { return f.from == route::source::body; });
    if (!keyed_body && in.body.present()) return "body";
    if (!route.default_key && route::unkeyed_query_parameter(route, split(in.req.target()).query)) return "unkeyed_query";
    return {};
}

http::reply handler::failure_reply(const error_code& ec, std::string_view x_cache) {
    if (ec.category() != http::upstream_category()) {
        // The client's own body failed: over the upload limit, or cut short.
        const bool too_large = ec == bh::error::body_limit;
        auto r = error_reply(too_large ? 413 : 400, too_large ? "request body too large" : "request body incomplete", x_cache);
        r.close = true;
        return r;
    }
    const unsigned status = ec == make_error_code(http::upstream_error::timeout) ? 504 : 502;
    return error_reply(status, ec.message(), x_cache);
}

net::awaitable<result<std::unique_ptr<http::upstream_exchange>>> handler::open_upstream(
    http::inbound& in, const snapshot& snap, const route::compiled_route* route, double& seconds,
    const cache::entry* validate) {
    const auto t0 = std::chrono::steady_clock::now();
    // A cacheable route asks for the whole response even for a HEAD, so it can be
    // stored and answer later GETs (nginx's proxy_cache_convert_head).
    auto upstream_req = make_upstream_request(in.req, in.conn.client_address, route != nullptr, route != nullptr);
    if (validate != nullptr) add_validators(upstream_req, *validate);
    // The body streams from the client as it arrives, unless it was read in already
    // (a key reads it): then it is sent from memory.
    std::optional<http::memory_body> held;
    http::body_stream* body = nullptr;
    if (!in.req.body().empty()) {
        held.emplace(in.req.body());
        body = &*held;
    } else if (in.body.present() && !in.body.finished()) {
        body = &in.body;
        // A chunked body that came whole with its head (most small uploads) goes on with
        // a Content-Length, as a buffering proxy would send it: many backends (WSGI, CGI,
        // PHP) read no body without one. Anything longer streams on chunked.
        if (!in.body.size()) {
            if (auto whole = in.body.already_arrived()) {
                held.emplace(*whole);
                body = &*held;
            }
        }
    }
    // Interim responses reach the client as they come (103 Early Hints, ...), except
    // 100 Continue: cachecar answered the client's Expect itself.
    auto relay = [&in, this](const bh::response_header<>& interim) -> net::awaitable<void> {
        const auto status = interim.result_int();
        if (status == 100) co_return;
        std::string head;
        status_line(head, status, interim.reason());
        for (const auto& f : interim) {
            if (f.name() == bh::field::connection || f.name() == bh::field::keep_alive ||
                !cache::header_block::valid(f.name_string(), f.value()))
                continue;
            head.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
        }
        head += "\r\n";
        metrics_.get("cachecar_interim_responses_total", {{"status", std::to_string(status)}})++;
        error_code ignored = co_await in.send_interim(head);
        (void)ignored;
    };
    auto opened = co_await snap.upstream->open(std::move(upstream_req), body, relay);
    seconds = seconds_since(t0);
    metrics_.upstream_seconds().observe(seconds);
    if (!opened) {
        const auto& ec = opened.error();
        if (ec.category() == http::upstream_category()) {
            const char* kind = ec == make_error_code(http::upstream_error::timeout)          ? "timeout"
                               : ec == make_error_code(http::upstream_error::connect_failed) ? "connect"
                               : ec == make_error_code(http::upstream_error::bad_response)   ? "bad_response"
                                                                                           : "io";
            metrics_.get("cachecar_upstream_errors_total", {{"route", "*"}, {"kind", kind}})++;
            if (auto held_back = upstream_error_log_.admit()) {
                log_->warn("upstream {} {}: {}{}", in.req.method_string(), in.req.target(), ec.message(),
                           *held_back ? fmt::format(" ({} similar failures not logged in the last second)", *held_back) : "");
            }
        } else {
            metrics_.get("cachecar_request_body_errors_total", {})++;  // the client went away, or sent too much
        }
    } else if ((*opened)->head().result_int() >= 500) {
        metrics_.get("cachecar_upstream_errors_total", {{"route", "*"}, {"kind", "status_5xx"}})++;
    }
    co_return opened;
}

net::awaitable<http::reply> handler::serve_pass_through(http::inbound& in, const snapshot& snap) {
    double seconds = 0;
    auto opened = co_await open_upstream(in, snap, nullptr, seconds);
    http::reply r;
    if (!opened) {
        r = failure_reply(opened.error(), {});
    } else {
        const auto& head = (*opened)->head();
        r = reply_from_upstream(head, std::move(*opened), in.req, {});
    }
    r.access = {"-", "pass", "-", seconds};
    ++pass_through_requests_;  // route "-": matched no route
    co_return r;
}

net::awaitable<step> handler::bypass(cacheable_request& r) {
    const auto why = bypass_reason(r.in, r.route, r.routing_bypass);
    metrics_.get("cachecar_bypass_total", {{"route", r.route.cfg.name}, {"reason", std::string(why)}})++;
    // Forwarded as the client sent it (a HEAD stays a HEAD): nothing is stored.
    double seconds = 0;
    auto opened = co_await open_upstream(r.in, r.snap, nullptr, seconds);
    r.count(stats::request_result::bypass);
    if (opened) {
        const auto& head = (*opened)->head();
        // RFC 9211: a request directive made it go forward (fwd=request), or cachecar's
        // rules kept it from the cache (fwd=bypass); detail says which rule.
        const auto detail = "; fwd-status=" + std::to_string(head.result_int()) + "; detail=" + std::string(why);
        r.reply = reply_from_upstream(head, std::move(*opened), r.req, "BYPASS",
                                      r.status(why == "no_store" ? "request" : "bypass", detail));
    } else {
        r.reply = failure_reply(opened.error(), "BYPASS");
    }
    r.reply.access = {r.route.cfg.name, "bypass", "-", seconds};
    co_return step::done;
}

net::awaitable<http::reply> handler::serve_tunnel(http::inbound& in, const snapshot& snap, std::string upgrade) {
    // The rewrite dropped the hop-by-hop fields; an upgrade asks the next hop for one.
    in.req.set(bh::field::upgrade, upgrade);
    in.req.set(bh::field::connection, "Upgrade");
    double seconds = 0;
    auto opened = co_await open_upstream(in, snap, nullptr, seconds);
    http::reply r;
    if (!opened) {
        r = failure_reply(opened.error(), {});
        r.access = {"-", "error", "-", seconds};
        co_return r;
    }
    auto x = std::move(*opened);
    if (x->head().result_int() != 101) {
        // The backend declined the upgrade: an ordinary answer.
        const auto& head = x->head();
        r = reply_from_upstream(head, std::move(x), in.req, {});
        r.access = {"-", "pass", "-", seconds};
        co_return r;
    }
    // 101: its head to the client (with the Upgrade and Connection it agreed to), then
    // the connection becomes a byte tunnel until either side closes.
    struct owned {
        std::string head;
    };
    auto o = std::make_shared<owned>();
    o->head = "HTTP/1.1 101 Switching Protocols\r\n";
    for (const auto& f : x->head()) {
        if (f.name() == bh::field::keep_alive || f.name() == bh::field::via || f.name() == bh::field::content_length ||
            f.name() == bh::field::transfer_encoding)
            continue;
        o->head.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    }
    o->head += "Via: 1.1 cachecar\r\n";
    r.status = 101;
    r.head[0] = o->head;
    r.owner = std::move(o);
    r.tunnel = x->take_tunnel();
    r.access = {"-", "tunnel", "-", seconds};
    metrics_.get("cachecar_tunnels_total", {})++;
    co_return r;
}

}  // namespace cachecar::proxy
