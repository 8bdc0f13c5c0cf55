#pragma once
// The pipeline: the only place that wires probes, policy and (later) actions together. Probe
// results become policy samples; transitions and decisions are logged, counted and kept for
// the API. Until the rollback work lands, `execute` and `propose` decisions are logged only.
#include <deque>
#include <functional>
#include <memory>
#include <vector>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "policy/engine.hpp"
#include "probes/probe.hpp"
#include "watchdog/metrics.hpp"

namespace lastgood::watchdog {

policy::Sample to_sample(const probes::ProbeResult& r);
policy::ServiceSpec to_policy(const config::Config& cfg, const config::Service& svc);
nlohmann::json to_json(const policy::Evidence& e);
nlohmann::json to_json(const policy::Decision& d);

class Pipeline {
 public:
  using DecisionSink = std::function<void(const policy::Decision&)>;
  Pipeline(const config::Config& cfg, Metrics& metrics, bool dry_run);

  void on_result(size_t service, size_t probe, const probes::ProbeResult& r, policy::TimePoint now);
  void tick(policy::TimePoint now);
  void on_release(size_t service, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint now,
                  bool migration = false);
  void set_decision_sink(DecisionSink s) { sink_ = std::move(s); }

  nlohmann::json service_json(size_t service, policy::TimePoint now) const;
  const policy::ServicePolicy& policy(size_t service) const { return *services_[service]; }
  const std::deque<policy::Decision>& recent_decisions() const { return recent_; }

 private:
  void handle(size_t service, const policy::Events& ev);
  void publish_releases(size_t service);

  const config::Config& cfg_;
  Metrics& metrics_;
  bool dry_run_;
  std::vector<std::unique_ptr<policy::ServicePolicy>> services_;
  std::deque<policy::Decision> recent_;  // the last 100, for the API
  DecisionSink sink_;
};

}  // namespace lastgood::watchdog
