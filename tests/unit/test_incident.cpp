// Incident records built from ledger entries: every section present, approvals and escalations
// followed, the review due date by severity, files written atomically, people's review notes kept.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>

#include "watchdog/state/incidents.hpp"

namespace fs = std::filesystem;
using lastgood::watchdog::Incidents;
using lastgood::watchdog::iso8601;
using nlohmann::json;

namespace {

constexpr long long T0 = 1'795'000'000'000;  // 2026-11-18T11:06:40Z

struct Entry {
  std::string type;
  long long at;
  json data;
};

// The ledger of a P1 breach on "web", proposed, approved by two people, rolled back and verified.
std::vector<Entry> approved_story() {
  const json ev{{"measure", "error_rate"}, {"value", 0.5}, {"threshold", 0.05}, {"samples", 20}, {"probe", "home"}};
  return {
      {"transition", T0, {{"trigger", "errors"}, {"severity", "P1"}, {"from", "pending"}, {"to", "firing"}, {"evidence", ev}}},
      {"decision", T0 + 10,
       {{"trigger", "errors"}, {"severity", "P1"}, {"kind", "propose"}, {"reason", "policy asks for approval"}, {"shadow", false}, {"evidence", ev}}},
      {"proposal_created", T0 + 11, {{"id", "p1"}, {"quorum", 2}, {"expires_at", T0 + 1'800'000}}},
      {"proposal_vote", T0 + 5000, {{"id", "p1"}, {"approve", true}, {"approver", "alice"}, {"role", "sre"}, {"comment", "go"}}},
      {"proposal_vote", T0 + 6000, {{"id", "p1"}, {"approve", true}, {"approver", "bob"}, {"role", "lead"}, {"comment", ""}}},
      {"action_started", T0 + 6001,
       {{"action_id", "a1"}, {"kind", "local_symlink"}, {"trigger", "errors"}, {"from", "v2"}, {"to", "v1"}, {"steps", {"ln -sfn releases/v1 current"}},
        {"via", "proposal p1"}}},
      {"action_finished", T0 + 6002, {{"action_id", "a1"}, {"ok", true}, {"output", "switched\n```\nfenced"}, {"error", ""}, {"seconds", 0.001}}},
      {"verification", T0 + 9000, {{"action_id", "a1"}, {"release", "v1"}, {"outcome", "verified"}, {"healthy_samples", 3}}},
  };
}

// Feeds an entry as the ledger would hand it over (by its type's name; unknown names change nothing).
std::optional<std::string> see(Incidents& inc, const std::string& type, const std::string& service, long long at, const json& data) {
  lastgood::watchdog::LedgerEntry e;
  e.type = type;
  e.service = service;
  e.ts_ms = at;
  e.data = data;
  return inc.observe(e);
}

Incidents feed(const std::vector<Entry>& story, const std::string& dir = "") {
  Incidents inc(dir);
  for (const auto& e : story) see(inc, e.type, "web", e.at, e.data);
  return inc;
}

std::string slurp(const fs::path& p) {
  std::ifstream f(p);
  std::stringstream s;
  s << f.rdbuf();
  return s.str();
}

struct Dir {
  fs::path path = fs::temp_directory_path() / ("lastgood-incidents-" + std::to_string(::getpid()) + "-" + std::to_string(rand()));
  ~Dir() { fs::remove_all(path); }
};

}  // namespace

TEST_CASE("iso8601 formats UTC with milliseconds", "[incident]") {
  CHECK(iso8601(0) == "1970-01-01T00:00:00.000Z");
  CHECK(iso8601(1'795'000'000'123) == "2026-11-18T11:06:40.123Z");
}

