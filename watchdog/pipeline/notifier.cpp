#include "watchdog/pipeline/notifier.hpp"

#include "watchdog/json_text.hpp"

#include <map>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <spdlog/spdlog.h>

#include "net/supervise.hpp"
#include "net/http_once.hpp"

namespace lastgood::watchdog {

namespace asio = boost::asio;
using nlohmann::json;

Notifier::Notifier(asio::io_context& ioc, const config::Config& cfg, Record record) : ioc_(ioc), cfg_(cfg), record_(std::move(record)) {}

json Notifier::payload(size_t target, const std::string& event, const std::string& service, const json& d) const {
  const auto& n = cfg_.notify[target];
  json links{{"page", base_url_ + "/"}, {"api", base_url_ + "/api/v1/services"}};
  if (d.contains("proposal_id")) links["proposal"] = base_url_ + "/api/v1/proposals";
  if (d.contains("incident_id") && d["incident_id"].is_string() && !d["incident_id"].get<std::string>().empty()) {
    links["incident"] = base_url_ + "/api/v1/incidents/" + d["incident_id"].get<std::string>();
    links["incident_markdown"] = base_url_ + "/api/v1/incidents/" + d["incident_id"].get<std::string>() + ".md";
  }
  if (n.kind == "slack") {
    std::string text = "*lastgood* `" + event + "` on *" + service + "*";
    if (d.contains("severity")) text += " (" + d["severity"].get<std::string>() + ")";
    if (d.contains("trigger")) text += ", trigger `" + d["trigger"].get<std::string>() + "`";
    if (d.contains("reason")) text += ": " + d["reason"].get<std::string>();
    if (d.contains("release_from") && d.contains("release_to") && d["release_to"].is_string())
      text += "\n" + d["release_from"].get<std::string>() + " -> " + d["release_to"].get<std::string>();
    if (d.contains("evidence")) text += "\nevidence: `" + json_text(d["evidence"]) + "`";
    text += "\n<" + links["page"].get<std::string>() + "|open lastgood>";
    if (links.contains("incident")) text += " · <" + links["incident_markdown"].get<std::string>() + "|incident record>";
    return {{"text", text}};
  }
  json body{{"event", event}, {"service", service}, {"links", links}};
  for (const char* k : {"severity", "trigger", "decision", "reason", "evidence", "proposal_id", "incident_id", "release_from", "release_to", "error"})
    if (d.contains(k)) body[k] = d[k];
  return body;
}

void Notifier::notify(const std::string& event, const std::string& service, const json& details) {
  for (size_t i = 0; i < cfg_.notify.size(); ++i) {
    const auto& n = cfg_.notify[i];
    if (!n.events.empty() && std::find(n.events.begin(), n.events.end(), event) == n.events.end()) continue;
    const std::string id = "n" + std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(
                                                    std::chrono::system_clock::now().time_since_epoch()).count()) +
                           "-" + std::to_string(next_++);
    json body = payload(i, event, service, details);
    record_(Event::notify_queued, service, {{"id", id}, {"target", i}, {"kind", n.kind}, {"event", event}, {"body", body}});
    net::spawn(ioc_.get_executor(), [this, id, i, body, service] { return deliver(id, i, body, service); }, "notify", life_);
  }
}

void Notifier::replay(const std::vector<LedgerEntry>& entries) {
  std::map<std::string, const LedgerEntry*> pending;
  for (const auto& e : entries) {
    if (e.type == name(Event::notify_queued)) pending[e.data.value("id", "")] = &e;
    else if (e.type == name(Event::notify_delivered) || e.type == name(Event::notify_failed)) pending.erase(e.data.value("id", ""));
  }
  for (const auto& [id, e] : pending) {
    const size_t target = e->data.value("target", 0);
    if (target >= cfg_.notify.size()) continue;  // the config changed
    spdlog::info("notification {} was not delivered before the restart: sending it again", id);
    net::spawn(ioc_.get_executor(), [this, id = id, target, body = e->data["body"], service = e->service] { return deliver(id, target, body, service); },
               "notify", life_);
  }
}

asio::awaitable<void> Notifier::deliver(std::string id, size_t target, json body, std::string service) {
  const auto& n = cfg_.notify[target];
  asio::steady_timer timer(ioc_);
  auto backoff = first_backoff;
  std::string last_error;
  for (int attempt = 1; attempt <= max_attempts && !stopped_; ++attempt) {
    std::string url = n.url.value();
    std::string method = "POST";  // (GCC 12: no literals or braced lists inside co_await arguments)
    std::vector<std::pair<std::string, std::string>> headers;
    headers.emplace_back("Content-Type", "application/json");
    auto res = co_await net::http_once(ioc_.get_executor(), std::move(method), std::move(url), std::move(headers), json_text(body),
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
