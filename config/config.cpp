// Loads and validates a lastgood config file into typed structs.
// Every problem names the file, the JSON pointer and what was expected; loading never throws.
#include "config/config.hpp"

#include "net/url.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <fstream>

#include <re2/re2.h>
#include <set>
#include <sstream>

namespace lastgood::config {

using nlohmann::json;

std::string Problem::to_string() const {
  return file + ": " + (pointer.empty() ? std::string("/") : pointer) + ": " + message;
}

namespace {

std::string escape_token(const std::string& key) {
  std::string out;
  for (char c : key) {
    if (c == '~') out += "~0";
    else if (c == '/') out += "~1";
    else out += c;
  }
  return out;
}

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t sub = prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1);
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, sub});
    }
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

const char* type_name(const json& j) {
  switch (j.type()) {
    case json::value_t::null: return "null";
    case json::value_t::object: return "an object";
    case json::value_t::array: return "an array";
    case json::value_t::string: return "a string";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::number_integer:
    case json::value_t::number_unsigned: return "an integer";
    case json::value_t::number_float: return "a number";
    default: return "something else";
  }
}

std::string quoted_list(const std::vector<std::string>& v) {
  std::string out;
  for (size_t i = 0; i < v.size(); ++i) out += (i ? ", " : "") + v[i];
  return out;
}

struct Ctx {
  std::string file;
  LoadOptions opts;
  std::vector<Problem> problems;
  void error(const std::string& ptr, std::string msg) { problems.push_back({file, ptr, std::move(msg)}); }
};

// Reads the keys of one JSON object. Every key asked for is "known"; finish() reports the rest
// as unknown, suggesting the closest known key.
class Obj {
 public:
  Obj(Ctx& c, const json& j, std::string ptr) : c_(c), j_(j), ptr_(std::move(ptr)) {
    ok_ = j_.is_object();
    if (!ok_) c_.error(ptr_, std::string("expected an object, found ") + type_name(j_));
  }
  ~Obj() { finish(); }
  Obj(const Obj&) = delete;
  Obj& operator=(const Obj&) = delete;

  bool ok() const { return ok_; }
  const std::string& ptr() const { return ptr_; }
  std::string at(const std::string& key) const { return ptr_ + "/" + escape_token(key); }
  Ctx& ctx() { return c_; }

  // The raw value, or nullptr when absent; marks the key known.
  const json* get(const std::string& key, bool required = false) {
    known_.insert(key);
    if (!ok_) return nullptr;
    auto it = j_.find(key);
    if (it == j_.end()) {
      if (required) c_.error(at(key), "required key is missing");
      return nullptr;
    }
    return &*it;
  }
  bool has(const std::string& key) const { return ok_ && j_.contains(key); }

