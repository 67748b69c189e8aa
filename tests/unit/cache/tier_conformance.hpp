// The conformance suite every cache tier must pass (memory, Redis, MongoDB), after
// Envoy's cache filter conformance tests: one set of behaviours, run against each
// storage backend, so the tier chain can treat them alike.
//
// Why a *type*-parameterised suite rather than TEST_P over a std::function factory:
// TEST_P bodies are ordinary (non-inline) definitions, so a header holding them breaks
// the link as soon as two tier tests in one binary include it (the unit test binary
// globs every tests/unit/**/*_test.cpp). TYPED_TEST_P bodies are templates and the
// registration state is file-static, which gtest supports including from many files.
//
// To run it for a tier, define a factory type and instantiate the suite once, at
// global scope, in that tier's test file:
//
//   struct memory_factory {
//       // A fresh, empty tier. Any I/O it does must run on `ex`: the io_context the
//       // test drives (from one thread, except in the concurrency test). Shared tiers
//       // (Redis, MongoDB) should give every call its own key namespace; TearDown()
//       // calls clear() to drop it.
//       static std::unique_ptr<cachecar::cache::tier> make(cachecar::net::any_io_executor ex);
//   };
//   CACHECAR_TIER_CONFORMANCE(memory, memory_factory);
//
// Tests are then named <prefix>/tier_conformance/0.<test>. Time-based tests sleep at
// most 50 ms. Round trips demand *identical* entries, timestamps included at full
// system_clock precision, so a tier must not store them as, say, BSON milliseconds.
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/cache/tier.hpp>
#include <cachecar/net.hpp>

#include <gtest/gtest.h>

#include <atomic>
#include <charconv>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <future>
#include <memory>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace cachecar::cache::conformance {

// Runs `op` on `io` from this thread until it completes and returns its value (or
// rethrows its exception). Throws if it has not completed within `deadline`, so a
// tier that never answers fails the test instead of hanging it.
template <class T>
T run(net::io_context& io, net::awaitable<T> op,
      std::chrono::steady_clock::duration deadline = std::chrono::seconds(10)) {
    auto done = net::co_spawn(io, std::move(op), net::use_future);
    const auto give_up = std::chrono::steady_clock::now() + deadline;
    io.restart();
    while (done.wait_for(std::chrono::seconds(0)) != std::future_status::ready) {
        if (std::chrono::steady_clock::now() >= give_up) {
            throw std::runtime_error("tier operation did not complete within the deadline");
        }
        // Returns 0 when the context ran out of work, e.g. while the tier waits on a
        // thread of its own; wait for that instead of spinning.
        if (io.run_one_for(std::chrono::milliseconds(50)) == 0) {
            io.restart();
            done.wait_for(std::chrono::milliseconds(1));
        }
    }
    return done.get();
}

// A realistic entry: several headers (one name repeated, one empty value), stamps
// including all_category, retained for `retain` from now and fresh for half of it.
inline entry_ptr make_entry(std::string body, clock::duration retain = std::chrono::hours(1), unsigned status = 200) {
    auto e = std::make_shared<entry>();
    const auto now = clock::now();
    e->status = status;
    e->headers = {{"Content-Type", "application/json"},
                  {"Link", "</a>; rel=preload"},
                  {"Link", "</b>; rel=preload"},
                  {"X-Empty", ""}};
    e->body = std::move(body);
    e->stored_at = now;
    e->expires_at = now + retain / 2;
    e->retain_until = now + retain;
    e->stamps = {{"videos", 3}, {"video:42", 0}, {std::string(all_category), 7}};
    return e;
}

