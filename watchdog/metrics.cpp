#include "watchdog/metrics.hpp"

#include "net/conn_budget.hpp"
#include "net/tls.hpp"

#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdio>
#include <cstring>
#include <limits>
#include <sstream>
#include <vector>
#include <algorithm>
#include <cmath>

#include <prometheus/text_serializer.h>

#include "lastgood/version.hpp"

namespace lastgood::watchdog {

Metrics::Metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  auto& r = *registry_;
  lateness_ = &prometheus::BuildHistogram()
                   .Name("lastgood_schedule_lateness_seconds")
                   .Help("How late probe runs started against their planned time.")
                   .Register(r)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1});
  loop_lag_ = &prometheus::BuildHistogram()
                   .Name("lastgood_event_loop_lag_seconds")
                   .Help("How late the event loop ran a tick due every 20 ms while probe runs were in flight: lastgood's own delay.")
                   .Register(r)
                   .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
  in_flight_ = &prometheus::BuildGauge().Name("lastgood_probe_runs_in_flight").Help("Probe runs started and not yet ended, as of the last loop tick.").Register(r).Add({});
  in_flight_limit_ = &prometheus::BuildGauge()
                          .Name("lastgood_probe_runs_in_flight_limit")
                          .Help("The cap on probe runs at once while lastgood's loop is overloaded (0: none); due runs past it start late.")
                          .Register(r)
                          .Add({});
  stalled_runs_ = &prometheus::BuildCounter()
                       .Name("lastgood_probe_runs_stalled_total")
                       .Help("Probe runs during which lastgood's own loop was behind for a quarter of the run or more: their latency was left out, and a timeout counted as error, not fail.")
                       .Register(r)
                       .Add({});
  skipped_ = &prometheus::BuildCounter()
                  .Name("lastgood_schedule_skipped_total")
                  .Help("Probe slots skipped because the previous run of the same probe was still going.")
                  .Register(r)
                  .Add({});
  rollback_duration_ = &prometheus::BuildHistogram()
                            .Name("lastgood_rollback_duration_seconds")
                            .Help("Time from action_started to action_finished.")
                            .Register(r)
                            .Add({}, prometheus::Histogram::BucketBoundaries{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 120});
  reload_ok_ = &prometheus::BuildGauge().Name("lastgood_config_last_reload_successful").Help("Whether the last configuration reload attempt was successful.").Register(r).Add({});
  reload_ok_->Set(1);
  reload_at_ = &prometheus::BuildGauge()
                    .Name("lastgood_config_last_reload_success_timestamp_seconds")
                    .Help("Timestamp of the last successful configuration reload (or the start).")
                    .Register(r)
                    .Add({});
  reload_at_->Set(static_cast<double>(std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch()).count()));
  ledger_entries_ = &prometheus::BuildCounter().Name("lastgood_ledger_entries_total").Help("Entries in the ledger (replayed and appended).").Register(r).Add({});
  alerts_ = &prometheus::BuildCounter()
                 .Name("lastgood_alerts_received_total")
                 .Help("Alertmanager alerts received, by outcome (accepted, duplicate, unknown_service, unknown_severity, bad_alert).")
                 .Register(r);
  internal_errors_ = &prometheus::BuildCounter()
                          .Name("lastgood_internal_errors_total")
                          .Help("lastgood's own errors (a bug or a resource it lacked), by place; each was logged and lastgood went on.")
                          .Register(r);
  for (const char* w : kInternalErrorPlaces) internal_errors_->Add({{"where", w}});
  ledger_writable_ = &prometheus::BuildGauge()
                          .Name("lastgood_ledger_writable")
                          .Help("1 when the last ledger append succeeded; 0 while lastgood cannot record (and therefore does not act).")
                          .Register(r)
                          .Add({});
  ledger_writable_->Set(1);
  prometheus::BuildGauge()
      .Name("lastgood_build_info")
      .Help("Build information; always 1.")
      .Register(r)
      .Add({{"version", kVersion}})
      .Set(1);
}

namespace {

constexpr const char* kTriggerStates[] = {"ok", "pending", "firing", "inconclusive"};

// A label value as the text format wants it: backslash, double quote and newline escaped.
std::string escaped(const std::string& v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\') out += "\\\\";
    else if (c == '"') out += "\\\"";
    else if (c == '\n') out += "\\n";
    else out += c;
  }
  return out;
}

