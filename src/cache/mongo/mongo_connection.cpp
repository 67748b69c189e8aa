#include "cache/mongo/mongo_connection_impl.hpp"
#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>

#include <cstdlib>

namespace cachecar::cache::mongo {

namespace {

#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"  // by design: categories are never deleted
class mongo_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "cachecar.mongo"; }
    std::string message(int ev) const override {
        switch (static_cast<mongo_error>(ev)) {
        case mongo_error::timeout: return "mongodb operation timed out";
        case mongo_error::unavailable: return "mongodb unavailable";
        case mongo_error::circuit_open: return "mongodb circuit breaker open";
        case mongo_error::overloaded: return "too many mongodb operations queued";
        case mongo_error::server_error: return "mongodb refused the operation";
        }
        return "mongodb error";
    }
};
#pragma GCC diagnostic pop

void route_driver_log(mongoc_log_level_t level, const char* domain, const char* message, void*) {
    // The driver is chatty at debug levels; keep what an operator needs.
    if (level <= MONGOC_LOG_LEVEL_WARNING) logging::get("mongo")->warn("mongoc [{}]: {}", domain, message);
}

void init_driver_once() {
    static std::once_flag once;
    std::call_once(once, [] {
        // The driver's shared-memory counters leave a /dev/shm/mongoc-<pid> file per
        // process (even `cachecar --check`); cachecar exports its own metrics.
        ::setenv("MONGOC_DISABLE_SHM", "1", 0);
        mongoc_init();
        mongoc_log_set_handler(route_driver_log, nullptr);
    });
}

long long ticks(std::chrono::steady_clock::time_point t) { return t.time_since_epoch().count(); }

}  // namespace

const boost::system::error_category& mongo_category() {
    static const mongo_category_impl instance;
    return instance;
}
error_code make_error_code(mongo_error e) { return {static_cast<int>(e), mongo_category()}; }

bool is_unavailable(const bson_error_t& e) {
    return e.domain == MONGOC_ERROR_SERVER_SELECTION || e.domain == MONGOC_ERROR_STREAM ||
           e.domain == MONGOC_ERROR_CLIENT;
}

error_code to_error(const bson_error_t& e) {
    if (e.domain == MONGOC_ERROR_STREAM && e.code == MONGOC_ERROR_STREAM_SOCKET) return make_error_code(mongo_error::timeout);
    return make_error_code(is_unavailable(e) ? mongo_error::unavailable : mongo_error::server_error);
}

parsed<bool> validate_uri(const std::string& uri) {
    init_driver_once();
    bson_error_t error;
    mongoc_uri_t* parsed_uri = mongoc_uri_new_with_error(uri.c_str(), &error);
    if (!parsed_uri) return parsed<bool>::fail(error.message);
    mongoc_uri_destroy(parsed_uri);
    return parsed<bool>::ok(true);
}

mongo_connection::impl::~impl() {
    if (pool) mongoc_client_pool_destroy(pool);
    if (uri) mongoc_uri_destroy(uri);
}

bool mongo_connection::impl::submit(job j) {
    {
        std::lock_guard lock(queue_mutex);
        if (stopping || queue.size() >= options.max_queue) return false;
        queue.push_back(std::move(j));
    }
    queue_cv.notify_one();
    return true;
}

void mongo_connection::impl::worker_loop() {
    for (;;) {
        job j;
        {
            std::unique_lock lock(queue_mutex);
            queue_cv.wait(lock, [&] { return stopping || !queue.empty(); });
            if (stopping && queue.empty()) return;
            j = std::move(queue.front());
            queue.pop_front();
        }
        // The pool holds one client per worker, so this never waits.
        mongoc_client_t* client = mongoc_client_pool_pop(pool);
        j(client);
        mongoc_client_pool_push(pool, client);
    }
}

void mongo_connection::impl::record_success() {
    consecutive_failures = 0;
    backoff_ms = 100;
    open_until = 0;
    if (!up.exchange(true)) {
        logging::get("mongo")->info("mongo: up ({})", options.database);
        if (ev.on_state_change) ev.on_state_change(true);
    }
}

void mongo_connection::impl::record_failure(std::string_view what) {
    if (ev.on_failure) ev.on_failure(what);
    const int failures = ++consecutive_failures;
    if (failures >= 3 || !up) {
        const int backoff = backoff_ms.load();
        open_until = ticks(steady::now() + std::chrono::milliseconds(backoff));
        backoff_ms = std::min(backoff * 2, 1000);
        if (up.exchange(false) || failures == 3) {
            logging::get("mongo")->warn("mongo: marked down after {} ({} consecutive failures)", what, failures);
            if (ev.on_state_change) ev.on_state_change(false);
        }
    }
}

