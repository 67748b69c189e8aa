// The redis_server test harness itself: every fault the Redis tier tests rely on
// (kill, stop, pause, restart on the same port) must do what it claims to a real server.
#include "support/redis_server.hpp"

#include <cachecar/net.hpp>

#include <gtest/gtest.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <string>

#include <sys/stat.h>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;

class redis_server_harness : public ::testing::Test {
protected:
    void SetUp() override {
        if (!redis_server::available()) {
            GTEST_SKIP() << "redis-server/redis-cli not installed (Debian package redis-server); "
                            "CI installs it, so this skip should never appear there";
        }
    }
};

TEST_F(redis_server_harness, starts_on_a_free_loopback_port_and_answers) {
    redis_server redis;
    EXPECT_TRUE(redis.running());
    EXPECT_NE(redis.port(), 0);
    EXPECT_EQ(redis.url(), "redis://127.0.0.1:" + std::to_string(redis.port()) + "/0");
    EXPECT_EQ(redis.url(3), "redis://127.0.0.1:" + std::to_string(redis.port()) + "/3");
    EXPECT_TRUE(redis.ping());
    EXPECT_EQ(redis.command({"PING"}), "PONG");
    EXPECT_TRUE(redis.unix_socket().empty());
}

TEST_F(redis_server_harness, runs_without_persistence_in_its_own_dir) {
    redis_server redis;
    EXPECT_EQ(redis.command({"CONFIG", "GET", "save"}), "save");  // name, then an empty value
    EXPECT_EQ(redis.command({"CONFIG", "GET", "appendonly"}), "appendonly\nno");
    const std::string dir = redis.command({"CONFIG", "GET", "dir"});
    EXPECT_NE(dir.find("cachecar-redis-"), std::string::npos) << dir;
}

TEST_F(redis_server_harness, command_sets_and_gets_values) {
    redis_server redis;
    EXPECT_EQ(redis.command({"SET", "greeting", "hello world"}), "OK");
    EXPECT_EQ(redis.command({"GET", "greeting"}), "hello world");
    EXPECT_EQ(redis.command({"GET", "missing"}), "");
    EXPECT_EQ(redis.command({"DBSIZE"}), "1");
    EXPECT_EQ(redis.command({"SET", "n", "-5"}), "OK");  // a leading '-' is not taken for an option
    EXPECT_EQ(redis.command({"INCR", "n"}), "-4");
    // Error replies come back as text rather than throwing.
    EXPECT_EQ(redis.command({"INCR", "greeting"}).rfind("ERR", 0), 0u);
}

TEST_F(redis_server_harness, command_passes_arguments_without_a_shell) {
    redis_server redis;
    const std::string marker = (std::filesystem::temp_directory_path() / "cachecar-harness-shell-marker").string();
    std::filesystem::remove(marker);
    const std::string nasty = "$(touch " + marker + "); 'single' \"double\" `touch " + marker + "` * ~ \\";
    EXPECT_EQ(redis.command({"SET", "nasty key with spaces", nasty}), "OK");
    EXPECT_EQ(redis.command({"GET", "nasty key with spaces"}), nasty);
    EXPECT_FALSE(std::filesystem::exists(marker)) << "an argument was interpreted by a shell";
}

TEST_F(redis_server_harness, command_raw_is_binary_safe) {
    redis_server redis;
    const std::string value = std::string("\0bin\0ary\r\n", 11) + " \n";
    EXPECT_EQ(redis.command_raw({"SET", "blob"}, value), "OK");
    EXPECT_EQ(redis.command({"STRLEN", "blob"}), std::to_string(value.size()));
    EXPECT_EQ(redis.command_raw({"GET", "blob"}), value);
    EXPECT_EQ(redis.command_raw({"GET", "missing"}), "");
    EXPECT_EQ(redis.command_raw({"SET", "empty"}, std::string()), "OK");
    EXPECT_EQ(redis.command({"EXISTS", "empty"}), "1");
}

TEST_F(redis_server_harness, kill_makes_ping_fail) {
    redis_server redis;
    ASSERT_TRUE(redis.ping());
    redis.kill();
    EXPECT_FALSE(redis.running());
    EXPECT_FALSE(redis.ping(200ms));
    EXPECT_THROW(redis.command({"PING"}), std::runtime_error);
}

TEST_F(redis_server_harness, restart_comes_back_on_the_same_port_without_data) {
    redis_server redis;
    const auto port = redis.port();
    ASSERT_EQ(redis.command({"SET", "k", "v"}), "OK");
    redis.kill();
    ASSERT_FALSE(redis.ping(200ms));
    redis.restart();
    EXPECT_EQ(redis.port(), port);
    EXPECT_TRUE(redis.ping());
    EXPECT_EQ(redis.command({"GET", "k"}), "");  // no persistence: the value died with it
}

