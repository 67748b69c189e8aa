// YAML -> validated config. The loader keeps going after a problem so that one
// `cachecar --check` run lists every mistake in the file, each with its position.
#include <cachecar/config/config.hpp>
#include <cachecar/route/pattern.hpp>
#include <cachecar/util/address.hpp>
#include <cachecar/util/ascii.hpp>

#include "env_expand.hpp"

#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <initializer_list>
#include <map>
#include <sstream>

namespace cachecar::config {

namespace {

constexpr std::size_t max_config_file_bytes = 16u * 1024u * 1024u;

std::string quoted(std::string_view s) { return "\"" + std::string(s) + "\""; }

// A diagnostic is one line of `--check` output, but its message can carry config
// text (a quoted value, a key) or yaml-cpp's words about it ("unknown escape
// character: " followed by the raw character): control bytes are written as escapes.
std::string one_line(std::string message) {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out;
    out.reserve(message.size());
    for (const char ch : message) {
        const auto c = static_cast<unsigned char>(ch);
        if (c == '\n') {
            out += "\\n";
        } else if (c == '\r') {
            out += "\\r";
        } else if (c == '\t') {
            out += "\\t";
        } else if (c < 0x20 || c == 0x7f) {
            out += "\\x";
            out += hex[c >> 4];
            out += hex[c & 0x0f];
        } else {
            out += ch;
        }
    }
    return out;
}

// Optimal string alignment distance (Levenshtein plus transpositions): "ttl" is
// one edit from "tll", so a typo of either kind gets a suggestion.
std::size_t edit_distance(std::string_view a, std::string_view b) {
    const std::size_t n = a.size(), m = b.size();
    std::vector<std::vector<std::size_t>> d(n + 1, std::vector<std::size_t>(m + 1));
    for (std::size_t i = 0; i <= n; ++i) d[i][0] = i;
    for (std::size_t j = 0; j <= m; ++j) d[0][j] = j;
    for (std::size_t i = 1; i <= n; ++i) {
        for (std::size_t j = 1; j <= m; ++j) {
            const std::size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
            d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
            if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
                d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
        }
    }
    return d[n][m];
}

// Every key the loader accepts, by section: the one list both parsing and
// config::schema_keys() (which the documentation test checks) read.
const std::vector<std::pair<std::string_view, std::vector<std::string_view>>>& schema() {
    static const std::vector<std::pair<std::string_view, std::vector<std::string_view>>> sections{
        {"", {"server", "limits", "tiers", "routes", "invalidate", "logging"}},
        {"server",
         {"listen", "upstream", "admin_listen", "namespace", "admin_token", "threads", "trusted_proxies", "upstream_host",
          "underscores_in_headers", "method_override", "cache_control_field", "cache_status", "cache_status_key"}},
        {"limits",
         {"max_header_bytes", "max_body_bytes", "max_upload_bytes", "max_object_bytes", "upstream_timeout",
          "client_idle_timeout", "tunnel_idle_timeout", "drain_timeout", "max_connections"}},
        {"tiers", {"memory", "redis", "mongo"}},
        {"tiers.memory", {"max_bytes"}},
        {"tiers.redis", {"url", "timeout", "pool", "confirm_purges"}},
        {"tiers.mongo", {"uri", "database", "collection", "timeout"}},
        {"routes[]",
         {"name", "match", "tiers", "ttl", "key", "categories", "shared", "status", "stale_if_error",
          "stale_while_revalidate", "ttl_from_origin", "credential_headers", "strip_headers", "ignore_query",
          "store_authenticated", "negative_ttl"}},
        {"invalidate[]", {"match", "purge"}},
        {"logging", {"level", "access_log", "levels"}},
        {"logging.levels", {"cachecar", "proxy", "admin", "redis", "mongo", "access"}},
    };
    return sections;
}

const std::vector<std::string_view>& section(std::string_view name) {
    for (const auto& [n, keys] : schema()) {
        if (n == name) return keys;
    }
    throw std::logic_error("no config section " + std::string(name));
}

std::optional<std::string_view> closest(std::string_view word, const std::vector<std::string_view>& candidates) {
    std::optional<std::string_view> best;
    std::size_t best_distance = 3;  // suggest only within two edits
    for (auto c : candidates) {
        const std::size_t dist = edit_distance(word, c);
        if (dist < best_distance && dist < word.size()) {
            best = c;
            best_distance = dist;
        }
    }
    return best;
}

std::string kind_name(const YAML::Node& n) {
    switch (n.Type()) {
        case YAML::NodeType::Map: return "map";
        case YAML::NodeType::Sequence: return "list";
        case YAML::NodeType::Scalar: return "scalar";
        case YAML::NodeType::Null: return "null";
        case YAML::NodeType::Undefined: break;
    }
    return "undefined node";
}

bool is_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
               c == '.' || c == '-';
    });
}

bool is_header_name(std::string_view s) {
    return !s.empty() && std::all_of(s.begin(), s.end(), [](char c) {
        if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return true;
        return c != '\0' && std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
    });
}

