#pragma once
// lastgood's Prometheus metrics (names: design.md). Served by our own Beast server.
//
// The series that exist once per probe, per service or per trigger (lastgood_probe_*,
// lastgood_probes_total, lastgood_trigger_state, lastgood_breaches_total, lastgood_decisions_total,
// lastgood_rollbacks_total, lastgood_escalations_total, lastgood_proposals_pending,
// lastgood_silenced, lastgood_release_info) live in compact cells written straight to text at
// scrape time. prometheus-cpp keeps a label map and a hash-table entry per series and copies
// every series into a MetricFamily at each Collect(): at 50 000 targets that was 6 KB a target
// resident plus 156 MB during each scrape (bench/metrics_bench.cpp, docs/benchmarks.md). The
// few process-wide series stay in prometheus-cpp's registry.
//
// Threads: every recording call is made on the event loop; the scrape's TextWriter runs on the
// API server's worker thread and reads the cells (atomics; releases under a mutex).
#include <array>
#include <atomic>
#include <cstdint>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

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

  // lastgood_probe_duration_seconds's bucket bounds.
  static constexpr std::array<double, 11> kDurationBuckets{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

  // One probe's series. Written by the event loop only (so plain load and store, no
  // read-modify-write), read by the scrape on the server's worker thread.
  struct ProbeCell {
    std::string labels;                                             // probe="…",service="…"
    std::array<std::atomic<std::uint64_t>, 3> runs{};               // ok, fail, error
    std::array<std::atomic<std::uint64_t>, kDurationBuckets.size() + 1> in_bucket{};  // not cumulative; last: above all bounds
    std::atomic<double> sum{0};
    std::atomic<std::uint8_t> success{0};
    bool http = false;                          // an http probe: lastgood_probe_http_status_code is exported
    std::atomic<int> http_status{0};            // the last run's status; 0 when no response came (as blackbox_exporter)
    std::atomic<double> cert_expiry{0};         // the last TLS run's certificate notAfter (unix seconds); 0: none seen
  };
  // Handles for one probe, made once so that recording a run needs no label lookups.
  struct ProbeHandles {
    ProbeCell* cell = nullptr;
  };
  // The series of one service: decisions, rollbacks, escalations, pending proposals, silence,
  // releases, and its triggers' states and breaches. Counters are written by the loop only;
  // strings (releases) under strings_mu_.
  static constexpr std::uint8_t kNone = 255;
  struct TriggerCell {
    std::string trigger;                                   // escaped for a label value
    std::atomic<std::uint8_t> state{kNone};                // index into ok, pending, firing, inconclusive; kNone: not yet
    std::uint8_t severity = kNone;                         // declared: its breaches are exported from 0
    std::array<std::atomic<std::uint64_t>, 3> breaches{};  // by severity P0, P1, P2
    std::atomic<TriggerCell*> next{nullptr};
  };
  struct ServiceCell {
    std::string service;     // escaped
    std::string deployment;  // escaped; "": none declared; guarded by strings_mu_
    bool declared = false;   // declare_service: its known series are exported at 0 from the start
    std::array<std::atomic<std::uint64_t>, 4> decisions{};  // alert, propose, execute, hold
    std::array<std::atomic<std::uint64_t>, 4> rollbacks{};  // ok, failed, refused, lost (of `deployment`)
    std::atomic<std::uint64_t> escalations{0};
    std::atomic<int> pending{-1};            // -1: never set
    std::atomic<std::int8_t> silenced{-1};   // -1: never set
    std::atomic<TriggerCell*> triggers{nullptr};
    TriggerCell* last_trigger = nullptr;  // the loop's, to append
    std::string live, last_good;          // escaped release ids; guarded by strings_mu_
  };
  // A series of a service family that its cell has no place for (a decision kind, outcome or
  // severity this version does not know, a rollback under a deployment kind other than the
  // declared one): its labels whole, written after the cells' rows.
  enum class Family : std::uint8_t { decisions, rollbacks, breaches };
  struct Extra {
    Family family;
    std::string labels;
    std::atomic<std::uint64_t> n{0};
  };
  ProbeHandles probe_handles(const std::string& service, const std::string& probe, const std::string& kind = "");
  // The series of a service's known label sets, at 0 from the start (Prometheus conventions: an
  // increase() sees the first event): decisions by kind, rollbacks by outcome, escalations,
  // breaches of each trigger, pending proposals.
  void declare_service(const std::string& service, const std::string& deployment_kind,
                       const std::vector<std::pair<std::string, std::string>>& triggers /* name, severity */);
  void record(const ProbeHandles& h, const probes::ProbeResult& r, double lateness_seconds);
  void skipped_runs(int n) { skipped_->Increment(n); }
  void loop_tick(double lag_seconds, size_t in_flight, size_t limit) {
    loop_lag_->Observe(lag_seconds < 0 ? 0 : lag_seconds);
    in_flight_->Set(static_cast<double>(in_flight));
    in_flight_limit_->Set(static_cast<double>(limit));
  }

  // Policy: trigger states, breaches, decisions, releases.
  void trigger_state(const std::string& service, const std::string& trigger, const char* state);
  void breach(const std::string& service, const std::string& trigger, const char* severity);
  void decision(const std::string& service, const char* kind);
  // Sets the release shown for `role` ("live" or "last_good"), removing the previous one.
  void release(const std::string& service, const std::string& role, const std::string& release);

  // Actions and the ledger.
  void rollback(const std::string& service, const std::string& deployment, const char* outcome, double seconds);
  void proposals_pending(const std::string& service, int n) { cell(service).pending.store(n, std::memory_order_relaxed); }
  void ledger_entries(std::uint64_t n) { ledger_entries_->Increment(static_cast<double>(n)); }
  void escalation(const std::string& service) { bump(cell(service).escalations); }
  void alert(const std::string& outcome) { alerts_->Add({{"outcome", outcome}}).Increment(); }
  // lastgood_silenced{service}: 1 while a silence or maintenance window covers the service.
  void silenced(const std::string& service, bool on) { cell(service).silenced.store(on ? 1 : 0, std::memory_order_relaxed); }
  // lastgood_config_last_reload_successful and _success_timestamp_seconds, as Prometheus has them.
  void config_reload(bool ok, double now_seconds) {
    reload_ok_->Set(ok ? 1 : 0);
    if (ok) reload_at_->Set(now_seconds);
  }

  // lastgood's own trouble: lastgood_internal_errors_total{where} (exported at 0 for every place
  // of kInternalErrorPlaces) and lastgood_ledger_writable. Thread-safe (prometheus-cpp).
  static constexpr const char* kInternalErrorPlaces[] = {"scheduler", "probe", "pipeline", "observe", "decide", "rollback",
                                                         "reconcile", "notify", "http", "tick", "loop", "ledger", "ledger_rotation", "ha"};
  void internal_error(const char* where) { internal_errors_->Add({{"where", where}}).Increment(); }
  void ledger_writable(bool ok) { ledger_writable_->Set(ok ? 1 : 0); }

  // Several replicas (ha.md); registered by enable_ha() only, so that a single replica exports
  // exactly what it did before.
  void enable_ha(int shards);
  void ha_owner(int shard, bool owner);
  void ha_lease_remaining(double seconds);
  void ha_transition(const char* event);           // acquired, lost, cut_off, resigned
  void ha_etcd_request(const std::string& op, const char* outcome);  // ok, refused, unavailable

  // The exposition text, written a piece at a time: at 10 000 probes it is 16 MB, which a scrape
  // held whole on top of everything else; a writer holds one piece (HttpRes::stream). Each
  // next() appends about `budget` bytes (whole series) and returns false once all is written.
  // Made and used on one thread (the scrape's); safe against the loop recording meanwhile.
  class TextWriter {
   public:
    explicit TextWriter(const Metrics& m);
    bool next(std::string& out, size_t budget);

   private:
    template <typename Cell, typename Row, typename Tail = void (*)()>
    bool rows(std::string& out, size_t stop_at, const std::vector<const Cell*>& items, const char* name, const char* help,
              const char* type, Row row, Tail tail = [] {});
    void extras(std::string& out, Family f, const char* name) const;
    void next_section() {
      ++section_;
      i_ = 0;
    }
    static constexpr int kLastSection = 14;
    const Metrics& m_;
    std::vector<const ProbeCell*> probes_;
    std::vector<const ServiceCell*> services_;
    std::vector<const Extra*> extras_;
    std::vector<prometheus::MetricFamily> families_;  // the registry's, while section 0 is written
    int section_ = 0;
    size_t i_ = 0;
  };
  std::string serialize() const;  // the whole text at once (tests, small configs)
  prometheus::Registry& registry() { return *registry_; }

 private:
  static void bump(std::atomic<std::uint64_t>& a) { a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); }
  ServiceCell& cell(const std::string& service);
  TriggerCell& trigger_cell(ServiceCell& s, const std::string& trigger);
  void bump_extra(Family f, std::string labels);

  std::shared_ptr<prometheus::Registry> registry_;
  mutable std::mutex cells_mu_;  // adding cells vs a scrape walking them
  mutable std::mutex strings_mu_;  // ServiceCell::deployment, live, last_good
  std::deque<ProbeCell> probe_cells_;
  std::deque<ServiceCell> service_cells_;
  std::deque<TriggerCell> trigger_cells_;
  std::deque<Extra> extras_;
  std::unordered_map<std::string, ServiceCell*> service_index_;  // by the name as given (the loop's)
  std::unordered_map<std::string, Extra*> extra_index_;
  prometheus::Histogram* lateness_;
  prometheus::Histogram* loop_lag_;
  prometheus::Gauge* in_flight_;
  prometheus::Gauge* in_flight_limit_;
  prometheus::Counter* stalled_runs_;
  prometheus::Histogram* rollback_duration_;
  prometheus::Gauge* reload_ok_;
  prometheus::Gauge* reload_at_;
  prometheus::Counter* ledger_entries_;
  prometheus::Family<prometheus::Counter>* alerts_;
  prometheus::Counter* skipped_;
  prometheus::Family<prometheus::Counter>* internal_errors_;
  prometheus::Gauge* ledger_writable_;
  prometheus::Family<prometheus::Gauge>* ha_owner_ = nullptr;
  prometheus::Gauge* ha_lease_ = nullptr;
  prometheus::Family<prometheus::Counter>* ha_transitions_ = nullptr;
  prometheus::Family<prometheus::Counter>* ha_etcd_ = nullptr;
};

// The standard process_* metrics (as the Go and Python clients export them): CPU, resident and
// virtual memory, open and max file descriptors, start time. Read from /proc at scrape time.
// When no descriptor is left to read /proc/self/fd with, open fds are reported as the limit.
std::string process_metrics_text();

}  // namespace lastgood::watchdog
