// Keep-alive connections to the backend.
//
// send() completes on the caller's executor. Every request has a deadline (the
// configured upstream_timeout) covering connect, write and the whole response. Idle
// connections are reused, most recent first, for up to max_idle_age; older ones are
// closed when a connection comes back to the pool. A reused connection that turns out
// to be closed before any response byte arrives is replaced by a fresh one, but only
// for idempotent methods: a POST is never sent twice.
//
// Response desync: bytes a backend writes past a response's framing must never become
// the next request's answer. A connection is not reused after a HEAD, a 204 or 304
// answer, or interim responses (a body may still follow any of them), nor when bytes
// past the answer were already read; on give-back and again on take, a connection
// with unread bytes (or closed) is dropped. What remains, as in nginx: extra bytes
// that arrive only after the next request has been written on the connection.
// Responses whose head Beast would accept but a client may read differently (obs-fold,
// bare CR/LF, control characters, Content-Length with Transfer-Encoding, codings other
// than chunked, statuses outside 100-599, an unsolicited 101, more than 8 interim
// responses) fail as bad_response (502).
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/net.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <memory>
#include <mutex>

namespace cachecar::http {

enum class upstream_error {
    connect_failed = 1,  // resolve or connect failed: nothing was sent
    timeout,             // the deadline passed
    io_failed,           // the connection failed after the request was (partly) sent
    bad_response,        // unparseable response or one over max_response_bytes
    shutting_down,
};
const boost::system::error_category& upstream_category();
error_code make_error_code(upstream_error e);

struct upstream_options {
    config::endpoint target;
    config::duration timeout = std::chrono::seconds(30);
    std::size_t max_response_bytes = 64u * 1024u * 1024u;
    std::size_t max_idle_connections = 256;
    // Idle connections older than this are dropped before use: backends close idle
    // keep-alive connections (Node.js after 5 s), and a request sent on one then fails.
    config::duration max_idle_age = std::chrono::seconds(4);
};

class upstream_pool {
public:
    upstream_pool(net::any_io_executor ex, upstream_options options);
    ~upstream_pool();

    // `req` is sent as given (the caller prepares headers). HEAD responses are read
    // without a body.
    net::awaitable<result<response>> send(request req);

    void close_idle();
    const net::any_io_executor& executor() const { return executor_; }
    std::size_t idle_count() const;

private:
    struct attempt_outcome {
        result<response> res = error_code{};
        bool got_bytes = false;  // some response bytes arrived (so never retry)
        bool reusable = false;   // the connection may go back to the pool
    };
    // One try on one connection; runs on that connection's strand.
    net::awaitable<attempt_outcome> attempt(beast::tcp_stream& stream, const request& req,
                                            std::chrono::steady_clock::time_point deadline, bool fresh);
    std::unique_ptr<beast::tcp_stream> take_idle();
    void give_back(std::unique_ptr<beast::tcp_stream> s);
    net::awaitable<result<response>> exchange(beast::tcp_stream& s, const request& req,
                                              std::chrono::steady_clock::time_point deadline, bool& got_bytes,
                                              bool& reusable);
    static constexpr std::size_t max_response_head_bytes = 64 * 1024;

    net::any_io_executor executor_;
    upstream_options options_;
    mutable std::mutex mutex_;
    std::deque<std::pair<std::unique_ptr<beast::tcp_stream>, std::chrono::steady_clock::time_point>> idle_;
};

}  // namespace cachecar::http

namespace boost::system {
template <>
struct is_error_code_enum<cachecar::http::upstream_error> : std::true_type {};
}  // namespace boost::system
