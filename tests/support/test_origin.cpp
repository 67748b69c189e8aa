#include "support/test_origin.hpp"

#include <cachecar/net.hpp>

#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <system_error>
#include <thread>

namespace cachecar::test {

namespace bh = beast::http;

namespace {

// The head of a response, for faults that write the message by hand.
std::string raw_head(const origin_response& out, std::size_t content_length) {
    std::string head = "HTTP/1.1 " + std::to_string(out.status) + " " +
                       std::string(bh::obsolete_reason(static_cast<bh::status>(out.status))) + "\r\n";
    head += "Content-Type: text/plain\r\nContent-Length: " + std::to_string(content_length) + "\r\n";
    for (const auto& [k, v] : out.headers) head += k + ": " + v + "\r\n";
    return head + "\r\n";
}

// "Name: value" lines of a raw head, in the order they arrived (OWS trimmed).
std::vector<std::pair<std::string, std::string>> head_lines(const std::string& raw) {
    std::vector<std::pair<std::string, std::string>> out;
    const auto end = raw.find("\r\n\r\n");
    std::size_t at = raw.find("\r\n");
    while (at != std::string::npos && at < end) {
        const auto next = raw.find("\r\n", at + 2);
        const std::string line = raw.substr(at + 2, next - at - 2);
        at = next;
        const auto colon = line.find(':');
        if (colon == std::string::npos) continue;
        auto value = line.substr(colon + 1);
        while (!value.empty() && (value.front() == ' ' || value.front() == '\t')) value.erase(0, 1);
        while (!value.empty() && (value.back() == ' ' || value.back() == '\t')) value.pop_back();
        out.emplace_back(line.substr(0, colon), value);
    }
    return out;
}

}  // namespace

struct test_origin::impl {
    net::io_context io{2};
    // Keeps io.run() going while nothing listens (between stop() and restart()).
    net::executor_work_guard<net::io_context::executor_type> work{io.get_executor()};
    // On a strand: stop() and restart() close and reopen it from the test's thread.
    net::ip::tcp::acceptor acceptor{net::make_strand(io)};
    std::uint16_t port = 0;
    std::vector<std::thread> threads;
    mutable std::mutex mutex;
    handler h;
    std::vector<origin_request> seen;
    std::vector<std::weak_ptr<beast::tcp_stream>> connections;  // guarded by mutex
    std::atomic<std::size_t> sequence{0};
    std::atomic<std::size_t> record_limit{16u << 20};
    std::atomic<std::size_t> active_requests{0};
    std::atomic<std::uint64_t> received_body_bytes{0};
    std::atomic<bool> hold_bodies{false};
    std::size_t connection_count = 0;  // accept loop only

    // Runs `f` on `ex` and waits for it; rethrows what it threw.
    template <class F>
    static void run_on(const net::any_io_executor& ex, F f) {
        std::promise<void> done;
        net::post(ex, [&] {
            try {
                f();
                done.set_value();
            } catch (...) {
                done.set_exception(std::current_exception());
            }
        });
        done.get_future().get();
    }

    void listen() {
        run_on(acceptor.get_executor(), [this] {
            net::ip::tcp::endpoint ep(net::ip::make_address("127.0.0.1"), port);
            error_code ec;
            acceptor.open(ep.protocol(), ec);
            if (!ec) acceptor.set_option(net::socket_base::reuse_address(true), ec);
            if (!ec) acceptor.bind(ep, ec);
            if (!ec) acceptor.listen(net::socket_base::max_listen_connections, ec);
            if (ec) {
                error_code ignored;
                acceptor.close(ignored);
                throw std::system_error(ec, "test_origin: cannot listen on port " + std::to_string(port));
            }
            port = acceptor.local_endpoint().port();
            net::co_spawn(acceptor.get_executor(), accept_loop(), net::detached);
        });
    }

    // Writes `out` by hand, broken as its fault says, and closes the connection.
    static net::awaitable<void> answer_with_fault(beast::tcp_stream& stream, const origin_response& out) {
        error_code ec;
        if (out.fault == origin_fault::raw) {
            co_await net::async_write(stream, net::buffer(out.body), net::redirect_error(net::use_awaitable, ec));
            stream.socket().shutdown(net::ip::tcp::socket::shutdown_send, ec);
        } else {
            const auto partial = raw_head(out, out.body.size()) + out.body.substr(0, out.body.size() / 2);
            co_await net::async_write(stream, net::buffer(partial), net::redirect_error(net::use_awaitable, ec));
            stream.socket().set_option(net::socket_base::linger(true, 0), ec);
        }
        stream.socket().close(ec);
    }

