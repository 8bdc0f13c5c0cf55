#include "watchdog/pipeline/notifier.hpp"

#include "watchdog/json_text.hpp"
#include "watchdog/pipeline/notice_text.hpp"

#include <ctime>
#include <map>
#include <stdexcept>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"
#include "net/http_once.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using nlohmann::json;

Notifier::Notifier(asio::io_context& ioc, const config::Config& cfg, Record record) : ioc_(ioc), cfg_(&cfg), record_(std::move(record)) {}

namespace {

// What customers call a service; "" when it is not externally visible.
std::string public_name_of(const config::Config& cfg, const std::string& service) {
  for (const auto& s : cfg.services)
    if (s.name == service) return s.public_name;
  return "";
}

// A notice for customers: impact and restoration in plain sentences, with the time. Nothing
// internal: no service or release names, triggers, evidence, people, or links to lastgood.
json customer_notice(const std::string& event, const std::string& public_name) {
  const std::time_t now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  std::tm tm{};
  ::gmtime_r(&now, &tm);
  char hm[16], at[32];
  std::strftime(hm, sizeof hm, "%H:%M UTC", &tm);
  std::strftime(at, sizeof at, "%Y-%m-%dT%H:%M:%SZ", &tm);
  const bool restored = event == "verified";
  const std::string message = restored ? public_name + " is working normally again (confirmed at " + hm + ")."
                                       : public_name + " had a problem. At " + hm +
                                             " we restored its previous version and are checking that it works.";
  return {{"audience", "customers"}, {"service", public_name}, {"status", restored ? "restored" : "restoring"}, {"message", message}, {"at", at}};
}

}  // namespace

json Notifier::payload(size_t target, const std::string& event, const std::string& service, const json& d) const {
  const auto& n = cfg_->notify[target];
  if (n.audience == "customers") {
    json notice = customer_notice(event, public_name_of(*cfg_, service));
    if (n.kind == "slack") return {{"text", notice["message"]}};
    return notice;
  }
  json links{{"page", base_url_ + "/"}, {"api", base_url_ + "/api/v1/services"}};
  // The proposal's own row on the approval page (the page scrolls to it and marks it).
  if (d.contains("proposal_id") && d["proposal_id"].is_string() && !d["proposal_id"].get<std::string>().empty())
    links["proposal"] = base_url_ + "/#proposal-" + d["proposal_id"].get<std::string>();
  if (d.contains("incident_id") && d["incident_id"].is_string() && !d["incident_id"].get<std::string>().empty()) {
    links["incident"] = base_url_ + "/api/v1/incidents/" + d["incident_id"].get<std::string>();
    links["incident_markdown"] = base_url_ + "/api/v1/incidents/" + d["incident_id"].get<std::string>() + ".md";
  }
  const std::string text = notice_text(event, service, d);
  if (n.kind == "pagerduty") return pagerduty(pagerduty_action(event), event, service, d, links, text);
  if (n.kind == "slack") {
    // Slack's mrkdwn: <, > and & are its markup and must be escaped in what we say.
    auto esc = [](const std::string& x) {
      std::string o;
      for (char c : x) o += c == '<' ? "&lt;" : c == '>' ? "&gt;" : c == '&' ? "&amp;" : std::string(1, c);
      return o;
    };
    std::string t = esc(text) + "\n";
    if (links.contains("proposal")) t += "<" + links["proposal"].get<std::string>() + "|approve or reject> · ";
    t += "<" + links["page"].get<std::string>() + "|approval page>";
    if (links.contains("incident")) t += " · <" + links["incident_markdown"].get<std::string>() + "|incident record>";
    return {{"text", t}};
  }
  json body{{"event", event}, {"service", service}, {"text", text}, {"links", links}};
  for (const char* k : {"severity", "trigger", "decision", "reason", "evidence", "proposal_id", "incident_id", "release_from", "release_to", "error", "approvers", "by"})
    if (d.contains(k)) body[k] = d[k];
  return body;
}

std::string Notifier::pagerduty_action(const std::string& event) {
  if (event == "breach" || event == "proposed" || event == "escalated" || event == "failed" || event == "reminder") return "trigger";
  if (event == "approved" || event == "executed" || event == "rejected") return "acknowledge";
  if (event == "verified") return "resolve";
  return "";  // expired, stale, cleared: the incident stays as it is
}

std::string Notifier::severity_of(const std::string& service, const json& d) const {
  if (d.contains("severity") && d["severity"].is_string()) return d["severity"].get<std::string>();
  if (auto it = open_.find(service); it != open_.end()) return it->second.severity;
  return "";
}

