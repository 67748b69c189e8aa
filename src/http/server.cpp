#include <cachecar/http/server.hpp>
#include <cachecar/http/request_checks.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/util/ascii.hpp>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/beast/core/buffer_traits.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <spdlog/spdlog.h>

#include <cstdio>
#include <optional>
#include <vector>

namespace cachecar::http {

namespace bh = beast::http;

struct server::session {
    explicit session(net::ip::tcp::socket sock) : stream(std::move(sock)) {}
    beast::tcp_stream stream;
    std::atomic<bool> busy{false};  // a request is being handled; drain lets it finish
    std::string scratch;            // hit heads are composed here; its capacity is kept across requests

    // Closes the socket from the session's strand (streams are not thread-safe).
    void close_soon(bool only_if_idle) {
        net::post(stream.get_executor(), [this, only_if_idle, keep = weak] {
            auto self = keep.lock();
            if (!self || (only_if_idle && busy)) return;
            error_code ignored;
            stream.socket().shutdown(net::ip::tcp::socket::shutdown_both, ignored);
            stream.socket().close(ignored);
        });
    }
    std::weak_ptr<session> weak;
};

reply make_reply(response message) {
    const auto status = message.result_int();
    if (status >= 200 && status != 204 && status != 304) {
        message.prepare_payload();
    } else {
        message.erase(bh::field::content_length);  // no body, and no length that would claim one
        message.body().clear();
    }
    struct owned {
        std::string head;
        std::string body;
    };
    auto o = std::make_shared<owned>();
    o->head = "HTTP/1.1 " + std::to_string(message.result_int()) + " ";
    const auto reason = message.reason();
    o->head.append(reason.data(), reason.size()).append("\r\n");
    for (const auto& f : message) {
        if (same_field_name(f.name_string(), "connection")) continue;  // the session says whether it closes
        o->head.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
    }
    o->body = std::move(message.body());
    reply r;
    r.status = message.result_int();
    r.head[0] = o->head;
    r.body = o->body;
    r.close = !message.keep_alive();
    r.owner = std::move(o);
    return r;
}

namespace {

response make_error(unsigned status, const std::string& text, unsigned version) {
    response res{static_cast<bh::status>(status), version};
    res.set(bh::field::content_type, "text/plain; charset=utf-8");
    res.set(bh::field::connection, "close");
    res.body() = text + "\n";
    res.keep_alive(false);
    res.prepare_payload();
    return res;
}

// Writes with a deadline that restarts whenever bytes move (nginx's send_timeout):
// a client that reads slowly but steadily gets its whole response; one that stops
// reading is cut off after `idle` without progress. A single deadline over the whole
// write would cut off a large response on a slow but healthy link.
template <class Buffers>
net::awaitable<error_code> write_with_progress_deadline(beast::tcp_stream& stream, const Buffers& buffers,
                                                        config::duration idle) {
    beast::buffers_suffix<Buffers> rest(buffers);
    error_code ec;
    while (beast::buffer_bytes(rest) != 0) {
        stream.expires_after(idle);
        const std::size_t n = co_await stream.async_write_some(rest, net::redirect_error(net::use_awaitable, ec));
        if (ec) break;
        rest.consume(n);
    }
    co_return ec;
}

// The request body of the request whose head `parser` has read, pulled from the
// client in pieces of at most stream_piece_bytes, each read under the idle deadline.
class client_body final : public request_body {
public:
    client_body(beast::tcp_stream& stream, beast::flat_buffer& buffer, request_parser& parser, config::duration idle,
                bool expect_continue)
        : stream_(stream), buffer_(buffer), parser_(parser), idle_(idle), expect_continue_(expect_continue) {}

    bool present() const override {
        return parser_.chunked() || (parser_.content_length() && *parser_.content_length() > 0);
    }
    bool finished() const override { return parser_.is_done(); }
    std::optional<std::uint64_t> size() const override {
        if (parser_.chunked()) return std::nullopt;
        return parser_.content_length().value_or(0);
    }

    std::optional<std::string_view> already_arrived() override {
        if (parser_.is_done() && pending_ == 0) return std::string_view();
        if (expect_continue_ || error_ || buffer_.size() == 0) return std::nullopt;
        if (!piece_) piece_ = std::make_unique_for_overwrite<std::array<char, stream_piece_bytes>>();
        auto& b = parser_.get().body();
        b.data = piece_->data() + pending_;
        b.size = piece_->size() - pending_;
        while (!parser_.is_done() && b.size > 0 && buffer_.size() > 0) {
            error_code ec;
            const std::size_t used = parser_.put(buffer_.data(), ec);
            buffer_.consume(used);
            if (ec == bh::error::need_buffer || ec == bh::error::need_more) {
                if (used == 0) break;
            } else if (ec) {
                error_ = ec;  // next() reports it
                break;
            }
        }
        pending_ = piece_->size() - b.size;
        if (!parser_.is_done() || error_) return std::nullopt;
        const std::string_view whole(piece_->data(), pending_);
        pending_ = 0;
        return whole;
    }

