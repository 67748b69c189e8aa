// A plain blocking TCP connection for tests that must see bytes as they arrive (a
// streamed response, an interim 100 before a body is sent), or send a request in
// parts: no HTTP library in between.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <string>

namespace cachecar::test {

class raw_connection {
public:
    explicit raw_connection(std::uint16_t port);  // connects to 127.0.0.1:port
    ~raw_connection();
    raw_connection(const raw_connection&) = delete;
    raw_connection& operator=(const raw_connection&) = delete;

    bool connected() const { return fd_ >= 0; }
    bool send(const std::string& bytes);
    // Reads what arrives within `timeout` (at least one byte unless the peer closed or
    // the time ran out); appends it to received(). False: closed, failed or timed out.
    bool read_some(std::chrono::milliseconds timeout);
    // Reads until `done(received())` holds; false if it never does within `timeout`.
    bool read_until(const std::function<bool(const std::string&)>& done, std::chrono::milliseconds timeout);
    // Reads until the peer closes (or `timeout`); true if it closed.
    bool read_to_close(std::chrono::milliseconds timeout);
    const std::string& received() const { return received_; }
    void clear() { received_.clear(); }
    // A small receive buffer, so a reader that stops reading stops the sender quickly.
    void shrink_receive_buffer(int bytes);
    void close();

private:
    int fd_ = -1;
    bool peer_closed_ = false;
    std::string received_;
};

// The body of a chunked message (the part after the head), de-chunked; `trailers` gets
// the trailer section's field lines. False if `chunked` is not complete and well formed.
bool dechunk(const std::string& chunked, std::string& body, std::string* trailers = nullptr);

}  // namespace cachecar::test
