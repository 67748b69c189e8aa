#include "support/client_load.hpp"

#include <algorithm>

namespace cachecar::test {

std::size_t load_summary::count(unsigned status) const {
    return static_cast<std::size_t>(
        std::count_if(outcomes.begin(), outcomes.end(), [&](const auto& o) { return o.status == status; }));
}

std::size_t load_summary::count_x_cache(const std::string& value) const {
    return static_cast<std::size_t>(
        std::count_if(outcomes.begin(), outcomes.end(), [&](const auto& o) { return o.x_cache == value; }));
}

std::chrono::milliseconds load_summary::slowest() const {
    std::chrono::milliseconds worst{0};
    for (const auto& o : outcomes) worst = std::max(worst, o.took);
    return worst;
}

std::string load_summary::describe() const {
    std::map<unsigned, std::size_t> by_status;
    for (const auto& o : outcomes) ++by_status[o.status];
    std::string text;
    for (const auto& [status, n] : by_status) {
        // Appended piece by piece: GCC 12 at -O3 reports a false -Wstringop-overflow on
        // `const char* + std::string&&` here.
        if (!text.empty()) text += ' ';
        text.append(std::to_string(status)).append("x").append(std::to_string(n));
    }
    return text + " (slowest " + std::to_string(slowest().count()) + " ms)";
}

std::vector<std::string> write_violations(const load_summary& s, const std::vector<origin_request>& at_origin) {
    std::map<std::string, std::size_t> received;
    for (const auto& r : at_origin) {
        if (r.method == "POST") ++received[r.target];
    }
    std::vector<std::string> out;
    for (const auto& o : s.outcomes) {
        if (o.request.method != "POST") continue;
        const auto n = received.contains(o.request.target) ? received[o.request.target] : 0;
        if (n > 1) out.push_back(o.request.target + " reached the origin " + std::to_string(n) + " times");
        if (n == 0 && o.status >= 200 && o.status < 300) {
            out.push_back(o.request.target + " got " + std::to_string(o.status) + " but never reached the origin");
        }
    }
    return out;
}

std::function<load_request(std::size_t n)> reads_and_writes(std::function<std::string(std::size_t n)> read,
                                                            std::string write_path) {
    return [read = std::move(read), write_path = std::move(write_path)](std::size_t n) {
        if (n % 4 == 3) return load_request{"POST", write_path + "?id=" + std::to_string(n), "{}"};
        return load_request{"GET", read(n), {}};
    };
}

client_load::client_load(std::uint16_t port, int threads, request_fn make, std::chrono::milliseconds timeout)
    : port_(port), make_(std::move(make)), timeout_(timeout) {
    for (int t = 0; t < threads; ++t) {
        threads_.emplace_back([this] {
            while (!stop_) {
                load_outcome o;
                o.n = next_++;
                o.request = make_(o.n);
                const auto t0 = std::chrono::steady_clock::now();
                auto r = http_request(port_, o.request.method, o.request.target, {}, o.request.body, timeout_);
                o.took = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0);
                o.status = r.status;
                o.x_cache = r.header("x-cache");
                {
                    std::lock_guard lock(mutex_);
                    outcomes_.push_back(std::move(o));
                }
                ++done_;
            }
        });
    }
}

client_load::~client_load() { stop(); }

bool client_load::wait_for(std::size_t n, std::chrono::milliseconds limit) const {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (done_.load() < n) {
        if (std::chrono::steady_clock::now() >= deadline) return false;
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return true;
}

load_summary client_load::stop() {
    stop_ = true;
    for (auto& t : threads_) {
        if (t.joinable()) t.join();
    }
    std::lock_guard lock(mutex_);
    load_summary out;
    out.outcomes = outcomes_;
    std::sort(out.outcomes.begin(), out.outcomes.end(), [](const auto& a, const auto& b) { return a.n < b.n; });
    return out;
}

}  // namespace cachecar::test
