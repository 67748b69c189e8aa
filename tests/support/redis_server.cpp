#include "support/redis_server.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

extern char** environ;

namespace cachecar::test {

namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr auto start_timeout = 5s;
constexpr auto cli_timeout = 10s;
constexpr auto stop_grace = 10s;
constexpr int port_attempts = 5;

std::string find_binary(const std::string& name) {
    if (const char* path = std::getenv("PATH")) {
        std::stringstream dirs(path);
        std::string dir;
        while (std::getline(dirs, dir, ':')) {
            if (dir.empty()) continue;
            const std::string candidate = dir + "/" + name;
            if (::access(candidate.c_str(), X_OK) == 0) return candidate;
        }
    }
    const std::string fallback = "/usr/bin/" + name;
    return ::access(fallback.c_str(), X_OK) == 0 ? fallback : std::string();
}

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), "redis_server: " + what);
}

class fd_guard {
public:
    explicit fd_guard(int fd = -1) : fd_(fd) {}
    ~fd_guard() { reset(); }
    fd_guard(const fd_guard&) = delete;
    fd_guard& operator=(const fd_guard&) = delete;
    int get() const { return fd_; }
    void reset() {
        if (fd_ >= 0) ::close(fd_);
        fd_ = -1;
    }

private:
    int fd_;
};

// The kernel picks a port nobody holds; there is a window between closing it here and
// redis binding it, which start-up covers by retrying on "Address already in use".
std::uint16_t pick_free_port() {
    fd_guard s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (s.get() < 0) throw_errno("socket");
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = 0;
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) throw_errno("bind port 0");
    socklen_t len = sizeof addr;
    if (::getsockname(s.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) throw_errno("getsockname");
    return ntohs(addr.sin_port);
}

std::string read_file(const std::filesystem::path& p) {
    std::ifstream in(p, std::ios::binary);
    std::ostringstream out;
    out << in.rdbuf();
    return out.str();
}

std::string trim(std::string s) {
    const auto not_space = [](unsigned char c) { return !std::isspace(c); };
    s.erase(s.begin(), std::find_if(s.begin(), s.end(), not_space));
    s.erase(std::find_if(s.rbegin(), s.rend(), not_space).base(), s.end());
    return s;
}

// Spawns `argv[0]` with a clean signal state (the test process may block or ignore
// signals the child relies on) and no inherited descriptors beyond 0-2, so a server
// does not keep a test's sockets alive after the test closes them.
pid_t spawn(const std::vector<std::string>& args, int stdin_fd, int stdout_fd, int stderr_fd) {
    std::vector<char*> argv;
    argv.reserve(args.size() + 1);
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);

    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_adddup2(&actions, stdin_fd, 0);
    posix_spawn_file_actions_adddup2(&actions, stdout_fd, 1);
    posix_spawn_file_actions_adddup2(&actions, stderr_fd, 2);
    posix_spawn_file_actions_addclosefrom_np(&actions, 3);

    posix_spawnattr_t attr;
    posix_spawnattr_init(&attr);
    sigset_t none;
    sigemptyset(&none);
    sigset_t defaults;
    sigemptyset(&defaults);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) sigaddset(&defaults, sig);
    posix_spawnattr_setsigmask(&attr, &none);
    posix_spawnattr_setsigdefault(&attr, &defaults);
    posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF);

    pid_t pid = -1;
    const int rc = ::posix_spawn(&pid, argv[0], &actions, &attr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    posix_spawnattr_destroy(&attr);
    if (rc != 0) {
        errno = rc;
        throw_errno("posix_spawn " + args[0]);
    }
    return pid;
}

int open_or_throw(const std::string& path, int flags) {
    const int fd = ::open(path.c_str(), flags | O_CLOEXEC, 0600);
    if (fd < 0) throw_errno("open " + path);
    return fd;
}

