#include "cache/mongo/mongo_connection_impl.hpp"
#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>

namespace cachecar::cache::mongo {

namespace {

std::string doc_id(const std::string& ns, const std::string& category) { return ns + "::" + category; }

std::int64_t now_micros() {
    return std::chrono::duration_cast<std::chrono::microseconds>(clock::now().time_since_epoch()).count();
}

// findAndModify on one generation document; returns the document's `g` afterwards.
// `increment` false: create the document if missing (at the current time in us, so
// a database that lost its data never reissues an old generation) and read it.
result<std::uint64_t> find_and_modify(mongoc_collection_t* coll, const std::string& id, bool increment) {
    scoped_bson query;
    bson_append_utf8(query.get(), "_id", 3, id.data(), static_cast<int>(id.size()));
    scoped_bson update;
    bson_t op;
    if (increment) {
        BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$inc", &op);
        BSON_APPEND_INT64(&op, "g", 1);
    } else {
        BSON_APPEND_DOCUMENT_BEGIN(update.get(), "$setOnInsert", &op);
        BSON_APPEND_INT64(&op, "g", now_micros());
    }
    bson_append_document_end(update.get(), &op);
    mongoc_find_and_modify_opts_t* opts = mongoc_find_and_modify_opts_new();
    mongoc_find_and_modify_opts_set_update(opts, update.get());
    mongoc_find_and_modify_opts_set_flags(
        opts, static_cast<mongoc_find_and_modify_flags_t>(MONGOC_FIND_AND_MODIFY_UPSERT | MONGOC_FIND_AND_MODIFY_RETURN_NEW));
    scoped_bson reply;
    bson_error_t error;
    const bool ok = mongoc_collection_find_and_modify_with_opts(coll, query.get(), opts, reply.get(), &error);
    mongoc_find_and_modify_opts_destroy(opts);
    if (!ok) return fail<std::uint64_t>(to_error(error));
    bson_iter_t it;
    if (!bson_iter_init(&it, reply.get()) || !bson_iter_find_descendant(&it, "value.g", &it) ||
        !BSON_ITER_HOLDS_NUMBER(&it)) {
        return make_error_code(mongo_error::server_error);
    }
    return static_cast<std::uint64_t>(bson_iter_as_int64(&it));
}

result<std::vector<std::uint64_t>> read_generations(mongoc_client_t* client, const mongo_options& o,
                                                    const std::string& ns, const std::vector<std::string>& categories) {
    const auto coll_name = o.collection + "_generations";
    collection_handle c{mongoc_client_get_collection(client, o.database.c_str(), coll_name.c_str())};
    scoped_bson filter;
    bson_t id, in;
    BSON_APPEND_DOCUMENT_BEGIN(filter.get(), "_id", &id);
    BSON_APPEND_ARRAY_BEGIN(&id, "$in", &in);
    for (std::size_t i = 0; i < categories.size(); ++i) {
        const auto key = doc_id(ns, categories[i]);
        const auto index = std::to_string(i);
        bson_append_utf8(&in, index.c_str(), -1, key.data(), static_cast<int>(key.size()));
    }
    bson_append_array_end(&id, &in);
    bson_append_document_end(filter.get(), &id);
    std::unordered_map<std::string, std::uint64_t> found;
    mongoc_cursor_t* cursor = mongoc_collection_find_with_opts(c.coll, filter.get(), nullptr, nullptr);
    const bson_t* doc = nullptr;
    while (mongoc_cursor_next(cursor, &doc)) {
        bson_iter_t it;
        std::string key;
        std::uint64_t g = 0;
        if (bson_iter_init_find(&it, doc, "_id") && BSON_ITER_HOLDS_UTF8(&it)) {
            uint32_t len = 0;
            const char* s = bson_iter_utf8(&it, &len);
            key.assign(s, len);
        }
        if (bson_iter_init_find(&it, doc, "g") && BSON_ITER_HOLDS_NUMBER(&it)) g = static_cast<std::uint64_t>(bson_iter_as_int64(&it));
        found[key] = g;
    }
    bson_error_t error;
    const bool failed = mongoc_cursor_error(cursor, &error);
    mongoc_cursor_destroy(cursor);
    if (failed) return fail<std::vector<std::uint64_t>>(to_error(error));
    std::vector<std::uint64_t> out;
    out.reserve(categories.size());
    for (const auto& cat : categories) {
        const auto key = doc_id(ns, cat);
        if (auto it = found.find(key); it != found.end()) {
            out.push_back(it->second);
            continue;
        }
        auto created = find_and_modify(c.coll, key, false);
        if (!created) return created.error();
        out.push_back(*created);
    }
    return out;
}

result<std::vector<std::uint64_t>> bump_generations(mongoc_client_t* client, const mongo_options& o,
                                                    const std::string& ns, const std::vector<std::string>& categories) {
    const auto coll_name = o.collection + "_generations";
    collection_handle c{mongoc_client_get_collection(client, o.database.c_str(), coll_name.c_str())};
    std::vector<std::uint64_t> out;
    for (const auto& cat : categories) {
        const auto key = doc_id(ns, cat);
        // $setOnInsert and $inc may not touch the same field in one update: make
        // sure the document exists, then increment it.
        auto exists = find_and_modify(c.coll, key, false);
        if (!exists) return exists.error();
        auto bumped = find_and_modify(c.coll, key, true);
        if (!bumped) return bumped.error();
        out.push_back(*bumped);
    }
    return out;
}

}  // namespace

mongo_generation_store::mongo_generation_store(std::shared_ptr<mongo_connection> connection, std::string key_namespace,
                                               stats::registry& metrics, std::chrono::milliseconds max_staleness)
    : connection_(std::move(connection)),
      namespace_(std::move(key_namespace)),
      metrics_(metrics),
      max_staleness_(max_staleness) {}

std::optional<bool> mongo_generation_store::validate_cached(const std::vector<category_stamp>& stamps) const {
    return cache_.validate(stamps, std::chrono::duration_cast<generation_cache::steady::duration>(max_staleness_));
}

net::awaitable<bool> mongo_generation_store::flush_pending() {
    const auto pending = cache_.pending();
    if (pending.empty()) co_return true;
    // Purges deferred through an outage pile up by the thousand on a busy site. Bumped
    // one by one (two round trips each) they outlasted the timeout on every retry, and
    // current() fails while any is pending, so the tier stayed down after MongoDB had
    // returned. Past a few, bump all_category instead: every entry carries it, so this
    // purges a superset of the backlog in one go.
    constexpr std::size_t max_separate = 16;
    const bool everything = pending.size() > max_separate;
    const auto categories = everything ? std::vector<std::string>{std::string(all_category)} : pending;
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<std::vector<std::uint64_t>>(mongoc_client_t*)> job0 = [&o, ns = namespace_, categories](mongoc_client_t* c) { return bump_generations(c, o, ns, categories); };
    const auto asked = generation_cache::steady::now();
    auto r = co_await im.run<std::vector<std::uint64_t>>(std::move(job0));
    if (!r) co_return false;
    for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], (*r)[i], asked);
    cache_.settle(pending);
    logging::get("mongo")->info("mongo: {} deferred purges applied{}", pending.size(),
                                everything ? " as one purge of everything" : "");
    metrics_.get("cachecar_purges_total", {{"source", "deferred"}, {"outcome", "ok"}}) += pending.size();
    co_return true;
}

