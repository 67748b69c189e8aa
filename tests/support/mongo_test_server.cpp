// Commands implemented (MongoDB 5.0 semantics unless noted):
//   hello / isMaster / ismaster, ping, buildInfo, endSessions,
//   insert, update, delete, find, getMore, killCursors, findAndModify, count,
//   createIndexes, listIndexes, dropIndexes, create, drop, dropDatabase, listCollections.
// Filters: field equality (an array field matches if any element does), $eq $ne $gt
// $gte $lt $lte $in $nin $exists $not, $and $or $nor; dotted paths descend into
// embedded documents. Updates: $set $setOnInsert $inc $unset on top-level fields, or a
// replacement document. Unique indexes (including `_id_`) are enforced.
//
// Everything is a linear scan: meant for the hundreds of documents a test writes.
#include "support/mongo_test_server.hpp"

#include <algorithm>
#include <array>
#include <atomic>
#include <cerrno>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <functional>
#include <list>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string_view>
#include <system_error>
#include <thread>
#include <utility>

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <bson/bson.h>

// libbson declares bson_value_t aligned(8) and bson_t aligned(128); GCC warns that a
// template argument drops the attribute. For bson_value_t it equals the natural
// alignment, and bson_t only appears behind pointers, so nothing changes.
#pragma GCC diagnostic ignored "-Wignored-attributes"

namespace cachecar::test {

namespace {

constexpr std::int32_t op_reply_code = mongo_test_server::op_reply;
constexpr std::int32_t op_query_code = mongo_test_server::op_query;
constexpr std::int32_t op_msg_code = mongo_test_server::op_msg;

constexpr std::size_t header_size = 16;
constexpr std::size_t max_message_bytes = 48'000'000;
constexpr std::uint32_t max_document_bytes = 16 * 1024 * 1024;
// mongod refuses documents nested deeper than this; it also keeps our recursive
// walkers (and libbson's validator) far from the end of the stack.
constexpr int max_nesting = 100;
constexpr std::size_t max_connections = 256;
constexpr std::size_t max_open_cursors = 10'000;
constexpr std::size_t default_first_batch = 101;
// A batch leaves room under 16 MiB for the cursor envelope around it.
constexpr std::size_t max_batch_bytes = max_document_bytes - 64 * 1024;
constexpr int accept_poll_ms = 200;

using doc_bytes = std::vector<std::uint8_t>;

// A failed command: becomes {ok: 0, errmsg, code, codeName} or a writeErrors entry.
class command_error : public std::runtime_error {
public:
    command_error(int code, std::string code_name, const std::string& message, doc_bytes extra = {})
        : std::runtime_error(message), code_(code), code_name_(std::move(code_name)), extra_(std::move(extra)) {}
    int code() const { return code_; }
    const std::string& code_name() const { return code_name_; }
    const doc_bytes& extra() const { return extra_; }  // fields appended to the error document

private:
    int code_;
    std::string code_name_;
    doc_bytes extra_;
};

// Malformed wire input: the connection is closed, as mongod does.
class protocol_error : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

[[noreturn]] void bad_value(const std::string& message) { throw command_error(2, "BadValue", message); }

[[noreturn]] void unsupported(const std::string& what) {
    throw command_error(2, "BadValue", "mongo_test_server does not implement " + what);
}

[[noreturn]] void missing_field(const std::string& command, const std::string& field) {
    throw command_error(40414, "Location40414",
                        "BSON field '" + command + "." + field + "' is missing but a required field");
}

// ---- BSON plumbing ----------------------------------------------------------------

struct bson_deleter {
    void operator()(bson_t* b) const noexcept { bson_destroy(b); }
};
using bson_ptr = std::unique_ptr<bson_t, bson_deleter>;

bson_ptr new_bson() { return bson_ptr(bson_new()); }

// Bytes of a well-formed document owned elsewhere (a stored document, a request, the
// value of an embedded document).
struct doc_view {
    const std::uint8_t* data = nullptr;
    std::uint32_t len = 0;
};

doc_view view_of(const bson_t* b) { return {bson_get_data(b), b->len}; }
doc_view view_of(const doc_bytes& d) { return {d.data(), static_cast<std::uint32_t>(d.size())}; }
doc_view view_of(const bson_value_t& v) { return {v.value.v_doc.data, v.value.v_doc.data_len}; }
doc_bytes bytes_of(doc_view d) { return doc_bytes(d.data, d.data + d.len); }
doc_bytes bytes_of(const bson_t* b) { return bytes_of(view_of(b)); }

const doc_bytes& empty_document() {
    static const doc_bytes empty{5, 0, 0, 0, 0};
    return empty;
}

// A read-only bson_t over a doc_view. An initialised bson_t points into itself, so this
// is neither copyable nor movable.
class bson_view {
public:
    explicit bson_view(doc_view d) {
        if (!bson_init_static(&b_, d.data, d.len)) throw protocol_error("corrupt BSON");
    }
    bson_view(const bson_view&) = delete;
    bson_view& operator=(const bson_view&) = delete;
    const bson_t* get() const { return &b_; }

private:
    bson_t b_{};
};

bson_iter_t iter_of(doc_view d) {
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, d.data, d.len)) throw protocol_error("corrupt BSON");
    return it;
}

std::string_view key_of(const bson_iter_t& it) { return {bson_iter_key(&it), bson_iter_key_len(&it)}; }

// The value's pointers (strings, binary, embedded documents) point into the document
// the iterator walks, not into the iterator, so the copy outlives it.
bson_value_t value_of(const bson_iter_t& it) {
    bson_iter_t copy = it;
    return *bson_iter_value(&copy);
}

template <class F>
void for_each_field(doc_view d, F&& f) {
    auto it = iter_of(d);
    while (bson_iter_next(&it)) f(key_of(it), value_of(it), it);
}

std::optional<bson_value_t> field(doc_view d, std::string_view name) {
    auto it = iter_of(d);
    while (bson_iter_next(&it)) {
        if (key_of(it) == name) return value_of(it);
    }
    return std::nullopt;
}

// Dotted paths descend through embedded documents and array indexes; unlike mongod
// they do not fan out over the documents inside an array.
std::optional<bson_value_t> lookup(doc_view d, std::string_view path) {
    const auto dot = path.find('.');
    auto v = field(d, path.substr(0, dot));
    if (dot == std::string_view::npos || !v) return v;
    if (v->value_type != BSON_TYPE_DOCUMENT && v->value_type != BSON_TYPE_ARRAY) return std::nullopt;
    return lookup(view_of(*v), path.substr(dot + 1));
}

std::vector<bson_value_t> elements(const bson_value_t& array_or_doc) {
    std::vector<bson_value_t> out;
    for_each_field(view_of(array_or_doc), [&](std::string_view, const bson_value_t& v, const bson_iter_t&) {
        out.push_back(v);
    });
    return out;
}

void append_value(bson_t* b, std::string_view key, const bson_value_t& v) {
    bson_append_value(b, key.data(), static_cast<int>(key.size()), &v);
}

void append_utf8(bson_t* b, std::string_view key, std::string_view v) {
    bson_append_utf8(b, key.data(), static_cast<int>(key.size()), v.empty() ? "" : v.data(),
                     static_cast<int>(v.size()));
}

void append_doc(bson_t* b, std::string_view key, doc_view d) {
    const bson_view v(d);
    bson_append_document(b, key.data(), static_cast<int>(key.size()), v.get());
}

void append_array_of(bson_t* b, std::string_view key, const std::vector<doc_bytes>& docs) {
    bson_t array;
    bson_append_array_begin(b, key.data(), static_cast<int>(key.size()), &array);
    std::array<char, 16> buffer{};
    for (std::size_t i = 0; i < docs.size(); ++i) {
        const char* index_key = nullptr;
        const auto n = bson_uint32_to_string(static_cast<std::uint32_t>(i), &index_key, buffer.data(), buffer.size());
        append_doc(&array, {index_key, n}, view_of(docs[i]));
    }
    bson_append_array_end(b, &array);
}

void append_bool(bson_t* b, std::string_view key, bool v) {
    bson_append_bool(b, key.data(), static_cast<int>(key.size()), v);
}

void append_int32(bson_t* b, std::string_view key, std::int32_t v) {
    bson_append_int32(b, key.data(), static_cast<int>(key.size()), v);
}

void append_int64(bson_t* b, std::string_view key, std::int64_t v) {
    bson_append_int64(b, key.data(), static_cast<int>(key.size()), v);
}

// mongod sends counts as int32 when they fit, and mongoc reads `n`/`nModified` of a
// write reply only if they are int32.
void append_count(bson_t* b, std::string_view key, std::int64_t v) {
    if (v >= INT32_MIN && v <= INT32_MAX) {
        append_int32(b, key, static_cast<std::int32_t>(v));
    } else {
        append_int64(b, key, v);
    }
}

void append_ok(bson_t* b) { bson_append_double(b, "ok", 2, 1.0); }

// A single field {key: v} as bytes, to keep a value after its document changes.
doc_bytes wrap_value(std::string_view key, const bson_value_t& v) {
    auto b = new_bson();
    append_value(b.get(), key, v);
    return bytes_of(b.get());
}

std::string to_json(doc_view d) {
    const bson_view v(d);
    char* json = bson_as_relaxed_extended_json(v.get(), nullptr);
    std::string out = json ? json : "";
    bson_free(json);
    return out;
}

std::string to_json(const bson_value_t& v) {
    const auto wrapped = wrap_value("v", v);
    const auto json = to_json(view_of(wrapped));
    // {"v" : X } -> X
    const auto start = json.find(':');
    return start == std::string::npos ? json : json.substr(start + 2, json.size() - start - 4);
}

// bson_iter_next reports corruption only through err_off; nesting is bounded here
// before libbson's recursive validator sees the document.
bool well_formed(doc_view d, int depth) {
    bson_iter_t it;
    if (!bson_iter_init_from_data(&it, d.data, d.len)) return false;
    while (bson_iter_next(&it)) {
        const auto type = bson_iter_type(&it);
        const std::uint8_t* child = nullptr;
        std::uint32_t child_len = 0;
        if (type == BSON_TYPE_DOCUMENT) {
            bson_iter_document(&it, &child_len, &child);
        } else if (type == BSON_TYPE_ARRAY) {
            bson_iter_array(&it, &child_len, &child);
        } else if (type == BSON_TYPE_CODEWSCOPE) {
            std::uint32_t code_len = 0;
            bson_iter_codewscope(&it, &code_len, &child_len, &child);
        } else {
            continue;
        }
        if (depth >= max_nesting || child == nullptr || !well_formed({child, child_len}, depth + 1)) return false;
    }
    return it.err_off == 0;
}

bool well_formed(doc_view d) {
    if (!well_formed(d, 0)) return false;
    bson_t b;
    if (!bson_init_static(&b, d.data, d.len)) return false;
    std::size_t offset = 0;
    return bson_validate(&b, BSON_VALIDATE_NONE, &offset);
}

// ---- Values: types, order, truth ---------------------------------------------------

std::string type_name(bson_type_t t) {
    switch (t) {
        case BSON_TYPE_DOUBLE: return "double";
        case BSON_TYPE_UTF8: return "string";
        case BSON_TYPE_DOCUMENT: return "object";
        case BSON_TYPE_ARRAY: return "array";
        case BSON_TYPE_BINARY: return "binData";
        case BSON_TYPE_UNDEFINED: return "undefined";
        case BSON_TYPE_OID: return "objectId";
        case BSON_TYPE_BOOL: return "bool";
        case BSON_TYPE_DATE_TIME: return "date";
        case BSON_TYPE_NULL: return "null";
        case BSON_TYPE_REGEX: return "regex";
        case BSON_TYPE_INT32: return "int";
        case BSON_TYPE_TIMESTAMP: return "timestamp";
        case BSON_TYPE_INT64: return "long";
        case BSON_TYPE_DECIMAL128: return "decimal";
        case BSON_TYPE_MINKEY: return "minKey";
        case BSON_TYPE_MAXKEY: return "maxKey";
        default: return "other";
    }
}

bool is_number(const bson_value_t& v) {
    return v.value_type == BSON_TYPE_INT32 || v.value_type == BSON_TYPE_INT64 || v.value_type == BSON_TYPE_DOUBLE ||
           v.value_type == BSON_TYPE_DECIMAL128;
}

bool is_null_like(const bson_value_t& v) {
    return v.value_type == BSON_TYPE_NULL || v.value_type == BSON_TYPE_UNDEFINED;
}

bson_value_t null_value() {
    bson_value_t v{};
    v.value_type = BSON_TYPE_NULL;
    return v;
}

