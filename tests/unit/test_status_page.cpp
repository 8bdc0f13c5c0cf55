// The public status page's view: each service's state from the facts (lastgood's own trouble is
// "unknown", never an outage), incidents in plain sentences from real incident records, the
// history window, maintenance, and nothing internal in the JSON or the HTML.
#include <catch2/catch.hpp>

#include "config/config.hpp"
#include "watchdog/api/status_page.hpp"
#include "watchdog/kinds.hpp"
#include "watchdog/state/incidents.hpp"

namespace sp = lastgood::watchdog::status_page;
using lastgood::watchdog::Incident;
using lastgood::watchdog::Incidents;
using nlohmann::json;

namespace {

constexpr long long kMin = 60'000, kHour = 60 * kMin, kDay = 24 * kHour;
constexpr long long T0 = 1'796'565'900'000;  // 2026-12-06T14:05:00Z (a Sunday)

sp::ServiceFacts healthy(const std::string& name) {
  sp::ServiceFacts s;
  s.public_name = name;
  s.judged = true;
  return s;
}

std::optional<std::string> see(Incidents& inc, const std::string& type, long long at, const json& data) {
  lastgood::watchdog::LedgerEntry e;
  e.type = type;
  e.service = "web-prod";
  e.ts_ms = at;
  e.data = data;
  return inc.observe(e);
}

const json kEvidence{{"measure", "consecutive_failures"}, {"value", 3}, {"threshold", 3}, {"probe", "home"}, {"reason", "status: got 502"}};

// A P0 breach of "web-prod" at T0 rolled back from v2-bad to v1 at T0+4 min and verified at T0+16 min.
Incidents rolled_back_and_verified() {
  Incidents inc;
  see(inc, "transition", T0, {{"trigger", "home-down"}, {"severity", "P0"}, {"from", "pending"}, {"to", "firing"}, {"evidence", kEvidence}});
  see(inc, "decision", T0 + 10, {{"trigger", "home-down"}, {"severity", "P0"}, {"kind", "execute"}, {"reason", "auto"}, {"shadow", false}, {"evidence", kEvidence}});
  see(inc, "action_started", T0 + 4 * kMin - 500,
      {{"action_id", "a17"}, {"kind", "local_symlink"}, {"trigger", "home-down"}, {"from", "v2-bad"}, {"to", "v1"}, {"via", "auto"}});
  see(inc, "action_finished", T0 + 4 * kMin, {{"action_id", "a17"}, {"ok", true}, {"output", "switched"}, {"error", ""}});
  return inc;
}

}  // namespace

TEST_CASE("status page: a service's state from what is known of it", "[status_page]") {
  auto s = healthy("Shop");
  CHECK(sp::state_of(s) == "operational");
  s.firing_severity = "P1";
  CHECK(sp::state_of(s) == "degraded");
  s.firing_severity = "P2";
  CHECK(sp::state_of(s) == "degraded");
  s.firing_severity = "P0";
  CHECK(sp::state_of(s) == "outage");
  // lastgood's own reach broken: nothing is said of the service, even with a trigger firing.
  s.watcher_healthy = false;
  CHECK(sp::state_of(s) == "unknown");
  // A maintenance window outranks all.
  s.maintenance_until_ms = T0 + kHour;
  CHECK(sp::state_of(s) == "maintenance");
  // No probe has judged yet (just started, or every run was lastgood's own error).
  auto fresh = healthy("Shop");
  fresh.judged = false;
  CHECK(sp::state_of(fresh) == "unknown");
}

TEST_CASE("status page: the overall banner names what is wrong, worst first", "[status_page]") {
  sp::Facts f;
  f.title = "Example status";
  f.now_ms = T0;
  f.services = {healthy("Shop"), healthy("API")};
  auto j = sp::to_json(f);
  CHECK(j["status"] == "operational");
  CHECK(j["summary"] == "All services are operational");
  CHECK(j["incidents"].empty());
  f.services[1].firing_severity = "P2";
  j = sp::to_json(f);
  CHECK(j["status"] == "degraded");
  CHECK(j["summary"] == "API is degraded");
  CHECK(j["services"][1]["message"] == "We are working on it.");
  f.services[0].firing_severity = "P0";
  j = sp::to_json(f);
  CHECK(j["status"] == "outage");
  CHECK(j["summary"] == "Shop is down");
  f.services[1].firing_severity = "P0";
  CHECK(sp::to_json(f)["summary"] == "2 services are down");
  f.services = {healthy("Shop")};
  f.services[0].maintenance_until_ms = T0 + 2 * kHour;
  j = sp::to_json(f);
  CHECK(j["status"] == "maintenance");
  CHECK(j["services"][0]["message"] == "Scheduled maintenance until 16:05 UTC.");
  f.services[0] = healthy("Shop");
  f.services[0].watcher_healthy = false;
  j = sp::to_json(f);
  CHECK(j["status"] == "unknown");
  CHECK(j["services"][0]["message"] == "We cannot check it right now.");
}

