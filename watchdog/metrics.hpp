#pragma once
// lastgood's Prometheus metrics (names: design.md). Served by our own Beast server.
#include <map>
#include <memory>
#include <string>

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include "probes/probe.hpp"

namespace lastgood::watchdog {

class Metrics {
 public:
  Metrics();

  // Handles for one probe, made once so that recording a run needs no label lookups.
  struct ProbeHandles {
    prometheus::Histogram* duration;
    prometheus::Counter* ok;
    prometheus::Counter* fail;
    prometheus::Counter* error;
    prometheus::Gauge* success;
  };
  ProbeHandles probe_handles(const std::string& service, const std::string& probe);
  void record(const ProbeHandles& h, const probes::ProbeResult& r, double lateness_seconds);
  void skipped_runs(int n) { skipped_->Increment(n); }

  // Policy: trigger states, breaches, decisions, releases.
  void trigger_state(const std::string& service, const std::string& trigger, const char* state);
  void breach(const std::string& service, const std::string& trigger, const char* severity);
  void decision(const std::string& service, const char* kind);
  // Sets the release shown for `role` ("live" or "last_good"), removing the previous one.
  void release(const std::string& service, const std::string& role, const std::string& release);

  // Actions and the ledger.
  void rollback(const std::string& service, const std::string& deployment, const char* outcome, double seconds);
  void proposals_pending(int n) { proposals_pending_->Set(n); }
  void ledger_entries(std::uint64_t n) { ledger_entries_->Increment(static_cast<double>(n)); }
  void escalation(const std::string& service) { escalations_->Add({{"service", service}}).Increment(); }
  void alert(const std::string& outcome) { alerts_->Add({{"outcome", outcome}}).Increment(); }

  std::string serialize() const;
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* probe_duration_;
  prometheus::Family<prometheus::Counter>* probes_total_;
  prometheus::Family<prometheus::Gauge>* probe_success_;
  prometheus::Family<prometheus::Gauge>* trigger_state_;
  prometheus::Family<prometheus::Counter>* breaches_;
  prometheus::Family<prometheus::Counter>* decisions_;
  prometheus::Family<prometheus::Gauge>* release_info_;
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> release_shown_;
  prometheus::Histogram* lateness_;
  prometheus::Family<prometheus::Counter>* rollbacks_;
  prometheus::Histogram* rollback_duration_;
  prometheus::Gauge* proposals_pending_;
  prometheus::Counter* ledger_entries_;
  prometheus::Family<prometheus::Counter>* escalations_;
  prometheus::Family<prometheus::Counter>* alerts_;
  prometheus::Counter* skipped_;
};

}  // namespace lastgood::watchdog
