#include <cachecar/cache/redis/redis_client.hpp>
#include <cachecar/logging.hpp>

#include <cachecar/util/one_shot.hpp>

#include <hiredis/hiredis.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <charconv>
#include <deque>
#include <new>

namespace cachecar::cache::redis {

namespace {

using slot_ptr = std::shared_ptr<util::one_shot<result<redis_value>>>;
using steady = std::chrono::steady_clock;

// error_category's non-virtual protected destructor is by design (never deleted).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"
class redis_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "cachecar.redis"; }
    std::string message(int ev) const override {
        switch (static_cast<redis_error>(ev)) {
        case redis_error::timeout: return "redis command timed out";
        case redis_error::disconnected: return "redis is not connected";
        case redis_error::circuit_open: return "redis circuit breaker open";
        case redis_error::reply_error: return "redis replied with an error";
        case redis_error::protocol: return "redis protocol error";
        case redis_error::overloaded: return "too many redis commands in flight";
        }
        return "redis error";
    }
};
#pragma GCC diagnostic pop

// hiredis builds replies through these callbacks straight into redis_value, so a
// bulk string (a stored entry, up to max_object_bytes) is copied once out of the
// reader's buffer, not twice via a redisReply. hiredis is C: nothing may throw
// through it, so allocation failures answer nullptr, which it reports as out of
// memory. Array elements are constructed in place in their parent's `elements`
// (sized by create_array before any child exists, so the pointers stay valid);
// only a root value is allocated, and only a root is ever freed (free_value).
redis_value* place(const redisReadTask* task) {
    if (task->parent != nullptr) {
        auto* parent = static_cast<redis_value*>(task->parent->obj);
        return &parent->elements[static_cast<std::size_t>(task->idx)];
    }
    return new (std::nothrow) redis_value;
}

void* create_string(const redisReadTask* task, char* str, std::size_t len) noexcept {
    redis_value* v = place(task);
    if (v == nullptr) return nullptr;
    switch (task->type) {
    case REDIS_REPLY_STATUS: v->type = redis_value::kind::status; break;
    case REDIS_REPLY_ERROR: v->type = redis_value::kind::error; break;
    default: v->type = redis_value::kind::string; break;
    }
    try {
        v->str.assign(str, len);
    } catch (...) {
        return nullptr;
    }
    return v;
}

void* create_array(const redisReadTask* task, int elements) noexcept {
    redis_value* v = place(task);
    if (v == nullptr) return nullptr;
    v->type = redis_value::kind::array;
    try {
        v->elements.resize(static_cast<std::size_t>(std::max(elements, 0)));
    } catch (...) {
        return nullptr;
    }
    return v;
}

void* create_integer(const redisReadTask* task, long long value) noexcept {
    redis_value* v = place(task);
    if (v == nullptr) return nullptr;
    v->type = redis_value::kind::integer;
    v->integer = value;
    return v;
}

void* create_nil(const redisReadTask* task) noexcept {
    redis_value* v = place(task);
    if (v != nullptr) v->type = redis_value::kind::nil;
    return v;
}

void free_value(void* reply) noexcept { delete static_cast<redis_value*>(reply); }

redisReplyObjectFunctions value_functions = {create_string, create_array, create_integer, create_nil, free_value};

// A reply as built by the functions above, owned.
std::unique_ptr<redis_value> take_reply(void* raw) { return std::unique_ptr<redis_value>(static_cast<redis_value*>(raw)); }

long long ticks(steady::time_point t) { return t.time_since_epoch().count(); }

// hiredis' parser, owned; it builds redis_value replies (value_functions).
struct reader_deleter {
    void operator()(redisReader* r) const { redisReaderFree(r); }
};
using reader_ptr = std::unique_ptr<redisReader, reader_deleter>;
reader_ptr make_reader() { return reader_ptr(redisReaderCreateWithFunctions(&value_functions)); }

constexpr std::size_t max_in_flight = 4096;

}  // namespace

const boost::system::error_category& redis_category() {
    static const redis_category_impl instance;
    return instance;
}
error_code make_error_code(redis_error e) { return {static_cast<int>(e), redis_category()}; }

