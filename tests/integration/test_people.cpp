// Humans in command, against the real binary: a manual rollback and a release marked bad become
// proposals under the authority matrix (401/403/409 paths, the requester's approval counting,
// names in the ledger); silences hold decisions until they end; PagerDuty's Events API v2 and the
// notify filters, against a stand-in that checks the documented body.
#include <catch2/catch.hpp>

#include <csignal>
#include <mutex>
#include <set>
#include <thread>
#include <optional>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/state/ledger.hpp"

using namespace testing;
using nlohmann::json;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;

namespace {

std::pair<int, json> call(unsigned short port, const std::string& method, const std::string& target, const std::string& token = "",
                          const std::string& body = "") {
  auto r = http_call(port, method, target, token, body);
  return {r.status, json::parse(r.body, nullptr, false)};
}

const std::map<std::string, std::string> kTokens = {
    {"LG_T_ALICE", "tok-alice-5b1e"}, {"LG_T_BOB", "tok-bob-0c7d"}, {"LG_T_CAROL", "tok-carol-9a2f"}};

json people() {
  return {{"approvers",
           {{{"name", "alice"}, {"roles", {"cto"}}, {"token_env", "LG_T_ALICE"}},
            {{"name", "bob"}, {"roles", {"eng-manager"}}, {"token_env", "LG_T_BOB"}},
            {{"name", "carol"}, {"roles", {"eng-manager"}}, {"token_env", "LG_T_CAROL"}}}},
          {"authority", {{"P0", {{"roles", {"cto"}}, {"quorum", 1}, {"auto", true}}}, {"P1", {{"roles", {"eng-manager"}}, {"quorum", 2}}}}}};
}

// Releases v1..v3 (and bad4), each verified good in turn; v3 live at the end.
struct Verified {
  TempDir dir;
  Site site;
  Lastgood lg;
  unsigned short port = 0;
  explicit Verified(App app, json extra = people(), std::vector<std::string> releases = {"v1", "v2", "v3", "bad4"})
      : site(dir, releases), lg(dir, app_service(site.url(), site.local_symlink({{"observe_interval", "200ms"}}), app), std::move(extra)) {
    lg.args = {};
    lg.start(kTokens);
    port = lg.port();
  }
  void verify_in_turn(const std::vector<std::string>& ids) {
    for (const auto& id : ids) {
      if (current_release(site.root) != id) switch_current(site.root, id);
      REQUIRE(lg.wait_for("release_verified_good", release_is(id), std::chrono::seconds(20)));
    }
  }
  json releases() { return call(port, "GET", "/api/v1/services/app/releases").second; }
  json release(const std::string& id) {
    const json all = releases();
    for (const auto& r : all["releases"])
      if (r["id"] == id) return r;
    return nullptr;
  }
};

}  // namespace

TEST_CASE("manual rollback: tokens and roles checked, the requester's approval counts, a second approver carries it out", "[people]") {
  Verified s(App{.severity = "P1", .mode = "approve"});
  s.verify_in_turn({"v1", "v2"});
  const std::string url = "/api/v1/services/app/rollback";
  const std::string why = R"({"reason": "checkout broken for EU customers"})";
  CHECK(call(s.port, "POST", url, "", why).first == 401);
  CHECK(call(s.port, "POST", url, "tok-wrong", why).first == 401);
  auto alice = call(s.port, "POST", url, "tok-alice-5b1e", why);  // a cto may not decide a P1
  CHECK(alice.first == 403);
  CHECK_THAT(alice.second["error"].get<std::string>(), Catch::Contains("alice holds no role allowed"));
  CHECK(call(s.port, "POST", url, "tok-bob-0c7d", "{}").first == 400);  // a reason is required
  CHECK(call(s.port, "POST", url, "tok-bob-0c7d", R"({"reason": "x", "to": "v2"})").first == 409);  // live already
  CHECK(call(s.port, "POST", url, "tok-bob-0c7d", R"({"reason": "x", "to": "v9"})").first == 409);  // never seen
  CHECK(call(s.port, "POST", url, "tok-bob-0c7d", R"({"reason": "x", "severity": "P7"})").first == 400);
  CHECK(call(s.port, "POST", "/api/v1/services/nope/rollback", "tok-bob-0c7d", why).first == 404);
  auto bob = call(s.port, "POST", url, "tok-bob-0c7d", why);
  REQUIRE(bob.first == 201);
  const std::string id = bob.second["proposal"];
  CHECK(bob.second["state"] == "pending");
  CHECK(bob.second["approvals"] == 1);  // bob's own approval counts
  CHECK(bob.second["quorum"] == 2);
  // The same request again: the open proposal is named, not a second one made.
  auto again = call(s.port, "POST", url, "tok-carol-9a2f", why);
  CHECK(again.first == 409);
  CHECK(again.second["proposal"] == id);
  auto list = call(s.port, "GET", "/api/v1/proposals").second["proposals"];
  REQUIRE(list.size() == 1);
  CHECK(list[0]["origin"] == "manual");
  CHECK(list[0]["requested_by"] == "bob");
  CHECK(list[0]["approvals_needed"] == 1);
  CHECK(list[0]["decision"]["release_to"] == "v1");  // the last verified good release
  CHECK(current_release(s.site.root) == "v2");
  auto carol = call(s.port, "POST", "/api/v1/proposals/" + id + "/approve", "tok-carol-9a2f");
  CHECK(carol.first == 202);
  REQUIRE(s.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(s.site.root) == "v1");
  // The ledger names who asked, why, and who approved; never a token.
  CHECK(s.lg.wait_for("rollback_requested", [](const json& d) { return d["by"] == "bob" && d["origin"] == "manual" && d["reason"] == "checkout broken for EU customers"; }));
  CHECK(s.lg.wait_for("proposal_created", [](const json& d) { return d["decision"]["origin"] == "manual" && d["decision"]["requested_by"] == "bob"; }));
  CHECK(s.lg.count("proposal_vote") == 2);
  CHECK(s.lg.wait_for("action_started", [&](const json& d) { return d["via"] == "proposal " + id && d["to"] == "v1"; }));
  CHECK(s.lg.count("rollback_requested") == 1);  // refusals made nothing
  CHECK(s.lg.proc->stop() == 0);
  for (const auto& [var, token] : kTokens) {
    CHECK(read_file(s.lg.state / "ledger.jsonl").find(token) == std::string::npos);
    CHECK(s.lg.log().find(token) == std::string::npos);
  }
}

