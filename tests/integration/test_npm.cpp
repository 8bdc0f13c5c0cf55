// npm against a real Verdaccio: the npm_registry probe (integrity), rollback by retag +
// deprecate end to end, unpublish within 72 h, a refused token that changes nothing.
#include <catch2/catch.hpp>

#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "probes/probe.hpp"
#include "watchdog/state/ledger.hpp"
#include "watchdog/kinds.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;

namespace {

std::shared_ptr<const lastgood::config::Config> load(const json& service) {
  auto res = lastgood::config::load_text(json{{"services", {service}}}.dump(), "t", lastgood::kinds(), {.resolve_secrets = true});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  return res.config;
}

void tamper_tarball(const Verdaccio& v, const std::string& name, const std::string& version) {
  const fs::path tgz = v.storage / name / (name + "-" + version + ".tgz");
  REQUIRE(fs::exists(tgz));
  write_file(tgz, "this is not the tarball that was published\n");
}

}  // namespace

TEST_CASE("npm_registry probe: ok on an intact release, fail with reason integrity on a tampered tarball", "[npm]") {
  TempDir dir;
  Verdaccio reg(dir.path / "verdaccio");
  reg.publish("demo-pkg", "1.0.0");
  auto c = load({{"name", "lib"},
                 {"probes", {{{"name", "registry"}, {"kind", "npm_registry"}, {"registry", reg.url()}, {"package", "demo-pkg"},
                              {"check_deprecated", true}, {"timeout", "5s"}}}}});
  asio::io_context ioc;
  auto p = lastgood::probes::make_probe(ioc.get_executor(), "lib", c->services[0].probes[0]);
  auto ok = run_sync(ioc, p->run());
  INFO(ok.reason);
  CHECK(ok.outcome == lastgood::probes::Outcome::ok);
  CHECK(ok.observed_release == "1.0.0");
  tamper_tarball(reg, "demo-pkg", "1.0.0");
  auto bad = run_sync(ioc, p->run());
  CHECK(bad.outcome == lastgood::probes::Outcome::fail);
  REQUIRE(bad.failures.size() == 1);
  CHECK(bad.failures[0].condition == "integrity");
  CHECK_THAT(bad.reason, Catch::Contains("does not match dist.integrity"));
}

TEST_CASE("a bad npm release is rolled back end to end: latest back to the good version, the bad one deprecated", "[npm]") {
  TempDir dir;
  Verdaccio reg(dir.path / "verdaccio");
  reg.publish("demo-pkg", "1.0.0");
  Lastgood lg(dir, {{"name", "lib"},
                    {"probes", {{{"name", "registry"}, {"kind", "npm_registry"}, {"registry", reg.url()}, {"package", "demo-pkg"},
                                 {"interval", "300ms"}, {"timeout", "250ms"}}}},
                    {"deployment", {{"kind", "npm_package"}, {"registry", reg.url()}, {"package", "demo-pkg"}, {"token_env", "LASTGOOD_NPM_TOKEN"},
                                    {"strategy", "deprecate"}, {"observe_interval", "500ms"}}},
                    {"triggers", {{{"name", "integrity"}, {"severity", "P0"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 2}}}}}},
                    {"rollback", {{"mode", "auto"}, {"good_after", "1s"}, {"verify", {{"within", "15s"}, {"healthy_samples", 3}}}}}});
  lg.start({{"LASTGOOD_NPM_TOKEN", reg.token}});
  const auto ledger = (lg.state / "ledger.jsonl").string();
  auto has = [&](const std::string& type, const std::string& text) { return lg.has(type, text); };
  REQUIRE(wait_until([&] { return has("release_verified_good", "1.0.0"); }, std::chrono::seconds(30)));
  reg.publish("demo-pkg", "1.1.0");
  tamper_tarball(reg, "demo-pkg", "1.1.0");
  REQUIRE(wait_until([&] { return has("verification", "verified"); }, std::chrono::seconds(40)));
  CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.0.0\""));
  CHECK_THAT(reg.view("demo-pkg", "versions"), Catch::Contains("1.1.0"));  // deprecated, not removed
  auto deprecated = reg.view("demo-pkg@1.1.0", "deprecated");
  CHECK_THAT(deprecated, Catch::Contains("rolled demo-pkg back from 1.1.0 to 1.0.0"));
  CHECK_THAT(lg.log(), Catch::Contains("integrity: 1.1.0: tarball sha512"));
  CHECK(lg.proc->stop() == 0);
  CHECK(lg.log().find(reg.token) == std::string::npos);
  CHECK(read_file(ledger).find(reg.token) == std::string::npos);
}

