#include "cache/mongo/mongo_connection_impl.hpp"
#include <cachecar/logging.hpp>

#include <cachecar/cache/entry_codec.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace cachecar::cache::mongo {

namespace {

std::int64_t to_ms(clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

void append_key(bson_t* doc, const char* field, const std::string& key) {
    bson_append_utf8(doc, field, -1, key.data(), static_cast<int>(key.size()));
}

// The stored bytes of a fresh entry, or nullopt on a miss. A document without a
// binary `value` comes back as an empty string, which then fails to decode.
result<std::optional<std::string>> find_value(mongoc_client_t* client, const mongo_options& o, const std::string& key) {
    collection_handle c{mongoc_client_get_collection(client, o.database.c_str(), o.collection.c_str())};
    scoped_bson filter;
    append_key(filter.get(), "_id", key);
    bson_t gt;
    BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "expires_at", &gt);
    BSON_APPEND_DATE_TIME(&gt, "$gt", to_ms(clock::now()));  // TTL deletion is lazy
    bson_append_document_end(filter.get(), &gt);
    scoped_bson opts;
    BSON_APPEND_INT64(opts.get(), "limit", 1);
    BSON_APPEND_BOOL(opts.get(), "singleBatch", true);
    bson_t projection;
    BSON_APPEND_DOCUMENT_BEGIN(opts.get(), "projection", &projection);
    BSON_APPEND_INT32(&projection, "value", 1);
    bson_append_document_end(opts.get(), &projection);
    mongoc_cursor_t* cursor = mongoc_collection_find_with_opts(c.coll, filter.get(), opts.get(), nullptr);
    const bson_t* doc = nullptr;
    result<std::optional<std::string>> out = std::optional<std::string>{};
    if (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t it;
        std::string bytes;
        if (bson_iter_init_find(&it, doc, "value") && BSON_ITER_HOLDS_BINARY(&it)) {
            bson_subtype_t subtype;
            uint32_t len = 0;
            const uint8_t* data = nullptr;
            bson_iter_binary(&it, &subtype, &len, &data);
            bytes.assign(reinterpret_cast<const char*>(data), len);
        }
        out = std::optional<std::string>(std::move(bytes));
    } else {
        bson_error_t error;
        if (mongoc_cursor_error(cursor, &error)) out = to_error(error);
    }
    mongoc_cursor_destroy(cursor);
    return out;
}

result<bool> upsert(mongoc_client_t* client, const mongo_options& o, const std::string& ns, const std::string& key,
                    const std::string& bytes, const entry& e) {
    collection_handle c{mongoc_client_get_collection(client, o.database.c_str(), o.collection.c_str())};
    scoped_bson selector;
    append_key(selector.get(), "_id", key);
    scoped_bson update;
    bson_t set, categories, on_insert;
    BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$set", &set);
    BSON_APPEND_UTF8(&set, "ns", ns.c_str());
    bson_append_binary(&set, "value", -1, BSON_SUBTYPE_BINARY, reinterpret_cast<const uint8_t*>(bytes.data()),
                       static_cast<uint32_t>(bytes.size()));
    BSON_APPEND_ARRAY_BEGIN(&set, "categories", &categories);
    std::size_t i = 0;
    for (const auto& s : e.stamps) {
        if (s.category == all_category) continue;
        const auto index = std::to_string(i++);
        bson_append_utf8(&categories, index.c_str(), -1, s.category.data(), static_cast<int>(s.category.size()));
    }
    bson_append_array_end(&set, &categories);
    BSON_APPEND_DATE_TIME(&set, "created_at", to_ms(clock::now()));
    // The TTL index removes the document once retention (TTL + stale window) is over.
    BSON_APPEND_DATE_TIME(&set, "expires_at", to_ms(e.retain_until));
    bson_append_document_end(update.get(), &set);
    BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$setOnInsert", &on_insert);
    BSON_APPEND_INT64(&on_insert, "hit_count", 0);
    BSON_APPEND_DATE_TIME(&on_insert, "last_access", to_ms(clock::now()));
    bson_append_document_end(update.get(), &on_insert);
    scoped_bson opts;
    BSON_APPEND_BOOL(opts.get(), "upsert", true);
    bson_error_t error;
    if (!mongoc_collection_update_one(c.coll, selector.get(), update.get(), opts.get(), nullptr, &error)) {
        return fail<bool>(to_error(error));
    }
    return true;
}

result<bool> remove(mongoc_client_t* client, const mongo_options& o, const char* field, const std::string& value,
                    bool many) {
    collection_handle c{mongoc_client_get_collection(client, o.database.c_str(), o.collection.c_str())};
    scoped_bson selector;
    append_key(selector.get(), field, value);
    bson_error_t error;
    const bool ok = many ? mongoc_collection_delete_many(c.coll, selector.get(), nullptr, nullptr, &error)
                         : mongoc_collection_delete_one(c.coll, selector.get(), nullptr, nullptr, &error);
    if (!ok) return fail<bool>(to_error(error));
    return true;
}

}  // namespace