std::string format_command(const std::vector<std::string>& argv_list) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lens;
    argv.reserve(argv_list.size());
    lens.reserve(argv_list.size());
    for (const auto& a : argv_list) {
        argv.push_back(a.data());
        lens.push_back(a.size());
    }
    char* cmd = nullptr;
    int n = redisFormatCommandArgv(&cmd, static_cast<int>(argv_list.size()), argv.data(), lens.data());
    if (n < 0 || cmd == nullptr) return {};
    std::string out(cmd, static_cast<std::size_t>(n));
    redisFreeCommand(cmd);
    return out;
}

parsed<redis_options> parse_redis_url(std::string_view url) {
    redis_options o;
    auto parse_int = [](std::string_view s, int& out) {
        auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), out);
        return ec == std::errc{} && p == s.data() + s.size();
    };
    std::string_view query;
    if (auto q = url.find('?'); q != std::string_view::npos) {
        query = url.substr(q + 1);
        url = url.substr(0, q);
    }
    if (url.starts_with("unix://")) {
        o.unix_path = std::string(url.substr(7));
        if (o.unix_path.empty() || o.unix_path[0] != '/') {
            return parsed<redis_options>::fail("unix socket URL needs an absolute path: unix:///path/to.sock");
        }
    } else if (url.starts_with("redis://")) {
        auto rest = url.substr(8);
        if (auto at = rest.rfind('@'); at != std::string_view::npos) {
            auto userinfo = rest.substr(0, at);
            rest = rest.substr(at + 1);
            if (auto colon = userinfo.find(':'); colon != std::string_view::npos) {
                o.user = std::string(userinfo.substr(0, colon));
                o.password = std::string(userinfo.substr(colon + 1));
            } else {
                o.password = std::string(userinfo);  // redis://secret@host: password only
            }
        }
        std::string_view hostport = rest;
        if (hostport.empty() || hostport.front() == '/') return parsed<redis_options>::fail("redis URL has no host");
        if (auto slash = rest.find('/'); slash != std::string_view::npos) {
            hostport = rest.substr(0, slash);
            auto db = rest.substr(slash + 1);
            if (!db.empty() && (!parse_int(db, o.db) || o.db < 0)) {
                return parsed<redis_options>::fail("bad database number \"" + std::string(db) + "\" in redis URL");
            }
        }
        if (hostport.starts_with('[')) {
            auto close = hostport.find(']');
            if (close == std::string_view::npos) return parsed<redis_options>::fail("unclosed '[' in redis URL");
            o.host = std::string(hostport.substr(1, close - 1));
            hostport = hostport.substr(close + 1);
            if (hostport.starts_with(':')) {
                int port = 0;
                if (!parse_int(hostport.substr(1), port) || port <= 0 || port > 65535)
                    return parsed<redis_options>::fail("bad port in redis URL");
                o.port = static_cast<std::uint16_t>(port);
            }
        } else if (auto colon = hostport.rfind(':'); colon != std::string_view::npos) {
            o.host = std::string(hostport.substr(0, colon));
            int port = 0;
            if (!parse_int(hostport.substr(colon + 1), port) || port <= 0 || port > 65535)
                return parsed<redis_options>::fail("bad port in redis URL");
            o.port = static_cast<std::uint16_t>(port);
        } else if (!hostport.empty()) {
            o.host = std::string(hostport);
        }
        if (o.host.empty()) return parsed<redis_options>::fail("redis URL has no host");
    } else {
        return parsed<redis_options>::fail("redis URL must start with redis:// or unix://");
    }
    while (!query.empty()) {
        auto amp = query.find('&');
        auto item = query.substr(0, amp);
        query = amp == std::string_view::npos ? std::string_view{} : query.substr(amp + 1);
        auto eq = item.find('=');
        auto k = item.substr(0, eq);
        auto v = eq == std::string_view::npos ? std::string_view{} : item.substr(eq + 1);
        if (k == "db") {
            if (!parse_int(v, o.db) || o.db < 0) return parsed<redis_options>::fail("bad db in redis URL");
        } else if (k == "password") {
            o.password = std::string(v);
        } else if (k == "user") {
            o.user = std::string(v);
        } else {
            return parsed<redis_options>::fail("unknown redis URL parameter \"" + std::string(k) + "\"");
        }
    }
    return parsed<redis_options>::ok(std::move(o));
}

