#include <cachecar/logging.hpp>

#include <spdlog/sinks/stdout_sinks.h>

#include <atomic>
#include <mutex>

namespace cachecar::logging {

namespace {
std::mutex registry_mutex;
std::atomic<config::logging_config::access_format> current_access_format{config::logging_config::access_format::text};
}  // namespace

std::shared_ptr<spdlog::logger> get(const std::string& component) {
    std::lock_guard lock(registry_mutex);
    if (auto existing = spdlog::get(component)) return existing;
    std::shared_ptr<spdlog::logger> logger;
    if (component == "access") {
        logger = std::make_shared<spdlog::logger>(component, std::make_shared<spdlog::sinks::stdout_sink_mt>());
        logger->set_pattern("%v");  // the proxy formats the whole line (text or JSON)
    } else {
        logger = std::make_shared<spdlog::logger>(component, std::make_shared<spdlog::sinks::stderr_sink_mt>());
        logger->set_pattern("%Y-%m-%dT%H:%M:%S.%e%z [%n] %l: %v");
    }
    spdlog::register_logger(logger);
    return logger;
}

void apply(const config::logging_config& cfg) {
    const auto level = spdlog::level::from_str(cfg.level);
    for (const char* component : config::log_components) {
        auto logger = get(component);
        logger->set_level(level);
        for (const auto& [name, l] : cfg.levels) {
            if (name == component) logger->set_level(spdlog::level::from_str(l));
        }
    }
    // The access log is controlled by its format, not by the default level.
    auto access = get("access");
    bool access_level_set = false;
    for (const auto& [name, l] : cfg.levels) access_level_set = access_level_set || name == "access";
    if (!access_level_set) access->set_level(spdlog::level::info);
    if (cfg.access_log == config::logging_config::access_format::off) access->set_level(spdlog::level::off);
    current_access_format = cfg.access_log;
}

config::logging_config::access_format access_format() { return current_access_format.load(); }

std::optional<std::uint64_t> throttle::admit() {
    const auto now = std::chrono::steady_clock::now().time_since_epoch().count();
    auto last = last_.load(std::memory_order_relaxed);
    // Overflow-safe "now - last >= interval": last starts at the minimum value.
    if (last > now - interval_.count() || !last_.compare_exchange_strong(last, now, std::memory_order_relaxed)) {
        suppressed_.fetch_add(1, std::memory_order_relaxed);
        return std::nullopt;
    }
    return suppressed_.exchange(0, std::memory_order_relaxed);
}

}  // namespace cachecar::logging