  std::optional<std::string> str(const std::string& key, bool required = false, bool allow_empty = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_string()) return bad(key, *v, "a string");
    std::string s = v->get<std::string>();
    if (s.empty() && !allow_empty) {
      c_.error(at(key), "expected a non-empty string");
      return std::nullopt;
    }
    return s;
  }
  std::optional<std::string> one_of(const std::string& key, const std::vector<std::string>& choices, bool required = false) {
    auto s = str(key, required);
    if (!s) return std::nullopt;
    if (std::find(choices.begin(), choices.end(), *s) == choices.end()) {
      c_.error(at(key), "expected one of " + quoted_list(choices) + ", found \"" + *s + "\"");
      return std::nullopt;
    }
    return s;
  }
  std::optional<bool> boolean(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_boolean()) return bad(key, *v, "true or false");
    return v->get<bool>();
  }
  std::optional<long long> integer(const std::string& key, long long lo, long long hi, bool required = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_number_integer()) return bad(key, *v, "an integer");
    long long n = v->get<long long>();
    if (n < lo || n > hi) {
      c_.error(at(key), "expected an integer from " + std::to_string(lo) + " to " + std::to_string(hi) + ", found " + std::to_string(n));
      return std::nullopt;
    }
    return n;
  }
  std::optional<double> number(const std::string& key, double lo, double hi, bool required = false, bool lo_open = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_number()) return bad(key, *v, "a number");
    double d = v->get<double>();
    if (d < lo || d > hi || (lo_open && d == lo)) {
      std::ostringstream m;
      m << "expected a number " << (lo_open ? "above " : "from ") << lo << " to " << hi << ", found " << d;
      c_.error(at(key), m.str());
      return std::nullopt;
    }
    return d;
  }
  std::optional<Duration> duration(const std::string& key, bool required = false, Duration min = Duration{0}) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    return parse_duration_value(c_, at(key), *v, min);
  }
  std::optional<std::vector<std::string>> strings(const std::string& key, bool required = false, bool non_empty = false) {
    const json* v = get(key, required);
    if (!v) return std::nullopt;
    if (!v->is_array()) return bad(key, *v, "an array of strings");
    std::vector<std::string> out;
    bool good = true;
    for (size_t i = 0; i < v->size(); ++i) {
      if (!(*v)[i].is_string() || (*v)[i].get<std::string>().empty()) {
        c_.error(at(key) + "/" + std::to_string(i), std::string("expected a non-empty string, found ") + type_name((*v)[i]));
        good = false;
      } else {
        out.push_back((*v)[i].get<std::string>());
      }
    }
    if (good && non_empty && out.empty()) {
      c_.error(at(key), "expected at least one entry");
      return std::nullopt;
    }
    if (!good) return std::nullopt;
    return out;
  }
  std::optional<std::map<std::string, std::string>> string_map(const std::string& key) {
    const json* v = get(key);
    if (!v) return std::nullopt;
    if (!v->is_object()) return bad(key, *v, "an object of strings");
    std::map<std::string, std::string> out;
    bool good = true;
    for (auto& [k, val] : v->items()) {
      if (!val.is_string()) {
        c_.error(at(key) + "/" + escape_token(k), std::string("expected a string, found ") + type_name(val));
        good = false;
      } else {
        out[k] = val.get<std::string>();
      }
    }
    if (!good) return std::nullopt;
    return out;
  }
  // A secret given as NAME_env or NAME_file (exactly one). `inline_ok` also accepts NAME itself.
  std::optional<Secret> secret(const std::string& name, bool required, bool inline_ok = false) {
    auto env = str(name + "_env");
    auto file = str(name + "_file");
    std::optional<std::string> inl;
    if (inline_ok) inl = str(name);
    else if (has(name)) {
      known_.insert(name);
      c_.error(at(name), "secrets are not accepted inline: use " + name + "_env (an environment variable) or " + name + "_file");
      return std::nullopt;
    }
    int n = (env ? 1 : 0) + (file ? 1 : 0) + (inl ? 1 : 0);
    if (n == 0) {
      if (required)
        c_.error(ptr_ + "/" + name + "_env",
                 "required: give " + name + "_env (an environment variable) or " + name + "_file" + (inline_ok ? " or " + name : ""));
      return std::nullopt;
    }
    if (n > 1) {
      c_.error(ptr_, "give only one of " + name + "_env, " + name + "_file" + (inline_ok ? ", " + name : ""));
      return std::nullopt;
    }
    Secret s = env ? Secret::from_env(*env) : file ? Secret::from_file(*file) : Secret::from_inline(*inl);
    if (c_.opts.resolve_secrets && !inl) {
      if (auto e = s.resolve()) c_.error(at(env ? name + "_env" : name + "_file"), *e);
    }
    return s;
  }

  void finish() {
    if (!ok_ || finished_) return;
    finished_ = true;
    for (auto& [k, v] : j_.items()) {
      if (known_.count(k)) continue;
      std::string best;
      size_t best_d = 3;
      for (const auto& cand : known_) {
        size_t d = edit_distance(k, cand);
        if (d < best_d || (d == best_d && best.empty() && d <= std::max<size_t>(2, cand.size() / 3))) {
          if (d <= std::max<size_t>(1, std::min(k.size(), cand.size()) / 3) || d <= 2) {
            best = cand;
            best_d = d;
          }
        }
      }
      c_.error(at(k), "unknown key \"" + k + "\"" + (best.empty() ? std::string() : " (did you mean \"" + best + "\"?)"));
    }
  }

  static std::optional<Duration> parse_duration_value(Ctx& c, const std::string& ptr, const json& v, Duration min) {
    if (!v.is_string()) {
      c.error(ptr, std::string("expected a duration string like \"30s\" (units ms, s, m, h, d), found ") + type_name(v));
      return std::nullopt;
    }
    auto d = parse_duration(v.get<std::string>());
    if (!d) {
      c.error(ptr, "expected a duration like \"750ms\", \"30s\", \"5m\", \"2h\" or \"7d\", found \"" + v.get<std::string>() + "\"");
      return std::nullopt;
    }
    if (*d < min) {
      c.error(ptr, "expected a duration of at least " + format_duration(min) + ", found \"" + v.get<std::string>() + "\"");
      return std::nullopt;
    }
    return d;
  }

 private:
  template <typename T = int>
  std::nullopt_t bad(const std::string& key, const json& v, const char* expected) {
    c_.error(at(key), std::string("expected ") + expected + ", found " + type_name(v));
    return std::nullopt;
  }

  Ctx& c_;
  const json& j_;
  std::string ptr_;
  bool ok_ = false;
  bool finished_ = false;
  std::set<std::string> known_;
};

// Iterates an array at obj[key], calling fn(element, pointer, index).
template <typename F>
void each(Obj& o, const std::string& key, bool required, F fn) {
  const json* v = o.get(key, required);
  if (!v) return;
  if (!v->is_array()) {
    o.ctx().error(o.at(key), std::string("expected an array, found ") + type_name(*v));
    return;
  }
  for (size_t i = 0; i < v->size(); ++i) fn((*v)[i], o.at(key) + "/" + std::to_string(i), i);
}

std::optional<Severity> parse_severity(const std::string& s) {
  if (s == "P0") return Severity::P0;
  if (s == "P1") return Severity::P1;
  if (s == "P2") return Severity::P2;
  return std::nullopt;
}

// "200", "200-299", 204, or an array of those.
std::optional<std::vector<StatusRange>> parse_status(Ctx& c, const std::string& ptr, const json& v) {
  std::vector<StatusRange> out;
  auto one = [&](const json& e, const std::string& p) -> bool {
    StatusRange r;
    if (e.is_number_integer()) {
      r.lo = r.hi = e.get<int>();
    } else if (e.is_string()) {
      static const RE2 re(R"(\s*(\d{3})\s*(?:-\s*(\d{3}))?\s*)");
      const std::string s = e.get<std::string>();
      std::string lo, hi;
      if (!RE2::FullMatch(s, re, &lo, &hi)) {
        c.error(p, "expected a status code or range like \"200-299\", found \"" + s + "\"");
        return false;
      }
      r.lo = std::stoi(lo);
      r.hi = hi.empty() ? r.lo : std::stoi(hi);
    } else {
      c.error(p, std::string("expected a status code, a range like \"200-299\" or a list of them, found ") + type_name(e));
      return false;
    }
    if (r.lo < 100 || r.hi > 599 || r.lo > r.hi) {
      c.error(p, "expected status codes from 100 to 599 with the lower bound first");
      return false;
    }
    out.push_back(r);
    return true;
  };
  if (v.is_array()) {
    if (v.empty()) {
      c.error(ptr, "expected at least one status code");
      return std::nullopt;
    }
    bool good = true;
    for (size_t i = 0; i < v.size(); ++i) good = one(v[i], ptr + "/" + std::to_string(i)) && good;
    if (!good) return std::nullopt;
  } else if (!one(v, ptr)) {
    return std::nullopt;
  }
  return out;
}

