// The MongoDB tier: the shared conformance suite, plus what is specific to MongoDB
// (document layout, indexes, batched hit counts, corrupt documents, outages).
// Runs against the wire-protocol test server, or a real MongoDB when
// CACHECAR_TEST_MONGO_URI is set.
#include "support/eventually.hpp"
#include "support/mongo_target.hpp"
#include "unit/cache/tier_conformance.hpp"

#include <cachecar/cache/entry_codec.hpp>
#include <cachecar/cache/mongo/mongo_tier.hpp>

#include <mongoc/mongoc.h>

#include <thread>

namespace {

using namespace std::chrono_literals;
namespace net = cachecar::net;
namespace cache = cachecar::cache;
namespace mongo = cachecar::cache::mongo;
using cachecar::test::eventually;
using cachecar::test::mongo_target;

mongo_target& target() {
    static mongo_target t;
    return t;
}

// Drives the connection's background loop (probe, indexes, hit flush).
struct loop_host {
    net::io_context io;
    net::executor_work_guard<net::io_context::executor_type> work = net::make_work_guard(io);
    std::thread thread{[this] { io.run(); }};
    ~loop_host() {
        work.reset();
        io.stop();
        thread.join();
    }
};

std::shared_ptr<mongo::mongo_connection> connect(loop_host& host, cachecar::stats::registry& metrics,
                                                 const std::string& database,
                                                 std::chrono::milliseconds timeout = 500ms) {
    mongo::mongo_options o;
    o.uri = target().uri();
    o.database = database;
    o.collection = "cache";
    o.timeout = timeout;
    auto c = mongo::mongo_connection::create(o, metrics);
    c->start(host.io.get_executor());
    EXPECT_TRUE(eventually([&] { return c->up(); })) << "mongo connection did not come up at " << o.uri;
    return c;
}

// Awaited results are named before co_return: GCC 12 mishandles the temporary of
// `co_return co_await ...` (see coalescer.hpp).
class owning_tier final : public cache::tier {
public:
    owning_tier(std::unique_ptr<loop_host> host, std::unique_ptr<cachecar::stats::registry> metrics,
                std::shared_ptr<mongo::mongo_connection> c, std::string ns)
        : metrics_(std::move(metrics)), host_(std::move(host)), connection_(std::move(c)), inner_(connection_, ns, *metrics_) {}
    ~owning_tier() override { connection_->stop(); }
    cachecar::config::tier_kind kind() const override { return inner_.kind(); }
    net::awaitable<cachecar::result<cache::entry_ptr>> lookup(std::string k) override {
        auto r = co_await inner_.lookup(std::move(k));
        co_return r;
    }
    net::awaitable<cachecar::error_code> store(std::string k, cache::entry_ptr e) override {
        auto r = co_await inner_.store(std::move(k), std::move(e));
        co_return r;
    }
    net::awaitable<cachecar::error_code> erase(std::string k) override {
        auto r = co_await inner_.erase(std::move(k));
        co_return r;
    }
    net::awaitable<cachecar::error_code> clear() override {
        auto r = co_await inner_.clear();
        co_return r;
    }
    cache::tier_state state() const override { return inner_.state(); }
    cache::tier_usage usage() const override { return inner_.usage(); }

private:
    // Declared first, destroyed last: the connection's probe/flush loop runs on host_'s
    // thread and records metrics until host_ has joined it (TSan saw the registry
    // destroyed under a running loop).
    std::unique_ptr<cachecar::stats::registry> metrics_;
    std::unique_ptr<loop_host> host_;
    std::shared_ptr<mongo::mongo_connection> connection_;
    mongo::mongo_tier inner_;
};

struct mongo_factory {
    static std::unique_ptr<cache::tier> make(net::any_io_executor) {
        auto host = std::make_unique<loop_host>();
        auto metrics = std::make_unique<cachecar::stats::registry>();
        // The conformance suite checks behaviour, not speed: a generous deadline keeps a
        // slowed-down build (TSan runs ~10x slower) from turning a slow answer into a
        // failed operation. Deadlines have tests of their own (mongo_tier_test, faults).
        auto c = connect(*host, *metrics, target().fresh_database(), 5s);
        return std::make_unique<owning_tier>(std::move(host), std::move(metrics), std::move(c), "conf");
    }
};

}  // namespace

CACHECAR_TIER_CONFORMANCE(mongo, mongo_factory);

