#include <cachecar/cache/redis/redis_generations.hpp>
#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>

#include <openssl/sha.h>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <random>

#include <unistd.h>

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

// Every script starts with the lease check. KEYS[1]: the members sorted set (score =
// lease expiry in Redis ms); KEYS[2]: the all-category generation; KEYS[3]: the lapsed
// members (hash: member -> when its lapse was found). A member whose lease ran out
// without a goodbye may have taken writes whose purges never reached Redis -- before
// its lapse, and after it too, for as long as it is cut off. So at the lapse
// everything is purged (one bump of the all category, published like any purge), and
// then, while any member is lapsed, the namespace is fenced: reads fail (nothing is
// served or stored from cache, by any instance) until the member comes back having
// applied its held purges, or ARGV[4] ms pass (it crashed, most likely). Every script
// does the check, reads included, so no read is served from Redis after a lapse
// without it.
//
// Generation keys are created at the server's time in microseconds rather than at 0.
// If Redis loses its data (restart without persistence, failover to an empty
// replica), recreated keys then start above every generation handed out before, so an
// entry stamped before the loss can never become valid again (the ABA a counter
// restarting at 0 would allow).
//
// ARGV[1]: the purge channel, ARGV[2]: the database number, ARGV[3]: the all category,
// ARGV[4]: how long a lapse fences (ms). Categories are KEYS[4...].
constexpr std::string_view lease_check = R"lua(
local t = redis.call('TIME')
local now_ms = t[1] * 1000 + math.floor(t[2] / 1000)
local now_us = string.format('%.0f', t[1] * 1000000 + t[2])
local function bump(k)
  if redis.call('EXISTS', k) == 0 then redis.call('SET', k, now_us) end
  return string.format('%.0f', redis.call('INCR', k))  -- tostring() would give 1.7e+15
end
local before_now = '(' .. string.format('%.0f', now_ms)
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', before_now)
if #lapsed > 0 then
  redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', before_now)
  for _, m in ipairs(lapsed) do redis.call('HSET', KEYS[3], m, string.format('%.0f', now_ms)) end
  redis.call('PUBLISH', ARGV[1], 'db ' .. ARGV[2] .. '\n' .. bump(KEYS[2]) .. ' ' .. ARGV[3] .. '\n')
end
-- '~since' (score: the time it was added + 1e13, never lapsing) dates the member set:
-- a set younger than a trust window may miss members a wipe (FLUSHALL, a restart)
-- removed, whose copies are still trusted.
local since = redis.call('ZSCORE', KEYS[1], '~since')
if not since then
  since = now_ms + 1e13
  redis.call('ZADD', KEYS[1], since, '~since')
end
local members_age = now_ms - (since - 1e13)
local fenced = 0
local held = redis.call('HGETALL', KEYS[3])
for i = 1, #held, 2 do
  if tonumber(held[i + 1]) + tonumber(ARGV[4]) < now_ms then
    redis.call('HDEL', KEYS[3], held[i])
  else
    fenced = fenced + 1
  end
end
)lua";

// The generations of KEYS[4...]; an error reply while the namespace is fenced.
const std::string read_script = std::string(lease_check) + R"lua(
if fenced > 0 then return redis.error_reply('FENCED a member lapsed') end
local out = {}
for i = 4, #KEYS do
  local v = redis.call('GET', KEYS[i])
  if not v then
    redis.call('SET', KEYS[i], now_us)
    v = now_us
  end
  out[i - 3] = v
end
return out
)lua";

// Bumps KEYS[4...] and publishes their new generations (ARGV[6...]: the categories) in
// the same step: a purge recorded is a purge announced, even if the writer dies next.
// ARGV[5]: a token every other instance acknowledges once it has applied the purge
// ('' for none). Purges go through while fenced. Returns {generations, live members,
// the member set's age in ms}.
const std::string bump_script = std::string(lease_check) + R"lua(
local out = {}
local msg = 'db ' .. ARGV[2] .. '\n'
if ARGV[5] ~= '' then msg = msg .. 'ack ' .. ARGV[5] .. '\n' end
for i = 4, #KEYS do
  out[i - 3] = bump(KEYS[i])
  msg = msg .. out[i - 3] .. ' ' .. ARGV[i + 2] .. '\n'
end
redis.call('PUBLISH', ARGV[1], msg)
return {out, redis.call('ZRANGE', KEYS[1], 0, -1), string.format('%.0f', members_age)}
)lua";

