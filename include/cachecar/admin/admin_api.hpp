// The operator API on admin_listen: /health, /stats, /metrics, POST /purge,
// POST /reload. Writes require "Authorization: Bearer <admin_token>" when a token is set.
#pragma once

#include <cachecar/cache/tier_chain.hpp>
#include <cachecar/app/snapshot.hpp>
#include <cachecar/http/server.hpp>
#include <cachecar/stats/metrics.hpp>

#include <functional>
#include <string>
#include <vector>

namespace cachecar::admin {

struct reload_outcome {
    bool ok = false;
    std::vector<std::string> errors;    // "file:line:col: message" per problem
    std::vector<std::string> warnings;  // accepted, but only effective after a restart
};

struct admin_hooks {
    std::function<reload_outcome()> reload;
    // Gauges owned by others (connections, fills in flight), sampled per scrape.
    std::function<std::vector<stats::registry::gauge_sample>()> gauges;
};

class admin_api final : public http::request_handler {
public:
    admin_api(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics, admin_hooks hooks);

    net::awaitable<http::reply> handle(http::inbound& in) override;
    config::limits_config limits() const override;
    void on_complete(const http::request& req, const http::reply& r, const http::connection_info& conn,
                     const http::delivery& d) override;
    void on_rejected(unsigned status) override;

    // The /health document and whether any configured tier is down.
    std::string health_json(bool& degraded) const;
    std::string stats_json() const;
    std::string metrics_text() const;

private:
    net::awaitable<http::reply> purge(const http::request& req);
    http::reply reload();
    bool authorized(const http::request& req) const;

    snapshot_holder& snapshots_;
    cache::tier_chain& tiers_;
    stats::registry& metrics_;
    admin_hooks hooks_;
};

}  // namespace cachecar::admin
