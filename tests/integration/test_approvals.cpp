// Approvals through the HTTP API: tokens, roles per severity, a quorum of distinct approvers,
// rejection, every attempt in the ledger (names, never tokens), rate-limited failed auth.
#include <catch2/catch.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::pair<int, json> call(unsigned short port, http::verb verb, const std::string& target, const std::string& token = "",
                          const std::string& body = "") {
  auto r = http_call(port, std::string(http::to_string(verb)), target, token, body);
  return {r.status, json::parse(r.body, nullptr, false)};
}

const std::map<std::string, std::string> kTokens = {
    {"LASTGOOD_T_ALICE", "tok-alice-7f3a"}, {"LASTGOOD_T_BOB", "tok-bob-91c2"}, {"LASTGOOD_T_CAROL", "tok-carol-44d0"}};

// The app at P1 with three approvers: alice (cto), bob (eng-manager), carol (eng-manager,
// team-lead); P1 needs two eng-managers, P0 one cto.
struct Setup {
  TempDir dir;
  Site site{dir};
  Lastgood lg{dir, app_service(site.url(), site.local_symlink(), App{.severity = "P1"}),
              {{"approvers",
                {{{"name", "alice"}, {"roles", {"cto"}}, {"token_env", "LASTGOOD_T_ALICE"}},
                 {{"name", "bob"}, {"roles", {"eng-manager"}}, {"token_env", "LASTGOOD_T_BOB"}},
                 {{"name", "carol"}, {"roles", {"eng-manager", "team-lead"}}, {"token_env", "LASTGOOD_T_CAROL"}}}},
               {"authority", {{"P0", {{"roles", {"cto"}}, {"quorum", 1}, {"auto", true}}}, {"P1", {{"roles", {"eng-manager"}}, {"quorum", 2}}}}}}};
  unsigned short port = 0;
  std::string ledger = (lg.state / "ledger.jsonl").string();

