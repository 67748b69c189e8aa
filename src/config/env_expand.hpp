// `${VAR}` / `${VAR:-default}` expansion for config scalars.
#pragma once

#include <cachecar/parsed.hpp>

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace cachecar::config {

// Returns the variable's value, or nullopt if it is not set.
using env_lookup = std::function<std::optional<std::string>(const std::string& name)>;

// The process environment.
env_lookup process_env();

// Expands every `${NAME}` and `${NAME:-default}` in `text`. As in the shell, the
// default is used when NAME is unset or empty. A `$` not followed by `{` is kept.
// Errors: an unset NAME without a default, an unterminated `${`, a bad NAME.
parsed<std::string> expand_env(std::string_view text, const env_lookup& lookup);

}  // namespace cachecar::config