// Sends PING (after AUTH when a password is set) and waits for exactly the success
// replies, all within one deadline: a paused server accepts the connection in the
// kernel but never answers, and that must read as "not answering", not hang.
bool ping_at(int family, const sockaddr* addr, socklen_t addr_len, const std::string& password,
             std::chrono::milliseconds timeout) {
    const auto deadline = steady::now() + timeout;
    const auto remaining_ms = [&] {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
        return static_cast<int>(std::max<long long>(left, 0));
    };
    fd_guard s(::socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (s.get() < 0) return false;
    if (::connect(s.get(), addr, addr_len) != 0) {
        if (errno != EINPROGRESS && errno != EAGAIN) return false;
        pollfd p{s.get(), POLLOUT, 0};
        if (::poll(&p, 1, remaining_ms()) != 1) return false;
        int err = 0;
        socklen_t len = sizeof err;
        if (::getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0) return false;
    }
    std::string request;
    std::string expected;
    if (!password.empty()) {
        request += "*2\r\n$4\r\nAUTH\r\n$" + std::to_string(password.size()) + "\r\n" + password + "\r\n";
        expected += "+OK\r\n";
    }
    request += "*1\r\n$4\r\nPING\r\n";
    expected += "+PONG\r\n";

    std::size_t sent = 0;
    while (sent < request.size()) {
        const auto n = ::send(s.get(), request.data() + sent, request.size() - sent, MSG_NOSIGNAL);
        if (n > 0) {
            sent += static_cast<std::size_t>(n);
            continue;
        }
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
        pollfd p{s.get(), POLLOUT, 0};
        if (::poll(&p, 1, remaining_ms()) != 1) return false;
    }
    std::string reply;
    while (reply.size() < expected.size()) {
        pollfd p{s.get(), POLLIN, 0};
        if (::poll(&p, 1, remaining_ms()) != 1) return false;
        std::array<char, 512> buf{};
        const auto n = ::recv(s.get(), buf.data(), buf.size(), 0);
        if (n == 0) return false;
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) continue;
            return false;
        }
        reply.append(buf.data(), static_cast<std::size_t>(n));
    }
    return reply.compare(0, expected.size(), expected) == 0;
}

}  // namespace

bool redis_server::available() {
    return !find_binary("redis-server").empty() && !find_binary("redis-cli").empty();
}

redis_server::redis_server(redis_server_options options) : options_(std::move(options)) {
    if (!available()) {
        throw std::runtime_error(
            "redis_server: redis-server or redis-cli not found (install the Debian package redis-server)");
    }
    std::string templ = (std::filesystem::temp_directory_path() / "cachecar-redis-XXXXXX").string();
    if (::mkdtemp(templ.data()) == nullptr) throw_errno("mkdtemp " + templ);
    dir_ = templ;
    try {
        if (options_.unix_socket) {
            unix_socket_ = (dir_ / "redis.sock").string();
            if (unix_socket_.size() >= sizeof(sockaddr_un{}.sun_path)) {
                throw std::runtime_error("redis_server: unix socket path too long (set TMPDIR shorter): " +
                                         unix_socket_);
            }
        }
        std::string taken;
        for (int attempt = 0; attempt < port_attempts; ++attempt) {
            const auto port = pick_free_port();
            if (start_on(port)) return;
            taken += " " + std::to_string(port);
        }
        throw std::runtime_error("redis_server: every port tried was taken before redis bound it:" + taken +
                                 "\n" + log());
    } catch (...) {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
        throw;
    }
}

redis_server::~redis_server() {
    kill();
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
}

std::string redis_server::url(int db) const {
    return "redis://127.0.0.1:" + std::to_string(port_) + "/" + std::to_string(db);
}

