// Clients that vanish mid-exchange, alongside well-behaved ones: half a head or half a
// body then close (or reset), and resets after a few bytes of a large response. The
// others must not notice, nothing half-received may reach the backend, and cachecar
// must hold no connection for a client that has gone.
#include "support/admin_probe.hpp"
#include "support/client_load.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"

#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

constexpr auto no_hang = 5s;  // healthy backend, no deadline involved: generous
// A response cachecar stores (it fits a shard of the 64 MiB memory tier), and a
// pass-through one too large for the socket buffers: cachecar is still writing it
// when the client resets.
const std::string big_body(3u * 1024u * 1024u, 'b');
const std::string huge_body(16u * 1024u * 1024u, 'h');

class client_faults_test : public proxy_fixture {
protected:
    void SetUp() override {
        origin_.set_handler([](const origin_request& r, std::size_t) {
            if (r.target == "/big") return origin_response{200, {}, big_body};
            if (r.target.starts_with("/pass/huge")) return origin_response{200, {}, huge_body};
            return origin_response{200, {}, r.method + " " + r.target};
        });
        start("limits:\n"
              "  max_object_bytes: 16MiB\n"
              "routes:\n"
              "  - name: items\n"
              "    match: GET /items\n"
              "    tiers: [memory]\n"
              "    ttl: 5m\n"
              "  - name: big\n"
              "    match: GET /big\n"
              "    tiers: [memory]\n"
              "    ttl: 5m\n");
    }

    // Runs `vanish(thread, i)` `rounds` times in each of two threads while four
    // well-behaved clients make requests (GETs of a cached route, POSTs passed through
    // uncached); returns what the well-behaved ones got.
    load_summary with_vanishing_clients(const std::function<void(int thread, int i)>& vanish, int rounds) {
        client_load load(cachecar_->port(), 4,
                         reads_and_writes([](std::size_t n) { return "/items?k=" + std::to_string(n); },
                                          "/api/v1/upload"));
        std::vector<std::thread> vanishing;
        for (int t = 0; t < 2; ++t) {
            vanishing.emplace_back([&, t] {
                for (int i = 0; i < rounds; ++i) vanish(t, i);
            });
        }
        for (auto& v : vanishing) v.join();
        EXPECT_TRUE(load.wait_for(40));
        return load.stop();
    }

    // The well-behaved clients noticed nothing; cachecar let go of every connection
    // and still answers.
    void expect_others_unharmed(const load_summary& s) {
        EXPECT_EQ(s.count(200), s.total()) << s.describe();
        EXPECT_LT(s.slowest(), no_hang) << s.describe();
        for (const auto& v : write_violations(s, origin_.requests())) ADD_FAILURE() << v;
        const auto admin_port = cachecar_->admin_port();
        EXPECT_TRUE(eventually([&] { return metric(admin_port, R"(cachecar_connections{listener="proxy"})") == 0; }))
            << "connections of vanished clients are still open";
        EXPECT_EQ(admin("GET", "/health").status, 200u);
        EXPECT_EQ(get("/items?k=after").status, 200u);
    }
};

TEST_F(client_faults_test, ClientsVanishingMidRequestReachNothingAndCostOthersNothing) {
    auto s = with_vanishing_clients(
        [&](int t, int i) {
            const auto id = std::to_string(t) + "-" + std::to_string(i);
            const bool reset = i % 2 == 1;
            // Half a head: no blank line yet.
            send_and_abort(cachecar_->port(), "GET /items?k=half-" + id + " HTTP/1.1\r\nHost: x\r\nX-Pad: aaaa", 0, reset);
            // A whole head and half of the body it announces.
            send_and_abort(cachecar_->port(),
                           "POST /api/v1/upload?id=half-" + id +
                               " HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n" + std::string(500, 'p'),
                           0, reset);
        },
        50);
    expect_others_unharmed(s);
    for (const auto& r : origin_.requests()) {
        EXPECT_EQ(r.target.find("half-"), std::string::npos) << r.method << " " << r.target << " reached the backend";
    }
}

TEST_F(client_faults_test, ClientsVanishingMidResponseCostOthersNothing) {
    auto s = with_vanishing_clients(
        [&](int t, int i) {
            // The cached route (a miss, then hits written from the stored entry) and a
            // pass-through; each client reads a few bytes, then resets.
            const auto target = i % 2 == 0 ? std::string("/big") : "/pass/huge?i=" + std::to_string(t) + "-" + std::to_string(i);
            // Responses stream, so the first bytes come at once; the wait is generous
            // for sanitizer builds. Host as the test client sends it: the host is part
            // of every key.
            auto got = send_and_abort(cachecar_->port(), "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", 100, true,
                                      std::chrono::seconds(30));
            EXPECT_EQ(got.rfind("HTTP/1.1 200", 0), 0u) << target << ": " << got;
        },
        10);
    expect_others_unharmed(s);
    // The aborted clients did not stop the entry from being stored (a cacheable fetch is
    // finished in the background when its client goes away): one fetch only.
    auto whole = get("/big");
    EXPECT_EQ(whole.status, 200u);
    EXPECT_EQ(whole.header("x-cache"), "HIT");
    EXPECT_EQ(whole.body.size(), big_body.size());
    EXPECT_EQ(origin_.count("/big"), 1u);
}

}  // namespace
}  // namespace cachecar::test