TEST_CASE("npm unpublish within 72 h removes the bad version; a refused token changes nothing", "[npm]") {
  TempDir dir;
  Verdaccio reg(dir.path / "verdaccio");
  reg.publish("demo-pkg", "1.0.0");
  reg.publish("demo-pkg", "1.1.0");
  ::setenv("LASTGOOD_NPM_TOKEN_T", reg.token.c_str(), 1);
  ::setenv("LASTGOOD_NPM_TOKEN_BAD", "not-a-token", 1);
  auto svc = [&](const std::string& token_env, const std::string& strategy) {
    return json{{"name", "lib"},
                {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}},
                {"deployment", {{"kind", "npm_package"}, {"registry", reg.url()}, {"package", "demo-pkg"}, {"token_env", token_env},
                                {"strategy", strategy}, {"allow_unpublish", true}}}};
  };
  asio::io_context ioc;

  auto bad_cfg = load(svc("LASTGOOD_NPM_TOKEN_BAD", "unpublish"));
  auto bad = lastgood::actions::make_action(ioc.get_executor(), "lib", *bad_cfg->services[0].deployment);
  auto refused = run_sync(ioc, bad->execute(bad->plan("1.1.0", "1.0.0", {})));
  CHECK_FALSE(refused.ok);
  CHECK_THAT(refused.error, Catch::Contains("token was refused"));
  CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.1.0\""));
  CHECK_THAT(reg.view("demo-pkg", "versions"), Catch::Contains("1.1.0"));

  auto cfg = load(svc("LASTGOOD_NPM_TOKEN_T", "unpublish"));
  auto a = lastgood::actions::make_action(ioc.get_executor(), "lib", *cfg->services[0].deployment);
  auto obs = run_sync(ioc, a->observe());
  REQUIRE(obs.live);
  CHECK(obs.live->id == "1.1.0");
  CHECK(obs.live->deployed_at.has_value());  // from the packument's time["1.1.0"]
  auto out = run_sync(ioc, a->execute(a->plan("1.1.0", "1.0.0", {"lib", "integrity", "tarball mismatch"})));
  INFO(out.error);
  CHECK(out.ok);
  CHECK_THAT(out.output, Catch::Contains("unpublished 1.1.0"));
  CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.0.0\""));
  CHECK_THAT(reg.view("demo-pkg", "versions"), !Catch::Contains("1.1.0"));

  // The tag is read just before it is moved: a decision made when 1.1.0 was latest is refused now
  // that latest is 1.0.0, and nothing changes.
  auto stale = run_sync(ioc, a->execute(a->plan("1.1.0", "0.9.0", {})));
  CHECK_FALSE(stale.ok);
  REQUIRE(stale.live_changed);
  CHECK(*stale.live_changed == "1.0.0");
  CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.0.0\""));
}

