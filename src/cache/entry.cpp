#include <cachecar/cache/entry.hpp>

namespace cachecar::cache {

std::size_t entry::footprint(std::string_view key) const {
    std::size_t bytes = entry_bookkeeping_bytes + key.size() + body.size();
    // The struct sizes are charged per item so that a response with hundreds of tiny
    // headers is not mistaken for a tiny entry.
    for (const auto& h : headers) {
        bytes += sizeof(header_field) + h.name.size() + h.value.size();
    }
    for (const auto& s : stamps) {
        bytes += sizeof(category_stamp) + s.category.size();
    }
    return bytes;
}

}  // namespace cachecar::cache
