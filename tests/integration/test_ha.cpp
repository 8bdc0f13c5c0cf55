// Several lastgood replicas on a real 3-member etcd (ha.md's test table): one owner per service,
// one effect per breach, take-over on SIGTERM, kill -9 and SIGSTOP, no action without a quorum.
// Effects are counted on the target (a deployment API that counts its rollbacks and keeps the
// highest fencing token it has seen), never from lastgood's own logs.
#include <catch2/catch.hpp>

#include <signal.h>

#include <atomic>
#include <chrono>
#include <mutex>
#include <map>
#include <optional>
#include <set>
#include <thread>

#include <boost/asio/io_context.hpp>
#include <nlohmann/json.hpp>

#include "actions/action.hpp"
#include "config/config.hpp"
#include "fixtures.hpp"
#include "watchdog/ha/placement.hpp"
#include "watchdog/kinds.hpp"
#include "watchdog/api/server.hpp"

using namespace testing;
using nlohmann::json;
using lastgood::watchdog::HttpReq;
using lastgood::watchdog::HttpRes;
using namespace std::chrono_literals;

namespace {

// The target: GET / serves the live release's page (no <title> for a "bad*" release), GET
// /release says which is live, POST /rollback switches it. A rollback carries the action's
// fencing token: one lower than the highest seen is refused with 409 (a target that checks, as
// ha.md says). Every rollback that changed something is an effect, with its token.
struct Target {
  std::mutex mu;
  std::string live = "v1";
  std::int64_t highest = 0;
  std::vector<std::int64_t> effects;  // the token of each rollback applied
  int refused = 0;
  std::atomic<int> received{0};  // rollback requests that arrived (applied or not yet)
  std::chrono::milliseconds hold{0};  // how long a rollback request is held before it is applied

  Target() {
    site.emplace([this](const HttpReq& r) { return serve(r); });
    api.emplace([this](const HttpReq& r) { return rollback(r); });
  }
  std::string url(const std::string& path) const { return "http://127.0.0.1:" + std::to_string(site->port()) + path; }
  void deploy(const std::string& v) {
    std::lock_guard lk(mu);
    live = v;
  }
  std::vector<std::int64_t> applied() {
    std::lock_guard lk(mu);
    return effects;
  }
  std::string now_live() {
    std::lock_guard lk(mu);
    return live;
  }
  HttpRes serve(const HttpReq& r) {
    std::lock_guard lk(mu);
    if (r.target == "/release") return {200, "application/json", json{{"version", live}}.dump()};
    return {200, "text/html", live.rfind("bad", 0) == 0 ? "<p>broken</p>" : "<title>" + live + "</title>"};
  }
  HttpRes rollback(const HttpReq& r) {
    std::chrono::milliseconds h;
    {
      std::lock_guard lk(mu);
      h = hold;
    }
    ++received;
    std::this_thread::sleep_for(h);  // this server's own thread: the site answers meanwhile
    auto b = json::parse(r.body, nullptr, false);
    if (!b.is_object() || !b.contains("version") || !b.contains("fence")) return HttpRes::json_error(400, "need version and fence");
    const std::int64_t fence = std::stoll(b["fence"].get<std::string>());
    std::lock_guard lk(mu);
    if (fence < highest) {
      ++refused;
      return HttpRes::json_error(409, "fencing token " + std::to_string(fence) + " is lower than " + std::to_string(highest));
    }
    highest = fence;
    live = b["version"].get<std::string>();
    effects.push_back(fence);
    return {200, "application/json", json{{"ok", true}}.dump()};
  }
  std::optional<HttpTestServer> site, api;  // last: stopped before what their handlers use
};

json deployment(const Target& t) {
  const std::string api = "http://127.0.0.1:" + std::to_string(t.api->port()) + "/rollback";
  return {{"kind", "http_api"},
          {"observe_interval", "300ms"},
          {"timeout", "4s"},
          {"rollback", {{"url", api}, {"body", {{"version", "${to}"}, {"fence", "${fence}"}}}}},
          {"observe", {{"url", t.url("/release")}, {"json_pointer", "/version"}}}};
}

json ha_block(const Etcd& etcd, const std::string& replica, int shards = 1) {
  return {{"etcd", etcd.endpoints()}, {"cluster", "t"},           {"replica", replica}, {"shards", shards},
          {"lease", "5s"},            {"renew_deadline", "3s"}, {"retry", "500ms"}};
}

// One replica of the app, in a directory of its own.
struct Replica {
  TempDir dir;
  Lastgood lg;
  Replica(const Target& t, const Etcd& etcd, const std::string& id, json extra = json::object(), std::string mode = "auto")
      : lg(dir, app_service(t.url("/"), deployment(t), App{.mode = mode, .good_after = "500ms", .cooldown = "1m"}), with_ha(extra, etcd, id)) {}
  static json with_ha(json extra, const Etcd& etcd, const std::string& id) {
    extra["ha"] = ha_block(etcd, id);
    return extra;
  }
  std::string readyz() { return http_call(lg.port(), "GET", "/readyz").body; }
  bool owner() { return readyz().find("owner") != std::string::npos; }
};

// Two approvers (alice, bob: oncall), a P0 needs both.
json two_approvers() {
  return {{"approvers",
           json::array({{{"name", "alice"}, {"roles", {"oncall"}}, {"token_env", "LG_ALICE"}}, {{"name", "bob"}, {"roles", {"oncall"}}, {"token_env", "LG_BOB"}}})},
          {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 2}, {"auto", false}}}}}};
}
const std::map<std::string, std::string> kTokens{{"LG_ALICE", "alice-token-0123456789abcdef"}, {"LG_BOB", "bob-token-0123456789abcdef0"}};