std::string lower(std::string s) {
    for (char& c : s)
        if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
    return s;
}

std::optional<std::uint64_t> parse_uint(std::string_view s) {
    if (s.empty() || s.size() > 19) return std::nullopt;
    std::uint64_t v = 0;
    for (char c : s) {
        if (c < '0' || c > '9') return std::nullopt;
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
    }
    return v;
}

parsed<std::uint16_t> parse_port(std::string_view s) {
    auto v = parse_uint(s);
    if (!v) return parsed<std::uint16_t>::fail("bad port " + quoted(s));
    if (*v > 65535) return parsed<std::uint16_t>::fail("port " + std::string(s) + " is out of range (0..65535)");
    return parsed<std::uint16_t>::ok(static_cast<std::uint16_t>(*v));
}

// "host:port" or "[v6]:port".
parsed<endpoint> parse_endpoint(std::string_view s) {
    using result_t = parsed<endpoint>;
    std::string_view host, port;
    if (!s.empty() && s.front() == '[') {
        const auto close = s.find(']');
        if (close == std::string_view::npos) return result_t::fail("missing ']' after an IPv6 address");
        host = s.substr(1, close - 1);
        if (close + 1 >= s.size() || s[close + 1] != ':') return result_t::fail("missing port (expected [addr]:port)");
        port = s.substr(close + 2);
    } else {
        const auto colon = s.rfind(':');
        if (colon == std::string_view::npos) return result_t::fail("missing port (expected host:port)");
        host = s.substr(0, colon);
        port = s.substr(colon + 1);
        if (host.find(':') != std::string_view::npos)
            return result_t::fail("an IPv6 address needs brackets, e.g. [::1]:8080");
    }
    if (host.empty()) return result_t::fail("missing host (use 0.0.0.0 or [::] for every interface)");
    for (char c : host)
        if (c == ' ' || c == '\t' || c == '/' || c == '[' || c == ']' || c == '@')
            return result_t::fail("bad host " + quoted(host));
    auto p = parse_port(port);
    if (!p) return result_t::fail(p.error);
    return result_t::ok(endpoint{std::string(host), *p.value});
}

// "http://host[:port][/]" only: cachecar speaks plain HTTP/1.1 to its backend.
parsed<endpoint> parse_upstream(std::string_view s) {
    using result_t = parsed<endpoint>;
    const auto scheme_end = s.find("://");
    if (scheme_end == std::string_view::npos) return result_t::fail("expected an http:// URL");
    const std::string scheme = lower(std::string(s.substr(0, scheme_end)));
    if (scheme == "https") return result_t::fail("https upstreams are not supported; terminate TLS in front");
    if (scheme != "http") return result_t::fail("expected an http:// URL, not " + scheme + "://");
    std::string_view rest = s.substr(scheme_end + 3);
    if (!rest.empty() && rest.back() == '/') rest.remove_suffix(1);
    if (rest.find_first_of("/?#") != std::string_view::npos)
        return result_t::fail("an upstream URL may not have a path, query or fragment");
    if (rest.find('@') != std::string_view::npos) return result_t::fail("an upstream URL may not carry user info");
    if (rest.empty()) return result_t::fail("missing host");
    // Default the port without mistaking the colons of a bracketed IPv6 address.
    const bool has_port = rest.back() != ']' && rest.rfind(':') != std::string_view::npos &&
                          (rest.front() != '[' || rest.rfind(':') > rest.find(']'));
    auto ep = parse_endpoint(has_port ? std::string(rest) : std::string(rest) + ":80");
    if (!ep) return ep;
    if (ep.value->port == 0) return result_t::fail("upstream port 0 is not a port one can connect to");
    return ep;
}

// A YAML value and where to point when it is wrong. yaml-cpp marks a null value at
// the next token (often the following line), so a null value points at its key.
struct item {
    YAML::Node node;
    YAML::Mark mark;
    std::string path;  // "routes[0].ttl": names the value in messages
};

// Where each document of a YAML stream starts, and its root node.
class document_marks final : public YAML::EventHandler {
public:
    std::vector<YAML::Mark> starts;
    std::vector<YAML::Mark> roots;

    void OnDocumentStart(const YAML::Mark& m) override {
        starts.push_back(m);
        roots.push_back(m);
        depth_ = 0;
    }
    void OnDocumentEnd() override {}
    void OnNull(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnAlias(const YAML::Mark& m, YAML::anchor_t) override { node(m); }
    void OnScalar(const YAML::Mark& m, const std::string&, YAML::anchor_t, const std::string&) override { node(m); }
    void OnSequenceStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(m);
        ++depth_;
    }
    void OnSequenceEnd() override { --depth_; }
    void OnMapStart(const YAML::Mark& m, const std::string&, YAML::anchor_t, YAML::EmitterStyle::value) override {
        node(m);
        ++depth_;
    }
    void OnMapEnd() override { --depth_; }

private:
    void node(const YAML::Mark& m) {
        if (depth_ == 0) roots.back() = m;
    }
    int depth_ = 0;
};