// Values as prometheus-cpp's TextSerializer writes them (shortest round trip; +Inf, -Inf, Nan).
void put_value(std::string& out, double v) {
  if (std::isnan(v)) {
    out += "Nan";
  } else if (std::isinf(v)) {
    out += v < 0 ? "-Inf" : "+Inf";
  } else {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
    out.append(buf, ec == std::errc() ? end : buf);
  }
}
void put_value(std::string& out, std::uint64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  out.append(buf, end);
}

void header(std::string& out, const char* name, const char* help, const char* type) {
  out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

Metrics::ProbeHandles Metrics::probe_handles(const std::string& service, const std::string& probe, const std::string& kind) {
  std::lock_guard lock(cells_mu_);
  auto& c = probe_cells_.emplace_back();
  c.labels = "probe=\"" + escaped(probe) + "\",service=\"" + escaped(service) + "\"";
  c.http = kind == "http";
  return ProbeHandles{&c};
}

Metrics::ServiceCell& Metrics::cell(const std::string& service) {
  if (auto it = service_index_.find(service); it != service_index_.end()) return *it->second;
  std::lock_guard lock(cells_mu_);
  auto& c = service_cells_.emplace_back();
  c.service = escaped(service);
  service_index_.emplace(service, &c);
  return c;
}

Metrics::TriggerCell& Metrics::trigger_cell(ServiceCell& s, const std::string& trigger) {
  const std::string name = escaped(trigger);
  for (TriggerCell* t = s.triggers.load(std::memory_order_relaxed); t; t = t->next.load(std::memory_order_relaxed))
    if (t->trigger == name) return *t;
  std::lock_guard lock(cells_mu_);
  auto& t = trigger_cells_.emplace_back();
  t.trigger = name;
  // Published whole: a scrape walking the list sees the cell only once it is filled in.
  if (s.last_trigger) s.last_trigger->next.store(&t, std::memory_order_release);
  else s.triggers.store(&t, std::memory_order_release);
  s.last_trigger = &t;
  return t;
}

void Metrics::bump_extra(Family f, std::string labels) {
  std::string key = std::to_string(static_cast<int>(f)) + labels;
  auto it = extra_index_.find(key);
  if (it == extra_index_.end()) {
    std::lock_guard lock(cells_mu_);
    auto& e = extras_.emplace_back();
    e.family = f;
    e.labels = std::move(labels);
    it = extra_index_.emplace(std::move(key), &e).first;
  }
  bump(it->second->n);
}

namespace {
constexpr const char* kDecisionKinds[] = {"alert", "propose", "execute", "hold"};
constexpr const char* kRollbackOutcomes[] = {"ok", "failed", "refused", "lost"};
constexpr const char* kSeverities[] = {"P0", "P1", "P2"};
template <size_t N>
size_t index_of(const char* const (&names)[N], std::string_view v) {
  size_t i = 0;
  while (i < N && v != names[i]) ++i;
  return i;  // N: not one of them
}
}  // namespace

void Metrics::declare_service(const std::string& service, const std::string& deployment_kind,
                              const std::vector<std::pair<std::string, std::string>>& triggers) {
  ServiceCell& c = cell(service);
  if (c.deployment.empty()) {
    std::lock_guard lock(strings_mu_);  // a scrape may be reading it
    c.deployment = escaped(deployment_kind);
  }
  if (c.pending.load(std::memory_order_relaxed) < 0) c.pending.store(0, std::memory_order_relaxed);
  for (const auto& [trigger, severity] : triggers) {
    const size_t k = index_of(kSeverities, severity);
    if (k < 3) trigger_cell(c, trigger).severity = static_cast<std::uint8_t>(k);
  }
  c.declared = true;
}

void Metrics::record(const ProbeHandles& h, const probes::ProbeResult& r, double lateness_seconds) {
  auto bump = [](std::atomic<std::uint64_t>& a) { a.store(a.load(std::memory_order_relaxed) + 1, std::memory_order_relaxed); };
  ProbeCell& c = *h.cell;
  const double seconds = r.timing.total.count() / 1000.0;
  size_t b = 0;
  while (b < kDurationBuckets.size() && seconds > kDurationBuckets[b]) ++b;
  bump(c.in_bucket[b]);
  c.sum.store(c.sum.load(std::memory_order_relaxed) + seconds, std::memory_order_relaxed);
  bump(c.runs[static_cast<size_t>(r.outcome)]);
  c.success.store(r.outcome == probes::Outcome::ok ? 1 : 0, std::memory_order_relaxed);
  if (c.http) c.http_status.store(r.http_status.value_or(0), std::memory_order_relaxed);
  if (r.http && r.http->cert_expires_in_s) {
    const double started = std::chrono::duration<double>(r.started_at.time_since_epoch()).count();
    c.cert_expiry.store(started + static_cast<double>(*r.http->cert_expires_in_s), std::memory_order_relaxed);
  }
  lateness_->Observe(lateness_seconds < 0 ? 0 : lateness_seconds);
  if (r.loop_stall_ms > 0) stalled_runs_->Increment();
}

void Metrics::trigger_state(const std::string& service, const std::string& trigger, const char* state) {
  std::uint8_t index = 0;
  while (index < 3 && std::string_view(kTriggerStates[index]) != state) ++index;
  trigger_cell(cell(service), trigger).state.store(index, std::memory_order_relaxed);
}

void Metrics::breach(const std::string& service, const std::string& trigger, const char* severity) {
  const size_t k = index_of(kSeverities, severity);
  if (k < 3) return bump(trigger_cell(cell(service), trigger).breaches[k]);
  bump_extra(Family::breaches, "service=\"" + escaped(service) + "\",severity=\"" + escaped(severity) + "\",trigger=\"" + escaped(trigger) + "\"");
}

void Metrics::decision(const std::string& service, const char* kind) {
  const size_t k = index_of(kDecisionKinds, kind);
  if (k < 4) return bump(cell(service).decisions[k]);
  bump_extra(Family::decisions, "kind=\"" + escaped(kind) + "\",service=\"" + escaped(service) + "\"");
}

void Metrics::release(const std::string& service, const std::string& role, const std::string& release) {
  ServiceCell& c = cell(service);
  std::lock_guard lock(strings_mu_);
  if (role == "live") c.live = escaped(release);
  else if (role == "last_good") c.last_good = escaped(release);
}

void Metrics::rollback(const std::string& service, const std::string& deployment, const char* outcome, double seconds) {
  rollback_duration_->Observe(seconds);
  ServiceCell& c = cell(service);
  const size_t k = index_of(kRollbackOutcomes, outcome);
  if (k < 4 && !c.deployment.empty() && c.deployment == escaped(deployment)) return bump(c.rollbacks[k]);
  bump_extra(Family::rollbacks,
             "deployment=\"" + escaped(deployment) + "\",outcome=\"" + escaped(outcome) + "\",service=\"" + escaped(service) + "\"");
}

Metrics::TextWriter::TextWriter(const Metrics& m) : m_(m) {
  // The cells are listed under the lock and written without it: a scrape takes tens of
  // milliseconds at 10 000 probes, on a low-priority thread, and the loop may add a cell
  // meanwhile (an external trigger's first transition). Cells are never removed or moved.
  std::lock_guard lock(m.cells_mu_);
  probes_.reserve(m.probe_cells_.size());
  for (const auto& c : m.probe_cells_) probes_.push_back(&c);
  services_.reserve(m.service_cells_.size());
  for (const auto& c : m.service_cells_) services_.push_back(&c);
  for (const auto& e : m.extras_) extras_.push_back(&e);
}

// One family's series, resumable: the header first, then one item's rows after another until the
// piece is full (at least one item per call, whatever the budget), then `tail` once. True when
// items remain.
template <typename Cell, typename Row, typename Tail>
bool Metrics::TextWriter::rows(std::string& out, size_t stop_at, const std::vector<const Cell*>& items, const char* name,
                               const char* help, const char* type, Row row, Tail tail) {
  if (i_ == 0) header(out, name, help, type);
  for (const size_t first = i_; i_ < items.size() && (i_ == first || out.size() < stop_at); ++i_) row(*items[i_]);
  if (i_ < items.size()) return true;
  tail();
  next_section();
  return false;
}

bool Metrics::TextWriter::next(std::string& out, size_t budget) {
  const auto load = [](const auto& a) { return a.load(std::memory_order_relaxed); };
  const size_t stop_at = out.size() + budget;
  bool more = false;
  for (;;) {
    switch (section_) {
      case 0:  // prometheus-cpp's families: a few dozen series, a family at a time
        if (i_ == 0) families_ = m_.registry_->Collect();
        while (i_ < families_.size() && out.size() < stop_at)
          out += prometheus::TextSerializer{}.Serialize(std::vector<prometheus::MetricFamily>{std::move(families_[i_++])});
        if (i_ < families_.size()) return true;
        families_.clear();
        next_section();
        break;
      case 1:  // the process_* family, read from /proc
        out += process_metrics_text();
        next_section();
        break;
      case 2:
        more = rows(out, stop_at, probes_, "lastgood_probe_duration_seconds", "Duration of probe runs.", "histogram", [&](const ProbeCell& c) {
          std::uint64_t count = 0;
          for (const auto& b : c.in_bucket) count += load(b);
          out.append("lastgood_probe_duration_seconds_count{").append(c.labels).append("} ");
          put_value(out, count);
          out.append("\nlastgood_probe_duration_seconds_sum{").append(c.labels).append("} ");
          put_value(out, load(c.sum));
          out += '\n';
          std::uint64_t cumulative = 0;
          for (size_t b = 0; b <= kDurationBuckets.size(); ++b) {
            cumulative += load(c.in_bucket[b]);
            out.append("lastgood_probe_duration_seconds_bucket{").append(c.labels).append(",le=\"");
            if (b < kDurationBuckets.size()) put_value(out, kDurationBuckets[b]);
            else out += "+Inf";
            out.append("\"} ");
            put_value(out, cumulative);
            out += '\n';
          }
        });
        break;
      case 3:
        more = rows(out, stop_at, probes_, "lastgood_probes_total", "Probe runs by outcome (ok, fail, error).", "counter", [&](const ProbeCell& c) {
          for (size_t o = 0; o < 3; ++o) {
            out.append("lastgood_probes_total{outcome=\"").append(probes::to_string(static_cast<probes::Outcome>(o))).append("\",");
            out.append(c.labels).append("} ");
            put_value(out, load(c.runs[o]));
            out += '\n';
          }
        });
        break;
      case 4:
        more = rows(out, stop_at, probes_, "lastgood_probe_success", "1 when the probe's last run was ok, else 0.", "gauge", [&](const ProbeCell& c) {
          out.append("lastgood_probe_success{").append(c.labels).append(load(c.success) ? "} 1\n" : "} 0\n");
        });
        break;
      case 5:
        more = rows(out, stop_at, services_, "lastgood_trigger_state",
                    "1 for the current state of each trigger (ok, pending, firing, inconclusive), else 0.", "gauge", [&](const ServiceCell& c) {
                      for (const TriggerCell* t = c.triggers.load(std::memory_order_acquire); t; t = t->next.load(std::memory_order_acquire)) {
                        const auto state = load(t->state);
                        if (state == kNone) continue;
                        for (std::uint8_t k = 0; k < 4; ++k) {
                          out.append("lastgood_trigger_state{service=\"").append(c.service).append("\",state=\"").append(kTriggerStates[k]);
                          out.append("\",trigger=\"").append(t->trigger).append(state == k ? "\"} 1\n" : "\"} 0\n");
                        }
                      }
                    });
        break;
      case 6:
        more = rows(out, stop_at, probes_, "lastgood_probe_http_status_code",
                    "The HTTP status of the probe's last run; 0 when no response came (as blackbox_exporter's probe_http_status_code).", "gauge",
                    [&](const ProbeCell& c) {
                      if (!c.http) return;
                      out.append("lastgood_probe_http_status_code{").append(c.labels).append("} ");
                      put_value(out, static_cast<std::uint64_t>(std::max(0, load(c.http_status))));
                      out += '\n';
                    });
        break;
      case 7:
        more = rows(out, stop_at, probes_, "lastgood_probe_tls_cert_expiry_timestamp_seconds",
                    "When the certificate the probe's last TLS run saw expires, in unix seconds (as blackbox_exporter's probe_ssl_earliest_cert_expiry).",
                    "gauge", [&](const ProbeCell& c) {
                      const double at = load(c.cert_expiry);
                      if (at <= 0) return;
                      out.append("lastgood_probe_tls_cert_expiry_timestamp_seconds{").append(c.labels).append("} ");
                      put_value(out, std::floor(at));
                      out += '\n';
                    });
        break;
      case 8:
        more = rows(
            out, stop_at, services_, "lastgood_decisions_total", "Decisions made, by kind (alert, propose, execute, hold).", "counter",
            [&](const ServiceCell& c) {
              for (size_t k = 0; k < 4; ++k) {
                const auto n = load(c.decisions[k]);
                if (n == 0 && !c.declared) continue;
                out.append("lastgood_decisions_total{kind=\"").append(kDecisionKinds[k]).append("\",service=\"").append(c.service).append("\"} ");
                put_value(out, n);
                out += '\n';
              }
            },
            [&] { extras(out, Family::decisions, "lastgood_decisions_total"); });
        break;
      case 9:
        more = rows(
            out, stop_at, services_, "lastgood_rollbacks_total",
            "Rollbacks carried out, by outcome (ok, failed, refused: the live release was no longer the one to roll back from; lost: "
            "its outcome was not recorded).",
            "counter",
            [&](const ServiceCell& c) {
              std::lock_guard lock(m_.strings_mu_);
              if (c.deployment.empty()) return;
              for (size_t k = 0; k < 4; ++k) {
                const auto n = load(c.rollbacks[k]);
                if (n == 0 && (!c.declared || k == 3)) continue;
                out.append("lastgood_rollbacks_total{deployment=\"").append(c.deployment).append("\",outcome=\"").append(kRollbackOutcomes[k]);
                out.append("\",service=\"").append(c.service).append("\"} ");
                put_value(out, n);
                out += '\n';
              }
            },
            [&] { extras(out, Family::rollbacks, "lastgood_rollbacks_total"); });
        break;
      case 10:
        more = rows(out, stop_at, services_, "lastgood_escalations_total",
                    "Rollbacks that failed or did not bring recovery; the service waits for a person.", "counter", [&](const ServiceCell& c) {
                      const auto n = load(c.escalations);
                      if (n == 0 && !c.declared) return;
                      out.append("lastgood_escalations_total{service=\"").append(c.service).append("\"} ");
                      put_value(out, n);
                      out += '\n';
                    });
        break;
      case 11:
        more = rows(out, stop_at, services_, "lastgood_proposals_pending", "Rollback proposals waiting for approval, by service.", "gauge",
                    [&](const ServiceCell& c) {
                      const int n = load(c.pending);
                      if (n < 0) return;
                      out.append("lastgood_proposals_pending{service=\"").append(c.service).append("\"} ");
                      put_value(out, static_cast<std::uint64_t>(n));
                      out += '\n';
                    });
        break;
      case 12:
        more = rows(out, stop_at, services_, "lastgood_silenced", "1 while a silence or maintenance window holds the service's decisions.",
                    "gauge", [&](const ServiceCell& c) {
                      const auto on = load(c.silenced);
                      if (on < 0) return;
                      out.append("lastgood_silenced{service=\"").append(c.service).append(on ? "\"} 1\n" : "\"} 0\n");
                    });
        break;
      case 13:
        more = rows(
            out, stop_at, services_, "lastgood_breaches_total", "Triggers that began firing.", "counter",
            [&](const ServiceCell& c) {
              for (const TriggerCell* t = c.triggers.load(std::memory_order_acquire); t; t = t->next.load(std::memory_order_acquire))
                for (size_t k = 0; k < 3; ++k) {
                  const auto n = load(t->breaches[k]);
                  if (n == 0 && t->severity != k) continue;
                  out.append("lastgood_breaches_total{service=\"").append(c.service).append("\",severity=\"").append(kSeverities[k]);
                  out.append("\",trigger=\"").append(t->trigger).append("\"} ");
                  put_value(out, n);
                  out += '\n';
                }
            },
            [&] { extras(out, Family::breaches, "lastgood_breaches_total"); });
        break;
      case 14:
        more = rows(out, stop_at, services_, "lastgood_release_info", "The live and the last verified good release of each service; always 1.",
                    "gauge", [&](const ServiceCell& c) {
                      std::lock_guard lock(m_.strings_mu_);
                      if (!c.last_good.empty())
                        out.append("lastgood_release_info{release=\"").append(c.last_good).append("\",role=\"last_good\",service=\"").append(c.service).append("\"} 1\n");
                      if (!c.live.empty())
                        out.append("lastgood_release_info{release=\"").append(c.live).append("\",role=\"live\",service=\"").append(c.service).append("\"} 1\n");
                    });
        break;
      default:
        return false;
    }
    if (more) return true;
    if (out.size() >= stop_at) return section_ <= kLastSection;
  }
}

void Metrics::TextWriter::extras(std::string& out, Family f, const char* name) const {
  for (const Extra* e : extras_)
    if (e->family == f) {
      out.append(name).append("{").append(e->labels).append("} ");
      put_value(out, e->n.load(std::memory_order_relaxed));
      out += '\n';
    }
}

std::string process_metrics_text() {
  std::string out;
  auto gauge = [&](const char* name, const char* help, const char* type, double v) {
    out.append("# HELP ").append(name).append(" ").append(help).append("\n# TYPE ").append(name).append(" ").append(type).append("\n");
    out.append(name).append(" ");
    put_value(out, v);
    out += "\n";
  };
  rlimit rl{};
  const bool have_limit = ::getrlimit(RLIMIT_NOFILE, &rl) == 0;
  double open_fds = -1;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    double n = 0;
    while (const dirent* e = ::readdir(d))
      if (e->d_name[0] != '.') ++n;
    ::closedir(d);
    open_fds = n - 1;  // the directory's own descriptor
  } else if (have_limit && (errno == EMFILE || errno == ENFILE)) {
    open_fds = static_cast<double>(rl.rlim_cur);  // none left to look with: at the limit
  }
  if (open_fds >= 0) gauge("process_open_fds", "Number of open file descriptors.", "gauge", open_fds);
  if (have_limit)
    gauge("process_max_fds", "Maximum number of open file descriptors.", "gauge",
          rl.rlim_cur == RLIM_INFINITY ? std::numeric_limits<double>::infinity() : static_cast<double>(rl.rlim_cur));
  // /proc/self/stat: utime (14), stime (15), starttime (22), vsize (23), rss (24), in clock ticks and pages.
  if (FILE* f = std::fopen("/proc/self/stat", "re")) {
    char buf[1024];
    const size_t n = std::fread(buf, 1, sizeof buf - 1, f);
    std::fclose(f);
    buf[n] = 0;
    const char* p = std::strrchr(buf, ')');  // the command name may hold spaces
    std::vector<std::string> fields;
    if (p) {
      std::istringstream in(p + 2);
      std::string x;
      while (in >> x) fields.push_back(x);
    }
    // fields[0] is field 3 (state)
    auto field = [&](size_t k) { return k - 3 < fields.size() ? std::strtod(fields[k - 3].c_str(), nullptr) : 0.0; };
    if (fields.size() >= 22) {
      const double hz = static_cast<double>(::sysconf(_SC_CLK_TCK));
      const double page = static_cast<double>(::sysconf(_SC_PAGESIZE));
      gauge("process_cpu_seconds_total", "Total user and system CPU time spent in seconds.", "counter", (field(14) + field(15)) / hz);
      gauge("process_virtual_memory_bytes", "Virtual memory size in bytes.", "gauge", field(23));
      gauge("process_resident_memory_bytes", "Resident memory size in bytes.", "gauge", field(24) * page);
      static const double boot = [] {
        double b = 0;
        if (FILE* s = std::fopen("/proc/stat", "re")) {
          char line[256];
          while (std::fgets(line, sizeof line, s))
            if (std::strncmp(line, "btime ", 6) == 0) b = std::strtod(line + 6, nullptr);
          std::fclose(s);
        }
        return b;
      }();
      gauge("process_start_time_seconds", "Start time of the process since unix epoch in seconds.", "gauge", boot + field(22) / hz);
    }
  }
  out.append("# HELP lastgood_tls_handshakes_total TLS handshakes of lastgood's HTTP connections, by whether they resumed a session.\n"
             "# TYPE lastgood_tls_handshakes_total counter\n");
  out.append("lastgood_tls_handshakes_total{resumed=\"false\"} ").append(std::to_string(net::g_tls_handshakes.full.load())).append("\n");
  out.append("lastgood_tls_handshakes_total{resumed=\"true\"} ").append(std::to_string(net::g_tls_handshakes.resumed.load())).append("\n");
  // The probes' share of the descriptors (net/conn_budget.hpp).
  if (const net::ConnectionBudget* b = net::g_probe_budget.load()) {
    out.append("# HELP lastgood_probe_connections Sockets probes hold: kept alive between runs, or in a request.\n"
               "# TYPE lastgood_probe_connections gauge\n");
    out.append("lastgood_probe_connections{state=\"kept\"} ").append(std::to_string(b->kept())).append("\n");
    out.append("lastgood_probe_connections{state=\"in_request\"} ").append(std::to_string(b->in_use())).append("\n");
    gauge("lastgood_probe_connections_max", "Sockets probes may hold: the open-files limit less the API's connections and a margin.", "gauge",
          static_cast<double>(b->capacity()));
    gauge("lastgood_probe_connection_evictions_total", "Kept-alive probe connections closed to make room for another probe's.", "counter",
          static_cast<double>(b->evictions()));
    gauge("lastgood_probe_connection_refusals_total", "Probe runs refused a socket because every one in the budget was in a request (the run is an error).",
          "counter", static_cast<double>(b->refusals()));
  }
  return out;
}

