// The pipeline's parts on a fake clock: the verifier, replay (every event type, and damage),
// escalation and clear.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "watchdog/kinds.hpp"
#include "pipeline_fakes.hpp"
#include "watchdog/pipeline/pipeline.hpp"
#include "watchdog/state/records.hpp"
#include "watchdog/metrics.hpp"
#include "watchdog/pipeline/replay.hpp"
#include "watchdog/pipeline/rollback.hpp"
#include "watchdog/pipeline/verifier.hpp"

using namespace lastgood;
using namespace lastgood::watchdog;
using namespace std::chrono_literals;
using nlohmann::json;
using testing::FakeClock;
using testing::FakeRecorder;
using testing::Notices;

namespace {
// What the service shows when everything but the count has recovered.
RecoveryFacts recovered(const std::string& live = "v1") { return RecoveryFacts{live, {}}; }
}  // namespace

TEST_CASE("the verifier counts ok results in a row before its deadline", "[verifier]") {
  struct Row {
    const char* name;
    std::string results;  // o = ok, f = fail, each 1 s apart
    bool verified;
    int seen_at_end;
  };
  const std::vector<Row> rows = {
      {"three ok in a row", "ooo", true, 3},
      {"a fail starts the count again", "oofoo", false, 2},
      {"three after a fail", "foooo", true, 3},
  };
  for (const auto& row : rows) {
    SECTION(row.name) {
      FakeClock clock;
      FakeRecorder rec(clock);
      Verifier v(rec, 2);
      v.begin(1, Verification{"a1", "v1", "p1", clock.now() + 5min, 3, 0});
      bool verified = false;
      for (char c : row.results) {
        clock.t += 1s;
        v.on_result(1, c == 'o');
        if (auto done = v.check(1, "www", recovered(), clock.now())) {
          verified = done->result == Verifier::Result::verified;
          CHECK(done->v.proposal_id == "p1");
        }
      }
      CHECK(verified == row.verified);
      if (!verified) CHECK(v.find(1)->seen == row.seen_at_end);
      CHECK(rec.of(Event::verification).size() == (row.verified ? 1u : 0u));
      CHECK(v.find(0) == nullptr);  // the other service is not being verified
    }
  }
}

TEST_CASE("recovery needs the target live and every fired trigger back to ok, not only healthy results", "[verifier]") {
  FakeClock clock;
  FakeRecorder rec(clock);
  Verifier v(rec, 1);
  v.begin(0, Verification{"a1", "v1", "", clock.now() + 5min, 2, 0, {"errors", "slow"}});
  for (int i = 0; i < 5; ++i) v.on_result(0, true);
  using policy::TriggerState;
  SECTION("the live release is not the target: not verified, and said at the deadline") {
    CHECK_FALSE(v.check(0, "www", RecoveryFacts{"v2", {{"errors", TriggerState::ok}, {"slow", TriggerState::ok}}}, clock.now()));
    auto done = v.check(0, "www", RecoveryFacts{"v2", {{"errors", TriggerState::ok}, {"slow", TriggerState::ok}}}, clock.now() + 5min);
    REQUIRE(done);
    CHECK(done->result == Verifier::Result::not_recovered);
    CHECK(done->reason == "not recovered: the live release is v2, not v1");
    CHECK(done->conditions["live"]["held"] == false);
    CHECK(done->conditions["healthy_samples"]["held"] == true);
    CHECK(rec.of(Event::verification).at(0).data["reason"] == done->reason);
  }
  SECTION("the live release unknown") {
    auto done = v.check(0, "www", RecoveryFacts{std::nullopt, {}}, clock.now() + 6min);
    REQUIRE(done);
    CHECK(done->reason == "not recovered: the live release could not be read");
  }
  SECTION("a fired trigger still firing or without enough samples: not verified; each named") {
    CHECK_FALSE(v.check(0, "www", RecoveryFacts{"v1", {{"errors", TriggerState::firing}, {"slow", TriggerState::ok}}}, clock.now()));
    CHECK_FALSE(v.check(0, "www", RecoveryFacts{"v1", {{"errors", TriggerState::inconclusive}, {"slow", TriggerState::pending}}}, clock.now()));
    auto done = v.check(0, "www", RecoveryFacts{"v1", {{"errors", TriggerState::inconclusive}, {"slow", TriggerState::firing}}}, clock.now() + 5min);
    REQUIRE(done);
    CHECK(done->reason == "not recovered: trigger errors is inconclusive; trigger slow is firing");
    CHECK(done->conditions["triggers"][1]["state"] == "firing");
  }
  SECTION("all three hold: verified, and the reason says each") {
    auto done = v.check(0, "www", RecoveryFacts{"v1", {{"errors", TriggerState::ok}, {"slow", TriggerState::ok}}}, clock.now());
    REQUIRE(done);
    CHECK(done->result == Verifier::Result::verified);
    CHECK(done->reason == "recovered: v1 is live, 5 healthy results in a row, and errors, slow are back to ok");
    CHECK(rec.of(Event::verification).at(0).data["conditions"]["triggers"].size() == 2);
  }
}

