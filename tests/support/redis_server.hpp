// A real redis-server for tests: started on a free 127.0.0.1 port with no persistence
// and its own temp dir, driven with signals to simulate faults (stop, kill, pause).
//
// Start-up and control failures throw std::runtime_error with the server's log in the
// message; GoogleTest reports an escaping exception as a failure of the current test.
// Skip only when the binary is missing (`available()`), which CI never allows: it
// installs redis-server (.ci/install-deps.sh).
#pragma once

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <sys/types.h>

namespace cachecar::test {

struct redis_server_options {
    bool unix_socket = false;  // also listen on <temp dir>/redis.sock, mode 700
    std::string password;      // --requirepass when non-empty
};

class redis_server {
public:
    // True when both redis-server and redis-cli can be found (PATH, then /usr/bin).
    static bool available();

    // Starts the server and returns once it answers PING; throws if it does not come
    // up within 5 s (after up to 5 attempts on fresh ports if the port was taken).
    explicit redis_server(redis_server_options options = {});
    ~redis_server();  // SIGKILL, reap, remove the temp dir
    redis_server(const redis_server&) = delete;
    redis_server& operator=(const redis_server&) = delete;

    std::uint16_t port() const { return port_; }
    const std::string& unix_socket() const { return unix_socket_; }  // empty unless requested
    const std::string& password() const { return options_.password; }
    // "redis://127.0.0.1:P/db" (no credentials; see password()).
    std::string url(int db = 0) const;
    pid_t pid() const { return pid_; }
    bool running() const { return pid_ > 0; }
    bool paused() const { return paused_; }

    // SIGTERM and wait (SIGKILL after 10 s). Safe when paused or already stopped.
    void stop();
    // SIGKILL and reap: the server vanishes without closing anything gracefully.
    void kill();
    // SIGSTOP / SIGCONT: connections stay open (and new ones are accepted by the
    // kernel) but nothing is answered, like a server stuck in a long command.
    void pause();
    void resume();
    // Starts a stopped or killed server again on the same port (stops it first if it is
    // running). Data is lost: there is no persistence. Throws if the port was taken.
    void restart();

    // Runs `redis-cli -p PORT [-a PASSWORD] args...` (argv, no shell) and returns its
    // stdout with surrounding whitespace trimmed. Error replies come back as text
    // ("ERR ..."); a nil reply is "". Throws if redis-cli cannot connect, exits
    // non-zero or takes longer than 10 s (e.g. while the server is paused).
    std::string command(const std::vector<std::string>& args) const;
    // Binary-safe variant for planting and reading values with NULs or trailing
    // whitespace: `last_arg`, if given, is passed on redis-cli's stdin (-x) and the
    // reply's bytes are returned exactly, without a trailing delimiter.
    std::string command_raw(const std::vector<std::string>& args,
                            const std::optional<std::string>& last_arg = std::nullopt) const;

    // PING over a raw socket (authenticating first when a password is set); false on
    // refusal, error reply or no "+PONG" within `timeout`.
    bool ping(std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) const;
    bool ping_unix_socket(std::chrono::milliseconds timeout = std::chrono::milliseconds(1000)) const;

    // The server's log so far, for failure messages.
    std::string log() const;

private:
    // Returns false if the server exited because the port was taken; throws otherwise.
    bool start_on(std::uint16_t port);
    void reap(std::chrono::milliseconds grace);
    std::string run_cli(const std::vector<std::string>& args, const std::optional<std::string>& stdin_data,
                        bool raw) const;

    redis_server_options options_;
    std::filesystem::path dir_;
    std::string unix_socket_;
    std::uint16_t port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
    mutable unsigned stdin_files_ = 0;  // names the files that feed -x values
};

}  // namespace cachecar::test
