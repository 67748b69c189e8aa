#include <cachecar/app/app.hpp>
#include <cachecar/app/tier_checks.hpp>
#include <cachecar/logging.hpp>

#include <cachecar/cache/memory/memory_tier.hpp>
#include <cachecar/cache/mongo/mongo_tier.hpp>
#include <cachecar/cache/redis/redis_generations.hpp>
#include <cachecar/cache/redis/redis_tier.hpp>
#include <cachecar/cache/tier_chain.hpp>
#include <cachecar/proxy/handler.hpp>
#include <cachecar/http/server.hpp>

#include <cachecar/logging.hpp>

#include <spdlog/spdlog.h>

#include <mutex>
#include <thread>

namespace cachecar {

namespace {

http::upstream_options upstream_options_for(const config::config& cfg, unsigned io_threads) {
    http::upstream_options o;
    o.target = cfg.server.upstream;
    o.timeout = cfg.limits.upstream_timeout;
    o.strands = io_threads > 1;
    return o;
}

bool same_upstream(const config::config& a, const config::config& b) {
    return a.server.upstream.host == b.server.upstream.host && a.server.upstream.port == b.server.upstream.port &&
           a.limits.upstream_timeout == b.limits.upstream_timeout;
}

// A Redis client for tiers.redis, not yet started; null when Redis is not configured.
std::shared_ptr<cache::redis::redis_client> make_redis_client(const config::config& cfg, net::io_context& io,
                                                             stats::registry& metrics) {
    if (!cfg.tiers.redis) return nullptr;
    auto options = cache::redis::parse_redis_url(cfg.tiers.redis->url);
    if (!options) throw std::invalid_argument("tiers.redis.url: " + options.error);  // the loader checked it
    options.value->timeout = cfg.tiers.redis->timeout;
    options.value->pool = cfg.tiers.redis->pool;
    cache::redis::redis_events events;
    events.on_failure = [&metrics](std::string_view what) {
        metrics.get("cachecar_tier_failures_total", {{"tier", "redis"}, {"kind", std::string(what)}})++;
    };
    events.on_state_change = [&metrics](bool up) {
        metrics.get("cachecar_tier_state_changes_total", {{"tier", "redis"}, {"to", up ? "up" : "down"}})++;
    };
    return cache::redis::redis_client::create(io.get_executor(), std::move(*options.value), std::move(events));
}

// A MongoDB connection for tiers.mongo, not yet started; null when not configured.
std::shared_ptr<cache::mongo::mongo_connection> make_mongo_connection(const config::config& cfg,
                                                                      stats::registry& metrics) {
    if (!cfg.tiers.mongo) return nullptr;
    cache::mongo::mongo_options o;
    o.uri = cfg.tiers.mongo->uri;
    o.database = cfg.tiers.mongo->database;
    o.collection = cfg.tiers.mongo->collection;
    o.timeout = cfg.tiers.mongo->timeout;
    cache::mongo::mongo_connection::events events;
    events.on_failure = [&metrics](std::string_view what) {
        metrics.get("cachecar_tier_failures_total", {{"tier", "mongo"}, {"kind", std::string(what)}})++;
    };
    events.on_state_change = [&metrics](bool up) {
        metrics.get("cachecar_tier_state_changes_total", {{"tier", "mongo"}, {"to", up ? "up" : "down"}})++;
    };
    return cache::mongo::mongo_connection::create(std::move(o), metrics, std::move(events));
}

// Where purges are shared: Redis if configured (it broadcasts), else MongoDB, else
// this process alone.
std::shared_ptr<cache::generation_store> make_generations(
    const std::shared_ptr<cache::redis::redis_generation_store>& redis,
    const std::shared_ptr<cache::mongo::mongo_connection>& mongo, const config::config& cfg, stats::registry& metrics) {
    if (redis) return redis;
    if (mongo) return std::make_shared<cache::mongo::mongo_generation_store>(mongo, cfg.server.key_namespace, metrics);
    return std::make_shared<cache::local_generation_store>();
}

bool same_endpoint(const std::optional<config::endpoint>& a, const std::optional<config::endpoint>& b) {
    if (a.has_value() != b.has_value()) return false;
    return !a || (a->host == b->host && a->port == b->port);
}

}  // namespace

struct app::impl {
    explicit impl(config::config cfg)
        : threads(cfg.server.threads == 0 ? std::max(1u, std::thread::hardware_concurrency()) : cfg.server.threads),
          io(static_cast<int>(threads)),
          work(net::make_work_guard(io)),
          memory(std::make_shared<cache::memory_tier>(cfg.tiers.memory.max_bytes)),
          redis(make_redis_client(cfg, io, metrics)),
          redis_generations(redis ? std::make_shared<cache::redis::redis_generation_store>(
                                        redis, cfg.server.key_namespace, metrics,
                                        cache::redis::redis_generation_store::default_lapse_fence,
                                        cfg.tiers.redis->confirm_purges)
                                  : nullptr),
          mongo(make_mongo_connection(cfg, metrics)),
          generations(make_generations(redis_generations, mongo, cfg, metrics)),
          tiers(io.get_executor(), memory, generations, metrics),
          proxy_handler(snapshots, tiers, metrics),
          admin(snapshots, tiers, metrics,
                admin::admin_hooks{[this] { return reload_from_file(); }, [this] { return gauges(); }}),
          client_server(io, proxy_handler, "proxy", threads),
          admin_server(io, admin, "admin", threads) {
        logging::apply(cfg.logging);
        auto pool = std::make_shared<http::upstream_pool>(io.get_executor(), upstream_options_for(cfg, threads));
        if (redis) {
            tiers.set_tier(config::tier_kind::redis,
                           std::make_shared<cache::redis::redis_tier>(redis, cfg.server.key_namespace, metrics));
        }
        if (mongo) {
            tiers.set_tier(config::tier_kind::mongo,
                           std::make_shared<cache::mongo::mongo_tier>(mongo, cfg.server.key_namespace, metrics));
        }
        snapshots.store(std::make_shared<const snapshot>(std::move(cfg), metrics, std::move(pool)));
    }