TEST_CASE("past its deadline a verification is not recovered; an outage of the ledger moves the deadline", "[verifier]") {
  FakeClock clock;
  FakeRecorder rec(clock);
  Verifier v(rec, 1);
  v.begin(0, Verification{"a1", "v1", "", clock.now() + 5min, 3, 0});
  CHECK_FALSE(v.check(0, "www", recovered(), clock.now() + 4min));
  v.extend(2min);
  CHECK_FALSE(v.check(0, "www", recovered(), clock.now() + 6min));
  auto done = v.check(0, "www", recovered(), clock.now() + 7min);
  REQUIRE(done);
  CHECK(done->result == Verifier::Result::not_recovered);
  CHECK(done->reason == "not recovered: 0 of 3 healthy results in a row");
  CHECK(rec.of(Event::verification).at(0).data["outcome"] == "not_recovered");
  CHECK(v.find(0) == nullptr);
}

TEST_CASE("a verification that cannot be recorded is not verified; the next healthy result says it", "[verifier]") {
  FakeClock clock;
  FakeRecorder rec(clock);
  Verifier v(rec, 1);
  v.begin(0, Verification{"a1", "v1", "", clock.now() + 5min, 2, 0});
  rec.can = false;
  v.on_result(0, true);
  CHECK_FALSE(v.check(0, "www", recovered(), clock.now()));
  v.on_result(0, true);
  CHECK_FALSE(v.check(0, "www", recovered(), clock.now()));
  rec.can = true;
  v.on_result(0, true);
  CHECK(v.check(0, "www", recovered(), clock.now()));
}

namespace {

// Logs what replay rebuilds, one line per call.
struct Target final : ReplayTarget {
  std::vector<std::string> calls;
  std::optional<std::size_t> service_index(const std::string& name) const override {
    return name == "www" ? std::optional<std::size_t>(0) : std::nullopt;
  }
  void release(std::size_t, const std::string& id, std::optional<policy::TimePoint>, policy::TimePoint, bool m) override {
    calls.push_back("release " + id + (m ? " migration" : ""));
  }
  void verified_good(std::size_t, const std::string& id, policy::TimePoint) override { calls.push_back("good " + id); }
  void decision(std::size_t, policy::DecisionKind k, policy::TimePoint) override { calls.push_back(std::string("decision ") + policy::to_string(k)); }
  void rollback_started(std::size_t, policy::TimePoint) override { calls.push_back("rollback"); }
  void escalated(std::size_t, const std::string& why) override { calls.push_back("escalated " + why); }
  void cleared(std::size_t) override { calls.push_back("cleared"); }
  void marked_bad(std::size_t, const std::string& id, policy::BadMark m) override { calls.push_back("bad " + id + " by " + m.by); }
  void silence(Event type, const LedgerEntry& e) override { calls.push_back(std::string(name(type)) + " " + e.data.value("id", "")); }
};

LedgerEntry entry(Event type, json data, const std::string& service = "www") {
  static std::uint64_t seq = 0;
  LedgerEntry e;
  e.seq = ++seq;
  e.ts_ms = 1'800'000'000'000;
  e.type = std::string(name(type));
  e.service = service;
  e.data = std::move(data);
  return e;
}

struct ReplayWorld {
  FakeClock clock;
  FakeRecorder rec{clock};
  Ids ids;
  std::map<policy::Severity, policy::Authority> authority;
  Proposals proposals{rec, clock, authority, ids, [](const std::string&, const std::string&, const json&) {}};
  Target target;
};

}  // namespace

