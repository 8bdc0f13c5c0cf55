// Loads and validates a lastgood config file into typed structs.
// Every problem names the file, the JSON pointer and what was expected; loading never throws.
#include "config/config.hpp"

#include <unistd.h>

#include <cstdlib>
#include "config/reader.hpp"
#include "config/yaml.hpp"

#include "net/time.hpp"
#include "net/url.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>
#include <fstream>

#include <re2/re2.h>
#include <set>
#include <sstream>

namespace lastgood::config {

std::string default_state_dir(unsigned euid, const char* xdg_state_home, const char* home) {
  // root (a system service): /var/lib/lastgood. Anyone else: the XDG state folder, which they can
  // write, rather than a path that fails at start.
  if (euid == 0) return "/var/lib/lastgood";
  if (xdg_state_home && *xdg_state_home == '/') return std::string(xdg_state_home) + "/lastgood";
  if (home && *home == '/') return std::string(home) + "/.local/state/lastgood";
  return "/var/lib/lastgood";
}

std::string default_state_dir() { return default_state_dir(::geteuid(), std::getenv("XDG_STATE_HOME"), std::getenv("HOME")); }


using nlohmann::json;

std::string Problem::to_string() const {
  return file + ": " + (pointer.empty() ? std::string("/") : pointer) + ": " + message;
}


namespace {

using namespace detail;

// The events a notify target may choose.
const std::set<std::string> kEvents = {"breach", "proposed", "approved", "rejected", "expired", "stale",
                                       "executed", "verified", "escalated", "failed", "reminder", "cleared"};

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

// The elements of the root's "services" array, parsed one at a time while the JSON is read
// (load_text): the document then never holds every service at once. 50 000 services are a 12 MB
// file whose whole tree added about 90 MB to the parse's peak (`validate`: 202 -> 110 MB).
struct StreamedServices {
  std::vector<Problem> problems;  // theirs, in order (parse_root puts them where "services" is read)
  std::set<std::string> names;
  size_t count = 0;
};

// One element of "services" (at pointer p), appended to cfg.services.
void parse_service(Ctx& c, const json& e, const std::string& p, Config& cfg, std::set<std::string>& service_names) {
  Obj s(c, e, p);
  if (!s.ok()) return;
  Service svc;
  const std::string text = e.dump();
  svc.fingerprint = std::hash<std::string>{}(text);
  svc.has_secrets = text.find("_env\"") != std::string::npos || text.find("_file\"") != std::string::npos;
  svc.evidence_fingerprint = std::hash<std::string>{}(json{e.value("probes", json()), e.value("triggers", json()), e.value("shadow", json())}.dump());
  if (auto n = s.str("name", true)) {
    static const RE2 re(R"([A-Za-z0-9][A-Za-z0-9._-]{0,62})");
    if (!RE2::FullMatch(*n, re)) c.error(s.at("name"), "expected a name of letters, digits, '.', '_' or '-' (up to 63), found \"" + *n + "\"");
    else if (!service_names.insert(*n).second) c.error(s.at("name"), "duplicate service name \"" + *n + "\"");
    svc.name = *n;
  }
  if (auto pn = s.str("public_name")) {
    if (pn->size() > 100 || pn->find_first_of("\r\n<>") != std::string::npos)
      c.error(s.at("public_name"), "expected a short plain name for customers (up to 100 characters, no line breaks or < >)");
    else
      svc.public_name = *pn;
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
}

void parse_root(Ctx& c, const json& j, Config& cfg, StreamedServices* streamed = nullptr) {
  Obj o(c, j, "");
  if (!o.ok()) return;
  parse_listen(c, o, cfg);
  if (auto u = o.url("external_url", false, "an http:// or https:// URL (e.g. \"https://lastgood.example.com/\")")) {
    cfg.external_url = *u;
    while (!cfg.external_url.empty() && cfg.external_url.back() == '/') cfg.external_url.pop_back();
  }
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
  else cfg.state_dir = default_state_dir();
  if (const json* v = o.get("ha")) {
    Ha ha;
    parse_ha(c, *v, o.at("ha"), ha);
    cfg.ha = std::move(ha);
  }
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
      // 0: one file forever; else at least 10 (tests; a real ledger wants a segment of many
      // entries per snapshot).
      if (auto n = lo.integer("segment_entries", 0, 1'000'000'000)) {
        if (*n != 0 && *n < 10) c.error(lo.at("segment_entries"), "expected 0 (never rotate) or at least 10, found " + std::to_string(*n));
        cfg.ledger.segment_entries = static_cast<std::uint64_t>(*n);
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
      if (auto r = eo.duration("remind_every", false, Duration{1000})) a.remind_every = *r;
      if (const json* se = eo.get("secondary")) {
        Obj so(c, *se, eo.at("secondary"));
        if (so.ok()) {
          if (auto r = so.strings("roles", true, true)) a.secondary_roles = *r;
          if (auto d = so.duration("after", true)) a.secondary_after = *d;
        }
      }
      cfg.authority[*parse_severity(sev)] = a;
    }
  }

  each(o, "notify", false, [&](const json& e, const std::string& p, size_t) {
    Obj n(c, e, p);
    if (!n.ok()) return;
    Notify nt;
    if (auto k = n.one_of("kind", {"webhook", "slack", "pagerduty"}, true)) nt.kind = *k;
    // PagerDuty's Events API v2 has one address; a stand-in (or an EU endpoint) may be given.
    const bool pagerduty = nt.kind == "pagerduty";
    if (pagerduty && !n.has("url") && !n.has("url_env") && !n.has("url_file")) nt.url = Secret::from_inline("https://events.pagerduty.com/v2/enqueue");
    else if (auto u = n.secret("url", true, true)) {
      nt.url = *u;
      if (u->source() == Secret::Source::inline_value && !net::parse_url(u->value()))
        c.error(n.at("url"), "expected an http:// or https:// URL, found \"" + u->value() + "\"");
    }
    if (pagerduty) nt.routing_key = n.secret("routing_key", true);
    if (auto sv = n.strings("severities")) {
      for (size_t i = 0; i < sv->size(); ++i) {
        if (auto sev = parse_severity((*sv)[i])) nt.severities.push_back(*sev);
        else c.error(n.at("severities") + "/" + std::to_string(i), "expected P0, P1 or P2, found \"" + (*sv)[i] + "\"");
      }
    }
    if (auto sv = n.strings("services")) nt.services = *sv;
    if (auto ev = n.strings("events")) {
      for (size_t i = 0; i < ev->size(); ++i) {
        if (!kEvents.count((*ev)[i]))
          c.error(n.at("events") + "/" + std::to_string(i),
                  "expected one of breach, proposed, approved, rejected, expired, stale, executed, verified, escalated, failed, reminder, cleared, found \"" +
                      (*ev)[i] + "\"");
      }
      nt.events = *ev;
    }
    if (auto a = n.one_of("audience", {"team", "customers"})) nt.audience = *a;
    if (nt.audience == "customers") {
      if (pagerduty) c.error(n.at("audience"), "customers are told through a webhook or Slack, not PagerDuty (it pages people)");
      for (size_t i = 0; i < nt.events.size(); ++i)
        if (nt.events[i] != "executed" && nt.events[i] != "verified")
          c.error(n.at("events") + "/" + std::to_string(i), "customers are told only when a previous version was restored (\"executed\") and when it works again (\"verified\"), found \"" + nt.events[i] + "\"");
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
  {
    json fixed = json::object();
    for (const char* k : {"listen", "state_dir", "ledger", "ha", "api"})
      if (j.is_object() && j.contains(k)) fixed[k] = j[k];
    cfg.restart_only = fixed.dump();
  }
  if (const json* sv = o.get("services"); streamed && sv && sv->is_array()) {
    // Each element was parsed as the JSON was read (load_text): its problems go here, in order.
    service_names = std::move(streamed->names);
    c.problems.insert(c.problems.end(), std::make_move_iterator(streamed->problems.begin()), std::make_move_iterator(streamed->problems.end()));
    if (streamed->count == 0) c.error(o.at("services"), "expected at least one service");
  } else {
    each(o, "services", true, [&](const json& e, const std::string& p, size_t) { parse_service(c, e, p, cfg, service_names); });
    if (const json* v = o.get("services"); v && v->is_array() && v->empty()) c.error(o.at("services"), "expected at least one service");
  }

  each(o, "maintenance", false, [&](const json& e, const std::string& p, size_t) {
    Obj m(c, e, p);
    if (!m.ok()) return;
    Maintenance w;
    if (auto sv = m.strings("services", true, true)) {
      for (size_t i = 0; i < sv->size(); ++i)
        if (!service_names.count((*sv)[i])) c.error(m.at("services") + "/" + std::to_string(i), "no service named \"" + (*sv)[i] + "\" in services");
      w.services = *sv;
    }
    auto time_at = [&](const char* key) -> std::optional<std::chrono::system_clock::time_point> {
      auto t = m.str(key, true);
      if (!t) return std::nullopt;
      auto tp = net::parse_rfc3339(*t);
      if (!tp) c.error(m.at(key), "expected an RFC 3339 time like \"2026-12-24T00:00:00Z\", found \"" + *t + "\"");
      return tp;
    };
    auto start = time_at("start"), end = time_at("end");
    if (start && end && *end <= *start) c.error(m.at("end"), "expected a time after start");
    if (start) w.start = *start;
    if (end) w.end = *end;
    if (auto cm = m.str("comment", false, true)) w.comment = *cm;
    cfg.maintenance.push_back(std::move(w));
  });
  if (const json* v = o.get("status_page")) {
    Obj sp(c, *v, o.at("status_page"));
    if (sp.ok()) {
      StatusPage page;
      if (auto t = sp.str("title")) {
        if (t->size() > 100 || t->find_first_of("\r\n") != std::string::npos)
          c.error(sp.at("title"), "expected a short title for the page (up to 100 characters, one line)");
        page.title = *t;
      }
      if (auto sv = sp.strings("services", true, true)) {
        std::set<std::string> seen;
        for (size_t i = 0; i < sv->size(); ++i) {
          const std::string at = sp.at("services") + "/" + std::to_string(i);
          const auto it = std::find_if(cfg.services.begin(), cfg.services.end(), [&](const Service& x) { return x.name == (*sv)[i]; });
          if (it == cfg.services.end()) c.error(at, "no service named \"" + (*sv)[i] + "\" in services");
          else if (it->public_name.empty())
            c.error(at, "service \"" + (*sv)[i] + "\" has no public_name: the status page shows a service only by the name customers know it by (set its public_name)");
          else if (!seen.insert((*sv)[i]).second) c.error(at, "service \"" + (*sv)[i] + "\" is listed twice");
        }
        page.services = *sv;
      }
      if (auto h = sp.duration("history", false, Duration{3600LL * 1000})) {
        if (*h > Duration{90LL * 24 * 3600 * 1000}) c.error(sp.at("history"), "expected at most 90 days (incidents further back are not kept)");
        page.history = *h;
      }
      cfg.status_page = std::move(page);
    }
  }
  for (size_t i = 0; i < cfg.notify.size(); ++i)
    for (size_t k = 0; k < cfg.notify[i].services.size(); ++k)
      if (!service_names.count(cfg.notify[i].services[k]))
        c.error("/notify/" + std::to_string(i) + "/services/" + std::to_string(k), "no service named \"" + cfg.notify[i].services[k] + "\" in services");

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

namespace {

// A YAML config: read into the JSON tree every check shares, then each problem names its line
// ("lastgood.yaml:12: /services/0/probes/0/timout: unknown key ...").
LoadResult load_yaml(const std::string& text, const std::string& source_name, const Kinds& kinds, LoadOptions opts) {
  Ctx c{source_name, opts, {}, &kinds};
  auto y = yaml_to_json(text);
  if (y.ok) {
    auto cfg = std::make_shared<Config>();
    cfg->source = source_name;
    parse_root(c, y.doc, *cfg);
    if (c.problems.empty()) return {std::move(cfg), {}};
  } else {
    for (auto& [ptr, msg] : y.problems) c.error(ptr, msg);
  }
  for (auto& p : c.problems)
    if (int line = y.line_of(p.pointer); line > 0) p.file += ":" + std::to_string(line);
  return {nullptr, std::move(c.problems)};
}

}  // namespace

LoadResult load_text(const std::string& text, const std::string& source_name, const Kinds& kinds, LoadOptions opts) {
  if (is_yaml_name(source_name)) return load_yaml(text, source_name, kinds, opts);
  Ctx c{source_name, opts, {}, &kinds};
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
  auto cfg = std::make_shared<Config>();
  cfg->source = source_name;
  // Every element of the root's "services" array is parsed as soon as the parser has read it, and
  // left out of the document (the callback returns false); the rest of the document is read into
  // the tree as before.
  StreamedServices streamed;
  Ctx sc{source_name, opts, {}, &kinds};
  std::string root_key;
  bool in_services = false;
  const json::parser_callback_t each_service = [&](int depth, json::parse_event_t ev, json& parsed) -> bool {
    using E = json::parse_event_t;
    if (depth == 1 && ev == E::key) {
      root_key = parsed.get<std::string>();
      return true;
    }
    if (depth == 1 && ev == E::array_start) in_services = root_key == "services";
    else if (depth == 1 && ev == E::array_end) in_services = false;
    else if (in_services && depth == 2 && (ev == E::object_end || ev == E::array_end || ev == E::value)) {
      parse_service(sc, parsed, "/services/" + std::to_string(streamed.count++), *cfg, streamed.names);
      return false;
    }
    return true;
  };
  json j;
  try {
    j = json::parse(text, each_service, true, /*ignore_comments=*/false);
  } catch (const json::exception& e) {
    // A syntax error, or a number out of range ("1e999"). e.what() holds the byte offset and
    // the reason, never config values beyond a token.
    std::string what = e.what();
    auto pos = what.find("parse error");
    if (pos == std::string::npos) pos = what.find("number overflow");
    c.error("", "not valid JSON: " + (pos == std::string::npos ? what : what.substr(pos)));
    return {nullptr, std::move(c.problems)};
  }
  // Only a root object's "services" was streamed (the callback sees keys at depth 1 only there).
  streamed.problems = std::move(sc.problems);
  cfg->services.shrink_to_fit();
  parse_root(c, j, *cfg, j.is_object() ? &streamed : nullptr);
  if (!c.problems.empty()) return {nullptr, std::move(c.problems)};
  return {std::move(cfg), {}};
}

LoadResult load_file(const std::string& path, const Kinds& kinds, LoadOptions opts) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {nullptr, {{path, "", "cannot open the file"}}};
  // A config is kilobytes (10 000 services are a few MiB); a larger file is a mistake, and
  // reading it whole would cost that much memory.
  constexpr std::uintmax_t kMaxConfigBytes = 64u * 1024 * 1024;
  std::string text;
  char buf[1 << 16];
  while (in.read(buf, sizeof buf) || in.gcount() > 0) {
    text.append(buf, static_cast<size_t>(in.gcount()));
    if (text.size() > kMaxConfigBytes) return {nullptr, {{path, "", "the file is larger than 64 MiB: a config is at most that (is this the right file?)"}}};
  }
  return load_text(text, path, kinds, opts);
}

}  // namespace lastgood::config