// One pipelined connection. Everything below runs on `strand`.
struct redis_client::connection : std::enable_shared_from_this<connection> {
    connection(net::any_io_executor ex, const redis_options& o, std::weak_ptr<redis_client> owner_)
        : strand(net::make_strand(ex)), socket(strand), options(o), owner(std::move(owner_)) {}

    net::strand<net::any_io_executor> strand;
    net::generic::stream_protocol::socket socket;
    redis_options options;  // a copy: the connection may outlive its client briefly
    std::weak_ptr<redis_client> owner;
    reader_ptr reader = make_reader();
    std::deque<slot_ptr> in_flight;
    std::string outbox;
    bool writing = false;
    bool connected = false;
    std::atomic<bool> ready{false};
    std::atomic<long long> oldest_sent{0};  // ticks of the oldest unanswered command; 0 = none
    bool stopping = false;
    // Pub/sub mode: every reply is a push, not an answer to a command.
    std::function<void(const redis_value&)> on_push;
    std::vector<std::string> after_connect;  // formatted commands sent right after the handshake
    std::function<void(bool)> on_ready_change;
    bool wants_pongs = false;  // a subscription whose PINGs someone awaits

    void submit(std::string bytes, std::vector<slot_ptr> slots) {
        net::dispatch(strand, [self = shared_from_this(), bytes = std::move(bytes), slots = std::move(slots)]() mutable {
            if (!self->connected || self->stopping) {
                for (auto& s : slots) s->set(make_error_code(redis_error::disconnected));
                return;
            }
            if (self->in_flight.size() + slots.size() > max_in_flight) {
                for (auto& s : slots) s->set(make_error_code(redis_error::overloaded));
                return;
            }
            if (self->in_flight.empty()) self->oldest_sent = ticks(steady::now());
            for (auto& s : slots) self->in_flight.push_back(std::move(s));
            self->outbox += bytes;
            if (!self->writing) net::co_spawn(self->strand, self->write_loop(), net::detached);
        });
    }

    net::awaitable<void> write_loop() {
        auto self = shared_from_this();
        writing = true;
        while (!outbox.empty() && connected) {
            std::string out;
            out.swap(outbox);
            error_code ec;
            co_await net::async_write(socket, net::buffer(out), net::redirect_error(net::use_awaitable, ec));
            if (ec) {
                error_code ignored;
                socket.close(ignored);  // the read loop notices and reconnects
                break;
            }
        }
        writing = false;
    }

    void fail_all(redis_error why) {
        for (auto& s : in_flight) s->set(make_error_code(why));
        in_flight.clear();
        outbox.clear();
        oldest_sent = 0;
    }

    // Writes `bytes` with no reply slot: for a pub/sub connection, whose answers are pushes.
    void send_unanswered(std::string bytes) {
        net::dispatch(strand, [self = shared_from_this(), bytes = std::move(bytes)]() mutable {
            if (!self->connected || self->stopping) return;
            self->outbox += bytes;
            if (!self->writing) net::co_spawn(self->strand, self->write_loop(), net::detached);
        });
    }

    // Forces a reconnect (a command has been unanswered for too long).
    void reset() {
        net::dispatch(strand, [self = shared_from_this()] {
            error_code ignored;
            self->socket.close(ignored);
        });
    }

    void stop() {
        net::dispatch(strand, [self = shared_from_this()] {
            self->stopping = true;
            error_code ignored;
            self->socket.close(ignored);
        });
    }