TEST_CASE("npm: unpublish refused by the registry or past 72 h deprecates instead, recorded; the target's tarball and smoke command are checked before the tag moves",
          "[npm]") {
  TempDir dir;
  Verdaccio reg(dir.path / "verdaccio");
  ::setenv("LASTGOOD_NPM_TOKEN_T", reg.token.c_str(), 1);
  auto deployment = [&](const std::string& package, json extra = json::object()) {
    json d{{"kind", "npm_package"}, {"registry", reg.url()}, {"package", package}, {"token_env", "LASTGOOD_NPM_TOKEN_T"},
           {"strategy", "unpublish"}, {"allow_unpublish", true}};
    d.update(extra);
    return json{{"name", "lib"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", d}};
  };
  asio::io_context ioc;
  auto action = [&](const json& svc) { return lastgood::actions::make_action(ioc.get_executor(), "lib", *load(svc)->services[0].deployment); };

  SECTION("the registry refuses to unpublish: deprecating is tried instead, and the outcome says why") {
    // Verdaccio refuses this package's unpublish (no one may) and, being the same permission
    // there, its deprecation too: the tag is back on the good version, the refusals are said, and
    // the outcome is failed (escalated: a person decides what to do with 1.1.0).
    reg.publish("locked-pkg", "1.0.0");
    reg.publish("locked-pkg", "1.1.0");
    auto a = action(deployment("locked-pkg"));
    auto out = run_sync(ioc, a->execute(a->plan("1.1.0", "1.0.0", {"lib", "errors", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.output, Catch::Contains("the registry refused to unpublish 1.1.0 (removing 1.1.0: HTTP 403"));
    CHECK_THAT(out.output, Catch::Contains("not allowed to unpublish package locked-pkg"));
    CHECK_THAT(out.output, Catch::Contains("; deprecating instead"));
    CHECK_THAT(out.error, Catch::StartsWith("tag moved, deprecating 1.1.0: HTTP 403"));
    CHECK_THAT(reg.view("locked-pkg", "dist-tags.latest"), Catch::Contains("\"1.0.0\""));
    CHECK_THAT(reg.view("locked-pkg", "versions"), Catch::Contains("1.1.0"));
  }
  SECTION("published more than 72 h ago: not unpublished (npm's rule), deprecated, and the age is said") {
    reg.publish("demo-pkg", "1.0.0");
    reg.publish("demo-pkg", "1.1.0");
    // The registry's own record of when 1.1.0 was published, four days back.
    const fs::path meta = reg.storage / "demo-pkg" / "package.json";
    json doc = json::parse(read_file(meta));
    doc["time"]["1.1.0"] = "2026-01-01T00:00:00.000Z";
    write_file(meta, doc.dump());
    auto a = action(deployment("demo-pkg"));
    auto out = run_sync(ioc, a->execute(a->plan("1.1.0", "1.0.0", {"lib", "errors", ""})));
    INFO(out.error);
    CHECK(out.ok);
    CHECK_THAT(out.output, Catch::Contains("not unpublishing 1.1.0: published "));
    CHECK_THAT(out.output, Catch::Contains("h ago (npm allows 72h); deprecating instead"));
    CHECK_THAT(reg.view("demo-pkg", "versions"), Catch::Contains("1.1.0"));
  }
  SECTION("the target's tarball does not match its integrity: the tag never moves") {
    reg.publish("demo-pkg", "1.0.0");
    reg.publish("demo-pkg", "1.1.0");
    tamper_tarball(reg, "demo-pkg", "1.0.0");
    auto a = action(deployment("demo-pkg"));
    auto out = run_sync(ioc, a->execute(a->plan("1.1.0", "1.0.0", {"lib", "errors", ""})));
    CHECK_FALSE(out.ok);
    CHECK_THAT(out.error, Catch::StartsWith("the target demo-pkg@1.0.0 failed its check: tarball "));
    CHECK_THAT(out.error, Catch::EndsWith("; nothing was changed"));
    CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.1.0\""));
  }
  SECTION("the smoke command runs in the unpacked target: passing, the rollback goes on; failing, nothing changes") {
    reg.publish("demo-pkg", "1.0.0");
    reg.publish("demo-pkg", "1.1.0");
    auto failing = action(deployment("demo-pkg", {{"strategy", "retag"}, {"allow_unpublish", false},
                                                  {"verify", {{"command", {"node", "-e", "require('./no-such-module')"}}, {"timeout", "30s"}}}}));
    auto refused = run_sync(ioc, failing->execute(failing->plan("1.1.0", "1.0.0", {})));
    CHECK_FALSE(refused.ok);
    CHECK_THAT(refused.error, Catch::Contains("the smoke command `node -e require('./no-such-module')` exit status 1"));
    CHECK_THAT(refused.error, Catch::Contains("Cannot find module"));
    CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.1.0\""));
    auto passing = action(deployment("demo-pkg", {{"strategy", "retag"}, {"allow_unpublish", false},
                                                  {"verify", {{"command", {"node", "-e", "const p = require('./package.json'); if (p.version !== process.env.LASTGOOD_VERSION) process.exit(5)"}}}}}));
    auto out = run_sync(ioc, passing->execute(passing->plan("1.1.0", "1.0.0", {})));
    INFO(out.error);
    CHECK(out.ok);
    CHECK_THAT(out.output, Catch::Contains("tarball of 1.0.0 matches its integrity"));
    CHECK_THAT(out.output, Catch::Contains("on 1.0.0: exit status 0"));
    CHECK_THAT(reg.view("demo-pkg", "dist-tags.latest"), Catch::Contains("\"1.0.0\""));
  }
}
