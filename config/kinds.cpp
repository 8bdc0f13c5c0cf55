// The kinds of probe and deployment config/ knows, as tables: a kind's keys are checked by one
// function, chosen from the table by name (no fallback: an unknown kind is an error naming the
// known ones).
#include "config/reader.hpp"

#include <re2/re2.h>

#include "net/url.hpp"

namespace lastgood::config {

namespace detail {
namespace {

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


// The probe kinds: name -> the parser of its keys into its typed spec. probes/ has a factory
// for each name (make_probe); a unit test checks that the two tables name the same kinds.
struct ProbeKind {
  const char* name;
  void (*parse)(Obj& o, Probe& p);
};
template <typename T, void (*F)(Obj&, T&)>
void typed(Obj& o, Probe& p) {
  T spec;
  F(o, spec);
  p.spec = std::move(spec);
}
const ProbeKind kProbeKinds[] = {
    {"http", typed<HttpProbe, parse_http_probe>},
    {"tcp", typed<TcpProbe, parse_tcp_probe>},
    {"npm_registry", typed<NpmRegistryProbe, parse_npm_probe>},
};

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

void parse_local_symlink([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
  require_abs_path(o, "path", true);
}

void parse_ssh_symlink([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
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
}

void parse_firebase_hosting([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
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
}

void parse_npm_package([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
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
}

void parse_http_api([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
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
}

void parse_command([[maybe_unused]] Ctx& c, Obj& o, [[maybe_unused]] const std::string& ptr, [[maybe_unused]] Deployment& d) {
  o.strings("rollback", true, true);
  o.strings("observe", false, true);
  o.duration("timeout", false, Duration{100});
  o.strings("env_allow");
}

// The deployment kinds: name -> the check of its keys. actions/ has a factory for each name
// (make_action); a unit test checks that the two tables name the same kinds.
struct DeploymentKind {
  const char* name;
  void (*parse)(Ctx& c, Obj& o, const std::string& ptr, Deployment& d);
};
const DeploymentKind kDeploymentKinds[] = {
    {"local_symlink", parse_local_symlink}, {"ssh_symlink", parse_ssh_symlink}, {"firebase_hosting", parse_firebase_hosting},
    {"npm_package", parse_npm_package},     {"http_api", parse_http_api},       {"command", parse_command},
};

}  // namespace

void parse_probe(Ctx& c, const json& j, const std::string& ptr, Probe& p) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  if (auto n = o.str("name", true)) {
    check_name(c, o.at("name"), *n, "probe name");
    p.name = *n;
  }
  auto kind = o.one_of("kind", probe_kinds(), true);
  if (auto d = o.duration("interval", false, Duration{100})) p.interval = *d;
  if (auto d = o.duration("timeout", false, Duration{10})) p.timeout = *d;
  if (auto r = o.boolean("reference")) p.reference = *r;
  if (p.timeout > p.interval) {
    c.error(o.at("timeout"), "expected a timeout no longer than the interval (" + format_duration(p.interval) + "), found " +
                                 format_duration(p.timeout));
  }
  if (!kind) return;
  p.kind = *kind;
  for (const auto& k : kProbeKinds)
    if (*kind == k.name) k.parse(o, p);
}

void parse_deployment(Ctx& c, const json& j, const std::string& ptr, Deployment& d) {
  Obj o(c, j, ptr);
  if (!o.ok()) return;
  d.spec = j;
  auto kind = o.one_of("kind", deployment_kinds(), true);
  if (auto i = o.duration("observe_interval", false, Duration{100})) d.observe_interval = *i;
  if (auto m = o.strings("migration_releases")) d.migration_releases = *m;
  if (!kind) return;
  d.kind = *kind;
  for (const auto& k : kDeploymentKinds)
    if (*kind == k.name) k.parse(c, o, ptr, d);
}

}  // namespace detail

namespace {
template <typename Table>
std::vector<std::string> names_of(const Table& table) {
  std::vector<std::string> v;
  for (const auto& k : table) v.push_back(k.name);
  return v;
}
}  // namespace

const std::vector<std::string>& probe_kinds() {
  static const std::vector<std::string> names = names_of(detail::kProbeKinds);
  return names;
}

const std::vector<std::string>& deployment_kinds() {
  static const std::vector<std::string> names = names_of(detail::kDeploymentKinds);
  return names;
}

}  // namespace lastgood::config
