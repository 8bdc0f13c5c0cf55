// Ledger snapshots (issue 21): a restart that begins at a snapshot and replays what follows it
// must rebuild exactly what replaying every entry rebuilds. Over random ledgers (releases past
// the tracker's limit, decisions, proposals with votes, action chains left open, unverified,
// reconciled or escalated, silences, notices, incidents opened and recovered), the state replay
// makes from the whole history is compared with the state it makes from a snapshot taken at
// every point, and from a snapshot of a restored checkpoint (snapshots of snapshots).
// The replay below makes the calls Pipeline::replay_entry and Pipeline::restore_snapshot make.
#include <catch2/catch.hpp>

#include <random>

#include "pipeline_fakes.hpp"
#include "policy/decider.hpp"
#include "policy/deployment.hpp"
#include "watchdog/pipeline/checkpoint.hpp"
#include "watchdog/pipeline/proposals.hpp"
#include "watchdog/pipeline/replay.hpp"
#include "watchdog/state/incidents.hpp"
#include "watchdog/state/silences.hpp"

using namespace lastgood::watchdog;
using lastgood::policy::Budget;
using lastgood::policy::DeploymentTracker;
using lastgood::policy::TimePoint;
using nlohmann::json;

namespace {

constexpr long long T0 = 1'795'000'000'000;

// The pipeline's side of replay, for the services of a config ("a", "b", "c"; the ledger also
// names "gone", which is no longer in it).
struct Target final : ReplayTarget {
  std::vector<std::string> names{"a", "b", "c"};
  std::vector<DeploymentTracker> dep = std::vector<DeploymentTracker>(3);
  std::vector<Budget> budget = std::vector<Budget>(3);
  std::vector<std::optional<std::string>> escalation = std::vector<std::optional<std::string>>(3);
  Silences silences;
  std::optional<std::size_t> service_index(const std::string& n) const override {
    for (std::size_t i = 0; i < names.size(); ++i)
      if (names[i] == n) return i;
    return std::nullopt;
  }
  void release(std::size_t si, const std::string& id, std::optional<TimePoint> d, TimePoint at, bool m) override { dep[si].observe(id, d, at, m); }
  void verified_good(std::size_t si, const std::string& id, TimePoint at) override { dep[si].mark_good(id, at); }
  void decision(std::size_t si, lastgood::policy::DecisionKind k, TimePoint at) override {
    if (k == lastgood::policy::DecisionKind::propose) budget[si].note_decision(at);
  }
  void rollback_started(std::size_t si, TimePoint at) override { budget[si].note_rollback(at); }
  void escalated(std::size_t si, const std::string& r) override { escalation[si] = r; }
  void cleared(std::size_t si) override { escalation[si].reset(); }
  void marked_bad(std::size_t si, const std::string& r, lastgood::policy::BadMark m) override { dep[si].mark_bad(r, std::move(m)); }
  void silence(Event type, const LedgerEntry& e) override { silences.replay(type, e); }
};

json times(const std::vector<TimePoint>& ts) {
  json out = json::array();
  for (auto t : ts) out.push_back(ms(t));
  return out;
}

struct Restart {
  testing::FakeClock clock;
  testing::FakeRecorder rec{clock};
  Ids ids;
  std::map<lastgood::policy::Severity, lastgood::policy::Authority> authority;
  Proposals proposals{rec, clock, authority, ids, [](const std::string&, const std::string&, const json&) {}};
  Target target;
  Incidents incidents;
  std::map<std::string, std::string> queued;  // the notifier's replay: notices queued and not delivered
  Replayer replayer{target, &proposals};

