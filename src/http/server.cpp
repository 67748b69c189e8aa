#include <cachecar/http/server.hpp>
#include <cachecar/http/request_checks.hpp>
#include <cachecar/logging.hpp>
#include <cachecar/util/ascii.hpp>

#include <boost/beast/core/buffer_traits.hpp>
#include <boost/beast/core/buffers_suffix.hpp>
#include <spdlog/spdlog.h>

namespace cachecar::http {

namespace bh = beast::http;

struct server::session {
    explicit session(net::ip::tcp::socket sock) : stream(std::move(sock)) {}
    beast::tcp_stream stream;
    std::atomic<bool> busy{false};  // a request is being handled; drain lets it finish
    std::string head_buffer;        // hit heads are composed here; its capacity is kept across requests

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

// The same for a Beast message, serialised piece by piece.
net::awaitable<error_code> write_with_progress_deadline(beast::tcp_stream& stream, response& message,
                                                        config::duration idle) {
    bh::serializer<false, bh::string_body> sr(message);
    error_code ec;
    while (!sr.is_done()) {
        stream.expires_after(idle);
        co_await bh::async_write_some(stream, sr, net::redirect_error(net::use_awaitable, ec));
        if (ec) break;
    }
    co_return ec;
}

// Writes a cache hit from the stored entry. Only the status line, the per-hit lines
// (Age and X-Cache change) and the framing are composed here, into the session's
// reused `head` buffer; the stored header block and the body go out as they are.
net::awaitable<error_code> write_hit(beast::tcp_stream& stream, const reply& r, bool keep_alive, std::string& head,
                                     config::duration idle) {
    const auto& e = *r.hit;
    head.clear();
    head += "HTTP/1.1 ";
    head += std::to_string(e.status);
    head += ' ';
    const auto reason = bh::obsolete_reason(static_cast<bh::status>(e.status));
    head.append(reason.data(), reason.size());
    head += "\r\n";
    const auto stored = e.headers.wire();
    head += "X-Cache: ";
    head += r.hit_meta.x_cache;
    head += "\r\nX-Cache-Tier: ";
    head += r.hit_meta.tier;
    head += "\r\nAge: ";
    head += std::to_string(std::max<std::int64_t>(0, r.hit_meta.age_seconds));
    head += "\r\nVia: 1.1 cachecar\r\n";
    if (e.status != 204 && e.status != 304) {
        head += "Content-Length: ";
        head += std::to_string(e.body.size());
        head += "\r\n";
    }
    if (!keep_alive) head += "Connection: close\r\n";
    head += "\r\n";
    // Stored fields first, as the origin sent them; then the lines composed above.
    const auto status_end = head.find('\n') + 1;
    std::array<net::const_buffer, 4> buffers{net::buffer(head.data(), status_end), net::buffer(stored),
                                             net::buffer(head.data() + status_end, head.size() - status_end),
                                             r.head_only ? net::const_buffer{} : net::buffer(e.body)};
    const error_code ec = co_await write_with_progress_deadline(stream, buffers, idle);
    co_return ec;
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
        buffer.max_size(limits.max_header_bytes + limits.max_body_bytes + 65536);
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
        if (list_has(parser.get(), "expect", "100-continue")) {
            static const std::string cont = "HTTP/1.1 100 Continue\r\n\r\n";
            co_await net::async_write(s->stream, net::buffer(cont), net::redirect_error(net::use_awaitable, ec));
            if (ec) break;
        }
        // Chunked trailer fields are merged into the field set by the parser, past every
        // check above. They are not header fields (RFC 9110 6.5.1): keep the head's.
        std::optional<bh::request_header<>> head;
        if (parser.get().chunked()) head = parser.get().base();
        if (!parser.is_done()) {
            co_await bh::async_read(s->stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
            if (ec) {
                if (const unsigned status = rejection_status(ec, false); status != 0) {
                    rejected = true;
                    handler_.on_rejected(status);
                    auto res = make_error(status, status == 413 ? "Content Too Large" : "Bad Request",
                                          parser.get().version());
                    co_await bh::async_write(s->stream, res, net::redirect_error(net::use_awaitable, ec));
                }
                break;
            }
        }
        if (head) parser.get().base() = std::move(*head);

        auto started = std::chrono::steady_clock::now();
        request req = parser.release();
        const bool client_keep_alive = req.keep_alive();
        // Handling may wait on the upstream; its own deadline bounds that, so the
        // client-side timer must not fire meanwhile.
        s->stream.expires_never();
        reply r = co_await handler_.handle(req, conn);
        const bool keep = client_keep_alive && !r.close && !draining_;

        if (r.hit) {
            ec = co_await write_hit(s->stream, r, keep, s->head_buffer, limits.client_idle_timeout);
        } else {
            r.message.keep_alive(keep);
            ec = co_await write_with_progress_deadline(s->stream, r.message, limits.client_idle_timeout);
        }
        handler_.on_complete(req, r, conn, std::chrono::steady_clock::now() - started);
        s->busy = false;
        if (ec || !keep) break;
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