struct entry {
    std::string key;
    YAML::Mark key_mark;
    item value;
};

class loader {
public:
    loader(std::string file, env_lookup env, const tier_checks& checks)
        : file_(std::move(file)), env_(std::move(env)), checks_(checks) {}

    load_result run(std::string_view text) {
        config cfg;
        cfg.source_file = file_;
        try {
            parse_document(text, cfg);
        } catch (const YAML::Exception& e) {
            error(e.mark, "YAML error: " + e.msg);
        } catch (const std::exception& e) {
            error(YAML::Mark::null_mark(), std::string("internal error while loading the config: ") + e.what());
        }
        std::stable_sort(errors_.begin(), errors_.end(), [](const diagnostic& a, const diagnostic& b) {
            return std::pair(a.line, a.column) < std::pair(b.line, b.column);
        });
        for (auto& route : cfg.routes) {
            route.cache_control_fields.clear();
            if (route.ttl_from_origin) route.cache_control_fields = {cfg.server.cache_control_field, "CDN-Cache-Control"};
        }
        load_result out;
        if (errors_.empty())
            out.value = std::move(cfg);
        else
            out.errors = std::move(errors_);
        return out;
    }

private:
    void error(const YAML::Mark& m, std::string message) {
        const bool known = !m.is_null() && m.line >= 0 && m.column >= 0;
        errors_.push_back({file_, known ? m.line + 1 : 0, known ? m.column + 1 : 0, one_line(std::move(message))});
    }
    void error(const item& it, const std::string& message) { error(it.mark, it.path + ": " + message); }

    source_location where(const item& it) const {
        return {file_, it.mark.is_null() ? 0 : it.mark.line + 1, it.mark.is_null() ? 0 : it.mark.column + 1};
    }

    // ---- generic accessors -------------------------------------------------

    // Entries of a map (null counts as empty), reporting non-scalar, unknown and
    // duplicate keys. Only known keys are returned, each once.
    std::vector<entry> entries(const item& it, const std::vector<std::string_view>& known,
                               std::string_view unknown_where) {
        std::vector<entry> out;
        if (it.node.IsNull()) return out;
        if (!it.node.IsMap()) {
            error(it, "must be a map, not a " + kind_name(it.node));
            return out;
        }
        std::map<std::string, int> seen;
        for (auto kv = it.node.begin(); kv != it.node.end(); ++kv) {
            const YAML::Node k = kv->first;  // copies: operator-> yields a temporary
            const YAML::Node v = kv->second;
            if (!k.IsScalar()) {
                error(k.Mark(), std::string(unknown_where) + ": keys must be scalars, not a " + kind_name(k));
                continue;
            }
            const std::string key = k.Scalar();
            if (std::find(known.begin(), known.end(), key) == known.end()) {
                std::string msg = "unknown key " + quoted(key) + " in " + std::string(unknown_where);
                if (auto s = closest(key, known)) msg += " (did you mean " + quoted(*s) + "?)";
                error(k.Mark(), msg);
                continue;
            }
            if (auto [pos, fresh] = seen.emplace(key, k.Mark().line + 1); !fresh) {
                error(k.Mark(), "duplicate key " + quoted(key) + " in " + std::string(unknown_where) +
                                    " (first at line " + std::to_string(pos->second) + ")");
                continue;
            }
            const std::string child = it.path.empty() ? key : it.path + "." + key;
            out.push_back({key, k.Mark(), item{v, v.IsNull() ? k.Mark() : v.Mark(), child}});
        }
        return out;
    }

    // Items of a list (null counts as empty).
    std::optional<std::vector<item>> sequence(const item& it) {
        std::vector<item> out;
        if (it.node.IsNull()) return out;
        if (!it.node.IsSequence()) {
            error(it, "must be a list, not a " + kind_name(it.node));
            return std::nullopt;
        }
        std::size_t i = 0;
        for (const auto& n : it.node) {
            out.push_back(item{n, n.IsNull() ? it.mark : n.Mark(), it.path + "[" + std::to_string(i) + "]"});
            ++i;
        }
        return out;
    }

    // A scalar with `${VAR}` expanded; null reads as "".
    std::optional<std::string> scalar(const item& it) {
        if (it.node.IsNull()) return std::string();
        if (!it.node.IsScalar()) {
            error(it, "must be a scalar, not a " + kind_name(it.node));
            return std::nullopt;
        }
        auto expanded = expand_env(it.node.Scalar(), env_);
        if (!expanded) {
            error(it, expanded.error);
            return std::nullopt;
        }
        return std::move(*expanded.value);
    }

    template <class T>
    void read_string(const item& it, T& out) {
        if (auto s = scalar(it)) out = std::move(*s);
    }

    void read_duration(const item& it, duration& out, bool positive) {
        auto s = scalar(it);
        if (!s) return;
        auto d = parse_duration(*s);
        if (!d) {
            error(it, "bad duration " + quoted(*s) + " (expected an integer and a unit: 500ms, 30s, 5m, 2h, 1d)");
            return;
        }
        if (positive && d->count() <= 0) {
            error(it, "must be greater than 0");
            return;
        }
        out = *d;
    }

