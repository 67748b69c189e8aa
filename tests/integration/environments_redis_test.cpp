// The shipped environments, conf/production.yaml and conf/playground.yaml, run side by
// side on ONE redis-server and ONE MongoDB server, as they would on a shared host: the
// real files are loaded (with REDIS_URL, MONGO_URI, CACHECAR_UPSTREAM and
// CACHECAR_ADMIN_TOKEN from the environment) and must never read, overwrite or purge
// each other's entries.
//
// MongoDB: always the wire-protocol test server, never CACHECAR_TEST_MONGO_URI — the
// files name the databases `momentry` and `momentry_dev`, which a test must not touch
// on a real server.
#include "support/eventually.hpp"
#include "support/mongo_test_server.hpp"
#include "support/proxy_fixture.hpp"
#include "support/redis_server.hpp"

#include <boost/json.hpp>

#include <cstdlib>
#include <filesystem>
#include <map>
#include <optional>
#include <sstream>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;
namespace json = boost::json;

std::filesystem::path conf_dir() {
#ifdef CACHECAR_SOURCE_DIR
    return std::filesystem::path(CACHECAR_SOURCE_DIR) / "conf";
#else
    // tests/integration/<this file> -> <source>/conf
    return std::filesystem::absolute(std::filesystem::path(__FILE__)).parent_path().parent_path().parent_path() /
           "conf";
#endif
}

