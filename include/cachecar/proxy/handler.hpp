// The client-facing request handler: the life of a request through cachecar, one
// step per file (src/proxy/), each step naming the next (Varnish's cache_req_fsm):
//
//   handler.cpp   dispatch: which rule answers; the request rewritten into what the
//                 backend receives (forwarding.cpp) before anything is keyed
//   lookup.cpp    key, categories, the tiers in the route's order, the Vary marker
//                 -> hit | revalidate | fill
//   fill.cpp      a miss: the coalesced upstream fetch, streamed to the client while
//                 it is copied into the store -> deliver | stale-if-error
//   refresh.cpp   stale-while-revalidate: serve the stale entry, refresh behind it
//   forward.cpp   the upstream exchange: pass-through, bypass, tunnels (WebSocket)
//   purge.cpp     write routes: forward, then on 2xx purge, then answer
//   deliver.cpp   every reply: from an entry (hit head, Age, 304), from the backend's
//                 stream, errors
//   access_log.cpp
//
// Everything that is not answered from cache streams: request and response bodies move
// through bounded buffers with backpressure (http/body.hpp); a cacheable response is
// copied into the store while it streams, up to max_object_bytes.
#pragma once

#include <cachecar/app/snapshot.hpp>
#include <cachecar/cache/coalescer.hpp>
#include <cachecar/cache/tier_chain.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/http/server.hpp>
#include <cachecar/http/upstream_pool.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/proxy/routing.hpp>
#include <cachecar/stats/metrics.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <vector>

namespace spdlog {
class logger;
}

namespace cachecar::proxy {

// What a miss's fetch hands the requests coalesced behind it.
struct fill_result {
    error_code error;               // set: the fetch failed before a response head (shared)
    cache::entry_ptr stored;        // set: the response was stored (followers serve it)
    std::vector<std::string> vary;  // the response's Vary names (lower-case), if any
    std::string variant;            // the fingerprint of the leader's request for them
    double upstream_seconds = 0;
    // `stored` is an entry a 304 freshened (not a new response): followers answer from
    // it as the leader did, a hit from the cache (`tier`), not a miss.
    bool revalidated = false;
    std::string_view tier;
    // Neither: the response is not for sharing (not storable, too large, a 5xx);
    // followers fetch for themselves.
};

struct cacheable_request;  // the state one request on a cacheable route carries between steps
enum class step { lookup, hit, revalidate, fill, stale_if_error, deliver_fetched, bypass, done };

class handler final : public http::request_handler {
public:
    handler(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics);

    net::awaitable<http::reply> handle(http::inbound& in) override;
    config::limits_config limits() const override;
    void on_complete(const http::request& req, const http::reply& r, const http::connection_info& conn,
                     const http::delivery& d) override;
    void on_rejected(unsigned status) override;

    std::size_t fills_in_flight() const { return coalescer_.in_flight(); }

    // The one store routine (fill.cpp): a fetched response, read to its end, goes to
    // the route's tiers (with its Vary marker when it varies). The miss path, the
    // streamed copy when its stream ends, and the refresh all store through it.
    struct store_plan;
    cache::entry_ptr store(store_plan plan, std::string body);

private:
    // Cacheable routes, step by step (lookup.cpp, fill.cpp, refresh.cpp, forward.cpp,
    // deliver.cpp); each returns the next step.
    net::awaitable<http::reply> serve_cacheable(http::inbound& in, snapshot_ptr snap,
                                                const route::match_result<route::compiled_route>& m,
                                                std::string_view routing_bypass);
    net::awaitable<step> lookup(cacheable_request& r);
    step deliver_hit(cacheable_request& r);
    step revalidate(cacheable_request& r);
    net::awaitable<step> fill(cacheable_request& r);
    step stale_if_error(cacheable_request& r);
    step deliver_fetched(cacheable_request& r);
    net::awaitable<step> bypass(cacheable_request& r);

    net::awaitable<http::reply> serve_write(http::inbound& in, const snapshot& snap, const route_decision& decision);
    net::awaitable<http::reply> serve_pass_through(http::inbound& in, const snapshot& snap);
    net::awaitable<http::reply> serve_tunnel(http::inbound& in, const snapshot& snap, std::string upgrade);

    // Sends the prepared request upstream (forward.cpp): its body streamed from the
    // client, or the one read in; interim responses relayed to the client. Counts the
    // outcome; `seconds` is the time to the response head. With `validate`, the request
    // is made conditional on that stored response's validators.
    net::awaitable<result<std::unique_ptr<http::upstream_exchange>>> open_upstream(
        http::inbound& in, const snapshot& snap, const route::compiled_route* route, double& seconds,
        const cache::entry* validate = nullptr);
    // The reply for a failed exchange: 502/504 for the backend, 413/400 for the client's body.
    http::reply failure_reply(const error_code& ec, std::string_view x_cache);

    // stale-while-revalidate: refreshes `entry_key` in the background, at most one
    // refresh per key at a time; conditionally when `stale` has a validator.
    void start_refresh(const http::request& req, const http::connection_info& conn, snapshot_ptr snap,
                       const route::compiled_route* route, std::string key, std::string entry_key,
                       std::vector<std::string> categories, bool credentialed, cache::entry_ptr stale);

    // Hit-for-miss (Varnish's): a key whose last response could not be stored is not
    // coalesced for a short while, so requests are not queued behind fetches that will
    // not be stored.
    bool passing(const std::string& key);
    void mark_pass(const std::string& key);

    snapshot_holder& snapshots_;
    cache::tier_chain& tiers_;
    stats::registry& metrics_;
    stats::counter& pass_through_requests_;  // route "-": resolved once, not per request
    cache::coalescer<fill_result> coalescer_;
    std::shared_ptr<spdlog::logger> access_log_;
    std::shared_ptr<spdlog::logger> log_;
    // An outage fails every request the same way: log one line a second, with a count.
    logging::throttle upstream_error_log_;
    logging::throttle deferred_purge_log_;
    struct refresh_set {
        std::mutex mutex;
        std::unordered_set<std::string> keys;
    };
    std::shared_ptr<refresh_set> refreshing_ = std::make_shared<refresh_set>();
    std::mutex pass_mutex_;
    std::unordered_map<std::string, std::chrono::steady_clock::time_point> pass_until_;
};

}  // namespace cachecar::proxy
