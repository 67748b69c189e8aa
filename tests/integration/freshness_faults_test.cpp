// Freshness under faults (#16): two cachecar daemons share one redis-server, each
// through its own TCP relay, while clients write and read through both at random.
// Every operation's real-time interval is recorded and a history checker applies the
// guarantee of README "Freshness under faults": a read that starts after a write to
// the same key has returned must not see an older version -- with purge confirmation
// on (the default) not even from the other instance's memory tier, so the checker
// allows no window at all. Faults, each several times: Redis
// paused, killed and restarted empty, flushed; one instance's path frozen or cut (the
// writer's and the reader's); the writer SIGKILLed right after its write was answered.
//
// CACHECAR_FRESHNESS_ROUNDS (default 2) is how many times the fault sequence runs.
#include "support/daemon_process.hpp"
#include "support/eventually.hpp"
#include "support/http_client.hpp"
#include "support/redis_server.hpp"
#include "support/tcp_relay.hpp"
#include "support/test_origin.hpp"

#include <gtest/gtest.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <algorithm>
#include <mutex>
#include <random>
#include <thread>
#include <vector>

namespace cachecar::test {
namespace {

using namespace std::chrono_literals;
using steady = std::chrono::steady_clock;

constexpr int keys = 6;
// Purge confirmation is on (the default): no read may be older, memory tiers included.
constexpr auto memory_window = 0ms;

// The backend: one version counter per key; a write bumps it, a read reports it.
class versioned_backend {
public:
    origin_response answer(const origin_request& req) {
        const auto k = req.target.substr(req.target.find("k=") + 2);
        std::lock_guard lock(mutex_);
        auto& v = versions_[k];
        if (req.method == "POST") ++v;
        return origin_response{200, {{"Content-Type", "text/plain"}}, "v=" + std::to_string(v)};
    }

private:
    std::mutex mutex_;
    std::map<std::string, std::uint64_t> versions_;
};

struct operation {
    bool write = false;
    int instance = 0;
    int key = 0;
    std::string path;  // which route: both tiers, or Redis alone
    std::uint64_t version = 0;
    steady::time_point start, end;
    unsigned status = 0;
    std::string x_cache, tier;
};

std::uint64_t version_of(const std::string& body) {
    return body.rfind("v=", 0) == 0 ? std::stoull(body.substr(2)) : 0;
}

class freshness_faults_test : public ::testing::Test {
protected:
    void SetUp() override {
        origin_.set_handler([this](const origin_request& r, std::size_t) { return backend_.answer(r); });
        for (int i = 0; i < 2; ++i) {
            relays_.push_back(std::make_unique<tcp_relay>(redis_.port()));
            write_config(i);
            start_instance(i);
        }
    }
    void TearDown() override {
        stop_ = true;
        for (auto& t : clients_) t.join();
        for (int i = 0; i < 2; ++i) std::filesystem::remove(config_path(i));
    }

    std::string config_path(int i) const {
        return (std::filesystem::temp_directory_path() /
                ("cachecar-fresh-" + std::to_string(::getpid()) + "-" + std::to_string(i) + ".yaml"))
            .string();
    }
    void write_config(int i) {
        std::ofstream(config_path(i)) << "server:\n  listen: 127.0.0.1:0\n  admin_listen: 127.0.0.1:0\n"
                                      << "  upstream: http://127.0.0.1:" << origin_.port() << "\n"
                                      << "  namespace: fresh\n  threads: 2\n"
                                      << "logging:\n  access_log: off\n"
                                      << "tiers:\n  memory: { max_bytes: 16MiB }\n"
                                      << "  redis: { url: \"redis://127.0.0.1:" << relays_[i]->port()
                                      << "\", timeout: 50ms }\n"
                                      << R"(routes:
  - name: both
    match: GET /api/v1/item
    tiers: [memory, redis]
    ttl: 5m
    key: [query.k]
    categories: ["item:{query.k}"]
  - name: shared
    match: GET /api/v2/item
    tiers: [redis]
    ttl: 5m
    key: [query.k]
    categories: ["item:{query.k}"]
invalidate:
  - match: POST /api/v1/item
    purge: ["item:{query.k}"]
)";
    }
    void start_instance(int i) {
        auto d = std::make_unique<daemon_process>(CACHECAR_BINARY, config_path(i));
        ASSERT_NE(d->port, 0) << d->log();
        std::lock_guard lock(mutex_);
        if (static_cast<int>(instances_.size()) <= i) instances_.resize(static_cast<std::size_t>(i) + 1);
        instances_[static_cast<std::size_t>(i)] = std::move(d);
        ports_[i] = instances_[static_cast<std::size_t>(i)]->port;
    }