void parse_http_probe(Obj& o, HttpProbe& h) {
  if (auto u = o.str("url", true)) {
    if (!net::parse_url(*u)) o.ctx().error(o.at("url"), "expected an http:// or https:// URL with a host, found \"" + *u + "\"");
    h.url = *u;
  }
  if (auto m = o.one_of("method", {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})) h.method = *m;
  if (auto hs = o.string_map("headers")) {
    for (const auto& [k, v] : *hs) {
      const bool name_ok = !k.empty() && std::all_of(k.begin(), k.end(), [](unsigned char c) {
        return std::isalnum(c) || std::string_view("!#$%&'*+-.^_`|~").find(static_cast<char>(c)) != std::string_view::npos;
      });
      if (!name_ok) o.ctx().error(o.at("headers") + "/" + escape_token(k), "expected an HTTP header name (letters, digits, -), found \"" + k + "\"");
      if (v.find_first_of(std::string("\r\n\0", 3)) != std::string::npos)
        o.ctx().error(o.at("headers") + "/" + escape_token(k), "expected a header value on one line (no CR, LF or NUL)");
    }
    h.headers = *hs;
  }
  if (auto b = o.str("body", false, true)) h.body = *b;
  if (auto f = o.integer("follow_redirects", 0, 10)) h.follow_redirects = static_cast<int>(*f);
  if (auto d = o.boolean("redirect_to_http")) h.redirect_to_http = *d;
  if (auto ca = o.str("ca_file")) h.ca_file = *ca;
  if (auto k = o.boolean("insecure_skip_verify")) h.insecure_skip_verify = *k;
  if (auto mb = o.integer("max_body_bytes", 1, 64LL * 1024 * 1024)) h.max_body_bytes = static_cast<size_t>(*mb);
  if (const json* e = o.get("expect")) {
    Obj x(o.ctx(), *e, o.at("expect"));
    if (const json* st = x.get("status")) {
      if (auto s = parse_status(o.ctx(), x.at("status"), *st)) h.expect.status = *s;
    }
    if (auto s = x.str("body_contains")) h.expect.body_contains = *s;
    if (auto s = x.str("body_matches")) {
      // Matched against response bodies (network data) with RE2, in time linear in the body.
      RE2::Options opts;
      opts.set_log_errors(false);
      RE2 test(*s, opts);
      if (test.ok()) h.expect.body_matches = *s;
      else o.ctx().error(x.at("body_matches"), "expected a regular expression in RE2 syntax (no backreferences or lookaround): " + test.error());
    }
    if (auto hm = x.string_map("header")) h.expect.header = *hm;
    if (const json* js = x.get("json")) {
      if (!js->is_object()) {
        o.ctx().error(x.at("json"), std::string("expected an object mapping JSON pointers to values, found ") + type_name(*js));
      } else {
        for (auto& [k, v] : js->items()) {
          try {
            json::json_pointer p(k);
            (void)p;
            h.expect.json[k] = v;
          } catch (const json::exception&) {
            o.ctx().error(x.at("json") + "/" + escape_token(k), "expected a JSON pointer like \"/status\", found \"" + k + "\"");
          }
        }
      }
    }
    if (auto d = x.duration("max_latency", false, Duration{1})) h.expect.max_latency = *d;
    if (auto d = x.duration("cert_valid_for", false, Duration{1})) h.expect.cert_valid_for = *d;
  }
  if (auto u = net::parse_url(h.url)) {
    if (u->scheme != "https" && (h.expect.cert_valid_for || h.ca_file || h.insecure_skip_verify)) {
      o.ctx().error(o.at("url"), "TLS options (ca_file, insecure_skip_verify, expect.cert_valid_for) need an https:// URL");
    }
  }
}

void parse_tcp_probe(Obj& o, TcpProbe& t) {
  if (auto a = o.str("address", true)) {
    static const RE2 re(R"((\[[0-9a-fA-F:.]+\]|[^\s:\[\]]+):(\d{1,5}))");
    std::string host, port;
    if (!RE2::FullMatch(*a, re, &host, &port) || std::stoi(port) < 1 || std::stoi(port) > 65535) {
      o.ctx().error(o.at("address"), "expected \"host:port\" (e.g. \"127.0.0.1:5432\"), found \"" + *a + "\"");
    } else {
      t.host = host;
      if (t.host.front() == '[') t.host = t.host.substr(1, t.host.size() - 2);
      t.port = port;
    }
  }
  if (auto s = o.str("send", false, true)) t.send = *s;
  if (const json* e = o.get("expect")) {
    Obj x(o.ctx(), *e, o.at("expect"));
    if (auto p = x.str("reply_prefix")) t.expect_reply_prefix = *p;
    if (auto d = x.duration("max_latency", false, Duration{1})) t.max_latency = *d;
  }
}

const RE2& npm_name_re() {
  static const RE2 re(R"((@[a-z0-9][a-z0-9._~-]*/)?[a-z0-9][a-z0-9._~-]*)");
  return re;
}