    net::awaitable<result<std::string_view>> next() override {
        if (error_) co_return error_;
        if (pending_ > 0) {  // what already_arrived() parsed but could not hand over whole
            const std::string_view first(piece_->data(), std::exchange(pending_, 0));
            co_return first;
        }
        if (parser_.is_done()) co_return std::string_view();
        error_code ec;
        if (expect_continue_) {
            // The client waits for this before sending the body (RFC 9110 10.1.1).
            expect_continue_ = false;
            static constexpr std::string_view cont = "HTTP/1.1 100 Continue\r\n\r\n";
            ec = co_await write_with_progress_deadline(stream_, net::buffer(cont.data(), cont.size()), idle_);
            if (ec) co_return ec;
        }
        if (!piece_) piece_ = std::make_unique_for_overwrite<std::array<char, stream_piece_bytes>>();
        for (;;) {
            auto& b = parser_.get().body();
            b.data = piece_->data();
            b.size = piece_->size();
            stream_.expires_after(idle_);
            co_await bh::async_read_some(stream_, buffer_, parser_, net::redirect_error(net::use_awaitable, ec));
            if (ec == bh::error::need_buffer) ec = {};
            if (ec) co_return ec;
            const std::size_t n = piece_->size() - b.size;
            if (n > 0 || parser_.is_done()) co_return std::string_view(piece_->data(), n);
        }
    }

private:
    beast::tcp_stream& stream_;
    beast::flat_buffer& buffer_;
    request_parser& parser_;
    config::duration idle_;
    bool expect_continue_;
    std::unique_ptr<std::array<char, stream_piece_bytes>> piece_;  // allocated on the first read
    std::size_t pending_ = 0;  // bytes of piece_ parsed by already_arrived(), not yet handed out
    error_code error_;         // a framing error already_arrived() met
};

// A chunk header: the size in hex and CRLF.
std::string_view chunk_size_line(std::size_t n, std::array<char, 24>& out) {
    const int len = std::snprintf(out.data(), out.size(), "%zx\r\n", n);
    return {out.data(), static_cast<std::size_t>(len)};
}

// Copies one direction of a tunnel until its end; `last` is refreshed on every move.
net::awaitable<void> pipe(beast::tcp_stream& from, beast::tcp_stream& to, std::string initial,
                          std::chrono::steady_clock::time_point& last, bool& done, std::uint64_t& moved) {
    error_code ec;
    from.expires_never();
    to.expires_never();
    if (!initial.empty()) {
        co_await net::async_write(to, net::buffer(initial), net::redirect_error(net::use_awaitable, ec));
        moved += initial.size();
    }
    std::vector<char> buf(stream_piece_bytes);
    while (!ec) {
        const auto n = co_await from.async_read_some(net::buffer(buf), net::redirect_error(net::use_awaitable, ec));
        if (ec) break;
        last = std::chrono::steady_clock::now();
        co_await net::async_write(to, net::buffer(buf.data(), n), net::redirect_error(net::use_awaitable, ec));
        moved += n;
    }
    error_code ignored;
    if (ec == net::error::eof) {
        to.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);  // pass the half-close on
    } else {
        from.socket().close(ignored);  // a failure ends both directions
        to.socket().close(ignored);
    }
    done = true;
}

// The tunnel after a 101: bytes both ways until both directions end, or nothing moves
// either way for `idle`.
net::awaitable<std::uint64_t> splice(beast::tcp_stream& client, std::string client_pending, tunnel_end& backend,
                                     config::duration idle) {
    using namespace boost::asio::experimental::awaitable_operators;
    auto last = std::chrono::steady_clock::now();
    bool up_done = false, down_done = false;
    auto watchdog = [&]() -> net::awaitable<void> {
        net::steady_timer t(co_await net::this_coro::executor);
        while (!up_done || !down_done) {
            t.expires_after(std::min<config::duration>(idle, std::chrono::seconds(1)));
            error_code ec;
            co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
            if (std::chrono::steady_clock::now() - last >= idle) {
                error_code ignored;
                client.socket().close(ignored);
                backend.stream.socket().close(ignored);
                break;
            }
        }
    };
    std::uint64_t up = 0, down = 0;
    co_await (pipe(client, backend.stream, std::move(client_pending), last, up_done, up) &&
              pipe(backend.stream, client, std::move(backend.pending), last, down_done, down) && watchdog());
    co_return up + down;
}

}  // namespace

