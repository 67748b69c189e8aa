// A real HTTP backend for tests: listens on 127.0.0.1:0, records every request it
// receives and answers through a scriptable handler (with optional delay).
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
};

struct origin_response {
    unsigned status = 200;
    std::vector<std::pair<std::string, std::string>> headers;
    std::string body;
    std::chrono::milliseconds delay{0};  // wait before answering (without blocking other requests)
};

class test_origin {
public:
    using handler = std::function<origin_response(const origin_request&, std::size_t sequence)>;

    // Default handler: 200, body "<METHOD> <target> #<sequence>" (sequence counts from 1).
    test_origin();
    ~test_origin();

    std::uint16_t port() const;
    void set_handler(handler h);

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