    net::awaitable<error_code> connect_once() {
        error_code ec;
        socket = net::generic::stream_protocol::socket(strand);
        net::steady_timer deadline(strand);
        deadline.expires_after(std::max<std::chrono::milliseconds>(options.timeout * 4, std::chrono::milliseconds(500)));
        deadline.async_wait([this](error_code e) {
            if (!e) {
                error_code ignored;
                socket.close(ignored);
            }
        });
        if (!options.unix_path.empty()) {
            co_await socket.async_connect(net::local::stream_protocol::endpoint(options.unix_path),
                                          net::redirect_error(net::use_awaitable, ec));
        } else {
            net::ip::tcp::resolver resolver(strand);
            auto endpoints = co_await resolver.async_resolve(options.host, std::to_string(options.port),
                                                             net::redirect_error(net::use_awaitable, ec));
            if (!ec) {
                ec = net::error::host_not_found;
                for (const auto& e : endpoints) {
                    socket = net::generic::stream_protocol::socket(strand);
                    co_await socket.async_connect(e.endpoint(), net::redirect_error(net::use_awaitable, ec));
                    if (!ec) break;
                }
            }
            if (!ec) {
                error_code ignored;
                socket.set_option(net::ip::tcp::no_delay(true), ignored);
            }
        }
        if (ec) {
            deadline.cancel();
            co_return ec;
        }
        // Handshake: AUTH and SELECT, answered before anything else is sent.
        std::vector<std::vector<std::string>> hello;
        if (!options.password.empty()) {
            if (options.user.empty()) hello.push_back({"AUTH", options.password});
            else hello.push_back({"AUTH", options.user, options.password});
        }
        if (options.db != 0) hello.push_back({"SELECT", std::to_string(options.db)});
        std::string bytes;
        for (const auto& c : hello) bytes += format_command(c);
        if (!bytes.empty()) {
            co_await net::async_write(socket, net::buffer(bytes), net::redirect_error(net::use_awaitable, ec));
            std::size_t answered = 0;
            char buf[4096];
            while (!ec && answered < hello.size()) {
                auto n = co_await socket.async_read_some(net::buffer(buf), net::redirect_error(net::use_awaitable, ec));
                if (ec) break;
                redisReaderFeed(reader.get(), buf, n);
                void* raw = nullptr;
                while (answered < hello.size() && redisReaderGetReply(reader.get(), &raw) == REDIS_OK && raw) {
                    const auto reply = take_reply(raw);
                    const redis_value& v = *reply;
                    if (v.is_error()) {
                        logging::get("redis")->error("redis: {} rejected: {}", hello[answered][0], v.str);
                        ec = make_error_code(redis_error::reply_error);
                        break;
                    }
                    ++answered;
                }
            }
        }
        deadline.cancel();
        co_return ec;
    }

    net::awaitable<void> read_loop() {
        // Room for a whole typical entry per read: a 64 KiB hit arrives in one or two
        // reads instead of five. The frame lives as long as the connection.
        char buf[65536];
        for (;;) {
            error_code ec;
            auto n = co_await socket.async_read_some(net::buffer(buf), net::redirect_error(net::use_awaitable, ec));
            if (ec) co_return;
            if (redisReaderFeed(reader.get(), buf, n) != REDIS_OK) co_return;
            for (;;) {
                void* raw = nullptr;
                if (redisReaderGetReply(reader.get(), &raw) != REDIS_OK) co_return;  // protocol error
                if (raw == nullptr) break;
                auto reply = take_reply(raw);
                redis_value& v = *reply;
                if (on_push) {
                    on_push(v);
                    continue;
                }
                if (in_flight.empty()) co_return;  // a reply nobody asked for: desynchronised
                auto slot = std::move(in_flight.front());
                in_flight.pop_front();
                oldest_sent = in_flight.empty() ? 0 : ticks(steady::now());
                slot->set(std::move(v));
            }
        }
    }

    net::awaitable<void> run() {
        auto self = shared_from_this();
        int backoff_ms = 50;
        while (!stopping) {
            reader = make_reader();
            auto ec = co_await connect_once();
            if (!ec && !stopping) {
                connected = true;
                backoff_ms = 50;
                for (const auto& cmd : after_connect) outbox += cmd;
                if (!outbox.empty() && !writing) net::co_spawn(strand, write_loop(), net::detached);
                ready = true;
                if (on_ready_change) on_ready_change(true);
                if (auto o = owner.lock()) o->record_success();
                co_await read_loop();
                ready = false;
                connected = false;
                if (on_ready_change) on_ready_change(false);
                error_code ignored;
                socket.close(ignored);
                fail_all(redis_error::disconnected);
                if (stopping) break;
                if (auto o = owner.lock()) o->record_failure("disconnected");
                logging::get("redis")->warn("redis: connection to {} lost; reconnecting",
                             options.unix_path.empty() ? options.host + ":" + std::to_string(options.port)
                                                       : options.unix_path);
            }
            // Reconnect with backoff, capped at 1 s so a returning Redis is used within seconds.
            net::steady_timer wait(strand, std::chrono::milliseconds(backoff_ms));
            error_code ignored;
            co_await wait.async_wait(net::redirect_error(net::use_awaitable, ignored));
            backoff_ms = std::min(backoff_ms * 2, 1000);
        }
        fail_all(redis_error::disconnected);
    }
};

