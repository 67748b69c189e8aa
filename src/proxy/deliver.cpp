// Every reply the proxy gives: from a stored entry (the hit, its Age, a 304), from the
// backend's response, and errors.
#include "stages.hpp"

#include <algorithm>

namespace cachecar::proxy {

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

http::reply error_reply(unsigned status, std::string_view message, std::string_view x_cache) {
    http::reply r;
    r.message = response{static_cast<bh::status>(status), 11};
    r.message.set(bh::field::content_type, "application/json");
    r.message.set(bh::field::via, "1.1 cachecar");
    if (!x_cache.empty()) r.message.set("X-Cache", x_cache);
    r.message.body() = std::string("{\"error\":\"") + std::string(message) + "\"}\n";
    r.message.prepare_payload();
    return r;
}

unsigned status_for(const error_code& ec) { return ec == make_error_code(http::upstream_error::timeout) ? 504 : 502; }

namespace {

// The one place Age is computed: seconds the entry has been held.
std::int64_t age_seconds(const cache::entry& e) {
    return std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(clock::now() - e.stored_at).count());
}

}  // namespace

http::reply not_modified_reply(const cache::entry& e, std::string_view x_cache, std::string_view tier) {
    http::reply r;
    r.message = response{bh::status::not_modified, 11};
    for (auto name : {"ETag", "Last-Modified", "Cache-Control", "Expires", "Vary", "Content-Location", "Date"}) {
        for_each_line(e.headers, name, [&](std::string_view v) { r.message.insert(name, v); });
    }
    r.message.set("X-Cache", x_cache);
    if (!tier.empty()) {
        r.message.set("X-Cache-Tier", tier);
        r.message.set(bh::field::age, std::to_string(age_seconds(e)));
    }
    r.message.set(bh::field::via, "1.1 cachecar");
    return r;
}

http::reply reply_from_entry(const request& req, const cache::entry_ptr& e, std::string_view x_cache,
                             config::tier_kind tier, bool head) {
    // The stored validators are looked up only for a conditional request: a hit must
    // not pay for reading its stored fields.
    const bool conditional = line_count(req.base(), "if-none-match") + line_count(req.base(), "if-modified-since") > 0;
    if (conditional && not_modified(req, single_value(e->headers, "etag").value_or(""),
                                    single_value(e->headers, "last-modified").value_or(""))) {
        return not_modified_reply(*e, x_cache, config::to_string(tier));
    }
    http::reply r;
    r.hit = e;
    r.head_only = head;
    r.hit_meta = {x_cache, config::to_string(tier), age_seconds(*e)};
    return r;
}

step handler::deliver_hit(cacheable_request& r) {
    r.count(stats::request_result::hit);
    r.reply = reply_from_entry(r.req, r.found.fresh, "HIT", r.found.from, r.head);
    r.reply.access = {r.route.cfg.name, "hit", config::to_string(r.found.from), -1};
    return step::done;
}

step handler::stale_if_error(cacheable_request& r) {
    const auto& f = *r.result_of_fill;
    const auto w = windows_for(r.route, list_value(r.found.expired->headers, "cache-control"));
    if (clock::now() < r.found.expired->expires_at + w.if_error) {
        metrics_.get("cachecar_stale_served_total", {{"route", r.route.cfg.name}, {"why", "error"}})++;
        r.count(stats::request_result::stale);
        r.reply = reply_from_entry(r.req, r.found.expired, "STALE", r.found.expired_from, r.head);
        r.reply.access = {r.route.cfg.name, "stale", config::to_string(r.found.expired_from), f.upstream_seconds};
        return step::done;
    }
    return step::deliver_fetched;
}

step handler::deliver_fetched(cacheable_request& r) {
    const auto& f = *r.result_of_fill;
    if (!f.upstream) {
        r.count(stats::request_result::error);
        ++*r.counters.errors;
        r.reply = error_reply(status_for(f.upstream.error()), f.upstream.error().message(), "MISS");
        r.reply.access = {r.route.cfg.name, "error", "-", f.upstream_seconds};
        return step::done;
    }
    r.count(stats::request_result::miss);
    const auto& res = *f.upstream;
    if (res.result_int() == 200 && not_modified(r.req, single_value(res.base(), "etag").value_or(""),
                                                single_value(res.base(), "last-modified").value_or(""))) {
        // The validators were not forwarded (so the response could be stored); answer them here.
        cache::entry probe;
        for (const auto& h : res) {
            if (cache::header_block::valid(h.name_string(), h.value())) probe.headers.add(h.name_string(), h.value());
        }
        r.reply = not_modified_reply(probe, "MISS", {});
    } else {
        r.reply.message = client_response(res, r.req, "MISS");
    }
    r.reply.access = {r.route.cfg.name, "miss", "-", r.led ? f.upstream_seconds : 0.0};
    return step::done;
}

}  // namespace cachecar::proxy
