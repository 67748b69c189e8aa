// A result handed from any thread to one coroutine, with a deadline.
//
// The waiting coroutine must run on a strand (or a single-threaded context): the
// producer wakes it by posting to the waiter's executor, which then cannot overtake
// the waiter's own async_wait.
//
// The slot itself holds no I/O object and no executor: a producer (a Redis
// connection, a MongoDB worker) may release it after the waiter's io_context is gone.
#pragma once

#include <cachecar/net.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

namespace cachecar::util {

template <class T>
class one_shot {
public:
    // First call wins; later calls are ignored. Safe from any thread.
    void set(T value) {
        std::shared_ptr<net::steady_timer> waiting;
        {
            std::lock_guard lock(mutex_);
            if (value_) return;
            value_.emplace(std::move(value));
            waiting = timer_.lock();
        }
        if (waiting) net::post(waiting->get_executor(), [waiting] { waiting->cancel(); });
    }

    // The value, or nullopt if the deadline passed first. Runs on the caller's executor.
    net::awaitable<std::optional<T>> wait(std::chrono::steady_clock::time_point deadline) {
        // The timer belongs to the waiting coroutine; the slot only refers to it.
        auto timer = std::make_shared<net::steady_timer>(co_await net::this_coro::executor, deadline);
        {
            std::lock_guard lock(mutex_);
            if (value_) co_return std::move(value_);
            timer_ = timer;
        }
        error_code ec;
        co_await timer->async_wait(net::redirect_error(net::use_awaitable, ec));
        std::lock_guard lock(mutex_);
        co_return std::move(value_);
    }

private:
    std::mutex mutex_;
    std::optional<T> value_;
    std::weak_ptr<net::steady_timer> timer_;
};

}  // namespace cachecar::util
