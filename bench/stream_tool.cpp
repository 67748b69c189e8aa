// bench/stream_tool: the streaming origin and clients of bench/stream.sh.
//
//   stream_tool origin PORT
//       GET /sse?n=N&ms=M  a chunked Server-Sent Events stream of N events, M ms apart;
//                          each event carries the CLOCK_MONOTONIC time it was written
//       GET /ws            a WebSocket echo
//   stream_tool sse PORT PATH N       reads one stream; prints the delay of each event
//                                     from its write at the origin (median, p99, max in us)
//   stream_tool ws PORT PATH N BYTES  N sequential echo round trips of BYTES each
//                                     (median, p99, max in us)
//
// Both clients print one line "median_us=.. p99_us=.. max_us=.. n=.." and exit 1 when
// an event or echo is missing or wrong. The origin and the clients run on the same
// machine, so the monotonic clock is shared and a delay is a difference of two reads.
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

namespace net = boost::asio;
namespace beast = boost::beast;
namespace bh = beast::http;
using tcp = net::ip::tcp;

namespace {

long long now_ns() {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

long query_number(std::string_view target, std::string_view name, long fallback) {
    const auto q = target.find('?');
    if (q == std::string_view::npos) return fallback;
    std::string_view rest = target.substr(q + 1);
    while (!rest.empty()) {
        const auto amp = rest.find('&');
        const auto pair = rest.substr(0, amp);
        const auto eq = pair.find('=');
        if (eq != std::string_view::npos && pair.substr(0, eq) == name) return std::atol(std::string(pair.substr(eq + 1)).c_str());
        if (amp == std::string_view::npos) break;
        rest.remove_prefix(amp + 1);
    }
    return fallback;
}

net::awaitable<void> serve_sse(beast::tcp_stream& stream, std::string_view target) {
    const long n = query_number(target, "n", 100);
    const long ms = query_number(target, "ms", 10);
    std::string head = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nCache-Control: no-cache\r\n"
                       "X-Accel-Buffering: no\r\nTransfer-Encoding: chunked\r\n\r\n";
    co_await net::async_write(stream, net::buffer(head), net::use_awaitable);
    net::steady_timer timer(stream.get_executor());
    for (long i = 0; i < n; ++i) {
        timer.expires_after(std::chrono::milliseconds(ms));
        co_await timer.async_wait(net::use_awaitable);
        const std::string event = "data: " + std::to_string(i) + " " + std::to_string(now_ns()) + "\n\n";
        char size[16];
        const int len = std::snprintf(size, sizeof size, "%zx\r\n", event.size());
        const std::string chunk = std::string(size, static_cast<std::size_t>(len)) + event + "\r\n";
        co_await net::async_write(stream, net::buffer(chunk), net::use_awaitable);
    }
    co_await net::async_write(stream, net::buffer(std::string("0\r\n\r\n")), net::use_awaitable);
}

net::awaitable<void> serve(tcp::socket socket) {
    beast::tcp_stream stream(std::move(socket));
    beast::flat_buffer buffer;
    try {
        for (;;) {
            bh::request<bh::string_body> req;
            co_await bh::async_read(stream, buffer, req, net::use_awaitable);
            if (beast::websocket::is_upgrade(req)) {
                beast::websocket::stream<beast::tcp_stream> ws(std::move(stream));
                co_await ws.async_accept(req, net::use_awaitable);
                beast::flat_buffer msg;
                for (;;) {
                    co_await ws.async_read(msg, net::use_awaitable);
                    ws.binary(!ws.got_text());
                    co_await ws.async_write(msg.data(), net::use_awaitable);
                    msg.consume(msg.size());
                }
            }
            if (req.target().starts_with("/sse")) {
                co_await serve_sse(stream, req.target());
                if (!req.keep_alive()) co_return;
                continue;
            }
            bh::response<bh::string_body> res{bh::status::not_found, 11};
            res.body() = "not found\n";
            res.prepare_payload();
            co_await bh::async_write(stream, res, net::use_awaitable);
        }
    } catch (const std::exception&) {
        // the peer went away
    }
}

net::awaitable<void> accept_loop(tcp::acceptor& acceptor) {
    for (;;) {
        auto socket = co_await acceptor.async_accept(net::use_awaitable);
        socket.set_option(tcp::no_delay(true));
        net::co_spawn(acceptor.get_executor(), serve(std::move(socket)), net::detached);
    }
}

void report(std::vector<double> us) {
    std::sort(us.begin(), us.end());
    const auto at = [&](double q) { return us[std::min(us.size() - 1, static_cast<std::size_t>(q * static_cast<double>(us.size())))]; };
    std::printf("median_us=%.1f p99_us=%.1f max_us=%.1f n=%zu\n", at(0.5), at(0.99), us.back(), us.size());
}

tcp::socket connect(net::io_context& io, unsigned short port) {
    tcp::socket s(io);
    s.connect(tcp::endpoint(net::ip::make_address("127.0.0.1"), port));
    s.set_option(tcp::no_delay(true));
    return s;
}

int sse_client(unsigned short port, const std::string& path, long n) {
    net::io_context io;
    auto s = connect(io, port);
    const std::string req = "GET " + path + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n";
    net::write(s, net::buffer(req));
    std::string data;
    std::vector<double> delays;
    std::size_t scan = 0;
    long next = 0;
    char buf[65536];
    while (next < n) {
        boost::system::error_code ec;
        const auto got = s.read_some(net::buffer(buf), ec);
        const long long t = now_ns();
        if (ec) break;
        data.append(buf, got);
        // Events are "data: I T\n\n"; chunk framing around them is skipped by the search.
        for (auto at = data.find("data: ", scan); at != std::string::npos; at = data.find("data: ", scan)) {
            const auto end = data.find("\n\n", at);
            if (end == std::string::npos) break;
            long i = -1;
            long long sent = 0;
            if (std::sscanf(data.c_str() + at, "data: %ld %lld", &i, &sent) != 2 || i != next) {
                std::fprintf(stderr, "event %ld missing or out of order (got %ld)\n", next, i);
                return 1;
            }
            delays.push_back(static_cast<double>(t - sent) / 1000.0);
            ++next;
            scan = end + 2;
        }
    }
    if (next < n) {
        std::fprintf(stderr, "stream ended after %ld of %ld events\n", next, n);
        return 1;
    }
    report(delays);
    return 0;
}

int ws_client(unsigned short port, const std::string& path, long n, std::size_t bytes) {
    net::io_context io;
    beast::websocket::stream<tcp::socket> ws(connect(io, port));
    ws.handshake("127.0.0.1", path);
    ws.binary(true);
    std::string msg(bytes, 'w');
    std::vector<double> rtts;
    beast::flat_buffer buffer;
    for (long i = 0; i < n; ++i) {
        msg[0] = static_cast<char>('a' + i % 26);
        const long long t0 = now_ns();
        ws.write(net::buffer(msg));
        buffer.consume(buffer.size());
        ws.read(buffer);
        const long long t1 = now_ns();
        if (beast::buffers_to_string(buffer.data()) != msg) {
            std::fprintf(stderr, "echo %ld differs\n", i);
            return 1;
        }
        rtts.push_back(static_cast<double>(t1 - t0) / 1000.0);
    }
    ws.close(beast::websocket::close_code::normal);
    report(rtts);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::vector<std::string> args(argv + 1, argv + argc);
    try {
        if (args.size() == 2 && args[0] == "origin") {
            net::io_context io(1);
            tcp::acceptor acceptor(io, tcp::endpoint(net::ip::make_address("127.0.0.1"),
                                                     static_cast<unsigned short>(std::atoi(args[1].c_str()))));
            net::co_spawn(io, accept_loop(acceptor), net::detached);
            io.run();
            return 0;
        }
        if (args.size() == 4 && args[0] == "sse")
            return sse_client(static_cast<unsigned short>(std::atoi(args[1].c_str())), args[2], std::atol(args[3].c_str()));
        if (args.size() == 5 && args[0] == "ws")
            return ws_client(static_cast<unsigned short>(std::atoi(args[1].c_str())), args[2], std::atol(args[3].c_str()),
                             static_cast<std::size_t>(std::atol(args[4].c_str())));
    } catch (const std::exception& e) {
        std::fprintf(stderr, "stream_tool: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: stream_tool origin PORT | sse PORT PATH N | ws PORT PATH N BYTES\n");
    return 2;
}
