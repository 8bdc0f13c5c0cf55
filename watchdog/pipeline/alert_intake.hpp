#pragma once
// Alertmanager's webhook (version 4) as external triggers: each alert names its service and
// severity by label; a redelivery of the same notice counts once; each accepted alert is
// recorded (alert_received) and returned for the service's policy.
#include <cstddef>
#include <functional>
#include <list>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "policy/types.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/recorder.hpp"

namespace lastgood::watchdog {

struct AlertTrigger {
  std::size_t service;
  std::string trigger;  // "alertmanager:<alertname>"
  policy::Severity severity;
  bool firing;
  policy::Evidence evidence;
};

class AlertIntake {
 public:
  using Index = std::function<std::optional<std::size_t>(const std::string& service)>;
  void set_config(const config::Config& cfg) { cfg_ = &cfg; }
  AlertIntake(const config::Config& cfg, Recorder& rec, Metrics& metrics, Index index)
      : cfg_(&cfg), rec_(rec), metrics_(metrics), index_(std::move(index)) {}

  // Counts by outcome (accepted, duplicate, unknown_service, unknown_severity, bad_payload).
  // `problem` is set (and nothing is taken or remembered) when the payload is not Alertmanager's
  // shape. The accepted alerts are appended to `out`, in the payload's order.
  nlohmann::json take(const nlohmann::json& payload, std::string* problem, std::vector<AlertTrigger>& out);

  static constexpr std::size_t kRemembered = 10'000;

 private:
  const config::Config* cfg_;
  Recorder& rec_;
  Metrics& metrics_;
  Index index_;
  std::set<std::string> seen_;    // fingerprint|status|startsAt already taken (bounded)
  std::list<std::string> order_;  // the same keys, oldest first
};

}  // namespace lastgood::watchdog
