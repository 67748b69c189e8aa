// Blocking HTTP/1.1 client for tests (one connection per call unless a session is used).
#pragma once

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace cachecar::test {

struct client_response {
    unsigned status = 0;  // 0: no response (connection failed or closed)
    std::map<std::string, std::string> headers;  // lower-case names
    std::string body;
    std::string header(const std::string& lower_name) const {
        auto it = headers.find(lower_name);
        return it == headers.end() ? std::string{} : it->second;
    }
};

using header_list = std::vector<std::pair<std::string, std::string>>;

client_response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                             const header_list& headers = {}, const std::string& body = {},
                             std::chrono::milliseconds timeout = std::chrono::seconds(10));

inline client_response http_get(std::uint16_t port, const std::string& target, const header_list& headers = {}) {
    return http_request(port, "GET", target, headers);
}

// Sends raw request bytes on a fresh connection and parses the first response (read
// without a body when `head`). status 0: no parseable response.
client_response raw_request(std::uint16_t port, const std::string& bytes, bool head = false,
                            std::chrono::milliseconds timeout = std::chrono::seconds(5));

// Sends raw bytes and returns everything received until the peer closes (or timeout).
std::string raw_exchange(std::uint16_t port, const std::string& bytes,
                         std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A client that vanishes mid-exchange: sends `bytes`, reads until `read_bytes` of the
// answer have arrived (0: reads nothing; stops early on close or after `timeout`),
// then closes the connection; with `reset`, abortively (SO_LINGER 0: the peer sees
// RST). Returns what was read.
std::string send_and_abort(std::uint16_t port, const std::string& bytes, std::size_t read_bytes, bool reset,
                           std::chrono::milliseconds timeout = std::chrono::seconds(5));

// A keep-alive connection for several requests.
class http_session {
public:
    explicit http_session(std::uint16_t port);
    ~http_session();
    client_response request(const std::string& method, const std::string& target, const header_list& headers = {},
                            const std::string& body = {});
    bool is_open() const;

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::test
