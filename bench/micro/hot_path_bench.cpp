// Micro-benchmarks of the hit path's pure parts (Google Benchmark): routing as the
// route count grows, key building, entry encode/decode, memory-tier get/put, and
// purge cost as the stored entry count grows. Built with -DCACHECAR_BENCH=ON:
//   build/bench/cachecar_micro_bench --benchmark_min_time=0.2
// These report times; nothing here is a pass/fail test.
#include <cachecar/cache/entry_codec.hpp>
#include <cachecar/cache/generations.hpp>
#include <cachecar/cache/memory/memory_tier.hpp>
#include <cachecar/config/config.hpp>
#include <cachecar/route/key_builder.hpp>
#include <cachecar/route/matcher.hpp>

#include <benchmark/benchmark.h>
#include <malloc.h>

#include <stdexcept>
#include <string>

namespace {

using namespace cachecar;

config::config config_with_routes(int n) {
    std::string yaml = "routes:\n";
    for (int i = 0; i < n; ++i) {
        yaml += "  - name: r" + std::to_string(i) + "\n    match: GET /api/v" + std::to_string(i % 10) + "/res" +
                std::to_string(i) + "/{id}\n    tiers: [memory]\n    ttl: 5m\n";
    }
    auto loaded = config::load_string(yaml, "<bench>");
    if (!loaded.value) throw std::runtime_error("bench config invalid: " + loaded.errors.front().to_string());
    return std::move(*loaded.value);
}

void BM_match(benchmark::State& state) {
    const int n = static_cast<int>(state.range(0));
    route::matcher m(config_with_routes(n));
    const std::string path = "/api/v" + std::to_string((n - 1) % 10) + "/res" + std::to_string(n - 1) + "/42";
    for (auto _ : state) {
        auto r = m.find_route("GET", path);
        benchmark::DoNotOptimize(r);
    }
}
BENCHMARK(BM_match)->Arg(10)->Arg(100)->Arg(1000)->Arg(10000);

void BM_build_key(benchmark::State& state) {
    auto cfg = config::load_string(R"(
routes:
  - name: videos
    match: GET /api/v1/videos
    tiers: [memory]
    ttl: 5m
    key: [query.page, query.limit]
    categories: [videos]
)", "<bench>");
    route::matcher m(*cfg.value);
    auto match = m.find_route("GET", "/api/v1/videos");
    std::vector<route::header_view> headers{{"Host", "x"}, {"Accept", "application/json"}, {"User-Agent", "wrk"}};
    route::request_view view{"GET", "/api/v1/videos", "limit=10&page=3&utm=x", headers, {}, &match.params};
    for (auto _ : state) {
        auto cred = route::credential_fingerprint(*match.target, view);
        auto key = route::build_key("momentry", *match.target, view, cred);
        benchmark::DoNotOptimize(key);
    }
}
BENCHMARK(BM_build_key);

cache::entry sample_entry(std::size_t body) {
    cache::entry e;
    e.status = 200;
    e.headers = {{"Content-Type", "application/json"}, {"ETag", "\"abc\""}, {"Date", "Sun, 06 Nov 1994 08:49:37 GMT"}};
    e.headers.shrink_to_fit();  // as a fill leaves it
    e.body.assign(body, 'x');
    e.stored_at = cache::clock::now();
    e.expires_at = e.stored_at + std::chrono::minutes(5);
    e.retain_until = e.expires_at;
    e.stamps = {{"videos", 3}, {"*", 0}};
    return e;
}

void BM_encode_entry(benchmark::State& state) {
    auto e = sample_entry(static_cast<std::size_t>(state.range(0)));
    for (auto _ : state) benchmark::DoNotOptimize(cache::encode_entry(e));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_encode_entry)->Arg(1024)->Arg(65536);

void BM_decode_entry(benchmark::State& state) {
    const auto bytes = cache::encode_entry(sample_entry(static_cast<std::size_t>(state.range(0))));
    for (auto _ : state) benchmark::DoNotOptimize(cache::decode_entry(bytes));
    state.SetBytesProcessed(static_cast<std::int64_t>(state.iterations()) * state.range(0));
}
BENCHMARK(BM_decode_entry)->Arg(1024)->Arg(65536);

void BM_memory_get(benchmark::State& state) {
    cache::memory_tier tier(256u << 20);
    auto e = std::make_shared<const cache::entry>(sample_entry(1024));
    for (int i = 0; i < 10000; ++i) tier.put("k" + std::to_string(i), e);
    int i = 0;
    std::string key;
    for (auto _ : state) {
        key = "k" + std::to_string(i++ % 10000);
        benchmark::DoNotOptimize(tier.get(key));
    }
}
BENCHMARK(BM_memory_get);

void BM_memory_put(benchmark::State& state) {
    cache::memory_tier tier(64u << 20);
    auto e = std::make_shared<const cache::entry>(sample_entry(1024));
    int i = 0;
    for (auto _ : state) tier.put("k" + std::to_string(i++ % 50000), e);
}
BENCHMARK(BM_memory_put);

// Heap bytes the memory tier spends per entry beyond the key, the stored header
// fields and the body (issue #7's goal: <= 128). Measured with glibc's mallinfo2 over
// 100,000 distinct entries shaped like a real fill: its own entry object, 1 KiB body,
// three header fields, two category stamps, a 79-byte key.
void BM_memory_overhead_per_entry(benchmark::State& state) {
    constexpr int n = 100000;
    for (auto _ : state) {
        const auto before = mallinfo2().uordblks;
        std::size_t payload = 0;
        {
            cache::memory_tier tier(std::size_t{1} << 30);
            for (int i = 0; i < n; ++i) {
                auto e = std::make_shared<cache::entry>(sample_entry(1024));
                std::string key = "momentry:videos:" + route::sha256_hex(std::to_string(i));
                payload += key.size() + e->headers.wire().size() + e->body.size();
                tier.put(std::move(key), std::move(e));
            }
            const auto after = mallinfo2().uordblks;
            state.counters["overhead_bytes"] =
                (static_cast<double>(after - before) - static_cast<double>(payload)) / n;
            state.counters["footprint_charged"] = static_cast<double>(tier.usage().bytes) / n;
        }
    }
}
BENCHMARK(BM_memory_overhead_per_entry)->Iterations(1)->Unit(benchmark::kMillisecond);

// A purge is a generation bump: its cost must not depend on how many entries exist.
void BM_purge_with_entries(benchmark::State& state) {
    cache::memory_tier tier(1u << 30);
    cache::local_generation_store gens;
    auto e = std::make_shared<const cache::entry>(sample_entry(64));
    for (int i = 0; i < state.range(0); ++i) tier.put("k" + std::to_string(i), e);
    for (auto _ : state) benchmark::DoNotOptimize(gens.bump_one("videos"));
}
BENCHMARK(BM_purge_with_entries)->Arg(1000)->Arg(100000)->Arg(1000000);

}  // namespace

BENCHMARK_MAIN();
