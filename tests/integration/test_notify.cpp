// Notifications end to end: a webhook and a Slack-compatible webhook receive the breach, the
// execution and the verification of a rollback; a failed delivery is retried; the Slack URL
// (a secret) is in no log or ledger line.
#include <catch2/catch.hpp>

#include <optional>
#include <set>

#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/api/server.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;

namespace {

struct Receiver {
  std::mutex mu;
  std::vector<std::pair<std::string, json>> got;  // path, body
  int refused = 0;
  int refuse = 1;  // how many deliveries to refuse first (guarded by mu)
  unsigned short port = 0;
  Receiver() {
    http.emplace([this](const HttpReq& r) {
      std::lock_guard lk(mu);
      if (refused < refuse) {  // the first deliveries fail: they must be retried
        ++refused;
        return HttpRes::json_error(503, "try later");
      }
      got.emplace_back(r.target, json::parse(r.body, nullptr, false));
      return HttpRes{200, "application/json", "{}"};
    });
    port = http->port();
  }
  std::string url(const std::string& p) const { return "http://127.0.0.1:" + std::to_string(port) + p; }
  std::vector<json> at(const std::string& path) {
    std::lock_guard lk(mu);
    std::vector<json> out;
    for (auto& [p, b] : got)
      if (p == path) out.push_back(b);
    return out;
  }
  std::optional<HttpTestServer> http;  // last: stopped before the members its handler uses
};

}  // namespace

TEST_CASE("webhook and Slack notices for breach, execution and verification, retried when refused", "[notify]") {
  Receiver rx;
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  const std::string slack_secret = "/slack/T000/B000/s3cr3tPathXYZ";
  Lastgood lg(dir, app_service(site.url(), site.local_symlink()),
              {{"notify",
                {{{"kind", "webhook"}, {"url", rx.url("/hook")}, {"events", {"breach", "executed", "verified"}}},
                 {{"kind", "slack"}, {"url_env", "LASTGOOD_TEST_SLACK_URL"}, {"events", {"verified"}}}}}});
  lg.start({{"LASTGOOD_TEST_SLACK_URL", rx.url(slack_secret)}});
  const auto port = lg.port();
  const auto ledger = (lg.state / "ledger.jsonl").string();
  auto has = [&](const std::string& type, const std::string& text) { return lg.has(type, text); };
  REQUIRE(wait_until([&] { return has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return rx.at("/hook").size() >= 3 && rx.at(slack_secret).size() >= 1; }, std::chrono::seconds(30)));

  auto hooks = rx.at("/hook");
  std::map<std::string, json> by_event;
  for (auto& h : hooks) by_event[h.value("event", "")] = h;
  REQUIRE(by_event.count("breach"));
  CHECK(by_event["breach"]["service"] == "app");
  CHECK(by_event["breach"]["severity"] == "P0");
  CHECK(by_event["breach"]["trigger"] == "down");
  CHECK(by_event["breach"]["evidence"]["measure"] == "consecutive_failures");
  CHECK(by_event["breach"]["links"]["api"] == "http://127.0.0.1:" + std::to_string(port) + "/api/v1/services");
  REQUIRE(by_event.count("executed"));
  CHECK(by_event["executed"]["release_to"] == "v1");
  REQUIRE(by_event.count("verified"));
  // Executed and verified notices link the incident record, and the link works.
  const std::string incident = by_event["executed"].value("incident_id", "");
  REQUIRE_FALSE(incident.empty());
  CHECK(by_event["verified"]["incident_id"] == incident);
  const std::string base = "http://127.0.0.1:" + std::to_string(port);
  CHECK(by_event["executed"]["links"]["incident"] == base + "/api/v1/incidents/" + incident);
  CHECK(by_event["verified"]["links"]["incident_markdown"] == base + "/api/v1/incidents/" + incident + ".md");
  CHECK(http_call(port, "GET", "/api/v1/incidents/" + incident + ".md").status == 200);
  CHECK(fs::exists(dir.path / "state" / "incidents" / (incident + ".md")));
  CHECK(by_event["breach"]["links"]["incident"] == base + "/api/v1/incidents/" + incident);  // the incident opens at the breach
  auto slack = rx.at(slack_secret);
  // In sentences, with the probe's own reason, never a JSON blob.
  CHECK_THAT(slack[0]["text"].get<std::string>(), Catch::StartsWith("app recovered on v1: "));
  CHECK_THAT(slack[0]["text"].get<std::string>(), !Catch::Contains("{"));
  CHECK_THAT(by_event["breach"]["text"].get<std::string>(),
             Catch::StartsWith("app is failing (trigger down, P0): 2 failures in a row on probe home (limit 2): body_contains: body does not contain"));
  CHECK(by_event["executed"]["text"] == "app was rolled back from bad2 to v1 (trigger down, P0); checking that it recovers.");
  CHECK_THAT(slack[0]["text"].get<std::string>(), Catch::Contains("/api/v1/incidents/" + incident + ".md|incident record>"));

  // The receiver holds the notice before lastgood has its answer and records the delivery: poll.
  auto retried = [&] {
    for (const auto& e : lastgood::watchdog::read_ledger(ledger))
      if (e.type == "notify_delivered" && e.data.value("attempts", 0) == 2) return true;
    return false;
  };
  CHECK(wait_until(retried, std::chrono::seconds(10)));
  CHECK(lg.proc->stop() == 0);
  CHECK(lg.log().find("s3cr3tPathXYZ") == std::string::npos);
  CHECK(read_file(ledger).find("s3cr3tPathXYZ") == std::string::npos);
}

