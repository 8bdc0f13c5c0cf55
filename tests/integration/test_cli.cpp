// The lastgood binary end to end: run against nginx, /metrics through promtool, health
// endpoints, JSON logs, signals, validate and version exit codes.
#include <algorithm>
#include <catch2/catch.hpp>

#include <cctype>
#include <cstring>
#include <functional>
#include <thread>
#include <future>

#include <signal.h>

#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::pair<int, std::string> http_get(unsigned short port, const std::string& target) {
  auto r = http_call(port, "GET", target);
  return {r.status, r.body};
}

// Polls /metrics until every line in `want` is there; `metrics` holds the last answer.
bool wait_for_metrics(unsigned short port, const std::vector<std::string>& want, std::string& metrics) {
  return wait_until(
      [&] {
        metrics = http_get(port, "/metrics").second;
        return std::all_of(want.begin(), want.end(), [&](const std::string& w) { return metrics.find(w) != std::string::npos; });
      },
      std::chrono::seconds(10));
}

// Service "web": a good page, a page that answers 500, the port; an alert on each trouble.
nlohmann::json web_service(const std::string& url) {
  return {{"name", "web"},
                      {"probes",
                       {{{"name", "home"}, {"kind", "http"}, {"url", url}, {"interval", "200ms"}, {"timeout", "150ms"}},
                        {{"name", "broken"}, {"kind", "http"}, {"url", url + "status/500"}, {"interval", "200ms"}, {"timeout", "150ms"}},
                        {{"name", "port"}, {"kind", "tcp"}, {"address", url.substr(7, url.size() - 8)}, {"interval", "200ms"},
                         {"timeout", "150ms"}}}},
                      {"triggers",
                       {{{"name", "broken-down"}, {"severity", "P1"}, {"probe", "broken"},
                         {"rule", {{"kind", "consecutive_failures"}, {"count", 2}}}},
                        {{"name", "home-errors"}, {"severity", "P2"}, {"probe", "home"},
                         {"rule", {{"kind", "error_rate"}, {"window", "1m"}, {"max", 0.5}, {"min_samples", 1}}}}}},
                      {"rollback", {{"mode", "alert"}}}};
}

}  // namespace

TEST_CASE("a client that stops reading /metrics holds only its own connection: another scrape and /healthz still answer", "[cli]") {
  // Enough services that the text (about 6 MB) is more than the kernel buffers of a client that
  // reads nothing: lastgood's sender then waits on that socket. It must wait on the loop, never
  // on the thread that makes every scrape's text.
  TempDir dir;
  json services = json::array();
  for (int i = 0; i < 3000; ++i)
    services.push_back({{"name", "s" + std::to_string(i)},
                        {"probes", {{{"name", "p"}, {"kind", "http"}, {"url", "http://127.0.0.1:1/"}, {"interval", "60s"}, {"timeout", "1s"}}}},
                        {"triggers", {{{"name", "down"}, {"severity", "P2"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 3}}}}}}});
  Lastgood lg(dir, Lastgood::Config{{{"services", services}}});
  lg.args = {"--log-level", "info"};
  lg.start();
  const auto port = lg.port();
  REQUIRE(wait_until([&] { return http_get(port, "/healthz").first == 200; }, std::chrono::seconds(20)));

  asio::io_context ioc;
  asio::ip::tcp::socket stalled(ioc);
  stalled.open(asio::ip::tcp::v4());
  stalled.set_option(asio::socket_base::receive_buffer_size(4096));  // before connect: the window stays small
  stalled.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(stalled, asio::buffer(std::string("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")));
  // Let its scrape fill what the kernel holds and block.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));  // not a synchronisation: the check below holds either way

  auto other = std::async(std::launch::async, [port] { return raw_exchange(port, "GET /metrics HTTP/1.0\r\n\r\n"); });
  REQUIRE(other.wait_for(std::chrono::seconds(15)) == std::future_status::ready);  // not 30 s behind the stalled one
  const std::string text = other.get();
  CHECK(text.size() > 5'000'000);  // more than the stalled client's buffers take
  CHECK_THAT(text, Catch::StartsWith("HTTP/1.0 200") && Catch::Contains("# TYPE lastgood_release_info gauge\n"));
  CHECK(http_get(port, "/healthz").first == 200);
  // The stalled client's body is still whole once it reads.
  std::string got;
  boost::system::error_code ec;
  for (;;) {
    char buf[65536];
    const size_t n = stalled.read_some(asio::buffer(buf), ec);
    got.append(buf, n);
    if (ec || got.find("\r\n0\r\n\r\n") != std::string::npos) break;
  }
  CHECK(!ec);
  CHECK_THAT(got, Catch::Contains("# TYPE lastgood_release_info gauge\n") && Catch::EndsWith("\r\n0\r\n\r\n"));
}