TEST_CASE("every event type replays: each rebuilds its state or is known to carry none", "[replay]") {
  // One entry of each type, with the data lastgood writes for it.
  const std::map<Event, json> data = {
      {Event::transition, {{"trigger", "t"}, {"to", "firing"}}},
      {Event::decision, {{"kind", "propose"}, {"shadow", false}}},
      {Event::release_observed, {{"release", "v2"}, {"migration", true}}},
      {Event::release_verified_good, {{"release", "v1"}}},
      {Event::alert_received, {{"trigger", "alertmanager:x"}}},
      {Event::proposal_created, {{"id", "p1"}, {"quorum", 1}, {"decision", {{"release_from", "v2"}, {"release_to", "v1"}, {"severity", "P0"}}}}},
      {Event::proposal_vote, {{"id", "p1"}, {"approve", true}, {"approver", "alice"}}},
      {Event::proposal_state, {{"id", "p1"}, {"state", "approved"}}},
      {Event::proposal_expired, {{"id", "p9"}}},
      {Event::approval_attempt, {{"proposal", "p1"}}},
      {Event::action_planned, {{"from", "v2"}, {"to", "v1"}}},
      {Event::action_refused, {{"action_id", "a0"}}},
      {Event::action_started, {{"action_id", "a1"}, {"to", "v1"}, {"via", "proposal p1"}}},
      {Event::action_finished, {{"action_id", "a1"}, {"ok", true}}},
      {Event::action_reconciled, {{"action_id", "a2"}, {"switched", false}}},
      {Event::verification, {{"action_id", "a9"}}},
      {Event::escalated, {{"reason", "r"}}},
      {Event::cleared, {{"by", "alice"}}},
      {Event::clear_refused, {{"why", "no token"}}},
      {Event::unauthenticated_dropped, {{"dropped", 3}}},
      {Event::notify_queued, {{"id", "n1"}}},
      {Event::notify_delivered, {{"id", "n1"}}},
      {Event::notify_failed, {{"id", "n2"}}},
      {Event::ledger_writable, {{"entries_lost", 0}}},
      {Event::ledger_repaired, {{"line", 3}}},
      {Event::ledger_keyed, json::object()},
      {Event::ha_acquired, {{"shard", 0}, {"fence", 17}}},
      {Event::ha_lost, {{"shard", 0}, {"why", "resigned"}}},
      {Event::late_effect, {{"action_id", "a1"}, {"live", "v1"}}},
      {Event::release_marked_bad, {{"release", "v2"}, {"by", "alice"}, {"reason", "r"}}},
      {Event::silence_added, {{"id", "s1"}, {"services", {"www"}}, {"by", "alice"}}},
      {Event::silence_expired, {{"id", "s1"}, {"by", "bob"}}},
      {Event::proposal_reminded, {{"id", "p1"}}},
      {Event::rollback_requested, {{"by", "alice"}, {"reason", "r"}}},
      {Event::config_reloaded, {{"ok", true}}},
      // Restored by the pipeline itself (test_checkpoint.cpp), never fed to the replayer.
      {Event::snapshot, {{"services", json::object()}}},
  };
  REQUIRE(data.size() == kEventNames.size());  // a new event needs a row here
  for (std::size_t i = 0; i < kEventNames.size(); ++i) {
    const auto type = static_cast<Event>(i);
    CHECK(parse_event(kEventNames[i]) == type);  // the name table round-trips
    CHECK(name(type) == kEventNames[i]);
  }
  ReplayWorld w;
  std::vector<LedgerEntry> entries;
  for (std::size_t i = 0; i < kEventNames.size(); ++i) entries.push_back(entry(static_cast<Event>(i), data.at(static_cast<Event>(i))));
  const Replayed r = replay(entries, w.target, w.proposals);
  CHECK(r.damage.empty());
  CHECK(w.target.calls ==
        std::vector<std::string>{"decision propose", "release v2 migration", "good v1", "rollback", "escalated r", "cleared", "bad v2 by alice",
                                   "silence_added s1", "silence_expired s1"});
  // a1 started (via p1) and finished ok: to be verified, p1 not re-run; a2's reconciliation did
  // not switch; nothing is left unfinished.
  REQUIRE(r.unverified.size() == 1);
  CHECK(r.unverified[0].data["action_id"] == "a1");
  CHECK(r.unfinished.empty());
  CHECK(r.unstarted_proposals.empty());
  REQUIRE(w.proposals.find("p1"));
  CHECK(w.proposals.find("p1")->state == ProposalState::approved);
  CHECK(w.proposals.find("p1")->approvals.size() == 1);
}

