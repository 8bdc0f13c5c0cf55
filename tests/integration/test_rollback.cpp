// Rollbacks end to end: the lastgood binary against a real nginx serving `current`, locally
// and over a real sshd; crash safety with the process stopped dead; the cooldown across a restart.
#include <catch2/catch.hpp>

#include <signal.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using lastgood::watchdog::LedgerEntry;

namespace {

std::pair<int, std::string> http_req(unsigned short port, http::verb verb, const std::string& target) {
  auto r = http_call(port, std::string(http::to_string(verb)), target);
  return {r.status, r.body};
}

json service_config(const std::string& url, json deployment) { return app_service(url, std::move(deployment), App{.cooldown = "10m"}); }

}  // namespace

TEST_CASE("a broken release is rolled back locally: nginx serves the good one again, the ledger verifies, a restart keeps the cooldown",
          "[rollback]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, service_config(site.url(), site.local_symlink({{"observe_interval", "1s"}})));
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));

  switch_current(site.root, "bad2");  // the deploy of a broken release
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(site.root) == "v1");
  auto page = http_req(site.nginx->port, http::verb::get, "/");
  CHECK_THAT(page.second, Catch::Contains("<title>release v1"));

  auto es = lg.ledger();
  const LedgerEntry* decision = nullptr;
  for (const auto& e : es)
    if (e.type == "decision") decision = &e;
  REQUIRE(decision);
  CHECK(decision->data["kind"] == "execute");
  CHECK(decision->data["release_from"] == "bad2");
  CHECK(decision->data["release_to"] == "v1");
  CHECK(decision->data["evidence"]["measure"] == "consecutive_failures");
  CHECK(lg.count("action_started") == 1);
  CHECK(lg.count("action_finished") == 1);
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (lg.state / "ledger.jsonl").string()}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("chain intact"));

  auto metrics = http_req(lg.port(), http::verb::get, "/metrics").second;
  CHECK_THAT(metrics, Catch::Contains("lastgood_rollbacks_total{deployment=\"local_symlink\",outcome=\"ok\",service=\"app\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_release_info{release=\"v1\",role=\"live\",service=\"app\"} 1"));

  // Restart: the cooldown (10 m) survives in the ledger, so a second breach only holds.
  REQUIRE(lg.proc->stop() == 0);
  const size_t before = lg.ledger().size();
  lg.start();
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(10)));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("decision", {}, std::chrono::seconds(20), before));
  es = lg.ledger();
  const LedgerEntry* second = nullptr;
  for (size_t i = before; i < es.size(); ++i)
    if (es[i].type == "decision") second = &es[i];
  REQUIRE(second);
  CHECK(second->data["kind"] == "hold");
  CHECK_THAT(second->data["reason"].get<std::string>(), Catch::StartsWith("cooldown"));
  CHECK(current_release(site.root) == "bad2");
  CHECK(lg.count("action_started") == 1);
}

TEST_CASE("a broken release is rolled back over SSH with after_switch commands", "[ssh]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Sshd sshd(dir.path / "");
  json dep{{"kind", "ssh_symlink"},       {"host", "127.0.0.1"},
           {"port", sshd.port},           {"user", sshd.user},
           {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.known_hosts.string()},
           {"path", site.root.string()},       {"after_switch", {"test -L current", "echo cache cleared"}},
           {"observe_interval", "1s"},    {"timeout", "5s"}};
  Lastgood lg(dir, service_config(site.url(), dep));
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(site.root) == "v1");
  CHECK_THAT(http_req(site.nginx->port, http::verb::get, "/").second, Catch::Contains("<title>release v1"));
  bool saw_output = false;
  for (const auto& e : lg.ledger())
    if (e.type == "action_finished") saw_output = e.data["output"].get<std::string>().find("cache cleared") != std::string::npos;
  CHECK(saw_output);
  CHECK(lg.ledger_verifies());
}

