// The API against a hostile client on the same network (issue 15): DNS rebinding (Host), the
// page's headers, lock-out by others' failures, an unauthenticated flood of the ledger, clearing
// without approvers, X-Forwarded-For only from trusted proxies.
#include <catch2/catch.hpp>

#include <sys/stat.h>

#include <sstream>

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <nlohmann/json.hpp>

#include "fixtures.hpp"
#include "watchdog/state/ledger.hpp"

using namespace testing;
using nlohmann::json;
namespace asio = boost::asio;

namespace {

std::string get(unsigned short port, const std::string& target, const std::string& host, const std::string& extra = "") {
  return raw_exchange(port, "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n" + extra + "Connection: close\r\n\r\n");
}

json watched(const TempDir& dir) {
  (void)dir;
  return {{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}, {"interval", "1s"}, {"timeout", "500ms"}}}}};
}

}  // namespace

TEST_CASE("DNS rebinding: the page and API answer only lastgood's names; security headers on every answer", "[security]") {
  TempDir dir;
  Lastgood lg(dir, watched(dir), {{"api", {{"allowed_hosts", {"lastgood.example.com"}}}}});
  lg.start();
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  const std::string port = std::to_string(lg.port());
  // A page on attacker.example whose name now resolves to 127.0.0.1 sends its own Host.
  const auto rebound = get(lg.port(), "/api/v1/services", "attacker.example:" + port);
  CHECK_THAT(rebound, Catch::StartsWith("HTTP/1.1 403"));
  CHECK_THAT(rebound, Catch::Contains("api.allowed_hosts"));
  CHECK_THAT(get(lg.port(), "/", "attacker.example"), Catch::StartsWith("HTTP/1.1 403"));
  for (const std::string& host : std::vector<std::string>{"127.0.0.1:" + port, "localhost:" + port, "[::1]:" + port, "LastGood.Example.com", "10.1.2.3:9464"})
    CHECK_THAT(get(lg.port(), "/api/v1/services", host), Catch::StartsWith("HTTP/1.1 200"));
  // /metrics and health answer under any name (scraped as configured, no secret in them).
  CHECK_THAT(get(lg.port(), "/metrics", "prometheus-target.internal"), Catch::StartsWith("HTTP/1.1 200"));
  CHECK_THAT(get(lg.port(), "/healthz", "anything"), Catch::StartsWith("HTTP/1.1 200"));

  const auto page = get(lg.port(), "/", "127.0.0.1:" + port);
  CHECK_THAT(page, Catch::Contains("X-Content-Type-Options: nosniff\r\n"));
  CHECK_THAT(page, Catch::Contains("X-Frame-Options: DENY\r\n"));
  CHECK_THAT(page, Catch::Contains("Content-Security-Policy: default-src 'self'"));
  CHECK_THAT(page, !Catch::Contains("<script>"));  // no inline script: the CSP would block it
  CHECK_THAT(page, Catch::Contains("<script src=\"/page.js\"></script>"));
  CHECK_THAT(get(lg.port(), "/page.js", "127.0.0.1"), Catch::StartsWith("HTTP/1.1 200") && Catch::Contains("text/javascript"));
  CHECK_THAT(get(lg.port(), "/page.css", "127.0.0.1"), Catch::StartsWith("HTTP/1.1 200") && Catch::Contains("text/css"));
  CHECK_THAT(get(lg.port(), "/api/v1/proposals", "127.0.0.1"), Catch::Contains("X-Content-Type-Options: nosniff\r\n"));
  // Bytes that are not UTF-8 in the Host or the path are answered as any other (found by
  // fuzz_router: the 403 naming the Host threw while writing its JSON and became a 500).
  CHECK_THAT(get(lg.port(), "/api/v1/services", "\xbb"), Catch::StartsWith("HTTP/1.1 403"));
  CHECK_THAT(get(lg.port(), "/api/v1/incidents/\xc3\x28", "127.0.0.1"), Catch::StartsWith("HTTP/1.1 404"));
  CHECK_THAT(raw_exchange(lg.port(), "POST /api/v1/proposals/\xff/approve HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}"),
             Catch::StartsWith("HTTP/1.1 401"));
  CHECK(lg.ready());
}

