// The validated configuration: plain structs, produced only by config::load_*.
// Components take the struct they need, never a YAML node. A running config is an
// immutable snapshot; reload builds a new one and swaps it in.
#pragma once

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::config {

using duration = std::chrono::milliseconds;

// Where a value came from, for diagnostics raised after loading (e.g. by the matcher).
struct source_location {
    std::string file;
    int line = 0;  // 1-based; 0 = unknown
    int column = 0;
};

struct endpoint {
    std::string host;  // literal address or host name, without brackets
    std::uint16_t port = 0;
};

struct server_config {
    endpoint listen{"127.0.0.1", 8080};
    endpoint upstream{"127.0.0.1", 3002};  // from an http:// URL; https is rejected by the loader
    std::string upstream_url = "http://127.0.0.1:3002";
    std::optional<endpoint> admin_listen = endpoint{"127.0.0.1", 9901};  // nullopt: admin disabled ("")
    std::string key_namespace = "cachecar";  // YAML key `namespace`
    std::string admin_token;                 // empty: admin writes are open
    unsigned threads = 0;                    // 0: one per core
    // Peers (IP prefixes, e.g. "10.0.0.0/8") whose forwarding fields (Forwarded,
    // X-Forwarded-*, X-Real-IP, ...) are passed on, and keyed; from any other peer they
    // are removed. Validated by the loader with util::parse_ip_prefix.
    std::vector<std::string> trusted_proxies;
    std::string upstream_host;          // Host sent upstream; "" = the client's (then part of every key)
    bool underscores_in_headers = false;  // false: fields with '_' in their name are dropped (nginx's default)
    bool method_override = false;         // true: POST + X-HTTP-Method-Override is routed as that method
    // cachecar's own targeted Cache-Control field (RFC 9213): on ttl_from_origin routes
    // it is read first, then CDN-Cache-Control, then Cache-Control.
    std::string cache_control_field = "Cachecar-Cache-Control";
    // The cache's name in the Cache-Status field (RFC 9211) of every response on a
    // cacheable route; "" leaves the field out. cache_status_key adds the entry's key
    // (a debug aid: it names credentials' hashes and the route's key fields).
    std::string cache_status = "cachecar";
    bool cache_status_key = false;
};

struct limits_config {
    std::size_t max_header_bytes = 16384;
    std::size_t max_body_bytes = 10485760;    // a request body cachecar must hold (its route's key reads it)
    std::size_t max_upload_bytes = 0;         // any request body, streamed to the backend; 0: no limit
    std::size_t max_object_bytes = 1048576;   // a response is stored only up to this; bigger ones stream on
    duration upstream_timeout = std::chrono::seconds(30);  // to the response head, and between body pieces
    duration client_idle_timeout = std::chrono::seconds(60);
    duration tunnel_idle_timeout = std::chrono::minutes(5);  // an upgraded (WebSocket) connection with no bytes either way
    duration drain_timeout = std::chrono::seconds(10);
    std::size_t max_connections = 10000;
};

enum class tier_kind { memory, redis, mongo };
std::string_view to_string(tier_kind);

struct memory_tier_config {
    std::size_t max_bytes = 256u * 1024u * 1024u;
};

struct redis_tier_config {
    std::string url = "redis://127.0.0.1:6379/0";
    duration timeout = std::chrono::milliseconds(50);
    unsigned pool = 8;
    // A write's response waits until every other live instance has applied its purge
    // (or cannot be trusting its copy any more): no memory-tier window at all.
    bool confirm_purges = true;
};

struct mongo_tier_config {
    std::string uri = "mongodb://127.0.0.1:27017";
    std::string database = "cachecar";
    std::string collection = "cache";
    duration timeout = std::chrono::milliseconds(200);
};

struct tiers_config {
    memory_tier_config memory;               // always present
    std::optional<redis_tier_config> redis;  // present iff configured
    std::optional<mongo_tier_config> mongo;
};

// One entry of `routes:` (a cacheable read route). Templates are kept as written;
// route::matcher compiles them (the loader has already checked they compile).
struct route_config {
    std::string name;
    std::string method;        // upper case, from `match`
    std::string path_pattern;  // from `match`, e.g. /api/v1/videos/{uuid}
    std::vector<tier_kind> tiers;
    duration ttl{0};
    std::optional<std::vector<std::string>> key;  // nullopt: path + whole sorted query
    std::vector<std::string> categories;          // category templates, e.g. "video:{query.uuid}"
    bool shared = false;
    std::vector<unsigned> status{200, 203, 204, 300, 301, 404, 410};
    duration stale_if_error{0};
    duration stale_while_revalidate{0};
    bool ttl_from_origin = false;
    // The most a 404 or 410 is kept when the route's ttl applies (the backend gave no
    // freshness of its own): a negative answer is wrong as soon as the resource is
    // created, often by a write whose invalidate rule cannot name it.
    duration negative_ttl = std::chrono::seconds(10);
    // Derived, not YAML: the targeted Cache-Control fields this route reads before
    // Cache-Control, in order (RFC 9213): with ttl_from_origin, server.cache_control_field
    // and CDN-Cache-Control; else none.
    std::vector<std::string> cache_control_fields;
    std::vector<std::string> credential_headers;  // added to Authorization, Cookie, X-API-Key
    std::vector<std::string> strip_headers;
    // Query parameters removed before forwarding (so neither keyed nor seen by the
    // backend), e.g. utm_source; a final '*' matches a prefix ("utm_*"). Any other
    // parameter the key does not name keeps a request out of the cache.
    std::vector<std::string> ignore_query;
    // With `shared`: store answers to requests that carry credentials even when the
    // backend does not say public, s-maxage or must-revalidate (RFC 9111 3.5).
    bool store_authenticated = false;
    source_location where;
};

// One entry of `invalidate:` (a write route that purges categories on 2xx).
struct invalidate_config {
    std::string method;
    std::string path_pattern;
    std::vector<std::string> purge;  // category templates, e.g. "video:{path.uuid}"
    source_location where;
};

// Logging (not in SPEC's example matrix; all optional). Components: cachecar (start-up,
// reload, lifecycle), proxy, admin, redis, mongo, access (the access log).
struct logging_config {
    std::string level = "info";  // trace, debug, info, warn, error, critical, off
    enum class access_format { text, json, off };
    access_format access_log = access_format::text;
    std::vector<std::pair<std::string, std::string>> levels;  // component -> level
};
inline constexpr const char* log_components[] = {"cachecar", "proxy", "admin", "redis", "mongo", "access"};
inline constexpr const char* log_levels[] = {"trace", "debug", "info", "warn", "error", "critical", "off"};

struct config {
    std::string source_file;  // the file it was loaded from ("<string>" for load_string)
    server_config server;
    limits_config limits;
    tiers_config tiers;
    std::vector<route_config> routes;
    std::vector<invalidate_config> invalidations;
    logging_config logging;
};

struct diagnostic {
    std::string file;
    int line = 0;
    int column = 0;
    std::string message;
    std::string to_string() const;  // "file:line:col: message"
};

struct load_result {
    std::optional<config> value;       // set iff errors is empty
    std::vector<diagnostic> errors;    // every problem found, in file order
};

// Values whose grammar belongs to a tier's own library (a Redis URL, a MongoDB URI)
// are checked by that library, so `--check` accepts exactly what runs; the tiers give
// the checks (app/tier_checks.hpp), so config/ includes no tier header. Each returns ""
// for a valid value, else why it is not. Unset: only the scheme is checked.
struct tier_checks {
    std::function<std::string(std::string_view)> redis_url;
    std::function<std::string(std::string_view)> mongo_uri;
};

// Reads and validates a config file. Never throws; I/O and YAML syntax errors are
// diagnostics too. `${VAR}` / `${VAR:-default}` in scalars are expanded from the
// process environment before validation.
load_result load_file(const std::string& path, const tier_checks& checks = {});
load_result load_string(std::string_view yaml_text, const std::string& file_name = "<string>",
                        const tier_checks& checks = {});

// "500ms", "30s", "5m", "2h", "1d" (a bare integer is rejected: units are required).
std::optional<duration> parse_duration(std::string_view text);
// "512KiB", "256MiB", "1GiB", "10KB", "1MB" (powers of 1000) or plain bytes.
std::optional<std::size_t> parse_size(std::string_view text);

// The embedded default (memory tier only, listen 127.0.0.1:8080, upstream
// 127.0.0.1:3002, admin 127.0.0.1:9901) as YAML text: what `cachecar` runs with when
// no file is given and conf/cachecar.yaml does not exist.
std::string_view embedded_default_yaml();

// Every key the loader accepts, dotted ("server.listen", "routes[].ttl",
// "logging.levels.redis"): what the documentation must cover.
std::vector<std::string> schema_keys();

}  // namespace cachecar::config
