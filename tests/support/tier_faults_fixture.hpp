// The fixture of the cache-tier fault tests (redis_faults_test, mongo_faults_test):
// cachecar with one shared tier, under load from the start of each test, and the
// checks of what clients noticed and how cachecar reports and recovers from the fault.
// The checks record GoogleTest failures in the current test.
#pragma once

#include "support/client_load.hpp"
#include "support/test_origin.hpp"

#include <cachecar/app/app.hpp>

#include <gtest/gtest.h>

#include <chrono>
#include <memory>
#include <string>

namespace cachecar::test {

class tier_faults_fixture : public ::testing::Test {
protected:
    // Starts cachecar with tiers.<tier> set to `settings` (YAML flow map entries,
    // without braces) plus `timeout`, and two
    // routes: GET /api/v1/lookup cached in that tier alone (key: query.k, category
    // "video:{query.k}"), and the write route POST /api/v1/register, which purges
    // "video:{query.id}": writes under load purge some of the keys read.
    // Once the tier is up, four clients start: GETs of 20 keys, and every 4th request
    // a POST (see reads_and_writes).
    void start(const std::string& tier, const std::string& settings, std::chrono::milliseconds timeout);
    void TearDown() override;

    // A cache tier failed: clients got 200 for every request, there were at least 60,
    // no write was lost or sent twice, and none took as long as no_hang_ (a request
    // makes a few tier calls, each bounded by the tier timeout, or by the 1 s server
    // selection of the MongoDB test server's URI: anything near it is a hang).
    void expect_unharmed();
    // While the tier is down: /health says so (status "degraded") within 3 s,
    // cachecar_tier_up is 0 and the tier's failure counter has moved.
    void expect_tier_down();
    // After the tier is back: it is "up" in /health within 5 s, cachecar_tier_up is 1,
    // and a new entry is stored in it and then answered from it (X-Cache-Tier).
    void expect_tier_in_use_again();
    // Waits for the clients to make 40 more requests: they are not stuck.
    void expect_clients_progress();

    test_origin origin_;
    std::string tier_;
    std::chrono::milliseconds no_hang_{0};
    std::unique_ptr<app> cachecar_;
    std::unique_ptr<client_load> load_;
};

}  // namespace cachecar::test
