// Rule kinds and the trigger state machine, with tables and a fake clock.
#include <catch2/catch.hpp>

#include <random>

#include "policy/engine.hpp"

using namespace lastgood::policy;
using namespace std::chrono_literals;

namespace {

const TimePoint T0 = TimePoint{} + std::chrono::hours(24 * 365 * 50);

Sample S(TimePoint at, SampleOutcome o, double ms = 10, std::uint32_t cond = 0) { return Sample{at, o, ms, cond}; }
constexpr auto OK = SampleOutcome::ok;
constexpr auto FAIL = SampleOutcome::fail;
constexpr auto ERR = SampleOutcome::error;

Trigger trig(Rule r, Duration for_ = 0ms, Duration recover = 0ms) {
  Trigger t;
  t.name = "t";
  t.severity = Severity::P1;
  t.rule = std::move(r);
  t.for_ = for_;
  t.recover_after = recover;
  return t;
}

ServicePolicy one_probe(Trigger t) {
  ServiceSpec s;
  s.name = "svc";
  s.probes = {{"p", false}};
  s.triggers = {std::move(t)};
  s.rollback.mode = "alert";
  return ServicePolicy(s);
}

// Feeds outcomes one second apart from T0; returns the trigger's state after the last one.
TriggerState feed(ServicePolicy& sp, const std::string& outcomes, TimePoint start = T0, Duration step = 1000ms) {
  TimePoint t = start;
  for (char c : outcomes) {
    sp.on_sample(0, S(t, c == 'o' ? OK : c == 'x' ? FAIL : ERR));
    t += step;
  }
  return sp.triggers(t).front().state;
}

Rule consecutive(int n) {
  Rule r;
  r.kind = "consecutive_failures";
  r.count = n;
  return r;
}
Rule x_of_y(int x, int y) {
  Rule r;
  r.kind = "x_of_y";
  r.failures = x;
  r.of = y;
  return r;
}
Rule error_rate(Duration w, double max, int min_samples) {
  Rule r;
  r.kind = "error_rate";
  r.window = w;
  r.max = max;
  r.min_samples = min_samples;
  return r;
}

}  // namespace

TEST_CASE("consecutive_failures fires at exactly the count; errors neither count nor reset", "[policy]") {
  auto [outcomes, want] = GENERATE(table<std::string, TriggerState>({
      {"", TriggerState::inconclusive},
      {"xx", TriggerState::ok},
      {"xxx", TriggerState::firing},
      {"xxox", TriggerState::ok},
      {"xxexx", TriggerState::firing},  // e skipped: x x x x in a row of judged results
      {"eee", TriggerState::inconclusive},
      {"oeee", TriggerState::inconclusive},
      {"xxxo", TriggerState::ok},
  }));
  INFO(outcomes);
  auto sp = one_probe(trig(consecutive(3)));
  CHECK(feed(sp, outcomes) == want);
}

TEST_CASE("x_of_y counts failures in the last y results and starts over at each state change", "[policy]") {
  SECTION("table") {
    auto [outcomes, want] = GENERATE(table<std::string, TriggerState>({
        {"xoxox", TriggerState::firing},   // 3 of 5
        {"xooox", TriggerState::ok},       // 2 of 5
        {"xoooox", TriggerState::ok},      // the first x slid out
        {"xxx", TriggerState::firing},
    }));
    INFO(outcomes);
    auto sp = one_probe(trig(x_of_y(3, 5)));
    CHECK(feed(sp, outcomes) == want);
  }
  SECTION("a flapping target cannot re-fire without a full new window") {
    auto sp = one_probe(trig(x_of_y(3, 5)));
    REQUIRE(feed(sp, "xoxox") == TriggerState::firing);
    // The window restarted at the transition: one ok and the trigger recovers (recover_after 0).
    CHECK(feed(sp, "o", T0 + 5s) == TriggerState::ok);
    // ... and again restarted: two more failures are not enough, the third is.
    CHECK(feed(sp, "xx", T0 + 6s) == TriggerState::ok);
    CHECK(feed(sp, "x", T0 + 8s) == TriggerState::firing);
  }
}

