#include <cachecar/http/upstream_pool.hpp>

#include <cachecar/cache/entry.hpp>
#include <cachecar/http/request_checks.hpp>

#include <spdlog/spdlog.h>

#include <sys/socket.h>

#include <array>
#include <cstdio>
#include <optional>

namespace cachecar::http {

namespace bh = beast::http;

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
        case upstream_error::too_large: return "upstream response too large";
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

// What a response says about its own framing that Beast 1.81 accepts but a proxy must
// not (RFC 9112 6.3; nginx answers all of these 502): Content-Length together with
// Transfer-Encoding, a coding other than a lone "chunked", a status outside 100-599.
std::string_view response_head_problem(const bh::response_header<>& h) {
    if (h.result_int() < 100 || h.result_int() > 599) return "status outside 100-599";
    const auto te = line_count(h, "transfer-encoding");
    if (te > 0 && line_count(h, "content-length") > 0) return "Content-Length with Transfer-Encoding";
    if (te > 1 || (te == 1 && !util::iequals(trim(*single_value(h, "transfer-encoding")), "chunked")))
        return "Transfer-Encoding other than chunked";
    return {};
}

// Interim responses accepted before the final one; more is a backend stalling us.
constexpr int max_interim_responses = 8;
constexpr std::size_t max_response_head_bytes = 64 * 1024;

// Trailer fields that may be passed on: none that frames, routes, authenticates or
// controls the message (RFC 9110 6.5.1), and none that could not be written back.
bool relayable_trailer(std::string_view name, std::string_view value) {
    for (std::string_view forbidden :
         {"content-length", "transfer-encoding", "host", "connection", "keep-alive", "te", "trailer", "upgrade",
          "proxy-connection", "authorization", "proxy-authenticate", "www-authenticate", "set-cookie", "cache-control",
          "expires", "age", "date", "location", "retry-after", "vary", "content-type", "content-encoding",
          "content-range", "content-location", "etag", "last-modified"}) {
        if (same_field_name(name, forbidden)) return false;
    }
    return cache::header_block::valid(name, value);
}

// Runs `a` on the connection's executor `ex` and resumes the caller on its own. When
// they are the same (one I/O thread: no strands), `a` is awaited in place: a co_spawn
// costs a frame allocation and two hops per call, four times on every miss.
template <class T>
net::awaitable<T> run_on(const net::any_io_executor& ex, net::awaitable<T> a) {
    // (Each co_await in a statement of its own: written as `if (ex == co_await ...)` and
    // `co_return co_await ...`, GCC 12's build of this crashed at run time.)
    const auto current = co_await net::this_coro::executor;
    if (ex == current) {
        auto value = co_await std::move(a);
        co_return value;
    }
    auto value = co_await net::co_spawn(ex, std::move(a), net::use_awaitable);
    co_return value;
}

}  // namespace

const boost::system::error_category& upstream_category() {
    static const upstream_category_impl instance;
    return instance;
}

error_code make_error_code(upstream_error e) { return {static_cast<int>(e), upstream_category()}; }

struct upstream_exchange::impl {
    std::shared_ptr<upstream_pool> pool;  // null for an upgrade's own connection: never pooled
    std::unique_ptr<beast::tcp_stream> stream;
    beast::flat_buffer buffer;
    std::optional<bh::response_parser<bh::buffer_body>> parser;  // of the response being read
    // Where body pieces are read; allocated on the first read from the socket, never
    // zeroed (a small body that came with its head is handed out of `buffer` instead).
    std::unique_ptr<char[]> piece;
    char* piece_buffer() {
        if (!piece) piece.reset(new char[stream_piece_bytes]);  // NOLINT: uninitialised on purpose
        return piece.get();
    }
    std::size_t handed = 0;  // bytes of `buffer` handed out as the last piece, consumed at the next
    config::duration timeout{};
    bool head_request = false;
    bool reusable = false;  // decided by the head: nothing can follow the body
    bool done = false;      // the body was read to its end
    bool upgraded = false;
    bool got_bytes = false;  // some response bytes arrived (so never retry)
    int interims = 0;
    // A body not chunked is read straight from the socket into `piece`, never past its
    // length: one copy and full-sized reads, where the parser would copy each byte twice
    // through `buffer`. `left`: bytes still to come; nullopt: until the backend closes.
    bool raw_body = false;
    std::optional<std::uint64_t> left;

