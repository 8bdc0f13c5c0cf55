// A crash or a person at the wrong moment: lastgood killed between a decision and its action,
// after the action or after the verification; a deploy between an approval and the switch; a
// stale proposal. Restarts never act twice, and nothing undoes a newer release.
#include <catch2/catch.hpp>

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <unistd.h>

#include <mutex>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "probes/probe.hpp"
#include "watchdog/kinds.hpp"
#include "watchdog/state/ledger.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;

TEST_CASE("a stale proposal never undoes a newer release: a hand deploy makes it stale and approving it answers 409", "[faults]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2", "v3"});
  Lastgood lg(dir, strict_app(site.url(), site.local_symlink({{"observe_interval", "200ms"}}), json::array(), "approve"),
              alice_approves_p0());
  lg.start({{"LG_TEST_TOKEN", "alice-secret-token"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("proposal_created"));
  const std::string id = lg.last("proposal_created", "id");
  switch_current(site.root, "v3");  // a person deploys a fix by hand
  REQUIRE(lg.wait_for("proposal_state", [&](const json& d) { return d.value("id", "") == id && d.value("state", "") == "stale"; }));

  auto res = http_call(lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "alice-secret-token", "{}");
  CHECK(res.status == 409);
  CHECK_THAT(res.body, Catch::Contains("stale"));
  CHECK(current_release(site.root) == "v3");
  CHECK(lg.count("action_started") == 0);
}

TEST_CASE("crash after the execute decision, before action_started: the restart decides again and rolls back once", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, strict_app(site.url(), site.local_symlink()));
  lg.start({{"LASTGOOD_TEST_CRASH_AFTER", "decision"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  CHECK(lg.count("action_started") == 0);

  lg.start();  // the cooldown did not start: no action was
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, std::chrono::seconds(30)));
  CHECK(current_release(site.root) == "v1");
  CHECK(lg.count("action_started") == 1);
}

TEST_CASE("a ledger in segments: a restart from a snapshot that carries an action cut short by a crash reconciles it, never runs it again",
          "[crash][segments]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, strict_app(site.url(), site.local_symlink()), {{"ledger", {{"segment_entries", 0}}}});
  lg.start({{"LASTGOOD_TEST_CRASH_AFTER", "action_started"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  const std::string id = lg.last("action_started", "action_id");
  REQUIRE_FALSE(id.empty());
  CHECK(current_release(site.root) == "bad2");  // stopped dead before the switch
  const auto before = lg.ledger().size();
  REQUIRE(before >= 10);

  // Segments of 10 entries from now on: the restart seals the full ledger before it appends
  // anything, and its snapshot must carry the action that was started and never finished.
  json cfg = json::parse(read_file(lg.config));
  cfg["ledger"]["segment_entries"] = 10;
  write_file(lg.config, cfg.dump());
  lg.start({{"LASTGOOD_TEST_CRASH_AFTER", "rotate:done"}});
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  const auto sealed = lastgood::watchdog::sealed_segments((lg.state / "ledger.jsonl").string());
  REQUIRE(sealed.size() == 1);
  const std::string active = read_file(lg.state / "ledger.jsonl");
  const json snapshot = json::parse(active.substr(0, active.find('\n')));
  REQUIRE(snapshot["type"] == "snapshot");
  CHECK(snapshot["seq"] == before + 1);
  bool carried = false;
  for (const auto& c : snapshot["data"]["carried"]) carried = carried || (c["type"] == "action_started" && c["data"]["action_id"] == id);
  CHECK(carried);
  CHECK(lg.count("action_reconciled") == 0);

  // The third run reads the active segment only: the action is reconciled from the snapshot (the
  // live release is still bad2: interrupted, so the service is escalated for a person, as without
  // segments), and nothing is run again.
  lg.start();
  REQUIRE(lg.wait_for("action_reconciled", [&](const json& d) { return d.value("action_id", "") == id; }));
  REQUIRE(lg.wait_for("escalated"));
  CHECK(current_release(site.root) == "bad2");
  CHECK(lg.count("action_started") == 1);
  CHECK(lg.count("action_reconciled") == 1);
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (lg.state / "ledger.jsonl").string()}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("in 1 sealed segment(s) and the active file, chain intact"));
  CHECK_THAT(lg.log(), Catch::Contains("resumed from the snapshot at entry " + std::to_string(before + 1)));
  // A sealed segment changed after the fact: verify names the file and its line.
  const auto lines = read_file(sealed[0]);
  std::string changed = lines;
  changed.replace(changed.find("\"release\":\"v1\""), 15, "\"release\":\"v9\"");
  write_file(sealed[0], changed);
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (lg.state / "ledger.jsonl").string()}, &out) == 1);
  CHECK_THAT(out, Catch::StartsWith(sealed[0] + ": line "));
  CHECK_THAT(out, Catch::Contains("hash mismatch"));
}