json Notifier::pagerduty(const std::string& action, const std::string& event, const std::string& service, const json& d, const json& links,
                         const std::string& text) const {
  const auto it = open_.find(service);
  const std::string key = it != open_.end() ? it->second.key : "lastgood/" + service;
  json body{{"event_action", action}, {"dedup_key", key}, {"client", "lastgood"}, {"client_url", links["page"]}};
  if (action != "trigger") return body;
  const std::string sev = severity_of(service, d);
  // PagerDuty's severities: critical, error, warning, info.
  const std::string pd = sev == "P0" ? "critical" : sev == "P1" ? "error" : sev == "P2" ? "warning" : "info";
  std::string summary = text;
  if (summary.size() > 1024) {  // the API's limit, cut at a character's start
    size_t cut = 1021;
    while (cut > 0 && (static_cast<unsigned char>(summary[cut]) & 0xC0) == 0x80) --cut;
    summary = summary.substr(0, cut) + "...";
  }
  json details = json::object();
  for (const char* k : {"trigger", "severity", "release_from", "release_to", "proposal_id", "incident_id", "evidence", "error"})
    if (d.contains(k)) details[k] = d[k];
  body["payload"] = {{"summary", summary}, {"source", "lastgood"}, {"severity", pd}, {"component", service}, {"class", event}, {"custom_details", details}};
  if (d.contains("trigger") && d["trigger"].is_string()) body["payload"]["group"] = d["trigger"];
  json pl = json::array({{{"href", links["page"]}, {"text", "lastgood"}}});
  if (links.contains("incident")) pl.push_back({{"href", links["incident_markdown"]}, {"text", "incident record"}});
  body["links"] = pl;
  return body;
}

void Notifier::notify(const std::string& event, const std::string& service, const json& given) {
  json details = given;
  if (incident_of && details.contains("incident_id") && details["incident_id"].is_string() && !details["incident_id"].get<std::string>().empty())
    details["incident_id"] = incident_of(details["incident_id"].get<std::string>());
  // PagerDuty's incident: opened at the first breach or proposal, closed at verified recovery.
  if ((event == "breach" || event == "proposed") && !open_.count(service)) {
    const std::string at = std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch()).count());
    open_[service] = {"lastgood/" + service + "/" + at, ""};
  }
  if (auto it = open_.find(service); it != open_.end() && details.contains("severity") && details["severity"].is_string())
    it->second.severity = details["severity"].get<std::string>();
  const std::string severity = severity_of(service, details);
  for (size_t i = 0; i < cfg_->notify.size(); ++i) {
    const auto& n = cfg_->notify[i];
    if (!n.events.empty() && std::find(n.events.begin(), n.events.end(), event) == n.events.end()) continue;
    if (!n.services.empty() && std::find(n.services.begin(), n.services.end(), service) == n.services.end()) continue;
    if (!n.severities.empty() && !severity.empty() &&
        std::none_of(n.severities.begin(), n.severities.end(), [&](policy::Severity s) { return severity == policy::to_string(s); }))
      continue;
    if (n.audience == "customers" && ((event != "executed" && event != "verified") || public_name_of(*cfg_, service).empty())) continue;
    if (n.kind == "pagerduty" && (pagerduty_action(event).empty() || (!open_.count(service) && event != "escalated"))) continue;
    const std::string id = "n" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::system_clock::now().time_since_epoch()).count()) +
                           "-" + std::to_string(next_++);
    json body = payload(i, event, service, details);
    record_(Event::notify_queued, service, {{"id", id}, {"target", i}, {"kind", n.kind}, {"event", event}, {"body", body}});
    send(id, i, std::move(body), service);
  }
  if (event == "verified") open_.erase(service);
}

void Notifier::replay(const std::vector<LedgerEntry>& entries) {
  for (const auto& e : entries) replay_entry(e);
  replay_done();
}

void Notifier::fold_open(OpenIncidents& open, const LedgerEntry& e) {
  if (e.type == name(Event::notify_queued) && e.data.value("kind", "") == "pagerduty" && e.data.contains("body") && e.data["body"].is_object()) {
    const auto& b = e.data["body"];  // the PagerDuty incident open at the restart
    if (b.value("event_action", "") == "resolve") open.erase(e.service);
    else if (b.contains("dedup_key") && b["dedup_key"].is_string()) open[e.service].key = b["dedup_key"].get<std::string>();
    if (b.contains("payload") && b["payload"].is_object() && b["payload"].contains("custom_details") && b["payload"]["custom_details"].is_object() &&
        b["payload"]["custom_details"].contains("severity") && b["payload"]["custom_details"]["severity"].is_string())
      open[e.service].severity = b["payload"]["custom_details"]["severity"].get<std::string>();
  }
}

json Notifier::save_open(const OpenIncidents& open) {
  json out = json::object();
  for (const auto& [svc, o] : open) out[svc] = {{"key", o.key}, {"severity", o.severity}};
  return out;
}