TEST_CASE("without approvers nobody may clear; an unauthenticated flood is bounded in the ledger; failures are per presented token",
          "[security]") {
  TempDir dir;
  json extra{{"approvers", {{{"name", "alice"}, {"roles", {"oncall"}}, {"token_env", "LG_SEC_TOKEN"}}}},
             {"authority", {{"P0", {{"roles", {"oncall"}}, {"quorum", 1}}}}}};
  Lastgood lg(dir, watched(dir), extra);
  lg.start({{"LG_SEC_TOKEN", "alice-sec-0c1d"}});
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));

  // A flood without a valid token, each with a 60 KB comment.
  const std::string comment(60'000, 'x');
  const std::string body = json{{"comment", comment}}.dump();
  int answered_429 = 0;
  for (int i = 0; i < 200; ++i) {
    const auto r = http_call(lg.port(), "POST", "/api/v1/proposals/p-none/approve", "guess-" + std::to_string(i % 3), body);
    answered_429 += r.status == 429;
  }
  CHECK(answered_429 > 0);  // each guessed token, and the address as a whole, is limited
  // The valid token still gets through (404: no such proposal), from the same address.
  CHECK(http_call(lg.port(), "POST", "/api/v1/proposals/p-none/approve", "alice-sec-0c1d", "{}").status == 404);
  size_t unauth = 0;
  for (const auto& e : lg.ledger())
    if (e.type == "approval_attempt" && e.data["approver"].is_null()) {
      ++unauth;
      CHECK_FALSE(e.data.contains("comment"));
    }
  CHECK(unauth <= 10);  // at most kUnauthPerClient a minute from one client
  CHECK(read_file(lg.state / "ledger.jsonl").find(comment.substr(0, 1000)) == std::string::npos);
  CHECK(fs::file_size(lg.state / "ledger.jsonl") < 64 * 1024);
}

TEST_CASE("clearing an escalation without approvers configured is refused with the reason", "[security]") {
  TempDir dir;
  Lastgood lg(dir, watched(dir));
  lg.start();
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  const auto r = http_call(lg.port(), "POST", "/api/v1/services/app/clear");
  CHECK(r.status == 403);
  CHECK_THAT(r.body, Catch::Contains("no approvers are configured"));
}

TEST_CASE("validate warns when the API listens beyond loopback with no approvers", "[security]") {
  TempDir dir;
  auto cfg = [&](const std::string& listen, bool approvers) {
    json c{{"listen", listen}, {"state_dir", (dir.path / "state").string()}, {"services", {watched(dir)}}};
    if (approvers) c["approvers"] = {{{"name", "alice"}, {"roles", {"oncall"}}, {"token_env", "LG_X"}}};
    const auto p = dir.path / ("c-" + std::to_string(approvers) + ".json");
    write_file(p, c.dump());
    std::string out;
    CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", p.string()}, &out) == 0);
    return out;
  };
  CHECK_THAT(cfg("0.0.0.0:9464", false), Catch::Contains("warning: listen 0.0.0.0:9464 is not a loopback address and no approvers"));
  CHECK_THAT(cfg("127.0.0.1:9464", false), !Catch::Contains("warning"));
  CHECK_THAT(cfg("0.0.0.0:9464", true), !Catch::Contains("warning"));
  // Approval mode with nobody to approve: its proposals could only expire.
  json c{{"state_dir", (dir.path / "state").string()},
         {"services", {{{"name", "app"}, {"probes", {{{"name", "p"}, {"kind", "tcp"}, {"address", "127.0.0.1:1"}}}},
                        {"deployment", {{"kind", "local_symlink"}, {"path", (dir.path / "site").string()}}}, {"rollback", {{"mode", "approve"}}}}}}};
  write_file(dir.path / "approve.json", c.dump());
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "validate", "-c", (dir.path / "approve.json").string()}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("no approvers are configured: its proposals can only expire"));
}

TEST_CASE("everything under state_dir is private: folders 0700, the ledger, the lock and torn copies 0600", "[security]") {
  TempDir dir;
  Lastgood lg(dir, watched(dir));
  // A ledger whose last line was torn by a crash: its bytes are kept aside, privately.
  fs::create_directories(lg.state);
  ::chmod(lg.state.c_str(), 0700);
  write_file(lg.state / "ledger.jsonl", "{\"data\":{},\"hash\":\"ab");
  const mode_t old = ::umask(022);  // the daemon inherits a permissive umask
  lg.start();
  ::umask(old);
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  auto mode = [](const fs::path& p) { return static_cast<int>(fs::status(p).permissions() & fs::perms::all); };
  CHECK(mode(lg.state) == 0700);
  CHECK(mode(lg.state / "ledger.jsonl") == 0600);
  CHECK(mode(lg.state / "lock") == 0600);
  int torn = 0;
  for (const auto& e : fs::directory_iterator(lg.state))
    if (e.path().filename().string().rfind("ledger.jsonl.torn-", 0) == 0) {
      ++torn;
      CHECK(mode(e.path()) == 0600);
    }
  CHECK(torn == 1);

  // A state_dir lastgood creates itself is 0700.
  TempDir other;
  Lastgood fresh(other, watched(other));
  fs::remove_all(fresh.state);
  fresh.start();
  REQUIRE(wait_until([&] { return fresh.ready(); }, std::chrono::seconds(20)));
  CHECK(mode(fresh.state) == 0700);
}