bool truthy(const bson_value_t& v) {
    switch (v.value_type) {
        case BSON_TYPE_BOOL: return v.value.v_bool;
        case BSON_TYPE_INT32: return v.value.v_int32 != 0;
        case BSON_TYPE_INT64: return v.value.v_int64 != 0;
        case BSON_TYPE_DOUBLE: return v.value.v_double != 0.0;
        case BSON_TYPE_NULL:
        case BSON_TYPE_UNDEFINED: return false;
        default: return true;
    }
}

std::optional<std::int64_t> as_int64(const bson_value_t& v) {
    switch (v.value_type) {
        case BSON_TYPE_INT32: return v.value.v_int32;
        case BSON_TYPE_INT64: return v.value.v_int64;
        case BSON_TYPE_DOUBLE:
            if (!std::isfinite(v.value.v_double) || std::fabs(v.value.v_double) > 9.0e18) return std::nullopt;
            return static_cast<std::int64_t>(v.value.v_double);
        default: return std::nullopt;
    }
}

long double as_long_double(const bson_value_t& v) {
    switch (v.value_type) {
        case BSON_TYPE_INT32: return v.value.v_int32;
        case BSON_TYPE_INT64: return static_cast<long double>(v.value.v_int64);
        case BSON_TYPE_DOUBLE: return v.value.v_double;
        case BSON_TYPE_DECIMAL128: {
            // Through text: exact enough for ordering, and strtold reads Infinity/NaN.
            std::array<char, BSON_DECIMAL128_STRING> text{};
            bson_decimal128_to_string(&v.value.v_decimal128, text.data());
            return std::strtold(text.data(), nullptr);
        }
        default: return 0;
    }
}

// MongoDB's canonical type order; types of one rank compare by value.
int type_rank(bson_type_t t) {
    switch (t) {
        case BSON_TYPE_MINKEY: return 0;
        case BSON_TYPE_UNDEFINED:
        case BSON_TYPE_NULL: return 1;
        case BSON_TYPE_INT32:
        case BSON_TYPE_INT64:
        case BSON_TYPE_DOUBLE:
        case BSON_TYPE_DECIMAL128: return 2;
        case BSON_TYPE_UTF8:
        case BSON_TYPE_SYMBOL: return 3;
        case BSON_TYPE_DOCUMENT: return 4;
        case BSON_TYPE_ARRAY: return 5;
        case BSON_TYPE_BINARY: return 6;
        case BSON_TYPE_OID: return 7;
        case BSON_TYPE_BOOL: return 8;
        case BSON_TYPE_DATE_TIME: return 9;
        case BSON_TYPE_TIMESTAMP: return 10;
        case BSON_TYPE_REGEX: return 11;
        case BSON_TYPE_DBPOINTER: return 12;
        case BSON_TYPE_CODE: return 13;
        case BSON_TYPE_CODEWSCOPE: return 14;
        case BSON_TYPE_MAXKEY: return 16;
        default: return 15;
    }
}

template <class T>
int three_way(const T& a, const T& b) {
    return a < b ? -1 : (b < a ? 1 : 0);
}

int compare_bytes(const void* a, std::size_t a_len, const void* b, std::size_t b_len) {
    const auto n = std::min(a_len, b_len);
    if (n > 0) {
        const int r = std::memcmp(a, b, n);
        if (r != 0) return r < 0 ? -1 : 1;
    }
    return three_way(a_len, b_len);
}

int compare_text(const char* a, const char* b) {
    return compare_bytes(a, std::strlen(a), b, std::strlen(b));
}

int compare_values(const bson_value_t& a, const bson_value_t& b);

// Field by field: type rank, then name, then value; the shorter document sorts first.
int compare_docs(doc_view a, doc_view b) {
    auto ia = iter_of(a);
    auto ib = iter_of(b);
    while (true) {
        const bool more_a = bson_iter_next(&ia);
        const bool more_b = bson_iter_next(&ib);
        if (!more_a || !more_b) return three_way(more_a, more_b);
        const auto va = value_of(ia);
        const auto vb = value_of(ib);
        if (const int r = three_way(type_rank(va.value_type), type_rank(vb.value_type)); r != 0) return r;
        const auto ka = key_of(ia);
        const auto kb = key_of(ib);
        if (const int r = compare_bytes(ka.data(), ka.size(), kb.data(), kb.size()); r != 0) return r;
        if (const int r = compare_values(va, vb); r != 0) return r;
    }
}

bool is_nan(const bson_value_t& v) {
    return (v.value_type == BSON_TYPE_DOUBLE || v.value_type == BSON_TYPE_DECIMAL128) &&
           std::isnan(as_long_double(v));
}

int compare_numbers(const bson_value_t& a, const bson_value_t& b) {
    const auto integral = [](const bson_value_t& v) {
        return v.value_type == BSON_TYPE_INT32 || v.value_type == BSON_TYPE_INT64;
    };
    if (integral(a) && integral(b)) return three_way(*as_int64(a), *as_int64(b));
    // long double holds every int64 exactly, so mixed comparisons are exact.
    const long double x = as_long_double(a);
    const long double y = as_long_double(b);
    const bool nan_x = std::isnan(x);
    const bool nan_y = std::isnan(y);
    if (nan_x || nan_y) return three_way(!nan_x, !nan_y);  // NaN equals NaN, below every number
    return three_way(x, y);
}

int compare_values(const bson_value_t& a, const bson_value_t& b) {
    const int rank = type_rank(a.value_type);
    if (const int r = three_way(rank, type_rank(b.value_type)); r != 0) return r;
    const auto& x = a.value;
    const auto& y = b.value;
    switch (rank) {
        case 2: return compare_numbers(a, b);
        case 3: {
            const auto text = [](const bson_value_t& v) {
                return v.value_type == BSON_TYPE_UTF8
                           ? std::string_view(v.value.v_utf8.str, v.value.v_utf8.len)
                           : std::string_view(v.value.v_symbol.symbol, v.value.v_symbol.len);
            };
            const auto ta = text(a);
            const auto tb = text(b);
            return compare_bytes(ta.data(), ta.size(), tb.data(), tb.size());
        }
        case 4:
        case 5: return compare_docs(view_of(a), view_of(b));
        case 6:
            if (const int r = three_way(x.v_binary.data_len, y.v_binary.data_len); r != 0) return r;
            if (const int r = three_way(static_cast<int>(x.v_binary.subtype), static_cast<int>(y.v_binary.subtype));
                r != 0)
                return r;
            return compare_bytes(x.v_binary.data, x.v_binary.data_len, y.v_binary.data, y.v_binary.data_len);
        case 7: return compare_bytes(x.v_oid.bytes, sizeof x.v_oid.bytes, y.v_oid.bytes, sizeof y.v_oid.bytes);
        case 8: return three_way(x.v_bool, y.v_bool);
        case 9: return three_way(x.v_datetime, y.v_datetime);
        case 10:
            if (const int r = three_way(x.v_timestamp.timestamp, y.v_timestamp.timestamp); r != 0) return r;
            return three_way(x.v_timestamp.increment, y.v_timestamp.increment);
        case 11:
            if (const int r = compare_text(x.v_regex.regex, y.v_regex.regex); r != 0) return r;
            return compare_text(x.v_regex.options, y.v_regex.options);
        case 12:
            if (const int r = compare_bytes(x.v_dbpointer.collection, x.v_dbpointer.collection_len,
                                            y.v_dbpointer.collection, y.v_dbpointer.collection_len);
                r != 0)
                return r;
            return compare_bytes(x.v_dbpointer.oid.bytes, 12, y.v_dbpointer.oid.bytes, 12);
        case 13: return compare_bytes(x.v_code.code, x.v_code.code_len, y.v_code.code, y.v_code.code_len);
        case 14:
            if (const int r = compare_bytes(x.v_codewscope.code, x.v_codewscope.code_len, y.v_codewscope.code,
                                            y.v_codewscope.code_len);
                r != 0)
                return r;
            return compare_docs({x.v_codewscope.scope_data, x.v_codewscope.scope_len},
                                {y.v_codewscope.scope_data, y.v_codewscope.scope_len});
        default: return 0;
    }
}

// ---- Query matching ----------------------------------------------------------------

bool is_operator_doc(const bson_value_t& v) {
    if (v.value_type != BSON_TYPE_DOCUMENT) return false;
    auto it = iter_of(view_of(v));
    return bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
}

bool matches(doc_view doc, doc_view filter);

// {field: v}: equal, or (field an array) an element equal; null also matches missing.
bool equals_or_contains(const std::optional<bson_value_t>& field_value, const bson_value_t& v) {
    if (!field_value) return is_null_like(v);
    if (compare_values(*field_value, v) == 0) return true;
    if (field_value->value_type != BSON_TYPE_ARRAY) return false;
    const auto items = elements(*field_value);
    return std::any_of(items.begin(), items.end(), [&](const bson_value_t& e) { return compare_values(e, v) == 0; });
}

// $gt/$gte/$lt/$lte compare only within one type class (numbers with numbers, ...).
bool compares(const std::optional<bson_value_t>& field_value, const bson_value_t& v, std::string_view op) {
    const bool or_equal = op == "$gte" || op == "$lte";
    if (is_null_like(v)) return or_equal && equals_or_contains(field_value, v);
    if (!field_value) return false;
    const auto test = [&](const bson_value_t& candidate) {
        if (type_rank(candidate.value_type) != type_rank(v.value_type)) return false;
        if (is_nan(candidate) || is_nan(v)) return or_equal && is_nan(candidate) && is_nan(v);
        const int r = compare_values(candidate, v);
        if (op == "$gt") return r > 0;
        if (op == "$gte") return r >= 0;
        if (op == "$lt") return r < 0;
        return r <= 0;
    };
    if (test(*field_value)) return true;
    if (field_value->value_type != BSON_TYPE_ARRAY) return false;
    const auto items = elements(*field_value);
    return std::any_of(items.begin(), items.end(), test);
}

bool matches_operators(const std::optional<bson_value_t>& field_value, doc_view ops) {
    bool all = true;  // no short cut: every operator is checked for validity
    for_each_field(ops, [&](std::string_view op, const bson_value_t& v, const bson_iter_t&) {
        bool ok = false;
        if (op == "$eq") {
            if (v.value_type == BSON_TYPE_REGEX) unsupported("regular expression matching");
            ok = equals_or_contains(field_value, v);
        } else if (op == "$ne") {
            ok = !equals_or_contains(field_value, v);
        } else if (op == "$gt" || op == "$gte" || op == "$lt" || op == "$lte") {
            ok = compares(field_value, v, op);
        } else if (op == "$in" || op == "$nin") {
            if (v.value_type != BSON_TYPE_ARRAY) bad_value(std::string(op) + " needs an array");
            bool any = false;
            for (const auto& candidate : elements(v)) {
                if (candidate.value_type == BSON_TYPE_REGEX) unsupported("regular expressions in " + std::string(op));
                any = any || equals_or_contains(field_value, candidate);
            }
            ok = (op == "$in") == any;
        } else if (op == "$exists") {
            ok = truthy(v) == field_value.has_value();
        } else if (op == "$not") {
            if (v.value_type == BSON_TYPE_REGEX) unsupported("$not with a regular expression");
            if (!is_operator_doc(v)) bad_value("$not needs a document of operators");
            ok = !matches_operators(field_value, view_of(v));
        } else {
            bad_value("unknown operator: " + std::string(op) +
                      " (mongo_test_server implements $eq $ne $gt $gte $lt $lte $in $nin $exists $not)");
        }
        all = all && ok;
    });
    return all;
}

bool matches(doc_view doc, doc_view filter) {
    bool all = true;
    for_each_field(filter, [&](std::string_view key, const bson_value_t& cond, const bson_iter_t&) {
        bool ok = false;
        if (key == "$and" || key == "$or" || key == "$nor") {
            if (cond.value_type != BSON_TYPE_ARRAY) bad_value(std::string(key) + " must be an array");
            const auto clauses = elements(cond);
            if (clauses.empty()) bad_value("$and/$or/$nor must be a nonempty array");
            std::size_t hits = 0;
            for (const auto& clause : clauses) {
                if (clause.value_type != BSON_TYPE_DOCUMENT) bad_value("$or/$and/$nor entries need to be full objects");
                hits += matches(doc, view_of(clause)) ? 1 : 0;
            }
            ok = key == "$and" ? hits == clauses.size() : (key == "$or" ? hits > 0 : hits == 0);
        } else if (key == "$comment") {
            ok = true;
        } else if (!key.empty() && key[0] == '$') {
            bad_value("unknown top level operator: " + std::string(key));
        } else {
            if (cond.value_type == BSON_TYPE_REGEX) unsupported("regular expression matching (field " + std::string(key) + ")");
            const auto value = lookup(doc, key);
            ok = is_operator_doc(cond) ? matches_operators(value, view_of(cond)) : equals_or_contains(value, cond);
        }
        all = all && ok;
    });
    return all;
}

