#include <cachecar/cache/entry_codec.hpp>

namespace cachecar::cache {

namespace {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wnon-virtual-dtor"  // by design: categories are never deleted
class decode_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "cachecar.entry"; }
    std::string message(int ev) const override {
        return "corrupt cache entry: " + std::string(to_string(static_cast<decode_error>(ev)));
    }
};
#pragma GCC diagnostic pop
}  // namespace

const boost::system::error_category& decode_category() {
    static const decode_category_impl instance;
    return instance;
}

error_code make_error_code(decode_error e) { return {static_cast<int>(e), decode_category()}; }

}  // namespace cachecar::cache