void parse_npm_probe(Obj& o, NpmRegistryProbe& n) {
  if (auto r = o.str("registry")) {
    if (!net::parse_url(*r)) o.ctx().error(o.at("registry"), "expected a registry URL like \"https://registry.npmjs.org/\", found \"" + *r + "\"");
    n.registry = *r;
  }
  if (auto p = o.str("package", true)) {
    if (!RE2::FullMatch(*p, npm_name_re()))
      o.ctx().error(o.at("package"), "expected an npm package name like \"name\" or \"@scope/name\", found \"" + *p + "\"");
    n.package = *p;
  }
  if (auto t = o.str("tag")) n.tag = *t;
  if (auto b = o.boolean("check_deprecated")) n.check_deprecated = *b;
  if (auto t = o.secret("token", false)) n.token = *t;
  if (auto m = o.integer("max_tarball_bytes", 1024, 1024LL * 1024 * 1024)) n.max_tarball_bytes = static_cast<size_t>(*m);
}

const std::vector<std::string> kProbeKinds = {"http", "tcp", "npm_registry"};

// Names that end up in logs, metric labels, the ledger and the page: printable, one line, short.
void check_name(Ctx& c, const std::string& ptr, const std::string& name, const char* what) {
  const bool control = std::any_of(name.begin(), name.end(), [](char ch) { return static_cast<unsigned char>(ch) < 0x20 || ch == 0x7f; });
  if (name.empty() || name.size() > 128 || control)
    c.error(ptr, std::string(what) + ": expected 1 to 128 printable characters on one line (no NUL, CR, LF or other control characters)");
}

void parse_probe(Ctx& c, const json& j, const std::string& ptr, Probe& p) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto n = o.str("name", true)) {
    check_name(c, o.at("name"), *n, "probe name");
    p.name = *n;
  }
  auto kind = o.one_of("kind", kProbeKinds, true);
  if (auto d = o.duration("interval", false, Duration{100})) p.interval = *d;
  if (auto d = o.duration("timeout", false, Duration{10})) p.timeout = *d;
  if (auto r = o.boolean("reference")) p.reference = *r;
  if (p.timeout > p.interval) {
    c.error(o.at("timeout"), "expected a timeout no longer than the interval (" + format_duration(p.interval) + "), found " +
                                 format_duration(p.timeout));
  }
  if (!kind) return;
  p.kind = *kind;
  if (*kind == "http") {
    HttpProbe h;
    parse_http_probe(o, h);
    p.spec = h;
  } else if (*kind == "npm_registry") {
    NpmRegistryProbe n;
    parse_npm_probe(o, n);
    p.spec = n;
  } else {
    TcpProbe t;
    parse_tcp_probe(o, t);
    p.spec = t;
  }
}

// Release names and symlink paths: absolute path expected.
void require_abs_path(Obj& o, const std::string& key, bool required) {
  if (auto s = o.str(key, required)) {
    if (s->front() != '/') o.ctx().error(o.at(key), "expected an absolute path, found \"" + *s + "\"");
  }
}

void parse_template_request(Obj& r) {
  r.one_of("method", {"GET", "POST", "PUT", "PATCH", "DELETE"});
  if (auto u = r.str("url", true)) {
    if (!net::parse_url(*u)) r.ctx().error(r.at("url"), "expected an http:// or https:// URL, found \"" + *u + "\"");
  }
  r.string_map("headers");
  r.get("body");  // any JSON; strings inside are templated
}

const std::vector<std::string> kDeploymentKinds = {"local_symlink", "ssh_symlink", "firebase_hosting",
                                                   "npm_package",   "http_api",    "command"};

void parse_deployment(Ctx& c, const json& j, const std::string& ptr, Deployment& d) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  d.spec = j;
  auto kind = o.one_of("kind", kDeploymentKinds, true);
  if (auto i = o.duration("observe_interval", false, Duration{100})) d.observe_interval = *i;
  if (auto m = o.strings("migration_releases")) d.migration_releases = *m;
  if (!kind) return;
  d.kind = *kind;
  if (*kind == "local_symlink") {
    require_abs_path(o, "path", true);
  } else if (*kind == "ssh_symlink") {
    o.str("host", true);
    o.integer("port", 1, 65535);
    o.str("user", true);
    require_abs_path(o, "key_file", false);
    o.boolean("use_agent");
    require_abs_path(o, "known_hosts", true);
    require_abs_path(o, "path", true);
    o.strings("after_switch");
    o.duration("timeout", false, Duration{100});
    if (!o.has("key_file") && !o.has("use_agent")) c.error(o.at("key_file"), "required: key_file (or \"use_agent\": true)");
  } else if (*kind == "firebase_hosting") {
    if (auto s = o.str("site", true)) {
      static const RE2 re(R"([a-z0-9][a-z0-9-]{0,62})");
      if (!RE2::FullMatch(*s, re)) c.error(o.at("site"), "expected a Firebase site id (lowercase letters, digits, '-'), found \"" + *s + "\"");
    }
    auto cred = o.str("credentials_file");
    auto tok = o.secret("token", false);
    auto meta = o.boolean("metadata_server");
    if (tok) d.secrets["token"] = *tok;
    int n = (cred ? 1 : 0) + (tok ? 1 : 0) + (meta.value_or(false) ? 1 : 0);
    if (n != 1) c.error(ptr, "expected exactly one of credentials_file, token_env/token_file, \"metadata_server\": true");
    if (auto a = o.str("api_base")) {
      if (!net::parse_url(*a) || a->back() != '/') c.error(o.at("api_base"), "expected a URL ending in '/', found \"" + *a + "\"");
    }
    if (auto a = o.str("token_uri")) {
      if (!net::parse_url(*a)) c.error(o.at("token_uri"), "expected a URL, found \"" + *a + "\"");
    }
  } else if (*kind == "npm_package") {
    if (auto r = o.str("registry")) {
      if (!net::parse_url(*r)) c.error(o.at("registry"), "expected a registry URL like \"https://registry.npmjs.org/\", found \"" + *r + "\"");
    }
    if (auto p = o.str("package", true)) {
      if (!RE2::FullMatch(*p, npm_name_re())) c.error(o.at("package"), "expected an npm package name like \"name\" or \"@scope/name\", found \"" + *p + "\"");
    }
    if (auto t = o.secret("token", true)) d.secrets["token"] = *t;
    o.str("tag");
    o.duration("timeout", false, Duration{100});
    auto strategy = o.one_of("strategy", {"retag", "deprecate", "unpublish"});
    auto allow = o.boolean("allow_unpublish");
    if (strategy && *strategy == "unpublish" && !allow.value_or(false))
      c.error(o.at("allow_unpublish"), "strategy \"unpublish\" needs \"allow_unpublish\": true");
  } else if (*kind == "http_api") {
    o.duration("timeout", false, Duration{100});
    if (const json* r = o.get("rollback", true)) {
      Obj ro(c, *r, o.at("rollback"));
      parse_template_request(ro);
      if (auto t = ro.secret("token", false)) d.secrets["token"] = *t;
      if (const json* st = ro.get("expect_status")) parse_status(c, ro.at("expect_status"), *st);
    }
    if (const json* ob = o.get("observe")) {
      Obj oo(c, *ob, o.at("observe"));
      if (auto u = oo.str("url", true)) {
        if (!net::parse_url(*u)) c.error(oo.at("url"), "expected an http:// or https:// URL, found \"" + *u + "\"");
      }
      if (auto p = oo.str("json_pointer", true)) {
        try {
          json::json_pointer jp(*p);
        } catch (const json::exception&) {
          c.error(oo.at("json_pointer"), "expected a JSON pointer like \"/version\", found \"" + *p + "\"");
        }
      }
    }
  } else if (*kind == "command") {
    o.strings("rollback", true, true);
    o.strings("observe", false, true);
    o.duration("timeout", false, Duration{100});
    o.strings("env_allow");
  }
}

