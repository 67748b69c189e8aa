#include "support/daemon_process.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <regex>
#include <sstream>
#include <thread>

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cachecar::test {

using namespace std::chrono_literals;

run_result run_binary(const std::string& binary, const std::vector<std::string>& args, bool stdout_only) {
    std::string cmd = binary;
    for (const auto& a : args) cmd += " '" + a + "'";
    cmd += stdout_only ? " 2>/dev/null" : " 2>&1";
    run_result r;
    FILE* p = ::popen(cmd.c_str(), "r");
    if (p == nullptr) return r;
    char buf[4096];
    while (auto n = std::fread(buf, 1, sizeof buf, p)) r.output.append(buf, n);
    const int status = ::pclose(p);
    r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return r;
}

daemon_process::daemon_process(const std::string& binary, const std::string& config_file) {
    static int serial = 0;
    log_path_ = (std::filesystem::temp_directory_path() /
                 ("cachecar-daemon-" + std::to_string(::getpid()) + "-" + std::to_string(++serial) + ".log"))
                    .string();
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 2, log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0600);
    posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
    std::string bin = binary;
    std::vector<char*> argv{bin.data(), const_cast<char*>("-c"), const_cast<char*>(config_file.c_str()), nullptr};
    EXPECT_EQ(::posix_spawn(&pid_, bin.c_str(), &actions, nullptr, argv.data(), environ), 0);
    posix_spawn_file_actions_destroy(&actions);
    const std::regex listening(R"(listening on [^ ]+:(\d+) .*admin [^:]+:(\d+))");
    std::smatch m;
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    while (std::chrono::steady_clock::now() < deadline) {
        refresh();
        if (std::regex_search(log_, m, listening)) break;
        if (!running()) break;
        std::this_thread::sleep_for(10ms);
    }
    EXPECT_FALSE(m.empty()) << "cachecar did not start:\n" << log_;
    if (!m.empty()) {
        port = static_cast<std::uint16_t>(std::stoi(m[1]));
        admin_port = static_cast<std::uint16_t>(std::stoi(m[2]));
    }
}

daemon_process::~daemon_process() {
    if (pid_ > 0) {
        ::kill(pid_, SIGKILL);
        ::waitpid(pid_, nullptr, 0);
    }
    std::error_code ignored;
    std::filesystem::remove(log_path_, ignored);
}

void daemon_process::signal(int sig) {
    if (pid_ > 0) ::kill(pid_, sig);
}

bool daemon_process::running() {
    if (pid_ <= 0) return false;
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) != pid_) return true;
    pid_ = -1;
    exit_status_ = status;
    return false;
}

int daemon_process::wait_exit(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (running() && std::chrono::steady_clock::now() < deadline) std::this_thread::sleep_for(20ms);
    if (running()) return -1;
    refresh();
    return WIFEXITED(exit_status_) ? WEXITSTATUS(exit_status_) : -1;
}

bool daemon_process::wait_for_log(const std::string& needle, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
        refresh();
        if (log_.find(needle) != std::string::npos) return true;
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(10ms);
    }
}

const std::string& daemon_process::log() {
    refresh();
    return log_;
}

void daemon_process::refresh() {
    std::ifstream in(log_path_, std::ios::binary);
    std::ostringstream all;
    all << in.rdbuf();
    log_ = all.str();
}

}  // namespace cachecar::test