TEST_CASE("error_rate compares fail/(ok+fail) with max, strictly above; errors are not failures", "[policy]") {
  auto [outcomes, want] = GENERATE(table<std::string, TriggerState>({
      {"oooooooooo", TriggerState::ok},
      {"xooooooooo", TriggerState::ok},       // 0.1 == max: not above
      {"xxoooooooo", TriggerState::firing},   // 0.2 > 0.1
      {"xxoooo", TriggerState::inconclusive}, // 6 < min_samples 10
      {"eeeeeeeeeeeeoooooooooo", TriggerState::inconclusive},  // 12/22 errors > half: blind
      {"eeeeeooooooooo", TriggerState::inconclusive},  // 9 judged < min_samples 10
      {"eeeeeoooooooooo", TriggerState::ok},            // 10 judged, 5/15 errors: seen
  }));
  INFO(outcomes);
  auto sp = one_probe(trig(error_rate(60s, 0.1, 10)));
  CHECK(feed(sp, outcomes) == want);
}

TEST_CASE("error_rate's window slides past old failures", "[policy]") {
  auto sp = one_probe(trig(error_rate(10s, 0.2, 5)));
  // 5 failures at t=0..4 then oks: firing, then the failures age out of the 10 s window.
  REQUIRE(feed(sp, "xxxxxooooo") == TriggerState::firing);
  TimePoint t = T0 + 10s;
  for (int i = 0; i < 5; ++i, t += 1s) sp.on_sample(0, S(t, OK));
  // At 15 s the window (5 s, 15 s] holds the oks at 6..14 s; the failures at 0..4 s are gone.
  sp.tick(T0 + 15s);
  auto v = sp.triggers(T0 + 15s).front();
  CHECK(v.state == TriggerState::ok);
  CHECK(v.evidence.value == 0.0);
  CHECK(v.evidence.samples == 9);
}

TEST_CASE("an empty window is inconclusive, never ok or firing", "[policy]") {
  auto sp = one_probe(trig(error_rate(10s, 0.1, 1)));
  sp.tick(T0);
  CHECK(sp.triggers(T0).front().state == TriggerState::inconclusive);
  REQUIRE(feed(sp, "x") == TriggerState::firing);
  sp.tick(T0 + 30s);  // the only sample aged out: blind, but a firing trigger does not recover blind
  CHECK(sp.triggers(T0 + 30s).front().state == TriggerState::firing);
}

TEST_CASE("latency fires when the nearest-rank percentile is above max, exactly", "[policy]") {
  Rule r;
  r.kind = "latency";
  r.percentile = 90;
  r.window = 60s;
  r.max_latency = 100ms;
  r.min_samples = 10;
  auto run = [&](std::vector<double> ms) {
    auto sp = one_probe(trig(r));
    TimePoint t = T0;
    for (double m : ms) {
      sp.on_sample(0, S(t, OK, m));
      t += 1s;
    }
    return sp.triggers(t);
  };
  // 10 samples: p90 is the 9th smallest.
  auto at = run({10, 20, 30, 40, 50, 60, 70, 80, 100, 500});  // 9th = 100 == max: not above
  CHECK(at.front().state == TriggerState::ok);
  CHECK(at.front().evidence.value == 100);
  auto above = run({10, 20, 30, 40, 50, 60, 70, 80, 101, 500});
  CHECK(above.front().state == TriggerState::firing);
  CHECK(above.front().evidence.value == 101);
  CHECK(percentile_ms(SampleWindow{}, T0, 60s, 90) == 0);  // empty window
}

