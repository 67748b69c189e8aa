// The tiers' own checks of their connection strings, for the config loader: the Redis
// client's URL parser and mongo-c-driver's URI parser decide what `--check` accepts,
// so it accepts exactly what runs (config/ includes no tier header; see config.hpp).
#pragma once

#include <cachecar/config/config.hpp>

namespace cachecar {

const config::tier_checks& tier_checks();

}  // namespace cachecar
