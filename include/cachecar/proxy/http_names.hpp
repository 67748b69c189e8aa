// The transport's message types and field helpers, under the names the proxy stages
// use (using-declarations, not a using-directive). Fields are read only through these
// helpers: every line of a field (http/message.hpp).
#pragma once

#include <cachecar/http/message.hpp>

namespace cachecar::proxy {

using http::request;
using http::response;

using http::erase_field;
using http::field_name;
using http::field_value;
using http::for_each_line;
using http::for_each_list_item;
using http::has_directive;
using http::is_idempotent;
using http::line_count;
using http::list_has;
using http::list_value;
using http::same_field_name;
using http::single_value;
using http::split;
using http::strip_hop_by_hop;
using http::trim;

}  // namespace cachecar::proxy
