// The public status page end to end: a real rollback of a service with a public name, verified,
// then /api/v1/status and /status say so in plain sentences with nothing internal, under any Host
// name (the page is served through a reverse proxy's public name), and Chromium renders the page.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "fixtures.hpp"

using namespace testing;
using nlohmann::json;

namespace {

std::string in_a_day(int hours_from_now) {
  const auto t = std::chrono::system_clock::to_time_t(std::chrono::system_clock::now() + std::chrono::hours(hours_from_now));
  char buf[32];
  struct tm tm {};
  gmtime_r(&t, &tm);
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:00:00Z", &tm);
  return buf;
}

}  // namespace

TEST_CASE("status page: a verified rollback told to customers, nothing internal, rendered in Chromium", "[status_page]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  auto svc = app_service(site.url(), site.local_symlink());
  svc["public_name"] = "Example Shop";
  json batch{{"name", "nightly-batch"},
             {"probes", {{{"name", "port"}, {"kind", "tcp"}, {"address", "127.0.0.1:" + std::to_string(site.nginx->port)}, {"interval", "1s"}, {"timeout", "500ms"}}}}};
  Lastgood lg(dir, svc,
              {{"services", {svc, batch}},
               {"status_page", {{"title", "Example Shop status"}, {"services", {"app"}}}},
               {"maintenance", {{{"services", {"app"}}, {"start", in_a_day(24)}, {"end", in_a_day(26)}, {"comment", "db upgrade by carol"}}}}});
  lg.start();
  REQUIRE(wait_until([&] { return lg.has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
  auto status = [&] {
    auto r = http_call(lg.port(), "GET", "/api/v1/status");
    REQUIRE(r.status == 200);
    return json::parse(r.body);
  };
  REQUIRE(wait_until([&] { return status()["status"] == "operational"; }, std::chrono::seconds(10)));
  auto before = status();
  CHECK(before["title"] == "Example Shop status");
  REQUIRE(before["services"].size() == 1);  // only the listed service
  CHECK(before["services"][0] == json{{"name", "Example Shop"}, {"status", "operational"}});
  CHECK(before["incidents"].empty());
  REQUIRE(before["maintenance"].size() == 1);
  CHECK_THAT(before["maintenance"][0]["text"].get<std::string>(), Catch::StartsWith("Scheduled maintenance of Example Shop "));

  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, std::chrono::seconds(30)));
  json after;
  REQUIRE(wait_until(
      [&] {
        after = status();
        return after["status"] == "operational" && after["incidents"].size() == 1 && after["incidents"][0]["ongoing"] == false;
      },
      std::chrono::seconds(10)));
  const auto& inc = after["incidents"][0];
  CHECK(inc["title"] == "Major outage of Example Shop");
  CHECK(inc["impact"] == "major_outage");
  CHECK_THAT(inc["text"].get<std::string>(),
             Catch::Matches("Example Shop had a major outage on [A-Z][a-z]{2} \\d{1,2} (from \\d\\d:\\d\\d to|at) \\d\\d:\\d\\d UTC \\((less than a minute|\\d+ minutes?)\\)\\. "
                            "We restored its previous version at \\d\\d:\\d\\d UTC and confirmed at \\d\\d:\\d\\d UTC that it works normally\\."));
  CHECK_FALSE(inc["ended_at"].is_null());

  // Nothing internal, in the JSON or the page: not the services' own names, the release names, the
  // trigger, the severity, the evidence, the probe's URL, the maintenance comment, lastgood itself.
  auto page = http_call(lg.port(), "GET", "/status");
  REQUIRE(page.status == 200);
  CHECK_THAT(page.content_type, Catch::StartsWith("text/html"));
  CHECK_THAT(page.body, Catch::Contains("Major outage of Example Shop"));
  for (const std::string& text : {after.dump(), page.body})
    for (const char* internal : {"\"app\"", ">app<", "nightly-batch", "bad2", "v1", "down", "P0", "127.0.0.1", "evidence", "consecutive", "carol",
                                 "lastgood"})
      CHECK_THAT(text, !Catch::Contains(internal));

  // Open to any Host name (a reverse proxy's public name); the API is not.
  const std::string get_as_public = "GET /api/v1/status HTTP/1.1\r\nHost: status.example.com\r\nConnection: close\r\n\r\n";
  CHECK_THAT(raw_exchange(lg.port(), get_as_public), Catch::StartsWith("HTTP/1.1 200"));
  const std::string api_as_public = "GET /api/v1/services HTTP/1.1\r\nHost: status.example.com\r\nConnection: close\r\n\r\n";
  CHECK_THAT(raw_exchange(lg.port(), api_as_public), Catch::StartsWith("HTTP/1.1 403"));
  CHECK(http_call(lg.port(), "POST", "/api/v1/status").status == 405);

  const fs::path artifacts = fs::path(LASTGOOD_SOURCE_DIR) / "tests/artifacts";
  fs::create_directories(artifacts);
  const std::string shot = (artifacts / "status-page.png").string();
  fs::remove(shot);
  std::string out;
  int rc = run_command({"node", std::string(LASTGOOD_SOURCE_DIR) + "/tests/integration/status_page.js", "http://127.0.0.1:" + std::to_string(lg.port()), shot}, &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("step: service shown by its public name as operational"));
  CHECK_THAT(out, Catch::Contains("step: incident told in a sentence: Major outage of Example Shop"));
  CHECK_THAT(out, Catch::Contains("step: stylesheet applied"));
  CHECK_THAT(out, Catch::Contains("step: nothing blocked, nothing fetched from elsewhere"));
  REQUIRE(fs::exists(shot));
  CHECK(fs::file_size(shot) > 10'000);
  CHECK(lg.proc->stop() == 0);
}

TEST_CASE("status page: without a status_page block there is none", "[status_page]") {
  TempDir dir;
  Site site(dir, {"v1"});
  Lastgood lg(dir, app_service(site.url(), site.local_symlink()));
  lg.start();
  CHECK(http_call(lg.port(), "GET", "/status").status == 404);
  CHECK(http_call(lg.port(), "GET", "/api/v1/status").status == 404);
  CHECK(lg.proc->stop() == 0);
}