TEST_CASE("mark bad: never a target again; a live release marked bad opens a proposal carried out at quorum 1", "[people]") {
  Verified s(App{.severity = "P1", .mode = "approve"});
  s.verify_in_turn({"v1", "v2", "v3"});
  CHECK(s.release("v3")["live"] == true);
  CHECK(s.release("v2")["state"] == "verified_good");
  CHECK(call(s.port, "POST", "/api/v1/services/app/releases/v2/bad", "", R"({"reason": "r"})").first == 401);
  CHECK(call(s.port, "POST", "/api/v1/services/app/releases/v2/bad", "tok-bob-0c7d", "{}").first == 400);
  auto v2 = call(s.port, "POST", "/api/v1/services/app/releases/v2/bad", "tok-bob-0c7d", R"({"reason": "corrupts carts"})");
  CHECK(v2.first == 200);
  CHECK_FALSE(v2.second.contains("proposal"));  // not live: nothing to roll back
  CHECK(call(s.port, "POST", "/api/v1/services/app/releases/v2/bad", "tok-carol-9a2f", R"({"reason": "again"})").first == 409);
  auto r2 = s.release("v2");
  CHECK(r2["state"] == "bad");
  CHECK(r2["marked_bad_by"] == "bob");
  CHECK(call(s.port, "POST", "/api/v1/services/app/rollback", "tok-bob-0c7d", R"({"reason": "x", "to": "v2"})").first == 409);
  // v3, live, marked bad at P0 by alice (cto, quorum 1, auto): the proposal is to v1 (v2 is bad)
  // and her approval carries it out.
  auto v3 = call(s.port, "POST", "/api/v1/services/app/releases/v3/bad", "tok-alice-5b1e", R"({"reason": "same bug as v2", "severity": "P0"})");
  REQUIRE(v3.first == 202);
  CHECK(v3.second.contains("proposal"));
  REQUIRE(s.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(s.site.root) == "v1");
  CHECK(s.lg.wait_for("proposal_created", [](const json& d) { return d["decision"]["origin"] == "mark_bad" && d["decision"]["release_to"] == "v1"; }));
  CHECK(s.lg.count("release_marked_bad") == 2);
  // The marks survive a restart: v2 and v3 are still bad, and no target is offered but v1's own history.
  CHECK(s.lg.proc->stop() == 0);
  s.lg.start(kTokens);
  s.port = s.lg.port();
  REQUIRE(wait_until([&] { return s.release("v1")["live"] == true; }, std::chrono::seconds(10)));
  CHECK(s.release("v2")["state"] == "bad");
  CHECK(s.release("v3")["state"] == "bad");
  CHECK(s.release("v3")["marked_bad_by"] == "alice");
  auto none = call(s.port, "POST", "/api/v1/services/app/rollback", "tok-bob-0c7d", R"({"reason": "x"})");
  CHECK(none.first == 409);
  CHECK_THAT(none.second["error"].get<std::string>(), Catch::Contains("no verified good release"));
}

