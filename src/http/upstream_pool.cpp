#include <cachecar/http/upstream_pool.hpp>

#include <spdlog/spdlog.h>

#include <sys/socket.h>

namespace cachecar::http {

namespace {

// boost::system::error_category has a protected non-virtual destructor by design
// (categories are singletons that are never deleted through a base pointer).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class upstream_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "cachecar.upstream"; }
    std::string message(int ev) const override {
        switch (static_cast<upstream_error>(ev)) {
        case upstream_error::connect_failed: return "cannot connect to upstream";
        case upstream_error::timeout: return "upstream timed out";
        case upstream_error::io_failed: return "upstream connection failed";
        case upstream_error::bad_response: return "invalid upstream response";
        case upstream_error::shutting_down: return "shutting down";
        }
        return "upstream error";
    }
};
#pragma GCC diagnostic pop

// A pooled socket the peer has closed (or that holds unsolicited bytes) must not be
// reused: writing a request to it would fail or mix responses.
bool looks_reusable(beast::tcp_stream& s) {
    auto& sock = s.socket();
    if (!sock.is_open()) return false;
    char byte;
    auto n = ::recv(sock.native_handle(), &byte, 1, MSG_PEEK | MSG_DONTWAIT);
    if (n == 0) return false;                                          // orderly close
    if (n > 0) return false;                                           // unexpected data
    return errno == EAGAIN || errno == EWOULDBLOCK;
}

}  // namespace

const boost::system::error_category& upstream_category() {
    static const upstream_category_impl instance;
    return instance;
}

error_code make_error_code(upstream_error e) { return {static_cast<int>(e), upstream_category()}; }

upstream_pool::upstream_pool(net::any_io_executor ex, upstream_options options)
    : executor_(std::move(ex)), options_(std::move(options)) {}

upstream_pool::~upstream_pool() = default;

std::unique_ptr<beast::tcp_stream> upstream_pool::take_idle() {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    while (!idle_.empty()) {
        auto [stream, since] = std::move(idle_.back());
        idle_.pop_back();
        if (now - since < options_.max_idle_age && looks_reusable(*stream)) return std::move(stream);
    }
    return nullptr;
}

void upstream_pool::give_back(std::unique_ptr<beast::tcp_stream> s) {
    const auto now = std::chrono::steady_clock::now();
    std::lock_guard lock(mutex_);
    // take_idle() reuses the most recent connection, so after a burst the older ones sit
    // at the front untouched while steady traffic cycles a few at the back. Close those
    // past max_idle_age here: they would never be used, and once the backend closes its
    // side each would hold a descriptor in CLOSE-WAIT (up to max_idle_connections).
    while (!idle_.empty() && now - idle_.front().second >= options_.max_idle_age) idle_.pop_front();
    if (idle_.size() >= options_.max_idle_connections) return;  // closes it
    idle_.emplace_back(std::move(s), now);
}

void upstream_pool::close_idle() {
    std::lock_guard lock(mutex_);
    idle_.clear();
}

std::size_t upstream_pool::idle_count() const {
    std::lock_guard lock(mutex_);
    return idle_.size();
}

net::awaitable<result<response>> upstream_pool::exchange(beast::tcp_stream& s, const request& req,
                                                          std::chrono::steady_clock::time_point deadline,
                                                          bool& got_bytes) {
    error_code ec;
    s.expires_at(deadline);
    co_await beast::http::async_write(s, req, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return ec == beast::error::timeout ? make_error_code(upstream_error::timeout) : ec;

    beast::flat_buffer buffer;
    // Interim 1xx responses (other than 101, which we never ask for) are skipped.
    for (;;) {
        beast::http::response_parser<beast::http::string_body> parser;
        parser.header_limit(64 * 1024);
        parser.body_limit(options_.max_response_bytes);
        if (req.method() == beast::http::verb::head) parser.skip(true);
        co_await beast::http::async_read(s, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (buffer.size() > 0 || parser.got_some()) got_bytes = true;
        if (ec) {
            if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
            // Parse errors and limit breaches mean the backend spoke nonsense (or too
            // much); end_of_stream and socket errors mean the connection went away.
            const bool protocol = ec.category() == error_code(beast::http::error::bad_target).category() &&
                                  ec != beast::http::error::end_of_stream;
            co_return protocol ? make_error_code(upstream_error::bad_response) : ec;
        }
        auto res = parser.release();
        if (res.result_int() >= 100 && res.result_int() < 200) continue;
        co_return res;
    }
}

net::awaitable<upstream_pool::attempt_outcome> upstream_pool::attempt(beast::tcp_stream& stream, const request& req,
                                                                     std::chrono::steady_clock::time_point deadline,
                                                                     bool fresh) {
    attempt_outcome out;
    if (fresh) {
        error_code ec;
        net::ip::tcp::resolver resolver(stream.get_executor());
        stream.expires_at(deadline);
        auto endpoints = co_await resolver.async_resolve(options_.target.host, std::to_string(options_.target.port),
                                                         net::redirect_error(net::use_awaitable, ec));
        if (!ec) co_await stream.async_connect(endpoints, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            out.res = make_error_code(ec == beast::error::timeout ? upstream_error::timeout : upstream_error::connect_failed);
            co_return out;
        }
        stream.socket().set_option(net::ip::tcp::no_delay(true), ec);
    }
    out.res = co_await exchange(stream, req, deadline, out.got_bytes);
    if (out.res && out.res->keep_alive() && !out.res->need_eof()) {
        stream.expires_never();
        out.reusable = true;
    }
    co_return out;
}

net::awaitable<result<response>> upstream_pool::send(request req) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    const bool idempotent = is_idempotent(req.method());

    // A pooled connection may have been closed by the backend while idle; for
    // idempotent requests one failure on a reused connection gets one fresh retry.
    for (int attempt_no = 0; attempt_no < 2; ++attempt_no) {
        auto stream = take_idle();
        const bool reused = stream != nullptr;
        // Each connection lives on its own strand and is only ever used from it:
        // Beast streams are not thread-safe, and pooled connections serve requests
        // from many sessions (each on its own strand) over their lifetime.
        if (!stream) stream = std::make_unique<beast::tcp_stream>(net::make_strand(executor_));
        auto out = co_await net::co_spawn(stream->get_executor(), attempt(*stream, req, deadline, !reused),
                                          net::use_awaitable);
        if (out.res) {
            if (out.reusable) give_back(std::move(stream));
            co_return std::move(out.res);
        }
        const auto err = out.res.error();
        const bool retryable = reused && !out.got_bytes && idempotent && err != make_error_code(upstream_error::timeout);
        if (!retryable) {
            if (err.category() == upstream_category()) co_return err;
            co_return make_error_code(upstream_error::io_failed);
        }
    }
    co_return make_error_code(upstream_error::io_failed);
}

}  // namespace cachecar::http