    void read_size(const item& it, std::size_t& out, bool positive) {
        auto s = scalar(it);
        if (!s) return;
        auto v = parse_size(*s);
        if (!v) {
            error(it, "bad size " + quoted(*s) + " (expected bytes or a unit: 512KiB, 256MiB, 1GiB, 10KB, 1MB)");
            return;
        }
        if (positive && *v == 0) {
            error(it, "must be greater than 0");
            return;
        }
        out = *v;
    }

    template <class T>
    void read_uint(const item& it, T& out, std::uint64_t min, std::uint64_t max) {
        auto s = scalar(it);
        if (!s) return;
        auto v = parse_uint(*s);
        if (!v) {
            error(it, "bad integer " + quoted(*s));
            return;
        }
        if (*v < min || *v > max) {
            error(it, "must be between " + std::to_string(min) + " and " + std::to_string(max) + ", got " + *s);
            return;
        }
        out = static_cast<T>(*v);
    }

    void read_bool(const item& it, bool& out) {
        auto s = scalar(it);
        if (!s) return;
        const std::string l = lower(*s);
        if (l == "true" || l == "yes" || l == "on")
            out = true;
        else if (l == "false" || l == "no" || l == "off")
            out = false;
        else
            error(it, "bad boolean " + quoted(*s) + " (expected true or false)");
    }

    // A list of header names, lower-cased.
    void read_headers(const item& it, std::vector<std::string>& out) {
        auto items = sequence(it);
        if (!items) return;
        out.clear();
        for (const auto& h : *items) {
            auto s = scalar(h);
            if (!s) continue;
            if (!is_header_name(*s)) {
                error(h, "bad header name " + quoted(*s));
                continue;
            }
            auto l = lower(*s);
            if (std::find(out.begin(), out.end(), l) == out.end()) out.push_back(std::move(l));
        }
    }

    // A list of query parameter names as written (decoded form, case-sensitive); a
    // final '*' matches every name with that prefix.
    void read_query_names(const item& it, std::vector<std::string>& out) {
        auto items = sequence(it);
        if (!items) return;
        out.clear();
        for (const auto& q : *items) {
            auto s = scalar(q);
            if (!s) continue;
            const auto star = s->find('*');
            const bool bad_chars = std::any_of(s->begin(), s->end(), [](char c) {
                return static_cast<unsigned char>(c) < 0x20 || c == 0x7f || c == '&' || c == '=' || c == '#';
            });
            if (s->empty() || *s == "*" || bad_chars || (star != std::string::npos && star + 1 != s->size())) {
                error(q, "bad query parameter name " + quoted(*s) +
                             " (a name, or a prefix ending in '*' such as \"utm_*\"; not \"*\" alone)");
                continue;
            }
            if (std::find(out.begin(), out.end(), *s) == out.end()) out.push_back(*s);
        }
    }

    // ---- sections -------------------------------------------------------------

    void parse_document(std::string_view text, config& cfg) {
        YAML::Node first;
        try {
            // Not YAML::LoadAll: in yaml-cpp 0.7 it never returns (allocating as it
            // goes) on a document that starts with ',', because the parser keeps
            // producing empty documents without consuming that token
            // (jbeder/yaml-cpp#1040, fixed upstream after 0.8.0). A bounded pass over
            // the events counts the documents and notices a parser that makes no
            // progress; only the first document is built.
            std::istringstream in{std::string(text)};
            YAML::Parser parser(in);
            document_marks docs;
            while (docs.starts.size() < 3 && parser.HandleNextDocument(docs)) {
            }
            for (std::size_t i = 1; i < docs.starts.size(); ++i) {
                if (docs.starts[i].pos != docs.starts[i - 1].pos) continue;
                const auto at = static_cast<std::size_t>(docs.starts[i].pos);
                error(docs.starts[i], "YAML syntax error: unexpected " +
                                          (at < text.size() ? quoted(text.substr(at, 1)) : std::string("end")));
                return;
            }
            if (docs.starts.size() > 1) error(docs.roots[1], "only one YAML document is allowed");
            first = YAML::Load(std::string(text));
        } catch (const YAML::Exception& e) {
            error(e.mark, "YAML syntax error: " + e.msg);
            return;
        }
        const item root{first, YAML::Mark(), ""};
        if (!root.node.IsNull() && !root.node.IsMap()) {
            error(root.node.Mark(), "the config must be a map, not a " + kind_name(root.node));
            return;
        }

        const item* server = nullptr;
        const item* limits = nullptr;
        const item* tiers = nullptr;
        const item* routes = nullptr;
        const item* invalidate = nullptr;
        const item* logging = nullptr;
        auto top = entries(root, section(""), "the top level");
        for (const auto& e : top) {
            if (e.key == "server") server = &e.value;
            if (e.key == "limits") limits = &e.value;
            if (e.key == "tiers") tiers = &e.value;
            if (e.key == "routes") routes = &e.value;
            if (e.key == "invalidate") invalidate = &e.value;
            if (e.key == "logging") logging = &e.value;
        }
        // Fixed order regardless of the file's: routes need to know the tiers.
        if (server) parse_server(*server, cfg.server);
        if (limits) parse_limits(*limits, cfg.limits);
        if (tiers) parse_tiers(*tiers, cfg.tiers);
        if (routes) parse_routes(*routes, cfg);
        if (invalidate) parse_invalidations(*invalidate, cfg);
        if (logging) parse_logging(*logging, cfg.logging);
    }

