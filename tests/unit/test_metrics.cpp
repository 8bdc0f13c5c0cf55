// The per-probe and per-trigger series are written by lastgood's own text writer, not by
// prometheus-cpp (memory: see watchdog/metrics.hpp). Their text must be exactly what
// prometheus-cpp's TextSerializer writes for the same series, so scrapers and promtool see no
// difference.
#include <fcntl.h>
#include <unistd.h>

#include <catch2/catch.hpp>

#include <algorithm>
#include <sstream>

#include <prometheus/counter.h>
#include <prometheus/gauge.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "watchdog/metrics.hpp"

using lastgood::probes::Outcome;
using lastgood::probes::ProbeResult;
using lastgood::watchdog::Metrics;

namespace {

// The lines of the named families (HELP, TYPE and samples), sorted: prometheus-cpp writes a
// family's series in hash-table order.
std::vector<std::string> families(const std::string& text, std::initializer_list<std::string> names) {
  std::vector<std::string> out;
  for (const auto& name : names) {
    std::istringstream in(text);
    std::string line;
    while (std::getline(in, line)) {
      auto starts = [&](const std::string& p) { return line.rfind(p, 0) == 0; };
      if (starts("# HELP " + name + " ") || starts("# TYPE " + name + " ") || starts(name + "{") || starts(name + "_count{") ||
          starts(name + "_sum{") || starts(name + "_bucket{"))
        out.push_back(line);
    }
  }
  std::sort(out.begin(), out.end());
  return out;
}

ProbeResult result(Outcome o, double ms) {
  ProbeResult r;
  r.outcome = o;
  r.timing.total = std::chrono::duration<double, std::milli>(ms);
  return r;
}

}  // namespace

