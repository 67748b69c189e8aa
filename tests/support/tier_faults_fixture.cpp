#include "support/tier_faults_fixture.hpp"

#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/proxy_fixture.hpp"

namespace cachecar::test {

using namespace std::chrono_literals;

void tier_faults_fixture::start(const std::string& tier, const std::string& settings,
                                std::chrono::milliseconds timeout) {
    tier_ = tier;
    no_hang_ = 3s + 10 * timeout;
    const std::string yaml = "server:\n"
                             "  listen: 127.0.0.1:0\n"
                             "  admin_listen: 127.0.0.1:0\n"
                             "  upstream: http://127.0.0.1:" + std::to_string(origin_.port()) + "\n"
                             "  namespace: faults\n"
                             "  threads: " + std::to_string(test_io_threads()) + "\n"
                             "tiers:\n"
                             "  memory: { max_bytes: 16MiB }\n"
                             "  " + tier + ": { " + settings + ", timeout: " + std::to_string(timeout.count()) + "ms }\n"
                             "routes:\n"
                             "  - name: lookup\n"
                             "    match: GET /api/v1/lookup\n"
                             "    tiers: [" + tier + "]\n"
                             "    ttl: 5m\n"
                             "    key: [query.k]\n"
                             "    categories: [\"video:{query.k}\"]\n"
                             "invalidate:\n"
                             "  - match: POST /api/v1/register\n"
                             "    purge: [\"video:{query.id}\"]\n";
    cachecar_ = std::make_unique<app>(must_load(yaml));
    cachecar_->start();
    ASSERT_TRUE(eventually([&] { return tier_state(cachecar_->admin_port(), tier_) == "up"; }))
        << tier_ << " tier never came up";
    load_ = std::make_unique<client_load>(
        cachecar_->port(), 4,
        reads_and_writes([](std::size_t n) { return "/api/v1/lookup?k=" + std::to_string(n % 20); },
                         "/api/v1/register"));
    ASSERT_TRUE(load_->wait_for(40)) << "no load before the fault";
}

void tier_faults_fixture::TearDown() {
    if (load_) load_->stop();
    if (cachecar_) cachecar_->stop();
}

void tier_faults_fixture::expect_unharmed() {
    const auto s = load_->stop();
    EXPECT_EQ(s.count(200), s.total()) << s.describe();
    EXPECT_LT(s.slowest(), no_hang_) << s.describe();
    EXPECT_GE(s.total(), 60u) << s.describe();
    for (const auto& v : write_violations(s, origin_.requests())) ADD_FAILURE() << v;
}

void tier_faults_fixture::expect_tier_down() {
    const auto admin = cachecar_->admin_port();
    EXPECT_TRUE(eventually([&] { return tier_state(admin, tier_) == "down"; }, 3s)) << tier_ << " never went down";
    EXPECT_NE(http_get(admin, "/health").body.find(R"("status":"degraded")"), std::string::npos);
    EXPECT_EQ(metric(admin, "cachecar_tier_up{tier=\"" + tier_ + "\"}"), 0);
    EXPECT_GT(metric(admin, "cachecar_tier_failures_total{tier=\"" + tier_ + "\""), 0);
}

void tier_faults_fixture::expect_tier_in_use_again() {
    const auto admin = cachecar_->admin_port();
    const std::string target = "/api/v1/lookup?k=back";
    EXPECT_TRUE(eventually([&] { return tier_state(admin, tier_) == "up"; }, 5s)) << tier_ << " never came back";
    EXPECT_EQ(http_get(admin, "/health").status, 200u);
    EXPECT_EQ(metric(admin, "cachecar_tier_up{tier=\"" + tier_ + "\"}"), 1);
    EXPECT_EQ(http_get(cachecar_->port(), target).status, 200u);
    EXPECT_TRUE(eventually([&] {
        auto r = http_get(cachecar_->port(), target);
        return r.header("x-cache") == "HIT" && r.header("x-cache-tier") == tier_;
    })) << target << " is not served from " << tier_;
}

void tier_faults_fixture::expect_clients_progress() {
    EXPECT_TRUE(load_->wait_for(load_->completed() + 40)) << "clients are stuck";
}

}  // namespace cachecar::test
