// The MongoDB wire-protocol test server, driven through the real mongo-c-driver: every
// command the MongoDB tier relies on must behave as mongod does, and every fault
// control must produce the failure the tier's fault tests expect.
#include "support/mongo_test_server.hpp"

#include <gtest/gtest.h>
#include <mongoc/mongoc.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

// libbson declares bson_t aligned(128); GCC warns when a template argument (a deleter,
// a vector of pointers) drops the attribute. Only pointers are stored, so nothing changes.
#pragma GCC diagnostic ignored "-Wignored-attributes"

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr const char* db_name = "cachecar";

struct bson_deleter {
    void operator()(bson_t* b) const { bson_destroy(b); }
};
struct client_deleter {
    void operator()(mongoc_client_t* c) const { mongoc_client_destroy(c); }
};
struct pool_deleter {
    void operator()(mongoc_client_pool_t* p) const { mongoc_client_pool_destroy(p); }
};
struct collection_deleter {
    void operator()(mongoc_collection_t* c) const { mongoc_collection_destroy(c); }
};
struct cursor_deleter {
    void operator()(mongoc_cursor_t* c) const { mongoc_cursor_destroy(c); }
};
struct uri_deleter {
    void operator()(mongoc_uri_t* u) const { mongoc_uri_destroy(u); }
};
using bson_ptr = std::unique_ptr<bson_t, bson_deleter>;
using client_ptr = std::unique_ptr<mongoc_client_t, client_deleter>;
using pool_ptr = std::unique_ptr<mongoc_client_pool_t, pool_deleter>;
using collection_ptr = std::unique_ptr<mongoc_collection_t, collection_deleter>;
using cursor_ptr = std::unique_ptr<mongoc_cursor_t, cursor_deleter>;
using uri_ptr = std::unique_ptr<mongoc_uri_t, uri_deleter>;

bson_ptr json(const std::string& text) {
    bson_error_t error;
    bson_t* b = bson_new_from_json(reinterpret_cast<const std::uint8_t*>(text.data()),
                                   static_cast<ssize_t>(text.size()), &error);
    if (b == nullptr) throw std::invalid_argument(std::string("bad test JSON: ") + error.message + ": " + text);
    return bson_ptr(b);
}

// Storage mongoc initialises (reply out-parameters); destroyed exactly once here.
struct reply_doc {
    reply_doc() { bson_init(&doc); }
    ~reply_doc() { bson_destroy(&doc); }
    reply_doc(const reply_doc&) = delete;
    reply_doc& operator=(const reply_doc&) = delete;
    bson_t* get() { return &doc; }
    const bson_t* get() const { return &doc; }
    bson_t doc;
};

std::optional<bson_iter_t> find_path(const bson_t* doc, const char* path) {
    bson_iter_t it;
    bson_iter_t child;
    if (!bson_iter_init(&it, doc) || !bson_iter_find_descendant(&it, path, &child)) return std::nullopt;
    return child;
}

std::string str_at(const bson_t* doc, const char* path) {
    const auto it = find_path(doc, path);
    if (!it || !BSON_ITER_HOLDS_UTF8(&*it)) return "<missing or not a string>";
    return bson_iter_utf8(&*it, nullptr);
}

std::int64_t int_at(const bson_t* doc, const char* path) {
    const auto it = find_path(doc, path);
    return it ? bson_iter_as_int64(&*it) : -999;
}

bool bool_at(const bson_t* doc, const char* path) {
    const auto it = find_path(doc, path);
    return it && bson_iter_as_bool(&*it);
}

std::int64_t date_at(const bson_t* doc, const char* path) {
    const auto it = find_path(doc, path);
    return it && BSON_ITER_HOLDS_DATE_TIME(&*it) ? bson_iter_date_time(&*it) : -999;
}

bson_type_t type_at(const bson_t* doc, const char* path) {
    const auto it = find_path(doc, path);
    return it ? bson_iter_type(&*it) : BSON_TYPE_EOD;
}

std::string to_json(const bson_t* doc) {
    char* s = bson_as_relaxed_extended_json(doc, nullptr);
    std::string out = s ? s : "";
    bson_free(s);
    return out;
}

