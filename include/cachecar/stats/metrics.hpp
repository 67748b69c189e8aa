// Counters and histograms behind /stats and /metrics. Counters are created on first
// use and live as long as the registry (across reloads), so hot paths resolve a
// counter once and keep the reference.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

namespace cachecar::stats {

using counter = std::atomic<std::uint64_t>;

// How a request on a cacheable route was answered (the X-Cache value, lower-cased),
// plus the outcomes of the other request kinds.
enum class request_result { hit, miss, stale, bypass, pass, write, error, count_ };
std::string_view to_string(request_result);

// Fixed-bucket histogram (seconds), lock-free to observe.
class histogram {
public:
    static constexpr std::array<double, 14> bounds{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
                                                   0.1,    0.25,  0.5,    1,     2.5,   5,    10};
    void observe(double seconds);
    std::array<std::uint64_t, bounds.size() + 1> bucket_counts() const;  // non-cumulative; last = +Inf
    double sum() const;
    std::uint64_t count() const;

private:
    std::array<counter, bounds.size() + 1> buckets_{};
    std::atomic<std::uint64_t> sum_micros_{0};
};

// Per-route counters resolved once per config snapshot.
struct route_counters {
    std::array<counter*, static_cast<std::size_t>(request_result::count_)> requests{};
    counter* stores = nullptr;
    counter* purges = nullptr;  // write routes: categories purged
    counter* errors = nullptr;  // upstream failures answered 502/504
};

class registry {
public:
    registry();
    registry(const registry&) = delete;
    registry& operator=(const registry&) = delete;

    // A counter identified by metric name and label pairs, created at zero on first use.
    counter& get(std::string_view name, std::vector<std::pair<std::string, std::string>> labels);

    route_counters& route(std::string_view route_name);
    counter& requests(std::string_view route_name, request_result r);
    // cachecar_tier_ops_total{tier,op,outcome}; op: lookup|store|erase|clear, outcome: hit|miss|ok|error|skipped.
    counter& tier_op(std::string_view tier, std::string_view op, std::string_view outcome);

    histogram& upstream_seconds() { return upstream_seconds_; }
    // From a purge recorded in Redis to every live instance having applied it.
    histogram& purge_propagation_seconds() { return purge_propagation_seconds_; }

    // Gauges are sampled when rendering.
    struct gauge_sample {
        std::string name;
        std::vector<std::pair<std::string, std::string>> labels;
        double value = 0;
    };

    // Prometheus text exposition format 0.0.4.
    std::string render_prometheus(const std::vector<gauge_sample>& gauges) const;
    // Every counter as {name: [{labels..., value}]}, for /stats.
    struct sample {
        std::string name;
        std::vector<std::pair<std::string, std::string>> labels;
        std::uint64_t value = 0;
    };
    std::vector<sample> snapshot() const;

private:
    struct series {
        std::string name;
        std::vector<std::pair<std::string, std::string>> labels;
        std::unique_ptr<counter> value;
    };
    mutable std::mutex mutex_;
    std::map<std::string, series, std::less<>> series_;  // keyed by name{labels}
    std::map<std::string, std::unique_ptr<route_counters>, std::less<>> routes_;
    histogram upstream_seconds_;
    histogram purge_propagation_seconds_;
};

}  // namespace cachecar::stats