// Which of the replicas owns the (only) shard, waiting for one to; -1 when none does in time.
int owner_of(std::vector<Replica*> rs, std::chrono::milliseconds timeout = 15s) {
  int found = -1;
  wait_until(
      [&] {
        for (size_t i = 0; i < rs.size(); ++i)
          if (rs[i]->lg.proc && rs[i]->lg.proc->running() && rs[i]->owner()) found = static_cast<int>(i);
        return found >= 0;
      },
      timeout);
  return found;
}

// Two replicas of the app, started; which one owns the shard once one does (-1: none in time).
struct Pair {
  Replica a, b;
  int o = -1;
  Pair(const Target& t, const Etcd& etcd, json extra = json::object(), const std::string& mode = "auto",
       const std::map<std::string, std::string>& env = {})
      : a(t, etcd, "a", extra, mode), b(t, etcd, "b", extra, mode) {
    a.lg.start(env);
    b.lg.start(env);
    o = owner_of({&a, &b});
  }
  Replica& owner() { return o == 0 ? a : b; }
  Replica& standby() { return o == 0 ? b : a; }
};

}  // namespace

TEST_CASE("one breach, two replicas: exactly one effect, by the owner under its fence; the standby holds", "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  t.hold = 1500ms;  // long enough for the standby to see the breach fire too
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  const int o = pair.o;
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  CHECK_THAT(standby.readyz(), Catch::Contains("ready (standby)"));
  CHECK(metric(http_call(owner.lg.port(), "GET", "/metrics").body, "lastgood_ha_owner{shard=\"0\"}") == 1);
  CHECK(metric(http_call(standby.lg.port(), "GET", "/metrics").body, "lastgood_ha_owner{shard=\"0\"}") == 0);
  REQUIRE(owner.lg.wait_for("release_verified_good", release_is("v1")));
  REQUIRE(standby.lg.wait_for("release_verified_good", release_is("v1")));

  t.deploy("bad2");
  REQUIRE(owner.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, 30s));
  CHECK(t.now_live() == "v1");
  // The standby saw the same breach and held it.
  REQUIRE(standby.lg.wait_for("decision", [](const json& d) { return d.value("reason", "").find("standby") != std::string::npos; }));
  const auto effects = t.applied();
  REQUIRE(effects.size() == 1);
  CHECK(standby.lg.count("action_started") == 0);
  REQUIRE(owner.lg.count("action_started") == 1);
  // The token on the action in the ledger is the one the target saw: the intent's etcd revision.
  json started;
  for (const auto& e : owner.lg.ledger())
    if (e.type == "action_started") started = e.data;
  CHECK(started.value("replica", "") == (o == 0 ? "a" : "b"));
  CHECK(started.value("fence", std::int64_t{0}) == effects[0]);
  CHECK(started.value("etcd_rev", std::int64_t{0}) == effects[0]);
  CHECK(owner.lg.has("ha_acquired"));
  CHECK(owner.lg.ledger_verifies());
  CHECK(standby.lg.ledger_verifies());
}

