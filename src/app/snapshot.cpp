#include <cachecar/app/snapshot.hpp>

namespace cachecar {

snapshot::snapshot(config::config c, stats::registry& metrics, std::shared_ptr<http::upstream_pool> pool)
    : cfg(std::move(c)), routes(cfg), forwarding(proxy::forwarding_policy::from(cfg.server)), upstream(std::move(pool)) {
    for (const auto& r : routes.routes()) route_stats.push_back(&metrics.route(r.cfg.name));
    for (const auto& inv : routes.invalidations()) {
        invalidation_stats.push_back(&metrics.route("invalidate:" + inv.cfg.method + " " + inv.cfg.path_pattern));
    }
}

}  // namespace cachecar