TEST_CASE("a ledger rewritten with a consistent chain passes verify alone, and fails against a head kept elsewhere", "[security]") {
  TempDir dir;
  const auto original = dir.path / "original", forged = dir.path / "forged";
  fs::create_directories(original);
  fs::create_directories(forged);
  {
    lastgood::watchdog::Ledger l(original.string());
    for (int i = 0; i < 5; ++i) l.append("decision", "app", {{"kind", "execute"}, {"n", i}}, 1'700'000'000'000LL + i);
  }
  std::string head;
  REQUIRE(run_command({LASTGOOD_BINARY, "ledger", "head", (original / "ledger.jsonl").string()}, &head) == 0);
  while (!head.empty() && head.back() == '\n') head.pop_back();
  CHECK_THAT(head, Catch::StartsWith("5:"));
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (original / "ledger.jsonl").string(), "--head", head}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("anchored head 5 found"));
  {  // whoever can write state_dir rewrites history and recomputes the chain
    lastgood::watchdog::Ledger l(forged.string());
    for (int i = 0; i < 6; ++i) l.append("decision", "app", {{"kind", "hold"}, {"n", i}}, 1'700'000'000'000LL + i);
  }
  fs::copy_file(forged / "ledger.jsonl", original / "ledger.jsonl", fs::copy_options::overwrite_existing);
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (original / "ledger.jsonl").string()}, &out) == 0);  // the chain alone cannot tell
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", (original / "ledger.jsonl").string(), "--head", head}, &out) == 1);
  CHECK_THAT(out, Catch::Contains("is not in this ledger"));
}

TEST_CASE("a keyed ledger (ledger.hmac_key_file): verify and head need the key; a rewrite without it is caught; run refuses it without the key",
          "[security]") {
  TempDir dir;
  const std::string key = "k3y-for-the-keyed-ledger-test-0123456789";
  const auto key_file = dir.path / "ledger.key", other_key = dir.path / "other.key";
  write_file(key_file, key + "\n");
  write_file(other_key, "another-key-of-enough-length-0123456789\n");
  json service = watched(dir);
  service["triggers"] = {{{"name", "down"}, {"severity", "P2"}, {"rule", {{"kind", "consecutive_failures"}, {"count", 1}}}}};
  Lastgood lg(dir, service, {{"ledger", {{"hmac_key_file", key_file.string()}}}});
  lg.hmac_key = key;
  lg.start();
  REQUIRE(wait_until([&] { return lg.ready(); }, std::chrono::seconds(20)));
  REQUIRE(wait_until([&] { return lg.ledger().size() >= 2; }, std::chrono::seconds(20)));  // entries after the key
  CHECK(lg.proc->stop() == 0);
  const auto es = lg.ledger();
  REQUIRE(es.size() >= 2);
  CHECK(es[0].type == "ledger_keyed");
  CHECK(lg.log().find(key) == std::string::npos);

  const std::string file = (lg.state / "ledger.jsonl").string();
  CHECK(read_file(file).find(key) == std::string::npos);
  std::string out;
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", file, "--key-file", key_file.string()}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("chain intact, keyed (HMAC-SHA256, key id " + lastgood::watchdog::ledger_key_id(key) + ") from entry 1"));
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", file}, &out) == 1);
  CHECK_THAT(out, Catch::Contains("line 1: the ledger is keyed from line 1") && Catch::Contains("no key was given"));
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", file, "--key-file", other_key.string()}, &out) == 1);
  CHECK_THAT(out, Catch::Contains("the key given has id"));
  std::string head;
  REQUIRE(run_command({LASTGOOD_BINARY, "ledger", "head", file, "--key-file", key_file.string()}, &head) == 0);
  while (!head.empty() && head.back() == '\n') head.pop_back();
  CHECK(head == std::to_string(es.back().seq) + ":" + es.back().hash);
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", file, "--key-file", key_file.string(), "--head", head}, &out) == 0);
  CHECK_THAT(out, Catch::Contains("anchored head"));

  // Whoever can write the file but lacks the key changes an entry and recomputes a plain chain.
  {
    std::vector<std::string> lines;
    std::istringstream in(read_file(file));
    for (std::string l; std::getline(in, l);) lines.push_back(l);
    std::string prev, forged;
    for (size_t i = 0; i < lines.size(); ++i) {
      json j = json::parse(lines[i]);
      if (i == 1) j["data"]["forged"] = true;
      j["prev"] = prev;
      j.erase("hash");
      j["hash"] = lastgood::watchdog::sha256_hex(prev + j.dump());
      prev = j["hash"].get<std::string>();
      forged += j.dump() + "\n";
    }
    write_file(file, forged);
  }
  CHECK(run_command({LASTGOOD_BINARY, "ledger", "verify", file, "--key-file", key_file.string()}, &out) == 1);
  CHECK_THAT(out, Catch::Contains("line 1: HMAC mismatch"));

  // Without the key in the config, lastgood will not run on a keyed ledger (nor append to it).
  Lastgood nokey(dir, watched(dir), {{"state_dir", lg.state.string()}});
  nokey.runs = 1;
  nokey.start();
  REQUIRE(wait_until([&] { return !nokey.proc->running(); }, std::chrono::seconds(20)));
  CHECK(nokey.proc->stop() == 1);
  CHECK_THAT(read_file(dir.path / "lastgood-2.log"), Catch::Contains("no key was given"));
}
