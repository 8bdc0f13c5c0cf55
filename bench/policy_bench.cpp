// Cost of feeding one probe result to a service's policy and re-evaluating all of its
// triggers, with windows holding 3600 samples (1 h at 1 s). Run: make bench-policy
#include <benchmark/benchmark.h>

#include "policy/engine.hpp"

using namespace lastgood::policy;
using namespace std::chrono_literals;

namespace {

ServiceSpec spec(int probes) {
  ServiceSpec s;
  s.name = "www";
  for (int i = 0; i < probes; ++i) s.probes.push_back({std::string(1, 'p').append(std::to_string(i)), false});
  auto add = [&](const char* name, Rule r) {
    Trigger t;
    t.name = name;
    t.severity = Severity::P1;
    t.rule = std::move(r);
    s.triggers.push_back(t);
  };
  Rule c; c.kind = "consecutive_failures"; c.count = 3; add("down", c);
  Rule x; x.kind = "x_of_y"; x.failures = 5; x.of = 10; add("flaky", x);
  Rule e; e.kind = "error_rate"; e.window = 1h; e.max = 0.05; e.min_samples = 20; add("errors", e);
  Rule l; l.kind = "latency"; l.percentile = 95; l.window = 1h; l.max_latency = 500ms; add("slow", l);
  Rule b; b.kind = "burn_rate"; b.slo = 0.999; b.burn_windows = {{1h, 5min, 14.4}, {1h, 30min, 6}}; add("budget", b);
  Rule sp; sp.kind = "spread"; sp.min_share = 0.5; add("wide", sp);
  s.rollback.mode = "auto";
  s.has_deployment = true;
  return s;
}

void BM_on_sample(benchmark::State& state) {
  const int probes = static_cast<int>(state.range(0));
  ServicePolicy p(spec(probes));
  TimePoint t = TimePoint{} + std::chrono::hours(24 * 365 * 50);
  p.on_release("v1", std::nullopt, t);
  // Warm up: fill every window with an hour of 1 s results (3600 samples each).
  for (int i = 0; i < 3600; ++i) {
    t += 1s;
    for (int k = 0; k < probes; ++k) p.on_sample(static_cast<size_t>(k), Sample{t, i % 50 ? SampleOutcome::ok : SampleOutcome::fail, 20.0 + i % 100, 0});
  }
  int i = 0, k = 0;
  for (auto _ : state) {
    if (++k == probes) {
      k = 0;
      t += 1s;
    }
    auto ev = p.on_sample(static_cast<size_t>(k), Sample{t, ++i % 50 ? SampleOutcome::ok : SampleOutcome::fail, 20.0 + i % 100, 0});
    benchmark::DoNotOptimize(ev);
  }
  state.counters["samples_held"] = static_cast<double>(p.samples_held(0));
}
BENCHMARK(BM_on_sample)->Arg(1)->Arg(4)->Unit(benchmark::kNanosecond)->Repetitions(5)->ReportAggregatesOnly(true);

void BM_tick(benchmark::State& state) {
  ServicePolicy p(spec(4));
  TimePoint t = TimePoint{} + std::chrono::hours(24 * 365 * 50);
  for (int i = 0; i < 3600; ++i) {
    t += 1s;
    for (size_t k = 0; k < 4; ++k) p.on_sample(k, Sample{t, SampleOutcome::ok, 20, 0});
  }
  for (auto _ : state) {
    t += 1s;
    benchmark::DoNotOptimize(p.tick(t));
  }
}
BENCHMARK(BM_tick)->Unit(benchmark::kNanosecond)->Repetitions(5)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