    // Reads the next response head, interim or final, into `parser`. On the stream's executor.
    net::awaitable<error_code> read_head(std::chrono::steady_clock::time_point deadline) {
        error_code ec;
        stream->expires_at(deadline);
        // The whole head first, so its raw bytes can be checked: Beast tolerates obs-fold
        // and bare line ends, which a client behind us would read as more fields.
        for (;;) {
            const std::string_view seen(static_cast<const char*>(buffer.data().data()), buffer.size());
            if (const auto end = seen.find("\r\n\r\n"); end != std::string_view::npos) {
                if (!raw_head_problem(seen.substr(0, end + 4)).empty()) co_return make_error_code(upstream_error::bad_response);
                break;
            }
            if (buffer.size() >= max_response_head_bytes) co_return make_error_code(upstream_error::bad_response);
            const auto n = co_await stream->async_read_some(
                buffer.prepare(std::min<std::size_t>(16384, max_response_head_bytes - buffer.size())),
                net::redirect_error(net::use_awaitable, ec));
            buffer.commit(n);
            if (n > 0) got_bytes = true;
            if (ec) {
                if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
                co_return buffer.size() > 0 ? make_error_code(upstream_error::bad_response) : ec;
            }
        }
        parser.emplace();
        parser->header_limit(static_cast<std::uint32_t>(max_response_head_bytes));
        parser->body_limit(boost::none);
        if (head_request) parser->skip(true);
        // The whole head is in `buffer`: parse it in place (no read can be needed).
        const std::size_t used = parser->put(buffer.data(), ec);
       
        buffer.consume(used);
        if (ec || !parser->is_header_done()) co_return make_error_code(upstream_error::bad_response);
        if (!response_head_problem(parser->get()).empty()) co_return make_error_code(upstream_error::bad_response);
        co_return error_code{};
    }

    // The next body piece, valid until the next call. On the stream's executor.
    net::awaitable<error_code> read_piece(std::string_view& out) {
        buffer.consume(std::exchange(handed, 0));
        // (Not `?:` over two co_awaits: GCC 12 evaluates both operands' awaits.)
        if (raw_body) co_return co_await read_raw_piece(out);
        co_return co_await read_parsed_piece(out);
    }

    // A piece of a Content-Length or close-delimited body: first what the head's read
    // brought along (handed out of `buffer` as it is), then from the socket, never past
    // the body's end.
    net::awaitable<error_code> read_raw_piece(std::string_view& out) {
        const std::size_t want =
            left ? static_cast<std::size_t>(std::min<std::uint64_t>(*left, stream_piece_bytes)) : stream_piece_bytes;
        std::size_t n = 0;
        if (buffer.size() > 0) {
            n = std::min(buffer.size(), want);
            out = {static_cast<const char*>(buffer.data().data()), n};
            handed = n;
        } else {
            error_code ec;
            stream->expires_after(timeout);
            n = co_await stream->async_read_some(net::buffer(piece_buffer(), want), net::redirect_error(net::use_awaitable, ec));
            stream->expires_never();
            if (ec == net::error::eof && !left) {
                done = true;  // a close-delimited body ends with the connection
                out = {};
                co_return error_code{};
            }
            if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
            if (ec) co_return make_error_code(upstream_error::io_failed);  // short of its length, or reset
            out = {piece.get(), n};
        }
        if (left && (*left -= n) == 0) done = true;
        co_return error_code{};
    }

    // A piece of a chunked body, through the parser (chunk framing, trailers).
    net::awaitable<error_code> read_parsed_piece(std::string_view& out) {
        error_code ec;
        std::size_t n = 0;
        buffer.reserve(stream_piece_bytes);  // reads as large as a piece, not the head's 16 KiB
        while (n == 0 && !parser->is_done()) {
            auto& b = parser->get().body();
            b.data = piece_buffer();
            b.size = stream_piece_bytes;
            stream->expires_after(timeout);
            co_await bh::async_read_some(*stream, buffer, *parser, net::redirect_error(net::use_awaitable, ec));
            if (ec == bh::error::need_buffer) ec = {};
            if (ec) {
                if (ec == beast::error::timeout) co_return make_error_code(upstream_error::timeout);
                const bool protocol = ec.category() == error_code(bh::error::bad_target).category() &&
                                      ec != bh::error::end_of_stream && ec != bh::error::partial_message;
                co_return protocol ? make_error_code(upstream_error::bad_response) : make_error_code(upstream_error::io_failed);
            }
            n = stream_piece_bytes - b.size;
        }
        stream->expires_never();
        if (parser->is_done()) done = true;
        out = {piece.get(), n};
        co_return error_code{};
    }
};

upstream_exchange::upstream_exchange(std::unique_ptr<impl> i) : impl_(std::move(i)) {}

upstream_exchange::~upstream_exchange() {
    if (!impl_ || !impl_->stream) return;
    // Back to the pool only when nothing can follow what was read: the body to its
    // end, no bytes past it. Otherwise the connection closes with the exchange.
    impl_->buffer.consume(std::exchange(impl_->handed, 0));
    if (impl_->pool && impl_->done && impl_->reusable && impl_->buffer.size() == 0) {
        impl_->stream->expires_never();
        impl_->pool->give_back(std::move(impl_->stream));
    }
}