mongo_tier::mongo_tier(std::shared_ptr<mongo_connection> connection, std::string key_namespace,
                       stats::registry& metrics)
    : connection_(std::move(connection)), namespace_(std::move(key_namespace)), metrics_(metrics) {}

tier_state mongo_tier::state() const { return connection_->up() ? tier_state::up : tier_state::down; }

net::awaitable<result<entry_ptr>> mongo_tier::lookup(std::string key) {
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<std::optional<std::string>>(mongoc_client_t*)> job0 = [&o, key](mongoc_client_t* c) { return find_value(c, o, key); };
    auto r = co_await im.run<std::optional<std::string>>(std::move(job0));
    if (!r) co_return r.error();
    if (!*r) co_return entry_ptr{};
    auto decoded = decode_entry(**r);
    if (!decoded.value) {
        std::string reason(to_string(*decoded.error));
        std::replace(reason.begin(), reason.end(), ' ', '_');
        metrics_.get("cachecar_tier_corrupt_total", {{"tier", "mongo"}, {"reason", reason}})++;
        logging::get("mongo")->warn("mongo: dropping corrupt document {} ({})", key, reason);
        // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
        std::function<result<bool>(mongoc_client_t*)> job1 = [&o, key](mongoc_client_t* c) { return remove(c, o, "_id", key, false); };
        (void)co_await im.run<bool>(std::move(job1));
        co_return make_error_code(*decoded.error);
    }
    if (decoded.value->retain_until <= clock::now()) co_return entry_ptr{};
    {
        // Hit statistics are written in batches by the connection's flush loop.
        std::lock_guard lock(im.hits_mutex);
        ++im.pending_hits[key];
    }
    co_return decoded.value;
}

net::awaitable<error_code> mongo_tier::store(std::string key, entry_ptr e) {
    if (e->retain_until <= clock::now()) co_return error_code{};
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<bool>(mongoc_client_t*)> job2 = [&o, ns = namespace_, key, e, bytes = encode_entry(*e)](mongoc_client_t* c) {
        return upsert(c, o, ns, key, bytes, *e);
    };
    auto r = co_await im.run<bool>(std::move(job2));
    co_return r ? error_code{} : r.error();
}

net::awaitable<error_code> mongo_tier::erase(std::string key) {
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<bool>(mongoc_client_t*)> job3 = [&o, key](mongoc_client_t* c) { return remove(c, o, "_id", key, false); };
    auto r = co_await im.run<bool>(std::move(job3));
    co_return r ? error_code{} : r.error();
}

net::awaitable<error_code> mongo_tier::clear() {
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<bool>(mongoc_client_t*)> job4 = [&o, ns = namespace_](mongoc_client_t* c) { return remove(c, o, "ns", ns, true); };
    auto r = co_await im.run<bool>(std::move(job4));
    co_return r ? error_code{} : r.error();
}

}  // namespace cachecar::cache::mongo
