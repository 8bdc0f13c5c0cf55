// The scheduler's timing, with a fake clock: jitter stays within ±10% and a probe never
// overlaps its own previous run, however long runs take.
#include <catch2/catch.hpp>

#include <random>

#include "watchdog/cadence.hpp"

using lastgood::watchdog::Cadence;
using namespace std::chrono_literals;
using TP = Cadence::TimePoint;

TEST_CASE("the gap between planned runs stays within the interval ±10%", "[scheduler]") {
  Cadence c(1s);
  TP t0{};
  for (double u : {0.0, 0.25, 0.5, 0.75, 0.999999, 1.0}) {
    auto n = c.next(t0, t0 + 5ms, u);
    CHECK(n - t0 >= 900ms);
    CHECK(n - t0 <= 1100ms);
  }
  CHECK(c.next(t0, t0, 0.0) - t0 == 900ms);
  CHECK(c.next(t0, t0, 1.0) - t0 == 1100ms);
}

TEST_CASE("first runs are spread over one interval", "[scheduler]") {
  Cadence c(10s);
  TP now{};
  CHECK(c.first(now, 0.0) == now);
  CHECK(c.first(now, 0.5) - now == 5s);
  CHECK(c.first(now, 1.0) - now < 10s);
}

TEST_CASE("a fake-clock run of a probe never overlaps itself and keeps its average rate", "[scheduler]") {
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> uni(0, 1);
  auto [interval, max_run] = GENERATE(table<std::chrono::milliseconds, std::chrono::milliseconds>({
      {1000ms, 50ms},    // runs much shorter than the interval
      {1000ms, 2500ms},  // runs that sometimes take longer than several intervals
      {200ms, 199ms},
  }));
  Cadence c(interval);
  TP now{};
  TP planned = c.first(now, uni(rng));
  TP prev_end{};
  int runs = 0, skipped_total = 0;
  const TP horizon = now + 1000 * interval;
  while (planned < horizon) {
    TP start = std::max(planned, now);  // the fake clock jumps to the planned time
    REQUIRE(start >= prev_end);         // no overlap with the previous run
    auto run = std::chrono::duration_cast<Cadence::Duration>(max_run * uni(rng));
    TP end = start + run;
    int skipped = 0;
    TP n = c.next(planned, end, uni(rng), &skipped);
    REQUIRE(n >= end);
    auto gap = n - planned;
    if (skipped == 0) {
      REQUIRE(gap >= interval * 9 / 10);
      REQUIRE(gap <= interval * 11 / 10);
    }
    skipped_total += skipped;
    prev_end = end;
    now = end;
    planned = n;
    ++runs;
  }
  if (max_run < interval * 9 / 10) {
    CHECK(skipped_total == 0);
    CHECK(runs >= 950);  // jitter averages out: about one run per interval
    CHECK(runs <= 1050);
  } else {
    CHECK(skipped_total > 0);  // overruns skip slots rather than bunching runs
  }
}

TEST_CASE("runs are planned on a grid sized from the total rate", "[scheduler]") {
  // About 100 runs per slot, at most a tenth of the interval, and always a divisor of 100 ms.
  CHECK(Cadence::grid_for(1s, 100) == 100ms);
  CHECK(Cadence::grid_for(1s, 1000) == 100ms);
  CHECK(Cadence::grid_for(1s, 3000) == 20ms);
  CHECK(Cadence::grid_for(1s, 10000) == 10ms);
  CHECK(Cadence::grid_for(200ms, 50) == 20ms);
  CHECK(Cadence::grid_for(60s, 10) == 100ms);
  CHECK(Cadence::grid_for(5ms, 10) == Cadence::Duration::zero());  // too short for any grid
  for (auto g : {1ms, 2ms, 5ms, 10ms, 20ms, 50ms, 100ms}) CHECK(100ms % g == 0ms);

  Cadence c(1s, 0.10, 20ms);
  std::mt19937_64 rng(7);
  std::uniform_real_distribution<double> uni(0, 1);
  TP now = TP{} + 123457us;
  TP planned = c.first(now, uni(rng));
  CHECK(planned >= now);
  const TP start = planned;
  for (int i = 0; i < 1000; ++i) {
    REQUIRE(planned.time_since_epoch() % 20ms == 0ms);
    TP n = c.next(planned, planned + 3ms, uni(rng));
    REQUIRE(n - planned >= 900ms - 10ms);  // jitter, then to the nearest slot
    REQUIRE(n - planned <= 1100ms + 10ms);
    planned = n;
  }
  // Rounding to the nearest slot keeps the average rate: 1000 runs take about 1000 intervals.
  CHECK(planned - start > 990s);
  CHECK(planned - start < 1010s);
  CHECK(c.nearest(TP{} + 40ms) == TP{} + 40ms);
  CHECK(c.nearest(TP{} + 49ms) == TP{} + 40ms);
  CHECK(c.nearest(TP{} + 51ms) == TP{} + 60ms);
  // A run that ends after the nearest slot moves to the first slot after it ends.
  Cadence g(1s, 0.10, 20ms);
  CHECK(g.next(TP{}, TP{} + 1005ms, 0.545) == TP{} + 1020ms);  // planned 1009 ms: nearest 1000 ms
  CHECK(g.next(TP{}, TP{} + 999ms, 0.5) == TP{} + 1000ms);
  int skipped = 0;
  CHECK(g.next(TP{}, TP{} + 1200ms, 0.5, &skipped) == TP{} + 2000ms);  // overran the next run: skipped
  CHECK(skipped == 1);
}

TEST_CASE("first runs are spread over the interval, or wider when there are many probes", "[cadence]") {
  CHECK(Cadence::first_spread(100) < 1s);  // a few probes: the interval decides
  CHECK(Cadence::first_spread(10'000) == 2500ms);  // at most kFirstRunsPerSecond first runs a second
  const Cadence c(1s, 0.1, 10ms);
  const Cadence::TimePoint now{100s};
  CHECK(c.first(now, 0.5, Cadence::first_spread(100)) - now == 500ms);
  CHECK(c.first(now, 0.5, Cadence::first_spread(10'000)) - now == 1250ms);
  CHECK(c.first(now, 0.999, Cadence::first_spread(10'000)) - now <= 2500ms);  // rounded to the grid
}