bool upstream_exchange::complete() const { return !impl_ || impl_->done; }

std::optional<std::uint64_t> upstream_exchange::size() const {
    if (!has_body_) return 0;
    if (line_count(head_, "transfer-encoding") > 0) return std::nullopt;
    const auto cl = single_value(head_, "content-length");
    if (!cl) return std::nullopt;  // close-delimited
    std::uint64_t n = 0;
    for (char c : trim(*cl)) n = n * 10 + static_cast<std::uint64_t>(c - '0');  // Beast validated it
    return n;
}

net::awaitable<result<std::string_view>> upstream_exchange::next() {
    if (!has_body_ || impl_->done) co_return std::string_view();
    std::string_view piece;
    const error_code ec = co_await run_on(impl_->stream->get_executor(), impl_->read_piece(piece));
    if (ec) {
        error_code ignored;
        impl_->stream->socket().close(ignored);
        co_return ec;
    }
    if (impl_->done && !impl_->raw_body) {
        // The head left the parser when it arrived, so its fields now hold the trailers.
        for (const auto& f : impl_->parser->get()) {
            if (relayable_trailer(f.name_string(), f.value()))
                trailers_.append(f.name_string()).append(": ").append(f.value()).append("\r\n");
        }
    }
    co_return piece;
}

std::unique_ptr<tunnel_end> upstream_exchange::take_tunnel() {
    if (!impl_->upgraded || !impl_->stream) return nullptr;
    auto t = std::make_unique<tunnel_end>(std::move(*impl_->stream));
    t->pending.assign(static_cast<const char*>(impl_->buffer.data().data()), impl_->buffer.size());
    impl_->buffer.consume(impl_->buffer.size());
    impl_->stream.reset();
    return t;
}

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

