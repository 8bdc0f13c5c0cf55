#include "watchdog/state/records.hpp"

#include <chrono>

namespace lastgood::watchdog {

using nlohmann::json;

json to_json(const policy::Evidence& e) {
  json j{{"measure", e.measure},          {"value", e.value},     {"threshold", e.threshold},
         {"window_ms", e.window.count()}, {"samples", e.samples}, {"errors", e.errors},
         {"impact", {{"probes_failing", e.probes_failing}, {"probes_watched", e.probes_watched}}}};
  if (!e.probe.empty()) j["probe"] = e.probe;
  if (!e.detail.empty()) j["detail"] = e.detail;
  return j;
}

json to_json(const policy::Decision& d) {
  json j{{"service", d.service},
         {"trigger", d.trigger},
         {"severity", policy::to_string(d.severity)},
         {"kind", policy::to_string(d.kind)},
         {"reason", d.reason},
         {"evidence", to_json(d.evidence)},
         {"shadow", d.shadow},
         {"at", std::chrono::duration_cast<std::chrono::milliseconds>(d.at.time_since_epoch()).count()}};
  j["release_from"] = d.release_from ? json(*d.release_from) : json();
  j["release_to"] = d.release_to ? json(*d.release_to) : json();
  if (d.origin != "policy") {
    j["origin"] = d.origin;
    j["requested_by"] = d.requested_by;
  }
  if (d.unverified_target) j["unverified_target"] = true;
  return j;
}

namespace {
policy::Evidence evidence_from_json(const json& e) {
  policy::Evidence out;
  if (!e.is_object()) return out;
  auto str = [&](const char* k) { return e.contains(k) && e[k].is_string() ? e[k].get<std::string>() : std::string(); };
  auto num = [&](const json& o, const char* k) { return o.is_object() && o.contains(k) && o[k].is_number() ? o[k].get<double>() : 0.0; };
  out.probe = str("probe");
  out.measure = str("measure");
  out.detail = str("detail");
  out.value = num(e, "value");
  out.threshold = num(e, "threshold");
  out.window = policy::Duration(static_cast<long long>(num(e, "window_ms")));
  out.samples = static_cast<int>(num(e, "samples"));
  out.errors = static_cast<int>(num(e, "errors"));
  const json impact = e.contains("impact") ? e["impact"] : json();
  out.probes_failing = static_cast<int>(num(impact, "probes_failing"));
  out.probes_watched = static_cast<int>(num(impact, "probes_watched"));
  return out;
}
}  // namespace

policy::Decision decision_from_json(const std::string& service, const json& d) {
  policy::Decision out;
  out.service = service;
  if (!d.is_object()) return out;
  out.trigger = d.value("trigger", "");
  out.reason = d.value("reason", "");
  out.kind = policy::DecisionKind::propose;
  const std::string severity = d.value("severity", "P1");
  out.severity = severity == "P0" ? policy::Severity::P0 : severity == "P2" ? policy::Severity::P2 : policy::Severity::P1;
  if (d.contains("release_from") && d["release_from"].is_string()) out.release_from = d["release_from"].get<std::string>();
  if (d.contains("release_to") && d["release_to"].is_string()) out.release_to = d["release_to"].get<std::string>();
  if (d.contains("evidence")) out.evidence = evidence_from_json(d["evidence"]);  // what the page shows after a restart
  if (d.contains("origin") && d["origin"].is_string()) out.origin = d["origin"].get<std::string>();
  if (d.contains("requested_by") && d["requested_by"].is_string()) out.requested_by = d["requested_by"].get<std::string>();
  out.unverified_target = d.value("unverified_target", false) == true;
  return out;
}

}  // namespace lastgood::watchdog
