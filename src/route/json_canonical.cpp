// Canonical JSON for cache keys. Two bodies get the same canonical form only if
// every JSON reader sees the same document in them, so the key never merges
// requests a backend could answer differently:
//  - object members sorted by key (UTF-8 byte order = code point order);
//  - strings decoded and re-escaped by boost::json::serialize;
//  - numbers kept exactly as written: a parse to double would merge large
//    integers and decimals that differ only past double precision, which a
//    backend with arbitrary-precision numbers (Python, Java BigDecimal) tells apart;
//  - an object with a duplicate key is "not canonicalisable" (readers disagree on
//    which member wins), so the caller falls back to hashing the raw bytes.
#include <cachecar/route/key_builder.hpp>

#include <boost/json.hpp>
#include <boost/json/basic_parser_impl.hpp>

#include <algorithm>

namespace cachecar::route {

namespace {

namespace json = boost::json;

class canonical_handler {
public:
    static constexpr std::size_t max_object_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_array_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_key_size = static_cast<std::size_t>(-1);
    static constexpr std::size_t max_string_size = static_cast<std::size_t>(-1);

    std::string result;

    bool on_document_begin(json::error_code&) { return true; }
    bool on_document_end(json::error_code&) { return true; }

    bool on_array_begin(json::error_code&) {
        stack_.push_back(frame{false, {}, {}, {}});
        return true;
    }
    bool on_array_end(std::size_t, json::error_code&) {
        frame f = std::move(stack_.back());
        stack_.pop_back();
        std::string out = "[";
        for (std::size_t i = 0; i < f.items.size(); ++i) {
            if (i) out += ',';
            out += f.items[i];
        }
        out += ']';
        emit(std::move(out));
        return true;
    }

    bool on_object_begin(json::error_code&) {
        stack_.push_back(frame{true, {}, {}, {}});
        return true;
    }
    bool on_object_end(std::size_t, json::error_code& ec) {
        frame f = std::move(stack_.back());
        stack_.pop_back();
        std::sort(f.members.begin(), f.members.end(),
                  [](const auto& a, const auto& b) { return a.first < b.first; });
        for (std::size_t i = 1; i < f.members.size(); ++i) {
            if (f.members[i - 1].first == f.members[i].first) {
                ec = json::error::syntax;
                return false;
            }
        }
        std::string out = "{";
        for (std::size_t i = 0; i < f.members.size(); ++i) {
            if (i) out += ',';
            out += json::serialize(json::string_view(f.members[i].first));
            out += ':';
            out += f.members[i].second;
        }
        out += '}';
        emit(std::move(out));
        return true;
    }

    bool on_string_part(json::string_view s, std::size_t, json::error_code&) {
        part_.append(s.data(), s.size());
        return true;
    }
    bool on_string(json::string_view s, std::size_t, json::error_code&) {
        part_.append(s.data(), s.size());
        emit(json::serialize(json::string_view(part_)));
        part_.clear();
        return true;
    }
    bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
        part_.append(s.data(), s.size());
        return true;
    }
    bool on_key(json::string_view s, std::size_t, json::error_code&) {
        part_.append(s.data(), s.size());
        stack_.back().key = std::move(part_);
        part_.clear();
        return true;
    }

    bool on_number_part(json::string_view s, json::error_code&) {
        part_.append(s.data(), s.size());
        return true;
    }
    bool on_int64(std::int64_t, json::string_view s, json::error_code&) { return number(s); }
    bool on_uint64(std::uint64_t, json::string_view s, json::error_code&) { return number(s); }
    bool on_double(double, json::string_view s, json::error_code&) { return number(s); }

    bool on_bool(bool b, json::error_code&) {
        emit(b ? "true" : "false");
        return true;
    }
    bool on_null(json::error_code&) {
        emit("null");
        return true;
    }
    bool on_comment_part(json::string_view, json::error_code&) { return true; }
    bool on_comment(json::string_view, json::error_code&) { return true; }

private:
    struct frame {
        bool is_object;
        std::vector<std::pair<std::string, std::string>> members;
        std::vector<std::string> items;
        std::string key;
    };

    bool number(json::string_view s) {
        part_.append(s.data(), s.size());
        emit(std::move(part_));
        part_.clear();
        return true;
    }

    void emit(std::string value) {
        if (stack_.empty()) {
            result = std::move(value);
            return;
        }
        frame& top = stack_.back();
        if (top.is_object)
            top.members.emplace_back(std::move(top.key), std::move(value));
        else
            top.items.push_back(std::move(value));
    }

    std::vector<frame> stack_;
    std::string part_;
};

}  // namespace

std::optional<std::string> canonical_json(std::string_view text) {
    json::parse_options opts;
    opts.max_depth = 64;
    json::basic_parser<canonical_handler> parser(opts);
    json::error_code ec;
    std::size_t used = parser.write_some(false, text.data(), text.size(), ec);
    if (ec || used != text.size() || !parser.done()) return std::nullopt;
    return std::move(parser.handler().result);
}

}  // namespace cachecar::route