inline void expect_same_entry(const entry& expected, const entry& actual) {
    EXPECT_EQ(expected.status, actual.status);
    EXPECT_EQ(expected.body.size(), actual.body.size());
    EXPECT_TRUE(expected.body == actual.body) << "bodies differ";  // no dump of 1 MiB bodies
    EXPECT_EQ(expected.headers.size(), actual.headers.size());
    EXPECT_EQ(expected.headers.wire(), actual.headers.wire());
    ASSERT_EQ(expected.stamps.size(), actual.stamps.size());
    for (std::size_t i = 0; i < expected.stamps.size(); ++i) {
        EXPECT_EQ(expected.stamps[i].category, actual.stamps[i].category) << "stamp " << i;
        EXPECT_EQ(expected.stamps[i].generation, actual.stamps[i].generation) << "stamp " << i;
    }
    EXPECT_EQ(expected.stored_at.time_since_epoch().count(), actual.stored_at.time_since_epoch().count());
    EXPECT_EQ(expected.expires_at.time_since_epoch().count(), actual.expires_at.time_since_epoch().count());
    EXPECT_EQ(expected.retain_until.time_since_epoch().count(), actual.retain_until.time_since_epoch().count());
}

// For the concurrency test: every field of the entry derives from (writer, round), so
// a reader can tell a whole entry from one stitched together out of two writes.
inline std::string tagged_body(int writer, int round) {
    const std::string tag = std::to_string(writer) + "," + std::to_string(round) + ";";
    std::string body;
    const std::size_t size = 64 + static_cast<std::size_t>((writer * 131 + round * 17) % 97) * 41;
    while (body.size() < size) {
        body += tag;
    }
    return body;
}

inline entry_ptr tagged_entry(int writer, int round) {
    auto e = std::make_shared<entry>();
    e->status = 200 + static_cast<unsigned>(writer);
    e->headers = {{"X-Writer", std::to_string(writer)}, {"X-Round", std::to_string(round)}};
    e->body = tagged_body(writer, round);
    e->stored_at = clock::now();
    e->expires_at = e->stored_at + std::chrono::seconds(1 + writer * 1000 + round);
    e->retain_until = e->expires_at + std::chrono::hours(1);
    e->stamps = {{"writer:" + std::to_string(writer), static_cast<std::uint64_t>(round)},
                 {std::string(all_category), static_cast<std::uint64_t>(writer)}};
    return e;
}

inline bool parse_int(std::string_view s, int& out) {
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
    return ec == std::errc{} && end == s.data() + s.size();
}

inline bool is_whole_tagged_entry(const entry& e) {
    int writer = 0;
    int round = 0;
    if (e.headers.size() != 2) return false;
    auto field = e.headers.begin();
    const auto first = *field++;
    const auto second = *field;
    if (first.name != "X-Writer" || second.name != "X-Round" || !parse_int(first.value, writer) ||
        !parse_int(second.value, round)) {
        return false;
    }
    return e.status == 200 + static_cast<unsigned>(writer) && e.body == tagged_body(writer, round) &&
           e.expires_at - e.stored_at == std::chrono::seconds(1 + writer * 1000 + round) &&
           e.retain_until - e.expires_at == std::chrono::hours(1) && e.stamps.size() == 2 &&
           e.stamps[0].category == "writer:" + std::to_string(writer) &&
           e.stamps[0].generation == static_cast<std::uint64_t>(round) && e.stamps[1].category == all_category &&
           e.stamps[1].generation == static_cast<std::uint64_t>(writer);
}

}  // namespace cachecar::cache::conformance

template <class Factory>
class tier_conformance : public ::testing::Test {
protected:
    void SetUp() override {
        tier_ = Factory::make(io_.get_executor());
        ASSERT_NE(tier_, nullptr);
    }

    void TearDown() override {
        if (tier_) {
            // Shared tiers drop this test's namespace; a failure here is not the test's.
            (void)run(tier_->clear());
        }
    }

    template <class T>
    T run(cachecar::net::awaitable<T> op) {
        return cachecar::cache::conformance::run(io_, std::move(op));
    }

    // A lookup that must not fail; returns the entry or null (miss).
    cachecar::cache::entry_ptr lookup(std::string key) {
        const auto r = run(tier_->lookup(std::move(key)));
        EXPECT_TRUE(r.has_value()) << r.error().message();
        return r.has_value() ? *r : nullptr;
    }