TEST_CASE("SIGTERM the owner: the standby takes over within a second", "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  REQUIRE(wait_until([&] { return standby.readyz().find("standby") != std::string::npos; }, 10s));
  REQUIRE(standby.lg.wait_for("release_verified_good", release_is("v1")));
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(owner.lg.proc->stop() == 0);
  REQUIRE(standby.lg.wait_for("ha_acquired", {}, 10s));
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("take-over after SIGTERM: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took <= 1s);
  CHECK(owner.lg.has("ha_lost", "resigned"));
  CHECK(metric(http_call(standby.lg.port(), "GET", "/metrics").body, "lastgood_ha_transitions_total{event=\"acquired\"}") == 1);
  // The new owner acts on the next breach.
  t.deploy("bad2");
  REQUIRE(standby.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, 30s));
  CHECK(t.applied().size() == 1);
}

TEST_CASE("kill -9 the owner mid-action: the new owner reconciles the action, never runs it again; one effect", "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  t.hold = 3s;  // the rollback request is held 3 s before it is applied
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  REQUIRE(owner.lg.wait_for("release_verified_good", release_is("v1")));
  REQUIRE(standby.lg.wait_for("release_verified_good", release_is("v1")));
  t.deploy("bad2");
  REQUIRE(owner.lg.wait_for("action_started", {}, 20s));
  REQUIRE(wait_until([&] { return t.received > 0; }, 10s));  // the request is at the target, held
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(owner.lg.proc->pid(), SIGKILL);
  // A new owner within TTL + retry (5 s + 0.5 s; a second of slack for the loaded machine).
  REQUIRE(standby.lg.wait_for("ha_acquired", {}, 10s));
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("take-over after kill -9: " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took <= 6500ms);
  // Reconciled after the kind's timeout (4 s) + 2 s: the held request had switched the target.
  REQUIRE(standby.lg.wait_for("action_reconciled", [](const json& d) { return d.value("switched", false); }, 20s));
  REQUIRE(standby.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, 30s));
  CHECK(standby.lg.count("action_started") == 0);
  CHECK(t.applied().size() == 1);
  CHECK(t.now_live() == "v1");
  CHECK(standby.lg.ledger_verifies());
}

TEST_CASE("SIGSTOP the owner past its lease: the standby takes over and acts; the old owner, resumed, records ha_lost and does nothing",
          "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  REQUIRE(standby.lg.wait_for("release_verified_good", release_is("v1")));
  ::kill(owner.lg.proc->pid(), SIGSTOP);
  REQUIRE(standby.lg.wait_for("ha_acquired", {}, 12s));
  t.deploy("bad2");
  REQUIRE(standby.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, 30s));
  const auto new_token = standby.lg.last("action_started", "fence");
  ::kill(owner.lg.proc->pid(), SIGCONT);
  REQUIRE(owner.lg.wait_for("ha_lost", {}, 10s));
  REQUIRE(wait_until([&] { return owner.readyz().find("standby") != std::string::npos; }, 15s));
  CHECK(owner.lg.count("action_started") == 0);
  const auto effects = t.applied();
  REQUIRE(effects.size() == 1);
  CHECK(std::to_string(effects[0]) == new_token);
}