std::int64_t ms_since_epoch(std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string date_json(std::int64_t ms) { return R"({"$date": {"$numberLong": ")" + std::to_string(ms) + R"("}})"; }

class mongo_test_server_test : public ::testing::Test {
protected:
    static void SetUpTestSuite() { mongoc_init(); }  // idempotent; cleanup is left to exit

    client_ptr make_client(const std::string& extra_options = {}) {
        bson_error_t error;
        const uri_ptr uri(mongoc_uri_new_with_error(server_.uri(extra_options).c_str(), &error));
        if (!uri) throw std::runtime_error(error.message);
        client_ptr client(mongoc_client_new_from_uri(uri.get()));
        if (!client) throw std::runtime_error("mongoc_client_new_from_uri failed");
        return client;
    }

    pool_ptr make_pool(const std::string& extra_options = {}) {
        bson_error_t error;
        const uri_ptr uri(mongoc_uri_new_with_error(server_.uri(extra_options).c_str(), &error));
        if (!uri) throw std::runtime_error(error.message);
        pool_ptr pool(mongoc_client_pool_new(uri.get()));
        if (!pool) throw std::runtime_error("mongoc_client_pool_new failed");
        return pool;
    }

    static collection_ptr collection(mongoc_client_t* client, const char* name) {
        return collection_ptr(mongoc_client_get_collection(client, db_name, name));
    }

    static bool command(mongoc_client_t* client, const std::string& cmd, bson_t* reply, bson_error_t* error,
                        const char* db = db_name) {
        return mongoc_client_command_simple(client, db, json(cmd).get(), nullptr, reply, error);
    }

    static bool ping(mongoc_client_t* client, bson_error_t* error) {
        reply_doc reply;
        return command(client, R"({"ping": 1})", reply.get(), error, "admin");
    }

    // The `_id`s (strings) a find returns, in order; fails the test on a cursor error.
    static std::vector<std::string> find_ids(mongoc_collection_t* coll, const std::string& filter,
                                             const std::string& opts = "{}") {
        const cursor_ptr cursor(mongoc_collection_find_with_opts(coll, json(filter).get(), json(opts).get(), nullptr));
        std::vector<std::string> ids;
        const bson_t* doc = nullptr;
        while (mongoc_cursor_next(cursor.get(), &doc)) ids.push_back(str_at(doc, "_id"));
        bson_error_t error;
        if (mongoc_cursor_error(cursor.get(), &error)) ADD_FAILURE() << "find " << filter << ": " << error.message;
        return ids;
    }

    static std::vector<bson_ptr> find_docs(mongoc_collection_t* coll, const std::string& filter,
                                           const std::string& opts = "{}") {
        const cursor_ptr cursor(mongoc_collection_find_with_opts(coll, json(filter).get(), json(opts).get(), nullptr));
        std::vector<bson_ptr> docs;
        const bson_t* doc = nullptr;
        while (mongoc_cursor_next(cursor.get(), &doc)) docs.emplace_back(bson_copy(doc));
        bson_error_t error;
        if (mongoc_cursor_error(cursor.get(), &error)) ADD_FAILURE() << "find " << filter << ": " << error.message;
        return docs;
    }

    static void insert(mongoc_collection_t* coll, const std::string& doc) {
        bson_error_t error;
        ASSERT_TRUE(mongoc_collection_insert_one(coll, json(doc).get(), nullptr, nullptr, &error))
            << doc << ": " << error.message;
    }

    mongo_test_server server_;
};

TEST_F(mongo_test_server_test, answers_ping_after_the_driver_handshake) {
    const auto client = make_client();
    bson_error_t error;
    ASSERT_TRUE(ping(client.get(), &error)) << error.message;
    EXPECT_EQ(server_.command_count("ping"), 1u);
    // mongoc 1.23 opens every connection with a legacy OP_QUERY isMaster on admin.$cmd,
    // then speaks OP_MSG (maxWireVersion 13).
    EXPECT_GE(server_.opcode_count(mongo_test_server::op_query), 1u);
    EXPECT_GE(server_.command_count("isMaster"), 1u);
    EXPECT_GE(server_.opcode_count(mongo_test_server::op_msg), 1u);
    EXPECT_EQ(server_.uri(), "mongodb://127.0.0.1:" + std::to_string(server_.port()) +
                                 "/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000");
}

TEST_F(mongo_test_server_test, hello_buildinfo_and_unknown_commands) {
    const auto client = make_client();
    bson_error_t error;
    {
        reply_doc reply;
        ASSERT_TRUE(command(client.get(), R"({"hello": 1})", reply.get(), &error, "admin")) << error.message;
        EXPECT_TRUE(bool_at(reply.get(), "isWritablePrimary"));
        EXPECT_EQ(int_at(reply.get(), "maxWireVersion"), 13);
        EXPECT_EQ(int_at(reply.get(), "maxBsonObjectSize"), 16777216);
        EXPECT_EQ(int_at(reply.get(), "maxMessageSizeBytes"), 48000000);
        EXPECT_EQ(int_at(reply.get(), "logicalSessionTimeoutMinutes"), 30);
        EXPECT_EQ(type_at(reply.get(), "localTime"), BSON_TYPE_DATE_TIME);
    }
    {
        reply_doc reply;
        ASSERT_TRUE(command(client.get(), R"({"buildInfo": 1})", reply.get(), &error, "admin")) << error.message;
        EXPECT_EQ(str_at(reply.get(), "version"), "5.0.0");
    }
    {
        reply_doc reply;
        EXPECT_FALSE(command(client.get(), R"({"frobnicate": 1})", reply.get(), &error));
        EXPECT_EQ(error.code, 59u);
        EXPECT_EQ(str_at(reply.get(), "codeName"), "CommandNotFound");
        EXPECT_NE(std::string(error.message).find("no such command: 'frobnicate'"), std::string::npos)
            << error.message;
    }
    EXPECT_EQ(server_.command_count("frobnicate"), 1u);
}

TEST_F(mongo_test_server_test, insert_and_find_round_trip_binary_and_date) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    const std::array<std::uint8_t, 6> body{0x00, 0x01, 0xff, 'x', 0x00, 0x7f};
    const std::int64_t stored_at = 1'700'000'000'123;
    {
        const bson_ptr doc(bson_new());
        bson_append_utf8(doc.get(), "_id", -1, "GET /a", -1);
        bson_append_binary(doc.get(), "body", -1, BSON_SUBTYPE_BINARY, body.data(), body.size());
        bson_append_date_time(doc.get(), "stored_at", -1, stored_at);
        bson_append_int32(doc.get(), "status", -1, 200);
        bson_error_t error;
        ASSERT_TRUE(mongoc_collection_insert_one(coll.get(), doc.get(), nullptr, nullptr, &error)) << error.message;
    }
    const auto docs = find_docs(coll.get(), R"({"_id": "GET /a"})");
    ASSERT_EQ(docs.size(), 1u);
    const auto it = find_path(docs[0].get(), "body");
    ASSERT_TRUE(it && BSON_ITER_HOLDS_BINARY(&*it));
    bson_subtype_t subtype{};
    std::uint32_t len = 0;
    const std::uint8_t* data = nullptr;
    bson_iter_binary(&*it, &subtype, &len, &data);
    EXPECT_EQ(subtype, BSON_SUBTYPE_BINARY);
    ASSERT_EQ(len, body.size());
    EXPECT_EQ(std::memcmp(data, body.data(), len), 0);
    ASSERT_EQ(type_at(docs[0].get(), "stored_at"), BSON_TYPE_DATE_TIME);
    EXPECT_EQ(date_at(docs[0].get(), "stored_at"), stored_at);
    EXPECT_EQ(type_at(docs[0].get(), "status"), BSON_TYPE_INT32);

    const auto stored = server_.documents(db_name, "entries");
    ASSERT_EQ(stored.size(), 1u);
    EXPECT_NE(stored[0].find(R"("$binary")"), std::string::npos) << stored[0];
    EXPECT_NE(stored[0].find(R"("$date" : { "$numberLong" : "1700000000123" })"), std::string::npos) << stored[0];
    EXPECT_TRUE(server_.documents(db_name, "nothing").empty());
    EXPECT_TRUE(find_ids(collection(client.get(), "nothing").get(), "{}").empty());
}

TEST_F(mongo_test_server_test, duplicate_id_is_write_error_11000) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    insert(coll.get(), R"({"_id": "k", "v": 1})");
    bson_error_t error;
    EXPECT_FALSE(mongoc_collection_insert_one(coll.get(), json(R"({"_id": "k", "v": 2})").get(), nullptr, nullptr,
                                              &error));
    EXPECT_EQ(error.code, 11000u);
    EXPECT_NE(std::string(error.message).find("E11000 duplicate key error collection: cachecar.entries index: _id_"),
              std::string::npos)
        << error.message;
    ASSERT_EQ(server_.documents(db_name, "entries").size(), 1u);

    // Unordered: the duplicate fails, the rest is still inserted.
    std::array<bson_ptr, 3> docs{json(R"({"_id": "a"})"), json(R"({"_id": "k"})"), json(R"({"_id": "b"})")};
    std::array<const bson_t*, 3> raw{docs[0].get(), docs[1].get(), docs[2].get()};
    reply_doc reply;
    EXPECT_FALSE(mongoc_collection_insert_many(coll.get(), raw.data(), raw.size(), json(R"({"ordered": false})").get(),
                                               reply.get(), &error));
    EXPECT_EQ(error.code, 11000u);
    EXPECT_EQ(int_at(reply.get(), "insertedCount"), 2);
    EXPECT_EQ(find_ids(coll.get(), "{}", R"({"sort": {"_id": 1}})"), (std::vector<std::string>{"a", "b", "k"}));
}

