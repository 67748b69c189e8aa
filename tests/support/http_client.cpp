#include "support/http_client.hpp"

#include <cachecar/net.hpp>

#include <limits>
#include <optional>

namespace cachecar::test {

namespace bh = beast::http;

namespace {

client_response convert(bh::response<bh::string_body>& res) {
    client_response out;
    out.status = res.result_int();
    for (const auto& f : res) {
        std::string name(f.name_string());
        for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
        auto& slot = out.headers[name];
        slot = slot.empty() ? std::string(f.value()) : slot + ", " + std::string(f.value());
    }
    out.body = std::move(res.body());
    return out;
}

bh::request<bh::string_body> build(const std::string& method, const std::string& target, const header_list& headers,
                                   const std::string& body) {
    bh::request<bh::string_body> req;
    req.method_string(method);
    req.target(target);
    req.version(11);
    req.set(bh::field::host, "127.0.0.1");
    for (const auto& [k, v] : headers) req.insert(k, v);
    req.body() = body;
    if (!body.empty() || method == "POST" || method == "PUT") req.prepare_payload();
    return req;
}

// Writes `req` and reads one response on a connected stream (its deadline already
// set). Returns nullopt if either step failed. Shared by sessions and one-shot calls.
net::awaitable<std::optional<bh::response<bh::string_body>>> exchange(beast::tcp_stream& stream,
                                                                       beast::flat_buffer& buffer,
                                                                       const bh::request<bh::string_body>& req) {
    error_code ec;
    co_await bh::async_write(stream, req, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return std::nullopt;
    // Interim responses (100, 103) come before the answer; a client skips them.
    for (;;) {
        bh::response_parser<bh::string_body> parser;
        parser.body_limit(256u * 1024u * 1024u);
        if (req.method() == bh::verb::head) parser.skip(true);
        co_await bh::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) co_return std::nullopt;
        const auto status = parser.get().result_int();
        if (status >= 100 && status < 200 && status != 101) continue;
        co_return parser.release();
    }
}

}  // namespace

struct http_session::impl {
    net::io_context io;
    beast::tcp_stream stream{io};
    beast::flat_buffer buffer;
    bool open = false;
};

http_session::http_session(std::uint16_t port) : impl_(std::make_unique<impl>()) {
    error_code ec;
    impl_->stream.expires_after(std::chrono::seconds(10));
    impl_->stream.connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port), ec);
    impl_->open = !ec;
}

http_session::~http_session() = default;

bool http_session::is_open() const { return impl_->open; }

client_response http_session::request(const std::string& method, const std::string& target,
                                      const header_list& headers, const std::string& body) {
    if (!impl_->open) return {};
    auto req = build(method, target, headers, body);
    req.keep_alive(true);
    client_response out;
    // Run the exchange asynchronously so the stream's deadline applies.
    net::co_spawn(
        impl_->io,
        [&]() -> net::awaitable<void> {
            impl_->stream.expires_after(std::chrono::seconds(10));
            auto res = co_await exchange(impl_->stream, impl_->buffer, req);
            if (!res || !res->keep_alive()) impl_->open = false;
            if (res) out = convert(*res);
        },
        net::detached);
    impl_->io.restart();
    impl_->io.run();
    return out;
}

client_response http_request(std::uint16_t port, const std::string& method, const std::string& target,
                             const header_list& headers, const std::string& body, std::chrono::milliseconds timeout) {
    net::io_context io;
    beast::tcp_stream stream(io);
    auto req = build(method, target, headers, body);
    req.keep_alive(false);
    client_response out;
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
            error_code ec;
            stream.expires_after(timeout);
            co_await stream.async_connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
                                          net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            beast::flat_buffer buffer;
            auto res = co_await exchange(stream, buffer, req);
            if (res) out = convert(*res);
        },
        net::detached);
    io.run();
    return out;
}

client_response raw_request(std::uint16_t port, const std::string& bytes, bool head, std::chrono::milliseconds timeout) {
    net::io_context io;
    beast::tcp_stream stream(io);
    client_response out;
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
            error_code ec;
            stream.expires_after(timeout);
            co_await stream.async_connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
                                          net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            co_await net::async_write(stream, net::buffer(bytes), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            beast::flat_buffer buffer;
            for (;;) {  // interim responses (100, 103) first, skipped as a client does
                bh::response_parser<bh::string_body> parser;
                parser.body_limit(256u * 1024u * 1024u);
                if (head) parser.skip(true);
                co_await bh::async_read(stream, buffer, parser, net::redirect_error(net::use_awaitable, ec));
                if (ec) co_return;
                const auto status = parser.get().result_int();
                if (status >= 100 && status < 200 && status != 101) continue;
                auto res = parser.release();
                out = convert(res);
                break;
            }
        },
        net::detached);
    io.run();
    return out;
}

namespace {

// Connects, sends `bytes` and reads until `read_limit` bytes have arrived, the peer
// closes or `timeout` passes; then closes, abortively (RST) with `reset`.
std::string send_then_read(std::uint16_t port, const std::string& bytes, std::size_t read_limit, bool reset,
                           std::chrono::milliseconds timeout) {
    net::io_context io;
    beast::tcp_stream stream(io);
    std::string received;
    net::co_spawn(
        io,
        [&]() -> net::awaitable<void> {
            error_code ec;
            stream.expires_after(timeout);
            co_await stream.async_connect(net::ip::tcp::endpoint(net::ip::make_address("127.0.0.1"), port),
                                          net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            co_await net::async_write(stream, net::buffer(bytes), net::redirect_error(net::use_awaitable, ec));
            char chunk[4096];
            while (!ec && received.size() < read_limit) {
                const auto want = std::min(sizeof chunk, read_limit - received.size());
                auto n = co_await stream.async_read_some(net::buffer(chunk, want), net::redirect_error(net::use_awaitable, ec));
                received.append(chunk, n);
            }
        },
        net::detached);
    io.run();
    error_code ignored;
    if (reset) stream.socket().set_option(net::socket_base::linger(true, 0), ignored);
    stream.socket().close(ignored);
    return received;
}

}  // namespace

std::string raw_exchange(std::uint16_t port, const std::string& bytes, std::chrono::milliseconds timeout) {
    return send_then_read(port, bytes, std::numeric_limits<std::size_t>::max(), false, timeout);
}

std::string send_and_abort(std::uint16_t port, const std::string& bytes, std::size_t read_bytes, bool reset,
                           std::chrono::milliseconds timeout) {
    return send_then_read(port, bytes, read_bytes, reset, timeout);
}

}  // namespace cachecar::test
