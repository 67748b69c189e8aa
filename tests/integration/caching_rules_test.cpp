// cachecar as a shared HTTP cache in front of an authenticated API: one table-driven
// test per rule, each naming the attack or RFC section it covers. The origin records
// exactly what it received.
#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"

#include <atomic>
#include <cstdio>
#include <ctime>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

const std::string routes = R"(
routes:
  - name: items
    match: GET /items
    tiers: [memory]
    ttl: 5m
  - name: origin_ttl
    match: GET /origin-ttl
    tiers: [memory]
    ttl: 1h
    ttl_from_origin: true
  - name: swr
    match: GET /swr
    tiers: [memory]
    ttl: 1s
    stale_while_revalidate: 30s
  - name: plain
    match: GET /plain
    tiers: [memory]
    ttl: 1s
  - name: by_host
    match: GET /by-host
    tiers: [memory]
    ttl: 5m
    key: [header.X-Forwarded-Host]
  - name: custom_strip
    match: GET /custom
    tiers: [memory]
    ttl: 5m
    strip_headers: [X-Debug-Token]
  - name: revalidate
    match: GET /rv
    tiers: [memory]
    ttl: 5m
    categories: [rv]
  - name: stale_guard
    match: GET /stale-guard
    tiers: [memory]
    ttl: 1s
    stale_if_error: 5m
  - name: swr_guard
    match: GET /swr-guard
    tiers: [memory]
    ttl: 1s
    stale_while_revalidate: 5m
  - name: heuristic
    match: GET /heuristic
    tiers: [memory]
    ttl: 5m
    ttl_from_origin: true
    status: [200, 201, 202, 203, 403, 404, 500, 503]
  - name: negative
    match: GET /negative/*
    tiers: [memory]
    ttl: 5m
    negative_ttl: 1s
invalidate:
  - match: POST /rv
    purge: [rv]
)";

class caching_rules_test : public proxy_fixture {
protected:
    void SetUp() override { start(routes); }
    std::string raw(const std::string& bytes) { return raw_exchange(cachecar_->port(), bytes); }
};

bool starts_with(const std::string& s, const std::string& p) { return s.rfind(p, 0) == 0; }

// --- 1. Request smuggling (RFC 9112 6.1, 6.3; CWE-444) -------------------------------

TEST_F(caching_rules_test, SmugglingShapedRequestsAreRejectedAndNeverForwarded) {
    struct row {
        const char* attack;
        std::string request;
    };
    const std::string post = "POST /items HTTP/1.1\r\nHost: x\r\n";
    const std::vector<row> table{
        {"CL.TE: Content-Length with Transfer-Encoding", post + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG"},
        {"TE other than a lone chunked (gzip, chunked)", post + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n"},
        {"TE obfuscated (xchunked)", post + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n"},
        {"TE.TE: two Transfer-Encoding fields", post + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n"},
        {"duplicate Content-Length", post + "Content-Length: 4\r\nContent-Length: 5\r\n\r\nabcde"},
        {"non-numeric Content-Length", post + "Content-Length: 4x\r\n\r\nabcd"},
        {"obsolete line folding (RFC 9112 5.2)", "GET /items HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n"},
        {"bare LF line ending", "GET /items HTTP/1.1\r\nHost: x\nX-A: a\r\n\r\n"},
        {"control character in a header value", "GET /items HTTP/1.1\r\nHost: x\r\nX-A: a\x01"
                                                "b\r\n\r\n"},
        {"control character in the target", "GET /it\x7f"
                                            "ems HTTP/1.1\r\nHost: x\r\n\r\n"},
    };
    for (const auto& r : table) {
        auto reply = raw(r.request);
        EXPECT_TRUE(starts_with(reply, "HTTP/1.1 400")) << r.attack << ": " << reply.substr(0, 60);
        EXPECT_NE(reply.find("Connection: close"), std::string::npos) << r.attack;
    }
    EXPECT_EQ(origin_.count(), 0u) << "a rejected request must never reach the backend";
}

TEST_F(caching_rules_test, ChunkedBodiesAreReframedForTheBackend) {
    // Never relayed as the client's raw bytes: the chunk extensions and trailers stay
    // behind. A chunked body that came whole with its head goes on with a Content-Length
    // (backends that read no chunked body get it); one still arriving streams on in
    // cachecar's own chunks (streaming_test.UploadsReachTheBackendAsTheyArrive).
    const std::vector<std::string> whole_bodies{
        "5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        "5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        "B\r\nhello world\r\n0\r\n\r\n",
        "1\r\nh\r\n1\r\ne\r\n9\r\nllo world\r\n0;last=yes\r\n\r\n",
    };
    for (const auto& chunks : whole_bodies) {
        origin_.reset_counts();
        auto reply = raw("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n" + chunks);
        EXPECT_TRUE(starts_with(reply, "HTTP/1.1 200")) << reply;
        auto seen = origin_.requests();
        ASSERT_EQ(seen.size(), 1u) << chunks;
        EXPECT_EQ(seen[0].body, "hello world") << chunks;
        EXPECT_EQ(seen[0].headers.count("transfer-encoding"), 0u) << chunks;
        EXPECT_EQ(seen[0].headers["content-length"], "11") << chunks;
        EXPECT_EQ(seen[0].raw.find("ext="), std::string::npos) << chunks;
        EXPECT_EQ(seen[0].raw.find("last="), std::string::npos) << chunks;
        EXPECT_TRUE(seen[0].trailers.empty()) << chunks;
    }
    // An empty chunked body is a zero Content-Length.
    origin_.reset_counts();
    auto reply = raw("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 200")) << reply;
    ASSERT_EQ(origin_.requests().size(), 1u);
    EXPECT_EQ(origin_.requests()[0].body, "");
    EXPECT_EQ(origin_.requests()[0].headers.count("transfer-encoding"), 0u);
    // Broken chunking found in what arrived is still a 400, and nothing is forwarded.
    origin_.reset_counts();
    reply = raw("POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
                "5\r\nhelloXX6\r\n world\r\n0\r\n\r\n");
    EXPECT_TRUE(starts_with(reply, "HTTP/1.1 400")) << reply;
    EXPECT_EQ(origin_.count(), 0u);
}

// --- 2. What may be stored (RFC 9111 3, 5.2.2) ---------------------------------------

TEST_F(caching_rules_test, OnlySafeResponsesAreStored) {
    struct row {
        const char* rule;
        unsigned status;
        std::vector<std::pair<std::string, std::string>> headers;
        bool stored;
    };
    const std::vector<row> table{
        {"200 plain", 200, {}, true},
        {"404 (negative caching allowed)", 404, {}, true},
        {"410", 410, {}, true},
        {"301", 301, {{"Location", "/x"}}, true},
        {"500 never (cached errors are a DoS vector)", 500, {}, false},
        {"503 never", 503, {}, false},
        {"403 never", 403, {}, false},
        {"206 never (partial content)", 206, {}, false},
        {"Cache-Control: no-store (RFC 9111 5.2.2.5)", 200, {{"Cache-Control", "no-store"}}, false},
        {"Cache-Control: private (RFC 9111 5.2.2.7)", 200, {{"Cache-Control", "private"}}, false},
        {"Cache-Control with private among others", 200, {{"Cache-Control", "max-age=60, Private"}}, false},
        {"Set-Cookie (session fixation / leakage)", 200, {{"Set-Cookie", "sid=1"}}, false},
        {"Vary: * (RFC 9111 4.1)", 200, {{"Vary", "*"}}, false},
    };
    int i = 0;
    for (const auto& r : table) {
        const auto target = "/items?case=" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t) { return origin_response{r.status, r.headers, "b"}; });
        get(target);
        auto again = get(target);
        EXPECT_EQ(again.header("x-cache"), r.stored ? "HIT" : "MISS") << r.rule;
    }
}

TEST_F(caching_rules_test, RequestNoStoreIsNeitherServedNorStored) {
    get("/items?x=1");
    auto r = get("/items?x=1", {{"Cache-Control", "no-store"}});
    EXPECT_EQ(r.header("x-cache"), "BYPASS");
    get("/items?x=2", {{"Cache-Control", "no-store"}});
    EXPECT_EQ(get("/items?x=2").header("x-cache"), "MISS") << "a no-store request must not fill the cache";
}

// An IMF-fixdate (RFC 9110 5.6.7) for `t`.
std::string http_date(std::chrono::system_clock::time_point t) {
    const std::time_t secs = std::chrono::system_clock::to_time_t(t);
    std::tm tm{};
    ::gmtime_r(&secs, &tm);
    static constexpr const char* days[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
    static constexpr const char* months[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                             "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
    char out[64];
    std::snprintf(out, sizeof out, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday], tm.tm_mday,
                  months[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
    return out;
}

// Sleeps until the wall clock is early in a second (< 300 ms past it).
void wait_for_second_start() {
    for (;;) {
        const auto since_epoch = std::chrono::system_clock::now().time_since_epoch();
        const auto into = since_epoch - std::chrono::duration_cast<std::chrono::seconds>(since_epoch);
        if (into < 300ms) return;
        std::this_thread::sleep_for(std::chrono::milliseconds(1000) - std::chrono::duration_cast<std::chrono::milliseconds>(into) + 5ms);
    }
}

TEST_F(caching_rules_test, TtlFromOriginHonoursSMaxAgeMaxAgeAndExpires) {
    struct row {
        const char* rule;
        std::vector<std::pair<std::string, std::string>> headers;
        bool fresh_after_1_5s;
        bool stored;
    };
    const std::vector<row> table{
        {"max-age=1 (RFC 9111 5.2.2.1)", {{"Cache-Control", "max-age=1"}}, false, true},
        {"max-age=60", {{"Cache-Control", "max-age=60"}}, true, true},
        {"s-maxage wins over max-age for shared caches (5.2.2.10)", {{"Cache-Control", "max-age=60, s-maxage=1"}}, false, true},
        // Date is now (filled in below): a Date in 1994 would be 32 years of apparent age.
        {"Expires - Date (5.3)", {{"Date", ""}, {"Expires", ""}}, false, true},
        {"max-age=0: not stored", {{"Cache-Control", "max-age=0"}}, false, false},
        {"no directive: the route's ttl (1h)", {}, true, true},
    };
    int i = 0;
    std::vector<std::string> targets;
    for (const auto& r : table) {
        targets.push_back("/origin-ttl?case=" + std::to_string(i++));
        origin_.set_handler([&r](const origin_request&, std::size_t) {
            auto headers = r.headers;
            const auto now = std::chrono::system_clock::now();
            for (auto& [name, value] : headers) {
                if (name == "Date") value = http_date(now);
                if (name == "Expires") value = http_date(now + 1s);
            }
            return origin_response{200, headers, "b"};
        });
        // Dates have whole seconds: start early in one, so the Date the origin writes and
        // the moment cachecar receives it fall in the same second (no apparent age).
        if (!r.headers.empty() && r.headers.front().first == "Date") wait_for_second_start();
        get(targets.back());
        EXPECT_EQ(get(targets.back()).header("x-cache"), r.stored ? "HIT" : "MISS") << r.rule;
    }
    std::this_thread::sleep_for(1500ms);
    for (std::size_t k = 0; k < table.size(); ++k) {
        if (!table[k].stored) continue;
        EXPECT_EQ(get(targets[k]).header("x-cache"), table[k].fresh_after_1_5s ? "HIT" : "MISS") << table[k].rule;
    }
}

// RFC 9111 4.2.3: a hit's Age is the corrected initial age (the backend's Age, or the
// age its Date shows) plus the time cachecar held the response; reporting only the
// latter keeps caches in front of cachecar fresh too long. Both routes: the route's
// own TTL and ttl_from_origin.
TEST_F(caching_rules_test, AgeOnHitsIncludesTheAgeTheResponseArrivedWith) {
    struct row {
        const char* rule;
        std::string target;
        std::vector<std::pair<std::string, std::string>> headers;
        long min_age;
        long max_age;
    };
    const auto now = std::chrono::system_clock::now();
    const std::vector<row> table{
        {"Age: 30 (route TTL)", "/items?age=1", {{"Age", "30"}}, 30, 33},
        {"Age: 30 (ttl_from_origin)", "/origin-ttl?age=1", {{"Age", "30"}, {"Cache-Control", "max-age=600"}}, 30, 33},
        {"Date 100 s ago: apparent age", "/origin-ttl?age=2", {{"Date", http_date(now - 100s)}, {"Cache-Control", "max-age=600"}}, 99, 104},
        {"Age over Date when larger", "/origin-ttl?age=3", {{"Date", http_date(now - 10s)}, {"Age", "50"}, {"Cache-Control", "max-age=600"}}, 50, 53},
        {"invalid Age (5.1): ignored", "/origin-ttl?age=4", {{"Age", "7200.0"}, {"Cache-Control", "max-age=600"}}, 0, 3},
        {"Age on two lines: invalid, ignored", "/origin-ttl?age=5", {{"Age", "10"}, {"Age", "20"}, {"Cache-Control", "max-age=600"}}, 0, 3},
    };
    for (const auto& r : table) {
        origin_.set_handler([&r](const origin_request&, std::size_t) { return origin_response{200, r.headers, "b"}; });
        get(r.target);
        const auto hit = get(r.target);
        ASSERT_EQ(hit.header("x-cache"), "HIT") << r.rule;
        const long age = std::stol(hit.header("age"));
        EXPECT_GE(age, r.min_age) << r.rule;
        EXPECT_LE(age, r.max_age) << r.rule;
    }
    // Freshness uses the same age: Age 590 of max-age=600 leaves 10 s, so the response is
    // stored and served; Age 600 leaves nothing, so it is not stored.
    origin_.set_handler([](const origin_request& req, std::size_t) {
        return origin_response{200, {{"Age", req.target.find("left") != std::string::npos ? "590" : "600"}, {"Cache-Control", "max-age=600"}}, "b"};
    });
    get("/origin-ttl?left=1");
    EXPECT_EQ(get("/origin-ttl?left=1").header("x-cache"), "HIT");
    get("/origin-ttl?none=1");
    EXPECT_EQ(get("/origin-ttl?none=1").header("x-cache"), "MISS");
}

// RFC 9111 5.3: an Expires that is not a valid HTTP-date means already expired; a
// lenient parser made these fresh for an hour. RFC 9111 1.2.2: a lifetime too large
// is 2^31 s, not an overflow that made the response expire at once.
TEST_F(caching_rules_test, MalformedExpiresIsStaleAndHugeLifetimesAreReused) {
    struct row {
        const char* rule;
        std::vector<std::pair<std::string, std::string>> headers;
        bool reused;
    };
    const auto in_an_hour = http_date(std::chrono::system_clock::now() + 1h);
    auto two_spaces = in_an_hour;
    two_spaces.insert(two_spaces.find(':') - 3, " ");
    auto one_digit_hour = in_an_hour;
    if (one_digit_hour[17] == '0') one_digit_hour.erase(17, 1); else one_digit_hour.replace(17, 2, "9");
    auto utc = in_an_hour;
    utc.replace(utc.size() - 3, 3, "UTC");
    const std::vector<row> table{
        {"valid Expires in an hour", {{"Expires", in_an_hour}}, true},
        {"two spaces", {{"Expires", two_spaces}}, false},
        {"one-digit hour", {{"Expires", one_digit_hour}}, false},
        {"UTC instead of GMT", {{"Expires", utc}}, false},
        {"Expires on two lines", {{"Expires", in_an_hour}, {"Expires", in_an_hour}}, false},
        {"max-age=99999999999", {{"Cache-Control", "max-age=99999999999"}}, true},
        {"s-maxage=99999999999999999999999", {{"Cache-Control", "s-maxage=99999999999999999999999"}}, true},
        {"Expires in 2286", {{"Expires", "Sat, 01 Jan 2286 00:00:00 GMT"}}, true},
        {"Expires in 9999", {{"Expires", "Fri, 31 Dec 9999 23:59:59 GMT"}}, true},
    };
    int i = 0;
    for (const auto& r : table) {
        const auto target = "/origin-ttl?expires=" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t) { return origin_response{200, r.headers, "b"}; });
        get(target);
        EXPECT_EQ(get(target).header("x-cache"), r.reused ? "HIT" : "MISS") << r.rule;
    }
}

// RFC 9111 5.2.2.4: a response with no-cache may be stored but never reused without
// validation; it used to be served for the route's whole TTL.
TEST_F(caching_rules_test, NoCacheResponsesAreRevalidatedBeforeEveryReuse) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        if (r.headers.count("if-none-match") && r.headers.at("if-none-match") == "\"v1\"")
            return origin_response{304, {{"ETag", "\"v1\""}, {"Cache-Control", "no-cache"}}, ""};
        return origin_response{200, {{"ETag", "\"v1\""}, {"Cache-Control", "no-cache"}}, "body #" + std::to_string(n)};
    });
    EXPECT_EQ(get("/rv?nc=1").header("x-cache"), "MISS");
    for (int i = 0; i < 3; ++i) {
        const auto again = get("/rv?nc=1");
        EXPECT_EQ(again.body, "body #1") << "a 304 keeps the stored body";
        EXPECT_EQ(again.header("x-cache"), "HIT");
        EXPECT_EQ(origin_.requests().back().headers.count("if-none-match"), 1u) << "reused without asking the backend";
    }
    EXPECT_EQ(origin_.count("/rv"), 4u) << "every reuse asked the backend";
    // Without a validator it could never be revalidated: not stored at all.
    origin_.set_handler([](const origin_request&, std::size_t n) {
        return origin_response{200, {{"Cache-Control", "no-cache"}}, "plain #" + std::to_string(n)};
    });
    get("/rv?nc=2");
    const auto plain = get("/rv?nc=2");
    EXPECT_EQ(plain.header("x-cache"), "MISS");
    EXPECT_NE(plain.body, "plain #5") << "served from cache without validation";
    EXPECT_GE(metric(cachecar_->admin_port(), R"(cachecar_not_stored_total{route="revalidate",reason="no_cache"})"), 1);
}

// RFC 9111 4.3: an expired entry with a validator is revalidated, not fetched whole; a
// 304 freshens its fields and its freshness (4.3.4) and the body never crosses again.
TEST_F(caching_rules_test, A304FreshensTheStoredEntry) {
    struct row {
        const char* validator;
        std::string stored_field;
        std::string value;
        std::string conditional_field;
    };
    const std::vector<row> table{
        {"ETag -> If-None-Match", "ETag", "\"abc\"", "if-none-match"},
        {"weak ETag -> If-None-Match", "ETag", "W/\"abc\"", "if-none-match"},
        {"Last-Modified -> If-Modified-Since", "Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT", "if-modified-since"},
    };
    int i = 0;
    for (const auto& r : table) {
        SCOPED_TRACE(r.validator);
        const auto target = "/rv?fresh=" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request& req, std::size_t) {
            if (req.headers.count(r.conditional_field) && req.headers.at(r.conditional_field) == r.value) {
                // The 304 makes it fresh for 10 minutes and updates one field.
                return origin_response{304, {{"Cache-Control", "max-age=600"}, {"X-Version", "freshened"}}, ""};
            }
            return origin_response{200, {{r.stored_field, r.value}, {"Cache-Control", "no-cache"}, {"X-Version", "first"},
                                         {"X-Kept", "yes"}}, "the body"};
        });
        get(target);
        const auto before = origin_.count();
        const auto revalidated = get(target);
        ASSERT_EQ(origin_.count(), before + 1);
        EXPECT_EQ(origin_.requests().back().headers.count(r.conditional_field), 1u);
        EXPECT_EQ(revalidated.status, 200u);
        EXPECT_EQ(revalidated.body, "the body");
        EXPECT_EQ(revalidated.header("x-version"), "freshened") << "the 304's fields replace the stored ones";
        EXPECT_EQ(revalidated.header("x-kept"), "yes") << "fields the 304 does not carry are kept";
        EXPECT_EQ(revalidated.header(r.stored_field == "ETag" ? "etag" : "last-modified"), r.value);
        // Now fresh for 10 minutes: served without asking.
        const auto hit = get(target);
        EXPECT_EQ(hit.header("x-cache"), "HIT");
        EXPECT_EQ(hit.header("x-version"), "freshened");
        EXPECT_EQ(origin_.count(), before + 1) << "the freshened entry was not fresh";
    }
    EXPECT_GE(metric(cachecar_->admin_port(), R"(cachecar_validations_total{route="revalidate",outcome="not_modified"})"), 3);
}

// A 200 to the conditional request replaces the entry, validator and all.
TEST_F(caching_rules_test, A200ToARevalidationReplacesTheEntry) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        const auto etag = "\"v" + std::to_string(n) + "\"";
        if (r.headers.count("if-none-match") && n >= 3 && r.headers.at("if-none-match") == "\"v2\"")
            return origin_response{304, {{"ETag", "\"v2\""}, {"Cache-Control", "no-cache"}}, ""};
        return origin_response{200, {{"ETag", etag}, {"Cache-Control", "no-cache"}}, "version " + std::to_string(n)};
    });
    EXPECT_EQ(get("/rv?replace=1").body, "version 1");
    const auto changed = get("/rv?replace=1");
    EXPECT_EQ(changed.body, "version 2") << "the backend's new answer";
    EXPECT_EQ(origin_.requests().back().headers.at("if-none-match"), "\"v1\"");
    const auto again = get("/rv?replace=1");
    EXPECT_EQ(again.body, "version 2");
    EXPECT_EQ(origin_.requests().back().headers.at("if-none-match"), "\"v2\"") << "the new validator is used";
    EXPECT_EQ(again.header("x-cache"), "HIT");
}

// Concurrent requests for an entry being revalidated wait for that one conditional
// request and are answered from the confirmed entry, as hits (the body comes from the
// cache, the backend said 304 once for all of them).
TEST_F(caching_rules_test, RequestsBehindARevalidationShareItsAnswer) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        if (r.headers.count("if-none-match"))
            return origin_response{304, {{"ETag", "\"c\""}, {"Cache-Control", "no-cache"}}, "", 300ms};
        return origin_response{200, {{"ETag", "\"c\""}, {"Cache-Control", "no-cache"}}, "shared #" + std::to_string(n)};
    });
    get("/rv?collapse=1");
    std::vector<client_response> answers(6);
    std::vector<std::thread> clients;
    for (auto& a : answers) clients.emplace_back([&] { a = get("/rv?collapse=1"); });
    for (auto& c : clients) c.join();
    for (const auto& a : answers) {
        EXPECT_EQ(a.body, "shared #1");
        EXPECT_EQ(a.header("x-cache"), "HIT");
        EXPECT_EQ(a.header("x-cache-tier"), "memory");
    }
    EXPECT_LE(origin_.count("/rv"), 3u) << "each waiting request revalidated for itself";
}

// Purges stay exact: a purge that lands while a revalidation is on its way must win;
// the 304 that comes back after it must not bring the purged entry back to life.
TEST_F(caching_rules_test, APurgeDuringARevalidationWins) {
    std::atomic<bool> conditional_seen{false};
    // The 304 comes late: the write below lands meanwhile.
    origin_.set_handler(slow_revalidation_origin(conditional_seen, 1500ms));
    EXPECT_EQ(get("/rv?race=1").body, "read #1");
    std::atomic<bool> revalidated{false};
    client_response during;
    std::thread reader([&] {
        during = get("/rv?race=1");
        revalidated = true;
    });
    ASSERT_TRUE(eventually([&] { return conditional_seen.load(); }));
    EXPECT_EQ(send("POST", "/rv", "x").status, 200u);
    const bool purge_came_first = !revalidated.load();
    reader.join();
    ASSERT_TRUE(purge_came_first) << "the write did not land during the revalidation; the test proves nothing";
    EXPECT_EQ(during.body, "read #1") << "the request that revalidated gets its answer";
    const auto before = origin_.count();
    const auto after = get("/rv?race=1");
    EXPECT_EQ(origin_.count(), before + 1) << "the purged entry was revalidated back to life";
    EXPECT_EQ(origin_.requests().back().headers.count("if-none-match"), 0u) << "a purged entry is fetched whole";
    EXPECT_EQ(after.header("x-cache"), "MISS");
}

// RFC 9111 4.2.4: must-revalidate, proxy-revalidate, s-maxage (5.2.2.10, for a shared
// cache) and no-cache forbid serving stale; the route's stale_if_error and
// stale_while_revalidate used to override them.
TEST_F(caching_rules_test, OriginDirectivesForbidStaleWhateverTheRouteSays) {
    struct row {
        const char* directive;
        bool stale_allowed;
    };
    const std::vector<row> table{
        {"", true},
        {"must-revalidate", false},
        {"proxy-revalidate", false},
        {"s-maxage=1", false},
        {"public, max-age=1, MUST-REVALIDATE", false},
        {"no-cache", false},
    };
    for (const auto& path : {std::string("/stale-guard"), std::string("/swr-guard")}) {
        int i = 0;
        std::vector<std::string> targets;
        for (const auto& r : table) {
            targets.push_back(path + "?d=" + std::to_string(i++));
            origin_.set_handler([&r](const origin_request&, std::size_t) {
                origin_response out{200, {}, "good"};
                if (*r.directive) out.headers.emplace_back("Cache-Control", r.directive);
                out.headers.emplace_back("ETag", "\"g\"");
                return out;
            });
            get(targets.back());
        }
        std::this_thread::sleep_for(1100ms);
        origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{500, {}, "broken"}; });
        for (std::size_t k = 0; k < table.size(); ++k) {
            const auto got = get(targets[k]);
            if (table[k].stale_allowed) {
                EXPECT_EQ(got.header("x-cache"), "STALE") << path << " " << table[k].directive;
                EXPECT_EQ(got.body, "good");
            } else {
                EXPECT_NE(got.header("x-cache"), "STALE") << path << " " << table[k].directive;
                EXPECT_NE(got.body, "good") << path << " " << table[k].directive;
            }
        }
    }
}

// RFC 9111 4.2.2: without freshness from the origin, the route's ttl is a heuristic,
// allowed only for heuristically cacheable statuses (RFC 9110 15.1) or `public`.
TEST_F(caching_rules_test, HeuristicFreshnessOnlyForHeuristicallyCacheableStatuses) {
    struct row {
        unsigned status;
        std::vector<std::pair<std::string, std::string>> headers;
        bool stored;
    };
    const std::vector<row> table{
        {200, {}, true},
        {203, {}, true},
        {404, {}, true},
        {201, {}, false},
        {202, {}, false},
        {403, {}, false},
        {500, {}, false},
        {503, {}, false},
        {201, {{"Cache-Control", "public"}}, true},
        {403, {{"Cache-Control", "max-age=60"}}, true},
    };
    int i = 0;
    for (const auto& r : table) {
        const auto target = "/heuristic?s=" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t n) {
            return origin_response{r.status, r.headers, "answer #" + std::to_string(n)};
        });
        get(target);
        EXPECT_EQ(get(target).header("x-cache"), r.stored ? "HIT" : "MISS")
            << r.status << (r.headers.empty() ? "" : " " + r.headers.front().second);
    }
}

// A 404 is wrong as soon as the resource is created: negative answers are kept at
// most negative_ttl when the route's ttl applies (1 s on this route, 5 min for a 200).
TEST_F(caching_rules_test, NegativeAnswersGetTheirOwnShortTtl) {
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        const unsigned status = r.target.find("gone") != std::string::npos  ? 410
                                : r.target.find("none") != std::string::npos ? 404
                                                                             : 200;
        return origin_response{status, {}, "#" + std::to_string(n)};
    });
    for (const auto* t : {"/negative/none", "/negative/gone", "/negative/here"}) {
        get(t);
        EXPECT_EQ(get(t).header("x-cache"), "HIT") << t;
    }
    std::this_thread::sleep_for(1200ms);
    EXPECT_EQ(get("/negative/none").header("x-cache"), "MISS") << "the 404 outlived negative_ttl";
    EXPECT_EQ(get("/negative/gone").header("x-cache"), "MISS") << "the 410 outlived negative_ttl";
    EXPECT_EQ(get("/negative/here").header("x-cache"), "HIT") << "a 200 keeps the route's ttl";
}

// RFC 9213: on a ttl_from_origin route the targeted fields come first — cachecar's own
// (Cachecar-Cache-Control, name configurable), then CDN-Cache-Control — and when one is
// used, Cache-Control and Expires are ignored, so a backend can give the sidecar a TTL
// different from the browser's.
TEST_F(caching_rules_test, TargetedCacheControlFieldsComeFirst) {
    struct row {
        const char* rule;
        std::vector<std::pair<std::string, std::string>> headers;
        bool stored;
    };
    const std::vector<row> table{
        {"CDN-Cache-Control over Cache-Control: no-store",
         {{"Cache-Control", "no-store"}, {"CDN-Cache-Control", "max-age=600"}}, true},
        {"CDN-Cache-Control: no-store over Cache-Control: max-age",
         {{"Cache-Control", "max-age=600"}, {"CDN-Cache-Control", "no-store"}}, false},
        {"CDN-Cache-Control: private", {{"Cache-Control", "public, max-age=600"}, {"CDN-Cache-Control", "private"}}, false},
        {"CDN-Cache-Control: max-age=0 (no validator)", {{"Cache-Control", "max-age=600"}, {"CDN-Cache-Control", "max-age=0"}}, false},
        {"Cachecar-Cache-Control before CDN-Cache-Control",
         {{"CDN-Cache-Control", "no-store"}, {"Cachecar-Cache-Control", "max-age=600"}}, true},
        {"Cachecar-Cache-Control: no-store before CDN-Cache-Control",
         {{"CDN-Cache-Control", "max-age=600"}, {"Cachecar-Cache-Control", "no-store"}}, false},
        {"an empty targeted field is skipped", {{"CDN-Cache-Control", ""}, {"Cache-Control", "no-store"}}, false},
        {"targeted: Expires is ignored", {{"CDN-Cache-Control", "must-revalidate"}, {"Expires", "0"}}, true},
    };
    int i = 0;
    for (const auto& r : table) {
        const auto target = "/origin-ttl?targeted=" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t) { return origin_response{200, r.headers, "b"}; });
        get(target);
        EXPECT_EQ(get(target).header("x-cache"), r.stored ? "HIT" : "MISS") << r.rule;
    }
    // A route that does not take the origin's freshness keeps its own rules.
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"CDN-Cache-Control", "no-store"}}, "b"};
    });
    get("/items?targeted=1");
    EXPECT_EQ(get("/items?targeted=1").header("x-cache"), "HIT") << "targeted fields apply with ttl_from_origin only";
}

TEST_F(caching_rules_test, TheTargetedFieldNameIsConfigurable) {
    cachecar_->stop();
    cachecar_.reset();
    start(routes, "  cache_control_field: Edge-Control\n");
    origin_.set_handler([](const origin_request& r, std::size_t) {
        if (r.target.find("own") != std::string::npos)
            return origin_response{200, {{"Cache-Control", "no-store"}, {"Edge-Control", "max-age=600"}}, "b"};
        return origin_response{200, {{"Cache-Control", "max-age=600"}, {"Cachecar-Cache-Control", "no-store"}}, "b"};
    });
    get("/origin-ttl?own=1");
    EXPECT_EQ(get("/origin-ttl?own=1").header("x-cache"), "HIT") << "the configured field was not read";
    get("/origin-ttl?default=1");
    EXPECT_EQ(get("/origin-ttl?default=1").header("x-cache"), "HIT") << "the default name is no longer cachecar's";
}

// RFC 9211: every response on a cacheable route says what the cache did, in the
// standard Cache-Status field, beside X-Cache.
TEST_F(caching_rules_test, CacheStatusSaysWhatTheCacheDid) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        if (r.target.find("nostore") != std::string::npos) return origin_response{200, {{"Cache-Control", "no-store"}}, "b"};
        if (r.headers.count("if-none-match")) return origin_response{304, {{"Cache-Control", "no-cache"}}, ""};
        if (r.target.find("/rv") == 0) return origin_response{200, {{"ETag", "\"s\""}, {"Cache-Control", "no-cache"}}, "b"};
        return origin_response{200, {}, "b"};
    });
    EXPECT_EQ(get("/items?cs=1").header("cache-status"), "cachecar; fwd=uri-miss; fwd-status=200; stored");
    const auto hit = get("/items?cs=1").header("cache-status");
    ASSERT_EQ(hit.rfind("cachecar; hit; ttl=", 0), 0u) << hit;
    const long ttl = std::stol(hit.substr(std::string("cachecar; hit; ttl=").size()));
    EXPECT_GT(ttl, 290);  // the route's 5 minutes, less the moment since the store
    EXPECT_LE(ttl, 300);
    EXPECT_EQ(get("/items?cs=nostore").header("cache-status"), "cachecar; fwd=uri-miss; fwd-status=200")
        << "not stored: no `stored`";
    EXPECT_EQ(get("/items?cs=2", {{"Cache-Control", "no-store"}}).header("cache-status"),
              "cachecar; fwd=request; fwd-status=200; detail=no_store");
    get("/rv?cs=1");
    const auto revalidated = get("/rv?cs=1").header("cache-status");
    EXPECT_EQ(revalidated.rfind("cachecar; fwd=stale; fwd-status=304; stored; ttl=", 0), 0u) << revalidated;
    // A 304 to the client's own validators carries it too.
    const auto not_modified = get("/items?cs=1", {{"If-None-Match", "*"}});
    EXPECT_EQ(not_modified.status, 304u);
    EXPECT_EQ(not_modified.header("cache-status").rfind("cachecar; hit; ttl=", 0), 0u) << not_modified.header("cache-status");
    // Caches nearer the origin come first in the list (RFC 9211 2): the backend's own
    // member is kept, cachecar's follows.
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"Cache-Status", "app-cache; hit"}}, "b"};
    });
    EXPECT_EQ(get("/items?cs=3").header("cache-status"), "app-cache; hit, cachecar; fwd=uri-miss; fwd-status=200; stored");
}

TEST_F(caching_rules_test, CacheStatusNameAndKeyAreConfigurable) {
    cachecar_->stop();
    cachecar_.reset();
    start(routes, "  cache_status: edge-7\n  cache_status_key: true\n");
    get("/items?k=1");
    const auto hit = get("/items?k=1").header("cache-status");
    EXPECT_EQ(hit.rfind("edge-7; hit; ttl=", 0), 0u) << hit;
    EXPECT_NE(hit.find("; key=\""), std::string::npos) << "the debug option adds the key";
    cachecar_->stop();
    cachecar_.reset();
    start(routes, "  cache_status: \"\"\n");
    get("/items?k=2");
    const auto quiet = get("/items?k=2");
    EXPECT_EQ(quiet.header("x-cache"), "HIT");
    EXPECT_EQ(quiet.headers.count("cache-status"), 0u) << "an empty name leaves the field out";
}

// --- 3. Credentials, for keys and for coalescing ---------------------------------------

TEST_F(caching_rules_test, ConcurrentMissesOfTwoUsersNeverShareOneResponse) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        return origin_response{200, {}, "for " + r.headers.at("authorization"), 300ms};
    });
    client_response alice, bob;
    std::thread a([&] { alice = get("/items?me=1", {{"Authorization", "Bearer alice"}}); });
    std::thread b([&] { bob = get("/items?me=1", {{"Authorization", "Bearer bob"}}); });
    a.join();
    b.join();
    EXPECT_EQ(alice.body, "for Bearer alice");
    EXPECT_EQ(bob.body, "for Bearer bob");
    EXPECT_EQ(origin_.count(), 2u);
}

// --- 4. Vary (RFC 9111 4.1) ---------------------------------------------------------------

TEST_F(caching_rules_test, VariantsAreStoredAndServedPerVariedHeader) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        auto it = r.headers.find("accept-language");
        return origin_response{200, {{"Vary", "Accept-Language"}}, it == r.headers.end() ? "none" : it->second};
    });
    EXPECT_EQ(get("/items?v=1", {{"Accept-Language", "en"}}).body, "en");
    EXPECT_EQ(get("/items?v=1", {{"Accept-Language", "fr"}}).body, "fr");
    auto en = get("/items?v=1", {{"Accept-Language", "en"}});
    auto fr = get("/items?v=1", {{"Accept-Language", "fr"}});
    auto none = get("/items?v=1");
    EXPECT_EQ(en.header("x-cache"), "HIT");
    EXPECT_EQ(en.body, "en");
    EXPECT_EQ(fr.header("x-cache"), "HIT");
    EXPECT_EQ(fr.body, "fr");
    EXPECT_EQ(none.header("x-cache"), "MISS") << "an absent header is its own variant";
    EXPECT_EQ(none.body, "none");
    EXPECT_EQ(origin_.count(), 3u);
}

TEST_F(caching_rules_test, ConcurrentMissesOfDifferentVariantsGetTheirOwn) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        return origin_response{200, {{"Vary", "Accept-Language"}}, r.headers.at("accept-language"), 300ms};
    });
    client_response en, de;
    std::thread a([&] { en = get("/items?v=2", {{"Accept-Language", "en"}}); });
    std::this_thread::sleep_for(50ms);
    std::thread b([&] { de = get("/items?v=2", {{"Accept-Language", "de"}}); });
    a.join();
    b.join();
    EXPECT_EQ(en.body, "en");
    EXPECT_EQ(de.body, "de");
}

// --- 5. Conditional requests (RFC 9110 13.1.2, 13.1.3, 15.4.5) -----------------------------

TEST_F(caching_rules_test, ValidatorsOnAHitAreAnsweredWith304) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"ETag", "\"v1\""}, {"Last-Modified", "Sun, 06 Nov 1994 08:49:37 GMT"}}, "body"};
    });
    get("/items?c=1");
    struct row {
        const char* rule;
        std::vector<std::pair<std::string, std::string>> headers;
        unsigned status;
    };
    const std::vector<row> table{
        {"If-None-Match matching (13.1.2)", {{"If-None-Match", "\"v1\""}}, 304},
        {"If-None-Match weak comparison", {{"If-None-Match", "W/\"v1\""}}, 304},
        {"If-None-Match list", {{"If-None-Match", "\"x\", \"v1\""}}, 304},
        {"If-None-Match: *", {{"If-None-Match", "*"}}, 304},
        {"If-None-Match not matching", {{"If-None-Match", "\"v0\""}}, 200},
        {"If-Modified-Since at Last-Modified (13.1.3)", {{"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}}, 304},
        {"If-Modified-Since before Last-Modified", {{"If-Modified-Since", "Sat, 05 Nov 1994 08:49:37 GMT"}}, 200},
        {"If-None-Match takes precedence over If-Modified-Since",
         {{"If-None-Match", "\"v0\""}, {"If-Modified-Since", "Sun, 06 Nov 1994 08:49:37 GMT"}}, 200},
    };
    for (const auto& r : table) {
        auto res = get("/items?c=1", r.headers);
        EXPECT_EQ(res.status, r.status) << r.rule;
        EXPECT_EQ(res.header("x-cache"), "HIT") << r.rule;
        if (r.status == 304) {
            EXPECT_TRUE(res.body.empty()) << r.rule;
            EXPECT_EQ(res.header("etag"), "\"v1\"") << r.rule;
        } else {
            EXPECT_EQ(res.body, "body") << r.rule;
        }
    }
    EXPECT_EQ(origin_.count(), 1u);
}

TEST_F(caching_rules_test, ValidatorsOnAMissAreNotForwardedSoTheFullResponseIsStored) {
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{200, {{"ETag", "\"e\""}}, "full"}; });
    auto first = get("/items?c=2", {{"If-None-Match", "\"e\""}});
    EXPECT_EQ(first.status, 304u);
    EXPECT_EQ(origin_.requests().at(0).headers.count("if-none-match"), 0u);
    auto plain = get("/items?c=2");
    EXPECT_EQ(plain.header("x-cache"), "HIT");
    EXPECT_EQ(plain.body, "full");
}

// --- 6. Stale on purpose (RFC 5861) ---------------------------------------------------------

TEST_F(caching_rules_test, StaleWhileRevalidateAnswersAtOnceAndRefreshesOnce) {
    origin_.set_handler([](const origin_request&, std::size_t n) { return origin_response{200, {}, "v" + std::to_string(n)}; });
    EXPECT_EQ(get("/swr").body, "v1");
    std::this_thread::sleep_for(1100ms);
    origin_.set_handler([](const origin_request&, std::size_t n) {
        return origin_response{200, {}, "v" + std::to_string(n), 2000ms};
    });
    const auto started = std::chrono::steady_clock::now();
    std::vector<client_response> stale(4);
    std::vector<std::thread> clients;
    for (auto& s : stale) clients.emplace_back([&] { s = get("/swr"); });
    for (auto& c : clients) c.join();
    // The refresh takes 2 s at the origin; the stale answers must not wait for it.
    EXPECT_LT(std::chrono::steady_clock::now() - started, 1500ms) << "stale answers waited for the origin";
    for (const auto& s : stale) {
        EXPECT_EQ(s.header("x-cache"), "STALE");
        EXPECT_EQ(s.body, "v1");
    }
    // The refresh (2 s at the origin) lands in the background; then the key is a hit.
    ASSERT_TRUE(eventually([&] { return get("/swr").header("x-cache") == "HIT"; }, 6s)) << "the refresh never landed";
    EXPECT_EQ(origin_.count("/swr"), 2u) << "one background refresh per key";
    auto fresh = get("/swr");
    EXPECT_EQ(fresh.header("x-cache"), "HIT");
    EXPECT_EQ(fresh.body, "v2");
}

TEST_F(caching_rules_test, ResponseStaleDirectivesAreHonoured) {
    // The route has no stale windows; the origin grants them itself.
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"Cache-Control", "max-age=1, stale-if-error=60"}}, "good"};
    });
    get("/plain");
    std::this_thread::sleep_for(1100ms);
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{502, {}, "down"}; });
    auto r = get("/plain");
    EXPECT_EQ(r.status, 200u);
    EXPECT_EQ(r.header("x-cache"), "STALE");
    EXPECT_EQ(r.body, "good");
}

// --- 7. Unkeyed input (web cache poisoning) ---------------------------------------------------

TEST_F(caching_rules_test, ReflectedUnkeyedHeadersAreNotForwardedOnCacheableRoutes) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        // A backend that reflects X-Forwarded-Host into its response: the classic
        // poisoning gadget.
        auto it = r.headers.find("x-forwarded-host");
        return origin_response{200, {}, "<script src=//" + (it == r.headers.end() ? std::string("self") : it->second) + ">"};
    });
    const std::vector<std::string> unkeyed{"X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL", "X-HTTP-Method-Override",
                                           "X-Host", "X-Forwarded-Server"};
    for (const auto& h : unkeyed) {
        auto r = get("/items?poison=" + h, {{h, "evil.example"}});
        EXPECT_EQ(r.body.find("evil"), std::string::npos) << h;
        EXPECT_EQ(origin_.requests().back().headers.count([&] {
            std::string l = h;
            for (auto& c : l) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            return l;
        }()), 0u) << h << " reached the backend";
    }
    // Nor on unmatched routes: the client is no trusted proxy, and a backend that trusts
    // the header (every request comes from 127.0.0.1) would be told a lie.
    get("/elsewhere", {{"X-Forwarded-Host", "ok.example"}});
    EXPECT_EQ(origin_.requests().back().headers.count("x-forwarded-host"), 0u);
}

TEST_F(caching_rules_test, HeadersInTheKeyAreForwardedAndSplitTheCache) {
    origin_.set_handler([](const origin_request& r, std::size_t) {
        return origin_response{200, {}, "host=" + r.headers.at("x-forwarded-host")};
    });
    EXPECT_EQ(get("/by-host", {{"X-Forwarded-Host", "a.example"}}).body, "host=a.example");
    EXPECT_EQ(get("/by-host", {{"X-Forwarded-Host", "b.example"}}).body, "host=b.example");
    auto a = get("/by-host", {{"X-Forwarded-Host", "a.example"}});
    EXPECT_EQ(a.header("x-cache"), "HIT");
    EXPECT_EQ(a.body, "host=a.example");
}

TEST_F(caching_rules_test, RouteStripHeadersAreNeverForwarded) {
    get("/custom", {{"X-Debug-Token", "secret"}, {"X-Other", "kept"}});
    auto seen = origin_.requests().back();
    EXPECT_EQ(seen.headers.count("x-debug-token"), 0u);
    EXPECT_EQ(seen.headers["x-other"], "kept");
}

TEST_F(caching_rules_test, RoutesMatchExactPathsNeverFileExtensions) {
    // Web cache deception: /items.css must not be cached under (or as) /items.
    get("/items.css");
    EXPECT_EQ(get("/items.css").header("x-cache"), "");
    get("/items/evil.css");
    EXPECT_EQ(get("/items/evil.css").header("x-cache"), "");
    EXPECT_EQ(origin_.count(), 4u);
}

}  // namespace
}  // namespace cachecar::test
