// Approvals through the HTTP API: tokens, roles per severity, a quorum of distinct approvers,
// rejection, every attempt in the ledger (names, never tokens), rate-limited failed auth.
#include <catch2/catch.hpp>

#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/ledger.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;

namespace {

std::pair<int, json> call(unsigned short port, http::verb verb, const std::string& target, const std::string& token = "",
                          const std::string& body = "") {
  asio::io_context ioc;
  beast::tcp_stream s(ioc);
  s.expires_after(std::chrono::seconds(5));
  s.connect(asio::ip::tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  http::request<http::string_body> req{verb, target, 11};
  req.set(http::field::host, "127.0.0.1");
  if (!token.empty()) req.set(http::field::authorization, "Bearer " + token);
  req.body() = body;
  req.prepare_payload();
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return {static_cast<int>(res.result_int()), json::parse(res.body(), nullptr, false)};
}

const std::map<std::string, std::string> kTokens = {
    {"LASTGOOD_T_ALICE", "tok-alice-7f3a"}, {"LASTGOOD_T_BOB", "tok-bob-91c2"}, {"LASTGOOD_T_CAROL", "tok-carol-44d0"}};

struct Setup {
  TempDir dir;
  fs::path site = dir.path / "app";
  std::unique_ptr<Nginx> nginx;
  unsigned short port = free_port();
  std::unique_ptr<Process> lg;
  std::string ledger = (dir.path / "state" / "ledger.jsonl").string();

  Setup() {
    make_releases(site, {"v1", "bad2"});
    nginx = std::make_unique<Nginx>(dir.path / "", nullptr, site / "current");
    json c{{"listen", "127.0.0.1:" + std::to_string(port)},
           {"state_dir", (dir.path / "state").string()},
           {"approvers",
            {{{"name", "alice"}, {"roles", {"cto"}}, {"token_env", "LASTGOOD_T_ALICE"}},
             {{"name", "bob"}, {"roles", {"eng-manager"}}, {"token_env", "LASTGOOD_T_BOB"}},
             {{"name", "carol"}, {"roles", {"eng-manager", "team-lead"}}, {"token_env", "LASTGOOD_T_CAROL"}}}},
           {"authority", {{"P0", {{"roles", {"cto"}}, {"quorum", 1}, {"auto", true}}}, {"P1", {{"roles", {"eng-manager"}}, {"quorum", 2}}}}},
           {"services",
            {{{"name", "app"},
              {"probes", {{{"name", "home"}, {"kind", "http"}, {"url", nginx->url("/")}, {"interval", "200ms"}, {"timeout", "150ms"},
                           {"expect", {{"body_contains", "<title>"}}}}}},
              {"deployment", {{"kind", "local_symlink"}, {"path", site.string()}}},
              {"triggers", {{{"name", "down"}, {"severity", "P1"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 2}}}}}},
              {"rollback", {{"mode", "auto"}, {"good_after", "1s"}, {"verify", {{"within", "10s"}, {"healthy_samples", 3}}}}}}}}};
    write_file(dir.path / "c.json", c.dump(2));
    lg = std::make_unique<Process>(std::vector<std::string>{LASTGOOD_BINARY, "run", "-c", (dir.path / "c.json").string()}, dir.path / "log",
                                   kTokens);
  }
  bool has(const std::string& type, const std::string& text = "") const {
    for (const auto& e : lastgood::watchdog::read_ledger(ledger))
      if (e.type == type && e.data.dump().find(text) != std::string::npos) return true;
    return false;
  }
  std::string proposal_id() const {
    for (const auto& e : lastgood::watchdog::read_ledger(ledger))
      if (e.type == "proposal_created") return e.data["id"];
    return "";
  }
  void breach() {
    REQUIRE(wait_until([&] { return has("release_verified_good", "v1"); }, std::chrono::seconds(20)));
    switch_current(site, "bad2");
    REQUIRE(wait_until([&] { return has("proposal_created"); }, std::chrono::seconds(20)));
  }
};

}  // namespace

