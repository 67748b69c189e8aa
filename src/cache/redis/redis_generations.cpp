#include <cachecar/cache/redis/redis_generations.hpp>
#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>

#include <openssl/sha.h>

#include <algorithm>
#include <charconv>

namespace cachecar::cache::redis {

namespace {

std::optional<std::uint64_t> to_generation(const redis_value& v) {
    if (v.type == redis_value::kind::nil) return 0;
    if (v.type == redis_value::kind::integer) return v.integer < 0 ? 0 : static_cast<std::uint64_t>(v.integer);
    if (v.type != redis_value::kind::string) return std::nullopt;
    std::uint64_t g = 0;
    auto [p, ec] = std::from_chars(v.str.data(), v.str.data() + v.str.size(), g);
    if (ec != std::errc{} || p != v.str.data() + v.str.size()) return std::nullopt;
    return g;
}

// Generation keys are created at the server's current time in microseconds rather
// than at 0. If Redis loses its data (restart without persistence, failover to an
// empty replica), recreated keys then start above every generation handed out
// before, so an entry stamped before the loss can never become valid again
// (the ABA a counter restarting at 0 would allow).
constexpr std::string_view read_script = R"lua(
local out = {}
local now = nil
for i, k in ipairs(KEYS) do
  local v = redis.call('GET', k)
  if not v then
    if not now then
      local t = redis.call('TIME')
      now = string.format('%.0f', t[1] * 1000000 + t[2])
    end
    redis.call('SET', k, now)
    v = now
  end
  out[i] = v
end
return out
)lua";

constexpr std::string_view bump_script = R"lua(
local out = {}
local now = nil
for i, k in ipairs(KEYS) do
  if redis.call('EXISTS', k) == 0 then
    if not now then
      local t = redis.call('TIME')
      now = string.format('%.0f', t[1] * 1000000 + t[2])
    end
    redis.call('SET', k, now)
  end
  out[i] = string.format('%.0f', redis.call('INCR', k))  -- tostring() would give 1.7e+15
end
return out
)lua";

}  // namespace

// SHA-1 of a script, as Redis names it for EVALSHA.
static std::string script_sha1(std::string_view script) {
    unsigned char digest[SHA_DIGEST_LENGTH];
    SHA1(reinterpret_cast<const unsigned char*>(script.data()), script.size(), digest);
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    for (unsigned char b : digest) {
        out += hex[b >> 4];
        out += hex[b & 0x0f];
    }
    return out;
}

net::awaitable<result<std::vector<std::uint64_t>>> redis_generation_store::run_script(
    std::string_view script, const std::vector<std::string>& categories) {
    // EVALSHA saves sending the script on every lookup; a server that does not know
    // it yet (first use, restart, SCRIPT FLUSH) says NOSCRIPT and gets it once.
    static const std::string read_sha = script_sha1(read_script);
    static const std::string bump_sha = script_sha1(bump_script);
    const std::string& sha = script == read_script ? read_sha : bump_sha;
    std::vector<std::string> cmd{"EVALSHA", sha, std::to_string(categories.size())};
    for (const auto& c : categories) cmd.push_back(generation_key(c));
    auto r = co_await client_->command(cmd);
    if (r && r->is_error() && r->str.starts_with("NOSCRIPT")) {
        cmd[0] = "EVAL";
        cmd[1] = std::string(script);
        r = co_await client_->command(std::move(cmd));
    }
    if (!r) co_return r.error();
    if (r->type != redis_value::kind::array || r->elements.size() != categories.size()) {
        co_return make_error_code(redis_error::reply_error);
    }
    std::vector<std::uint64_t> out;
    out.reserve(categories.size());
    for (const auto& v : r->elements) {
        auto g = to_generation(v);
        if (!g) co_return make_error_code(redis_error::reply_error);
        out.push_back(*g);
    }
    co_return out;
}

redis_generation_store::redis_generation_store(std::shared_ptr<redis_client> client, std::string key_namespace,
                                               stats::registry& metrics)
    : client_(std::move(client)), namespace_(std::move(key_namespace)), metrics_(metrics) {}

std::string redis_generation_store::generation_key(const std::string& category) const {
    // "::" cannot start an entry key (route names are never empty), so clear() can
    // tell generation keys apart.
    return namespace_ + "::gen:" + category;
}

std::string redis_generation_store::encode_message(int db,
                                                   const std::vector<std::pair<std::string, std::uint64_t>>& gens) {
    // "db <n>\n" then "<generation> <category>\n" per category: the category is last
    // so it may contain spaces.
    std::string out = "db " + std::to_string(db) + "\n";
    for (const auto& [category, g] : gens) {
        out += std::to_string(g);
        out += ' ';
        out += category;
        out += '\n';
    }
    return out;
}

