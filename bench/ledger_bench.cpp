// Verifying and replaying a 100 000-entry ledger (target: under a second). Run: make bench-policy
#include <benchmark/benchmark.h>

#include <unistd.h>

#include <filesystem>

#include "watchdog/state/ledger.hpp"

namespace fs = std::filesystem;
using namespace lastgood::watchdog;

namespace {

const fs::path& ledger_dir() {
  static const fs::path dir = [] {
    fs::path d = fs::temp_directory_path() / ("lastgood-ledger-bench-" + std::to_string(::getpid()));
    fs::remove_all(d);
    fs::create_directories(d);
    // Appends without fdatasync would not be what lastgood does; build the file once with them.
    Ledger l(d.string());
    for (int i = 0; i < 100'000; ++i)
      l.append(i % 3 ? "transition" : "decision", "svc" + std::to_string(i % 7),
               {{"trigger", "down"}, {"from", "ok"}, {"to", "firing"}, {"evidence", {{"measure", "consecutive_failures"}, {"value", 3}, {"threshold", 3}}}},
               1'700'000'000'000LL + i);
    return d;
  }();
  return dir;
}

void BM_verify_100k(benchmark::State& state) {
  const auto file = (ledger_dir() / "ledger.jsonl").string();
  for (auto _ : state) {
    auto rep = verify_ledger(file);
    if (!rep.ok || rep.entries != 100'000) state.SkipWithError("ledger did not verify");
  }
}
BENCHMARK(BM_verify_100k)->Unit(benchmark::kMillisecond)->Iterations(3)->Repetitions(3)->ReportAggregatesOnly(true);

void BM_open_and_replay_100k(benchmark::State& state) {
  const auto dir = ledger_dir().string();
  for (auto _ : state) {
    Ledger l(dir);
    auto es = l.take_loaded();
    benchmark::DoNotOptimize(es);
  }
}
BENCHMARK(BM_open_and_replay_100k)->Unit(benchmark::kMillisecond)->Iterations(3)->Repetitions(3)->ReportAggregatesOnly(true);

void BM_append_fdatasync(benchmark::State& state) {
  fs::path d = fs::temp_directory_path() / ("lastgood-ledger-append-" + std::to_string(::getpid()));
  fs::create_directories(d);
  {
    Ledger l(d.string());
    long long ts = 0;
    for (auto _ : state) l.append("decision", "svc", {{"kind", "execute"}, {"reason", "bench"}}, ++ts);
  }
  fs::remove_all(d);
}
BENCHMARK(BM_append_fdatasync)->Unit(benchmark::kMicrosecond)->Repetitions(3)->ReportAggregatesOnly(true);

}  // namespace

BENCHMARK_MAIN();
