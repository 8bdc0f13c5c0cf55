// The metrics at scale (issue 21, target 3): the heap a target's series take, the time to write
// the whole exposition text, and the cost of recording one run. A target here is what
// bench/many_targets.py runs: a service with one HTTP probe, two triggers, a deployment, a live and
// a last-good release.
// Run: make bench-policy (or build-bench/bench/metrics_bench --benchmark_filter=...)
#include <benchmark/benchmark.h>

#include <malloc.h>

#include <memory>
#include <string>
#include <vector>

#include "probes/probe.hpp"
#include "watchdog/metrics.hpp"

using namespace lastgood;
using lastgood::watchdog::Metrics;

namespace {

struct Fleet {
  std::unique_ptr<Metrics> m = std::make_unique<Metrics>();
  std::vector<Metrics::ProbeHandles> probes;
};

std::unique_ptr<Fleet> make_fleet(int n) {
  auto f = std::make_unique<Fleet>();
  f->probes.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    const std::string svc = "svc-" + std::to_string(i);
    f->m->declare_service(svc, "local_symlink", {{"errors", "P1"}, {"slow", "P2"}});
    f->m->trigger_state(svc, "errors", "inconclusive");
    f->m->trigger_state(svc, "slow", "inconclusive");
    f->m->silenced(svc, false);
    f->probes.push_back(f->m->probe_handles(svc, "home", "http"));
    f->m->release(svc, "live", "rel-" + std::to_string(i) + "-b");
    f->m->release(svc, "last_good", "rel-" + std::to_string(i) + "-a");
  }
  probes::ProbeResult r = probes::begin_result("svc", "home");
  r.http_status = 200;
  r.timing.total = std::chrono::microseconds(1200);
  for (auto& h : f->probes)
    for (int k = 0; k < 3; ++k) f->m->record(h, r, 0.0001);
  return f;
}

// Heap bytes a target costs (malloc's in-use bytes before and after building the fleet).
void BM_metrics_heap_per_target(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  for (auto _ : state) {
    const auto before = ::mallinfo2().uordblks;
    auto f = make_fleet(n);
    const auto after = ::mallinfo2().uordblks;
    state.counters["bytes_per_target"] = static_cast<double>(after - before) / n;
    benchmark::DoNotOptimize(f);
  }
}
BENCHMARK(BM_metrics_heap_per_target)->Arg(10000)->Arg(50000)->Iterations(1)->Unit(benchmark::kMillisecond);

// The whole text, written in 64 KiB pieces as the /metrics stream writes it; the heap the writer
// takes beside the text's piece is reported as writer_heap_bytes.
void BM_metrics_scrape(benchmark::State& state) {
  const int n = static_cast<int>(state.range(0));
  auto f = make_fleet(n);
  size_t bytes = 0;
  double peak_extra = 0;
  for (auto _ : state) {
    const auto before = ::mallinfo2().uordblks;
    size_t peak = before;
    Metrics::TextWriter w(*f->m);
    std::string out;
    out.reserve(80 << 10);
    bytes = 0;
    bool more = true;
    while (more) {
      more = w.next(out, 64 << 10);
      bytes += out.size();
      peak = std::max(peak, ::mallinfo2().uordblks);
      out.clear();
    }
    peak_extra = static_cast<double>(peak - before);
  }
  state.counters["text_bytes"] = static_cast<double>(bytes);
  state.counters["writer_heap_bytes"] = peak_extra;
  state.SetBytesProcessed(static_cast<int64_t>(bytes) * state.iterations());
}
BENCHMARK(BM_metrics_scrape)->Arg(10000)->Arg(50000)->Unit(benchmark::kMillisecond);

// Recording one probe run (on the event loop, once per run).
void BM_metrics_record(benchmark::State& state) {
  auto f = make_fleet(1000);
  probes::ProbeResult r = probes::begin_result("svc", "home");
  r.http_status = 200;
  r.timing.total = std::chrono::microseconds(1200);
  size_t i = 0;
  for (auto _ : state) {
    f->m->record(f->probes[i], r, 0.0001);
    i = (i + 1) % f->probes.size();
  }
}
BENCHMARK(BM_metrics_record);

// A decision and a trigger transition (on the event loop, once per policy event).
void BM_metrics_policy_event(benchmark::State& state) {
  auto f = make_fleet(10000);
  int i = 0;
  for (auto _ : state) {
    const std::string svc = "svc-" + std::to_string(i);
    f->m->trigger_state(svc, "errors", (i & 1) ? "firing" : "ok");
    f->m->decision(svc, "alert");
    i = (i + 1) % 10000;
  }
}
BENCHMARK(BM_metrics_policy_event);

}  // namespace

BENCHMARK_MAIN();