TEST_CASE("a wrong host key in known_hosts: nothing runs and the error names the key", "[ssh]") {
  TempDir dir;
  const fs::path site = dir.path / "app";
  make_releases(site, {"v1", "v2"});
  Sshd sshd(dir.path / "");
  json doc{{"services",
            {{{"name", "app"},
              {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}},
              {"deployment",
               {{"kind", "ssh_symlink"}, {"host", "127.0.0.1"}, {"port", sshd.port}, {"user", sshd.user},
                {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.wrong_known_hosts.string()}, {"path", site.string()},
                {"timeout", "5s"}}}}}}};
  auto cfg = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(cfg.config);
  asio::io_context ioc;
  auto action = lastgood::actions::make_action(ioc.get_executor(), "app", *cfg.config->services[0].deployment);
  auto obs = run_sync(ioc, action->observe());
  CHECK_FALSE(obs.live);
  CHECK_THAT(obs.error, Catch::Contains("host key MISMATCH for [127.0.0.1]:" + std::to_string(sshd.port)));
  CHECK_THAT(obs.error, Catch::Contains("ssh-ed25519 SHA256:"));
  auto res = run_sync(ioc, action->execute(action->plan("v1", "v2", {})));
  CHECK_FALSE(res.ok);
  CHECK_THAT(res.error, Catch::Contains("nothing was run"));
  CHECK(current_release(site) == "v1");

  SECTION("and an unknown host is refused the same way") {
    write_file(dir.path / "empty_known_hosts", "");
    doc["services"][0]["deployment"]["known_hosts"] = (dir.path / "empty_known_hosts").string();
    auto c2 = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = false});
    auto a2 = lastgood::actions::make_action(ioc.get_executor(), "app", *c2.config->services[0].deployment);
    auto o2 = run_sync(ioc, a2->observe());
    CHECK_THAT(o2.error, Catch::Contains("is not in"));
  }
  SECTION("release names that could escape are refused before anything runs") {
    auto bad = run_sync(ioc, action->execute(action->plan("v1", "../../etc", {})));
    CHECK_FALSE(bad.ok);
    CHECK_THAT(bad.error, Catch::Contains("not a valid release name"));
  }
}

TEST_CASE("an after_switch command that fails: outcome failed, escalated, reported; a person clears it", "[ssh]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Sshd sshd(dir.path / "");
  json dep{{"kind", "ssh_symlink"}, {"host", "127.0.0.1"}, {"port", sshd.port}, {"user", sshd.user},
           {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.known_hosts.string()}, {"path", site.root.string()},
           {"after_switch", {"echo reload failed >&2; exit 3", "echo never runs"}}, {"timeout", "5s"}};
  json approvers{{"approvers", {{{"name", "alice"}, {"roles", {"oncall"}}, {"token_env", "LG_TEST_CLEAR_TOKEN"}}}},
                 {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}, {"auto", true}}}}}};
  Lastgood lg(dir, service_config(site.url(), dep), approvers);
  lg.start({{"LG_TEST_CLEAR_TOKEN", "alice-clears-7f3"}});
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("escalated"));
  const auto entries = lg.ledger();
  const LedgerEntry* fin = nullptr;
  for (const auto& e : entries)
    if (e.type == "action_finished") fin = &e;
  REQUIRE(fin);
  CHECK(fin->data["ok"] == false);
  CHECK_THAT(fin->data["error"].get<std::string>(), Catch::Contains("exited with status 3"));
  CHECK_THAT(fin->data["error"].get<std::string>(), Catch::Contains("reload failed"));
  CHECK_THAT(fin->data["output"].get<std::string>(), !Catch::Contains("never runs"));
  CHECK_THAT(fin->data["error"].get<std::string>(), Catch::EndsWith("; current was put back to releases/bad2"));
  CHECK(current_release(site.root) == "bad2");  // restore_on_failure, the default
  auto api = json::parse(http_req(lg.port(), http::verb::get, "/api/v1/services").second);
  CHECK(api["services"][0]["escalated"] == true);
  CHECK_THAT(http_req(lg.port(), http::verb::get, "/metrics").second,
             Catch::Contains("lastgood_rollbacks_total{deployment=\"ssh_symlink\",outcome=\"failed\",service=\"app\"} 1"));
  CHECK(http_req(lg.port(), http::verb::post, "/api/v1/services/app/clear").first == 401);  // a token is required
  auto cleared = http_call(lg.port(), "POST", "/api/v1/services/app/clear", "alice-clears-7f3");
  CHECK(cleared.status == 200);
  CHECK(http_call(lg.port(), "POST", "/api/v1/services/app/clear", "alice-clears-7f3").status == 409);
  CHECK(lg.wait_for("cleared"));
}

