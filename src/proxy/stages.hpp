// What the steps of a request share (internal to src/proxy): the state a request on a
// cacheable route carries from step to step, and the helpers more than one step uses.
// The steps themselves are handler members, one file each (see handler.hpp).
#pragma once

#include <cachecar/proxy/cache_rules.hpp>
#include <cachecar/proxy/forwarding.hpp>
#include <cachecar/proxy/handler.hpp>
#include <cachecar/proxy/http_names.hpp>
#include <cachecar/proxy/routing.hpp>

#include <algorithm>
#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::proxy {

namespace bh = beast::http;
using cache::clock;

// What the Cache-Status field (RFC 9211) of a reply says, besides the cache's name:
// a hit (fwd empty; its ttl is the entry's remaining freshness, negative when stale),
// or why the request went forward (fwd: uri-miss, vary-miss, stale, bypass, request)
// with more parameters ("; fwd-status=200; stored", "; collapsed"). No name: no field.
struct cache_status {
    std::string_view name;
    std::string_view fwd;
    std::string_view params;
    std::string_view key;  // non-empty: key="..." (server.cache_status_key)
};
// Appends "Cache-Status: ...\r\n" to `out` (nothing when cs has no name); `e`, when
// given, supplies the ttl.
void append_cache_status(std::string& out, const cache_status& cs, const cache::entry* e);

struct cacheable_request {
    const snapshot& snap;
    snapshot_ptr snap_ptr;
    const route::compiled_route& route;
    const route::path_params& params;
    http::inbound& in;
    request& req;
    stats::route_counters& counters;
    std::string_view routing_bypass;

    // lookup
    std::optional<keyed_request> keyed{};
    std::string key{};        // base key: a Vary marker, or the entry itself
    std::string entry_key{};  // the entry this request's variant is stored under
    bool credentialed = false;
    bool head = false;
    bool shared_tier = false;
    std::vector<std::string> categories{};  // a fill's stamps (all_category last); empty until built
    cache::tier_chain::lookup_outcome found{};

    // fill
    std::shared_ptr<const fill_result> result_of_fill{};  // what the flight brought, for stale/deliver
    bool led = false;

    http::reply reply{};

    void count(stats::request_result res) { ++*counters.requests[static_cast<std::size_t>(res)]; }
    // This request's Cache-Status (deliver.cpp): a hit without `fwd`.
    struct cache_status status(std::string_view fwd = {}, std::string_view more = {}) const;
    // Why a fill went forward: an expired entry (stale), a Vary marker without this
    // variant (vary-miss), or nothing at the key (uri-miss).
    std::string_view fwd_reason() const;
    void build_categories();
};

// What a fill stores once its body is complete (fill.cpp).
struct handler::store_plan {
    snapshot_ptr snap;
    const route::compiled_route* route = nullptr;
    std::string key;          // base key
    std::string variant_key;  // where the entry goes when the response varies ("" otherwise)
    std::vector<std::string> vary;
    std::string variant;                   // the fingerprint of the request for `vary`
    std::shared_ptr<cache::entry> entry;   // made from the head; the body is added at the end
};

// Calls f(field) for each field of a backend's response that goes beyond its hop: not
// hop-by-hop, not named in its Connection (RFC 9110 7.6.1), and none cachecar writes
// itself (framing, Via, X-Cache). The reply to the client relays them; the store keeps
// them less Age (fill.cpp).
template <class F>
void for_each_end_to_end_field(const bh::response_header<>& res, F&& f) {
    std::vector<std::string_view> hop_named;
    for_each_line(res, "connection", [&](std::string_view line) {
        for_each_list_item(line, [&](std::string_view name) { hop_named.push_back(name); });
    });
    for (const auto& field : res) {
        switch (field.name()) {
        case bh::field::connection:
        case bh::field::keep_alive:
        case bh::field::proxy_connection:
        case bh::field::te:
        case bh::field::trailer:
        case bh::field::transfer_encoding:
        case bh::field::upgrade:
        case bh::field::content_length:
        case bh::field::via:
            continue;
        default:
            break;
        }
        if (same_field_name(field.name_string(), "x-cache")) continue;
        if (std::any_of(hop_named.begin(), hop_named.end(),
                        [&](std::string_view n) { return same_field_name(n, field.name_string()); }))
            continue;
        f(field);
    }
}

// ---- deliver.cpp -------------------------------------------------------------------

// The answer from a stored entry: its head (status line, stored fields, the per-hit
// lines composed into `scratch`) and body, no copy; a 304 when the client's validators
// match it. `x_cache`: HIT, STALE or MISS (a coalesced request served the fill).
http::reply reply_from_entry(const request& req, const cache::entry_ptr& e, std::string_view x_cache,
                             std::string_view tier, bool head, std::string& scratch, const cache_status& cs = {});