// Rejects a malformed filter even when there is nothing to match it against.
void validate_filter(doc_view filter) { matches(view_of(empty_document()), filter); }

// ---- Projection and sort -----------------------------------------------------------

struct projection {
    bool inclusion = false;
    bool exclude_id = false;
    std::set<std::string, std::less<>> fields;
};

std::optional<projection> parse_projection(const std::optional<doc_view>& spec) {
    if (!spec || spec->len <= 5) return std::nullopt;
    projection p;
    bool included = false;
    bool excluded = false;
    bool id_included = false;
    std::string excluded_name;
    for_each_field(*spec, [&](std::string_view key, const bson_value_t& v, const bson_iter_t&) {
        if (key.find('.') != std::string_view::npos || (!key.empty() && key[0] == '$'))
            unsupported("projection of " + std::string(key) + " (top-level fields only)");
        if (!is_number(v) && v.value_type != BSON_TYPE_BOOL)
            unsupported("projection values other than 0/1/true/false (field " + std::string(key) + ")");
        const bool on = truthy(v);
        if (key == "_id") {
            p.exclude_id = !on;
            id_included = on;
            return;
        }
        if (!on) excluded_name = key;
        (on ? included : excluded) = true;
        p.fields.emplace(key);
    });
    if (included && excluded)
        throw command_error(31254, "Location31254",
                            "Cannot do exclusion on field " + excluded_name + " in inclusion projection");
    p.inclusion = included || (id_included && !excluded);
    return p;
}

doc_bytes project(const std::optional<projection>& p, doc_view d) {
    if (!p) return bytes_of(d);
    auto out = new_bson();
    for_each_field(d, [&](std::string_view key, const bson_value_t&, const bson_iter_t& it) {
        const bool keep = key == "_id" ? !p->exclude_id : (p->fields.contains(key) == p->inclusion);
        if (keep) bson_append_iter(out.get(), nullptr, 0, &it);
    });
    return bytes_of(out.get());
}

using sort_spec = std::vector<std::pair<std::string, int>>;

sort_spec parse_sort(const std::optional<doc_view>& spec) {
    sort_spec s;
    if (!spec) return s;
    for_each_field(*spec, [&](std::string_view key, const bson_value_t& v, const bson_iter_t&) {
        if (v.value_type == BSON_TYPE_DOCUMENT) unsupported("$meta sorts");
        const auto direction = as_int64(v);
        if (!direction || (*direction != 1 && *direction != -1))
            throw command_error(15974, "Location15974",
                                "Illegal key in $sort specification: " + std::string(key) + ": " + to_json(v));
        s.emplace_back(std::string(key), static_cast<int>(*direction));
    });
    return s;
}

// An array sorts by its smallest element ascending and by its largest descending.
bson_value_t sort_key(doc_view d, const std::string& path, int direction) {
    const auto v = lookup(d, path);
    if (!v) return null_value();
    if (v->value_type != BSON_TYPE_ARRAY) return *v;
    std::optional<bson_value_t> best;
    for (const auto& e : elements(*v)) {
        if (!best || compare_values(e, *best) * direction < 0) best = e;
    }
    return best.value_or(null_value());
}

int compare_for_sort(doc_view a, doc_view b, const sort_spec& spec) {
    for (const auto& [path, direction] : spec) {
        const int r = compare_values(sort_key(a, path, direction), sort_key(b, path, direction));
        if (r != 0) return r * direction;
    }
    return 0;
}

// ---- Updates -----------------------------------------------------------------------

void validate_id(const bson_value_t& id) {
    if (id.value_type == BSON_TYPE_ARRAY) bad_value("can't use an array for _id");
    if (id.value_type == BSON_TYPE_REGEX) bad_value("can't use a regex for _id");
    if (id.value_type == BSON_TYPE_UNDEFINED) bad_value("can't use a undefined for _id");
}

// mongod stores `_id` first and generates an ObjectId for a document without one.
doc_bytes with_id_first(doc_view d) {
    const auto id = field(d, "_id");
    if (id) {
        auto first = iter_of(d);
        if (bson_iter_next(&first) && key_of(first) == "_id") return bytes_of(d);
    }
    auto out = new_bson();
    if (id) {
        append_value(out.get(), "_id", *id);
    } else {
        bson_oid_t oid;
        bson_oid_init(&oid, nullptr);
        bson_append_oid(out.get(), "_id", 3, &oid);
    }
    for_each_field(d, [&](std::string_view key, const bson_value_t&, const bson_iter_t& it) {
        if (key != "_id") bson_append_iter(out.get(), nullptr, 0, &it);
    });
    return bytes_of(out.get());
}

bool is_operator_update(doc_view u) {
    auto it = iter_of(u);
    return bson_iter_next(&it) && bson_iter_key(&it)[0] == '$';
}

struct update_action {
    enum class kind { set, inc, unset } what;
    bson_value_t value;
};
// Ordered by name: mongod 5.0 adds new fields in lexicographic order.
using update_actions = std::map<std::string, update_action, std::less<>>;

update_actions parse_update(doc_view update, bool inserting) {
    update_actions actions;
    std::set<std::string, std::less<>> touched;  // $setOnInsert conflicts even on updates
    for_each_field(update, [&](std::string_view op, const bson_value_t& fields, const bson_iter_t&) {
        update_action::kind what{};
        if (op == "$set" || op == "$setOnInsert") {
            what = update_action::kind::set;
        } else if (op == "$inc") {
            what = update_action::kind::inc;
        } else if (op == "$unset") {
            what = update_action::kind::unset;
        } else {
            throw command_error(9, "FailedToParse",
                                "Unknown modifier: " + std::string(op) +
                                    ". Expected a valid update modifier or pipeline-style update specified as an "
                                    "array (mongo_test_server implements $set, $setOnInsert, $inc, $unset)");
        }
        if (fields.value_type != BSON_TYPE_DOCUMENT)
            throw command_error(9, "FailedToParse",
                                "Modifiers operate on fields but we found type " + type_name(fields.value_type) +
                                    " instead. For example: {$mod: {<field>: ...}} not {" + std::string(op) +
                                    ": " + to_json(fields) + "}");
        for_each_field(view_of(fields), [&](std::string_view name, const bson_value_t& v, const bson_iter_t&) {
            if (name.empty()) throw command_error(56, "EmptyFieldName", "An empty update path is not valid.");
            if (name[0] == '$')
                throw command_error(52, "DollarPrefixedFieldName",
                                    "The dollar ($) prefixed field '" + std::string(name) + "' in '" +
                                        std::string(name) + "' is not valid for storage.");
            if (name.find('.') != std::string_view::npos)
                unsupported("dotted update paths (" + std::string(name) + ")");
            if (!touched.emplace(name).second)
                throw command_error(40, "ConflictingUpdateOperators",
                                    "Updating the path '" + std::string(name) + "' would create a conflict at '" +
                                        std::string(name) + "'");
            if (what == update_action::kind::inc && !is_number(v))
                throw command_error(14, "TypeMismatch",
                                    "Cannot increment with non-numeric argument: {" + std::string(name) + ": " +
                                        to_json(v) + "}");
            if (op == "$setOnInsert" && !inserting) return;
            actions.emplace(std::string(name), update_action{what, v});
        });
    });
    return actions;
}

bson_value_t add_numbers(const bson_value_t& current, const bson_value_t& increment, std::string_view name) {
    if (!is_number(current))
        throw command_error(14, "TypeMismatch",
                            "Cannot apply $inc to a value of non-numeric type. The field '" + std::string(name) +
                                "' has non-numeric type " + type_name(current.value_type));
    if (current.value_type == BSON_TYPE_DECIMAL128 || increment.value_type == BSON_TYPE_DECIMAL128)
        unsupported("$inc on decimal128 values");
    bson_value_t sum{};
    if (current.value_type == BSON_TYPE_DOUBLE || increment.value_type == BSON_TYPE_DOUBLE) {
        sum.value_type = BSON_TYPE_DOUBLE;
        sum.value.v_double = static_cast<double>(as_long_double(current) + as_long_double(increment));
        return sum;
    }
    const std::int64_t a = *as_int64(current);
    const std::int64_t b = *as_int64(increment);
    std::int64_t total = 0;
    if (__builtin_add_overflow(a, b, &total))
        bad_value("Failed to apply $inc operations to current value for field '" + std::string(name) +
                  "': integer overflow");
    if (current.value_type == BSON_TYPE_INT32 && increment.value_type == BSON_TYPE_INT32 && total >= INT32_MIN &&
        total <= INT32_MAX) {
        sum.value_type = BSON_TYPE_INT32;
        sum.value.v_int32 = static_cast<std::int32_t>(total);
    } else {
        // int32 + int32 that overflows becomes a long, as in mongod.
        sum.value_type = BSON_TYPE_INT64;
        sum.value.v_int64 = total;
    }
    return sum;
}

doc_bytes apply_operators(doc_view original, const update_actions& actions) {
    auto out = new_bson();
    std::set<std::string_view> done;
    for_each_field(original, [&](std::string_view key, const bson_value_t& v, const bson_iter_t& it) {
        const auto found = actions.find(key);
        if (found == actions.end()) {
            bson_append_iter(out.get(), nullptr, 0, &it);
            return;
        }
        done.insert(found->first);
        switch (found->second.what) {
            case update_action::kind::set: append_value(out.get(), key, found->second.value); break;
            case update_action::kind::inc: append_value(out.get(), key, add_numbers(v, found->second.value, key)); break;
            case update_action::kind::unset: break;
        }
    });
    for (const auto& [name, action] : actions) {
        if (!done.contains(name) && action.what != update_action::kind::unset) append_value(out.get(), name, action.value);
    }
    return bytes_of(out.get());
}

[[noreturn]] void immutable_id(const bson_value_t& now) {
    throw command_error(66, "ImmutableField",
                        "After applying the update, the (immutable) field '_id' was found to have been altered to "
                        "_id: " +
                            to_json(now));
}

// Keeps the original `_id`; the replacement may repeat it but not change it.
doc_bytes apply_replacement(doc_view original, doc_view replacement) {
    auto out = new_bson();
    const auto id = field(original, "_id");
    if (id) append_value(out.get(), "_id", *id);
    for_each_field(replacement, [&](std::string_view key, const bson_value_t& v, const bson_iter_t& it) {
        if (!key.empty() && key[0] == '$')
            throw command_error(52, "DollarPrefixedFieldName",
                                "The dollar ($) prefixed field '" + std::string(key) + "' in '" + std::string(key) +
                                    "' is not valid for storage.");
        if (key == "_id" && id) {
            if (compare_values(*id, v) != 0) immutable_id(v);
            return;
        }
        bson_append_iter(out.get(), nullptr, 0, &it);
    });
    return bytes_of(out.get());
}

doc_bytes updated_document(doc_view original, doc_view update, bool inserting) {
    doc_bytes out = is_operator_update(update) ? apply_operators(original, parse_update(update, inserting))
                                               : apply_replacement(original, update);
    if (const auto before = field(original, "_id")) {
        const auto after = field(view_of(out), "_id");
        if (!after || compare_values(*before, *after) != 0)
            throw command_error(66, "ImmutableField",
                                "Performing an update on the path '_id' would modify the immutable field '_id'");
    }
    if (out.size() > max_document_bytes)
        throw command_error(17419, "Location17419",
                            "Resulting document after update is larger than " + std::to_string(max_document_bytes));
    return out;
}

// The equality fields of an upsert's query seed the inserted document.
void collect_equalities(doc_view filter, bson_t* out, std::set<std::string, std::less<>>& seen) {
    for_each_field(filter, [&](std::string_view key, const bson_value_t& cond, const bson_iter_t&) {
        if (key == "$and") {
            for (const auto& clause : elements(cond)) {
                if (clause.value_type == BSON_TYPE_DOCUMENT) collect_equalities(view_of(clause), out, seen);
            }
            return;
        }
        if (key.empty() || key[0] == '$') return;
        const auto eq = is_operator_doc(cond) ? field(view_of(cond), "$eq") : std::optional<bson_value_t>(cond);
        if (!eq) return;
        if (key.find('.') != std::string_view::npos) unsupported("upserts with dotted query paths (" + std::string(key) + ")");
        if (seen.emplace(key).second) append_value(out, key, *eq);
    });
}