    // Clients: reads and writes of random keys through random live instances, every
    // operation recorded with its interval.
    void start_clients(int n) {
        for (int c = 0; c < n; ++c) {
            clients_.emplace_back([this, c] {
                std::mt19937 rng(static_cast<unsigned>(c) * 7919u + 1u);
                while (!stop_) {
                    operation op;
                    op.key = static_cast<int>(rng() % keys);
                    op.write = rng() % 5 == 0;
                    op.path = rng() % 2 == 0 ? "/api/v1/item" : "/api/v2/item";
                    std::uint16_t port = 0;
                    {
                        std::lock_guard lock(mutex_);
                        op.instance = only_ >= 0 ? only_ : static_cast<int>(rng() % 2);
                        port = ports_[op.instance];
                    }
                    const auto target = (op.write ? std::string("/api/v1/item") : op.path) + "?k=" + std::to_string(op.key);
                    op.start = steady::now();
                    auto r = http_request(port, op.write ? "POST" : "GET", target, {}, {}, 10s);
                    op.end = steady::now();
                    op.status = r.status;
                    op.version = version_of(r.body);
                    op.x_cache = r.header("x-cache");
                    op.tier = r.header("x-cache-tier");
                    if (op.write && r.status == 200) {
                        std::lock_guard lock(mutex_);
                        if (fault_active_) fault_write_ms_ = std::max(fault_write_ms_, std::chrono::duration<double, std::milli>(op.end - op.start).count());
                    }
                    std::lock_guard lock(mutex_);
                    history_.push_back(std::move(op));
                }
            });
        }
    }
    std::size_t operations() {
        std::lock_guard lock(mutex_);
        return history_.size();
    }
    void run_for(std::chrono::milliseconds d) {
        const auto until = steady::now() + d;
        while (steady::now() < until) std::this_thread::sleep_for(10ms);
    }
    void fault(const char* what, const std::function<void()>& begin, const std::function<void()>& end,
               std::chrono::milliseconds length = 1500ms) {
        {
            std::lock_guard lock(mutex_);
            fault_active_ = true;
        }
        const auto began = steady::now();
        begin();
        run_for(length);
        end();
        const auto ended = steady::now();
        run_for(1000ms);  // recovery under load
        std::lock_guard lock(mutex_);
        fault_active_ = false;
        faults_.push_back(std::string(what) + " " + std::to_string(ms_since(began)) + "-" + std::to_string(ms_since(ended)) + " ms");
    }

    // The rule, for every read: no version older than the newest write to its key that
    // returned before the read started, unless it came from the other instance's memory
    // tier within the window.
    struct verdict {
        std::size_t reads = 0, writes = 0, hits = 0, stale = 0, errors = 0;
        std::vector<std::string> examples;
    };
    verdict check() {
        std::lock_guard lock(mutex_);
        verdict v;
        std::vector<std::vector<const operation*>> writes(keys);
        for (const auto& op : history_) {
            if (op.status != 200) {
                // A request in flight to the instance that was SIGKILLed is lost with it:
                // that is the crash, not the cache.
                const bool crashed = op.instance == 0 && std::any_of(kills_.begin(), kills_.end(), [&](steady::time_point k) {
                                         return op.start <= k && op.end >= k;
                                     });
                if (crashed) continue;
                ++v.errors;
                if (v.examples.size() < 5) {
                    v.examples.push_back("status " + std::to_string(op.status) + (op.write ? " on a write" : " on a read") +
                                         " via " + std::to_string(op.instance) + " at " + std::to_string(ms_since(op.start)) + " ms");
                }
                continue;
            }
            if (op.write) {
                ++v.writes;
                writes[static_cast<std::size_t>(op.key)].push_back(&op);
            }
        }
        for (const auto& op : history_) {
            if (op.write || op.status != 200) continue;
            ++v.reads;
            if (op.x_cache == "HIT") ++v.hits;
            for (const auto* w : writes[static_cast<std::size_t>(op.key)]) {
                if (w->end >= op.start || op.version >= w->version) continue;
                const bool window = op.tier == "memory" && w->instance != op.instance && op.start - w->end <= memory_window;
                if (window) continue;
                ++v.stale;
                if (v.examples.size() < 40) {
                    v.examples.push_back("read of k" + std::to_string(op.key) + " via " + std::to_string(op.instance) + op.path +
                                         " got v" + std::to_string(op.version) + " (" + op.x_cache + "/" + op.tier +
                                         ") " + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(op.start - w->end).count()) +
                                         " ms after write v" + std::to_string(w->version) + " via " + std::to_string(w->instance) + " returned, at " +
                                         std::to_string(ms_since(op.start)) + " ms");
                }
                break;
            }
        }
        return v;
    }

