// Request coalescing: concurrent misses on one key make one upstream request.
//
// The first caller for a key becomes the leader and runs the fetch; callers arriving
// while it runs wait (bounded by their deadline) and receive the same shared result.
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
#include <vector>

namespace cachecar::cache {

template <class T>
class coalescer {
public:
    using value_ptr = std::shared_ptr<const T>;

    struct outcome {
        value_ptr value;
        bool led = false;  // true: this caller ran the fetch itself
    };

    // Runs `fetch` unless an identical fetch is in flight, in which case waits for its
    // result until `deadline`. A waiter whose deadline passes, or whose leader
    // produced a result that `shareable` rejects, runs `fetch` itself. Completes on
    // the caller's executor, which must be a strand (or a single-threaded context) so
    // the leader's wake-up cannot overtake the waiter's async_wait. `fetch` must not
    // throw.
    template <class Fetch, class Shareable>
    net::awaitable<outcome> run(std::string key, std::chrono::steady_clock::time_point deadline, Fetch fetch,
                                Shareable shareable) {
        std::shared_ptr<flight> joined;
        std::shared_ptr<net::steady_timer> timer;
        const auto ex = co_await net::this_coro::executor;
        {
            std::lock_guard lock(mutex_);
            auto it = flights_.find(key);
            if (it == flights_.end()) {
                joined = std::make_shared<flight>();
                flights_.emplace(key, joined);
            } else {
                joined = it->second;
                timer = std::make_shared<net::steady_timer>(ex);
                timer->expires_at(deadline);
                std::lock_guard flight_lock(joined->mutex);
                joined->waiters.push_back(timer);
            }
        }

        if (!timer) {  // leader
            // The guard completes the flight even if this coroutine is destroyed
            // mid-fetch, so waiters never wait on a leader that is gone.
            flight_guard guard{this, key, joined};
            value_ptr value = co_await fetch();
            guard.complete(value);
            co_return outcome{std::move(value), true};
        }

        error_code ec;
        co_await timer->async_wait(net::redirect_error(net::use_awaitable, ec));
        value_ptr value;
        {
            std::lock_guard flight_lock(joined->mutex);
            if (joined->done) value = joined->value;
        }
        if (value && shareable(*value)) {
            co_return outcome{std::move(value), false};
        }
        // Timed out, leader failed to produce a shareable value: fetch independently.
        // Bind the awaited value to a named local first: GCC 12 destroys a temporary
        // produced by co_await inside a braced initializer one time too many.
        value_ptr own = co_await fetch();
        co_return outcome{std::move(own), true};
    }

    std::size_t in_flight() const {
        std::lock_guard lock(mutex_);
        return flights_.size();
    }

private:
    struct flight {
        std::mutex mutex;
        bool done = false;
        value_ptr value;
        std::vector<std::shared_ptr<net::steady_timer>> waiters;
    };
    struct flight_guard {
        coalescer* owner;
        std::string key;
        std::shared_ptr<flight> f;
        bool completed = false;

        void complete(value_ptr value) {
            completed = true;
            std::vector<std::shared_ptr<net::steady_timer>> waiters;
            {
                std::lock_guard lock(owner->mutex_);
                owner->flights_.erase(key);
                std::lock_guard flight_lock(f->mutex);
                f->value = std::move(value);
                f->done = true;
                waiters.swap(f->waiters);
            }
            // Wake each waiter on its own executor: timers are not thread-safe.
            for (auto& t : waiters) net::post(t->get_executor(), [t] { t->cancel(); });
        }
        ~flight_guard() {
            if (!completed) complete(nullptr);
        }
    };

    mutable std::mutex mutex_;
    std::unordered_map<std::string, std::shared_ptr<flight>> flights_;
};

}  // namespace cachecar::cache