  Setup() {
    lg.args = {};
    lg.start(kTokens);
    port = lg.port();
  }
  bool has(const std::string& type, const std::string& text = "") const { return ledger_has(ledger, type, text); }
  std::string proposal_id() const {
    for (const auto& e : lastgood::watchdog::read_ledger(ledger))
      if (e.type == "proposal_created") return e.data["id"];
    return "";
  }
  void breach() {
    REQUIRE(wait_until([&] { return has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
    switch_current(site.root, "bad2");
    REQUIRE(wait_until([&] { return has("proposal_created"); }, std::chrono::seconds(20)));
  }
};

}  // namespace

TEST_CASE("a P1 proposal executes when two distinct allowed approvers approve; refusals are recorded", "[approvals]") {
  Setup s;
  s.breach();
  const std::string id = s.proposal_id();
  const std::string url = "/api/v1/proposals/" + id + "/approve";
  CHECK(call(s.port, http::verb::post, url).first == 401);
  CHECK(call(s.port, http::verb::post, url, "tok-nobody").first == 401);
  auto alice = call(s.port, http::verb::post, url, "tok-alice-7f3a");
  CHECK(alice.first == 403);  // a cto may not decide P1 here
  CHECK_THAT(alice.second["error"].get<std::string>(), Catch::Contains("alice holds no role allowed"));
  auto bob = call(s.port, http::verb::post, url, "tok-bob-91c2", R"({"comment":"looks bad, go"})");
  CHECK(bob.first == 200);
  CHECK(bob.second["approvals"].size() == 1);
  CHECK(bob.second["state"] == "pending");
  auto again = call(s.port, http::verb::post, url, "tok-bob-91c2");
  CHECK(again.first == 200);
  CHECK(again.second["approvals"].size() == 1);  // the same approver twice counts once
  CHECK(current_release(s.site.root) == "bad2");
  auto carol = call(s.port, http::verb::post, url, "tok-carol-44d0");
  CHECK(carol.first == 202);
  CHECK(carol.second["approvals"].size() == 2);
  REQUIRE(wait_until([&] { return s.has("verification", "verified"); }, std::chrono::seconds(20)));
  CHECK(current_release(s.site.root) == "v1");
  auto list = call(s.port, http::verb::get, "/api/v1/proposals");
  CHECK(list.second["proposals"][0]["state"] == "verified");
  CHECK(list.second["proposals"][0]["approvals"][0]["comment"] == "looks bad, go");

  // The incident record: on disk with every section, listed and served by the API, linked from the page.
  auto incidents = call(s.port, http::verb::get, "/api/v1/incidents");
  REQUIRE(incidents.second["incidents"].size() == 1);
  const std::string inc_id = incidents.second["incidents"][0]["id"];
  const fs::path inc_dir = s.dir.path / "state" / "incidents";
  REQUIRE(fs::exists(inc_dir / (inc_id + ".json")));
  REQUIRE(fs::exists(inc_dir / (inc_id + ".md")));
  const json inc = json::parse(read_file(inc_dir / (inc_id + ".json")));
  CHECK(inc["status"] == "verified");
  CHECK(inc["service"] == "app");
  CHECK(inc["severity"] == "P1");
  CHECK(inc["releases"]["bad"] == "bad2");
  CHECK(inc["releases"]["restored"] == "v1");
  CHECK(inc["evidence"]["measure"] == "consecutive_failures");
  CHECK(inc["proposal_id"] == id);
  REQUIRE(inc["approvals"].size() == 2);
  CHECK(inc["approvals"][0]["approver"] == "bob");
  CHECK(inc["approvals"][1]["approver"] == "carol");
  CHECK(inc["action"]["ok"] == true);
  CHECK(inc["action"]["kind"] == "local_symlink");
  CHECK(inc["outcome"]["verification"]["outcome"] == "verified");
  const long long due = inc["review"]["due_by"], started = inc["action"]["started_at"];
  CHECK(due - started == 48LL * 3600 * 1000);
  std::vector<std::string> events;
  for (const auto& e : inc["timeline"]) events.push_back(e["event"]);
  CHECK(events == std::vector<std::string>{"breach", "decision", "proposed", "approval", "approval", "action_started", "action_finished", "verification"});
  const std::string md = read_file(inc_dir / (inc_id + ".md"));
  for (const char* section : {"## Summary", "## Timeline", "## Evidence", "## Releases", "## Approvals", "## Action",
                              "## Verification and escalation", "## Follow-up review"})
    CHECK_THAT(md, Catch::Contains(section));
  CHECK_THAT(md, Catch::Contains("bob (eng-manager) approved: looks bad, go"));
  CHECK_THAT(md, Catch::Contains("Root-cause analysis due by **"));
  auto served = http_call(s.port, "GET", "/api/v1/incidents/" + inc_id + ".md");
  CHECK(served.status == 200);
  CHECK_THAT(served.content_type, Catch::StartsWith("text/markdown"));
  CHECK_THAT(served.body, Catch::Contains("# Incident " + inc_id + ": app rolled back from bad2 to v1"));
  CHECK(call(s.port, http::verb::get, "/api/v1/incidents/" + inc_id).second["status"] == "verified");
  CHECK(http_call(s.port, "GET", "/api/v1/incidents/nope").status == 404);
  const std::string page = http_call(s.port, "GET", "/").body + http_call(s.port, "GET", "/page.js").body;
  CHECK_THAT(page, Catch::Contains("/api/v1/incidents"));

  int unauthorized = 0, forbidden = 0, counted = 0, duplicate = 0;
  for (const auto& e : lastgood::watchdog::read_ledger(s.ledger)) {
    if (e.type != "approval_attempt") continue;
    const std::string o = e.data["outcome"];
    unauthorized += o == "unauthorized";
    forbidden += o == "forbidden" && e.data["approver"] == "alice";
    counted += o == "counted";
    duplicate += o == "duplicate";
    CHECK(e.data["source"] == "127.0.0.1");  // the client's address (X-Forwarded-For only from api.trusted_proxies)
    if (e.data["approver"].is_null()) CHECK_FALSE(e.data.contains("comment"));  // no body from anyone without a token
  }
  CHECK(unauthorized == 2);
  CHECK(forbidden == 1);
  CHECK(counted == 2);
  CHECK(duplicate == 1);
  CHECK(s.lg.proc->stop() == 0);
  for (const auto& [var, token] : kTokens) {
    CHECK(read_file(s.ledger).find(token) == std::string::npos);
    CHECK(s.lg.log().find(token) == std::string::npos);
    CHECK(page.find(token) == std::string::npos);
    CHECK(md.find(token) == std::string::npos);
    CHECK(inc.dump().find(token) == std::string::npos);
  }
}

TEST_CASE("an allowed rejection closes the proposal; failed authentications are rate-limited", "[approvals]") {
  Setup s;
  s.breach();
  const std::string id = s.proposal_id();
  auto rej = call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/reject", "tok-bob-91c2", R"({"comment":"the DB migration"})");
  CHECK(rej.first == 200);
  CHECK(rej.second["state"] == "rejected");
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "tok-carol-44d0").first == 409);
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/nope/approve", "tok-carol-44d0").first == 404);
  CHECK(current_release(s.site.root) == "bad2");
  int last = 0;
  for (int i = 0; i < 12; ++i) last = call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "wrong").first;
  CHECK(last == 429);  // per (address, presented token), for a minute
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve").first == 401);  // another credential (none): its own count
  // A valid token is never refused because of someone else's failures from the same address.
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "tok-carol-44d0").first == 409);
  CHECK(s.has("proposal_state", "rejected"));
}

TEST_CASE("the approval page in headless Chromium: see the proposal, a refused role, approve to executed and verified", "[page]") {
  Setup s;
  s.breach();
  const fs::path artifacts = fs::path(LASTGOOD_SOURCE_DIR) / "tests/artifacts";
  fs::create_directories(artifacts);
  const std::string shot = (artifacts / "approval-page.png").string();
  std::string out;
  int rc = run_command({"env", "WRONG_ROLE_TOKEN=tok-alice-7f3a", "TOKEN_1=tok-bob-91c2", "TOKEN_2=tok-carol-44d0", "node",
                        std::string(LASTGOOD_SOURCE_DIR) + "/tests/integration/approval_page.js", "http://127.0.0.1:" + std::to_string(s.port), shot},
                       &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("step: wrong role refused: Refused: alice holds no role allowed"));
  CHECK_THAT(out, Catch::Contains("step: why, who may approve, how many more and when shown"));
  CHECK_THAT(out, Catch::Contains("step: confirmation asked before approving"));
  CHECK_THAT(out, Catch::Contains("step: state shown as verified"));
  CHECK_THAT(out, Catch::Contains("step: approval comment shown"));
  CHECK_THAT(out, Catch::Contains("step: incident listed and its record linked: /api/v1/incidents/"));
  CHECK(fs::exists(shot));
  CHECK(current_release(s.site.root) == "v1");
}
