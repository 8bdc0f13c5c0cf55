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