std::shared_ptr<mongo_connection> mongo_connection::create(mongo_options options, stats::registry& metrics,
                                                           events ev) {
    init_driver_once();
    auto i = std::make_unique<impl>(std::move(options), metrics, std::move(ev));
    bson_error_t error;
    i->uri = mongoc_uri_new_with_error(i->options.uri.c_str(), &error);
    if (!i->uri) throw std::invalid_argument(std::string("tiers.mongo.uri: ") + error.message);
    // A dead server must fail fast: every wait is bounded by the tier's timeout
    // unless the operator set these options in the URI.
    const auto ms = static_cast<int32_t>(i->options.timeout.count());
    if (mongoc_uri_get_option_as_int32(i->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, -1) < 0)
        mongoc_uri_set_option_as_int32(i->uri, MONGOC_URI_SERVERSELECTIONTIMEOUTMS, std::max(ms, 100));
    if (mongoc_uri_get_option_as_int32(i->uri, MONGOC_URI_CONNECTTIMEOUTMS, -1) < 0)
        mongoc_uri_set_option_as_int32(i->uri, MONGOC_URI_CONNECTTIMEOUTMS, std::max(ms, 100));
    if (mongoc_uri_get_option_as_int32(i->uri, MONGOC_URI_SOCKETTIMEOUTMS, -1) < 0)
        mongoc_uri_set_option_as_int32(i->uri, MONGOC_URI_SOCKETTIMEOUTMS, std::max(ms, 100));
    mongoc_uri_set_option_as_int32(i->uri, MONGOC_URI_HEARTBEATFREQUENCYMS, 500);
    i->pool = mongoc_client_pool_new(i->uri);
    if (!i->pool) throw std::invalid_argument("tiers.mongo.uri: cannot create a client pool");
    mongoc_client_pool_set_error_api(i->pool, MONGOC_ERROR_API_VERSION_2);
    mongoc_client_pool_max_size(i->pool, std::max(1u, i->options.workers));
    mongoc_client_pool_set_appname(i->pool, "cachecar");
    return std::shared_ptr<mongo_connection>(new mongo_connection(std::move(i)));
}

mongo_connection::mongo_connection(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

mongo_connection::~mongo_connection() { stop(); }

bool mongo_connection::up() const { return impl_->up.load(); }
const mongo_options& mongo_connection::options() const { return impl_->options; }

void mongo_connection::stop() {
    if (impl_->stopped.exchange(true)) return;
    {
        std::lock_guard lock(impl_->queue_mutex);
        impl_->stopping = true;
    }
    impl_->queue_cv.notify_all();
    for (auto& t : impl_->workers) {
        if (t.joinable()) t.join();
    }
}

namespace {

result<bool> ping(mongoc_client_t* client) {
    scoped_bson cmd;
    BSON_APPEND_INT32(cmd.get(), "ping", 1);
    bson_error_t error;
    scoped_bson reply;
    if (!mongoc_client_command_simple(client, "admin", cmd.get(), nullptr, reply.get(), &error)) return fail<bool>(to_error(error));
    return true;
}

result<bool> create_indexes(mongoc_client_t* client, const std::string& db, const std::string& coll) {
    collection_handle c{mongoc_client_get_collection(client, db.c_str(), coll.c_str())};
    scoped_bson cmd;
    BSON_APPEND_UTF8(cmd.get(), "createIndexes", coll.c_str());
    bson_t indexes;
    BSON_APPEND_ARRAY_BEGIN(cmd.get(), "indexes", &indexes);
    {
        bson_t idx, key;
        BSON_APPEND_DOCUMENT_BEGIN(&indexes, "0", &idx);
        BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
        BSON_APPEND_INT32(&key, "expires_at", 1);
        bson_append_document_end(&idx, &key);
        BSON_APPEND_UTF8(&idx, "name", "expires_at_ttl");
        BSON_APPEND_INT32(&idx, "expireAfterSeconds", 0);
        bson_append_document_end(&indexes, &idx);
    }
    for (const auto& [i, field] : {std::pair{"1", "categories"}, std::pair{"2", "ns"}}) {
        bson_t idx, key;
        BSON_APPEND_DOCUMENT_BEGIN(&indexes, i, &idx);
        BSON_APPEND_DOCUMENT_BEGIN(&idx, "key", &key);
        BSON_APPEND_INT32(&key, field, 1);
        bson_append_document_end(&idx, &key);
        BSON_APPEND_UTF8(&idx, "name", field);
        bson_append_document_end(&indexes, &idx);
    }
    bson_append_array_end(cmd.get(), &indexes);
    bson_error_t error;
    scoped_bson reply;
    if (!mongoc_collection_write_command_with_opts(c.coll, cmd.get(), nullptr, reply.get(), &error)) return fail<bool>(to_error(error));
    return true;
}

// Writes accumulated hit counts: one update command with one statement per key.
result<bool> flush_hits(mongoc_client_t* client, const std::string& db, const std::string& coll,
                        const std::vector<std::pair<std::string, std::uint64_t>>& hits) {
    collection_handle c{mongoc_client_get_collection(client, db.c_str(), coll.c_str())};
    scoped_bson cmd;
    BSON_APPEND_UTF8(cmd.get(), "update", coll.c_str());
    bson_t updates;
    BSON_APPEND_ARRAY_BEGIN(cmd.get(), "updates", &updates);
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch()).count();
    std::size_t i = 0;
    for (const auto& [key, n] : hits) {
        bson_t stmt, q, u, inc, set;
        const auto index = std::to_string(i++);
        BSON_APPEND_DOCUMENT_BEGIN(&updates, index.c_str(), &stmt);
        BSON_APPEND_DOCUMENT_BEGIN(&stmt, "q", &q);
        bson_append_utf8(&q, "_id", 3, key.data(), static_cast<int>(key.size()));
        bson_append_document_end(&stmt, &q);
        BSON_APPEND_DOCUMENT_BEGIN(&stmt, "u", &u);
        BSON_APPEND_DOCUMENT_BEGIN(&u, "$inc", &inc);
        BSON_APPEND_INT64(&inc, "hit_count", static_cast<int64_t>(n));
        bson_append_document_end(&u, &inc);
        BSON_APPEND_DOCUMENT_BEGIN(&u, "$set", &set);
        BSON_APPEND_DATE_TIME(&set, "last_access", now_ms);
        bson_append_document_end(&u, &set);
        bson_append_document_end(&stmt, &u);
        bson_append_document_end(&updates, &stmt);
    }
    bson_append_array_end(cmd.get(), &updates);
    BSON_APPEND_BOOL(cmd.get(), "ordered", false);
    bson_error_t error;
    scoped_bson reply;
    if (!mongoc_collection_write_command_with_opts(c.coll, cmd.get(), nullptr, reply.get(), &error)) return fail<bool>(to_error(error));
    return true;
}

}  // namespace