TEST_CASE("a silence holds the decision, is listed and measured, and when it ends the breach still firing is acted on", "[people]") {
  Verified s(App{.severity = "P0", .mode = "auto"}, people(), {"v1", "bad2"});
  s.verify_in_turn({"v1"});
  const std::string body = R"({"service": "app", "for": "4s", "comment": "deploy window"})";
  CHECK(call(s.port, "POST", "/api/v1/silences", "", body).first == 401);
  CHECK(call(s.port, "POST", "/api/v1/silences", "tok-bob-0c7d", R"({"service": "app", "for": "soon", "comment": "c"})").first == 400);
  CHECK(call(s.port, "POST", "/api/v1/silences", "tok-bob-0c7d", R"({"service": "nope", "for": "1h", "comment": "c"})").first == 404);
  auto made = call(s.port, "POST", "/api/v1/silences", "tok-bob-0c7d", body);
  REQUIRE(made.first == 201);
  const std::string id = made.second["id"];
  CHECK(metric(http_call(s.port, "GET", "/metrics").body, "lastgood_silenced{service=\"app\"}") == 1);
  switch_current(s.site.root, "bad2");
  REQUIRE(s.lg.wait_for("decision", [](const json& d) { return d["kind"] == "hold" && d["reason"].get<std::string>().find("silenced until") != std::string::npos; }));
  CHECK(s.lg.wait_for("decision", [](const json& d) { return d["reason"].get<std::string>().find("by bob (deploy window)") != std::string::npos; }));
  CHECK(current_release(s.site.root) == "bad2");  // held: nothing was done
  CHECK(s.lg.count("action_started") == 0);
  // The held breach has its incident record already.
  const json held = call(s.port, "GET", "/api/v1/incidents").second;
  REQUIRE(held["incidents"].size() == 1);
  const std::string incident = held["incidents"][0]["id"];
  CHECK(incident.rfind("i", 0) == 0);
  CHECK(held["incidents"][0]["status"] == "held");
  auto listed = call(s.port, "GET", "/api/v1/silences").second["silences"];
  REQUIRE(listed.size() >= 1);
  CHECK(listed[0]["id"] == id);
  CHECK(listed[0]["by"] == "bob");
  // The silence ends on time: the breach, still firing, is decided again and acted on.
  REQUIRE(s.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, std::chrono::seconds(30)));
  CHECK(current_release(s.site.root) == "v1");
  CHECK(metric(http_call(s.port, "GET", "/metrics").body, "lastgood_silenced{service=\"app\"}") == 0);
  // The rollback joined the breach's incident: one record, from the hold to the verification.
  REQUIRE(wait_until([&] { return call(s.port, "GET", "/api/v1/incidents/" + incident).second.value("status", "") == "verified"; }, std::chrono::seconds(5)));
  const json record = call(s.port, "GET", "/api/v1/incidents/" + incident).second;
  std::vector<std::string> events;
  for (const auto& e : record["timeline"]) events.push_back(e["event"]);
  CHECK(events.front() == "breach");
  CHECK(std::find(events.begin(), events.end(), "action_started") != events.end());
  CHECK(record["timeline"][1]["detail"].get<std::string>().find("silenced until") != std::string::npos);
  // Expiring: a second silence, ended early by another person; ended ones answer 409, unknown 404.
  auto second = call(s.port, "POST", "/api/v1/silences", "tok-carol-9a2f", R"({"service": "app", "for": "1h", "comment": "db maintenance"})");
  REQUIRE(second.first == 201);
  const std::string id2 = second.second["id"];
  CHECK(call(s.port, "DELETE", "/api/v1/silences/" + id2).first == 401);
  CHECK(call(s.port, "DELETE", "/api/v1/silences/" + id2, "tok-alice-5b1e").first == 200);
  CHECK(call(s.port, "DELETE", "/api/v1/silences/" + id2, "tok-alice-5b1e").first == 409);
  CHECK(call(s.port, "DELETE", "/api/v1/silences/nope", "tok-alice-5b1e").first == 404);
  CHECK(s.lg.wait_for("silence_expired", [&](const json& d) { return d["id"] == id2 && d["by"] == "alice"; }));
  // The silences come back after a restart (ended ones too, as ended).
  CHECK(s.lg.proc->stop() == 0);
  s.lg.start(kTokens);
  s.port = s.lg.port();
  auto after = call(s.port, "GET", "/api/v1/silences").second["silences"];
  REQUIRE(after.size() == 2);
  CHECK(after[0]["state"] == "ended");
  CHECK(after[1]["state"] == "ended");
}