TEST_F(mongo_test_server_test, upsert_applies_set_set_on_insert_and_inc) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "counters");
    const auto upsert = json(R"({"upsert": true})");
    bson_error_t error;
    {
        reply_doc reply;
        ASSERT_TRUE(mongoc_collection_update_one(
            coll.get(), json(R"({"_id": "GET /a", "route": "api"})").get(),
            json(R"({"$set": {"last": "x"}, "$setOnInsert": {"created": "first"}, "$inc": {"hits": 1}})").get(),
            upsert.get(), reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "matchedCount"), 0);
        EXPECT_EQ(int_at(reply.get(), "upsertedCount"), 1);
        EXPECT_EQ(str_at(reply.get(), "upsertedId"), "GET /a");
    }
    {
        reply_doc reply;
        ASSERT_TRUE(mongoc_collection_update_one(
            coll.get(), json(R"({"_id": "GET /a", "route": "api"})").get(),
            json(R"({"$set": {"last": "y"}, "$setOnInsert": {"created": "second"}, "$inc": {"hits": 2}})").get(),
            upsert.get(), reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "matchedCount"), 1);
        EXPECT_EQ(int_at(reply.get(), "modifiedCount"), 1);
        EXPECT_EQ(int_at(reply.get(), "upsertedCount"), 0);
    }
    const auto docs = find_docs(coll.get(), "{}");
    ASSERT_EQ(docs.size(), 1u);
    const auto* doc = docs[0].get();
    EXPECT_EQ(str_at(doc, "_id"), "GET /a");
    EXPECT_EQ(str_at(doc, "route"), "api");  // equality fields of the query seed the insert
    EXPECT_EQ(str_at(doc, "created"), "first");  // $setOnInsert acts only on insert
    EXPECT_EQ(str_at(doc, "last"), "y");
    EXPECT_EQ(int_at(doc, "hits"), 3);
    EXPECT_EQ(type_at(doc, "hits"), BSON_TYPE_INT32);  // int32 + int32 stays int32
    // An upsert without `_id` in the query gets an ObjectId.
    ASSERT_TRUE(mongoc_collection_update_one(coll.get(), json(R"({"route": "other"})").get(),
                                             json(R"({"$inc": {"hits": {"$numberLong": "5"}}})").get(), upsert.get(),
                                             nullptr, &error))
        << error.message;
    const auto other = find_docs(coll.get(), R"({"route": "other"})");
    ASSERT_EQ(other.size(), 1u);
    EXPECT_EQ(type_at(other[0].get(), "_id"), BSON_TYPE_OID);
    EXPECT_EQ(type_at(other[0].get(), "hits"), BSON_TYPE_INT64);
}

TEST_F(mongo_test_server_test, update_many_one_unset_and_replace) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    insert(coll.get(), R"({"_id": "1", "cat": "a", "keep": 1})");
    insert(coll.get(), R"({"_id": "2", "cat": "a", "keep": 2})");
    insert(coll.get(), R"({"_id": "3", "cat": "b", "keep": 3})");
    bson_error_t error;
    {
        reply_doc reply;
        ASSERT_TRUE(mongoc_collection_update_many(coll.get(), json(R"({"cat": "a"})").get(),
                                                  json(R"({"$set": {"stale": true}, "$unset": {"keep": ""}})").get(),
                                                  nullptr, reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "matchedCount"), 2);
        EXPECT_EQ(int_at(reply.get(), "modifiedCount"), 2);
    }
    EXPECT_EQ(find_ids(coll.get(), R"({"stale": true, "keep": {"$exists": false}})"),
              (std::vector<std::string>{"1", "2"}));
    {
        // Matching but changing nothing: matched, not modified.
        reply_doc reply;
        ASSERT_TRUE(mongoc_collection_update_one(coll.get(), json(R"({"cat": "a"})").get(),
                                                 json(R"({"$set": {"stale": true}})").get(), nullptr, reply.get(),
                                                 &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "matchedCount"), 1);
        EXPECT_EQ(int_at(reply.get(), "modifiedCount"), 0);
    }
    {
        reply_doc reply;
        ASSERT_TRUE(mongoc_collection_replace_one(coll.get(), json(R"({"_id": "3"})").get(),
                                                  json(R"({"cat": "c", "fresh": 1})").get(), nullptr, reply.get(),
                                                  &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "modifiedCount"), 1);
    }
    const auto replaced = find_docs(coll.get(), R"({"_id": "3"})");
    ASSERT_EQ(replaced.size(), 1u);
    EXPECT_EQ(to_json(replaced[0].get()), R"({ "_id" : "3", "cat" : "c", "fresh" : 1 })");
    // `_id` is immutable.
    EXPECT_FALSE(mongoc_collection_update_one(coll.get(), json(R"({"_id": "3"})").get(),
                                              json(R"({"$set": {"_id": "4"}})").get(), nullptr, nullptr, &error));
    EXPECT_EQ(error.code, 66u);
    // $inc on a string is a type mismatch.
    EXPECT_FALSE(mongoc_collection_update_one(coll.get(), json(R"({"_id": "3"})").get(),
                                              json(R"({"$inc": {"cat": 1}})").get(), nullptr, nullptr, &error));
    EXPECT_EQ(error.code, 14u);
}

TEST_F(mongo_test_server_test, delete_with_limit_one_and_zero) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    for (const char* doc : {R"({"_id": "1", "cat": "a"})", R"({"_id": "2", "cat": "a"})", R"({"_id": "3", "cat": "a"})",
                            R"({"_id": "4", "cat": "b"})"})
        insert(coll.get(), doc);
    bson_error_t error;
    {
        reply_doc reply;
        ASSERT_TRUE(
            mongoc_collection_delete_one(coll.get(), json(R"({"cat": "a"})").get(), nullptr, reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "deletedCount"), 1);
    }
    EXPECT_EQ(find_ids(coll.get(), "{}"), (std::vector<std::string>{"2", "3", "4"}));
    {
        reply_doc reply;
        ASSERT_TRUE(
            mongoc_collection_delete_many(coll.get(), json(R"({"cat": "a"})").get(), nullptr, reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "deletedCount"), 2);
    }
    EXPECT_EQ(find_ids(coll.get(), "{}"), (std::vector<std::string>{"4"}));
    {
        reply_doc reply;
        ASSERT_TRUE(
            mongoc_collection_delete_many(coll.get(), json(R"({"cat": "zzz"})").get(), nullptr, reply.get(), &error))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "deletedCount"), 0);
    }
}