TEST_CASE("2 of 3 etcd members stopped: the owner steps down within the renew deadline, a breach is held; after, one owner and one effect",
          "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  Replica& owner = pair.owner();
  REQUIRE(owner.lg.wait_for("release_verified_good", release_is("v1")));
  etcd.stop(1);
  etcd.stop(2);
  const auto t0 = std::chrono::steady_clock::now();
  REQUIRE(owner.lg.wait_for("ha_lost", {}, 10s));
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("stepped down after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took <= 5s);  // renew deadline 3 s, the lease's local deadline (TTL - 1 s) at most 4 s after the last keepalive
  CHECK(http_call(owner.lg.port(), "GET", "/readyz").status == 503);
  t.deploy("bad2");
  REQUIRE(owner.lg.wait_for("decision", [](const json& d) { return d.value("reason", "").find("standby") != std::string::npos; }, 15s));
  CHECK(t.applied().empty());
  etcd.cont(1);
  etcd.cont(2);
  // One owner again, and the breach still firing is acted on once.
  REQUIRE(wait_until([&] { return t.applied().size() == 1; }, 30s));
  REQUIRE(wait_until([&] { return pair.a.lg.has("verification", "verified") || pair.b.lg.has("verification", "verified"); }, 30s));
  CHECK(t.applied().size() == 1);
  CHECK(pair.a.lg.count("action_started") + pair.b.lg.count("action_started") == 1);
}

namespace {

// Which shards a replica's /readyz says it owns ("owner of shard 0,3,5").
std::set<int> shards_of(Lastgood& lg) {
  std::set<int> out;
  const std::string body = http_call(lg.port(), "GET", "/readyz").body;
  const auto at = body.find("owner of shard ");
  if (at == std::string::npos) return out;
  std::string list = body.substr(at + 15);
  list = list.substr(0, list.find(')'));
  size_t i = 0;
  while (i < list.size()) {
    const size_t comma = list.find(',', i);
    out.insert(std::stoi(list.substr(i, comma - i)));
    if (comma == std::string::npos) break;
    i = comma + 1;
  }
  return out;
}

}  // namespace

TEST_CASE("shards: 3 replicas, 8 shards, 300 services: every shard owned by exactly one replica; a killed replica's shards move",
          "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  json services = json::array();
  for (int i = 0; i < 300; ++i)
    services.push_back({{"name", "svc-" + std::to_string(i)},
                        {"probes", {{{"name", "home"}, {"kind", "http"}, {"url", t.url("/")}, {"interval", "5s"}, {"timeout", "1s"}}}}});
  std::vector<std::unique_ptr<TempDir>> dirs;
  std::vector<std::unique_ptr<Lastgood>> rs;
  for (const char* id : {"a", "b", "c"}) {
    dirs.push_back(std::make_unique<TempDir>());
    rs.push_back(std::make_unique<Lastgood>(*dirs.back(), Lastgood::Config{{{"services", services}, {"ha", ha_block(etcd, id, 8)}}}));
    rs.back()->start();
  }
  // Spread: the rendezvous order gives each replica some shards first; together all 8, once each.
  auto owners = [&](const std::vector<size_t>& live) {
    std::map<int, int> count;
    for (size_t i : live)
      for (int k : shards_of(*rs[i])) ++count[k];
    return count;
  };
  auto all_once = [&](const std::vector<size_t>& live) {
    const auto c = owners(live);
    if (c.size() != 8) return false;
    for (const auto& [k, n] : c)
      if (n != 1) return false;
    return true;
  };
  REQUIRE(wait_until([&] { return all_once({0, 1, 2}); }, 20s));
  // Whoever started first, the shards settle where the rendezvous order puts them (a replica
  // hands over a shard whose first replica has joined), once each all along.
  const std::vector<std::string> ids{"a", "b", "c"};
  auto settled = [&] {
    for (size_t i = 0; i < 3; ++i) {
      std::set<int> expected;
      for (int k = 0; k < 8; ++k)
        if (lastgood::watchdog::ha::campaign_order(k, ids)[0] == ids[i]) expected.insert(k);
      if (shards_of(*rs[i]) != expected) return false;
    }
    return true;
  };
  REQUIRE(wait_until([&] { return all_once({0, 1, 2}) && settled(); }, 20s));
  CHECK(all_once({0, 1, 2}));
  const auto lost = shards_of(*rs[0]);
  const auto t0 = std::chrono::steady_clock::now();
  ::kill(rs[0]->proc->pid(), SIGKILL);
  REQUIRE(wait_until([&] { return all_once({1, 2}); }, 15s));
  const auto took = std::chrono::steady_clock::now() - t0;
  INFO("shards of the killed replica moved after " << std::chrono::duration_cast<std::chrono::milliseconds>(took).count() << " ms");
  CHECK(took <= 6500ms);  // TTL 5 s + retry 0.5 s, and slack for a loaded machine
  // The killed replica's shards are among those that moved.
  const auto now_owned = owners({1, 2});
  for (int k : lost) CHECK(now_owned.count(k) == 1);
}

namespace {

std::shared_ptr<const lastgood::config::Config> load_deployment(const json& dep) {
  json doc{{"services", {{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}}, {"deployment", dep}}}}};
  auto res = lastgood::config::load_text(doc.dump(), "t", lastgood::kinds(), {.resolve_secrets = true});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  return res.config;
}

