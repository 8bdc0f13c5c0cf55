// lastgood's own stalls are never the target's (issue 21): the stall log's answer against a brute
// force, the verdict's thresholds, and latency rules leaving out samples whose latency holds a stall.
#include <catch2/catch.hpp>

#include <random>

#include "policy/engine.hpp"
#include "watchdog/loop_stall.hpp"

using lastgood::watchdog::Admission;
using lastgood::watchdog::judge_stall;
using lastgood::watchdog::StallLog;
using namespace std::chrono_literals;

namespace {
const StallLog::TimePoint T{std::chrono::hours(1)};
StallLog::TimePoint at(int ms) { return T + std::chrono::milliseconds(ms); }
}  // namespace

TEST_CASE("the stall log answers the longest stretch the loop was behind within a run", "[stall]") {
  StallLog log;
  CHECK(log.stall(at(0), at(1000)) == 0ms);
  log.record(at(20), at(21));    // 1 ms
  log.record(at(41), at(341));   // 300 ms behind over [41, 341]
  log.record(at(361), at(380));  // 19 ms
  log.record(at(400), at(450));  // 50 ms
  CHECK(log.stall(at(0), at(500)) == 300ms);
  CHECK(log.stall(at(141), at(500)) == 200ms);  // the run began inside the stall: only its part counts
  CHECK(log.stall(at(341), at(500)) == 50ms);   // after it: the later ticks only
  CHECK(log.stall(at(342), at(500)) == 50ms);
  CHECK(log.stall(at(451), at(500)) == 0ms);
  // A tick overdue now: the loop is behind at this moment.
  CHECK(log.stall(at(451), at(900), at(470)) == 430ms);
  CHECK(log.stall(at(800), at(900), at(470)) == 100ms);
  CHECK(log.stall(at(451), at(460), at(470)) == 0ms);
}

TEST_CASE("the stall log keeps few ticks and forgets what no run can reach", "[stall]") {
  StallLog log(10s);
  for (int i = 0; i < 1000; ++i) log.record(at(i * 20), at(i * 20 + 1));  // steady, 1 ms each
  CHECK(log.kept() <= 2);
  log.record(at(30000), at(35000));
  CHECK(log.stall(at(0), at(36000)) == 5000ms);
  log.record(at(50000), at(50001));
  CHECK(log.stall(at(0), at(50001)) == 1ms);  // the 5 s stall ended more than 10 s ago: dropped
}

TEST_CASE("the stall log matches a brute force over random tick sequences", "[stall]") {
  std::mt19937 rng(7);
  for (int round = 0; round < 200; ++round) {
    StallLog log(std::chrono::hours(1));
    struct Tick {
      int due, ran;
    };
    std::vector<Tick> ticks;
    int t = 0;
    const int n = 1 + static_cast<int>(rng() % 60);
    for (int i = 0; i < n; ++i) {
      const int due = t + 20;
      const int lag = rng() % 4 == 0 ? static_cast<int>(rng() % 500) : static_cast<int>(rng() % 5);
      ticks.push_back({due, due + lag});
      log.record(at(due), at(due + lag));
      t = due + lag;
    }
    const int next_due = t + 20;
    for (int q = 0; q < 30; ++q) {
      const int end = t + static_cast<int>(rng() % 600);
      const int from = static_cast<int>(rng() % static_cast<unsigned>(end + 1));
      int want = std::max(0, end - std::max(next_due, from));
      for (const auto& k : ticks) want = std::max(want, std::min(k.ran, end) - std::max(k.due, from));
      INFO("round " << round << " from " << from << " to " << end);
      CHECK(log.stall(at(from), at(end), at(next_due)) == std::chrono::milliseconds(want));
    }
  }
}

TEST_CASE("admission caps the runs in flight while the loop is behind, and cuts at most every 200 ms", "[stall][admission]") {
  Admission a;
  using C = Admission::Change;
  CHECK_FALSE(a.capped());
  CHECK(a.tick(49ms, at(0), 1000, 5000) == C::none);  // behind, but not past the threshold
  CHECK_FALSE(a.capped());
  CHECK(a.tick(60ms, at(20), 1000, 5000) == C::capped);
  CHECK(a.limit() == 750);  // a quarter off what was in flight
  CHECK(a.tick(80ms, at(120), 750, 5000) == C::none);  // within 200 ms of the cut
  CHECK(a.limit() == 750);
  CHECK(a.tick(80ms, at(220), 600, 5000) == C::cut);  // fewer in flight than the cap: cut from those
  CHECK(a.limit() == 450);
  for (int i = 0; i < 100; ++i) a.tick(500ms, at(420 + i * 200), 450, 5000);
  CHECK(a.limit() == Admission::kMinInFlight);  // never below the floor
}

