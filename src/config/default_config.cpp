#include <cachecar/config/config.hpp>

namespace cachecar::config {

// The active settings of conf/cachecar.yaml (a unit test keeps the two equal), so a
// binary started without a config file behaves like a fresh install.
std::string_view embedded_default_yaml() {
    static constexpr std::string_view yaml = R"yaml(# cachecar embedded default (memory tier only)
server:
  listen: 127.0.0.1:8080
  upstream: http://127.0.0.1:3002
  admin_listen: 127.0.0.1:9901
  namespace: cachecar
  admin_token: ""
  threads: 0
limits:
  max_header_bytes: 16KiB
  max_body_bytes: 10MiB
  max_object_bytes: 1MiB
  upstream_timeout: 30s
  client_idle_timeout: 60s
  drain_timeout: 10s
  max_connections: 10000
tiers:
  memory: { max_bytes: 256MiB }
routes:
  - name: videos_list
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    key: [query.page, query.limit]
    categories: [videos]
  - name: lookup
    match: GET /api/v1/lookup
    tiers: [memory]
    ttl: 60m
    key: [query.uuid]
    categories: [video_meta, "video:{query.uuid}"]
invalidate:
  - match: POST /api/v1/register
    purge: [videos]
  - match: DELETE /api/v1/videos/{uuid}
    purge: [videos, "video:{path.uuid}"]
)yaml";
    return yaml;
}

}  // namespace cachecar::config
