// A non-blocking Redis client: hiredis' protocol formatter and reply parser, with
// Asio doing all socket I/O, so no call ever blocks an I/O thread.
//
// A small pool of pipelined connections (TCP or unix socket), AUTH and SELECT on
// connect, a deadline on every command, reconnection with backoff (capped at 1 s),
// and a circuit breaker: after repeated failures commands fail fast until a probe
// PING succeeds again. hiredis stays inside src/cache/redis.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/net.hpp>
#include <cachecar/parsed.hpp>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::cache::redis {

// Connection settings, parsed from `redis://[user:pass@]host[:port][/db]` or
// `unix:///path/to.sock[?db=N]` (a password may also be given as `?password=`).
struct redis_options {
    std::string host = "127.0.0.1";
    std::uint16_t port = 6379;
    std::string unix_path;  // non-empty: connect to this socket instead of host:port
    std::string user;
    std::string password;
    int db = 0;
    std::chrono::milliseconds timeout{50};
    unsigned pool = 8;
};
parsed<redis_options> parse_redis_url(std::string_view url);

// A decoded reply.
struct redis_value {
    enum class kind { nil, string, status, error, integer, array } type = kind::nil;
    std::string str;           // string, status, error
    long long integer = 0;
    std::vector<redis_value> elements;

    bool is_error() const { return type == kind::error; }
};

enum class redis_error {
    timeout = 1,     // no reply within the deadline
    disconnected,    // the connection failed or is (re)connecting
    circuit_open,    // recent failures: not even trying (fails fast)
    reply_error,     // Redis answered -ERR
    protocol,        // unparseable reply
    overloaded,      // too many commands in flight
};
const boost::system::error_category& redis_category();
error_code make_error_code(redis_error e);

// Observers for the tier's metrics; any may be empty.
struct redis_events {
    std::function<void(std::string_view what)> on_failure;  // "timeout", "disconnected", ...
    std::function<void(bool up)> on_state_change;
};

class redis_client : public std::enable_shared_from_this<redis_client> {
public:
    // Does not connect yet; call start().
    static std::shared_ptr<redis_client> create(net::any_io_executor ex, redis_options options,
                                                redis_events events = {});
    ~redis_client();

    void start();
    // Closes every connection; pending commands fail with `disconnected`.
    void stop();

    // Sends one command and waits for its reply (or the deadline). Completes on the
    // caller's executor, which must run its handlers one at a time (a strand, or an
    // io_context run by a single thread, as http::server's sessions use). A Redis
    // error reply is a value (type error), not an error_code, except through
    // `checked()` below.
    net::awaitable<result<redis_value>> command(std::vector<std::string> argv_list);
    // Several commands written together (one round trip); replies in order.
    net::awaitable<result<std::vector<redis_value>>> pipeline(std::vector<std::vector<std::string>> commands);

    // Subscribes to `channel` on a dedicated connection. `on_message` gets each
    // payload; `on_active(true)` once the subscription is confirmed (again, after a
    // reconnect), `on_active(false)` when it is lost and messages may be missed.
    // `on_pong(token)` gets the token of each PING answered on that connection (see
    // ping_subscriptions). Callbacks run on the subscription's strand. Call after start().
    void subscribe(std::string channel, std::function<void(std::string_view)> on_message,
                   std::function<void(bool)> on_active, std::function<void(std::string_view)> on_pong = {});
    // Sends `PING token` on every subscription connection that has an `on_pong`.
    // Redis answers it in order with the messages, so its pong proves that every
    // message published before the PING reached the server has been delivered.
    // Nothing is sent while disconnected.
    void ping_subscriptions(std::string token);
    // Drops and re-opens the subscription connections (one has stopped answering).
    void reset_subscriptions();

    // True while connected and the breaker is closed.
    bool up() const { return up_.load(std::memory_order_acquire); }
    const redis_options& options() const { return options_; }

    struct connection;

private:
    redis_client(net::any_io_executor ex, redis_options options, redis_events events);
    void record_success();
    void record_failure(std::string_view what);
    net::awaitable<void> probe_loop();
    std::shared_ptr<connection> pick();

    net::any_io_executor executor_;
    redis_options options_;
    redis_events events_;
    std::vector<std::shared_ptr<connection>> connections_;
    std::vector<std::shared_ptr<connection>> subscribers_;
    std::atomic<std::size_t> next_{0};
    std::atomic<bool> up_{false};
    std::atomic<int> consecutive_failures_{0};
    std::atomic<bool> stopped_{false};
    std::atomic<long long> open_until_{0};  // steady_clock ticks; breaker open before this
    std::atomic<int> backoff_ms_{100};
};

// Builds a command's argument list. Use this rather than a braced list inside
// coroutines: GCC 12 miscompiles initializer_list temporaries in co_await expressions.
template <class... Args>
std::vector<std::string> args(Args&&... a) {
    std::vector<std::string> out;
    out.reserve(sizeof...(a));
    (out.emplace_back(std::forward<Args>(a)), ...);
    return out;
}

// Formats `args` as a RESP command with hiredis.
std::string format_command(const std::vector<std::string>& argv_list);

}  // namespace cachecar::cache::redis

namespace boost::system {
template <>
struct is_error_code_enum<cachecar::cache::redis::redis_error> : std::true_type {};
}  // namespace boost::system
