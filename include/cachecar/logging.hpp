// One spdlog logger per component ("cachecar", "proxy", "admin", "redis", "mongo",
// "access"), all created here so levels and formats are set in one place.
#pragma once

#include <cachecar/config/config.hpp>

#include <spdlog/spdlog.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <limits>
#include <memory>
#include <optional>
#include <string>

namespace cachecar::logging {

// The component's logger, created on first use. Operational logs go to stderr; the
// access log goes to stdout.
std::shared_ptr<spdlog::logger> get(const std::string& component);

// Applies a config's levels and access-log format; safe to call again on reload.
void apply(const config::logging_config& cfg);

config::logging_config::access_format access_format();

// Lets one message of a kind through per `interval` and counts the ones held back, so
// an outage that fails every request logs a line a second, not thousands. Thread-safe.
class throttle {
public:
    explicit throttle(std::chrono::steady_clock::duration interval = std::chrono::seconds(1)) : interval_(interval) {}
    // nullopt: hold this message back. Otherwise log it, with the returned number of
    // messages suppressed since the last one let through ("and N more").
    std::optional<std::uint64_t> admit();

private:
    const std::chrono::steady_clock::duration interval_;
    std::atomic<std::chrono::steady_clock::rep> last_{std::numeric_limits<std::chrono::steady_clock::rep>::min()};
    std::atomic<std::uint64_t> suppressed_{0};
};

}  // namespace cachecar::logging