TEST_CASE("an approved rollback: the record has the timeline, evidence, releases, approvals, action, verification and review", "[incident]") {
  auto inc = feed(approved_story());
  const auto* i = inc.find("a1");
  REQUIRE(i);
  const json j = Incidents::to_json(*i);
  CHECK(j["status"] == "verified");
  CHECK(j["severity"] == "P1");
  CHECK(j["opened_at"] == T0);  // the breach, not the action
  CHECK(j["releases"]["bad"] == "v2");
  CHECK(j["releases"]["restored"] == "v1");
  CHECK(j["evidence"]["measure"] == "error_rate");
  CHECK(j["decision"]["kind"] == "propose");
  CHECK(j["proposal_id"] == "p1");
  REQUIRE(j["approvals"].size() == 2);
  CHECK(j["approvals"][0]["approver"] == "alice");
  CHECK(j["approvals"][1]["approver"] == "bob");
  CHECK(j["action"]["ok"] == true);
  CHECK(j["action"]["output"] == "switched\n```\nfenced");
  CHECK(j["outcome"]["verification"]["outcome"] == "verified");
  CHECK(j["review"]["due_by"] == T0 + 6001 + 48LL * 3600 * 1000);  // P1: 48 h after the rollback
  std::vector<std::string> events;
  for (const auto& e : j["timeline"]) events.push_back(e["event"]);
  CHECK(events == std::vector<std::string>{"breach", "decision", "proposed", "approval", "approval", "action_started", "action_finished", "verification"});
  for (size_t k = 1; k < j["timeline"].size(); ++k) CHECK(j["timeline"][k]["at"] >= j["timeline"][k - 1]["at"]);

  const std::string md = Incidents::to_markdown(*i);
  for (const char* section : {"# Incident i1795000000000-web: web rolled back from v2 to v1", "## Summary", "## Timeline", "## Evidence", "## Releases", "## Approvals",
                              "## Action", "## Verification and escalation", "## Follow-up review"})
    CHECK_THAT(md, Catch::Contains(section));
  CHECK_THAT(md, Catch::Contains("alice (sre) approved: go"));
  CHECK_THAT(md, Catch::Contains("Root-cause analysis due by **" + iso8601(T0 + 6001 + 48LL * 3600 * 1000) + "**"));
  CHECK_THAT(md, Catch::Contains("````\nswitched\n```\nfenced\n````"));  // output with a fence inside gets a longer fence
  CHECK_THAT(md, Catch::Contains("- Verification: verified"));
}

