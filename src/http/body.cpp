#include <cachecar/http/body.hpp>

namespace cachecar::http {

net::awaitable<result<std::string_view>> memory_body::next() {
    const auto piece = given_ ? std::string_view() : data_;
    given_ = true;
    co_return piece;
}

net::awaitable<error_code> read_whole(body_stream& body, std::string& out, std::size_t limit) {
    for (;;) {
        auto piece = co_await body.next();
        if (!piece) co_return piece.error();
        if (piece->empty()) co_return error_code{};
        if (out.size() + piece->size() > limit) co_return make_error_code(beast::http::error::body_limit);
        out.append(*piece);
    }
}

}  // namespace cachecar::http
