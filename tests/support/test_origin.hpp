// A real HTTP backend for tests: listens on 127.0.0.1:0, records every request it
// receives, byte for byte, and answers through a scriptable handler (with optional
// delay). It is also the *hostile* backend of the poisoning and desync tests: a reply
// can be raw bytes of any shape on a connection kept open, followed by more bytes
// later, so tests can check what cachecar makes of a backend that lies about framing.
//
// Faults, for tests of what cachecar does when its backend misbehaves:
// - a hanging backend: a `delay` longer than cachecar's limits.upstream_timeout;
// - a broken answer: origin_response::fault (reset mid-body, raw bytes);
// - a backend that is down: stop() (connections refused) and restart() on the same port.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace cachecar::test {

struct origin_request {
    std::string method;
    std::string target;
    std::string body;
    std::map<std::string, std::string> headers;  // lower-case names; repeated fields joined with ", "
    // Every field line in arrival order, names as received (trailer fields excluded).
    std::vector<std::pair<std::string, std::string>> fields;
    std::vector<std::pair<std::string, std::string>> trailers;  // chunked trailer fields, if any
    std::string raw;  // the exact bytes of the request as they arrived (head, body framing, trailers)
    std::size_t connection = 0;  // which connection it came on (1, 2, ...): tells reuse from a fresh connect
};

enum class origin_fault {
    none,
    // Sends the head (Content-Length of the whole body) and the first half of the body,
    // then resets the connection (SO_LINGER 0 close: the peer sees RST, not FIN).
    reset_mid_body,
    // Sends `body` verbatim as the whole answer (no status line or headers added), then
    // closes: for garbage, invalid status lines or broken chunked encoding.
    raw,
    // Sends `body` verbatim as the whole answer and keeps the connection open for the
    // next request: a backend whose framing lies (bytes past Content-Length, a body
    // after a HEAD or 204 answer) on a connection cachecar may reuse.
    raw_keep_open,
};

struct origin_response {
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds delay{0};  // wait before answering (without blocking other requests)
    origin_fault fault = origin_fault::none;
    // Written on the same connection `late_delay` after the answer, which then stays
    // open: bytes that belong to no request (response desync).
    std::string late_bytes{};
    std::chrono::milliseconds late_delay{0};
};

class test_origin {
public:
    using handler = std::function<origin_response(const origin_request&, std::size_t sequence)>;

    // Default handler: 200, body "<METHOD> <target> #<sequence>" (sequence counts from 1).
    test_origin();
    ~test_origin();

    std::uint16_t port() const;  // the same across stop()/restart()
    void set_handler(handler h);

    // Closes the listener and every open connection (in-flight requests get no answer)
    // and returns once new connections are refused. Idempotent.
    void stop();
    // Listens again on the same port; throws std::system_error if it has been taken.
    void restart();

    std::size_t count() const;
    // Requests whose target starts with `prefix`.
    std::size_t count(const std::string& prefix) const;
    std::vector<origin_request> requests() const;
    void reset_counts();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::test
