// Decisions in scenarios (fake clock, synthetic results), and randomized invariants.
#include <catch2/catch.hpp>

#include <random>

#include "policy/engine.hpp"

using namespace lastgood::policy;
using namespace std::chrono_literals;

namespace {

const TimePoint T0 = TimePoint{} + std::chrono::hours(24 * 365 * 50);
constexpr auto OK = SampleOutcome::ok;
constexpr auto FAIL = SampleOutcome::fail;

ServiceSpec service(std::string mode = "auto", bool with_reference = false) {
  ServiceSpec s;
  s.name = "www";
  s.probes = {{"home", false}};
  if (with_reference) s.probes.push_back({"reach", true});
  Trigger down;
  down.name = "down";
  down.severity = Severity::P0;
  down.rule.kind = "consecutive_failures";
  down.rule.count = 3;
  s.triggers = {down};
  s.rollback.mode = mode;
  s.rollback.good_after = 10min;
  s.rollback.rollback_window = 2h;
  s.rollback.cooldown = 30min;
  s.rollback.max_per_day = 3;
  s.authority = std::make_shared<const std::map<Severity, Authority>>(
      std::map<Severity, Authority>{{Severity::P0, Authority{{"oncall"}, 1, true}}, {Severity::P1, Authority{{"manager"}, 1, false}}});
  s.has_deployment = true;
  return s;
}

// Drives a ServicePolicy with one result per `step` and collects its decisions.
struct Driver {
  ServicePolicy sp;
  TimePoint now = T0;
  std::vector<Decision> decisions;
  explicit Driver(ServiceSpec s) : sp(std::move(s)) {}
  void release(const std::string& id) { sp.on_release(id, std::nullopt, now); }
  void run(SampleOutcome o, Duration span, Duration step = 10s, size_t probe = 0) {
    for (TimePoint end = now + span; now < end; now += step) {
      auto ev = sp.on_sample(probe, Sample{now, o, 20, 0});
      decisions.insert(decisions.end(), ev.decisions.begin(), ev.decisions.end());
      auto tk = sp.tick(now);
      decisions.insert(decisions.end(), tk.decisions.begin(), tk.decisions.end());
    }
  }
};

}  // namespace

TEST_CASE("a bad release after a verified good one is rolled back at once where P0 may auto-execute", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 15min);  // v1 verified good after 10 min
  REQUIRE(d.sp.deployment().last_good());
  CHECK(d.sp.deployment().last_good()->id == "v1");
  d.release("v2");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  const auto& dec = d.decisions[0];
  CHECK(dec.kind == DecisionKind::execute);
  CHECK(dec.release_from == "v2");
  CHECK(dec.release_to == "v1");
  CHECK(dec.severity == Severity::P0);
  CHECK(dec.evidence.measure == "consecutive_failures");
  CHECK(dec.evidence.value == 3);
  CHECK(dec.evidence.threshold == 3);
  CHECK(dec.evidence.probes_failing == 1);
  CHECK(dec.evidence.probes_watched == 1);
  CHECK_THAT(dec.reason, Catch::Contains("v2 -> v1"));
}

TEST_CASE("mode approve proposes; mode alert alerts; a severity without auto authority proposes", "[policy][scenario]") {
  for (std::string mode : {"approve", "alert"}) {
    Driver d(service(mode));
    d.release("v1");
    d.run(OK, 15min);
    d.release("v2");
    d.run(FAIL, 30s);
    REQUIRE(d.decisions.size() == 1);
    CHECK(d.decisions[0].kind == (mode == "approve" ? DecisionKind::propose : DecisionKind::alert));
  }
  auto s = service("auto");
  s.triggers.edit()[0].severity = Severity::P1;  // P1: auto false
  Driver d(s);
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::propose);
  CHECK_THAT(d.decisions[0].reason, Catch::Contains("requires approval"));
}

