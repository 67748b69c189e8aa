// Bodies that stream through cachecar with bounded buffers, in both directions: a
// request body from the client on its way to the backend, a response body from the
// backend on its way to the client. At most one piece of a body (stream_piece_bytes)
// is held at a time per direction; the next piece is read only after the last one was
// written, so a slow reader slows the writer down instead of filling memory.
#pragma once

#include <cachecar/net.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace cachecar::http {

// The most of one body a stream holds at a time.
inline constexpr std::size_t stream_piece_bytes = 64 * 1024;

class body_stream {
public:
    virtual ~body_stream() = default;
    // The next piece, valid until the next call; an empty piece: the body has ended.
    // An error: it cannot be completed (the peer went away, broke the framing, a
    // deadline or a limit passed). Runs on the caller's executor.
    virtual net::awaitable<result<std::string_view>> next() = 0;
    // The body's length when known in advance (Content-Length); nullopt otherwise.
    virtual std::optional<std::uint64_t> size() const = 0;
    // After the end: trailer field lines to pass on ("Name: value\r\n" each), or "".
    virtual std::string_view trailers() const { return {}; }
};

// A body held in memory: a request body cachecar had to read whole (its key reads it).
class memory_body final : public body_stream {
public:
    explicit memory_body(std::string_view data) : data_(data) {}
    net::awaitable<result<std::string_view>> next() override;
    std::optional<std::uint64_t> size() const override { return data_.size(); }
    // Starts over, for a retry on a fresh connection.
    void rewind() { given_ = false; }

private:
    std::string_view data_;
    bool given_ = false;
};

// Reads what is left of `body` into `out`; body_limit if it holds more than `limit`.
net::awaitable<error_code> read_whole(body_stream& body, std::string& out, std::size_t limit);

}  // namespace cachecar::http
