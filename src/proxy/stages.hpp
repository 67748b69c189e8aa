// What the steps of a request share (internal to src/proxy): the state a request on a
// cacheable route carries from step to step, and the helpers more than one step uses.
// The steps themselves are handler members, one file each (see handler.hpp).
#pragma once

#include <cachecar/proxy/cache_rules.hpp>
#include <cachecar/proxy/forwarding.hpp>
#include <cachecar/proxy/handler.hpp>
#include <cachecar/proxy/http_names.hpp>
#include <cachecar/proxy/routing.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::proxy {

namespace bh = beast::http;
using cache::clock;

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

// ---- deliver.cpp -------------------------------------------------------------------

// The answer from a stored entry: its head (status line, stored fields, the per-hit
// lines composed into `scratch`) and body, no copy; a 304 when the client's validators
// match it. `x_cache`: HIT, STALE or MISS (a coalesced request served the fill).
http::reply reply_from_entry(const request& req, const cache::entry_ptr& e, std::string_view x_cache,
                             std::string_view tier, bool head, std::string& scratch);
// The backend's response as the client gets it, its body streamed from `body` (the
// exchange itself, or the fill's copying stream over it): hop-by-hop fields dropped,
// framed afresh for the client (Content-Length when known, else chunked, else
// close-delimited for HTTP/1.0), Via and X-Cache set.
http::reply reply_from_upstream(const bh::response_header<>& head, std::unique_ptr<http::body_stream> body,
                                const request& req, std::string_view x_cache);
http::reply error_reply(unsigned status, std::string_view message, std::string_view x_cache);
// 304 for a request whose validators match the stored response (RFC 9110 15.4.5).
http::reply not_modified_reply(const cache::header_block& fields, std::string_view x_cache, std::string_view tier,
                               std::int64_t age);
// "HTTP/1.1 <status> <reason>\r\n": `reason` as the backend gave it, or the standard one.
void status_line(std::string& out, unsigned status, std::string_view reason);
// The one place Age is computed: how long the entry has been held, in seconds.
std::int64_t age_seconds(const cache::entry& e);

// ---- fill.cpp ----------------------------------------------------------------------

// Why a cacheable route's response may not be stored, or "" when it may (its body may
// still turn out too large while it streams). `credentialed`: the request carried a
// credential (Authorization, Cookie, ...).
std::string_view not_storable_reason(const route::compiled_route& route, bool credentialed,
                                     const bh::response_header<>& res, std::optional<std::uint64_t> size,
                                     std::size_t max_object_bytes);
// An entry from a response head (the body is added when it has arrived).
std::shared_ptr<cache::entry> make_entry(const bh::response_header<>& res, const route::compiled_route& route,
                                         std::vector<cache::category_stamp> stamps);

// ---- lookup.cpp --------------------------------------------------------------------

// The stale windows that apply to an entry: the route's, widened by the response's own
// stale-if-error / stale-while-revalidate directives (RFC 5861).
struct stale_windows {
    std::chrono::milliseconds if_error{0};
    std::chrono::milliseconds while_revalidate{0};
};
stale_windows windows_for(const route::compiled_route& route, std::string_view cache_control);
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
