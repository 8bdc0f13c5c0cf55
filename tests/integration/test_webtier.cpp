// The web tier around a symlink switch, with a real nginx whose answer for / comes from the live
// release's own config (site.conf, read only when nginx loads its config): a switch alone changes
// nothing it serves; the after_switch steps (`nginx -t`, `nginx -s reload`) make it. Locally
// (local_symlink, end to end with the binary) and over SSH (ssh_symlink), with the failure paths:
// a before_switch step failing (no switch), an after_switch step failing (the previous link put
// back, or kept with restore_on_failure false).
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;

namespace {

std::string nginx_binary() { return fs::exists("/usr/sbin/nginx") ? "/usr/sbin/nginx" : "nginx"; }

std::string good_conf(const std::string& r) {
  return "location = / { default_type text/html; return 200 '<!doctype html><title>release " + r + "</title>'; }\n";
}
const char* const bad_conf = "location = / { default_type text/html; return 500 'broken release'; }\n";
const char* const broken_conf = "location = / { retrun 200 'a typo nginx -t refuses'; }\n";

// nginx on 127.0.0.1 serving `root/current/site.conf`.
struct WebTier {
  fs::path dir, root;
  unsigned short port = 0;
  std::unique_ptr<Process> proc;

  WebTier(TempDir& td, const std::map<std::string, std::string>& releases, const std::string& live) : dir(td.path / "nginx"), root(td.path / "app") {
    for (const auto& [r, conf] : releases) {
      fs::create_directories(root / "releases" / r);
      write_file(root / "releases" / r / "site.conf", conf);
    }
    switch_current(root, live);
    for (const char* t : {"client_body", "proxy", "fastcgi", "uwsgi", "scgi"}) fs::create_directories(dir / "tmp" / t);
    port = free_port();
    const std::string d = dir.string();
    write_file(dir / "nginx.conf", "daemon off;\nworker_processes 1;\npid " + d + "/nginx.pid;\nerror_log " + d + "/error.log;\n" +
                                       "events { worker_connections 64; }\nhttp {\n  client_body_temp_path " + d + "/tmp/client_body;\n" +
                                       "  proxy_temp_path " + d + "/tmp/proxy;\n  fastcgi_temp_path " + d + "/tmp/fastcgi;\n  uwsgi_temp_path " + d +
                                       "/tmp/uwsgi;\n  scgi_temp_path " + d + "/tmp/scgi;\n  access_log off;\n" +
                                       "  server {\n    listen 127.0.0.1:" + std::to_string(port) + ";\n    include " + (root / "current" / "site.conf").string() +
                                       ";\n  }\n}\n");
    proc = std::make_unique<Process>(command({}), dir / "nginx.out");
    if (!wait_until([&] { return port_open(port); }, std::chrono::seconds(10)))
      throw std::runtime_error("nginx did not start: " + read_file(dir / "error.log") + read_file(dir / "nginx.out"));
  }
  // nginx with this config, plus `extra` ("-t", or "-s", "reload").
  std::vector<std::string> command(const std::vector<std::string>& extra) const {
    std::vector<std::string> argv{nginx_binary(), "-c", (dir / "nginx.conf").string(), "-p", dir.string() + "/", "-e", (dir / "error.log").string()};
    argv.insert(argv.end(), extra.begin(), extra.end());
    return argv;
  }
  std::string shell(const std::vector<std::string>& extra) const {
    std::string line;
    for (const auto& a : command(extra)) line += (line.empty() ? "" : " ") + a;
    return line;
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port) + "/"; }
  std::string page() const { return http_call(port, "GET", "/").body; }
  int status() const { return http_call(port, "GET", "/").status; }
  // What a deploy tool does: switch, then reload; returns once nginx serves the new release.
  void deploy(const std::string& r) {
    switch_current(root, r);
    std::string out;
    REQUIRE(run_command(command({"-s", "reload"}), &out) == 0);
  }
};

std::unique_ptr<lastgood::actions::Action> make(asio::io_context& ioc, const json& dep) {
  json doc{{"services", {{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", dep}}}}};
  auto res = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  return lastgood::actions::make_action(ioc.get_executor(), "app", *res.config->services[0].deployment);
}

}  // namespace

TEST_CASE("local_symlink with a real nginx: after_switch tests and reloads it, the rollback is verified on what nginx serves", "[webtier]") {
  TempDir dir;
  WebTier web(dir, {{"v1", good_conf("v1")}, {"bad2", bad_conf}}, "v1");
  json dep{{"kind", "local_symlink"},
           {"path", web.root.string()},
           {"observe_interval", "300ms"},
           {"timeout", "10s"},
           {"before_switch", {"test -d releases/${to}"}},
           {"after_switch", {web.command({"-t"}), web.command({"-s", "reload"})}}};
  Lastgood lg(dir, app_service(web.url(), dep, App{.verify_within = "20s"}));
  lg.start();
  INFO(lg.log());
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  web.deploy("bad2");
  REQUIRE(wait_until([&] { return web.status() == 500; }, std::chrono::seconds(10)));
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }));
  CHECK(current_release(web.root) == "v1");
  CHECK_THAT(web.page(), Catch::Contains("<title>release v1"));  // nginx reloaded: without the step it would still serve bad2
  std::string output;
  for (const auto& e : lg.ledger())
    if (e.type == "action_finished") {
      CHECK(e.data["ok"] == true);
      output = e.data["output"].get<std::string>();
    }
  CHECK_THAT(output, Catch::Contains("$ test -d releases/v1\n"));
  CHECK_THAT(output, Catch::Contains("syntax is ok"));  // nginx -t's own words, recorded
  CHECK_THAT(output, Catch::Contains(" -s reload\n"));
  CHECK(output.find("[exit status 0]") != output.rfind("[exit status 0]"));  // more than one step, each with its status
  CHECK(lg.ledger_verifies());
}