TEST_F(redis_server_harness, restart_reports_a_port_taken_while_down) {
    redis_server redis;
    redis.kill();
    {
        // Another listener grabs the port while the server is down.
        net::io_context io;
        net::ip::tcp::acceptor squatter(io, {net::ip::make_address("127.0.0.1"), redis.port()});
        try {
            redis.restart();
            ADD_FAILURE() << "restart succeeded on a port someone else holds";
        } catch (const std::runtime_error& e) {
            EXPECT_NE(std::string(e.what()).find("was taken"), std::string::npos) << e.what();
        }
        EXPECT_FALSE(redis.running());
    }
    redis.restart();
    EXPECT_TRUE(redis.ping());
}

TEST_F(redis_server_harness, stop_is_graceful_and_restartable) {
    redis_server redis;
    const auto port = redis.port();
    redis.stop();
    EXPECT_FALSE(redis.running());
    EXPECT_FALSE(redis.ping(200ms));
    EXPECT_NE(redis.log().find("ready to exit"), std::string::npos) << redis.log();
    redis.restart();
    EXPECT_EQ(redis.port(), port);
    EXPECT_EQ(redis.command({"PING"}), "PONG");
}

TEST_F(redis_server_harness, restart_while_running_restarts) {
    redis_server redis;
    const auto first_pid = redis.pid();
    redis.restart();
    EXPECT_NE(redis.pid(), first_pid);
    EXPECT_TRUE(redis.ping());
}

TEST_F(redis_server_harness, pause_makes_ping_time_out_and_resume_recovers) {
    redis_server redis;
    redis.pause();
    EXPECT_TRUE(redis.paused());
    const auto started = std::chrono::steady_clock::now();
    EXPECT_FALSE(redis.ping(300ms));
    // It timed out rather than being refused: the kernel still accepts connections.
    EXPECT_GE(std::chrono::steady_clock::now() - started, 250ms);
    redis.resume();
    EXPECT_FALSE(redis.paused());
    EXPECT_TRUE(redis.ping());
    EXPECT_EQ(redis.command({"PING"}), "PONG");
}

TEST_F(redis_server_harness, a_paused_server_can_be_stopped_and_killed) {
    redis_server redis;
    redis.pause();
    redis.stop();  // SIGTERM alone would stay pending on a stopped process
    EXPECT_FALSE(redis.running());
    redis.restart();
    redis.pause();
    redis.kill();
    EXPECT_FALSE(redis.running());
}

TEST_F(redis_server_harness, unix_socket_answers_with_mode_700) {
    redis_server redis({.unix_socket = true, .password = {}});
    ASSERT_FALSE(redis.unix_socket().empty());
    struct stat st {};
    ASSERT_EQ(::stat(redis.unix_socket().c_str(), &st), 0);
    EXPECT_TRUE(S_ISSOCK(st.st_mode));
    EXPECT_EQ(st.st_mode & 0777, 0700u);
    EXPECT_TRUE(redis.ping_unix_socket());
    EXPECT_TRUE(redis.ping());  // TCP stays available alongside
}

TEST_F(redis_server_harness, password_is_required_and_used) {
    redis_server redis({.unix_socket = false, .password = "s3cret pass"});
    EXPECT_EQ(redis.password(), "s3cret pass");
    EXPECT_TRUE(redis.ping());  // authenticates first
    EXPECT_EQ(redis.command({"SET", "k", "v"}), "OK");
    EXPECT_EQ(redis.command({"CONFIG", "GET", "requirepass"}), "requirepass\ns3cret pass");
}

TEST_F(redis_server_harness, two_servers_run_side_by_side) {
    redis_server a;
    redis_server b;
    EXPECT_NE(a.port(), b.port());
    ASSERT_EQ(a.command({"SET", "k", "a"}), "OK");
    EXPECT_EQ(b.command({"GET", "k"}), "");
    a.kill();
    EXPECT_TRUE(b.ping());
}

TEST_F(redis_server_harness, destructor_kills_the_server_and_removes_its_dir) {
    pid_t pid = -1;
    std::filesystem::path dir;
    {
        redis_server redis({.unix_socket = true, .password = {}});
        pid = redis.pid();
        dir = std::filesystem::path(redis.unix_socket()).parent_path();
        ASSERT_TRUE(std::filesystem::exists(dir));
    }
    errno = 0;
    EXPECT_EQ(::kill(pid, 0), -1);  // reaped, not a zombie
    EXPECT_EQ(errno, ESRCH);
    EXPECT_FALSE(std::filesystem::exists(dir));
}

}  // namespace
}  // namespace cachecar::test