// Sets (or, with nullopt, unsets) environment variables and restores the previous
// values when it goes out of scope. Used only while no app threads run.
class scoped_env {
public:
    explicit scoped_env(const std::map<std::string, std::optional<std::string>>& vars) {
        for (const auto& [name, value] : vars) {
            const char* old = std::getenv(name.c_str());
            saved_.emplace(name, old ? std::optional<std::string>(old) : std::nullopt);
            if (value) {
                ::setenv(name.c_str(), value->c_str(), 1);
            } else {
                ::unsetenv(name.c_str());
            }
        }
    }
    ~scoped_env() {
        for (const auto& [name, value] : saved_) {
            if (value) {
                ::setenv(name.c_str(), value->c_str(), 1);
            } else {
                ::unsetenv(name.c_str());
            }
        }
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;

private:
    std::map<std::string, std::optional<std::string>> saved_;
};

config::load_result load_with(const std::string& file, const std::map<std::string, std::optional<std::string>>& env) {
    scoped_env scope(env);
    return config::load_file((conf_dir() / file).string());
}

config::config must_load_file(const std::string& file, const std::map<std::string, std::optional<std::string>>& env) {
    auto loaded = load_with(file, env);
    std::string problems;
    for (const auto& d : loaded.errors) problems += d.to_string() + "\n";
    EXPECT_TRUE(loaded.value.has_value()) << problems;
    if (!loaded.value) throw std::runtime_error("conf/" + file + " does not load:\n" + problems);
    return std::move(*loaded.value);
}

const std::map<std::string, std::optional<std::string>> all_unset{
    {"CACHECAR_UPSTREAM", std::nullopt},
    {"REDIS_URL", std::nullopt},
    {"MONGO_URI", std::nullopt},
    {"CACHECAR_ADMIN_TOKEN", std::nullopt}};

// ---------------------------------------------------------------------------------
// The files themselves.

TEST(environments_files, DefaultsWithoutEnvironmentAreTheDocumentedLocalServices) {
    auto prod = must_load_file("production.yaml", all_unset);
    auto dev = must_load_file("playground.yaml", all_unset);
    for (const auto* c : {&prod, &dev}) {
        EXPECT_EQ(c->server.upstream_url, "http://127.0.0.1:3002");
        EXPECT_EQ(c->server.admin_token, "");
        ASSERT_TRUE(c->tiers.redis && c->tiers.mongo);
        EXPECT_EQ(c->tiers.mongo->uri, "mongodb://127.0.0.1:27017");
        EXPECT_EQ(c->tiers.mongo->collection, "cache");
    }
    EXPECT_EQ(prod.tiers.redis->url, "redis://127.0.0.1:6379/0");
    EXPECT_EQ(dev.tiers.redis->url, "redis://127.0.0.1:6379/1");
}

TEST(environments_files, EnvironmentValuesReplaceTheDefaults) {
    const std::map<std::string, std::optional<std::string>> env{
        {"CACHECAR_UPSTREAM", "http://10.1.2.3:4000"},
        {"REDIS_URL", "redis://cache.internal:6380/7"},
        {"MONGO_URI", "mongodb://mongo.internal:27018/?replicaSet=rs0"},
        {"CACHECAR_ADMIN_TOKEN", "s3cret"}};
    for (const char* file : {"production.yaml", "playground.yaml"}) {
        SCOPED_TRACE(file);
        auto c = must_load_file(file, env);
        EXPECT_EQ(c.server.upstream_url, "http://10.1.2.3:4000");
        EXPECT_EQ(c.server.upstream.host, "10.1.2.3");
        EXPECT_EQ(c.server.upstream.port, 4000);
        EXPECT_EQ(c.tiers.redis->url, "redis://cache.internal:6380/7");
        EXPECT_EQ(c.tiers.mongo->uri, "mongodb://mongo.internal:27018/?replicaSet=rs0");
        EXPECT_EQ(c.server.admin_token, "s3cret");
    }
    // `${VAR:-default}`: a variable set but empty takes the default, like the shell.
    auto empty = must_load_file("playground.yaml", {{"CACHECAR_UPSTREAM", ""}, {"REDIS_URL", ""},
                                                    {"MONGO_URI", std::nullopt}, {"CACHECAR_ADMIN_TOKEN", ""}});
    EXPECT_EQ(empty.server.upstream_url, "http://127.0.0.1:3002");
    EXPECT_EQ(empty.tiers.redis->url, "redis://127.0.0.1:6379/1");
    EXPECT_EQ(empty.server.admin_token, "");
    // A bad value from the environment is reported at the line of the file that uses it.
    auto bad = load_with("production.yaml", {{"REDIS_URL", "http://not-redis"}});
    ASSERT_FALSE(bad.value);
    ASSERT_EQ(bad.errors.size(), 1u);
    EXPECT_NE(bad.errors[0].to_string().find("production.yaml:"), std::string::npos) << bad.errors[0].to_string();
    EXPECT_NE(bad.errors[0].message.find("tiers.redis.url"), std::string::npos) << bad.errors[0].message;
}

TEST(environments_files, SameMatrixDifferentIsolationSettings) {
    auto prod = must_load_file("production.yaml", all_unset);
    auto dev = must_load_file("playground.yaml", all_unset);

    EXPECT_EQ(prod.server.key_namespace, "momentry");
    EXPECT_EQ(dev.server.key_namespace, "momentry_dev");
    EXPECT_EQ(prod.server.listen.port, 8080);
    EXPECT_EQ(dev.server.listen.port, 8081);
    ASSERT_TRUE(prod.server.admin_listen && dev.server.admin_listen);
    EXPECT_EQ(prod.server.admin_listen->port, 9901);
    EXPECT_EQ(dev.server.admin_listen->port, 9902);
    EXPECT_EQ(prod.tiers.mongo->database, "momentry");
    EXPECT_EQ(dev.tiers.mongo->database, "momentry_dev");

    // The cache matrix of SPEC's video API, identical in both.
    for (const auto* c : {&prod, &dev}) {
        SCOPED_TRACE(c->server.key_namespace);
        using config::tier_kind;
        struct expected_route {
            std::string name, method, path;
            std::vector<tier_kind> tiers;
            std::chrono::milliseconds ttl;
            std::optional<std::vector<std::string>> key;
            std::vector<std::string> categories;
        };
        const std::vector<expected_route> want{
            {"videos_list", "GET", "/api/v1/videos", {tier_kind::memory, tier_kind::mongo}, 5min,
             std::vector<std::string>{"query.page", "query.limit"}, {"videos"}},
            {"lookup", "GET", "/api/v1/lookup", {tier_kind::memory, tier_kind::redis}, 60min,
             std::vector<std::string>{"query.uuid"}, {"video_meta", "video:{query.uuid}"}},
            {"search", "POST", "/api/v1/search", {tier_kind::mongo}, 5min, std::vector<std::string>{"body"},
             {"search"}},
            {"search_hybrid", "POST", "/api/v1/search/hybrid", {tier_kind::mongo}, 10min,
             std::vector<std::string>{"body"}, {"search"}},
            {"health", "GET", "/health", {tier_kind::redis}, 30s, std::nullopt, {}},
        };
        ASSERT_EQ(c->routes.size(), want.size());
        for (std::size_t i = 0; i < want.size(); ++i) {
            const auto& r = c->routes[i];
            EXPECT_EQ(r.name, want[i].name);
            EXPECT_EQ(r.method, want[i].method);
            EXPECT_EQ(r.path_pattern, want[i].path);
            EXPECT_EQ(r.tiers, want[i].tiers) << r.name;
            EXPECT_EQ(r.ttl, want[i].ttl) << r.name;
            EXPECT_EQ(r.key, want[i].key) << r.name;
            EXPECT_EQ(r.categories, want[i].categories) << r.name;
        }
        ASSERT_EQ(c->invalidations.size(), 3u);
        EXPECT_EQ(c->invalidations[0].method + " " + c->invalidations[0].path_pattern, "POST /api/v1/register");
        EXPECT_EQ(c->invalidations[0].purge, (std::vector<std::string>{"videos"}));
        EXPECT_EQ(c->invalidations[1].method + " " + c->invalidations[1].path_pattern, "DELETE /api/v1/videos/{uuid}");
        EXPECT_EQ(c->invalidations[1].purge, (std::vector<std::string>{"videos", "video:{path.uuid}"}));
        EXPECT_EQ(c->invalidations[2].method + " " + c->invalidations[2].path_pattern, "POST /api/v1/vectorize");
        EXPECT_EQ(c->invalidations[2].purge, (std::vector<std::string>{"search"}));
    }
}

// ---------------------------------------------------------------------------------
// Both environments running against one Redis and one MongoDB.

// One request of each cached route, and the shared tier it lands in.
struct probe {
    std::string route;
    std::string method;
    std::string target;
    std::string body;
    config::tier_kind shared;
};

const std::vector<probe> probes{
    {"videos_list", "GET", "/api/v1/videos?page=1&limit=10", "", config::tier_kind::mongo},
    {"lookup", "GET", "/api/v1/lookup?uuid=u1", "", config::tier_kind::redis},
    {"search", "POST", "/api/v1/search", R"({"query":"cats"})", config::tier_kind::mongo},
    {"search_hybrid", "POST", "/api/v1/search/hybrid", R"({"query":"cats","alpha":0.5})", config::tier_kind::mongo},
    {"health", "GET", "/health", "", config::tier_kind::redis},
};

const probe& probe_for(const std::string& route) {
    for (const auto& p : probes) {
        if (p.route == route) return p;
    }
    throw std::logic_error("no probe for " + route);
}

struct environment {
    std::string file;
    std::string ns;
    std::string redis_db;  // as redis-cli -n wants it
    std::string mongo_db;
    std::string token;
    std::unique_ptr<app> instance;
};

class environments_test : public ::testing::Test {
protected:
    void SetUp() override {
        if (!redis_server::available()) GTEST_SKIP() << "redis-server/redis-cli not installed";
        redis_ = std::make_unique<redis_server>();
        prod_ = {"production.yaml", "momentry", "0", "momentry", "prod-token", nullptr};
        dev_ = {"playground.yaml", "momentry_dev", "1", "momentry_dev", "dev-token", nullptr};
        // Load both before starting either: setenv must not race with running threads.
        auto prod_cfg = load(prod_, 0);
        auto dev_cfg = load(dev_, 1);
        start(prod_, std::move(prod_cfg));
        start(dev_, std::move(dev_cfg));
    }
    void TearDown() override {
        for (auto* e : {&dev_, &prod_}) {
            if (e->instance) e->instance->stop();
            e->instance.reset();
        }
    }