TEST_CASE("a notice still undelivered when lastgood stops is delivered after the restart", "[notify]") {
  Receiver rx;
  {
    std::lock_guard lk(rx.mu);
    rx.refuse = 1'000'000;  // the receiver is down while the first lastgood runs
  }
  TempDir dir;
  Site site(dir, {"v1"});
  Lastgood lg(dir,
              {{"name", "app"},
               {"probes", {{{"name", "missing"}, {"kind", "http"}, {"url", site.nginx->url("/not-there")}, {"interval", "200ms"}, {"timeout", "150ms"}}}},
               {"triggers", {{{"name", "down"}, {"severity", "P1"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 2}}}}}}},
              {{"notify", {{{"kind", "webhook"}, {"url", rx.url("/hook")}, {"events", {"breach"}}}}}});
  const auto ledger = lg.state / "ledger.jsonl";
  lg.start();
  REQUIRE(wait_until([&] { return lg.has("notify_queued", "breach"); }, std::chrono::seconds(20)));
  REQUIRE(wait_until([&] { std::lock_guard lk(rx.mu); return rx.refused >= 1; }, std::chrono::seconds(10)));  // one attempt failed
  // Stopped while the notice waits to be retried: the retry is cancelled, and the notice stays
  // queued (neither delivered nor failed) for the next run.
  CHECK(lg.proc->stop() == 0);
  CHECK_FALSE(lg.has("notify_delivered"));
  CHECK_FALSE(lg.has("notify_failed"));
  std::string queued;
  for (const auto& e : lastgood::watchdog::read_ledger(ledger.string()))
    if (e.type == "notify_queued") queued = e.data["id"];
  {
    std::lock_guard lk(rx.mu);
    rx.refuse = 0;  // the receiver is back
  }
  lg.start();
  REQUIRE(wait_until([&] { return lg.has("notify_delivered", queued); }, std::chrono::seconds(20)));
  CHECK_THAT(read_file(lg.log_file(2)), Catch::Contains("was not delivered before the restart"));
  auto got = rx.at("/hook");
  REQUIRE_FALSE(got.empty());
  CHECK(got[0]["event"] == "breach");
  CHECK(got[0]["trigger"] == "down");
  CHECK(lg.proc->stop() == 0);
}

TEST_CASE("customers are told of the restoration and the recovery in plain sentences, with nothing internal", "[notify]") {
  Receiver rx;
  rx.refuse = 0;
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  auto svc = app_service(site.url(), site.local_symlink());
  svc["public_name"] = "Example Shop";
  Lastgood lg(dir, svc,
              {{"notify",
                {{{"kind", "webhook"}, {"url", rx.url("/team")}},
                 {{"kind", "webhook"}, {"url", rx.url("/customers")}, {"audience", "customers"}},
                 {{"kind", "slack"}, {"url", rx.url("/customers-slack")}, {"audience", "customers"}, {"events", {"verified"}}}}}});
  lg.start();
  REQUIRE(wait_until([&] { return lg.has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return rx.at("/customers").size() >= 2 && rx.at("/customers-slack").size() >= 1; }, std::chrono::seconds(30)));
  // The team heard everything, customers only the restoration and the recovery.
  CHECK(rx.at("/team").size() >= 3);
  const auto notices = rx.at("/customers");
  REQUIRE(notices.size() == 2);
  CHECK(notices[0]["status"] == "restoring");
  CHECK_THAT(notices[0]["message"].get<std::string>(),
             Catch::Matches("Example Shop had a problem\\. At \\d\\d:\\d\\d UTC we restored its previous version and are checking that it works\\."));
  CHECK(notices[1]["status"] == "restored");
  CHECK_THAT(notices[1]["message"].get<std::string>(), Catch::Matches("Example Shop is working normally again \\(confirmed at \\d\\d:\\d\\d UTC\\)\\."));
  const auto slack = rx.at("/customers-slack");
  REQUIRE(slack.size() == 1);
  CHECK(slack[0] == json{{"text", notices[1]["message"]}});
  for (const auto& n : notices) {
    std::set<std::string> keys;
    for (auto& [k, v] : n.items()) keys.insert(k);
    CHECK(keys == std::set<std::string>{"audience", "service", "status", "message", "at"});
  }
  // Nothing internal: not the service's own name, releases, trigger, severity, evidence, links.
  for (const auto& body : {json(notices).dump(), json(slack).dump()})
    for (const char* internal : {"app", "v1", "bad2", "down", "P0", "127.0.0.1", "http", "evidence", "incident", "proposal", "lastgood", "consecutive"})
      CHECK_THAT(body, !Catch::Contains(internal));
}