    void store(std::string key, cachecar::cache::entry_ptr e) {
        const auto ec = run(tier_->store(std::move(key), std::move(e)));
        EXPECT_FALSE(ec) << ec.message();
    }

    // Declared before tier_ so the tier (which may hold I/O objects) goes first.
    cachecar::net::io_context io_;
    std::unique_ptr<cachecar::cache::tier> tier_;
};

TYPED_TEST_SUITE_P(tier_conformance);

TYPED_TEST_P(tier_conformance, miss_is_null_not_error) {
    const auto r = this->run(this->tier_->lookup("never-stored"));
    ASSERT_TRUE(r.has_value()) << "a miss must be a value, got " << r.error().message();
    EXPECT_EQ(*r, nullptr);
}

TYPED_TEST_P(tier_conformance, store_then_lookup_round_trips) {
    const auto stored = cachecar::cache::conformance::make_entry(R"({"videos":[1,2,3]})", std::chrono::hours(1), 203);
    this->store("round-trip", stored);
    const auto found = this->lookup("round-trip");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*stored, *found);
}

TYPED_TEST_P(tier_conformance, empty_body_and_no_headers_round_trip) {
    auto e = std::make_shared<cachecar::cache::entry>();
    e->status = 204;
    e->stored_at = cachecar::cache::clock::now();
    e->expires_at = e->stored_at + std::chrono::minutes(5);
    e->retain_until = e->expires_at;
    e->stamps = {{std::string(cachecar::cache::all_category), 0}};
    this->store("empty", e);
    const auto found = this->lookup("empty");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*e, *found);
}

// Tiers keep entries past expires_at (stale_if_error needs them); only retain_until
// ends an entry's life.
TYPED_TEST_P(tier_conformance, stale_entry_within_retain_is_returned) {
    auto e = std::make_shared<cachecar::cache::entry>(*cachecar::cache::conformance::make_entry("stale"));
    e->expires_at = e->stored_at - std::chrono::seconds(1);
    this->store("stale", e);
    const auto found = this->lookup("stale");
    ASSERT_NE(found, nullptr);
    EXPECT_FALSE(found->fresh_at(cachecar::cache::clock::now()));
    cachecar::cache::conformance::expect_same_entry(*e, *found);
}

TYPED_TEST_P(tier_conformance, overwrite_replaces) {
    this->store("k", cachecar::cache::conformance::make_entry("first", std::chrono::hours(1), 200));
    const auto second = cachecar::cache::conformance::make_entry("second, longer than the first", std::chrono::hours(2), 404);
    this->store("k", second);
    const auto found = this->lookup("k");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*second, *found);
}

TYPED_TEST_P(tier_conformance, erase_removes_only_that_key) {
    this->store("gone", cachecar::cache::conformance::make_entry("a"));
    this->store("kept", cachecar::cache::conformance::make_entry("b"));
    EXPECT_FALSE(this->run(this->tier_->erase("gone")));
    EXPECT_EQ(this->lookup("gone"), nullptr);
    EXPECT_NE(this->lookup("kept"), nullptr);
    EXPECT_FALSE(this->run(this->tier_->erase("never-stored"))) << "erasing a missing key is not a failure";
}

TYPED_TEST_P(tier_conformance, clear_removes_everything) {
    for (int i = 0; i < 10; ++i) {
        this->store("c" + std::to_string(i), cachecar::cache::conformance::make_entry("x"));
    }
    EXPECT_FALSE(this->run(this->tier_->clear()));
    for (int i = 0; i < 10; ++i) {
        EXPECT_EQ(this->lookup("c" + std::to_string(i)), nullptr) << i;
    }
    const auto after = cachecar::cache::conformance::make_entry("after clear");
    this->store("c0", after);
    const auto found = this->lookup("c0");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*after, *found);
}