TEST_CASE("replay: what a restart must finish", "[replay]") {
  ReplayWorld w;
  const Replayed r = replay({entry(Event::proposal_created, {{"id", "p1"}, {"decision", {{"release_from", "v2"}}}}),
                             entry(Event::proposal_state, {{"id", "p1"}, {"state", "executing"}}),
                             entry(Event::action_started, {{"action_id", "a1"}, {"to", "v1"}, {"via", "auto"}}),
                             entry(Event::action_started, {{"action_id", "a2"}, {"to", "v0"}, {"via", "auto"}}, "gone"),
                             entry(Event::decision, {{"kind", "execute"}}), entry(Event::decision, {{"kind", "hold"}, {"shadow", true}})},
                            w.target, w.proposals);
  REQUIRE(r.unfinished.size() == 1);  // a2's service is no longer in the config
  CHECK(r.unfinished[0].data["action_id"] == "a1");
  CHECK(r.unstarted_proposals == std::vector<std::string>{"p1"});
  // an execute decision counts from its action_started; a shadow decision not at all
  CHECK(w.target.calls == std::vector<std::string>{"rollback"});
}

TEST_CASE("replay: an entry of a type this version does not know is damage, not skipped", "[replay]") {
  ReplayWorld w;
  LedgerEntry odd = entry(Event::decision, json::object());
  odd.type = "decison";  // a typo, or a newer lastgood's event
  const Replayed r = replay({entry(Event::release_observed, {{"release", "v1"}}), odd, entry(Event::release_observed, {{"release", "v2"}})},
                            w.target, w.proposals);
  CHECK(r.damage.find("\"decison\"") != std::string::npos);
  CHECK(w.target.calls == std::vector<std::string>{"release v1"});  // nothing after the damage
}

TEST_CASE("escalation and clear: recorded, noticed, and a clear of what is not escalated changes nothing", "[rollback]") {
  struct Row {
    const char* name;
    bool escalate_first;
    bool clear_ok;
  };
  for (const auto& row : std::vector<Row>{{"escalated, then cleared", true, true}, {"not escalated: nothing to clear", false, false}}) {
    SECTION(row.name) {
      FakeClock clock;
      FakeRecorder rec(clock);
      Notices notices;
      Metrics metrics;
      LocalCoordinator coordinator;
      Ids ids;
      Rollbacks rb(rec, clock, metrics, coordinator, ids, notices.sink(), false);
      config::Service cfg;
      cfg.name = "www";
      Service s;
      s.cfg = &cfg;
      if (row.escalate_first) {
        rb.escalate(s, "rollback to v1 failed", "a1");
        CHECK(s.escalated);
        CHECK(rec.of(Event::escalated).at(0).data["action_id"] == "a1");
        CHECK(notices.sent.back() == std::pair<std::string, std::string>{"escalated", "www"});
      }
      CHECK(rb.clear(s, "alice", "127.0.0.1") == row.clear_ok);
      CHECK_FALSE(s.escalated);
      CHECK(rec.of(Event::cleared).size() == (row.clear_ok ? 1u : 0u));
      if (row.clear_ok) CHECK(rec.of(Event::cleared).at(0).data["was"] == "rollback to v1 failed");
    }
  }
}

