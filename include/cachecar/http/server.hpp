// The listener and its sessions: one coroutine per connection (on its own strand when
// several threads run the event loop), Beast's parser with the configured limits,
// keep-alive, deadlines on every read and write, clean refusal beyond
// max_connections, and a graceful drain. What to answer is the handler's job (the
// proxy for clients, the admin API for operators); the session only moves bytes: a
// request head and its body as a stream in, a reply's head and its body (in memory or
// streamed, with backpressure) out, or a byte tunnel after a 101.
#pragma once

#include <cachecar/config/config.hpp>
#include <cachecar/http/body.hpp>
#include <cachecar/http/message.hpp>
#include <cachecar/net.hpp>

#include <array>
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
    std::string_view result = "-";  // hit, miss, stale, bypass, pass, write, error, tunnel
    std::string_view tier = "-";
    double upstream_seconds = -1;  // < 0: no upstream request
};

// The request body, read from the client as the handler pulls it. A client that sent
// "Expect: 100-continue" gets its 100 when the body is first pulled, so a request the
// handler answers without its body (a 413, a hit) costs no upload.
class request_body : public body_stream {
public:
    // Whether the request has a body at all (Content-Length > 0, or chunked).
    virtual bool present() const = 0;
    // Whether it has been read to its end (or there was none).
    virtual bool finished() const = 0;
    // The whole body if all of it arrived with the head (no I/O, nothing sent to the
    // client), so it can go on with a Content-Length: a small chunked upload then reaches
    // backends that cannot read chunked request bodies. nullopt otherwise; next() then
    // goes on from where this stopped.
    virtual std::optional<std::string_view> already_arrived() { return std::nullopt; }
};

// The backend's side of an upgraded connection (after its 101): the connection itself,
// on the session's executor, and what was already read from it past the 101's head.
struct tunnel_end {
    explicit tunnel_end(beast::tcp_stream s) : stream(std::move(s)) {}
    beast::tcp_stream stream;
    std::string pending;
};

// One answer. The head is written as given, piece by piece (status line, then field
// lines, each ending in CRLF); the session adds "Connection: close" when it closes the
// connection after it, then the blank line. Views point into `owner` (a stored entry,
// owned text) or into the session's scratch buffer (see inbound).
struct reply {
    unsigned status = 0;
    std::array<std::string_view, 3> head{};
    std::string_view body;                  // a body in memory
    std::unique_ptr<body_stream> stream;    // or one streamed, piece by piece
    bool chunked = false;                   // frame `stream` as chunks (the head says so)
    bool head_only = false;                 // the answer to a HEAD: no body bytes
    std::unique_ptr<tunnel_end> tunnel;     // after writing this (101) head: a two-way byte tunnel
    bool close = false;                     // close the connection after writing
    access_record access;                   // its views point into `access_owner`
    std::shared_ptr<const void> owner;      // keeps what the head and body views point into alive
    std::shared_ptr<const void> access_owner;  // keeps what `access` points into alive (the config)
};

// A reply that owns its bytes, from a Beast message (admin answers, errors).
reply make_reply(response message);

// What happened to a reply on the wire, for the access log.
struct delivery {
    std::chrono::steady_clock::duration elapsed{};
    std::uint64_t body_bytes = 0;  // body bytes written (tunnel: both directions)
    bool complete = true;          // false: cut short
    bool source_failed = false;    // cut short by the body's source (the backend failed mid-body)
};

// A request as the session hands it over.
struct inbound {
    request& req;  // the head; its body stays empty unless the handler reads it in
    request_body& body;
    const connection_info& conn;
    // Writes an interim (1xx) response before the reply; `head` ends with the blank line.
    std::function<net::awaitable<error_code>(std::string_view head)> send_interim;
    // Reused from request to request on this connection: a reply may point into it.
    std::string& scratch;
};

class request_handler {
public:
    virtual ~request_handler() = default;
    // Answers one request. Runs on the session's strand; must not throw.
    virtual net::awaitable<reply> handle(inbound& in) = 0;
    // The limits to apply to the next request (read per request: reload changes them).
    virtual config::limits_config limits() const = 0;
    // Called once per request after the reply was written (or failed to be).
    virtual void on_complete(const request& req, const reply& r, const connection_info& conn, const delivery& d) = 0;
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

    // Stops accepting; idle keep-alive connections are closed now, busy ones (and
    // tunnels) after their current exchange. active_connections() reaching 0 means drained.
    void begin_drain();
    // Closes every connection now (the drain deadline passed).
    void close_all();
    std::size_t active_connections() const;
    std::size_t active_tunnels() const { return tunnels_.load(); }

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
    std::atomic<std::size_t> tunnels_{0};
};

}  // namespace cachecar::http