namespace {

template <class T>
T run_on(net::io_context& io, net::awaitable<T> op) {
    return cachecar::cache::conformance::run(io, std::move(op));
}

cache::entry_ptr sample_entry(std::chrono::milliseconds retain = 1h) {
    auto e = std::make_shared<cache::entry>();
    e->status = 200;
    e->headers = {{"Content-Type", "application/json"}};
    e->body = R"({"videos":[1,2,3]})";
    e->stored_at = cache::clock::now();
    e->expires_at = e->stored_at + retain;
    e->retain_until = e->expires_at;
    e->stamps = {{"videos", 1}, {"video:42", 3}, {std::string(cache::all_category), 0}};
    return e;
}

// A mongoc client of the test's own, to look at what the tier wrote.
struct inspector {
    mongoc_client_t* client;
    explicit inspector(const std::string& uri) : client(mongoc_client_new(uri.c_str())) {}
    ~inspector() { mongoc_client_destroy(client); }
    std::vector<std::string> documents(const std::string& db, const std::string& coll) {
        auto* c = mongoc_client_get_collection(client, db.c_str(), coll.c_str());
        bson_t empty = BSON_INITIALIZER;
        auto out = drain_as_json(mongoc_collection_find_with_opts(c, &empty, nullptr, nullptr));
        mongoc_collection_destroy(c);
        bson_destroy(&empty);
        return out;
    }
    std::vector<std::string> index_specs(const std::string& db, const std::string& coll) {
        auto* c = mongoc_client_get_collection(client, db.c_str(), coll.c_str());
        auto out = drain_as_json(mongoc_collection_find_indexes_with_opts(c, nullptr));
        mongoc_collection_destroy(c);
        return out;
    }
    // Every document of `cursor` as relaxed extended JSON; destroys the cursor.
    static std::vector<std::string> drain_as_json(mongoc_cursor_t* cursor) {
        std::vector<std::string> out;
        const bson_t* doc;
        while (mongoc_cursor_next(cursor, &doc)) {
            char* json = bson_as_relaxed_extended_json(doc, nullptr);
            out.emplace_back(json);
            bson_free(json);
        }
        mongoc_cursor_destroy(cursor);
        return out;
    }
};

class mongo_tier_test : public ::testing::Test {
protected:
    void SetUp() override {
        database_ = target().fresh_database();
        connection_ = connect(host_, metrics_, database_);
    }
    void TearDown() override { connection_->stop(); }
    // The waiters' context outlives the worker threads (declared first, destroyed last).
    net::io_context io_;
    loop_host host_;
    cachecar::stats::registry metrics_;
    std::string database_;
    std::shared_ptr<mongo::mongo_connection> connection_;
};

TEST_F(mongo_tier_test, document_layout_and_indexes) {
    mongo::mongo_tier tier(connection_, "ns", metrics_);
    ASSERT_FALSE(run_on(io_, tier.store("ns:videos:abc", sample_entry())));
    inspector look(target().uri());
    auto docs = look.documents(database_, "cache");
    ASSERT_EQ(docs.size(), 1u);
    const auto& d = docs[0];
    EXPECT_NE(d.find(R"("_id" : "ns:videos:abc")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("ns" : "ns")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("categories" : [ "videos", "video:42" ])"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("value" : { "$binary")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("expires_at" : { "$date")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("created_at" : { "$date")"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("hit_count" : 0)"), std::string::npos) << d;
    EXPECT_NE(d.find(R"("last_access" : { "$date")"), std::string::npos) << d;
    // Indexes are created at start-up, idempotently.
    ASSERT_TRUE(eventually([&] { return look.index_specs(database_, "cache").size() >= 4; }));
    std::string all;
    for (const auto& s : look.index_specs(database_, "cache")) all += s + "\n";
    EXPECT_NE(all.find(R"("expireAfterSeconds" : 0)"), std::string::npos) << all;
    EXPECT_NE(all.find(R"("key" : { "categories" : 1 })"), std::string::npos) << all;
    EXPECT_NE(all.find(R"("key" : { "expires_at" : 1 })"), std::string::npos) << all;
}

TEST_F(mongo_tier_test, hit_counts_are_written_in_batches) {
    mongo::mongo_tier tier(connection_, "ns", metrics_);
    run_on(io_, tier.store("ns:r:a", sample_entry()));
    run_on(io_, tier.store("ns:r:b", sample_entry()));
    if (auto* server = target().server()) server->reset_counts();
    for (int i = 0; i < 20; ++i) {
        ASSERT_TRUE(run_on(io_, tier.lookup("ns:r:a")).has_value());
        if (i % 2 == 0) {
            ASSERT_TRUE(run_on(io_, tier.lookup("ns:r:b")).has_value());
        }
    }
    inspector look(target().uri());
    ASSERT_TRUE(eventually([&] {
        auto docs = look.documents(database_, "cache");
        return docs.size() == 2 && docs[0].find(R"("hit_count" : 20)") != std::string::npos &&
               docs[1].find(R"("hit_count" : 10)") != std::string::npos;
    })) << look.documents(database_, "cache")[0];
    if (auto* server = target().server()) {
        // 30 hits, one or two flushes: never one write per hit.
        EXPECT_LE(server->command_count("update"), 3u);
    }
}

TEST_F(mongo_tier_test, expired_documents_are_not_served_before_ttl_deletion) {
    mongo::mongo_tier tier(connection_, "ns", metrics_);
    run_on(io_, tier.store("ns:r:short", sample_entry(100ms)));
    std::this_thread::sleep_for(150ms);
    auto r = run_on(io_, tier.lookup("ns:r:short"));
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(*r, nullptr);
    inspector look(target().uri());
    if (target().server()) {
        EXPECT_EQ(look.documents(database_, "cache").size(), 1u) << "TTL deletion is lazy";
    }
}

TEST_F(mongo_tier_test, corrupt_document_is_an_error_counted_and_deleted) {
    auto* server = target().server();
    if (!server) {
        GTEST_SKIP() << "planting raw documents needs the test server";
    }
    mongo::mongo_tier tier(connection_, "ns", metrics_);
    const auto far = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                        (cache::clock::now() + 1h).time_since_epoch()).count());
    server->insert_raw(database_, "cache",
                       R"({"_id": "ns:r:bad", "ns": "ns", "value": {"$binary": {"base64": "aGVsbG8=", "subType": "00"}}, "expires_at": {"$date": {"$numberLong": ")" + far + R"("}}})");
    server->insert_raw(database_, "cache",
                       R"({"_id": "ns:r:novalue", "ns": "ns", "expires_at": {"$date": {"$numberLong": ")" + far + R"("}}})");
    for (auto key : {"ns:r:bad", "ns:r:novalue"}) {
        auto r = run_on(io_, tier.lookup(key));
        EXPECT_FALSE(r.has_value()) << key << " was served";
    }
    EXPECT_TRUE(server->documents(database_, "cache").empty());
    std::uint64_t corrupt = 0;
    for (const auto& s : metrics_.snapshot()) {
        if (s.name == "cachecar_tier_corrupt_total") corrupt += s.value;
    }
    EXPECT_EQ(corrupt, 2u);
}

TEST_F(mongo_tier_test, clear_deletes_only_this_namespace) {
    mongo::mongo_tier a(connection_, "a", metrics_);
    mongo::mongo_tier b(connection_, "b", metrics_);
    run_on(io_, a.store("a:r:1", sample_entry()));
    run_on(io_, b.store("b:r:1", sample_entry()));
    EXPECT_FALSE(run_on(io_, a.clear()));
    EXPECT_EQ(*run_on(io_, a.lookup("a:r:1")), nullptr);
    EXPECT_NE(*run_on(io_, b.lookup("b:r:1")), nullptr);
}

TEST_F(mongo_tier_test, stalled_or_stopped_server_fails_fast_and_recovers) {
    auto* server = target().server();
    if (!server) {
        GTEST_SKIP() << "fault injection needs the test server";
    }
    mongo::mongo_tier tier(connection_, "ns", metrics_);
    run_on(io_, tier.store("ns:r:k", sample_entry()));
    server->stall(true);
    for (int i = 0; i < 4; ++i) {
        auto started = std::chrono::steady_clock::now();
        EXPECT_FALSE(run_on(io_, tier.lookup("ns:r:k")).has_value());
        EXPECT_LT(std::chrono::steady_clock::now() - started, 2s) << "each operation is bounded by its deadline";
    }
    EXPECT_EQ(tier.state(), cache::tier_state::down);
    auto started = std::chrono::steady_clock::now();
    EXPECT_FALSE(run_on(io_, tier.lookup("ns:r:k")).has_value());
    EXPECT_LT(std::chrono::steady_clock::now() - started, 100ms) << "a down tier fails fast";
    server->stall(false);
    EXPECT_TRUE(eventually([&] { return tier.state() == cache::tier_state::up; }));

    server->stop();
    for (int i = 0; i < 4; ++i) (void)run_on(io_, tier.lookup("ns:r:k"));
    EXPECT_EQ(tier.state(), cache::tier_state::down);
    server->restart();
    EXPECT_TRUE(eventually([&] { return tier.state() == cache::tier_state::up; }, 10s));
    auto r = run_on(io_, tier.lookup("ns:r:k"));
    ASSERT_TRUE(r.has_value()) << r.error().message();
    EXPECT_NE(*r, nullptr) << "data kept across the restart";
}

TEST_F(mongo_tier_test, generations_are_shared_between_stores) {
    mongo::mongo_generation_store a(connection_, "ns", metrics_, 200ms);
    loop_host other_host;
    cachecar::stats::registry other_metrics;
    auto other = connect(other_host, other_metrics, database_);
    mongo::mongo_generation_store b(other, "ns", other_metrics, 200ms);

    auto before = run_on(io_, b.current({"videos", "*"}));
    ASSERT_TRUE(before.has_value()) << before.error().message();
    EXPECT_GT((*before)[0], 1'000'000'000'000'000ull) << "created at the current time in microseconds";
    std::vector<cache::category_stamp> stamps{{"videos", (*before)[0]}, {"*", (*before)[1]}};
    EXPECT_EQ(b.validate_cached(stamps), std::optional<bool>(true));

    auto bumped = run_on(io_, a.bump({"videos"}));
    ASSERT_TRUE(bumped.has_value());
    EXPECT_EQ((*bumped)[0], (*before)[0] + 1);
    EXPECT_EQ(a.validate_cached(stamps), std::optional<bool>(false)) << "the purging instance is exact";
    // b's copy ages out after max_staleness; asking again shows the purge.
    std::this_thread::sleep_for(250ms);
    EXPECT_EQ(b.validate_cached(stamps), std::nullopt);
    auto now = run_on(io_, b.current({"videos", "*"}));
    ASSERT_TRUE(now.has_value());
    EXPECT_EQ((*now)[0], (*bumped)[0]);
    other->stop();
}

TEST_F(mongo_tier_test, a_slow_answer_does_not_stretch_the_copys_bound) {
    // The copy is dated by when MongoDB was asked: an answer that took longer than
    // max_staleness to come back is already too old to validate anything.
    auto* server = target().server();
    if (!server) {
        GTEST_SKIP() << "stalling needs the test server";
    }
    mongo::mongo_generation_store store(connection_, "ns", metrics_, 100ms);
    auto first = run_on(io_, store.current({"videos", "*"}));
    ASSERT_TRUE(first.has_value()) << first.error().message();
    const std::vector<cache::category_stamp> stamps{{"videos", (*first)[0]}, {"*", (*first)[1]}};
    std::this_thread::sleep_for(150ms);
    ASSERT_EQ(store.validate_cached(stamps), std::nullopt) << "aged out";
    server->stall(true);
    cachecar::result<std::vector<std::uint64_t>> slow = make_error_code(boost::system::errc::timed_out);
    std::thread asker([&] {
        cachecar::net::io_context io;
        slow = run_on(io, store.current({"videos", "*"}));
    });
    std::this_thread::sleep_for(200ms);  // past max_staleness, within the 500 ms timeout
    server->stall(false);
    asker.join();
    ASSERT_TRUE(slow.has_value()) << slow.error().message();
    EXPECT_EQ(store.validate_cached(stamps), std::nullopt) << "dated by the answer instead of the question";
}

TEST_F(mongo_tier_test, purge_during_outage_is_kept_and_applied_later) {
    auto* server = target().server();
    if (!server) {
        GTEST_SKIP() << "fault injection needs the test server";
    }
    mongo::mongo_generation_store store(connection_, "ns", metrics_);
    auto first = run_on(io_, store.current({"videos"}));
    ASSERT_TRUE(first.has_value());
    server->stop();
    EXPECT_FALSE(run_on(io_, store.bump({"videos"})).has_value());
    EXPECT_EQ(store.pending_purges(), 1u);
    EXPECT_EQ(store.validate_cached({{"videos", (*first)[0]}}), std::optional<bool>(false));
    server->restart();
    ASSERT_TRUE(eventually([&] { return connection_->up(); }, 10s));
    auto after = run_on(io_, store.current({"videos"}));
    ASSERT_TRUE(after.has_value()) << after.error().message();
    EXPECT_EQ(store.pending_purges(), 0u);
    EXPECT_GT((*after)[0], (*first)[0]);
}

}  // namespace