    std::vector<stats::registry::gauge_sample> gauges() const {
        std::vector<stats::registry::gauge_sample> out{
            {"cachecar_connections", {{"listener", "proxy"}}, static_cast<double>(client_server.active_connections())},
            {"cachecar_connections", {{"listener", "admin"}}, static_cast<double>(admin_server.active_connections())},
            {"cachecar_tunnels_open", {}, static_cast<double>(client_server.active_tunnels())},
            {"cachecar_fills_in_flight", {}, static_cast<double>(proxy_handler.fills_in_flight())},
            {"cachecar_threads", {}, static_cast<double>(threads)},
        };
        if (redis_generations) {
            // 1 while a lapsed instance fences the namespace (nothing served from cache
            // by anyone), and whether this instance's generation copy is proven.
            out.push_back({"cachecar_purge_fenced", {}, redis_generations->namespace_fenced() ? 1.0 : 0.0});
            out.push_back({"cachecar_generation_copy_trusted", {}, redis_generations->copy_trusted() ? 1.0 : 0.0});
        }
        return out;
    }

    admin::reload_outcome reload_from_file() {
        const auto file = snapshots.load()->cfg.source_file;
        auto loaded = config::load_file(file, tier_checks());
        if (!loaded.value) {
            admin::reload_outcome out;
            for (const auto& d : loaded.errors) out.errors.push_back(d.to_string());
            metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
            logging::get("cachecar")->error("reload of {} rejected ({} problems); still serving the previous config", file,
                          loaded.errors.size());
            for (const auto& e : out.errors) logging::get("cachecar")->error("  {}", e);
            return out;
        }
        notify("RELOADING=1");
        auto out = apply(std::move(*loaded.value));
        notify("READY=1");
        if (!out.ok) {
            logging::get("cachecar")->error("reload of {} rejected; still serving the previous config", file);
            for (const auto& e : out.errors) logging::get("cachecar")->error("  {}", e);
        }
        return out;
    }