bool redis_server::start_on(std::uint16_t port) {
    const auto log_file = dir_ / "redis.log";
    const auto stdio_file = dir_ / "stdio.log";
    // Each start reads its own log: a "Ready" line from an earlier run must not count.
    std::error_code ec;
    std::filesystem::remove(log_file, ec);

    std::vector<std::string> args{find_binary("redis-server"),
                                  "--port", std::to_string(port),
                                  "--bind", "127.0.0.1",
                                  "--save", "",
                                  "--appendonly", "no",
                                  "--daemonize", "no",
                                  "--dir", dir_.string(),
                                  "--logfile", log_file.string()};
    if (!unix_socket_.empty()) {
        args.insert(args.end(), {"--unixsocket", unix_socket_, "--unixsocketperm", "700"});
    }
    if (!options_.password.empty()) args.insert(args.end(), {"--requirepass", options_.password});

    fd_guard in(open_or_throw("/dev/null", O_RDONLY));
    fd_guard out(open_or_throw(stdio_file.string(), O_WRONLY | O_CREAT | O_TRUNC));
    pid_ = spawn(args, in.get(), out.get(), out.get());
    port_ = port;
    paused_ = false;

    const auto deadline = steady::now() + start_timeout;
    while (steady::now() < deadline) {
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            pid_ = -1;
            const std::string text = log();
            if (text.find("Address already in use") != std::string::npos) return false;
            throw std::runtime_error("redis_server: redis-server exited during start-up on port " +
                                     std::to_string(port) + ":\n" + text);
        }
        // The log line proves that the server answering is ours, not another process
        // that grabbed the port after pick_free_port released it.
        if (read_file(log_file).find("Ready to accept connections") != std::string::npos && ping(200ms)) {
            return true;
        }
        std::this_thread::sleep_for(10ms);
    }
    const std::string text = log();
    kill();
    throw std::runtime_error("redis_server: redis-server did not answer PING on port " + std::to_string(port) +
                             " within 5 s:\n" + text);
}

void redis_server::reap(std::chrono::milliseconds grace) {
    if (pid_ <= 0) return;
    const auto deadline = steady::now() + grace;
    int status = 0;
    for (;;) {
        const pid_t r = ::waitpid(pid_, &status, WNOHANG);
        if (r == pid_ || (r < 0 && errno == ECHILD)) break;
        if (steady::now() >= deadline) {
            ::kill(pid_, SIGKILL);
            ::waitpid(pid_, &status, 0);
            break;
        }
        std::this_thread::sleep_for(5ms);
    }
    pid_ = -1;
    paused_ = false;
}

void redis_server::stop() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGTERM);
    // A stopped process keeps SIGTERM pending until it is continued.
    if (paused_) ::kill(pid_, SIGCONT);
    reap(stop_grace);
}

void redis_server::kill() {
    if (pid_ <= 0) return;
    ::kill(pid_, SIGKILL);  // also ends a stopped process
    reap(stop_grace);
}

void redis_server::pause() {
    if (pid_ <= 0) throw std::logic_error("redis_server::pause: server is not running");
    if (paused_) return;
    ::kill(pid_, SIGSTOP);
    // Wait until the kernel has actually stopped it, so that a test's next request is
    // certain to meet a stopped server rather than race the signal.
    int status = 0;
    if (::waitpid(pid_, &status, WUNTRACED) != pid_ || !WIFSTOPPED(status)) {
        pid_ = -1;  // it died instead (and is now reaped)
        throw std::runtime_error("redis_server::pause: server exited instead of stopping:\n" + log());
    }
    paused_ = true;
}

void redis_server::resume() {
    if (pid_ <= 0) throw std::logic_error("redis_server::resume: server is not running");
    if (!paused_) return;
    ::kill(pid_, SIGCONT);
    int status = 0;
    if (::waitpid(pid_, &status, WCONTINUED) != pid_ || !WIFCONTINUED(status)) {
        throw std::runtime_error("redis_server::resume: server did not continue");
    }
    paused_ = false;
}

void redis_server::restart() {
    stop();
    if (!start_on(port_)) {
        throw std::runtime_error("redis_server::restart: port " + std::to_string(port_) +
                                 " was taken while the server was down:\n" + log());
    }
}

std::string redis_server::command(const std::vector<std::string>& args) const {
    return trim(run_cli(args, std::nullopt, false));
}

std::string redis_server::command_raw(const std::vector<std::string>& args,
                                      const std::optional<std::string>& last_arg) const {
    return run_cli(args, last_arg, true);
}