doc_bytes upsert_document(doc_view query, doc_view update) {
    auto seed = new_bson();
    std::set<std::string, std::less<>> seen;
    collect_equalities(query, seed.get(), seen);
    doc_bytes doc;
    if (is_operator_update(update)) {
        doc = updated_document(view_of(seed.get()), update, true);
    } else {
        // A replacement keeps only the query's `_id`, not its other equality fields.
        auto id_only = new_bson();
        if (const auto id = field(view_of(seed.get()), "_id")) append_value(id_only.get(), "_id", *id);
        doc = apply_replacement(view_of(id_only.get()), update);
    }
    doc = with_id_first(view_of(doc));
    validate_id(*field(view_of(doc), "_id"));
    return doc;
}

// ---- Storage -----------------------------------------------------------------------

struct index_def {
    std::string name;
    doc_bytes key;
    bool unique = false;
    bool sparse = false;
    std::optional<std::int64_t> expire_after_seconds;
    std::optional<doc_bytes> partial_filter;
    doc_bytes spec;  // as listIndexes reports it
};

index_def id_index() {
    index_def ix;
    ix.name = "_id_";
    auto key = new_bson();
    append_int32(key.get(), "_id", 1);
    ix.key = bytes_of(key.get());
    ix.unique = true;
    auto spec = new_bson();
    append_int32(spec.get(), "v", 2);
    append_doc(spec.get(), "key", view_of(ix.key));
    append_utf8(spec.get(), "name", ix.name);
    ix.spec = bytes_of(spec.get());
    return ix;
}

bool equivalent_options(const index_def& a, const index_def& b) {
    const bool same_partial = a.partial_filter.has_value() == b.partial_filter.has_value() &&
                              (!a.partial_filter || *a.partial_filter == *b.partial_filter);
    return a.unique == b.unique && a.sparse == b.sparse && a.expire_after_seconds == b.expire_after_seconds &&
           same_partial;
}

bool same_key(const index_def& a, const index_def& b) { return compare_docs(view_of(a.key), view_of(b.key)) == 0; }

struct collection {
    std::vector<doc_bytes> docs;  // natural order: insertion order
    std::vector<index_def> indexes{id_index()};
};

using database = std::map<std::string, collection, std::less<>>;

struct cursor_state {
    std::string ns;
    std::deque<doc_bytes> docs;
};

// The values `ix` holds for `doc`, or nullopt when the index does not cover it
// (sparse with every key field missing, or outside its partial filter).
std::optional<std::vector<bson_value_t>> index_key(const index_def& ix, doc_view doc) {
    if (ix.partial_filter && !matches(doc, view_of(*ix.partial_filter))) return std::nullopt;
    std::vector<bson_value_t> key;
    bool any = false;
    for_each_field(view_of(ix.key), [&](std::string_view path, const bson_value_t&, const bson_iter_t&) {
        const auto v = lookup(doc, path);
        any = any || v.has_value();
        key.push_back(v.value_or(null_value()));
    });
    if (ix.sparse && !any) return std::nullopt;
    return key;
}

bool same_index_key(const std::vector<bson_value_t>& a, const std::vector<bson_value_t>& b) {
    return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                      [](const bson_value_t& x, const bson_value_t& y) { return compare_values(x, y) == 0; });
}

command_error duplicate_key(const std::string& ns, const index_def& ix, const std::vector<bson_value_t>& key) {
    auto value = new_bson();
    std::size_t i = 0;
    for_each_field(view_of(ix.key), [&](std::string_view path, const bson_value_t&, const bson_iter_t&) {
        append_value(value.get(), path, key.at(i++));
    });
    auto extra = new_bson();
    append_doc(extra.get(), "keyPattern", view_of(ix.key));
    append_doc(extra.get(), "keyValue", view_of(value.get()));
    return command_error(11000, "DuplicateKey",
                         "E11000 duplicate key error collection: " + ns + " index: " + ix.name +
                             " dup key: " + to_json(view_of(value.get())),
                         bytes_of(extra.get()));
}

// Throws DuplicateKey if `doc` would collide in a unique index with a document other
// than the one at `self` (the document being updated).
void check_unique(const collection& c, const std::string& ns, doc_view doc, std::optional<std::size_t> self) {
    for (const auto& ix : c.indexes) {
        if (!ix.unique) continue;
        const auto key = index_key(ix, doc);
        if (!key) continue;
        for (std::size_t i = 0; i < c.docs.size(); ++i) {
            if (self && *self == i) continue;
            const auto other = index_key(ix, view_of(c.docs[i]));
            if (other && same_index_key(*key, *other)) throw duplicate_key(ns, ix, *key);
        }
    }
}

std::vector<doc_bytes> take_batch(std::deque<doc_bytes>& docs, std::optional<std::size_t> max_docs) {
    std::vector<doc_bytes> batch;
    std::size_t bytes = 0;
    while (!docs.empty() && (!max_docs || batch.size() < *max_docs)) {
        if (!batch.empty() && bytes + docs.front().size() > max_batch_bytes) break;
        bytes += docs.front().size();
        batch.push_back(std::move(docs.front()));
        docs.pop_front();
    }
    return batch;
}

void append_cursor(bson_t* reply, const char* batch_field, const std::vector<doc_bytes>& batch, std::int64_t id,
                   const std::string& ns) {
    bson_t cursor;
    bson_append_document_begin(reply, "cursor", 6, &cursor);
    append_array_of(&cursor, batch_field, batch);
    append_int64(&cursor, "id", id);
    append_utf8(&cursor, "ns", ns);
    bson_append_document_end(reply, &cursor);
}

class write_errors {
public:
    void add(std::size_t index, const command_error& e) {
        auto entry = new_bson();
        append_int32(entry.get(), "index", static_cast<std::int32_t>(index));
        append_int32(entry.get(), "code", e.code());
        if (!e.extra().empty()) {
            for_each_field(view_of(e.extra()), [&](std::string_view, const bson_value_t&, const bson_iter_t& it) {
                bson_append_iter(entry.get(), nullptr, 0, &it);
            });
        }
        append_utf8(entry.get(), "errmsg", e.what());
        entries_.push_back(bytes_of(entry.get()));
    }
    void append_to(bson_t* reply) const {
        if (!entries_.empty()) append_array_of(reply, "writeErrors", entries_);
    }

private:
    std::vector<doc_bytes> entries_;
};

// A command's arguments, with mongod's type checks.
struct request {
    const std::string& db;
    doc_view cmd;
    std::string name;
    bson_value_t arg;  // value of the first field: the collection name for most commands
    std::int64_t connection_id;

    std::string collection_name() const {
        if (arg.value_type != BSON_TYPE_UTF8)
            throw command_error(73, "InvalidNamespace",
                                "collection name has invalid type " + type_name(arg.value_type));
        std::string coll(arg.value.v_utf8.str, arg.value.v_utf8.len);
        if (coll.empty() || coll.find('\0') != std::string::npos)
            throw command_error(73, "InvalidNamespace", "Invalid namespace specified '" + db + "." + coll + "'");
        return coll;
    }
    std::string ns() const { return db + "." + collection_name(); }

    std::optional<bson_value_t> get(std::string_view key) const { return field(cmd, key); }

    [[noreturn]] void wrong_type(std::string_view key, const bson_value_t& v, const char* expected) const {
        throw command_error(14, "TypeMismatch",
                            "BSON field '" + name + "." + std::string(key) + "' is the wrong type '" +
                                type_name(v.value_type) + "', expected type '" + expected + "'");
    }
    std::optional<doc_view> get_doc(std::string_view key) const {
        const auto v = get(key);
        if (!v || is_null_like(*v)) return std::nullopt;
        if (v->value_type != BSON_TYPE_DOCUMENT) wrong_type(key, *v, "object");
        return view_of(*v);
    }
    std::optional<bson_value_t> get_array(std::string_view key) const {
        const auto v = get(key);
        if (!v) return std::nullopt;
        if (v->value_type != BSON_TYPE_ARRAY) wrong_type(key, *v, "array");
        return v;
    }
    std::optional<std::int64_t> get_int(std::string_view key) const {
        const auto v = get(key);
        if (!v || is_null_like(*v)) return std::nullopt;
        const auto n = as_int64(*v);
        if (!n) wrong_type(key, *v, "long");
        return n;
    }
    bool get_bool(std::string_view key, bool fallback) const {
        const auto v = get(key);
        return v ? truthy(*v) : fallback;
    }
    std::optional<std::int64_t> cursor_batch_size() const {
        const auto cursor = get_doc("cursor");
        if (!cursor) return std::nullopt;
        const auto v = field(*cursor, "batchSize");
        return v ? as_int64(*v) : std::nullopt;
    }
};

std::optional<doc_view> doc_field(doc_view d, std::string_view key, const std::string& context) {
    const auto v = field(d, key);
    if (!v || is_null_like(*v)) return std::nullopt;
    if (v->value_type != BSON_TYPE_DOCUMENT)
        throw command_error(14, "TypeMismatch",
                            "BSON field '" + context + "." + std::string(key) + "' is the wrong type '" +
                                type_name(v->value_type) + "', expected type 'object'");
    return view_of(*v);
}

bool bool_field(doc_view d, std::string_view key) {
    const auto v = field(d, key);
    return v && truthy(*v);
}

class store {
public:
    bson_ptr run(const std::string& db, doc_view cmd, std::int64_t connection_id);

    void clear() {
        dbs_.clear();
        cursors_.clear();
    }
    void clear_cursors() { cursors_.clear(); }
    std::vector<std::string> documents(const std::string& db, const std::string& coll) const;
    void insert_raw(const std::string& db, const std::string& coll, doc_view doc);
    std::size_t expire(std::int64_t now_ms);

private:
    using handler = void (store::*)(const request&, bson_t*);
    static const std::map<std::string, handler, std::less<>>& handlers();

    collection* find_collection(std::string_view db, std::string_view name) {
        const auto d = dbs_.find(db);
        if (d == dbs_.end()) return nullptr;
        const auto c = d->second.find(name);
        return c == d->second.end() ? nullptr : &c->second;
    }
    collection& ensure_collection(const std::string& db, const std::string& name, bool* created = nullptr) {
        auto& d = dbs_[db];
        const auto [it, inserted] = d.try_emplace(name);
        if (created) *created = inserted;
        return it->second;
    }
    std::vector<std::size_t> select(const collection& c, const std::optional<doc_view>& filter,
                                    const sort_spec& sort) const;
    std::int64_t open_cursor(const std::string& ns, std::deque<doc_bytes> rest);
    void reply_with_cursor(bson_t* reply, const std::string& ns, std::deque<doc_bytes> docs,
                           std::optional<std::size_t> first_batch, bool single_batch);
    void forget_cursors(const std::string& ns_prefix, bool whole_db);

    void cmd_hello(const request& r, bson_t* reply);
    void cmd_ping(const request& r, bson_t* reply);
    void cmd_build_info(const request& r, bson_t* reply);
    void cmd_insert(const request& r, bson_t* reply);
    void cmd_update(const request& r, bson_t* reply);
    void cmd_delete(const request& r, bson_t* reply);
    void cmd_find(const request& r, bson_t* reply);
    void cmd_get_more(const request& r, bson_t* reply);
    void cmd_kill_cursors(const request& r, bson_t* reply);
    void cmd_find_and_modify(const request& r, bson_t* reply);
    void cmd_count(const request& r, bson_t* reply);
    void cmd_create_indexes(const request& r, bson_t* reply);
    void cmd_list_indexes(const request& r, bson_t* reply);
    void cmd_drop_indexes(const request& r, bson_t* reply);
    void cmd_create(const request& r, bson_t* reply);
    void cmd_drop(const request& r, bson_t* reply);
    void cmd_drop_database(const request& r, bson_t* reply);
    void cmd_list_collections(const request& r, bson_t* reply);

    std::map<std::string, database, std::less<>> dbs_;
    std::map<std::int64_t, cursor_state> cursors_;
    std::int64_t next_cursor_id_ = 1'000'001;
};