const std::vector<std::string> kRuleKinds = {"consecutive_failures", "x_of_y", "error_rate", "latency",
                                             "burn_rate",            "spread", "condition"};

void parse_rule(Ctx& c, const json& j, const std::string& ptr, Rule& r) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  auto kind = o.one_of("kind", kRuleKinds, true);
  if (!kind) return;
  r.kind = *kind;
  if (r.kind == "consecutive_failures") {
    if (auto n = o.integer("count", 1, 1000000, true)) r.count = static_cast<int>(*n);
  } else if (r.kind == "x_of_y") {
    auto f = o.integer("failures", 1, 100000, true);
    auto of = o.integer("of", 1, 100000, true);
    if (f) r.failures = static_cast<int>(*f);
    if (of) r.of = static_cast<int>(*of);
    if (f && of && *f > *of) c.error(o.at("failures"), "expected failures no greater than \"of\" (" + std::to_string(*of) + ")");
  } else if (r.kind == "error_rate") {
    if (auto w = o.duration("window", true, Duration{1000})) r.window = *w;
    if (auto m = o.number("max", 0.0, 1.0, true)) r.max = *m;
    if (auto n = o.integer("min_samples", 1, 10000000)) r.min_samples = static_cast<int>(*n);
    if (auto e = o.number("max_error_share", 0.0, 1.0)) r.max_error_share = *e;
  } else if (r.kind == "latency") {
    if (auto p = o.number("percentile", 0.0, 100.0, true, true)) r.percentile = *p;
    if (auto w = o.duration("window", true, Duration{1000})) r.window = *w;
    if (auto m = o.duration("max", true, Duration{1})) r.max_latency = *m;
    if (auto n = o.integer("min_samples", 1, 10000000)) r.min_samples = static_cast<int>(*n);
    if (auto e = o.number("max_error_share", 0.0, 1.0)) r.max_error_share = *e;
  } else if (r.kind == "burn_rate") {
    if (auto s = o.number("slo", 0.0, 1.0, true, true)) {
      if (*s >= 1.0) c.error(o.at("slo"), "expected an SLO below 1 (e.g. 0.999)");
      r.slo = *s;
    }
    if (const json* ws = o.get("windows", true)) {
      const std::string wp = o.at("windows");
      if (!ws->is_array() || ws->empty()) {
        c.error(wp, "expected a non-empty array of [long, short, factor] triples");
      } else {
        for (size_t i = 0; i < ws->size(); ++i) {
          const json& t = (*ws)[i];
          const std::string tp = wp + "/" + std::to_string(i);
          if (!t.is_array() || t.size() != 3) {
            c.error(tp, "expected [long window, short window, factor], e.g. [\"1h\", \"5m\", 14.4]");
            continue;
          }
          auto lw = Obj::parse_duration_value(c, tp + "/0", t[0], Duration{1000});
          auto sw = Obj::parse_duration_value(c, tp + "/1", t[1], Duration{1000});
          if (!t[2].is_number() || t[2].get<double>() <= 0) {
            c.error(tp + "/2", "expected a positive burn factor like 14.4");
            continue;
          }
          if (lw && sw && *sw >= *lw) c.error(tp + "/1", "expected the short window to be shorter than the long one");
          if (lw && sw) r.burn_windows.push_back({*lw, *sw, t[2].get<double>()});
        }
      }
    }
  } else if (r.kind == "spread") {
    if (auto s = o.number("min_share", 0.0, 1.0, true, true)) r.min_share = *s;
  } else if (r.kind == "condition") {
    if (auto s = o.one_of("condition", {"status", "body_contains", "body_matches", "header", "json", "max_latency", "cert_valid_for",
                                        "reply_prefix", "integrity", "deprecated", "tag"},
                          true))
      r.condition = *s;
  }
}