// A fenced switch, as the pipeline makes it: the plan of `from -> to` carrying `token`.
lastgood::actions::Outcome fenced_switch(boost::asio::io_context& ioc, lastgood::actions::Action& a, std::int64_t token) {
  auto plan = a.plan("bad2", "v1", {});
  plan.fence = token;
  plan.action_id = "a-" + std::to_string(token);
  return run_sync(ioc, a.execute(plan));
}

void symlink_fencing(boost::asio::io_context& ioc, lastgood::actions::Action& a, const fs::path& site) {
  switch_current(site, "bad2");
  auto first = fenced_switch(ioc, a, 40);
  INFO(first.error << "\n" << first.output);
  REQUIRE(first.ok);
  CHECK(current_release(site) == "v1");
  CHECK(read_file(site / ".lastgood-fence") == "40\n");
  // An older owner's token, late: refused by the target, nothing changed.
  switch_current(site, "bad2");
  auto late = fenced_switch(ioc, a, 39);
  INFO(late.error);
  CHECK_FALSE(late.ok);
  CHECK_THAT(late.error, Catch::Contains("holds token 40") && Catch::Contains("not lower than this action's 39"));
  CHECK(current_release(site) == "bad2");
  CHECK(read_file(site / ".lastgood-fence") == "40\n");
  // The same token again is refused too (strictly increasing).
  CHECK_FALSE(fenced_switch(ioc, a, 40).ok);
  // A garbage fence file is not taken for a low token.
  write_file(site / ".lastgood-fence", "x\n");
  auto garbage = fenced_switch(ioc, a, 41);
  CHECK_FALSE(garbage.ok);
  CHECK(current_release(site) == "bad2");
  // A newer token switches, and is stored.
  write_file(site / ".lastgood-fence", "40\n");
  auto newer = fenced_switch(ioc, a, 41);
  INFO(newer.error);
  CHECK(newer.ok);
  CHECK(current_release(site) == "v1");
  CHECK(read_file(site / ".lastgood-fence") == "41\n");
  // Without a token (a single replica), the fence file is neither checked nor written.
  switch_current(site, "bad2");
  auto single = run_sync(ioc, a.execute(a.plan("bad2", "v1", {})));
  CHECK(single.ok);
  CHECK(read_file(site / ".lastgood-fence") == "41\n");
}

}  // namespace

TEST_CASE("local_symlink fencing: the token beside current must grow; a lower or equal one is refused by the target", "[ha]") {
  TempDir dir;
  const fs::path site = dir.path / "app";
  make_releases(site, {"v1", "bad2"});
  boost::asio::io_context ioc;
  auto cfg = load_deployment({{"kind", "local_symlink"}, {"path", site.string()}});
  auto a = lastgood::actions::make_action(ioc.get_executor(), "app", *cfg->services[0].deployment);
  symlink_fencing(ioc, *a, site);
}

TEST_CASE("ssh_symlink fencing: the same check on the host, under flock, in the one remote command", "[ssh]") {
  TempDir dir;
  const fs::path site = dir.path / "app";
  make_releases(site, {"v1", "bad2"});
  Sshd sshd(dir.path / "");
  boost::asio::io_context ioc;
  auto cfg = load_deployment({{"kind", "ssh_symlink"}, {"host", "127.0.0.1"}, {"port", sshd.port}, {"user", sshd.user},
                              {"key_file", sshd.client_key.string()}, {"known_hosts", sshd.known_hosts.string()}, {"path", site.string()},
                              {"timeout", "10s"}});
  auto a = lastgood::actions::make_action(ioc.get_executor(), "app", *cfg->services[0].deployment);
  symlink_fencing(ioc, *a, site);
  CHECK(fs::exists(site / ".lastgood-lock"));
}

