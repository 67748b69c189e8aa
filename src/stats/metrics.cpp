#include <cachecar/stats/metrics.hpp>

#include <cmath>
#include <cstdio>
#include <set>

namespace cachecar::stats {

std::string_view to_string(request_result r) {
    switch (r) {
    case request_result::hit: return "hit";
    case request_result::miss: return "miss";
    case request_result::stale: return "stale";
    case request_result::bypass: return "bypass";
    case request_result::pass: return "pass";
    case request_result::write: return "write";
    case request_result::error: return "error";
    case request_result::count_: break;
    }
    return "unknown";
}

void histogram::observe(double seconds) {
    std::size_t i = 0;
    while (i < bounds.size() && seconds > bounds[i]) ++i;
    buckets_[i].fetch_add(1, std::memory_order_relaxed);
    sum_micros_.fetch_add(static_cast<std::uint64_t>(std::llround(seconds * 1e6)), std::memory_order_relaxed);
}

std::array<std::uint64_t, histogram::bounds.size() + 1> histogram::bucket_counts() const {
    std::array<std::uint64_t, bounds.size() + 1> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
}

double histogram::sum() const { return static_cast<double>(sum_micros_.load(std::memory_order_relaxed)) / 1e6; }

std::uint64_t histogram::count() const {
    std::uint64_t n = 0;
    for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
    return n;
}

namespace {

std::string escape_label(std::string_view v) {
    std::string out;
    out.reserve(v.size());
    for (char c : v) {
        if (c == '\\' || c == '"') {
            out += '\\';
            out += c;
        } else if (c == '\n') {
            out += "\\n";
        } else {
            out += c;
        }
    }
    return out;
}

std::string series_id(std::string_view name, const std::vector<std::pair<std::string, std::string>>& labels) {
    std::string id(name);
    if (labels.empty()) return id;
    id += '{';
    bool first = true;
    for (const auto& [k, v] : labels) {
        if (!first) id += ',';
        first = false;
        id += k;
        id += "=\"";
        id += escape_label(v);
        id += '"';
    }
    id += '}';
    return id;
}

std::string format_double(double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.9g", v);
    return buf;
}

// HELP texts for the families cachecar exports; unknown families get a generic one.
std::string_view help_for(std::string_view name) {
    if (name == "cachecar_requests_total") return "Requests by route and result (hit, miss, stale, bypass, pass, write, error); route \"-\" = matched no route.";
    if (name == "cachecar_tier_ops_total") return "Tier operations by tier, operation and outcome.";
    if (name == "cachecar_route_stores_total") return "Responses stored, by route.";
    if (name == "cachecar_route_purges_total") return "Category purges triggered, by route.";
    if (name == "cachecar_route_errors_total") return "Requests answered with an error because the upstream failed, by route.";
    if (name == "cachecar_stale_served_total") return "Expired entries served because the upstream failed (stale_if_error), by route.";
    if (name == "cachecar_upstream_errors_total") return "Upstream failures by kind (connect, timeout, io, status_5xx).";
    if (name == "cachecar_coalesced_total") return "Requests answered by another request's upstream fetch.";
    if (name == "cachecar_not_stored_total") return "Cacheable responses not stored, by reason.";
    if (name == "cachecar_bad_requests_total") return "Requests rejected before routing, by status.";
    if (name == "cachecar_connections_refused_total") return "Client connections refused at max_connections.";
    if (name == "cachecar_reloads_total") return "Config reloads by outcome.";
    if (name == "cachecar_purges_total") return "Categories purged, by source (write route or admin).";
    return "cachecar counter.";
}

}  // namespace

registry::registry() = default;

counter& registry::get(std::string_view name, std::vector<std::pair<std::string, std::string>> labels) {
    auto id = series_id(name, labels);
    std::lock_guard lock(mutex_);
    auto it = series_.find(id);
    if (it == series_.end()) {
        series s{std::string(name), std::move(labels), std::make_unique<counter>(0)};
        it = series_.emplace(std::move(id), std::move(s)).first;
    }
    return *it->second.value;
}

route_counters& registry::route(std::string_view route_name) {
    {
        std::lock_guard lock(mutex_);
        if (auto it = routes_.find(route_name); it != routes_.end()) return *it->second;
    }
    auto rc = std::make_unique<route_counters>();
    for (std::size_t i = 0; i < rc->requests.size(); ++i) {
        rc->requests[i] = &get("cachecar_requests_total",
                               {{"route", std::string(route_name)},
                                {"result", std::string(to_string(static_cast<request_result>(i)))}});
    }
    rc->stores = &get("cachecar_route_stores_total", {{"route", std::string(route_name)}});
    rc->purges = &get("cachecar_route_purges_total", {{"route", std::string(route_name)}});
    rc->errors = &get("cachecar_route_errors_total", {{"route", std::string(route_name)}});
    std::lock_guard lock(mutex_);
    auto [it, inserted] = routes_.emplace(std::string(route_name), std::move(rc));
    return *it->second;
}

counter& registry::requests(std::string_view route_name, request_result r) {
    return *route(route_name).requests[static_cast<std::size_t>(r)];
}

counter& registry::tier_op(std::string_view tier, std::string_view op, std::string_view outcome) {
    return get("cachecar_tier_ops_total", {{"tier", std::string(tier)}, {"op", std::string(op)}, {"outcome", std::string(outcome)}});
}

std::vector<registry::sample> registry::snapshot() const {
    std::vector<sample> out;
    std::lock_guard lock(mutex_);
    out.reserve(series_.size());
    for (const auto& [id, s] : series_) out.push_back({s.name, s.labels, s.value->load(std::memory_order_relaxed)});
    return out;
}

std::string registry::render_prometheus(const std::vector<gauge_sample>& gauges) const {
    std::string out;
    std::set<std::string, std::less<>> announced;
    auto announce = [&](std::string_view name, std::string_view type, std::string_view help) {
        if (announced.contains(name)) return;
        announced.emplace(name);
        out += "# HELP ";
        out += name;
        out += ' ';
        out += help;
        out += "\n# TYPE ";
        out += name;
        out += ' ';
        out += type;
        out += '\n';
    };
    for (const auto& s : snapshot()) {
        announce(s.name, "counter", help_for(s.name));
        out += series_id(s.name, s.labels);
        out += ' ';
        out += std::to_string(s.value);
        out += '\n';
    }
    for (const auto& g : gauges) {
        announce(g.name, "gauge", "cachecar gauge.");
        out += series_id(g.name, g.labels);
        out += ' ';
        out += format_double(g.value);
        out += '\n';
    }
    auto render_histogram = [&](const std::string& name, const char* help, const histogram& h) {
        announce(name, "histogram", help);
        const auto counts = h.bucket_counts();
        std::uint64_t cumulative = 0;
        for (std::size_t i = 0; i < histogram::bounds.size(); ++i) {
            cumulative += counts[i];
            out += name + "_bucket{le=\"" + format_double(histogram::bounds[i]) + "\"} " + std::to_string(cumulative) + '\n';
        }
        cumulative += counts.back();
        out += name + "_bucket{le=\"+Inf\"} " + std::to_string(cumulative) + '\n';
        out += name + "_sum " + format_double(h.sum()) + '\n';
        out += name + "_count " + std::to_string(cumulative) + '\n';
    };
    render_histogram("cachecar_upstream_seconds", "Time to receive an upstream response, in seconds.", upstream_seconds_);
    render_histogram("cachecar_purge_propagation_seconds",
                     "From a purge recorded in Redis to every live instance having applied it, in seconds.",
                     purge_propagation_seconds_);
    return out;
}

}  // namespace cachecar::stats
