#include "watchdog/pipeline/notice_text.hpp"

#include <cmath>
#include <cstdio>

namespace lastgood::watchdog {

using nlohmann::json;

namespace {

std::string str(const json& d, const char* key) {
  if (!d.is_object()) return "";
  auto it = d.find(key);
  return it != d.end() && it->is_string() ? it->get<std::string>() : "";
}

double num(const json& d, const char* key) {
  if (!d.is_object()) return 0;
  auto it = d.find(key);
  return it != d.end() && it->is_number() ? it->get<double>() : 0;
}

// A number as people write it: 3, 0.25, 1200.
std::string number(double v) {
  char buf[32];
  if (std::fabs(v - std::round(v)) < 1e-9 && std::fabs(v) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.3g", v);
  return buf;
}

std::string percent(double share) { return number(std::round(share * 1000) / 10) + "%"; }

// "5m", "90s", "2h" for a window in milliseconds.
std::string window(double ms) {
  const long long s = static_cast<long long>(ms / 1000);
  if (s > 0 && s % 3600 == 0) return std::to_string(s / 3600) + "h";
  if (s > 0 && s % 60 == 0) return std::to_string(s / 60) + "m";
  return std::to_string(s) + "s";
}

// " from bad2 to v1", or "" when the releases are not known.
std::string releases(const json& d) {
  const std::string from = str(d, "release_from"), to = str(d, "release_to");
  if (!from.empty() && !to.empty()) return " from " + from + " to " + to;
  if (!to.empty()) return " to " + to;
  return "";
}

// " (trigger down, P0)", " (P1)", or "".
std::string why_tag(const json& d) {
  const std::string t = str(d, "trigger"), sev = str(d, "severity");
  if (!t.empty() && !sev.empty()) return " (trigger " + t + ", " + sev + ")";
  if (!t.empty()) return " (trigger " + t + ")";
  if (!sev.empty()) return " (" + sev + ")";
  return "";
}

std::string names(const json& list) {
  std::vector<std::string> n;
  if (list.is_array())
    for (const auto& x : list)
      if (x.is_string()) n.push_back(x.get<std::string>());
  std::string out;
  for (size_t i = 0; i < n.size(); ++i) out += (i == 0 ? "" : i + 1 == n.size() ? " and " : ", ") + n[i];
  return out;
}

std::string sentence(std::string s) {
  while (!s.empty() && (s.back() == ' ' || s.back() == '\n')) s.pop_back();
  if (!s.empty() && s.back() != '.' && s.back() != '!' && s.back() != '?') s += '.';
  return s;
}

}  // namespace

std::string evidence_text(const json& e) {
  if (!e.is_object()) return "";
  const std::string measure = str(e, "measure"), probe = str(e, "probe"), detail = str(e, "detail");
  const double value = num(e, "value"), threshold = num(e, "threshold"), samples = num(e, "samples"), win = num(e, "window_ms");
  const std::string on = probe.empty() ? "" : " on probe " + probe;
  const std::string over = win > 0 ? " over " + window(win) : "";
  std::string out;
  if (measure == "consecutive_failures") {
    out = number(value) + (value == 1 ? " failure" : " failures") + " in a row" + on + " (limit " + number(threshold) + ")";
  } else if (measure.rfind("failures_of_last_", 0) == 0) {
    out = number(value) + " of the last " + measure.substr(17) + " checks failed" + on + " (limit " + number(threshold) + ")";
  } else if (measure == "error_rate") {
    out = percent(value) + " of " + number(samples) + " checks failed" + over + on + " (limit " + percent(threshold) + ")";
  } else if (measure.size() > 11 && measure.compare(measure.size() - 11, 11, "_latency_ms") == 0) {
    out = measure.substr(0, measure.size() - 11) + " latency " + number(value) + " ms" + over + on + " (limit " + number(threshold) + " ms)";
  } else if (measure == "burn_rate") {
    out = "the error budget is burning " + number(value) + "x as fast as it may" + on + " (limit " + number(threshold) + "x)";
  } else if (measure == "failing_share") {
    out = percent(value) + " of the probes are failing (limit " + percent(threshold) + ")";
  } else if (measure.rfind("condition_failed:", 0) == 0) {
    out = "the condition " + measure.substr(17) + " failed" + on;
  } else if (!measure.empty()) {
    out = measure + " is " + number(value) + on + " (limit " + number(threshold) + ")";
  }
  if (!detail.empty()) out += (out.empty() ? "" : ": ") + detail;
  return out;
}

std::string notice_text(const std::string& event, const std::string& service, const json& d) {
  const std::string reason = str(d, "reason"), proposal = str(d, "proposal_id");
  const std::string prop = proposal.empty() ? "" : " (proposal " + proposal + ")";
  if (event == "breach") {
    const std::string ev = evidence_text(d.value("evidence", json()));
    return sentence(service + " is failing" + why_tag(d) + (ev.empty() ? "" : ": " + ev));
  }
  if (event == "proposed") {
    std::string t = "A rollback of " + service + releases(d) + " awaits approval" + why_tag(d) + prop;
    if (!reason.empty()) t += ": " + reason;
    const std::string ev = evidence_text(d.value("evidence", json()));
    t = sentence(t);
    if (!ev.empty()) t += " " + sentence("Evidence: " + ev);
    return t;
  }
  if (event == "reminder") return sentence("Reminder: a rollback of " + service + " still awaits approval" + prop + (reason.empty() ? "" : ": " + reason));
  if (event == "approved") {
    const std::string who = names(d.value("approvers", json()));
    return sentence("The rollback of " + service + " was approved" + (who.empty() ? "" : " by " + who) + prop + "; it runs now");
  }
  if (event == "rejected") {
    const std::string by = str(d, "by");
    return sentence("The rollback of " + service + " was rejected" + (by.empty() ? "" : " by " + by) + prop + ": nothing will be done");
  }
  if (event == "expired") return sentence("The rollback of " + service + " was not approved in time" + prop + ": nothing was done");
  if (event == "stale") return sentence("The rollback of " + service + " no longer applies" + prop + (reason.empty() ? "" : ": " + reason) + "; nothing was done");
  if (event == "executed") return sentence(service + " was rolled back" + releases(d) + why_tag(d) + "; checking that it recovers");
  if (event == "failed") {
    const std::string err = str(d, "error");
    return sentence("The rollback of " + service + releases(d) + " failed" + (err.empty() ? "" : ": " + err)) + " No automatic action until a person clears it.";
  }
  if (event == "verified") {
    const std::string to = str(d, "release_to");
    return sentence(service + " recovered" + (to.empty() ? "" : " on " + to) + (reason.empty() ? "" : ": " + reason));
  }
  if (event == "escalated")
    return sentence(service + " is escalated" + (reason.empty() ? "" : ": " + reason)) + " No automatic action until a person clears it.";
  if (event == "cleared") return sentence(service + ": " + (reason.empty() ? "the escalation was cleared" : reason));
  return sentence(service + ": " + event + (reason.empty() ? "" : ": " + reason));
}

}  // namespace lastgood::watchdog
