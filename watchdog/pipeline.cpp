#include "watchdog/pipeline.hpp"

#include <spdlog/spdlog.h>

namespace lastgood::watchdog {

namespace {
long long ms_since_epoch(policy::TimePoint t) {
  return std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
}
}  // namespace

policy::Sample to_sample(const probes::ProbeResult& r) {
  policy::Sample s;
  s.at = r.started_at;
  s.outcome = r.outcome == probes::Outcome::ok     ? policy::SampleOutcome::ok
              : r.outcome == probes::Outcome::fail ? policy::SampleOutcome::fail
                                                   : policy::SampleOutcome::error;
  s.latency_ms = r.timing.total.count();
  for (const auto& f : r.failures) s.failed_conditions |= policy::condition_bit(f.condition);
  return s;
}

policy::ServiceSpec to_policy(const config::Config& cfg, const config::Service& svc) {
  policy::ServiceSpec s;
  s.name = svc.name;
  for (const auto& p : svc.probes) s.probes.push_back({p.name, p.reference});
  s.triggers = svc.triggers;
  s.rollback = svc.rollback;
  s.authority = cfg.authority;
  s.has_deployment = svc.deployment.has_value();
  if (svc.deployment) s.migration_releases.insert(svc.deployment->migration_releases.begin(), svc.deployment->migration_releases.end());
  s.shadow = svc.shadow;
  return s;
}

nlohmann::json to_json(const policy::Evidence& e) {
  nlohmann::json j{{"measure", e.measure},   {"value", e.value},     {"threshold", e.threshold},
                   {"window_ms", e.window.count()}, {"samples", e.samples}, {"errors", e.errors},
                   {"impact", {{"probes_failing", e.probes_failing}, {"probes_watched", e.probes_watched}}}};
  if (!e.probe.empty()) j["probe"] = e.probe;
  if (!e.detail.empty()) j["detail"] = e.detail;
  return j;
}

nlohmann::json to_json(const policy::Decision& d) {
  nlohmann::json j{{"service", d.service},
                   {"trigger", d.trigger},
                   {"severity", policy::to_string(d.severity)},
                   {"kind", policy::to_string(d.kind)},
                   {"reason", d.reason},
                   {"evidence", to_json(d.evidence)},
                   {"shadow", d.shadow},
                   {"at", ms_since_epoch(d.at)}};
  j["release_from"] = d.release_from ? nlohmann::json(*d.release_from) : nlohmann::json();
  j["release_to"] = d.release_to ? nlohmann::json(*d.release_to) : nlohmann::json();
  return j;
}

Pipeline::Pipeline(const config::Config& cfg, Metrics& metrics, bool dry_run) : cfg_(cfg), metrics_(metrics), dry_run_(dry_run) {
  for (const auto& svc : cfg.services) {
    services_.push_back(std::make_unique<policy::ServicePolicy>(to_policy(cfg, svc)));
    for (const auto& t : svc.triggers) metrics_.trigger_state(svc.name, t.name, "inconclusive");
  }
}

void Pipeline::on_result(size_t service, size_t probe, const probes::ProbeResult& r, policy::TimePoint now) {
  (void)now;
  handle(service, services_[service]->on_sample(probe, to_sample(r)));
}

void Pipeline::tick(policy::TimePoint now) {
  for (size_t i = 0; i < services_.size(); ++i) handle(i, services_[i]->tick(now));
}

void Pipeline::on_release(size_t service, const std::string& id, std::optional<policy::TimePoint> deployed_at, policy::TimePoint now,
                          bool migration) {
  const auto* before = services_[service]->deployment().live();
  const std::string was = before ? before->id : "";
  handle(service, services_[service]->on_release(id, deployed_at, now, migration));
  if (was != id) {
    spdlog::info("service {}: live release {} -> {}", cfg_.services[service].name, was.empty() ? "(unknown)" : was, id);
    publish_releases(service);
  }
}

void Pipeline::publish_releases(size_t service) {
  const auto& sp = *services_[service];
  if (const auto* l = sp.deployment().live()) metrics_.release(sp.spec().name, "live", l->id);
  if (const auto* g = sp.deployment().last_good()) metrics_.release(sp.spec().name, "last_good", g->id);
}

void Pipeline::handle(size_t service, const policy::Events& ev) {
  if (ev.empty()) return;
  const auto& name = services_[service]->spec().name;
  for (const auto& t : ev.transitions) {
    metrics_.trigger_state(name, t.trigger, policy::to_string(t.to));
    if (t.to == policy::TriggerState::firing) metrics_.breach(name, t.trigger, policy::to_string(t.severity));
    auto log_level = t.to == policy::TriggerState::firing ? spdlog::level::warn : spdlog::level::info;
    spdlog::log(log_level, "trigger {}/{} ({}): {} -> {}: {}", name, t.trigger, policy::to_string(t.severity), policy::to_string(t.from),
                policy::to_string(t.to), t.evidence.describe());
  }
  for (const auto& d : ev.decisions) {
    metrics_.decision(name, policy::to_string(d.kind));
    const char* enforce = d.shadow ? " [shadow: detected, not enforced]"
                          : (d.kind == policy::DecisionKind::execute || d.kind == policy::DecisionKind::propose)
                              ? (dry_run_ ? " [dry run]" : " [not acted on: rollback execution is not in this build]")
                              : "";
    spdlog::warn("decision {}/{}: {}: {}{} | evidence: {}", name, d.trigger, policy::to_string(d.kind), d.reason, enforce,
                 d.evidence.describe());
    recent_.push_back(d);
    if (recent_.size() > 100) recent_.pop_front();
    if (sink_) sink_(d);
  }
  for (const auto& id : ev.verified_good) {
    spdlog::info("service {}: release {} verified good", name, id);
  }
  if (!ev.verified_good.empty()) publish_releases(service);
}

nlohmann::json Pipeline::service_json(size_t service, policy::TimePoint now) const {
  const auto& sp = *services_[service];
  nlohmann::json j;
  auto rel = [](const policy::Release* r) -> nlohmann::json {
    if (!r) return nullptr;
    nlohmann::json x{{"id", r->id}, {"deployed_at", ms_since_epoch(r->deployed_at)}, {"deployed_at_from_source", r->deployed_at_from_source},
                     {"migration", r->migration}};
    if (r->verified_at) x["verified_good_at"] = ms_since_epoch(*r->verified_at);
    return x;
  };
  j["live_release"] = rel(sp.deployment().live());
  j["last_good_release"] = rel(sp.deployment().last_good());
  j["rollback_target"] = rel(sp.deployment().rollback_target());
  j["watcher_healthy"] = !sp.watcher_unhealthy();
  nlohmann::json ts = nlohmann::json::array();
  for (const auto& v : sp.triggers(now)) {
    ts.push_back({{"name", v.name},
                  {"severity", policy::to_string(v.severity)},
                  {"rule", v.rule},
                  {"state", policy::to_string(v.state)},
                  {"since", ms_since_epoch(v.since)},
                  {"shadow", v.shadow},
                  {"evidence", to_json(v.evidence)}});
  }
  j["triggers"] = ts;
  return j;
}

}  // namespace lastgood::watchdog