TEST_CASE("a flapping target for an hour yields at most one acting decision per cooldown", "[policy][scenario]") {
  auto s = service("auto");
  s.triggers.edit()[0].rule = Rule{};
  s.triggers.edit()[0].rule.kind = "x_of_y";
  s.triggers.edit()[0].rule.failures = 2;
  s.triggers.edit()[0].rule.of = 3;
  Driver d(s);
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  for (int i = 0; i < 360; ++i) d.run(i % 2 ? OK : FAIL, 10s);  // alternating for an hour
  int acting = 0;
  std::optional<TimePoint> last;
  for (const auto& dec : d.decisions) {
    if (dec.kind == DecisionKind::hold) continue;
    ++acting;
    if (last) CHECK(dec.at - *last >= 30min);
    last = dec.at;
  }
  CHECK(acting >= 1);
  CHECK(acting <= 2);  // one hour, 30 min cooldown
  CHECK(d.decisions.size() > static_cast<size_t>(acting));  // the rest were holds with a reason
  for (const auto& dec : d.decisions)
    if (dec.kind == DecisionKind::hold) CHECK_THAT(dec.reason, Catch::Contains("cooldown"));
}

TEST_CASE("no data: inconclusive, no decision", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  for (int i = 0; i < 100; ++i) {
    auto ev = d.sp.tick(d.now);
    CHECK(ev.decisions.empty());
    d.now += 10s;
  }
  CHECK(d.sp.triggers(d.now).front().state == TriggerState::inconclusive);
  d.run(SampleOutcome::error, 10min);
  CHECK(d.decisions.empty());
  CHECK(d.sp.triggers(d.now).front().state == TriggerState::inconclusive);
}

TEST_CASE("a breach 3 h after the last deploy with rollback_window 2h holds: no recent deployment", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  d.run(OK, 3h);
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::hold);
  CHECK_THAT(d.decisions[0].reason, Catch::StartsWith("no recent deployment"));
}

TEST_CASE("the deploy time from the source counts, not the time it was first seen", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 15min);
  d.sp.on_release("v2", d.now - 3h, d.now);  // e.g. npm time[version]: deployed long before we looked
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::hold);
  CHECK_THAT(d.decisions[0].reason, Catch::Contains("no recent deployment"));
}

TEST_CASE("a release carrying a migration is proposed, never executed", "[policy][scenario]") {
  auto s = service("auto");
  s.migration_releases = {"v2"};
  Driver d(s);
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::propose);
  CHECK_THAT(d.decisions[0].reason, Catch::Contains("data migration"));
}

TEST_CASE("two bad releases in a row: the target is the last verified good, never the bad one between", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  d.run(OK, 2min);  // live, not yet good
  d.release("v3");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].release_from == "v3");
  CHECK(d.decisions[0].release_to == "v1");
}

TEST_CASE("no verified good release known: hold", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 2min);
  d.release("v2");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::hold);
  CHECK_THAT(d.decisions[0].reason, Catch::StartsWith("no verified good release"));
}

TEST_CASE("cold start: nothing verified yet, the deployment's own older release is proposed (never executed), and says it is unverified",
          "[policy][scenario]") {
  Driver d(service("auto"));  // P0 may auto-execute: still only a proposal
  SECTION("the live release found in the deployment's list: the newest one before it") {
    d.sp.offer({{"v1", std::nullopt}, {"v2", std::nullopt}, {"v3", std::nullopt}, {"v4", std::nullopt}});
    d.release("v3");
    d.run(FAIL, 30s);
    REQUIRE(d.decisions.size() == 1);
    CHECK(d.decisions[0].kind == DecisionKind::propose);
    CHECK(d.decisions[0].release_to == "v2");  // v4 is newer than the live one: never a rollback "back" to it
    CHECK(d.decisions[0].unverified_target);
    CHECK_THAT(d.decisions[0].reason, Catch::Contains("(unverified: no release of this service has been verified good yet"));
  }
  SECTION("a release marked bad is skipped; none older: hold as before") {
    d.sp.offer({{"v1", std::nullopt}, {"v2", std::nullopt}, {"v3", std::nullopt}});
    d.sp.mark_bad("v2", BadMark{"alice", "corrupts carts", T0});
    d.release("v3");
    d.run(FAIL, 30s);
    REQUIRE(d.decisions.size() == 1);
    CHECK(d.decisions[0].release_to == "v1");
    Driver first(service("auto"));
    first.sp.offer({{"v1", std::nullopt}});
    first.release("v1");
    first.run(FAIL, 30s);
    REQUIRE(first.decisions.size() == 1);
    CHECK(first.decisions[0].kind == DecisionKind::hold);
  }
  SECTION("by deploy times when the live release is not in the list") {
    d.sp.offer({{"a", T0 - 3h}, {"b", T0 - 2h}, {"c", T0 + 1h}});
    d.sp.on_release("live", T0 - 1h, d.now);
    d.run(FAIL, 30s);
    REQUIRE(d.decisions.size() == 1);
    CHECK(d.decisions[0].release_to == "b");
  }
  SECTION("once a release is verified good, it is the target, as always") {
    d.sp.offer({{"v1", std::nullopt}, {"v2", std::nullopt}, {"v3", std::nullopt}});
    d.release("v1");
    d.run(OK, 11min);
    d.release("v3");
    d.run(FAIL, 30s);
    REQUIRE(d.decisions.size() == 1);
    CHECK(d.decisions[0].kind == DecisionKind::execute);
    CHECK(d.decisions[0].release_to == "v1");
    CHECK_FALSE(d.decisions[0].unverified_target);
  }
}