TEST_CASE("an automatic P0 rollback that fails: escalated, then cleared; review due in 24 h", "[incident]") {
  std::vector<Entry> story{
      {"transition", T0, {{"trigger", "down"}, {"severity", "P0"}, {"to", "firing"}, {"evidence", {{"measure", "consecutive_failures"}}}}},
      {"decision", T0 + 5, {{"trigger", "down"}, {"severity", "P0"}, {"kind", "execute"}, {"reason", "P0 allows automatic rollback"}}},
      {"action_started", T0 + 6, {{"action_id", "a2"}, {"kind", "ssh_symlink"}, {"trigger", "down"}, {"from", "v9"}, {"to", "v8"}, {"via", "auto"}}},
      {"action_finished", T0 + 50, {{"action_id", "a2"}, {"ok", false}, {"output", ""}, {"error", "after_switch exited 3"}}},
      {"escalated", T0 + 51, {{"reason", "rollback to v8 failed: after_switch exited 3"}, {"action_id", "a2"}}},
      {"cleared", T0 + 60'000, {{"by", "carol"}}},
  };
  auto inc = feed(story);
  const json j = Incidents::to_json(*inc.find("a2"));
  CHECK(j["status"] == "escalated");
  CHECK(j["approvals"].empty());
  CHECK(j["action"]["error"] == "after_switch exited 3");
  CHECK(j["outcome"]["escalation"]["reason"] == "rollback to v8 failed: after_switch exited 3");
  CHECK(j["outcome"]["cleared"]["by"] == "carol");
  CHECK(j["review"]["due_by"] == T0 + 6 + 24LL * 3600 * 1000);
  const std::string md = Incidents::to_markdown(*inc.find("a2"));
  CHECK_THAT(md, Catch::Contains("None needed: the policy allows lastgood to roll this back on its own."));
  CHECK_THAT(md, Catch::Contains("- Escalated at"));
  CHECK_THAT(md, Catch::Contains("- Cleared at"));
  CHECK_FALSE(inc.open_for("web"));
}

TEST_CASE("an escalation without an action id belongs to the service's open incident; unrelated entries change nothing", "[incident]") {
  Incidents inc;
  CHECK_FALSE(see(inc, "escalated", "web", T0, {{"reason", "x"}}));  // no incident yet
  CHECK(see(inc, "action_started", "web", T0, {{"action_id", "a3"}, {"trigger", "t"}, {"from", "b"}, {"to", "a"}, {"via", "auto"}}) == "a3");
  CHECK(inc.open_for("web") == "a3");
  CHECK_FALSE(see(inc, "probe_result", "web", T0, json::object()));
  CHECK_FALSE(see(inc, "action_finished", "web", T0, {{"action_id", "nope"}, {"ok", true}}));
  CHECK(see(inc, "action_reconciled", "web", T0 + 1, {{"action_id", "a3"}, {"switched", false}, {"live", "b"}}) == "a3");
  CHECK(see(inc, "escalated", "web", T0 + 2, {{"reason", "interrupted"}}) == "a3");
  const json j = Incidents::to_json(*inc.find("a3"));
  CHECK(j["status"] == "escalated");
  CHECK(j["breach"].is_null());
  CHECK(j["severity"] == "P1");  // unknown severity: the 48 h review
  CHECK_THAT(Incidents::to_markdown(*inc.find("a3")), Catch::Contains("No breach on record"));
  REQUIRE(inc.list().size() == 1);
  CHECK(inc.list()[0]["id"] == "a3");
}

TEST_CASE("incident files: written atomically, rewritten when behind the ledger, the review notes people wrote are kept", "[incident]") {
  Dir d;
  auto story = approved_story();
  const auto verified = story.back();
  story.pop_back();
  {
    auto inc = feed(story, d.path.string());
    REQUIRE(inc.write("a1").empty());
    CHECK(fs::exists(d.path / "i1795000000000-web.json"));
    CHECK(fs::exists(d.path / "i1795000000000-web.md"));
    CHECK_FALSE(fs::exists(d.path / "i1795000000000-web.json.tmp"));
    // Private, whatever the umask: files 0600, the folder lastgood made 0700.
    CHECK((fs::status(d.path / "i1795000000000-web.json").permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    CHECK((fs::status(d.path / "i1795000000000-web.md").permissions() & fs::perms::all) == (fs::perms::owner_read | fs::perms::owner_write));
    CHECK(json::parse(slurp(d.path / "i1795000000000-web.json"))["status"] == "verifying");
    CHECK(inc.write_changed() == 0);  // up to date
  }
  // Someone fills in the review.
  {
    std::ofstream f(d.path / "i1795000000000-web.md", std::ios::app);
    f << "\nOwner: dana\nFindings: the cache key changed in v2.\n";
  }
  // lastgood stopped before the verification reached the files; the replay brings them up to date.
  story.push_back(verified);
  auto inc = feed(story, d.path.string());
  CHECK(inc.write_changed() == 1);
  CHECK(json::parse(slurp(d.path / "i1795000000000-web.json"))["status"] == "verified");
  const std::string md = slurp(d.path / "i1795000000000-web.md");
  CHECK_THAT(md, Catch::Contains("- Verification: verified"));
  CHECK_THAT(md, Catch::Contains("Findings: the cache key changed in v2."));
  fs::remove(d.path / "i1795000000000-web.md");
  CHECK(inc.write_changed() == 1);  // a missing file is written again
  CHECK(fs::exists(d.path / "i1795000000000-web.md"));
}

TEST_CASE("an incident opens at the breach: held, then expired, then recovered on its own, with no rollback", "[incident]") {
  const json ev{{"measure", "consecutive_failures"}, {"value", 3}, {"threshold", 3}, {"probe", "home"}, {"detail", "status: got 500"}};
  Incidents inc;
  auto id = see(inc, "transition", "web", T0, {{"trigger", "down"}, {"severity", "P1"}, {"from", "pending"}, {"to", "firing"}, {"evidence", ev}});
  REQUIRE(id);
  CHECK(*id == "i" + std::to_string(T0) + "-web");
  CHECK(inc.open_for("web") == *id);
  CHECK(Incidents::to_json(*inc.find(*id))["status"] == "firing");
  // The same hold decided again and again (retries) is once in the record.
  for (int k = 0; k < 3; ++k)
    see(inc, "decision", "web", T0 + 10 + k, {{"trigger", "down"}, {"severity", "P1"}, {"kind", "hold"}, {"reason", "cooldown: the last action was 2m ago"}, {"release_from", "v2"}});
  json j = Incidents::to_json(*inc.find(*id));
  CHECK(j["status"] == "held");
  CHECK(j["releases"]["bad"] == "v2");
  // Decided again after the cooldown: proposed; nobody answers: expired.
  see(inc, "decision", "web", T0 + 100, {{"trigger", "down"}, {"severity", "P1"}, {"kind", "propose"}, {"reason", "roll back v2 -> v1: approve"}});
  see(inc, "proposal_created", "web", T0 + 101, {{"id", "p7"}, {"quorum", 2}});
  see(inc, "proposal_vote", "web", T0 + 200, {{"id", "p7"}, {"approve", true}, {"approver", "alice"}, {"role", "sre"}, {"comment", "yes"}});
  see(inc, "proposal_expired", "web", T0 + 300, {{"id", "p7"}});
  j = Incidents::to_json(*inc.find(*id));
  CHECK(j["status"] == "expired");
  CHECK(j["proposal_id"] == "p7");
  CHECK(j["approvals"].size() == 1);
  CHECK(j["evidence"]["detail"] == "status: got 500");
  // The trigger back to ok: the incident ends, recovered without a rollback.
  see(inc, "transition", "web", T0 + 400, {{"trigger", "down"}, {"severity", "P1"}, {"from", "firing"}, {"to", "ok"}});
  j = Incidents::to_json(*inc.find(*id));
  CHECK(j["status"] == "recovered");
  CHECK_FALSE(inc.open_for("web"));
  std::vector<std::string> events;
  for (const auto& e : j["timeline"]) events.push_back(e["event"]);
  CHECK(events == std::vector<std::string>{"breach", "decision", "decision", "proposed", "approval", "expired", "recovered"});
  const std::string md = Incidents::to_markdown(*inc.find(*id));
  CHECK_THAT(md, Catch::Contains("down (P1): recovered, no rollback"));
  CHECK_THAT(md, Catch::Contains("No rollback was carried out (recovered)."));
  // The next breach is another incident; its rollback joins it and is found by the action's id too.
  auto next = see(inc, "transition", "web", T0 + 5000, {{"trigger", "down"}, {"severity", "P0"}, {"from", "ok"}, {"to", "firing"}, {"evidence", ev}});
  REQUIRE(next);
  CHECK(*next != *id);
  see(inc, "decision", "web", T0 + 5001, {{"trigger", "down"}, {"severity", "P0"}, {"kind", "execute"}, {"reason", "P0 auto"}});
  CHECK(see(inc, "action_started", "web", T0 + 5002, {{"action_id", "a9"}, {"kind", "local_symlink"}, {"trigger", "down"}, {"from", "v2"}, {"to", "v1"}, {"via", "auto"}}) == *next);
  REQUIRE(inc.find("a9"));
  CHECK(inc.find("a9")->id == *next);
  see(inc, "action_finished", "web", T0 + 5003, {{"action_id", "a9"}, {"ok", true}});
  see(inc, "verification", "web", T0 + 6000, {{"action_id", "a9"}, {"outcome", "verified"}, {"healthy_samples", 3}});
  j = Incidents::to_json(*inc.find(*next));
  CHECK(j["status"] == "verified");
  CHECK(j["action_id"] == "a9");
  CHECK(inc.list().size() == 2);
}

TEST_CASE("a person's request opens the incident when no breach did", "[incident]") {
  Incidents inc;
  auto id = see(inc, "rollback_requested", "web", T0, {{"origin", "manual"}, {"by", "bob"}, {"reason", "checkout broken"}, {"severity", "P1"}, {"from", "v2"}, {"to", "v1"}});
  REQUIRE(id);
  see(inc, "proposal_created", "web", T0 + 1, {{"id", "p1"}, {"quorum", 1}});
  see(inc, "proposal_vote", "web", T0 + 2, {{"id", "p1"}, {"approve", true}, {"approver", "bob"}, {"role", "lead"}});
  CHECK(see(inc, "action_started", "web", T0 + 3, {{"action_id", "a1"}, {"kind", "local_symlink"}, {"trigger", "manual"}, {"from", "v2"}, {"to", "v1"}, {"via", "proposal p1"}}) == *id);
  const json j = Incidents::to_json(*inc.find(*id));
  CHECK(j["trigger"] == "manual");
  CHECK(j["status"] == "rolling_back");
  CHECK(j["approvals"].size() == 1);
  CHECK(j["timeline"][0]["event"] == "requested");
  CHECK_THAT(j["timeline"][0]["detail"].get<std::string>(), Catch::Contains("bob asked (manual): checkout broken"));
}
