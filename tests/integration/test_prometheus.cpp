// The `prometheus` probe kind against a real Prometheus (Debian's `prometheus`) scraping a small
// exporter in the test, whose error ratio follows the live release: ok, fail with the offending
// sample and its labels, and each way the watcher cannot judge (a query error, an empty result,
// Prometheus down) as error; warnings and an unexpected result type from a stand-in. End to end:
// a breach seen only in Prometheus rolls the release back, and verification waits for it.
#include <catch2/catch.hpp>

#include <atomic>
#include <mutex>

#include <nlohmann/json.hpp>

#include "config/config.hpp"
#include "fixtures.hpp"
#include "probes/probe.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;

namespace {

// The service's own metrics: an error ratio per release (0.4 on a "bad*" release), read from
// `root/current` at each scrape when a root is given, else the ratio set by the test.
struct Exporter {
  std::mutex mu;
  fs::path root;
  double ratio = 0.01;
  std::string release = "v1";
  std::optional<HttpTestServer> http;
  explicit Exporter(fs::path r = {}) : root(std::move(r)) {
    http.emplace([this](const HttpReq& q) -> HttpRes {
      if (q.target != "/metrics") return {404, "text/plain", "no\n"};
      std::lock_guard lk(mu);
      std::string rel = release;
      double v = ratio;
      if (!root.empty()) {
        rel = current_release(root);
        v = rel.rfind("bad", 0) == 0 ? 0.4 : 0.01;
      }
      return {200, "text/plain; version=0.0.4", "# TYPE app_error_ratio gauge\napp_error_ratio{release=\"" + rel + "\"} " + std::to_string(v) + "\n"};
    });
  }
  void set(double r, const std::string& rel) {
    std::lock_guard lk(mu);
    ratio = r;
    release = rel;
  }
};

// A real Prometheus on loopback scraping the exporter every second.
struct Prometheus {
  unsigned short port = 0;
  std::unique_ptr<Process> proc;
  Prometheus(const fs::path& dir, unsigned short exporter_port) {
    fs::create_directories(dir / "data");
    write_file(dir / "prometheus.yml", "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nscrape_configs:\n  - job_name: app\n"
                                       "    static_configs:\n      - targets: ['127.0.0.1:" + std::to_string(exporter_port) + "']\n");
    port = free_port();
    proc = std::make_unique<Process>(std::vector<std::string>{"prometheus", "--config.file=" + (dir / "prometheus.yml").string(),
                                                              "--storage.tsdb.path=" + (dir / "data").string(),
                                                              "--web.listen-address=127.0.0.1:" + std::to_string(port)},
                                     dir / "prometheus.log");
    if (!wait_until([&] { return http_call(port, "GET", "/-/ready").status == 200; }, std::chrono::seconds(30)))
      throw std::runtime_error("prometheus did not start: " + read_file(dir / "prometheus.log"));
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port); }
  // True once the query returns at least one sample equal to `value`.
  bool sees(const std::string& query, const std::string& value) {
    const auto r = http_call(port, "GET", "/api/v1/query?query=" + query);
    return r.body.find("\"" + value) != std::string::npos;
  }
};

lastgood::probes::ProbeResult run_probe(const json& probe) {
  json doc{{"services", {{{"name", "app"}, {"probes", {probe}}}}}};
  auto res = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = true});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  asio::io_context ioc;
  auto p = lastgood::probes::make_probe(ioc.get_executor(), "app", res.config->services[0].probes[0]);
  return run_sync(ioc, p->run());
}

json probe(const std::string& url, const std::string& query, json expect = {{"max", 0.05}}) {
  return {{"name", "errors"}, {"kind", "prometheus"}, {"url", url}, {"query", query}, {"expect", expect}, {"timeout", "3s"}};
}

}  // namespace