    config::config load(const environment& e, int db) {
        auto cfg = must_load_file(e.file, {{"CACHECAR_UPSTREAM", "http://127.0.0.1:" + std::to_string(origin_.port())},
                                           {"REDIS_URL", redis_->url(db)},
                                           {"MONGO_URI", mongo_.uri()},
                                           {"CACHECAR_ADMIN_TOKEN", e.token}});
        // The files' fixed ports would collide with anything else on this machine (and
        // with a parallel test run); everything that isolates the two is left as written.
        cfg.server.listen.port = 0;
        if (cfg.server.admin_listen) cfg.server.admin_listen->port = 0;
        cfg.server.threads = 2;
        // Production timeouts (50ms/200ms) are tuned for a quiet LAN; a busy CI machine
        // must not turn a slow reply into a skipped tier and a confusing MISS here.
        cfg.tiers.redis->timeout = 1s;
        cfg.tiers.mongo->timeout = 1s;
        return cfg;
    }

    static void start(environment& e, config::config cfg) {
        e.instance = std::make_unique<app>(std::move(cfg));
        e.instance->start();
        const auto admin_port = e.instance->admin_port();
        EXPECT_TRUE(eventually([&] {
            auto r = http_get(admin_port, "/health");
            if (r.status != 200) return false;
            auto tiers = json::parse(r.body).at("tiers");
            return tiers.at("redis").as_string() == "up" && tiers.at("mongo").as_string() == "up";
        })) << e.file << ": tiers never came up: " << http_get(admin_port, "/health").body;
    }