std::string redis_server::run_cli(const std::vector<std::string>& args, const std::optional<std::string>& stdin_data,
                                  bool raw) const {
    std::vector<std::string> argv{find_binary("redis-cli"), "-h", "127.0.0.1", "-p", std::to_string(port_)};
    if (!options_.password.empty()) argv.insert(argv.end(), {"--no-auth-warning", "-a", options_.password});
    // --raw is already the default when stdout is a pipe; -D "" drops the newline that
    // would otherwise follow the reply, so binary values come back byte for byte.
    if (raw) argv.insert(argv.end(), {"--raw", "-D", ""});
    std::string stdin_path = "/dev/null";
    if (stdin_data) {
        argv.push_back("-x");
        // A file rather than a pipe: nothing to deadlock on and no SIGPIPE if redis-cli
        // exits before reading it.
        stdin_path = (dir_ / ("stdin-" + std::to_string(++stdin_files_))).string();
        std::ofstream f(stdin_path, std::ios::binary | std::ios::trunc);
        f.write(stdin_data->data(), static_cast<std::streamsize>(stdin_data->size()));
        if (!f) throw std::runtime_error("redis_server: cannot write " + stdin_path);
    }
    argv.insert(argv.end(), args.begin(), args.end());

    int out_pipe[2];
    int err_pipe[2];
    if (::pipe2(out_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
    fd_guard out_read(out_pipe[0]);
    fd_guard out_write(out_pipe[1]);
    if (::pipe2(err_pipe, O_CLOEXEC) != 0) throw_errno("pipe");
    fd_guard err_read(err_pipe[0]);
    fd_guard err_write(err_pipe[1]);
    fd_guard in(open_or_throw(stdin_path, O_RDONLY));

    const pid_t child = spawn(argv, in.get(), out_write.get(), err_write.get());
    out_write.reset();
    err_write.reset();
    in.reset();

    std::string out;
    std::string err;
    const auto deadline = steady::now() + cli_timeout;
    bool out_open = true;
    bool err_open = true;
    bool timed_out = false;
    while (out_open || err_open) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
        if (left <= 0) {
            timed_out = true;
            break;
        }
        std::array<pollfd, 2> fds{pollfd{out_open ? out_read.get() : -1, POLLIN, 0},
                                  pollfd{err_open ? err_read.get() : -1, POLLIN, 0}};
        const int ready = ::poll(fds.data(), fds.size(), static_cast<int>(left));
        if (ready < 0 && errno != EINTR) throw_errno("poll");
        if (ready <= 0) continue;
        std::array<char, 4096> buf{};
        for (std::size_t i = 0; i < fds.size(); ++i) {
            if (fds[i].fd < 0 || fds[i].revents == 0) continue;
            const auto n = ::read(fds[i].fd, buf.data(), buf.size());
            if (n > 0) {
                (i == 0 ? out : err).append(buf.data(), static_cast<std::size_t>(n));
            } else if (n == 0 || (errno != EINTR && errno != EAGAIN)) {
                (i == 0 ? out_open : err_open) = false;
            }
        }
    }
    if (timed_out) ::kill(child, SIGKILL);
    int status = 0;
    ::waitpid(child, &status, 0);

    std::string shown;
    for (std::size_t i = 5; i < argv.size(); ++i) shown += " " + argv[i];
    if (timed_out) {
        throw std::runtime_error("redis_server: redis-cli" + shown + " got no answer within 10 s" +
                                 (paused_ ? " (the server is paused)" : ""));
    }
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
        throw std::runtime_error("redis_server: redis-cli" + shown + " failed: " + trim(err) + trim(out));
    }
    return out;
}

bool redis_server::ping(std::chrono::milliseconds timeout) const {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(port_);
    return ping_at(AF_INET, reinterpret_cast<const sockaddr*>(&addr), sizeof addr, options_.password, timeout);
}

bool redis_server::ping_unix_socket(std::chrono::milliseconds timeout) const {
    if (unix_socket_.empty()) return false;
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::memcpy(addr.sun_path, unix_socket_.c_str(), unix_socket_.size() + 1);
    return ping_at(AF_UNIX, reinterpret_cast<const sockaddr*>(&addr), sizeof addr, options_.password, timeout);
}

std::string redis_server::log() const {
    std::string text = read_file(dir_ / "redis.log");
    const std::string stdio = read_file(dir_ / "stdio.log");
    if (!stdio.empty()) text += "\n[stdout/stderr]\n" + stdio;
    return text;
}

}  // namespace cachecar::test
