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

#include <atomic>
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
    // The body's whole size; `body` (and `raw`) keep only its first record_body_bytes
    // (test_origin::set_record_limit), so gigabyte uploads cost the origin nothing.
    std::uint64_t body_bytes = 0;
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
    // Streaming answers (instead of `body`):
    // - `parts`: Transfer-Encoding: chunked, one chunk per part, each written (and so
    //   flushed) on its own; before part i >= 1 the origin waits until gate(i) holds
    //   (polled every millisecond, for up to 10 s, then it gives up and closes): a test
    //   lets part i go only once its client has received part i - 1, so a proxy that
    //   buffers deadlocks and fails by that deadline, never by a timing;
    //   `trailers` ("Name: value\r\n" lines) follow the last chunk;
    // - `generated_bytes`: a body of that many bytes of a repeating pattern
    //   (generated_byte(i)), with Content-Length, written 64 KiB at a time;
    // - `websocket_echo`: accept the request's WebSocket upgrade and echo every message.
    std::vector<std::string> parts{};
    std::function<bool(std::size_t)> gate{};
    std::string trailers{};
    std::uint64_t generated_bytes = 0;
    bool websocket_echo = false;
};

// Byte i of a generated body.
inline char generated_byte(std::uint64_t i) { return static_cast<char>('a' + (i * 7 + i / 4096) % 26); }

// A backend for "a purge lands during a revalidation" tests: GETs get 200 "read #N" with
// ETag "p" and Cache-Control: no-cache (so every reuse is revalidated); a conditional GET
// sets `conditional_seen` and is answered 304 (fresh for 10 minutes) only after `delay`,
// leaving the test time to purge; POSTs (the writes that purge) get 200.
std::function<origin_response(const origin_request&, std::size_t)> slow_revalidation_origin(
    std::atomic<bool>& conditional_seen, std::chrono::milliseconds delay);

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

    // How much of each request body (and raw request) is recorded; the rest is counted
    // and discarded. Default 16 MiB.
    void set_record_limit(std::size_t bytes);
    // Requests currently being received or answered (for tests that hold connections).
    std::size_t active() const;
    // Request body bytes received so far, counted as they arrive (before their request
    // is complete): a test can wait for part of an upload to reach the origin.
    std::uint64_t body_bytes_received() const;
    // While held, request bodies are not read (heads still are): an upload backs up into
    // whatever sits between the client and here, which is what a memory test measures.
    void hold_request_bodies(bool hold);

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