std::string Metrics::serialize() const {
  TextWriter w(*this);
  std::string out;
  while (w.next(out, std::string::npos / 2)) {
  }
  return out;
}

void Metrics::enable_ha(int shards) {
  if (ha_owner_) return;
  auto& r = *registry_;
  ha_owner_ = &prometheus::BuildGauge()
                   .Name("lastgood_ha_owner")
                   .Help("1 while this replica owns the shard (it alone may act on the shard's services), else 0.")
                   .Register(r);
  for (int k = 0; k < shards; ++k) ha_owner_->Add({{"shard", std::to_string(k)}}).Set(0);
  ha_lease_ = &prometheus::BuildGauge()
                   .Name("lastgood_ha_lease_remaining_seconds")
                   .Help("Seconds until this replica's local deadline (last keepalive + TTL - 1 s); 0 or less: it owns nothing.")
                   .Register(r)
                   .Add({});
  ha_transitions_ = &prometheus::BuildCounter()
                         .Name("lastgood_ha_transitions_total")
                         .Help("Ownership changes of this replica, by event (acquired, lost, cut_off, resigned).")
                         .Register(r);
  for (const char* e : {"acquired", "lost", "cut_off", "resigned"}) ha_transitions_->Add({{"event", e}});
  ha_etcd_ = &prometheus::BuildCounter()
                  .Name("lastgood_ha_etcd_requests_total")
                  .Help("Requests to etcd, by operation and outcome (ok, refused: etcd answered no; unavailable: no answer in time).")
                  .Register(r);
  for (const char* op : {"grant", "keepalive", "revoke", "range", "txn"})
    for (const char* o : {"ok", "refused", "unavailable"}) ha_etcd_->Add({{"op", op}, {"outcome", o}});
}

void Metrics::ha_owner(int shard, bool owner) {
  if (ha_owner_) ha_owner_->Add({{"shard", std::to_string(shard)}}).Set(owner ? 1 : 0);
}
void Metrics::ha_lease_remaining(double seconds) {
  if (ha_lease_) ha_lease_->Set(seconds);
}
void Metrics::ha_transition(const char* event) {
  if (ha_transitions_) ha_transitions_->Add({{"event", event}}).Increment();
}
void Metrics::ha_etcd_request(const std::string& op, const char* outcome) {
  if (ha_etcd_) ha_etcd_->Add({{"op", op}, {"outcome", outcome}}).Increment();
}

}  // namespace lastgood::watchdog