TEST_CASE("while the watcher's reference probe fails, every decision is hold: watcher unhealthy", "[policy][scenario]") {
  Driver d(service("auto", true));
  d.release("v1");
  for (int i = 0; i < 90; ++i) {  // 15 min of both probes ok
    d.sp.on_sample(1, Sample{d.now, OK, 5, 0});
    d.run(OK, 10s);
  }
  d.release("v2");
  d.sp.on_sample(1, Sample{d.now, FAIL, 5, 0});
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::hold);
  CHECK_THAT(d.decisions[0].reason, Catch::StartsWith("watcher unhealthy"));
}

TEST_CASE("shadow mode decides and says so, and does not spend the budget", "[policy][scenario]") {
  auto s = service("auto");
  s.triggers.edit()[0].shadow = true;
  Driver d(s);
  d.release("v1");
  d.run(OK, 15min);
  d.release("v2");
  d.run(FAIL, 30s);
  REQUIRE(d.decisions.size() == 1);
  CHECK(d.decisions[0].kind == DecisionKind::execute);
  CHECK(d.decisions[0].shadow);
  CHECK_FALSE(d.sp.budget().last_decision());
}

TEST_CASE("the daily cap holds after max_per_day rollbacks", "[policy][scenario]") {
  auto s = service("auto");
  s.rollback.cooldown = 1min;
  s.rollback.max_per_day = 2;
  Driver d(s);
  for (int round = 0; round < 3; ++round) {
    d.release("good" + std::to_string(round));
    d.run(OK, 15min);
    d.release("bad" + std::to_string(round));
    d.run(FAIL, 30s);
    d.run(OK, 1min);
  }
  REQUIRE(d.decisions.size() == 3);
  CHECK(d.decisions[0].kind == DecisionKind::execute);
  CHECK(d.decisions[1].kind == DecisionKind::execute);
  CHECK(d.decisions[2].kind == DecisionKind::hold);
  CHECK_THAT(d.decisions[2].reason, Catch::StartsWith("rollback budget spent"));
}