TEST_CASE("a maintenance window from the config holds decisions and cannot be expired over the API", "[people]") {
  const auto now = std::chrono::system_clock::now();
  auto iso = [](std::chrono::system_clock::time_point t) {
    const std::time_t s = std::chrono::system_clock::to_time_t(t);
    char buf[32];
    std::tm tm{};
    gmtime_r(&s, &tm);
    std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
    return std::string(buf);
  };
  json extra = people();
  extra["maintenance"] = {{{"services", {"app"}}, {"start", iso(now - std::chrono::minutes(1))}, {"end", iso(now + std::chrono::hours(1))}, {"comment", "datacenter move"}}};
  Verified s(App{.severity = "P0", .mode = "auto"}, extra, {"v1", "bad2"});
  s.verify_in_turn({"v1"});
  switch_current(s.site.root, "bad2");
  REQUIRE(s.lg.wait_for("decision", [](const json& d) { return d["kind"] == "hold" && d["reason"].get<std::string>().find("by config (datacenter move)") != std::string::npos; }));
  CHECK(current_release(s.site.root) == "bad2");
  auto listed = call(s.port, "GET", "/api/v1/silences").second["silences"];
  REQUIRE(listed.size() == 1);
  CHECK(listed[0]["id"] == "maintenance-0");
  CHECK(listed[0]["source"] == "config");
  CHECK(call(s.port, "DELETE", "/api/v1/silences/maintenance-0", "tok-alice-5b1e").first == 409);
}

namespace {
bool one_of(const json& v, std::initializer_list<const char*> choices) {
  if (!v.is_string()) return false;
  for (const char* c : choices)
    if (v == c) return true;
  return false;
}

struct PagerDuty {
  std::mutex mu;
  std::vector<json> events;
  std::vector<std::string> problems;  // what a real Events API v2 would refuse
  std::vector<json> webhook;          // the filtered webhook's deliveries
  std::optional<HttpTestServer> http;
  PagerDuty() {
    http.emplace([this](const HttpReq& r) {
      std::lock_guard lk(mu);
      auto b = json::parse(r.body, nullptr, false);
      if (r.target == "/hook") {
        webhook.push_back(b);
        return HttpRes{200, "application/json", "{}"};
      }
      // https://developer.pagerduty.com/docs/events-api-v2/trigger-events/
      std::string why;
      if (r.target != "/v2/enqueue") why = "path " + r.target;
      else if (!b.is_object()) why = "not JSON";
      else if (b.value("routing_key", "") != "R0UTINGKEY32charsxxxxxxxxxxxxxxx") why = "routing_key";
      else if (!one_of(b.value("event_action", json()), {"trigger", "acknowledge", "resolve"})) why = "event_action";
      else if (!b.contains("dedup_key") || !b["dedup_key"].is_string() || b["dedup_key"].get<std::string>().size() > 255) why = "dedup_key";
      else if (b["event_action"] == "trigger") {
        const auto& p = b.value("payload", json());
        if (!p.is_object() || !p.contains("summary") || !p.contains("source") || !p.contains("severity")) why = "payload";
        else if (!one_of(p["severity"], {"critical", "error", "warning", "info"})) why = "payload.severity";
        else if (p["summary"].get<std::string>().size() > 1024) why = "summary too long";
      }
      if (!why.empty()) {
        problems.push_back(why);
        return HttpRes::json_error(400, "Invalid event: " + why);
      }
      events.push_back(b);
      return HttpRes{202, "application/json", R"({"status":"success","message":"Event processed","dedup_key":")" + b["dedup_key"].get<std::string>() + "\"}"};
    });
  }
  std::string url(const std::string& p) const { return "http://127.0.0.1:" + std::to_string(http->port()) + p; }
};
}  // namespace

TEST_CASE("pagerduty: trigger on the breach, acknowledge on execution, resolve on verified recovery, one dedup_key; filters hold", "[people]") {
  PagerDuty pd;
  json extra = people();
  extra["external_url"] = "https://lastgood.example.com/";  // every link in notices starts here
  extra["notify"] = {{{"kind", "pagerduty"}, {"url", pd.url("/v2/enqueue")}, {"routing_key_env", "LG_T_PD"}},
                     {{"kind", "webhook"}, {"url", pd.url("/hook")}, {"severities", {"P2"}}},
                     {{"kind", "webhook"}, {"url", pd.url("/hook")}, {"services", {"app"}}, {"events", {"verified"}}}};
  auto env = kTokens;
  env["LG_T_PD"] = "R0UTINGKEY32charsxxxxxxxxxxxxxxx";
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, app_service(site.url(), site.local_symlink(), App{.severity = "P0", .mode = "auto"}), extra);
  lg.args = {};
  lg.start(env);
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  // The resolve and the webhook of the verification are separate deliveries: wait for both.
  REQUIRE(wait_until([&] {
    std::lock_guard lk(pd.mu);
    return !pd.events.empty() && pd.events.back()["event_action"] == "resolve" && !pd.webhook.empty();
  }, std::chrono::seconds(10)));
  std::lock_guard lk(pd.mu);
  CHECK(pd.problems.empty());
  std::vector<std::string> actions;
  for (const auto& e : pd.events)  // a breach that fires again before the decision triggers again (deduplicated by PagerDuty)
    if (actions.empty() || actions.back() != e["event_action"]) actions.push_back(e["event_action"]);
  CHECK(actions == std::vector<std::string>{"trigger", "acknowledge", "resolve"});
  const std::string key = pd.events[0]["dedup_key"];
  for (const auto& e : pd.events) CHECK(e["dedup_key"] == key);
  CHECK(pd.events[0]["payload"]["severity"] == "critical");  // P0
  CHECK(pd.events[0]["payload"]["component"] == "app");
  CHECK_THAT(pd.events[0]["payload"]["summary"].get<std::string>(), Catch::StartsWith("app is failing (trigger down, P0): "));
  // The P2-only webhook got nothing of a P0; the app-and-verified one got exactly the verification.
  REQUIRE(pd.webhook.size() == 1);
  CHECK(pd.webhook[0]["event"] == "verified");
  // Links are under external_url, not the listen address.
  CHECK(pd.events[0]["client_url"] == "https://lastgood.example.com/");
  CHECK(pd.events[0]["links"][0]["href"] == "https://lastgood.example.com/");
  CHECK(pd.webhook[0]["links"]["page"] == "https://lastgood.example.com/");
  CHECK_THAT(pd.webhook[0]["links"]["incident"].get<std::string>(), Catch::StartsWith("https://lastgood.example.com/api/v1/incidents/"));
  // The routing key is a secret: in no ledger line or log.
  CHECK(read_file(lg.state / "ledger.jsonl").find("R0UTINGKEY") == std::string::npos);
  CHECK(lg.log().find("R0UTINGKEY") == std::string::npos);
}

