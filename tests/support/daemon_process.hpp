// The real cachecar binary as a child process, for tests that must exercise what
// operators run (signals, --check, hostile clients against the daemon itself).
// Its stderr goes to a temporary file that is read for the bound ports and log lines,
// so a chatty daemon can never block on a full pipe; stdout (the access log) is dropped.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <sys/types.h>

namespace cachecar::test {

struct run_result {
    int exit_code = -1;
    std::string output;  // stdout + stderr
};

// Runs `binary args...` to completion, capturing stdout (and stderr unless
// `stdout_only`: libmongoc's load-time initialisation may print a warning there).
run_result run_binary(const std::string& binary, const std::vector<std::string>& args, bool stdout_only = false);

class daemon_process {
public:
    // Starts `binary -c config_file` and waits (up to 10 s) for its "listening on" line;
    // `port` and `admin_port` are then the bound ports (0 if it never got there).
    daemon_process(const std::string& binary, const std::string& config_file);
    ~daemon_process();  // SIGKILL if still running
    daemon_process(const daemon_process&) = delete;
    daemon_process& operator=(const daemon_process&) = delete;

    void signal(int sig);
    // Waits for exit; returns the exit code, or -1 on timeout / abnormal exit.
    int wait_exit(std::chrono::milliseconds timeout);
    bool running();
    bool wait_for_log(const std::string& needle, std::chrono::milliseconds timeout);
    // Everything the daemon wrote to stderr so far.
    const std::string& log();
    pid_t pid() const { return pid_; }

    std::uint16_t port = 0;
    std::uint16_t admin_port = 0;

private:
    void refresh();
    pid_t pid_ = -1;
    int exit_status_ = -1;  // waitpid status once it has exited
    std::string log_path_;
    std::string log_;
};

}  // namespace cachecar::test
