// The running configuration: everything derived from one config, immutable once
// published and swapped atomically on reload. Requests hold a reference for their
// whole life, so a reload never changes the rules under a request in flight.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/upstream_pool.hpp>
#include <cachecar/proxy/forwarding.hpp>
#include <cachecar/route/matcher.hpp>
#include <cachecar/stats/metrics.hpp>

#include <atomic>
#include <memory>
#include <vector>

namespace cachecar {

struct snapshot {
    config::config cfg;
    route::matcher routes;
    proxy::forwarding_policy forwarding;
    std::vector<stats::route_counters*> route_stats;        // by compiled_route::index
    std::vector<stats::route_counters*> invalidation_stats;  // by compiled_invalidation::index
    std::shared_ptr<http::upstream_pool> upstream;

    snapshot(config::config c, stats::registry& metrics, std::shared_ptr<http::upstream_pool> pool);
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

}  // namespace cachecar
