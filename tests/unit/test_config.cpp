// Config loading: a table of broken configs, each with its exit code and JSON pointer, and every
// file in examples/ validates.
#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>

#include <unistd.h>

#include "config/config.hpp"
#include "config/secret.hpp"
#include "probes/http.hpp"
#include "probes/tcp.hpp"
#include "watchdog/validate.hpp"
#include "watchdog/kinds.hpp"

using nlohmann::json;
namespace fs = std::filesystem;
namespace cfg = lastgood::config;

namespace {

json base_config() {
  return json::parse(R"({
    "listen": "127.0.0.1:9464",
    "state_dir": "/tmp/lastgood-test",
    "approvers": [{"name": "alice", "roles": ["cto"], "token_env": "LASTGOOD_TEST_TOKEN_ALICE"}],
    "authority": {"P0": {"roles": ["cto"], "quorum": 1, "auto": true}},
    "notify": [{"kind": "webhook", "url": "http://127.0.0.1:9/hook", "events": ["executed"]}],
    "services": [{
      "name": "www",
      "probes": [
        {"name": "home", "kind": "http", "url": "http://127.0.0.1:8080/", "interval": "10s", "timeout": "2s",
         "expect": {"status": "200-299", "body_contains": "<title>", "max_latency": "800ms"}},
        {"name": "db", "kind": "tcp", "address": "127.0.0.1:5432"}
      ],
      "deployment": {"kind": "local_symlink", "path": "/var/www/app"},
      "triggers": [
        {"name": "down", "severity": "P0", "rule": {"kind": "consecutive_failures", "count": 3}},
        {"name": "errors", "severity": "P1", "rule": {"kind": "error_rate", "window": "5m", "max": 0.05, "min_samples": 20}, "for": "1m"}
      ],
      "rollback": {"mode": "auto", "verify": {"within": "5m", "healthy_samples": 3}}
    }]
  })");
}

std::string write_temp(const std::string& name, const std::string& text) {
  fs::path p = fs::temp_directory_path() / ("lastgood-unit-" + std::to_string(::getpid()) + "-" + name);
  std::ofstream(p) << text;
  return p.string();
}

struct Broken {
  const char* what;
  const char* patch;    // RFC 6902 patch applied to base_config()
  const char* pointer;  // the JSON pointer the message must name
  const char* says;     // a part of the message
};