    admin::reload_outcome apply(config::config next) {
        std::lock_guard lock(reload_mutex);
        admin::reload_outcome out;
        auto current = snapshots.load();
        const auto& cur = current->cfg;
        const bool redis_same = next.tiers.redis.has_value() == cur.tiers.redis.has_value() &&
                                (!next.tiers.redis || (next.tiers.redis->url == cur.tiers.redis->url &&
                                                       next.tiers.redis->timeout == cur.tiers.redis->timeout &&
                                                       next.tiers.redis->pool == cur.tiers.redis->pool));
        if (!redis_same) {
            // Routes may name a tier only if it is configured; keep serving the
            // running tier set until a restart rather than half-apply it.
            out.errors.push_back("tiers.redis changed; restart cachecar to apply tier changes");
            metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
            return out;
        }
        const bool mongo_same = next.tiers.mongo.has_value() == cur.tiers.mongo.has_value() &&
                                (!next.tiers.mongo || (next.tiers.mongo->uri == cur.tiers.mongo->uri &&
                                                       next.tiers.mongo->database == cur.tiers.mongo->database &&
                                                       next.tiers.mongo->collection == cur.tiers.mongo->collection &&
                                                       next.tiers.mongo->timeout == cur.tiers.mongo->timeout));
        if (!mongo_same) {
            out.errors.push_back("tiers.mongo changed; restart cachecar to apply tier changes");
            metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
            return out;
        }
        if (next.server.key_namespace != cur.server.key_namespace && (redis || mongo)) {
            out.errors.push_back("server.namespace changed while a shared tier is configured; restart cachecar to apply it");
            metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
            return out;
        }
        // New addresses are bound before the old ones close; if binding fails, the
        // whole reload is rejected and nothing changes.
        if (next.server.listen.host != cur.server.listen.host || next.server.listen.port != cur.server.listen.port) {
            try {
                client_server.listen(next.server.listen);
                logging::get("cachecar")->info("now listening on {}:{}", next.server.listen.host, client_server.port());
            } catch (const std::exception& e) {
                out.errors.push_back("cannot listen on " + next.server.listen.host + ":" +
                                     std::to_string(next.server.listen.port) + ": " + e.what());
                metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
                return out;
            }
        }
        if (!same_endpoint(next.server.admin_listen, cur.server.admin_listen)) {
            if (next.server.admin_listen && cur.server.admin_listen) {
                try {
                    admin_server.listen(*next.server.admin_listen);
                } catch (const std::exception& e) {
                    out.errors.push_back("cannot listen on " + next.server.admin_listen->host + ":" +
                                         std::to_string(next.server.admin_listen->port) + ": " + e.what());
                    metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
                    return out;
                }
            } else {
                out.warnings.push_back("enabling or disabling admin_listen takes effect after a restart");
                next.server.admin_listen = cur.server.admin_listen;
            }
        }
        if (next.server.threads != cur.server.threads) {
            out.warnings.push_back("server.threads changed; takes effect after a restart");
        }
        if (next.server.key_namespace != cur.server.key_namespace) {
            // Entries of the old namespace simply stop being found; nothing to migrate.
            logging::get("cachecar")->info("namespace changed from {} to {}", cur.server.key_namespace, next.server.key_namespace);
        }
        if (next.tiers.memory.max_bytes != memory->max_bytes()) memory->resize(next.tiers.memory.max_bytes);
        // Reuse the upstream pool (and its warm connections) unless its settings changed.
        auto pool = same_upstream(cur, next)
                        ? current->upstream
                        : std::make_shared<http::upstream_pool>(io.get_executor(), upstream_options_for(next, threads));
        logging::apply(next.logging);
        try {
            snapshots.store(std::make_shared<const snapshot>(std::move(next), metrics, std::move(pool)));
        } catch (const std::exception& e) {
            out.errors.push_back(std::string("cannot compile routes: ") + e.what());
            metrics.get("cachecar_reloads_total", {{"outcome", "rejected"}})++;
            return out;
        }
        out.ok = true;
        metrics.get("cachecar_reloads_total", {{"outcome", "ok"}})++;
        logging::get("cachecar")->info("config reloaded from {}", snapshots.load()->cfg.source_file);
        for (const auto& w : out.warnings) logging::get("cachecar")->warn("reload: {}", w);
        return out;
    }

    // Expired entries are dropped lazily on lookup; this bounds how long unvisited
    // ones hold memory.
    net::awaitable<void> sweep_loop() {
        net::steady_timer timer(co_await net::this_coro::executor);
        for (;;) {
            timer.expires_after(std::chrono::seconds(1));
            error_code ec;
            co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
            if (ec || stopping) co_return;
            memory->sweep(cache::clock::now(), 20000);
        }
    }

    void notify(const std::string& state) {
        if (notifier) notifier(state);
    }

    net::awaitable<void> watchdog_loop(std::chrono::microseconds interval) {
        net::steady_timer timer(co_await net::this_coro::executor);
        while (!stopping) {
            notify("WATCHDOG=1");
            timer.expires_after(interval);
            error_code ec;
            co_await timer.async_wait(net::redirect_error(net::use_awaitable, ec));
        }
    }