TEST_CASE("a P1 proposal executes when two distinct allowed approvers approve; refusals are recorded", "[approvals]") {
  Setup s;
  INFO(read_file(s.dir.path / "log"));
  s.breach();
  const std::string id = s.proposal_id();
  const std::string url = "/api/v1/proposals/" + id + "/approve";
  CHECK(call(s.port, http::verb::post, url).first == 401);
  CHECK(call(s.port, http::verb::post, url, "tok-nobody").first == 401);
  auto alice = call(s.port, http::verb::post, url, "tok-alice-7f3a");
  CHECK(alice.first == 403);  // a cto may not decide P1 here
  CHECK_THAT(alice.second["error"].get<std::string>(), Catch::Contains("alice holds no role allowed"));
  auto bob = call(s.port, http::verb::post, url, "tok-bob-91c2", R"({"comment":"looks bad, go"})");
  CHECK(bob.first == 200);
  CHECK(bob.second["approvals"].size() == 1);
  CHECK(bob.second["state"] == "pending");
  auto again = call(s.port, http::verb::post, url, "tok-bob-91c2");
  CHECK(again.first == 200);
  CHECK(again.second["approvals"].size() == 1);  // the same approver twice counts once
  CHECK(current_release(s.site) == "bad2");
  auto carol = call(s.port, http::verb::post, url, "tok-carol-44d0");
  CHECK(carol.first == 202);
  CHECK(carol.second["approvals"].size() == 2);
  REQUIRE(wait_until([&] { return s.has("verification", "verified"); }, std::chrono::seconds(20)));
  CHECK(current_release(s.site) == "v1");
  auto list = call(s.port, http::verb::get, "/api/v1/proposals");
  CHECK(list.second["proposals"][0]["state"] == "verified");
  CHECK(list.second["proposals"][0]["approvals"][0]["comment"] == "looks bad, go");

  int unauthorized = 0, forbidden = 0, counted = 0, duplicate = 0;
  for (const auto& e : lastgood::watchdog::read_ledger(s.ledger)) {
    if (e.type != "approval_attempt") continue;
    const std::string o = e.data["outcome"];
    unauthorized += o == "unauthorized";
    forbidden += o == "forbidden" && e.data["approver"] == "alice";
    counted += o == "counted";
    duplicate += o == "duplicate";
    CHECK_THAT(e.data["source"].get<std::string>(), Catch::StartsWith("127.0.0.1:"));
  }
  CHECK(unauthorized == 2);
  CHECK(forbidden == 1);
  CHECK(counted == 2);
  CHECK(duplicate == 1);
  CHECK(s.lg->stop() == 0);
  for (const auto& [var, token] : kTokens) {
    CHECK(read_file(s.ledger).find(token) == std::string::npos);
    CHECK(read_file(s.dir.path / "log").find(token) == std::string::npos);
  }
}

TEST_CASE("an allowed rejection closes the proposal; failed authentications are rate-limited", "[approvals]") {
  Setup s;
  INFO(read_file(s.dir.path / "log"));
  s.breach();
  const std::string id = s.proposal_id();
  auto rej = call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/reject", "tok-bob-91c2", R"({"comment":"the DB migration"})");
  CHECK(rej.first == 200);
  CHECK(rej.second["state"] == "rejected");
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "tok-carol-44d0").first == 409);
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/nope/approve", "tok-carol-44d0").first == 404);
  CHECK(current_release(s.site) == "bad2");
  int last = 0;
  for (int i = 0; i < 12; ++i) last = call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "wrong").first;
  CHECK(last == 429);
  CHECK(call(s.port, http::verb::post, "/api/v1/proposals/" + id + "/approve", "tok-carol-44d0").first == 429);  // per address, for a minute
  CHECK(s.has("proposal_state", "rejected"));
}

TEST_CASE("the approval page in headless Chromium: see the proposal, a refused role, approve to executed and verified", "[page]") {
  Setup s;
  INFO(read_file(s.dir.path / "log"));
  s.breach();
  const fs::path artifacts = fs::path(LASTGOOD_SOURCE_DIR) / "tests/artifacts";
  fs::create_directories(artifacts);
  const std::string shot = (artifacts / "approval-page.png").string();
  std::string out;
  int rc = run_command({"env", "WRONG_ROLE_TOKEN=tok-alice-7f3a", "TOKEN_1=tok-bob-91c2", "TOKEN_2=tok-carol-44d0", "node",
                        std::string(LASTGOOD_SOURCE_DIR) + "/tests/integration/approval_page.js", "http://127.0.0.1:" + std::to_string(s.port), shot},
                       &out);
  INFO(out);
  CHECK(rc == 0);
  CHECK_THAT(out, Catch::Contains("step: wrong role refused: Refused: alice holds no role allowed"));
  CHECK_THAT(out, Catch::Contains("step: state shown as verified"));
  CHECK(fs::exists(shot));
  CHECK(current_release(s.site) == "v1");
}