// The backend's response as the client gets it, its body streamed from `body` (the
// exchange itself, or the fill's copying stream over it): hop-by-hop fields dropped,
// framed afresh for the client (Content-Length when known, else chunked, else
// close-delimited for HTTP/1.0), Via and X-Cache set.
http::reply reply_from_upstream(const bh::response_header<>& head, std::unique_ptr<http::body_stream> body,
                                const request& req, std::string_view x_cache, const cache_status& cs = {});
http::reply error_reply(unsigned status, std::string_view message, std::string_view x_cache);
// 304 for a request whose validators match the stored response (RFC 9110 15.4.5).
http::reply not_modified_reply(const cache::header_block& fields, std::string_view x_cache, std::string_view tier,
                               std::int64_t age, const cache_status& cs = {}, const cache::entry* e = nullptr);
// "HTTP/1.1 <status> <reason>\r\n": `reason` as the backend gave it, or the standard one.
void status_line(std::string& out, unsigned status, std::string_view reason);
// The one place Age is computed: how long the entry has been held, in seconds.
std::int64_t age_seconds(const cache::entry& e);

// ---- fill.cpp ----------------------------------------------------------------------

// The statuses RFC 9110 15.1 makes heuristically cacheable: the only ones a route's ttl
// may be given to when ttl_from_origin finds no freshness in the response.
bool heuristically_cacheable(unsigned status);

// Why a cacheable route's response may not be stored, or "" when it may (its body may
// still turn out too large while it streams). `credentialed`: the request carried a
// credential (Authorization, Cookie, ...).
std::string_view not_storable_reason(const route::compiled_route& route, bool credentialed,
                                     const bh::response_header<>& res, std::optional<std::uint64_t> size,
                                     std::size_t max_object_bytes);
// What a fill stores for `head` under `key` (its variant key when the head varies),
// stamped with `stamps`; the body is given to store() when it has arrived.
handler::store_plan make_plan(snapshot_ptr snap, const route::compiled_route& route, const std::string& key,
                              const request& req, const bh::response_header<>& head,
                              std::vector<cache::category_stamp> stamps);
// An entry from a response head (the body is added when it has arrived).
std::shared_ptr<cache::entry> make_entry(const bh::response_header<>& res, const route::compiled_route& route,
                                         std::vector<cache::category_stamp> stamps);

// ---- conditional revalidation (fill.cpp) -------------------------------------------

// Whether a stored response can be revalidated: it has a validator (ETag or
// Last-Modified), and its stamps are exactly `categories` at `generations`, the ones
// noted before asking the backend. An entry stamped with older generations (purged
// since) is never revalidated back to life.
bool may_revalidate(const cache::entry& e, const std::vector<std::string>& categories,
                    const std::vector<std::uint64_t>& generations);
// Makes `upstream` conditional on the stored response's validators (If-None-Match from
// its ETag, If-Modified-Since from its Last-Modified; RFC 9111 4.3.1).
void add_validators(request& upstream, const cache::entry& e);
// The stored response's head freshened by a 304 (RFC 9111 4.3.4): every end-to-end
// field of the 304 replaces the stored field of that name; the others stay.
bh::response_header<> freshened_head(const cache::entry& stored, const bh::response_header<>& not_modified);

// ---- lookup.cpp --------------------------------------------------------------------

// The stale windows that apply to an entry: the route's, widened by the response's own
// stale-if-error / stale-while-revalidate directives (RFC 5861).
struct stale_windows {
    std::chrono::milliseconds if_error{0};
    std::chrono::milliseconds while_revalidate{0};
};
stale_windows windows_for(const route::compiled_route& route, std::string_view cache_control);
// The same for a stored response, from the directives that govern it (directives_of).
stale_windows windows_for(const route::compiled_route& route, const cache::entry& stored);
// A Vary marker stands at the base key of a varying resource and names the request
// headers that select the variant; the variants live at derived keys.
bool is_vary_marker(const cache::entry& e);
std::string variant_key(const std::string& base, const std::vector<std::string>& names, const request& req,
                        bool alias_underscores);
cache::entry_ptr make_vary_marker(const cache::entry& variant, const std::vector<std::string>& names);

// ---- forward.cpp -------------------------------------------------------------------

// Why a request on a cacheable route must neither be served from nor stored in the
// cache, or "" (each is a part of the forwarded request the key does not hold).
std::string_view bypass_reason(const http::inbound& in, const route::compiled_route& route,
                               std::string_view routing_bypass);

double seconds_since(std::chrono::steady_clock::time_point t0);

}  // namespace cachecar::proxy
