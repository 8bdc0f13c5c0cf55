#pragma once
// lastgood's Prometheus metrics (names: design.md). Served by our own Beast server.
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

  std::string serialize() const;
  prometheus::Registry& registry() { return *registry_; }

 private:
  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Histogram>* probe_duration_;
  prometheus::Family<prometheus::Counter>* probes_total_;
  prometheus::Family<prometheus::Gauge>* probe_success_;
  prometheus::Histogram* lateness_;
  prometheus::Counter* skipped_;
};

}  // namespace lastgood::watchdog