const std::map<std::string, store::handler, std::less<>>& store::handlers() {
    static const std::map<std::string, handler, std::less<>> table{
        {"hello", &store::cmd_hello},
        {"isMaster", &store::cmd_hello},
        {"ismaster", &store::cmd_hello},
        {"ping", &store::cmd_ping},
        {"buildInfo", &store::cmd_build_info},
        {"buildinfo", &store::cmd_build_info},
        {"endSessions", &store::cmd_ping},
        {"insert", &store::cmd_insert},
        {"update", &store::cmd_update},
        {"delete", &store::cmd_delete},
        {"find", &store::cmd_find},
        {"getMore", &store::cmd_get_more},
        {"killCursors", &store::cmd_kill_cursors},
        {"findAndModify", &store::cmd_find_and_modify},
        {"findandmodify", &store::cmd_find_and_modify},
        {"count", &store::cmd_count},
        {"createIndexes", &store::cmd_create_indexes},
        {"listIndexes", &store::cmd_list_indexes},
        {"dropIndexes", &store::cmd_drop_indexes},
        {"create", &store::cmd_create},
        {"drop", &store::cmd_drop},
        {"dropDatabase", &store::cmd_drop_database},
        {"listCollections", &store::cmd_list_collections},
    };
    return table;
}

bson_ptr error_reply(const command_error& e) {
    auto reply = new_bson();
    bson_append_double(reply.get(), "ok", 2, 0.0);
    append_utf8(reply.get(), "errmsg", e.what());
    append_int32(reply.get(), "code", e.code());
    append_utf8(reply.get(), "codeName", e.code_name());
    if (!e.extra().empty()) {
        for_each_field(view_of(e.extra()), [&](std::string_view, const bson_value_t&, const bson_iter_t& it) {
            bson_append_iter(reply.get(), nullptr, 0, &it);
        });
    }
    return reply;
}

bson_ptr store::run(const std::string& db, doc_view cmd, std::int64_t connection_id) {
    auto reply = new_bson();
    try {
        auto it = iter_of(cmd);
        if (!bson_iter_next(&it)) throw command_error(59, "CommandNotFound", "no such command: ''");
        request r{db, cmd, std::string(key_of(it)), value_of(it), connection_id};
        const auto found = handlers().find(r.name);
        if (found == handlers().end())
            throw command_error(59, "CommandNotFound", "no such command: '" + r.name + "'");
        if (db.empty())
            throw command_error(40571, "Location40571", "OP_MSG requests require a $db argument");
        (this->*(found->second))(r, reply.get());
        append_ok(reply.get());
    } catch (const command_error& e) {
        return error_reply(e);
    }
    return reply;
}

void store::cmd_hello(const request& r, bson_t* reply) {
    // No topologyVersion: it would switch drivers to the streaming (awaitable) hello.
    append_bool(reply, r.name == "hello" ? "isWritablePrimary" : "ismaster", true);
    append_bool(reply, "helloOk", true);
    append_int32(reply, "maxBsonObjectSize", static_cast<std::int32_t>(max_document_bytes));
    append_int32(reply, "maxMessageSizeBytes", static_cast<std::int32_t>(max_message_bytes));
    append_int32(reply, "maxWriteBatchSize", 100'000);
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::system_clock::now().time_since_epoch());
    bson_append_date_time(reply, "localTime", 9, now.count());
    append_int32(reply, "logicalSessionTimeoutMinutes", 30);
    append_int64(reply, "connectionId", r.connection_id);
    append_int32(reply, "minWireVersion", 0);
    append_int32(reply, "maxWireVersion", 13);
    append_bool(reply, "readOnly", false);
}

void store::cmd_ping(const request&, bson_t*) {}

void store::cmd_build_info(const request&, bson_t* reply) {
    append_utf8(reply, "version", "5.0.0");
    append_utf8(reply, "gitVersion", "mongo_test_server");
    bson_t version;
    bson_append_array_begin(reply, "versionArray", -1, &version);
    append_int32(&version, "0", 5);
    append_int32(&version, "1", 0);
    append_int32(&version, "2", 0);
    append_int32(&version, "3", 0);
    bson_append_array_end(reply, &version);
    append_int32(reply, "bits", 64);
    append_bool(reply, "debug", false);
    append_int32(reply, "maxBsonObjectSize", static_cast<std::int32_t>(max_document_bytes));
}

void store::cmd_insert(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto docs = r.get_array("documents");
    if (!docs) missing_field("insert", "documents");
    const bool ordered = r.get_bool("ordered", true);
    auto& c = ensure_collection(r.db, r.collection_name());
    std::int64_t inserted = 0;
    write_errors errors;
    const auto items = elements(*docs);
    for (std::size_t i = 0; i < items.size(); ++i) {
        try {
            if (items[i].value_type != BSON_TYPE_DOCUMENT) r.wrong_type("documents", items[i], "object");
            const auto d = view_of(items[i]);
            if (d.len > max_document_bytes)
                throw command_error(10334, "BSONObjectTooLarge",
                                    "object to insert too large. size in bytes: " + std::to_string(d.len) +
                                        ", max size: " + std::to_string(max_document_bytes));
            auto doc = with_id_first(d);
            validate_id(*field(view_of(doc), "_id"));
            check_unique(c, ns, view_of(doc), std::nullopt);
            c.docs.push_back(std::move(doc));
            ++inserted;
        } catch (const command_error& e) {
            errors.add(i, e);
            if (ordered) break;
        }
    }
    append_count(reply, "n", inserted);
    errors.append_to(reply);
}

std::vector<std::size_t> store::select(const collection& c, const std::optional<doc_view>& filter,
                                       const sort_spec& sort) const {
    std::vector<std::size_t> hits;
    for (std::size_t i = 0; i < c.docs.size(); ++i) {
        if (!filter || matches(view_of(c.docs[i]), *filter)) hits.push_back(i);
    }
    if (!sort.empty()) {
        std::stable_sort(hits.begin(), hits.end(), [&](std::size_t a, std::size_t b) {
            return compare_for_sort(view_of(c.docs[a]), view_of(c.docs[b]), sort) < 0;
        });
    }
    return hits;
}

void store::cmd_update(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto updates = r.get_array("updates");
    if (!updates) missing_field("update", "updates");
    const bool ordered = r.get_bool("ordered", true);
    std::int64_t matched = 0;
    std::int64_t modified = 0;
    std::vector<doc_bytes> upserted;
    write_errors errors;
    const auto statements = elements(*updates);
    for (std::size_t i = 0; i < statements.size(); ++i) {
        try {
            if (statements[i].value_type != BSON_TYPE_DOCUMENT) r.wrong_type("updates", statements[i], "object");
            const auto stmt = view_of(statements[i]);
            const auto q = doc_field(stmt, "q", "update.updates");
            if (!q) missing_field("update.updates", "q");
            const auto u = field(stmt, "u");
            if (!u) missing_field("update.updates", "u");
            if (u->value_type == BSON_TYPE_ARRAY) unsupported("pipeline-style updates");
            if (u->value_type != BSON_TYPE_DOCUMENT) r.wrong_type("updates.u", *u, "object");
            if (field(stmt, "arrayFilters")) unsupported("arrayFilters");
            if (field(stmt, "collation")) unsupported("collations");
            const bool multi = bool_field(stmt, "multi");
            const bool upsert = bool_field(stmt, "upsert");
            const auto update = view_of(*u);
            if (multi && !is_operator_update(update))
                throw command_error(9, "FailedToParse", "multi update is not supported for replacement-style update");
            validate_filter(*q);

            std::int64_t hits = 0;
            if (auto* c = find_collection(r.db, r.collection_name())) {
                for (std::size_t d = 0; d < c->docs.size(); ++d) {
                    if (!matches(view_of(c->docs[d]), *q)) continue;
                    ++hits;
                    ++matched;
                    auto changed = updated_document(view_of(c->docs[d]), update, false);
                    if (changed != c->docs[d]) {
                        check_unique(*c, ns, view_of(changed), d);
                        c->docs[d] = std::move(changed);
                        ++modified;
                    }
                    if (!multi) break;
                }
            }
            if (hits == 0 && upsert) {
                auto doc = upsert_document(*q, update);
                auto& c = ensure_collection(r.db, r.collection_name());
                check_unique(c, ns, view_of(doc), std::nullopt);
                auto entry = new_bson();
                append_int32(entry.get(), "index", static_cast<std::int32_t>(i));
                append_value(entry.get(), "_id", *field(view_of(doc), "_id"));
                upserted.push_back(bytes_of(entry.get()));
                c.docs.push_back(std::move(doc));
                ++matched;  // `n` counts upserted documents too
            }
        } catch (const command_error& e) {
            errors.add(i, e);
            if (ordered) break;
        }
    }
    append_count(reply, "n", matched);
    append_count(reply, "nModified", modified);
    if (!upserted.empty()) append_array_of(reply, "upserted", upserted);
    errors.append_to(reply);
}

void store::cmd_delete(const request& r, bson_t* reply) {
    const auto deletes = r.get_array("deletes");
    if (!deletes) missing_field("delete", "deletes");
    const bool ordered = r.get_bool("ordered", true);
    std::int64_t removed = 0;
    write_errors errors;
    const auto statements = elements(*deletes);
    for (std::size_t i = 0; i < statements.size(); ++i) {
        try {
            if (statements[i].value_type != BSON_TYPE_DOCUMENT) r.wrong_type("deletes", statements[i], "object");
            const auto stmt = view_of(statements[i]);
            const auto q = doc_field(stmt, "q", "delete.deletes");
            if (!q) missing_field("delete.deletes", "q");
            const auto limit_value = field(stmt, "limit");
            if (!limit_value) missing_field("delete.deletes", "limit");
            const auto limit = as_int64(*limit_value);
            if (!limit || (*limit != 0 && *limit != 1))
                throw command_error(9, "FailedToParse",
                                    "The limit field in delete objects must be 0 or 1. Got " + to_json(*limit_value));
            if (field(stmt, "collation")) unsupported("collations");
            validate_filter(*q);
            auto* c = find_collection(r.db, r.collection_name());
            if (!c) continue;
            for (auto it = c->docs.begin(); it != c->docs.end();) {
                if (!matches(view_of(*it), *q)) {
                    ++it;
                    continue;
                }
                it = c->docs.erase(it);
                ++removed;
                if (*limit == 1) break;
            }
        } catch (const command_error& e) {
            errors.add(i, e);
            if (ordered) break;
        }
    }
    append_count(reply, "n", removed);
    errors.append_to(reply);
}

std::int64_t store::open_cursor(const std::string& ns, std::deque<doc_bytes> rest) {
    // A bound on cursors clients never exhaust nor kill: the oldest go first.
    while (cursors_.size() >= max_open_cursors) cursors_.erase(cursors_.begin());
    const auto id = next_cursor_id_++;
    cursors_.emplace(id, cursor_state{ns, std::move(rest)});
    return id;
}

void store::reply_with_cursor(bson_t* reply, const std::string& ns, std::deque<doc_bytes> docs,
                              std::optional<std::size_t> first_batch, bool single_batch) {
    const auto batch = take_batch(docs, first_batch);
    const std::int64_t id = docs.empty() || single_batch ? 0 : open_cursor(ns, std::move(docs));
    append_cursor(reply, "firstBatch", batch, id, ns);
}

void store::forget_cursors(const std::string& ns_prefix, bool whole_db) {
    std::erase_if(cursors_, [&](const auto& entry) {
        return whole_db ? entry.second.ns.starts_with(ns_prefix) : entry.second.ns == ns_prefix;
    });
}

void store::cmd_find(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto filter = r.get_doc("filter");
    if (filter) validate_filter(*filter);
    const auto sort = parse_sort(r.get_doc("sort"));
    const auto proj = parse_projection(r.get_doc("projection"));
    if (r.get("collation")) unsupported("collations");
    const auto skip = r.get_int("skip").value_or(0);
    if (skip < 0) bad_value("Skip value must be non-negative, but received: " + std::to_string(skip));
    const auto limit = r.get_int("limit").value_or(0);
    if (limit < 0) bad_value("Limit value must be non-negative, but received: " + std::to_string(limit));
    const auto batch_size = r.get_int("batchSize");
    if (batch_size && *batch_size < 0)
        bad_value("BatchSize value must be non-negative, but received: " + std::to_string(*batch_size));
    const bool single_batch = r.get_bool("singleBatch", false);

    std::deque<doc_bytes> out;
    if (const auto* c = find_collection(r.db, r.collection_name())) {
        const auto hits = select(*c, filter, sort);
        for (std::size_t i = static_cast<std::size_t>(skip); i < hits.size(); ++i) {
            if (limit > 0 && out.size() >= static_cast<std::size_t>(limit)) break;
            out.push_back(project(proj, view_of(c->docs[hits[i]])));
        }
    }
    reply_with_cursor(reply, ns, std::move(out),
                      batch_size ? static_cast<std::size_t>(*batch_size) : default_first_batch, single_batch);
}

