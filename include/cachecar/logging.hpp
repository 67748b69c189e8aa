// One spdlog logger per component ("cachecar", "proxy", "admin", "redis", "mongo",
// "access"), all created here so levels and formats are set in one place.
#pragma once

#include <cachecar/config/config.hpp>

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace cachecar::logging {

// The component's logger, created on first use. Operational logs go to stderr; the
// access log goes to stdout.
std::shared_ptr<spdlog::logger> get(const std::string& component);

// Applies a config's levels and access-log format; safe to call again on reload.
void apply(const config::logging_config& cfg);

config::logging_config::access_format access_format();

}  // namespace cachecar::logging
