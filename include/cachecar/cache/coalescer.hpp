// Request coalescing: concurrent misses on one key make one upstream request.
//
// The first caller for a key becomes the leader and runs the fetch; callers arriving
// while it runs wait (bounded by their deadline) and receive the same shared result,
// which the leader may publish before its own work ends (join / publish / wait), or
// run() does all of it for a fetch whose result is one value.
// Callers must include in the key everything that makes results non-interchangeable:
// the cache key (which already covers the credential) and the category generations
// observed before fetching, so a request that starts after a purge never joins a
// fetch that began before it.
#pragma once

#include <cachecar/net.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace cachecar::cache {

template <class T>
class coalescer {
    struct flight;
    struct state;

public:
    using value_ptr = std::shared_ptr<const T>;

    // A caller's place in a flight: the leader publishes, followers wait.
    class ticket {
    public:
        ticket() = default;
        ticket(ticket&& o) noexcept { *this = std::move(o); }
        ticket& operator=(ticket&& o) noexcept {
            if (this != &o) {
                abandon();
                owner_ = std::move(o.owner_);
                key_ = std::move(o.key_);
                flight_ = std::move(o.flight_);
                leader_ = std::exchange(o.leader_, false);
                published_ = std::exchange(o.published_, false);
            }
            return *this;
        }
        ticket(const ticket&) = delete;
        ticket& operator=(const ticket&) = delete;
        // A leader that never published (it failed, or its coroutine was destroyed)
        // publishes null, so followers never wait on a leader that is gone.
        ~ticket() { abandon(); }

        bool leader() const { return leader_; }
        // Leader: hands `value` to every follower, now and later ones of this flight;
        // the key is free for a new flight from then on. Only the first call counts. May
        // come long before the leader's own work ends (a response whose head says it will
        // not be stored releases the followers at once). Thread-safe.
        void publish(value_ptr value) {
            if (!leader_ || published_) return;
            published_ = true;
            std::vector<std::shared_ptr<net::steady_timer>> waiters;
            {
                std::lock_guard lock(owner_->mutex);
                if (auto it = owner_->flights.find(key_); it != owner_->flights.end() && it->second == flight_)
                    owner_->flights.erase(it);
                std::lock_guard flight_lock(flight_->mutex);
                flight_->value = std::move(value);
                flight_->done = true;
                waiters.swap(flight_->waiters);
            }
            // Wake each waiter on its own executor: timers are not thread-safe.
            for (auto& t : waiters) net::post(t->get_executor(), [t] { t->cancel(); });
        }
        // Follower: the leader's value, or null if it published none or `deadline`
        // passed first. Completes on the caller's executor, which must be a strand (or
        // a single-threaded context) so the wake-up cannot overtake the wait.
        net::awaitable<value_ptr> wait(std::chrono::steady_clock::time_point deadline) {
            auto timer = std::make_shared<net::steady_timer>(co_await net::this_coro::executor);
            timer->expires_at(deadline);
            {
                std::lock_guard flight_lock(flight_->mutex);
                if (flight_->done) co_return flight_->value;
                flight_->waiters.push_back(timer);
            }
            error_code ec;
            co_await timer->async_wait(net::redirect_error(net::use_awaitable, ec));
            std::lock_guard flight_lock(flight_->mutex);
            co_return flight_->done ? flight_->value : nullptr;
        }

    private:
        friend class coalescer;
        void abandon() {
            if (leader_ && !published_) publish(nullptr);
        }
        // Shared, not the coalescer itself: a ticket held by a response still streaming may
        // be destroyed after the coalescer, when the I/O context is torn down.
        std::shared_ptr<typename coalescer::state> owner_;
        std::string key_;
        std::shared_ptr<flight> flight_;
        bool leader_ = false;
        bool published_ = false;
    };

    // Joins the flight for `key`: the first caller (no flight in progress) leads.
    ticket join(std::string key) {
        ticket t;
        t.owner_ = state_;
        std::lock_guard lock(state_->mutex);
        auto it = state_->flights.find(key);
        if (it == state_->flights.end()) {
            t.flight_ = std::make_shared<flight>();
            state_->flights.emplace(key, t.flight_);
            t.leader_ = true;
        } else {
            t.flight_ = it->second;
        }
        t.key_ = std::move(key);
        return t;
    }

    struct outcome {
        value_ptr value;
        bool led = false;  // true: this caller ran the fetch itself
    };

    // Runs `fetch` unless an identical fetch is in flight, in which case waits for its
    // result until `deadline`. A waiter whose deadline passes, or whose leader
    // produced a result that `shareable` rejects, runs `fetch` itself. `fetch` must not
    // throw. The whole of join / publish / wait for callers whose result is one value.
    template <class Fetch, class Shareable>
    net::awaitable<outcome> run(std::string key, std::chrono::steady_clock::time_point deadline, Fetch fetch,
                                Shareable shareable) {
        ticket t = join(std::move(key));
        if (t.leader()) {
            value_ptr value = co_await fetch();
            t.publish(value);
            co_return outcome{std::move(value), true};
        }
        value_ptr value = co_await t.wait(deadline);
        if (value && shareable(*value)) co_return outcome{std::move(value), false};
        // Timed out, leader failed to produce a shareable value: fetch independently.
        // Bind the awaited value to a named local first: GCC 12 destroys a temporary
        // produced by co_await inside a braced initializer one time too many.
        value_ptr own = co_await fetch();
        co_return outcome{std::move(own), true};
    }

    std::size_t in_flight() const {
        std::lock_guard lock(state_->mutex);
        return state_->flights.size();
    }

private:
    struct flight {
        std::mutex mutex;
        bool done = false;
        value_ptr value;
        std::vector<std::shared_ptr<net::steady_timer>> waiters;
    };
    struct state {
        std::mutex mutex;
        std::unordered_map<std::string, std::shared_ptr<flight>> flights;
    };
    std::shared_ptr<state> state_ = std::make_shared<state>();
};

}  // namespace cachecar::cache
