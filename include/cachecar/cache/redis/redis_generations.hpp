// Category generations shared through Redis, so a purge on one instance is seen by
// all of them.
//
//  - Generations are Redis integers at "<namespace>::gen:<category>" (INCR to purge),
//    created at the server's time in microseconds so that a Redis that lost its
//    data never hands out a generation an old entry carries.
//  - Every purge is also published on "<namespace>:purge"; each instance keeps a
//    local copy of the generations it has seen, raised by those messages, so memory
//    hits are validated without a round trip (validate_cached).
//  - The local copy is trusted only while the subscription is live: when it is lost
//    (or re-established, since messages may have been missed in between) the copy
//    is dropped and lookups ask Redis (current()) until it is rebuilt.
//  - A purge Redis cannot take is kept as pending and retried; while any purge is
//    pending this instance serves nothing from cache (current() fails), so the write
//    it acknowledged is honoured even before Redis has it.
// Staleness bound: another instance's memory tier may serve a purged entry until
// the publish reaches it (milliseconds); shared-tier entries are always checked
// against Redis itself.
#pragma once

#include <cachecar/cache/generation_cache.hpp>
#include <cachecar/cache/generations.hpp>
#include <cachecar/cache/redis/redis_client.hpp>
#include <cachecar/stats/metrics.hpp>

#include <atomic>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

namespace cachecar::cache::redis {

class redis_generation_store final : public generation_store,
                                     public std::enable_shared_from_this<redis_generation_store> {
public:
    redis_generation_store(std::shared_ptr<redis_client> client, std::string key_namespace,
                           stats::registry& metrics);

    // Subscribes to the purge channel and starts retrying pending purges.
    void start(net::any_io_executor ex);
    void stop();

    net::awaitable<result<std::vector<std::uint64_t>>> current(std::vector<std::string> categories) override;
    net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) override;
    std::optional<bool> validate_cached(const std::vector<category_stamp>& stamps) const override;

    bool subscribed() const { return subscribed_.load(); }
    std::size_t pending_purges() const;

    // The published message for a set of new generations (exposed for tests).
    static std::string encode_message(int db, const std::vector<std::pair<std::string, std::uint64_t>>& generations);

private:
    std::string generation_key(const std::string& category) const;
    void on_message(std::string_view payload);
    net::awaitable<bool> flush_pending();
    net::awaitable<result<std::vector<std::uint64_t>>> run_script(std::string_view script,
                                                                  const std::vector<std::string>& categories);
    net::awaitable<void> retry_loop();

    std::shared_ptr<redis_client> client_;
    std::string namespace_;
    stats::registry& metrics_;
    std::atomic<bool> subscribed_{false};
    std::atomic<bool> stopped_{false};
    std::atomic<bool> flushing_{false};  // a flush_pending() is in flight
    generation_cache cache_;  // trusted only while subscribed_
};

}  // namespace cachecar::cache::redis