TEST_F(mongo_test_server_test, find_and_modify_new_old_upsert_and_remove) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "gens");
    bson_error_t error;
    const auto run = [&](const std::string& query, const char* update, mongoc_find_and_modify_flags_t flags,
                         reply_doc& reply) {
        std::unique_ptr<mongoc_find_and_modify_opts_t, decltype(&mongoc_find_and_modify_opts_destroy)> opts(
            mongoc_find_and_modify_opts_new(), &mongoc_find_and_modify_opts_destroy);
        if (update != nullptr) mongoc_find_and_modify_opts_set_update(opts.get(), json(update).get());
        mongoc_find_and_modify_opts_set_flags(opts.get(), flags);
        return mongoc_collection_find_and_modify_with_opts(coll.get(), json(query).get(), opts.get(), reply.get(),
                                                           &error);
    };
    const auto both = static_cast<mongoc_find_and_modify_flags_t>(MONGOC_FIND_AND_MODIFY_UPSERT |
                                                                  MONGOC_FIND_AND_MODIFY_RETURN_NEW);
    {
        // Upsert returning the new document: the generation counter starts at 1.
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "cat:videos"})", R"({"$inc": {"gen": 1}})", both, reply)) << error.message;
        EXPECT_EQ(int_at(reply.get(), "value.gen"), 1);
        EXPECT_FALSE(bool_at(reply.get(), "lastErrorObject.updatedExisting"));
        EXPECT_EQ(str_at(reply.get(), "lastErrorObject.upserted"), "cat:videos");
    }
    {
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "cat:videos"})", R"({"$inc": {"gen": 1}})", both, reply)) << error.message;
        EXPECT_EQ(int_at(reply.get(), "value.gen"), 2);
        EXPECT_TRUE(bool_at(reply.get(), "lastErrorObject.updatedExisting"));
    }
    {
        // Without `new`, the document as it was before the update.
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "cat:videos"})", R"({"$inc": {"gen": 1}})", MONGOC_FIND_AND_MODIFY_NONE, reply))
            << error.message;
        EXPECT_EQ(int_at(reply.get(), "value.gen"), 2);
        EXPECT_EQ(int_at(reply.get(), "lastErrorObject.n"), 1);
    }
    {
        // No match, no upsert: value null.
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "missing"})", R"({"$inc": {"gen": 1}})", MONGOC_FIND_AND_MODIFY_RETURN_NEW, reply))
            << error.message;
        EXPECT_EQ(type_at(reply.get(), "value"), BSON_TYPE_NULL);
        EXPECT_EQ(int_at(reply.get(), "lastErrorObject.n"), 0);
    }
    {
        // Upsert without `new`: null value, but the document is there.
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "cat:images"})", R"({"$set": {"gen": 7}})", MONGOC_FIND_AND_MODIFY_UPSERT, reply))
            << error.message;
        EXPECT_EQ(type_at(reply.get(), "value"), BSON_TYPE_NULL);
        EXPECT_EQ(find_ids(coll.get(), R"({"gen": 7})"), (std::vector<std::string>{"cat:images"}));
    }
    {
        reply_doc reply;
        ASSERT_TRUE(run(R"({"_id": "cat:videos"})", nullptr, MONGOC_FIND_AND_MODIFY_REMOVE, reply)) << error.message;
        EXPECT_EQ(int_at(reply.get(), "value.gen"), 3);
        EXPECT_EQ(int_at(reply.get(), "lastErrorObject.n"), 1);
    }
    EXPECT_EQ(find_ids(coll.get(), "{}"), (std::vector<std::string>{"cat:images"}));
    EXPECT_EQ(server_.command_count("findAndModify"), 6u);
}

TEST_F(mongo_test_server_test, filters_follow_mongodb_semantics) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    insert(coll.get(), R"({"_id": "a", "stored_at": )" + date_json(1000) +
                           R"(, "categories": ["videos", "x"], "size": 10})");
    insert(coll.get(), R"({"_id": "b", "stored_at": )" + date_json(2000) +
                           R"(, "categories": ["images"], "size": {"$numberLong": "20"}})");
    insert(coll.get(), R"({"_id": "c", "stored_at": )" + date_json(3000) +
                           R"(, "categories": "videos", "size": 30.0})");
    insert(coll.get(), R"({"_id": "d", "size": null})");
    insert(coll.get(), R"({"_id": "e"})");
    using ids = std::vector<std::string>;
    EXPECT_EQ(find_ids(coll.get(), R"({"stored_at": {"$gt": )" + date_json(1500) + "}}"), (ids{"b", "c"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"stored_at": {"$lte": )" + date_json(2000) + "}}"), (ids{"a", "b"}));
    // Equality against an array field matches any element.
    EXPECT_EQ(find_ids(coll.get(), R"({"categories": "videos"})"), (ids{"a", "c"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"categories": ["videos", "x"]})"), (ids{"a"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"categories": {"$in": ["images", "nope"]}})"), (ids{"b"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"categories": {"$nin": ["videos"]}})"), (ids{"b", "d", "e"}));
    // Numbers compare across int32 / int64 / double.
    EXPECT_EQ(find_ids(coll.get(), R"({"size": {"$gte": 20}})"), (ids{"b", "c"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"size": 20.0})"), (ids{"b"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"size": {"$lt": {"$numberLong": "30"}}})"), (ids{"a", "b"}));
    // Mismatched types do not match.
    EXPECT_EQ(find_ids(coll.get(), R"({"stored_at": {"$gt": "1500"}})"), (ids{}));
    EXPECT_EQ(find_ids(coll.get(), R"({"size": "10"})"), (ids{}));
    // null matches null and missing; $exists tells them apart.
    EXPECT_EQ(find_ids(coll.get(), R"({"size": null})"), (ids{"d", "e"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"size": {"$exists": false}})"), (ids{"e"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"size": {"$ne": null}})"), (ids{"a", "b", "c"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"$or": [{"_id": "e"}, {"size": {"$lt": 15}}]})"), (ids{"a", "e"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"$and": [{"categories": "videos"}, {"size": {"$gt": 10}}]})"), (ids{"c"}));
    EXPECT_EQ(find_ids(coll.get(), R"({"_id": {"$ne": "a"}, "categories": {"$exists": true}})"), (ids{"b", "c"}));
    // What the server does not implement (here $size, and a regex value, which libbson
    // parses {"$regex": ...} into) fails loudly instead of matching wrongly.
    for (const char* filter : {R"({"categories": {"$size": 2}})", R"({"_id": {"$regex": "a"}})"}) {
        const cursor_ptr cursor(mongoc_collection_find_with_opts(coll.get(), json(filter).get(), nullptr, nullptr));
        const bson_t* doc = nullptr;
        EXPECT_FALSE(mongoc_cursor_next(cursor.get(), &doc));
        bson_error_t error;
        ASSERT_TRUE(mongoc_cursor_error(cursor.get(), &error)) << filter;
        EXPECT_EQ(error.code, 2u) << filter;
        EXPECT_NE(std::string(error.message).find("mongo_test_server"), std::string::npos) << error.message;
    }
}

