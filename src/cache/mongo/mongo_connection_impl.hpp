// Private to src/cache/mongo: the driver-facing half of mongo_connection.
#pragma once

#include <cachecar/cache/mongo/mongo_tier.hpp>
#include <cachecar/util/one_shot.hpp>

#include <mongoc/mongoc.h>

#include <atomic>
#include <condition_variable>
#include <deque>
#include <mutex>
#include <thread>
#include <unordered_map>

namespace cachecar::cache::mongo {

// Owns a bson_t on the stack-like scope; libbson's C API needs explicit destroy.
struct scoped_bson {
    bson_t value = BSON_INITIALIZER;
    scoped_bson() = default;
    scoped_bson(const scoped_bson&) = delete;
    scoped_bson& operator=(const scoped_bson&) = delete;
    ~scoped_bson() { bson_destroy(&value); }
    bson_t* get() { return &value; }
};

struct collection_handle {
    mongoc_collection_t* coll;
    ~collection_handle() { mongoc_collection_destroy(coll); }
};

// Driver errors that mean "the server is not reachable" (as opposed to a command
// the server refused): these trip the breaker.
bool is_unavailable(const bson_error_t& e);
error_code to_error(const bson_error_t& e);

// A failed result<T>, spelled out: result<bool> cannot be built implicitly from an
// error_code (error_code converts to bool too).
template <class T>
result<T> fail(error_code ec) {
    return result<T>(boost::system::in_place_error, ec);
}

struct mongo_connection::impl {
    using job = std::function<void(mongoc_client_t*)>;
    using steady = std::chrono::steady_clock;

    impl(mongo_options o, stats::registry& m, events e) : options(std::move(o)), metrics(m), ev(std::move(e)) {}
    ~impl();

    mongo_options options;
    stats::registry& metrics;
    events ev;
    mongoc_uri_t* uri = nullptr;
    mongoc_client_pool_t* pool = nullptr;

    std::mutex queue_mutex;
    std::condition_variable queue_cv;
    std::deque<job> queue;
    bool stopping = false;
    std::vector<std::thread> workers;

    std::atomic<bool> up{false};
    std::atomic<int> consecutive_failures{0};
    std::atomic<long long> open_until{0};
    std::atomic<int> backoff_ms{100};
    std::atomic<bool> stopped{false};

    std::mutex hits_mutex;
    std::unordered_map<std::string, std::uint64_t> pending_hits;

    bool submit(job j);
    void worker_loop();
    void record_success();
    void record_failure(std::string_view what);
    bool breaker_open() const { return steady::now().time_since_epoch().count() < open_until.load(); }

    // Runs `work` on a worker with a pooled client and delivers its result on the
    // caller's executor (a strand) by the deadline.
    template <class T>
    net::awaitable<result<T>> run(std::function<result<T>(mongoc_client_t*)> work, bool probe = false) {
        if (stopped) co_return fail<T>(make_error_code(mongo_error::unavailable));
        if (!probe && breaker_open()) co_return fail<T>(make_error_code(mongo_error::circuit_open));
        auto slot = std::make_shared<util::one_shot<result<T>>>();
        if (!submit([slot, work = std::move(work)](mongoc_client_t* c) { slot->set(work(c)); })) {
            record_failure("overloaded");
            co_return fail<T>(make_error_code(mongo_error::overloaded));
        }
        // The driver enforces socketTimeoutMS too; the margin lets its own error win.
        auto r = co_await slot->wait(steady::now() + options.timeout + std::chrono::milliseconds(50));
        if (!r) {
            record_failure("timeout");
            co_return fail<T>(make_error_code(mongo_error::timeout));
        }
        if (!*r && ((*r).error() == make_error_code(mongo_error::unavailable) ||
                    (*r).error() == make_error_code(mongo_error::timeout))) {
            record_failure((*r).error() == make_error_code(mongo_error::timeout) ? "timeout" : "unavailable");
        } else {
            record_success();
        }
        co_return std::move(*r);
    }

    std::string entries_collection() const { return options.collection; }
    std::string generations_collection() const { return options.collection + "_generations"; }
};

}  // namespace cachecar::cache::mongo