// The heartbeat: the lease check, then this instance's lease (ARGV[5]: its member id,
// '' for none; ARGV[6]: the lease in ms) is taken or extended -- unless the script runs
// after ARGV[7], the renewal's deadline in Redis ms: a renewal that a frozen path
// delivers late must not extend a lease its sender already counts as run out. A lapsed
// member comes back (and stops fencing) only with ARGV[8] = '1': it holds no purge.
// Returns {1 if renewed, the server's TIME, lapsed members fencing}.
const std::string heartbeat_script = std::string(lease_check) + R"lua(
local renewed = 0
if ARGV[5] ~= '' and now_ms <= tonumber(ARGV[7]) then
  local was_lapsed = redis.call('HEXISTS', KEYS[3], ARGV[5]) == 1
  if not was_lapsed or ARGV[8] == '1' then
    if was_lapsed then
      redis.call('HDEL', KEYS[3], ARGV[5])
      fenced = fenced - 1
    end
    redis.call('ZADD', KEYS[1], now_ms + tonumber(ARGV[6]), ARGV[5])
    renewed = 1
  end
end
return {renewed, t[1], t[2], fenced}
)lua";

using steady = std::chrono::steady_clock;

std::int64_t steady_ms(steady::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}

std::string new_member_id() {
    std::random_device rd;
    const auto r = (static_cast<std::uint64_t>(rd()) << 32) ^ rd();
    char buf[64];
    std::snprintf(buf, sizeof buf, "%d-%016llx", static_cast<int>(::getpid()), static_cast<unsigned long long>(r));
    return buf;
}

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

net::awaitable<result<redis_value>> redis_generation_store::eval(std::string_view script,
                                                                const std::vector<std::string>& categories,
                                                                std::vector<std::string> extra_args) {
    // EVALSHA saves sending the script on every lookup; a server that does not know
    // it yet (first use, restart, SCRIPT FLUSH) says NOSCRIPT and gets it once.
    static const std::string read_sha = script_sha1(read_script);
    static const std::string bump_sha = script_sha1(bump_script);
    static const std::string heartbeat_sha = script_sha1(heartbeat_script);
    const std::string& sha = script == read_script ? read_sha : script == bump_script ? bump_sha : heartbeat_sha;
    std::vector<std::string> cmd{"EVALSHA", sha, std::to_string(categories.size() + 3), namespace_ + "::members",
                                 generation_key(std::string(all_category)), namespace_ + "::lapsed"};
    for (const auto& c : categories) cmd.push_back(generation_key(c));
    cmd.push_back(namespace_ + ":purge");
    cmd.push_back(std::to_string(client_->options().db));
    cmd.emplace_back(all_category);
    cmd.push_back(std::to_string(lapse_fence_.count()));
    for (auto& a : extra_args) cmd.push_back(std::move(a));
    auto r = co_await client_->command(cmd);
    if (r && r->is_error() && r->str.starts_with("NOSCRIPT")) {
        cmd[0] = "EVAL";
        cmd[1] = std::string(script);
        r = co_await client_->command(std::move(cmd));
    }
    if (r && r->is_error()) co_return make_error_code(redis_error::reply_error);
    co_return r;
}