TEST_F(mongo_test_server_test, cursor_batches_are_served_by_get_more) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "entries");
    for (int i = 5; i >= 1; --i) insert(coll.get(), R"({"_id": ")" + std::to_string(i) + R"(", "n": )" + std::to_string(i) + "}");
    using ids = std::vector<std::string>;
    EXPECT_EQ(find_ids(coll.get(), "{}", R"({"batchSize": 2, "sort": {"n": 1}})"), (ids{"1", "2", "3", "4", "5"}));
    EXPECT_EQ(server_.command_count("find"), 1u);
    EXPECT_EQ(server_.command_count("getMore"), 2u);  // batches of 2, 2, 1

    server_.reset_counts();
    EXPECT_EQ(find_ids(coll.get(), "{}", R"({"batchSize": 2, "singleBatch": true})"), (ids{"5", "4"}));
    EXPECT_EQ(find_ids(coll.get(), "{}", R"({"sort": {"n": -1}, "skip": 1, "limit": 3, "batchSize": 2})"),
              (ids{"4", "3", "2"}));
    EXPECT_EQ(server_.command_count("getMore"), 1u);  // only the limited one needed a second batch
    EXPECT_EQ(server_.command_count("killCursors"), 0u);

    const auto projected = find_docs(coll.get(), R"({"n": {"$gte": 4}})",
                                     R"({"projection": {"n": 1, "_id": 0}, "sort": {"n": 1}})");
    ASSERT_EQ(projected.size(), 2u);
    EXPECT_EQ(to_json(projected[0].get()), R"({ "n" : 4 })");
    const auto excluded = find_docs(coll.get(), R"({"_id": "1"})", R"({"projection": {"n": 0}})");
    ASSERT_EQ(excluded.size(), 1u);
    EXPECT_EQ(to_json(excluded[0].get()), R"({ "_id" : "1" })");

    // Destroying a cursor before the end kills it on the server.
    {
        const cursor_ptr cursor(
            mongoc_collection_find_with_opts(coll.get(), json("{}").get(), json(R"({"batchSize": 1})").get(), nullptr));
        const bson_t* doc = nullptr;
        ASSERT_TRUE(mongoc_cursor_next(cursor.get(), &doc));
    }
    EXPECT_EQ(server_.command_count("killCursors"), 1u);
}

TEST_F(mongo_test_server_test, create_indexes_is_idempotent_and_list_indexes_reports_them) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "cache");
    const std::string create = R"({"createIndexes": "cache", "indexes": [
        {"key": {"expires_at": 1}, "name": "expires_at_1", "expireAfterSeconds": 0},
        {"key": {"categories": 1}, "name": "categories_1"}]})";
    bson_error_t error;
    {
        reply_doc reply;
        ASSERT_TRUE(
            mongoc_collection_write_command_with_opts(coll.get(), json(create).get(), nullptr, reply.get(), &error))
            << error.message;
        EXPECT_TRUE(bool_at(reply.get(), "createdCollectionAutomatically"));
        EXPECT_EQ(int_at(reply.get(), "numIndexesBefore"), 1);
        EXPECT_EQ(int_at(reply.get(), "numIndexesAfter"), 3);
    }
    {
        reply_doc reply;
        ASSERT_TRUE(
            mongoc_collection_write_command_with_opts(coll.get(), json(create).get(), nullptr, reply.get(), &error))
            << error.message;
        EXPECT_FALSE(bool_at(reply.get(), "createdCollectionAutomatically"));
        EXPECT_EQ(int_at(reply.get(), "numIndexesBefore"), 3);
        EXPECT_EQ(int_at(reply.get(), "numIndexesAfter"), 3);
    }
    // Same name, different key: a conflict, as in mongod.
    EXPECT_FALSE(mongoc_collection_write_command_with_opts(
        coll.get(), json(R"({"createIndexes": "cache", "indexes": [{"key": {"other": 1}, "name": "categories_1"}]})").get(),
        nullptr, nullptr, &error));
    EXPECT_EQ(error.code, 86u);

    const cursor_ptr cursor(mongoc_collection_find_indexes_with_opts(coll.get(), nullptr));
    std::vector<std::string> names;
    std::int64_t ttl = -1;
    const bson_t* spec = nullptr;
    while (mongoc_cursor_next(cursor.get(), &spec)) {
        names.push_back(str_at(spec, "name"));
        if (names.back() == "expires_at_1") ttl = int_at(spec, "expireAfterSeconds");
    }
    ASSERT_FALSE(mongoc_cursor_error(cursor.get(), &error)) << error.message;
    EXPECT_EQ(names, (std::vector<std::string>{"_id_", "expires_at_1", "categories_1"}));
    EXPECT_EQ(ttl, 0);

    // A unique secondary index is enforced.
    ASSERT_TRUE(mongoc_collection_write_command_with_opts(
        coll.get(),
        json(R"({"createIndexes": "cache", "indexes": [{"key": {"url": 1}, "name": "url_1", "unique": true}]})").get(),
        nullptr, nullptr, &error))
        << error.message;
    insert(coll.get(), R"({"_id": 1, "url": "/a"})");
    EXPECT_FALSE(
        mongoc_collection_insert_one(coll.get(), json(R"({"_id": 2, "url": "/a"})").get(), nullptr, nullptr, &error));
    EXPECT_EQ(error.code, 11000u);
    EXPECT_NE(std::string(error.message).find("index: url_1"), std::string::npos) << error.message;
}