TEST_CASE("lastgood run serves metrics that pass promtool, health endpoints, and stops on SIGTERM within a second", "[cli]") {
  TempDir dir;
  Nginx nginx(dir.path / "");
  Lastgood lg(dir, Lastgood::Config{{{"services", {web_service(nginx.url("/"))}}}});
  lg.args = {"--log-format", "json"};
  lg.start();
  const auto port = lg.port();

  REQUIRE(wait_until([&] { return http_get(port, "/healthz").first == 200; }, std::chrono::seconds(10)));
  CHECK(http_get(port, "/readyz").first == 200);

  std::string metrics;
  REQUIRE(wait_until(
      [&] {
        metrics = http_get(port, "/metrics").second;
        return metrics.find("lastgood_probes_total{outcome=\"fail\",probe=\"broken\",service=\"web\"} 2") != std::string::npos ||
               metrics.find("lastgood_probes_total{outcome=\"fail\",probe=\"broken\",service=\"web\"} 3") != std::string::npos;
      },
      std::chrono::seconds(10)));
  CHECK_THAT(metrics, Catch::Contains("lastgood_probe_success{probe=\"home\",service=\"web\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_probe_success{probe=\"broken\",service=\"web\"} 0"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_build_info{version="));
  CHECK_THAT(metrics, Catch::Contains("lastgood_probe_duration_seconds_bucket{probe=\"port\",service=\"web\""));
  REQUIRE(wait_for_metrics(port,
                           {"lastgood_trigger_state{service=\"web\",state=\"firing\",trigger=\"broken-down\"} 1",
                            "lastgood_trigger_state{service=\"web\",state=\"ok\",trigger=\"home-errors\"} 1"},
                           metrics));
  CHECK_THAT(metrics, Catch::Contains("lastgood_breaches_total{service=\"web\",severity=\"P1\",trigger=\"broken-down\"} 1"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_decisions_total{kind=\"alert\",service=\"web\"} 1"));

  // Prometheus conventions: blackbox_exporter's status code (0 without a response), the known
  // label sets of counters at 0 before their first event, pending proposals per service.
  CHECK_THAT(metrics, Catch::Contains("lastgood_probe_http_status_code{probe=\"home\",service=\"web\"} 200\n"));
  CHECK_THAT(metrics, !Catch::Contains("lastgood_probe_http_status_code{probe=\"port\""));  // a tcp probe has none
  CHECK_THAT(metrics, Catch::Contains("lastgood_decisions_total{kind=\"execute\",service=\"web\"} 0"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_escalations_total{service=\"web\"} 0"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_breaches_total{service=\"web\",severity=\"P2\",trigger=\"home-errors\"} 0"));
  CHECK_THAT(metrics, Catch::Contains("lastgood_proposals_pending{service=\"web\"} 0"));
  CHECK_THAT(metrics, Catch::Contains("process_open_fds "));

  write_file(dir.path / "metrics.txt", metrics);
  std::string out;
  int rc = run_command({"sh", "-c", "promtool check metrics < " + (dir.path / "metrics.txt").string()}, &out);
  INFO(out);
  CHECK(rc == 0);

  // The example rules pass promtool's check and their unit tests; every metric the rules and the
  // Grafana dashboard name is one lastgood exports (a renamed metric must not leave them silent).
  const std::string src = LASTGOOD_SOURCE_DIR;
  CHECK(run_command({"promtool", "check", "rules", src + "/examples/prometheus/lastgood-rules.yml"}, &out) == 0);
  INFO(out);
  CHECK(run_command({"sh", "-c", "cd " + src + "/tests/prometheus && promtool test rules lastgood-rules.test.yml"}, &out) == 0);
  const std::string rules = read_file(src + "/examples/prometheus/lastgood-rules.yml");
  const auto dashboard = nlohmann::json::parse(read_file(src + "/examples/grafana/lastgood.json"));
  std::string exprs = rules;
  for (const auto& panel : dashboard["panels"])
    for (const auto& t : panel.value("targets", nlohmann::json::array())) exprs += "\n" + t.value("expr", "");
  int named = 0;
  for (size_t at = 0; (at = exprs.find_first_of("lp", at)) != std::string::npos; ++at) {
    if (at > 0 && (std::isalnum(static_cast<unsigned char>(exprs[at - 1])) || exprs[at - 1] == '_')) continue;
    if (exprs.compare(at, 9, "lastgood_") != 0 && exprs.compare(at, 8, "process_") != 0) continue;
    size_t end = at;
    while (end < exprs.size() && (std::isalnum(static_cast<unsigned char>(exprs[end])) || exprs[end] == '_')) ++end;
    std::string name = exprs.substr(at, end - at);
    for (const char* suffix : {"_bucket", "_count", "_sum"})
      if (name.size() > std::strlen(suffix) && name.compare(name.size() - std::strlen(suffix), std::string::npos, suffix) == 0 &&
          metrics.find("# TYPE " + name.substr(0, name.size() - std::strlen(suffix)) + " histogram") != std::string::npos)
        name = name.substr(0, name.size() - std::strlen(suffix));
    // lastgood_rollbacks_total has series only for services with a deployment (none here).
    if (metrics.find("# TYPE " + name + " ") == std::string::npos && name != "lastgood_rollbacks_total") FAIL_CHECK("not exported: " << name);
    ++named;
    at = end;
  }
  CHECK(named > 20);

  // The text is streamed: chunked for HTTP/1.1, close-delimited for HTTP/1.0, headers only for HEAD.
  const auto chunked = raw_exchange(port, "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK_THAT(chunked, Catch::StartsWith("HTTP/1.1 200") && Catch::Contains("Transfer-Encoding: chunked\r\n") &&
                          Catch::Contains("lastgood_build_info{version=") && Catch::EndsWith("\r\n0\r\n\r\n"));
  const auto plain = raw_exchange(port, "GET /metrics HTTP/1.0\r\n\r\n");
  CHECK_THAT(plain, Catch::StartsWith("HTTP/1.0 200") && !Catch::Contains("chunked") &&
                        Catch::Contains("\r\n\r\n# HELP ") && Catch::Contains("trigger=\"home-errors\"} 0\n") &&
                        Catch::Contains("# TYPE lastgood_release_info gauge\n") && Catch::EndsWith("\n"));  // the last family: all of it came
  const auto head = raw_exchange(port, "HEAD /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  CHECK_THAT(head, Catch::StartsWith("HTTP/1.1 200") && Catch::EndsWith("\r\n\r\n") && !Catch::Contains("# HELP"));

  auto api = http_get(port, "/api/v1/services");
  CHECK(api.first == 200);
  auto j = nlohmann::json::parse(api.second);
  CHECK(j["services"][0]["name"] == "web");
  CHECK(j["services"][0]["probes"][1]["last"]["outcome"] == "fail");
  const auto& trig = j["services"][0]["triggers"][0];
  CHECK(trig["name"] == "broken-down");
  CHECK(trig["state"] == "firing");
  CHECK(trig["evidence"]["measure"] == "consecutive_failures");
  CHECK(trig["evidence"]["threshold"] == 2);
  CHECK(trig["evidence"]["probe"] == "broken");
  CHECK(j["recent_decisions"][0]["kind"] == "alert");
  CHECK(http_get(port, "/nope").first == 404);

  auto st = lg.proc->signal_and_wait(SIGTERM, std::chrono::milliseconds(1000));
  REQUIRE(st.has_value());
  CHECK(*st == 0);

  // Every log line is a JSON object with ts, level and msg.
  auto log = lg.log();
  std::istringstream lines(log);
  std::string line;
  int n = 0;
  bool saw_fail = false;
  while (std::getline(lines, line)) {
    INFO(line);
    auto e = nlohmann::json::parse(line, nullptr, false);
    REQUIRE_FALSE(e.is_discarded());
    CHECK(e.contains("ts"));
    CHECK(e.contains("level"));
    saw_fail = saw_fail || e["msg"].get<std::string>().find("web/broken: unknown -> fail: status: got 500") != std::string::npos;
    ++n;
  }
  CHECK(n >= 2);
  CHECK(saw_fail);
}

TEST_CASE("JSON log lines carry the service, probe, trigger, release, action, proposal and incident they tell of", "[cli]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, app_service(site.url(), site.local_symlink({{"observe_interval", "300ms"}})), alice_approves_p0());
  lg.args = {"--log-format", "json"};
  lg.start({{"LG_TEST_TOKEN", "alice-json-logs-5e1"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("proposal_created"));
  const std::string proposal = lg.last("proposal_created", "id");
  CHECK(http_call(lg.port(), "POST", "/api/v1/proposals/" + proposal + "/approve", "alice-json-logs-5e1", "{}").status == 202);
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  const std::string action = lg.last("action_started", "action_id");
  CHECK(lg.proc->stop() == 0);

  std::istringstream lines(lg.log());
  std::string line;
  std::vector<json> all;
  while (std::getline(lines, line)) {
    INFO(line);
    auto e = json::parse(line, nullptr, false);
    REQUIRE_FALSE(e.is_discarded());
    // ts in RFC 3339, UTC, with milliseconds.
    CHECK_THAT(e.value("ts", ""), Catch::Matches("\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d\\.\\d{3}Z"));
    all.push_back(e);
  }
  auto find = [&](const std::string& needle) -> json {
    for (const auto& e : all)
      if (e.value("msg", "").find(needle) != std::string::npos) return e;
    return json();
  };
  INFO(lg.log());
  const json probe = find("probe app/home: ok -> fail");
  REQUIRE(probe.is_object());
  CHECK(probe["service"] == "app");
  CHECK(probe["probe"] == "home");
  const json decision = find("decision app/down: propose");
  REQUIRE(decision.is_object());
  CHECK(decision["service"] == "app");
  CHECK(decision["trigger"] == "down");
  CHECK(decision["release"] == "bad2");  // the live release the decision is about
  CHECK_THAT(decision.value("incident_id", ""), Catch::StartsWith("i"));
  const json approved = find("approved by alice");
  REQUIRE(approved.is_object());
  CHECK(approved["proposal_id"] == proposal);
  const json switched = find("is now on v1");
  REQUIRE(switched.is_object());
  CHECK(switched["action_id"] == action);
  CHECK(switched["proposal_id"] == proposal);
  CHECK(switched["release"] == "v1");
  CHECK(switched["trigger"] == "down");
  const json verified = find("recovery verified on v1");
  REQUIRE(verified.is_object());
  CHECK(verified["action_id"] == action);
  CHECK(verified["incident_id"] == decision["incident_id"]);
  // The token is on no line.
  CHECK_THAT(lg.log(), !Catch::Contains("alice-json-logs-5e1"));
}

TEST_CASE("SIGINT also stops lastgood promptly while a probe is hanging", "[cli]") {
  TempDir dir;
  // A port that accepts and never answers: the kernel completes the handshake for a listening socket.
  asio::io_context ioc;
  asio::ip::tcp::acceptor hang(ioc, asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  Lastgood lg(dir, Lastgood::Config{{{"services",
                    {{{"name", "h"},
                      {"probes",
                       {{{"name", "hang"}, {"kind", "http"}, {"url", "http://127.0.0.1:" + std::to_string(hang.local_endpoint().port()) + "/"},
                         {"interval", "10s"}, {"timeout", "10s"}}}}}}}}});
  lg.start();
  const auto port = lg.port();
  REQUIRE(wait_until([&] { return http_get(port, "/healthz").first == 200; }, std::chrono::seconds(10)));
  auto st = lg.proc->signal_and_wait(SIGINT, std::chrono::milliseconds(1000));
  REQUIRE(st.has_value());
  CHECK(*st == 0);
}

TEST_CASE("the command line as people type it: COMMAND --help, --name=value, an option given to the wrong command refused", "[cli]") {
  std::string out;
  for (const char* cmd : {"run", "validate", "demo", "ledger"}) {
    CHECK(run_command({LASTGOOD_BINARY, cmd, "--help"}, &out) == 0);
    CHECK_THAT(out, Catch::StartsWith(std::string("usage: lastgood ") + cmd));
  }
  CHECK(run_command({LASTGOOD_BINARY, "validate", "--config=" LASTGOOD_SOURCE_DIR "/examples/full.json"}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("ok (1 service(s)"));
  CHECK(run_command({LASTGOOD_BINARY, "run", "-c", LASTGOOD_SOURCE_DIR "/examples/full.json", "--listen", "0.0.0.0:1"}, &out) == 2);
  CHECK_THAT(out, Catch::Contains("--listen is for demo; run listens where the config's \"listen\" says"));
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", LASTGOOD_SOURCE_DIR "/examples/full.json", "--dry-run"}, &out) == 2);
  CHECK_THAT(out, Catch::Contains("--dry-run is an option of run, not of validate"));
}

TEST_CASE("validate, version and usage exit codes", "[cli]") {
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", LASTGOOD_SOURCE_DIR "/examples/full.json"}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("ok (1 service(s), 2 probe(s))"));

  TempDir dir;
  write_file(dir.path / "bad.json", R"({"services":[{"name":"a","probes":[{"name":"p","kind":"tcp","address":"x:1","timout":"1s"}]}]})");
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", (dir.path / "bad.json").string()}, &out) == 2);
  CHECK_THAT(out, Catch::Contains("/services/0/probes/0/timout: unknown key \"timout\" (did you mean \"timeout\"?)"));

  CHECK(run_command({LASTGOOD_BINARY, "--version"}, &out) == 0);
  CHECK_THAT(out, Catch::StartsWith("lastgood "));
  CHECK(run_command({LASTGOOD_BINARY, "--help"}, &out) == 0);
  CHECK(run_command({LASTGOOD_BINARY, "frobnicate"}, &out) == 2);
  CHECK(run_command({LASTGOOD_BINARY, "run"}, &out) == 2);
  CHECK(run_command({LASTGOOD_BINARY, "run", "-c", (dir.path / "bad.json").string()}, &out) == 2);

  // A state dir that cannot be created is a runtime failure with a clear message.
  write_file(dir.path / "file", "x");
  nlohmann::json c{{"listen", "127.0.0.1:0"}, {"state_dir", (dir.path / "file" / "state").string()},
                   {"services", {{{"name", "a"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}}}}};
  write_file(dir.path / "c.json", c.dump());
  CHECK(run_command({LASTGOOD_BINARY, "run", "-c", (dir.path / "c.json").string()}, &out) == 1);
  CHECK_THAT(out, Catch::Contains("is not writable"));
}

TEST_CASE("the demo tells the whole story on its own: deploy, breach, automatic rollback, verified", "[cli]") {
  std::string out;
  int rc = run_command({LASTGOOD_BINARY, "demo", "--for=20s", "--listen=127.0.0.1:0", "--keep"}, &out);
  INFO(out);
  CHECK(rc == 0);
  // --keep: the folder it points to is still there, with a ledger that verifies.
  const auto kept = out.find("demo finished; kept ");
  REQUIRE(kept != std::string::npos);
  const std::string folder = out.substr(kept + 20, out.find(' ', kept + 20) - kept - 20);
  std::string verify;
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", folder + "/state/ledger.jsonl"}, &verify) == 0);
  CHECK_THAT(verify, Catch::Contains("chain intact"));
  std::filesystem::remove_all(folder);
  CHECK_THAT(out, Catch::Contains("release v1 verified good"));
  CHECK_THAT(out, Catch::Contains("DEPLOY: current -> releases/v2"));
  CHECK_THAT(out, Catch::Contains("BREACH: trigger down (P0) is firing"));
  CHECK_THAT(out, Catch::Contains("DECISION: execute: roll back v2 -> v1"));
  CHECK_THAT(out, Catch::Contains("ROLLBACK done"));
  CHECK_THAT(out, Catch::Contains("VERIFIED: verified on v1"));
  CHECK_THAT(out, Catch::Contains("demo finished"));
}

namespace {
// `run` on a state_dir whose ledger `write` fills (one tcp service "a"): its exit code and output,
// and whether the ledger was left byte for byte as it was.
struct Refusal {
  int code = 0;
  std::string out;
  bool ledger_unchanged = false;
  bool incidents_written = false;
};
Refusal run_on_ledger(const std::function<void(lastgood::watchdog::Ledger&)>& write) {
  TempDir dir;
  const auto state = dir.path / "state";
  std::filesystem::create_directories(state);
  {
    lastgood::watchdog::Ledger ledger(state.string());
    write(ledger);
  }
  const auto before = read_file(state / "ledger.jsonl");
  nlohmann::json c{{"listen", "127.0.0.1:0"}, {"state_dir", state.string()},
                   {"services", {{{"name", "a"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}}}}};
  write_file(dir.path / "c.json", c.dump());
  Refusal r;
  r.code = run_command({LASTGOOD_BINARY, "run", "-c", (dir.path / "c.json").string()}, &r.out);
  r.ledger_unchanged = read_file(state / "ledger.jsonl") == before;
  r.incidents_written = std::filesystem::exists(state / "incidents");
  return r;
}
}  // namespace

TEST_CASE("run refuses a ledger holding an event type it does not know, naming it, and leaves the ledger as it was", "[cli]") {
  const auto r = run_on_ledger([](lastgood::watchdog::Ledger& ledger) {
    ledger.append("release_observed", "a", {{"release", "v1"}}, 1'800'000'000'000);
    // an incident record would be written for this one, were the ledger accepted
    ledger.append("action_started", "a", {{"action_id", "a1"}, {"trigger", "t"}, {"from", "v1"}, {"to", "v0"}, {"via", "auto"}}, 1'800'000'000'001);
    ledger.append("decison", "a", {{"kind", "execute"}}, 1'800'000'000'002);  // intact chain, unknown type
  });
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("entry 3 has the type \"decison\""));
  CHECK(r.ledger_unchanged);
  CHECK_FALSE(r.incidents_written);  // refused before anything was written
}

TEST_CASE("run refuses an intact entry whose data has the wrong types, naming its seq and type, instead of an anonymous JSON error", "[cli]") {
  const auto r = run_on_ledger([](lastgood::watchdog::Ledger& ledger) {
    ledger.append("release_observed", "a", {{"release", "v1"}}, 1'800'000'000'000);
    // A consistent chain whose entry carries a number where replay reads a string (crafted by
    // someone who can rewrite state_dir, or a bug of another version).
    ledger.append("action_started", "a", {{"action_id", 5}, {"via", "auto"}}, 1'800'000'000'001);
  });
  CHECK(r.code == 1);
  CHECK_THAT(r.out, Catch::Contains("entry 2 (action_started) holds data this version cannot replay"));
  CHECK_THAT(r.out, Catch::Contains("will not act on a history it cannot read"));
  CHECK(r.ledger_unchanged);
}

TEST_CASE("an https probe exports the certificate's expiry as blackbox_exporter does", "[cli]") {
  TempDir dir;
  TestPki pki(dir.path / "");
  Nginx nginx(dir.path / "", &pki);
  nlohmann::json svc{{"name", "secure"},
                     {"probes", {{{"name", "home"}, {"kind", "http"}, {"url", nginx.tls_url("localhost", "/index.html")}, {"interval", "300ms"},
                                  {"timeout", "250ms"}, {"ca_file", pki.ca_cert.string()}}}}};
  Lastgood lg(dir, Lastgood::Config{{{"services", {svc}}}});
  lg.start();
  std::string metrics;
  REQUIRE(wait_until([&] {
    metrics = http_get(lg.port(), "/metrics").second;
    return metrics.find("lastgood_probe_tls_cert_expiry_timestamp_seconds{probe=\"home\",service=\"secure\"} ") != std::string::npos;
  }, std::chrono::seconds(10)));
  const auto at = metrics.find("lastgood_probe_tls_cert_expiry_timestamp_seconds{probe=\"home\",service=\"secure\"} ");
  const double expiry = std::stod(metrics.substr(metrics.find("} ", at) + 2));
  const double now = std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  CHECK(expiry > now + 86400);           // the test CA's certificate is valid for days ...
  CHECK(expiry < now + 20 * 365 * 86400);  // ... and the value is seconds, not milliseconds
  CHECK_THAT(metrics, Catch::Contains("lastgood_probe_http_status_code{probe=\"home\",service=\"secure\"} 200"));
}

TEST_CASE("the Debian package: built with dpkg-deb, unpacked into a scratch root, its binary runs its own config, its unit verifies", "[cli]") {
  TempDir dir;
  std::string out;
  REQUIRE(run_command({LASTGOOD_SOURCE_DIR "/scripts/make-deb", LASTGOOD_BINARY, (dir.path / "out").string()}, &out) == 0);
  INFO(out);
  const std::string deb = out.substr(0, out.find('\n'));
  CHECK_THAT(deb, Catch::EndsWith(".deb"));
  CHECK(run_command({"dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends"}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("Package: lastgood"));
  CHECK_THAT(out, Catch::Contains("Depends: ") && Catch::Contains("libssh2-1") && Catch::Contains("adduser"));
  CHECK(run_command({"dpkg-deb", "--contents", deb}, &out) == 0);
  for (const char* path : {"./usr/bin/lastgood", "./lib/systemd/system/lastgood.service", "./etc/lastgood/lastgood.yaml",
                           "./usr/share/doc/lastgood/examples/prometheus/lastgood-rules.yml"})
    CHECK_THAT(out, Catch::Contains(path));
  CHECK_THAT(out, Catch::Contains("root/root"));  // owned by root whoever built it
  CHECK(run_command({"sh", "-c", "dpkg-deb --ctrl-tarfile '" + deb + "' | tar -xO ./conffiles"}, &out) == 0);
  CHECK(out == "/etc/lastgood/lastgood.yaml\n");
  CHECK(run_command({"sh", "-c", "dpkg-deb --ctrl-tarfile '" + deb + "' | tar -xO ./postinst"}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("install -d -m 0700 -o lastgood -g lastgood /var/lib/lastgood"));

  const auto root = dir.path / "root";
  REQUIRE(run_command({"dpkg", "-x", deb, root.string()}, &out) == 0);
  const std::string bin = (root / "usr/bin/lastgood").string();
  CHECK(run_command({bin, "--version"}, &out) == 0);
  CHECK_THAT(out, Catch::StartsWith("lastgood "));
  CHECK(run_command({bin, "validate", "-c", (root / "etc/lastgood/lastgood.yaml").string()}, &out) == 0);
  CHECK_THAT(read_file(root / "etc/lastgood/lastgood.yaml"), Catch::Contains("state_dir: /var/lib/lastgood"));
  // The unit: what the service needs, and nothing that breaks rollbacks.
  const std::string unit = read_file(root / "lib/systemd/system/lastgood.service");
  CHECK_THAT(unit, Catch::Contains("ExecStart=/usr/bin/lastgood run -c /etc/lastgood/lastgood.yaml") && Catch::Contains("User=lastgood") &&
                       Catch::Contains("StateDirectoryMode=0700") && !Catch::Contains("MemoryDenyWriteExecute=yes") &&
                       !Catch::Contains("DynamicUser"));
  // systemd's own check of the unit in the scratch root (its ExecStart binaries are the package's):
  // no error and no warning (an unknown key or a bad value is only a warning, so the output must be
  // empty too). The targets it names come from this machine's systemd.
  REQUIRE(run_command({"sh", "-c", "cp -rn /lib/systemd/system/. '" + (root / "lib/systemd/system").string() + "/'"}, &out) == 0);
  const int verified = run_command({"sh", "-c", "timeout 60 systemd-analyze verify --man=no --root='" + root.string() + "' '" +
                                                    (root / "lib/systemd/system/lastgood.service").string() + "' < /dev/null"},
                                   &out);
  INFO("systemd-analyze verify: " << out);
  CHECK(verified == 0);
  CHECK(out.empty());
  // And it does catch a mistake: a key systemd does not know.
  write_file(root / "lib/systemd/system/lastgood.service", unit + "\n[Service]\nRestartSecs=5\n");
  run_command({"sh", "-c", "timeout 60 systemd-analyze verify --man=no --root='" + root.string() + "' '" +
                               (root / "lib/systemd/system/lastgood.service").string() + "' < /dev/null"},
              &out);
  CHECK_THAT(out, Catch::Contains("RestartSecs"));
}

TEST_CASE("lastgood runs a YAML config, and validate names the line of a mistake in one", "[cli]") {
  TempDir dir;
  Nginx nginx(dir.path / "");
  Lastgood lg(dir, Lastgood::Config{{{"services", {web_service(nginx.url("/"))}}}});
  lg.config = dir.path / "lastgood.yaml";
  const std::string yaml = "# written by hand, with comments\n"
                           "listen: 127.0.0.1:0\n"
                           "state_dir: " + lg.state.string() + "\n"
                           "defaults: &probe {kind: http, interval: 200ms, timeout: 150ms}\n"
                           "services:\n"
                           "  - name: yaml-web   # the service\n"
                           "    probes:\n"
                           "      - <<: *probe\n"
                           "        name: home\n"
                           "        url: " + nginx.url("/") + "\n";
  // `defaults` is not a lastgood key: validate says where it is.
  write_file(lg.config, yaml);
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", lg.config.string()}, &out) == 2);
  CHECK_THAT(out, Catch::Contains("lastgood.yaml:4: /defaults: unknown key \"defaults\""));
  // YAML's own way: the anchor on a value under a key lastgood reads.
  std::string fixed = yaml;
  auto replace = [&](const std::string& from, const std::string& to) {
    REQUIRE(fixed.find(from) != std::string::npos);
    fixed.replace(fixed.find(from), from.size(), to);
  };
  replace("defaults: &probe {kind: http, interval: 200ms, timeout: 150ms}\n", "");
  replace("      - <<: *probe\n        name: home\n",
          "      - &probe {name: home, kind: http, interval: 200ms, timeout: 150ms, url: " + nginx.url("/") + "}\n      - <<: *probe\n        name: again\n");
  replace("        url: " + nginx.url("/") + "\n", "");
  write_file(lg.config, fixed);
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", lg.config.string()}, &out) == 0);
  INFO(out);
  lg.start();
  const auto port = lg.port();
  std::string metrics;
  CHECK(wait_for_metrics(port,
                         {"lastgood_probe_success{probe=\"again\",service=\"yaml-web\"} 1",
                          "lastgood_probe_success{probe=\"home\",service=\"yaml-web\"} 1"},
                         metrics));
}
