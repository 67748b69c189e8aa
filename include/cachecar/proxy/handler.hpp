// The client-facing request handler: the life of a request through cachecar, one
// step per file (src/proxy/), each step naming the next (Varnish's cache_req_fsm):
//
//   handler.cpp   dispatch: which rule answers; the request rewritten into what the
//                 backend receives (forwarding.cpp) before anything is keyed
//   lookup.cpp    key, categories, the tiers in the route's order, the Vary marker
//                 -> hit | revalidate | fill
//   fill.cpp      a miss: the coalesced upstream fetch and the one store routine
//                 (shared with refresh) -> deliver | stale-if-error
//   refresh.cpp   stale-while-revalidate: serve the stale entry, refresh behind it
//   forward.cpp   the upstream request: pass-through and bypass
//   purge.cpp     write routes: forward, then on 2xx purge, then answer
//   deliver.cpp   every reply: from an entry (hit head, Age, 304), from the backend,
//                 errors
//   access_log.cpp
#pragma once

#include <cachecar/app/snapshot.hpp>
#include <cachecar/cache/coalescer.hpp>
#include <cachecar/cache/tier_chain.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/http/server.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/proxy/routing.hpp>
#include <cachecar/stats/metrics.hpp>

#include <memory>
#include <mutex>
#include <string>
#include <unordered_set>
#include <vector>

namespace spdlog {
class logger;
}

namespace cachecar::proxy {

// The result of one upstream fetch, shared between coalesced requests.
struct fetched {
    result<http::response> upstream = error_code{};
    cache::entry_ptr stored;        // set when the response was storable (and stored)
    std::vector<std::string> vary;  // the response's Vary names (lower-case), if any
    std::string variant;            // the fingerprint of the leader's request for them
    double upstream_seconds = 0;
};

struct cacheable_request;  // the state one request on a cacheable route carries between steps
enum class step { lookup, hit, revalidate, fill, stale_if_error, deliver_fetched, bypass, done };

class handler final : public http::request_handler {
public:
    handler(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics);

    net::awaitable<http::reply> handle(http::request& req, const http::connection_info& conn) override;
    config::limits_config limits() const override;
    void on_complete(const http::request& req, const http::reply& r, const http::connection_info& conn,
                     std::chrono::steady_clock::duration elapsed) override;
    void on_rejected(unsigned status) override;

    std::size_t fills_in_flight() const { return coalescer_.in_flight(); }

private:
    // Cacheable routes, step by step (lookup.cpp, fill.cpp, refresh.cpp, forward.cpp,
    // deliver.cpp); each returns the next step.
    net::awaitable<http::reply> serve_cacheable(http::request& req, const http::connection_info& conn, snapshot_ptr snap,
                                                const route::match_result<route::compiled_route>& m,
                                                std::string_view routing_bypass);
    net::awaitable<step> lookup(cacheable_request& r);
    step deliver_hit(cacheable_request& r);
    step revalidate(cacheable_request& r);
    net::awaitable<step> fill(cacheable_request& r);
    step stale_if_error(cacheable_request& r);
    step deliver_fetched(cacheable_request& r);
    net::awaitable<step> bypass(cacheable_request& r);

    net::awaitable<http::reply> serve_write(http::request& req, const http::connection_info& conn, const snapshot& snap,
                                            const route_decision& decision);
    net::awaitable<http::reply> serve_pass_through(http::request& req, const http::connection_info& conn,
                                                   const snapshot& snap);
    // Stores a fetched entry (and, for a varying response, its Vary marker); the miss
    // path and the stale-while-revalidate refresh share it.
    void store_fetched(const snapshot& snap, const route::compiled_route& route, const std::string& key,
                       const http::request& req, const cache::entry_ptr& e, const std::vector<std::string>& vary);
    // stale-while-revalidate: refreshes `entry_key` in the background, at most one
    // refresh per key at a time.
    void start_refresh(const http::request& req, const http::connection_info& conn, snapshot_ptr snap,
                       const route::compiled_route* route, std::string key, std::string entry_key,
                       std::vector<std::string> categories, bool credentialed);
    net::awaitable<fetched> fetch(const http::request& req, const http::connection_info& conn, const snapshot& snap,
                                  const route::compiled_route* route);

    snapshot_holder& snapshots_;
    cache::tier_chain& tiers_;
    stats::registry& metrics_;
    stats::counter& pass_through_requests_;  // route "-": resolved once, not per request
    cache::coalescer<fetched> coalescer_;
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
};

}  // namespace cachecar::proxy