TEST_F(mongo_test_server_test, ttl_index_expires_only_when_asked) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "cache");
    bson_error_t error;
    ASSERT_TRUE(mongoc_collection_write_command_with_opts(
        coll.get(),
        json(R"({"createIndexes": "cache", "indexes": [{"key": {"expires_at": 1}, "name": "ttl", "expireAfterSeconds": 0}]})")
            .get(),
        nullptr, nullptr, &error))
        << error.message;
    const auto now = std::chrono::system_clock::now();
    const auto past = ms_since_epoch(now - 1min);
    const auto future = ms_since_epoch(now + 1h);
    insert(coll.get(), R"({"_id": "old", "expires_at": )" + date_json(past) + "}");
    insert(coll.get(), R"({"_id": "fresh", "expires_at": )" + date_json(future) + "}");
    insert(coll.get(), R"({"_id": "text", "expires_at": "yesterday"})");  // not a date: never expires
    insert(coll.get(), R"({"_id": "none"})");
    insert(coll.get(), R"({"_id": "array", "expires_at": [)" + date_json(future) + ", " + date_json(past) + "]}");

    EXPECT_EQ(server_.documents(db_name, "cache").size(), 5u) << "nothing expires by itself";
    EXPECT_EQ(server_.expire_ttl_now(), 2u);
    EXPECT_EQ(find_ids(coll.get(), "{}"), (std::vector<std::string>{"fresh", "text", "none"}));
    EXPECT_EQ(server_.expire_ttl_now(now + 2h), 1u);
    EXPECT_EQ(find_ids(coll.get(), "{}"), (std::vector<std::string>{"text", "none"}));
}

TEST_F(mongo_test_server_test, collections_drop_count_and_sessions_end) {
    auto client = make_client();
    auto first = collection(client.get(), "first");
    auto second = collection(client.get(), "second");
    insert(first.get(), R"({"_id": 1, "cat": "a"})");
    insert(first.get(), R"({"_id": 2, "cat": "b"})");
    insert(second.get(), R"({"_id": 1})");
    bson_error_t error;
    EXPECT_EQ(mongoc_collection_estimated_document_count(first.get(), nullptr, nullptr, nullptr, &error), 2)
        << error.message;
    {
        const std::unique_ptr<mongoc_database_t, decltype(&mongoc_database_destroy)> db(
            mongoc_client_get_database(client.get(), db_name), &mongoc_database_destroy);
        char** names = mongoc_database_get_collection_names_with_opts(db.get(), nullptr, &error);
        ASSERT_NE(names, nullptr) << error.message;
        std::vector<std::string> listed;
        for (char** n = names; *n != nullptr; ++n) listed.emplace_back(*n);
        bson_strfreev(names);
        EXPECT_EQ(listed, (std::vector<std::string>{"first", "second"}));
        EXPECT_TRUE(mongoc_database_has_collection(db.get(), "second", &error));
        EXPECT_FALSE(mongoc_database_has_collection(db.get(), "third", &error));
    }
    ASSERT_TRUE(mongoc_collection_write_command_with_opts(
        first.get(), json(R"({"createIndexes": "first", "indexes": [{"key": {"cat": 1}, "name": "cat_1"}]})").get(),
        nullptr, nullptr, &error))
        << error.message;
    EXPECT_TRUE(mongoc_collection_drop_index(first.get(), "cat_1", &error)) << error.message;
    EXPECT_FALSE(mongoc_collection_drop_index(first.get(), "cat_1", &error));
    EXPECT_EQ(error.code, 27u);  // IndexNotFound
    EXPECT_FALSE(mongoc_collection_drop_index(first.get(), "_id_", &error));

    EXPECT_TRUE(mongoc_collection_drop(first.get(), &error)) << error.message;
    EXPECT_TRUE(server_.documents(db_name, "first").empty());
    EXPECT_EQ(server_.documents(db_name, "second").size(), 1u);
    // Dropping what does not exist is an error from a 5.0 server; callers ignore code 26.
    EXPECT_FALSE(mongoc_collection_drop(first.get(), &error));
    EXPECT_EQ(error.code, 26u);

    // The writes above used implicit sessions; the client ends them when destroyed.
    first.reset();
    second.reset();
    client.reset();
    EXPECT_GE(server_.command_count("endSessions"), 1u);
}

TEST_F(mongo_test_server_test, insert_raw_plants_and_replaces_documents) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "cache");
    server_.insert_raw(db_name, "cache", R"({"_id": "k", "body": "not binary", "stored_at": 12})");
    EXPECT_EQ(find_ids(coll.get(), R"({"body": "not binary"})"), (std::vector<std::string>{"k"}));
    server_.insert_raw(db_name, "cache", R"({"body": "replaced", "_id": "k"})");
    const auto docs = find_docs(coll.get(), "{}");
    ASSERT_EQ(docs.size(), 1u);
    EXPECT_EQ(to_json(docs[0].get()), R"({ "_id" : "k", "body" : "replaced" })");
    server_.insert_raw(db_name, "cache", R"({"body": "no id"})");
    EXPECT_EQ(server_.documents(db_name, "cache").size(), 2u);
    EXPECT_THROW(server_.insert_raw(db_name, "cache", "{not json"), std::invalid_argument);
}

TEST_F(mongo_test_server_test, batched_writes_are_one_command_each) {
    const auto client = make_client();
    const auto coll = collection(client.get(), "hits");
    std::vector<bson_ptr> docs;
    std::vector<const bson_t*> raw;
    for (int i = 0; i < 10; ++i) {
        docs.push_back(json(R"({"_id": )" + std::to_string(i) + R"(, "hits": 0})"));
        raw.push_back(docs.back().get());
    }
    bson_error_t error;
    ASSERT_TRUE(mongoc_collection_insert_many(coll.get(), raw.data(), raw.size(), nullptr, nullptr, &error))
        << error.message;
    EXPECT_EQ(server_.command_count("insert"), 1u);  // one OP_MSG with a `documents` sequence

    std::unique_ptr<mongoc_bulk_operation_t, decltype(&mongoc_bulk_operation_destroy)> bulk(
        mongoc_collection_create_bulk_operation_with_opts(coll.get(), nullptr), &mongoc_bulk_operation_destroy);
    for (int i = 0; i < 3; ++i) {
        ASSERT_TRUE(mongoc_bulk_operation_update_one_with_opts(bulk.get(),
                                                               json(R"({"_id": )" + std::to_string(i) + "}").get(),
                                                               json(R"({"$inc": {"hits": 5}})").get(), nullptr, &error))
            << error.message;
    }
    ASSERT_TRUE(mongoc_bulk_operation_remove_one_with_opts(bulk.get(), json(R"({"_id": 9})").get(), nullptr, &error));
    reply_doc reply;
    ASSERT_NE(mongoc_bulk_operation_execute(bulk.get(), reply.get(), &error), 0u) << error.message;
    EXPECT_EQ(int_at(reply.get(), "nModified"), 3);
    EXPECT_EQ(int_at(reply.get(), "nRemoved"), 1);
    EXPECT_EQ(server_.command_count("update"), 1u);  // three statements, one command
    EXPECT_EQ(server_.command_count("delete"), 1u);
    const auto five = find_docs(coll.get(), R"({"hits": 5})");
    EXPECT_EQ(five.size(), 3u);
}