namespace {
// `lastgood ctl ARGS` against the instance on `port` as `token`; its exit code and output.
std::pair<int, std::string> ctl(unsigned short port, const std::string& token, std::vector<std::string> args) {
  std::vector<std::string> argv{"env", "LASTGOOD_URL=http://127.0.0.1:" + std::to_string(port), "LASTGOOD_TOKEN=" + token, LASTGOOD_BINARY, "ctl"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::string out;
  const int rc = run_command(argv, &out);
  return {rc, out};
}
}  // namespace

TEST_CASE("lastgood ctl: status, rollback, proposals, approve, releases, silences, clear; exit codes 0, 1 and 2", "[people]") {
  Verified s(App{.severity = "P1", .mode = "approve"});
  s.verify_in_turn({"v1", "v2"});
  const std::string bob = "tok-bob-0c7d", carol = "tok-carol-9a2f";
  auto status = ctl(s.port, "", {"status"});
  CHECK(status.first == 0);
  CHECK_THAT(status.second, Catch::Contains("SERVICE") && Catch::Contains("app") && Catch::Contains("v2"));
  // Usage mistakes: 2, with what was expected.
  CHECK(ctl(s.port, bob, {"frobnicate"}).first == 2);
  auto noreason = ctl(s.port, bob, {"rollback", "app"});
  CHECK(noreason.first == 2);
  CHECK_THAT(noreason.second, Catch::Contains("--reason"));
  CHECK(ctl(s.port, "", {"rollback", "app", "--reason", "x"}).first == 2);  // no token at all
  CHECK(ctl(s.port, bob, {"status", "--to", "v1"}).first == 2);
  // A refusal: 1, with the server's reason.
  auto forbidden = ctl(s.port, "tok-alice-5b1e", {"rollback", "app", "--reason", "x"});
  CHECK(forbidden.first == 1);
  CHECK_THAT(forbidden.second, Catch::Contains("HTTP 403") && Catch::Contains("alice holds no role allowed"));
  // The approval flow.
  auto asked = ctl(s.port, bob, {"rollback", "app", "--reason", "checkout broken", "--to", "v1"});
  REQUIRE(asked.first == 0);
  CHECK_THAT(asked.second, Catch::Contains("pending") && Catch::Contains("1/2"));
  auto listed = ctl(s.port, "", {"proposals", "-o", "json"});
  REQUIRE(listed.first == 0);
  const json props = json::parse(listed.second, nullptr, false);
  REQUIRE(props.is_object());
  REQUIRE(props["proposals"].size() == 1);
  const std::string id = props["proposals"][0]["id"];
  CHECK(props["proposals"][0]["origin"] == "manual");
  auto table = ctl(s.port, "", {"proposals"});
  CHECK_THAT(table.second, Catch::Contains(id) && Catch::Contains("manual") && Catch::Contains("1/2 (bob)"));
  auto approved = ctl(s.port, carol, {"approve", id, "--comment", "agreed"});
  CHECK(approved.first == 0);
  REQUIRE(s.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(s.site.root) == "v1");
  auto again = ctl(s.port, carol, {"approve", id});
  CHECK(again.first == 1);
  CHECK_THAT(again.second, Catch::Contains("HTTP 409"));
  auto releases = ctl(s.port, "", {"releases", "app"});
  CHECK(releases.first == 0);
  CHECK_THAT(releases.second, Catch::Contains("RELEASE") && Catch::Contains("v2") && Catch::Contains("verified_good"));
  // Silences.
  auto silenced = ctl(s.port, bob, {"silence", "add", "app", "--for", "1h", "--comment", "deploy window"});
  REQUIRE(silenced.first == 0);
  const std::string sid = silenced.second.substr(silenced.second.find("silence ") + 8, silenced.second.find(" until") - silenced.second.find("silence ") - 8);
  auto sl = ctl(s.port, "", {"silence", "list"});
  CHECK_THAT(sl.second, Catch::Contains(sid) && Catch::Contains("active") && Catch::Contains("deploy window"));
  CHECK(ctl(s.port, carol, {"silence", "expire", sid}).first == 0);
  CHECK(ctl(s.port, carol, {"silence", "expire", sid}).first == 1);
  // Reject, and reload.
  auto again_ask = ctl(s.port, bob, {"rollback", "app", "--reason", "try v2 again", "--to", "v2", "-o", "json"});
  REQUIRE(again_ask.first == 0);
  const std::string id2 = json::parse(again_ask.second)["proposal"];
  auto rejected = ctl(s.port, carol, {"reject", id2, "--comment", "v2 is fine, the bug is elsewhere"});
  CHECK(rejected.first == 0);
  CHECK_THAT(rejected.second, Catch::Contains("rejected"));
  CHECK(s.lg.wait_for("proposal_vote", [&](const json& d) { return d["id"] == id2 && d["approve"] == false && d["approver"] == "carol"; }));
  auto reload = ctl(s.port, bob, {"reload"});
  CHECK(reload.first == 0);
  CHECK_THAT(reload.second, Catch::Contains("reloaded"));
  auto clear = ctl(s.port, bob, {"clear", "app"});
  CHECK(clear.first == 1);
  CHECK_THAT(clear.second, Catch::Contains("not escalated"));
  // Unreachable: 1.
  auto away = run_command({"env", "LASTGOOD_URL=http://127.0.0.1:1", LASTGOOD_BINARY, "ctl", "status"});
  CHECK(away == 1);
}

TEST_CASE("reload: SIGHUP and POST /-/reload apply services added, removed and changed, keeping state; an invalid file changes nothing", "[people]") {
  TempDir dir;
  Site site(dir, {"v1", "v2", "bad3"});
  auto plain = [&](const std::string& name) {
    return json{{"name", name},
                {"probes", {{{"name", "home"}, {"kind", "http"}, {"url", site.url()}, {"interval", "200ms"}, {"timeout", "150ms"}}}},
                {"rollback", {{"mode", "alert"}}}};
  };
  json cfg = people();
  // "secret" reads a token (an npm registry probe of a stand-in that keeps the Authorization it
  // gets; alert only): a reload reads it again.
  std::mutex mu;
  std::string auth_seen;
  HttpTestServer registry([&](const HttpReq& r) {
    std::lock_guard lk(mu);
    auth_seen = r.authorization;
    return HttpRes::json_error(404, "not here");
  });
  auto seen = [&] {
    std::lock_guard lk(mu);
    return auth_seen;
  };
  const json secret{{"name", "secret"},
                    {"probes", {{{"name", "reg"}, {"kind", "npm_registry"}, {"registry", "http://127.0.0.1:" + std::to_string(registry.port()) + "/"},
                                 {"package", "left-pad"},
                                 {"token_file", (dir.path / "npm-token").string()}, {"interval", "1s"}, {"timeout", "500ms"}}}},
                    {"rollback", {{"mode", "alert"}}}};
  write_file(dir.path / "npm-token", "tok-npm-1\n");
  cfg["services"] = {app_service(site.url(), site.local_symlink({{"observe_interval", "200ms"}}), App{.severity = "P1", .mode = "approve"}), plain("keep"),
                     plain("gone"), secret};
  Lastgood lg(dir, Lastgood::Config{cfg});
  lg.args = {};
  lg.start(kTokens);
  const auto port = lg.port();
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "v2");
  REQUIRE(lg.wait_for("release_verified_good", release_is("v2")));
  auto runs_of = [&](const std::string& service) -> long long {
    const json all = call(port, "GET", "/api/v1/services").second;
    for (const auto& s : all["services"])
      if (s["name"] == service) return s["probes"][0]["runs"].get<long long>();
    return -1;
  };
  json written = json::parse(read_file(lg.config));
  // app changed (its rollback settings: its windows and releases are kept), gone removed, extra added, keep as it was.
  json next = written;
  next["services"][0]["rollback"]["approval_timeout"] = "45m";
  next["services"].erase(2);
  next["services"].push_back(plain("extra"));
  REQUIRE(wait_until([&] { return seen() == "Bearer tok-npm-1"; }, std::chrono::seconds(10)));
  write_file(dir.path / "npm-token", "tok-npm-2-rotated\n");
  write_file(lg.config, next.dump(2));
  CHECK(call(port, "POST", "/-/reload").first == 401);
  const long long keep_before = runs_of("keep");
  auto ok = call(port, "POST", "/-/reload", "tok-bob-0c7d");
  REQUIRE(ok.first == 200);
  CHECK(ok.second["changes"]["added"] == json{"extra"});
  CHECK(ok.second["changes"]["removed"] == json{"gone"});
  CHECK(ok.second["changes"]["changed"] == json{"app"});
  CHECK(ok.second["changes"]["unchanged"] == 1);
  CHECK(ok.second["changes"]["secrets_read_again"] == json{"secret"});
  CHECK(wait_until([&] { return seen() == "Bearer tok-npm-2-rotated"; }, std::chrono::seconds(10)));  // the rotated token is used
  std::set<std::string> names;
  const json listed = call(port, "GET", "/api/v1/services").second;
  for (const auto& s : listed["services"]) names.insert(s["name"]);
  CHECK(names == std::set<std::string>{"app", "keep", "extra", "secret"});
  // Kept: the releases verified before, and keep's probe schedule (its runs go on counting).
  const json rel = call(port, "GET", "/api/v1/services/app/releases").second;
  int verified = 0;
  for (const auto& r : rel["releases"]) verified += r["state"] == "verified_good";
  CHECK(verified == 2);
  CHECK(wait_until([&] { return runs_of("keep") >= keep_before + 3; }, std::chrono::seconds(5)));
  CHECK(wait_until([&] { return runs_of("extra") >= 2; }, std::chrono::seconds(5)));
  CHECK(call(port, "GET", "/api/v1/services/gone/releases").first == 404);
  // The changed app still acts on what it knew: a breach now proposes a rollback to v2, waiting 45 minutes.
  switch_current(site.root, "bad3");
  REQUIRE(lg.wait_for("proposal_created", [](const json& d) { return d["decision"]["release_to"] == "v2"; }));
  const json props = call(port, "GET", "/api/v1/proposals").second;
  REQUIRE(props["proposals"].size() == 1);
  const long long wait_ms = props["proposals"][0]["expires_at"].get<long long>() - props["proposals"][0]["created_at"].get<long long>();
  CHECK(wait_ms == 45LL * 60 * 1000);
  // An invalid file through SIGHUP: nothing changes, the failure is logged, measured and recorded.
  write_file(lg.config, R"({"services": [ {"name": "app", "probes": "nope"} ]})");
  REQUIRE(::kill(lg.proc->pid(), SIGHUP) == 0);
  REQUIRE(lg.wait_for("config_reloaded", [](const json& d) { return d["ok"] == false && d["via"] == "SIGHUP"; }));
  CHECK(metric(http_call(port, "GET", "/metrics").body, "lastgood_config_last_reload_successful") == 0);
  CHECK(lg.proc->running());
  auto bad = call(port, "POST", "/-/reload", "tok-bob-0c7d");
  CHECK(bad.first == 400);
  REQUIRE(bad.second["errors"].is_array());
  CHECK_THAT(bad.second["errors"][0].get<std::string>(), Catch::Contains(lg.config.string()));
  const json still = call(port, "GET", "/api/v1/services").second;
  CHECK(still["services"].size() == 4);
  // What only a restart applies is refused, naming it.
  json moved = next;
  moved["state_dir"] = (dir.path / "elsewhere").string();
  write_file(lg.config, moved.dump(2));
  auto restart = call(port, "POST", "/-/reload", "tok-bob-0c7d");
  CHECK(restart.first == 400);
  CHECK_THAT(restart.second["error"].get<std::string>(), Catch::Contains("only at a restart"));
  // Back to the valid file by SIGHUP: applied (nothing changed), success measured again.
  write_file(lg.config, next.dump(2));
  REQUIRE(::kill(lg.proc->pid(), SIGHUP) == 0);
  REQUIRE(lg.wait_for("config_reloaded", [](const json& d) { return d["ok"] == true && d["via"] == "SIGHUP"; }));
  CHECK(metric(http_call(port, "GET", "/metrics").body, "lastgood_config_last_reload_successful") == 1);
  CHECK(lg.count("proposal_created") == 1);  // the pending proposal survived the reloads
  // A service removed and named again comes back (to its old slot), probing again.
  json back = next;
  back["services"].push_back(plain("gone"));
  write_file(lg.config, back.dump(2));
  auto again = call(port, "POST", "/-/reload", "tok-bob-0c7d");
  CHECK(again.first == 200);
  CHECK(again.second["changes"]["added"] == json{"gone"});
  CHECK(wait_until([&] { return runs_of("gone") >= 2; }, std::chrono::seconds(5)));
  CHECK(call(port, "GET", "/api/v1/services/gone/releases").first == 200);
  const json after = call(port, "GET", "/api/v1/proposals").second;
  CHECK(after["proposals"][0]["state"] == "pending");
  CHECK(lg.proc->stop() == 0);
  CHECK(lg.ledger_verifies());
  CHECK(lg.log().find("tok-npm") == std::string::npos);
  CHECK(read_file(lg.state / "ledger.jsonl").find("tok-npm") == std::string::npos);
}

