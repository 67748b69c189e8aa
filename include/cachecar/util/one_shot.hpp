// A result handed from any thread to one coroutine, with a deadline.
//
// The waiting coroutine must run on a strand (or a single-threaded context): the
// producer wakes it by posting to the waiter's executor, which then cannot overtake
// the waiter's own async_wait.
#pragma once

#include <cachecar/net.hpp>

#include <chrono>
#include <memory>
#include <mutex>
#include <optional>

namespace cachecar::util {

template <class T>
class one_shot : public std::enable_shared_from_this<one_shot<T>> {
public:
    explicit one_shot(net::any_io_executor waiter) : timer_(std::move(waiter)) {}

    // First call wins; later calls are ignored. Safe from any thread.
    void set(T value) {
        {
            std::lock_guard lock(mutex_);
            if (value_) return;
            value_.emplace(std::move(value));
        }
        net::post(timer_.get_executor(), [self = this->shared_from_this()] { self->timer_.cancel(); });
    }

    // The value, or nullopt if the deadline passed first.
    net::awaitable<std::optional<T>> wait(std::chrono::steady_clock::time_point deadline) {
        {
            std::lock_guard lock(mutex_);
            if (value_) co_return std::move(value_);
        }
        timer_.expires_at(deadline);
        error_code ec;
        co_await timer_.async_wait(net::redirect_error(net::use_awaitable, ec));
        std::lock_guard lock(mutex_);
        co_return std::move(value_);
    }

private:
    std::mutex mutex_;
    std::optional<T> value_;
    net::steady_timer timer_;
};

}  // namespace cachecar::util
