// Category generations shared through Redis, so a purge on one instance is seen by
// all of them. What each instance knows, and when (README "Freshness under faults"):
//
//  - Generations are Redis integers at "<namespace>::gen:<category>" (INCR to purge),
//    created at the server's time in microseconds so that a Redis that lost its data
//    never hands out a generation an old entry carries. A purge is bumped and
//    published on "<namespace>:purge" by one script: recorded means announced.
//  - Each instance keeps a local copy of the generations it has seen, raised by those
//    messages, so memory hits are validated without a round trip (validate_cached).
//    The copy is trusted only for `trust_window` after a proof that it is complete: a
//    heartbeat script, then a PING on the subscriber connection whose pong arrives
//    after every message published before it. A silent subscription (Redis paused, a
//    frozen path) thus stops being trusted within the window, by this instance's clock.
//  - Every instance holds a lease in Redis ("<namespace>::members", renewed by the
//    heartbeat). Any script first purges everything (one bump of the all category)
//    for each lease that ran out without a goodbye, since its holder may have taken
//    writes whose purges never reached Redis, and then fences the namespace (reads
//    fail: nothing served from cache) until that member is back with its held purges
//    applied, or lapse_fence has passed.
//  - A write's purge that Redis cannot take is retried; the write's response is held
//    until the purge is recorded or this instance's own lease has certainly run out
//    (it stops renewing meanwhile), at most hold_bound(). After that every other
//    instance purges everything before it serves from Redis again, and before its
//    memory copy is trusted again. The purge stays pending here and nothing is served
//    from cache by this instance until Redis has it.
#pragma once

#include <cachecar/cache/generation_cache.hpp>
#include <cachecar/cache/generations.hpp>
#include <cachecar/cache/redis/redis_client.hpp>
#include <cachecar/stats/metrics.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <mutex>
#include <set>
#include <string>
#include <unordered_map>

