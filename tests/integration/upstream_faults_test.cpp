// The backend misbehaving under concurrent load: refusing connections, resetting
// mid-response, hanging past limits.upstream_timeout, answering garbage. Clients must
// get the status that names the fault (502, or 504 for a timeout) within a bound set
// by the upstream timeout, a stale copy where stale_if_error allows one, and no write
// may reach the backend twice: cachecar never retries a POST it has sent.
#include "support/admin_probe.hpp"
#include "support/client_load.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"

#include <functional>
#include <optional>
#include <set>
#include <thread>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

constexpr auto upstream_timeout = 500ms;
// Every answer is due within one upstream timeout; twice that plus slack is a hang.
constexpr auto no_hang = 2 * upstream_timeout + 2s;

// Under load, request n fails when (n / 4) % 2 == 1, so failing and healthy requests
// (reads and writes alike: see reads_and_writes) share the backend and its pool.
bool faulted(std::size_t n) { return (n / 4) % 2 == 1; }

// Reads: every 8th request is of the stale-if-error route, the rest are misses.
std::string read_target(std::size_t n) { return n % 8 == 0 ? "/stale" : "/items?k=" + std::to_string(n); }

// The request number in a load target ("...=<n>"); the stale route carries none.
std::optional<std::size_t> number_in(const std::string& target) {
    const auto eq = target.rfind('=');
    if (eq == std::string::npos) return std::nullopt;
    return std::stoul(target.substr(eq + 1));
}

class upstream_faults_test : public proxy_fixture {
protected:
    void SetUp() override {
        start("limits:\n"
              "  upstream_timeout: " + std::to_string(upstream_timeout.count()) + "ms\n"
              "routes:\n"
              "  - name: items\n"
              "    match: GET /items\n"
              "    tiers: [memory]\n"
              "    ttl: 5m\n"
              "    categories: [items]\n"
              "  - name: stale\n"
              "    match: GET /stale\n"
              "    tiers: [memory]\n"
              "    ttl: 200ms\n"
              "    stale_if_error: 5m\n"
              "invalidate:\n"
              "  - match: POST /api/v1/register\n"
              "    purge: [items]\n");
        // An entry the stale route may serve once it has expired.
        ASSERT_EQ(get("/stale").header("x-cache"), "MISS");
        std::this_thread::sleep_for(300ms);
    }

    // The backend answers `broken(n)` to faulted requests and to the stale route.
    void break_backend(std::function<origin_response(std::size_t n)> broken) {
        origin_.set_handler([broken = std::move(broken)](const origin_request& r, std::size_t) {
            auto n = number_in(r.target);
            if (!n || faulted(*n)) return broken(n.value_or(0));
            return origin_response{200, {}, r.method + " " + r.target};
        });
    }

    // Four clients until `requests` are done.
    load_summary run_load(std::size_t requests) {
        client_load load(cachecar_->port(), 4, reads_and_writes(read_target, "/api/v1/register"));
        EXPECT_TRUE(load.wait_for(requests, 20s));
        return load.stop();
    }

    // What clients got: `status` for faulted requests (all of them if `all_fail`), 200
    // for the others, a stale copy for the stale route; never a hang, never a write
    // sent twice. With `writes_arrive`, every POST reached the backend (exactly once).
    // `also` are further answers a faulted request may get: 0 for a response whose
    // status line was already relayed when the backend failed mid-body (the client's
    // connection is then cut short, its answer incomplete); the stale route too.
    void expect_answers(const load_summary& s, unsigned status, bool all_fail, bool writes_arrive,
                        std::set<unsigned> also = {}) {
        std::size_t wrong = 0;
        for (const auto& o : s.outcomes) {
            const auto n = number_in(o.request.target);
            const bool stale_route = !n;
            const unsigned want = stale_route ? 200u : (all_fail || faulted(*n)) ? status : 200u;
            const bool cut = (stale_route || all_fail || faulted(*n)) && also.contains(o.status);
            const bool ok = cut || (o.status == want && (!stale_route || o.x_cache == "STALE"));
            if (!ok && ++wrong <= 5) {
                ADD_FAILURE() << o.request.method << " " << o.request.target << ": got " << o.status
                              << " X-Cache: " << o.x_cache << ", want " << want;
            }
        }
        EXPECT_EQ(wrong, 0u) << s.describe();
        EXPECT_LT(s.slowest(), no_hang) << s.describe();
        EXPECT_GT(s.count(status) + (also.contains(0) && status != 0 ? s.count(0) : 0), 0u) << s.describe();
        // A stale copy is served unless every fault hit after the head (then nothing can be).
        if (status != 0) {
            EXPECT_GT(s.count_x_cache("STALE"), 0u) << s.describe();
        }
        const auto at_origin = origin_.requests();
        for (const auto& v : write_violations(s, at_origin)) ADD_FAILURE() << v;
        if (writes_arrive) {
            std::set<std::string> arrived;
            for (const auto& r : at_origin) {
                if (r.method == "POST") arrived.insert(r.target);
            }
            for (const auto& o : s.outcomes) {
                if (o.request.method == "POST") {
                    EXPECT_TRUE(arrived.contains(o.request.target)) << o.request.target << " lost";
                }
            }
        }
    }