    // A log level name, or an error at the value's position.
    bool read_level(const item& v, std::string& out) {
        auto text = scalar(v);
        if (!text) return false;
        for (const char* l : log_levels) {
            if (*text == l) {
                out = *text;
                return true;
            }
        }
        error(v, "bad log level " + quoted(*text) + " (expected trace, debug, info, warn, error, critical or off)");
        return false;
    }

    void parse_logging(const item& it, logging_config& lc) {
        for (const auto& e : entries(it, section("logging"), "logging")) {
            const item& v = e.value;
            if (e.key == "level") {
                read_level(v, lc.level);
            } else if (e.key == "access_log") {
                auto text = scalar(v);
                if (!text) continue;
                if (*text == "text") lc.access_log = logging_config::access_format::text;
                else if (*text == "json") lc.access_log = logging_config::access_format::json;
                else if (*text == "off") lc.access_log = logging_config::access_format::off;
                else error(v, "bad access_log " + quoted(*text) + " (expected text, json or off)");
            } else if (e.key == "levels") {
                for (const auto& c : entries(v, section("logging.levels"), "logging.levels")) {
                    std::string level;
                    if (read_level(c.value, level)) lc.levels.emplace_back(c.key, level);
                }
            }
        }
    }

    void parse_server(const item& it, server_config& s) {
        for (const auto& e : entries(it, section("server"),
                                     "server")) {
            const item& v = e.value;
            if (e.key == "listen" || e.key == "admin_listen") {
                auto text = scalar(v);
                if (!text) continue;
                if (e.key == "admin_listen" && text->empty()) {
                    s.admin_listen.reset();  // "" disables the admin API
                    continue;
                }
                auto ep = parse_endpoint(*text);
                if (!ep) {
                    error(v, "bad address " + quoted(*text) + ": " + ep.error);
                    continue;
                }
                if (e.key == "listen")
                    s.listen = *ep.value;
                else
                    s.admin_listen = *ep.value;
            } else if (e.key == "upstream") {
                auto text = scalar(v);
                if (!text) continue;
                auto ep = parse_upstream(*text);
                if (!ep) {
                    error(v, "bad upstream " + quoted(*text) + ": " + ep.error);
                    continue;
                }
                s.upstream = *ep.value;
                std::string url = *text;
                if (!url.empty() && url.back() == '/') url.pop_back();
                s.upstream_url = std::move(url);
            } else if (e.key == "namespace") {
                auto text = scalar(v);
                if (!text) continue;
                if (!is_name(*text)) {
                    error(v, "bad namespace " + quoted(*text) + " (use letters, digits, '_', '.', '-')");
                    continue;
                }
                s.key_namespace = *text;
            } else if (e.key == "admin_token") {
                read_string(v, s.admin_token);
            } else if (e.key == "threads") {
                read_uint(v, s.threads, 0, 1024);
            } else if (e.key == "trusted_proxies") {
                auto items = sequence(v);
                if (!items) continue;
                s.trusted_proxies.clear();
                for (const auto& p : *items) {
                    auto text = scalar(p);
                    if (!text) continue;
                    if (!util::parse_ip_prefix(*text)) {
                        error(p, "bad address or prefix " + quoted(*text) +
                                     " (expected an IP address or network, e.g. 10.0.0.0/8 or ::1; host bits must be 0)");
                        continue;
                    }
                    s.trusted_proxies.push_back(*text);
                }
            } else if (e.key == "upstream_host") {
                auto text = scalar(v);
                if (!text) continue;
                if (!text->empty() && !util::valid_authority(*text)) {
                    error(v, "bad upstream_host " + quoted(*text) + " (expected host or host:port, as a Host field)");
                    continue;
                }
                s.upstream_host = *text;
            } else if (e.key == "underscores_in_headers") {
                read_bool(v, s.underscores_in_headers);
            } else if (e.key == "method_override") {
                read_bool(v, s.method_override);
            } else if (e.key == "cache_control_field") {
                auto text = scalar(v);
                if (!text) continue;
                if (!is_header_name(*text)) {
                    error(v, "bad header name " + quoted(*text));
                    continue;
                }
                s.cache_control_field = *text;
            } else if (e.key == "cache_status") {
                auto text = scalar(v);
                if (!text) continue;
                if (!text->empty() && !util::is_token(*text)) {
                    error(v, "bad cache_status name " + quoted(*text) + " (expected a token, e.g. cachecar or edge-1)");
                    continue;
                }
                s.cache_status = *text;
            } else if (e.key == "cache_status_key") {
                read_bool(v, s.cache_status_key);
            }
        }
    }

