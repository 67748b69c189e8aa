// Redis killed, paused and restarted while clients keep asking: a cache fault must
// cost no request (SPEC: "Cache faults must not cost availability"), no write may be
// lost or repeated, and the tier must be in use again within seconds of Redis.
#include "support/admin_probe.hpp"
#include "support/eventually.hpp"
#include "support/redis_server.hpp"
#include "support/tier_faults_fixture.hpp"

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

class redis_faults_test : public tier_faults_fixture {
protected:
    void SetUp() override {
        start("redis", "url: \"" + redis_.url() + "\", pool: 2", 100ms);
    }

    redis_server redis_;
};

TEST_F(redis_faults_test, KilledUnderLoadCostsNoRequestsAndComesBack) {
    redis_.kill();
    expect_tier_down();
    const auto admin = cachecar_->admin_port();
    EXPECT_EQ(metric(admin, R"(cachecar_tier_state_changes_total{tier="redis",to="down"})"), 1);
    // While down, the tier is skipped rather than waited for.
    const std::string skipped = R"(cachecar_tier_ops_total{tier="redis",op="lookup",outcome="skipped"})";
    const auto skipped_before = metric(admin, skipped);
    EXPECT_TRUE(eventually([&] { return metric(admin, skipped) > skipped_before; }));
    expect_clients_progress();
    redis_.restart();
    expect_tier_in_use_again();
    expect_unharmed();
}

TEST_F(redis_faults_test, PausedUnderLoadCostsNoRequestsAndComesBack) {
    // SIGSTOP: connections stay open but nothing is answered, so calls run into the
    // tier timeout until the tier is marked down and skipped.
    redis_.pause();
    expect_tier_down();
    expect_clients_progress();
    redis_.resume();
    expect_tier_in_use_again();
    expect_unharmed();
}

TEST_F(redis_faults_test, RestartedUnderLoadCostsNoRequestsAndComesBack) {
    // SIGTERM and start again on the same port: every pooled connection breaks at once
    // and the data is gone.
    redis_.restart();
    expect_clients_progress();
    expect_tier_in_use_again();
    EXPECT_GT(metric(cachecar_->admin_port(), R"(cachecar_tier_failures_total{tier="redis")"), 0);
    expect_unharmed();
}

}  // namespace
}  // namespace cachecar::test
