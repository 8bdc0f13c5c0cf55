#include "watchdog/pipeline/alert_intake.hpp"

#include "watchdog/json_text.hpp"
#include "watchdog/pipeline/alert_payload.hpp"

namespace lastgood::watchdog {

using nlohmann::json;

namespace {

std::string str(const json& o, const char* key, const std::string& fallback = "") {
  auto it = o.find(key);
  return it != o.end() && it->is_string() ? it->get<std::string>() : fallback;
}

}  // namespace

json AlertIntake::take(const json& payload, std::string* problem, std::vector<AlertTrigger>& out) {
  json counts = json::object();
  auto count = [&](const std::string& outcome) {
    counts[outcome] = counts.value(outcome, 0) + 1;
    metrics_.alert(outcome);
  };
  if (!cfg_->alertmanager) {
    count("bad_payload");
    return counts;
  }
  if (auto why = alert_payload_problem(payload); !why.empty()) {
    count("bad_payload");
    if (problem) *problem = why;
    return counts;
  }
  const auto& am = *cfg_->alertmanager;
  for (const auto& a : payload["alerts"]) {
    const auto& labels = a["labels"];
    const std::string status = str(a, "status", str(payload, "status"));
    const std::string fingerprint = str(a, "fingerprint", json_text(labels));
    // A redelivery of the same notice is the same (fingerprint, status, startsAt); an alert that
    // fires again after resolving has a new startsAt, and its keys are forgotten once it resolves.
    const std::string key = fingerprint + "|" + status + "|" + str(a, "startsAt");
    if (seen_.count(key)) {
      count("duplicate");
      continue;
    }
    const std::string service = str(labels, am.service_label.c_str());
    auto si = index_(service);
    if (!si) {
      count("unknown_service");
      continue;
    }
    auto sev = am.severity_map.find(str(labels, am.severity_label.c_str()));
    if (sev == am.severity_map.end()) {
      count("unknown_severity");
      continue;
    }
    if (status == "resolved") {  // forget what was seen of this alert: a later firing is new
      for (auto it = order_.begin(); it != order_.end();)
        if (it->rfind(fingerprint + "|", 0) == 0) {
          seen_.erase(*it);
          it = order_.erase(it);
        } else {
          ++it;
        }
    }
    seen_.insert(key);
    order_.push_back(key);
    while (order_.size() > kRemembered) {
      seen_.erase(order_.front());
      order_.pop_front();
    }
    AlertTrigger t{*si, "", sev->second, status == "firing", {}};
    t.evidence.measure = "alertmanager";
    t.evidence.value = t.firing ? 1 : 0;
    t.evidence.threshold = 1;
    const std::string alertname = str(labels, "alertname", "alert");
    t.evidence.detail = alertname;
    if (a.contains("annotations")) {
      if (const std::string summary = str(a["annotations"], "summary"); !summary.empty()) t.evidence.detail += ": " + summary.substr(0, 500);
    }
    t.trigger = "alertmanager:" + alertname;
    rec_.record(Event::alert_received, service,
                {{"trigger", t.trigger}, {"status", status}, {"severity", policy::to_string(t.severity)}, {"fingerprint", fingerprint.substr(0, 128)},
                 {"starts_at", str(a, "startsAt").substr(0, 64)}, {"labels", labels}});
    out.push_back(std::move(t));
    count("accepted");
  }
  return counts;
}

}  // namespace lastgood::watchdog