    void parse_limits(const item& it, limits_config& l) {
        for (const auto& e : entries(it, section("limits"), "limits")) {
            const item& v = e.value;
            if (e.key == "max_header_bytes") read_size(v, l.max_header_bytes, true);
            if (e.key == "max_body_bytes") read_size(v, l.max_body_bytes, false);
            if (e.key == "max_upload_bytes") read_size(v, l.max_upload_bytes, false);
            if (e.key == "tunnel_idle_timeout") read_duration(v, l.tunnel_idle_timeout, true);
            if (e.key == "max_object_bytes") read_size(v, l.max_object_bytes, false);
            if (e.key == "upstream_timeout") read_duration(v, l.upstream_timeout, true);
            if (e.key == "client_idle_timeout") read_duration(v, l.client_idle_timeout, true);
            if (e.key == "drain_timeout") read_duration(v, l.drain_timeout, false);
            if (e.key == "max_connections") read_uint(v, l.max_connections, 1, 10'000'000);
        }
    }

    void parse_tiers(const item& it, tiers_config& t) {
        for (const auto& e : entries(it, section("tiers"), "tiers")) {
            const item& v = e.value;
            if (e.key == "memory") {
                for (const auto& m : entries(v, section("tiers.memory"), "tiers.memory"))
                    read_size(m.value, t.memory.max_bytes, false);
            } else if (e.key == "redis") {
                // Present, even as `redis: {}` or a bare `redis:`, means configured.
                redis_tier_config r;
                for (const auto& m : entries(v, section("tiers.redis"), "tiers.redis")) {
                    if (m.key == "url") {
                        auto url = scalar(m.value);
                        if (!url) continue;
                        // The tier's own parser decides, so --check accepts exactly what runs.
                        std::string problem;
                        if (checks_.redis_url) {
                            problem = checks_.redis_url(*url);
                        } else if (url->rfind("redis://", 0) != 0 && url->rfind("unix://", 0) != 0) {
                            problem = "redis URL must start with redis:// or unix://";
                        }
                        if (!problem.empty())
                            error(m.value, "bad Redis URL " + quoted(*url) + ": " + problem +
                                               " (expected redis://[user:pass@]host:port/db or unix:///path.sock)");
                        else
                            r.url = *url;
                    }
                    if (m.key == "timeout") read_duration(m.value, r.timeout, true);
                    if (m.key == "pool") read_uint(m.value, r.pool, 1, 1024);
                    if (m.key == "confirm_purges") read_bool(m.value, r.confirm_purges);
                }
                t.redis = r;
            } else if (e.key == "mongo") {
                mongo_tier_config m;
                for (const auto& f : entries(v, section("tiers.mongo"), "tiers.mongo")) {
                    if (f.key == "uri") {
                        auto uri = scalar(f.value);
                        if (!uri) continue;
                        if (uri->rfind("mongodb://", 0) != 0 && uri->rfind("mongodb+srv://", 0) != 0) {
                            error(f.value, "bad MongoDB URI " + quoted(*uri) + " (expected mongodb://host:port)");
                        } else if (auto problem = checks_.mongo_uri ? checks_.mongo_uri(*uri) : std::string();
                                   !problem.empty()) {
                            // The driver's own parser decides, so --check accepts exactly what runs.
                            error(f.value, "bad MongoDB URI " + quoted(*uri) + ": " + problem);
                        } else {
                            m.uri = *uri;
                        }
                    }
                    if (f.key == "database" || f.key == "collection") {
                        auto name = scalar(f.value);
                        if (!name) continue;
                        // MongoDB forbids these in database names; '$' also in collections.
                        const char* forbidden = f.key == "database" ? "/\\. \"$" : "$";
                        if (name->empty() || name->find_first_of(forbidden) != std::string::npos) {
                            error(f.value, "bad " + f.key + " name " + quoted(*name));
                            continue;
                        }
                        (f.key == "database" ? m.database : m.collection) = *name;
                    }
                    if (f.key == "timeout") read_duration(f.value, m.timeout, true);
                }
                t.mongo = m;
            }
        }
        tiers_ = &t;
    }

    // The route's `match`, parsed; nullopt (and reported) when it is bad.
    std::optional<route::method_and_pattern> read_match(const item& it) {
        auto text = scalar(it);
        if (!text) return std::nullopt;
        auto mp = route::parse_match(*text);
        if (!mp) {
            error(it, "bad pattern " + quoted(*text) + ": " + mp.error);
            return std::nullopt;
        }
        return std::move(*mp.value);
    }