TEST_CASE("admission raises the cap while the loop keeps up, and lifts it after 5 s of that", "[stall][admission]") {
  using C = Admission::Change;
  Admission a;
  REQUIRE(a.tick(60ms, at(0), 1000, 5000) == C::capped);
  REQUIRE(a.limit() == 750);
  // Keeping up, with the cap holding runs back: raised by an eighth each tick.
  CHECK(a.tick(1ms, at(20), 750, 5000) == C::raised);
  CHECK(a.limit() == 750 + 93);
  // Keeping up with room under the cap: not raised, but calm ticks count.
  CHECK(a.tick(1ms, at(40), 100, 5000) == C::none);
  // Between kKeepUp and kShedAbove: neither raised nor calm (the count starts over).
  CHECK(a.tick(20ms, at(60), 843, 5000) == C::none);
  CHECK(a.limit() == 843);
  int ticks = 0;
  C c = C::none;
  while (c != C::lifted && ticks < 1000) c = a.tick(1ms, at(80 + 20 * ticks++), 10, 5000);
  CHECK(c == C::lifted);
  CHECK(ticks == Admission::kCalmTicks);
  CHECK_FALSE(a.capped());
}

TEST_CASE("admission: a tick past the threshold starts the calm count over", "[stall][admission]") {
  using C = Admission::Change;
  Admission a;
  REQUIRE(a.tick(60ms, at(0), 1000, 5000) == C::capped);
  for (int i = 0; i < Admission::kCalmTicks - 1; ++i) REQUIRE(a.tick(1ms, at(20 + 20 * i), 10, 5000) == C::none);
  // One tick far behind, within 200 ms of the last cut or not, means it did not keep up: 5 s more
  // of calm are needed before the cap goes.
  CHECK(a.tick(100ms, at(20 * Admission::kCalmTicks), 10, 5000) == C::cut);
  CHECK(a.tick(1ms, at(20 * Admission::kCalmTicks + 120), 10, 5000) == C::none);
  CHECK(a.capped());
}

TEST_CASE("admission lifts the cap once it is no lower than the number of probes", "[stall][admission]") {
  using C = Admission::Change;
  Admission a;
  REQUIRE(a.tick(60ms, at(0), 100, 120) == C::capped);
  REQUIRE(a.limit() == 75);
  CHECK(a.tick(1ms, at(20), 75, 120) == C::raised);  // 84
  CHECK(a.tick(1ms, at(40), 84, 120) == C::raised);  // 94
  CHECK(a.tick(1ms, at(60), 94, 120) == C::raised);  // 105
  CHECK(a.tick(1ms, at(80), 105, 120) == C::raised);  // 118
  CHECK(a.tick(1ms, at(100), 118, 120) == C::lifted);  // 132 >= 120
  CHECK_FALSE(a.capped());
}

TEST_CASE("a stall of a quarter of the run, and at least 10 ms, makes its timing lastgood's", "[stall]") {
  CHECK_FALSE(judge_stall(5ms, 10ms).timing_unreliable);    // under 10 ms: noise
  CHECK_FALSE(judge_stall(200ms, 1s).timing_unreliable);    // a fifth
  CHECK(judge_stall(250ms, 1s).timing_unreliable);          // a quarter
  CHECK(judge_stall(1900ms, 2s).timing_unreliable);         // a starved timeout
  CHECK_FALSE(judge_stall(0ms, 2s).timing_unreliable);
}

namespace {
using namespace lastgood::policy;
const TimePoint P0 = TimePoint{} + std::chrono::hours(24 * 365 * 50);

ServicePolicy latency_policy() {
  Rule r;
  r.kind = "latency";
  r.percentile = 90;
  r.window = 60s;
  r.max_latency = 100ms;
  r.min_samples = 10;
  Trigger t;
  t.name = "slow";
  t.severity = Severity::P1;
  t.rule = r;
  ServiceSpec s;
  s.name = "svc";
  s.probes = {{"p", false}};
  s.triggers = {t};
  s.rollback.mode = "alert";
  return ServicePolicy(s);
}
}  // namespace

TEST_CASE("latency rules leave out samples whose latency holds lastgood's own stall", "[stall][policy]") {
  SECTION("stalled slow samples do not breach; the target's own fast ones are judged") {
    auto sp = latency_policy();
    TimePoint t = P0;
    for (int i = 0; i < 12; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 20, 0, true});
    for (int i = 0; i < 4; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 1500, 0, false});
    const auto st = sp.triggers(t).front();
    CHECK(st.state == TriggerState::ok);
    CHECK(st.evidence.samples == 12);
  }
  SECTION("the same samples with a known latency breach") {
    auto sp = latency_policy();
    TimePoint t = P0;
    for (int i = 0; i < 12; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 20, 0, true});
    for (int i = 0; i < 4; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 1500, 0, true});
    CHECK(sp.triggers(t).front().state == TriggerState::firing);
  }
  SECTION("mostly stalled: inconclusive, not ok") {
    auto sp = latency_policy();
    TimePoint t = P0;
    for (int i = 0; i < 10; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 20, 0, true});
    for (int i = 0; i < 30; ++i, t += 1s) sp.on_sample(0, Sample{t, SampleOutcome::ok, 1500, 0, false});
    CHECK(sp.triggers(t).front().state == TriggerState::inconclusive);
  }
}