    long long ms_since(steady::time_point t) const {
        return std::chrono::duration_cast<std::chrono::milliseconds>(t - began_).count();
    }
    const steady::time_point began_ = steady::now();
    test_origin origin_;
    versioned_backend backend_;
    redis_server redis_;
    std::vector<std::unique_ptr<tcp_relay>> relays_;
    std::mutex mutex_;
    std::vector<std::unique_ptr<daemon_process>> instances_;
    std::uint16_t ports_[2] = {0, 0};
    int only_ = -1;  // while >= 0, every client uses that instance
    std::vector<steady::time_point> kills_;  // when the writer was SIGKILLed
    bool fault_active_ = false;
    double fault_write_ms_ = 0;
    std::vector<operation> history_;
    std::vector<std::string> faults_;
    std::vector<std::thread> clients_;
    std::atomic<bool> stop_{false};
};

TEST_F(freshness_faults_test, NoReadIsOlderThanAnAcknowledgedWriteUnderAnyFault) {
    int rounds = 2;
    if (const char* r = std::getenv("CACHECAR_FRESHNESS_ROUNDS")) rounds = std::max(1, std::atoi(r));
    start_clients(6);
    ASSERT_TRUE(eventually([&] { return operations() > 200; }, 20s)) << "no load";
    if (std::getenv("CACHECAR_FRESHNESS_CALM")) run_for(8000ms);
    for (int round = 0; round < rounds && !std::getenv("CACHECAR_FRESHNESS_CALM"); ++round) {
        fault("redis paused", [&] { redis_.pause(); }, [&] { redis_.resume(); });
        fault("reader's path frozen", [&] { relays_[1]->freeze(); }, [&] { relays_[1]->restore(); });
        fault("writer's path frozen", [&] { relays_[0]->freeze(); }, [&] { relays_[0]->restore(); });
        fault("reader's path cut", [&] { relays_[1]->cut(); }, [&] { relays_[1]->restore(); });
        fault("writer's path cut", [&] { relays_[0]->cut(); }, [&] { relays_[0]->restore(); });
        fault("short freeze of one path", [&] { relays_[0]->freeze(); }, [&] { relays_[0]->restore(); }, 300ms);
        fault("redis killed and restarted empty", [&] { redis_.kill(); }, [&] { redis_.restart(); }, 800ms);
        fault("redis flushed", [&] { redis_.command({"FLUSHALL"}); }, [] {}, 10ms);
        fault(
            "writer killed right after a write was answered",
            [&] {
                // A write through instance 0, answered; then SIGKILL at once.
                const auto w = http_request(ports_[0], "POST", "/api/v1/item?k=0", {}, {}, 10s);
                EXPECT_EQ(w.status, 200u);
                {
                    std::lock_guard lock(mutex_);
                    only_ = 1;
                    kills_.push_back(steady::now());
                    instances_[0]->signal(SIGKILL);
                }
            },
            [&] {
                start_instance(0);
                std::lock_guard lock(mutex_);
                only_ = -1;
            },
            800ms);
    }
    stop_ = true;
    for (auto& t : clients_) t.join();
    clients_.clear();
    const auto v = check();
    std::cout << "[freshness] faults:";
    for (const auto& f : faults_) std::cout << " [" << f << "]";
    std::cout << "\n[freshness] reads " << v.reads << ", writes " << v.writes << ", hit ratio "
              << (v.reads ? 100.0 * static_cast<double>(v.hits) / static_cast<double>(v.reads) : 0.0) << " %, stale reads "
              << v.stale << ", client errors " << v.errors << ", slowest write during a fault " << fault_write_ms_ << " ms\n";
    for (const auto& e : v.examples) std::cout << "[freshness]   " << e << "\n";
    EXPECT_EQ(v.stale, 0u);
    EXPECT_EQ(v.errors, 0u);
    EXPECT_GT(v.hits, 0u) << "nothing was served from cache: the check proves nothing";
    EXPECT_GT(v.writes, 20u);
}

}  // namespace
}  // namespace cachecar::test