TEST_CASE("customer notices: only executed and verified, never through PagerDuty, only for services with a public name", "[notify]") {
  TempDir dir;
  auto write_and_validate = [&](const json& notify, std::string& out) {
    const auto path = dir.path / "c.json";
    write_file(path, json{{"state_dir", (dir.path / "s").string()},
                          {"notify", notify},
                          {"services", {{{"name", "app"}, {"public_name", "Shop"},
                                         {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}}}}}
                         .dump());
    return run_command({LASTGOOD_BINARY, "validate", "-c", path.string()}, &out);
  };
  std::string out;
  CHECK(write_and_validate({{{"kind", "webhook"}, {"url", "http://127.0.0.1:1/"}, {"audience", "customers"}, {"events", {"verified", "breach"}}}}, out) == 2);
  CHECK_THAT(out, Catch::Contains("/notify/0/events/1: customers are told only when"));
  CHECK(write_and_validate({{{"kind", "pagerduty"}, {"routing_key_env", "X"}, {"audience", "customers"}}}, out) == 2);
  CHECK_THAT(out, Catch::Contains("/notify/0/audience: customers are told through a webhook or Slack"));
  CHECK(write_and_validate({{{"kind", "webhook"}, {"url", "http://127.0.0.1:1/"}, {"audience", "customer"}}}, out) == 2);
  CHECK_THAT(out, Catch::Contains("did you mean \"customers\""));
  CHECK(write_and_validate({{{"kind", "webhook"}, {"url", "http://127.0.0.1:1/"}, {"audience", "customers"}}}, out) == 0);
}

TEST_CASE("a proposal's notices say why in the probe's words, link the proposal's own row, and name who approved", "[notify]") {
  Receiver rx;
  rx.refuse = 0;
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  json extra = alice_approves_p0();
  extra["notify"] = {{{"kind", "webhook"}, {"url", rx.url("/hook")}, {"events", {"proposed", "approved"}}},
                     {{"kind", "slack"}, {"url", rx.url("/slack")}, {"events", {"proposed"}}}};
  Lastgood lg(dir, app_service(site.url(), site.local_symlink()), extra);
  lg.start({{"LG_TEST_TOKEN", "alice-notice-77b"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("proposal_created"));
  const std::string id = lg.last("proposal_created", "id");
  CHECK(http_call(lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "alice-notice-77b", "{}").status == 202);
  REQUIRE(wait_until([&] { return rx.at("/hook").size() >= 2 && rx.at("/slack").size() >= 1; }, std::chrono::seconds(20)));
  const auto hooks = rx.at("/hook");
  const std::string base = "http://127.0.0.1:" + std::to_string(lg.port());
  CHECK(hooks[0]["event"] == "proposed");
  CHECK_THAT(hooks[0]["text"].get<std::string>(),
             Catch::StartsWith("A rollback of app from bad2 to v1 awaits approval (trigger down, P0) (proposal " + id + ")") &&
                 Catch::Contains("Evidence: 2 failures in a row on probe home (limit 2): body_contains: body does not contain"));
  CHECK(hooks[0]["links"]["proposal"] == base + "/#proposal-" + id);
  CHECK(hooks[1]["event"] == "approved");
  CHECK(hooks[1]["text"] == "The rollback of app was approved by alice (proposal " + id + "); it runs now.");
  CHECK(hooks[1]["approvers"] == json{"alice"});
  const std::string slack = rx.at("/slack")[0]["text"];
  CHECK_THAT(slack, Catch::Contains("<" + base + "/#proposal-" + id + "|approve or reject>"));
  CHECK_THAT(slack, Catch::Contains("body does not contain \"&lt;title&gt;\"") && !Catch::Contains("<title>"));  // Slack's markup escaped
  CHECK_THAT(slack, !Catch::Contains("evidence: `"));
  // The link's row exists on the page under that id.
  CHECK_THAT(http_call(lg.port(), "GET", "/page.js").body, Catch::Contains("id='proposal-"));
  CHECK(lg.proc->stop() == 0);
}