void parse_trigger(Ctx& c, const json& j, const std::string& ptr, Trigger& t, const std::set<std::string>& probe_names) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto n = o.str("name", true)) {
    check_name(c, o.at("name"), *n, "trigger name");
    t.name = *n;
  }
  if (auto s = o.one_of("severity", {"P0", "P1", "P2"}, true)) t.severity = *parse_severity(*s);
  if (auto p = o.str("probe")) {
    if (!probe_names.count(*p)) c.error(o.at("probe"), "expected the name of a probe of this service, found \"" + *p + "\"");
    t.probe = *p;
  }
  if (const json* r = o.get("rule", true)) parse_rule(c, *r, o.at("rule"), t.rule);
  if (auto d = o.duration("for")) t.for_ = *d;
  if (auto d = o.duration("recover_after")) t.recover_after = *d;
  if (auto b = o.boolean("shadow")) t.shadow = *b;
}

void parse_rollback(Ctx& c, const json& j, const std::string& ptr, Rollback& r) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto m = o.one_of("mode", {"alert", "approve", "auto"})) r.mode = *m;
  if (auto d = o.duration("rollback_window", false, Duration{1000})) r.rollback_window = *d;
  if (auto d = o.duration("cooldown")) r.cooldown = *d;
  if (auto n = o.integer("max_per_day", 0, 1000)) r.max_per_day = static_cast<int>(*n);
  if (auto d = o.duration("good_after")) r.good_after = *d;
  if (auto d = o.duration("approval_timeout", false, Duration{1000})) r.approval_timeout = *d;
  if (const json* v = o.get("verify")) {
    Obj vo(c, *v, o.at("verify"));
    if (auto d = vo.duration("within", false, Duration{100})) r.verify.within = *d;
    if (auto n = vo.integer("healthy_samples", 1, 10000)) r.verify.healthy_samples = static_cast<int>(*n);
  }
}

const std::set<std::string> kEvents = {"breach",   "proposed", "approved",  "rejected", "expired",
                                       "stale",    "executed", "verified", "escalated", "failed"};

void parse_listen(Ctx& c, Obj& o, Config& cfg) {
  if (auto l = o.str("listen")) {
    static const RE2 re(R"((\[[0-9a-fA-F:.]+\]|[0-9.]+|localhost):(\d{1,5}))");
    std::string host, port;
    bool ok = RE2::FullMatch(*l, re, &host, &port) && std::stoi(port) <= 65535;
    if (ok && host != "localhost") {  // a real address, not merely digits and dots
      unsigned char addr[16];
      ok = host.front() == '[' ? ::inet_pton(AF_INET6, host.substr(1, host.size() - 2).c_str(), addr) == 1
                               : ::inet_pton(AF_INET, host.c_str(), addr) == 1;
    }
    if (!ok)
      c.error(o.at("listen"), "expected \"ip:port\" (e.g. \"127.0.0.1:9464\"; port 0 picks a free one), found \"" + *l + "\"");
    cfg.listen = *l;
  }
}