TEST_CASE("crash safety: stopped dead after action_started, a restart reconciles instead of switching", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, service_config(site.url(), site.local_symlink()));
  lg.start({{"LASTGOOD_TEST_CRASH_AFTER", "action_started"}});
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  CHECK(lg.count("action_started") == 1);
  CHECK(lg.count("action_finished") == 0);
  CHECK(current_release(site.root) == "bad2");  // stopped before the switch

  lg.start();
  REQUIRE(lg.wait_for("action_reconciled"));
  for (const auto& e : lg.ledger())
    if (e.type == "action_reconciled") {
      CHECK(e.data["switched"] == false);
      CHECK(e.data["live"] == "bad2");
    }
  REQUIRE(lg.wait_for("escalated"));
  CHECK(lg.count("action_started") == 1);  // never run a second time
  CHECK(current_release(site.root) == "bad2");
}

TEST_CASE("crash safety: stopped dead after the switch, before action_finished: reconciled as done, then verified", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, service_config(site.url(), site.local_symlink()));
  lg.start({{"LASTGOOD_TEST_CRASH_AFTER", "action_executed"}});
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  CHECK(current_release(site.root) == "v1");  // the switch happened
  CHECK(lg.count("action_finished") == 0);

  lg.start();
  REQUIRE(lg.wait_for("action_reconciled"));
  for (const auto& e : lg.ledger())
    if (e.type == "action_reconciled") CHECK(e.data["switched"] == true);
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(lg.count("action_started") == 1);
  CHECK(current_release(site.root) == "v1");
  CHECK(lg.ledger_verifies());
  // The incident record, rebuilt from the ledger after the restart, tells the whole story.
  CHECK(lg.incident_events() == std::vector<std::string>{"breach", "decision", "action_started", "action_reconciled", "verification"});
}

TEST_CASE("--dry-run plans and records the rollback but changes nothing", "[rollback]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, service_config(site.url(), site.local_symlink()));
  lg.proc = std::make_unique<Process>(
      std::vector<std::string>{LASTGOOD_BINARY, "run", "-c", lg.config.string(), "--dry-run"}, dir.path / "lastgood-1.log");
  lg.runs = 1;
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("action_planned"));
  for (const auto& e : lg.ledger())
    if (e.type == "action_planned") {
      CHECK(e.data["to"] == "v1");
      CHECK(e.data["dry_run"] == true);
      CHECK_THAT(e.data["steps"].dump(), Catch::Contains("rename"));
    }
  CHECK(lg.count("action_started") == 0);
  CHECK(current_release(site.root) == "bad2");
}

TEST_CASE("in approve mode a breach makes a proposal, listed in the API, that expires without acting", "[rollback]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  auto svc = service_config(site.url(), site.local_symlink());
  svc["rollback"]["mode"] = "approve";
  svc["rollback"]["approval_timeout"] = "3s";
  Lastgood lg(dir, svc);
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("proposal_created"));
  auto api = json::parse(http_req(lg.port(), http::verb::get, "/api/v1/services").second);
  REQUIRE(api["services"][0]["pending_proposals"].size() == 1);
  CHECK(api["services"][0]["pending_proposals"][0]["decision"]["release_to"] == "v1");
  CHECK_THAT(http_req(lg.port(), http::verb::get, "/metrics").second, Catch::Contains("lastgood_proposals_pending{service=\"app\"} 1"));
  REQUIRE(lg.wait_for("proposal_expired"));
  auto props = json::parse(http_req(lg.port(), http::verb::get, "/api/v1/proposals").second);
  CHECK(props["proposals"][0]["state"] == "expired");
  CHECK(lg.count("action_started") == 0);
  CHECK(current_release(site.root) == "bad2");
}

