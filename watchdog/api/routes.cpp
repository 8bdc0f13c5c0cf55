// The HTTP surface (design.md, HTTP API): the page, /metrics and health, and the API, with
// host checks against DNS rebinding, tokens and their failure limits. Answers come from the
// pipeline's state (views.hpp); every state-changing request needs a token.
#include <arpa/inet.h>
#include <unistd.h>

#include <algorithm>
#include <map>
#include <set>

#include <openssl/crypto.h>
#include <openssl/evp.h>

#include "config/duration.hpp"
#include "config/reader.hpp"
#include "watchdog/api/page.hpp"
#include "watchdog/api/status_page.hpp"
#include "watchdog/api/views.hpp"
#include "watchdog/json_text.hpp"
#include "watchdog/state/records.hpp"
#include "watchdog/watchdog.hpp"

namespace lastgood::watchdog {

nlohmann::json Watchdog::services_json() const {
  nlohmann::json out = nlohmann::json::array();
  const auto now = std::chrono::system_clock::now();
  for (size_t si = 0; si < pipeline_.services(); ++si) {
    if (pipeline_.retired(si)) continue;
    const auto& svc = *pipeline_.service(si).cfg;
    nlohmann::json s = service_view(pipeline_, si, now);
    s["name"] = svc.name;
    s["deployment"] = svc.deployment ? nlohmann::json(svc.deployment->kind) : nlohmann::json();
    nlohmann::json ps = nlohmann::json::array();
    if (si < probes_of_.size())
      for (size_t pi : probes_of_[si]) {
        const auto& st = probes_[pi];
        nlohmann::json p{{"name", st.spec->name}, {"kind", st.spec->kind}, {"runs", st.runs}};
        p["last"] = st.last ? st.last->to_json() : nlohmann::json();
        ps.push_back(p);
      }
    s["probes"] = ps;
    s["rollback_mode"] = svc.rollback.mode;
    out.push_back(s);
  }
  return out;
}

nlohmann::json Watchdog::public_status(long long now_ms) const {
  namespace sp = status_page;
  const auto& page = *cfg_->status_page;
  sp::Facts f;
  f.title = page.title;
  f.now_ms = now_ms;
  f.history_ms = page.history.count();
  const auto now = std::chrono::system_clock::time_point(std::chrono::milliseconds(now_ms));
  const auto to_ms = [](std::chrono::system_clock::time_point t) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  };
  std::map<std::string, std::string> public_names;  // listed service -> its public name
  std::map<std::string, bool> affected;             // listed service -> degraded or down now
  for (const auto& name : page.services) {
    const auto si = pipeline_.service_index(name);
    if (!si || pipeline_.retired(*si)) continue;
    const auto& svc = *pipeline_.service(*si).cfg;
    const auto& policy = *pipeline_.service(*si).policy;
    sp::ServiceFacts s;
    s.public_name = svc.public_name;
    public_names[name] = svc.public_name;
    if (*si < probes_of_.size())
      for (size_t pi : probes_of_[*si]) {
        const auto& st = probes_[pi];
        // A run that could not judge (lastgood's own trouble) is no news of the service.
        if (!st.spec->reference && st.last && st.last->outcome != probes::Outcome::error) s.judged = true;
      }
    s.watcher_healthy = !policy.watcher_unhealthy();
    for (const auto& v : policy.triggers(now)) {
      if (v.shadow || v.state != policy::TriggerState::firing) continue;
      const std::string sev = policy::to_string(v.severity);
      if (s.firing_severity.empty() || sev < s.firing_severity) s.firing_severity = sev;
    }
    for (const auto& m : cfg_->maintenance)
      if (m.start <= now && now < m.end && std::find(m.services.begin(), m.services.end(), name) != m.services.end())
        s.maintenance_until_ms = std::max<long long>(s.maintenance_until_ms.value_or(0), to_ms(m.end));
    if (auto open = pipeline_.incidents().open_for(name))
      if (const auto* inc = pipeline_.incidents().find(*open)) {
        s.open_incident_status = inc->status;
        if (auto x = sp::from_incident(*inc, s.public_name, true, false, false)) s.restored_ms = x->restored_ms;
      }
    affected[name] = sp::state_of(s) == "outage" || sp::state_of(s) == "degraded";
    f.services.push_back(std::move(s));
  }
  const auto& all = pipeline_.incidents().all();
  std::set<std::string> newest_seen;  // the newest incident of a service may still be going on
  for (auto it = all.rbegin(); it != all.rend(); ++it) {
    const auto pn = public_names.find(it->service);
    if (pn == public_names.end()) continue;
    const bool newest = newest_seen.insert(it->service).second;
    bool shadow = false;
    if (const auto si = pipeline_.service_index(it->service)) {
      const auto& svc = *pipeline_.service(*si).cfg;
      shadow = svc.shadow;
      for (const auto& t : svc.triggers)
        if (t.name == it->trigger && t.shadow) shadow = true;
    }
    const bool open = pipeline_.incidents().open_for(it->service) == it->id;
    if (auto x = sp::from_incident(*it, pn->second, open, shadow, newest && affected[it->service])) f.incidents.push_back(std::move(*x));
  }
  for (const auto& m : cfg_->maintenance) {
    sp::Maintenance w;
    for (const auto& s : m.services)
      if (auto pn = public_names.find(s); pn != public_names.end()) w.public_names.push_back(pn->second);
    w.start_ms = to_ms(m.start);
    w.end_ms = to_ms(m.end);
    if (!w.public_names.empty()) f.maintenance.push_back(std::move(w));
  }
  return sp::to_json(f);
}