TEST_CASE("quorum 2 with votes through different replicas, then kill -9 the owner: every acknowledged vote counts, one effect", "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  Pair pair(t, etcd, two_approvers(), "approve", kTokens);
  REQUIRE(pair.o >= 0);
  const int o = pair.o;
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  REQUIRE(owner.lg.wait_for("release_verified_good", release_is("v1")));
  t.deploy("bad2");
  REQUIRE(owner.lg.wait_for("proposal_created", {}, 20s));
  const std::string id = owner.lg.last("proposal_created", "id");
  CHECK_THAT(id, Catch::EndsWith(o == 0 ? "-a" : "-b"));  // ids name their replica: none meet in etcd
  // Alice approves through the standby: taken in etcd (202), the owner counts it.
  json body{{"comment", "checkout is down"}};
  REQUIRE(wait_until([&] { return http_call(standby.lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", kTokens.at("LG_ALICE"), body.dump()).status == 202; }, 10s));
  REQUIRE(owner.lg.wait_for("proposal_vote", [](const json& d) { return d.value("approver", "") == "alice"; }, 10s));
  // The same approver again, through the owner: counted once.
  auto again = http_call(owner.lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", kTokens.at("LG_ALICE"), "{}");
  CHECK(again.status == 200);
  CHECK_THAT(again.body, Catch::Contains("duplicate"));
  // A wrong token is refused, as on one replica.
  CHECK(http_call(standby.lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", "not-a-token", "{}").status == 401);
  CHECK(t.applied().empty());
  // The owner dies; the standby takes over, adopts the proposal and counts alice's vote again.
  ::kill(owner.lg.proc->pid(), SIGKILL);
  REQUIRE(standby.lg.wait_for("ha_acquired", {}, 10s));
  REQUIRE(standby.lg.wait_for("proposal_created", [&](const json& d) { return d.value("id", "") == id && d.contains("adopted_from"); }, 15s));
  REQUIRE(standby.lg.wait_for("proposal_vote", [](const json& d) { return d.value("approver", "") == "alice"; }, 10s));
  CHECK(t.applied().empty());  // one vote of two: nothing yet
  // Bob approves through the new owner: quorum, one effect.
  REQUIRE(http_call(standby.lg.port(), "POST", "/api/v1/proposals/" + id + "/approve", kTokens.at("LG_BOB"), "{}").status == 202);
  REQUIRE(standby.lg.wait_for("verification", [](const json& d) { return d.value("outcome", "") == "verified"; }, 30s));
  CHECK(t.applied().size() == 1);
  CHECK(standby.lg.count("action_started") == 1);
  CHECK(owner.lg.count("action_started") == 0);
  CHECK(standby.lg.ledger_verifies());
  CHECK(owner.lg.ledger_verifies());
}

TEST_CASE("a late effect: an inherited action reconciled as not done that lands afterwards is recorded and escalated", "[ha]") {
  TempDir edir;
  Etcd etcd(edir.path, 3);
  Target t;
  t.hold = 14s;  // the dead owner's request lands long after the new owner looked (4 s timeout + 2 s after take-over)
  Pair pair(t, etcd);
  REQUIRE(pair.o >= 0);
  Replica& owner = pair.owner();
  Replica& standby = pair.standby();
  REQUIRE(owner.lg.wait_for("release_verified_good", release_is("v1")));
  REQUIRE(standby.lg.wait_for("release_verified_good", release_is("v1")));
  t.deploy("bad2");
  REQUIRE(wait_until([&] { return t.received > 0; }, 20s));
  ::kill(owner.lg.proc->pid(), SIGKILL);
  REQUIRE(standby.lg.wait_for("action_reconciled", [](const json& d) { return !d.value("switched", true); }, 20s));
  CHECK(standby.lg.wait_for("escalated", {}, 5s));
  REQUIRE(standby.lg.wait_for("late_effect", [](const json& d) { return d.value("live", "") == "v1"; }, 20s));
  CHECK(standby.lg.count("action_started") == 0);  // never re-run
  CHECK(t.applied().size() == 1);
}