TYPED_TEST_P(tier_conformance, entry_past_retain_until_is_never_returned) {
    using namespace std::chrono_literals;
    const auto e = cachecar::cache::conformance::make_entry("short-lived", 30ms);
    this->store("short", e);
    auto found = this->lookup("short");
    // A slow tier may legitimately answer after retain_until; a miss before it is a bug.
    if (cachecar::cache::clock::now() < e->retain_until) {
        EXPECT_NE(found, nullptr) << "missed before retain_until";
    }
    std::this_thread::sleep_until(e->retain_until + 20ms);
    EXPECT_EQ(this->lookup("short"), nullptr);
    EXPECT_EQ(this->lookup("short"), nullptr) << "still null on a second lookup";
}

TYPED_TEST_P(tier_conformance, entry_stored_already_expired_is_not_returned) {
    const auto e = cachecar::cache::conformance::make_entry("dead on arrival", -std::chrono::seconds(1));
    // Whether the store reports success or refuses is up to the tier; serving it is not.
    (void)this->run(this->tier_->store("dead", e));
    EXPECT_EQ(this->lookup("dead"), nullptr);
}

TYPED_TEST_P(tier_conformance, large_body_round_trips) {
    std::string body(std::size_t{1} << 20, '\0');
    for (std::size_t i = 0; i < body.size(); ++i) {
        body[i] = static_cast<char>('a' + (i * 7) % 26);
    }
    const auto e = cachecar::cache::conformance::make_entry(std::move(body));
    this->store("large", e);
    const auto found = this->lookup("large");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*e, *found);
}

TYPED_TEST_P(tier_conformance, binary_body_and_header_bytes_round_trip) {
    std::string body;
    for (int round = 0; round < 4; ++round) {
        for (int b = 0; b < 256; ++b) {
            body.push_back(static_cast<char>(b));
        }
    }
    body += std::string(16, '\0');  // trailing NULs must survive too
    auto e = std::make_shared<cachecar::cache::entry>(*cachecar::cache::conformance::make_entry(body));
    e->headers.add("Content-Disposition", "attachment; filename=\"vid\xC3\xA9o \xE6\x97\xA5.mp4\"");
    this->store("binary", e);
    const auto found = this->lookup("binary");
    ASSERT_NE(found, nullptr);
    cachecar::cache::conformance::expect_same_entry(*e, *found);
}

TYPED_TEST_P(tier_conformance, many_keys) {
    constexpr int count = 1000;
    for (int i = 0; i < count; ++i) {
        this->store("many:" + std::to_string(i), cachecar::cache::conformance::make_entry("body " + std::to_string(i)));
    }
    for (int i = 0; i < count; ++i) {
        const auto found = this->lookup("many:" + std::to_string(i));
        ASSERT_NE(found, nullptr) << i;
        EXPECT_EQ(found->body, "body " + std::to_string(i));
    }
}

// Keys are built from request parts; none of their bytes may be taken as syntax, and
// keys that are prefixes of each other must stay distinct.
TYPED_TEST_P(tier_conformance, keys_with_odd_bytes_are_distinct) {
    const std::vector<std::string> keys = {
        "",
        "a",
        "a:",
        "a: ",
        "a:b:c",
        "with space",
        "with  two spaces",
        "tab\tand\r\nnewline",
        "*",
        "a*",
        "quote\"back\\slash",
        "percent%20encoded&x=1?y",
        "\xD0\xBA\xD0\xBB\xD1\x8E\xD1\x87/\xE6\x97\xA5\xE6\x9C\xAC\xE8\xAA\x9E",  // "ключ/日本語"
        std::string(600, 'k'),
    };
    for (std::size_t i = 0; i < keys.size(); ++i) {
        this->store(keys[i], cachecar::cache::conformance::make_entry("value " + std::to_string(i)));
    }
    for (std::size_t i = 0; i < keys.size(); ++i) {
        const auto found = this->lookup(keys[i]);
        ASSERT_NE(found, nullptr) << "key #" << i;
        EXPECT_EQ(found->body, "value " + std::to_string(i)) << "key #" << i;
    }
    EXPECT_FALSE(this->run(this->tier_->erase("a:")));
    EXPECT_EQ(this->lookup("a:"), nullptr);
    EXPECT_NE(this->lookup("a"), nullptr);
    EXPECT_NE(this->lookup("a: "), nullptr);
}

