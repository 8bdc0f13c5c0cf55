#include "policy/types.hpp"

#include <cstdio>

namespace lastgood::policy {

const char* to_string(Severity s) {
  switch (s) {
    case Severity::P0: return "P0";
    case Severity::P1: return "P1";
    case Severity::P2: return "P2";
  }
  return "?";
}

const char* to_string(TriggerState s) {
  switch (s) {
    case TriggerState::ok: return "ok";
    case TriggerState::pending: return "pending";
    case TriggerState::firing: return "firing";
    case TriggerState::inconclusive: return "inconclusive";
  }
  return "?";
}

const char* to_string(DecisionKind k) {
  switch (k) {
    case DecisionKind::alert: return "alert";
    case DecisionKind::propose: return "propose";
    case DecisionKind::execute: return "execute";
    case DecisionKind::hold: return "hold";
  }
  return "?";
}

std::uint32_t condition_bit(const std::string& name) {
  static const char* const names[] = {"status", "body_contains", "body_matches", "header", "json", "max_latency", "cert_valid_for",
                                      "reply_prefix", "integrity", "deprecated", "tag", "timeout", "connect", "tls"};
  for (std::uint32_t i = 0; i < sizeof(names) / sizeof(names[0]); ++i)
    if (name == names[i]) return 1u << i;
  return 0;
}

std::string Evidence::describe() const {
  char buf[160];
  std::snprintf(buf, sizeof buf, "%s=%.4g (threshold %.4g", measure.c_str(), value, threshold);
  std::string out = buf;
  if (window.count() > 0) out += ", window " + std::to_string(window.count() / 1000) + "s";
  out += ", " + std::to_string(samples) + " samples";
  if (errors) out += ", " + std::to_string(errors) + " errors";
  out += ")";
  if (!probe.empty()) out += " on " + probe;
  out += "; impact " + std::to_string(probes_failing) + "/" + std::to_string(probes_watched) + " probes failing";
  if (!detail.empty()) out += "; " + detail;
  return out;
}

}  // namespace lastgood::policy