std::shared_ptr<redis_client> redis_client::create(net::any_io_executor ex, redis_options options,
                                                   redis_events events) {
    return std::shared_ptr<redis_client>(new redis_client(std::move(ex), std::move(options), std::move(events)));
}

redis_client::redis_client(net::any_io_executor ex, redis_options options, redis_events events)
    : executor_(std::move(ex)), options_(std::move(options)), events_(std::move(events)) {}

redis_client::~redis_client() { stop(); }

void redis_client::start() {
    const unsigned n = std::max(1u, options_.pool);
    // Every connection exists before any runs: a running connection reads
    // connections_ from an I/O thread (record_success, record_failure, pick), so the
    // vector must not grow, and reallocate, after the first one starts.
    connections_.reserve(n);
    for (unsigned i = 0; i < n; ++i) {
        connections_.push_back(std::make_shared<connection>(executor_, options_, weak_from_this()));
    }
    for (const auto& c : connections_) net::co_spawn(c->strand, c->run(), net::detached);
    net::co_spawn(net::make_strand(executor_), probe_loop(), net::detached);
}

void redis_client::stop() {
    if (stopped_.exchange(true)) return;
    for (auto& c : connections_) c->stop();
    for (auto& c : subscribers_) c->stop();
}

void redis_client::subscribe(std::string channel, std::function<void(std::string_view)> on_message,
                             std::function<void(bool)> on_active, std::function<void(std::string_view)> on_pong) {
    // A dedicated connection: in subscribe mode Redis sends pushes, not replies.
    // It has no owner so its failures do not trip the command breaker.
    auto c = std::make_shared<connection>(executor_, options_, std::weak_ptr<redis_client>{});
    c->after_connect.push_back(format_command(args("SUBSCRIBE", channel)));
    c->wants_pongs = static_cast<bool>(on_pong);
    c->on_push = [on_message, on_active, on_pong, channel](const redis_value& v) {
        if (v.type != redis_value::kind::array || v.elements.size() < 2) return;
        const auto& kind = v.elements[0].str;
        if (kind == "pong") {  // ["pong", token]: a PING sent in subscribe mode
            if (on_pong) on_pong(v.elements[1].str);
            return;
        }
        if (v.elements.size() < 3) return;
        if (kind == "subscribe" && v.elements[1].str == channel) {
            on_active(true);
        } else if (kind == "message" && v.elements[1].str == channel) {
            on_message(v.elements[2].str);
        }
    };
    c->on_ready_change = [on_active](bool ready) {
        if (!ready) on_active(false);
    };
    subscribers_.push_back(c);
    net::co_spawn(c->strand, c->run(), net::detached);
}

void redis_client::ping_subscriptions(std::string token) {
    const auto bytes = format_command(args("PING", std::move(token)));
    for (auto& c : subscribers_) {
        if (c->wants_pongs) c->send_unanswered(bytes);  // the others would ignore the answer
    }
}

void redis_client::reset_subscriptions() {
    for (auto& c : subscribers_) c->reset();
}

std::shared_ptr<redis_client::connection> redis_client::pick() {
    const auto n = connections_.size();
    for (std::size_t i = 0; i < n; ++i) {
        auto& c = connections_[next_.fetch_add(1, std::memory_order_relaxed) % n];
        if (c->ready.load(std::memory_order_acquire)) return c;
    }
    return nullptr;
}