// Several writers and readers race on a few keys from a multi-threaded io_context.
// Every lookup must return nothing or one whole entry as some writer stored it.
TYPED_TEST_P(tier_conformance, concurrent_store_lookup_returns_whole_entries) {
    constexpr int threads = 4;
    constexpr int workers = 8;
    constexpr int rounds = 150;
    constexpr int keys = 3;
    std::atomic<int> failures{0};
    std::atomic<int> torn{0};
    std::atomic<int> hits{0};
    cachecar::cache::tier& tier = *this->tier_;

    auto worker = [&](int writer) -> cachecar::net::awaitable<void> {
        for (int round = 0; round < rounds; ++round) {
            const std::string key = "race:" + std::to_string((writer + round) % keys);
            const auto ec = co_await tier.store(key, cachecar::cache::conformance::tagged_entry(writer, round));
            if (ec) {
                ++failures;
            }
            const auto r = co_await tier.lookup("race:" + std::to_string(round % keys));
            if (!r.has_value()) {
                ++failures;
            } else if (*r != nullptr) {
                ++hits;
                if (!cachecar::cache::conformance::is_whole_tagged_entry(**r)) {
                    ++torn;
                }
            }
        }
    };

    auto work = cachecar::net::make_work_guard(this->io_);
    this->io_.restart();
    std::vector<std::thread> pool;
    for (int i = 0; i < threads; ++i) {
        pool.emplace_back([this] { this->io_.run(); });
    }
    std::vector<std::future<void>> done;
    for (int w = 0; w < workers; ++w) {
        // Each worker on its own strand, as sessions call tiers (tier.hpp contract).
        done.push_back(cachecar::net::co_spawn(cachecar::net::make_strand(this->io_), worker(w),
                                               cachecar::net::use_future));
    }
    bool all_finished = true;
    std::string error;
    for (auto& d : done) {
        if (d.wait_for(std::chrono::seconds(60)) != std::future_status::ready) {
            all_finished = false;
            continue;
        }
        try {
            d.get();
        } catch (const std::exception& ex) {
            error = ex.what();
        }
    }
    // Stop rather than drain: a networked tier may keep a read pending forever.
    work.reset();
    this->io_.stop();
    for (auto& t : pool) {
        t.join();
    }
    ASSERT_TRUE(all_finished) << "workers did not finish within 60 s";
    EXPECT_EQ(error, "");
    EXPECT_EQ(failures.load(), 0);
    EXPECT_EQ(torn.load(), 0);
    EXPECT_GT(hits.load(), 0);
}

REGISTER_TYPED_TEST_SUITE_P(tier_conformance,
                            miss_is_null_not_error,
                            store_then_lookup_round_trips,
                            empty_body_and_no_headers_round_trip,
                            stale_entry_within_retain_is_returned,
                            overwrite_replaces,
                            erase_removes_only_that_key,
                            clear_removes_everything,
                            entry_past_retain_until_is_never_returned,
                            entry_stored_already_expired_is_not_returned,
                            large_body_round_trips,
                            binary_body_and_header_bytes_round_trip,
                            many_keys,
                            keys_with_odd_bytes_are_distinct,
                            concurrent_store_lookup_returns_whole_entries);

// Instantiates the suite for one tier; use once, at global scope, per tier.
#define CACHECAR_TIER_CONFORMANCE(prefix, factory) INSTANTIATE_TYPED_TEST_SUITE_P(prefix, tier_conformance, factory)