namespace cachecar::cache::redis {

class redis_generation_store final : public generation_store,
                                     public std::enable_shared_from_this<redis_generation_store> {
public:
    redis_generation_store(std::shared_ptr<redis_client> client, std::string key_namespace,
                           stats::registry& metrics, std::chrono::milliseconds lapse_fence = default_lapse_fence,
                           bool confirm_purges = true);

    // Subscribes to the purge channel and starts retrying pending purges.
    void start(net::any_io_executor ex);
    void stop();

    net::awaitable<result<std::vector<std::uint64_t>>> current(std::vector<std::string> categories) override;
    net::awaitable<result<std::vector<std::uint64_t>>> bump(std::vector<std::string> categories) override;
    std::optional<bool> validate_cached(const std::vector<category_stamp>& stamps) const override;

    bool subscribed() const { return subscribed_.load(); }
    // Whether validate_cached may answer now (the copy was proven within trust_window).
    bool copy_trusted() const;
    // Whether the last heartbeat found the namespace fenced (a member lapsed).
    bool namespace_fenced() const { return fence_seen_.load(std::memory_order_acquire); }
    std::size_t pending_purges() const;
    // This instance's member id in the lease set.
    const std::string& member_id() const { return member_; }
    // Leaves the lease set (a clean stop: peers need not purge for this instance).
    net::awaitable<void> goodbye();

    // The local copy is trusted this long after the heartbeat that proved it.
    static constexpr std::chrono::milliseconds trust_window{100};
    static constexpr std::chrono::milliseconds heartbeat_interval{20};
    // How long a lease lasts after each renewal.
    static constexpr std::chrono::milliseconds lease{500};
    // A renewal carries a deadline in Redis time (its send time plus this, through the
    // offset learnt from the server's clock): one executed later, after a frozen path
    // let it through, is refused, so a lease never outlives our estimate of it.
    static constexpr std::chrono::milliseconds renewal_slack{100};
    // How long a member's lapse fences the namespace at most (nothing served from cache
    // by anyone) if it does not come back: a crashed instance never does.
    static constexpr std::chrono::milliseconds default_lapse_fence{10000};
    // Allowance for the Redis server's clock running slower than ours over a lease.
    static constexpr std::chrono::milliseconds clock_margin{50};
    // The longest a write's response waits for its purge while Redis cannot take it,
    // beyond one round trip to Redis: the lease from a renewal that may still be
    // executed until its deadline, the margin, and a retry interval.
    static constexpr std::chrono::milliseconds hold_bound() {
        return lease + renewal_slack + clock_margin + std::chrono::milliseconds(50);
    }

    // The published message for a set of new generations (exposed for tests).
    static std::string encode_message(int db, const std::vector<std::pair<std::string, std::uint64_t>>& generations);

private:
    std::string generation_key(const std::string& category) const;
    void on_message(std::string_view payload);
    net::awaitable<bool> flush_pending();
    net::awaitable<result<std::vector<std::uint64_t>>> run_script(std::string_view script,
                                                                  const std::vector<std::string>& categories);
    struct recorded {
        std::vector<std::uint64_t> generations;
        std::vector<std::string> members;  // live members when the purge was recorded
        bool members_complete = false;     // the member set is old enough to hold every trusted copy
    };
    // Bumps and publishes `categories`, announcing `token` for acknowledgements.
    net::awaitable<result<recorded>> record(const std::vector<std::string>& categories, std::string token);
    void on_ack(std::string_view payload);
    // Runs a script with the lease keys and arguments, then `extra_args`.
    net::awaitable<result<redis_value>> eval(std::string_view script, const std::vector<std::string>& categories,
                                             std::vector<std::string> extra_args);
    net::awaitable<void> retry_loop();
    net::awaitable<void> heartbeat_loop();
    void on_pong(std::string_view token);
    // Steady-clock time after which this instance's lease has certainly run out.
    std::chrono::steady_clock::time_point lease_certainly_over() const;

    std::shared_ptr<redis_client> client_;
    std::string namespace_;
    stats::registry& metrics_;
    std::atomic<bool> subscribed_{false};
    std::atomic<bool> stopped_{false};
    std::atomic<bool> flushing_{false};  // a flush_pending() is in flight
    generation_cache cache_;  // trusted only while subscribed_ and proven (proven_at_)

    using steady = std::chrono::steady_clock;
    // Send time of the last heartbeat whose pong came back (steady ticks; 0: none).
    std::atomic<steady::rep> proven_at_{0};
    const std::string member_;  // this instance's id in the lease set
    const std::chrono::milliseconds lapse_fence_;
    const bool confirm_purges_;
    net::any_io_executor executor_;  // for acknowledgements (set by start())
    // A write waiting for its purge to be applied everywhere.
    struct confirmation {
        explicit confirmation(net::any_io_executor ex) : timer(std::move(ex)) {}
        std::set<std::string> waiting;  // other live members, once the purge is recorded
        std::set<std::string> acked;
        bool members_known = false;
        bool members_complete = false;
        net::steady_timer timer;  // cancelled when every member has acked
        // Every member that might trust an old copy has acknowledged.
        bool complete() const {
            return members_known && members_complete &&
                   std::includes(acked.begin(), acked.end(), waiting.begin(), waiting.end());
        }
    };
    std::mutex confirm_mutex_;
    std::map<std::string, std::shared_ptr<confirmation>> confirmations_;
    std::atomic<std::uint64_t> next_token_{0};
    mutable std::mutex lease_mutex_;
    // Redis time minus our steady clock, at most (ms), and the round trip it was learnt on.
    std::optional<std::int64_t> offset_hi_ms_;
    steady::duration offset_rtt_{};
    steady::time_point renewed_at_{};    // reply time of the last acknowledged renewal
    steady::time_point renewed_sent_{};  // and its send time
    steady::time_point last_renewal_sent_{};
    bool renewal_sent_ = false;  // any renewal was ever sent (so a lease may exist)
    std::atomic<bool> fenced_{false};  // a purge is held: stop renewing so the lease runs out
    std::atomic<bool> fence_seen_{false};
    // Heartbeats whose pong is awaited: token -> send time.
    std::deque<std::pair<std::uint64_t, steady::time_point>> pings_;
    std::uint64_t next_ping_ = 0;
};

}  // namespace cachecar::cache::redis