void redis_generation_store::on_message(std::string_view payload) {
    metrics_.get("cachecar_purge_messages_total", {{"tier", "redis"}})++;
    auto line_end = payload.find('\n');
    if (line_end == std::string_view::npos) return;
    // Channels are global across Redis databases; only our database's purges count.
    if (payload.substr(0, line_end) != "db " + std::to_string(client_->options().db)) return;
    payload.remove_prefix(line_end + 1);
    while (!payload.empty()) {
        line_end = payload.find('\n');
        auto line = payload.substr(0, line_end);
        payload = line_end == std::string_view::npos ? std::string_view{} : payload.substr(line_end + 1);
        auto space = line.find(' ');
        if (space == std::string_view::npos) continue;
        std::uint64_t g = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + space, g);
        if (ec != std::errc{}) continue;
        cache_.raise(std::string(line.substr(space + 1)), g);
    }
}

void redis_generation_store::start(net::any_io_executor ex) {
    std::weak_ptr<redis_generation_store> weak = weak_from_this();
    client_->subscribe(
        namespace_ + ":purge",
        [weak](std::string_view payload) {
            if (auto self = weak.lock()) self->on_message(payload);
        },
        [weak](bool active) {
            auto self = weak.lock();
            if (!self) return;
            // Either way the local copy may have missed messages: start it afresh.
            self->cache_.clear();
            self->subscribed_ = active;
            if (!active) self->metrics_.get("cachecar_purge_subscription_lost_total", {{"tier", "redis"}})++;
        });
    net::co_spawn(net::make_strand(ex), retry_loop(), net::detached);
}

void redis_generation_store::stop() { stopped_ = true; }

std::size_t redis_generation_store::pending_purges() const { return cache_.pending_count(); }

std::optional<bool> redis_generation_store::validate_cached(const std::vector<category_stamp>& stamps) const {
    if (!subscribed_.load(std::memory_order_acquire)) return std::nullopt;
    return cache_.validate(stamps);
}

net::awaitable<bool> redis_generation_store::flush_pending() {
    // One flush at a time. Every lookup calls this while purges are pending; when each
    // sent its own copy of the whole pending set, a slow Redis got hundreds of ever
    // larger scripts at once, timed them all out, and the client buffered them (the
    // soak test saw RSS grow by 300 MiB a minute). A caller that finds a flush in
    // flight fails like a failed flush: nothing is served from cache meanwhile.
    if (flushing_.exchange(true, std::memory_order_acq_rel)) co_return false;
    struct release {
        std::atomic<bool>& flag;
        ~release() { flag.store(false, std::memory_order_release); }
    } released{flushing_};

    const auto taken = cache_.pending();  // sorted, with repeats; settled as taken
    if (taken.empty()) co_return true;
    // One bump per category covers all its pending purges.
    auto categories = taken;
    categories.erase(std::unique(categories.begin(), categories.end()), categories.end());
    auto r = co_await run_script(bump_script, categories);
    if (!r) co_return false;
    std::vector<std::pair<std::string, std::uint64_t>> published;
    for (std::size_t i = 0; i < categories.size(); ++i) {
        cache_.raise(categories[i], (*r)[i]);
        published.emplace_back(categories[i], (*r)[i]);
    }
    cache_.settle(taken);
    (void)co_await client_->command(args("PUBLISH", namespace_ + ":purge", encode_message(client_->options().db, published)));
    logging::get("redis")->info("redis: {} deferred purges applied", published.size());
    metrics_.get("cachecar_purges_total", {{"source", "deferred"}, {"outcome", "ok"}}) += published.size();
    co_return true;
}

net::awaitable<void> redis_generation_store::retry_loop() {
    auto self = shared_from_this();
    net::steady_timer timer(co_await net::this_coro::executor);
    while (!stopped_) {
        timer.expires_after(std::chrono::milliseconds(250));
        error_code ec;
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (pending_purges() > 0 && client_->up()) co_await flush_pending();
    }
}

net::awaitable<result<std::vector<std::uint64_t>>> redis_generation_store::current(std::vector<std::string> categories) {
    if (pending_purges() > 0 && !co_await flush_pending()) {
        co_return make_error_code(redis_error::disconnected);
    }
    auto r = co_await run_script(read_script, categories);
    if (!r) co_return r.error();
    std::vector<std::uint64_t> out = std::move(*r);
    if (subscribed_) {
        for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], out[i]);
    }
    co_return out;
}

net::awaitable<result<std::vector<std::uint64_t>>> redis_generation_store::bump(std::vector<std::string> categories) {
    auto r = co_await run_script(bump_script, categories);
    if (!r) {
        // Keep the purge: applied as soon as Redis answers; until then nothing is
        // served from cache by this instance (see current()).
        cache_.add_pending(categories);
        metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "deferred"}}) += categories.size();
        logging::get("redis")->warn("redis: purge of {} categories deferred: {}", categories.size(), r.error().message());
        co_return r.error();
    }
    std::vector<std::uint64_t> out;
    std::vector<std::pair<std::string, std::uint64_t>> published;
    for (std::size_t i = 0; i < categories.size(); ++i) {
        auto g = (*r)[i];
        out.push_back(g);
        cache_.raise(categories[i], g);
        published.emplace_back(categories[i], g);
    }
    auto p = co_await client_->command(args("PUBLISH", namespace_ + ":purge", encode_message(client_->options().db, published)));
    if (!p) metrics_.get("cachecar_purge_publish_errors_total", {{"tier", "redis"}})++;
    co_return out;
}

}  // namespace cachecar::cache::redis
