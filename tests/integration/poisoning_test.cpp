// What cachecar keys, what it forwards and what the backend reads must be the same
// message. One table-driven test per class of disagreement an attacker can live in,
// each naming the attack or the RFC section; the backend records the exact bytes it
// received (tests/support/test_origin) and, where it matters, reads them the way
// lenient frameworks do (tests/support/model_backend).
//
// Most tests are differential: what a client gets when it is the first to ask, and
// what it gets after an attacker asked something else first. Equal answers mean the
// attacker's request could not plant anything for it. Each table also has control rows
// that must be served from cache, so a cache that stored nothing could not pass.
#include "support/model_backend.hpp"
#include "support/proxy_fixture.hpp"

#include <algorithm>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

const std::string routes = R"(
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
  - name: tracked
    match: GET /api/v1/tracked
    tiers: [memory]
    ttl: 5m
    key: [query.page]
    ignore_query: [utm_source, "utm_*", fbclid]
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
  - name: search_get
    match: GET /api/v1/search
    tiers: [memory]
    ttl: 5m
    key: [body]
  - name: plain
    match: GET /plain/*
    tiers: [memory]
    ttl: 5m
  - name: shared_plain
    match: GET /shared/*
    tiers: [memory]
    ttl: 5m
    shared: true
  - name: authenticated_ok
    match: GET /catalog
    tiers: [memory]
    ttl: 5m
    shared: true
    store_authenticated: true
)";

// A raw request: "Host: app.test" is added unless `lines` has a Host line or
// `no_host`; a body gets a Content-Length unless `lines` frames it.
std::string raw_req(const std::string& method, const std::string& target, const std::vector<std::string>& lines = {},
                    const std::string& body = {}, const std::string& version = "HTTP/1.1", bool no_host = false) {
    std::string out = method + " " + target + " " + version + "\r\n";
    const bool has_host = std::any_of(lines.begin(), lines.end(), [](const std::string& l) {
        return l.size() >= 5 && (l.compare(0, 5, "Host:") == 0 || l.compare(0, 5, "host:") == 0);
    });
    if (!has_host && !no_host) out += "Host: app.test\r\n";
    bool framed = false;
    for (const auto& l : lines) {
        out += l + "\r\n";
        std::string lower = l.substr(0, l.find(':'));
        for (auto& c : lower) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        framed = framed || lower == "content-length" || lower == "transfer-encoding";
    }
    if (!body.empty() && !framed) out += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    return out + "\r\n" + body;
}

bool has_field(const origin_request& r, std::string name) {
    auto lower = [](std::string s) {
        for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        return s;
    };
    name = lower(name);
    return std::any_of(r.fields.begin(), r.fields.end(), [&](const auto& f) { return lower(f.first) == name; });
}

class poisoning_test : public proxy_fixture {
protected:
    void SetUp() override {
        origin_.set_handler(model_backend);
        start(routes, server_extra());
    }
    virtual std::string server_extra() { return {}; }

    client_response raw(const std::string& bytes) {
        return raw_request(cachecar_->port(), bytes, bytes.rfind("HEAD ", 0) == 0);
    }
    void purge_all() { ASSERT_EQ(admin("POST", "/purge", R"({"all":true})").status, 200u); }

    struct differential {
        client_response alone;  // the victim's request with nothing cached
        client_response after;  // the same request right after the attacker's
    };
    differential run(const std::string& attacker, const std::string& victim) {
        differential d;
        purge_all();
        d.alone = raw(victim);
        purge_all();
        raw(attacker);
        raw(attacker);  // twice: a first answer may only have filled the cache
        d.after = raw(victim);
        return d;
    }
    // The victim got what it would have got alone, not an answer planted for it.
    void expect_unpoisoned(const differential& d, const std::string& what) {
        EXPECT_NE(d.alone.status, 0u) << what << ": no answer";
        EXPECT_EQ(d.after.status, d.alone.status) << what;
        EXPECT_EQ(d.after.body, d.alone.body) << what;
        EXPECT_EQ(d.after.header("location"), d.alone.header("location")) << what;
    }
    // Control: the same request twice is a hit, so the differential tests above are
    // run against a cache that does store.
    void expect_cached(const std::string& request, const std::string& what) {
        purge_all();
        raw(request);
        auto again = raw(request);
        EXPECT_EQ(again.header("x-cache"), "HIT") << what << " (control: must be cacheable)";
    }
};

// --- 1. Repeated field lines (RFC 9110 5.3: lines of a list field are one list) ----------

TEST_F(poisoning_test, ResponseCacheControlAndVaryAreReadOnEveryLine) {
    struct row {
        const char* rule;
        std::vector<std::pair<std::string, std::string>> headers;
        bool stored;
    };
    const std::vector<row> table{
        {"control: max-age then public", {{"Cache-Control", "max-age=60"}, {"Cache-Control", "public"}}, true},
        {"private on a second line (RFC 9111 5.2.2.7)", {{"Cache-Control", "max-age=60"}, {"Cache-Control", "private"}}, false},
        {"no-store on a second line (5.2.2.5)", {{"Cache-Control", "public"}, {"Cache-Control", "no-store"}}, false},
        {"private on a third line", {{"Cache-Control", "max-age=60"}, {"Cache-Control", "public"}, {"Cache-Control", "private"}}, false},
        {"second line in another case", {{"cache-control", "max-age=60"}, {"CACHE-CONTROL", "private"}}, false},
        {"Vary: * on a second line (RFC 9111 4.1)", {{"Vary", "Accept-Encoding"}, {"Vary", "*"}}, false},
        {"Set-Cookie in lower case", {{"set-cookie", "sid=1"}}, false},
        {"private with a quoted field list", {{"Cache-Control", "max-age=60, private=\"X-A, X-B\""}}, false},
    };
    int i = 0;
    for (const auto& r : table) {
        const std::string target = "/plain/cc-" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t n) {
            return origin_response{200, r.headers, "answer #" + std::to_string(n)};
        });
        get(target);
        EXPECT_EQ(get(target).header("x-cache"), r.stored ? "HIT" : "MISS") << r.rule;
    }
}

TEST_F(poisoning_test, VaryOnASecondLineKeepsUsersApart) {
    // A shared route; the origin varies its public answer on Cookie, named on the
    // second Vary line. Alice's feed must never reach Bob.
    origin_.set_handler([](const origin_request& r, std::size_t) {
        auto it = r.headers.find("cookie");
        return origin_response{200,
                               {{"Cache-Control", "public, max-age=60"}, {"Vary", "Accept-Encoding"}, {"Vary", "Cookie"}},
                               "feed of " + (it == r.headers.end() ? std::string("nobody") : it->second)};
    });
    EXPECT_EQ(get("/api/v1/feed", {{"Cookie", "u=alice"}}).body, "feed of u=alice");
    auto bob = get("/api/v1/feed", {{"Cookie", "u=bob"}});
    EXPECT_EQ(bob.body, "feed of u=bob");
    auto alice = get("/api/v1/feed", {{"Cookie", "u=alice"}});
    EXPECT_EQ(alice.header("x-cache"), "HIT") << "control: the variant is stored";
    EXPECT_EQ(alice.body, "feed of u=alice");
}

TEST_F(poisoning_test, KeyedRequestHeadersAreKeyedOnEveryLine) {
    // Node and gunicorn join repeated lines; a key on the first line alone lets a second
    // line choose the answer stored for everyone who sends the first.
    const std::string victim = raw_req("GET", "/api/v1/items/1", {"X-Lang: en"});
    expect_cached(victim, "X-Lang: en");
    for (const auto& second : {"X-Lang: <script>alert(1)</script>", "x-lang: fr", "X-LANG: de"}) {
        expect_unpoisoned(run(raw_req("GET", "/api/v1/items/1", {"X-Lang: en", second}), victim), second);
    }
    // One line with a list and the same values on two lines are different messages.
    expect_unpoisoned(run(raw_req("GET", "/api/v1/items/1", {"X-Lang: en", "X-Lang: fr"}),
                          raw_req("GET", "/api/v1/items/1", {"X-Lang: en, fr"})),
                      "two lines vs one list line");
}

TEST_F(poisoning_test, RequestNoStoreOnASecondLineBypasses) {
    auto r = raw(raw_req("GET", "/plain/req-cc", {"Cache-Control: max-age=0", "Cache-Control: no-store"}));
    EXPECT_EQ(r.header("x-cache"), "BYPASS");
    EXPECT_EQ(get("/plain/req-cc").header("x-cache"), "MISS") << "a no-store request filled the cache";
}

TEST_F(poisoning_test, HeadersNamedInConnectionAreDroppedBeforeKeying) {
    // RFC 9110 7.6.1: fields named in Connection are not forwarded. If the key still
    // holds them, the backend answers without X-Lang under the key of X-Lang: fr.
    const std::string victim = raw_req("GET", "/api/v1/items/2", {"X-Lang: fr"});
    expect_cached(victim, "X-Lang: fr");
    expect_unpoisoned(run(raw_req("GET", "/api/v1/items/2", {"X-Lang: fr", "Connection: X-Lang"}), victim),
                      "Connection: X-Lang");
    expect_unpoisoned(run(raw_req("GET", "/api/v1/items/2", {"X-Lang: fr", "Connection: keep-alive", "Connection: x-lang"}),
                          victim),
                      "X-Lang named on a second Connection line");
}

TEST_F(poisoning_test, ConditionalRequestListsAreReadOnEveryLine) {
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{200, {{"ETag", "\"v1\""}}, "body"}; });
    get("/plain/etag");
    auto r = raw(raw_req("GET", "/plain/etag", {"If-None-Match: \"v0\"", "If-None-Match: \"v1\""}));
    EXPECT_EQ(r.status, 304u) << "RFC 9110 13.1.2: If-None-Match is a list, on any number of lines";
}

// --- 2. Host and forwarding headers ---------------------------------------------------

TEST_F(poisoning_test, HostIsPartOfEveryKey) {
    const std::string victim = raw_req("GET", "/api/v1/items/3", {"Host: app.test"});
    expect_cached(victim, "Host: app.test");
    for (const auto& host : {"Host: evil.example", "Host: app.test.evil.example", "Host: APP.TEST", "Host: app.test:8080"}) {
        expect_unpoisoned(run(raw_req("GET", "/api/v1/items/3", {host}), victim), host);
    }
    // A virtual-host backend's 404 for an unknown host is stored for that host only.
    origin_.set_handler([](const origin_request& r, std::size_t) {
        return r.headers.at("host") == "app.test" ? origin_response{200, {}, "app"} : origin_response{404, {}, "no such site"};
    });
    expect_unpoisoned(run(raw_req("GET", "/plain/vhost", {"Host: other.example"}), raw_req("GET", "/plain/vhost")),
                      "404 of another virtual host");
}

TEST_F(poisoning_test, ClientSentForwardingHeadersNeverReachTheBackend) {
    // A sidecar's backend sees every request from 127.0.0.1 and tends to trust these.
    const std::vector<std::string> lines{
        "X-Forwarded-Proto: http",      "X-Forwarded-Host: evil.example", "X-Forwarded-Prefix: /evil",
        "X-Forwarded-Port: 1337",       "X-Forwarded-Scheme: http",       "X-Forwarded-Server: evil.example",
        "X-Forwarded-Ssl: off",         "Forwarded: proto=http;host=evil.example",
        "X-Real-IP: 6.6.6.6",           "X-Forwarded-For: 6.6.6.6",       "x-forwarded-host: evil.example",
        "X-Original-Host: evil.example", "X-Host: evil.example",          "True-Client-IP: 6.6.6.6"};
    const std::string victim = raw_req("GET", "/api/v1/items/4");
    expect_cached(victim, "plain");
    for (const auto& line : lines) {
        expect_unpoisoned(run(raw_req("GET", "/api/v1/items/4", {line}), victim), line);
        const std::string name = line.substr(0, line.find(':'));
        for (const auto& target : {"/api/v1/items/4", "/not-cached/pass-through"}) {
            raw(raw_req("GET", target, {line}));
            const auto seen = origin_.requests().back();
            if (name == "X-Forwarded-For" || name == "x-forwarded-for") {
                EXPECT_EQ(seen.headers.at("x-forwarded-for"), "127.0.0.1") << target << ": " << line;
            } else {
                EXPECT_FALSE(has_field(seen, name)) << target << ": " << line << " reached the backend";
            }
        }
    }
}

class trusted_proxy_test : public poisoning_test {
    std::string server_extra() override { return "  trusted_proxies: [127.0.0.1/32, \"::1/128\"]\n"; }
};

TEST_F(trusted_proxy_test, ForwardingHeadersFromATrustedProxyAreForwardedAndKeyed) {
    // Behind a TLS terminator that is a trusted proxy, X-Forwarded-Proto is real input:
    // forwarded, and therefore in the key. "http" makes the backend redirect to https;
    // that 301 must not reach clients who came over https.
    const std::string victim = raw_req("GET", "/api/v1/items/5", {"X-Forwarded-Proto: https"});
    expect_cached(victim, "X-Forwarded-Proto: https");
    auto redirected = raw(raw_req("GET", "/api/v1/items/5", {"X-Forwarded-Proto: http"}));
    EXPECT_EQ(redirected.status, 301u) << "the trusted proxy's header reached the backend";
    for (const auto& line : {"X-Forwarded-Proto: http", "X-Forwarded-Host: evil.example", "X-Forwarded-Prefix: /evil",
                             "X-Forwarded-Port: 1337", "Forwarded: proto=http;host=evil.example"}) {
        expect_unpoisoned(run(raw_req("GET", "/api/v1/items/5", {"X-Forwarded-Proto: https", line}), victim), line);
    }
    raw(raw_req("GET", "/not-cached", {"X-Forwarded-For: 10.0.0.7"}));
    EXPECT_EQ(origin_.requests().back().headers.at("x-forwarded-for"), "10.0.0.7, 127.0.0.1");
    // Overrides are never forwarded, not even from a trusted proxy.
    raw(raw_req("GET", "/not-cached", {"X-Original-URL: /api/v1/profile"}));
    EXPECT_FALSE(has_field(origin_.requests().back(), "X-Original-URL"));
}

class upstream_host_test : public poisoning_test {
    std::string server_extra() override { return "  upstream_host: api.internal\n"; }
};

TEST_F(upstream_host_test, AFixedUpstreamHostReplacesTheClientsAndIsNotKeyed) {
    raw(raw_req("GET", "/api/v1/items/6", {"Host: one.example"}));
    EXPECT_EQ(origin_.requests().back().headers.at("host"), "api.internal");
    auto other = raw(raw_req("GET", "/api/v1/items/6", {"Host: two.example"}));
    EXPECT_EQ(other.header("x-cache"), "HIT") << "the backend saw the same Host, so the answer is shared";
    EXPECT_EQ(origin_.count(), 1u);
}

// --- 3. The path exactly as forwarded --------------------------------------------------

TEST_F(poisoning_test, ThePathIsKeyedExactlyAsForwarded) {
    // A strict backend knows only the exact path; everything else is a 404, which is
    // storable. The matcher's reading (decoded, trailing slash dropped) must not put
    // that 404 under the key of the real resource.
    origin_.set_handler([](const origin_request& r, std::size_t) {
        const auto path = r.target.substr(0, r.target.find('?'));
        if (path == "/api/v1/items/X" || path == "/api/v1/videos") return origin_response{200, {}, "the resource"};
        return origin_response{404, {}, "not found: " + path};
    });
    const std::string item = raw_req("GET", "/api/v1/items/X");
    expect_cached(item, "/api/v1/items/X");
    for (const auto& target : {"/api/v1/items/X/", "/api/v1/items/%58", "/api/v1/it%65ms/X", "/api/v1/%69tems/X",
                               "/api/v1/items/X//", "/api/v1/items/%58/"}) {
        expect_unpoisoned(run(raw_req("GET", target), item), target);
    }
    const std::string videos = raw_req("GET", "/api/v1/videos?page=1&limit=10");
    expect_cached(videos, "/api/v1/videos");
    for (const auto& target : {"/api/v1/vid%65os?page=1&limit=10", "/api/v1/videos/?page=1&limit=10",
                               "/api/v1/VIDEOS?page=1&limit=10"}) {
        expect_unpoisoned(run(raw_req("GET", target), videos), target);
    }
}

// --- 4. Web cache deception through dot segments ----------------------------------------

TEST_F(poisoning_test, DotSegmentsEncodedSlashesAndParametersAreNeverCachedAsAnotherResource) {
    // The victim follows a link into the shared /static/* route; the backend resolves the
    // path to the victim's profile. An anonymous client then asks for the same URL.
    // The profile even says `public` here, so only the path rule can stop it.
    origin_.set_handler([](const origin_request& r, std::size_t n) {
        auto res = model_backend(r, n);
        res.headers.emplace_back("Cache-Control", "public, max-age=300");
        return res;
    });
    const std::vector<std::string> deceptive{
        "/static/..%2Fapi%2Fv1%2Fprofile", "/static/%2e%2e/api/v1/profile", "/static/%2E%2E/api/v1/profile",
        "/static/../api/v1/profile",       "/static/..;/api/v1/profile",    "/static/%2e%2e%2fapi%2fv1%2fprofile",
        "/static/..%5capi%5cv1%5cprofile", "/static/..\\api\\v1\\profile",   "/static/.%2e/api/v1/profile",
        "/static/x/..%2F..%2Fapi%2Fv1%2Fprofile", "/static/x.css;/../../api/v1/profile", "/static/./../api/v1/profile",
        "/static//../api/v1/profile",      "/static/%2e%2e%3b/api/v1/profile", "/static/..%00/api/v1/profile"};
    expect_cached(raw_req("GET", "/static/app.css"), "/static/app.css");
    for (const auto& path : deceptive) {
        const auto d = run(raw_req("GET", path, {"Cookie: session=victim"}), raw_req("GET", path));
        expect_unpoisoned(d, path);
        EXPECT_EQ(d.after.body.find("victim"), std::string::npos) << path << " leaked the victim's profile";
    }
}

// --- 5. Underscores: one name to CGI, WSGI, Rack and PHP -----------------------------------

TEST_F(poisoning_test, HeaderNamesWithUnderscoresNeverReachTheBackend) {
    // nginx's default (underscores_in_headers off): X_API_KEY is HTTP_X_API_KEY to the
    // backend, a credential cachecar would otherwise not see as one (Puma CVE-2024-45614).
    for (const auto& line : {"X_API_KEY: K1", "X-Api_Key: K1", "x_api_key: K1", "X_Forwarded_Host: evil.example",
                             "X_Original_URL: /api/v1/profile", "X_HTTP_Method_Override: DELETE", "X_Forwarded_Proto: http"}) {
        const std::string name = std::string(line).substr(0, std::string(line).find(':'));
        for (const auto& target : {"/api/v1/feed", "/not-cached"}) {
            raw(raw_req("GET", target, {line}));
            EXPECT_FALSE(has_field(origin_.requests().back(), name)) << target << ": " << line;
        }
        expect_unpoisoned(run(raw_req("GET", "/api/v1/feed", {line}), raw_req("GET", "/api/v1/feed")), line);
    }
}

class underscores_allowed_test : public poisoning_test {
    std::string server_extra() override { return "  underscores_in_headers: true\n"; }
};

TEST_F(underscores_allowed_test, AllowedUnderscoreNamesAreTheSameHeaderAsTheirDashedForm) {
    // Forwarded when the operator allows them, and then treated like the dashed name:
    // X_API_KEY is a credential, X_Forwarded_Host a client forwarding header.
    raw(raw_req("GET", "/api/v1/profile", {"X_API_KEY: K1"}));
    EXPECT_TRUE(has_field(origin_.requests().back(), "X_API_KEY"));
    const auto d = run(raw_req("GET", "/api/v1/profile", {"X_API_KEY: K1"}), raw_req("GET", "/api/v1/profile"));
    expect_unpoisoned(d, "X_API_KEY: K1 then anonymous");
    EXPECT_EQ(d.after.body.find("K1"), std::string::npos);
    expect_unpoisoned(run(raw_req("GET", "/api/v1/profile", {"X_API_KEY: K1"}),
                          raw_req("GET", "/api/v1/profile", {"X-API-Key: K2"})),
                      "X_API_KEY: K1 then X-API-Key: K2");
    raw(raw_req("GET", "/api/v1/items/7", {"X_Forwarded_Host: evil.example"}));
    EXPECT_FALSE(has_field(origin_.requests().back(), "X_Forwarded_Host"));
    expect_unpoisoned(run(raw_req("GET", "/api/v1/items/7", {"X-Lang: en", "X_Lang: evil"}),
                          raw_req("GET", "/api/v1/items/7", {"X-Lang: en"})),
                      "X_Lang is X-Lang to the backend");
}

// --- 6. Bodies on GET and HEAD ---------------------------------------------------------------

TEST_F(poisoning_test, ABodyOnAGetIsForwardedButNeverCachedUnlessKeyed) {
    // Elasticsearch-style APIs read GET bodies, so the body is forwarded; a route whose
    // key does not read it neither serves from nor stores into the cache for it.
    const std::string victim = raw_req("GET", "/api/v1/items/8");
    expect_cached(victim, "no body");
    struct row {
        const char* shape;
        std::string request;
    };
    const std::vector<row> table{
        {"Content-Length body", raw_req("GET", "/api/v1/items/8", {}, "{\"evil\":1}")},
        {"chunked body", raw_req("GET", "/api/v1/items/8", {"Transfer-Encoding: chunked"}, "5\r\nevil!\r\n0\r\n\r\n")},
        {"HEAD with a body", raw_req("HEAD", "/api/v1/items/8", {}, "evil")},
    };
    for (const auto& r : table) {
        purge_all();
        auto first = raw(r.request);
        EXPECT_EQ(first.header("x-cache"), "BYPASS") << r.shape;
        if (r.request.rfind("GET", 0) == 0) {
            EXPECT_NE(origin_.requests().back().body.find("evil"), std::string::npos) << r.shape << ": body not forwarded";
        }
        expect_unpoisoned(run(r.request, victim), r.shape);
    }
    EXPECT_EQ(raw(raw_req("GET", "/api/v1/items/8", {"Content-Length: 0"})).header("x-cache"), "HIT")
        << "an empty body is no body";
    // A route that keys the body caches per body.
    EXPECT_EQ(raw(raw_req("GET", "/api/v1/search", {}, "{\"q\":\"a\"}")).header("x-cache"), "MISS");
    EXPECT_EQ(raw(raw_req("GET", "/api/v1/search", {}, "{ \"q\" : \"a\" }")).header("x-cache"), "HIT");
    EXPECT_EQ(raw(raw_req("GET", "/api/v1/search", {}, "{\"q\":\"b\"}")).header("x-cache"), "MISS");
}

// --- 7. Trailer fields (RFC 9110 6.5.1) ---------------------------------------------------

TEST_F(poisoning_test, TrailerFieldsNeverReachTheBackendAsHeaderFields) {
    const std::vector<std::string> trailers{"Host: evil.example", "X-Trailer-Smuggled: 1", "X-Forwarded-Host: evil.example",
                                            "Authorization: Bearer planted", "X-Lang: evil"};
    for (const auto& target : {"/upload", "/api/v1/search"}) {
        std::string body = "5\r\nhello\r\n0\r\n";
        for (const auto& t : trailers) body += t + "\r\n";
        body += "\r\n";
        auto r = raw(raw_req("POST", target, {"Transfer-Encoding: chunked", "Trailer: X-Trailer-Smuggled"}, body));
        ASSERT_EQ(r.status, 200u) << target;
        const auto seen = origin_.requests().back();
        EXPECT_EQ(seen.body, "hello");
        EXPECT_EQ(seen.headers.at("host"), "app.test") << target;
        for (const auto& t : trailers) {
            const auto name = t.substr(0, t.find(':'));
            if (name == "Host") continue;
            EXPECT_FALSE(has_field(seen, name)) << target << ": trailer " << t << " was merged into the head";
            EXPECT_EQ(seen.raw.find(t), std::string::npos) << target << ": trailer bytes forwarded";
        }
    }
    // An obs-folded trailer line is as malformed as one in the head.
    auto folded = raw_exchange(cachecar_->port(), raw_req("POST", "/upload", {"Transfer-Encoding: chunked"},
                                                          "5\r\nhello\r\n0\r\nX-A: a\r\n folded\r\n\r\n"));
    EXPECT_TRUE(folded.rfind("HTTP/1.1 400", 0) == 0 || origin_.requests().back().raw.find("folded") == std::string::npos)
        << folded.substr(0, 80);
}

// --- 8. Bytes past a response's framing (response desync) ---------------------------------

TEST_F(poisoning_test, BytesPastAResponsesFramingAreNeverAnotherRequestsAnswer) {
    // The trigger goes to a pass-through path whose (broken) backend writes more than it
    // framed; the victim's cacheable request follows at once, as it would on a busy
    // pooled connection. The extra bytes are a complete fake response.
    const std::string fake = "HTTP/1.1 200 OK\r\nContent-Length: 6\r\nCache-Control: max-age=600\r\n\r\nPWNED!";
    struct row {
        const char* shape;
        std::string method;
        std::string answer;  // raw bytes, connection kept open
        std::string late;    // more bytes, 30 ms later
        std::chrono::milliseconds pause{0};  // before the victim's request
        unsigned trigger_status = 0;         // what the trigger itself must get (0: any)
    };
    const std::string len = std::to_string(fake.size());
    const std::vector<row> table{
        {"body after a HEAD answer", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: " + len + "\r\n\r\n" + fake, ""},
        {"body after a HEAD answer, late", "HEAD", "HTTP/1.1 200 OK\r\nContent-Length: " + len + "\r\n\r\n", fake},
        {"body after a 204", "GET", "HTTP/1.1 204 No Content\r\n\r\n" + fake, ""},
        {"body after a 204, late", "GET", "HTTP/1.1 204 No Content\r\n\r\n", fake},
        {"body after a 304, late", "GET", "HTTP/1.1 304 Not Modified\r\n\r\n", fake},
        {"body past Content-Length", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" + fake, ""},
        {"body past Content-Length, arriving while idle", "GET", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake, 200ms},
        {"after an interim 103", "GET", "HTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok", fake},
        {"unsolicited 101", "GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" + fake, "", 0ms, 502},
    };
    origin_.set_handler(model_backend);
    const std::string victim = raw_req("GET", "/api/v1/items/9");
    purge_all();
    const auto alone = raw(victim);
    ASSERT_EQ(alone.status, 200u);
    int case_no = 0;
    for (const auto& r : table) {
        purge_all();
        origin_.set_handler([&r](const origin_request& req, std::size_t n) {
            if (req.target.rfind("/trigger", 0) != 0) return model_backend(req, n);
            origin_response out;
            out.fault = origin_fault::raw_keep_open;
            out.body = r.answer;
            out.late_bytes = r.late;
            out.late_delay = 30ms;
            return out;
        });
        auto trigger = raw(raw_req(r.method, "/trigger?case=" + std::to_string(case_no++)));
        EXPECT_NE(trigger.status, 0u) << r.shape;
        EXPECT_EQ(trigger.body.find("PWNED"), std::string::npos) << r.shape << ": the trigger got the fake";
        if (r.trigger_status != 0) {
            EXPECT_EQ(trigger.status, r.trigger_status) << r.shape;
        }
        if (r.pause.count() > 0) std::this_thread::sleep_for(r.pause);
        for (int i = 0; i < 3; ++i) {
            auto got = raw(victim);
            EXPECT_EQ(got.body.find("PWNED"), std::string::npos) << r.shape << ": fake response taken as an answer";
            EXPECT_EQ(got.body, alone.body) << r.shape;
            std::this_thread::sleep_for(40ms);
        }
    }
}

// --- 9. Lenient framing and status --------------------------------------------------------

TEST_F(poisoning_test, MalformedFramingAndHostAreRejectedAndNeverForwarded) {
    struct row {
        const char* rule;
        std::string request;
    };
    const std::string next = raw_req("GET", "/api/v1/items/smuggled");
    const std::vector<row> table{
        {"HTTP/1.0 with Transfer-Encoding (RFC 9112 6.1)",
         raw_req("POST", "/upload", {"Transfer-Encoding: chunked"}, "0\r\n\r\n", "HTTP/1.0") + next},
        {"HTTP/1.1 without Host (RFC 9112 3.2)", raw_req("GET", "/api/v1/items/1", {}, {}, "HTTP/1.1", true) + next},
        {"two Host lines", raw_req("GET", "/api/v1/items/1", {"Host: app.test", "Host: evil.example"}) + next},
        {"two identical Host lines", raw_req("GET", "/api/v1/items/1", {"Host: app.test", "Host: app.test"}) + next},
        {"Host with a path", raw_req("GET", "/api/v1/items/1", {"Host: evil.example/x"}) + next},
        {"Host with user info", raw_req("GET", "/api/v1/items/1", {"Host: app.test@evil.example"}) + next},
        {"Host with a space", raw_req("GET", "/api/v1/items/1", {"Host: app.test evil.example"}) + next},
        {"Host with two ports", raw_req("GET", "/api/v1/items/1", {"Host: app.test:80:81"}) + next},
        {"Host with a bad port", raw_req("GET", "/api/v1/items/1", {"Host: app.test:8o"}) + next},
        {"Host with an open IPv6 bracket", raw_req("GET", "/api/v1/items/1", {"Host: [::1"}) + next},
        {"fragment in the target", raw_req("GET", "/api/v1/items/1#x") + next},
    };
    for (const auto& r : table) {
        const auto before = origin_.count();
        auto reply = raw_exchange(cachecar_->port(), r.request);
        EXPECT_TRUE(reply.rfind("HTTP/1.1 400", 0) == 0) << r.rule << ": " << reply.substr(0, 60);
        EXPECT_NE(reply.find("Connection: close"), std::string::npos) << r.rule;
        EXPECT_EQ(origin_.count(), before) << r.rule << ": reached the backend";
    }
    // HTTP/1.0 may omit Host; the backend still gets one.
    auto old = raw_exchange(cachecar_->port(), raw_req("GET", "/not-cached", {}, {}, "HTTP/1.0", true));
    EXPECT_TRUE(old.rfind("HTTP/1.1 200", 0) == 0 || old.rfind("HTTP/1.0 200", 0) == 0) << old.substr(0, 60);
    EXPECT_TRUE(has_field(origin_.requests().back(), "Host"));
    // Valid forms stay valid.
    for (const auto& host : {"Host: app.test:8080", "Host: 127.0.0.1", "Host: [::1]:8080", "Host: xn--bcher-kva.example"}) {
        EXPECT_EQ(raw(raw_req("GET", "/not-cached", {host})).status, 200u) << host;
    }
}

TEST_F(poisoning_test, InvalidStatusCodesFromTheBackendAre502) {
    for (const auto& status : {"099", "600", "000", "1000", "20", "2OO"}) {
        origin_.set_handler([&](const origin_request&, std::size_t) {
            origin_response out;
            out.fault = origin_fault::raw;
            out.body = std::string("HTTP/1.1 ") + status + " Whatever\r\nContent-Length: 2\r\n\r\nok";
            return out;
        });
        EXPECT_EQ(get("/plain/status").status, 502u) << status;
        EXPECT_EQ(get("/not-cached").status, 502u) << status;
    }
}

TEST_F(poisoning_test, HostileResponseFramingIs502AndNeverStored) {
    struct row {
        const char* shape;
        std::string answer;
    };
    const std::vector<row> table{
        {"Content-Length and Transfer-Encoding (RFC 9112 6.3)",
         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"},
        {"Transfer-Encoding other than chunked", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\nok"},
        {"obs-fold in a response field (splitting)", "HTTP/1.1 200 OK\r\nX-A: a\r\n Set-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok"},
        {"bare LF in a response head", "HTTP/1.1 200 OK\r\nX-A: a\nSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok"},
        {"bare CR in a response field", "HTTP/1.1 200 OK\r\nX-A: a\rSet-Cookie: x=1\r\nContent-Length: 2\r\n\r\nok"},
        {"NUL in a response field", std::string("HTTP/1.1 200 OK\r\nX-A: a") + '\0' + "b\r\nContent-Length: 2\r\n\r\nok"},
        {"two different Content-Lengths", "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!"},
        {"a flood of interim responses",
         [] {
             std::string s;
             for (int i = 0; i < 40; ++i) s += "HTTP/1.1 103 Early Hints\r\nLink: </x>\r\n\r\n";
             return s + "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
         }()},
    };
    int i = 0;
    for (const auto& r : table) {
        const std::string target = "/plain/hostile-" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request&, std::size_t) {
            origin_response out;
            out.fault = origin_fault::raw;
            out.body = r.answer;
            return out;
        });
        auto got = get(target);
        EXPECT_EQ(got.status, 502u) << r.shape;
        EXPECT_TRUE(got.header("set-cookie").empty()) << r.shape << ": a split field reached the client";
        origin_.set_handler(model_backend);
        EXPECT_NE(get(target).header("x-cache"), "HIT") << r.shape << ": stored";
    }
}

TEST_F(poisoning_test, FieldsTheBackendNamesInConnectionAreNeverStoredOrReplayed) {
    origin_.set_handler([](const origin_request&, std::size_t) {
        return origin_response{200, {{"Connection", "X-Hop"}, {"X-Hop", "secret-hop"}, {"X-End", "kept"}}, "b"};
    });
    auto miss = get("/plain/hop");
    auto hit = get("/plain/hop");
    ASSERT_EQ(hit.header("x-cache"), "HIT");
    for (const auto* r : {&miss, &hit}) {
        EXPECT_TRUE(r->header("x-hop").empty()) << "RFC 9110 7.6.1: hop-by-hop field relayed (" << r->header("x-cache") << ")";
        EXPECT_EQ(r->header("x-end"), "kept");
    }
}

// --- 10. Query parameters the key does not name ---------------------------------------------

TEST_F(poisoning_test, RequestsWithUnkeyedQueryParametersAreNeverCached) {
    // The backend splits on ';' and reads names case-insensitively, last value wins:
    // parameter cloaking and case tricks reach it while the key only sees page=1.
    const std::string victim = raw_req("GET", "/api/v1/videos?page=1&limit=10");
    expect_cached(victim, "page=1&limit=10");
    for (const auto& target : {"/api/v1/videos?page=1&limit=10&PAGE=666", "/api/v1/videos?page=1&limit=10&x=1;page=666",
                               "/api/v1/videos?page=1&limit=10&Page=666", "/api/v1/videos?page=1&limit=10;page=666",
                               "/api/v1/videos?page=1&limit=10&utm=1;limit=999", "/api/v1/videos?limit=10&page=666&page=1",
                               "/api/v1/videos?page=1&limit=10&page%20=666", "/api/v1/videos?page=1&limit=10&%70age=666"}) {
        expect_unpoisoned(run(raw_req("GET", target), victim), target);
    }
    auto unkeyed = raw(raw_req("GET", "/api/v1/videos?page=1&limit=10&debug=1"));
    EXPECT_EQ(unkeyed.header("x-cache"), "BYPASS") << "an unkeyed parameter: not served from or stored in cache";
}

TEST_F(poisoning_test, IgnoredQueryParametersAreRemovedBeforeForwarding) {
    get("/api/v1/tracked?page=2");
    auto tracked = get("/api/v1/tracked?utm_source=mail&page=2&utm_medium=x&fbclid=abc");
    EXPECT_EQ(tracked.header("x-cache"), "HIT");
    raw(raw_req("GET", "/api/v1/tracked?utm_campaign=1&page=3&fbclid=2"));
    EXPECT_EQ(origin_.requests().back().target, "/api/v1/tracked?page=3") << "ignored parameters reached the backend";
    EXPECT_EQ(get("/api/v1/tracked?page=2&other=1").header("x-cache"), "BYPASS") << "not ignored, not keyed";
}

TEST_F(poisoning_test, RepeatedKeyedParametersAreKeyedInTheirOrder) {
    // Backends take the first or the last of repeated parameters: order is meaning.
    const std::string victim = raw_req("GET", "/api/v1/videos?page=2&page=1&limit=10");
    expect_cached(victim, "page=2&page=1");
    expect_unpoisoned(run(raw_req("GET", "/api/v1/videos?page=1&page=2&limit=10"), victim), "page=1&page=2");
}

// --- 11. shared: true and credentials (RFC 9111 3.5) --------------------------------------

TEST_F(poisoning_test, SharedRoutesStoreCredentialedAnswersOnlyWhenTheOriginAllows) {
    struct row {
        const char* rule;
        std::string credential;  // request line
        std::string cache_control;
        bool stored;
    };
    const std::vector<row> table{
        {"control: no credential", "", "", true},
        {"Authorization, no directive", "Authorization: Bearer alice", "", false},
        {"Authorization + public", "Authorization: Bearer alice", "public", true},
        {"Authorization + s-maxage", "Authorization: Bearer alice", "s-maxage=60", true},
        {"Authorization + must-revalidate", "Authorization: Bearer alice", "max-age=60, must-revalidate", true},
        {"Authorization + max-age only", "Authorization: Bearer alice", "max-age=60", false},
        {"Cookie, no directive", "Cookie: sid=alice", "", false},
        {"X-API-Key, no directive", "X-API-Key: alice", "", false},
        {"Cookie + public", "Cookie: sid=alice", "public, max-age=60", true},
    };
    int i = 0;
    for (const auto& r : table) {
        const std::string target = "/shared/auth-" + std::to_string(i++);
        origin_.set_handler([&r](const origin_request& req, std::size_t) {
            auto auth = req.headers.find("authorization");
            origin_response out{200, {}, "for " + (auth == req.headers.end() ? std::string("anyone") : auth->second)};
            if (!r.cache_control.empty()) out.headers.emplace_back("Cache-Control", r.cache_control);
            return out;
        });
        raw(raw_req("GET", target, r.credential.empty() ? std::vector<std::string>{} : std::vector<std::string>{r.credential}));
        auto anonymous = raw(raw_req("GET", target));
        EXPECT_EQ(anonymous.header("x-cache"), r.stored ? "HIT" : "MISS") << r.rule;
    }
    // The operator may assert that a shared route's answers are the same for everyone.
    origin_.set_handler(model_backend);
    raw(raw_req("GET", "/catalog", {"Authorization: Bearer alice"}));
    EXPECT_EQ(raw(raw_req("GET", "/catalog")).header("x-cache"), "HIT") << "store_authenticated: true";
}

}  // namespace
}  // namespace cachecar::test