TEST_CASE("crash after a proposal was approved, before its action started: checked again after the restart, carried out once", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  Lastgood lg(dir, strict_app(site.url(), site.local_symlink({{"observe_interval", "200ms"}}), json::array(), "approve"),
              alice_approves_p0());
  // proposal_state entries: approved (1st), executing (2nd). Stop dead right after "approved".
  lg.start({{"LG_TEST_TOKEN", "alice-secret-token"}, {"LASTGOOD_TEST_CRASH_AFTER", "proposal_state:1"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("proposal_created"));
  const std::string id = lg.last("proposal_created", "id");
  http_call(lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "alice-secret-token", "{}");  // the process dies answering
  REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(20)));
  CHECK(lg.proc->stop() == 99);
  CHECK(lg.count("action_started") == 0);

  lg.start({{"LG_TEST_TOKEN", "alice-secret-token"}});
  REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, std::chrono::seconds(30)));
  CHECK(current_release(site.root) == "v1");
  CHECK(lg.count("action_started") == 1);
  bool failed = false;
  for (const auto& e : lg.ledger())
    if (e.type == "proposal_state" && e.data.value("state", "") == "failed") failed = true;
  CHECK_FALSE(failed);
}

TEST_CASE("every symlink kind compares the live release with `from` just before its switch and refuses when a person deployed since",
          "[faults][ssh]") {
  TempDir dir;
  const fs::path site = dir.path / "app";
  make_releases(site, {"v1", "bad2", "v3"});
  asio::io_context ioc;
  auto load_dep = [](const json& dep) {
    auto res = lastgood::config::load_text(
        json{{"services", {{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", dep}}}}}.dump(),
        "t", lastgood::kinds(), {.resolve_secrets = true});
    for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
    REQUIRE(res.config);
    return res.config;
  };

  SECTION("local_symlink: readlink under flock on the deployment folder") {
    auto cfg = load_dep({{"kind", "local_symlink"}, {"path", site.string()}});
    auto a = lastgood::actions::make_action(ioc.get_executor(), "app", *cfg->services[0].deployment);
    switch_current(site, "v3");  // the decision said bad2 -> v1; a person deployed v3 since
    auto refused = run_sync(ioc, a->execute(a->plan("bad2", "v1", {})));
    CHECK_FALSE(refused.ok);
    REQUIRE(refused.live_changed);
    CHECK(*refused.live_changed == "v3");
    CHECK(current_release(site) == "v3");

    // A deploy script holding the folder's lock (flock /srv/app ...): the switch waits for it.
    switch_current(site, "bad2");
    const int held = ::open(site.c_str(), O_RDONLY | O_DIRECTORY);
    REQUIRE(held >= 0);
    REQUIRE(::flock(held, LOCK_EX) == 0);
    std::optional<lastgood::actions::Outcome> out;
    const auto plan = a->plan("bad2", "v1", {});  // execute() takes it by reference: it must outlive the run
    asio::co_spawn(ioc, a->execute(plan), [&](std::exception_ptr e, lastgood::actions::Outcome o) {
      if (e) o.error = "threw";
      out = o;
    });
    ioc.restart();
    ioc.run_for(std::chrono::milliseconds(300));
    CHECK_FALSE(out);  // still waiting for the lock
    CHECK(current_release(site) == "bad2");
    ::close(held);  // the deploy script is done
    ioc.run();
    REQUIRE(out);
    INFO(out->error);
    CHECK(out->ok);
    CHECK(current_release(site) == "v1");
  }

  SECTION("ssh_symlink: checked in the same remote command as the switch") {
    Sshd sshd(dir.path / "");
    auto cfg = load_dep({{"kind", "ssh_symlink"}, {"host", "127.0.0.1"}, {"port", sshd.port}, {"user", sshd.user},
                         {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.known_hosts.string()}, {"path", site.string()},
                         {"after_switch", {"touch switched"}}, {"timeout", "5s"}});
    auto a = lastgood::actions::make_action(ioc.get_executor(), "app", *cfg->services[0].deployment);
    switch_current(site, "v3");
    auto refused = run_sync(ioc, a->execute(a->plan("bad2", "v1", {})));
    INFO(refused.error << "\n" << refused.output);
    CHECK_FALSE(refused.ok);
    REQUIRE(refused.live_changed);
    CHECK(*refused.live_changed == "v3");
    CHECK(current_release(site) == "v3");
    CHECK_FALSE(fs::exists(site / "switched"));  // no after_switch step ran either
    switch_current(site, "bad2");
    auto done = run_sync(ioc, a->execute(a->plan("bad2", "v1", {})));
    INFO(done.error);
    CHECK(done.ok);
    CHECK_FALSE(done.live_changed);
    CHECK(current_release(site) == "v1");
  }
}

// The remaining entries of a rollback (decision, approval, action_started and the switch are
// above and in test_rollback.cpp): after each, a restart gives exactly one effect and a full
// incident record.
TEST_CASE("crash after action_finished or after the verification: one switch, and the incident record tells the whole story", "[crash]") {
  for (const std::string point : {"action_finished", "verification"}) {
    DYNAMIC_SECTION("stopped dead after " << point) {
      TempDir dir;
      Site site(dir, {"v1", "bad2"});
      Lastgood lg(dir, strict_app(site.url(), site.local_symlink()));
      lg.start({{"LASTGOOD_TEST_CRASH_AFTER", point}});
      REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
      switch_current(site.root, "bad2");
      REQUIRE(wait_until([&] { return !lg.proc->running(); }, std::chrono::seconds(30)));
      CHECK(lg.proc->stop() == 99);
      CHECK(current_release(site.root) == "v1");
      CHECK(lg.count("action_started") == 1);

      lg.start();
      REQUIRE(lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, std::chrono::seconds(30)));
      CHECK(lg.count("verification") == 1);  // verified once, by whichever process got there
      CHECK(lg.count("action_started") == 1);  // never switched a second time
      CHECK(current_release(site.root) == "v1");
      CHECK(lg.incident_events() == std::vector<std::string>{"breach", "decision", "action_started", "action_finished", "verification"});
      CHECK(lg.ledger_verifies());
    }
  }
}

TEST_CASE("a deploy between the approval and the switch: the kind's own read refuses it, the proposal is stale, nothing changes",
          "[faults]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2", "v3"});
  // A `command` deployment observed once an hour: lastgood's own idea of the live release lags,
  // only the kind's read just before its switch can see the hand deploy.
  const std::string cd = "cd '" + site.root.string() + "' && ";
  json dep{{"kind", "command"},
           {"observe", {"/bin/sh", "-c", cd + "basename \"$(readlink current)\""}},
           {"rollback", {"/bin/sh", "-c", cd + "ln -sfn releases/${to} current.tmp && mv -T current.tmp current && echo switched > rolled"}},
           {"observe_interval", "1h"}};
  Lastgood lg(dir, strict_app(site.url(), dep, json::array(), "approve"), alice_approves_p0());
  lg.start({{"LG_TEST_TOKEN", "alice-secret-token"}});
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");  // the breach re-reads the live release: the proposal is bad2 -> v1
  REQUIRE(lg.wait_for("proposal_created"));
  std::string id;
  for (const auto& e : lg.ledger())
    if (e.type == "proposal_created") {
      id = e.data["id"];
      CHECK(e.data["decision"]["release_from"] == "bad2");
    }
  switch_current(site.root, "v3");  // a person deploys the fix; lastgood will not observe it for an hour
  auto res = http_call(lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "alice-secret-token", "{}");
  CHECK(res.status == 202);  // lastgood's own view still says bad2: the action starts ...
  REQUIRE(lg.wait_for("action_finished"));
  for (const auto& e : lg.ledger())
    if (e.type == "action_finished") {  // ... and the kind's read just before the switch refuses
      CHECK(e.data["ok"] == false);
      CHECK(e.data["refused_live"] == "v3");
    }
  REQUIRE(lg.wait_for("proposal_state", [&](const json& d) { return d.value("id", "") == id && d.value("state", "") == "stale"; }));
  CHECK(current_release(site.root) == "v3");
  CHECK_FALSE(fs::exists(site.root / "rolled"));  // the rollback command never ran
  const auto m = http_call(lg.port(), "GET", "/metrics").body;
  CHECK(metric(m, "lastgood_rollbacks_total{deployment=\"command\",outcome=\"refused\",service=\"app\"}") == 1);
}


TEST_CASE("SIGTERM during a rollback: the switch is finished and recorded before exit, and the restart does not act again", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1", "bad2"});
  const std::string root = site.root.string();
  // A rollback that takes 2 s, as a deploy tool's would: the signal arrives while it runs.
  json dep{{"kind", "command"},
           {"observe_interval", "200ms"},
           {"observe", {"/bin/sh", "-c", "basename \"$(readlink " + root + "/current)\""}},
           {"rollback", {"/bin/sh", "-c", "sleep 2 && ln -sfn releases/${to} " + root + "/current.tmp && mv -Tf " + root + "/current.tmp " + root + "/current"}}};
  Lastgood lg(dir, strict_app(site.url(), dep));
  lg.start();
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  switch_current(site.root, "bad2");
  REQUIRE(lg.wait_for("action_started"));
  const auto t0 = std::chrono::steady_clock::now();
  const auto st = lg.proc->signal_and_wait(SIGTERM, std::chrono::seconds(20));
  REQUIRE(st.has_value());
  CHECK(*st == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(10));  // waited for the rollback, not for the grace
  CHECK(current_release(site.root) == "v1");  // the switch was completed, not abandoned half-done
  CHECK(lg.has("action_finished", "\"ok\":true"));
  CHECK_THAT(lg.log(), Catch::Contains("1 rollback(s) under way: waiting up to 30s"));
  // A restart finds the action finished: nothing to reconcile, no second switch.
  lg.start();
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  CHECK(lg.count("action_started") == 1);
  CHECK(lg.count("action_reconciled") == 0);
  CHECK(lg.ledger_verifies());
}

TEST_CASE("SIGTERM with nothing under way: probes and observing are cancelled and lastgood exits at once", "[crash]") {
  TempDir dir;
  Site site(dir, {"v1"});
  Lastgood lg(dir, strict_app(site.url(), site.local_symlink({{"observe_interval", "200ms"}})));
  lg.start();
  REQUIRE(lg.wait_for("release_verified_good", release_is("v1")));
  const auto t0 = std::chrono::steady_clock::now();
  const auto st = lg.proc->signal_and_wait(SIGTERM, std::chrono::seconds(5));
  REQUIRE(st.has_value());
  CHECK(*st == 0);
  CHECK(std::chrono::steady_clock::now() - t0 < std::chrono::seconds(1));
  CHECK_THAT(lg.log(), !Catch::Contains("rollback(s) under way"));
  CHECK_THAT(lg.log(), !Catch::Contains("internal error"));  // a cancelled coroutine is not one
}
