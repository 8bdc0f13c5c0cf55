// Proposals on a fake clock: quorum, duplicates, roles, expiry, staleness, rejection, escalation,
// and what cannot be recorded. Each row is a sequence of votes and what it must come to.
#include <catch2/catch.hpp>

#include "pipeline_fakes.hpp"
#include "watchdog/pipeline/proposals.hpp"

using namespace lastgood;
using namespace lastgood::watchdog;
using namespace std::chrono_literals;
using testing::FakeClock;
using testing::FakeRecorder;
using testing::Notices;

namespace {

struct World {
  FakeClock clock;
  FakeRecorder rec{clock};
  Notices notices;
  Ids ids;
  std::map<policy::Severity, policy::Authority> authority{
      {policy::Severity::P0, {{"cto", "oncall-lead"}, 1, true}},
      {policy::Severity::P1, {{"eng-manager", "senior-engineer"}, 2, false}},
  };
  Proposals proposals{rec, clock, authority, ids, notices.sink()};
  std::map<std::string, config::Approver> people{
      {"alice", {"alice", {"senior-engineer"}, {}}}, {"bob", {"bob", {"eng-manager"}, {}}}, {"mallory", {"mallory", {"intern"}, {}}},
      {"carol", {"carol", {"cto"}, {}}}};
  ServiceFacts facts{std::string("v2"), false, "", true};

  const Proposal* propose(policy::Severity sev = policy::Severity::P1, std::string from = "v2") {
    policy::Decision d;
    d.service = "www";
    d.trigger = "errors";
    d.severity = sev;
    d.kind = policy::DecisionKind::propose;
    d.release_from = from;
    d.release_to = "v1";
    d.at = clock.now();
    return proposals.create(d, 30min);
  }
  VoteOutcome vote(const std::string& id, const std::string& who, bool approve = true) {
    const config::Approver* a = people.count(who) ? &people.at(who) : nullptr;
    return proposals.vote(id, a, approve, "", "127.0.0.1", [this](const std::string&) { return facts; });
  }
};

struct Row {
  const char* name;
  std::vector<std::pair<std::string, bool>> votes;  // (who, approve); "" = no token
  std::vector<VoteStatus> expect;
  ProposalState final_state;
};

}  // namespace

TEST_CASE("votes on a P1 proposal (quorum 2) come to what the authority matrix says", "[proposals]") {
  const std::vector<Row> rows = {
      {"two distinct approvers reach quorum", {{"alice", true}, {"bob", true}}, {VoteStatus::counted, VoteStatus::execute}, ProposalState::executing},
      {"the same approver twice counts once", {{"alice", true}, {"alice", true}}, {VoteStatus::counted, VoteStatus::duplicate}, ProposalState::pending},
      {"a role outside P1's is forbidden", {{"mallory", true}}, {VoteStatus::forbidden}, ProposalState::pending},
      {"a P0 role does not decide a P1", {{"carol", true}}, {VoteStatus::forbidden}, ProposalState::pending},
      {"no token is unauthorized", {{"", true}}, {VoteStatus::unauthorized}, ProposalState::pending},
      {"a rejection ends it", {{"bob", false}, {"alice", true}}, {VoteStatus::rejected, VoteStatus::not_pending}, ProposalState::rejected},
  };
  for (const auto& row : rows) {
    SECTION(row.name) {
      World w;
      const auto* p = w.propose();
      REQUIRE(p);
      std::vector<VoteStatus> got;
      for (const auto& [who, approve] : row.votes) got.push_back(w.vote(p->id, who, approve).status);
      CHECK(got == row.expect);
      CHECK(p->state == row.final_state);
      // Every attempt is recorded, counted or not.
      CHECK(w.rec.of(Event::approval_attempt).size() == row.votes.size());
    }
  }
}

TEST_CASE("a proposal expires at its time, once, with a notice; votes after that are refused", "[proposals]") {
  World w;
  const auto* p = w.propose();
  w.clock.t += 29min;
  CHECK_FALSE(w.proposals.expire(w.clock.now()));
  w.clock.t += 1min;
  CHECK(w.proposals.expire(w.clock.now()));
  CHECK_FALSE(w.proposals.expire(w.clock.now()));
  CHECK(p->state == ProposalState::expired);
  CHECK(w.rec.of(Event::proposal_expired).size() == 1);
  CHECK(w.notices.sent.back().first == "expired");
  CHECK(w.vote(p->id, "alice").status == VoteStatus::not_pending);
}

TEST_CASE("a proposal whose `from` is no longer live is stale, before and at a vote", "[proposals]") {
  World w;
  const auto* a = w.propose();
  w.proposals.mark_stale("www", "v3");
  CHECK(a->state == ProposalState::stale);
  CHECK(w.notices.sent.back().first == "stale");
  const auto* b = w.propose(policy::Severity::P1, "v3");
  w.facts.live = "v4";  // a deploy came between the proposal and the vote
  const auto v = w.vote(b->id, "alice");
  CHECK(v.status == VoteStatus::not_pending);
  CHECK(b->state == ProposalState::stale);
  CHECK(v.error.find("no longer v3") != std::string::npos);
}

TEST_CASE("an escalated service takes no approval; one that cannot act fails the approved proposal", "[proposals]") {
  World w;
  const auto* p = w.propose(policy::Severity::P0);
  w.facts.escalated = true;
  w.facts.escalation = "rollback failed";
  CHECK(w.vote(p->id, "carol").status == VoteStatus::escalated);
  CHECK(p->state == ProposalState::pending);
  w.facts.escalated = false;
  w.facts.can_act = false;
  CHECK(w.vote(p->id, "carol").status == VoteStatus::cannot_act);
  CHECK(p->state == ProposalState::failed);
}

