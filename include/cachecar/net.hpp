// Namespace aliases and vocabulary types shared by every component.
#pragma once

#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/system/result.hpp>

namespace cachecar {
namespace net = boost::asio;
namespace beast = boost::beast;
// No `http` alias: cachecar::http is the HTTP component's namespace; write beast::http.
using error_code = boost::system::error_code;
template <class T>
using result = boost::system::result<T>;
}  // namespace cachecar
