// stale-while-revalidate (RFC 5861): answer from the expired entry now, refresh it
// behind the answer, one refresh per key at a time.
#include "stages.hpp"

namespace cachecar::proxy {

step handler::revalidate(cacheable_request& r) {
    start_refresh(r.req, r.in.conn, r.snap_ptr, &r.route, r.key, r.entry_key, r.categories, r.credentialed,
                  r.found.expired);
    metrics_.get("cachecar_stale_served_total", {{"route", r.route.cfg.name}, {"why", "revalidate"}})++;
    r.count(stats::request_result::stale);
    r.reply = reply_from_entry(r.req, r.found.expired, "STALE", config::to_string(r.found.expired_from), r.head,
                               r.in.scratch, r.status());
    r.reply.access = {r.route.cfg.name, "stale", config::to_string(r.found.expired_from), -1};
    return step::done;
}

void handler::start_refresh(const request& req, const http::connection_info& conn, snapshot_ptr snap,
                            const route::compiled_route* route, std::string key, std::string entry_key,
                            std::vector<std::string> categories, bool credentialed, cache::entry_ptr stale) {
    {
        std::lock_guard lock(refreshing_->mutex);
        if (!refreshing_->keys.insert(entry_key).second) return;  // one refresh per key
    }
    // The refresh outlives this request: it owns copies of everything it reads.
    net::co_spawn(
        net::make_strand(snap->upstream->executor()),
        [this, req, conn, snap, route, key = std::move(key), entry_key = std::move(entry_key),
         categories = std::move(categories), credentialed, stale = std::move(stale),
         refreshing = refreshing_]() -> net::awaitable<void> {
            // Touches only the shared key set: the frame may be destroyed after the
            // proxy, when the I/O context is torn down.
            struct done_guard {
                std::shared_ptr<refresh_set> set;
                std::string key;
                ~done_guard() {
                    std::lock_guard lock(set->mutex);
                    set->keys.erase(key);
                }
            } guard{refreshing, entry_key};
            auto generations = co_await tiers_.generations().current(categories);
            if (!generations) co_return;
            // Conditionally when the stale entry has a validator and no purge reached it
            // since; a 304 freshens it without the body.
            const bool conditional = stale && may_revalidate(*stale, categories, *generations);
            auto upstream_req = make_upstream_request(req, conn.client_address, true, true);
            if (conditional) add_validators(upstream_req, *stale);
            // In memory, bounded: a response too large to store is not worth reading.
            const auto max = snap->cfg.limits.max_object_bytes;
            auto sent = co_await snap->upstream->send(std::move(upstream_req), max);
            if (!sent) co_return;
            const bool not_modified = conditional && sent->result_int() == 304;
            if (conditional) {
                metrics_.get("cachecar_validations_total",
                             {{"route", route->cfg.name}, {"outcome", not_modified ? "not_modified" : "modified"}})++;
            }
            const auto head = not_modified ? freshened_head(*stale, sent->base()) : sent->base();
            std::string body = not_modified ? stale->body : std::move(sent->body());
            if (!not_storable_reason(*route, credentialed, head, body.size(), max).empty()) co_return;
            store(make_plan(snap, *route, key, req, head, cache::make_stamps(categories, *generations)), std::move(body));
            metrics_.get("cachecar_revalidations_total", {{"route", route->cfg.name}})++;
        },
        net::detached);
}

}  // namespace cachecar::proxy