TEST_CASE("randomized: never execute in cooldown or past the cap, never target the live or an unknown release, always evidence",
          "[policy][random]") {
  int executes_seen = 0, proposes_seen = 0, holds_seen = 0;
  for (std::uint64_t seed = 1; seed <= 2000; ++seed) {
    std::mt19937_64 rng(seed);
    auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<std::uint64_t>(n)); };
    auto release_name = [&](int n) { return std::string(1, 'r').append(std::to_string(pick(n))); };  // (GCC 12 -Wrestrict false positive on "r" + ...)
    auto s = service(pick(3) == 0 ? "approve" : "auto", pick(2) == 0);
    s.rollback.cooldown = std::chrono::minutes(1 + pick(30));
    s.rollback.max_per_day = 1 + pick(3);
    s.rollback.good_after = std::chrono::minutes(pick(5));
    if (pick(2)) s.triggers.edit()[0].rule.count = 1 + pick(4);
    if (pick(3) == 0) s.migration_releases.insert(release_name(5));
    ServicePolicy sp(s);
    TimePoint now = T0;
    std::vector<TimePoint> executes;
    std::optional<TimePoint> last_acting;
    INFO("seed " << seed);
    for (int step = 0; step < 400; ++step) {
      now += std::chrono::seconds(1 + pick(60));
      const int what = pick(20);
      if (what == 0) {
        sp.on_release(release_name(6), pick(2) ? std::optional<TimePoint>(now - std::chrono::minutes(pick(300))) : std::nullopt, now);
        continue;
      }
      Events ev = what < 3 && s.probes.size() > 1 ? sp.on_sample(1, Sample{now, pick(4) ? OK : FAIL, 5, 0})
                                                  : sp.on_sample(0, Sample{now, pick(3) ? OK : FAIL, 10, 0});
      for (const auto& d : ev.decisions) {
        executes_seen += d.kind == DecisionKind::execute;
        proposes_seen += d.kind == DecisionKind::propose;
        holds_seen += d.kind == DecisionKind::hold;
        REQUIRE_FALSE(d.reason.empty());
        REQUIRE_FALSE(d.evidence.measure.empty());
        REQUIRE(d.evidence.probes_watched >= 1);
        if (d.kind == DecisionKind::execute || d.kind == DecisionKind::propose) {
          REQUIRE(d.release_to.has_value());
          REQUIRE(d.release_from.has_value());
          REQUIRE(*d.release_to != *d.release_from);
          REQUIRE(sp.deployment().known(*d.release_to));
        }
        if (d.kind != DecisionKind::hold) {
          if (last_acting) REQUIRE(now - *last_acting >= s.rollback.cooldown);
          last_acting = now;
        }
        if (d.kind == DecisionKind::execute) {
          int in_day = 0;
          for (auto t : executes) in_day += now - t < 24h;
          REQUIRE(in_day < s.rollback.max_per_day);
          executes.push_back(now);
        }
      }
    }
  }
  // The sequences must reach every kind, or the invariants above were checked on nothing.
  CHECK(executes_seen > 100);
  CHECK(proposes_seen > 100);
  CHECK(holds_seen > 100);
}

TEST_CASE("verified good needs evidence: errors alone never verify a release; healthy_samples ok results do", "[policy][scenario]") {
  auto s = service("auto");
  s.rollback.verify.healthy_samples = 5;
  Driver d(s);
  d.release("v1");
  // An hour of errors (an unresolvable host: the watcher could not judge) is no evidence.
  d.run(SampleOutcome::error, 1h);
  CHECK(d.sp.deployment().last_good() == nullptr);
  // Four ok results within good_after of health: not yet enough.
  d.run(OK, 40s);
  CHECK(d.sp.deployment().last_good() == nullptr);
  // good_after (10 min) of health with >= 5 ok results: verified.
  d.run(OK, 11min);
  REQUIRE(d.sp.deployment().last_good() != nullptr);
  CHECK(d.sp.deployment().last_good()->id == "v1");
}

TEST_CASE("verified good needs no failure through good_after: one fail restarts the wait", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 9min);
  d.run(FAIL, 10s);  // one failure (below the trigger's count of 3): health must be seen again in full
  d.run(OK, 9min);
  CHECK(d.sp.deployment().last_good() == nullptr);
  d.run(OK, 2min);
  REQUIRE(d.sp.deployment().last_good() != nullptr);
}

TEST_CASE("while lastgood cannot record, no release is verified good; it is once recording works", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.sp.set_can_record(false);
  d.run(OK, 30min);
  CHECK(d.sp.deployment().last_good() == nullptr);
  d.sp.set_can_record(true);
  d.run(OK, 10s);
  CHECK(d.sp.deployment().last_good() != nullptr);
}