TEST_CASE("burn_rate fires only when both windows burn faster than factor x (1 - slo): SRE workbook pairs", "[policy]") {
  Rule r;
  r.kind = "burn_rate";
  r.slo = 0.999;
  r.burn_windows = {{1h, 5min, 14.4}, {6h, 30min, 6}};
  // One sample every 10 s; an error ratio e burns at e / 0.001.
  auto run = [&](double long_ratio, double short_ratio, Duration long_span, Duration short_span) {
    auto sp = one_probe(trig(r));
    TimePoint t = T0;
    const TimePoint end = T0 + long_span;
    int i = 0;
    while (t < end) {
      const bool in_short = end - t <= short_span;
      const double ratio = in_short ? short_ratio : long_ratio;
      const int per = ratio > 0 ? static_cast<int>(1.0 / ratio) : 0;
      sp.on_sample(0, S(t, per > 0 && i % per == 0 ? FAIL : OK));
      t += 10s;
      ++i;
    }
    return sp.triggers(t - 10s).front();
  };
  SECTION("2% errors for an hour (20x) fires the 1h/5m pair") {
    auto v = run(0.02, 0.02, 1h, 5min);
    CHECK(v.state == TriggerState::firing);
    CHECK(v.evidence.threshold == 14.4);
  }
  SECTION("1% for 6 h (10x) fires only the 6h/30m pair") {
    auto v = run(0.01, 0.01, 6h, 30min);
    CHECK(v.state == TriggerState::firing);
    CHECK(v.evidence.threshold == 6);
  }
  SECTION("a spike that ended 35 min ago: both short windows are clean, no fire") {
    auto v = run(0.05, 0.0, 1h, 35min);
    CHECK(v.state == TriggerState::ok);
  }
  SECTION("0.5% (5x) is below both factors") {
    auto v = run(0.005, 0.005, 6h, 30min);
    CHECK(v.state == TriggerState::ok);
  }
}

TEST_CASE("spread fires when at least min_share of the service's probes fail together; impact is stated", "[policy]") {
  Rule r;
  r.kind = "spread";
  r.min_share = 0.5;
  ServiceSpec s;
  s.name = "svc";
  s.probes = {{"a", false}, {"b", false}, {"c", false}, {"d", false}, {"ref", true}};
  s.triggers = {trig(r)};
  s.rollback.mode = "alert";
  ServicePolicy sp(s);
  sp.on_sample(0, S(T0, FAIL));
  sp.on_sample(1, S(T0, OK));
  sp.on_sample(2, S(T0, OK));
  sp.on_sample(4, S(T0, FAIL));  // the reference probe is not part of the service's impact
  CHECK(sp.triggers(T0).front().state == TriggerState::ok);
  auto ev = sp.on_sample(1, S(T0 + 1s, FAIL));  // 2 of 4 = 0.5: at least min_share
  REQUIRE(ev.transitions.size() == 1);
  CHECK(ev.transitions[0].to == TriggerState::firing);
  CHECK(ev.transitions[0].evidence.probes_failing == 2);
  CHECK(ev.transitions[0].evidence.probes_watched == 4);
}

TEST_CASE("condition fires on the named expectation only", "[policy]") {
  Rule r;
  r.kind = "condition";
  r.condition = "cert_valid_for";
  auto sp = one_probe(trig(r));
  sp.on_sample(0, S(T0, FAIL, 10, condition_bit("status")));
  CHECK(sp.triggers(T0).front().state == TriggerState::ok);
  sp.on_sample(0, S(T0 + 1s, FAIL, 10, condition_bit("cert_valid_for") | condition_bit("status")));
  CHECK(sp.triggers(T0 + 1s).front().state == TriggerState::firing);
  sp.on_sample(0, S(T0 + 2s, OK));
  CHECK(sp.triggers(T0 + 2s).front().state == TriggerState::ok);
}

