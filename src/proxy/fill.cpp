// A miss: the generations noted before the fetch, the coalesced upstream fetch, the
// response streamed to the client while it is copied into the store, and the one
// routine that stores what a fetch brought (the refresh uses it too).
//
// Coalescing: requests behind a leader wait for the *stored entry* (they do not follow
// the stream). A leader whose response turns out not to be storable (its head says so,
// or its body grows past max_object_bytes) releases them at once to fetch for
// themselves, and marks the key "pass" for a while so later requests are not queued
// behind fetches that will not be stored (Varnish's hit-for-miss).
#include "stages.hpp"

#include <algorithm>

namespace cachecar::proxy {

namespace {

// Whether a response (received, or stored) carries a validator to revalidate it with.
template <class Fields>
bool has_validator(const Fields& fields) {
    return line_count(fields, "etag") > 0 || line_count(fields, "last-modified") > 0;
}

}  // namespace

bool heuristically_cacheable(unsigned status) {
    for (const unsigned s : {200u, 203u, 204u, 206u, 300u, 301u, 308u, 404u, 405u, 410u, 414u, 501u}) {
        if (s == status) return true;
    }
    return false;
}

std::string_view not_storable_reason(const route::compiled_route& route, bool credentialed,
                                     const bh::response_header<>& res, std::optional<std::uint64_t> size,
                                     std::size_t max_object_bytes) {
    const auto status = res.result_int();
    if (std::find(route.cfg.status.begin(), route.cfg.status.end(), status) == route.cfg.status.end()) return "status";
    if (line_count(res, "set-cookie") > 0) return "set_cookie";
    const auto directives = directives_of(res, route.cfg.cache_control_fields);
    const auto& cc = directives.list;
    if (has_directive(cc, "no-store")) return "no_store";
    if (has_directive(cc, "private")) return "private";
    // Vary: * says no stored response can ever be chosen for another request.
    if (vary_names(list_value(res, "vary")) == std::vector<std::string>{"*"}) return "vary_star";
    // RFC 9111 3.5: a shared cache stores the answer to a request with credentials only
    // when the origin says so; on a `shared` route every user would get it.
    if (route.cfg.shared && credentialed && !route.cfg.store_authenticated && !has_directive(cc, "public") &&
        !has_directive(cc, "s-maxage") && !has_directive(cc, "must-revalidate"))
        return "authenticated";
    if (size && *size > max_object_bytes) return "too_large";
    // Stored fields are replayed verbatim on hits; one that could not be written back
    // safely (a control character the parser let through) keeps the response out.
    for (const auto& f : res) {
        if (!cache::header_block::valid(f.name_string(), f.value())) return "bad_header";
    }
    // A response that must be validated before every reuse (no-cache, RFC 9111
    // 5.2.2.4), or is stale on arrival, is worth storing only with a validator to
    // revalidate it with; without one it would never be served.
    const bool validator = has_validator(res);
    if (has_directive(cc, "no-cache") && !validator) return "no_cache";
    if (route.cfg.ttl_from_origin) {
        auto lifetime = origin_freshness(res, clock::now(), directives);
        if (lifetime && lifetime->count() == 0 && !validator) return "origin_max_age_0";
        // Without freshness from the origin the route's ttl is a heuristic, which RFC
        // 9111 4.2.2 allows only for heuristically cacheable statuses (RFC 9110 15.1)
        // or a response marked public.
        if (!lifetime && !heuristically_cacheable(status) && !has_directive(cc, "public")) return "no_freshness";
    }
    return {};
}

namespace {

// The fields a cache keeps of a response: its end-to-end ones, less Age (recomputed
// for every hit from the entry's own age).
template <class F>
void for_each_stored_field(const bh::response_header<>& res, F&& f) {
    for_each_end_to_end_field(res, [&](const auto& field) {
        if (field.name() != bh::field::age) f(field);
    });
}

}  // namespace

bool may_revalidate(const cache::entry& e, const std::vector<std::string>& categories,
                    const std::vector<std::uint64_t>& generations) {
    if (!has_validator(e.headers)) return false;
    const auto now = cache::make_stamps(categories, generations);
    return std::equal(now.begin(), now.end(), e.stamps.begin(), e.stamps.end(),
                      [](const cache::category_stamp& a, const cache::category_stamp& b) {
                          return a.category == b.category && a.generation == b.generation;
                      });
}

void add_validators(request& upstream, const cache::entry& e) {
    if (auto etag = single_value(e.headers, "etag")) upstream.set(bh::field::if_none_match, *etag);
    if (auto modified = single_value(e.headers, "last-modified")) upstream.set(bh::field::if_modified_since, *modified);
}

bh::response_header<> freshened_head(const cache::entry& stored, const bh::response_header<>& not_modified) {
    bh::response_header<> out;
    out.result(stored.status);
    std::vector<std::string> replaced;
    for_each_stored_field(not_modified, [&](const auto& f) { replaced.emplace_back(f.name_string()); });
    for (const auto& f : stored.headers) {
        if (std::any_of(replaced.begin(), replaced.end(), [&](const std::string& n) { return same_field_name(n, f.name); }))
            continue;
        out.insert(f.name, f.value);
    }
    for_each_stored_field(not_modified, [&](const auto& f) { out.insert(f.name_string(), f.value()); });
    // How old the validated response is now: the 304's Age, if it gave one (Date, if
    // it gave one, replaced the stored Date above).
    if (auto age = single_value(not_modified, "age")) out.set(bh::field::age, *age);
    return out;
}

handler::store_plan make_plan(snapshot_ptr snap, const route::compiled_route& route, const std::string& key,
                              const request& req, const bh::response_header<>& head,
                              std::vector<cache::category_stamp> stamps) {
    const bool alias = snap->cfg.server.underscores_in_headers;
    handler::store_plan plan;
    plan.snap = std::move(snap);
    plan.route = &route;
    plan.key = key;
    plan.vary = vary_names(list_value(head, "vary"));
    if (!plan.vary.empty()) {
        plan.variant = variant_fingerprint(plan.vary, req, alias);
        plan.variant_key = variant_key(key, plan.vary, req, alias);
    }
    plan.entry = make_entry(head, route, std::move(stamps));
    return plan;
}

std::shared_ptr<cache::entry> make_entry(const bh::response_header<>& res, const route::compiled_route& route,
                                         std::vector<cache::category_stamp> stamps) {
    auto e = std::make_shared<cache::entry>();
    e->status = res.result_int();
    for_each_stored_field(res, [&](const auto& f) { e->headers.add(f.name_string(), f.value()); });
    e->headers.shrink_to_fit();
    const auto now = clock::now();
    // Born when the origin made it, as far as its Age and Date tell: a hit's Age is then
    // the corrected initial age plus the time cachecar has held it (RFC 9111 4.2.3).
    e->stored_at = now - initial_age(res, now);
    const auto directives = directives_of(res, route.cfg.cache_control_fields);
    const auto& cc = directives.list;
    config::duration ttl = route.cfg.ttl;
    std::optional<std::chrono::seconds> lifetime;
    if (route.cfg.ttl_from_origin) lifetime = origin_freshness(res, now, directives);
    if (lifetime) {
        ttl = *lifetime;
    } else if (e->status == 404 || e->status == 410) {
        ttl = std::min(ttl, route.cfg.negative_ttl);  // negative answers: briefly
    }
    // Stored, but never reused without validation (RFC 9111 5.2.2.4): stale at once.
    if (has_directive(cc, "no-cache")) ttl = config::duration(0);
    e->expires_at = now + ttl;
    const auto w = windows_for(route, cc);
    auto keep = std::max(w.if_error, w.while_revalidate);
    // A response with a validator is kept a route TTL past its expiry, so a later
    // request revalidates it (a 304 without the body) instead of fetching it whole.
    if (has_validator(e->headers)) keep = std::max(keep, route.cfg.ttl);
    e->retain_until = e->expires_at + keep;
    e->stamps = std::move(stamps);
    return e;
}

cache::entry_ptr handler::store(store_plan plan, std::string body) {
    plan.entry->body = std::move(body);
    cache::entry_ptr e = std::move(plan.entry);
    const auto& tiers = plan.route->cfg.tiers;
    if (plan.vary.empty()) {
        tiers_.store(tiers, plan.key, e);
    } else {
        // The marker tells later lookups which headers pick the variant.
        tiers_.store(tiers, plan.key, make_vary_marker(*e, plan.vary));
        tiers_.store(tiers, plan.variant_key, e);
    }
    ++*plan.snap->route_stats[plan.route->index]->stores;
    return e;
}

namespace {

// The miss's response on its way to the client, copied into the store as it passes,
// up to max_object_bytes. At the end the copy is stored and handed to the requests
// coalesced behind it; past the limit the copy is dropped (counted) and they are
// released at once, while the stream goes on. A stream that fails, or whose client
// goes away, stores nothing (the ticket then releases them too).
class fill_stream final : public http::body_stream {
public:
    fill_stream(handler& h, stats::registry& metrics, std::unique_ptr<http::upstream_exchange> x,
                handler::store_plan plan, cache::coalescer<fill_result>::ticket ticket, std::size_t max_object_bytes,
                double upstream_seconds, std::function<void()> on_too_large)
        : handler_(h),
          metrics_(metrics),
          exchange_(std::move(x)),
          plan_(std::move(plan)),
          ticket_(std::move(ticket)),
          max_object_bytes_(max_object_bytes),
          upstream_seconds_(upstream_seconds),
          on_too_large_(std::move(on_too_large)) {}

