// Redis as a cache tier shared by every cachecar instance: entries are encoded with
// entry_codec and stored with SET ... PX (the entry's retention), under keys that
// already carry the namespace. A value that does not decode is counted, deleted and
// reported as an error (the chain skips it), never served.
#pragma once

#include <cachecar/cache/redis/redis_client.hpp>
#include <cachecar/cache/tier.hpp>
#include <cachecar/stats/metrics.hpp>

#include <memory>
#include <string>

namespace cachecar::cache::redis {

class redis_tier final : public tier {
public:
    redis_tier(std::shared_ptr<redis_client> client, std::string key_namespace, stats::registry& metrics);

    config::tier_kind kind() const override { return config::tier_kind::redis; }
    net::awaitable<result<entry_ptr>> lookup(std::string key) override;
    net::awaitable<error_code> store(std::string key, entry_ptr e) override;
    net::awaitable<error_code> erase(std::string key) override;
    // Deletes this namespace's entries (SCAN + UNLINK), never its generation keys:
    // resetting generations could make entries cached elsewhere valid again.
    net::awaitable<error_code> clear() override;
    tier_state state() const override { return client_->up() ? tier_state::up : tier_state::down; }
    tier_usage usage() const override { return {}; }  // not tracked: Redis owns its memory

    redis_client& client() { return *client_; }

private:
    std::shared_ptr<redis_client> client_;
    std::string namespace_;
    stats::registry& metrics_;
};

}  // namespace cachecar::cache::redis