net::awaitable<result<std::vector<std::uint64_t>>> mongo_generation_store::current(std::vector<std::string> categories) {
    if (cache_.pending_count() > 0 && !co_await flush_pending()) co_return make_error_code(mongo_error::unavailable);
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<std::vector<std::uint64_t>>(mongoc_client_t*)> job1 = [&o, ns = namespace_, categories](mongoc_client_t* c) { return read_generations(c, o, ns, categories); };
    // The copy is dated by when MongoDB was asked, not when it answered: what it read
    // is at least that fresh, so a slow answer cannot stretch max_staleness.
    const auto asked = generation_cache::steady::now();
    auto r = co_await im.run<std::vector<std::uint64_t>>(std::move(job1));
    if (!r) co_return r.error();
    for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], (*r)[i], asked);
    co_return std::move(*r);
}

net::awaitable<result<std::vector<std::uint64_t>>> mongo_generation_store::bump(std::vector<std::string> categories) {
    auto& im = connection_->internals();
    const auto& o = im.options;
    // A named job, not a temporary: see coalescer.hpp (GCC 12 and co_await).
    std::function<result<std::vector<std::uint64_t>>(mongoc_client_t*)> job2 = [&o, ns = namespace_, categories](mongoc_client_t* c) { return bump_generations(c, o, ns, categories); };
    const auto asked = generation_cache::steady::now();
    auto r = co_await im.run<std::vector<std::uint64_t>>(std::move(job2));
    if (!r) {
        // Applied when MongoDB answers again (the next current() retries first);
        // until then this instance serves nothing from cache.
        cache_.add_pending(categories);
        metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "deferred"}}) += categories.size();
        logging::get("mongo")->warn("mongo: purge of {} categories deferred: {}", categories.size(), r.error().message());
        co_return r.error();
    }
    for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], (*r)[i], asked);
    co_return std::move(*r);
}

}  // namespace cachecar::cache::mongo
