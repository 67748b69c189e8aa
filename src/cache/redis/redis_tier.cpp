#include <cachecar/cache/redis/redis_tier.hpp>
#include <cachecar/logging.hpp>

#include <cachecar/cache/entry_codec.hpp>

#include <spdlog/spdlog.h>

#include <algorithm>

namespace cachecar::cache::redis {

redis_tier::redis_tier(std::shared_ptr<redis_client> client, std::string key_namespace, stats::registry& metrics)
    : client_(std::move(client)), namespace_(std::move(key_namespace)), metrics_(metrics) {}

net::awaitable<result<entry_ptr>> redis_tier::lookup(std::string key) {
    auto r = co_await client_->command(args("GET", key));
    if (!r) co_return r.error();
    if (r->type == redis_value::kind::nil) co_return entry_ptr{};
    if (r->type != redis_value::kind::string) co_return make_error_code(redis_error::reply_error);
    auto decoded = decode_entry(r->str);
    if (!decoded.value) {
        const auto why = *decoded.error;
        std::string reason(to_string(why));
        std::replace(reason.begin(), reason.end(), ' ', '_');  // a label value, like the others
        metrics_.get("cachecar_tier_corrupt_total", {{"tier", "redis"}, {"reason", reason}})++;
        logging::get("redis")->warn("redis: dropping corrupt value at {} ({})", key, to_string(why));
        (void)co_await client_->command(args("DEL", key));
        co_return make_error_code(why);
    }
    // Redis expires the key itself, but its clock and ours may differ slightly.
    if (decoded.value->retain_until <= clock::now()) co_return entry_ptr{};
    co_return decoded.value;
}

net::awaitable<error_code> redis_tier::store(std::string key, entry_ptr e) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(e->retain_until - clock::now()).count();
    if (ms <= 0) co_return error_code{};  // already past retention: nothing worth keeping
    auto r = co_await client_->command(args("SET", key, encode_entry(*e), "PX", std::to_string(ms)));
    if (!r) co_return r.error();
    if (r->is_error()) co_return make_error_code(redis_error::reply_error);
    co_return error_code{};
}

net::awaitable<error_code> redis_tier::erase(std::string key) {
    auto r = co_await client_->command(args("DEL", key));
    if (!r) co_return r.error();
    co_return error_code{};
}

net::awaitable<error_code> redis_tier::clear() {
    const std::string pattern = namespace_ + ":*";
    const std::string generation_prefix = namespace_ + "::";
    std::string cursor = "0";
    do {
        auto r = co_await client_->command(args("SCAN", cursor, "MATCH", pattern, "COUNT", "1000"));
        if (!r) co_return r.error();
        if (r->type != redis_value::kind::array || r->elements.size() != 2) {
            co_return make_error_code(redis_error::reply_error);
        }
        cursor = r->elements[0].str;
        std::vector<std::string> unlink{"UNLINK"};
        for (const auto& k : r->elements[1].elements) {
            if (!k.str.starts_with(generation_prefix)) unlink.push_back(k.str);
        }
        if (unlink.size() > 1) {
            auto d = co_await client_->command(std::move(unlink));
            if (!d) co_return d.error();
        }
    } while (cursor != "0");
    co_return error_code{};
}

}  // namespace cachecar::cache::redis
