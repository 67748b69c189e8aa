// Runs cachecar in-process in front of a test_origin, both on free ports.
#pragma once

#include "support/http_client.hpp"
#include "support/test_origin.hpp"

#include <cachecar/app/app.hpp>
#include <cachecar/config/config.hpp>

#include <gtest/gtest.h>

#include <memory>
#include <string>

namespace cachecar::test {

// Replaces every "{UPSTREAM}" in `yaml` with the origin's port.
std::string with_upstream(std::string yaml, std::uint16_t port);

// server.threads for the cachecar a fixture starts: 2, or CACHECAR_TEST_THREADS. ctest
// runs the proxy and fault suites a second time with 1, because one I/O thread takes
// another path (connections without strands, see http::server).
unsigned test_io_threads();

// Parses YAML that must be valid; fails the current test with the diagnostics otherwise.
config::config must_load(const std::string& yaml, const std::string& file_name = "<test>");

class proxy_fixture : public ::testing::Test {
protected:
    // `routes_yaml` holds the `routes:`/`invalidate:`/`limits:` sections; server and
    // tiers are filled in (listen and admin on port 0, upstream = the test origin).
    void start(const std::string& routes_yaml, const std::string& server_extra = {});
    void TearDown() override;

    client_response get(const std::string& target, const header_list& headers = {}) {
        return http_request(cachecar_->port(), "GET", target, headers);
    }
    client_response send(const std::string& method, const std::string& target, const std::string& body = {},
                         const header_list& headers = {}) {
        return http_request(cachecar_->port(), method, target, headers, body);
    }
    client_response admin(const std::string& method, const std::string& target, const std::string& body = {},
                          const header_list& headers = {}) {
        return http_request(cachecar_->admin_port(), method, target, headers, body);
    }

    test_origin origin_;
    std::unique_ptr<app> cachecar_;
};

}  // namespace cachecar::test
