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
