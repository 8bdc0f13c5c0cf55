// A kind cannot be half-registered: each row of probes/ and actions/ carries its parser and its
// factory, config/ accepts exactly the kinds of those rows, and a spec of another kind is refused
// as lastgood's bug instead of being misread.
#include <catch2/catch.hpp>

#include <algorithm>

#include <boost/asio/io_context.hpp>

#include "actions/action.hpp"
#include "actions/command.hpp"
#include "config/config.hpp"
#include "probes/http.hpp"
#include "probes/probe.hpp"
#include "probes/prometheus.hpp"
#include "probes/tcp.hpp"
#include "watchdog/validate.hpp"
#include "watchdog/kinds.hpp"

namespace cfg = lastgood::config;
using nlohmann::json;

namespace {
std::vector<std::string> names(const std::vector<cfg::KindParser>& table) {
  std::vector<std::string> out;
  for (const auto& k : table) out.push_back(k.name);
  return out;
}

cfg::LoadResult with_probe(const json& probe) {
  return cfg::load_text(json{{"services", {{{"name", "a"}, {"probes", {probe}}}}}}.dump(), "k.json", lastgood::kinds(),
                        {.resolve_secrets = false});
}
}  // namespace

TEST_CASE("the config accepts exactly the kinds of the probe and action tables", "[kinds]") {
  CHECK(names(lastgood::kinds().probes) == std::vector<std::string>{"http", "tcp", "npm_registry", "prometheus"});
  CHECK(names(lastgood::kinds().deployments) ==
        std::vector<std::string>{"local_symlink", "ssh_symlink", "firebase_hosting", "npm_package", "http_api", "command"});
  auto bad = with_probe({{"name", "p"}, {"kind", "icmp"}});
  REQUIRE_FALSE(bad.config);
  REQUIRE(bad.problems.size() == 1);
  CHECK(bad.problems[0].pointer == "/services/0/probes/0/kind");
  CHECK(bad.problems[0].message.find("expected one of http, tcp, npm_registry") != std::string::npos);
}

TEST_CASE("a kind's keys are read once, into its typed spec, and its factory makes an object of that kind", "[kinds]") {
  auto res = cfg::load_text(json{{"services",
                                  {{{"name", "a"},
                                    {"probes", {{{"name", "p"}, {"kind", "http"}, {"url", "http://127.0.0.1:1/x"}}}},
                                    {"deployment", {{"kind", "command"}, {"rollback", {"/bin/true", "${to}"}}, {"observe", {"/bin/echo", "v1"}}}}}}}}
                                .dump(),
                            "k.json", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  const auto& svc = res.config->services[0];
  CHECK(cfg::spec_as<lastgood::probes::HttpSpec>(svc.probes[0].spec).url == "http://127.0.0.1:1/x");
  const auto& cmd = cfg::spec_as<lastgood::actions::CommandSpec>(svc.deployment->spec);
  CHECK(cmd.rollback == std::vector<std::string>{"/bin/true", "${to}"});
  CHECK(cmd.env_allow == std::vector<std::string>{"PATH"});

  boost::asio::io_context ioc;
  auto probe = lastgood::probes::make_probe(ioc.get_executor(), "a", svc.probes[0]);
  CHECK(probe->spec().kind == "http");
  auto action = lastgood::actions::make_action(ioc.get_executor(), "a", *svc.deployment);
  CHECK(std::string(action->kind()) == "command");
}

TEST_CASE("a spec of another kind, or a kind without a row, is lastgood's bug: refused, never misread", "[kinds]") {
  auto res = with_probe({{"name", "p"}, {"kind", "http"}, {"url", "http://127.0.0.1:1/"}});
  REQUIRE(res.config);
  CHECK_THROWS_AS(cfg::spec_as<lastgood::probes::TcpSpec>(res.config->services[0].probes[0].spec), std::logic_error);

  cfg::Probe orphan = res.config->services[0].probes[0];
  orphan.kind = "icmp";
  boost::asio::io_context ioc;
  CHECK_THROWS_AS(lastgood::probes::make_probe(ioc.get_executor(), "a", orphan), std::logic_error);
}

TEST_CASE("prometheus: the longest range in a query, and a warning when good_after is shorter", "[kinds]") {
  using lastgood::probes::longest_range;
  CHECK(longest_range("sum(rate(x[5m])) / sum(rate(y[1h:1m]))") == cfg::Duration(3'600'000));
  CHECK(longest_range("up") == std::nullopt);
  CHECK(longest_range("x{a=\"[b\"}[") == std::nullopt);
  auto res = cfg::load_text(json{{"services",
                                  {{{"name", "a"},
                                    {"probes", {{{"name", "errors"}, {"kind", "prometheus"}, {"url", "http://127.0.0.1:9090"},
                                                 {"query", "rate(x[30m])"}, {"expect", {{"max", 0.1}}}}}},
                                    {"deployment", {{"kind", "command"}, {"rollback", {"/bin/true"}}, {"observe", {"/bin/echo", "v1"}}}},
                                    {"rollback", {{"good_after", "10m"}}}}}}}
                                .dump(),
                            "k.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(res.config);
  const auto warnings = lastgood::watchdog::security_warnings(*res.config);
  const auto lag = std::find_if(warnings.begin(), warnings.end(), [](const std::string& w) { return w.find("queries a range") != std::string::npos; });
  REQUIRE(lag != warnings.end());
  CHECK_THAT(*lag, Catch::Contains("service a: probe errors queries a range of 30m, longer than rollback.good_after (10m)"));
  auto bad = cfg::load_text(json{{"services", {{{"name", "a"}, {"probes", {{{"name", "p"}, {"kind", "prometheus"}, {"url", "http://h:9090"},
                                                                               {"query", "up"}, {"expect", {{"min", 2}, {"max", 1}}}}}}}}}}
                                .dump(),
                            "k.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(bad.problems.size() == 1);
  CHECK(bad.problems[0].pointer == "/services/0/probes/0/expect/min");
}