    static client_response send(const environment& e, const probe& p) {
        return http_request(e.instance->port(), p.method, p.target, {}, p.body);
    }
    static client_response admin_post(const environment& e, const std::string& target, const std::string& body,
                                      const std::string& token) {
        return http_request(e.instance->admin_port(), "POST", target, {{"Authorization", "Bearer " + token}}, body);
    }

    // Upstream calls for exactly this request.
    std::size_t origin_calls(const probe& p) const {
        std::size_t n = 0;
        for (const auto& r : origin_.requests()) {
            if (r.method == p.method && r.target == p.target && r.body == p.body) ++n;
        }
        return n;
    }

    std::vector<std::string> redis_keys(const std::string& db, const std::string& pattern) const {
        std::vector<std::string> out;
        std::istringstream in(redis_->command({"-n", db, "KEYS", pattern}));
        for (std::string line; std::getline(in, line);) {
            if (!line.empty()) out.push_back(line);
        }
        return out;
    }
    std::vector<json::object> mongo_docs(const std::string& db) const {
        std::vector<json::object> out;
        for (const auto& d : mongo_.documents(db, "cache")) out.push_back(json::parse(d).as_object());
        return out;
    }

    // True once the environment's entry for `p` is in the shared tier (the store there
    // runs in the background, after the response).
    bool stored_in_shared_tier(const environment& e, const probe& p) const {
        const std::string prefix = e.ns + ":" + p.route + ":";
        if (p.shared == config::tier_kind::redis) return !redis_keys(e.redis_db, prefix + "*").empty();
        for (const auto& d : mongo_docs(e.mongo_db)) {
            if (std::string_view(d.at("_id").as_string()).starts_with(prefix)) return true;
        }
        return false;
    }

    // A MISS that is stored, in the shared tier too; then the same request is a HIT.
    void cache(const environment& e, const probe& p) {
        SCOPED_TRACE(e.file + " " + p.route);
        auto first = send(e, p);
        EXPECT_EQ(first.status, 200u);
        EXPECT_EQ(first.header("x-cache"), "MISS");
        ASSERT_TRUE(eventually([&] { return stored_in_shared_tier(e, p); })) << "never stored in the shared tier";
        auto again = send(e, p);
        EXPECT_EQ(again.header("x-cache"), "HIT");
        EXPECT_EQ(again.body, first.body);
    }