TEST_CASE("a replayed execute decision costs no cooldown; its action_started does", "[policy][scenario]") {
  Driver d(service("auto"));
  d.release("v1");
  d.run(OK, 11min);
  d.release("v2");
  d.sp.replay_decision(DecisionKind::execute, d.now);  // the decision was recorded, then lastgood died
  d.run(FAIL, 40s);
  REQUIRE(!d.decisions.empty());
  CHECK(d.decisions.back().kind == DecisionKind::execute);  // decided again on fresh evidence

  Driver e(service("auto"));
  e.release("v1");
  e.run(OK, 11min);
  e.release("v2");
  e.sp.note_rollback(e.now);  // the action had started
  e.run(FAIL, 40s);
  REQUIRE(!e.decisions.empty());
  CHECK(e.decisions.back().kind == DecisionKind::hold);
  CHECK_THAT(e.decisions.back().reason, Catch::StartsWith("cooldown"));
}

TEST_CASE("evidence is of the live release: failures of one release never make a decision against the next", "[policy][scenario]") {
  auto s = service("approve");
  Driver d(s);
  d.release("v1");
  d.run(OK, 11min);
  d.release("v2");
  // Two failures on v2 (below the count of 3), then a person deploys the fix v3, which is healthy.
  d.run(FAIL, 20s);
  auto ev = d.sp.on_release("v3", std::nullopt, d.now);
  CHECK(ev.transitions.empty());  // nothing was pending or firing
  d.run(FAIL, 10s);  // a result taken before the deploy reached the target: one failure on v3's count only
  d.run(OK, 1min);
  CHECK(d.decisions.empty());

  // A trigger firing on v2 ends when v3 is seen live, said as a transition to inconclusive.
  Driver e(s);
  e.release("v1");
  e.run(OK, 11min);
  e.release("v2");
  e.sp.set_can_record(true);
  for (int i = 0; i < 3; ++i) {
    e.sp.on_sample(0, Sample{e.now, FAIL, 20, 0}, true);  // deferred: the pipeline observes first
    e.now += 10s;
  }
  REQUIRE(e.sp.trigger_firing(0));
  auto end = e.sp.on_release("v3", std::nullopt, e.now);
  REQUIRE(end.transitions.size() == 1);
  CHECK(end.transitions[0].from == TriggerState::firing);
  CHECK(end.transitions[0].to == TriggerState::inconclusive);
  CHECK(end.transitions[0].evidence.measure == "release_changed");
  CHECK_FALSE(e.sp.trigger_firing(0));  // decide() is not called: nothing is decided against v3
}

TEST_CASE("counted at start: an execute decision costs nothing until its rollback starts, and each rollback counts once", "[policy][scenario]") {
  auto s = service("auto");
  s.rollback.cooldown = 1min;
  Driver d(s);
  d.sp.count_rollbacks_at_start();
  d.release("v1");
  d.run(OK, 11min);
  // Three breaches, each rolled back (note_rollback at action_started), two hours apart: the cap
  // of 3 a day lets all three run (the decision and the start used to count twice).
  for (int i = 0; i < 3; ++i) {
    d.release("bad" + std::to_string(i));
    const size_t before = d.decisions.size();
    d.run(FAIL, 40s);
    REQUIRE(d.decisions.size() > before);
    CHECK(d.decisions.back().kind == DecisionKind::execute);
    d.sp.note_rollback(d.now);
    d.release("v1");
    d.run(OK, 2h);
  }
  CHECK(d.sp.budget().rollbacks_last_day(d.now) == 3);
  // An execute decision that was not carried out (the pipeline held it) costs no cooldown: the
  // breach decided again a moment later executes.
  d.release("bad9");
  d.run(FAIL, 40s);
  CHECK(d.decisions.back().kind == DecisionKind::hold);  // the cap: three today
  CHECK_THAT(d.decisions.back().reason, Catch::Contains("budget"));
  Driver e(s);
  e.sp.count_rollbacks_at_start();
  e.release("v1");
  e.run(OK, 11min);
  e.release("v2");
  e.run(FAIL, 40s);
  REQUIRE(!e.decisions.empty());
  CHECK(e.decisions.back().kind == DecisionKind::execute);
  CHECK(e.sp.decide(0, e.now + 1s).kind == DecisionKind::execute);  // not started: no cooldown yet
  e.sp.note_rollback(e.now + 1s);
  CHECK(e.sp.decide(0, e.now + 2s).kind == DecisionKind::hold);  // started: the cooldown runs
}
