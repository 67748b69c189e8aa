#include <cachecar/cache/entry.hpp>

#include <cachecar/util/ascii.hpp>

#include <stdexcept>

namespace cachecar::cache {

header_block::header_block(std::initializer_list<header_field> fields) {
    for (const auto& f : fields) add(f.name, f.value);
}

bool header_block::valid(std::string_view name, std::string_view value) {
    if (!util::is_token(name)) return false;
    for (const char c : value) {
        if (c == '\r' || c == '\n' || c == '\0') return false;
    }
    return true;
}

void header_block::add(std::string_view name, std::string_view value) {
    if (!valid(name, value)) throw std::invalid_argument("invalid header field");
    wire_ += name;
    wire_ += ": ";
    wire_ += value;
    wire_ += "\r\n";
    ++count_;
}

void header_block::iterator::parse() {
    // add() wrote "name: value\r\n"; names hold no ':' and values no CR.
    if (rest_.empty()) {
        line_ = 0;
        return;
    }
    const auto colon = rest_.find(':');
    const auto cr = rest_.find('\r', colon);
    current_.name = rest_.substr(0, colon);
    current_.value = rest_.substr(colon + 2, cr - colon - 2);
    line_ = cr + 2;
}

std::size_t entry::footprint(std::string_view key) const {
    std::size_t bytes = entry_bookkeeping_bytes + key.size() + body.size() + headers.wire().size();
    for (const auto& s : stamps) {
        bytes += sizeof(category_stamp) + s.category.size();
    }
    return bytes;
}

}  // namespace cachecar::cache