    void expect_result(const environment& e, const probe& p, const std::string& result) {
        auto r = send(e, p);
        EXPECT_EQ(r.status, 200u) << e.file << " " << p.route;
        EXPECT_EQ(r.header("x-cache"), result) << e.file << " " << p.route;
    }

    std::unique_ptr<redis_server> redis_;
    mongo_test_server mongo_;
    test_origin origin_;
    environment prod_;
    environment dev_;
};

TEST_F(environments_test, EntriesOfOneEnvironmentAreNeverReadByTheOther) {
    for (const auto& p : probes) {
        cache(prod_, p);
        // Production's entry is in the shared tier by now: the playground must not see it.
        cache(dev_, p);
        EXPECT_EQ(origin_calls(p), 2u) << p.route << ": the origin is asked once per environment";
        expect_result(prod_, p, "HIT");
        expect_result(dev_, p, "HIT");
    }
    EXPECT_EQ(origin_.count(), 2 * probes.size());
}

TEST_F(environments_test, EachEnvironmentStoresUnderItsOwnNamespaceAndDatabases) {
    for (const auto& p : probes) {
        cache(prod_, p);
        cache(dev_, p);
    }
    // Redis: production in database 0, playground in database 1, each key prefixed with
    // its own namespace ("<ns>:<route>:<hash>" entries, "<ns>::gen:<category>" generations).
    const auto prod_keys = redis_keys("0", "*");
    const auto dev_keys = redis_keys("1", "*");
    EXPECT_FALSE(prod_keys.empty());
    EXPECT_FALSE(dev_keys.empty());
    for (const auto& k : prod_keys) EXPECT_TRUE(k.starts_with("momentry:")) << "db 0: " << k;
    for (const auto& k : dev_keys) EXPECT_TRUE(k.starts_with("momentry_dev:")) << "db 1: " << k;
    for (const char* route : {"lookup", "health"}) {
        EXPECT_EQ(redis_keys("0", std::string("momentry:") + route + ":*").size(), 1u) << route;
        EXPECT_EQ(redis_keys("1", std::string("momentry_dev:") + route + ":*").size(), 1u) << route;
    }
    // Nothing of either landed anywhere else.
    for (const char* db : {"2", "3"}) EXPECT_EQ(redis_->command({"-n", db, "DBSIZE"}), "0") << "db " << db;

    // MongoDB: database momentry holds production's documents, momentry_dev the
    // playground's, each with its namespace in `_id` and `ns`.
    for (const auto* e : {&prod_, &dev_}) {
        const auto docs = mongo_docs(e->mongo_db);
        EXPECT_EQ(docs.size(), 3u) << e->mongo_db << ": videos_list, search, search_hybrid";
        for (const auto& d : docs) {
            EXPECT_EQ(d.at("ns").as_string(), e->ns);
            EXPECT_TRUE(std::string_view(d.at("_id").as_string()).starts_with(e->ns + ":")) << d.at("_id");
        }
    }
}

TEST_F(environments_test, WritesInOneEnvironmentPurgeOnlyItsOwnEntries) {
    for (const auto& p : probes) {
        cache(prod_, p);
        cache(dev_, p);
    }
    const auto& videos = probe_for("videos_list");
    const auto& lookup = probe_for("lookup");
    const auto& search = probe_for("search");
    const auto& hybrid = probe_for("search_hybrid");
    const auto& health = probe_for("health");

    // DELETE in production: purges production's `videos` and `video:u1`.
    EXPECT_EQ(http_request(prod_.instance->port(), "DELETE", "/api/v1/videos/u1").status, 200u);
    // Give a (wrongly) shared purge broadcast time to reach the playground's memory tier.
    std::this_thread::sleep_for(200ms);
    for (const auto* p : {&videos, &lookup, &search, &hybrid, &health}) expect_result(dev_, *p, "HIT");
    expect_result(prod_, videos, "MISS");
    expect_result(prod_, lookup, "MISS");
    for (const auto* p : {&search, &hybrid, &health}) expect_result(prod_, *p, "HIT");

    // Vectorize and register in the playground: production's searches and lists stay.
    EXPECT_EQ(http_request(dev_.instance->port(), "POST", "/api/v1/vectorize", {}, "{}").status, 200u);
    EXPECT_EQ(http_request(dev_.instance->port(), "POST", "/api/v1/register", {}, "{}").status, 200u);
    std::this_thread::sleep_for(200ms);
    expect_result(dev_, search, "MISS");
    expect_result(dev_, hybrid, "MISS");
    expect_result(dev_, videos, "MISS");
    expect_result(dev_, lookup, "HIT");  // register purges only `videos`
    expect_result(prod_, search, "HIT");
    expect_result(prod_, hybrid, "HIT");
    expect_result(prod_, videos, "HIT");  // re-stored by the MISS after the DELETE

    // Admin purges by category, with each environment's own token.
    auto wrong_token = admin_post(prod_, "/purge", R"({"categories":["video_meta"]})", dev_.token);
    EXPECT_EQ(wrong_token.status, 401u) << "the playground's token must not work on production";
    auto purge = admin_post(prod_, "/purge", R"({"categories":["video_meta"]})", prod_.token);
    EXPECT_EQ(purge.status, 200u) << purge.body;
    std::this_thread::sleep_for(200ms);
    expect_result(prod_, lookup, "MISS");
    expect_result(dev_, lookup, "HIT");
}

TEST_F(environments_test, PurgeAllInOneEnvironmentLeavesTheOthersEntries) {
    for (const auto& p : probes) {
        cache(prod_, p);
        cache(dev_, p);
    }
    const auto dev_docs_before = mongo_docs("momentry_dev").size();
    const auto dev_keys_before = redis_keys("1", "*").size();

    auto r = admin_post(dev_, "/purge", R"({"all":true})", dev_.token);
    ASSERT_EQ(r.status, 200u) << r.body;

    // The playground's entries are gone from both shared tiers ("<ns>:<x>..." matches
    // entry keys, not the "<ns>::gen:..." generations, which stay by design) ...
    EXPECT_TRUE(redis_keys("1", "momentry_dev:[^:]*").empty());
    EXPECT_TRUE(mongo_docs("momentry_dev").empty());
    // ... production's are all still there and still served.
    EXPECT_EQ(redis_keys("0", "momentry:lookup:*").size(), 1u);
    EXPECT_EQ(redis_keys("0", "momentry:health:*").size(), 1u);
    EXPECT_EQ(mongo_docs("momentry").size(), 3u);
    std::this_thread::sleep_for(200ms);
    for (const auto& p : probes) expect_result(prod_, p, "HIT");
    for (const auto& p : probes) expect_result(dev_, p, "MISS");
    EXPECT_GT(dev_docs_before, 0u);
    EXPECT_GT(dev_keys_before, 0u);

    // And the other way round.
    for (const auto& p : probes) ASSERT_TRUE(eventually([&] { return stored_in_shared_tier(dev_, p); })) << p.route;
    r = admin_post(prod_, "/purge", R"({"all":true})", prod_.token);
    ASSERT_EQ(r.status, 200u) << r.body;
    EXPECT_TRUE(redis_keys("0", "momentry:[^:]*").empty());
    EXPECT_TRUE(mongo_docs("momentry").empty());
    std::this_thread::sleep_for(200ms);
    for (const auto& p : probes) expect_result(dev_, p, "HIT");
    for (const auto& p : probes) expect_result(prod_, p, "MISS");
    // Each key reached the origin once per environment, plus once more after its purge-all.
    for (const auto& p : probes) EXPECT_EQ(origin_calls(p), 4u) << p.route;
}

}  // namespace
}  // namespace cachecar::test
