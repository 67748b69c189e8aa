#include <cachecar/admin/admin_api.hpp>
#include <cachecar/util/ascii.hpp>
#include <cachecar/logging.hpp>

#include <boost/json.hpp>
#include <spdlog/spdlog.h>

#include <map>

namespace cachecar::admin {

namespace bh = beast::http;
namespace json = boost::json;

namespace {

http::response json_response(unsigned status, const json::value& body) {
    http::response res{static_cast<bh::status>(status), 11};
    res.set(bh::field::content_type, "application/json");
    res.set(bh::field::cache_control, "no-store");
    res.body() = json::serialize(body) + "\n";
    return res;
}

http::reply json_reply(unsigned status, const json::value& body) { return http::make_reply(json_response(status, body)); }

http::reply error_json(unsigned status, std::string_view message) {
    return json_reply(status, json::object{{"error", message}});
}

// Compares without an early exit so response timing does not leak how much of the
// token matched (its length may leak; that is not the secret).
bool constant_time_equal(std::string_view a, std::string_view b) {
    if (a.size() != b.size()) return false;
    unsigned char diff = 0;
    for (std::size_t i = 0; i < a.size(); ++i) diff |= static_cast<unsigned char>(a[i] ^ b[i]);
    return diff == 0;
}

std::string_view tier_status(const cache::tier_chain& tiers, const config::config& cfg, config::tier_kind kind) {
    const bool configured = kind == config::tier_kind::memory ||
                            (kind == config::tier_kind::redis && cfg.tiers.redis) ||
                            (kind == config::tier_kind::mongo && cfg.tiers.mongo);
    if (!configured) return "disabled";
    auto t = tiers.find(kind);
    if (!t) return "down";
    return t->state() == cache::tier_state::up ? "up" : "down";
}

constexpr config::tier_kind all_kinds[] = {config::tier_kind::memory, config::tier_kind::redis,
                                           config::tier_kind::mongo};

}  // namespace

admin_api::admin_api(snapshot_holder& snapshots, cache::tier_chain& tiers, stats::registry& metrics,
                     admin_hooks hooks)
    : snapshots_(snapshots), tiers_(tiers), metrics_(metrics), hooks_(std::move(hooks)) {}

config::limits_config admin_api::limits() const {
    auto l = snapshots_.load()->cfg.limits;
    // Admin requests are small JSON documents; no reason to accept megabytes.
    l.max_body_bytes = std::min<std::size_t>(l.max_body_bytes, 1024 * 1024);
    l.max_upload_bytes = l.max_body_bytes;
    l.max_connections = 256;
    return l;
}

void admin_api::on_complete(const http::request& req, const http::reply& r, const http::connection_info& conn,
                            const http::delivery&) {
    if (req.method() != bh::verb::get) {
        logging::get("admin")->info("admin: {} {} {} -> {}", conn.client_address, req.method_string(), req.target(), r.status);
    }
}

void admin_api::on_rejected(unsigned status) {
    metrics_.get("cachecar_admin_rejected_total", {{"status", std::to_string(status)}})++;
}

bool admin_api::authorized(const http::request& req) const {
    const auto& token = snapshots_.load()->cfg.server.admin_token;
    if (token.empty()) return true;
    // One Authorization line only: with two, which one counts would be a guess.
    const auto auth = http::single_value(req.base(), "authorization");
    if (!auth) return false;
    constexpr std::string_view scheme = "Bearer ";  // auth-scheme is case-insensitive (RFC 9110 11.1)
    if (auth->size() <= scheme.size() || !util::iequals(auth->substr(0, scheme.size()), scheme)) return false;
    return constant_time_equal(http::trim(auth->substr(scheme.size())), token);
}

std::string admin_api::health_json(bool& degraded) const {
    auto snap = snapshots_.load();
    json::object tiers;
    degraded = false;
    for (auto kind : all_kinds) {
        auto s = tier_status(tiers_, snap->cfg, kind);
        if (s == "down") degraded = true;
        tiers[config::to_string(kind)] = s;
    }
    return json::serialize(json::object{{"status", degraded ? "degraded" : "ok"}, {"tiers", std::move(tiers)}});
}

std::string admin_api::stats_json() const {
    auto snap = snapshots_.load();
    json::object routes;
    json::object tiers;
    json::object other;
    for (const auto& s : metrics_.snapshot()) {
        auto label = [&](std::string_view name) -> std::string {
            for (const auto& [k, v] : s.labels) {
                if (k == name) return v;
            }
            return {};
        };
        if (s.name == "cachecar_requests_total") {
            auto& r = routes[label("route")];
            if (!r.is_object()) r = json::object{};
            r.as_object()[label("result")] = s.value;
        } else if (s.name == "cachecar_route_stores_total" || s.name == "cachecar_route_purges_total" ||
                   s.name == "cachecar_route_errors_total") {
            auto& r = routes[label("route")];
            if (!r.is_object()) r = json::object{};
            r.as_object()[s.name == "cachecar_route_stores_total"   ? "stores"
                          : s.name == "cachecar_route_purges_total" ? "purges"
                                                                    : "errors"] = s.value;
        } else if (s.name == "cachecar_tier_ops_total") {
            auto& t = tiers[label("tier")];
            if (!t.is_object()) t = json::object{};
            t.as_object()[label("op") + "_" + label("outcome")] = s.value;
        } else {
            std::string id = s.name;
            for (const auto& [k, v] : s.labels) id += "{" + k + "=" + v + "}";
            other[id] = s.value;
        }
    }
    for (auto kind : all_kinds) {
        auto name = config::to_string(kind);
        auto& t = tiers[name];
        if (!t.is_object()) t = json::object{};
        auto& obj = t.as_object();
        obj["state"] = tier_status(tiers_, snap->cfg, kind);
        if (auto tier = tiers_.find(kind)) {
            auto u = tier->usage();
            obj["entries"] = u.entries;
            obj["bytes"] = u.bytes;
        }
        if (kind == config::tier_kind::memory) {
            obj["max_bytes"] = tiers_.memory().max_bytes();
            obj["evictions"] = tiers_.memory().evictions();
        }
    }
    auto& h = metrics_.upstream_seconds();
    json::object upstream{{"requests", h.count()}, {"seconds_total", h.sum()}};
    return json::serialize(json::object{
        {"routes", std::move(routes)}, {"tiers", std::move(tiers)}, {"upstream", std::move(upstream)},
        {"counters", std::move(other)}});
}

std::string admin_api::metrics_text() const {
    std::vector<stats::registry::gauge_sample> gauges;
    auto snap = snapshots_.load();
    for (auto kind : all_kinds) {
        auto s = tier_status(tiers_, snap->cfg, kind);
        if (s == "disabled") continue;
        gauges.push_back({"cachecar_tier_up", {{"tier", std::string(config::to_string(kind))}}, s == "up" ? 1.0 : 0.0});
        if (auto t = tiers_.find(kind)) {
            auto u = t->usage();
            gauges.push_back({"cachecar_tier_entries", {{"tier", std::string(config::to_string(kind))}},
                              static_cast<double>(u.entries)});
            gauges.push_back({"cachecar_tier_bytes", {{"tier", std::string(config::to_string(kind))}},
                              static_cast<double>(u.bytes)});
        }
    }
    gauges.push_back({"cachecar_memory_max_bytes", {}, static_cast<double>(tiers_.memory().max_bytes())});
    gauges.push_back({"cachecar_memory_evictions", {}, static_cast<double>(tiers_.memory().evictions())});
    if (hooks_.gauges) {
        for (auto& g : hooks_.gauges()) gauges.push_back(std::move(g));
    }
    return metrics_.render_prometheus(gauges);
}

net::awaitable<http::reply> admin_api::purge(const http::request& req) {
    error_code ec;
    auto doc = json::parse(req.body(), ec);
    if (ec || !doc.is_object()) co_return error_json(400, "body must be a JSON object: {\"categories\": [...]} or {\"all\": true}");
    const auto& obj = doc.as_object();
    for (const auto& [k, v] : obj) {
        if (k != "categories" && k != "all") co_return error_json(400, "unknown field \"" + std::string(k) + "\"");
    }
    std::vector<std::string> categories;
    bool all = false;
    if (auto* a = obj.if_contains("all")) {
        if (!a->is_bool()) co_return error_json(400, "\"all\" must be true or false");
        all = a->as_bool();
    }
    if (auto* c = obj.if_contains("categories")) {
        if (!c->is_array()) co_return error_json(400, "\"categories\" must be an array of strings");
        for (const auto& v : c->as_array()) {
            if (!v.is_string() || v.as_string().empty()) co_return error_json(400, "\"categories\" must be an array of non-empty strings");
            categories.emplace_back(v.as_string());
        }
    }
    if (!all && categories.empty()) co_return error_json(400, "nothing to purge: give \"categories\" or \"all\": true");
    if (all) categories.emplace_back(cache::all_category);

    auto bumped = co_await tiers_.generations().bump(categories);
    if (!bumped) co_return error_json(503, "purge failed: " + bumped.error().message());
    std::uint64_t dropped = 0;
    if (all) {
        dropped = tiers_.memory().usage().entries;
        co_await tiers_.clear_all();
    }
    metrics_.get("cachecar_purges_total", {{"source", "admin"}, {"outcome", "ok"}}) += categories.size();
    json::object generations;
    for (std::size_t i = 0; i < categories.size(); ++i) generations[categories[i]] = (*bumped)[i];
    co_return json_reply(200, json::object{{"purged", categories.size()},
                                           {"all", all},
                                           {"generations", std::move(generations)},
                                           {"entries_dropped", dropped}});
}

http::reply admin_api::reload() {
    if (!hooks_.reload) return error_json(501, "reload is not available");
    auto outcome = hooks_.reload();
    json::array errors;
    for (const auto& e : outcome.errors) errors.emplace_back(e);
    json::array warnings;
    for (const auto& w : outcome.warnings) warnings.emplace_back(w);
    return json_reply(outcome.ok ? 200 : 400, json::object{{"status", outcome.ok ? "reloaded" : "rejected"},
                                                           {"errors", std::move(errors)},
                                                           {"warnings", std::move(warnings)}});
}

net::awaitable<http::reply> admin_api::handle(http::inbound& in) {
    auto& req = in.req;
    const auto path = http::split(req.target()).path;
    const bool get = req.method() == bh::verb::get || req.method() == bh::verb::head;
    const bool post = req.method() == bh::verb::post;

    if (path == "/health" || path == "/stats" || path == "/metrics") {
        if (!get) co_return error_json(405, "use GET");
        http::response res{bh::status::ok, 11};
        res.set(bh::field::cache_control, "no-store");
        if (path == "/health") {
            bool degraded = false;
            res.body() = health_json(degraded) + "\n";
            res.set(bh::field::content_type, "application/json");
        } else if (path == "/stats") {
            res.body() = stats_json() + "\n";
            res.set(bh::field::content_type, "application/json");
        } else {
            res.body() = metrics_text();
            res.set(bh::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        }
        auto r = http::make_reply(std::move(res));
        r.head_only = req.method() == bh::verb::head;
        co_return r;
    }
    if (path == "/purge" || path == "/reload") {
        if (!post) co_return error_json(405, "use POST");
        if (!authorized(req)) {
            auto res = json_response(401, json::object{{"error", "admin token required"}});
            res.set(bh::field::www_authenticate, "Bearer realm=\"cachecar\"");
            co_return http::make_reply(std::move(res));
        }
        if (path == "/purge") {
            const error_code ec = co_await http::read_whole(in.body, req.body(), limits().max_body_bytes);
            if (ec) {
                auto r = error_json(ec == bh::error::body_limit ? 413 : 400, "cannot read the request body");
                r.close = true;
                co_return r;
            }
            http::reply purged = co_await purge(req);  // named: see coalescer.hpp (GCC 12 and co_await)
            co_return purged;
        }
        co_return reload();
    }
    co_return error_json(404, "no such endpoint; try /health, /stats, /metrics, POST /purge, POST /reload");
}

}  // namespace cachecar::admin