void redis_client::record_success() {
    consecutive_failures_ = 0;
    backoff_ms_ = 100;
    open_until_ = 0;
    bool any_ready = false;
    for (auto& c : connections_) any_ready = any_ready || c->ready.load();
    if (any_ready && !up_.exchange(true)) {
        logging::get("redis")->info("redis: up ({})", options_.unix_path.empty() ? options_.host + ":" + std::to_string(options_.port)
                                                                  : options_.unix_path);
        if (events_.on_state_change) events_.on_state_change(true);
    }
}

void redis_client::record_failure(std::string_view what) {
    if (events_.on_failure) events_.on_failure(what);
    const int failures = ++consecutive_failures_;
    bool any_ready = false;
    for (auto& c : connections_) any_ready = any_ready || c->ready.load();
    // Three failures in a row (or no connection at all) open the breaker: stop
    // sending commands that would each wait for their deadline.
    if (failures >= 3 || !any_ready) {
        const int backoff = backoff_ms_.load();
        open_until_ = ticks(steady::now() + std::chrono::milliseconds(backoff));
        backoff_ms_ = std::min(backoff * 2, 1000);
        if (up_.exchange(false)) {
            logging::get("redis")->warn("redis: marked down after {} ({} consecutive failures)", what, failures);
            if (events_.on_state_change) events_.on_state_change(false);
        }
    }
}

net::awaitable<void> redis_client::probe_loop() {
    auto self = shared_from_this();
    net::steady_timer timer(co_await net::this_coro::executor);
    const auto stuck_after = std::max<std::chrono::milliseconds>(options_.timeout * 20, std::chrono::seconds(2));
    while (!stopped_) {
        timer.expires_after(std::chrono::milliseconds(100));
        error_code ec;
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (stopped_) break;
        const auto now = steady::now();
        // A command unanswered for far longer than its deadline means the
        // connection is wedged (peer paused or gone without a reset): start over.
        for (auto& c : connections_) {
            auto oldest = c->oldest_sent.load();
            if (oldest != 0 && now.time_since_epoch().count() - oldest > std::chrono::duration_cast<steady::duration>(stuck_after).count()) {
                c->oldest_sent = 0;
                c->reset();
            }
        }
        if (up_ || ticks(now) < open_until_.load()) continue;
        // Half-open: one PING decides whether the breaker closes.
        auto c = pick();
        if (!c) continue;
        auto slot = std::make_shared<util::one_shot<result<redis_value>>>();
        c->submit(format_command(args("PING")), {slot});
        auto r = co_await slot->wait(steady::now() + options_.timeout * 4);
        if (r && *r && !(*r)->is_error()) {
            record_success();
        } else {
            record_failure("probe");
        }
    }
}

net::awaitable<result<std::vector<redis_value>>> redis_client::pipeline(std::vector<std::vector<std::string>> commands) {
    if (stopped_) co_return make_error_code(redis_error::disconnected);
    if (ticks(steady::now()) < open_until_.load()) co_return make_error_code(redis_error::circuit_open);
    auto c = pick();
    if (!c) {
        record_failure("disconnected");
        co_return make_error_code(redis_error::disconnected);
    }
    std::string bytes;
    std::vector<slot_ptr> slots;
    for (const auto& cmd : commands) {
        bytes += format_command(cmd);
        slots.push_back(std::make_shared<util::one_shot<result<redis_value>>>());
    }
    c->submit(std::move(bytes), slots);
    const auto deadline = steady::now() + options_.timeout;
    std::vector<redis_value> out;
    out.reserve(slots.size());
    for (auto& s : slots) {
        auto r = co_await s->wait(deadline);
        if (!r) {
            record_failure("timeout");
            co_return make_error_code(redis_error::timeout);
        }
        if (!*r) {
            record_failure((*r).error() == make_error_code(redis_error::overloaded) ? "overloaded" : "disconnected");
            co_return (*r).error();
        }
        out.push_back(std::move(**r));
    }
    record_success();
    co_return out;
}

net::awaitable<result<redis_value>> redis_client::command(std::vector<std::string> argv_list) {
    std::vector<std::vector<std::string>> one;
    one.push_back(std::move(argv_list));
    auto r = co_await pipeline(std::move(one));
    if (!r) co_return r.error();
    co_return std::move(r->front());
}

}  // namespace cachecar::cache::redis