net::awaitable<result<std::unique_ptr<upstream_exchange>>> upstream_pool::open(request req, body_stream* body,
                                                                               interim_hook on_interim) {
    const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
    const auto caller = co_await net::this_coro::executor;
    const bool upgrade = list_has(req.base(), "connection", "upgrade") && line_count(req.base(), "upgrade") > 0;
    const bool idempotent = is_idempotent(req.method());
    auto* replayable = dynamic_cast<memory_body*>(body);
    if (body != nullptr) {
        req.body().clear();
        if (auto n = body->size()) {
            req.content_length(*n);
        } else {
            req.chunked(true);
        }
    }
    bool body_taken = false;  // a piece of a streamed body has been pulled (it cannot be sent again)

    // A pooled connection may have been closed by the backend while idle; for
    // idempotent requests one failure on a reused connection gets one fresh retry.
    for (int attempt_no = 0; attempt_no < 2; ++attempt_no) {
        auto x = std::make_unique<upstream_exchange::impl>();
        x->timeout = options_.timeout;
        x->head_request = req.method() == bh::verb::head;
        if (!upgrade) {
            x->pool = shared_from_this();
            x->stream = take_idle();
        }
        const bool reused = x->stream != nullptr;
        // Pooled connections live on their own strand when several threads run: Beast
        // streams are not thread-safe, and over their life they serve requests of many
        // sessions (each on its own strand). An upgrade's connection is the caller's
        // alone, on its executor, so a tunnel can splice it with the client from one strand.
        if (!x->stream) {
            const auto ex = upgrade           ? caller
                            : options_.strands ? net::any_io_executor(net::make_strand(executor_))
                                               : executor_;
            x->stream = std::make_unique<beast::tcp_stream>(ex);
        }
        const auto conn_ex = x->stream->get_executor();

        // Connect (a fresh connection) and write the head, and a body held in `req`.
        error_code ec = co_await run_on(conn_ex, [&]() -> net::awaitable<error_code> {
            error_code e;
            auto& s = *x->stream;
            s.expires_at(deadline);
            if (!reused) {
                net::ip::tcp::resolver resolver(s.get_executor());
                auto endpoints = co_await resolver.async_resolve(options_.target.host, std::to_string(options_.target.port),
                                                                 net::redirect_error(net::use_awaitable, e));
                if (!e) co_await s.async_connect(endpoints, net::redirect_error(net::use_awaitable, e));
                if (e) co_return make_error_code(e == beast::error::timeout ? upstream_error::timeout : upstream_error::connect_failed);
                s.socket().set_option(net::ip::tcp::no_delay(true), e);
                e = {};
            }
            if (body != nullptr) {
                bh::request_serializer<bh::string_body> sr{req};
                sr.split(true);
                co_await bh::async_write_header(s, sr, net::redirect_error(net::use_awaitable, e));
            } else {
                co_await bh::async_write(s, req, net::redirect_error(net::use_awaitable, e));
            }
            if (e) co_return e == beast::error::timeout ? make_error_code(upstream_error::timeout) : e;
            co_return error_code{};
        }());

        // Stream the body: each piece is pulled (on the caller's executor, from the client)
        // only after the last one was written (on the connection's).
        if (!ec && body != nullptr) {
            const bool chunked = !body->size();
            std::array<char, 24> size_line{};
            for (;;) {
                auto piece = co_await body->next();
                body_taken = true;
                if (!piece) co_return piece.error();  // the client's body failed (went away, over the limit)
                const bool end = piece->empty();
                error_code we = co_await run_on(conn_ex, [&]() -> net::awaitable<error_code> {
                    error_code e;
                    auto& s = *x->stream;
                    s.expires_after(options_.timeout);
                    if (chunked) {
                        const int len = std::snprintf(size_line.data(), size_line.size(), "%zx\r\n", piece->size());
                        std::array<net::const_buffer, 3> chunk{
                            net::buffer(size_line.data(), static_cast<std::size_t>(len)),
                            net::buffer(piece->data(), piece->size()), net::buffer("\r\n", 2)};
                        co_await net::async_write(s, chunk, net::redirect_error(net::use_awaitable, e));
                    } else if (!end) {
                        co_await net::async_write(s, net::buffer(piece->data(), piece->size()),
                                                  net::redirect_error(net::use_awaitable, e));
                    }
                    co_return e;
                }());
                // The backend may answer (and stop reading) before the whole body is sent:
                // go on to read whatever answer it gave.
                if (we || end) break;
            }
        }

        // The response head; interim ones go to the hook, in order, as they arrive. Its
        // wait starts once the request is sent: a streamed upload may take far longer than
        // upstream_timeout, and the backend answers only after it.
        if (!ec) {
            const auto head_deadline = body != nullptr ? std::chrono::steady_clock::now() + options_.timeout : deadline;
            for (;;) {
                ec = co_await run_on(conn_ex, x->read_head(head_deadline));
                if (ec) break;
                const auto status = x->parser->get().result_int();
                if (status == 101) {
                    // Only ever asked for by an upgrade request; the bytes after an
                    // unsolicited one are not HTTP and must never be read as an answer.
                    if (!upgrade) ec = make_error_code(upstream_error::bad_response);
                    x->upgraded = true;
                    break;
                }
                if (status >= 200) break;
                if (++x->interims > max_interim_responses) {
                    ec = make_error_code(upstream_error::bad_response);
                    break;
                }
                if (on_interim) {
                    bh::response_header<> interim = std::move(x->parser->get().base());
                    co_await on_interim(interim);
                }
            }
        }

        if (!ec) {
            std::unique_ptr<upstream_exchange> out(new upstream_exchange(std::move(x)));
            auto& i = *out->impl_;
            const auto status = i.parser->get().result_int();
            // A connection is reused only when nothing can follow this answer that belongs
            // to no request: a body the backend may still send after a HEAD, 204 or 304
            // answer, or after interim responses (a reused connection would take those
            // bytes as the next request's answer).
            i.reusable = i.parser->keep_alive() && !i.parser->need_eof() && i.interims == 0 && !i.head_request &&
                         status != 204 && status != 304 && !i.upgraded;
            out->has_body_ = !i.head_request && !i.upgraded && status != 204 && status != 304 && !i.parser->is_done();
            if (!out->has_body_) i.done = true;
            i.raw_body = out->has_body_ && !i.parser->chunked();
            if (const auto length = i.parser->content_length(); i.raw_body && length) i.left = *length;
            // The head leaves the parser: trailers, if any, then land in its emptied fields.
            out->head_ = std::move(i.parser->get().base());
            co_return out;
        }
        const bool timed_out = ec == make_error_code(upstream_error::timeout);
        const bool retryable = reused && !x->got_bytes && idempotent && !timed_out && (!body_taken || replayable);
        if (!retryable) {
            if (ec.category() == upstream_category()) co_return ec;
            co_return make_error_code(upstream_error::io_failed);
        }
        if (replayable) replayable->rewind();
        body_taken = false;
    }
    co_return make_error_code(upstream_error::io_failed);
}

net::awaitable<result<response>> upstream_pool::send(request req, std::size_t max_body_bytes) {
    auto opened = co_await open(std::move(req));
    if (!opened) co_return opened.error();
    auto& x = **opened;
    response out{x.head()};
    for (;;) {
        auto piece = co_await x.next();
        if (!piece) co_return piece.error();
        if (piece->empty()) break;
        if (out.body().size() + piece->size() > max_body_bytes) co_return make_error_code(upstream_error::too_large);
        out.body().append(*piece);
    }
    co_return out;
}

}  // namespace cachecar::http
