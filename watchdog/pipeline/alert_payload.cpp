#include "watchdog/pipeline/alert_payload.hpp"

namespace lastgood::watchdog {

using json = nlohmann::json;

// The types of Alertmanager's webhook (version 4). A payload with anything else is refused whole
// (400) and nothing of it is remembered: the sender is told, nothing throws.
std::string alert_payload_problem(const nlohmann::json& p) {
  if (!p.is_object()) return "the body must be a JSON object";
  for (const char* k : {"groupKey", "status", "receiver", "version"})
    if (p.contains(k) && !p[k].is_string()) return std::string(k) + " must be a string";
  if (!p.contains("alerts") || !p["alerts"].is_array()) return "alerts must be an array";
  for (size_t i = 0; i < p["alerts"].size(); ++i) {
    const json& a = p["alerts"][i];
    const std::string at = "alerts/" + std::to_string(i);
    if (!a.is_object()) return at + " must be an object";
    for (const char* k : {"status", "fingerprint", "startsAt", "endsAt", "generatorURL"})
      if (a.contains(k) && !a[k].is_string()) return at + "/" + k + " must be a string";
    for (const char* k : {"labels", "annotations"}) {
      if (!a.contains(k)) {
        if (std::string(k) == "labels") return at + "/labels is required";
        continue;
      }
      if (!a[k].is_object()) return at + "/" + k + " must be an object";
      for (const auto& [name, v] : a[k].items())
        if (!v.is_string()) return at + "/" + k + "/" + name.substr(0, 64) + " must be a string";
    }
  }
  return "";
}

}  // namespace lastgood::watchdog