TEST_CASE("the single-node coordinator always grants, with token 0", "[rollback]") {
  LocalCoordinator c;
  const Grant g = c.may_act("www");
  CHECK(g.granted);
  CHECK(g.fence == 0);
}

TEST_CASE("a decision read back from the ledger keeps its evidence, origin and requester; wrong types read as absent", "[replay]") {
  policy::Decision d;
  d.service = "www";
  d.trigger = "manual";
  d.severity = policy::Severity::P0;
  d.kind = policy::DecisionKind::propose;
  d.reason = "manual rollback";
  d.evidence.measure = "consecutive_failures";
  d.evidence.value = 3;
  d.evidence.threshold = 3;
  d.evidence.samples = 3;
  d.evidence.probe = "home";
  d.evidence.detail = "status: got 500";
  d.evidence.probes_failing = 1;
  d.evidence.probes_watched = 2;
  d.release_from = "v2";
  d.release_to = "v1";
  d.origin = "manual";
  d.requested_by = "bob";
  const auto back = decision_from_json("www", to_json(d));
  CHECK(back.evidence.detail == "status: got 500");
  CHECK(back.evidence.value == 3);
  CHECK(back.evidence.samples == 3);
  CHECK(back.evidence.probe == "home");
  CHECK(back.evidence.probes_failing == 1);
  CHECK(back.evidence.probes_watched == 2);
  CHECK(back.origin == "manual");
  CHECK(back.requested_by == "bob");
  CHECK(back.severity == policy::Severity::P0);
  const auto junk = decision_from_json("www", json{{"evidence", {{"value", "x"}, {"impact", 3}, {"detail", 4}}}, {"origin", 7}});
  CHECK(junk.evidence.value == 0);
  CHECK(junk.evidence.detail.empty());
  CHECK(junk.origin == "policy");
}

// A service's triggers are held once: the policy built from a config shares the config's list
// (about 330 bytes a service at 50 000 services, docs/benchmarks.md), and changing a spec's list
// (tests, builders) copies it first, never changing what another holder reads.
TEST_CASE("a policy shares its service's triggers with the config; editing a shared list copies it", "[policy]") {
  auto res = lastgood::config::load_text(R"({"listen": "127.0.0.1:0", "services": [{"name": "a",
      "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:1"}],
      "triggers": [{"name": "down", "severity": "P1", "rule": {"kind": "consecutive_failures", "count": 3}},
                   {"name": "slow", "severity": "P2", "rule": {"kind": "consecutive_failures", "count": 9}}]}]})",
                                          "share.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(res.config);
  const auto& svc = res.config->services[0];
  auto spec = lastgood::watchdog::to_policy(svc, nullptr);
  CHECK(spec.triggers.shares_with(svc.triggers));
  lastgood::policy::ServicePolicy policy(spec);
  CHECK(policy.spec().triggers.shares_with(svc.triggers));
  CHECK(policy.trigger_index("slow") == 1u);

  spec.triggers.edit()[0].rule.count = 1;  // the spec's own copy now
  CHECK_FALSE(spec.triggers.shares_with(svc.triggers));
  CHECK(svc.triggers[0].rule.count == 3);
  CHECK(policy.spec().triggers[0].rule.count == 3);
  CHECK(spec.triggers[0].rule.count == 1);
  CHECK(spec.triggers.size() == 2);

  lastgood::policy::TriggerList none;
  CHECK(none.empty());
  CHECK(none.begin() == none.end());
  none.push_back(svc.triggers[1]);
  CHECK(none.size() == 1);
  CHECK(none[0].name == "slow");
}