TEST_CASE("status page: a rolled-back incident told from its record, while it runs and once verified", "[status_page]") {
  Incidents inc = rolled_back_and_verified();
  const Incident& rec = inc.all().back();
  // Switched, being verified: it is the open incident.
  auto during = sp::from_incident(rec, "Example Shop", true, false, false);
  REQUIRE(during);
  CHECK(during->ongoing);
  CHECK_FALSE(during->rolling_back);
  REQUIRE(during->restored_ms);
  sp::Facts f;
  f.title = "Status";
  f.now_ms = T0 + 5 * kMin;
  f.services = {healthy("Example Shop")};
  f.services[0].open_incident_status = rec.status;
  f.services[0].restored_ms = during->restored_ms;
  f.incidents = {*during};
  auto j = sp::to_json(f);
  CHECK(j["services"][0]["message"] == "At 14:09 UTC we restored its previous version and are checking that it works.");
  REQUIRE(j["incidents"].size() == 1);
  CHECK(j["incidents"][0]["title"] == "Major outage of Example Shop");
  CHECK(j["incidents"][0]["ongoing"] == true);
  CHECK(j["incidents"][0]["ended_at"].is_null());
  CHECK(j["incidents"][0]["text"] ==
        "Example Shop has had a major outage since 14:05 UTC. At 14:09 UTC we restored its previous version and are checking that it works.");

  see(inc, "verification", T0 + 16 * kMin, {{"action_id", "a17"}, {"release", "v1"}, {"outcome", "verified"}, {"healthy_samples", 3}});
  auto after = sp::from_incident(inc.all().back(), "Example Shop", false, false, false);
  REQUIRE(after);
  CHECK_FALSE(after->ongoing);
  f.now_ms = T0 + 2 * kDay;  // two days later: the day is named
  f.services = {healthy("Example Shop")};
  f.incidents = {*after};
  j = sp::to_json(f);
  CHECK(j["status"] == "operational");
  CHECK(j["incidents"][0]["ongoing"] == false);
  CHECK(j["incidents"][0]["ended_at"] == "2026-12-06T14:21:00.000Z");
  CHECK(j["incidents"][0]["text"] ==
        "Example Shop had a major outage on Dec 6 from 14:05 to 14:21 UTC (16 minutes). We restored its previous version at 14:09 UTC and confirmed "
        "at 14:21 UTC that it works normally.");

  // Nothing internal anywhere: not the service's or trigger's name, releases, severity, evidence,
  // the action's id or kind.
  const std::string html = sp::to_html(j, f.now_ms);
  for (const std::string& text : {j.dump(), html})
    for (const char* internal : {"web-prod", "home-down", "v2-bad", "\"v1\"", "P0", "502", "a17", "local_symlink", "consecutive", "evidence", "lastgood", "http:", "https:"})
      CHECK_THAT(text, !Catch::Contains(internal));
}