    // The backend is fine again: so is every answer, and the admin API says ok.
    void expect_recovered() {
        origin_.set_handler({});
        EXPECT_EQ(admin("GET", "/health").status, 200u);
        auto read = get("/items?k=after");
        EXPECT_EQ(read.status, 200u);
        EXPECT_EQ(read.header("x-cache"), "MISS");
        const auto before = origin_.count("/api/v1/register?id=after");
        EXPECT_EQ(send("POST", "/api/v1/register?id=after", "{}").status, 200u);
        EXPECT_EQ(origin_.count("/api/v1/register?id=after"), before + 1);
        // The expired entry is replaced by a fresh one.
        EXPECT_TRUE(eventually([&] { return get("/stale").header("x-cache") == "HIT"; }));
    }

    double upstream_errors(const std::string& kind) {
        return metric(cachecar_->admin_port(), R"(cachecar_upstream_errors_total{route="*",kind=")" + kind + "\"}");
    }
};

TEST_F(upstream_faults_test, RefusedConnectionsAre502AndStaleIsServed) {
    origin_.stop();
    const auto before = origin_.count();
    expect_answers(run_load(60), 502, /*all_fail=*/true, /*writes_arrive=*/false);
    EXPECT_EQ(origin_.count(), before);
    EXPECT_GT(upstream_errors("connect"), 0);
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_stale_served_total{route="stale",why="error"})"), 0);
    origin_.restart();
    expect_recovered();
}

TEST_F(upstream_faults_test, ResetMidResponseCutsTheClientShortAndNoWriteIsRepeated) {
    // Responses stream: the 200 and half the body are relayed before the reset, so the
    // client's connection is cut short (its answer incomplete, never passed off as
    // whole), nothing partial is stored, and both ends are counted.
    break_backend([](std::size_t) {
        origin_response r{200, {}, std::string(64 * 1024, 'x')};
        r.fault = origin_fault::reset_mid_body;
        return r;
    });
    expect_answers(run_load(80), 0, /*all_fail=*/false, /*writes_arrive=*/true, {0});
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_stream_aborts_total{side="upstream"})"), 0);
    expect_recovered();
}

TEST_F(upstream_faults_test, HangPastUpstreamTimeoutIs504AndNoWriteIsRepeated) {
    break_backend([](std::size_t) { return origin_response{200, {}, "too late", 5s}; });
    expect_answers(run_load(40), 504, /*all_fail=*/false, /*writes_arrive=*/true);
    EXPECT_GT(upstream_errors("timeout"), 0);
    expect_recovered();
}

TEST_F(upstream_faults_test, GarbageAnswersAre502AndNoWriteIsRepeated) {
    static const std::string garbage[] = {
        "this is not HTTP at all\r\n\r\n",
        "HTTP/1.1 OK 200\r\nContent-Length: 2\r\n\r\nok",                              // invalid status line
        "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",  // bad chunk size
    };
    break_backend([](std::size_t n) {
        origin_response r;
        r.body = garbage[(n / 8) % 3];
        r.fault = origin_fault::raw;
        return r;
    });
    // A bad chunk size shows only after the head was relayed: that answer is cut short.
    expect_answers(run_load(80), 502, /*all_fail=*/false, /*writes_arrive=*/true, {0});
    EXPECT_GT(upstream_errors("bad_response"), 0);  // told apart from a connection that failed
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_stream_aborts_total{side="upstream"})"), 0);
    expect_recovered();
}

}  // namespace
}  // namespace cachecar::test
