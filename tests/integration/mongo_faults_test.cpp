// The MongoDB tier's server stopped, stalled and restarted while clients keep asking:
// no request may fail or hang, no write may be lost or repeated, and the tier must be
// in use again within seconds of the server. Runs against the wire-protocol test
// server, whose fault controls a real MongoDB does not have. There is no Redis, so
// the write route's purges go through MongoDB as well.
#include "support/http_client.hpp"
#include "support/mongo_test_server.hpp"
#include "support/tier_faults_fixture.hpp"

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

class mongo_faults_test : public tier_faults_fixture {
protected:
    void SetUp() override {
        start("mongo", "uri: \"" + server_.uri() + "\", database: faults, collection: cache", 300ms);
    }

    mongo_test_server server_;
};

TEST_F(mongo_faults_test, StoppedUnderLoadCostsNoRequestsAndComesBack) {
    // Listener and every connection closed: what a killed mongod looks like.
    server_.stop();
    expect_tier_down();
    expect_clients_progress();
    // A long outage of a busy site: many writes whose purges wait for MongoDB. All of
    // them must be applied when it returns, without keeping the tier down.
    for (int i = 0; i < 1000; ++i) {
        const auto r = http_request(cachecar_->port(), "POST", "/api/v1/register?id=outage-" + std::to_string(i), {}, "{}");
        ASSERT_EQ(r.status, 200u);
    }
    server_.restart();
    expect_tier_in_use_again();
    expect_unharmed();
}

TEST_F(mongo_faults_test, StalledUnderLoadCostsNoRequestsAndComesBack) {
    // Requests are read but never answered: every call runs into the tier timeout.
    server_.stall(true);
    expect_tier_down();
    expect_clients_progress();
    server_.stall(false);
    expect_tier_in_use_again();
    expect_unharmed();
}

TEST_F(mongo_faults_test, RestartedUnderLoadCostsNoRequestsAndComesBack) {
    // Every connection dropped, then a restart that lost the data.
    server_.drop_connections();
    server_.restart(/*wipe=*/true);
    expect_clients_progress();
    expect_tier_in_use_again();
    expect_unharmed();
}

}  // namespace
}  // namespace cachecar::test