TEST_CASE("nothing is proposed or voted while nothing can be recorded", "[proposals]") {
  World w;
  const auto* p = w.propose();
  w.rec.can = false;
  CHECK(w.propose() == nullptr);
  CHECK(w.vote(p->id, "alice").status == VoteStatus::cannot_record);
  CHECK(p->approvals.empty());
  w.clock.t += 1h;
  CHECK_FALSE(w.proposals.expire(w.clock.now()));  // not expired unrecorded: expires once recording works
  w.rec.can = true;
  CHECK(w.proposals.expire(w.clock.now()));
}

TEST_CASE("one open proposal per breach", "[proposals]") {
  World w;
  const auto* p = w.propose();
  CHECK(w.proposals.open_for("www", std::string("v2")) == p);
  CHECK(w.proposals.open_for("www", std::string("v3")) == nullptr);
  w.vote(p->id, "bob", false);
  CHECK(w.proposals.open_for("www", std::string("v2")) == nullptr);
}

TEST_CASE("proposals replayed from their entries come back with their votes and states", "[proposals]") {
  World w;
  const auto* p = w.propose();
  w.vote(p->id, "alice");
  w.vote(p->id, "bob");
  World again;
  for (const auto& e : w.rec.entries)
    if (auto t = parse_event(e.type)) again.proposals.replay(*t, e);
  const auto* q = again.proposals.find(p->id);
  REQUIRE(q);
  CHECK(q->state == ProposalState::executing);
  CHECK(q->approvals.size() == 2);
  CHECK(q->quorum == 2);
  CHECK(q->decision.release_from == std::optional<std::string>("v2"));
  CHECK(q->decision.severity == policy::Severity::P1);
  CHECK(again.proposals.unstarted({}) == std::vector<std::string>{p->id});
  CHECK(again.proposals.unstarted({p->id}).empty());
}

TEST_CASE("a P1 proposal without quorum: reminders, then the secondary authority may approve too, and says so", "[proposals]") {
  World w;
  auto& p1 = w.authority[policy::Severity::P1];
  p1.quorum = 1;
  p1.secondary_roles = {"cto"};
  p1.secondary_after = 10min;
  p1.remind_every = 4min;
  const auto* p = w.propose();
  REQUIRE(p);
  const std::string id = p->id;
  auto reminders = [&] {
    int n = 0;
    for (const auto& [e, s] : w.notices.sent) n += e == "reminder";
    return n;
  };
  // Before `after`: carol (cto) is refused, and told from when she may approve.
  w.clock.t += 3min;
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 0);
  auto early = w.vote(id, "carol");
  CHECK(early.status == VoteStatus::forbidden);
  CHECK_THAT(early.error, Catch::Contains("secondary roles may approve from"));
  // Reminders every 4 minutes while it waits (4 and 8 min).
  w.clock.t += 1min;
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 1);
  w.clock.t += 2min;
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 1);
  w.clock.t += 2min;
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 2);
  CHECK(w.rec.of(Event::proposal_reminded).size() == 2);
  CHECK_FALSE(p->secondary_open);
  // At 10 min: the secondary authority joins, once, recorded and noticed.
  w.clock.t += 2min;
  w.proposals.remind(w.clock.now());
  CHECK(p->secondary_open);
  CHECK(reminders() == 3);
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 3);
  const auto rem = w.rec.of(Event::proposal_reminded);
  REQUIRE(rem.size() == 3);
  CHECK(rem.back().data.contains("secondary"));
  auto view = p->to_json(w.proposals.authority(policy::Severity::P1));
  CHECK(view["secondary"]["open"] == true);
  CHECK(view["may_approve"].size() == 3);  // eng-manager, senior-engineer, cto
  CHECK(view["approvals_needed"] == 1);
  // Now carol may approve (as cto, the secondary role): quorum 1 reached.
  auto late = w.vote(id, "carol");
  CHECK(late.status == VoteStatus::execute);
  CHECK(p->approvals.at(0).role == "cto");
  // No reminder for a proposal that no longer waits.
  w.clock.t += 10min;
  w.proposals.remind(w.clock.now());
  CHECK(reminders() == 3);
}

TEST_CASE("no secondary authority and no remind_every: a waiting proposal is not reminded, a P0 role never decides a P1", "[proposals]") {
  World w;
  const auto* p = w.propose();
  REQUIRE(p);
  w.clock.t += 29min;
  w.proposals.remind(w.clock.now());
  CHECK(w.notices.sent.size() == 0);
  CHECK(w.vote(p->id, "carol").status == VoteStatus::forbidden);
}

TEST_CASE("reminders and the secondary authority survive a replay", "[proposals]") {
  World w;
  auto& p1 = w.authority[policy::Severity::P1];
  p1.secondary_roles = {"cto"};
  p1.secondary_after = 5min;
  const auto* p = w.propose();
  REQUIRE(p);
  w.clock.t += 6min;
  w.proposals.remind(w.clock.now());
  REQUIRE(p->secondary_open);
  // A second Proposals fed the same entries.
  Proposals again{w.rec, w.clock, w.authority, w.ids, w.notices.sink()};
  for (const auto& e : w.rec.entries) {
    const auto type = parse_event(e.type);
    if (type == Event::proposal_created || type == Event::proposal_reminded) again.replay(*type, e);
  }
  REQUIRE(again.find(p->id));
  CHECK(again.find(p->id)->secondary_open);
  const auto before = w.notices.sent.size();
  again.remind(w.clock.now());
  CHECK(w.notices.sent.size() == before);  // noticed once, not again after a restart
}