TEST_CASE("`for` and `recover_after` are honoured to the millisecond", "[policy]") {
  auto sp = one_probe(trig(consecutive(1), 30s, 10s));
  auto ev = sp.on_sample(0, S(T0, FAIL));
  REQUIRE(ev.transitions.size() == 1);
  CHECK(ev.transitions[0].to == TriggerState::pending);
  sp.on_sample(0, S(T0 + 29'999ms, FAIL));
  CHECK(sp.triggers(T0 + 29'999ms).front().state == TriggerState::pending);
  ev = sp.tick(T0 + 30'000ms);
  REQUIRE(ev.transitions.size() == 1);
  CHECK(ev.transitions[0].from == TriggerState::pending);
  CHECK(ev.transitions[0].to == TriggerState::firing);
  CHECK(ev.transitions[0].at == T0 + 30s);

  sp.on_sample(0, S(T0 + 40s, OK));  // healthy from 40 s
  CHECK(sp.tick(T0 + 49'999ms).transitions.empty());
  ev = sp.tick(T0 + 50'000ms);
  REQUIRE(ev.transitions.size() == 1);
  CHECK(ev.transitions[0].to == TriggerState::ok);
}

TEST_CASE("a breach that clears before `for` runs out never fires", "[policy]") {
  auto sp = one_probe(trig(consecutive(1), 10s));
  sp.on_sample(0, S(T0, FAIL));
  auto ev = sp.on_sample(0, S(T0 + 5s, OK));
  REQUIRE(ev.transitions.size() == 1);
  CHECK(ev.transitions[0].to == TriggerState::ok);
  CHECK(sp.tick(T0 + 20s).transitions.empty());
}

TEST_CASE("a relapse during recover_after restarts the healthy clock", "[policy]") {
  auto sp = one_probe(trig(consecutive(1), 0ms, 10s));
  sp.on_sample(0, S(T0, FAIL));
  sp.on_sample(0, S(T0 + 1s, OK));
  sp.on_sample(0, S(T0 + 8s, FAIL));  // relapse
  sp.on_sample(0, S(T0 + 9s, OK));
  CHECK(sp.tick(T0 + 18s).transitions.empty());  // 9 s healthy only
  CHECK(sp.tick(T0 + 19s).transitions.size() == 1);
}

TEST_CASE("the window keeps bounded memory", "[policy]") {
  auto sp = one_probe(trig(error_rate(60s, 0.5, 1)));
  for (int i = 0; i < 10'000; ++i) sp.on_sample(0, S(T0 + std::chrono::seconds(i), i % 3 ? OK : FAIL));
  auto v = sp.triggers(T0 + 9'999s).front();
  CHECK(v.evidence.samples == 60);  // (now - 60 s, now]
  CHECK(sp.samples_held(0) <= 61);
}

TEST_CASE("ticks skipped for count-based triggers at rest change nothing: same transitions as a policy that judges every tick",
          "[policy]") {
  // B watches the same probe through `probe`, and its service has a second probe the trigger does
  // not watch, so its trigger is never skipped; A's is, while ok or inconclusive.
  const int seed = GENERATE(1, 2, 3, 4, 5, 6);
  std::mt19937 rng(static_cast<unsigned>(seed));
  Rule rule = seed % 3 == 0 ? x_of_y(2, 4) : consecutive(1 + seed % 3);
  Trigger t = trig(rule, std::chrono::milliseconds(1000 * (seed % 4)), std::chrono::milliseconds(700 * (seed % 5)));
  auto a = one_probe(t);
  t.probe = "p";
  ServiceSpec sb;
  sb.name = "svc";
  sb.probes = {{"p", false}, {"other", false}};
  sb.triggers = {t};
  sb.rollback.mode = "alert";
  ServicePolicy b(sb);
  std::vector<std::pair<TriggerState, TimePoint>> seen_a, seen_b;
  auto collect = [](const Events& ev, auto& out) {
    for (const auto& tr : ev.transitions) out.emplace_back(tr.to, tr.at);
  };
  for (int ms = 0; ms < 600'000; ms += 100) {
    const TimePoint now = T0 + std::chrono::milliseconds(ms);
    if (ms % 1000 == 0 && rng() % 3 != 0) {  // a sample most seconds; failures come in runs
      const auto o = (ms / 20'000) % 2 ? (rng() % 4 ? FAIL : OK) : (rng() % 10 ? OK : (rng() % 2 ? FAIL : ERR));
      collect(a.on_sample(0, S(now, o)), seen_a);
      collect(b.on_sample(0, S(now, o)), seen_b);
    }
    collect(a.tick(now), seen_a);
    collect(b.tick(now), seen_b);
  }
  CHECK(seen_a.size() > 10);  // the comparison compared something
  CHECK(seen_a == seen_b);
}