    // Reads one request, keeping the exact bytes it was made of (the body only up to
    // `record`; the rest is counted). The parser is fed by hand (put) so that what it
    // consumed is known; bytes past the request stay in `pending` for the next one.
    // False: the connection ended or sent garbage.
    static net::awaitable<bool> read_request(beast::tcp_stream& stream, std::string& pending,
                                             bh::request_parser<bh::buffer_body>& parser, origin_request& r,
                                             std::size_t record, std::atomic<std::uint64_t>& received,
                                             const std::atomic<bool>& hold) {
        parser.header_limit(1u << 20);
        parser.body_limit(boost::none);
        parser.eager(true);
        std::vector<char> scratch(65536);
        error_code ec;
        for (;;) {
            if (!pending.empty()) {
                auto& b = parser.get().body();
                b.data = scratch.data();
                b.size = scratch.size();
                const bool head_done = parser.is_header_done();
                const auto used = parser.put(net::buffer(pending), ec);
                const std::size_t got = scratch.size() - b.size;
                if (!head_done || r.raw.size() < record) r.raw.append(pending, 0, used);
                pending.erase(0, used);
                r.body_bytes += got;
                received += got;
                if (r.body.size() < record) r.body.append(scratch.data(), std::min(got, record - r.body.size()));
                if (ec == bh::error::need_buffer || ec == bh::error::need_more) {
                    ec = {};
                } else if (ec) {
                    co_return false;
                }
                if (parser.is_done()) co_return true;
                if (used > 0 && !pending.empty()) continue;
            }
            while (hold && parser.is_header_done()) {
                net::steady_timer t(stream.get_executor(), std::chrono::milliseconds(5));
                co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
            }
            char chunk[65536];
            stream.expires_after(std::chrono::seconds(30));
            const auto n = co_await stream.async_read_some(net::buffer(chunk), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return false;
            pending.append(chunk, n);
        }
    }

    // The streaming answers of origin_response: chunked parts behind a gate, a generated
    // body, trailers. False: the connection must close.
    static net::awaitable<bool> answer_streaming(beast::tcp_stream& stream, const origin_response& out,
                                                 const bh::request<bh::empty_body>& req) {
        error_code ec;
        std::string head = "HTTP/1.1 " + std::to_string(out.status) + " " +
                           std::string(bh::obsolete_reason(static_cast<bh::status>(out.status))) + "\r\n";
        bool has_type = false;
        for (const auto& [k, v] : out.headers) {
            head += k + ": " + v + "\r\n";
            has_type = has_type || beast::iequals(k, "content-type");
        }
        if (!has_type) head += "Content-Type: text/plain\r\n";
        if (!out.parts.empty()) {
            head += "Transfer-Encoding: chunked\r\n\r\n";
            co_await net::async_write(stream, net::buffer(head), net::redirect_error(net::use_awaitable, ec));
            for (std::size_t i = 0; i < out.parts.size() && !ec; ++i) {
                if (i > 0 && out.gate) {
                    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
                    while (!out.gate(i)) {
                        if (std::chrono::steady_clock::now() > deadline) co_return false;  // the client never got part i-1
                        net::steady_timer t(stream.get_executor(), std::chrono::milliseconds(1));
                        co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
                    }
                }
                char size[32];
                const auto n = std::snprintf(size, sizeof size, "%zx\r\n", out.parts[i].size());
                std::array<net::const_buffer, 3> chunk{net::buffer(size, static_cast<std::size_t>(n)), net::buffer(out.parts[i]),
                                                       net::buffer("\r\n", 2)};
                stream.expires_after(std::chrono::seconds(30));
                co_await net::async_write(stream, chunk, net::redirect_error(net::use_awaitable, ec));
            }
            const std::string last = "0\r\n" + out.trailers + "\r\n";
            if (!ec) co_await net::async_write(stream, net::buffer(last), net::redirect_error(net::use_awaitable, ec));
        } else {
            head += "Content-Length: " + std::to_string(out.generated_bytes) + "\r\n\r\n";
            co_await net::async_write(stream, net::buffer(head), net::redirect_error(net::use_awaitable, ec));
            if (req.method() != bh::verb::head) {
                std::vector<char> piece(65536);
                for (std::uint64_t sent = 0; sent < out.generated_bytes && !ec;) {
                    const auto n = static_cast<std::size_t>(std::min<std::uint64_t>(piece.size(), out.generated_bytes - sent));
                    for (std::size_t k = 0; k < n; ++k) piece[k] = generated_byte(sent + k);
                    stream.expires_after(std::chrono::seconds(60));
                    co_await net::async_write(stream, net::buffer(piece.data(), n), net::redirect_error(net::use_awaitable, ec));
                    sent += n;
                }
            }
        }
        co_return !ec;
    }

    // Accepts the WebSocket upgrade of `req` and echoes messages until either side closes.
    static net::awaitable<void> echo_websocket(beast::tcp_stream& stream, bh::request<bh::string_body> req) {
        beast::websocket::stream<beast::tcp_stream&> ws(stream);
        error_code ec;
        stream.expires_never();
        co_await ws.async_accept(req, net::redirect_error(net::use_awaitable, ec));
        beast::flat_buffer buffer;
        while (!ec) {
            co_await ws.async_read(buffer, net::redirect_error(net::use_awaitable, ec));
            if (ec) break;
            ws.text(ws.got_text());
            co_await ws.async_write(buffer.data(), net::redirect_error(net::use_awaitable, ec));
            buffer.consume(buffer.size());
        }
    }

    net::awaitable<void> serve(net::ip::tcp::socket sock, std::size_t connection_no) {
        auto owned = std::make_shared<beast::tcp_stream>(std::move(sock));
        {
            std::lock_guard lock(mutex);
            std::erase_if(connections, [](const auto& w) { return w.expired(); });
            connections.push_back(owned);
        }
        auto& stream = *owned;
        std::string pending;
        for (;;) {
            bh::request_parser<bh::buffer_body> parser;
            origin_request r;
            ++active_requests;
            struct done_counting {
                std::atomic<std::size_t>& n;
                ~done_counting() { --n; }
            } counting{active_requests};
            if (!co_await read_request(stream, pending, parser, r, record_limit.load(), received_body_bytes, hold_bodies)) co_return;
            bh::request<bh::empty_body> req{parser.get().base()};
            r.method = std::string(req.method_string());
            r.target = std::string(req.target());
            r.connection = connection_no;
            // Field lines in true arrival order come from the raw head (Beast's field
            // list groups lines of one name together); the parsed fields that are not
            // among them are the chunked trailer fields.
            r.fields = head_lines(r.raw);
            for (const auto& [name, value] : r.fields) {
                std::string lower_name = name;
                for (auto& c : lower_name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                auto& slot = r.headers[lower_name];
                slot = slot.empty() ? value : slot + ", " + value;
            }
            auto unmatched = r.fields;
            for (const auto& f : req) {
                std::pair<std::string, std::string> line{std::string(f.name_string()), std::string(f.value())};
                auto it = std::find(unmatched.begin(), unmatched.end(), line);
                if (it != unmatched.end()) {
                    unmatched.erase(it);
                } else {
                    r.trailers.push_back(std::move(line));
                }
            }
            handler current;
            {
                std::lock_guard lock(mutex);
                seen.push_back(r);
                current = h;
            }
            const auto n = ++sequence;
            origin_response out = current ? current(r, n)
                                          : origin_response{200, {}, r.method + " " + r.target + " #" + std::to_string(n)};
            error_code ec;
            if (out.delay.count() > 0) {
                net::steady_timer t(stream.get_executor(), out.delay);
                co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
            }
            if (out.fault == origin_fault::raw || out.fault == origin_fault::reset_mid_body) {
                co_await answer_with_fault(stream, out);
                co_return;
            }
            if (out.websocket_echo) {
                bh::request<bh::string_body> upgrade{req.base()};
                co_await echo_websocket(stream, std::move(upgrade));
                co_return;
            }
            if (!out.parts.empty() || out.generated_bytes > 0) {
                if (!co_await answer_streaming(stream, out, req)) {
                    error_code ignored;
                    stream.socket().close(ignored);
                    co_return;
                }
            } else if (out.fault == origin_fault::raw_keep_open) {
                co_await net::async_write(stream, net::buffer(out.body), net::redirect_error(net::use_awaitable, ec));
            } else {
                bh::response<bh::string_body> res{static_cast<bh::status>(out.status), 11};
                res.set(bh::field::content_type, "text/plain");
                for (const auto& [k, v] : out.headers) res.insert(k, v);
                res.body() = out.body;
                res.keep_alive(req.keep_alive());
                if (req.method() == bh::verb::head) {
                    res.content_length(out.body.size());
                    bh::response_serializer<bh::string_body> sr{res};
                    sr.split(true);
                    co_await bh::async_write_header(stream, sr, net::redirect_error(net::use_awaitable, ec));
                } else {
                    res.prepare_payload();
                    co_await bh::async_write(stream, res, net::redirect_error(net::use_awaitable, ec));
                }
            }
            if (ec) co_return;
            if (!out.late_bytes.empty()) {
                // Bytes that belong to no request, a while after the answer (desync).
                net::steady_timer t(stream.get_executor(), out.late_delay);
                co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
                co_await net::async_write(stream, net::buffer(out.late_bytes), net::redirect_error(net::use_awaitable, ec));
                if (ec) co_return;
            } else if (!req.keep_alive() && out.fault != origin_fault::raw_keep_open) {
                co_return;
            }
        }
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            error_code ec;
            auto sock = co_await acceptor.async_accept(net::make_strand(io), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            auto ex = sock.get_executor();
            net::co_spawn(ex, serve(std::move(sock), ++connection_count), net::detached);
        }
    }
};

test_origin::test_origin() : impl_(std::make_unique<impl>()) {
    for (int i = 0; i < 2; ++i) impl_->threads.emplace_back([this] { impl_->io.run(); });
    impl_->listen();
}

test_origin::~test_origin() {
    impl_->io.stop();
    for (auto& t : impl_->threads) t.join();
}

void test_origin::stop() {
    impl::run_on(impl_->acceptor.get_executor(), [this] {
        error_code ignored;
        impl_->acceptor.close(ignored);
    });
    std::vector<std::shared_ptr<beast::tcp_stream>> open;
    {
        std::lock_guard lock(impl_->mutex);
        for (auto& w : impl_->connections) {
            if (auto c = w.lock()) open.push_back(std::move(c));
        }
        impl_->connections.clear();
    }
    // Each connection is closed on its own strand (streams are not thread-safe).
    for (auto& c : open) {
        impl::run_on(c->get_executor(), [&c] {
            error_code ignored;
            c->socket().close(ignored);
        });
    }
}

void test_origin::restart() {
    stop();
    impl_->listen();
}

std::uint16_t test_origin::port() const { return impl_->port; }

void test_origin::set_handler(handler h) {
    std::lock_guard lock(impl_->mutex);
    impl_->h = std::move(h);
}

std::size_t test_origin::count() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->seen.size();
}

std::size_t test_origin::count(const std::string& prefix) const {
    std::lock_guard lock(impl_->mutex);
    std::size_t n = 0;
    for (const auto& r : impl_->seen) n += r.target.rfind(prefix, 0) == 0 ? 1 : 0;
    return n;
}

std::vector<origin_request> test_origin::requests() const {
    std::lock_guard lock(impl_->mutex);
    return impl_->seen;
}

void test_origin::set_record_limit(std::size_t bytes) { impl_->record_limit = bytes; }

std::size_t test_origin::active() const { return impl_->active_requests.load(); }

std::uint64_t test_origin::body_bytes_received() const { return impl_->received_body_bytes.load(); }

void test_origin::hold_request_bodies(bool hold) { impl_->hold_bodies = hold; }

void test_origin::reset_counts() {
    std::lock_guard lock(impl_->mutex);
    impl_->seen.clear();
}

std::function<origin_response(const origin_request&, std::size_t)> slow_revalidation_origin(
    std::atomic<bool>& conditional_seen, std::chrono::milliseconds delay) {
    return [&conditional_seen, delay](const origin_request& r, std::size_t n) {
        if (r.method == "POST") return origin_response{200, {}, "written"};
        if (r.headers.count("if-none-match")) {
            conditional_seen = true;
            return origin_response{304, {{"Cache-Control", "max-age=600"}}, "", delay};
        }
        return origin_response{200, {{"ETag", "\"p\""}, {"Cache-Control", "no-cache"}}, "read #" + std::to_string(n)};
    };
}

}  // namespace cachecar::test