TEST_CASE("the page in headless Chromium: an escalated and silenced service, cleared with its button, then shown held by the silence", "[page]") {
  Verified s(App{.severity = "P0", .mode = "auto"}, people(), {"v1", "bad2"});
  s.verify_in_turn({"v1"});
  // The rollback target disappears: the rollback fails, the service is escalated.
  fs::rename(s.site.root / "releases" / "v1", s.site.root / "releases" / "v1.away");
  switch_current(s.site.root, "bad2");
  REQUIRE(s.lg.wait_for("escalated"));
  fs::rename(s.site.root / "releases" / "v1.away", s.site.root / "releases" / "v1");
  REQUIRE(call(s.port, "POST", "/api/v1/silences", "tok-bob-0c7d", R"({"service": "app", "for": "1h", "comment": "deploy window"})").first == 201);
  const fs::path artifacts = fs::path(LASTGOOD_SOURCE_DIR) / "tests/artifacts";
  fs::create_directories(artifacts);
  const std::string shot = (artifacts / "page-escalated-silenced.png").string();
  std::string out;
  int rc = run_command({"env", "TOKEN=tok-bob-0c7d", "node", std::string(LASTGOOD_SOURCE_DIR) + "/tests/integration/page_states.js",
                        "http://127.0.0.1:" + std::to_string(s.port), shot},
                       &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("step: escalation and silence shown on the service"));
  CHECK_THAT(out, Catch::Contains("step: silence listed with who, why and until when"));
  CHECK_THAT(out, Catch::Contains("step: cleared through the Clear button, after a confirmation"));
  CHECK_THAT(out, Catch::Contains("step: the breach is shown held"));
  CHECK(fs::exists(shot));
  CHECK(s.lg.wait_for("cleared", [](const json& d) { return d["by"] == "bob"; }));
  CHECK(current_release(s.site.root) == "bad2");  // held by the silence: nothing done
}