    std::function<void(const std::string&)> notifier;
    unsigned threads;
    net::io_context io;
    net::executor_work_guard<net::io_context::executor_type> work;
    stats::registry metrics;
    std::shared_ptr<cache::memory_tier> memory;
    std::shared_ptr<cache::redis::redis_client> redis;
    std::shared_ptr<cache::redis::redis_generation_store> redis_generations;
    std::shared_ptr<cache::mongo::mongo_connection> mongo;
    std::shared_ptr<cache::generation_store> generations;
    cache::tier_chain tiers;
    snapshot_holder snapshots;
    proxy::handler proxy_handler;
    admin::admin_api admin;
    http::server client_server;
    http::server admin_server;
    std::vector<std::thread> io_threads;
    std::mutex reload_mutex;
    std::atomic<bool> stopping{false};
    bool stopped = false;
};

app::app(config::config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}

app::~app() { stop(); }

void app::start() {
    auto snap = impl_->snapshots.load();
    impl_->client_server.listen(snap->cfg.server.listen);
    if (snap->cfg.server.admin_listen) impl_->admin_server.listen(*snap->cfg.server.admin_listen);
    net::co_spawn(impl_->io, impl_->sweep_loop(), net::detached);
    if (impl_->redis) {
        impl_->redis->start();
        impl_->redis_generations->start(impl_->io.get_executor());
    }
    if (impl_->mongo) impl_->mongo->start(impl_->io.get_executor());
    for (unsigned i = 0; i < impl_->threads; ++i) {
        impl_->io_threads.emplace_back([this] { impl_->io.run(); });
    }
    logging::get("cachecar")->info("listening on {}:{} (upstream {}, admin {}), {} threads, namespace {}", snap->cfg.server.listen.host,
                 port(), snap->cfg.server.upstream_url,
                 snap->cfg.server.admin_listen
                     ? snap->cfg.server.admin_listen->host + ":" + std::to_string(admin_port())
                     : std::string("disabled"),
                 impl_->threads, snap->cfg.server.key_namespace);
    impl_->notify("READY=1\nSTATUS=serving");
}

void app::set_notifier(std::function<void(const std::string&)> notify) { impl_->notifier = std::move(notify); }

void app::enable_watchdog(std::chrono::microseconds interval) {
    net::co_spawn(net::make_strand(impl_->io), impl_->watchdog_loop(interval), net::detached);
}

std::uint16_t app::port() const { return impl_->client_server.port(); }
std::uint16_t app::admin_port() const { return impl_->admin_server.port(); }

admin::reload_outcome app::reload() { return impl_->reload_from_file(); }
admin::reload_outcome app::apply(config::config next) {
    impl_->notify("RELOADING=1");
    auto out = impl_->apply(std::move(next));
    impl_->notify("READY=1");
    return out;
}

stats::registry& app::metrics() { return impl_->metrics; }

bool app::stop() {
    if (impl_->stopped) return true;
    impl_->stopped = true;
    impl_->stopping = true;
    impl_->notify("STOPPING=1");
    const auto drain = impl_->snapshots.load()->cfg.limits.drain_timeout;
    impl_->client_server.begin_drain();
    impl_->admin_server.begin_drain();
    const auto deadline = std::chrono::steady_clock::now() + drain;
    bool drained = true;
    while (impl_->client_server.active_connections() + impl_->admin_server.active_connections() > 0) {
        if (std::chrono::steady_clock::now() >= deadline) {
            drained = false;
            logging::get("cachecar")->warn("drain timeout ({} ms) passed with {} connections open; closing them", drain.count(),
                         impl_->client_server.active_connections());
            impl_->client_server.close_all();
            impl_->admin_server.close_all();
            break;
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    // close_all only posts the closes to each connection's executor: let them run before
    // the loop stops, or a client (a tunnel, a slow download) keeps a socket that is never
    // answered again for as long as this object lives.
    const auto closing_deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (!drained && impl_->client_server.active_connections() + impl_->admin_server.active_connections() > 0 &&
           std::chrono::steady_clock::now() < closing_deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    if (impl_->redis) {
        // Leave the lease set, so the other instances need not purge everything for
        // this one (bounded: a Redis that does not answer gets its timeout, then the
        // lease simply runs out and they do purge).
        auto left = net::co_spawn(impl_->io.get_executor(), impl_->redis_generations->goodbye(), net::use_future);
        left.wait_for(std::chrono::seconds(1));
        impl_->redis->stop();
    }
    if (impl_->mongo) impl_->mongo->stop();
    impl_->work.reset();
    impl_->io.stop();
    for (auto& t : impl_->io_threads) {
        if (t.joinable()) t.join();
    }
    logging::get("cachecar")->info("stopped{}", drained ? "" : " (drain timed out)");
    return drained;
}

}  // namespace cachecar