Notifier::OpenIncidents Notifier::load_open(const json& saved) {
  if (!saved.is_object()) throw std::runtime_error("pagerduty: expected an object of services");
  OpenIncidents out;
  for (const auto& [svc, o] : saved.items()) {
    if (!o.is_object() || !o.contains("key") || !o["key"].is_string() || !o.contains("severity") || !o["severity"].is_string())
      throw std::runtime_error("pagerduty." + svc + ": expected {\"key\": string, \"severity\": string}");
    out[svc] = {o["key"].get<std::string>(), o["severity"].get<std::string>()};
  }
  return out;
}

void Notifier::replay_entry(const LedgerEntry& e, bool carried) {
  if (!carried) fold_open(open_, e);
  if (e.type == name(Event::notify_queued)) replay_pending_[e.data.value("id", "")] = Unsent{e.service, e.data};
  else if (e.type == name(Event::notify_delivered) || e.type == name(Event::notify_failed)) replay_pending_.erase(e.data.value("id", ""));
}

void Notifier::replay_done() {
  auto pending = std::move(replay_pending_);
  replay_pending_.clear();
  for (auto& [id, q] : pending) {
    const size_t target = q.data.value("target", 0);
    if (target >= cfg_->notify.size()) continue;  // the config changed
    spdlog::info("notification {} was not delivered before the restart: sending it again", id);
    send(id, target, q.data["body"], q.service);
  }
}

void Notifier::send(std::string id, size_t target, json body, std::string service) {
  auto n = std::make_shared<const config::Notify>(cfg_->notify[target]);  // as configured now, whatever a reload does
  if (n->kind != "pagerduty") {
    net::spawn(ioc_.get_executor(), [this, id, target, n, body, service] { return deliver(id, target, n, body, service); }, "notify", life_);
    return;
  }
  ordered_[target].push_back({std::move(id), std::move(body), std::move(service), std::move(n)});
  if (draining_[target]) return;
  draining_[target] = true;
  net::spawn(ioc_.get_executor(), [this, target] { return drain(target); }, "notify", life_);
}

asio::awaitable<void> Notifier::drain(size_t target) {
  struct Done {  // however the drain ends (stopped, cancelled), the next notice starts another
    Notifier* n;
    size_t t;
    ~Done() { n->draining_[t] = false; }
  } done{this, target};
  auto& q = ordered_[target];
  while (!q.empty() && !stopped_) {
    Queued item = std::move(q.front());
    q.pop_front();
    co_await deliver(std::move(item.id), target, std::move(item.target), std::move(item.body), std::move(item.service));
  }
}

asio::awaitable<void> Notifier::deliver(std::string id, size_t target, std::shared_ptr<const config::Notify> where, json body, std::string service) {
  const auto& n = *where;
  asio::steady_timer timer(ioc_);
  auto backoff = first_backoff;
  std::string last_error;
  for (int attempt = 1; attempt <= max_attempts && !stopped_; ++attempt) {
    std::string url = n.url.value();
    std::string method = "POST";  // (GCC 12: no literals or braced lists inside co_await arguments)
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("Content-Type", "application/json");
    std::string text;
    if (n.kind == "pagerduty") {  // the routing key is read at each attempt (rotated without a restart) and never recorded
      json sent = body;
      if (n.routing_key) {
        config::Secret key = *n.routing_key;  // a copy: the config stays as loaded
        if (auto err = key.resolve()) spdlog::warn("notification {}: the PagerDuty routing key cannot be read again ({}): using the one read at start", id, *err);
        sent["routing_key"] = key.resolved() ? key.value() : n.routing_key->value();
      }
      text = json_text(sent);
    } else {
      text = json_text(body);
    }
    auto res = co_await net::http_once(ioc_.get_executor(), std::move(method), std::move(url), std::move(headers), std::move(text),
                                          std::chrono::steady_clock::now() + std::chrono::seconds(10), 64 * 1024);
    if (auto* r = std::get_if<net::HttpResponse>(&res); r && r->status >= 200 && r->status < 300) {
      record_(Event::notify_delivered, service, {{"id", id}, {"attempts", attempt}});
      co_return;
    }
    last_error = std::holds_alternative<net::HttpError>(res) ? std::get<net::HttpError>(res).stage_name()
                                                                : "HTTP " + std::to_string(std::get<net::HttpResponse>(res).status);
    spdlog::warn("notification {} to {} #{}: attempt {} failed ({}); retrying in {}ms", id, n.kind, target, attempt, last_error, backoff.count());
    timer.expires_after(backoff);
    co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    backoff = std::min(backoff * 2, std::chrono::milliseconds(5 * 60'000));
  }
  if (!stopped_) {
    record_(Event::notify_failed, service, {{"id", id}, {"error", last_error}});
    spdlog::error("notification {} to {} #{} given up after {} attempts ({})", id, n.kind, target, max_attempts, last_error);
  }
}

}  // namespace lastgood::watchdog
