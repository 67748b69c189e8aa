// The real binary: --check, --version, SIGTERM drain, SIGHUP reload.
#include "support/daemon_process.hpp"
#include "support/http_client.hpp"
#include "support/proxy_fixture.hpp"
#include "support/test_origin.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <thread>

#include <sys/wait.h>
#include <unistd.h>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

run_result run_binary(const std::vector<std::string>& args, bool stdout_only = false) {
    return test::run_binary(CACHECAR_BINARY, args, stdout_only);
}

// The daemon under test is always the binary this build produced.
class daemon_process : public test::daemon_process {
public:
    explicit daemon_process(const std::string& config_file) : test::daemon_process(CACHECAR_BINARY, config_file) {}
};

class lifecycle_test : public ::testing::Test {
protected:
    void write_config(const std::string& extra_routes = {}, const std::string& limits = "  drain_timeout: 5s\n") {
        std::ofstream(path_) << "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n  upstream: http://127.0.0.1:"
                             << origin_.port() << "\n  threads: 2\nlimits:\n"
                             << limits
                             << "routes:\n  - name: slow\n    match: GET /slow\n    tiers: [memory]\n    ttl: 5m\n"
                             << extra_routes;
    }
    void TearDown() override { std::filesystem::remove(path_); }

    std::string path_ =
        (std::filesystem::temp_directory_path() / ("cachecar-life-" + std::to_string(::getpid()) + ".yaml")).string();
    test_origin origin_;
};

TEST_F(lifecycle_test, VersionAndHelp) {
    auto v = run_binary({"--version"}, true);
    EXPECT_EQ(v.exit_code, 0);
    EXPECT_EQ(v.output.rfind("cachecar ", 0), 0u) << v.output;
    auto h = run_binary({"--help"}, true);
    EXPECT_EQ(h.exit_code, 0);
    EXPECT_NE(h.output.find("--check"), std::string::npos);
    EXPECT_EQ(run_binary({"--bogus"}).exit_code, 2);
}

TEST_F(lifecycle_test, CheckAcceptsValidConfigsAndListsEveryProblem) {
    write_config();
    auto ok = run_binary({"--check", "-c", path_});
    EXPECT_EQ(ok.exit_code, 0) << ok.output;

    // Whole paths as literals: GCC 12 at -O2 reports a false -Warray-bounds on
    // `std::string(dir) + "/" + name` when the source dir has some lengths (CI's did).
    for (auto shipped : {CACHECAR_SOURCE_DIR "/conf/cachecar.yaml", CACHECAR_SOURCE_DIR "/conf/example-full.yaml"}) {
        auto r = run_binary({"--check", "-c", shipped});
        EXPECT_EQ(r.exit_code, 0) << shipped << ": " << r.output;
    }

    std::ofstream(path_) << "server:\n  listen: 127.0.0.1:0\n  colour: red\nroutes:\n  - name: a\n    match: GET /a\n"
                            "    tiers: [memory, redis]\n    ttl: 5 minutes\ninvalidate:\n  - match: POST /a\n    purge: [nothing]\n";
    auto bad = run_binary({"--check", "-c", path_});
    EXPECT_EQ(bad.exit_code, 1);
    // One line per problem, each "file:line:col: message", in file order.
    std::vector<std::string> lines;
    std::istringstream in(bad.output);
    for (std::string l; std::getline(in, l);) {
        // libmongoc's load-time initialisation may warn on stderr by itself.
        if (l.find("mongoc: ") == std::string::npos) lines.push_back(l);
    }
    ASSERT_EQ(lines.size(), 4u) << bad.output;
    EXPECT_EQ(lines[0].rfind(path_ + ":3:3: ", 0), 0u) << lines[0];
    EXPECT_EQ(lines[1].rfind(path_ + ":7:", 0), 0u) << lines[1];
    EXPECT_EQ(lines[2].rfind(path_ + ":8:", 0), 0u) << lines[2];
    EXPECT_EQ(lines[3].rfind(path_ + ":11:", 0), 0u) << lines[3];
}

TEST_F(lifecycle_test, SigtermDrainsInFlightRequestsAndExitsZero) {
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{200, {}, "done", 800ms}; });
    write_config();
    daemon_process d(path_);
    ASSERT_NE(d.port, 0);
    client_response in_flight;
    std::thread t([&] { in_flight = http_get(d.port, "/slow"); });
    std::this_thread::sleep_for(200ms);  // the request is now waiting on the origin
    d.signal(SIGTERM);
    t.join();
    EXPECT_EQ(in_flight.status, 200u);
    EXPECT_EQ(in_flight.body, "done");
    EXPECT_EQ(d.wait_exit(5s), 0) << d.log();
    // Nothing listens any more.
    EXPECT_EQ(http_get(d.port, "/slow").status, 0u);
}

TEST_F(lifecycle_test, DrainIsBoundedByDrainTimeout) {
    origin_.set_handler([](const origin_request&, std::size_t) { return origin_response{200, {}, "late", 5000ms}; });
    write_config({}, "  drain_timeout: 500ms\n  upstream_timeout: 10s\n");
    daemon_process d(path_);
    std::thread t([&] { http_get(d.port, "/slow"); });
    std::this_thread::sleep_for(200ms);
    auto started = std::chrono::steady_clock::now();
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(4s), 0) << d.log();
    EXPECT_LT(std::chrono::steady_clock::now() - started, 3s);
    t.join();
}

TEST_F(lifecycle_test, SighupReloadsAndKeepsOldConfigWhenNewOneIsBad) {
    write_config();
    daemon_process d(path_);
    EXPECT_EQ(http_get(d.port, "/fresh").header("x-cache"), "");
    write_config("  - name: fresh\n    match: GET /fresh\n    tiers: [memory]\n    ttl: 5m\n");
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_for_log("config reloaded", 5s)) << d.log();
    EXPECT_EQ(http_get(d.port, "/fresh").header("x-cache"), "MISS");
    EXPECT_EQ(http_get(d.port, "/fresh").header("x-cache"), "HIT");

    std::ofstream(path_) << "server: [this is not a map\n";
    d.signal(SIGHUP);
    ASSERT_TRUE(d.wait_for_log("rejected", 5s)) << d.log();
    // The diagnostics follow the "rejected" line, possibly in a later read.
    EXPECT_TRUE(d.wait_for_log(path_ + ":", 5s)) << d.log();
    EXPECT_EQ(http_get(d.port, "/fresh").header("x-cache"), "HIT");
    d.signal(SIGTERM);
    EXPECT_EQ(d.wait_exit(5s), 0);
}

}  // namespace
}  // namespace cachecar::test
