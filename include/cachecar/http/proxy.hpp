// The client-facing request handler: the path of a request through cachecar.
//
//   router (matcher) -> key builder -> tier chain lookup -> on miss: coalescer ->
//   upstream pool -> store -> respond.
//   write routes: forward -> on 2xx purge categories (bump generations) -> respond.
//   anything else: forward unchanged (pass-through, never cached).
#pragma once

#include <cachecar/cache/coalescer.hpp>
#include <cachecar/cache/tier_chain.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/http/forwarding.hpp>
#include <cachecar/http/routing.hpp>
#include <cachecar/http/server.hpp>
#include <cachecar/http/upstream_pool.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/stats/metrics.hpp>

#include <atomic>
#include <mutex>
#include <unordered_set>
#include <memory>
#include <vector>

namespace spdlog {
class logger;
}

namespace cachecar::http {

// Everything derived from one config; immutable once published, swapped atomically
// on reload. Requests hold a reference for their whole life, so a reload never
// changes the rules under a request in flight.
struct snapshot {
    config::config cfg;
    route::matcher routes;
    forwarding_policy forwarding;
    std::vector<stats::route_counters*> route_stats;        // by compiled_route::index
    std::vector<stats::route_counters*> invalidation_stats;  // by compiled_invalidation::index
    std::shared_ptr<upstream_pool> upstream;

    snapshot(config::config c, stats::registry& metrics, std::shared_ptr<upstream_pool> pool);
};
using snapshot_ptr = std::shared_ptr<const snapshot>;

// Holder for the current snapshot.
class snapshot_holder {
public:
    snapshot_ptr load() const { return current_.load(std::memory_order_acquire); }
    void store(snapshot_ptr s) { current_.store(std::move(s), std::memory_order_release); }

private:
    std::atomic<snapshot_ptr> current_;
};

// The result of one upstream fetch, shared between coalesced requests.
struct fetched {
    result<response> upstream = error_code{};
    cache::entry_ptr stored;  // set when the response was storable (and stored)
    std::vector<std::string> vary;  // the response's Vary names (lower-case), if any
    std::string variant;            // the fingerprint of the leader's request for them
    double upstream_seconds = 0;
};

class proxy final : public request_handler {
public:
    proxy(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics);

    net::awaitable<reply> handle(request& req, const connection_info& conn) override;
    config::limits_config limits() const override;
    void on_complete(const request& req, const reply& r, const connection_info& conn,
                     std::chrono::steady_clock::duration elapsed) override;
    void on_rejected(unsigned status) override;

    std::size_t fills_in_flight() const { return coalescer_.in_flight(); }

private:
    net::awaitable<reply> serve_cacheable(request& req, const connection_info& conn, snapshot_ptr snap,
                                          const route::match_result<route::compiled_route>& m,
                                          std::string_view routing_bypass);
    net::awaitable<reply> serve_write(request& req, const connection_info& conn, const snapshot& snap,
                                      const route_decision& decision);
    net::awaitable<reply> serve_pass_through(request& req, const connection_info& conn, const snapshot& snap);
    static std::string_view bypass_reason(const request& req, const route::compiled_route& route,
                                          std::string_view routing_bypass);
    // Stores a fetched entry (and, for a varying response, its Vary marker); the miss
    // path and the stale-while-revalidate refresh share it.
    void store_fetched(const snapshot& snap, const route::compiled_route& route, const std::string& key,
                       const request& req, const cache::entry_ptr& e, const std::vector<std::string>& vary);
    // stale-while-revalidate: refreshes `entry_key` in the background, at most one
    // refresh per key at a time.
    void start_refresh(const request& req, const connection_info& conn, snapshot_ptr snap,
                       const route::compiled_route* route, std::string key, std::string entry_key,
                       std::vector<std::string> categories, bool credentialed);
    net::awaitable<fetched> fetch(const request& req, const connection_info& conn, const snapshot& snap,
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

}  // namespace cachecar::http
