#include <cachecar/http/upstream_pool.hpp>

#include <cachecar/http/request_checks.hpp>

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
    // Bytes that arrived since the answer belong to no request (the backend wrote past
    // its framing): never hand such a connection to the next request.
    if (!looks_reusable(*s)) return;
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

namespace {

// What a response says about its own framing that Beast 1.81 accepts but a proxy must
// not (RFC 9112 6.3; nginx answers all of these 502): Content-Length together with
// Transfer-Encoding, a coding other than a lone "chunked", a status outside 100-599.
std::string_view response_head_problem(const beast::http::response_header<>& h) {
    if (h.result_int() < 100 || h.result_int() > 599) return "status outside 100-599";
    const auto te = line_count(h, "transfer-encoding");
    if (te > 0 && line_count(h, "content-length") > 0) return "Content-Length with Transfer-Encoding";
    if (te > 1 || (te == 1 && !util::iequals(trim(*single_value(h, "transfer-encoding")), "chunked")))
        return "Transfer-Encoding other than chunked";
    return {};
}

// Interim responses accepted before the final one; more is a backend stalling us.
constexpr int max_interim_responses = 8;

}  // namespace

net::awaitable<result<response>> upstream_pool::exchange(beast::tcp_stream& s, const request& req,
                                                          std::chrono::steady_clock::time_point deadline,
                                                          bool& got_bytes, bool& reusable) {
    error_code ec;
    s.expires_at(deadline);
    co_await beast::http::async_write(s, req, net::redirect_error(net::use_awaitable, ec));
    if (ec) co_return ec == beast::error::timeout ? make_error_code(upstream_error::timeout) : ec;

    beast::flat_buffer buffer;
    bool interim_seen = false;
    for (int interim = 0;; ++interim) {
        // The whole head first, so its raw bytes can be checked: Beast tolerates obs-fold
        // and bare line ends, which a client behind us would read as more fields.
        for (;;) {
            const std::string_view seen(static_cast<const char*>(buffer.data().data()), buffer.size());
            if (const auto end = seen.find("\r\n\r\n"); end != std::string_view::npos) {
                if (!raw_head_problem(seen.substr(0, end + 4)).empty()) co_return make_error_code(upstream_error::bad_response);
                break;
            }
            if (buffer.size() >= max_response_head_bytes) co_return make_error_code(upstream_error::bad_response);
            const auto n = co_await s.async_read_some(buffer.prepare(std::min<std::size_t>(16384, max_response_head_bytes - buffer.size())),
                                                      net::redirect_error(net::use_awaitable, ec));
            buffer.commit(n);
            if (n > 0) got_bytes = true;
            if (ec) {
                if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
                co_return buffer.size() > 0 ? make_error_code(upstream_error::bad_response) : ec;
            }
        }
        beast::http::response_parser<beast::http::string_body> parser;
        parser.header_limit(static_cast<std::uint32_t>(max_response_head_bytes));
        parser.body_limit(options_.max_response_bytes);
        if (req.method() == beast::http::verb::head) parser.skip(true);
        co_await beast::http::async_read_header(s, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (!ec && !response_head_problem(parser.get()).empty()) co_return make_error_code(upstream_error::bad_response);
        const auto status = parser.get().result_int();
        if (!ec && status == 101) {
            // cachecar never asks for an upgrade: the bytes after an unsolicited 101 are
            // not HTTP, and must never be read as the answer.
            co_return make_error_code(upstream_error::bad_response);
        }
        if (!ec && !parser.is_done()) co_await beast::http::async_read(s, buffer, parser, net::redirect_error(net::use_awaitable, ec));
        if (ec) {
            if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
            // Parse errors and limit breaches mean the backend spoke nonsense (or too
            // much); end_of_stream and socket errors mean the connection went away.
            const bool protocol = ec.category() == error_code(beast::http::error::bad_target).category() &&
                                  ec != beast::http::error::end_of_stream;
            co_return protocol ? make_error_code(upstream_error::bad_response) : ec;
        }
        auto res = parser.release();
        if (status >= 100 && status < 200) {
            interim_seen = true;
            if (interim + 1 > max_interim_responses) co_return make_error_code(upstream_error::bad_response);
            continue;
        }
        // A connection is reused only when nothing can follow this answer that belongs to
        // no request: bytes past its framing already read, or a body the backend may
        // still send after a HEAD, 204 or 304 answer, or after interim responses (a
        // reused connection would take those bytes as the next request's answer).
        reusable = res.keep_alive() && !res.need_eof() && buffer.size() == 0 && !interim_seen &&
                   req.method() != beast::http::verb::head && status != 204 && status != 304;
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
    bool reusable = false;
    out.res = co_await exchange(stream, req, deadline, out.got_bytes, reusable);
    if (out.res && reusable) {
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
