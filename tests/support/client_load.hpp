// Concurrent client load for fault tests: several threads issue requests through
// cachecar while a test breaks something, and every answer is recorded so the test
// can say what clients noticed (statuses, X-Cache, the slowest answer).
#pragma once

#include "support/http_client.hpp"
#include "support/test_origin.hpp"

#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace cachecar::test {

struct load_request {
    std::string method = "GET";
    std::string target;
    std::string body;
};

struct load_outcome {
    std::size_t n = 0;  // the request's number, unique across threads (from 0)
    load_request request;
    unsigned status = 0;  // 0: no answer (refused, reset, or the client timed out)
    std::string x_cache;
    std::chrono::milliseconds took{0};
};

struct load_summary {
    std::vector<load_outcome> outcomes;
    std::size_t total() const { return outcomes.size(); }
    std::size_t count(unsigned status) const;
    std::size_t count_x_cache(const std::string& value) const;
    std::chrono::milliseconds slowest() const;
    // Every status seen, with its count, e.g. "200x310 502x12", for failure messages.
    std::string describe() const;
};

// Writes that broke "at most once, and never lost": a POST target the origin received
// more than once, or one whose client got a 2xx but that never reached the origin.
// POST targets must be unique (e.g. "?id=<n>"). One line per violation; empty if none.
std::vector<std::string> write_violations(const load_summary& s, const std::vector<origin_request>& at_origin);

// The fault suite's usual mix: every 4th request (n % 4 == 3) is a POST of "{}" to
// `write_path` + "?id=<n>"; the others are GETs of `read(n)`.
std::function<load_request(std::size_t n)> reads_and_writes(std::function<std::string(std::size_t n)> read,
                                                            std::string write_path);

class client_load {
public:
    // Makes request number `n` (unique across threads), e.g. to give POSTs distinct ids.
    using request_fn = std::function<load_request(std::size_t n)>;

    // Starts `threads` client threads that send requests to 127.0.0.1:`port` back to
    // back, one connection each, until stop(). A request unanswered after `timeout`
    // is recorded with status 0.
    client_load(std::uint16_t port, int threads, request_fn make,
                std::chrono::milliseconds timeout = std::chrono::seconds(10));
    ~client_load();  // stop()
    client_load(const client_load&) = delete;
    client_load& operator=(const client_load&) = delete;

    std::size_t completed() const { return done_.load(); }
    // Waits until at least `n` requests have completed in total (or `limit` passes).
    bool wait_for(std::size_t n, std::chrono::milliseconds limit = std::chrono::seconds(10)) const;
    // Stops the threads (each finishes its current request) and returns every outcome.
    load_summary stop();

private:
    std::uint16_t port_;
    request_fn make_;
    std::chrono::milliseconds timeout_;
    std::atomic<bool> stop_{false};
    std::atomic<std::size_t> next_{0};
    std::atomic<std::size_t> done_{0};
    std::mutex mutex_;
    std::vector<load_outcome> outcomes_;  // guarded by mutex_
    std::vector<std::thread> threads_;
};

}  // namespace cachecar::test
