#include "watchdog/metrics.hpp"

#include <prometheus/text_serializer.h>

#include "lastgood/version.hpp"

namespace lastgood::watchdog {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  probe_duration_ = &prometheus::BuildHistogram().Name("lastgood_probe_duration_seconds").Help("Duration of probe runs.").Register(r);
  probes_total_ = &prometheus::BuildCounter().Name("lastgood_probes_total").Help("Probe runs by outcome (ok, fail, error).").Register(r);
  probe_success_ = &prometheus::BuildGauge().Name("lastgood_probe_success").Help("1 when the probe's last run was ok, else 0.").Register(r);
  trigger_state_ = &prometheus::BuildGauge()
                        .Name("lastgood_trigger_state")
                        .Help("1 for the current state of each trigger (ok, pending, firing, inconclusive), else 0.")
                        .Register(r);
  breaches_ = &prometheus::BuildCounter().Name("lastgood_breaches_total").Help("Triggers that began firing.").Register(r);
  decisions_ = &prometheus::BuildCounter().Name("lastgood_decisions_total").Help("Decisions made, by kind (alert, propose, execute, hold).").Register(r);
  release_info_ = &prometheus::BuildGauge()
                       .Name("lastgood_release_info")
                       .Help("The live and the last verified good release of each service; always 1.")
                       .Register(r);
  lateness_ = &prometheus::BuildHistogram()
                   .Name("lastgood_schedule_lateness_seconds")
                   .Help("How late probe runs started against their planned time.")
                   .Register(r)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1});
  skipped_ = &prometheus::BuildCounter()
                  .Name("lastgood_schedule_skipped_total")
                  .Help("Probe slots skipped because the previous run of the same probe was still going.")
                  .Register(r)
                  .Add({});
  rollbacks_ = &prometheus::BuildCounter().Name("lastgood_rollbacks_total").Help("Rollbacks carried out, by outcome (ok, failed).").Register(r);
  rollback_duration_ = &prometheus::BuildHistogram()
                            .Name("lastgood_rollback_duration_seconds")
                            .Help("Time from action_started to action_finished.")
                            .Register(r)
                            .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 120});
  proposals_pending_ = &prometheus::BuildGauge().Name("lastgood_proposals_pending").Help("Rollback proposals waiting for approval.").Register(r).Add({});
  ledger_entries_ = &prometheus::BuildCounter().Name("lastgood_ledger_entries_total").Help("Entries in the ledger (replayed and appended).").Register(r).Add({});
  escalations_ = &prometheus::BuildCounter()
                      .Name("lastgood_escalations_total")
                      .Help("Rollbacks that failed or did not bring recovery; the service waits for a person.")
                      .Register(r);
  alerts_ = &prometheus::BuildCounter()
                 .Name("lastgood_alerts_received_total")
                 .Help("Alertmanager alerts received, by outcome (accepted, duplicate, unknown_service, unknown_severity, bad_alert).")
                 .Register(r);
  prometheus::BuildGauge()
      .Name("lastgood_build_info")
      .Help("Build information; always 1.")
      .Register(r)
      .Add({{"version", kVersion}})
      .Set(1);
}

Metrics::ProbeHandles Metrics::probe_handles(const std::string& service, const std::string& probe) {
  static const prometheus::Histogram::BucketBoundaries buckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
  ProbeHandles h{};
  h.duration = &probe_duration_->Add({{"service", service}, {"probe", probe}}, buckets);
  h.ok = &probes_total_->Add({{"service", service}, {"probe", probe}, {"outcome", "ok"}});
  h.fail = &probes_total_->Add({{"service", service}, {"probe", probe}, {"outcome", "fail"}});
  h.error = &probes_total_->Add({{"service", service}, {"probe", probe}, {"outcome", "error"}});
  h.success = &probe_success_->Add({{"service", service}, {"probe", probe}});
  return h;
}

void Metrics::record(const ProbeHandles& h, const probes::ProbeResult& r, double lateness_seconds) {
  h.duration->Observe(r.timing.total.count() / 1000.0);
  switch (r.outcome) {
    case probes::Outcome::ok: h.ok->Increment(); break;
    case probes::Outcome::fail: h.fail->Increment(); break;
    case probes::Outcome::error: h.error->Increment(); break;
  }
  h.success->Set(r.outcome == probes::Outcome::ok ? 1 : 0);
  lateness_->Observe(lateness_seconds < 0 ? 0 : lateness_seconds);
}

void Metrics::trigger_state(const std::string& service, const std::string& trigger, const char* state) {
  for (const char* st : {"ok", "pending", "firing", "inconclusive"})
    trigger_state_->Add({{"service", service}, {"trigger", trigger}, {"state", st}}).Set(std::string_view(st) == state ? 1 : 0);
}

void Metrics::breach(const std::string& service, const std::string& trigger, const char* severity) {
  breaches_->Add({{"service", service}, {"trigger", trigger}, {"severity", severity}}).Increment();
}

void Metrics::decision(const std::string& service, const char* kind) { decisions_->Add({{"service", service}, {"kind", kind}}).Increment(); }

void Metrics::release(const std::string& service, const std::string& role, const std::string& release) {
  auto key = std::make_pair(service, role);
  if (auto it = release_shown_.find(key); it != release_shown_.end()) {
    release_info_->Remove(it->second);
    release_shown_.erase(it);
  }
  auto& g = release_info_->Add({{"service", service}, {"release", release}, {"role", role}});
  g.Set(1);
  release_shown_[key] = &g;
}

void Metrics::rollback(const std::string& service, const std::string& deployment, const char* outcome, double seconds) {
  rollbacks_->Add({{"service", service}, {"deployment", deployment}, {"outcome", outcome}}).Increment();
  rollback_duration_->Observe(seconds);
}

std::string Metrics::serialize() const { return prometheus::TextSerializer{}.Serialize(registry_->Collect()); }

}  // namespace lastgood::watchdog