TEST_F(mongo_test_server_test, pooled_clients_work_concurrently) {
    const auto pool = make_pool();
    constexpr int threads = 4;
    constexpr int per_thread = 25;
    std::atomic<int> failures{0};
    std::vector<std::thread> workers;
    for (int t = 0; t < threads; ++t) {
        workers.emplace_back([&, t] {
            mongoc_client_t* client = mongoc_client_pool_pop(pool.get());
            const auto coll = collection(client, "entries");
            for (int i = 0; i < per_thread; ++i) {
                bson_error_t error;
                const auto doc = json(R"({"_id": ")" + std::to_string(t) + "-" + std::to_string(i) + R"(", "t": )" +
                                      std::to_string(t) + "}");
                if (!mongoc_collection_insert_one(coll.get(), doc.get(), nullptr, nullptr, &error)) ++failures;
            }
            mongoc_client_pool_push(pool.get(), client);
        });
    }
    for (auto& w : workers) w.join();
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(server_.documents(db_name, "entries").size(), static_cast<std::size_t>(threads * per_thread));
    EXPECT_GE(server_.connection_count(), 2u);  // several pooled connections plus the monitor
}

// --- Faults -----------------------------------------------------------------------

TEST_F(mongo_test_server_test, stall_times_out_a_command_then_recovers) {
    const auto client = make_client("socketTimeoutMS=300");
    bson_error_t error;
    ASSERT_TRUE(ping(client.get(), &error)) << error.message;
    server_.stall(true);
    EXPECT_TRUE(server_.stalled());
    const auto start = steady::now();
    EXPECT_FALSE(ping(client.get(), &error));
    const auto waited = steady::now() - start;
    EXPECT_LT(waited, 3s) << "socketTimeoutMS=300 should fail the command within about a second";
    EXPECT_EQ(error.domain, static_cast<std::uint32_t>(MONGOC_ERROR_STREAM)) << error.message;
    EXPECT_EQ(server_.command_count("ping"), 2u) << "a stalled request is still received";
    server_.stall(false);
    bool recovered = false;
    for (int attempt = 0; attempt < 10 && !recovered; ++attempt) {
        recovered = ping(client.get(), &error);
        if (!recovered) std::this_thread::sleep_for(200ms);
    }
    EXPECT_TRUE(recovered) << error.message;
}