TEST_CASE("reload: the file is read off the loop, so a slow one holds no probe and no request; one reload at a time", "[people]") {
  TempDir dir;
  Site site(dir, {"v1"});
  const fs::path yaml = dir.path / "lastgood.yaml";
  const std::string good = "state_dir: " + (dir.path / "state").string() + "\nlisten: 127.0.0.1:0\n" +
                           "approvers: [{name: alice, roles: [cto], token_env: LG_T_ALICE}]\n" +
                           "services:\n- name: web\n  probes: [{name: home, kind: http, url: '" + site.url() + "', interval: 100ms, timeout: 90ms}]\n";
  write_file(yaml, good);
  Lastgood lg(dir, Lastgood::Config{json::object()});
  lg.config = yaml;
  lg.start({{"LG_T_ALICE", "tok-alice-reload"}});
  REQUIRE(lg.port() != 0);
  // An alias bomb: the reader takes a second or more to refuse it (at its 2 000 000-value budget).
  std::string bomb = good + "x0: &x0 [a, a, a, a, a, a, a, a, a, a]\n";
  for (int i = 1; i < 9; ++i) {
    bomb += "x" + std::to_string(i) + ": &x" + std::to_string(i) + " [";
    for (int k = 0; k < 10; ++k) bomb += (k ? ", *x" : "*x") + std::to_string(i - 1);
    bomb += "]\n";
  }
  write_file(yaml, bomb);
  HttpReply first;
  std::thread t([&] { first = http_call(lg.port(), "POST", "/-/reload", "tok-alice-reload"); });
  REQUIRE(wait_until([&] { return lg.log().find("reload (api: alice") != std::string::npos; }, std::chrono::seconds(10)));
  // While it is read: probes keep running and the API answers; a second reload then is refused as
  // such (the first is still under way), not queued behind it on a held loop.
  const std::string ok = "lastgood_probes_total{outcome=\"ok\",probe=\"home\",service=\"web\"}";
  const auto metrics0 = http_call(lg.port(), "GET", "/metrics").body;
  REQUIRE(wait_until([&] { return metric(http_call(lg.port(), "GET", "/metrics").body, ok) >= metric(metrics0, ok) + 2; }, std::chrono::seconds(5)));
  const auto second = http_call(lg.port(), "POST", "/-/reload", "tok-alice-reload");
  t.join();
  INFO(first.body);
  CHECK(first.status == 400);
  CHECK_THAT(first.body, Catch::Contains("values once aliases are expanded"));
  CHECK(second.status == 409);
  CHECK_THAT(second.body, Catch::Contains("a reload is already under way"));
  CHECK(metric(metrics0, "lastgood_config_last_reload_successful") == 1);
  CHECK(metric(http_call(lg.port(), "GET", "/metrics").body, "lastgood_config_last_reload_successful") == 0);
  CHECK(lg.proc->stop() == 0);
}
