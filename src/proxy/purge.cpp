// Write routes: forward (the body streams to the backend), and on a 2xx purge the
// categories before the client sees the answer (once it has the answer to its write,
// no read may return what was cached before it); then the answer streams back.
#include "stages.hpp"

#include <cachecar/route/key_builder.hpp>

#include <fmt/format.h>
#include <spdlog/spdlog.h>

namespace cachecar::proxy {

net::awaitable<http::reply> handler::serve_write(http::inbound& in, const snapshot& snap, const route_decision& decision) {
    const auto& inv = *decision.invalidation.target;
    auto& counters = *snap.invalidation_stats[inv.index];
    double seconds = 0;
    auto opened = co_await open_upstream(in, snap, nullptr, seconds);
    http::reply r;
    if (!opened) {
        ++*counters.errors;
        r = failure_reply(opened.error(), {});
        r.access = {"invalidate", "error", "-", seconds};
        co_return r;
    }
    auto x = std::move(*opened);
    const auto status = x->head().result_int();
    if (status >= 200 && status < 300) {
        // A path the backend may read another way purges for both readings.
        const bool alias = snap.cfg.server.underscores_in_headers;
        std::vector<std::string> categories;
        for (const auto* m : {&decision.invalidation, &decision.invalidation_resolved}) {
            if (!*m) continue;
            const keyed_request keyed(in.req, m->params, alias);
            for (auto& c : route::expand_categories(m->target->purges, keyed.view())) {
                if (std::find(categories.begin(), categories.end(), c) == categories.end()) categories.push_back(std::move(c));
            }
        }
        auto bumped = co_await tiers_.generations().bump(categories);
        if (bumped) {
            *counters.purges += categories.size();
            metrics_.get("cachecar_purges_total", {{"source", "write"}, {"outcome", "ok"}}) += categories.size();
        } else {
            // The backend has done the write, so its answer goes to the client. The
            // generation store keeps the purge pending and serves nothing it could
            // affect until the purge lands (see redis_generations.hpp).
            if (auto held_back = deferred_purge_log_.admit()) {
                log_->error("purge of {} categories deferred: {}{}", categories.size(), bumped.error().message(),
                            *held_back ? fmt::format(" ({} more deferred purges not logged)", *held_back) : "");
            }
        }
    }
    ++*counters.requests[static_cast<std::size_t>(stats::request_result::write)];
    const auto& head = x->head();
    r = reply_from_upstream(head, std::move(x), in.req, {});
    r.access = {"invalidate", "write", "-", seconds};
    co_return r;
}

}  // namespace cachecar::proxy
