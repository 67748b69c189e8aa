// Keep-alive connections to the backend, and the exchanges made on them.
//
// open() sends a request (its body streamed from a body_stream, or the one it holds)
// and returns once the response head has arrived; the response body is then read
// piece by piece from the exchange (a body_stream), at the reader's pace. Interim
// responses (1xx other than 101) go to a hook on the way. The connection returns to
// the pool when the exchange is destroyed, and only if its body was read to the end and
// nothing can follow it; otherwise it is closed (a client that went away mid-download
// never leaves a dirty connection behind).
//
// Deadlines: connect, request and response head within `timeout` of open(); then each
// body piece within `timeout` of the last. Idle connections are reused, most recent
// first, for up to max_idle_age; older ones are closed when a connection comes back. A
// reused connection that turns out to be closed before any response byte arrives is
// replaced by a fresh one, only for idempotent methods and only if no byte of a streamed
// body was taken yet: a POST is never sent twice, a body never replayed half-sent.
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
//
// Upgrades: a request that asks for one (Upgrade + Connection: upgrade) goes out on a
// connection of its own, made on the caller's executor, so that after a 101 the
// caller can splice it with its client (take_tunnel).
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/body.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/http/server.hpp>
#include <cachecar/net.hpp>

#include <chrono>
#include <cstddef>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>

namespace cachecar::http {

enum class upstream_error {
    connect_failed = 1,  // resolve or connect failed: nothing was sent
    timeout,             // a deadline passed
    io_failed,           // the connection failed after the request was (partly) sent
    bad_response,        // unparseable response, or one framed ambiguously
    shutting_down,
    too_large,           // send(): the body is over the given limit
};
const boost::system::error_category& upstream_category();
error_code make_error_code(upstream_error e);

struct upstream_options {
    config::endpoint target;
    config::duration timeout = std::chrono::seconds(30);
    std::size_t max_idle_connections = 256;
    // Idle connections older than this are dropped before use: backends close idle
    // keep-alive connections (Node.js after 5 s), and a request sent on one then fails.
    config::duration max_idle_age = std::chrono::seconds(4);
    // Each connection on its own strand: needed when more than one thread runs the
    // executor (a pooled connection serves requests of sessions on any thread).
    bool strands = true;
};

class upstream_pool;

// One request and its response, on one connection.
class upstream_exchange final : public body_stream {
public:
    ~upstream_exchange() override;
    // The final response's head (interim responses went to the hook).
    const beast::http::response_header<>& head() const { return head_; }
    // Whether the response has a body to read (not for HEAD, 1xx, 204, 304, 101).
    bool has_body() const { return has_body_; }
    // The response body, piece by piece.
    net::awaitable<result<std::string_view>> next() override;
    std::optional<std::uint64_t> size() const override;
    // After the body: its trailer fields, those that may be passed on.
    std::string_view trailers() const override { return trailers_; }
    // Whether the body has been read to its end (the last piece may still be in hand).
    bool complete() const;
    // After a 101 for an upgrade request: the connection, to be spliced with the client.
    std::unique_ptr<tunnel_end> take_tunnel();

private:
    friend class upstream_pool;
    struct impl;
    explicit upstream_exchange(std::unique_ptr<impl> i);
    std::unique_ptr<impl> impl_;
    beast::http::response_header<> head_;
    bool has_body_ = false;
    std::string trailers_;
};

class upstream_pool : public std::enable_shared_from_this<upstream_pool> {
public:
    upstream_pool(net::any_io_executor ex, upstream_options options);
    ~upstream_pool();

    // Called with each interim (1xx) response head that arrives before the final one.
    using interim_hook = std::function<net::awaitable<void>(const beast::http::response_header<>&)>;

    // Sends `req` (the caller prepared its fields) and waits for the response head. With
    // `body`, the request body is streamed from it (Content-Length when its size is known,
    // chunked otherwise) and `req`'s own body is ignored; without, `req` is sent as is.
    // HEAD responses are read without a body. Completes on the caller's executor.
    net::awaitable<result<std::unique_ptr<upstream_exchange>>> open(request req, body_stream* body = nullptr,
                                                                    interim_hook on_interim = {});
    // The whole response in memory (refreshes, tests): too_large beyond `max_body_bytes`.
    net::awaitable<result<response>> send(request req, std::size_t max_body_bytes = std::size_t{64} << 20);

    void close_idle();
    const net::any_io_executor& executor() const { return executor_; }
    std::size_t idle_count() const;

private:
    friend class upstream_exchange;
    std::unique_ptr<beast::tcp_stream> take_idle();
    void give_back(std::unique_ptr<beast::tcp_stream> s);

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