void store::cmd_get_more(const request& r, bson_t* reply) {
    const auto id = as_int64(r.arg);
    if (!id || r.arg.value_type == BSON_TYPE_DOUBLE) r.wrong_type("getMore", r.arg, "long");
    const auto coll = r.get("collection");
    if (!coll) missing_field("getMore", "collection");
    if (coll->value_type != BSON_TYPE_UTF8) r.wrong_type("collection", *coll, "string");
    const auto ns = r.db + "." + std::string(coll->value.v_utf8.str, coll->value.v_utf8.len);
    const auto found = cursors_.find(*id);
    if (found == cursors_.end())
        throw command_error(43, "CursorNotFound", "cursor id " + std::to_string(*id) + " not found");
    if (found->second.ns != ns)
        throw command_error(13, "Unauthorized",
                            "Requested getMore on namespace '" + ns +
                                "', but cursor belongs to a different namespace " + found->second.ns);
    const auto batch_size = r.get_int("batchSize");
    const auto batch = take_batch(found->second.docs, batch_size && *batch_size > 0
                                                          ? std::optional<std::size_t>(*batch_size)
                                                          : std::nullopt);
    std::int64_t next = *id;
    if (found->second.docs.empty()) {
        cursors_.erase(found);
        next = 0;
    }
    append_cursor(reply, "nextBatch", batch, next, ns);
}

void store::cmd_kill_cursors(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto ids = r.get_array("cursors");
    if (!ids) missing_field("killCursors", "cursors");
    auto killed = new_bson();
    auto not_found = new_bson();
    std::uint32_t n_killed = 0;
    std::uint32_t n_not_found = 0;
    for (const auto& v : elements(*ids)) {
        const auto id = as_int64(v);
        if (!id) r.wrong_type("cursors", v, "long");
        const auto found = cursors_.find(*id);
        if (found != cursors_.end() && found->second.ns == ns) {
            cursors_.erase(found);
            append_int64(killed.get(), std::to_string(n_killed++), *id);
        } else {
            append_int64(not_found.get(), std::to_string(n_not_found++), *id);
        }
    }
    bson_append_array(reply, "cursorsKilled", -1, killed.get());
    bson_append_array(reply, "cursorsNotFound", -1, not_found.get());
    auto empty = new_bson();
    bson_append_array(reply, "cursorsAlive", -1, empty.get());
    bson_append_array(reply, "cursorsUnknown", -1, empty.get());
}

void store::cmd_find_and_modify(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto query = r.get_doc("query");
    const auto sort = parse_sort(r.get_doc("sort"));
    const auto proj = parse_projection(r.get_doc("fields"));
    const bool remove = r.get_bool("remove", false);
    const bool return_new = r.get_bool("new", false);
    const bool upsert = r.get_bool("upsert", false);
    const auto update_value = r.get("update");
    if (update_value && update_value->value_type == BSON_TYPE_ARRAY) unsupported("pipeline-style updates");
    const auto update = r.get_doc("update");
    if (r.get("arrayFilters")) unsupported("arrayFilters");
    if (r.get("collation")) unsupported("collations");
    if (remove && update) throw command_error(9, "FailedToParse", "Cannot specify both an update and remove=true");
    if (!remove && !update) throw command_error(9, "FailedToParse", "Either an update or remove=true must be specified");
    if (remove && upsert) throw command_error(9, "FailedToParse", "Cannot specify both upsert=true and remove=true");
    if (remove && return_new)
        throw command_error(9, "FailedToParse",
                            "Cannot specify both new=true and remove=true; 'remove' always returns the deleted "
                            "document");
    const auto filter = query.value_or(view_of(empty_document()));
    validate_filter(filter);

    auto* c = find_collection(r.db, r.collection_name());
    std::optional<std::size_t> target;
    if (c) {
        const auto hits = select(*c, filter, sort);
        if (!hits.empty()) target = hits.front();
    }
    auto last_error = new_bson();
    std::optional<doc_bytes> value;
    if (remove) {
        append_int32(last_error.get(), "n", target ? 1 : 0);
        if (target) {
            value = std::move(c->docs[*target]);
            c->docs.erase(c->docs.begin() + static_cast<std::ptrdiff_t>(*target));
        }
    } else if (target) {
        auto changed = updated_document(view_of(c->docs[*target]), *update, false);
        if (changed != c->docs[*target]) check_unique(*c, ns, view_of(changed), *target);
        value = return_new ? changed : c->docs[*target];
        c->docs[*target] = std::move(changed);
        append_int32(last_error.get(), "n", 1);
        append_bool(last_error.get(), "updatedExisting", true);
    } else if (upsert) {
        auto doc = upsert_document(filter, *update);
        auto& coll = ensure_collection(r.db, r.collection_name());
        check_unique(coll, ns, view_of(doc), std::nullopt);
        append_int32(last_error.get(), "n", 1);
        append_bool(last_error.get(), "updatedExisting", false);
        append_value(last_error.get(), "upserted", *field(view_of(doc), "_id"));
        if (return_new) value = doc;
        coll.docs.push_back(std::move(doc));
    } else {
        append_int32(last_error.get(), "n", 0);
        append_bool(last_error.get(), "updatedExisting", false);
    }
    append_doc(reply, "lastErrorObject", view_of(last_error.get()));
    if (value) {
        append_doc(reply, "value", view_of(project(proj, view_of(*value))));
    } else {
        bson_append_null(reply, "value", 5);
    }
}

void store::cmd_count(const request& r, bson_t* reply) {
    const auto query = r.get_doc("query");
    if (query) validate_filter(*query);
    const auto skip = std::max<std::int64_t>(0, r.get_int("skip").value_or(0));
    auto limit = r.get_int("limit").value_or(0);
    if (limit < 0) limit = -limit;
    std::int64_t n = 0;
    if (const auto* c = find_collection(r.db, r.collection_name())) {
        n = static_cast<std::int64_t>(select(*c, query, {}).size());
    }
    n = std::max<std::int64_t>(0, n - skip);
    if (limit > 0) n = std::min(n, limit);
    append_count(reply, "n", n);
}

index_def parse_index_spec(doc_view spec, const std::string& ns) {
    index_def ix;
    const auto key = doc_field(spec, "key", "createIndexes.indexes");
    if (!key || key->len <= 5)
        throw command_error(67, "CannotCreateIndex", "Index spec for " + ns + " must have a non-empty key");
    ix.key = bytes_of(*key);
    const auto name = field(spec, "name");
    if (!name || name->value_type != BSON_TYPE_UTF8)
        throw command_error(9, "FailedToParse",
                            "Error in specification " + to_json(spec) +
                                " :: caused by :: The 'name' field is a required property of an index specification");
    ix.name.assign(name->value.v_utf8.str, name->value.v_utf8.len);
    ix.unique = bool_field(spec, "unique");
    ix.sparse = bool_field(spec, "sparse");
    if (const auto ttl = field(spec, "expireAfterSeconds")) {
        const auto seconds = as_int64(*ttl);
        if (!seconds || *seconds < 0)
            throw command_error(67, "CannotCreateIndex",
                                "TTL index 'expireAfterSeconds' option must be numeric and non-negative, but received: " +
                                    to_json(*ttl));
        std::size_t key_fields = 0;
        for_each_field(*key, [&](std::string_view, const bson_value_t&, const bson_iter_t&) { ++key_fields; });
        if (key_fields != 1)
            throw command_error(67, "CannotCreateIndex",
                                "TTL indexes are single-field indexes, compound indexes do not support TTL. Index "
                                "spec: " +
                                    to_json(spec));
        ix.expire_after_seconds = seconds;
    }
    if (const auto partial = doc_field(spec, "partialFilterExpression", "createIndexes.indexes")) {
        validate_filter(*partial);
        ix.partial_filter = bytes_of(*partial);
    }
    auto normalized = new_bson();
    append_int32(normalized.get(), "v", 2);
    append_doc(normalized.get(), "key", *key);
    append_utf8(normalized.get(), "name", ix.name);
    for_each_field(spec, [&](std::string_view k, const bson_value_t&, const bson_iter_t& it) {
        if (k != "v" && k != "key" && k != "name" && k != "ns" && k != "background")
            bson_append_iter(normalized.get(), nullptr, 0, &it);
    });
    ix.spec = bytes_of(normalized.get());
    return ix;
}

void store::cmd_create_indexes(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto specs = r.get_array("indexes");
    if (!specs) missing_field("createIndexes", "indexes");
    const auto* existing = find_collection(r.db, r.collection_name());
    std::vector<index_def> staged = existing ? existing->indexes : std::vector<index_def>{id_index()};
    const auto before = staged.size();
    for (const auto& v : elements(*specs)) {
        if (v.value_type != BSON_TYPE_DOCUMENT) r.wrong_type("indexes", v, "object");
        auto ix = parse_index_spec(view_of(v), ns);
        const auto by_name = std::find_if(staged.begin(), staged.end(), [&](const index_def& i) { return i.name == ix.name; });
        if (by_name != staged.end()) {
            if (same_key(*by_name, ix) && equivalent_options(*by_name, ix)) continue;  // already there: idempotent
            throw command_error(86, "IndexKeySpecsConflict",
                                "An existing index has the same name as the requested index. Requested index: " +
                                    to_json(view_of(ix.spec)) + ", existing index: " + to_json(view_of(by_name->spec)));
        }
        const auto by_key = std::find_if(staged.begin(), staged.end(), [&](const index_def& i) { return same_key(i, ix); });
        if (by_key != staged.end()) {
            throw command_error(85, "IndexOptionsConflict",
                                equivalent_options(*by_key, ix)
                                    ? "Index already exists with a different name: " + by_key->name
                                    : "An equivalent index already exists with a different name and options. "
                                      "Requested index: " +
                                          to_json(view_of(ix.spec)) +
                                          ", existing index: " + to_json(view_of(by_key->spec)));
        }
        if (ix.unique && existing) {
            // Building a unique index over existing duplicates fails, as in mongod.
            for (std::size_t a = 0; a < existing->docs.size(); ++a) {
                const auto key_a = index_key(ix, view_of(existing->docs[a]));
                if (!key_a) continue;
                for (std::size_t b = a + 1; b < existing->docs.size(); ++b) {
                    const auto key_b = index_key(ix, view_of(existing->docs[b]));
                    if (key_b && same_index_key(*key_a, *key_b)) throw duplicate_key(ns, ix, *key_a);
                }
            }
        }
        staged.push_back(std::move(ix));
    }
    bool created = false;
    auto& c = ensure_collection(r.db, r.collection_name(), &created);
    const auto after = staged.size();
    c.indexes = std::move(staged);
    append_bool(reply, "createdCollectionAutomatically", created);
    append_int32(reply, "numIndexesBefore", static_cast<std::int32_t>(before));
    append_int32(reply, "numIndexesAfter", static_cast<std::int32_t>(after));
    if (before == after) append_utf8(reply, "note", "all indexes already exist");
}

void store::cmd_list_indexes(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    const auto* c = find_collection(r.db, r.collection_name());
    if (!c) throw command_error(26, "NamespaceNotFound", "ns does not exist: " + ns);
    std::deque<doc_bytes> specs;
    for (const auto& ix : c->indexes) specs.push_back(ix.spec);
    const auto batch = r.cursor_batch_size();
    reply_with_cursor(reply, ns, std::move(specs),
                      batch && *batch >= 0 ? std::optional<std::size_t>(*batch) : std::nullopt, false);
}

void store::cmd_drop_indexes(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    auto* c = find_collection(r.db, r.collection_name());
    if (!c) throw command_error(26, "NamespaceNotFound", "ns not found " + ns);
    const auto which = r.get("index");
    if (!which) missing_field("dropIndexes", "index");
    const auto was = c->indexes.size();
    auto remaining = c->indexes;
    const auto drop_named = [&](std::string_view name) {
        if (name == "_id_") throw command_error(72, "InvalidOptions", "cannot drop _id index");
        const auto found =
            std::find_if(remaining.begin(), remaining.end(), [&](const index_def& i) { return i.name == name; });
        if (found == remaining.end())
            throw command_error(27, "IndexNotFound", "index not found with name [" + std::string(name) + "]");
        remaining.erase(found);
    };
    if (which->value_type == BSON_TYPE_UTF8) {
        const std::string_view name(which->value.v_utf8.str, which->value.v_utf8.len);
        if (name == "*") {
            remaining.resize(1);  // `_id_` is always first
        } else {
            drop_named(name);
        }
    } else if (which->value_type == BSON_TYPE_ARRAY) {
        for (const auto& v : elements(*which)) {
            if (v.value_type != BSON_TYPE_UTF8) r.wrong_type("index", v, "string");
            drop_named({v.value.v_utf8.str, v.value.v_utf8.len});
        }
    } else if (which->value_type == BSON_TYPE_DOCUMENT) {
        index_def probe;
        probe.key = bytes_of(view_of(*which));
        const auto found =
            std::find_if(remaining.begin(), remaining.end(), [&](const index_def& i) { return same_key(i, probe); });
        if (found == remaining.end())
            throw command_error(27, "IndexNotFound", "can't find index with key: " + to_json(view_of(*which)));
        drop_named(found->name);
    } else {
        r.wrong_type("index", *which, "string");
    }
    c->indexes = std::move(remaining);
    append_int32(reply, "nIndexesWas", static_cast<std::int32_t>(was));
}

