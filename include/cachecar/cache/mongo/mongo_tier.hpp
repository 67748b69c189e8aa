// MongoDB as a cache tier, for larger, query-shaped responses that should survive
// restarts and be shared. mongo-c-driver stays inside src/cache/mongo.
//
// One document per entry in {database}.{collection}:
//   {_id: <cache key>, ns: <namespace>, value: <entry_codec bytes, BSON binary>,
//    categories: [...], created_at: <date>, expires_at: <date>, hit_count, last_access}
// with a TTL index on expires_at (expireAfterSeconds: 0) and indexes on categories
// and ns, created idempotently at start-up. Reads filter on expires_at > now because
// TTL deletion is lazy. hit_count/last_access are written in batches once a second,
// never once per hit.
//
// Every operation runs on a bounded pool of worker threads (mongoc is blocking), with
// the configured timeout as its deadline; results come back on the caller's executor
// (a strand). Failures open a circuit breaker: calls fail fast while a probe pings
// the server with backoff capped at 1 s, so a returning server is used again
// within seconds.
#pragma once

#include <cachecar/cache/generation_cache.hpp>
#include <cachecar/cache/generations.hpp>
#include <cachecar/cache/tier.hpp>
#include <cachecar/parsed.hpp>
#include <cachecar/stats/metrics.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace cachecar::cache::mongo {

struct mongo_options {
    std::string uri = "mongodb://127.0.0.1:27017";
    std::string database = "cachecar";
    std::string collection = "cache";
    std::chrono::milliseconds timeout{200};
    unsigned workers = 4;          // threads (and pooled clients) running mongoc calls
    std::size_t max_queue = 1024;  // operations waiting for a worker; beyond it, fail fast
};

// Checks a MongoDB connection string the way the driver will parse it.
parsed<bool> validate_uri(const std::string& uri);

enum class mongo_error { timeout = 1, unavailable, circuit_open, overloaded, server_error };
const boost::system::error_category& mongo_category();
error_code make_error_code(mongo_error e);

// The driver, its client pool and the worker threads. Shared by the tier and the
// generation store.
class mongo_connection : public std::enable_shared_from_this<mongo_connection> {
public:
    struct events {
        std::function<void(std::string_view what)> on_failure;
        std::function<void(bool up)> on_state_change;
    };
    static std::shared_ptr<mongo_connection> create(mongo_options options, stats::registry& metrics, events ev = {});
    ~mongo_connection();

    void start(net::any_io_executor ex);  // workers, index creation, probe and hit-count flush loops
    void stop();
    bool up() const;
    const mongo_options& options() const;

    struct impl;
    impl& internals() { return *impl_; }

private:
    explicit mongo_connection(std::unique_ptr<impl> i);
    std::unique_ptr<impl> impl_;
};

class mongo_tier final : public tier {
public:
    mongo_tier(std::shared_ptr<mongo_connection> connection, std::string key_namespace, stats::registry& metrics);

    config::tier_kind kind() const override { return config::tier_kind::mongo; }
    net::awaitable<result<entry_ptr>> lookup(std::string key) override;
    net::awaitable<error_code> store(std::string key, entry_ptr e) override;
    net::awaitable<error_code> erase(std::string key) override;
    // Deletes every document of this namespace.
    net::awaitable<error_code> clear() override;
    tier_state state() const override;
    tier_usage usage() const override { return {}; }

private:
    std::shared_ptr<mongo_connection> connection_;
    std::string namespace_;
    stats::registry& metrics_;
};

// Category generations in MongoDB ({collection}_generations), for deployments with
// MongoDB but no Redis, so several instances still share purges.
//
// MongoDB has no cheap broadcast, so each instance trusts its local copy of a
// generation for at most `max_staleness` (default 1 s) before asking again, counted
// from when it asked (so a slow answer cannot stretch it). The bound this gives:
// another instance's *memory* tier may serve a purged entry for up to max_staleness
// after the purge was recorded. The instance that forwarded the write, and the
// MongoDB tier itself (always checked against the server), are exact. Not covered
// (unlike with Redis): a purge MongoDB cannot take is known to its writer only, until
// MongoDB takes it.
class mongo_generation_store final : public generation_store {
public:
    mongo_generation_store(std::shared_ptr<mongo_connection> connection, std::string key_namespace,
                           stats::registry& metrics,
                           std::chrono::milliseconds max_staleness = std::chrono::milliseconds(1000));

    net::awaitable<result<std::vector<std::uint64_t>>> current(std::vector<std::string> categories) override;
    net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) override;
    std::optional<bool> validate_cached(const std::vector<category_stamp>& stamps) const override;
    std::size_t pending_purges() const { return cache_.pending_count(); }

private:
    net::awaitable<bool> flush_pending();

    std::shared_ptr<mongo_connection> connection_;
    std::string namespace_;
    stats::registry& metrics_;
    std::chrono::milliseconds max_staleness_;
    generation_cache cache_;
};

}  // namespace cachecar::cache::mongo

namespace boost::system {
template <>
struct is_error_code_enum<cachecar::cache::mongo::mongo_error> : std::true_type {};
}  // namespace boost::system