    // The client went away mid-stream (or stopped reading): a response being copied is
    // still read to its end, in the background and bounded by max_object_bytes, and
    // stored; its connection then goes back to the pool clean. nginx and Varnish finish
    // a cacheable fetch the same way, and the requests coalesced behind it get it.
    ~fill_stream() override {
        if (!copying_ || finished_) return;
        auto ex = net::make_strand(plan_.snap->upstream->executor());
        auto rest = [&h = handler_, x = std::move(exchange_), plan = std::move(plan_), ticket = std::move(ticket_),
                     copy = std::move(copy_), max = max_object_bytes_,
                     seconds = upstream_seconds_]() mutable -> net::awaitable<void> {
            for (;;) {
                auto piece = co_await x->next();
                if (!piece || copy.size() + piece->size() > max) co_return;  // the ticket releases the others
                if (piece->empty()) break;
                copy.append(*piece);
            }
            auto shared = std::make_shared<fill_result>();
            shared->vary = plan.vary;
            shared->variant = plan.variant;
            shared->upstream_seconds = seconds;
            shared->stored = h.store(std::move(plan), std::move(copy));
            ticket.publish(std::move(shared));
        };
        net::co_spawn(ex, std::move(rest), net::detached);
    }

    net::awaitable<result<std::string_view>> next() override {
        auto piece = co_await exchange_->next();
        if (!piece) {
            finished_ = true;
            co_return piece;  // nothing partial is stored; the ticket releases the others
        }
        if (copying_ && !piece->empty()) {
            if (copy_.size() + piece->size() > max_object_bytes_) {
                // Stored only up to max_object_bytes: drop the copy, let the stream go on.
                copying_ = false;
                std::string().swap(copy_);
                metrics_.get("cachecar_not_stored_total", {{"route", plan_.route->cfg.name}, {"reason", "too_large"}})++;
                ticket_.publish(nullptr);
                on_too_large_();
            } else {
                copy_.append(*piece);
            }
        }
        if (exchange_->complete()) {
            finished_ = true;
            // Stored before the last piece goes out: a client that has the whole answer
            // and asks again finds it.
            if (copying_) {
                copying_ = false;
                auto shared = std::make_shared<fill_result>();
                shared->vary = plan_.vary;
                shared->variant = plan_.variant;
                shared->upstream_seconds = upstream_seconds_;
                shared->stored = handler_.store(std::move(plan_), std::move(copy_));
                ticket_.publish(std::move(shared));
            }
        }
        co_return piece;
    }
    std::optional<std::uint64_t> size() const override { return exchange_->size(); }
    std::string_view trailers() const override { return exchange_->trailers(); }

private:
    handler& handler_;
    stats::registry& metrics_;
    std::unique_ptr<http::upstream_exchange> exchange_;
    handler::store_plan plan_;
    cache::coalescer<fill_result>::ticket ticket_;
    std::size_t max_object_bytes_;
    double upstream_seconds_;
    std::function<void()> on_too_large_;
    bool copying_ = true;
    bool finished_ = false;  // the body ended, or failed
    std::string copy_;
};

}  // namespace

net::awaitable<step> handler::fill(cacheable_request& r) {
    // Note the generations *before* fetching: if a purge lands while the fetch runs, the
    // entry is stamped with the old generation and is never served. The lookup may
    // have read them already (a route with a shared tier).
    result<std::vector<std::uint64_t>> generations = make_error_code(boost::system::errc::operation_canceled);
    if (r.found.generations) {
        generations = std::move(*r.found.generations);
    } else {
        auto current = co_await tiers_.generations().current(r.categories);
        generations = std::move(current);
    }
    std::string flight_key = r.entry_key;
    if (generations) {
        for (auto g : *generations) {
            flight_key += '/';
            flight_key += std::to_string(g);
        }
    }
    const bool may_store = generations.has_value();
    const bool alias = r.snap.cfg.server.underscores_in_headers;
    const auto limits = r.snap.cfg.limits;
    const bool has_stale = r.found.expired && !is_vary_marker(*r.found.expired);

    // Join the flight for this key, unless the key is passing (its last response was
    // not storable): then fetch alone, without making anyone wait.
    cache::coalescer<fill_result>::ticket ticket;
    if (!passing(r.entry_key)) {
        ticket = coalescer_.join(flight_key);
        if (!ticket.leader()) {
            auto shared = co_await ticket.wait(std::chrono::steady_clock::now() + limits.upstream_timeout);
            if (shared && shared->stored &&
                (shared->vary.empty() || variant_fingerprint(shared->vary, r.req, alias) == shared->variant)) {
                metrics_.get("cachecar_coalesced_total", {{"route", r.route.cfg.name}})++;
                if (shared->revalidated) {
                    // Behind a revalidation: the stored entry, confirmed by the backend.
                    r.count(stats::request_result::hit);
                    r.reply = reply_from_entry(r.req, shared->stored, "HIT", shared->tier, r.head, r.in.scratch,
                                               r.status("stale", "; fwd-status=304; collapsed"));
                    r.reply.access = {r.route.cfg.name, "revalidated", shared->tier, 0.0};
                    co_return step::done;
                }
                r.count(stats::request_result::miss);
                r.reply = reply_from_entry(r.req, shared->stored, "MISS", {}, r.head, r.in.scratch,
                                           r.status(r.fwd_reason(), "; collapsed"));
                r.reply.access = {r.route.cfg.name, "miss", "-", 0.0};
                co_return step::done;
            }
            if (shared && shared->error) {
                // The backend failed for the leader: the same answer for the others.
                metrics_.get("cachecar_coalesced_total", {{"route", r.route.cfg.name}})++;
                r.result_of_fill = std::move(shared);
                co_return has_stale ? step::stale_if_error : step::deliver_fetched;
            }
            ticket = {};  // not for sharing, or waited too long: fetch alone
        }
    }

    // An expired entry with a validator, not purged since, is revalidated: the backend
    // is asked conditionally and a 304 freshens it without the body crossing again.
    const cache::entry* validating =
        has_stale && may_store && may_revalidate(*r.found.expired, r.categories, *generations) ? r.found.expired.get()
                                                                                              : nullptr;
    double seconds = 0;
    auto opened = co_await open_upstream(r.in, r.snap, &r.route, seconds, validating);
    r.led = true;
    if (!opened) {
        auto failed = std::make_shared<fill_result>();
        failed->error = opened.error();
        failed->upstream_seconds = seconds;
        ticket.publish(failed);
        r.result_of_fill = std::move(failed);
        co_return has_stale ? step::stale_if_error : step::deliver_fetched;
    }
    std::unique_ptr<http::upstream_exchange> x = std::move(*opened);
    const auto& head = x->head();  // owned by the exchange, which outlives every use below
    const auto status = head.result_int();
    if (validating != nullptr) {
        metrics_.get("cachecar_validations_total",
                     {{"route", r.route.cfg.name}, {"outcome", status == 304 ? "not_modified" : "modified"}})++;
    }
    if (validating != nullptr && status == 304) {
        // The stored response, its fields freshened by the 304's (RFC 9111 4.3.4),
        // stamped with the generations noted before asking: a purge meanwhile wins.
        const auto merged = freshened_head(*validating, head);
        auto plan = make_plan(r.snap_ptr, r.route, r.key, r.req, merged, cache::make_stamps(r.categories, *generations));
        const auto reason =
            not_storable_reason(r.route, r.credentialed, merged, validating->body.size(), limits.max_object_bytes);
        cache::entry_ptr served;
        if (reason.empty()) {
            auto shared = std::make_shared<fill_result>();
            shared->vary = plan.vary;
            shared->variant = plan.variant;
            shared->upstream_seconds = seconds;
            shared->revalidated = true;
            shared->tier = config::to_string(r.found.expired_from);
            shared->stored = served = store(std::move(plan), validating->body);
            ticket.publish(std::move(shared));
        } else {
            // The backend now forbids reusing it: this client gets it once, nobody after.
            metrics_.get("cachecar_not_stored_total", {{"route", r.route.cfg.name}, {"reason", std::string(reason)}})++;
            ticket.publish(nullptr);
            plan.entry->body = validating->body;
            served = std::move(plan.entry);
        }
        r.count(stats::request_result::hit);
        const auto tier = config::to_string(r.found.expired_from);
        r.reply = reply_from_entry(r.req, served, "HIT", tier, r.head, r.in.scratch,
                                   r.status("stale", reason.empty() ? "; fwd-status=304; stored" : "; fwd-status=304"));
        r.reply.access = {r.route.cfg.name, "revalidated", tier, seconds};
        co_return step::done;
    }
    if (status >= 500) {
        ticket.publish(nullptr);
        if (has_stale) {
            const auto w = windows_for(r.route, *r.found.expired);
            if (clock::now() < r.found.expired->expires_at + w.if_error) {
                auto failed = std::make_shared<fill_result>();
                failed->upstream_seconds = seconds;
                r.result_of_fill = std::move(failed);
                co_return step::stale_if_error;  // the 5xx goes unread; its connection closes
            }
        }
    }
    r.count(stats::request_result::miss);
    const auto reason = may_store ? not_storable_reason(r.route, r.credentialed, head, x->size(), limits.max_object_bytes)
                                  : std::string_view("generations");
    if (!reason.empty()) {
        // For this requester alone: release the others now, and pass for a while
        // (except after a 5xx, likely passing itself, where coalescing shields the backend).
        if (may_store) metrics_.get("cachecar_not_stored_total", {{"route", r.route.cfg.name}, {"reason", std::string(reason)}})++;
        ticket.publish(nullptr);
        if (may_store && status < 500) mark_pass(r.entry_key);
        const auto forwarded = "; fwd-status=" + std::to_string(status);
        r.reply = reply_from_upstream(head, std::move(x), r.req, "MISS", r.status(r.fwd_reason(), forwarded));
        r.reply.access = {r.route.cfg.name, "miss", "-", seconds};
        co_return step::done;
    }
    const auto stored_status = "; fwd-status=" + std::to_string(status) + "; stored";

    auto plan = make_plan(r.snap_ptr, r.route, r.key, r.req, head, cache::make_stamps(r.categories, *generations));
    // The client's validators were not forwarded (so the response can be stored); a
    // match is answered here, with a 304.
    const bool answer_304 = status == 200 && not_modified(r.req, single_value(head, "etag").value_or(""),
                                                          single_value(head, "last-modified").value_or(""));
    if (r.head || answer_304) {
        // The client gets no body: read it here, bounded, to store it.
        std::string body;
        const error_code ec = co_await http::read_whole(*x, body, limits.max_object_bytes);
        cache::entry_ptr stored;
        if (!ec) {
            auto shared = std::make_shared<fill_result>();
            shared->vary = plan.vary;
            shared->variant = plan.variant;
            shared->upstream_seconds = seconds;
            shared->stored = stored = store(std::move(plan), std::move(body));
            ticket.publish(std::move(shared));
        } else {
            ticket.publish(nullptr);
            if (ec == bh::error::body_limit) {
                metrics_.get("cachecar_not_stored_total", {{"route", r.route.cfg.name}, {"reason", "too_large"}})++;
                mark_pass(r.entry_key);
            }
        }
        if (answer_304) {
            r.reply = not_modified_reply(stored ? stored->headers : plan.entry->headers, "MISS", {}, 0,
                                         r.status(r.fwd_reason(), stored_status), stored.get());
        } else if (stored) {
            r.reply = reply_from_entry(r.req, stored, "MISS", {}, true, r.in.scratch, r.status(r.fwd_reason(), stored_status));
        } else {
            r.reply = reply_from_upstream(head, nullptr, r.req, "MISS", r.status(r.fwd_reason()));
        }
        r.reply.access = {r.route.cfg.name, "miss", "-", seconds};
        co_return step::done;
    }

    // Stream to the client, copying into the store on the way.
    auto on_too_large = [this, key = r.entry_key] { mark_pass(key); };
    auto body = std::make_unique<fill_stream>(*this, metrics_, std::move(x), std::move(plan), std::move(ticket),
                                              limits.max_object_bytes, seconds, std::move(on_too_large));
    r.reply = reply_from_upstream(head, std::move(body), r.req, "MISS", r.status(r.fwd_reason(), stored_status));
    r.reply.access = {r.route.cfg.name, "miss", "-", seconds};
    co_return step::done;
}

}  // namespace cachecar::proxy