void mongo_connection::start(net::any_io_executor ex) {
    auto& i = *impl_;
    for (unsigned w = 0; w < std::max(1u, i.options.workers); ++w) i.workers.emplace_back([&i] { i.worker_loop(); });
    auto self = shared_from_this();
    // Indexes, then the probe and the hit-count flush, all on one strand.
    net::co_spawn(
        net::make_strand(ex),
        [self]() -> net::awaitable<void> {
            auto& im = *self->impl_;
            net::steady_timer timer(co_await net::this_coro::executor);
            bool indexed = false;
            auto last_flush = std::chrono::steady_clock::now();
            while (!im.stopped) {
                timer.expires_after(std::chrono::milliseconds(100));
                error_code ec;
                co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
                if (im.stopped) break;
                // Half-open: one ping decides whether the breaker closes.
                if (!im.up && !im.breaker_open()) {
                    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
                    std::function<result<bool>(mongoc_client_t*)> job0 = [](mongoc_client_t* c) { return ping(c); };
                    auto r = co_await im.run<bool>(std::move(job0), true);
                    if (!r) continue;
                }
                if (!indexed && im.up) {
                    const auto db = im.options.database;
                    const auto coll = im.entries_collection();
                    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
                    std::function<result<bool>(mongoc_client_t*)> job1 = [db, coll](mongoc_client_t* c) { return create_indexes(c, db, coll); };
                    auto r = co_await im.run<bool>(std::move(job1));
                    indexed = r.has_value();
                    if (!indexed) logging::get("mongo")->warn("mongo: cannot create indexes yet: {}", r.error().message());
                }
                if (std::chrono::steady_clock::now() - last_flush >= std::chrono::seconds(1)) {
                    last_flush = std::chrono::steady_clock::now();
                    std::vector<std::pair<std::string, std::uint64_t>> hits;
                    {
                        std::lock_guard lock(im.hits_mutex);
                        for (auto& [k, n] : im.pending_hits) hits.emplace_back(k, n);
                        im.pending_hits.clear();
                    }
                    for (std::size_t from = 0; from < hits.size(); from += 1000) {
                        std::vector<std::pair<std::string, std::uint64_t>> batch(
                            hits.begin() + static_cast<std::ptrdiff_t>(from),
                            hits.begin() + static_cast<std::ptrdiff_t>(std::min(hits.size(), from + 1000)));
                        const auto db = im.options.database;
                        const auto coll = im.entries_collection();
                        // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
                        std::function<result<bool>(mongoc_client_t*)> job2 = [db, coll, batch](mongoc_client_t* c) { return flush_hits(c, db, coll, batch); };
                        auto r = co_await im.run<bool>(std::move(job2));
                        if (!r) im.metrics.get("cachecar_mongo_hit_flush_errors_total", {})++;
                    }
                }
            }
        },
        net::detached);
}

}  // namespace cachecar::cache::mongo