server::server(net::io_context& io, request_handler& handler, std::string name, unsigned io_threads)
    : io_(io), session_strands_(io_threads > 1), handler_(handler), name_(std::move(name)) {}

server::~server() = default;

void server::listen(const config::endpoint& where) {
    net::ip::tcp::resolver resolver(io_);
    auto results = resolver.resolve(where.host, std::to_string(where.port), net::ip::resolver_base::passive);
    auto ep = results.begin()->endpoint();
    // Bind the new listener before giving up the old one: a failed rebind on reload
    // leaves the running listener untouched.
    auto fresh = std::make_shared<net::ip::tcp::acceptor>(net::make_strand(io_));
    fresh->open(ep.protocol());
    fresh->set_option(net::socket_base::reuse_address(true));
    fresh->bind(ep);
    fresh->listen(net::socket_base::max_listen_connections);
    std::shared_ptr<net::ip::tcp::acceptor> old;
    {
        std::lock_guard lock(acceptor_mutex_);
        old = std::exchange(acceptor_, fresh);
        port_ = fresh->local_endpoint().port();
    }
    if (old) {
        net::post(old->get_executor(), [old] {
            error_code ignored;
            old->close(ignored);  // its accept loop ends; established connections carry on
        });
    }
    net::co_spawn(fresh->get_executor(), accept_loop(fresh), net::detached);
}

std::uint16_t server::port() const { return port_.load(); }

std::size_t server::active_connections() const { return active_.load(); }

void server::begin_drain() {
    draining_ = true;
    std::shared_ptr<net::ip::tcp::acceptor> a;
    {
        std::lock_guard lock(acceptor_mutex_);
        a = acceptor_;
    }
    if (a) {
        net::post(a->get_executor(), [a] {
            error_code ignored;
            a->close(ignored);
        });
    }
    std::lock_guard lock(sessions_mutex_);
    for (auto& w : sessions_) {
        if (auto s = w.lock()) s->close_soon(true);
    }
}

void server::close_all() {
    std::lock_guard lock(sessions_mutex_);
    for (auto& w : sessions_) {
        if (auto s = w.lock()) s->close_soon(false);
    }
}

net::awaitable<void> server::accept_loop(std::shared_ptr<net::ip::tcp::acceptor> acceptor) {
    for (;;) {
        error_code ec;
        const net::any_io_executor session_executor =
            session_strands_ ? net::any_io_executor(net::make_strand(io_)) : net::any_io_executor(io_.get_executor());
        auto sock = co_await acceptor->async_accept(session_executor, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (ec == net::error::operation_aborted || draining_ || !acceptor->is_open()) co_return;
            // EMFILE and friends: back off briefly instead of spinning.
            logging::get("proxy")->warn("{}: accept failed: {}", name_, ec.message());
            net::steady_timer t(acceptor->get_executor(), std::chrono::milliseconds(50));
            co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
            continue;
        }
        if (draining_) co_return;
        const auto limits = handler_.limits();
        if (active_.load() >= limits.max_connections) {
            // Refuse cleanly: a short 503 the client can understand, then close.
            handler_.on_rejected(503);
            auto refused = std::make_shared<net::ip::tcp::socket>(std::move(sock));
            static const std::string busy =
                "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\nRetry-After: 1\r\nConnection: close\r\n\r\n";
            net::async_write(*refused, net::buffer(busy), [refused](error_code, std::size_t) {
                error_code ignored;
                refused->shutdown(net::ip::tcp::socket::shutdown_both, ignored);
            });
            continue;
        }
        // A streamed answer goes out in several writes (head, pieces, last chunk); with
        // Nagle on, the tail of each waited for the client's delayed ACK: 40 ms stalls on
        // half of all 8 MiB downloads. nginx's tcp_nodelay is on for the same reason.
        error_code nodelay_ec;
        sock.set_option(net::ip::tcp::no_delay(true), nodelay_ec);
        auto s = std::make_shared<session>(std::move(sock));
        s->weak = s;
        {
            std::lock_guard lock(sessions_mutex_);
            // Prune finished sessions as we go so the list stays the size of the live set.
            sessions_.remove_if([](const std::weak_ptr<session>& w) { return w.expired(); });
            sessions_.push_back(s);
        }
        ++active_;
        net::co_spawn(s->stream.get_executor(), run_session(s), net::detached);
    }
}