    // `path.X` placeholders must name a `{X}` of the entry's own pattern.
    void check_path_refs(const item& it, const std::vector<route::template_part>& parts,
                         const std::optional<route::method_and_pattern>& match) {
        if (!match) return;  // the bad pattern has been reported
        const auto names = match->pattern.param_names();
        for (const auto& p : parts) {
            if (p.from != route::source::path) continue;
            if (std::find(names.begin(), names.end(), p.text) == names.end())
                error(it, "path." + p.text + " is not a parameter of " + quoted(match->path));
        }
    }

    std::vector<route::category_template> read_categories(const item& it, std::vector<std::string>& out,
                                                          const std::optional<route::method_and_pattern>& match,
                                                          std::vector<item>* positions = nullptr) {
        std::vector<route::category_template> parsed_templates;
        auto items = sequence(it);
        if (!items) return parsed_templates;
        for (const auto& c : *items) {
            auto text = scalar(c);
            if (!text) continue;
            auto ct = route::parse_category_template(*text);
            if (!ct) {
                error(c, "bad category " + quoted(*text) + ": " + ct.error);
                continue;
            }
            check_path_refs(c, ct.value->parts, match);
            out.push_back(*text);
            parsed_templates.push_back(std::move(*ct.value));
            if (positions) positions->push_back(c);
        }
        return parsed_templates;
    }

    void parse_routes(const item& it, config& cfg) {
        auto items = sequence(it);
        if (!items) return;
        std::map<std::string, int> names;  // name -> line
        for (const auto& r : *items) {
            if (!r.node.IsMap()) {
                error(r, "a route must be a map, not a " + kind_name(r.node));
                continue;
            }
            route_config rc;
            rc.where = where(r);
            auto es = entries(r, section("routes[]"), r.path);
            std::optional<route::method_and_pattern> match;
            const item* shared_needed = nullptr;  // where store_authenticated was set
            for (const auto& e : es) {
                if (e.key != "match") continue;
                match = read_match(e.value);
                if (match) {
                    rc.method = match->method;
                    rc.path_pattern = match->path;
                }
            }
            for (const auto& req : {"name", "match", "tiers", "ttl"}) {
                if (std::none_of(es.begin(), es.end(), [&](const entry& e) { return e.key == req; }))
                    error(r, std::string("missing required option ") + quoted(req));
            }
            for (const auto& e : es) {
                const item& v = e.value;
                if (e.key == "name") {
                    auto name = scalar(v);
                    if (!name) continue;
                    if (!is_name(*name)) {
                        error(v, "bad route name " + quoted(*name) + " (use letters, digits, '_', '.', '-')");
                        continue;
                    }
                    if (auto [pos, fresh] = names.emplace(*name, v.mark.line + 1); !fresh)
                        error(v, "duplicate route name " + quoted(*name) + " (first at line " +
                                     std::to_string(pos->second) + ")");
                    rc.name = *name;
                } else if (e.key == "tiers") {
                    read_route_tiers(v, rc.tiers);
                } else if (e.key == "ttl") {
                    read_duration(v, rc.ttl, true);
                } else if (e.key == "key") {
                    auto fields = sequence(v);
                    if (!fields) continue;
                    rc.key.emplace();
                    for (const auto& f : *fields) {
                        auto text = scalar(f);
                        if (!text) continue;
                        auto field = route::parse_key_field(*text);
                        if (!field) {
                            error(f, field.error);
                            continue;
                        }
                        check_path_refs(f, {*field.value}, match);
                        rc.key->push_back(*text);
                    }
                } else if (e.key == "categories") {
                    for (auto& ct : read_categories(v, rc.categories, match)) produced_.push_back(std::move(ct));
                } else if (e.key == "shared") {
                    read_bool(v, rc.shared);
                } else if (e.key == "status") {
                    auto codes = sequence(v);
                    if (!codes) continue;
                    if (codes->empty()) {
                        error(v, "an empty status list would store nothing");
                        continue;
                    }
                    rc.status.clear();
                    for (const auto& c : *codes) {
                        unsigned code = 0;
                        const auto before = errors_.size();
                        read_uint(c, code, 100, 599);
                        if (errors_.size() == before &&
                            std::find(rc.status.begin(), rc.status.end(), code) == rc.status.end())
                            rc.status.push_back(code);
                    }
                } else if (e.key == "stale_if_error") {
                    read_duration(v, rc.stale_if_error, false);
                } else if (e.key == "stale_while_revalidate") {
                    read_duration(v, rc.stale_while_revalidate, false);
                } else if (e.key == "ttl_from_origin") {
                    read_bool(v, rc.ttl_from_origin);
                } else if (e.key == "negative_ttl") {
                    read_duration(v, rc.negative_ttl, false);
                } else if (e.key == "credential_headers") {
                    read_headers(v, rc.credential_headers);
                } else if (e.key == "strip_headers") {
                    read_headers(v, rc.strip_headers);
                } else if (e.key == "ignore_query") {
                    read_query_names(v, rc.ignore_query);
                } else if (e.key == "store_authenticated") {
                    read_bool(v, rc.store_authenticated);
                    shared_needed = &v;
                }
            }
            if (shared_needed != nullptr && rc.store_authenticated && !rc.shared)
                error(*shared_needed, "store_authenticated only applies to a route with shared: true");
            cfg.routes.push_back(std::move(rc));
        }
    }

