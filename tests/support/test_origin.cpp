#include "support/test_origin.hpp"

#include <cachecar/net.hpp>

#include <atomic>
#include <thread>

namespace cachecar::test {

namespace bh = beast::http;

struct test_origin::impl {
    net::io_context io{2};
    net::ip::tcp::acceptor acceptor{io};
    std::vector<std::thread> threads;
    mutable std::mutex mutex;
    handler h;
    std::vector<origin_request> seen;
    std::atomic<std::size_t> sequence{0};
    std::atomic<bool> stopped{false};

    net::awaitable<void> serve(net::ip::tcp::socket sock) {
        beast::tcp_stream stream(std::move(sock));
        beast::flat_buffer buffer;
        for (;;) {
            bh::request<bh::string_body> req;
            error_code ec;
            stream.expires_after(std::chrono::seconds(30));
            co_await bh::async_read(stream, buffer, req, net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            origin_request r;
            r.method = std::string(req.method_string());
            r.target = std::string(req.target());
            r.body = req.body();
            for (const auto& f : req) {
                std::string name(f.name_string());
                for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
                auto& slot = r.headers[name];
                slot = slot.empty() ? std::string(f.value()) : slot + ", " + std::string(f.value());
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
            if (out.delay.count() > 0) {
                net::steady_timer t(stream.get_executor(), out.delay);
                co_await t.async_wait(net::redirect_error(net::use_awaitable, ec));
            }
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
            if (ec || !req.keep_alive()) co_return;
        }
    }

    net::awaitable<void> accept_loop() {
        for (;;) {
            error_code ec;
            auto sock = co_await acceptor.async_accept(net::make_strand(io), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            auto ex = sock.get_executor();
            net::co_spawn(ex, serve(std::move(sock)), net::detached);
        }
    }
};

test_origin::test_origin() : impl_(std::make_unique<impl>()) {
    net::ip::tcp::endpoint ep(net::ip::make_address("127.0.0.1"), 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.set_option(net::socket_base::reuse_address(true));
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen();
    net::co_spawn(impl_->io, impl_->accept_loop(), net::detached);
    for (int i = 0; i < 2; ++i) impl_->threads.emplace_back([this] { impl_->io.run(); });
}

test_origin::~test_origin() {
    impl_->io.stop();
    for (auto& t : impl_->threads) t.join();
}

std::uint16_t test_origin::port() const { return impl_->acceptor.local_endpoint().port(); }

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

void test_origin::reset_counts() {
    std::lock_guard lock(impl_->mutex);
    impl_->seen.clear();
}

}  // namespace cachecar::test
