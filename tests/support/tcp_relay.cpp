#include "support/tcp_relay.hpp"

#include <boost/asio.hpp>

#include <list>
#include <mutex>
#include <thread>

namespace cachecar::test {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using boost::system::error_code;

namespace {
enum class mode { pass, frozen, cut };
}

struct tcp_relay::impl {
    asio::io_context io;
    tcp::acceptor acceptor{io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)};
    std::uint16_t target;
    std::atomic<mode> state{mode::pass};
    std::mutex mutex;  // guards links
    struct link {
        tcp::socket client, server;
        explicit link(asio::io_context& io) : client(io), server(io) {}
    };
    std::list<std::shared_ptr<link>> links;
    std::thread thread;

    explicit impl(std::uint16_t t) : target(t) {
        asio::co_spawn(io, accept_loop(), asio::detached);
        thread = std::thread([this] { io.run(); });
    }

    static void reset(tcp::socket& s) {
        error_code ignored;
        if (!s.is_open()) return;
        s.set_option(asio::socket_base::linger(true, 0), ignored);
        s.close(ignored);
    }

    // Waits while frozen (polling: a test fault lasts hundreds of ms, so 2 ms is fine).
    asio::awaitable<void> while_frozen() {
        asio::steady_timer t(co_await asio::this_coro::executor);
        while (state.load() == mode::frozen) {
            t.expires_after(std::chrono::milliseconds(2));
            error_code ec;
            co_await t.async_wait(asio::redirect_error(asio::use_awaitable, ec));
        }
    }

    asio::awaitable<void> pipe(std::shared_ptr<link> l, tcp::socket& from, tcp::socket& to) {
        char buf[16384];
        for (;;) {
            co_await while_frozen();  // a frozen path reads nothing (the sender's buffers fill)
            error_code ec;
            const auto n = co_await from.async_read_some(asio::buffer(buf), asio::redirect_error(asio::use_awaitable, ec));
            if (ec) break;
            co_await while_frozen();  // nor delivers what it already holds
            if (state.load() == mode::cut) break;
            co_await asio::async_write(to, asio::buffer(buf, n), asio::redirect_error(asio::use_awaitable, ec));
            if (ec) break;
        }
        reset(l->client);
        reset(l->server);
    }

    asio::awaitable<void> accept_loop() {
        for (;;) {
            error_code ec;
            auto l = std::make_shared<link>(io);
            co_await acceptor.async_accept(l->client, asio::redirect_error(asio::use_awaitable, ec));
            if (ec) co_return;
            if (state.load() == mode::cut) {
                reset(l->client);
                continue;
            }
            co_await l->server.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), target),
                                             asio::redirect_error(asio::use_awaitable, ec));
            if (ec) {
                reset(l->client);
                continue;
            }
            {
                std::lock_guard lock(mutex);
                links.remove_if([](const std::shared_ptr<link>& x) { return !x->client.is_open(); });
                links.push_back(l);
            }
            asio::co_spawn(io, pipe(l, l->client, l->server), asio::detached);
            asio::co_spawn(io, pipe(l, l->server, l->client), asio::detached);
        }
    }
};

tcp_relay::tcp_relay(std::uint16_t target_port) : impl_(std::make_unique<impl>(target_port)) {}

tcp_relay::~tcp_relay() {
    asio::post(impl_->io, [i = impl_.get()] {
        error_code ignored;
        i->acceptor.close(ignored);
        for (auto& l : i->links) {
            impl::reset(l->client);
            impl::reset(l->server);
        }
    });
    impl_->io.stop();
    impl_->thread.join();
}

std::uint16_t tcp_relay::port() const { return impl_->acceptor.local_endpoint().port(); }

void tcp_relay::freeze() { impl_->state = mode::frozen; }

void tcp_relay::cut() {
    impl_->state = mode::cut;
    asio::post(impl_->io, [i = impl_.get()] {
        std::lock_guard lock(i->mutex);
        for (auto& l : i->links) {
            impl::reset(l->client);
            impl::reset(l->server);
        }
        i->links.clear();
    });
}

void tcp_relay::restore() { impl_->state = mode::pass; }

}  // namespace cachecar::test