TEST_CASE("per-probe and trigger series are written exactly as prometheus-cpp writes them", "[metrics]") {
  struct Run {
    Outcome outcome;
    double ms;
  };
  const std::vector<std::tuple<std::string, std::string, std::vector<Run>>> probes{
      {"web", "home", {{Outcome::ok, 3.2}, {Outcome::ok, 7.5}, {Outcome::fail, 10.0}, {Outcome::ok, 0.0}}},
      {"api \"v2\"", "health\\check", {{Outcome::error, 12000.0}, {Outcome::fail, 250.0}, {Outcome::ok, 1000.0}}},
      {"quiet", "never-ran", {}},
  };
  Metrics ours;
  auto ref = std::make_shared<prometheus::Registry>();
  auto& dur = prometheus::BuildHistogram().Name("lastgood_probe_duration_seconds").Help("Duration of probe runs.").Register(*ref);
  auto& total = prometheus::BuildCounter().Name("lastgood_probes_total").Help("Probe runs by outcome (ok, fail, error).").Register(*ref);
  auto& success = prometheus::BuildGauge().Name("lastgood_probe_success").Help("1 when the probe's last run was ok, else 0.").Register(*ref);
  auto& trig = prometheus::BuildGauge()
                   .Name("lastgood_trigger_state")
                   .Help("1 for the current state of each trigger (ok, pending, firing, inconclusive), else 0.")
                   .Register(*ref);
  const prometheus::Histogram::BucketBoundaries bounds(Metrics::kDurationBuckets.begin(), Metrics::kDurationBuckets.end());
  for (const auto& [service, probe, runs] : probes) {
    auto h = ours.probe_handles(service, probe);
    auto& rh = dur.Add({{"service", service}, {"probe", probe}}, bounds);
    auto& rs = success.Add({{"service", service}, {"probe", probe}});
    std::map<Outcome, prometheus::Counter*> rc;
    for (auto [o, name] : {std::pair{Outcome::ok, "ok"}, {Outcome::fail, "fail"}, {Outcome::error, "error"}})
      rc[o] = &total.Add({{"service", service}, {"probe", probe}, {"outcome", name}});
    for (const auto& run : runs) {
      ours.record(h, result(run.outcome, run.ms), 0.001);
      rh.Observe(run.ms / 1000.0);
      rc[run.outcome]->Increment();
      rs.Set(run.outcome == Outcome::ok ? 1 : 0);
    }
  }
  const std::vector<std::tuple<std::string, std::string, std::string>> triggers{
      {"web", "errors", "firing"}, {"web", "latency", "ok"}, {"api \"v2\"", "down", "pending"}, {"quiet", "x", "inconclusive"}};
  for (const auto& [service, trigger, state] : triggers) {
    ours.trigger_state(service, trigger, "inconclusive");  // as at start, then the transition
    ours.trigger_state(service, trigger, state.c_str());
    for (const char* st : {"ok", "pending", "firing", "inconclusive"})
      trig.Add({{"service", service}, {"trigger", trigger}, {"state", st}}).Set(st == state ? 1 : 0);
  }

  const std::string text = ours.serialize();
  const std::string want = prometheus::TextSerializer{}.Serialize(ref->Collect());
  const std::initializer_list<std::string> names{"lastgood_probe_duration_seconds", "lastgood_probes_total", "lastgood_probe_success",
                                                 "lastgood_trigger_state"};
  CHECK(families(text, names) == families(want, names));
  CHECK(families(text, names).size() == 3 * 14 + 3 * 3 + 3 + 4 * 4 + 8);  // the comparison compared something
  // Within a series: _count, _sum, then the buckets in ascending order, as prometheus-cpp does.
  const auto at = [&](const std::string& s) { return text.find(s); };
  const std::string series = "{probe=\"home\",service=\"web\"";
  CHECK(at("lastgood_probe_duration_seconds_count" + series) < at("lastgood_probe_duration_seconds_sum" + series));
  CHECK(at("lastgood_probe_duration_seconds_sum" + series) < at("lastgood_probe_duration_seconds_bucket" + series + ",le=\"0.005\"} 2"));
  CHECK(at("lastgood_probe_duration_seconds_bucket" + series + ",le=\"0.005\"} 2") <
        at("lastgood_probe_duration_seconds_bucket" + series + ",le=\"0.01\"} 4"));
  CHECK(at("lastgood_probe_duration_seconds_bucket" + series + ",le=\"0.01\"} 4") <
        at("lastgood_probe_duration_seconds_bucket" + series + ",le=\"+Inf\"} 4"));
  CHECK_THAT(text, Catch::Contains("lastgood_probes_total{outcome=\"fail\",probe=\"home\",service=\"web\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lastgood_trigger_state{service=\"web\",state=\"firing\",trigger=\"errors\"} 1\n"));
  CHECK_THAT(text, Catch::Contains("lastgood_schedule_lateness_seconds_count 7\n"));  // the registry's series are still there
}