    void read_route_tiers(const item& it, std::vector<tier_kind>& out) {
        auto items = sequence(it);
        if (!items) return;
        if (items->empty()) {
            error(it, "a route needs at least one tier");
            return;
        }
        for (const auto& t : *items) {
            auto name = scalar(t);
            if (!name) continue;
            tier_kind kind{};
            if (*name == "memory")
                kind = tier_kind::memory;
            else if (*name == "redis")
                kind = tier_kind::redis;
            else if (*name == "mongo")
                kind = tier_kind::mongo;
            else {
                auto guess = closest(*name, {"memory", "redis", "mongo"});
                const std::string hint =
                    guess ? " (did you mean " + quoted(*guess) + "?)" : " (expected memory, redis or mongo)";
                error(t, "unknown tier " + quoted(*name) + hint);
                continue;
            }
            const bool configured = kind == tier_kind::memory ||
                                    (kind == tier_kind::redis && tiers_ && tiers_->redis) ||
                                    (kind == tier_kind::mongo && tiers_ && tiers_->mongo);
            if (!configured) {
                error(t, "tier " + quoted(*name) + " is not configured (add it under tiers:)");
                continue;
            }
            if (std::find(out.begin(), out.end(), kind) != out.end()) {
                error(t, "tier " + quoted(*name) + " is listed twice");
                continue;
            }
            out.push_back(kind);
        }
    }

    void parse_invalidations(const item& it, config& cfg) {
        auto items = sequence(it);
        if (!items) return;
        for (const auto& r : *items) {
            if (!r.node.IsMap()) {
                error(r, "an invalidate entry must be a map, not a " + kind_name(r.node));
                continue;
            }
            invalidate_config ic;
            ic.where = where(r);
            auto es = entries(r, section("invalidate[]"), r.path);
            std::optional<route::method_and_pattern> match;
            for (const auto& e : es) {
                if (e.key != "match") continue;
                match = read_match(e.value);
                if (match) {
                    ic.method = match->method;
                    ic.path_pattern = match->path;
                }
            }
            for (const auto& req : {"match", "purge"}) {
                if (std::none_of(es.begin(), es.end(), [&](const entry& e) { return e.key == req; }))
                    error(r, std::string("missing required option ") + quoted(req));
            }
            for (const auto& e : es) {
                if (e.key != "purge") continue;
                if (e.value.node.IsNull() || (e.value.node.IsSequence() && e.value.node.size() == 0)) {
                    error(e.value, "an empty purge list purges nothing");
                    continue;
                }
                std::vector<item> positions;
                auto purges = read_categories(e.value, ic.purge, match, &positions);
                for (std::size_t i = 0; i < purges.size(); ++i) {
                    const bool reaches = std::any_of(produced_.begin(), produced_.end(), [&](const auto& produced) {
                        return route::purge_reaches(purges[i], produced);
                    });
                    if (!reaches)
                        error(positions[i], "purge of category " + quoted(ic.purge[i]) + " that no route produces");
                }
            }
            cfg.invalidations.push_back(std::move(ic));
        }
    }

    std::string file_;
    env_lookup env_;
    const tier_checks& checks_;
    std::vector<diagnostic> errors_;
    const tiers_config* tiers_ = nullptr;              // set once `tiers:` is parsed
    std::vector<route::category_template> produced_;  // every route's category templates
};

}  // namespace

load_result load_string(std::string_view yaml_text, const std::string& file_name, const tier_checks& checks) {
    return loader(file_name, process_env(), checks).run(yaml_text);
}

load_result load_file(const std::string& path, const tier_checks& checks) {
    auto fail = [&](std::string message) {
        load_result out;
        out.errors.push_back({path, 0, 0, "cannot read config: " + std::move(message)});
        return out;
    };
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return fail(std::strerror(errno));
    std::string text;
    struct stat st {};
    if (::fstat(fd, &st) != 0 || S_ISDIR(st.st_mode)) {
        const int err = S_ISDIR(st.st_mode) ? EISDIR : errno;
        ::close(fd);
        return fail(std::strerror(err));
    }
    char buf[65536];
    for (;;) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0) {
            if (errno == EINTR) continue;
            const int err = errno;
            ::close(fd);
            return fail(std::strerror(err));
        }
        if (n == 0) break;
        text.append(buf, static_cast<std::size_t>(n));
        if (text.size() > max_config_file_bytes) {
            ::close(fd);
            return fail("larger than 16 MiB");
        }
    }
    ::close(fd);
    return load_string(text, path, checks);
}

std::vector<std::string> schema_keys() {
    std::vector<std::string> out;
    for (const auto& [name, keys] : schema()) {
        for (auto k : keys) out.push_back(name.empty() ? std::string(k) : std::string(name) + "." + std::string(k));
    }
    return out;
}

}  // namespace cachecar::config