  void notice(const LedgerEntry& e) {
    if (e.type == "notify_queued") queued[e.data.value("id", "")] = e.service;
    else if (e.type == "notify_delivered" || e.type == "notify_failed") queued.erase(e.data.value("id", ""));
  }
  void feed(const LedgerEntry& e) {
    if (e.type == "snapshot") {
      auto services = Checkpoint::load_services(e.data);
      auto carried = Checkpoint::load_carried(e.data);
      incidents.restore(e.data.at("incidents"));
      for (auto& [name, st] : services)
        if (auto si = target.service_index(name)) {
          target.dep[*si].restore(st.deployment.saved());
          target.budget[*si] = st.budget;
          target.escalation[*si] = st.escalated;
        }
      for (const auto& c : carried) {
        replayer.feed(c, true);
        notice(c);
      }
      return;
    }
    replayer.feed(e);
    notice(e);
    incidents.observe(e);
  }
  // What a restart acts on and shows.
  json state() {
    Replayed r = replayer.finish();
    REQUIRE(r.damage.empty());
    json out;
    for (std::size_t i = 0; i < 3; ++i) {
      json h = json::array();
      for (const auto& rel : target.dep[i].history())
        h.push_back({rel.id, ms(rel.deployed_at), rel.deployed_at_from_source, rel.migration, rel.verified_at ? ms(*rel.verified_at) : -1,
                     rel.last_good_at ? ms(*rel.last_good_at) : -1});
      json bad = json::array();
      for (const auto& [id, m] : target.dep[i].bad_marks()) bad.push_back({id, m.by, m.reason, ms(m.at)});
      const auto* live = target.dep[i].live();
      const auto* back = target.dep[i].rollback_target();
      out["services"].push_back({{"history", h},
                                 {"bad", bad},
                                 {"live", live ? live->id : ""},
                                 {"rollback_target", back ? back->id : ""},
                                 {"last_decision", target.budget[i].last_decision() ? ms(*target.budget[i].last_decision()) : -1},
                                 {"rollbacks", times(target.budget[i].rollbacks())},
                                 {"escalated", target.escalation[i] ? json(*target.escalation[i]) : json(nullptr)}});
    }
    for (const auto& a : r.unfinished) out["unfinished"].push_back({a.service, a.data});
    for (const auto& a : r.unverified) out["unverified"].push_back({a.service, a.data});
    out["unstarted"] = r.unstarted_proposals;
    for (const auto& p : proposals.all()) {
      json votes = json::array();
      for (const auto& v : p.approvals) votes.push_back({"yes", v.approver, v.role, ms(v.at)});
      for (const auto& v : p.rejections) votes.push_back({"no", v.approver, v.role, ms(v.at)});
      out["proposals"].push_back({p.id, std::string(name(p.state)), votes, ms(p.created_at), ms(p.expires_at), p.quorum, p.secondary_open,
                                  ms(p.last_reminded)});
    }
    out["incidents"] = incidents.save();
    for (const auto& s : target.silences.all()) out["silences"].push_back(s.to_record());
    out["queued"] = queued;
    return out;
  }
};

// A random ledger: every kind of entry replay reads, with the references between them (votes on
// proposals that exist, actions finished that were started) mostly right and sometimes not.
std::vector<LedgerEntry> random_ledger(std::uint64_t seed, int n) {
  std::mt19937_64 rng(seed);
  auto pick = [&](int k) { return static_cast<int>(rng() % static_cast<std::uint64_t>(k)); };
  const std::vector<std::string> services{"a", "b", "c", "gone"};
  std::vector<LedgerEntry> out;
  std::vector<std::string> proposals, actions, silences, notices;
  std::map<std::string, std::string> live;
  std::map<std::string, std::string> action_service;  // an action's entries are all its service's
  long long t = T0;
  int next = 0;
  auto add = [&](const std::string& type, const std::string& svc, json data) {
    LedgerEntry e;
    e.seq = out.size() + 1;
    e.ts_ms = t;
    e.type = type;
    e.service = svc;
    e.data = std::move(data);
    out.push_back(std::move(e));
  };
  auto any = [&](const std::vector<std::string>& v) { return v.empty() ? std::string("none") : v[static_cast<size_t>(pick(static_cast<int>(v.size())))]; };
  while (static_cast<int>(out.size()) < n) {
    t += 1 + pick(600'000);  // up to 10 minutes: the day-long budget window slides
    const std::string s = services[static_cast<size_t>(pick(4))];
    const std::string id = std::to_string(++next);
    switch (pick(22)) {
      case 0:
      case 1: {
        // Release ids from a pool larger than the tracker keeps (64): evictions, and old ones back.
        const std::string r = "r" + std::to_string(pick(90));
        json d{{"release", r}};
        if (pick(3) == 0) d["deployed_at"] = t - pick(100000);
        if (pick(20) == 0) d["migration"] = true;
        live[s] = r;
        add("release_observed", s, d);
        break;
      }
      case 2:
        add("release_verified_good", s, {{"release", pick(4) ? live[s] : "r" + std::to_string(pick(90))}});
        break;
      case 3:
        add("decision", s, {{"kind", std::vector<std::string>{"propose", "hold", "execute"}[static_cast<size_t>(pick(3))]}, {"shadow", pick(10) == 0}, {"trigger", "t"}, {"severity", "P1"}});
        break;
      case 4:
      case 5: {
        const std::vector<std::string> to{"ok", "pending", "firing", "inconclusive"};
        add("transition", s, {{"trigger", "t" + std::to_string(pick(2))}, {"from", to[static_cast<size_t>(pick(4))]}, {"to", to[static_cast<size_t>(pick(4))]}, {"severity", "P1"}, {"evidence", {{"probe", "home"}}}});
        break;
      }
      case 6:
        proposals.push_back("p" + id);
        add("proposal_created", s, {{"id", "p" + id}, {"quorum", 1 + pick(2)}, {"expires_at", t + 1'800'000}, {"decision", {{"trigger", "t0"}, {"kind", "propose"}, {"severity", "P1"}, {"release_from", live[s]}, {"release_to", "r1"}}}});
        break;
      case 7:
        add("proposal_vote", s, {{"id", any(proposals)}, {"approve", pick(3) != 0}, {"approver", "alice" + std::to_string(pick(3))}, {"role", "sre"}, {"comment", ""}});
        break;
      case 8: {
        const std::vector<std::string> st{"approved", "executing", "executed", "verified", "failed", "rejected", "stale"};
        add("proposal_state", s, {{"id", any(proposals)}, {"state", st[static_cast<size_t>(pick(7))]}});
        break;
      }
      case 9:
        add(pick(2) ? "proposal_expired" : "proposal_reminded", s, {{"id", any(proposals)}});
        break;
      case 10:
      case 11:
        actions.push_back("x" + id);
        action_service["x" + id] = s;
        add("action_started", s, {{"action_id", "x" + id}, {"kind", "command"}, {"from", live[s]}, {"to", "r" + std::to_string(pick(90))}, {"trigger", "t0"},
                                  {"via", pick(2) ? "proposal " + any(proposals) : "policy"}});
        break;
      case 12: {
        const std::string a = any(actions);
        json d{{"action_id", a}, {"ok", pick(4) != 0}};
        if (pick(8) == 0) d["switched_to"] = "r" + std::to_string(pick(90));
        add("action_finished", action_service[a], d);
        break;
      }
      case 13: {
        const std::string a = any(actions);
        add("action_reconciled", action_service[a], {{"action_id", a}, {"switched", pick(2) == 0}, {"to", "r2"}});
        break;
      }
      case 14: {
        const std::string a = any(actions);
        add("verification", action_service[a], {{"action_id", a}, {"outcome", "verified"}});
        break;
      }
      case 15: {
        const std::string a = any(actions);
        if (pick(2)) add("escalated", action_service[a], {{"action_id", a}, {"reason", "not recovered"}});
        else add("escalated", s, {{"reason", "by hand"}});
        break;
      }
      case 16:
        add(pick(3) ? "cleared" : "clear_refused", s, json::object());
        break;
      case 17:
        add("release_marked_bad", s, {{"release", "r" + std::to_string(pick(90))}, {"by", "bob"}, {"reason", "broken"}});
        break;
      case 18:
        silences.push_back("s" + id);
        add("silence_added", "", {{"id", "s" + id}, {"services", {s}}, {"starts_at", t}, {"ends_at", t + pick(7'200'000)}, {"by", "carol"}, {"comment", "deploy"}});
        break;
      case 19:
        add("silence_expired", "", {{"id", any(silences)}, {"by", "carol"}});
        break;
      case 20:
        notices.push_back("n" + id);
        add("notify_queued", s, {{"id", "n" + id}, {"kind", "webhook"}, {"target", 0}, {"body", {{"event", "breach"}}}});
        break;
      case 21:
        add(pick(2) ? "notify_delivered" : "notify_failed", s, {{"id", any(notices)}});
        break;
    }
  }
  return out;
}

// Replay reads what the ledger hands it (replay_reads), without the chain fields.
std::vector<LedgerEntry> as_read(const std::vector<LedgerEntry>& all) {
  std::vector<LedgerEntry> out;
  for (const auto& e : all)
    if (replay_reads(e.type, e.data)) out.push_back(e);
  return out;
}

LedgerEntry snapshot_entry(json data, std::uint64_t seq) {
  LedgerEntry e;
  e.seq = seq;
  e.type = "snapshot";
  e.data = std::move(data);
  return e;
}

}  // namespace

TEST_CASE("a restart from a snapshot rebuilds what replaying every entry rebuilds", "[checkpoint]") {
  for (std::uint64_t seed = 1; seed <= 12; ++seed) {
    const auto ledger = as_read(random_ledger(seed, 1500));
    Restart whole;
    for (const auto& e : ledger) whole.feed(e);
    const json expected = whole.state();
    // Sanity: the ledgers hold the cases that matter.
    REQUIRE(expected["services"][0]["history"].size() > 10);
    for (std::size_t cut : {std::size_t{0}, std::size_t{1}, ledger.size() / 7, ledger.size() / 3, ledger.size() / 2, ledger.size() - 1, ledger.size()}) {
      Checkpoint cp;
      for (std::size_t i = 0; i < cut; ++i) cp.feed(ledger[i]);
      Restart from_snapshot;
      from_snapshot.feed(snapshot_entry(cp.snapshot(), cut + 1));
      for (std::size_t i = cut; i < ledger.size(); ++i) from_snapshot.feed(ledger[i]);
      INFO("seed " << seed << ", snapshot after " << cut << " of " << ledger.size() << " entries");
      const json got = from_snapshot.state();
      for (const char* part : {"services", "unfinished", "unverified", "unstarted", "proposals", "incidents", "silences", "queued"}) {
        INFO(part);
        CHECK(got[part] == expected[part]);
      }
    }
  }
}

TEST_CASE("a snapshot of a checkpoint restored from a snapshot restores what the whole history does", "[checkpoint]") {
  for (std::uint64_t seed = 20; seed <= 25; ++seed) {
    const auto ledger = as_read(random_ledger(seed, 3000));
    Checkpoint whole;
    for (const auto& e : ledger) whole.feed(e);
    // Three segments: the second begins with the first's snapshot, the third with the second's.
    const std::size_t a = ledger.size() / 3, b = 2 * ledger.size() / 3;
    Checkpoint first;
    for (std::size_t i = 0; i < a; ++i) first.feed(ledger[i]);
    Checkpoint second;
    second.feed(snapshot_entry(first.snapshot(), a + 1));
    for (std::size_t i = a; i < b; ++i) second.feed(ledger[i]);
    Checkpoint third;
    third.feed(snapshot_entry(second.snapshot(), b + 1));
    for (std::size_t i = b; i < ledger.size(); ++i) third.feed(ledger[i]);
    INFO("seed " << seed);
    const json got = third.snapshot(), want = whole.snapshot();
    // The state held is the same; the entries carried may differ (a chain the first snapshot
    // dropped once it was closed may be reopened later by an entry that needs none of it), so
    // what counts is what a restart rebuilds from them.
    for (const char* part : {"services", "incidents", "pagerduty"}) {
      INFO(part);
      CHECK(got[part] == want[part]);
    }
    Restart from_whole, from_third;
    from_whole.feed(snapshot_entry(want, ledger.size() + 1));
    from_third.feed(snapshot_entry(got, ledger.size() + 1));
    CHECK(from_third.state() == from_whole.state());
    // And a restart from the last one rebuilds what the whole history does.
    Restart all, restarted;
    for (const auto& e : ledger) all.feed(e);
    restarted.feed(snapshot_entry(second.snapshot(), b + 1));
    for (std::size_t i = b; i < ledger.size(); ++i) restarted.feed(ledger[i]);
    CHECK(restarted.state() == all.state());
  }
}

TEST_CASE("a snapshot holds state, not history: its size stays flat as the ledger grows", "[checkpoint]") {
  const auto ledger = as_read(random_ledger(99, 40000));
  Checkpoint cp;
  std::vector<std::size_t> sizes;
  for (std::size_t i = 0; i < ledger.size(); ++i) {
    cp.feed(ledger[i]);
    if ((i + 1) % 10000 == 0) sizes.push_back(cp.snapshot().dump().size());
  }
  REQUIRE(sizes.size() >= 3);
  INFO("snapshot bytes every 10 000 entries: " << json(sizes).dump());
  // Bounded by what is kept (proposals, incidents, 64 releases a service), not by entries: the
  // last is not much larger than the one at 10 000 entries.
  CHECK(sizes.back() < sizes.front() * 2);
}

TEST_CASE("a malformed snapshot is refused with the path of what is wrong", "[checkpoint]") {
  Checkpoint cp;
  for (const auto& e : as_read(random_ledger(5, 300))) cp.feed(e);
  json snap = cp.snapshot();
  REQUIRE(snap["services"].size() > 0);
  const std::string svc = snap["services"].begin().key();
  json bad = snap;
  bad["services"][svc]["deployment"]["live"] = 999;
  CHECK_THROWS_WITH(Checkpoint::load_services(bad), Catch::Contains("data.services." + svc + ".deployment.live"));
  bad = snap;
  bad["carried"] = json::array({{{"seq", 3}, {"ts", 1}, {"type", "no_such_event"}, {"service", ""}, {"data", json::object()}}});
  CHECK_THROWS_WITH(Checkpoint::load_carried(bad), Catch::Contains("data.carried[0].type"));
  bad = snap;
  bad.erase("incidents");
  Checkpoint other;
  CHECK_THROWS_WITH(other.feed(snapshot_entry(bad, 10)), Catch::Contains("incidents"));
}