TEST_CASE("cold start: a fresh install on a broken release proposes (never executes) the deployment's older release, unverified; approved, it runs and is verified",
          "[rollback]") {
  TempDir dir;
  Site site(dir, {"v0", "v1", "bad2"});
  // The folders' own times say which is older (the deployment's history, as local_symlink reads it).
  const auto now = fs::file_time_type::clock::now();
  fs::last_write_time(site.root / "releases" / "v0", now - std::chrono::hours(3));
  fs::last_write_time(site.root / "releases" / "v1", now - std::chrono::hours(2));
  fs::last_write_time(site.root / "releases" / "bad2", now - std::chrono::hours(1));
  switch_current(site.root, "bad2");  // lastgood starts on a release that is already broken
  json extra = alice_approves_p0();
  extra["authority"]["P0"]["auto"] = true;  // P0 may act alone: still only a proposal, since v1 was never verified here
  Lastgood lg(dir, service_config(site.url(), site.local_symlink({{"observe_interval", "300ms"}})), extra);
  lg.start({{"LG_TEST_TOKEN", "alice-cold-9a1"}});
  INFO(lg.log());
  REQUIRE(lg.wait_for("proposal_created"));
  std::string id;
  for (const auto& e : lg.ledger())
    if (e.type == "proposal_created") {
      id = e.data.value("id", "");
      CHECK(e.data["decision"]["release_from"] == "bad2");
      CHECK(e.data["decision"]["release_to"] == "v1");  // the newest older one, not v0
      CHECK(e.data["decision"]["unverified_target"] == true);
      CHECK_THAT(e.data["decision"]["reason"].get<std::string>(), Catch::Contains("unverified"));
    }
  CHECK(lg.count("action_started") == 0);
  CHECK(current_release(site.root) == "bad2");
  // A person may also name any release the deployment lists, seen live or not.
  const auto manual = http_call(lg.port(), "POST", "/api/v1/services/app/rollback", "alice-cold-9a1", R"({"reason":"try v0","to":"v0"})");
  CHECK_THAT(manual.body, !Catch::Contains("is unknown"));  // known through the deployment's list (refused here only as a second proposal)
  CHECK_THAT(manual.body, Catch::Contains("already pending"));
  const auto nowhere = http_call(lg.port(), "POST", "/api/v1/services/app/rollback", "alice-cold-9a1", R"({"reason":"x","to":"v9"})");
  CHECK(nowhere.status == 409);
  CHECK_THAT(nowhere.body, Catch::Contains("does not list it"));
  // Approved: carried out, and recovery verified like any other.
  CHECK(http_call(lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "alice-cold-9a1", "{}").status == 202);
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(site.root) == "v1");
}

TEST_CASE("a rollback that does not recover: escalated at verify.within with what did not recover, and the notice and incident say it",
          "[rollback]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, app_service(site.url(), site.local_symlink({{"observe_interval", "300ms"}}), App{.verify_within = "4s", .cooldown = "10m"}));
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  write_file(site.root / "releases" / "v1" / "index.html", "<p>v1 is broken now too</p>\n");  // the target broke since it was verified
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("verification"));
  json v;
  for (const auto& e : lg.ledger())
    if (e.type == "verification") v = e.data;
  CHECK(v["outcome"] == "not_recovered");
  CHECK(v["conditions"]["live"]["held"] == true);  // v1 is live: the switch happened
  CHECK(v["conditions"]["healthy_samples"]["held"] == false);
  CHECK_THAT(v.value("reason", ""), Catch::StartsWith("not recovered: 0 of 3 healthy results in a row"));
  CHECK_THAT(v.value("reason", ""), Catch::Contains("trigger down is"));
  REQUIRE(lg.wait_for("escalated"));
  for (const auto& e : lg.ledger())
    if (e.type == "escalated") CHECK_THAT(e.data.value("reason", ""), Catch::Contains("no recovery within 4s after rolling back to v1 (not recovered: "));
  CHECK(lg.count("action_started") == 1);  // escalated: not rolled back again
  const auto list = json::parse(http_call(lg.port(), "GET", "/api/v1/incidents").body);
  REQUIRE(list["incidents"].size() == 1);
  const auto incident = http_call(lg.port(), "GET", "/api/v1/incidents/" + list["incidents"][0]["id"].get<std::string>()).body;
  CHECK_THAT(incident, Catch::Contains("not recovered: 0 of 3 healthy results in a row"));
}