TEST_CASE("prometheus probe against a real Prometheus: ok, fail with the sample, and every way it cannot judge is error", "[prometheus]") {
  TempDir dir;
  Exporter exporter;
  Prometheus prom(dir.path, exporter.http->port());
  const std::string q = "max by (release) (app_error_ratio)";
  REQUIRE(wait_until([&] { return prom.sees("app_error_ratio", "0.01"); }, std::chrono::seconds(20)));

  SECTION("within bounds: ok, the value in the details") {
    auto r = run_probe(probe(prom.url(), q));
    INFO(r.reason);
    CHECK(r.outcome == lastgood::probes::Outcome::ok);
    CHECK(r.details["value"] == 0.01);
    CHECK(r.details["samples"] == 1);
  }
  SECTION("out of bounds: fail, the sample and its labels are the evidence") {
    exporter.set(0.3, "bad2");
    REQUIRE(wait_until([&] { return prom.sees("app_error_ratio%7Brelease%3D%22bad2%22%7D", "0.3"); }, std::chrono::seconds(20)));
    auto r = run_probe(probe(prom.url(), q));
    CHECK(r.outcome == lastgood::probes::Outcome::fail);
    CHECK(r.reason == "expect: sample {release=\"bad2\"} = 0.3 above max 0.05");
    CHECK(r.details["labels"] == json{{"release", "bad2"}});
    auto low = run_probe(probe(prom.url(), q, {{"min", 0.5}}));
    CHECK(low.outcome == lastgood::probes::Outcome::fail);
    CHECK_THAT(low.reason, Catch::Contains("below min 0.5"));
  }
  SECTION("an empty result is error by default; `empty` may judge it") {
    auto r = run_probe(probe(prom.url(), "app_no_such_metric"));
    CHECK(r.outcome == lastgood::probes::Outcome::error);
    CHECK_THAT(r.reason, Catch::Contains("the query returned an empty result"));
    auto as_ok = probe(prom.url(), "app_no_such_metric");
    as_ok["empty"] = "ok";
    CHECK(run_probe(as_ok).outcome == lastgood::probes::Outcome::ok);
    as_ok["empty"] = "fail";
    CHECK(run_probe(as_ok).outcome == lastgood::probes::Outcome::fail);
  }
  SECTION("a query Prometheus refuses is error, with its own message") {
    auto r = run_probe(probe(prom.url(), "max(app_error_ratio"));
    CHECK(r.outcome == lastgood::probes::Outcome::error);
    CHECK_THAT(r.reason, Catch::StartsWith("prometheus: query failed (HTTP 400, bad_data): "));
  }
  SECTION("Prometheus down is error, never fail") {
    const auto url = prom.url();
    prom.proc->stop();
    auto r = run_probe(probe(url, q));
    CHECK(r.outcome == lastgood::probes::Outcome::error);
    CHECK_THAT(r.reason, Catch::StartsWith("prometheus: unreachable: "));
  }
}

TEST_CASE("prometheus probe against a stand-in: warnings, a matrix, NaN and garbage are not judged", "[prometheus]") {
  std::mutex mu;
  std::string answer;
  int status = 200;
  HttpTestServer stand_in([&](const HttpReq&) -> HttpRes {
    std::lock_guard lk(mu);
    return {status, "application/json", answer};
  });
  const std::string url = "http://127.0.0.1:" + std::to_string(stand_in.port());
  auto with = [&](int st, std::string body) {
    std::lock_guard lk(mu);
    status = st;
    answer = std::move(body);
  };
  using lastgood::probes::Outcome;
  with(200, R"({"status":"success","warnings":["PromQL info: partial response"],"data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.9"]}]}})");
  auto warned = run_probe(probe(url, "x"));
  CHECK(warned.outcome == Outcome::error);
  CHECK_THAT(warned.reason, Catch::Contains("warnings, not judged: PromQL info: partial response"));
  with(200, R"({"status":"success","data":{"resultType":"matrix","result":[]}})");
  CHECK_THAT(run_probe(probe(url, "x[5m]")).reason, Catch::Contains("found resultType \"matrix\""));
  with(200, R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},"value":[1,"NaN"]}]}})");
  auto nan = run_probe(probe(url, "x"));
  CHECK(nan.outcome == Outcome::error);
  CHECK_THAT(nan.reason, Catch::Contains("only NaN samples"));
  with(200, R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"+Inf"]}]}})");
  CHECK(run_probe(probe(url, "x")).outcome == Outcome::fail);
  with(200, R"({"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"0.1x"]}]}})");
  CHECK(run_probe(probe(url, "x")).outcome == Outcome::error);
  with(503, "<html>upstream down</html>");
  CHECK_THAT(run_probe(probe(url, "x")).reason, Catch::Contains("HTTP 503 with a body that is not a JSON object"));
  with(200, std::string(3 * 1024 * 1024, '['));
  CHECK(run_probe(probe(url, "x")).outcome == Outcome::error);
}

TEST_CASE("end to end: a breach seen only in Prometheus rolls the release back; verification waits for the query to recover", "[prometheus]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Exporter exporter(site.root);
  Prometheus prom(dir.path / "prom", exporter.http->port());
  REQUIRE(wait_until([&] { return prom.sees("app_error_ratio", "0.01"); }, std::chrono::seconds(20)));
  json svc{{"name", "app"},
           {"probes", {{{"name", "errors"}, {"kind", "prometheus"}, {"url", prom.url()}, {"query", "max(app_error_ratio)"},
                        {"expect", {{"max", 0.05}}}, {"interval", "1s"}, {"timeout", "900ms"}}}},
           {"triggers", {{{"name", "errors"}, {"severity", "P0"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 2}}}}}},
           {"deployment", site.local_symlink({{"observe_interval", "300ms"}})},
           {"rollback", {{"mode", "auto"}, {"good_after", "1s"}, {"verify", {{"within", "30s"}, {"healthy_samples", 3}}}}}};
  Lastgood lg(dir, svc);
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");  // the page is fine; only the service's own error ratio says otherwise
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(site.root) == "v1");
  bool evidence = false;
  for (const auto& e : lg.ledger())
    if (e.type == "decision") evidence = evidence || e.data.dump().find("above max 0.05") != std::string::npos;
  CHECK(evidence);
  for (const auto& e : lg.ledger())
    if (e.type == "verification") CHECK_THAT(e.data.value("reason", ""), Catch::Contains("errors is back to ok"));
}