// clang-format off
const Broken kBroken[] = {
  {"a typo in a top-level key", R"([{"op":"add","path":"/lisen","value":"x"}])", "/lisen", "did you mean \"listen\""},
  {"a typo in a probe key", R"([{"op":"add","path":"/services/0/probes/0/timout","value":"1s"}])", "/services/0/probes/0/timout", "did you mean \"timeout\""},
  {"a typo in expect", R"([{"op":"add","path":"/services/0/probes/0/expect/body_contain","value":"x"}])", "/services/0/probes/0/expect/body_contain", "did you mean \"body_contains\""},
  {"a bad duration unit", R"([{"op":"add","path":"/services/0/probes/1/timeout","value":"2x"}])", "/services/0/probes/1/timeout", "expected a duration"},
  {"a duration as a number", R"([{"op":"replace","path":"/services/0/probes/0/interval","value":10}])", "/services/0/probes/0/interval", "expected a duration string"},
  {"a timeout longer than the interval", R"([{"op":"replace","path":"/services/0/probes/0/timeout","value":"20s"}])", "/services/0/probes/0/timeout", "no longer than the interval"},
  {"ha: a renew deadline as long as the lease", R"([{"op":"add","path":"/ha","value":{"etcd":["http://127.0.0.1:2379"],"cluster":"prod","replica":"a","lease":"5s","renew_deadline":"5s"}}])", "/ha/renew_deadline", "shorter than lease (5s)"},
  {"ha: a lease in milliseconds", R"([{"op":"add","path":"/ha","value":{"etcd":["http://127.0.0.1:2379"],"cluster":"prod","replica":"a","lease":"2500ms","renew_deadline":"1s"}}])", "/ha/lease", "whole seconds"},
  {"ha: an etcd endpoint with a path", R"([{"op":"add","path":"/ha","value":{"etcd":["http://127.0.0.1:2379/v3"],"cluster":"prod","replica":"a"}}])", "/ha/etcd/0", "etcd client URL"},
  {"ha: no replica id", R"([{"op":"add","path":"/ha","value":{"etcd":["http://127.0.0.1:2379"],"cluster":"prod"}}])", "/ha/replica", "required key is missing"},
  {"ha: a typo in a key", R"([{"op":"add","path":"/ha","value":{"etcd":["http://127.0.0.1:2379"],"cluster":"prod","replica":"a","shard":2}}])", "/ha/shard", "did you mean \"shards\""},
  {"ha: a password in clear beyond this host", R"([{"op":"add","path":"/ha","value":{"etcd":["http://etcd.internal:2379"],"cluster":"prod","replica":"a","auth":{"user":"lg","password_env":"HOME"}}}])", "/ha/auth", "in clear"},
  {"ha: a client certificate without its key", R"([{"op":"add","path":"/ha","value":{"etcd":["https://etcd.internal:2379"],"cluster":"prod","replica":"a","tls":{"cert_file":"/etc/lg/c.pem"}}}])", "/ha/tls", "both cert_file and key_file"},
  {"an unknown probe kind", R"([{"op":"replace","path":"/services/0/probes/0/kind","value":"icmp"}])", "/services/0/probes/0/kind", "expected one of http, tcp"},
  {"a probe without a name", R"([{"op":"remove","path":"/services/0/probes/0/name"}])", "/services/0/probes/0/name", "required key is missing"},
  {"a header value that would split the request", R"([{"op":"add","path":"/services/0/probes/0/headers","value":{"X-A":"1\r\nX-B: 2"}}])", "/services/0/probes/0/headers/X-A", "on one line"},
  {"a header name with a space", R"([{"op":"add","path":"/services/0/probes/0/headers","value":{"X A":"1"}}])", "/services/0/probes/0/headers/X A", "expected an HTTP header name"},
  {"an http probe with a bad url", R"([{"op":"replace","path":"/services/0/probes/0/url","value":"ftp://x/"}])", "/services/0/probes/0/url", "http:// or https://"},
  {"a tcp probe without a port", R"([{"op":"replace","path":"/services/0/probes/1/address","value":"127.0.0.1"}])", "/services/0/probes/1/address", "host:port"},
  {"a bad status range", R"([{"op":"replace","path":"/services/0/probes/0/expect/status","value":"299-200"}])", "/services/0/probes/0/expect/status", "lower bound first"},
  {"a bad status in a list", R"([{"op":"replace","path":"/services/0/probes/0/expect/status","value":[200, "abc"]}])", "/services/0/probes/0/expect/status/1", "status code"},
  {"a bad regex", R"([{"op":"add","path":"/services/0/probes/0/expect/body_matches","value":"(unclosed"}])", "/services/0/probes/0/expect/body_matches", "regular expression"},
  {"a backreference (not linear-time)", R"([{"op":"add","path":"/services/0/probes/0/expect/body_matches","value":"(a)\\1"}])", "/services/0/probes/0/expect/body_matches", "RE2 syntax"},
  {"a lookahead (not linear-time)", R"j([{"op":"add","path":"/services/0/probes/0/expect/body_matches","value":"a(?=b)"}])j", "/services/0/probes/0/expect/body_matches", "RE2 syntax"},
  {"a typo in api", R"([{"op":"add","path":"/api","value":{"max_conections":8}}])", "/api/max_conections", "did you mean \"max_connections\""},
  {"api max_connections of zero", R"([{"op":"add","path":"/api","value":{"max_connections":0}}])", "/api/max_connections", "from 1 to"},
  {"a bad JSON pointer in expect.json", R"([{"op":"add","path":"/services/0/probes/0/expect/json","value":{"status":"ok"}}])", "/services/0/probes/0/expect/json/status", "JSON pointer"},
  {"TLS options on plain http", R"([{"op":"add","path":"/services/0/probes/0/insecure_skip_verify","value":true}])", "/services/0/probes/0/url", "need an https:// URL"},
  {"duplicate probe names", R"([{"op":"replace","path":"/services/0/probes/1/name","value":"home"}])", "/services/0/probes/1/name", "duplicate probe name"},
  {"a service without probes", R"([{"op":"replace","path":"/services/0/probes","value":[]}])", "/services/0/probes", "at least one probe"},
  {"duplicate service names", R"([{"op":"add","path":"/services/1","value":{"name":"www","probes":[{"name":"a","kind":"tcp","address":"127.0.0.1:1"}]}}])", "/services/1/name", "duplicate service name"},
  {"no services", R"([{"op":"remove","path":"/services"}])", "/services", "required key is missing"},
  {"a bad severity", R"([{"op":"replace","path":"/services/0/triggers/0/severity","value":"P5"}])", "/services/0/triggers/0/severity", "expected one of P0, P1, P2"},
  {"an unknown rule kind", R"([{"op":"replace","path":"/services/0/triggers/0/rule/kind","value":"error_rates"}])", "/services/0/triggers/0/rule/kind", "expected one of"},
  {"an error rate above 1", R"([{"op":"replace","path":"/services/0/triggers/1/rule/max","value":5}])", "/services/0/triggers/1/rule/max", "from 0 to 1"},
  {"x_of_y with more failures than samples", R"([{"op":"replace","path":"/services/0/triggers/0/rule","value":{"kind":"x_of_y","failures":5,"of":3}}])", "/services/0/triggers/0/rule/failures", "no greater than"},
  {"a burn-rate window pair in the wrong order", R"([{"op":"replace","path":"/services/0/triggers/0/rule","value":{"kind":"burn_rate","slo":0.999,"windows":[["5m","1h",14.4]]}}])", "/services/0/triggers/0/rule/windows/0/1", "shorter than the long"},
  {"a burn-rate SLO of 1", R"([{"op":"replace","path":"/services/0/triggers/0/rule","value":{"kind":"burn_rate","slo":1,"windows":[["1h","5m",14.4]]}}])", "/services/0/triggers/0/rule/slo", "below 1"},
  {"a trigger naming a probe that does not exist", R"([{"op":"add","path":"/services/0/triggers/0/probe","value":"nope"}])", "/services/0/triggers/0/probe", "name of a probe"},
  {"a count of zero", R"([{"op":"replace","path":"/services/0/triggers/0/rule/count","value":0}])", "/services/0/triggers/0/rule/count", "from 1 to"},
  {"a count given as a string", R"([{"op":"replace","path":"/services/0/triggers/0/rule/count","value":"3"}])", "/services/0/triggers/0/rule/count", "expected an integer"},
  {"an unknown deployment kind", R"([{"op":"replace","path":"/services/0/deployment/kind","value":"s3"}])", "/services/0/deployment/kind", "expected one of local_symlink"},
  {"a relative symlink path", R"([{"op":"replace","path":"/services/0/deployment/path","value":"www/app"}])", "/services/0/deployment/path", "absolute path"},
  {"ssh without known_hosts", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"ssh_symlink","host":"h","user":"u","key_file":"/k","path":"/p"}}])", "/services/0/deployment/known_hosts", "required key is missing"},
  {"an inline npm token", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"npm_package","package":"x","token":"s3cr3t-value"}}])", "/services/0/deployment/token", "not accepted inline"},
  {"npm unpublish without allow_unpublish", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"npm_package","package":"x","token_env":"T","strategy":"unpublish"}}])", "/services/0/deployment/allow_unpublish", "allow_unpublish"},
  {"a bad npm package name", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"npm_package","package":"Bad Name","token_env":"T"}}])", "/services/0/deployment/package", "npm package name"},
  {"firebase with two credentials", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"firebase_hosting","site":"s","credentials_file":"/a","token_env":"T"}}])", "/services/0/deployment", "exactly one of"},
  {"a command rollback that is a string", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"command","rollback":"rollback.sh ${to}","observe":["live"]}}])", "/services/0/deployment/rollback", "array of strings"},
  {"a command without observe", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"command","rollback":["rollback.sh","${to}"]}}])", "/services/0/deployment/observe", "cannot decide a rollback"},
  {"an http_api without observe", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"http_api","rollback":{"url":"https://gw/rollback"}}}])", "/services/0/deployment/observe", "cannot decide a rollback"},
  {"http_api steps that are not a list", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"http_api","rollback":{"steps":{}},"observe":{"url":"https://gw/v","json_pointer":"/v"}}}])", "/services/0/deployment/rollback/steps", "non-empty array"},
  {"an http_api step without a url", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"http_api","rollback":{"steps":[{"url":"https://gw/a"},{"method":"PUT"}]},"observe":{"url":"https://gw/v","json_pointer":"/v"}}}])", "/services/0/deployment/rollback/steps/1/url", "required"},
  {"an http_api request beside its steps", R"([{"op":"replace","path":"/services/0/deployment","value":{"kind":"http_api","rollback":{"url":"https://gw/b","steps":[{"url":"https://gw/a"}]},"observe":{"url":"https://gw/v","json_pointer":"/v"}}}])", "/services/0/deployment/rollback/url", "unknown key"},
  {"a bad rollback mode", R"([{"op":"replace","path":"/services/0/rollback/mode","value":"yolo"}])", "/services/0/rollback/mode", "alert, approve, auto"},
  {"rollback without a deployment", R"([{"op":"remove","path":"/services/0/deployment"}])", "/services/0/rollback/mode", "needs a \"deployment\""},
  {"a typo in verify", R"([{"op":"add","path":"/services/0/rollback/verify/healthy_sample","value":3}])", "/services/0/rollback/verify/healthy_sample", "did you mean \"healthy_samples\""},
  {"an approver without a token", R"([{"op":"remove","path":"/approvers/0/token_env"}])", "/approvers/0/token_env", "required"},
  {"an approver with an inline token", R"([{"op":"add","path":"/approvers/0/token","value":"hunter2"}])", "/approvers/0/token", "not accepted inline"},
  {"an unreachable quorum", R"([{"op":"replace","path":"/authority/P0/quorum","value":2}])", "/authority/P0/quorum", "cannot be met"},
  {"an unknown authority level", R"([{"op":"add","path":"/authority/P3","value":{"roles":["x"]}}])", "/authority/P3", "unknown key"},
  {"an unknown notify event", R"([{"op":"replace","path":"/notify/0/events/0","value":"exploded"}])", "/notify/0/events/0", "expected one of breach"},
  {"a bad listen address", R"([{"op":"replace","path":"/listen","value":"9464"}])", "/listen", "ip:port"},
  {"a service name with a slash", R"([{"op":"replace","path":"/services/0/name","value":"a/b"}])", "/services/0/name", "letters, digits"},
  {"a key with a slash in it is escaped in the pointer", R"([{"op":"add","path":"/services/0/probes/0/expect/a~1b","value":1}])", "/services/0/probes/0/expect/a~1b", "unknown key"},
  {"services not an array", R"([{"op":"replace","path":"/services","value":{}}])", "/services", "expected an array"},
  {"a listen address of digits and dots that is no address", R"([{"op":"replace","path":"/listen","value":"999.999.999.999:80"}])", "/listen", "ip:port"},
  {"a probe name with a NUL", R"([{"op":"replace","path":"/services/0/probes/0/name","value":"ho\u0000me"}])", "/services/0/probes/0/name", "no NUL, CR, LF"},
  {"a trigger name over two lines", R"([{"op":"replace","path":"/services/0/triggers/0/name","value":"down\nup"}])", "/services/0/triggers/0/name", "on one line"},
  {"an approver name with a line break", R"([{"op":"replace","path":"/approvers/0/name","value":"al\rice"}])", "/approvers/0/name", "printable"},
  {"an inline HMAC key", R"([{"op":"add","path":"/ledger","value":{"hmac_key":"0123456789abcdef0123"}}])", "/ledger/hmac_key", "not accepted inline"},
  {"a typo in ledger", R"([{"op":"add","path":"/ledger","value":{"hmac_keyfile":"/k"}}])", "/ledger/hmac_keyfile", "did you mean \"hmac_key_file\""},
  {"two approvers with one token", R"([{"op":"add","path":"/approvers/1","value":{"name":"mallory","roles":["cto"],"token_env":"LASTGOOD_TEST_TOKEN_ALICE"}}])", "/approvers/1/token_env", "share one token"},
};
// clang-format on

}  // namespace

