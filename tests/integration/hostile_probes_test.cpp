// Hostile clients and backends against the running binary (the daemon operators run,
// not the in-process app): many variants per family, in the spirit of the PortSwigger
// web-cache-poisoning and CPDoS papers. CACHECAR_TEST_BINARY=path runs them against
// another cachecar binary.
//
// Poisoning probes are differential: the victim's request is sent once with nothing
// cached ("alone") and once right after the attacker's ("after"); a planted answer makes
// them differ. The backend (tests/support/model_backend) reads requests the way lenient
// frameworks do and reflects what it read. Each family also has control probes that
// must be served from cache, so a cachecar that stored nothing could not pass.
#include "support/daemon_process.hpp"
#include "support/http_client.hpp"
#include "support/model_backend.hpp"
#include "support/test_origin.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <thread>

#include <unistd.h>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

const char* const admin_token = "probe-token-7f3a";

// The daemon under test: this build's, or any other (an installed package, an older
// build) named by CACHECAR_TEST_BINARY.
std::string binary() {
    const char* other = std::getenv("CACHECAR_TEST_BINARY");
    return other != nullptr && *other != '\0' ? other : CACHECAR_BINARY;
}

std::string config_for(std::uint16_t origin_port) {
    return "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  upstream: http://127.0.0.1:" +
           std::to_string(origin_port) + "\n  namespace: probes\n  threads: 2\n  admin_token: " + admin_token + R"(
routes:
  - name: items
    match: GET /api/v1/items/{id}
    tiers: [memory]
    ttl: 5m
    key: [path.id, header.X-Lang]
  - name: videos
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    key: [query.page, query.limit]
  - name: profile
    match: GET /api/v1/profile
    tiers: [memory]
    ttl: 5m
  - name: feed
    match: GET /api/v1/feed
    tiers: [memory]
    ttl: 5m
    shared: true
  - name: static
    match: GET /static/*
    tiers: [memory]
    ttl: 5m
    shared: true
)";
}

std::string req(const std::string& method, const std::string& target, const std::vector<std::string>& lines = {},
                const std::string& body = {}) {
    std::string out = method + " " + target + " HTTP/1.1\r\n";
    if (std::none_of(lines.begin(), lines.end(), [](const std::string& l) {
            std::string n = l.substr(0, l.find(':'));
            for (auto& c : n) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
            return n == "host";
        }))
        out += "Host: app.test\r\n";
    for (const auto& l : lines) out += l + "\r\n";
    if (!body.empty()) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return out + "\r\n" + body;
}

class hostile_probes_test : public ::testing::Test {
protected:
    void SetUp() override {
        origin_.set_handler(model_backend);
        std::ofstream(path_) << config_for(origin_.port());
        daemon_ = std::make_unique<daemon_process>(binary(), path_);
        ASSERT_NE(daemon_->port, 0);
    }
    void TearDown() override {
        daemon_.reset();
        std::filesystem::remove(path_);
    }

    client_response raw(const std::string& bytes) {
        return raw_request(daemon_->port, bytes, bytes.rfind("HEAD ", 0) == 0);
    }
    void purge_all() {
        auto r = http_request(daemon_->admin_port, "POST", "/purge", {{"Authorization", std::string("Bearer ") + admin_token}},
                              R"({"all":true})");
        ASSERT_EQ(r.status, 200u) << r.body;
    }
    struct differential {
        client_response alone, after;
    };
    differential run(const std::string& attacker, const std::string& victim) {
        differential d;
        purge_all();
        d.alone = raw(victim);
        purge_all();
        raw(attacker);
        raw(attacker);
        d.after = raw(victim);
        return d;
    }
    // Counts probes; a failure names the family and the variant.
    void expect_unpoisoned(const std::string& family, const std::string& attacker, const std::string& victim) {
        ++probes_;
        const auto d = run(attacker, victim);
        EXPECT_NE(d.alone.status, 0u) << family << ": no answer to the victim";
        EXPECT_EQ(d.after.status, d.alone.status) << family << " poisoned by:\n" << attacker;
        EXPECT_EQ(d.after.body, d.alone.body) << family << " poisoned by:\n" << attacker;
        EXPECT_EQ(d.after.header("location"), d.alone.header("location")) << family << " poisoned by:\n" << attacker;
    }
    void expect_cached(const std::string& request) {
        purge_all();
        raw(request);
        EXPECT_EQ(raw(request).header("x-cache"), "HIT") << "control must be cacheable:\n" << request;
    }

    test_origin origin_;
    std::string path_ = (std::filesystem::temp_directory_path() /
                         ("cachecar-probes-" + std::to_string(::getpid()) + ".yaml"))
                            .string();
    std::unique_ptr<daemon_process> daemon_;
    int probes_ = 0;
};

// --- request smuggling shapes ----------------------------------------------------------

TEST_F(hostile_probes_test, SmugglingShapedRequestsGet400AndNothingBehindThemIsForwarded) {
    const std::string smuggled = "GET /api/v1/items/SMUGGLED HTTP/1.1\r\nHost: app.test\r\n\r\n";
    const std::string p = "POST /api/v1/register HTTP/1.1\r\nHost: app.test\r\n";
    const std::vector<std::string> shapes{
        p + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",              // CL.TE
        p + "Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n",              // TE.CL
        p + "Transfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n",     // TE.TE
        p + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding: chunked-false\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding: \"chunked\"\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n",                                  // space before ':'
        p + "Transfer-Encoding\r\n\r\n0\r\n\r\n",                                            // no colon
        p + "X: y\r\n Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",                          // obs-fold
        p + "X: y\r\n\tTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        p + "Transfer-Encoding:\x0b" "chunked\r\n\r\n0\r\n\r\n",                             // VT
        p + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n",                   // hex prefix
        p + "Transfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",                       // bare LF in chunk framing
        p + "Transfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\nx\r\n0\r\n\r\n",         // size overflow
        p + "Transfer-Encoding: chunked\r\n\r\n5;a\nb\r\nhello\r\n0\r\n\r\n",                // bare LF in an extension
        p + "Transfer-Encoding: chunked\r\n\r\nZ\r\n\r\n",
        p + "Content-Length: 6\r\nContent-Length: 5\r\n\r\nabcdef",
        p + "Content-Length: 6\r\nContent-Length: 6\r\n\r\nabcdef",
        p + "Content-Length: 6, 6\r\n\r\nabcdef",
        p + "Content-Length: +6\r\n\r\nabcdef",
        p + "Content-Length: -1\r\n\r\n",
        p + "Content-Length: 0x6\r\n\r\nabcdef",
        p + "Content-Length: 6 6\r\n\r\nabcdef",
        p + "Content-Length: 99999999999999999999999\r\n\r\n",
        p + "Content-Length:\r\n\r\n",
        "POST /api/v1/register HTTP/1.0\r\nHost: app.test\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        "POST /api/v1/register HTTP/1.1\nHost: app.test\r\nContent-Length: 0\r\n\r\n",  // bare LF
        "POST /api/v1/register HTTP/1.1\r\nHost: app.test\rX: y\r\nContent-Length: 0\r\n\r\n",  // bare CR
        std::string("POST /api/v1/register HTTP/1.1\r\nHost: app.test\r\nX: a") + '\0' + "b\r\nContent-Length: 0\r\n\r\n",
        "POST /api/v1/register HTTP/1.1\r\nHost: app.test\r\nBad Name: x\r\nContent-Length: 0\r\n\r\n",
        "GET /api/v1/items/1 HTTP/1.1\r\nHost: app.test\r\nHost: evil.example\r\n\r\n",
        "GET /api/v1/items/1 HTTP/1.1\r\n\r\n",
        "GET /api/v1/items/1 HTTP/1.1\r\nHost: app.test/evil\r\n\r\n",
        "GET /api/v1/items/1 HTTP/9.9\r\nHost: app.test\r\n\r\n",
        "GET /api/v1/items/1  HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET\t/api/v1/items/1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET /api/v1/items/1 HTTP/1.1 \r\nHost: app.test\r\n\r\n",
        "GET /api/v1/items/1#frag HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET /api/v1/it\x7f" "ems/1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "GET http://a@b/api HTTP/1.1\r\nHost: app.test\r\n\r\n",
        "G(T /api/v1/items/1 HTTP/1.1\r\nHost: app.test\r\n\r\n",
    };
    int n = 0;
    for (const auto& shape : shapes) {
        const auto before = origin_.count();
        const auto reply = raw_exchange(daemon_->port, shape + smuggled);
        EXPECT_EQ(reply.rfind("HTTP/1.1 400", 0), 0u) << "shape " << n << ":\n" << shape << "\ngot: " << reply.substr(0, 80);
        EXPECT_NE(reply.find("Connection: close"), std::string::npos) << "shape " << n;
        EXPECT_EQ(origin_.count(), before) << "shape " << n << " reached the backend";
        ++n;
    }
    for (const auto& r : origin_.requests()) EXPECT_EQ(r.target.find("SMUGGLED"), std::string::npos);
    EXPECT_EQ(daemon_->running(), true);
    // Control: a well-formed pipeline is answered in full.
    const auto ok = raw_exchange(daemon_->port, req("GET", "/api/v1/items/1") + req("GET", "/api/v1/items/2", {"Connection: close"}));
    EXPECT_EQ(std::count(ok.begin(), ok.end(), '\n') > 4, true);
    EXPECT_NE(ok.find("/api/v1/items/2"), std::string::npos) << ok;
}

// --- unkeyed-header poisoning --------------------------------------------------------------

TEST_F(hostile_probes_test, UnkeyedHeadersCannotPlantAnswers) {
    const std::string victim = req("GET", "/api/v1/items/1");
    expect_cached(victim);
    const std::vector<std::string> headers{
        "X-Forwarded-Host: evil.example", "x-forwarded-host: evil.example", "X-FORWARDED-HOST: evil.example",
        "X-Forwarded-Host: app.test, evil.example", "X-Forwarded-Proto: http", "X-Forwarded-Scheme: http",
        "X-Forwarded-Port: 1337", "X-Forwarded-Prefix: /evil", "X-Forwarded-Server: evil.example",
        "Forwarded: host=evil.example", "Forwarded: proto=http", "Forwarded: for=1.2.3.4;host=evil.example;proto=http",
        "X-Host: evil.example", "X-Original-Host: evil.example", "X-Original-URL: /api/v1/profile",
        "X-Rewrite-URL: /api/v1/profile", "X-Original-URI: /api/v1/profile", "X-HTTP-Method-Override: DELETE",
        "X-HTTP-Method: DELETE", "X-Method-Override: DELETE", "X_Forwarded_Host: evil.example",
        "X-Forwarded_Host: evil.example", "X_Original_URL: /api/v1/profile", "X_HTTP_METHOD_OVERRIDE: DELETE",
        "X-Forwarded-For: 6.6.6.6", "X-Real-IP: 6.6.6.6"};
    for (const auto& h : headers) expect_unpoisoned("unkeyed header", req("GET", "/api/v1/items/1", {h}), victim);
    // Host, in every shape a client can send it.
    for (const auto& host : {"Host: evil.example", "Host: app.test:80", "Host: APP.TEST", "Host: app.test.", "Host: app.test:8080"}) {
        expect_unpoisoned("Host", req("GET", "/api/v1/items/1", {host}), victim);
    }
    expect_unpoisoned("absolute-form target", "GET http://evil.example/api/v1/items/1 HTTP/1.1\r\nHost: app.test\r\n\r\n", victim);
    // A keyed header: extra lines, aliases and Connection tricks.
    const std::string en = req("GET", "/api/v1/items/1", {"X-Lang: en"});
    expect_cached(en);
    for (const auto& lines : std::vector<std::vector<std::string>>{{"X-Lang: en", "X-Lang: <script>"},
                                                                  {"X-Lang: en", "x-lang: fr"},
                                                                  {"X-Lang: en", "X_Lang: fr"},
                                                                  {"X-Lang: en", "Connection: X-Lang"},
                                                                  {"X-Lang: en", "Connection: close, x-lang"},
                                                                  {"X-Lang: en", "Connection: keep-alive", "Connection: X-Lang"}}) {
        std::string what;
        for (const auto& l : lines) what += l + "; ";
        expect_unpoisoned("keyed header " + what, req("GET", "/api/v1/items/1", lines), en);
    }
    EXPECT_GE(probes_, 38);
}

// --- CPDoS (Nguyen, Lo Iacono, Federrath 2019) --------------------------------------------------

TEST_F(hostile_probes_test, CachePoisonedDenialOfServiceDoesNotStick) {
    const std::string victim = req("GET", "/api/v1/items/1");
    const std::string videos = req("GET", "/api/v1/videos?page=1&limit=10");
    expect_cached(victim);
    expect_cached(videos);
    // HTTP Header Oversize: below cachecar's limit, above the backend's (400, not stored).
    for (std::size_t size : {9000u, 12000u, 15000u}) {
        expect_unpoisoned("HHO " + std::to_string(size), req("GET", "/api/v1/items/1", {"X-Oversized: " + std::string(size, 'a')}),
                          victim);
    }
    // Header oversize past cachecar's own limit: 431 from cachecar itself.
    expect_unpoisoned("HHO past cachecar", req("GET", "/api/v1/items/1", {"X-Oversized: " + std::string(20000, 'a')}), victim);
    // HTTP Meta Character: cachecar answers 400 itself, nothing reaches the backend.
    for (const std::string& mc : {std::string("X-Meta: \x01"), std::string("X-Meta: a\x7f"), std::string("X-Meta: \x1b[31m")}) {
        expect_unpoisoned("HMC", req("GET", "/api/v1/items/1", {mc}), victim);
    }
    // HTTP Method Override.
    for (const auto& h : {"X-HTTP-Method-Override: DELETE", "X-HTTP-Method-Override: POST", "X-Method-Override: PUT",
                          "X-HTTP-Method: DELETE"}) {
        expect_unpoisoned("HMO", req("GET", "/api/v1/items/1", {h}), victim);
    }
    // Path variants a strict backend 404s (storable).
    for (const auto& target : {"/api/v1/items/1/", "/api/v1/items/%31", "/api/v1/items/1//", "/api/v1/%69tems/1",
                               "/api/v1/items/1%2F", "/api/v1/items/1;", "/api/v1/items/1%20"}) {
        expect_unpoisoned("path " + std::string(target), req("GET", target), victim);
    }
    for (const auto& target : {"/api/v1/videos/?page=1&limit=10", "/api/v1/vid%65os?page=1&limit=10",
                               "/api/v1/videos?page=1&limit=10&x=1;page=999", "/api/v1/videos?page=1&limit=10&PAGE=999",
                               "/api/v1/videos?limit=10&page=999&page=1"}) {
        expect_unpoisoned("query " + std::string(target), req("GET", target), videos);
    }
    // A body on GET (fat GET).
    expect_unpoisoned("fat GET", req("GET", "/api/v1/items/1", {}, "{\"evil\":true}"), victim);
    EXPECT_GE(probes_, 24);
}

// --- credential isolation ---------------------------------------------------------------------

TEST_F(hostile_probes_test, ACachedAnswerIsNeverServedToAnotherCredential) {
    const std::vector<std::vector<std::string>> credentials{
        {"Authorization: Bearer victim"}, {"authorization: Bearer victim"}, {"AUTHORIZATION: Bearer victim"},
        {"Cookie: session=victim"},       {"Cookie: a=1", "Cookie: session=victim"}, {"X-API-Key: victim"},
        {"x-api-key: victim"},            {"X_API_KEY: victim"},           {"X-Api_Key: victim"},
        {"Proxy-Authorization: Basic victim"}};
    const std::vector<std::vector<std::string>> observers{{}, {"Authorization: Bearer other"}, {"Cookie: session=other"}};
    for (const std::string target : {"/api/v1/profile", "/api/v1/feed"}) {
        for (const auto& cred : credentials) {
            for (const auto& obs : observers) {
                const auto d = run(req("GET", target, cred), req("GET", target, obs));
                ++probes_;
                EXPECT_EQ(d.after.body.find("victim"), std::string::npos)
                    << target << " with " << cred.back() << " leaked to " << (obs.empty() ? "anonymous" : obs.back());
                // On the per-credential route each user gets exactly their own answer. On the
                // shared route a credentialed observer may get the shared (anonymous) entry:
                // that is what shared means; never the victim's.
                if (target == "/api/v1/profile") {
                    EXPECT_EQ(d.after.body, d.alone.body) << target << " " << cred.back();
                }
            }
        }
    }
    // Control: the same credential twice is a hit on the per-credential route.
    expect_cached(req("GET", "/api/v1/profile", {"Authorization: Bearer victim"}));
    EXPECT_GE(probes_, 60);
}

// --- web cache deception ------------------------------------------------------------------------

TEST_F(hostile_probes_test, PathConfusionNeverCachesAVictimsPage) {
    // The profile even says public, so only cachecar's path rules can stop it.
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        auto res = model_backend(r, n);
        res.headers.emplace_back("Cache-Control", "public, max-age=300");
        return res;
    });
    expect_cached(req("GET", "/static/app.css"));
    const std::vector<std::string> paths{
        "/static/..%2Fapi%2Fv1%2Fprofile",          "/static/..%2fapi%2fv1%2fprofile",
        "/static/%2e%2e/api/v1/profile",            "/static/%2E%2E/api/v1/profile",
        "/static/%2e%2e%2fapi/v1/profile",          "/static/.%2e/api/v1/profile",
        "/static/%2e./api/v1/profile",              "/static/../api/v1/profile",
        "/static/./../api/v1/profile",              "/static/..;/api/v1/profile",
        "/static/..;x=1/api/v1/profile",            "/static/x.css;/../../api/v1/profile",
        "/static/..%3b/api/v1/profile",             "/static/..%5capi%5cv1%5cprofile",
        "/static/..\\api\\v1\\profile",             "/static/x/..%2F..%2Fapi%2Fv1%2Fprofile",
        "/static//../api/v1/profile",               "/static/%2e%2e%2f%2e%2e%2fapi/v1/profile",
        "/static/..%00/api/v1/profile",             "/static/%252e%252e/api/v1/profile",
        "/static/..%252fapi%252fv1%252fprofile",    "/static/..%c0%af/api/v1/profile",
        "/static/x.css%2f..%2f..%2fapi%2fv1%2fprofile", "/static/..%2F..%2F..%2Fapi%2Fv1%2Fprofile"};
    for (const auto& path : paths) {
        const auto d = run(req("GET", path, {"Cookie: session=victim"}), req("GET", path));
        ++probes_;
        EXPECT_EQ(d.after.body.find("victim"), std::string::npos) << path << " leaked the victim's profile";
        EXPECT_EQ(d.after.body, d.alone.body) << path;
    }
    // Extension tricks on the profile itself never match a static route.
    for (const auto& path : {"/api/v1/profile/x.css", "/api/v1/profile.css", "/api/v1/profile;x.css", "/api/v1/profile%3Bx.css",
                             "/api/v1/profile%2Fx.css"}) {
        const auto d = run(req("GET", path, {"Cookie: session=victim"}), req("GET", path));
        ++probes_;
        EXPECT_EQ(d.after.body.find("victim"), std::string::npos) << path;
    }
    EXPECT_GE(probes_, 29);
}

// --- the admin API -----------------------------------------------------------------------------

TEST_F(hostile_probes_test, TheAdminApiCannotBeReachedOrTrickedWithoutItsToken) {
    const auto purges = [&] {
        return http_request(daemon_->admin_port, "GET", "/metrics").body.find("cachecar_purges_total{source=\"admin\"");
    };
    struct row {
        const char* what;
        std::vector<std::pair<std::string, std::string>> headers;
        std::string target;
        unsigned status;
    };
    const std::string good = std::string("Bearer ") + admin_token;
    const std::vector<row> table{
        {"no token", {}, "/purge", 401},
        {"wrong token", {{"Authorization", "Bearer nope"}}, "/purge", 401},
        {"token prefix", {{"Authorization", std::string("Bearer ") + std::string(admin_token).substr(0, 8)}}, "/purge", 401},
        {"token plus more", {{"Authorization", good + "x"}}, "/purge", 401},
        {"empty bearer", {{"Authorization", "Bearer "}}, "/purge", 401},
        {"Basic scheme", {{"Authorization", std::string("Basic ") + admin_token}}, "/purge", 401},
        {"token in the query", {}, std::string("/purge?token=") + admin_token, 401},
        {"token in X-Admin-Token", {{"X-Admin-Token", admin_token}}, "/purge", 401},
        {"a wrong line then the right one", {{"Authorization", "Bearer nope"}, {"Authorization", good}}, "/purge", 401},
        {"the right line then a wrong one", {{"Authorization", good}, {"Authorization", "Bearer nope"}}, "/purge", 401},
        {"forwarded from localhost", {{"X-Forwarded-For", "127.0.0.1"}, {"X-Real-IP", "127.0.0.1"}}, "/purge", 401},
        {"path case", {{"Authorization", good}}, "/PURGE", 404},
        {"trailing slash", {{"Authorization", good}}, "/purge/", 404},
        {"encoded path", {{"Authorization", good}}, "/%70urge", 404},
        {"double slash", {{"Authorization", good}}, "//purge", 404},
        {"dot segment", {{"Authorization", good}}, "/x/../purge", 404},
        {"control: the token", {{"Authorization", good}}, "/purge", 200},
        {"control: scheme in lower case (RFC 9110 11.1)", {{"Authorization", std::string("bearer ") + admin_token}}, "/purge", 200},
    };
    for (const auto& r : table) {
        auto res = http_request(daemon_->admin_port, "POST", r.target, r.headers, R"({"all":true})");
        EXPECT_EQ(res.status, r.status) << r.what;
    }
    EXPECT_EQ(http_request(daemon_->admin_port, "POST", "/reload", {}).status, 401u);
    EXPECT_EQ(http_request(daemon_->admin_port, "GET", "/purge", {{"Authorization", good}}).status, 405u);
    // Through the proxy port, admin paths are the backend's: cachecar never acts on them.
    auto through_proxy = raw(req("POST", "/purge", {"Authorization: " + good}, R"({"all":true})"));
    EXPECT_EQ(through_proxy.status, 404u) << "the model backend has no /purge";
    EXPECT_NE(purges(), std::string::npos);
    // Oversized and malformed admin bodies.
    EXPECT_EQ(http_request(daemon_->admin_port, "POST", "/purge", {{"Authorization", good}}, std::string(2 << 20, 'x')).status, 413u);
    EXPECT_EQ(http_request(daemon_->admin_port, "POST", "/purge", {{"Authorization", good}}, "{not json").status, 400u);
    EXPECT_TRUE(daemon_->running());
}

// --- hostile backends -------------------------------------------------------------------------

TEST_F(hostile_probes_test, AHostileBackendCannotPlantOrSplitResponses) {
    const std::string fake = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=600\r\n\r\nPWNED!";
    const std::string len = std::to_string(fake.size());
    struct row {
        std::string method;
        std::string answer;
        std::string late;
        std::chrono::milliseconds pause{0};
    };
    const std::vector<row> table{
        {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: " + len + "\r\n\r\n" + fake, ""},
        {"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: " + len + "\r\n\r\n", fake},
        {"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", "10\r\n" + fake.substr(0, 16) + "\r\n"},
        {"GET", "HTTP/1.1 204 No Content\r\n\r\n" + fake, ""},
        {"GET", "HTTP/1.1 204 No Content\r\n\r\n", fake},
        {"GET", "HTTP/1.1 204 No Content\r\nContent-Length: " + len + "\r\n\r\n", fake},
        {"GET", "HTTP/1.1 304 Not Modified\r\n\r\n", fake},
        {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + fake, ""},
        {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake, 200ms},
        {"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n" + fake, ""},
        {"GET", "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake},
        {"GET", "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake},
        {"GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\nConnection: Upgrade\r\n\r\n" + fake, ""},
        {"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + fake, ""},
        {"GET", "HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: planted=1\r\nContent-Length: 2\r\n\r\nok", ""},
        {"GET", "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: planted=1\r\nContent-Length: 2\r\n\r\nok", ""},
        {"GET", "HTTP/1.1 600 Weird\r\nContent-Length: 2\r\n\r\nok", fake},
        {"GET", "HTTP/1.1 099 Weird\r\nContent-Length: 2\r\n\r\nok", fake},
    };
    const std::string victim = req("GET", "/api/v1/items/1");
    purge_all();
    const auto alone = raw(victim);
    ASSERT_EQ(alone.status, 200u);
    int n = 0;
    for (const auto& r : table) {
        purge_all();
        origin_.set_handler([&r](const origin_request& q, std::size_t s) {
            if (q.target.rfind("/trigger", 0) != 0) return model_backend(q, s);
            origin_response out;
            out.fault = origin_fault::raw_keep_open;
            out.body = r.answer;
            out.late_bytes = r.late;
            out.late_delay = 30ms;
            return out;
        });
        auto trigger = raw(req(r.method, "/trigger?n=" + std::to_string(n)));
        EXPECT_EQ(trigger.body.find("PWNED"), std::string::npos) << "backend answer " << n;
        EXPECT_TRUE(trigger.header("set-cookie").empty()) << "backend answer " << n << ": a split field reached the client";
        if (r.pause.count() > 0) std::this_thread::sleep_for(r.pause);
        for (int i = 0; i < 3; ++i) {
            auto got = raw(victim);
            EXPECT_EQ(got.body, alone.body) << "backend answer " << n << ", victim request " << i;
            std::this_thread::sleep_for(40ms);
        }
        ++n;
    }
    EXPECT_TRUE(daemon_->running());
}

}  // namespace
}  // namespace cachecar::test
