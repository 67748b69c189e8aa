#include "support/raw_connection.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>

namespace cachecar::test {

raw_connection::raw_connection(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM, 0);
    if (fd_ < 0) return;
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
        ::close(fd_);
        fd_ = -1;
        return;
    }
    int one = 1;
    ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

raw_connection::~raw_connection() { close(); }

void raw_connection::close() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
}

void raw_connection::shrink_receive_buffer(int bytes) {
    if (fd_ >= 0) ::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes);
}

bool raw_connection::send(const std::string& bytes) {
    std::size_t sent = 0;
    while (fd_ >= 0 && sent < bytes.size()) {
        const auto n = ::send(fd_, bytes.data() + sent, bytes.size() - sent, MSG_NOSIGNAL);
        if (n <= 0) return false;
        sent += static_cast<std::size_t>(n);
    }
    return fd_ >= 0;
}

bool raw_connection::read_some(std::chrono::milliseconds timeout) {
    if (fd_ < 0 || peer_closed_) return false;
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(timeout.count())) <= 0) return false;
    char buf[65536];
    const auto n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
        peer_closed_ = true;
        return false;
    }
    received_.append(buf, static_cast<std::size_t>(n));
    return true;
}

bool raw_connection::read_until(const std::function<bool(const std::string&)>& done, std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!done(received_)) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0 || !read_some(left)) return done(received_);
    }
    return true;
}

bool raw_connection::read_to_close(std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (!peer_closed_) {
        const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
        if (left.count() <= 0) return false;
        read_some(left);
    }
    return true;
}

bool dechunk(const std::string& chunked, std::string& body, std::string* trailers) {
    std::size_t at = 0;
    for (;;) {
        const auto eol = chunked.find("\r\n", at);
        if (eol == std::string::npos) return false;
        const auto size_text = chunked.substr(at, chunked.find_first_of(";\r", at) - at);
        char* end = nullptr;
        const auto size = std::strtoull(size_text.c_str(), &end, 16);
        if (size_text.empty() || end != size_text.c_str() + size_text.size()) return false;
        at = eol + 2;
        if (size == 0) {
            const auto blank = chunked.find("\r\n\r\n", at - 2);
            if (blank == std::string::npos) return false;
            if (trailers) *trailers = chunked.substr(at, blank + 2 - at);
            return true;
        }
        if (chunked.size() < at + size + 2) return false;
        body.append(chunked, at, size);
        at += size + 2;
    }
}

}  // namespace cachecar::test
