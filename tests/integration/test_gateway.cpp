// The `command` and `http_api` deployment kinds against test scripts and a loopback test server,
// and an end-to-end rollback through a gateway API with the token kept out of every output.
#include <catch2/catch.hpp>

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>

#include <algorithm>
#include <fstream>
#include <mutex>
#include <optional>
#include <thread>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/api/server.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
namespace actions = lastgood::actions;
namespace cfg = lastgood::config;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;

namespace {

std::shared_ptr<const cfg::Config> load(json deployment) {
  // `observe` is required; these command tests roll back from v2, which it prints.
  if (deployment["kind"] == "command" && !deployment.contains("observe")) deployment["observe"] = {"/bin/echo", "v2"};
  json doc{{"services", {{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", deployment}}}}};
  auto res = cfg::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = true});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  return res.config;
}

std::string script(const TempDir& dir, const std::string& name, const std::string& body) {
  auto p = dir.path / name;
  write_file(p, "#!/bin/sh\n" + body + "\n");
  ::chmod(p.c_str(), 0755);
  return p.string();
}

// A deployment API on loopback: GET /v1/services/app -> {"version": live}; POST /v1/rollback
// switches it; GET / answers 200 on a good version and 500 on a bad one (the probe target).
struct GatewayServer {
  std::mutex mu;
  std::string live = "v1";
  std::vector<HttpReq> requests;
  std::string token;
  std::string fail_path;  // a request to this path answers 503
  json registry;          // what the last PUT /v1/registry/app said
  unsigned short port = 0;

  explicit GatewayServer(std::string tok) : token(std::move(tok)) {
    http.emplace([this](const HttpReq& r) { return handle(r); });
    port = http->port();
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(port) + path; }
  void set_live(const std::string& v) {
    std::lock_guard lk(mu);
    live = v;
  }
  HttpRes handle(const HttpReq& r) {
    std::lock_guard lk(mu);
    requests.push_back(r);
    if (r.target == "/") return {live.rfind("bad", 0) == 0 ? 500 : 200, "text/html", "<title>" + live + "</title>"};
    if (r.authorization != "Bearer " + token) return HttpRes::json_error(401, "bad token");
    if (r.method == "GET" && r.target == "/v1/services/app") return {200, "application/json", json{{"version", live}}.dump()};
    if (!fail_path.empty() && r.target == fail_path) return HttpRes::json_error(503, "registry is read-only");
    if (r.method == "PUT" && r.target == "/v1/registry/app") {
      registry = json::parse(r.body, nullptr, false);
      return {200, "application/json", "{}"};
    }
    if (r.method == "POST" && r.target == "/v1/rollback") {
      auto b = json::parse(r.body, nullptr, false);
      if (b.is_discarded() || !b.contains("version")) return HttpRes::json_error(400, "need a version");
      live = b["version"].get<std::string>();
      return {200, "application/json", json{{"ok", true}, {"version", live}}.dump()};
    }
    return HttpRes::json_error(404, "no");
  }
  std::optional<HttpTestServer> http;  // last: stopped before the members its handler uses
};

}  // namespace

TEST_CASE("command: argv with templates, environment allow-list, exit status, timeout kills the group", "[gateway]") {
  TempDir dir;
  ::setenv("LASTGOOD_TEST_HIDDEN", "must-not-leak", 1);
  ::setenv("LASTGOOD_TEST_PASSED", "passed-through", 1);
  asio::io_context ioc;

  SECTION("a rollback that succeeds, with only the allowed environment") {
    auto rb = script(dir, "rollback.sh", "echo \"service=$1 to=$2 reason=$3\"; echo \"passed=$LASTGOOD_TEST_PASSED hidden=$LASTGOOD_TEST_HIDDEN\"");
    auto c = load({{"kind", "command"}, {"rollback", {rb, "${service}", "${to}", "${reason}"}}, {"env_allow", {"LASTGOOD_TEST_PASSED"}}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto plan = a->plan("v2", "v1", {"app", "down", "3 failures; $(rm -rf /)"});
    auto out = run_sync(ioc, a->execute(plan));
    INFO(out.error);
    CHECK(out.ok);
    CHECK_THAT(out.output, Catch::Contains("service=app to=v1 reason=3 failures; $(rm -rf /)"));  // an argument, never a shell
    CHECK_THAT(out.output, Catch::Contains("passed=passed-through hidden=\n"));
  }
  SECTION("a non-zero exit is a failure with its stderr") {
    auto rb = script(dir, "fail.sh", "echo 'clone failed: version not FINALIZED' >&2; exit 3");
    auto c = load({{"kind", "command"}, {"rollback", {rb}}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto out = run_sync(ioc, a->execute(a->plan("v2", "v1", {})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("exit status 3"));
    CHECK_THAT(out.error, Catch::Contains("clone failed"));
  }
  SECTION("a timeout kills the whole process group, promptly") {
    auto rb = script(dir, "hang.sh", "sleep 30 & echo started; sleep 30");
    auto c = load({{"kind", "command"}, {"rollback", {rb}}, {"timeout", "300ms"}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    const auto t0 = std::chrono::steady_clock::now();
    auto out = run_sync(ioc, a->execute(a->plan("v2", "v1", {})));
    CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("killed after its timeout of 300ms"));
    CHECK_THAT(out.output, Catch::Contains("started"));
  }
  SECTION("a descendant in a session of its own that holds stdout is killed at the timeout, and reading stops") {
    // The leader exits at once; its child moved to a new session (out of the process group) and
    // keeps the pipe open: the timeout must still end the run and kill it.
    const auto pidfile = dir.path / "daemon.pid";
    const auto finished = dir.path / "daemon.finished";  // written only if it lived out its sleep
    auto rb = script(dir, "daemon.sh", "setsid sh -c 'echo $$ > \"$1\"; sleep 20; echo done > \"$2\"' _ '" + pidfile.string() + "' '" +
                                           finished.string() + "' & echo started");
    auto c = load({{"kind", "command"}, {"rollback", {rb}}, {"timeout", "1s"}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto out = run_sync(ioc, a->execute(a->plan("v2", "v1", {})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("killed after its timeout of 1s"));
    CHECK_THAT(out.output, Catch::Contains("started"));
    REQUIRE(wait_until([&] { return fs::exists(pidfile) && !read_file(pidfile).empty(); }, std::chrono::seconds(5)));
    const pid_t daemon = std::stoi(read_file(pidfile));
    auto gone = [&] {  // no such process, or a zombie waiting for init to reap it
      std::ifstream st("/proc/" + std::to_string(daemon) + "/stat");
      std::string line;
      if (!std::getline(st, line)) return true;
      return line.find(") Z ") != std::string::npos;
    };
    CHECK(wait_until(gone, std::chrono::seconds(5)));
    if (!gone()) ::kill(daemon, SIGKILL);
    CHECK_FALSE(fs::exists(finished));  // killed at the timeout, not waited for
  }
  SECTION("no descriptor of lastgood's reaches the command or what it leaves behind") {
    // A descriptor without close-on-exec, as the API's listening socket was: it must not leak.
    const int leaked = ::dup2(::open("/dev/null", O_RDONLY), 77);
    REQUIRE(leaked == 77);
    const auto fds = dir.path / "fds.txt";
    // The leader waits until its setsid child has listed its descriptors (else the child could be
    // killed with the group before it ran).
    auto rb = script(dir, "fds.sh", "ls -1 /proc/self/fd; F='" + fds.string() + "'; setsid sh -c 'ls -1 /proc/self/fd > \"$1.tmp\" && mv \"$1.tmp\" \"$1\"' _ \"$F\" < /dev/null > /dev/null 2>&1 & while [ ! -s \"$F\" ]; do sleep 0.05; done");
    auto c = load({{"kind", "command"}, {"rollback", {rb}}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto out = run_sync(ioc, a->execute(a->plan("v2", "v1", {})));
    ::close(leaked);
    INFO(out.output);
    CHECK(out.ok);
    CHECK_THAT(out.output, !Catch::Contains("77"));
    REQUIRE(wait_until([&] { return fs::exists(fds) && read_file(fds).find('\n') != std::string::npos; }, std::chrono::seconds(5)));
    CHECK_THAT(read_file(fds), !Catch::Contains("77"));
  }
  SECTION("observe prints the live release") {
    auto ob = script(dir, "live.sh", "echo v7");
    auto c = load({{"kind", "command"}, {"rollback", {"/bin/true"}}, {"observe", {ob, "${service}"}}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto o = run_sync(ioc, a->observe());
    REQUIRE(o.live);
    CHECK(o.live->id == "v7");
  }
  SECTION("a missing program is reported, not a crash") {
    auto c = load({{"kind", "command"}, {"rollback", {"/nonexistent/rollback"}}});
    auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
    auto out = run_sync(ioc, a->execute(a->plan("v2", "v1", {})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::Contains("exit status 127"));
  }
}

TEST_CASE("http_api: templated request with a bearer token, observe by JSON pointer, a refused token", "[gateway]") {
  GatewayServer gw("tok-good");
  ::setenv("LASTGOOD_TEST_GW_TOKEN", "tok-good", 1);
  ::setenv("LASTGOOD_TEST_GW_BAD", "tok-bad", 1);
  asio::io_context ioc;
  json dep{{"kind", "http_api"},
           {"rollback",
            {{"method", "POST"}, {"url", gw.url("/v1/rollback")}, {"token_env", "LASTGOOD_TEST_GW_TOKEN"},
             {"body", {{"service", "${service}"}, {"version", "${to}"}, {"why", "${trigger}: ${reason}"}}}, {"expect_status", "200-299"}}},
           {"observe", {{"url", gw.url("/v1/services/${service}")}, {"json_pointer", "/version"}}}};
  auto c = load(dep);
  auto a = actions::make_action(ioc.get_executor(), "app", *c->services[0].deployment);
  auto o = run_sync(ioc, a->observe());
  REQUIRE(o.live);
  CHECK(o.live->id == "v1");
  gw.set_live("bad2");
  auto plan = a->plan("bad2", "v1", {"app", "down", "3 consecutive failures"});
  CHECK_THAT(plan.steps[0], !Catch::Contains("tok-good"));
  auto out = run_sync(ioc, a->execute(plan));
  INFO(out.error);
  CHECK(out.ok);
  {
    std::lock_guard lk(gw.mu);
    CHECK(gw.live == "v1");
    const auto& req = gw.requests.back();
    CHECK(req.authorization == "Bearer tok-good");
    auto body = json::parse(req.body);
    CHECK(body == json{{"service", "app"}, {"version", "v1"}, {"why", "down: 3 consecutive failures"}});
  }
  // A person deployed v3 since the decision: the observe just before the call sees it, and
  // nothing is sent.
  gw.set_live("v3");
  auto posts = [&] {
    std::lock_guard lk(gw.mu);
    return std::count_if(gw.requests.begin(), gw.requests.end(), [](const auto& r) { return r.method == "POST"; });
  };
  const auto posts_before = posts();
  auto stale = run_sync(ioc, a->execute(a->plan("bad2", "v1", {"app", "down", ""})));
  CHECK_FALSE(stale.ok);
  REQUIRE(stale.live_changed);
  CHECK(*stale.live_changed == "v3");
  CHECK_THAT(stale.error, Catch::Contains("the live release is v3, not bad2"));
  CHECK(posts() == posts_before);
  {
    std::lock_guard lk(gw.mu);
    CHECK(gw.live == "v3");
    gw.live = "v1";
  }
  dep["rollback"]["token_env"] = "LASTGOOD_TEST_GW_BAD";
  auto bad = actions::make_action(ioc.get_executor(), "app", *load(dep)->services[0].deployment);
  const auto posts_before_bad = posts();
  auto refused = run_sync(ioc, bad->execute(bad->plan("v1", "v0", {})));
  CHECK_FALSE(refused.ok);  // the token is refused at the observe just before the switch: nothing sent
  CHECK_THAT(refused.error, Catch::Contains("HTTP 401 (check the token)"));
  CHECK_THAT(refused.error, Catch::Contains("nothing was changed"));
  CHECK_THAT(refused.error, !Catch::Contains("tok-bad"));
  CHECK(posts() == posts_before_bad);
  std::lock_guard lk(gw.mu);
  CHECK(gw.live == "v1");
}

TEST_CASE("http_api steps: run in order with the token on each; a failed step stops the sequence and is named; a rotated token file is read again", "[gateway]") {
  GatewayServer gw("tok-old");
  TempDir dir;
  const auto token_file = dir.path / "gw.token";
  write_file(token_file, "tok-old\n");
  asio::io_context ioc;
  json dep{{"kind", "http_api"},
           {"rollback",
            {{"token_file", token_file.string()},
             {"steps",
              {{{"method", "POST"}, {"url", gw.url("/v1/rollback")}, {"body", {{"version", "${to}"}}}},
               {{"method", "PUT"},
                {"url", gw.url("/v1/registry/${service}")},
                {"body", {{"version", "${to}"}, {"was", "${from}"}, {"action", "${action_id}"}}},
                {"expect_status", "200"}}}}}},
           {"observe", {{"url", gw.url("/v1/services/${service}")}, {"json_pointer", "/version"}}}};
  auto a = actions::make_action(ioc.get_executor(), "app", *load(dep)->services[0].deployment);
  auto targets = [&] {
    std::lock_guard lk(gw.mu);
    std::vector<std::string> out;
    for (const auto& r : gw.requests) out.push_back(r.method + " " + r.target + (r.authorization == "Bearer " + gw.token ? "" : " (no token)"));
    gw.requests.clear();
    return out;
  };
  gw.set_live("bad2");
  auto plan = a->plan("bad2", "v1", {"app", "down", ""});
  CHECK(plan.steps.size() == 3);  // the observe, then each step
  CHECK_THAT(plan.steps[2], Catch::Contains("PUT " + gw.url("/v1/registry/app")));

  SECTION("every step in order, templated, each with the token") {
    plan.action_id = "a123";
    auto out = run_sync(ioc, a->execute(plan));
    INFO(out.error);
    CHECK(out.ok);
    CHECK(targets() == std::vector<std::string>{"GET /v1/services/app", "POST /v1/rollback", "PUT /v1/registry/app"});
    CHECK(gw.registry == json{{"version", "v1"}, {"was", "bad2"}, {"action", "a123"}});
    CHECK_THAT(out.output, Catch::Contains("step 2 (PUT"));
  }
  SECTION("the first step fails: the second is never sent, and the error names the step") {
    gw.fail_path = "/v1/rollback";
    auto out = run_sync(ioc, a->execute(plan));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("step 1 (POST " + gw.url("/v1/rollback") + "): HTTP 503"));
    CHECK_THAT(out.error, !Catch::Contains("was done"));
    CHECK(targets() == std::vector<std::string>{"GET /v1/services/app", "POST /v1/rollback"});
  }
  SECTION("the second step fails: named, and what was done is said") {
    gw.fail_path = "/v1/registry/app";
    auto out = run_sync(ioc, a->execute(plan));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("step 2 (PUT " + gw.url("/v1/registry/app") + "): HTTP 503"));
    CHECK_THAT(out.error, Catch::EndsWith("(step 1 was done)"));
    CHECK(gw.live == "v1");
  }
  SECTION("a step whose status is not the one expected fails, though 2xx") {
    dep["rollback"]["steps"][1]["expect_status"] = "204";
    auto strict = actions::make_action(ioc.get_executor(), "app", *load(dep)->services[0].deployment);
    auto out = run_sync(ioc, strict->execute(plan));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("step 2 (PUT"));
  }
  SECTION("the token file is rotated: the next use reads it, no restart") {
    {
      std::lock_guard lk(gw.mu);
      gw.token = "tok-new";
    }
    auto refused = run_sync(ioc, a->observe());  // the file still holds the old token
    CHECK_FALSE(refused.live);
    CHECK_THAT(refused.error, Catch::Contains("HTTP 401"));
    write_file(token_file, "tok-new\n");
    auto out = run_sync(ioc, a->execute(plan));
    INFO(out.error);
    CHECK(out.ok);
    CHECK(targets() == std::vector<std::string>{"GET /v1/services/app (no token)", "GET /v1/services/app", "POST /v1/rollback", "PUT /v1/registry/app"});
    CHECK_THAT(out.output + out.error, !Catch::Contains("tok-"));
  }
}

TEST_CASE("end to end through a gateway API: rolled back and verified; the token is in no log, ledger or metric", "[gateway]") {
  const std::string token = "tok-S3CRET-4c1d9e";
  GatewayServer gw(token);
  TempDir dir;
  json svc = app_service(gw.url("/"),
                         {{"kind", "http_api"},
                          {"observe_interval", "500ms"},
                          {"rollback", {{"url", gw.url("/v1/rollback")}, {"token_env", "LASTGOOD_GW_TOKEN"}, {"body", {{"service", "${service}"}, {"version", "${to}"}}}}},
                          {"observe", {{"url", gw.url("/v1/services/app")}, {"json_pointer", "/version"}}}});
  svc["probes"][0].erase("expect");  // the gateway's page: any 2xx
  Lastgood lg(dir, svc);
  lg.args = {"--log-level", "trace"};
  lg.start({{"LASTGOOD_GW_TOKEN", token}});
  const auto port = lg.port();
  const auto ledger = (lg.state / "ledger.jsonl").string();
  auto has = [&](const std::string& type, const std::string& text) { return lg.has(type, text); };
  REQUIRE(wait_until([&] { return has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
  gw.set_live("bad2");
  REQUIRE(wait_until([&] { return has("verification", "verified"); }, std::chrono::seconds(20)));
  {
    std::lock_guard lk(gw.mu);
    CHECK(gw.live == "v1");
  }
  std::string metrics;
  {
    asio::io_context io;
    boost::beast::tcp_stream s(io);
    s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    boost::beast::http::request<boost::beast::http::empty_body> req{boost::beast::http::verb::get, "/metrics", 11};
    req.set(boost::beast::http::field::host, "x");
    boost::beast::http::write(s, req);
    boost::beast::flat_buffer b;
    boost::beast::http::response<boost::beast::http::string_body> res;
    boost::beast::http::read(s, b, res);
    metrics = res.body();
  }
  CHECK(lg.proc->stop() == 0);
  CHECK_THAT(metrics, Catch::Contains("lastgood_rollbacks_total{deployment=\"http_api\",outcome=\"ok\",service=\"app\"} 1"));
  CHECK(lg.log().find(token) == std::string::npos);
  CHECK(read_file(ledger).find(token) == std::string::npos);
  CHECK(metrics.find(token) == std::string::npos);
  CHECK(lg.log().find("S3CRET") == std::string::npos);
}

TEST_CASE("end to end: a gateway rollback whose registry step fails escalates with the step named, and nothing is verified", "[gateway]") {
  GatewayServer gw("tok-e2e");
  gw.fail_path = "/v1/registry/app";
  TempDir dir;
  json svc = app_service(gw.url("/"),
                         {{"kind", "http_api"},
                          {"observe_interval", "500ms"},
                          {"rollback",
                           {{"token_env", "LASTGOOD_GW_TOKEN"},
                            {"steps",
                             {{{"url", gw.url("/v1/rollback")}, {"body", {{"version", "${to}"}}}},
                              {{"method", "PUT"}, {"url", gw.url("/v1/registry/${service}")}, {"body", {{"version", "${to}"}}}}}}}},
                          {"observe", {{"url", gw.url("/v1/services/app")}, {"json_pointer", "/version"}}}});
  svc["probes"][0].erase("expect");
  Lastgood lg(dir, svc);
  lg.start({{"LASTGOOD_GW_TOKEN", "tok-e2e"}});
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  gw.set_live("bad2");
  REQUIRE(lg.wait_for("escalated"));
  for (const auto& e : lg.ledger())
    if (e.type == "escalated") {
      CHECK_THAT(e.data.value("reason", ""), Catch::StartsWith("rollback to v1 failed: step 2 (PUT " + gw.url("/v1/registry/app") + "): HTTP 503"));
      CHECK_THAT(e.data.value("reason", ""), Catch::EndsWith("(step 1 was done)"));
    }
  CHECK(lg.count("verification") == 0);
  const auto api = json::parse(http_call(lg.port(), "GET", "/api/v1/services").body);
  CHECK(api["services"][0]["escalated"] == true);
}
