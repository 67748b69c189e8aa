// A TCP relay between a client under test and a server (Redis), with faults on command:
// freeze (bytes held both ways, every socket left open: a paused path or a stalled
// switch) and cut (every connection reset, new ones refused). One per cachecar instance
// lets a test take one instance's path to Redis away while the others keep theirs.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace cachecar::test {

class tcp_relay {
public:
    // Listens on a free 127.0.0.1 port and relays each connection to target_port.
    explicit tcp_relay(std::uint16_t target_port);
    ~tcp_relay();
    tcp_relay(const tcp_relay&) = delete;
    tcp_relay& operator=(const tcp_relay&) = delete;

    std::uint16_t port() const;
    // Holds every byte in both directions; connections stay open; new ones are accepted
    // (and held too).
    void freeze();
    // Resets every connection (RST) and refuses new ones (accepted, then reset at once).
    void cut();
    // Relays again; held bytes move on.
    void restore();

private:
    struct impl;
    std::unique_ptr<impl> impl_;
};

}  // namespace cachecar::test