net::awaitable<result<std::vector<std::uint64_t>>> redis_generation_store::run_script(
    std::string_view script, const std::vector<std::string>& categories) {
    std::vector<std::string> no_extra;
    auto r = co_await eval(script, categories, std::move(no_extra));
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

net::awaitable<result<redis_generation_store::recorded>> redis_generation_store::record(
    const std::vector<std::string>& categories, std::string token) {
    std::vector<std::string> extra;
    extra.reserve(categories.size() + 1);
    extra.push_back(std::move(token));
    for (const auto& c : categories) extra.push_back(c);  // named again in the message
    auto r = co_await eval(bump_script, categories, std::move(extra));
    if (!r) co_return r.error();
    if (r->type != redis_value::kind::array || r->elements.size() != 3 ||
        r->elements[0].elements.size() != categories.size()) {
        co_return make_error_code(redis_error::reply_error);
    }
    recorded out;
    for (const auto& v : r->elements[0].elements) {
        auto g = to_generation(v);
        if (!g) co_return make_error_code(redis_error::reply_error);
        out.generations.push_back(*g);
    }
    for (const auto& m : r->elements[1].elements) {
        if (m.str != "~since") out.members.push_back(m.str);
    }
    const auto age = to_generation(r->elements[2]);
    out.members_complete = age && std::chrono::milliseconds(*age) >= trust_window + clock_margin;
    co_return out;
}

redis_generation_store::redis_generation_store(std::shared_ptr<redis_client> client, std::string key_namespace,
                                               stats::registry& metrics, std::chrono::milliseconds lapse_fence,
                                               bool confirm_purges)
    : client_(std::move(client)),
      namespace_(std::move(key_namespace)),
      metrics_(metrics),
      member_(new_member_id()),
      lapse_fence_(lapse_fence),
      confirm_purges_(confirm_purges) {}

std::string redis_generation_store::generation_key(const std::string& category) const {
    // "::" cannot start an entry key (route names are never empty), so clear() can
    // tell generation keys apart.
    return namespace_ + "::gen:" + category;
}

std::string redis_generation_store::encode_message(int db,
                                                   const std::vector<std::pair<std::string, std::uint64_t>>& gens) {
    // "db <n>\n" then "<generation> <category>\n" per category: the category is last
    // so it may contain spaces. (The scripts build the same text in Lua.)
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
    std::string ack;  // the writer's token, acknowledged once the purge is applied
    while (!payload.empty()) {
        line_end = payload.find('\n');
        auto line = payload.substr(0, line_end);
        payload = line_end == std::string_view::npos ? std::string_view{} : payload.substr(line_end + 1);
        if (line.starts_with("ack ")) {
            ack = std::string(line.substr(4));
            continue;
        }
        auto space = line.find(' ');
        if (space == std::string_view::npos) continue;
        std::uint64_t g = 0;
        auto [p, ec] = std::from_chars(line.data(), line.data() + space, g);
        if (ec != std::errc{}) continue;
        cache_.raise(std::string(line.substr(space + 1)), g);
    }
    // Applied: this copy now refuses everything the purge covers. Tell the writer,
    // unless the writer is this instance.
    if (!ack.empty() && !ack.starts_with(member_ + ":") && executor_) {
        auto client = client_;
        auto reply = args("PUBLISH", namespace_ + ":ack", ack + " " + member_);
        net::co_spawn(
            executor_, [client, reply]() mutable -> net::awaitable<void> { (void)co_await client->command(std::move(reply)); },
            net::detached);
    }
}

void redis_generation_store::on_ack(std::string_view payload) {
    const auto space = payload.find(' ');
    if (space == std::string_view::npos) return;
    const std::string token(payload.substr(0, space));
    const std::string member(payload.substr(space + 1));
    std::lock_guard lock(confirm_mutex_);
    auto it = confirmations_.find(token);
    if (it == confirmations_.end()) return;
    auto& w = *it->second;
    w.acked.insert(member);
    if (w.complete()) {
        net::post(w.timer.get_executor(), [keep = it->second] { keep->timer.cancel(); });
    }
}

void redis_generation_store::on_pong(std::string_view token) {
    std::uint64_t n = 0;
    auto [p, ec] = std::from_chars(token.data(), token.data() + token.size(), n);
    if (ec != std::errc{}) return;
    std::lock_guard lock(lease_mutex_);
    std::optional<steady::time_point> sent;
    while (!pings_.empty() && pings_.front().first <= n) {
        if (pings_.front().first == n) sent = pings_.front().second;
        pings_.pop_front();
    }
    // Every message published before that heartbeat's script ran has now arrived.
    if (sent && sent->time_since_epoch().count() > proven_at_.load(std::memory_order_relaxed)) {
        proven_at_.store(sent->time_since_epoch().count(), std::memory_order_release);
    }
}

void redis_generation_store::start(net::any_io_executor ex) {
    executor_ = ex;
    std::weak_ptr<redis_generation_store> weak = weak_from_this();
    if (confirm_purges_) {
        client_->subscribe(
            namespace_ + ":ack",
            [weak](std::string_view payload) {
                if (auto self = weak.lock()) self->on_ack(payload);
            },
            [](bool) {});  // without acks, a writer waits out the trust window instead
    }
    client_->subscribe(
        namespace_ + ":purge",
        [weak](std::string_view payload) {
            if (auto self = weak.lock()) self->on_message(payload);
        },
        [weak](bool active) {
            auto self = weak.lock();
            if (!self) return;
            // Either way the local copy may have missed messages: start it afresh,
            // trusted again only after a heartbeat's pong on the new subscription.
            {
                std::lock_guard lock(self->lease_mutex_);
                self->pings_.clear();
                self->proven_at_ = 0;
            }
            self->cache_.clear();
            self->subscribed_ = active;
            if (!active) self->metrics_.get("cachecar_purge_subscription_lost_total", {{"tier", "redis"}})++;
        },
        [weak](std::string_view token) {
            if (auto self = weak.lock()) self->on_pong(token);
        });
    net::co_spawn(net::make_strand(ex), retry_loop(), net::detached);
    net::co_spawn(net::make_strand(ex), heartbeat_loop(), net::detached);
}

void redis_generation_store::stop() { stopped_ = true; }

net::awaitable<void> redis_generation_store::goodbye() {
    stopped_ = true;
    (void)co_await client_->command(args("ZREM", namespace_ + "::members", member_));
}

std::size_t redis_generation_store::pending_purges() const { return cache_.pending_count(); }

bool redis_generation_store::copy_trusted() const {
    if (!subscribed_.load(std::memory_order_acquire)) return false;
    const auto proven = proven_at_.load(std::memory_order_acquire);
    return proven != 0 && steady::now().time_since_epoch().count() - proven <=
                              std::chrono::duration_cast<steady::duration>(trust_window).count();
}

std::optional<bool> redis_generation_store::validate_cached(const std::vector<category_stamp>& stamps) const {
    if (!copy_trusted()) return std::nullopt;
    return cache_.validate(stamps);
}

steady::time_point redis_generation_store::lease_certainly_over() const {
    std::lock_guard lock(lease_mutex_);
    if (!renewal_sent_) return steady::now();  // never held a lease: nothing to wait for
    // An acknowledged renewal ran before its reply; one not acknowledged runs, if at
    // all, before its deadline: its send time plus the slack and the offset's error.
    const auto acked = renewed_at_ + lease;
    const auto in_doubt = last_renewal_sent_ + offset_rtt_ + renewal_slack + lease;
    return std::max(acked, in_doubt) + clock_margin;
}

net::awaitable<void> redis_generation_store::heartbeat_loop() {
    auto self = shared_from_this();
    net::steady_timer timer(co_await net::this_coro::executor);
    while (!stopped_) {
        timer.expires_after(heartbeat_interval);
        error_code ec;
        co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        if (stopped_) break;
        {
            // A subscription that stopped answering is re-opened (its copy is already
            // untrusted: no pong, no proof).
            std::lock_guard lock(lease_mutex_);
            if (!pings_.empty() && steady::now() - pings_.front().second > std::chrono::seconds(1)) {
                pings_.clear();
                client_->reset_subscriptions();
            }
        }
        // Renew only with a known clock offset (the deadline needs it), and never while
        // a purge is held: this instance's lease must then run out.
        std::string member;
        std::int64_t deadline_ms = 0;
        const auto sent = steady::now();
        {
            std::lock_guard lock(lease_mutex_);
            if (offset_hi_ms_ && !fenced_.load()) {
                member = member_;
                deadline_ms = steady_ms(sent) + *offset_hi_ms_ + renewal_slack.count();
                last_renewal_sent_ = sent;
                renewal_sent_ = true;
            }
        }
        const std::vector<std::string> no_categories;
        auto renewal = args(member, std::to_string(lease.count()), std::to_string(deadline_ms),
                            pending_purges() == 0 ? "1" : "0");
        auto r = co_await eval(heartbeat_script, no_categories, std::move(renewal));
        const auto replied = steady::now();
        if (!r || r->type != redis_value::kind::array || r->elements.size() != 4) continue;
        const auto& e = r->elements;
        const auto sec = to_generation(e[1]), usec = to_generation(e[2]);
        if (!sec || !usec) continue;
        std::uint64_t token = 0;
        {
            std::lock_guard lock(lease_mutex_);
            const auto redis_ms = static_cast<std::int64_t>(*sec * 1000 + *usec / 1000);
            // The script ran between `sent` and `replied`: Redis time minus ours is at
            // most redis_ms - sent. Keep the sample with the shortest round trip lately.
            offset_hi_ms_ = redis_ms - steady_ms(sent);
            offset_rtt_ = replied - sent;
            if (e[0].type == redis_value::kind::integer && e[0].integer == 1) {
                renewed_at_ = replied;
                renewed_sent_ = sent;
            }
            fence_seen_ = e[3].type != redis_value::kind::integer || e[3].integer > 0;
            if (fence_seen_) {
                // A member lapsed: the namespace is fenced, the copy proves nothing.
                pings_.clear();
                proven_at_ = 0;
                continue;
            }
            token = ++next_ping_;
            pings_.emplace_back(token, sent);
            if (pings_.size() > 256) pings_.pop_front();
        }
        // Its pong proves the copy holds every purge published before `sent`.
        client_->ping_subscriptions(std::to_string(token));
    }
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
    auto r = co_await record(categories, std::string());
    if (!r) co_return false;
    for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], r->generations[i]);
    cache_.settle(taken);
    if (cache_.pending_count() == 0) fenced_ = false;  // renew the lease again
    logging::get("redis")->info("redis: {} deferred purges applied", categories.size());
    metrics_.get("cachecar_purges_total", {{"source", "deferred"}, {"outcome", "ok"}}) += categories.size();
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
    const auto started = steady::now();
    // With confirmation, the waiter exists before the purge is published: an ack may
    // come back before the script's own reply does.
    std::string token;
    std::shared_ptr<confirmation> waiter;
    if (confirm_purges_) {
        token = member_ + ":" + std::to_string(next_token_.fetch_add(1) + 1);
        waiter = std::make_shared<confirmation>(co_await net::this_coro::executor);
        std::lock_guard lock(confirm_mutex_);
        confirmations_.emplace(token, waiter);
    }
    struct forget {
        redis_generation_store& store;
        const std::string& token;
        ~forget() {
            if (token.empty()) return;
            std::lock_guard lock(store.confirm_mutex_);
            store.confirmations_.erase(token);
        }
    } forgotten{*this, token};

    auto r = co_await record(categories, token);
    if (!r) {
        // Not recorded: the write's response waits until it is, or until this
        // instance's lease has certainly run out (renewals stop meanwhile), after which
        // every other instance purges everything and fences before serving again.
        fenced_ = true;
        net::steady_timer wait(co_await net::this_coro::executor);
        while (!r && steady::now() < lease_certainly_over()) {
            wait.expires_after(std::chrono::milliseconds(50));
            error_code ec;
            co_await wait.async_wait(net::redirect_error(net::use_awaitable, ec));
            r = co_await record(categories, token);
        }
        metrics_.get("cachecar_purge_hold_seconds_total", {{"tier", "redis"}}) +=
            std::chrono::duration<double>(steady::now() - started).count();
    }
    if (!r) {
        // Released: other instances found (or will find) this instance's lease run out
        // and fence until it is back with this purge applied -- unless the lease ran
        // out so long ago that the fence may have been lifted (a cut-off longer than
        // lapse_fence): counted, since read-after-write is then not guaranteed.
        bool unprotected = false;
        {
            std::lock_guard lock(lease_mutex_);
            unprotected = renewal_sent_ && steady::now() > renewed_sent_ + lease + lapse_fence_ - 2 * clock_margin;
        }
        if (unprotected) metrics_.get("cachecar_purges_unprotected_total", {{"tier", "redis"}})++;
        // Kept: applied as soon as Redis answers; until then nothing is served from
        // cache by this instance (see current()).
        cache_.add_pending(categories);
        metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "deferred"}}) += categories.size();
        logging::get("redis")->warn("redis: purge of {} categories deferred (lease run out): {}", categories.size(),
                                    r.error().message());
        co_return r.error();
    }
    const auto recorded_at = steady::now();
    if (cache_.pending_count() == 0) fenced_ = false;
    for (std::size_t i = 0; i < categories.size(); ++i) cache_.raise(categories[i], r->generations[i]);

    if (waiter) {
        // Released once every other live instance has applied the purge, or once none
        // of them can still be trusting a copy proven before it (trust_window): either
        // way no memory tier anywhere can serve what the purge covers.
        bool all_acked = false;
        {
            std::lock_guard lock(confirm_mutex_);
            for (auto& m : r->members) {
                if (m != member_) waiter->waiting.insert(std::move(m));
            }
            waiter->members_known = true;
            // A member set younger than a trust window (Redis wiped) may lack members
            // whose copies are still trusted: then wait the window out.
            waiter->members_complete = r->members_complete;
            all_acked = waiter->complete();
        }
        if (!all_acked) {
            waiter->timer.expires_after(trust_window + clock_margin);
            error_code ec;
            co_await waiter->timer.async_wait(net::redirect_error(net::use_awaitable, ec));
            if (!ec) metrics_.get("cachecar_purge_confirmations_total", {{"outcome", "timeout"}})++;
            else metrics_.get("cachecar_purge_confirmations_total", {{"outcome", "acknowledged"}})++;
        } else {
            metrics_.get("cachecar_purge_confirmations_total", {{"outcome", "acknowledged"}})++;
        }
        metrics_.purge_propagation_seconds().observe(std::chrono::duration<double>(steady::now() - recorded_at).count());
    }
    co_return std::move(r->generations);
}

}  // namespace cachecar::cache::redis