// Names the API answers to: IP literals (no DNS, so no rebinding), localhost, and api.allowed_hosts.
// A page on any other name that reaches lastgood through DNS rebinding gets nothing.
bool Watchdog::host_allowed(const std::string& host) const {
  if (host.empty()) return true;  // HTTP/1.0
  if (host.front() == '[') return true;  // an IPv6 literal
  std::string name = host.substr(0, host.find(':'));
  for (auto& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (!name.empty() && name.back() == '.') name.pop_back();
  unsigned char addr[4];
  if (::inet_pton(AF_INET, name.c_str(), addr) == 1) return true;
  if (name == "localhost" || name.ends_with(".localhost")) return true;
  const auto& allowed = cfg_->api.allowed_hosts;
  return std::find(allowed.begin(), allowed.end(), name) != allowed.end();
}

HttpRes Watchdog::handle(const HttpReq& req) {
  std::string path = req.target.substr(0, req.target.find('?'));
  // The page and the API answer only to lastgood's own names (DNS rebinding); /metrics and the
  // health endpoints, which hold no secret and are scraped under whatever name, to any.
  // The public status page too: it holds nothing internal and is served under the public name a
  // reverse proxy gives it.
  const bool open_path = path == "/metrics" || path == "/healthz" || path == "/readyz" || path == "/status" || path == "/status.css" ||
                         path == "/api/v1/status";
  if (!open_path && !host_allowed(req.host))
    return HttpRes::json_error(403, "Host \"" + req.host.substr(0, 100) + "\" is not a name of this lastgood (add it to api.allowed_hosts)");
  const std::string client = client_address(req.remote, req.forwarded_for, cfg_->api.trusted_proxies);
  const auto now = std::chrono::steady_clock::now();
  const bool get = req.method == "GET" || req.method == "HEAD";
  if (path == "/metrics") {
    if (!get) return HttpRes::json_error(405, "use GET");
    // Written on the server's worker thread, a piece at a time: with thousands of probes the
    // text takes long enough to make every probe late if made on the loop, and at 10 000 probes
    // it is 16 MB, which held whole was a quarter of lastgood's memory.
    HttpRes res{200, "text/plain; version=0.0.4; charset=utf-8", ""};
    res.stream = [this, w = std::shared_ptr<Metrics::TextWriter>()](std::string& out) mutable {
      if (!w) w = std::make_shared<Metrics::TextWriter>(metrics_);  // the cells as of the first piece
      return w->next(out, 256 * 1024);
    };
    return res;
  }
  if (path == "/" || path == "/index.html") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return {200, "text/html; charset=utf-8", page_html()};
  }
  if (path == "/page.css" || path == "/page.js") {
    if (!get) return HttpRes::json_error(405, "use GET");
    return path == "/page.css" ? HttpRes{200, "text/css; charset=utf-8", page_css()} : HttpRes{200, "text/javascript; charset=utf-8", page_js()};
  }
  if (path == "/status" || path == "/status.css" || path == "/api/v1/status") {
    if (!get) return HttpRes::json_error(405, "use GET");
    if (!cfg_->status_page) return HttpRes::json_error(404, "no status_page block in the config");
    if (path == "/status.css") return {200, "text/css; charset=utf-8", status_page::css()};
    const long long now_ms =
        std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count();
    // Made at most once a second: the page needs no token, so a flood of requests for it must
    // cost little more than copying the text.
    if (status_cache_.at_ms == 0 || now_ms - status_cache_.at_ms >= 1000 || now_ms < status_cache_.at_ms) {
      const auto st = public_status(now_ms);
      status_cache_ = {now_ms, json_text(st, 2), status_page::to_html(st, now_ms)};
    }
    if (path == "/status") return {200, "text/html; charset=utf-8", status_cache_.html};
    return {200, "application/json", status_cache_.json};
  }
  if (path == "/healthz") return {200, "text/plain; charset=utf-8", "ok\n"};
  if (path == "/readyz") {
    const std::string role = ha_ ? " (" + ha_->describe() + ")" : "";
    if (ready()) return {200, "text/plain; charset=utf-8", "ready" + role + "\n"};
    return {503, "text/plain; charset=utf-8",
            std::string("not ready:") + (ha_ && !ha_->ready() ? " " + ha_->describe() + ";" : "") + (state_dir_ok_ && ::access(cfg_->state_dir.c_str(), W_OK) == 0 ? "" : " state dir not writable;") +
                (scheduler_.running() ? "" : " scheduler stopped;") +
                (pipeline_.ledger_writable() ? "" : " ledger not writable (" + pipeline_.ledger_error() + "): no action until it is;") + "\n"};
  }
  if (path == "/api/v1/services") {
    if (!get) return HttpRes::json_error(405, "use GET");
    nlohmann::json decisions = nlohmann::json::array();
    for (const auto& d : pipeline_.recent_decisions()) decisions.push_back(to_json(d));
    if (ha_) {  // several replicas: who owns each service, and escalations kept in etcd
      HttpRes later;
      later.later = [this, body = nlohmann::json{{"services", services_json()}, {"recent_decisions", decisions}}] { return ha_->services(body); };
      return later;
    }
    return {200, "application/json", json_text(nlohmann::json{{"services", services_json()}, {"recent_decisions", decisions}}, 2)};
  }
  if (path == "/api/v1/alerts/alertmanager") {
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    if (!cfg_->alertmanager) return HttpRes::json_error(404, "no alertmanager block in the config");
    if (!alertmanager_token_ok(req.authorization)) {  // a valid token is never refused for others' failures
      if (alert_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      alert_failures_.failed(client, req.authorization, now);
      return HttpRes::json_error(401, "the Alertmanager bearer token is missing or wrong");
    }
    auto payload = nlohmann::json::parse(req.body, nullptr, false);
    if (payload.is_discarded()) return HttpRes::json_error(400, "the body is not JSON");
    std::string problem;
    auto counts = pipeline_.on_alertmanager(payload, &problem);
    if (!problem.empty()) return HttpRes::json_error(400, "not an Alertmanager webhook payload: " + problem);
    return {200, "application/json", json_text(counts)};
  }
  const std::string prop_prefix = "/api/v1/proposals/";
  if (path.rfind(prop_prefix, 0) == 0) {
    const std::string rest = path.substr(prop_prefix.size());
    const auto slash = rest.find('/');
    const std::string id = rest.substr(0, slash), verb = slash == std::string::npos ? "" : rest.substr(slash + 1);
    if (verb != "approve" && verb != "reject") return HttpRes::json_error(404, "use /api/v1/proposals/{id}/approve or /reject");
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    const auto* who = approvers_.identify(req.authorization);
    if (!who) {  // a valid token is never refused for others' failures
      if (approver_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      approver_failures_.failed(client, req.authorization, now);
    }
    std::string comment;
    if (!req.body.empty()) {
      auto b = nlohmann::json::parse(req.body, nullptr, false);
      if (b.is_discarded() || !b.is_object()) return HttpRes::json_error(400, "the body must be a JSON object like {\"comment\": \"...\"}");
      if (b.contains("comment") && b["comment"].is_string()) comment = b["comment"].get<std::string>();
    }
    if (ha_ && who) {  // several replicas: the vote is kept in etcd, whichever replica takes it
      HttpRes later;
      later.later = [this, id, who, approve = verb == "approve", comment, client] { return ha_->vote(id, who, approve, comment, client); };
      return later;
    }
    const auto [status, body] = vote_response(pipeline_.vote(id, who, verb == "approve", comment, client));
    return {status, "application/json", json_text(body, 2)};
  }
  if (path == "/api/v1/proposals") {
    if (!get) return HttpRes::json_error(405, "use GET");
    if (ha_) {  // several replicas: the open proposals of the others too, from etcd
      HttpRes later;
      later.later = [this, local = proposals_view(pipeline_)] { return ha_->proposals(local); };
      return later;
    }
    return {200, "application/json", json_text(nlohmann::json{{"proposals", proposals_view(pipeline_)}}, 2)};
  }
  if (path == "/api/v1/incidents") {
    if (!get) return HttpRes::json_error(405, "use GET");
    if (ha_) {  // several replicas: the other replicas' actions too, from etcd
      HttpRes later;
      later.later = [this, local = pipeline_.incidents().list()] { return ha_->incidents(local); };
      return later;
    }
    return {200, "application/json", json_text(nlohmann::json{{"incidents", pipeline_.incidents().list()}}, 2)};
  }
  const std::string inc_prefix = "/api/v1/incidents/";
  if (path.rfind(inc_prefix, 0) == 0) {
    if (!get) return HttpRes::json_error(405, "use GET");
    std::string id = path.substr(inc_prefix.size());
    const bool markdown = id.size() > 3 && id.substr(id.size() - 3) == ".md";
    if (markdown) id.resize(id.size() - 3);
    const auto* inc = pipeline_.incidents().find(id);
    if (!inc) return HttpRes::json_error(404, "no incident " + id + " (GET /api/v1/incidents lists them)");
    if (markdown) return {200, "text/markdown; charset=utf-8", Incidents::to_markdown(*inc)};
    return {200, "application/json", json_text(Incidents::to_json(*inc), 2)};
  }
  // Who sent a state-changing request: an approver, or the refusal to answer with (401, 429;
  // 403 when no approvers are configured, so nobody may).
  auto person = [&](const std::string& service, Event refused_as, const char* what) -> std::pair<const config::Approver*, HttpRes> {
    if (!approvers_.any())
      return {nullptr, HttpRes::json_error(403, std::string("no approvers are configured, so nobody may ") + what +
                                                    " over the API: add approvers (with tokens) to the config")};
    const auto* a = approvers_.identify(req.authorization);
    if (a) return {a, {}};
    if (approver_failures_.blocked(client, req.authorization, now))
      return {nullptr, HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute")};
    approver_failures_.failed(client, req.authorization, now);
    pipeline_.record_unauthenticated(refused_as, service, client, {{"why", "no or unknown token"}, {"path", path.substr(0, 200)}});
    return {nullptr, HttpRes::json_error(401, "an approver's bearer token is required (Authorization: Bearer TOKEN)")};
  };
  auto body_object = [&](nlohmann::json& out) -> std::optional<HttpRes> {
    out = req.body.empty() ? nlohmann::json::object() : nlohmann::json::parse(req.body, nullptr, false);
    if (out.is_discarded() || !out.is_object()) return HttpRes::json_error(400, "the body must be a JSON object");
    return std::nullopt;
  };
  auto string_field = [](const nlohmann::json& b, const char* key) -> std::optional<std::string> {
    if (!b.contains(key)) return std::string();
    if (!b[key].is_string()) return std::nullopt;
    return b[key].get<std::string>();
  };
  auto answer = [](const Request& r, int ok_status) -> HttpRes {
    const auto [status, body] = request_response(r, ok_status);
    return {status, "application/json", json_text(body, 2)};
  };
  if (path == "/-/reload") {
    if (req.method != "POST" && req.method != "PUT") return HttpRes::json_error(405, "use POST");
    auto auth = person("", Event::clear_refused, "reload the config");
    const config::Approver* who = auth.first;  // (clang 15: no structured binding in a lambda capture)
    if (!who) return auth.second;
    HttpRes later;  // read on a worker thread, applied on the loop
    later.later = [this, via = "api: " + who->name + " from " + client] { return reload_response(via); };
    return later;
  }
  if (path == "/api/v1/silences") {
    if (get) return {200, "application/json", json_text(nlohmann::json{{"silences", pipeline_.silences().list(std::chrono::system_clock::now())}}, 2)};
    if (req.method != "POST") return HttpRes::json_error(405, "use GET or POST");
    nlohmann::json b;
    if (auto bad = body_object(b)) return *bad;
    std::vector<std::string> services;
    if (b.contains("service") && b["service"].is_string()) services.push_back(b["service"].get<std::string>());
    else if (b.contains("services") && b["services"].is_array()) {
      for (const auto& x : b["services"])
        if (x.is_string()) services.push_back(x.get<std::string>());
        else return HttpRes::json_error(400, "/services: expected an array of service names");
    } else {
      return HttpRes::json_error(400, "expected {\"service\": \"NAME\", \"for\": \"1h\", \"comment\": \"...\"} (or \"services\": [...])");
    }
    if (services.empty() || services.size() > 1000) return HttpRes::json_error(400, "/services: expected 1 to 1000 service names");
    for (const auto& sv : services)
      if (!pipeline_.service_index(sv)) return HttpRes::json_error(404, "no service named " + sv.substr(0, 100));
    auto auth = person(services.front(), Event::clear_refused, "silence a service");
    const config::Approver* who = auth.first;  // (clang 15: no structured binding in a lambda capture)
    if (!who) return auth.second;
    const auto length = b.contains("for") && b["for"].is_string() ? config::parse_duration(b["for"].get<std::string>()) : std::nullopt;
    if (!length || length->count() <= 0 || *length > std::chrono::hours(24 * 90))
      return HttpRes::json_error(400, "/for: expected a duration like \"30m\" or \"2h\" (at most 90 days)");
    auto comment = string_field(b, "comment");
    if (!comment || comment->empty()) return HttpRes::json_error(400, "/comment: expected a string saying why (it is shown with the silence)");
    Silence silence = pipeline_.make_silence(services, *length, who->name, *comment, client);
    if (ha_) {  // several replicas: kept in etcd, honoured by whichever replica owns the service
      HttpRes later;
      later.later = [this, silence] { return ha_->add_silence(silence); };
      return later;
    }
    return answer(pipeline_.add_silence(std::move(silence)), 201);
  }
  const std::string sil_prefix = "/api/v1/silences/";
  if (path.rfind(sil_prefix, 0) == 0) {
    if (req.method != "DELETE") return HttpRes::json_error(405, "use DELETE");
    const std::string id = path.substr(sil_prefix.size());
    auto auth = person("", Event::clear_refused, "expire a silence");
    const config::Approver* who = auth.first;  // (clang 15: no structured binding in a lambda capture)
    if (!who) return auth.second;
    if (ha_) {
      HttpRes later;
      later.later = [this, id, name = who->name, client] { return ha_->expire_silence(id, name, client); };
      return later;
    }
    return answer(pipeline_.expire_silence(id, who->name, client), 200);
  }
  const std::string svc_prefix = "/api/v1/services/";
  if (path.rfind(svc_prefix, 0) == 0) {
    // /api/v1/services/{s}/releases, /rollback, /releases/{r}/bad (/clear below)
    const std::string rest = path.substr(svc_prefix.size());
    const auto slash = rest.find('/');
    const std::string name = rest.substr(0, slash), tail = slash == std::string::npos ? "" : rest.substr(slash);
    const auto si = pipeline_.service_index(name);
    if (tail == "/releases") {
      if (!get) return HttpRes::json_error(405, "use GET");
      if (!si) return HttpRes::json_error(404, "no service named " + name.substr(0, 100));
      return {200, "application/json", json_text(pipeline_.releases(*si), 2)};
    }
    const bool rollback = tail == "/rollback";
    const bool bad = tail.rfind("/releases/", 0) == 0 && tail.size() > 14 && tail.substr(tail.size() - 4) == "/bad";
    if (rollback || bad) {
      if (req.method != "POST") return HttpRes::json_error(405, "use POST");
      if (!si) return HttpRes::json_error(404, "no service named " + name.substr(0, 100));
      auto auth = person(name, Event::clear_refused, rollback ? "ask for a rollback" : "mark a release bad");
      const config::Approver* who = auth.first;  // (clang 15: no structured binding in a lambda capture)
      if (!who) return auth.second;
      nlohmann::json b;
      if (auto badbody = body_object(b)) return *badbody;
      auto reason = string_field(b, "reason");
      if (!reason || reason->empty()) return HttpRes::json_error(400, "/reason: expected a string saying why (it goes to the ledger, the proposal and the notices)");
      policy::Severity sev = policy::Severity::P1;
      if (b.contains("severity")) {
        auto sv = b["severity"].is_string() ? config::detail::parse_severity(b["severity"].get<std::string>()) : std::nullopt;
        if (!sv) return HttpRes::json_error(400, "/severity: expected \"P0\", \"P1\" or \"P2\"");
        sev = *sv;
      }
      if (bad) {
        const std::string release = tail.substr(10, tail.size() - 14);
        if (release.empty() || release.size() > 200) return HttpRes::json_error(400, "expected /api/v1/services/{s}/releases/{release}/bad");
        if (ha_) {  // several replicas: the mark is kept in etcd; the owner proposes the rollback of a live one
          HttpRes later;
          later.later = [this, si = *si, who, release, sev, reason = *reason, client] { return ha_->mark_bad(si, who, release, sev, reason, client); };
          return later;
        }
        return answer(pipeline_.mark_bad(*si, *who, release, sev, *reason, client), 200);
      }
      // Several replicas: the owner of the service opens the proposal (votes go through any replica).
      if (ha_ && !ha_->owns(name))
        return HttpRes::json_error(409, "service " + name + " is owned by another replica (GET /api/v1/services shows ha.owner): ask it for the rollback; votes on its proposal go through any replica");
      std::optional<std::string> to;
      if (b.contains("to")) {
        auto t = string_field(b, "to");
        if (!t || t->empty()) return HttpRes::json_error(400, "/to: expected a release id");
        to = *t;
      }
      if (ha_) {  // several replicas: the requester's approval goes through etcd, as any vote
        const Request r = pipeline_.request_rollback(*si, *who, to, sev, *reason, client, /*approve=*/false);
        if (r.status != Request::Status::accepted || !r.proposal) return answer(r, 201);
        HttpRes later;
        later.later = [this, id = r.proposal->id, who, reason = *reason, client] { return ha_->vote(id, who, true, reason, client); };
        return later;
      }
      return answer(pipeline_.request_rollback(*si, *who, to, sev, *reason, client), 201);
    }
  }
  if (path.rfind(svc_prefix, 0) == 0 && path.size() > svc_prefix.size() + 6 && path.substr(path.size() - 6) == "/clear") {
    if (req.method != "POST") return HttpRes::json_error(405, "use POST");
    const std::string name = path.substr(svc_prefix.size(), path.size() - svc_prefix.size() - 6);
    auto si = pipeline_.service_index(name);
    if (!si) return HttpRes::json_error(404, "no service named " + name);
    // Every state-changing endpoint needs a token: without approvers nobody may clear.
    if (!approvers_.any())
      return HttpRes::json_error(403, "no approvers are configured, so nobody may clear an escalation over the API: add approvers (with tokens) to the config");
    const auto* a = approvers_.identify(req.authorization);
    if (!a) {
      if (approver_failures_.blocked(client, req.authorization, now))
        return HttpRes::json_error(429, "too many failed authentications from " + client + " with this token; try again in a minute");
      approver_failures_.failed(client, req.authorization, now);
      pipeline_.record_unauthenticated(Event::clear_refused, name, client, {{"why", "no or unknown token"}});
      return HttpRes::json_error(401, "an approver's bearer token is required");
    }
    const std::string who = a->name;
    if (ha_) {  // several replicas: the escalation is shared in etcd, cleared there
      HttpRes later;
      later.later = [this, name, who, client] { return ha_->clear(name, who, client); };
      return later;
    }
    if (!pipeline_.clear(*si, who, client)) return HttpRes::json_error(409, "service " + name + " is not escalated");
    return {200, "application/json", json_text(nlohmann::json{{"service", name}, {"cleared_by", who}})};
  }
  return HttpRes::json_error(404, "no such endpoint: " + path);
}

bool Watchdog::alertmanager_token_ok(const std::string& authorization) const {
  if (!cfg_->alertmanager || !cfg_->alertmanager->token || !cfg_->alertmanager->token->resolved()) return false;
  const std::string want = "Bearer " + cfg_->alertmanager->token->value();
  auto digest = [](const std::string& x) {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int len = 0;
    EVP_Digest(x.data(), x.size(), md, &len, EVP_sha256(), nullptr);
    return std::string(reinterpret_cast<char*>(md), len);
  };
  const std::string a = digest(authorization), b = digest(want);
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace lastgood::watchdog