void store::cmd_create(const request& r, bson_t*) {
    if (r.get_bool("capped", false)) unsupported("capped collections");
    bool created = false;
    ensure_collection(r.db, r.collection_name(), &created);
    if (!created) throw command_error(48, "NamespaceExists", "Collection already exists. NS: " + r.ns());
}

void store::cmd_drop(const request& r, bson_t* reply) {
    const auto ns = r.ns();
    auto d = dbs_.find(r.db);
    if (d == dbs_.end() || !d->second.contains(r.collection_name()))
        throw command_error(26, "NamespaceNotFound", "ns not found");
    const auto found = d->second.find(r.collection_name());
    append_int32(reply, "nIndexesWas", static_cast<std::int32_t>(found->second.indexes.size()));
    append_utf8(reply, "ns", ns);
    d->second.erase(found);
    forget_cursors(ns, false);
}

void store::cmd_drop_database(const request& r, bson_t* reply) {
    dbs_.erase(r.db);
    forget_cursors(r.db + ".", true);
    append_utf8(reply, "dropped", r.db);
}

void store::cmd_list_collections(const request& r, bson_t* reply) {
    const auto filter = r.get_doc("filter");
    if (filter) validate_filter(*filter);
    const bool name_only = r.get_bool("nameOnly", false);
    std::deque<doc_bytes> out;
    if (const auto d = dbs_.find(r.db); d != dbs_.end()) {
        for (const auto& [name, coll] : d->second) {
            auto info = new_bson();
            append_utf8(info.get(), "name", name);
            append_utf8(info.get(), "type", "collection");
            if (!name_only) {
                auto empty = new_bson();
                bson_append_document(info.get(), "options", -1, empty.get());
                auto details = new_bson();
                append_bool(details.get(), "readOnly", false);
                bson_append_document(info.get(), "info", -1, details.get());
                append_doc(info.get(), "idIndex", view_of(coll.indexes.front().spec));
            }
            if (!filter || matches(view_of(info.get()), *filter)) out.push_back(bytes_of(info.get()));
        }
    }
    const auto batch = r.cursor_batch_size();
    reply_with_cursor(reply, r.db + ".$cmd.listCollections", std::move(out),
                      batch && *batch >= 0 ? std::optional<std::size_t>(*batch) : std::nullopt, false);
}

std::vector<std::string> store::documents(const std::string& db, const std::string& coll) const {
    std::vector<std::string> out;
    const auto d = dbs_.find(db);
    if (d == dbs_.end()) return out;
    const auto c = d->second.find(coll);
    if (c == d->second.end()) return out;
    for (const auto& doc : c->second.docs) {
        const bson_view v(view_of(doc));
        char* json = bson_as_canonical_extended_json(v.get(), nullptr);
        out.emplace_back(json ? json : "");
        bson_free(json);
    }
    return out;
}

void store::insert_raw(const std::string& db, const std::string& coll, doc_view doc) {
    auto stored = with_id_first(doc);
    const auto id = *field(view_of(stored), "_id");
    auto& c = ensure_collection(db, coll);
    for (auto& existing : c.docs) {
        const auto other = field(view_of(existing), "_id");
        if (other && compare_values(*other, id) == 0) {
            existing = std::move(stored);
            return;
        }
    }
    c.docs.push_back(std::move(stored));
}

std::size_t store::expire(std::int64_t now_ms) {
    std::size_t removed = 0;
    for (auto& [db_name, db] : dbs_) {
        for (auto& [coll_name, c] : db) {
            for (const auto& ix : c.indexes) {
                if (!ix.expire_after_seconds) continue;
                auto key_it = iter_of(view_of(ix.key));
                if (!bson_iter_next(&key_it)) continue;
                const std::string path(key_of(key_it));
                const auto expire_ms = *ix.expire_after_seconds * 1000;
                removed += std::erase_if(c.docs, [&](const doc_bytes& doc) {
                    const auto v = lookup(view_of(doc), path);
                    if (!v) return false;
                    // Not a date, nor an array holding one: never expires.
                    std::optional<std::int64_t> earliest;
                    const auto consider = [&](const bson_value_t& e) {
                        if (e.value_type == BSON_TYPE_DATE_TIME && (!earliest || e.value.v_datetime < *earliest))
                            earliest = e.value.v_datetime;
                    };
                    if (v->value_type == BSON_TYPE_ARRAY) {
                        for (const auto& e : elements(*v)) consider(e);
                    } else {
                        consider(*v);
                    }
                    return earliest && *earliest + expire_ms <= now_ms;
                });
            }
        }
    }
    return removed;
}

// ---- Wire protocol -----------------------------------------------------------------

std::int32_t read_i32(const std::uint8_t* p) {
    std::uint32_t v = 0;
    for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
    return static_cast<std::int32_t>(v);
}

void write_i32(std::uint8_t* p, std::int64_t value) {
    auto v = static_cast<std::uint32_t>(value);
    for (int i = 0; i < 4; ++i, v >>= 8) p[i] = static_cast<std::uint8_t>(v & 0xff);
}

struct parsed_command {
    std::string db;
    bson_ptr body;
    bool reply_expected = true;
    bool legacy = false;              // OP_QUERY: answer with OP_REPLY
    std::string legacy_failure;       // OP_QUERY on a collection: not a command
};

doc_view read_document(const std::vector<std::uint8_t>& m, std::size_t& pos, std::size_t end) {
    if (end - pos < 5) throw protocol_error("truncated document");
    const auto len = read_i32(&m[pos]);
    if (len < 5 || static_cast<std::size_t>(len) > end - pos) throw protocol_error("bad document length");
    const doc_view d{&m[pos], static_cast<std::uint32_t>(len)};
    if (!well_formed(d)) throw protocol_error("corrupt document");
    pos += static_cast<std::size_t>(len);
    return d;
}

std::string read_cstring(const std::vector<std::uint8_t>& m, std::size_t& pos, std::size_t end) {
    const auto* start = &m[pos];
    const auto* nul = static_cast<const std::uint8_t*>(std::memchr(start, 0, end - pos));
    if (nul == nullptr) throw protocol_error("unterminated string");
    std::string s(reinterpret_cast<const char*>(start), static_cast<std::size_t>(nul - start));
    pos += s.size() + 1;
    return s;
}

std::string utf8_field(doc_view d, std::string_view key) {
    const auto v = field(d, key);
    if (!v || v->value_type != BSON_TYPE_UTF8) return {};
    return {v->value.v_utf8.str, v->value.v_utf8.len};
}

parsed_command parse_op_msg(const std::vector<std::uint8_t>& m) {
    constexpr std::uint32_t checksum_present = 1U << 0;
    constexpr std::uint32_t more_to_come = 1U << 1;
    std::size_t pos = header_size;
    std::size_t end = m.size();
    if (end - pos < 5) throw protocol_error("OP_MSG too short");
    const auto flags = static_cast<std::uint32_t>(read_i32(&m[pos]));
    pos += 4;
    // Bits 0-15 are required: a receiver must refuse any it does not know.
    if ((flags & 0xffffU & ~(checksum_present | more_to_come)) != 0) throw protocol_error("unknown OP_MSG flag");
    if ((flags & checksum_present) != 0) {
        if (end - pos < 5) throw protocol_error("OP_MSG too short for its checksum");
        end -= 4;  // CRC-32C, not verified: TCP on loopback
    }
    parsed_command out;
    out.reply_expected = (flags & more_to_come) == 0;
    std::vector<std::pair<std::string, std::vector<doc_view>>> sequences;
    while (pos < end) {
        const auto kind = m[pos++];
        if (kind == 0) {
            if (out.body) throw protocol_error("OP_MSG with two body sections");
            const auto d = read_document(m, pos, end);
            out.body.reset(bson_new_from_data(d.data, d.len));
            if (!out.body) throw protocol_error("corrupt body");
        } else if (kind == 1) {
            if (end - pos < 4) throw protocol_error("truncated document sequence");
            const auto size = read_i32(&m[pos]);
            if (size < 5 || static_cast<std::size_t>(size) > end - pos) throw protocol_error("bad sequence size");
            const std::size_t seq_end = pos + static_cast<std::size_t>(size);
            std::size_t p = pos + 4;
            auto identifier = read_cstring(m, p, seq_end);
            std::vector<doc_view> docs;
            while (p < seq_end) docs.push_back(read_document(m, p, seq_end));
            sequences.emplace_back(std::move(identifier), std::move(docs));
            pos = seq_end;
        } else {
            throw protocol_error("unknown OP_MSG section kind");
        }
    }
    if (!out.body) throw protocol_error("OP_MSG without a body section");
    // Document sequences are arrays of the command, sent apart so they need not be
    // copied into it; merging them back gives the command mongod sees.
    for (const auto& [identifier, docs] : sequences) {
        if (identifier.empty() || field(view_of(out.body.get()), identifier))
            throw protocol_error("document sequence duplicates a body field");
        bson_t array;
        bson_append_array_begin(out.body.get(), identifier.c_str(), static_cast<int>(identifier.size()), &array);
        std::array<char, 16> buffer{};
        for (std::size_t i = 0; i < docs.size(); ++i) {
            const char* key = nullptr;
            const auto n = bson_uint32_to_string(static_cast<std::uint32_t>(i), &key, buffer.data(), buffer.size());
            append_doc(&array, {key, n}, docs[i]);
        }
        bson_append_array_end(out.body.get(), &array);
    }
    out.db = utf8_field(view_of(out.body.get()), "$db");
    return out;
}

parsed_command parse_op_query(const std::vector<std::uint8_t>& m) {
    std::size_t pos = header_size;
    const std::size_t end = m.size();
    if (end - pos < 4) throw protocol_error("OP_QUERY too short");
    pos += 4;  // flags: none matters for a command
    const auto ns = read_cstring(m, pos, end);
    if (end - pos < 8) throw protocol_error("OP_QUERY too short");
    pos += 8;  // numberToSkip, numberToReturn
    const auto query = read_document(m, pos, end);
    if (pos < end) read_document(m, pos, end);  // returnFieldsSelector, validated and ignored
    if (pos != end) throw protocol_error("trailing bytes after OP_QUERY");

    parsed_command out;
    out.legacy = true;
    constexpr std::string_view cmd_suffix = ".$cmd";
    if (!ns.ends_with(cmd_suffix)) {
        out.legacy_failure = "OP_QUERY is only supported for commands (" + ns + ")";
        out.body = new_bson();
        return out;
    }
    out.db = ns.substr(0, ns.size() - cmd_suffix.size());
    // Drivers wrap a command with a read preference as {$query: {...}, $readPreference: ...}.
    auto it = iter_of(query);
    if (bson_iter_next(&it) && (key_of(it) == "$query" || key_of(it) == "query") &&
        bson_iter_type(&it) == BSON_TYPE_DOCUMENT) {
        const auto inner = view_of(value_of(it));
        out.body.reset(bson_new_from_data(inner.data, inner.len));
    } else {
        out.body.reset(bson_new_from_data(query.data, query.len));
    }
    if (!out.body) throw protocol_error("corrupt query");
    return out;
}

std::vector<std::uint8_t> op_msg_frame(std::int32_t request_id, std::int32_t response_to, const bson_t* doc) {
    std::vector<std::uint8_t> frame(header_size + 4 + 1 + doc->len);
    write_i32(&frame[0], static_cast<std::int64_t>(frame.size()));
    write_i32(&frame[4], request_id);
    write_i32(&frame[8], response_to);
    write_i32(&frame[12], op_msg_code);
    write_i32(&frame[16], 0);  // flagBits
    frame[20] = 0;             // section kind 0: the body
    std::memcpy(&frame[21], bson_get_data(doc), doc->len);
    return frame;
}

