// The listener and its sessions: one coroutine per connection on its own strand,
// Beast parser with the configured limits, keep-alive, idle deadline, clean refusal
// beyond max_connections, and a graceful drain. What to answer is the handler's job
// (the proxy for clients, the admin API for operators).
#pragma once

#include <cachecar/cache/entry.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/net.hpp>

#include <atomic>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>

namespace cachecar::http {

struct connection_info {
    std::string client_address;  // peer IP, for X-Forwarded-For and the access log
};

// What the access log says about one request.
struct access_record {
    std::string_view route = "-";
    std::string_view result = "-";  // hit, miss, stale, bypass, pass, write, error
    std::string_view tier = "-";
    double upstream_seconds = -1;  // < 0: no upstream request
};

// The per-hit header lines added to a stored response: X-Cache, X-Cache-Tier, Age
// and Via. Views of static strings.
struct hit_info {
    std::string_view x_cache = "HIT";  // HIT or STALE
    std::string_view tier = "memory";
    std::int64_t age_seconds = 0;
};

// One answer. A cache hit is written straight from the stored entry (its serialised
// header block and body, no copies into a message); everything else is a Beast message.
struct reply {
    response message;
    cache::entry_ptr hit;
    hit_info hit_meta;        // for a hit
    bool head_only = false;   // HEAD: headers of the entry, no body
    bool close = false;       // close the connection after writing
    access_record access;     // its views point into `owner`
    std::shared_ptr<const void> owner;  // keeps what `access` refers to (the config snapshot) alive
    unsigned status() const { return hit ? hit->status : message.result_int(); }
};

class request_handler {
public:
    virtual ~request_handler() = default;
    // Answers one parsed request. Runs on the session's strand; must not throw.
    virtual net::awaitable<reply> handle(request& req, const connection_info& conn) = 0;
    // The limits to apply to the next request (read per request: reload changes them).
    virtual config::limits_config limits() const = 0;
    // Called once per request after the reply was written (or failed to be).
    virtual void on_complete(const request& req, const reply& r, const connection_info& conn,
                             std::chrono::steady_clock::duration elapsed) = 0;
    // Counts requests rejected before the handler saw them (400, 413, 431, 503).
    virtual void on_rejected(unsigned status) = 0;
};

class server {
public:
    // `io_threads`: how many threads run `io`. Each connection gets its own strand
    // when more than one does; with one thread everything is already serialised, and
    // a strand would only add a lock and a queue to every completion of the hit path.
    server(net::io_context& io, request_handler& handler, std::string name, unsigned io_threads);
    ~server();

    // Binds and starts accepting. Throws boost::system::system_error if it cannot bind.
    // Called again (reload with a new address), it binds the new address first and
    // only then stops accepting on the old one; open connections are unaffected.
    void listen(const config::endpoint& where);
    std::uint16_t port() const;

    // Stops accepting; idle keep-alive connections are closed now, busy ones after
    // their current response. active_connections() reaching 0 means drained.
    void begin_drain();
    // Closes every connection now (the drain deadline passed).
    void close_all();
    std::size_t active_connections() const;

private:
    struct session;
    net::awaitable<void> accept_loop(std::shared_ptr<net::ip::tcp::acceptor> acceptor);
    net::awaitable<void> run_session(std::shared_ptr<session> s);

    net::io_context& io_;
    const bool session_strands_;
    request_handler& handler_;
    std::string name_;
    std::mutex acceptor_mutex_;
    std::shared_ptr<net::ip::tcp::acceptor> acceptor_;
    std::atomic<std::uint16_t> port_{0};
    std::atomic<bool> draining_{false};
    mutable std::mutex sessions_mutex_;
    std::list<std::weak_ptr<session>> sessions_;
    std::atomic<std::size_t> active_{0};
};

}  // namespace cachecar::http