void parse_root(Ctx& c, const json& j, Config& cfg) {
  Obj o(c, j, "");
  if (!o.ok()) return;
  parse_listen(c, o, cfg);
  if (const json* v = o.get("api")) {
    Obj ao(c, *v, o.at("api"));
    if (ao.ok()) {
      if (auto n = ao.integer("max_connections", 1, 100000)) cfg.api.max_connections = static_cast<int>(*n);
      if (auto d = ao.duration("idle_timeout", false, Duration{100})) cfg.api.idle_timeout = *d;
      if (auto h = ao.strings("allowed_hosts")) {
        for (size_t i = 0; i < h->size(); ++i) {
          std::string name = (*h)[i];
          for (auto& ch : name) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
          const bool ok = !name.empty() && name.size() <= 253 && name.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789.-") == std::string::npos;
          if (!ok) c.error(ao.at("allowed_hosts") + "/" + std::to_string(i), "expected a host name (letters, digits, '.', '-'), found \"" + (*h)[i] + "\"");
          cfg.api.allowed_hosts.push_back(name);
        }
      }
      if (auto t = ao.strings("trusted_proxies")) {
        for (size_t i = 0; i < t->size(); ++i) {
          unsigned char addr[16];
          const bool ip = ::inet_pton(AF_INET, (*t)[i].c_str(), addr) == 1 || ::inet_pton(AF_INET6, (*t)[i].c_str(), addr) == 1;
          if (!ip) c.error(ao.at("trusted_proxies") + "/" + std::to_string(i), "expected an IP address, found \"" + (*t)[i] + "\"");
          cfg.api.trusted_proxies.push_back((*t)[i]);
        }
      }
    }
  }
  if (auto s = o.str("state_dir")) cfg.state_dir = *s;
  if (const json* v = o.get("ledger")) {
    Obj lo(c, *v, o.at("ledger"));
    if (lo.ok()) {
      if (auto k = lo.secret("hmac_key", false)) {
        if (k->resolved() && k->value().size() < LedgerOptions::kMinKeyBytes)
          c.error(lo.at(k->source() == Secret::Source::env ? "hmac_key_env" : "hmac_key_file"),
                  "expected a key of at least " + std::to_string(LedgerOptions::kMinKeyBytes) + " bytes (e.g. `head -c 32 /dev/urandom | base64`), found " +
                      std::to_string(k->value().size()));
        cfg.ledger.hmac_key = *k;
      }
    }
  }

  std::set<std::string> approver_names;
  each(o, "approvers", false, [&](const json& e, const std::string& p, size_t) {
    Obj a(c, e, p);
    if (!a.ok()) return;
    Approver ap;
    if (auto n = a.str("name", true)) {
      check_name(c, a.at("name"), *n, "approver name");
      if (!approver_names.insert(*n).second) c.error(a.at("name"), "duplicate approver name \"" + *n + "\"");
      ap.name = *n;
    }
    if (auto r = a.strings("roles", true, true)) {
      for (size_t i = 0; i < r->size(); ++i) check_name(c, a.at("roles") + "/" + std::to_string(i), (*r)[i], "role");
      ap.roles = *r;
    }
    if (auto t = a.secret("token", true)) {
      // Two approvers with one token: whoever holds it would be recorded as the first of them.
      for (size_t i = 0; i < cfg.approvers.size(); ++i) {
        const auto& other = cfg.approvers[i].token;
        const bool same_source = other.describe() == t->describe();
        const bool same_value = t->resolved() && other.resolved() && !t->value().empty() && t->value() == other.value();
        if (same_source || same_value)
          c.error(a.at(t->source() == Secret::Source::env ? "token_env" : "token_file"),
                  "approvers " + cfg.approvers[i].name + " and " + ap.name + " share one token (" + t->describe() +
                      (same_source ? "" : ": the same value") + "): each approver needs a token of their own");
      }
      ap.token = *t;
    }
    cfg.approvers.push_back(std::move(ap));
  });

  if (const json* au = o.get("authority")) {
    Obj ao(c, *au, o.at("authority"));
    for (const char* sev : {"P0", "P1", "P2"}) {
      const json* e = ao.get(sev);
      if (!e) continue;
      Obj eo(c, *e, ao.at(sev));
      if (!eo.ok()) continue;
      Authority a;
      if (auto r = eo.strings("roles", true, true)) a.roles = *r;
      if (auto q = eo.integer("quorum", 1, 100)) a.quorum = static_cast<int>(*q);
      if (auto b = eo.boolean("auto")) a.auto_ = *b;
      cfg.authority[*parse_severity(sev)] = a;
    }
  }

  each(o, "notify", false, [&](const json& e, const std::string& p, size_t) {
    Obj n(c, e, p);
    if (!n.ok()) return;
    Notify nt;
    if (auto k = n.one_of("kind", {"webhook", "slack"}, true)) nt.kind = *k;
    if (auto u = n.secret("url", true, true)) {
      nt.url = *u;
      if (u->source() == Secret::Source::inline_value && !net::parse_url(u->value()))
        c.error(n.at("url"), "expected an http:// or https:// URL, found \"" + u->value() + "\"");
    }
    if (auto ev = n.strings("events")) {
      for (size_t i = 0; i < ev->size(); ++i) {
        if (!kEvents.count((*ev)[i]))
          c.error(n.at("events") + "/" + std::to_string(i),
                  "expected one of breach, proposed, approved, rejected, expired, executed, verified, escalated, failed, found \"" +
                      (*ev)[i] + "\"");
      }
      nt.events = *ev;
    }
    cfg.notify.push_back(std::move(nt));
  });

  if (const json* am = o.get("alertmanager")) {
    Obj ao(c, *am, o.at("alertmanager"));
    if (ao.ok()) {
      Alertmanager a;
      if (auto t = ao.secret("token", true)) a.token = *t;
      if (auto s = ao.str("service_label")) a.service_label = *s;
      if (auto s = ao.str("severity_label")) a.severity_label = *s;
      if (auto m = ao.string_map("severity_map")) {
        a.severity_map.clear();
        for (auto& [k, v] : *m) {
          if (auto sev = parse_severity(v)) a.severity_map[k] = *sev;
          else c.error(ao.at("severity_map") + "/" + escape_token(k), "expected P0, P1 or P2, found \"" + v + "\"");
        }
      }
      cfg.alertmanager = a;
    }
  }

  std::set<std::string> service_names;
  each(o, "services", true, [&](const json& e, const std::string& p, size_t) {
    Obj s(c, e, p);
    if (!s.ok()) return;
    Service svc;
    if (auto n = s.str("name", true)) {
      static const RE2 re(R"([A-Za-z0-9][A-Za-z0-9._-]{0,62})");
      if (!RE2::FullMatch(*n, re)) c.error(s.at("name"), "expected a name of letters, digits, '.', '_' or '-' (up to 63), found \"" + *n + "\"");
      else if (!service_names.insert(*n).second) c.error(s.at("name"), "duplicate service name \"" + *n + "\"");
      svc.name = *n;
    }
    std::set<std::string> probe_names;
    each(s, "probes", true, [&](const json& pe, const std::string& pp, size_t) {
      Probe pr;
      parse_probe(c, pe, pp, pr);
      if (!pr.name.empty() && !probe_names.insert(pr.name).second)
        c.error(pp + "/name", "duplicate probe name \"" + pr.name + "\" in this service");
      svc.probes.push_back(std::move(pr));
    });
    if (const json* v = s.get("probes"); v && v->is_array() && v->empty()) c.error(s.at("probes"), "expected at least one probe");
    if (const json* d = s.get("deployment")) {
      Deployment dep;
      parse_deployment(c, *d, s.at("deployment"), dep);
      svc.deployment = std::move(dep);
    }
    std::set<std::string> trigger_names;
    each(s, "triggers", false, [&](const json& te, const std::string& tp, size_t) {
      Trigger t;
      parse_trigger(c, te, tp, t, probe_names);
      if (!t.name.empty() && !trigger_names.insert(t.name).second) c.error(tp + "/name", "duplicate trigger name \"" + t.name + "\"");
      svc.triggers.push_back(std::move(t));
    });
    if (auto sh = s.boolean("shadow")) svc.shadow = *sh;
    if (const json* r = s.get("rollback")) {
      parse_rollback(c, *r, s.at("rollback"), svc.rollback);
      if (!svc.deployment && svc.rollback.mode != "alert")
        c.error(s.at("rollback") + "/mode", "rollback mode \"" + svc.rollback.mode + "\" needs a \"deployment\" block (or use \"alert\")");
    }
    cfg.services.push_back(std::move(svc));
  });
  if (const json* v = o.get("services"); v && v->is_array() && v->empty()) c.error(o.at("services"), "expected at least one service");

  // Cross-check: a quorum must be reachable by the approvers who hold an allowed role.
  for (const auto& [sev, a] : cfg.authority) {
    int eligible = 0;
    for (const auto& ap : cfg.approvers) {
      for (const auto& r : ap.roles)
        if (std::find(a.roles.begin(), a.roles.end(), r) != a.roles.end()) {
          ++eligible;
          break;
        }
    }
    if (!cfg.approvers.empty() && eligible < a.quorum)
      c.error(std::string("/authority/") + to_string(sev) + "/quorum",
              "quorum " + std::to_string(a.quorum) + " cannot be met: only " + std::to_string(eligible) + " approver(s) hold an allowed role");
  }
}

}  // namespace