TEST_CASE("status page: recovered, cleared and unresolved incidents each read true", "[status_page]") {
  Incidents inc;
  // A P2 breach that ended on its own 40 minutes later, crossing midnight.
  const long long late = T0 + 9 * kHour + 40 * kMin;  // 23:45
  see(inc, "transition", late, {{"trigger", "slow"}, {"severity", "P2"}, {"from", "pending"}, {"to", "firing"}, {"evidence", kEvidence}});
  see(inc, "transition", late + 40 * kMin, {{"trigger", "slow"}, {"severity", "P2"}, {"from", "firing"}, {"to", "ok"}});
  auto rec = sp::from_incident(inc.all().back(), "Shop", false, false, false);
  REQUIRE(rec);
  CHECK(rec->how_ended == "recovered");
  sp::Facts f;
  f.now_ms = T0 + 3 * kDay;
  f.incidents = {*rec};
  CHECK(sp::to_json(f)["incidents"][0]["text"] ==
        "Shop had degraded performance from Dec 6, 23:45 to Dec 7, 00:25 UTC (40 minutes). It has worked normally since.");

  // A P1 rollback that did not help: escalated; while the service is still down it is ongoing,
  // once people clear it, it is resolved by them.
  Incidents esc;
  see(esc, "transition", T0, {{"trigger", "errors"}, {"severity", "P1"}, {"from", "pending"}, {"to", "firing"}, {"evidence", kEvidence}});
  see(esc, "action_started", T0 + kMin, {{"action_id", "a2"}, {"kind", "command"}, {"trigger", "errors"}, {"from", "v3"}, {"to", "v2"}, {"via", "auto"}});
  see(esc, "action_finished", T0 + 2 * kMin, {{"action_id", "a2"}, {"ok", true}, {"output", ""}, {"error", ""}});
  see(esc, "escalated", T0 + 12 * kMin, {{"action_id", "a2"}, {"reason", "not recovered in time"}});
  auto ongoing = sp::from_incident(esc.all().back(), "API", false, false, /*service_affected_now=*/true);
  REQUIRE(ongoing);
  CHECK(ongoing->ongoing);
  f.now_ms = T0 + 20 * kMin;
  f.incidents = {*ongoing};
  CHECK(sp::to_json(f)["incidents"][0]["text"] ==
        "API has had a partial outage since 14:05 UTC. At 14:07 UTC we restored its previous version and are checking that it works.");
  auto unresolved = sp::from_incident(esc.all().back(), "API", false, false, /*service_affected_now=*/false);
  REQUIRE(unresolved);
  CHECK_FALSE(unresolved->ongoing);
  f.incidents = {*unresolved};
  CHECK(sp::to_json(f)["incidents"][0]["text"] == "API had a partial outage starting 14:05 UTC. It has since been resolved.");
  see(esc, "cleared", T0 + 95 * kMin, {{"by", "alice"}});
  auto cleared = sp::from_incident(esc.all().back(), "API", false, false, true);
  REQUIRE(cleared);
  CHECK_FALSE(cleared->ongoing);
  f.incidents = {*cleared};
  const auto text = sp::to_json(f)["incidents"][0]["text"].get<std::string>();
  CHECK(text == "API had a partial outage on Dec 6 from 14:05 to 15:40 UTC (1 hour 35 minutes). Our engineers resolved it.");
  CHECK_THAT(text, !Catch::Contains("alice"));
}

TEST_CASE("status page: shadow triggers and requests that changed nothing are not shown; old incidents leave", "[status_page]") {
  Incidents inc = rolled_back_and_verified();
  CHECK_FALSE(sp::from_incident(inc.all().back(), "Shop", true, /*shadow=*/true, false));
  CHECK_FALSE(sp::from_incident(inc.all().back(), "", true, false, false));  // no public name: not for customers
  Incidents req;
  see(req, "rollback_requested", T0, {{"by", "bob"}, {"origin", "api"}, {"reason", "looks off"}, {"severity", "P1"}, {"from", "v2"}});
  REQUIRE(req.all().size() == 1);
  CHECK_FALSE(sp::from_incident(req.all().back(), "Shop", true, false, false));

  auto x = sp::from_incident(inc.all().back(), "Shop", false, false, false);
  REQUIRE(x);
  sp::Facts f;
  f.incidents = {*x};
  f.now_ms = T0 + 29 * kDay;
  CHECK(sp::to_json(f)["incidents"].size() == 1);
  f.now_ms = T0 + 31 * kDay;
  auto j = sp::to_json(f);
  CHECK(j["incidents"].empty());
  CHECK_THAT(sp::to_html(j, f.now_ms), Catch::Contains("No incidents in the last 30 days."));
  f.history_ms = 90 * kDay;
  j = sp::to_json(f);
  CHECK(j["incidents"].size() == 1);
  CHECK_THAT(sp::to_html(j, f.now_ms), Catch::Contains("Incidents in the last 90 days"));
}

TEST_CASE("status page: maintenance windows, upcoming and in progress; past ones leave", "[status_page]") {
  sp::Facts f;
  f.now_ms = T0;
  f.maintenance = {{{"Shop", "API"}, T0 + kDay - 5 * kMin, T0 + kDay + 115 * kMin},  // tomorrow 14:00-16:00
                   {{"Shop"}, T0 - kHour, T0 + kHour},
                   {{"Shop"}, T0 - 2 * kHour, T0 - kHour}};
  auto j = sp::to_json(f);
  REQUIRE(j["maintenance"].size() == 2);
  CHECK(j["maintenance"][0]["text"] == "Scheduled maintenance of Shop and API on Dec 7 from 14:00 to 16:00 UTC.");
  CHECK(j["maintenance"][0]["active"] == false);
  CHECK(j["maintenance"][1]["text"] == "Maintenance of Shop is in progress until 15:05 UTC.");
}