TEST_CASE("per-service series are written exactly as prometheus-cpp's families wrote them", "[metrics]") {
  // The same calls on lastgood's cells and on prometheus-cpp families used as lastgood used them
  // before (Add on every event; a release's previous series removed).
  Metrics ours;
  auto ref = std::make_shared<prometheus::Registry>();
  auto& decisions = prometheus::BuildCounter().Name("lastgood_decisions_total").Help("Decisions made, by kind (alert, propose, execute, hold).").Register(*ref);
  auto& rollbacks = prometheus::BuildCounter()
                        .Name("lastgood_rollbacks_total")
                        .Help("Rollbacks carried out, by outcome (ok, failed, refused: the live release was no longer the one to roll back from; lost: "
                              "its outcome was not recorded).")
                        .Register(*ref);
  auto& escalations =
      prometheus::BuildCounter().Name("lastgood_escalations_total").Help("Rollbacks that failed or did not bring recovery; the service waits for a person.").Register(*ref);
  auto& pending = prometheus::BuildGauge().Name("lastgood_proposals_pending").Help("Rollback proposals waiting for approval, by service.").Register(*ref);
  auto& silenced = prometheus::BuildGauge().Name("lastgood_silenced").Help("1 while a silence or maintenance window holds the service's decisions.").Register(*ref);
  auto& breaches = prometheus::BuildCounter().Name("lastgood_breaches_total").Help("Triggers that began firing.").Register(*ref);
  auto& releases = prometheus::BuildGauge().Name("lastgood_release_info").Help("The live and the last verified good release of each service; always 1.").Register(*ref);
  std::map<std::pair<std::string, std::string>, prometheus::Gauge*> shown;

  auto declare = [&](const std::string& svc, const std::string& kind, const std::vector<std::pair<std::string, std::string>>& triggers) {
    ours.declare_service(svc, kind, triggers);
    ours.silenced(svc, false);
    for (const char* k : {"alert", "propose", "execute", "hold"}) decisions.Add({{"service", svc}, {"kind", k}});
    if (!kind.empty())
      for (const char* o : {"ok", "failed", "refused"}) rollbacks.Add({{"service", svc}, {"deployment", kind}, {"outcome", o}});
    escalations.Add({{"service", svc}});
    pending.Add({{"service", svc}});
    silenced.Add({{"service", svc}}).Set(0);
    for (const auto& [t, sev] : triggers) breaches.Add({{"service", svc}, {"trigger", t}, {"severity", sev}});
  };
  auto decision = [&](const std::string& svc, const char* kind) {
    ours.decision(svc, kind);
    decisions.Add({{"service", svc}, {"kind", kind}}).Increment();
  };
  auto rollback = [&](const std::string& svc, const std::string& kind, const char* outcome) {
    ours.rollback(svc, kind, outcome, 1.5);
    rollbacks.Add({{"service", svc}, {"deployment", kind}, {"outcome", outcome}}).Increment();
  };
  auto breach = [&](const std::string& svc, const std::string& t, const char* sev) {
    ours.breach(svc, t, sev);
    breaches.Add({{"service", svc}, {"trigger", t}, {"severity", sev}}).Increment();
  };
  auto release = [&](const std::string& svc, const std::string& role, const std::string& id) {
    ours.release(svc, role, id);
    if (auto it = shown.find({svc, role}); it != shown.end()) releases.Remove(it->second);
    auto& g = releases.Add({{"service", svc}, {"release", id}, {"role", role}});
    g.Set(1);
    shown[{svc, role}] = &g;
  };

  declare("web", "firebase_hosting", {{"errors", "P1"}, {"slow", "P2"}});
  declare("api \"v2\"", "npm", {{"down\\now", "P0"}});
  declare("plain", "", {});
  decision("web", "alert");
  decision("web", "alert");
  decision("web", "execute");
  decision("api \"v2\"", "propose");
  decision("unknown", "hold");       // a service never declared: only what happened is shown
  decision("web", "a-kind-to-come");  // a kind this version does not know
  rollback("web", "firebase_hosting", "ok");
  rollback("web", "firebase_hosting", "lost");           // not declared at 0, shown once it happens
  rollback("web", "local_symlink", "failed");            // the deployment changed kind in a reload
  rollback("plain", "command", "refused");               // declared without a deployment
  rollback("api \"v2\"", "npm", "a-future-outcome");
  breach("web", "errors", "P1");
  breach("web", "errors", "P0");  // its severity was raised in a reload
  breach("web", "new-trigger", "P2");
  breach("api \"v2\"", "down\\now", "P0");
  breach("web", "errors", "P9");
  ours.escalation("web");
  escalations.Add({{"service", "web"}}).Increment();
  ours.escalation("unknown");
  escalations.Add({{"service", "unknown"}}).Increment();
  ours.proposals_pending("web", 3);
  pending.Add({{"service", "web"}}).Set(3);
  ours.proposals_pending("web", 2);
  pending.Add({{"service", "web"}}).Set(2);
  ours.silenced("api \"v2\"", true);
  silenced.Add({{"service", "api \"v2\""}}).Set(1);
  release("web", "live", "v2");
  release("web", "last_good", "v1");
  release("web", "live", "v3 \"hot\"");  // the previous live release's series is gone
  release("unknown", "live", "x");

  const std::string text = ours.serialize();
  const std::string want = prometheus::TextSerializer{}.Serialize(ref->Collect());
  const std::initializer_list<std::string> names{"lastgood_decisions_total", "lastgood_rollbacks_total",   "lastgood_escalations_total",
                                                 "lastgood_proposals_pending", "lastgood_silenced", "lastgood_breaches_total",
                                                 "lastgood_release_info"};
  CHECK(families(text, names) == families(want, names));
  CHECK(families(text, names).size() == 7 * 2 + 6 + 14 + 4 + 3 + 3 + 10 + 3);  // headers, breaches, decisions, …, releases
  CHECK_THAT(text, Catch::Contains("lastgood_decisions_total{kind=\"alert\",service=\"web\"} 2\n"));
  CHECK_THAT(text, Catch::Contains("lastgood_release_info{release=\"v3 \\\"hot\\\"\",role=\"live\",service=\"web\"} 1\n"));
  CHECK_THAT(text, !Catch::Contains("release=\"v2\""));
}

