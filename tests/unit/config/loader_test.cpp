#include <cachecar/app/tier_checks.hpp>
#include <cachecar/config/config.hpp>

#include <gtest/gtest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <unistd.h>

namespace cachecar::config {
namespace {

using std::chrono::milliseconds;

// With the tiers' own checks, as the daemon and `--check` load configs.
std::vector<std::string> diagnostics(std::string_view yaml) {
    auto r = load_string(yaml, "t.yaml", ::cachecar::tier_checks());
    EXPECT_EQ(r.value.has_value(), r.errors.empty());
    std::vector<std::string> out;
    for (const auto& d : r.errors) out.push_back(d.to_string());
    return out;
}

config load_ok(std::string_view yaml) {
    auto r = load_string(yaml, "t.yaml");
    for (const auto& d : r.errors) ADD_FAILURE() << d.to_string();
    EXPECT_TRUE(r.value.has_value());
    return r.value ? *r.value : config{};
}

// Sets an environment variable for one test and restores it afterwards.
class scoped_env {
public:
    scoped_env(const char* name, const char* value) : name_(name) {
        if (const char* old = std::getenv(name)) old_ = old;
        if (value)
            ::setenv(name, value, 1);
        else
            ::unsetenv(name);
    }
    ~scoped_env() {
        if (old_)
            ::setenv(name_.c_str(), old_->c_str(), 1);
        else
            ::unsetenv(name_.c_str());
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    std::string name_;
    std::optional<std::string> old_;
};

constexpr std::string_view minimal_route = R"(
routes:
  - name: r
    match: GET /r
    tiers: [memory]
    ttl: 1m
)";

TEST(loader, empty_document_is_all_defaults) {
    for (std::string_view text : {"", "# just a comment\n", "{}\n"}) {
        auto cfg = load_ok(text);
        EXPECT_EQ(cfg.source_file, "t.yaml");
        EXPECT_EQ(cfg.server.listen.host, "127.0.0.1");
        EXPECT_EQ(cfg.server.listen.port, 8080);
        EXPECT_EQ(cfg.server.upstream.port, 3002);
        ASSERT_TRUE(cfg.server.admin_listen);
        EXPECT_EQ(cfg.server.admin_listen->port, 9901);
        EXPECT_EQ(cfg.server.key_namespace, "cachecar");
        EXPECT_EQ(cfg.limits.max_connections, 10000u);
        EXPECT_FALSE(cfg.tiers.redis);
        EXPECT_FALSE(cfg.tiers.mongo);
        EXPECT_TRUE(cfg.routes.empty());
        EXPECT_TRUE(cfg.invalidations.empty());
    }
}

TEST(loader, default_file_name_is_string) {
    auto r = load_string("server: 1\n");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(), "<string>:1:9: server: must be a map, not a scalar");
}

TEST(loader, reads_every_field) {
    auto cfg = load_ok(R"(
server:
  listen: "[::1]:0"
  upstream: http://backend.local
  admin_listen: 0.0.0.0:9902
  namespace: momentry_dev
  admin_token: s3cret
  threads: 4
limits:
  max_header_bytes: 8KiB
  max_body_bytes: 1MB
  max_object_bytes: 512
  upstream_timeout: 1500ms
  client_idle_timeout: 2m
  drain_timeout: 0s
  max_connections: 20
tiers:
  memory: { max_bytes: 64MiB }
  redis: { url: redis://10.0.0.1:6380/2, timeout: 20ms, pool: 3 }
  mongo: { uri: mongodb://m:27017, database: db1, collection: c1, timeout: 1s }
routes:
  - name: lookup
    match: get /api/v1/videos/{uuid}
    tiers: [redis, memory, mongo]
    ttl: 60m
    key: [path.uuid, header.Accept-Language, body, method]
    categories: [video_meta, "video:{path.uuid}"]
    shared: true
    status: [200, 404]
    stale_if_error: 1h
    stale_while_revalidate: 10s
    ttl_from_origin: yes
    credential_headers: [X-Tenant, X-API-Key]
    strip_headers: [Set-Cookie2]
invalidate:
  - match: DELETE /api/v1/videos/{id}
    purge: ["video:{path.id}", video_meta]
)");
    EXPECT_EQ(cfg.server.listen.host, "::1");
    EXPECT_EQ(cfg.server.listen.port, 0);
    EXPECT_EQ(cfg.server.upstream.host, "backend.local");
    EXPECT_EQ(cfg.server.upstream.port, 80);
    EXPECT_EQ(cfg.server.upstream_url, "http://backend.local");
    ASSERT_TRUE(cfg.server.admin_listen);
    EXPECT_EQ(cfg.server.admin_listen->host, "0.0.0.0");
    EXPECT_EQ(cfg.server.admin_listen->port, 9902);
    EXPECT_EQ(cfg.server.key_namespace, "momentry_dev");
    EXPECT_EQ(cfg.server.admin_token, "s3cret");
    EXPECT_EQ(cfg.server.threads, 4u);

    EXPECT_EQ(cfg.limits.max_header_bytes, 8192u);
    EXPECT_EQ(cfg.limits.max_body_bytes, 1'000'000u);
    EXPECT_EQ(cfg.limits.max_object_bytes, 512u);
    EXPECT_EQ(cfg.limits.upstream_timeout, milliseconds(1500));
    EXPECT_EQ(cfg.limits.client_idle_timeout, milliseconds(120'000));
    EXPECT_EQ(cfg.limits.drain_timeout, milliseconds(0));
    EXPECT_EQ(cfg.limits.max_connections, 20u);

    EXPECT_EQ(cfg.tiers.memory.max_bytes, 64u << 20);
    ASSERT_TRUE(cfg.tiers.redis);
    EXPECT_EQ(cfg.tiers.redis->url, "redis://10.0.0.1:6380/2");
    EXPECT_EQ(cfg.tiers.redis->timeout, milliseconds(20));
    EXPECT_EQ(cfg.tiers.redis->pool, 3u);
    ASSERT_TRUE(cfg.tiers.mongo);
    EXPECT_EQ(cfg.tiers.mongo->uri, "mongodb://m:27017");
    EXPECT_EQ(cfg.tiers.mongo->database, "db1");
    EXPECT_EQ(cfg.tiers.mongo->collection, "c1");
    EXPECT_EQ(cfg.tiers.mongo->timeout, milliseconds(1000));

    ASSERT_EQ(cfg.routes.size(), 1u);
    const auto& r = cfg.routes[0];
    EXPECT_EQ(r.name, "lookup");
    EXPECT_EQ(r.method, "GET");
    EXPECT_EQ(r.path_pattern, "/api/v1/videos/{uuid}");
    EXPECT_EQ(r.tiers, (std::vector<tier_kind>{tier_kind::redis, tier_kind::memory, tier_kind::mongo}));
    EXPECT_EQ(r.ttl, milliseconds(3'600'000));
    ASSERT_TRUE(r.key);
    EXPECT_EQ(*r.key, (std::vector<std::string>{"path.uuid", "header.Accept-Language", "body", "method"}));
    EXPECT_EQ(r.categories, (std::vector<std::string>{"video_meta", "video:{path.uuid}"}));
    EXPECT_TRUE(r.shared);
    EXPECT_EQ(r.status, (std::vector<unsigned>{200, 404}));
    EXPECT_EQ(r.stale_if_error, milliseconds(3'600'000));
    EXPECT_EQ(r.stale_while_revalidate, milliseconds(10'000));
    EXPECT_TRUE(r.ttl_from_origin);
    EXPECT_EQ(r.credential_headers, (std::vector<std::string>{"x-tenant", "x-api-key"}));
    EXPECT_EQ(r.strip_headers, (std::vector<std::string>{"set-cookie2"}));
    EXPECT_EQ(r.where.file, "t.yaml");
    EXPECT_EQ(r.where.line, 22);
    EXPECT_EQ(r.where.column, 5);

    ASSERT_EQ(cfg.invalidations.size(), 1u);
    const auto& inv = cfg.invalidations[0];
    EXPECT_EQ(inv.method, "DELETE");
    EXPECT_EQ(inv.path_pattern, "/api/v1/videos/{id}");
    EXPECT_EQ(inv.purge, (std::vector<std::string>{"video:{path.id}", "video_meta"}));
    EXPECT_EQ(inv.where.line, 36);
}

TEST(loader, route_defaults) {
    auto cfg = load_ok(minimal_route);
    ASSERT_EQ(cfg.routes.size(), 1u);
    const auto& r = cfg.routes[0];
    EXPECT_FALSE(r.key.has_value());
    EXPECT_TRUE(r.categories.empty());
    EXPECT_FALSE(r.shared);
    EXPECT_EQ(r.status, (std::vector<unsigned>{200, 203, 204, 300, 301, 404, 410}));
    EXPECT_EQ(r.stale_if_error, milliseconds(0));
    EXPECT_FALSE(r.ttl_from_origin);
}

TEST(loader, empty_key_list_is_a_constant_key) {
    auto cfg = load_ok(R"(
routes:
  - { name: h, match: GET /health, tiers: [memory], ttl: 30s, key: [] }
)");
    ASSERT_TRUE(cfg.routes[0].key);
    EXPECT_TRUE(cfg.routes[0].key->empty());
}

TEST(loader, three_errors_in_file_order) {
    // Reported in file order even though the loader visits `tiers` before `routes`
    // and `server` last in the text.
    EXPECT_EQ(diagnostics(R"(routes:
  - name: r
    match: GET /r
    tiers: [memory]
    ttl: 5x
tiers:
  memory: { max_bytes: lots }
server:
  listen: localhost
)"),
              (std::vector<std::string>{
                  "t.yaml:5:10: routes[0].ttl: bad duration \"5x\" (expected an integer and a unit: 500ms, 30s, "
                  "5m, 2h, 1d)",
                  "t.yaml:7:24: tiers.memory.max_bytes: bad size \"lots\" (expected bytes or a unit: 512KiB, "
                  "256MiB, 1GiB, 10KB, 1MB)",
                  "t.yaml:9:11: server.listen: bad address \"localhost\": missing port (expected host:port)",
              }));
}

TEST(loader, yaml_syntax_error_has_its_position) {
    EXPECT_EQ(diagnostics("routes: [1,\nserver: {}\n"),
              (std::vector<std::string>{"t.yaml:3:1: YAML syntax error: end of sequence flow not found"}));
    EXPECT_EQ(diagnostics("server:\n  listen: a: b\n"),
              (std::vector<std::string>{"t.yaml:2:12: YAML syntax error: illegal map value"}));
}

TEST(loader, only_one_document) {
    EXPECT_EQ(diagnostics("server: {}\n---\nserver: {}\n"),
              (std::vector<std::string>{"t.yaml:3:1: only one YAML document is allowed"}));
}

TEST(loader, top_level_must_be_a_map) {
    EXPECT_EQ(diagnostics("- a\n- b\n"),
              (std::vector<std::string>{"t.yaml:1:1: the config must be a map, not a list"}));
}

TEST(loader, unknown_keys_everywhere_with_suggestions) {
    EXPECT_EQ(diagnostics(R"(route: []
server:
  listn: 127.0.0.1:1
  colour: blue
limits:
  max_conections: 5
tiers:
  memory: { maxbytes: 1 }
  redsi: {}
routes:
  - name: r
    match: GET /r
    tiers: [memory]
    tll: 1m
invalidate:
  - match: POST /r
    purges: [x]
)"),
              (std::vector<std::string>{
                  "t.yaml:1:1: unknown key \"route\" in the top level (did you mean \"routes\"?)",
                  "t.yaml:3:3: unknown key \"listn\" in server (did you mean \"listen\"?)",
                  "t.yaml:4:3: unknown key \"colour\" in server",
                  "t.yaml:6:3: unknown key \"max_conections\" in limits (did you mean \"max_connections\"?)",
                  "t.yaml:8:13: unknown key \"maxbytes\" in tiers.memory (did you mean \"max_bytes\"?)",
                  "t.yaml:9:3: unknown key \"redsi\" in tiers (did you mean \"redis\"?)",
                  "t.yaml:11:5: routes[0]: missing required option \"ttl\"",
                  "t.yaml:14:5: unknown key \"tll\" in routes[0] (did you mean \"ttl\"?)",
                  "t.yaml:16:5: invalidate[0]: missing required option \"purge\"",
                  "t.yaml:17:5: unknown key \"purges\" in invalidate[0] (did you mean \"purge\"?)",
              }));
}

TEST(loader, duplicate_keys) {
    EXPECT_EQ(diagnostics("server:\n  threads: 1\n  threads: 2\n"),
              (std::vector<std::string>{"t.yaml:3:3: duplicate key \"threads\" in server (first at line 2)"}));
}

TEST(loader, wrong_types) {
    EXPECT_EQ(diagnostics(R"(server: [a]
limits:
  upstream_timeout: { a: 1 }
tiers: x
routes: { a: 1 }
invalidate:
  - not-a-map
)"),
              (std::vector<std::string>{
                  "t.yaml:1:9: server: must be a map, not a list",
                  "t.yaml:3:21: limits.upstream_timeout: must be a scalar, not a map",
                  "t.yaml:4:8: tiers: must be a map, not a scalar",
                  "t.yaml:5:9: routes: must be a list, not a map",
                  "t.yaml:7:5: invalidate[0]: an invalidate entry must be a map, not a scalar",
              }));
}

TEST(loader, server_values) {
    EXPECT_EQ(diagnostics(R"(server:
  listen: "::1:80"
  upstream: https://example.com
  admin_listen: "[::1]:99999"
  namespace: "bad ns"
  threads: 2000
)"),
              (std::vector<std::string>{
                  "t.yaml:2:11: server.listen: bad address \"::1:80\": an IPv6 address needs brackets, e.g. "
                  "[::1]:8080",
                  "t.yaml:3:13: server.upstream: bad upstream \"https://example.com\": https upstreams are not "
                  "supported; terminate TLS in front",
                  "t.yaml:4:17: server.admin_listen: bad address \"[::1]:99999\": port 99999 is out of range "
                  "(0..65535)",
                  "t.yaml:5:14: server.namespace: bad namespace \"bad ns\" (use letters, digits, '_', '.', '-')",
                  "t.yaml:6:12: server.threads: must be between 0 and 1024, got 2000",
              }));
    EXPECT_EQ(diagnostics("server:\n  upstream: ftp://x\n  listen: \":80\"\n"),
              (std::vector<std::string>{
                  "t.yaml:2:13: server.upstream: bad upstream \"ftp://x\": expected an http:// URL, not ftp://",
                  "t.yaml:3:11: server.listen: bad address \":80\": missing host (use 0.0.0.0 or [::] for every "
                  "interface)",
              }));
    EXPECT_EQ(diagnostics("server:\n  upstream: http://x:80/api\n"),
              (std::vector<std::string>{"t.yaml:2:13: server.upstream: bad upstream \"http://x:80/api\": an "
                                        "upstream URL may not have a path, query or fragment"}));
}

TEST(loader, forwarding_options) {
    auto cfg = load_ok(R"(server:
  trusted_proxies: [10.0.0.0/8, "::1", 192.168.1.7]
  upstream_host: api.internal:8080
  underscores_in_headers: true
  method_override: yes
routes:
  - name: r
    match: GET /r
    tiers: [memory]
    ttl: 1m
    key: [query.page]
    ignore_query: [utm_*, fbclid]
    shared: true
    store_authenticated: true
)");
    EXPECT_EQ(cfg.server.trusted_proxies, (std::vector<std::string>{"10.0.0.0/8", "::1", "192.168.1.7"}));
    EXPECT_EQ(cfg.server.upstream_host, "api.internal:8080");
    EXPECT_TRUE(cfg.server.underscores_in_headers);
    EXPECT_TRUE(cfg.server.method_override);
    EXPECT_EQ(cfg.routes.at(0).ignore_query, (std::vector<std::string>{"utm_*", "fbclid"}));
    EXPECT_TRUE(cfg.routes.at(0).store_authenticated);
    // Safe defaults.
    auto defaults = load_ok("");
    EXPECT_TRUE(defaults.server.trusted_proxies.empty());
    EXPECT_EQ(defaults.server.upstream_host, "");
    EXPECT_FALSE(defaults.server.underscores_in_headers);
    EXPECT_FALSE(defaults.server.method_override);

    EXPECT_EQ(diagnostics(R"(server:
  trusted_proxies: [10.0.0.1/8, "::1/129", localhost]
  upstream_host: "evil.example/x"
routes:
  - name: r
    match: GET /r
    tiers: [memory]
    ttl: 1m
    ignore_query: ["*", "a*b", ""]
    store_authenticated: true
)"),
              (std::vector<std::string>{
                  "t.yaml:2:21: server.trusted_proxies[0]: bad address or prefix \"10.0.0.1/8\" (expected an IP "
                  "address or network, e.g. 10.0.0.0/8 or ::1; host bits must be 0)",
                  "t.yaml:2:33: server.trusted_proxies[1]: bad address or prefix \"::1/129\" (expected an IP "
                  "address or network, e.g. 10.0.0.0/8 or ::1; host bits must be 0)",
                  "t.yaml:2:44: server.trusted_proxies[2]: bad address or prefix \"localhost\" (expected an IP "
                  "address or network, e.g. 10.0.0.0/8 or ::1; host bits must be 0)",
                  "t.yaml:3:18: server.upstream_host: bad upstream_host \"evil.example/x\" (expected host or "
                  "host:port, as a Host field)",
                  "t.yaml:9:20: routes[0].ignore_query[0]: bad query parameter name \"*\" (a name, or a prefix "
                  "ending in '*' such as \"utm_*\"; not \"*\" alone)",
                  "t.yaml:9:25: routes[0].ignore_query[1]: bad query parameter name \"a*b\" (a name, or a prefix "
                  "ending in '*' such as \"utm_*\"; not \"*\" alone)",
                  "t.yaml:9:32: routes[0].ignore_query[2]: bad query parameter name \"\" (a name, or a prefix "
                  "ending in '*' such as \"utm_*\"; not \"*\" alone)",
                  "t.yaml:10:26: routes[0].store_authenticated: store_authenticated only applies to a route with "
                  "shared: true",
              }));
}

TEST(loader, upstream_forms) {
    auto cfg = load_ok("server:\n  upstream: http://[::1]:3002/\n");
    EXPECT_EQ(cfg.server.upstream.host, "::1");
    EXPECT_EQ(cfg.server.upstream.port, 3002);
    EXPECT_EQ(cfg.server.upstream_url, "http://[::1]:3002");
    cfg = load_ok("server:\n  upstream: HTTP://[::1]\n");
    EXPECT_EQ(cfg.server.upstream.host, "::1");
    EXPECT_EQ(cfg.server.upstream.port, 80);
}

TEST(loader, empty_admin_listen_disables_admin) {
    auto cfg = load_ok("server:\n  admin_listen: \"\"\n");
    EXPECT_FALSE(cfg.server.admin_listen.has_value());
}

TEST(loader, limits_values) {
    EXPECT_EQ(diagnostics(R"(limits:
  max_header_bytes: 0
  max_body_bytes: 10XB
  upstream_timeout: 30
  client_idle_timeout: 0s
  max_connections: lots
)"),
              (std::vector<std::string>{
                  "t.yaml:2:21: limits.max_header_bytes: must be greater than 0",
                  "t.yaml:3:19: limits.max_body_bytes: bad size \"10XB\" (expected bytes or a unit: 512KiB, "
                  "256MiB, 1GiB, 10KB, 1MB)",
                  "t.yaml:4:21: limits.upstream_timeout: bad duration \"30\" (expected an integer and a unit: "
                  "500ms, 30s, 5m, 2h, 1d)",
                  "t.yaml:5:24: limits.client_idle_timeout: must be greater than 0",
                  "t.yaml:6:20: limits.max_connections: bad integer \"lots\"",
              }));
}

TEST(loader, tier_values) {
    EXPECT_EQ(diagnostics(R"(tiers:
  redis: { url: "http://r", pool: 0 }
  mongo: { uri: "mongo://x", database: "a.b", timeout: 0ms }
)"),
              (std::vector<std::string>{
                  "t.yaml:2:17: tiers.redis.url: bad Redis URL \"http://r\": redis URL must start with redis:// or unix:// "
                  "(expected redis://[user:pass@]host:port/db or unix:///path.sock)",
                  "t.yaml:2:35: tiers.redis.pool: must be between 1 and 1024, got 0",
                  "t.yaml:3:17: tiers.mongo.uri: bad MongoDB URI \"mongo://x\" (expected mongodb://host:port)",
                  "t.yaml:3:40: tiers.mongo.database: bad database name \"a.b\"",
                  "t.yaml:3:56: tiers.mongo.timeout: must be greater than 0",
              }));
}

TEST(loader, bare_tier_key_configures_it_with_defaults) {
    auto cfg = load_ok("tiers:\n  redis:\n  mongo: {}\n");
    ASSERT_TRUE(cfg.tiers.redis);
    EXPECT_EQ(cfg.tiers.redis->url, "redis://127.0.0.1:6379/0");
    EXPECT_TRUE(cfg.tiers.redis->confirm_purges) << "purge confirmation is on by default";
    ASSERT_TRUE(cfg.tiers.mongo);
    EXPECT_EQ(cfg.tiers.mongo->collection, "cache");
}

TEST(loader, redis_purge_confirmation) {
    EXPECT_FALSE(load_ok("tiers:\n  redis: { confirm_purges: false }\n").tiers.redis->confirm_purges);
    EXPECT_EQ(diagnostics("tiers:\n  redis: { confirm_purges: sometimes }\n"),
              (std::vector<std::string>{
                  "t.yaml:2:28: tiers.redis.confirm_purges: bad boolean \"sometimes\" (expected true or false)"}));
}

TEST(loader, route_tiers) {
    EXPECT_EQ(diagnostics(R"(tiers:
  mongo: {}
routes:
  - name: a
    match: GET /a
    tiers: [memory, redis, disk, memory, mongo, mongodb]
    ttl: 1m
  - name: b
    match: GET /b
    tiers: []
    ttl: 1m
  - name: c
    match: GET /c
    tiers: memory
    ttl: 1m
)"),
              (std::vector<std::string>{
                  "t.yaml:6:21: routes[0].tiers[1]: tier \"redis\" is not configured (add it under tiers:)",
                  "t.yaml:6:28: routes[0].tiers[2]: unknown tier \"disk\" (expected memory, redis or mongo)",
                  "t.yaml:6:34: routes[0].tiers[3]: tier \"memory\" is listed twice",
                  "t.yaml:6:49: routes[0].tiers[5]: unknown tier \"mongodb\" (did you mean \"mongo\"?)",
                  "t.yaml:10:12: routes[1].tiers: a route needs at least one tier",
                  "t.yaml:14:12: routes[2].tiers: must be a list, not a scalar",
              }));
}

TEST(loader, memory_only_config_with_redis_route_is_rejected) {
    EXPECT_EQ(diagnostics("routes:\n  - { name: h, match: GET /health, tiers: [redis], ttl: 30s }\n"),
              (std::vector<std::string>{
                  "t.yaml:2:44: routes[0].tiers[0]: tier \"redis\" is not configured (add it under tiers:)"}));
}

TEST(loader, route_options) {
    EXPECT_EQ(diagnostics(R"(routes:
  - name: a
    match: GET /v/{id}
    tiers: [memory]
    ttl: 0s
    key: [path.uuid, query.x, bogus, path.id]
    categories: ["video:{path.id}", "x:{path.nope}", "{", ""]
    status: [200, 700, 99]
    shared: maybe
    stale_if_error: soon
    credential_headers: ["X Bad", X-Good]
    strip_headers: x
  - name: "a b"
    match: GET /x
  - match: GET x/{}
    name: c
    tiers: [memory]
    ttl: 5m
    status: []
)"),
              (std::vector<std::string>{
                  "t.yaml:5:10: routes[0].ttl: must be greater than 0",
                  "t.yaml:6:11: routes[0].key[0]: path.uuid is not a parameter of \"/v/{id}\"",
                  "t.yaml:6:31: routes[0].key[2]: bad key field \"bogus\" (expected path.NAME, query.NAME, "
                  "header.NAME, body or method)",
                  "t.yaml:7:37: routes[0].categories[1]: path.nope is not a parameter of \"/v/{id}\"",
                  "t.yaml:7:54: routes[0].categories[2]: bad category \"{\": unbalanced '{'",
                  "t.yaml:7:59: routes[0].categories[3]: bad category \"\": a category may not be empty",
                  "t.yaml:8:19: routes[0].status[1]: must be between 100 and 599, got 700",
                  "t.yaml:8:24: routes[0].status[2]: must be between 100 and 599, got 99",
                  "t.yaml:9:13: routes[0].shared: bad boolean \"maybe\" (expected true or false)",
                  "t.yaml:10:21: routes[0].stale_if_error: bad duration \"soon\" (expected an integer and a unit: "
                  "500ms, 30s, 5m, 2h, 1d)",
                  "t.yaml:11:26: routes[0].credential_headers[0]: bad header name \"X Bad\"",
                  "t.yaml:12:20: routes[0].strip_headers: must be a list, not a scalar",
                  "t.yaml:13:5: routes[1]: missing required option \"tiers\"",
                  "t.yaml:13:5: routes[1]: missing required option \"ttl\"",
                  "t.yaml:13:11: routes[1].name: bad route name \"a b\" (use letters, digits, '_', '.', '-')",
                  "t.yaml:15:12: routes[2].match: bad pattern \"GET x/{}\": path must start with '/'",
                  "t.yaml:19:13: routes[2].status: an empty status list would store nothing",
              }));
}

TEST(loader, bad_patterns_are_reported_with_the_parser_message) {
    EXPECT_EQ(diagnostics(R"(routes:
  - { name: a, match: "GET /a/{x}{y}", tiers: [memory], ttl: 1m }
  - { name: b, match: "GET /a/*/b", tiers: [memory], ttl: 1m }
  - { name: c, match: "GET /a?b=1", tiers: [memory], ttl: 1m }
  - { name: d, match: "/a", tiers: [memory], ttl: 1m }
)"),
              (std::vector<std::string>{
                  "t.yaml:2:23: routes[0].match: bad pattern \"GET /a/{x}{y}\": a parameter must fill a whole "
                  "segment: \"{x}{y}\"",
                  "t.yaml:3:23: routes[1].match: bad pattern \"GET /a/*/b\": '*' is only allowed as the final "
                  "segment",
                  "t.yaml:4:23: routes[2].match: bad pattern \"GET /a?b=1\": path may not contain a query or "
                  "fragment ('?', '#')",
                  "t.yaml:5:23: routes[3].match: bad pattern \"/a\": missing method (expected \"METHOD /path\")",
              }));
}

TEST(loader, body_key_on_get_route_is_fine) {
    auto cfg = load_ok("routes:\n  - { name: a, match: GET /a, tiers: [memory], ttl: 1m, key: [body] }\n");
    EXPECT_EQ(cfg.routes[0].key, std::vector<std::string>{"body"});
}

TEST(loader, duplicate_route_names) {
    EXPECT_EQ(diagnostics(R"(routes:
  - { name: a, match: GET /a, tiers: [memory], ttl: 1m }
  - { name: b, match: GET /b, tiers: [memory], ttl: 1m }
  - { name: a, match: GET /c, tiers: [memory], ttl: 1m }
)"),
              (std::vector<std::string>{"t.yaml:4:13: routes[2].name: duplicate route name \"a\" (first at line 2)"}));
}

TEST(loader, invalidations) {
    EXPECT_EQ(diagnostics(R"(routes:
  - name: lookup
    match: GET /lookup
    tiers: [memory]
    ttl: 1m
    categories: [videos, "video:{query.uuid}"]
invalidate:
  - match: DELETE /v/{id}
    purge: [videos, "video:{path.id}", "video:{path.zz}", "*", foo, "vid:{path.id}"]
  - purge: []
  - match: POST /q
  - match: POST /r
    purge: ["video:42", "{header.x-target}"]
)"),
              (std::vector<std::string>{
                  "t.yaml:9:40: invalidate[0].purge[2]: path.zz is not a parameter of \"/v/{id}\"",
                  "t.yaml:9:59: invalidate[0].purge[3]: bad category \"*\": \"*\" is reserved (purge all)",
                  "t.yaml:9:64: invalidate[0].purge[4]: purge of category \"foo\" that no route produces",
                  "t.yaml:9:69: invalidate[0].purge[5]: purge of category \"vid:{path.id}\" that no route produces",
                  "t.yaml:10:5: invalidate[1]: missing required option \"match\"",
                  "t.yaml:10:12: invalidate[1].purge: an empty purge list purges nothing",
                  "t.yaml:11:5: invalidate[2]: missing required option \"purge\"",
              }));
}

TEST(loader, purge_without_any_route) {
    EXPECT_EQ(diagnostics("invalidate:\n  - { match: POST /r, purge: [videos] }\n"),
              (std::vector<std::string>{
                  "t.yaml:2:31: invalidate[0].purge[0]: purge of category \"videos\" that no route produces"}));
}

TEST(loader, env_expansion) {
    scoped_env port("CACHECAR_TEST_PORT", "8181");
    scoped_env ns("CACHECAR_TEST_NS", "momentry_dev");
    scoped_env empty("CACHECAR_TEST_EMPTY", "");
    scoped_env unset("CACHECAR_TEST_UNSET", nullptr);
    auto cfg = load_ok(R"(server:
  listen: "127.0.0.1:${CACHECAR_TEST_PORT}"
  namespace: ${CACHECAR_TEST_NS}
  admin_listen: "${CACHECAR_TEST_UNSET:-}"
  admin_token: "${CACHECAR_TEST_EMPTY:-fallback}$HOME${CACHECAR_TEST_EMPTY}"
  upstream: http://${CACHECAR_TEST_UNSET:-10.1.1.1}:${CACHECAR_TEST_UNSET:-3003}
)");
    EXPECT_EQ(cfg.server.listen.port, 8181);
    EXPECT_EQ(cfg.server.key_namespace, "momentry_dev");
    EXPECT_FALSE(cfg.server.admin_listen);
    EXPECT_EQ(cfg.server.admin_token, "fallback$HOME");
    EXPECT_EQ(cfg.server.upstream.host, "10.1.1.1");
    EXPECT_EQ(cfg.server.upstream.port, 3003);
}

TEST(loader, env_errors_point_at_the_scalar) {
    scoped_env unset("CACHECAR_TEST_UNSET", nullptr);
    scoped_env bad("CACHECAR_TEST_BAD_TTL", "five");
    EXPECT_EQ(diagnostics(R"(server:
  namespace: ${CACHECAR_TEST_UNSET}
  admin_token: "${oops"
  threads: ${1X}
routes:
  - { name: r, match: GET /r, tiers: [memory], ttl: "${CACHECAR_TEST_BAD_TTL}" }
)"),
              (std::vector<std::string>{
                  "t.yaml:2:14: server.namespace: environment variable \"CACHECAR_TEST_UNSET\" is not set (use "
                  "${CACHECAR_TEST_UNSET:-default} to give a default)",
                  "t.yaml:3:16: server.admin_token: unterminated \"${\" in \"${oops\"",
                  "t.yaml:4:12: server.threads: bad environment reference \"${1X}\" (expected ${NAME} or "
                  "${NAME:-default})",
                  "t.yaml:6:53: routes[0].ttl: bad duration \"five\" (expected an integer and a unit: 500ms, 30s, "
                  "5m, 2h, 1d)",
              }));
}

// Found by fuzz_config (tests/fuzz/regressions/fuzz_config/): messages carrying
// config text or yaml-cpp's words about a raw character broke the one-line
// "file:line:col: message" form of --check output.
TEST(loader, diagnostics_stay_on_one_line) {
    EXPECT_EQ(diagnostics(std::string_view("a: \"x\\\x01\"\n")),
              std::vector<std::string>{"t.yaml:1:8: YAML syntax error: unknown escape character: \\x01"});
    EXPECT_EQ(diagnostics("\"a\\nb\": 1\n"),
              std::vector<std::string>{"t.yaml:1:1: unknown key \"a\\nb\" in the top level"});
}

// Found by fuzz_config (tests/fuzz/regressions/fuzz_config/timeout-*): yaml-cpp 0.7's
// LoadAll never returned on a document starting with ',' (and allocated without
// bound), so --check and a reload hung on such a file.
TEST(loader, leading_comma_is_a_syntax_error_not_a_hang) {
    EXPECT_EQ(diagnostics(",a\n"), std::vector<std::string>{"t.yaml:1:1: YAML syntax error: unexpected \",\""});
    EXPECT_EQ(diagnostics(",outes: [ {n1tch: \"GET /\", tiers} ]\n"),
              std::vector<std::string>{"t.yaml:1:1: YAML syntax error: unexpected \",\""});
    EXPECT_EQ(diagnostics("server: {}\n---\n,\n"),
              std::vector<std::string>{"t.yaml:3:1: only one YAML document is allowed"});
}

TEST(loader, missing_file) {
    auto r = load_file("/nonexistent/cachecar.yaml");
    EXPECT_FALSE(r.value);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(),
              "/nonexistent/cachecar.yaml:0:0: cannot read config: No such file or directory");
}

TEST(loader, directory_is_not_a_file) {
    auto r = load_file("/");
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(), "/:0:0: cannot read config: Is a directory");
}

TEST(loader, load_file_names_the_file_in_diagnostics) {
    auto path = std::filesystem::temp_directory_path() /
                ("cachecar_loader_test_" + std::to_string(::getpid()) + ".yaml");
    {
        std::ofstream out(path);
        out << "server:\n  threads: -1\n";
    }
    auto r = load_file(path.string());
    std::filesystem::remove(path);
    ASSERT_EQ(r.errors.size(), 1u);
    EXPECT_EQ(r.errors[0].to_string(), path.string() + ":2:12: server.threads: bad integer \"-1\"");
}

}  // namespace
}  // namespace cachecar::config