TEST_CASE("status page: the HTML escapes what it shows and needs no script or other site", "[status_page]") {
  sp::Facts f;
  f.title = "Tom & Jerry's <status>";
  f.now_ms = T0;
  f.services = {healthy("A \"quoted\" & <b>bold</b> name")};
  const auto html = sp::to_html(sp::to_json(f), f.now_ms);
  CHECK_THAT(html, Catch::Contains("<title>Tom &amp; Jerry&#39;s &lt;status&gt;</title>"));
  CHECK_THAT(html, Catch::Contains("A &quot;quoted&quot; &amp; &lt;b&gt;bold&lt;/b&gt; name"));
  CHECK_THAT(html, !Catch::Contains("<b>bold"));
  CHECK_THAT(html, !Catch::Contains("<script"));
  CHECK_THAT(html, !Catch::Contains("<style"));  // the CSP allows only our own status.css
  CHECK_THAT(html, !Catch::Contains("//"));     // no other site, no absolute link
  CHECK_THAT(html, Catch::Contains("Updated Dec 6, 14:05 UTC."));
  CHECK_THAT(html, Catch::Contains("class=\"state s-operational\">Operational<"));
}

TEST_CASE("status page: spans and times read as people write them", "[status_page]") {
  CHECK(sp::span_of(20'000) == "less than a minute");
  CHECK(sp::span_of(kMin) == "1 minute");
  CHECK(sp::span_of(16 * kMin + 59'000) == "16 minutes");
  CHECK(sp::span_of(kHour) == "1 hour");
  CHECK(sp::span_of(95 * kMin) == "1 hour 35 minutes");
  CHECK(sp::span_of(2 * kDay + 3 * kHour + 5 * kMin) == "2 days 3 hours");
  CHECK(sp::day_of(T0) == "Dec 6");
  CHECK(sp::time_of(T0 + 9 * kHour + 56 * kMin) == "00:01");
  // An incident over within the minute is not "from 14:05 to 14:05".
  sp::IncidentFacts quick{.public_name = "Shop", .severity = "P1", .started_ms = T0 + 1000, .ended_ms = T0 + 30'000, .how_ended = "recovered"};
  sp::Facts f;
  f.now_ms = T0 + kHour;
  f.incidents = {quick};
  CHECK(sp::to_json(f)["incidents"][0]["text"] == "Shop had a partial outage on Dec 6 at 14:05 UTC (less than a minute). It has worked normally since.");
}

TEST_CASE("config: status_page lists only services with a public name, each once", "[status_page][config]") {
  const auto& kinds = lastgood::kinds();
  auto load = [&](const json& page) {
    json cfg{{"state_dir", "/tmp/lg-status-test"},
             {"services",
              {{{"name", "shop"}, {"public_name", "Example Shop"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}},
               {{"name", "batch"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}}}}};
    cfg["status_page"] = page;
    return lastgood::config::load_text(cfg.dump(), "c.json", kinds, {.resolve_secrets = false});
  };
  auto ok = load({{"title", "Example status"}, {"services", {"shop"}}, {"history", "14d"}});
  REQUIRE(ok.problems.empty());
  REQUIRE(ok.config->status_page);
  CHECK(ok.config->status_page->title == "Example status");
  CHECK(ok.config->status_page->history.count() == 14 * kDay);
  auto defaults = load({{"services", {"shop"}}});
  REQUIRE(defaults.problems.empty());
  CHECK(defaults.config->status_page->title == "Status");
  CHECK(defaults.config->status_page->history.count() == 30 * kDay);
  auto problems = [&](const json& page) {
    std::string all;
    for (const auto& p : load(page).problems) all += p.to_string() + "\n";
    return all;
  };
  CHECK_THAT(problems({{"services", {"batch"}}}), Catch::Contains("/status_page/services/0: service \"batch\" has no public_name"));
  CHECK_THAT(problems({{"services", {"nope"}}}), Catch::Contains("/status_page/services/0: no service named \"nope\""));
  CHECK_THAT(problems({{"services", {"shop", "shop"}}}), Catch::Contains("/status_page/services/1: service \"shop\" is listed twice"));
  CHECK_THAT(problems({{"services", json::array()}}), Catch::Contains("/status_page/services"));
  CHECK_THAT(problems({{"services", {"shop"}}, {"history", "120d"}}), Catch::Contains("/status_page/history: expected at most 90 days"));
  CHECK_THAT(problems({{"services", {"shop"}}, {"titel", "x"}}), Catch::Contains("did you mean \"title\""));
  CHECK_THAT(problems({{"services", {"shop"}}, {"title", "a\nb"}}), Catch::Contains("/status_page/title"));
}
