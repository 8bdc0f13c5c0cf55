// Alertmanager as a trigger source: a real prometheus-alertmanager posts its version-4 webhook
// to lastgood; firing executes per policy, resolved brings the trigger back to ok; redeliveries
// are deduplicated; a wrong token is refused.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"

using namespace testing;
using nlohmann::json;

namespace {

std::string curl_post(const std::string& url, const std::string& body_file, const std::string& token = "") {
  std::string out;
  run_command({"sh", "-c",
               "curl -s -w '\\n%{http_code}' -X POST -H 'content-type: application/json' " +
                   (token.empty() ? std::string() : "-H 'Authorization: Bearer " + token + "' ") + "--data-binary @" + body_file + " " + url},
              &out);
  return out;
}

}  // namespace

TEST_CASE("a real Alertmanager's firing alert rolls back per policy, resolved returns the trigger to ok", "[alertmanager]") {
  TempDir dir;
  Site site(dir, {"v1", "v2"});
  const std::string token = "am-tok-5e2b91";
  Lastgood lg(dir,
              {{"name", "nginx"},
               {"probes", {{{"name", "port"}, {"kind", "tcp"}, {"address", "127.0.0.1:" + std::to_string(site.nginx->port)}, {"interval", "200ms"},
                            {"timeout", "150ms"}}}},
               {"deployment", site.local_symlink({{"observe_interval", "300ms"}})},
               {"rollback", {{"mode", "auto"}, {"good_after", "1s"}, {"verify", {{"within", "40s"}, {"healthy_samples", 3}}}}}},
              {{"alertmanager", {{"token_env", "LASTGOOD_TEST_AM_TOKEN"}, {"service_label", "target"}}}});
  lg.args = {};
  lg.start({{"LASTGOOD_TEST_AM_TOKEN", token}});
  const auto port = lg.port();
  const auto ledger = (lg.state / "ledger.jsonl").string();
  auto has = [&](const std::string& type, const std::string& text) { return lg.has(type, text); };
  REQUIRE(wait_until([&] { return has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
  switch_current(site.root, "v2");
  REQUIRE(wait_until([&] { return has("release_observed", "\"v2\""); }, std::chrono::seconds(10)));

  // A wrong token is refused.
  const std::string hook = "http://127.0.0.1:" + std::to_string(port) + "/api/v1/alerts/alertmanager";
  const std::string fixture = std::string(LASTGOOD_SOURCE_DIR) + "/tests/fixtures/alertmanager-webhook-sample.json";
  REQUIRE(fs::exists(fixture));
  CHECK_THAT(curl_post(hook, fixture, "wrong"), Catch::EndsWith("401"));

  // The real Alertmanager, delivering to lastgood with the bearer token.
  const auto am_port = free_port();
  const fs::path am = dir.path / "am";
  fs::create_directories(am / "data");
  write_file(am / "am.yml", "route:\n  receiver: lastgood\n  group_by: ['alertname', 'target']\n  group_wait: 1s\n  group_interval: 2s\n"
                            "  repeat_interval: 1h\nreceivers:\n  - name: lastgood\n    webhook_configs:\n      - url: " +
                                hook + "\n        send_resolved: true\n        http_config:\n          authorization:\n            type: Bearer\n"
                                       "            credentials: " + token + "\n");
  Process amp({"prometheus-alertmanager", "--config.file=" + (am / "am.yml").string(), "--storage.path=" + (am / "data").string(),
               "--web.listen-address=127.0.0.1:" + std::to_string(am_port), "--cluster.listen-address=",
               "--web.external-url=http://127.0.0.1:" + std::to_string(am_port)},
              am / "log");
  const std::string am_url = "http://127.0.0.1:" + std::to_string(am_port);
  REQUIRE(wait_until([&] { std::string o; return run_command({"curl", "-sf", am_url + "/-/ready"}, &o) == 0; }, std::chrono::seconds(20)));
  write_file(am / "firing.json", R"([{"labels":{"alertname":"SiteDown","target":"nginx","severity":"critical"},"annotations":{"summary":"5xx above 5%"}}])");
  CHECK_THAT(curl_post(am_url + "/api/v2/alerts", (am / "firing.json").string()), Catch::EndsWith("200"));
  REQUIRE(wait_until([&] { return has("action_finished", "\"ok\":true"); }, std::chrono::seconds(30)));
  CHECK(current_release(site.root) == "v1");
  CHECK(has("decision", "alertmanager:SiteDown"));
  CHECK(has("alert_received", "\"firing\""));
  // Rolled back, healthy, but the alert that fired still fires: recovery is not verified yet.
  REQUIRE(wait_until([&] { return http_call(port, "GET", "/api/v1/services").body.find("trigger alertmanager:SiteDown is firing") != std::string::npos; },
                     std::chrono::seconds(10)));
  CHECK_FALSE(has("verification", "verified"));

  // Resolved: the same alert with endsAt now.
  const auto now = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now());
  char ts[32];
  std::strftime(ts, sizeof ts, "%Y-%m-%dT%H:%M:%SZ", std::gmtime(&now));
  write_file(am / "resolved.json", std::string(R"([{"labels":{"alertname":"SiteDown","target":"nginx","severity":"critical"},"endsAt":")") + ts + R"("}])");
  CHECK_THAT(curl_post(am_url + "/api/v2/alerts", (am / "resolved.json").string()), Catch::EndsWith("200"));
  REQUIRE(wait_until(
      [&] {
        for (const auto& e : lastgood::watchdog::read_ledger(ledger))
          if (e.type == "transition" && e.data["trigger"] == "alertmanager:SiteDown" && e.data["to"] == "ok") return true;
        return false;
      },
      std::chrono::seconds(30)));
  // Resolved: now every condition holds.
  REQUIRE(wait_until([&] { return has("verification", "verified"); }, std::chrono::seconds(20)));
  CHECK(has("verification", "alertmanager:SiteDown is back to ok"));

  // The captured sample, delivered twice: the second is a duplicate (groupKey + fingerprint).
  auto first = curl_post(hook, fixture, token);
  CHECK_THAT(first, Catch::Contains("\"accepted\":1"));
  auto second = curl_post(hook, fixture, token);
  CHECK_THAT(second, Catch::Contains("\"duplicate\":1"));
  CHECK(lg.proc->stop() == 0);
  CHECK(lg.log().find(token) == std::string::npos);
  CHECK(read_file(ledger).find(token) == std::string::npos);
}

TEST_CASE("an alert that fires again after resolving is handled again; redeliveries are not; a malformed alert is a 400 and not remembered",
          "[alertmanager]") {
  TempDir dir;
  json svc{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}, {"interval", "1s"}, {"timeout", "500ms"}}}}};
  Lastgood lg(dir, svc, {{"alertmanager", {{"token_env", "LG_AM_TOKEN"}}}});
  lg.start({{"LG_AM_TOKEN", "am-token-77"}});
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  auto alert = [](const std::string& status, const std::string& starts, json summary = "checkout is failing") {
    return json{{"version", "4"},
                {"groupKey", "{}:{alertname=\"CheckoutDown\"}"},
                {"status", status},
                {"alerts",
                 {{{"status", status},
                   {"labels", {{"alertname", "CheckoutDown"}, {"service", "app"}, {"severity", "critical"}}},
                   {"annotations", {{"summary", summary}}},
                   {"startsAt", starts},
                   {"fingerprint", "f00d"}}}}}
        .dump();
  };
  auto post = [&](const std::string& body) { return http_call(lg.port(), "POST", "/api/v1/alerts/alertmanager", "am-token-77", body); };
  auto received = [&](const std::string& status) {
    int n = 0;
    for (const auto& e : lg.ledger()) n += e.type == "alert_received" && e.data["status"] == status;
    return n;
  };
  // A summary that is not a string: refused whole, and not remembered as seen.
  auto bad = post(alert("firing", "2026-12-05T01:00:00Z", 42));
  CHECK(bad.status == 400);
  CHECK_THAT(bad.body, Catch::Contains("alerts/0/annotations/summary must be a string"));
  CHECK(post(R"({"alerts":[{"labels":{"service":["app"]}}]})").status == 400);
  CHECK(post(alert("firing", "2026-12-05T01:00:00Z")).status == 200);
  CHECK(received("firing") == 1);  // the valid one is accepted: the bad one left no key behind
  CHECK_THAT(post(alert("firing", "2026-12-05T01:00:00Z")).body, Catch::Contains("duplicate"));  // a redelivery
  CHECK(post(alert("resolved", "2026-12-05T01:00:00Z")).status == 200);
  CHECK(received("resolved") == 1);
  // It fires again later: a new episode, handled.
  CHECK_THAT(post(alert("firing", "2026-12-05T02:00:00Z")).body, Catch::Contains("accepted"));
  CHECK(received("firing") == 2);
  int transitions_to_firing = 0;
  for (const auto& e : lg.ledger())
    transitions_to_firing += e.type == "transition" && e.data["trigger"] == "alertmanager:CheckoutDown" && e.data["to"] == "firing";
  CHECK(transitions_to_firing == 2);
}