namespace {

// A pass over the text before the document is built (nlohmann's SAX interface): keys given twice
// in one object (nlohmann would keep the last in silence: "mode":"approve","mode":"auto" gives
// auto), and nesting deeper than any config needs. Each found with its JSON pointer.
class Screen final : public nlohmann::json_sax<json> {
 public:
  static constexpr size_t kMaxDepth = 64;
  std::vector<std::pair<std::string, std::string>> problems;  // pointer, message

  bool null() override { return note("null") && value(); }
  bool boolean(bool b) override { return note(b ? "true" : "false") && value(); }
  bool number_integer(number_integer_t n) override { return note(std::to_string(n)) && value(); }
  bool number_unsigned(number_unsigned_t n) override { return note(std::to_string(n)) && value(); }
  bool number_float(number_float_t, const string_t& raw) override { return note(raw) && value(); }
  bool string(string_t& v) override { return note(json(v.substr(0, 40) + (v.size() > 40 ? "..." : "")).dump(-1, ' ', false, json::error_handler_t::replace)) && value(); }  // 40 bytes may cut a character
  bool binary(binary_t&) override { return note("binary") && value(); }
  bool start_object(std::size_t) override { return note("{...}") && open(true); }
  bool end_object() override { return close(); }
  bool start_array(std::size_t) override { return note("[...]") && open(false); }
  bool end_array() override { return close(); }
  bool key(string_t& k) override {
    auto& f = stack_.back();
    f.key = k;
    auto [it, fresh] = f.first.try_emplace(k, "");
    f.duplicate = fresh ? nullptr : &it->second;
    return true;
  }
  bool parse_error(std::size_t, const std::string&, const nlohmann::detail::exception&) override { return false; }

 private:
  struct Frame {
    bool object;
    std::map<std::string, std::string> first;  // key -> how its first value reads (short)
    std::string key;
    const std::string* duplicate = nullptr;    // the key just read was given before, with this value
    size_t index = 0;
  };
  std::vector<Frame> stack_;
  // The value of the key just read: a key given twice is reported with both of its values.
  bool note(std::string shown) {
    if (stack_.empty() || !stack_.back().object) return true;
    auto& f = stack_.back();
    if (f.duplicate == nullptr) {
      f.first[f.key] = std::move(shown);
      return true;
    }
    if (problems.size() < 20)
      problems.emplace_back(pointer(), "the key \"" + f.key.substr(0, 64) + "\" is given twice in this object, first as " + *f.duplicate +
                                           ", then as " + shown + " (JSON keeps only the last, silently): give it once");
    f.duplicate = nullptr;
    return true;
  }
  bool value() {
    if (!stack_.empty() && !stack_.back().object) ++stack_.back().index;
    return true;
  }
  bool open(bool object) {
    if (stack_.size() >= kMaxDepth) {
      problems.emplace_back(pointer(), "nested deeper than " + std::to_string(kMaxDepth) + " levels: not a lastgood config");
      return false;  // stop here: nothing deeper is read
    }
    stack_.push_back({object, {}, {}, nullptr, 0});
    return true;
  }
  bool close() {
    stack_.pop_back();
    return value();
  }
  std::string pointer() const {
    std::string p;
    for (const auto& f : stack_) {
      p += "/" + (f.object ? escape_token(f.key) : std::to_string(f.index));
    }
    return p;
  }
};

}  // namespace

LoadResult load_text(const std::string& text, const std::string& source_name, LoadOptions opts) {
  Ctx c{source_name, opts, {}};
  Screen screen;
  try {
    json::sax_parse(text, &screen, nlohmann::detail::input_format_t::json, true, /*ignore_comments=*/false);
  } catch (const json::exception&) {
    // Reported below by the parse itself, with its byte offset.
  }
  if (!screen.problems.empty()) {
    for (const auto& [ptr, msg] : screen.problems) c.error(ptr, msg);
    return {nullptr, std::move(c.problems)};
  }
  json j;
  try {
    j = json::parse(text, nullptr, true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // A syntax error, or a number out of range ("1e999"). e.what() holds the byte offset and
    // the reason, never config values beyond a token.
    std::string what = e.what();
    auto pos = what.find("parse error");
    if (pos == std::string::npos) pos = what.find("number overflow");
    c.error("", "not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos)));
    return {nullptr, std::move(c.problems)};
  }
  auto cfg = std::make_shared<Config>();
  cfg->source = source_name;
  parse_root(c, j, *cfg);
  if (!c.problems.empty()) return {nullptr, std::move(c.problems)};
  return {std::move(cfg), {}};
}

LoadResult load_file(const std::string& path, LoadOptions opts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {nullptr, {{path, "", "cannot open the file"}}};
  std::stringstream ss;
  ss << in.rdbuf();
  return load_text(ss.str(), path, opts);
}

}  // namespace lastgood::config