namespace {
std::string without_process(const std::string& text) {
  std::string out;
  size_t pos = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    if (nl == std::string::npos) nl = text.size() - 1;
    const std::string line = text.substr(pos, nl - pos + 1);
    if (line.rfind("process_", 0) != 0 && line.rfind("# HELP process_", 0) != 0 && line.rfind("# TYPE process_", 0) != 0) out += line;
    pos = nl + 1;
  }
  return out;
}
}  // namespace

TEST_CASE("the process_* family: open and max fds, memory, CPU, start time", "[metrics]") {
  const std::string text = lastgood::watchdog::process_metrics_text();
  for (const char* name : {"process_open_fds ", "process_max_fds ", "process_resident_memory_bytes ", "process_cpu_seconds_total ",
                           "process_start_time_seconds ", "process_virtual_memory_bytes "})
    CHECK_THAT(text, Catch::Contains(std::string("\n") + name));
  // Open fds: the count moves with a descriptor opened here.
  auto open_fds = [] {
    const std::string t = lastgood::watchdog::process_metrics_text();
    const auto at = t.find("\nprocess_open_fds ");
    return std::stod(t.substr(at + 18));
  };
  const double before = open_fds();
  const int fd = ::open("/dev/null", O_RDONLY);
  REQUIRE(fd >= 0);
  CHECK(open_fds() == before + 1);
  ::close(fd);
  CHECK(open_fds() == before);
}

TEST_CASE("the exposition text written a piece at a time is the same text, cut between lines", "[metrics]") {
  Metrics m;
  for (int i = 0; i < 200; ++i) {
    auto h = m.probe_handles("svc" + std::to_string(i), "p");
    m.record(h, result(i % 3 == 0 ? Outcome::fail : Outcome::ok, 3.0 * i), 0.0);
    m.trigger_state("svc" + std::to_string(i), "down", i % 2 ? "firing" : "ok");
    if (i % 4 == 0) m.declare_service("svc" + std::to_string(i), "npm", {{"down", "P1"}});
    m.decision("svc" + std::to_string(i), "alert");
    m.release("svc" + std::to_string(i), "live", "v" + std::to_string(i));
  }
  const std::string whole = m.serialize();
  REQUIRE(whole.size() > 100'000);
  const size_t budget = GENERATE(1, 4096, 100'000);
  Metrics::TextWriter w(m);
  std::string joined, piece;
  int pieces = 0;
  for (bool more = true; more;) {
    piece.clear();
    more = w.next(piece, budget);
    ++pieces;
    REQUIRE(pieces < 100'000);  // it ends
    if (!piece.empty()) CHECK(piece.back() == '\n');  // a scrape never sees half a line in a piece
    CHECK(piece.size() < budget + 4096);  // about the budget: whole series, never the rest at once
    joined += piece;
  }
  // process_* values (CPU time, memory) move between two scrapes: compared without them.
  CHECK(without_process(joined) == without_process(whole));
  CHECK(pieces >= static_cast<int>(whole.size() / (budget + 4096)));
}