net::awaitable<void> server::run_session(std::shared_ptr<session> s) {
    struct active_guard {
        std::atomic<std::size_t>& n;
        ~active_guard() { --n; }
    } guard{active_};

    connection_info conn;
    {
        error_code ec;
        auto ep = s->stream.socket().remote_endpoint(ec);
        if (!ec) conn.client_address = ep.address().to_string();
    }
    beast::flat_buffer buffer;
    bool rejected = false;  // an error answer was written; the client may still be sending
    for (;;) {
        const auto limits = handler_.limits();
        request_parser parser;
        apply_limits(parser, limits);

        s->stream.expires_after(limits.client_idle_timeout);
        error_code ec;
        // Take in the whole head before parsing so its raw bytes can be checked.
        // (asio::async_read_until would copy a Beast buffer, so read by hand.)
        std::size_t head_size = 0;
        for (;;) {
            const auto scan =
                scan_head({static_cast<const char*>(buffer.data().data()), buffer.size()}, limits.max_header_bytes);
            if (scan.size != 0) {
                head_size = scan.size;
                break;
            }
            if (scan.over_limit) {
                ec = net::error::not_found;
                break;
            }
            const auto want = std::min<std::size_t>(8192, limits.max_header_bytes - buffer.size());
            const auto n = co_await s->stream.async_read_some(buffer.prepare(want), net::redirect_error(net::use_awaitable, ec));
            buffer.commit(n);
            if (ec) break;
        }
        if (ec == net::error::not_found) ec = bh::error::header_limit;  // no end of head within the limit
        if (!ec) {
            const std::string_view head(static_cast<const char*>(buffer.data().data()), head_size);
            if (auto problem = raw_head_problem(head); !problem.empty()) {
                rejected = true;
                handler_.on_rejected(400);
                auto res = make_error(400, std::string("Bad Request: ") + std::string(problem), 11);
                co_await bh::async_write(s->stream, res, net::redirect_error(net::use_awaitable, ec));
                break;
            }
        }
        // The buffer holds the head and at most one read of body bytes at a time.
        buffer.max_size(limits.max_header_bytes + 2 * stream_piece_bytes);
        if (!ec) co_await bh::async_read_header(s->stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (const unsigned status = rejection_status(ec, true); status != 0) {
                rejected = true;
                handler_.on_rejected(status);
                auto res = make_error(status,
                                      status == 431   ? "Request Header Fields Too Large"
                                      : status == 413 ? "Content Too Large"
                                                      : "Bad Request",
                                      11);
                s->stream.expires_after(std::chrono::seconds(5));
                co_await bh::async_write(s->stream, res, net::redirect_error(net::use_awaitable, ec));
            }
            break;  // end of stream, timeout, reset, or rejected
        }
        s->busy = true;
        std::string_view problem;
        if (!adopt_absolute_form(parser.get())) problem = "bad absolute-form target";
        if (problem.empty()) problem = request_head_problem(parser.get());
        if (!problem.empty()) {
            rejected = true;
            handler_.on_rejected(400);
            auto res = make_error(400, "Bad Request: " + std::string(problem), 11);
            co_await bh::async_write(s->stream, res, net::redirect_error(net::use_awaitable, ec));
            break;
        }

        const auto started = std::chrono::steady_clock::now();
        const bool expect_continue = list_has(parser.get(), "expect", "100-continue");
        // The head leaves the parser, which goes on reading the body into pieces. Chunked
        // trailer fields the parser meets later land in its emptied field set, so they
        // never join the head (RFC 9110 6.5.1: trailers are not header fields).
        request req{std::move(parser.get().base())};
        const bool client_keep_alive = req.keep_alive();
        client_body body(s->stream, buffer, parser, limits.client_idle_timeout, expect_continue);
        inbound in{req, body, conn,
                   [&](std::string_view head) -> net::awaitable<error_code> {
                       error_code wec = co_await write_with_progress_deadline(
                           s->stream, net::buffer(head.data(), head.size()), limits.client_idle_timeout);
                       co_return wec;
                   },
                   s->scratch};
        // Handling may wait on the upstream; its own deadlines bound that, so the
        // client-side timer must not fire meanwhile.
        s->stream.expires_never();
        reply r = co_await handler_.handle(in);
        // A body the handler left unread would be taken for the next request: close.
        const bool keep = client_keep_alive && !r.close && !draining_ && body.finished() && !r.tunnel;

        delivery d;
        static constexpr std::string_view close_line = "Connection: close\r\n";
        static constexpr std::string_view blank = "\r\n";
        const bool in_memory = !r.stream && !r.head_only;
        std::array<net::const_buffer, 6> head_buffers{
            net::buffer(r.head[0].data(), r.head[0].size()),
            net::buffer(r.head[1].data(), r.head[1].size()),
            net::buffer(r.head[2].data(), r.head[2].size()),
            // A 101's head carries the Connection: Upgrade it agreed to, and no close.
            keep || r.tunnel ? net::const_buffer{} : net::buffer(close_line.data(), close_line.size()),
            net::buffer(blank.data(), blank.size()),
            in_memory ? net::buffer(r.body.data(), r.body.size()) : net::const_buffer{}};
        ec = co_await write_with_progress_deadline(s->stream, head_buffers, limits.client_idle_timeout);
        if (!ec && in_memory) d.body_bytes = r.body.size();
        if (ec) d.complete = false;

        if (!ec && r.stream && !r.head_only) {
            // Relay piece by piece: the next piece is pulled only once the last one is
            // written, so the client's pace is the backend's (backpressure).
            std::array<char, 24> size_line{};
            for (;;) {
                auto piece = co_await r.stream->next();
                if (!piece) {
                    // The body cannot be completed (the backend failed mid-body): the
                    // status line is out, so only closing without the final chunk tells
                    // the client its answer is short.
                    ec = piece.error();
                    d.complete = false;
                    d.source_failed = true;
                    break;
                }
                if (piece->empty()) {
                    if (r.chunked) {
                        const std::string_view trailers = r.stream->trailers();
                        static constexpr std::string_view last = "0\r\n";
                        std::array<net::const_buffer, 3> end{net::buffer(last.data(), last.size()),
                                                             net::buffer(trailers.data(), trailers.size()),
                                                             net::buffer(blank.data(), blank.size())};
                        ec = co_await write_with_progress_deadline(s->stream, end, limits.client_idle_timeout);
                        if (ec) d.complete = false;
                    }
                    break;
                }
                if (r.chunked) {
                    const auto line = chunk_size_line(piece->size(), size_line);
                    std::array<net::const_buffer, 3> chunk{net::buffer(line.data(), line.size()),
                                                           net::buffer(piece->data(), piece->size()),
                                                           net::buffer(blank.data(), blank.size())};
                    ec = co_await write_with_progress_deadline(s->stream, chunk, limits.client_idle_timeout);
                } else {
                    ec = co_await write_with_progress_deadline(s->stream, net::buffer(piece->data(), piece->size()),
                                                               limits.client_idle_timeout);
                }
                if (ec) {
                    d.complete = false;  // the client went away (or stopped reading)
                    break;
                }
                d.body_bytes += piece->size();
            }
        }
        if (!ec && r.tunnel) {
            ++tunnels_;
            // What the client sent past its request head already belongs to the tunnel.
            std::string pending(static_cast<const char*>(buffer.data().data()), buffer.size());
            buffer.consume(buffer.size());
            d.body_bytes = co_await splice(s->stream, std::move(pending), *r.tunnel, limits.tunnel_idle_timeout);
            --tunnels_;
        }
        d.elapsed = std::chrono::steady_clock::now() - started;
        // The stream (an upstream exchange) goes before the next request: a connection it
        // holds returns to the pool only if its body was read to the end.
        r.stream.reset();
        handler_.on_complete(req, r, conn, d);
        s->busy = false;
        // A body left unread may still be arriving: close lingering, like after a refusal.
        if (!body.finished()) rejected = true;
        if (ec || !keep || !d.complete) break;
    }
    error_code ignored;
    s->stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ignored);
    if (rejected) {
        // Lingering close (nginx's lingering_close): a client still sending the body we
        // refused would get a reset on close, and the reset destroys our 413/400 in its
        // receive buffer before it reads it. Read and discard for a bounded while.
        s->stream.expires_after(std::chrono::seconds(2));
        std::array<char, 16384> sink;
        for (std::size_t drained = 0; drained < (std::size_t{4} << 20);) {
            error_code ec;
            const std::size_t n = co_await s->stream.async_read_some(net::buffer(sink), net::redirect_error(net::use_awaitable, ec));
            if (ec) break;
            drained += n;
        }
    }
    s->stream.socket().close(ignored);
}

}  // namespace cachecar::http
