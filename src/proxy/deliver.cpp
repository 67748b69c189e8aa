// Every reply the proxy gives: from a stored entry (the hit head, its Age, a 304), from
// the backend's response as it streams, and errors.
#include "stages.hpp"

#include <algorithm>

namespace cachecar::proxy {

namespace {

// The Cache-Status value (RFC 9211) alone, appended to `out`.
void append_cache_status_value(std::string& out, const cache_status& cs, const cache::entry* e) {
    out += cs.name;
    if (cs.fwd.empty()) {
        out += "; hit";
    } else {
        out += "; fwd=";
        out += cs.fwd;
    }
    out += cs.params;
    if (e != nullptr) {
        // Remaining freshness in whole seconds; negative once stale (RFC 9211 2.4).
        out += "; ttl=";
        out += std::to_string(std::chrono::floor<std::chrono::seconds>(e->expires_at - clock::now()).count());
    }
    if (!cs.key.empty()) {
        out += "; key=\"";
        for (const char c : cs.key) {
            if (c == '"' || c == '\\') out += '\\';
            if (c >= 0x20 && c < 0x7f) out += c;  // an sf-string holds printable ASCII only
        }
        out += '"';
    }
}

}  // namespace

void append_cache_status(std::string& out, const cache_status& cs, const cache::entry* e) {
    if (cs.name.empty()) return;
    out += "Cache-Status: ";
    append_cache_status_value(out, cs, e);
    out += "\r\n";
}

void status_line(std::string& out, unsigned status, std::string_view reason) {
    out += "HTTP/1.1 ";
    out += std::to_string(status);
    out += ' ';
    // The backend's own reason phrase when it gave one (raw-checked with its head),
    // else the standard one; Beast knows none for 103.
    if (reason.empty()) {
        const auto standard = bh::obsolete_reason(static_cast<bh::status>(status));
        reason = status == 103 ? std::string_view("Early Hints") : std::string_view(standard.data(), standard.size());
    }
    out.append(reason.data(), reason.size());
    out += "\r\n";
}

std::int64_t age_seconds(const cache::entry& e) {
    return std::max<std::int64_t>(0, std::chrono::duration_cast<std::chrono::seconds>(clock::now() - e.stored_at).count());
}

http::reply error_reply(unsigned status, std::string_view message, std::string_view x_cache) {
    response res{static_cast<bh::status>(status), 11};
    res.set(bh::field::content_type, "application/json");
    res.set(bh::field::via, "1.1 cachecar");
    if (!x_cache.empty()) res.set("X-Cache", x_cache);
    res.body() = std::string("{\"error\":\"") + std::string(message) + "\"}\n";
    return http::make_reply(std::move(res));
}

http::reply not_modified_reply(const cache::header_block& fields, std::string_view x_cache, std::string_view tier,
                               std::int64_t age, const cache_status& cs, const cache::entry* e) {
    response res{bh::status::not_modified, 11};
    if (!cs.name.empty()) {
        std::string value;
        append_cache_status_value(value, cs, e);
        res.set("Cache-Status", value);
    }
    for (auto name : {"ETag", "Last-Modified", "Cache-Control", "Expires", "Vary", "Content-Location", "Date"}) {
        for_each_line(fields, name, [&](std::string_view v) { res.insert(name, v); });
    }
    res.set("X-Cache", x_cache);
    if (!tier.empty()) {
        res.set("X-Cache-Tier", tier);
        res.set(bh::field::age, std::to_string(age));
    }
    res.set(bh::field::via, "1.1 cachecar");
    return http::make_reply(std::move(res));
}

http::reply reply_from_entry(const request& req, const cache::entry_ptr& e, std::string_view x_cache,
                             std::string_view tier, bool head, std::string& scratch, const cache_status& cs) {
    // The stored validators are looked up only for a conditional request: a hit must
    // not pay for reading its stored fields.
    const bool conditional = line_count(req.base(), "if-none-match") + line_count(req.base(), "if-modified-since") > 0;
    if (conditional && not_modified(req, single_value(e->headers, "etag").value_or(""),
                                    single_value(e->headers, "last-modified").value_or(""))) {
        return not_modified_reply(e->headers, x_cache, tier, age_seconds(*e), cs, e.get());
    }
    // Only the status line and the per-hit lines (X-Cache, X-Cache-Tier, Age, Via, the
    // framing) are composed, into the connection's reused scratch buffer; the stored
    // header block and the body go out as they are.
    scratch.clear();
    status_line(scratch, e->status, {});
    const auto status_end = scratch.size();
    scratch += "X-Cache: ";
    scratch += x_cache;
    if (!tier.empty()) {
        scratch += "\r\nX-Cache-Tier: ";
        scratch += tier;
        scratch += "\r\nAge: ";
        scratch += std::to_string(age_seconds(*e));
    }
    scratch += "\r\nVia: 1.1 cachecar\r\n";
    append_cache_status(scratch, cs, e.get());
    if (e->status != 204 && e->status != 304) {
        scratch += "Content-Length: ";
        scratch += std::to_string(e->body.size());
        scratch += "\r\n";
    }
    http::reply r;
    r.status = e->status;
    r.head = {std::string_view(scratch).substr(0, status_end), e->headers.wire(), std::string_view(scratch).substr(status_end)};
    r.body = e->body;
    r.head_only = head;
    r.owner = e;
    return r;
}

http::reply reply_from_upstream(const bh::response_header<>& head, std::unique_ptr<http::body_stream> body,
                                const request& req, std::string_view x_cache, const cache_status& cs) {
    struct owned {
        std::string head;
    };
    auto o = std::make_shared<owned>();
    auto& out = o->head;
    const auto status = head.result_int();
    status_line(out, status, head.reason());
    for_each_end_to_end_field(head, [&](const auto& f) {
        out.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    });
    out += "Via: 1.1 cachecar\r\n";
    if (!x_cache.empty()) out.append("X-Cache: ").append(x_cache).append("\r\n");
    append_cache_status(out, cs, nullptr);

    http::reply r;
    r.status = status;
    const bool no_body = status < 200 || status == 204 || status == 304;
    if (req.method() == bh::verb::head) {
        // A HEAD's answer keeps the length the body would have had (or the GET's).
        if (auto cl = single_value(head, "content-length")) out.append("Content-Length: ").append(*cl).append("\r\n");
        else if (body && body->size()) out.append("Content-Length: ").append(std::to_string(*body->size())).append("\r\n");
        r.head_only = true;
    } else if (!no_body) {
        if (body && body->size()) {
            out.append("Content-Length: ").append(std::to_string(*body->size())).append("\r\n");
        } else if (req.version() >= 11) {
            // Chunked or close-delimited upstream: chunk by chunk to the client, each piece
            // flushed as it comes (Server-Sent Events).
            out += "Transfer-Encoding: chunked\r\n";
            r.chunked = true;
        } else {
            r.close = true;  // an HTTP/1.0 client reads to the end of the connection
        }
    }
    r.head[0] = o->head;
    r.stream = std::move(body);
    r.owner = std::move(o);
    return r;
}

cache_status cacheable_request::status(std::string_view fwd, std::string_view more) const {
    const auto& server = snap.cfg.server;
    return {server.cache_status, fwd, more, server.cache_status_key ? std::string_view(entry_key) : std::string_view()};
}

std::string_view cacheable_request::fwd_reason() const {
    if (found.expired && !is_vary_marker(*found.expired)) return "stale";
    return entry_key != key ? "vary-miss" : "uri-miss";
}

step handler::deliver_hit(cacheable_request& r) {
    r.count(stats::request_result::hit);
    r.reply = reply_from_entry(r.req, r.found.fresh, "HIT", config::to_string(r.found.from), r.head, r.in.scratch,
                               r.status());
    r.reply.access = {r.route.cfg.name, "hit", config::to_string(r.found.from), -1};
    return step::done;
}

step handler::stale_if_error(cacheable_request& r) {
    const double upstream = r.result_of_fill ? r.result_of_fill->upstream_seconds : -1;
    const auto w = windows_for(r.route, *r.found.expired);
    if (clock::now() < r.found.expired->expires_at + w.if_error) {
        metrics_.get("cachecar_stale_served_total", {{"route", r.route.cfg.name}, {"why", "error"}})++;
        r.count(stats::request_result::stale);
        r.reply = reply_from_entry(r.req, r.found.expired, "STALE", config::to_string(r.found.expired_from), r.head,
                                   r.in.scratch, r.status());
        r.reply.access = {r.route.cfg.name, "stale", config::to_string(r.found.expired_from), upstream};
        return step::done;
    }
    return step::deliver_fetched;
}

step handler::deliver_fetched(cacheable_request& r) {
    // Reached when the fill left no reply of its own: the flight failed before a head.
    const auto& f = *r.result_of_fill;
    r.count(stats::request_result::error);
    ++*r.counters.errors;
    r.reply = failure_reply(f.error, "MISS");
    r.reply.access = {r.route.cfg.name, "error", "-", f.upstream_seconds};
    return step::done;
}

}  // namespace cachecar::proxy