TEST_CASE("the base config of the table is valid", "[config]") {
  auto res = cfg::load_text(base_config().dump(), "base.json", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  REQUIRE(res.config->services.size() == 1);
  const auto& svc = res.config->services[0];
  CHECK(svc.probes[0].interval == std::chrono::seconds(10));
  CHECK(svc.probes[1].interval == std::chrono::seconds(10));  // default
  CHECK(svc.triggers[1].for_ == std::chrono::minutes(1));
  CHECK(svc.rollback.mode == "auto");
  CHECK(cfg::spec_as<lastgood::probes::HttpSpec>(svc.probes[0].spec).expect.status.front().hi == 299);
  CHECK(cfg::spec_as<lastgood::probes::TcpSpec>(svc.probes[1].spec).port == "5432");
}

TEST_CASE("every broken config exits 2 and names the JSON pointer", "[config]") {
  for (const auto& b : kBroken) {
    DYNAMIC_SECTION(b.what) {
      json j = base_config().patch(json::parse(b.patch));
      std::string path = write_temp("broken.json", j.dump(2));
      std::string out;
      int rc = lastgood::watchdog::validate_file(path, out);
      INFO(out);
      CHECK(rc == 2);
      CHECK_THAT(out, Catch::Contains(path + ": " + b.pointer + ": "));
      CHECK_THAT(out, Catch::Contains(b.says));
      fs::remove(path);
    }
  }
  STATIC_REQUIRE(sizeof(kBroken) / sizeof(kBroken[0]) >= 25);
}

// Services are parsed one at a time while the JSON is read (config.cpp, StreamedServices), so a
// large config never holds its whole tree. What a person reads must not change with that: the same
// problems, in the order of the keys as lastgood checks them (not as they stand in the file), each
// element named by its index, and the services themselves in order.
TEST_CASE("services parsed as the JSON is read: the same problems in the same order, whatever the order in the file", "[config]") {
  const std::string svc_ok = R"({"name": "a", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:1"}]})";
  const std::string svc_ok2 = R"({"name": "b", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:2"}]})";
  const std::string svc_bad = R"({"name": "c", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1"}]})";
  const std::string svc_dup = R"({"name": "a", "probes": [{"name": "p", "kind": "tcp", "address": "127.0.0.1:3"}]})";
  // "services" first in the file, a root problem (listen) after it, and a maintenance window that
  // names a service that is not there (checked against the services' names, after them).
  const std::string text = R"({"services": [1, [2], )" + svc_ok + ", " + svc_bad + ", " + svc_dup + ", " + svc_ok2 +
                           R"(], "listen": "nowhere", "state_dir": "/tmp/x", "maintenance": [{"services": ["a", "zz"], "start": "2026-01-01T00:00:00Z", "end": "2026-01-02T00:00:00Z"}]})";
  auto res = cfg::load_text(text, "order.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE_FALSE(res.config);
  std::vector<std::string> pointers;
  for (const auto& p : res.problems) pointers.push_back(p.pointer);
  const std::vector<std::string> expected{"/listen", "/services/0", "/services/1", "/services/3/probes/0/address", "/services/4/name", "/maintenance/0/services/1"};
  CHECK(pointers == expected);
  REQUIRE(res.problems.size() == expected.size());
  CHECK(res.problems[1].message.find("expected an object, found an integer") != std::string::npos);
  CHECK(res.problems[2].message.find("expected an object, found an array") != std::string::npos);
  CHECK(res.problems[4].message.find("duplicate service name \"a\"") != std::string::npos);

  // The same document with keys in another order and the bad elements fixed: valid, services in
  // the file's order, with the fingerprints a reload compares.
  const std::string good = R"({"listen": "127.0.0.1:0", "services": [)" + svc_ok2 + ", " + svc_ok + R"(], "state_dir": "/tmp/x"})";
  auto ok = cfg::load_text(good, "good.json", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : ok.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(ok.config);
  REQUIRE(ok.config->services.size() == 2);
  CHECK(ok.config->services[0].name == "b");
  CHECK(ok.config->services[1].name == "a");
  CHECK(ok.config->services[0].fingerprint == std::hash<std::string>{}(json::parse(svc_ok2).dump()));
  CHECK(ok.config->services.capacity() == 2);  // no room left over from growing (50 000 services: MBs)

  // An empty array, and a key named "services" deeper down that is not the root's.
  auto empty = cfg::load_text(R"({"listen": "127.0.0.1:0", "services": []})", "e.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(empty.problems.size() == 1);
  CHECK(empty.problems[0].pointer == "/services");
  CHECK(empty.problems[0].message.find("at least one service") != std::string::npos);
  auto nested = cfg::load_text(R"({"listen": "127.0.0.1:0", "status_page": {"services": [1]}, "services": [)" + svc_ok + "]}", "n.json",
                               lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE_FALSE(nested.config);
  REQUIRE(nested.problems.size() == 1);
  CHECK(nested.problems[0].pointer == "/status_page/services/0");
  // A root that is an array is no config (and nothing in it is taken for a service).
  auto arr = cfg::load_text("[[" + svc_ok + "]]", "a.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(arr.problems.size() == 1);
  CHECK(arr.problems[0].pointer.empty());
}

TEST_CASE("invalid JSON is reported with the file and where it broke", "[config]") {
  std::string path = write_temp("syntax.json", "{\"services\": [ }");
  std::string out;
  CHECK(lastgood::watchdog::validate_file(path, out) == 2);
  CHECK_THAT(out, Catch::Contains(path + ": /: not valid JSON"));
  fs::remove(path);
}

TEST_CASE("config text that crashed or misled validate: huge numbers, deep nesting, duplicate keys", "[config]") {
  struct Raw {
    const char* what;
    std::string text, pointer, says;
  };
  const std::string svc = R"("services":[{"name":"a","probes":[{"name":"p","kind":"tcp","address":"127.0.0.1:1"}]}])";
  const std::vector<Raw> raws = {
      {"a number out of range", "{\"x\":1e999," + svc + "}", "/", "number overflow"},
      {"a million levels of nesting", "{\"services\":" + std::string(1'000'000, '[') + std::string(1'000'000, ']') + "}", "/services/0/0", "nested deeper than 64"},
      {"a key given twice (the last would win)",
       R"({"services":[{"name":"a","probes":[{"name":"p","kind":"tcp","address":"127.0.0.1:1"}],"rollback":{"mode":"approve","mode":"auto"}}]})",
       "/services/0/rollback/mode", "given twice in this object, first as \"approve\", then as \"auto\""},
      {"services given twice", "{" + svc + "," + svc + "}", "/services", "first as [...], then as [...]"},
  };
  for (const auto& r : raws) {
    DYNAMIC_SECTION(r.what) {
      std::string path = write_temp("raw.json", r.text);
      std::string out;
      CHECK_NOTHROW(lastgood::watchdog::validate_file(path, out));
      INFO(out.substr(0, 500));
      CHECK(lastgood::watchdog::validate_file(path, out) == 2);
      CHECK_THAT(out, Catch::Contains(path + ": " + r.pointer));
      CHECK_THAT(out, Catch::Contains(r.says));
      fs::remove(path);
    }
  }
}

TEST_CASE("a ledger HMAC key must be at least 16 bytes; a good one is loaded", "[config]") {
  // validate reads no secrets (they may live only where lastgood runs); run reads them all.
  const std::string short_key = write_temp("short.key", "tooshort\n");
  const std::string good_key = write_temp("good.key", "0123456789abcdef0123456789abcdef\n");
  ::setenv("LASTGOOD_TEST_TOKEN_ALICE", "alice-token-for-the-unit-test", 1);
  json j = base_config();
  j["ledger"] = {{"hmac_key_file", short_key}};
  auto res = cfg::load_text(j.dump(), "ledger.json", lastgood::kinds(), {.resolve_secrets = true});
  CHECK_FALSE(res.config);
  REQUIRE(res.problems.size() == 1);
  CHECK(res.problems[0].pointer == "/ledger/hmac_key_file");
  CHECK_THAT(res.problems[0].message, Catch::Contains("expected a key of at least 16 bytes"));
  CHECK_THAT(res.problems[0].to_string(), !Catch::Contains("tooshort"));  // a secret is never echoed
  j["ledger"] = {{"hmac_key_file", "/nonexistent/lastgood.key"}};
  res = cfg::load_text(j.dump(), "ledger.json", lastgood::kinds(), {.resolve_secrets = true});
  REQUIRE(res.problems.size() == 1);
  CHECK_THAT(res.problems[0].to_string(), Catch::Contains("/ledger/hmac_key_file: cannot read secret file /nonexistent/lastgood.key"));
  j["ledger"] = {{"hmac_key_file", good_key}};
  res = cfg::load_text(j.dump(), "ledger.json", lastgood::kinds(), {.resolve_secrets = true});
  REQUIRE(res.config);
  REQUIRE(res.config->ledger.hmac_key);
  CHECK(res.config->ledger.hmac_key->value() == "0123456789abcdef0123456789abcdef");
  ::unsetenv("LASTGOOD_TEST_TOKEN_ALICE");
  for (const auto& f : {short_key, good_key}) fs::remove(f);
}

TEST_CASE("a missing file is a config error, not a crash", "[config]") {
  std::string out;
  CHECK(lastgood::watchdog::validate_file("/nonexistent/lastgood.json", out) == 2);
  CHECK_THAT(out, Catch::Contains("cannot open"));
}

TEST_CASE("all problems are reported at once", "[config]") {
  json j = base_config();
  j["services"][0]["probes"][0]["timeout"] = "2x";
  j["services"][0]["triggers"][0]["severity"] = "P9";
  auto res = cfg::load_text(j.dump(), "two.json", lastgood::kinds(), {.resolve_secrets = false});
  CHECK_FALSE(res.config);
  CHECK(res.problems.size() == 2);
}

TEST_CASE("a service with only probes is valid: plain monitoring", "[config]") {
  auto res = cfg::load_text(R"({"services":[{"name":"a","probes":[{"name":"p","kind":"tcp","address":"127.0.0.1:1"}]}]})", "m.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(res.config);
  CHECK_FALSE(res.config->services[0].deployment);
  CHECK(res.config->services[0].triggers.empty());
}

TEST_CASE("secrets are read from the environment and never appear in messages", "[config]") {
  json j = base_config();
  SECTION("a missing variable names the variable and the pointer") {
    ::unsetenv("LASTGOOD_TEST_TOKEN_ALICE");
    auto res = cfg::load_text(j.dump(), "s.json", lastgood::kinds(), {.resolve_secrets = true});
    REQUIRE(res.problems.size() == 1);
    CHECK(res.problems[0].pointer == "/approvers/0/token_env");
    CHECK_THAT(res.problems[0].message, Catch::Contains("LASTGOOD_TEST_TOKEN_ALICE is not set"));
  }
  SECTION("a set variable resolves; its value is in no problem text") {
    ::setenv("LASTGOOD_TEST_TOKEN_ALICE", "tok-VERY-SECRET", 1);
    auto ok = cfg::load_text(j.dump(), "s.json", lastgood::kinds(), {.resolve_secrets = true});
    REQUIRE(ok.config);
    CHECK(ok.config->approvers[0].token.value() == "tok-VERY-SECRET");
    CHECK(ok.config->approvers[0].token.describe() == "environment variable LASTGOOD_TEST_TOKEN_ALICE");
    j["approvers"][0]["token"] = "tok-VERY-SECRET";  // inline: refused without echoing it
    auto bad = cfg::load_text(j.dump(), "s.json", lastgood::kinds(), {.resolve_secrets = true});
    REQUIRE_FALSE(bad.problems.empty());
    for (const auto& p : bad.problems) CHECK_THAT(p.to_string(), !Catch::Contains("VERY-SECRET"));
    ::unsetenv("LASTGOOD_TEST_TOKEN_ALICE");
  }
}

TEST_CASE("every example config validates", "[config][examples]") {
  fs::path dir = LASTGOOD_SOURCE_DIR "/examples";
  int n = 0;
  for (const auto& e : fs::recursive_directory_iterator(dir)) {  // examples/ha/ too
    if (e.path().extension() != ".json" || e.path().parent_path().filename() == "grafana") continue;  // a dashboard, not a config
    ++n;
    std::string out;
    INFO(e.path().string());
    CHECK(lastgood::watchdog::validate_file(e.path().string(), out) == 0);
    INFO(out);
  }
  CHECK(n >= 7);
}

TEST_CASE("a valid ha block is typed with its defaults; validate warns of what replicas do not share yet", "[config]") {
  json j = base_config();
  j["ha"] = {{"etcd", {"http://127.0.0.1:2379", "http://127.0.0.1:22379"}}, {"cluster", "prod"}, {"replica", "a"}, {"lease", "5s"},
             {"renew_deadline", "3s"}, {"retry", "500ms"}};
  auto res = cfg::load_text(j.dump(), "ha.json", lastgood::kinds(), {.resolve_secrets = false});
  for (const auto& p : res.problems) UNSCOPED_INFO(p.to_string());
  REQUIRE(res.config);
  REQUIRE(res.config->ha);
  const auto& ha = *res.config->ha;
  CHECK(ha.etcd.size() == 2);
  CHECK(ha.shards == 1);
  CHECK(ha.lease == std::chrono::seconds(5));
  CHECK(ha.renew_deadline == std::chrono::seconds(3));
  CHECK(ha.retry == std::chrono::milliseconds(500));
  CHECK(ha.retention == std::chrono::hours(24 * 7));  // the default
  CHECK_FALSE(ha.password);
  std::string out;
  const auto path = write_temp("ha.json", j.dump());
  CHECK(lastgood::watchdog::validate_file(path, out) == 0);
  CHECK_THAT(out, !Catch::Contains("refuses"));
  fs::remove(path);
  // etcd user/password: accepted; the password is named by where it comes from, never printed.
  j["ha"]["auth"] = {{"user", "lastgood"}, {"password_env", "ETCD_PASSWORD"}};
  const auto with_auth = write_temp("ha-auth.json", j.dump());
  out.clear();
  CHECK(lastgood::watchdog::validate_file(with_auth, out) == 0);
  CHECK_THAT(out, !Catch::Contains("not supported"));
  fs::remove(with_auth);
  // Without the block: one replica, as before.
  CHECK_FALSE(cfg::load_text(base_config().dump(), "b.json", lastgood::kinds(), {.resolve_secrets = false}).config->ha);
}

TEST_CASE("a secret from a file is read again at each use: a rotated token needs no restart; unreadable keeps the last value", "[config]") {
  const auto path = std::filesystem::temp_directory_path() / ("lastgood-secret-" + std::to_string(::getpid()));
  auto write = [&](const std::string& v) {
    std::ofstream(path, std::ios::trunc) << v;
  };
  write("tok-1\n");
  auto s = lastgood::config::Secret::from_file(path.string());
  REQUIRE_FALSE(s.resolve());
  CHECK(s.value() == "tok-1");
  write("tok-2\n");
  std::string problem;
  CHECK(s.fresh(&problem) == "tok-2");
  CHECK(problem.empty());
  std::filesystem::remove(path);  // mid-rotation: the file is briefly absent
  CHECK(s.fresh(&problem) == "tok-2");
  CHECK_THAT(problem, Catch::Contains("cannot read secret file " + path.string()));
  CHECK_THAT(problem, !Catch::Contains("tok-"));
  ::setenv("LASTGOOD_TEST_FRESH", "env-1", 1);
  auto e = lastgood::config::Secret::from_env("LASTGOOD_TEST_FRESH");
  REQUIRE_FALSE(e.resolve());
  ::setenv("LASTGOOD_TEST_FRESH", "env-2", 1);
  CHECK(e.fresh() == "env-2");
}

TEST_CASE("the default state_dir: /var/lib/lastgood for root, the XDG state folder for anyone else", "[config]") {
  using lastgood::config::default_state_dir;
  CHECK(default_state_dir(0, "/x/state", "/home/a") == "/var/lib/lastgood");
  CHECK(default_state_dir(1000, "/x/state", "/home/a") == "/x/state/lastgood");
  CHECK(default_state_dir(1000, nullptr, "/home/a") == "/home/a/.local/state/lastgood");
  CHECK(default_state_dir(1000, "relative", "/home/a") == "/home/a/.local/state/lastgood");  // XDG says: ignore a relative one
}

TEST_CASE("an empty environment variable is reported as empty, not as unset; a misspelt rule kind gets a suggestion", "[config]") {
  ::setenv("LASTGOOD_TEST_EMPTY", "", 1);
  auto s = lastgood::config::Secret::from_env("LASTGOOD_TEST_EMPTY");
  auto err = s.resolve();
  REQUIRE(err);
  CHECK(*err == "environment variable LASTGOOD_TEST_EMPTY is set but empty");
  auto res = lastgood::config::load_text(
      R"({"services":[{"name":"a","probes":[{"name":"p","kind":"tcp","address":"h:1"}],"triggers":[{"name":"t","severity":"P1","rule":{"kind":"consecutive_failure","count":3}}]}]})",
      "k.json", lastgood::kinds(), {.resolve_secrets = false});
  REQUIRE(res.problems.size() == 1);  // one mistake, one error: the rule's own keys are not reported as unknown too
  CHECK(res.problems[0].pointer == "/services/0/triggers/0/rule/kind");
  CHECK_THAT(res.problems[0].message, Catch::EndsWith("found \"consecutive_failure\" (did you mean \"consecutive_failures\"?)"));
}