std::vector<std::uint8_t> op_reply_frame(std::int32_t request_id, std::int32_t response_to, const bson_t* doc,
                                         std::int32_t response_flags) {
    constexpr std::size_t fixed = 4 + 8 + 4 + 4;  // responseFlags, cursorID, startingFrom, numberReturned
    std::vector<std::uint8_t> frame(header_size + fixed + doc->len, 0);
    write_i32(&frame[0], static_cast<std::int64_t>(frame.size()));
    write_i32(&frame[4], request_id);
    write_i32(&frame[8], response_to);
    write_i32(&frame[12], op_reply_code);
    write_i32(&frame[16], response_flags);
    write_i32(&frame[32], 1);  // numberReturned
    std::memcpy(&frame[header_size + fixed], bson_get_data(doc), doc->len);
    return frame;
}

bool read_exact(int fd, std::uint8_t* out, std::size_t n) {
    while (n > 0) {
        const auto got = ::recv(fd, out, n, 0);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) return false;
        out += got;
        n -= static_cast<std::size_t>(got);
    }
    return true;
}

bool write_all(int fd, const std::vector<std::uint8_t>& data) {
    std::size_t sent = 0;
    while (sent < data.size()) {
        const auto n = ::send(fd, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) return false;
        sent += static_cast<std::size_t>(n);
    }
    return true;
}

[[noreturn]] void throw_errno(const std::string& what) {
    throw std::system_error(errno, std::generic_category(), "mongo_test_server: " + what);
}

}  // namespace

// ---- Server ------------------------------------------------------------------------

struct mongo_test_server::impl {
    struct connection {
        int fd = -1;  // closed by its own thread, under state_mutex
        std::int64_t id = 0;
        bool dropped = false;  // state_mutex
        std::atomic<bool> finished{false};
        std::thread thread;
    };

    // Serialises stop / restart / drop_connections against each other.
    std::mutex control_mutex;

    mutable std::mutex state_mutex;
    std::condition_variable stall_cv;
    bool stalled = false;
    bool running = false;
    std::uint16_t port = 0;
    std::list<std::shared_ptr<connection>> connections;
    std::int64_t next_connection_id = 1;

    // Owned by whoever holds control_mutex (and read by the accept thread it starts).
    int listen_fd = -1;
    int wake_fd = -1;
    std::thread acceptor;

    mutable std::mutex data_mutex;
    store data;
    std::map<std::string, std::size_t, std::less<>> command_counts;
    std::map<std::int32_t, std::size_t> opcode_counts;

    std::atomic<std::int32_t> next_request_id{1};

    void listen_on(std::uint16_t requested);
    void stop_locked();
    void drop_all();
    void reap_finished();
    void accept_loop(int lfd, int wfd);
    void serve(connection& c);
    bool handle_message(connection& c, const std::vector<std::uint8_t>& message);
};

void mongo_test_server::impl::listen_on(std::uint16_t requested) {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw_errno("socket");
    // Restarting on the same port must not wait out TIME_WAIT.
    const int one = 1;
    ::setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(requested);
    if (::bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0 || ::listen(fd, 128) != 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        throw_errno("cannot listen on 127.0.0.1:" + std::to_string(requested));
    }
    socklen_t len = sizeof addr;
    if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        throw_errno("getsockname");
    }
    const int wake = ::eventfd(0, EFD_CLOEXEC);
    if (wake < 0) {
        const int saved = errno;
        ::close(fd);
        errno = saved;
        throw_errno("eventfd");
    }
    listen_fd = fd;
    wake_fd = wake;
    {
        const std::lock_guard lock(state_mutex);
        port = ntohs(addr.sin_port);
        running = true;
    }
    acceptor = std::thread([this, fd, wake] { accept_loop(fd, wake); });
}

void mongo_test_server::impl::accept_loop(int lfd, int wfd) {
    while (true) {
        std::array<pollfd, 2> fds{{{lfd, POLLIN, 0}, {wfd, POLLIN, 0}}};
        const int n = ::poll(fds.data(), fds.size(), accept_poll_ms);
        if (n < 0 && errno != EINTR) break;
        if (fds[1].revents != 0) break;
        if (n > 0 && (fds[0].revents & POLLIN) != 0) {
            const int fd = ::accept4(lfd, nullptr, nullptr, SOCK_CLOEXEC);
            if (fd >= 0) {
                const int one = 1;
                ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
                const std::lock_guard lock(state_mutex);
                if (connections.size() >= max_connections) {
                    ::close(fd);
                } else {
                    auto c = std::make_shared<connection>();
                    c->fd = fd;
                    c->id = next_connection_id++;
                    // The list keeps the connection alive until its thread is joined.
                    c->thread = std::thread([this, raw = c.get()] { serve(*raw); });
                    connections.push_back(std::move(c));
                }
            }
        }
        reap_finished();
    }
}

void mongo_test_server::impl::reap_finished() {
    std::list<std::shared_ptr<connection>> done;
    {
        const std::lock_guard lock(state_mutex);
        for (auto it = connections.begin(); it != connections.end();) {
            const auto next = std::next(it);
            if ((*it)->finished) done.splice(done.end(), connections, it);
            it = next;
        }
    }
    for (auto& c : done) c->thread.join();
}

void mongo_test_server::impl::drop_all() {
    std::list<std::shared_ptr<connection>> victims;
    {
        const std::lock_guard lock(state_mutex);
        for (auto& c : connections) {
            c->dropped = true;
            // Wakes a thread blocked in recv/send; its fd is closed by the thread itself so
            // that the number cannot be reused while we still might shut it down.
            if (c->fd >= 0) ::shutdown(c->fd, SHUT_RDWR);
        }
        victims.splice(victims.end(), connections);
    }
    stall_cv.notify_all();
    for (auto& c : victims) c->thread.join();
}

void mongo_test_server::impl::stop_locked() {
    {
        const std::lock_guard lock(state_mutex);
        if (!running) return;
        running = false;
    }
    const std::uint64_t one = 1;
    [[maybe_unused]] const auto written = ::write(wake_fd, &one, sizeof one);
    acceptor.join();
    ::close(listen_fd);
    ::close(wake_fd);
    listen_fd = wake_fd = -1;
    drop_all();
}

void mongo_test_server::impl::serve(connection& c) {
    try {
        std::vector<std::uint8_t> message;
        while (true) {
            std::array<std::uint8_t, header_size> header{};
            if (!read_exact(c.fd, header.data(), header.size())) break;
            const auto length = read_i32(header.data());
            if (length < static_cast<std::int32_t>(header_size) || static_cast<std::size_t>(length) > max_message_bytes)
                break;
            message.assign(header.begin(), header.end());
            message.resize(static_cast<std::size_t>(length));
            if (!read_exact(c.fd, message.data() + header_size, message.size() - header_size)) break;
            if (!handle_message(c, message)) break;
        }
    } catch (const std::exception&) {
        // protocol_error (malformed input) or bad_alloc: close this connection only.
    }
    {
        const std::lock_guard lock(state_mutex);
        ::close(c.fd);
        c.fd = -1;
    }
    c.finished = true;
}

bool mongo_test_server::impl::handle_message(connection& c, const std::vector<std::uint8_t>& message) {
    const auto request_id = read_i32(&message[4]);
    const auto opcode = read_i32(&message[12]);
    {
        const std::lock_guard lock(data_mutex);
        ++opcode_counts[opcode];
    }
    parsed_command cmd;
    if (opcode == op_msg_code) {
        cmd = parse_op_msg(message);
    } else if (opcode == op_query_code) {
        cmd = parse_op_query(message);
    } else {
        // OP_COMPRESSED (never offered in hello) and the opcodes removed in 5.x+.
        return false;
    }
    if (cmd.legacy_failure.empty()) {
        auto it = iter_of(view_of(cmd.body.get()));
        const std::string name = bson_iter_next(&it) ? std::string(key_of(it)) : std::string();
        const std::lock_guard lock(data_mutex);
        ++command_counts[name];
    }
    {
        std::unique_lock lock(state_mutex);
        stall_cv.wait(lock, [&] { return !stalled || c.dropped; });
        if (c.dropped) return false;
    }
    bson_ptr reply;
    std::int32_t reply_flags = 0;
    if (!cmd.legacy_failure.empty()) {
        reply = new_bson();
        append_utf8(reply.get(), "$err", cmd.legacy_failure);
        append_int32(reply.get(), "code", 5739101);
        reply_flags = 2;  // QueryFailure
    } else {
        const std::lock_guard lock(data_mutex);
        reply = data.run(cmd.db, view_of(cmd.body.get()), c.id);
    }
    if (!cmd.reply_expected) return true;
    const auto id = next_request_id++;
    const auto frame = cmd.legacy ? op_reply_frame(id, request_id, reply.get(), reply_flags)
                                  : op_msg_frame(id, request_id, reply.get());
    return write_all(c.fd, frame);
}

mongo_test_server::mongo_test_server(std::uint16_t port) : impl_(std::make_unique<impl>()) {
    const std::lock_guard lock(impl_->control_mutex);
    impl_->listen_on(port);
}

mongo_test_server::~mongo_test_server() { stop(); }

std::uint16_t mongo_test_server::port() const {
    const std::lock_guard lock(impl_->state_mutex);
    return impl_->port;
}

std::string mongo_test_server::uri(const std::string& extra_options) const {
    std::string out = "mongodb://127.0.0.1:" + std::to_string(port()) +
                      "/?serverSelectionTimeoutMS=1000&connectTimeoutMS=1000";
    if (!extra_options.empty()) out += "&" + extra_options;
    return out;
}

bool mongo_test_server::running() const {
    const std::lock_guard lock(impl_->state_mutex);
    return impl_->running;
}

void mongo_test_server::stall(bool on) {
    {
        const std::lock_guard lock(impl_->state_mutex);
        impl_->stalled = on;
    }
    impl_->stall_cv.notify_all();
}

bool mongo_test_server::stalled() const {
    const std::lock_guard lock(impl_->state_mutex);
    return impl_->stalled;
}

void mongo_test_server::drop_connections() {
    const std::lock_guard lock(impl_->control_mutex);
    impl_->drop_all();
}

std::size_t mongo_test_server::connection_count() const {
    const std::lock_guard lock(impl_->state_mutex);
    return static_cast<std::size_t>(std::count_if(impl_->connections.begin(), impl_->connections.end(),
                                                  [](const auto& c) { return !c->finished; }));
}

void mongo_test_server::stop() {
    const std::lock_guard lock(impl_->control_mutex);
    impl_->stop_locked();
}

void mongo_test_server::restart(bool wipe) {
    const std::lock_guard lock(impl_->control_mutex);
    impl_->stop_locked();
    {
        const std::lock_guard data_lock(impl_->data_mutex);
        if (wipe) {
            impl_->data.clear();
        } else {
            impl_->data.clear_cursors();
        }
    }
    impl_->listen_on(port());
}

std::size_t mongo_test_server::command_count(const std::string& name) const {
    const std::lock_guard lock(impl_->data_mutex);
    const auto found = impl_->command_counts.find(name);
    return found == impl_->command_counts.end() ? 0 : found->second;
}

std::size_t mongo_test_server::opcode_count(std::int32_t opcode) const {
    const std::lock_guard lock(impl_->data_mutex);
    const auto found = impl_->opcode_counts.find(opcode);
    return found == impl_->opcode_counts.end() ? 0 : found->second;
}

void mongo_test_server::reset_counts() {
    const std::lock_guard lock(impl_->data_mutex);
    impl_->command_counts.clear();
    impl_->opcode_counts.clear();
}

std::vector<std::string> mongo_test_server::documents(const std::string& db, const std::string& coll) const {
    const std::lock_guard lock(impl_->data_mutex);
    return impl_->data.documents(db, coll);
}

void mongo_test_server::insert_raw(const std::string& db, const std::string& coll, const std::string& json) {
    bson_error_t error;
    const bson_ptr doc(bson_new_from_json(reinterpret_cast<const std::uint8_t*>(json.data()),
                                          static_cast<ssize_t>(json.size()), &error));
    if (!doc) throw std::invalid_argument(std::string("mongo_test_server::insert_raw: ") + error.message);
    const std::lock_guard lock(impl_->data_mutex);
    impl_->data.insert_raw(db, coll, view_of(doc.get()));
}

std::size_t mongo_test_server::expire_ttl_now(std::chrono::system_clock::time_point now) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(now.time_since_epoch()).count();
    const std::lock_guard lock(impl_->data_mutex);
    return impl_->data.expire(ms);
}

}  // namespace cachecar::test