TEST_CASE("local_symlink steps that fail: before_switch stops the switch; after_switch puts the previous link back unless told not to", "[webtier]") {
  TempDir dir;
  WebTier web(dir, {{"v0", broken_conf}, {"v1", good_conf("v1")}, {"bad2", bad_conf}}, "bad2");
  asio::io_context ioc;
  json dep{{"kind", "local_symlink"}, {"path", web.root.string()}, {"timeout", "10s"},
           {"after_switch", {web.command({"-t"}), web.command({"-s", "reload"})}}};

  SECTION("before_switch fails: nothing switched, the step named with its status and output") {
    dep["before_switch"] = {"echo checking ${to}; echo 'maintenance lock held' >&2; exit 4"};
    auto a = make(ioc, dep);
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v1", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("before_switch step 1 (echo checking v1; echo"));
    CHECK_THAT(out.error, Catch::Contains("exited with status 4: maintenance lock held"));
    CHECK_THAT(out.error, Catch::EndsWith("; nothing was switched"));
    CHECK_THAT(out.output, Catch::Contains("checking v1\n"));
    CHECK(current_release(web.root) == "bad2");
  }
  SECTION("after_switch fails (nginx -t refuses the target's config): current is put back, nginx never reloaded") {
    auto a = make(ioc, dep);
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v0", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("after_switch step 1 ("));
    CHECK_THAT(out.error, Catch::Contains("exited with status 1"));
    CHECK_THAT(out.error, Catch::Contains("retrun"));  // nginx's own complaint
    CHECK_THAT(out.error, Catch::EndsWith("; current was put back to releases/bad2"));
    CHECK_THAT(out.output, !Catch::Contains("-s reload"));  // the sequence stopped at the failing step
    CHECK(current_release(web.root) == "bad2");
    CHECK(web.status() == 500);  // still serving what it served; still running
  }
  SECTION("the second after_switch step fails (the reload): current is put back, the first step's output kept") {
    dep["after_switch"] = {web.command({"-t"}), "echo purging; echo 'reload refused' >&2; exit 6"};
    auto a = make(ioc, dep);
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v1", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("after_switch step 2 (echo purging; echo"));
    CHECK_THAT(out.error, Catch::Contains("exited with status 6: reload refused"));
    CHECK_THAT(out.error, Catch::EndsWith("; current was put back to releases/bad2"));
    CHECK_THAT(out.output, Catch::Contains("syntax is ok"));
    CHECK_THAT(out.output, Catch::Contains("current -> releases/bad2 (put back)"));
    CHECK(current_release(web.root) == "bad2");
  }
  SECTION("restore_on_failure false: the link stays on the target, and the error says so") {
    dep["restore_on_failure"] = false;
    auto a = make(ioc, dep);
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v0", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::EndsWith("; current stays on releases/v0 (restore_on_failure is false)"));
    CHECK(current_release(web.root) == "v0");
  }
  SECTION("the plan lists every step") {
    auto a = make(ioc, dep);
    auto plan = a->plan("bad2", "v1", {});
    CHECK_THAT(plan.steps.back(), Catch::Contains("current back to releases/bad2"));
    CHECK_THAT(plan.steps[plan.steps.size() - 2], Catch::Contains("after_switch: " + nginx_binary() + " -c "));
  }
}

TEST_CASE("ssh_symlink with a real nginx: steps run on the host; a failing after_switch step puts the link back", "[webtier]") {
  TempDir dir;
  WebTier web(dir, {{"v0", broken_conf}, {"v1", good_conf("v1")}, {"bad2", bad_conf}}, "bad2");
  Sshd sshd(dir.path / "");
  asio::io_context ioc;
  json dep{{"kind", "ssh_symlink"}, {"host", "127.0.0.1"}, {"port", sshd.port}, {"user", sshd.user},
           {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.known_hosts.string()}, {"path", web.root.string()},
           {"timeout", "10s"}, {"before_switch", {{"test", "-d", "releases/${to}"}}},
           {"after_switch", {web.shell({"-t"}), web.shell({"-s", "reload"})}}};
  auto a = make(ioc, dep);

  SECTION("rolled back: nginx tested and reloaded over SSH, serving the target") {
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v1", {"app", "down", ""})));
    INFO(out.error);
    CHECK(out.ok);
    CHECK(current_release(web.root) == "v1");
    CHECK(wait_until([&] { return web.page().find("<title>release v1") != std::string::npos; }, std::chrono::seconds(10)));
    CHECK_THAT(out.output, Catch::Contains("syntax is ok"));
  }
  SECTION("nginx -t fails on the host: the link is put back and nginx still serves the old config") {
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v0", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("after_switch step 1 ("));
    CHECK_THAT(out.error, Catch::EndsWith("; current was put back to releases/bad2"));
    CHECK(current_release(web.root) == "bad2");
    CHECK(web.status() == 500);
  }
  SECTION("before_switch fails on the host: nothing switched") {
    auto out = run_sync(ioc, a->execute(a->plan("bad2", "v9", {"app", "down", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("before_switch step 1 (test -d releases/v9) exited with status 1"));
    CHECK(current_release(web.root) == "bad2");
  }
}