TEST_F(mongo_test_server_test, stop_fails_server_selection_fast_and_restart_keeps_data) {
    const auto pool = make_pool();
    mongoc_client_t* client = mongoc_client_pool_pop(pool.get());
    insert(collection(client, "entries").get(), R"({"_id": "kept"})");
    const auto port = server_.port();
    server_.stop();
    EXPECT_FALSE(server_.running());
    EXPECT_EQ(server_.connection_count(), 0u);
    {
        // The port refuses connections.
        const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        EXPECT_NE(::connect(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
        EXPECT_EQ(errno, ECONNREFUSED);
        ::close(fd);
    }
    bson_error_t error;
    // The first command may fail on the pooled connection (a stream error); the next
    // ones fail server selection after serverSelectionTimeoutMS.
    for (int attempt = 0; attempt < 2; ++attempt) {
        const auto start = steady::now();
        EXPECT_FALSE(ping(client, &error));
        EXPECT_LT(steady::now() - start, 5s) << error.message;
    }
    EXPECT_EQ(error.domain, static_cast<std::uint32_t>(MONGOC_ERROR_SERVER_SELECTION)) << error.message;

    server_.restart();
    EXPECT_TRUE(server_.running());
    EXPECT_EQ(server_.port(), port);
    bool back = false;
    const auto deadline = steady::now() + 10s;
    while (!back && steady::now() < deadline) {
        back = ping(client, &error);
        if (!back) std::this_thread::sleep_for(100ms);
    }
    ASSERT_TRUE(back) << error.message;
    EXPECT_EQ(find_ids(collection(client, "entries").get(), "{}"), (std::vector<std::string>{"kept"}));

    server_.restart(true);
    EXPECT_EQ(server_.port(), port);
    std::vector<std::string> after_wipe{"not yet"};
    const auto wipe_deadline = steady::now() + 10s;
    while (steady::now() < wipe_deadline) {
        const auto coll = collection(client, "entries");
        const cursor_ptr cursor(mongoc_collection_find_with_opts(coll.get(), json("{}").get(), nullptr, nullptr));
        const bson_t* doc = nullptr;
        after_wipe.clear();
        while (mongoc_cursor_next(cursor.get(), &doc)) after_wipe.push_back(str_at(doc, "_id"));
        if (!mongoc_cursor_error(cursor.get(), &error)) break;
        std::this_thread::sleep_for(100ms);
    }
    EXPECT_TRUE(after_wipe.empty());
    mongoc_client_pool_push(pool.get(), client);
}

TEST_F(mongo_test_server_test, drop_connections_and_the_pool_reconnects) {
    const auto pool = make_pool();
    mongoc_client_t* client = mongoc_client_pool_pop(pool.get());
    const auto coll = collection(client, "entries");
    insert(coll.get(), R"({"_id": 1})");
    EXPECT_GE(server_.connection_count(), 1u);
    server_.drop_connections();
    EXPECT_EQ(server_.connection_count(), 0u);
    EXPECT_TRUE(server_.running());

    bson_error_t error;
    int failures = 0;
    bool written = false;
    const auto deadline = steady::now() + 10s;
    while (!written && steady::now() < deadline) {
        written = mongoc_collection_insert_one(coll.get(), json(R"({"_id": 2})").get(), nullptr, nullptr, &error);
        if (!written) {
            ++failures;
            std::this_thread::sleep_for(100ms);
        }
    }
    EXPECT_TRUE(written) << error.message;
    EXPECT_LE(failures, 2) << "the pool should reconnect on the first retry or so";
    EXPECT_EQ(server_.documents(db_name, "entries").size(), 2u);
    EXPECT_GE(server_.connection_count(), 1u);
    mongoc_client_pool_push(pool.get(), client);
}

// --- Robustness -------------------------------------------------------------------

class raw_connection {
public:
    explicit raw_connection(std::uint16_t port) : fd_(::socket(AF_INET, SOCK_STREAM, 0)) {
        timeval timeout{2, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(port);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
            throw std::runtime_error("connect failed");
    }
    ~raw_connection() { ::close(fd_); }
    raw_connection(const raw_connection&) = delete;
    raw_connection& operator=(const raw_connection&) = delete;

    void send(const std::vector<std::uint8_t>& bytes) const {
        ASSERT_EQ(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL), static_cast<ssize_t>(bytes.size()));
    }
    // True when the server closed the connection (EOF or reset) rather than answering
    // or leaving it open until the 2 s receive timeout.
    bool closed_by_server() const {
        std::array<std::uint8_t, 256> buffer{};
        const auto n = ::recv(fd_, buffer.data(), buffer.size(), 0);
        return n == 0 || (n < 0 && errno == ECONNRESET);
    }
    std::vector<std::uint8_t> receive(std::size_t n) const {
        std::vector<std::uint8_t> out(n);
        std::size_t got = 0;
        while (got < n) {
            const auto r = ::recv(fd_, out.data() + got, n - got, 0);
            if (r <= 0) break;
            got += static_cast<std::size_t>(r);
        }
        out.resize(got);
        return out;
    }

private:
    int fd_;
};

void put_i32(std::vector<std::uint8_t>& out, std::int64_t value) {
    auto v = static_cast<std::uint32_t>(value);
    for (int i = 0; i < 4; ++i, v >>= 8) out.push_back(static_cast<std::uint8_t>(v & 0xff));
}

std::int32_t get_i32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return static_cast<std::int32_t>(v);
}

// OP_MSG with one body section holding `body` (raw bytes, possibly malformed).
std::vector<std::uint8_t> op_msg(std::int32_t request_id, const std::vector<std::uint8_t>& body,
                                 std::int32_t opcode = mongo_test_server::op_msg) {
    std::vector<std::uint8_t> out;
    put_i32(out, static_cast<std::int64_t>(16 + 4 + 1 + body.size()));
    put_i32(out, request_id);
    put_i32(out, 0);
    put_i32(out, opcode);
    put_i32(out, 0);
    out.push_back(0);
    out.insert(out.end(), body.begin(), body.end());
    return out;
}

std::vector<std::uint8_t> bytes_of(const bson_t* b) {
    const auto* data = bson_get_data(b);
    return {data, data + b->len};
}

TEST_F(mongo_test_server_test, raw_op_msg_gets_an_op_msg_reply) {
    raw_connection conn(server_.port());
    conn.send(op_msg(42, bytes_of(json(R"({"ping": 1, "$db": "admin"})").get())));
    const auto header = conn.receive(16);
    ASSERT_EQ(header.size(), 16u);
    const auto length = get_i32(&header[0]);
    EXPECT_EQ(get_i32(&header[8]), 42);  // responseTo
    EXPECT_EQ(get_i32(&header[12]), mongo_test_server::op_msg);
    const auto rest = conn.receive(static_cast<std::size_t>(length) - 16);
    ASSERT_EQ(rest.size(), static_cast<std::size_t>(length) - 16);
    EXPECT_EQ(rest[4], 0);  // section kind 0
    bson_t reply;
    ASSERT_TRUE(bson_init_static(&reply, &rest[5], rest.size() - 5));
    EXPECT_EQ(to_json(&reply), R"({ "ok" : 1.0 })");
}

TEST_F(mongo_test_server_test, malformed_input_closes_only_that_connection) {
    const auto ping_doc = bytes_of(json(R"({"ping": 1, "$db": "admin"})").get());
    const auto expect_closed = [&](const std::vector<std::uint8_t>& bytes, const char* what) {
        raw_connection conn(server_.port());
        conn.send(bytes);
        EXPECT_TRUE(conn.closed_by_server()) << what;
    };
    {
        std::vector<std::uint8_t> m;
        put_i32(m, 3);  // shorter than a header
        put_i32(m, 1);
        put_i32(m, 0);
        put_i32(m, mongo_test_server::op_msg);
        expect_closed(m, "length below 16");
    }
    {
        std::vector<std::uint8_t> m;
        put_i32(m, 100'000'000);  // over maxMessageSizeBytes: refused before reading it
        put_i32(m, 1);
        put_i32(m, 0);
        put_i32(m, mongo_test_server::op_msg);
        expect_closed(m, "length over 48 MB");
    }
    {
        auto body = ping_doc;
        body[0] = static_cast<std::uint8_t>(body[0] + 10);  // document claims more than the message holds
        expect_closed(op_msg(1, body), "document longer than its message");
    }
    {
        auto body = ping_doc;
        body[4] = 0x42;  // unknown element type
        expect_closed(op_msg(1, body), "corrupt element");
    }
    {
        // 200 levels of {"a": {"a": ...}}: deeper than mongod's limit (libbson's JSON
        // parser refuses it too, so the bytes are built by hand).
        std::vector<std::uint8_t> body{5, 0, 0, 0, 0};
        for (int i = 0; i < 200; ++i) {
            std::vector<std::uint8_t> outer;
            put_i32(outer, static_cast<std::int64_t>(4 + 3 + body.size() + 1));
            outer.insert(outer.end(), {0x03, 'a', 0});
            outer.insert(outer.end(), body.begin(), body.end());
            outer.push_back(0);
            body = std::move(outer);
        }
        expect_closed(op_msg(1, body), "nesting too deep");
    }
    expect_closed(op_msg(1, ping_doc, 2012), "OP_COMPRESSED was never offered");
    {
        auto m = op_msg(1, ping_doc);
        m[16] = 0x04;  // an unknown required flag bit
        expect_closed(m, "unknown required flag");
    }
    {
        // A kind-1 section whose size runs past the message.
        auto m = op_msg(1, ping_doc);
        m.push_back(1);
        put_i32(m, 1000);
        m.push_back('x');
        m.push_back(0);
        const auto total = static_cast<std::int64_t>(m.size());
        m[0] = static_cast<std::uint8_t>(total & 0xff);
        m[1] = static_cast<std::uint8_t>((total >> 8) & 0xff);
        expect_closed(m, "document sequence past the end");
    }
    // The server itself is unharmed.
    const auto client = make_client();
    bson_error_t error;
    EXPECT_TRUE(ping(client.get(), &error)) << error.message;
}

}  // namespace
}  // namespace cachecar::test
